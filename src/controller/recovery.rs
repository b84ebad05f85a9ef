//! Pods that got stuck before the copy existed: a Pod's `imagePullSecrets` cannot change, so one
//! created without the copy waits in ImagePullBackOff for ever. With `evictStuckPods`, a Pod a
//! controller owns is evicted (the Eviction API, so PodDisruptionBudgets hold) and its controller
//! creates it again, now with the secret; a bare Pod is only reported.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, EvictParams, ListParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use tracing::warn;

use super::context::Context;
use super::trim::waiting_reason;
use crate::crd::selection::label_selector_matches;
use crate::crd::{RegistryCredential, StuckPodCounts};
use crate::reason::Reason;

/// The waiting reasons of a container whose image pull failed.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
/// The owners that create a Pod again after it is evicted.
const RECREATING_OWNERS: [&str; 4] = ["ReplicaSet", "StatefulSet", "DaemonSet", "Job"];

/// Whether some container of the Pod waits on a failed image pull.
pub(crate) fn pull_failed(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .any(|c| waiting_reason(c).is_some_and(|r| PULL_FAILURES.contains(&r)))
}

/// Whether a Pod's state concerns this credential's recovery: it recovers stuck Pods, the Pod
/// waits on a failed pull, and the credential selects its namespace (with `labels`) and
/// ServiceAccount. A failing pull elsewhere costs this credential nothing.
pub(crate) fn concerns(
    credential: &RegistryCredential,
    pod: &Pod,
    labels: &BTreeMap<String, String>,
    reserved: &[String],
) -> bool {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    credential.spec.evict_stuck_pods
        && pull_failed(pod)
        && credential.spec.selects_pods_of(namespace, labels, account, reserved)
}

/// What to do about one stuck Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StuckPod {
    /// A controller owns it: evict it, and its controller creates it again with the secret.
    Evict { namespace: String, name: String, uid: String, labels: BTreeMap<String, String> },
    /// Nobody would recreate it: report it, never delete it.
    Bare { namespace: String, name: String },
}

/// The Pods this credential should act on: waiting on a failed pull, in a namespace it selects
/// whose copy is in place, under a ServiceAccount it selects, without the copy in their list.
pub(crate) fn stuck_pods<'a>(
    credential: &RegistryCredential,
    pods: impl IntoIterator<Item = &'a Pod>,
    namespace_labels: &HashMap<&str, &std::collections::BTreeMap<String, String>>,
    copy_in_place: impl Fn(&str) -> bool,
    reserved: &[String],
) -> Vec<StuckPod> {
    let spec = &credential.spec;
    let mut stuck = Vec::new();
    for pod in pods {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(labels) = namespace_labels.get(namespace) else { continue };
        let pod_spec = pod.spec.as_ref();
        let account = pod_spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
        let has_copy = pod_spec
            .and_then(|s| s.image_pull_secrets.as_ref())
            .is_some_and(|l| l.iter().any(|r| r.name == spec.secret_name));
        if !pull_failed(pod)
            || has_copy
            || !spec.selects_pods_of(namespace, labels, account, reserved)
            || !copy_in_place(namespace)
        {
            continue;
        }
        let recreated = pod.owner_references().iter().any(|o| RECREATING_OWNERS.contains(&o.kind.as_str()));
        let (namespace, name) = (namespace.to_owned(), pod.name_any());
        stuck.push(if recreated {
            StuckPod::Evict {
                namespace,
                name,
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                labels: pod.labels().clone(),
            }
        } else {
            StuckPod::Bare { namespace, name }
        });
    }
    stuck
}

