//! What the reflector caches keep of each object: only the fields the planner and recovery read.
//! Their other fields (managedFields above all, then annotations such as kubectl's
//! last-applied-configuration) would be most of the operator's memory. Namespaces, ServiceAccounts
//! and copies are kept in compact forms of their own ([`namespace_cache`](super::namespace_cache),
//! [`cache`](super::cache)).

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;

/// At most this many of a Pending Pod's own pull secrets and waiting containers are kept.
pub(crate) const KEPT_ENTRIES: usize = 16;
/// Stands last in a list of pull secrets that was cut: never a Secret's name.
pub(crate) const LIST_CUT: &str = "(cut)";

/// A Pending Pod: what recovery of stuck Pods reads (owner, ServiceAccount, its own pull secrets,
/// and the containers whose pull failed), each bounded: a tenant's Pod costs the cache the same whatever
/// its size. Its labels, which PodDisruptionBudgets select on, are read when it is to be evicted.
pub(crate) fn pending_pod(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    let controller = meta.owner_references.into_iter().flatten().find(|o| o.controller == Some(true));
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        owner_references: controller.map(|owner| vec![owner]),
        resource_version: meta.resource_version,
        ..ObjectMeta::default()
    };
    if let Some(spec) = &mut pod.spec {
        let mut own = spec.image_pull_secrets.take();
        if let Some(own) = own.as_mut().filter(|own| own.len() > KEPT_ENTRIES) {
            own.truncate(KEPT_ENTRIES);
            own.push(k8s_openapi::api::core::v1::LocalObjectReference { name: LIST_CUT.to_owned() });
        }
        let keep = k8s_openapi::api::core::v1::PodSpec {
            service_account_name: spec.service_account_name.take(),
            image_pull_secrets: own,
            ..Default::default()
        };
        *spec = keep;
    }
    if let Some(status) = &mut pod.status {
        let waiting = |statuses: Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
            statuses.map(|s| s.into_iter().filter(pull_failed_in).take(KEPT_ENTRIES).collect())
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

/// The waiting reasons of a container whose image pull failed.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];

/// Whether the container waits on a failed image pull.
pub(crate) fn pull_failed_in(status: &k8s_openapi::api::core::v1::ContainerStatus) -> bool {
    let reason = status.state.as_ref().and_then(|state| state.waiting.as_ref()?.reason.as_deref());
    reason.is_some_and(|reason| PULL_FAILURES.contains(&reason))
}

/// A Secret of a trusted source namespace: its name and version, no payload and no annotations
/// (kubectl's last-applied-configuration would hold the payload). The source of a credential is
/// read whole when its version changes; the rest (Helm releases, other Secrets) cost the cache
/// the same whatever their size.
pub(crate) fn source_secret(secret: &mut PartialObjectMeta<Secret>) {
    let meta = std::mem::take(&mut secret.metadata);
    secret.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        ..ObjectMeta::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pending_pod_costs_the_cache_the_same_whatever_its_size() {
        let labels: serde_json::Map<String, serde_json::Value> =
            (0..1_000).map(|i| (format!("tenant.example/l{i}"), json!("v"))).collect();
        let own: Vec<_> = (0..100).map(|i| json!({"name": format!("own-{i}")})).collect();
        // 20 containers still being created come first: they must not crowd out the pull failures.
        let waiting: Vec<_> = (0..70)
            .map(|i| {
                let reason = if i < 20 { "ContainerCreating" } else { "ImagePullBackOff" };
                json!({"name": format!("c{i}"), "image": "registry.test/a:1", "imageID": "", "ready": false,
                            "restartCount": 0, "state": {"waiting": {"reason": reason}}})
            })
            .collect();
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u", "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "r", "controller": true},
                                             {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "c"}]},
            "spec": {"imagePullSecrets": own, "containers": [{"name": "c0", "image": "registry.test/a:1"}]},
            "status": {"phase": "Pending", "containerStatuses": waiting},
        }))
        .unwrap();
        pending_pod(&mut pod);
        assert_eq!(pod.metadata.labels, None, "read when the Pod is to be evicted");
        assert_eq!(pod.metadata.owner_references.as_ref().map(Vec::len), Some(1), "the controller only");
        let own = pod.spec.as_ref().unwrap().image_pull_secrets.as_ref().unwrap();
        assert_eq!(own.len(), KEPT_ENTRIES + 1);
        assert_eq!(own.last().unwrap().name, LIST_CUT);
        let kept = pod.status.unwrap().container_statuses.unwrap();
        assert_eq!(kept.len(), KEPT_ENTRIES);
        assert!(kept.iter().all(pull_failed_in), "only containers whose pull failed are kept");
    }

    #[test]
    fn a_secret_of_a_source_namespace_costs_the_cache_its_name_and_version_only() {
        // A Helm release Secret's metadata; kubectl's last-applied annotation would hold a payload.
        let mut release: PartialObjectMeta<Secret> = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "sh.helm.release.v1.regcred-operator.v7", "namespace": "regcred-system",
                         "uid": "u", "resourceVersion": "42",
                         "labels": {"owner": "helm", "status": "deployed"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(100_000)},
                         "managedFields": [{"manager": "helm", "operation": "Update"}]},
        }))
        .unwrap();
        source_secret(&mut release);
        assert_eq!(
            serde_json::to_value(&release.metadata).unwrap(),
            json!({"name": "sh.helm.release.v1.regcred-operator.v7", "namespace": "regcred-system",
                   "uid": "u", "resourceVersion": "42"})
        );
    }
}
