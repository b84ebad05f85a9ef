//! What the caches keep of each object: only the fields the planner and the writes read. At
//! 10,000 namespaces the caches hold tens of thousands of objects, and their other fields
//! (managedFields above all, then annotations such as kubectl's last-applied-configuration)
//! would be most of the operator's memory.

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::ResourceExt;
use kube::api::PartialObjectMeta;

use sha2::{Digest, Sha256};

use super::ownership::{
    ADDED_PULL_SECRETS_ANNOTATION, CONTENT_DIGEST_ANNOTATION, CREDENTIAL_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL,
};
use crate::credential::pull_secret::DOCKER_CONFIG_JSON_KEY;

/// Name, labels, and whether it is terminating.
pub(crate) fn namespace(namespace: &mut Namespace) {
    let meta = std::mem::take(&mut namespace.metadata);
    namespace.metadata = ObjectMeta {
        name: meta.name,
        labels: meta.labels,
        deletion_timestamp: meta.deletion_timestamp,
        resource_version: meta.resource_version,
        ..ObjectMeta::default()
    };
    namespace.spec = None;
    if let Some(status) = &mut namespace.status {
        status.conditions = None;
    }
}

/// Name, resourceVersion (the guard of every patch), `imagePullSecrets`, the operator's record,
/// and which field managers own `imagePullSecrets` (names only: who else writes the list).
pub(crate) fn service_account(account: &mut ServiceAccount) {
    let meta = std::mem::take(&mut account.metadata);
    let record = meta.annotations.and_then(|mut a| a.remove_entry(ADDED_PULL_SECRETS_ANNOTATION));
    let list_owners: Vec<ManagedFieldsEntry> = meta
        .managed_fields
        .into_iter()
        .flatten()
        .filter(|entry| entry.fields_v1.as_ref().is_some_and(|f| f.0.get("f:imagePullSecrets").is_some()))
        .map(|entry| ManagedFieldsEntry { manager: entry.manager, operation: entry.operation, ..Default::default() })
        .collect();
    account.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        resource_version: meta.resource_version,
        annotations: record.map(|entry| [entry].into()),
        managed_fields: (!list_owners.is_empty()).then_some(list_owners),
        ..ObjectMeta::default()
    };
    account.secrets = None;
    account.automount_service_account_token = None;
}

/// What decides whether a copy is current, from its metadata alone (the watch never transfers a
/// payload): the operator's labels, the controller owner, the digest the operator wrote, and the
/// field managers other than the operator's that wrote its data or type since. Whatever a tenant
/// puts in a Secret labelled as ours, the cache keeps a few hundred bytes of it.
pub(crate) fn managed_secret(secret: &mut PartialObjectMeta<Secret>) {
    let meta = std::mem::take(&mut secret.metadata);
    let ours = [MANAGED_BY_LABEL, CREDENTIAL_LABEL];
    let labels = meta.labels.map(|labels| labels.into_iter().filter(|(k, _)| ours.contains(&k.as_str())).collect());
    let digest = meta.annotations.and_then(|mut a| a.remove_entry(CONTENT_DIGEST_ANNOTATION));
    let controller =
        meta.owner_references.map(|owners| owners.into_iter().filter(|o| o.controller == Some(true)).collect());
    let other_writers: Vec<ManagedFieldsEntry> = meta
        .managed_fields
        .into_iter()
        .flatten()
        .filter(|entry| entry.manager.as_deref() != Some(FIELD_MANAGER))
        // The payload key and the type, not other keys someone added beside them: the operator's
        // forced apply takes back what it owns, and leaves the rest.
        .filter(|entry| {
            entry.fields_v1.as_ref().is_some_and(|f| {
                f.0.get("f:data").and_then(|data| data.get(format!("f:{DOCKER_CONFIG_JSON_KEY}"))).is_some()
                    || f.0.get("f:type").is_some()
            })
        })
        .map(|entry| ManagedFieldsEntry { manager: entry.manager, ..Default::default() })
        .collect();
    secret.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels,
        annotations: digest.map(|entry| [entry].into()),
        owner_references: controller,
        resource_version: meta.resource_version,
        managed_fields: (!other_writers.is_empty()).then_some(other_writers),
        ..ObjectMeta::default()
    };
}