/// Acts on this credential's stuck Pods: evicts those a controller owns (within the budget, and
/// as far as PodDisruptionBudgets allow), reports bare ones. Returns the counts for status.
pub(crate) async fn recover(
    credential: &RegistryCredential,
    ctx: &Context,
    copy_in_place: impl Fn(&str) -> bool,
) -> StuckPodCounts {
    let previous = credential.status.as_ref().and_then(|s| s.stuck_pods.clone()).unwrap_or_default();
    let pods = ctx.stores.pods.state();
    let namespaces = ctx.stores.namespaces.state();
    let labels: HashMap<&str, &BTreeMap<String, String>> =
        namespaces.iter().map(|n| (n.metadata.name.as_deref().unwrap_or_default(), n.labels())).collect();
    let stuck = stuck_pods(
        credential,
        pods.iter().map(|p| p.as_ref()),
        &labels,
        copy_in_place,
        &ctx.settings.source_namespaces,
    );
    let mut budgets = DisruptionBudgets::default();
    let mut bare = Vec::new();
    let mut evicted_now = 0;
    let name = credential.name_any();
    for pod in stuck {
        match pod {
            StuckPod::Bare { namespace, name: pod } => {
                if !previous.bare.contains(&format!("{namespace}/{pod}")) {
                    let note = format!(
                        "stuck without {}, and no controller would recreate it: delete and create it again",
                        credential.spec.secret_name
                    );
                    record_on_pod(ctx, &namespace, &pod, EventType::Warning, Reason::StuckWithoutPullSecret, note)
                        .await;
                }
                bare.push(format!("{namespace}/{pod}"));
            }
            StuckPod::Evict { namespace, name: pod, uid, labels } => {
                // The budget first: a spent one costs no list of PodDisruptionBudgets.
                if !ctx.evictions.available(&name, Instant::now()) {
                    continue; // the next reconcile, after the budget refills
                }
                if budgets.holds(ctx, &namespace, &labels).await || !ctx.evictions.take(&name, Instant::now()) {
                    continue;
                }
                match evict(ctx, &namespace, &pod, &uid).await {
                    Ok(()) => {
                        evicted_now += 1;
                        ctx.metrics.pod_evicted();
                        let note = format!(
                            "evicted: stuck without {}; its controller creates it again",
                            credential.spec.secret_name
                        );
                        record_on_pod(ctx, &namespace, &pod, EventType::Normal, Reason::EvictedStuckPod, note).await;
                    }
                    Err(error) => {
                        // 429: a PodDisruptionBudget allows no disruption now; retried later.
                        warn!(credential = %name, %namespace, pod = %pod, %error, "stuck Pod not evicted");
                    }
                }
            }
        }
    }
    bare.sort();
    bare.truncate(MAX_LISTED_BARE_PODS);
    StuckPodCounts { evicted: ctx.evictions.count(&name, previous.evicted, evicted_now), bare }
}

/// At most this many bare stuck Pods are listed in status.
const MAX_LISTED_BARE_PODS: usize = 20;

/// The PodDisruptionBudgets of the namespaces one recovery looks at, each listed once.
#[derive(Default)]
struct DisruptionBudgets {
    /// `None`: the list failed, so nothing there is disrupted.
    by_namespace: HashMap<String, Option<Vec<PodDisruptionBudget>>>,
}

impl DisruptionBudgets {
    /// Whether a budget selecting the Pod allows no disruption now. The API server lets a Pending
    /// Pod be evicted whatever its budgets say; the operator still leaves alone a Pod whose owners
    /// said it must not be disrupted.
    async fn holds(&mut self, ctx: &Context, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        if !self.by_namespace.contains_key(namespace) {
            let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), namespace);
            let listed = api.list(&ListParams::default()).await.ok().map(|list| list.items);
            self.by_namespace.insert(namespace.to_owned(), listed);
        }
        let Some(budgets) = &self.by_namespace[namespace] else { return true };
        budgets.iter().any(|budget| {
            let Some(spec) = &budget.spec else { return false };
            let selects = spec.selector.as_ref().is_some_and(|s| label_selector_matches(s, labels));
            selects && budget.status.as_ref().is_none_or(|s| s.disruptions_allowed.unwrap_or(0) < 1)
        })
    }
}

