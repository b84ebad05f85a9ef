//! What the reflector caches keep of each object: only the fields the planner and recovery read.
//! Their other fields (managedFields above all, then annotations such as kubectl's
//! last-applied-configuration) would be most of the operator's memory. ServiceAccounts and copies
//! are kept in a compact form of their own ([`cache`](super::cache)).

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
            statuses.map(|s| s.into_iter().filter(|c| waiting_reason(c).is_some()).collect())
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

/// Why a container waits (`ErrImagePull`, `ImagePullBackOff`, ...), if it does.
pub(crate) fn waiting_reason(status: &k8s_openapi::api::core::v1::ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
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
