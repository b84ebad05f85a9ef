//! What the caches keep of each object: only the fields the planner and the writes read. At
//! 10,000 namespaces the caches hold tens of thousands of objects, and their other fields
//! (managedFields above all, then annotations such as kubectl's last-applied-configuration)
//! would be most of the operator's memory.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ownership::ADDED_PULL_SECRETS_ANNOTATION;

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

/// Name, resourceVersion (the guard of every patch), `imagePullSecrets` and the operator's record.
pub(crate) fn service_account(account: &mut ServiceAccount) {
    let meta = std::mem::take(&mut account.metadata);
    let record = meta.annotations.and_then(|mut a| a.remove_entry(ADDED_PULL_SECRETS_ANNOTATION));
    account.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        resource_version: meta.resource_version,
        annotations: record.map(|entry| [entry].into()),
        ..ObjectMeta::default()
    };
    account.secrets = None;
    account.automount_service_account_token = None;
}

/// What decides whether a copy is current: labels, owners, type and data.
pub(crate) fn managed_secret(secret: &mut Secret) {
    let meta = std::mem::take(&mut secret.metadata);
    secret.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        owner_references: meta.owner_references,
        resource_version: meta.resource_version,
        ..ObjectMeta::default()
    };
    secret.string_data = None;
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
                         "managedFields": [{"manager": "kubectl"}]},
            "imagePullSecrets": [{"name": "regcred"}],
            "secrets": [{"name": "token"}],
        }))
        .unwrap();
        service_account(&mut account);
        assert_eq!(
            serde_json::to_value(&account).unwrap(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": "a", "resourceVersion": "7",
                                "annotations": {ADDED_PULL_SECRETS_ANNOTATION: "regcred"}},
                   "imagePullSecrets": [{"name": "regcred"}]})
        );
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