async fn evict(ctx: &Context, namespace: &str, pod: &str, uid: &str) -> kube::Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.to_owned()), resource_version: None }),
            ..DeleteParams::default()
        }),
        ..EvictParams::default()
    };
    ctx.metrics.api_write("pod", "evict");
    pods.evict(pod, &params).await.map(|_| ())
}

async fn record_on_pod(ctx: &Context, namespace: &str, pod: &str, type_: EventType, reason: Reason, note: String) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_owned()),
        name: Some(pod.to_owned()),
        ..Default::default()
    };
    let event =
        Event { type_, reason: reason.to_string(), note: Some(note), action: "Recover".into(), secondary: None };
    ctx.metrics.api_write("event", "create");
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        warn!(%namespace, %pod, %error, "could not record Event");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fixture;

    fn credential() -> RegistryCredential {
        fixture::credential("rc").spec(json!({"evictStuckPods": true, "namespaces": {"include": ["team-*"]}})).build()
    }

    fn pod(namespace: &str, name: &str, reason: &str, owner: Option<&str>, secrets: &[&str]) -> Pod {
        let owners: Vec<_> = owner
            .iter()
            .map(|kind| json!({"apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "u", "controller": true}))
            .collect();
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name, "uid": format!("uid-{name}"), "ownerReferences": owners,
                         "annotations": {"big": "x"}},
            "spec": {"containers": [{"name": "app", "image": "registry.test/app"}],
                     "imagePullSecrets": secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>()},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "app", "image": "registry.test/app", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": reason}}}]},
        }))
        .unwrap();
        crate::controller::trim::pending_pod(&mut pod);
        pod
    }

    #[test]
    fn a_failing_pull_concerns_only_the_credentials_that_select_the_pod() {
        let labels = BTreeMap::new();
        let failing = pod("team-a", "web", "ImagePullBackOff", Some("ReplicaSet"), &[]);
        assert!(concerns(&credential(), &failing, &labels, &[]));
        let elsewhere = pod("other", "web", "ImagePullBackOff", Some("ReplicaSet"), &[]);
        assert!(!concerns(&credential(), &elsewhere, &labels, &[]), "a namespace it does not select");
        let starting = pod("team-a", "web", "ContainerCreating", Some("ReplicaSet"), &[]);
        assert!(!concerns(&credential(), &starting, &labels, &[]), "not a failed pull");
        let mut opted_out = credential();
        opted_out.spec.evict_stuck_pods = false;
        assert!(!concerns(&opted_out, &failing, &labels, &[]), "no recovery asked for");
    }

    #[test]
    fn controller_owned_pods_stuck_without_the_copy_are_evicted_and_bare_ones_reported() {
        let labels = BTreeMap::new();
        let namespaces = HashMap::from([("team-a", &labels), ("other", &labels)]);
        let pods = [
            pod("team-a", "web", "ImagePullBackOff", Some("ReplicaSet"), &["own"]),
            pod("team-a", "bare", "ErrImagePull", None, &[]),
            pod("team-a", "fine", "ImagePullBackOff", Some("ReplicaSet"), &["regcred"]),
            pod("team-a", "starting", "ContainerCreating", Some("ReplicaSet"), &[]),
            pod("other", "elsewhere", "ImagePullBackOff", Some("ReplicaSet"), &[]),
        ];
        let decided = stuck_pods(&credential(), &pods, &namespaces, |_| true, &[]);
        assert_eq!(
            decided,
            vec![
                StuckPod::Evict {
                    namespace: "team-a".into(),
                    name: "web".into(),
                    uid: "uid-web".into(),
                    labels: BTreeMap::new()
                },
                StuckPod::Bare { namespace: "team-a".into(), name: "bare".into() },
            ]
        );
        assert!(stuck_pods(&credential(), &pods, &namespaces, |_| false, &[]).is_empty(), "no copy yet: no use");
        assert!(pods[0].metadata.annotations.is_none(), "the cache keeps only what the decision reads");
    }
}