/// The digest of a copy's payload that the operator writes on the copy, to tell whether a copy is
/// current without reading it. A digest of a copy, on that copy, tells nothing its reader lacks.
pub(crate) fn content_digest(payload: &[u8]) -> String {
    Sha256::digest(payload).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether a Secret labelled as managed is controlled by some RegistryCredential: anything else
/// carrying the label is a tenant's, and stays out of the cache.
pub(crate) fn is_controlled_by_a_credential(secret: &PartialObjectMeta<Secret>) -> bool {
    secret.owner_references().iter().any(|owner| {
        owner.controller == Some(true)
            && owner.kind == "RegistryCredential"
            && owner.api_version.starts_with("regcred.dev/")
    })
}

/// A Pending Pod: what recovery of stuck Pods reads (owner, ServiceAccount, pull secrets, labels
/// for PodDisruptionBudgets, and the containers that wait).
pub(crate) fn pending_pod(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        // Matched against PodDisruptionBudget selectors.
        labels: meta.labels,
        owner_references: meta.owner_references.map(|o| o.into_iter().filter(|o| o.controller == Some(true)).collect()),
        resource_version: meta.resource_version,
        ..ObjectMeta::default()
    };
    if let Some(spec) = &mut pod.spec {
        let keep = k8s_openapi::api::core::v1::PodSpec {
            service_account_name: spec.service_account_name.take(),
            image_pull_secrets: spec.image_pull_secrets.take(),
            ..Default::default()
        };
        *spec = keep;
    }
    if let Some(status) = &mut pod.status {
        let waiting = |statuses: Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
            statuses.map(|s| s.into_iter().filter(|c| super::recovery::waiting_reason(c).is_some()).collect())
        };
        let kept = k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase.take(),
            container_statuses: waiting(status.container_statuses.take()),
            init_container_statuses: waiting(status.init_container_statuses.take()),
            ..Default::default()
        };
        *status = kept;
    }
}

/// Sources are few: only managedFields go.
pub(crate) fn source_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trimmed_account_keeps_what_patches_need_and_only_the_operators_annotation() {
        let mut account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": "default", "namespace": "a", "resourceVersion": "7", "uid": "u",
                         "annotations": {ADDED_PULL_SECRETS_ANNOTATION: "regcred", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": [{"manager": "kubectl"},
                                           {"manager": "argocd-controller", "operation": "Apply",
                                            "fieldsV1": {"f:imagePullSecrets": {}}}]},
            "imagePullSecrets": [{"name": "regcred"}],
            "secrets": [{"name": "token"}],
        }))
        .unwrap();
        service_account(&mut account);
        assert_eq!(
            serde_json::to_value(&account).unwrap(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": "a", "resourceVersion": "7",
                                "annotations": {ADDED_PULL_SECRETS_ANNOTATION: "regcred"},
                                "managedFields": [{"manager": "argocd-controller", "operation": "Apply"}]},
                   "imagePullSecrets": [{"name": "regcred"}]})
        );
    }

    #[test]
    fn a_trimmed_copy_keeps_our_labels_owner_digest_and_who_else_wrote_its_data() {
        let mut copy: PartialObjectMeta<Secret> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "a", "resourceVersion": "7", "uid": "u",
                         "labels": {MANAGED_BY_LABEL: "regcred-operator", CREDENTIAL_LABEL: "rc", "tenant": "x"},
                         "annotations": {"big": "...", CONTENT_DIGEST_ANNOTATION: "d1"},
                         "ownerReferences": [
                             {"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "name": "rc",
                              "uid": "rc-uid", "controller": true},
                             {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "cm"}],
                         "managedFields": [
                             {"manager": FIELD_MANAGER, "operation": "Apply",
                              "fieldsV1": {"f:data": {"f:.dockerconfigjson": {}}}},
                             {"manager": "kubectl-edit", "operation": "Update",
                              "fieldsV1": {"f:data": {"f:.dockerconfigjson": {}}}},
                             {"manager": "kubectl-patch", "operation": "Update",
                              "fieldsV1": {"f:data": {"f:extra": {}}}},
                             {"manager": "kubectl-label", "operation": "Update", "fieldsV1": {"f:metadata": {}}}]},
        }))
        .unwrap();
        managed_secret(&mut copy);
        assert_eq!(copy.annotations().get(CONTENT_DIGEST_ANNOTATION).map(String::as_str), Some("d1"));
        assert_eq!(copy.annotations().len(), 1);
        assert_eq!(copy.labels().len(), 2);
        assert_eq!(copy.owner_references().len(), 1);
        let writers: Vec<_> = copy.managed_fields().iter().filter_map(|m| m.manager.as_deref()).collect();
        assert_eq!(writers, vec!["kubectl-edit"], "only another writer of the data");
        assert!(is_controlled_by_a_credential(&copy));
        copy.metadata.owner_references = None;
        assert!(!is_controlled_by_a_credential(&copy), "a label alone does not make a Secret ours");
    }

    #[test]
    fn a_trimmed_namespace_keeps_labels_and_termination() {
        let mut ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "a", "labels": {"team": "x"}, "annotations": {"big": "..."}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"},
        }))
        .unwrap();
        namespace(&mut ns);
        assert_eq!(
            serde_json::to_value(&ns).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "a", "labels": {"team": "x"}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
                   "status": {"phase": "Terminating"}})
        );
    }
}
