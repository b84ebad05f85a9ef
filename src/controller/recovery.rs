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
use super::namespace_cache::CompactLabels;
use super::source::ResolvedSource;
use super::trim::{self, pull_failed_in};
use crate::crd::selection::{Labels, label_selector_matches, pod_injection_disabled};
use crate::crd::{RegistryCredential, StuckPodCounts};
use crate::credential::{ImageReference, covering_key};
use crate::reason::Reason;

/// The owners that create a Pod again after it is evicted.
const RECREATING_OWNERS: [&str; 4] = ["ReplicaSet", "StatefulSet", "DaemonSet", "Job"];

/// Whether some container of the Pod waits on a failed image pull.
pub(crate) fn pull_failed(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .any(pull_failed_in)
}

/// Whether a Pod's state concerns this credential's recovery: it recovers stuck Pods, the Pod
/// waits on a failed pull, and the credential selects its namespace (with `labels`) and
/// ServiceAccount. A failing pull elsewhere costs this credential nothing.
pub(crate) fn concerns(credential: &RegistryCredential, pod: &Pod, labels: &impl Labels, reserved: &[String]) -> bool {
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
    Evict { namespace: String, name: String, uid: String, owner: String },
    /// Nobody would recreate it: report it, never delete it.
    Bare { namespace: String, name: String },
    /// Evicting it would not help: report why, leave it.
    Skipped { namespace: String, name: String, why: Skip },
}

/// Why a stuck Pod that a controller owns is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// None of its failing images is on a registry the credential holds (an outage elsewhere).
    NotCovered,
    /// Its replacement would not get the copy either: it lists pull secrets of its own (the
    /// ServiceAccount's reach only Pods without any) and the copy is not injected.
    ReplacementWithoutCopy,
    /// Its owner's Pods were evicted once for this source already: not again until it changes.
    OwnerEvictedBefore,
    /// A PodDisruptionBudget allows no disruption now.
    DisruptionBudget,
    /// It lists more pull secrets of its own than the cache keeps: whether its replacement gets
    /// the copy cannot be told.
    LongList,
}

impl Skip {
    fn message(self, secret_name: &str) -> String {
        match self {
            Skip::NotCovered => "none of its failing images is on a registry this credential holds".to_owned(),
            Skip::ReplacementWithoutCopy => format!(
                "it lists pull secrets of its own and {secret_name} is not injected into new Pods: a replacement would be stuck too"
            ),
            Skip::OwnerEvictedBefore => {
                "its owner's Pods were evicted once for this source already; not again until the source changes"
                    .to_owned()
            }
            Skip::DisruptionBudget => "a PodDisruptionBudget allows no disruption now".to_owned(),
            Skip::LongList => format!(
                "it lists more than {} pull secrets of its own: whether a replacement would get {secret_name} is not known",
                trim::KEPT_ENTRIES
            ),
        }
    }
}

/// Whether the Pod that replaces an evicted one gets the copy.
pub(crate) struct Replacement<'a> {
    /// The registry keys of the credential's normalized payload.
    pub(crate) keys: &'a [String],
    /// New Pods get the copy at admission: the credential injects and the cluster serves the policy
    /// (but not in a namespace that opted out).
    pub(crate) injected: bool,
    /// Whether a Pod created now under ServiceAccount (namespace, name) with these pull secrets of
    /// its own would get the copy from the ServiceAccount: it lists the copy, and the Pod's list
    /// is only what the ServiceAccount gave it.
    pub(crate) from_account: &'a dyn Fn(&str, &str, &[&str]) -> bool,
}

impl Replacement<'_> {
    /// Some failing image of the Pod is on a registry the payload holds, by the kubelet's matching.
    fn covers_a_failing_image(&self, pod: &Pod) -> bool {
        let statuses = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()));
        statuses
            .filter(|c| pull_failed_in(c))
            .filter_map(|c| ImageReference::parse(&c.image).ok())
            .any(|image| covering_key(self.keys.iter().map(String::as_str), &image).is_some())
    }

    fn carries_copy(&self, namespace: &str, labels: &impl Labels, account: &str, own: &[&str]) -> bool {
        (self.injected && !pod_injection_disabled(labels)) || (self.from_account)(namespace, account, own)
    }
}

/// The Pods this credential should act on: waiting on a failed pull, in a namespace it selects
/// whose copy is in place, under a ServiceAccount it selects, without the copy in their list;
/// evicted only where that helps.
pub(crate) fn stuck_pods<'a, L: Labels>(
    credential: &RegistryCredential,
    pods: impl IntoIterator<Item = &'a Pod>,
    namespace_labels: &HashMap<&str, &L>,
    copy_in_place: impl Fn(&str) -> bool,
    reserved: &[String],
    replacement: &Replacement,
) -> Vec<StuckPod> {
    let spec = &credential.spec;
    let mut stuck = Vec::new();
    for pod in pods {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(&labels) = namespace_labels.get(namespace) else { continue };
        let pod_spec = pod.spec.as_ref();
        let account = pod_spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
        let own: Vec<&str> =
            pod_spec.into_iter().flat_map(|s| s.image_pull_secrets.iter().flatten()).map(|r| r.name.as_str()).collect();
        if !pull_failed(pod)
            || own.contains(&spec.secret_name.as_str())
            || !spec.selects_pods_of(namespace, labels, account, reserved)
            || !copy_in_place(namespace)
        {
            continue;
        }
        let owner = pod.owner_references().iter().find(|o| RECREATING_OWNERS.contains(&o.kind.as_str()));
        let (namespace, name) = (namespace.to_owned(), pod.name_any());
        let Some(owner) = owner else {
            stuck.push(StuckPod::Bare { namespace, name });
            continue;
        };
        let skip = if own.contains(&trim::LIST_CUT) {
            Some(Skip::LongList)
        } else if !replacement.covers_a_failing_image(pod) {
            Some(Skip::NotCovered)
        } else if !replacement.carries_copy(&namespace, labels, account, &own) {
            Some(Skip::ReplacementWithoutCopy)
        } else {
            None
        };
        stuck.push(match skip {
            Some(why) => StuckPod::Skipped { namespace, name, why },
            None => StuckPod::Evict {
                namespace,
                name,
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                owner: owner.uid.clone(),
            },
        });
    }
    stuck
}

/// Acts on this credential's stuck Pods: evicts those a controller owns where that helps (within
/// the budget, as far as PodDisruptionBudgets allow, once per owner and source), reports bare
/// ones and those left alone. Returns the counts for status.
pub(crate) async fn recover(
    credential: &RegistryCredential,
    ctx: &Context,
    source: &ResolvedSource,
    copy_in_place: impl Fn(&str) -> bool,
) -> StuckPodCounts {
    let previous = credential.status.as_ref().and_then(|s| s.stuck_pods.clone()).unwrap_or_default();
    let stuck = find_stuck_pods(credential, ctx, source, copy_in_place);
    let mut round = Round {
        ctx,
        credential,
        previous: &previous,
        digest: &source.digest,
        budgets: DisruptionBudgets::default(),
        bare: Vec::new(),
        skipped: Vec::new(),
        evicted_now: 0,
        owners: Vec::new(),
        deferred: Vec::new(),
    };
    for pod in stuck {
        round.act(pod).await;
    }
    round.counts()
}

/// The credential's stuck Pods in the caches, with what to do about each.
fn find_stuck_pods(
    credential: &RegistryCredential,
    ctx: &Context,
    source: &ResolvedSource,
    copy_in_place: impl Fn(&str) -> bool,
) -> Vec<StuckPod> {
    let pods = ctx.stores.pods.state();
    let namespaces = ctx.stores.namespaces.read();
    let labels: HashMap<&str, &CompactLabels> = namespaces.iter().map(|(name, n)| (&**name, &n.labels)).collect();
    let secret_name = credential.spec.secret_name.as_str();
    let from_account = |namespace: &str, account: &str, own: &[&str]| {
        let objects = ctx.stores.objects.namespace(namespace);
        objects.account(account).is_some_and(|account| {
            let lists = |name: &str| account.pull_secrets.iter().any(|listed| **listed == *name);
            lists(secret_name) && own.iter().all(|name| lists(name))
        })
    };
    let replacement = Replacement {
        keys: &source.registries,
        injected: credential.spec.inject_into_pods && ctx.settings.admission_policies_served,
        from_account: &from_account,
    };
    let reserved = &ctx.settings.source_namespaces;
    stuck_pods(credential, pods.iter().map(|p| p.as_ref()), &labels, copy_in_place, reserved, &replacement)
}

/// One recovery's work over the stuck Pods, and what it reports.
struct Round<'a> {
    ctx: &'a Context,
    credential: &'a RegistryCredential,
    previous: &'a StuckPodCounts,
    /// The source payload's digest: an owner's Pods are evicted once per payload.
    digest: &'a str,
    budgets: DisruptionBudgets,
    bare: Vec<String>,
    skipped: Vec<String>,
    evicted_now: i64,
    /// Owners whose Pods this round evicted.
    owners: Vec<String>,
    /// Owners with Pods left for a later round by the spent budget: not done with yet.
    deferred: Vec<String>,
}

impl Round<'_> {
    async fn act(&mut self, pod: StuckPod) {
        let (ctx, credential) = (self.ctx, self.credential);
        let secret_name = &credential.spec.secret_name;
        match pod {
            StuckPod::Bare { namespace, name } => {
                if !self.previous.bare.contains(&format!("{namespace}/{name}")) {
                    let note = format!(
                        "stuck without {secret_name}, and no controller would recreate it: delete and create it again"
                    );
                    record_on_pod(ctx, &namespace, &name, EventType::Warning, Reason::StuckWithoutPullSecret, note)
                        .await;
                }
                self.bare.push(format!("{namespace}/{name}"));
            }
            StuckPod::Skipped { namespace, name, why } => self.skip(&namespace, &name, why).await,
            StuckPod::Evict { namespace, name, uid, owner } => {
                let credential_name = credential.name_any();
                if ctx.evictions.evicted_before(&credential_name, self.digest, &owner) {
                    return self.skip(&namespace, &name, Skip::OwnerEvictedBefore).await;
                }
                // The budget first: a spent one costs no list of PodDisruptionBudgets.
                if !ctx.evictions.available(&credential_name, Instant::now()) {
                    return self.deferred.push(owner); // the next reconcile, after the budget refills
                }
                // The cache keeps no labels (a tenant's thousands): read for the budgets' selectors.
                let labels = match current_labels(ctx, &namespace, &name, &uid).await {
                    Ok(Some(labels)) => labels,
                    Ok(None) => return, // gone or replaced: nothing to recover
                    Err(error) => {
                        // Unread is not done with: its owner waits for the next reconcile.
                        warn!(credential = %credential_name, %namespace, pod = %name, %error, "could not read a stuck Pod");
                        return self.deferred.push(owner);
                    }
                };
                if self.budgets.holds(ctx, &namespace, &labels).await {
                    return self.skip(&namespace, &name, Skip::DisruptionBudget).await;
                }
                if !ctx.evictions.take(&credential_name, Instant::now()) {
                    return self.deferred.push(owner);
                }
                match evict(ctx, &namespace, &name, &uid).await {
                    Ok(()) => {
                        self.evicted_now += 1;
                        self.owners.push(owner);
                        ctx.metrics.pod_evicted();
                        let note = format!("evicted: stuck without {secret_name}; its controller creates it again");
                        record_on_pod(ctx, &namespace, &name, EventType::Normal, Reason::EvictedStuckPod, note).await;
                    }
                    Err(error) => {
                        // 429: a PodDisruptionBudget allows no disruption now; retried later.
                        warn!(credential = %credential_name, %namespace, pod = %name, %error, "stuck Pod not evicted");
                    }
                }
            }
        }
    }

    /// Reports a Pod left alone: in status, and once in an Event on the Pod.
    async fn skip(&mut self, namespace: &str, name: &str, why: Skip) {
        let entry = format!("{namespace}/{name}: {}", why.message(&self.credential.spec.secret_name));
        if !self.previous.skipped.contains(&entry) {
            let note = format!("not evicted: {}", why.message(&self.credential.spec.secret_name));
            record_on_pod(self.ctx, namespace, name, EventType::Normal, Reason::NotEvicted, note).await;
        }
        self.skipped.push(entry);
    }

    fn counts(mut self) -> StuckPodCounts {
        let name = self.credential.name_any();
        let deferred = std::mem::take(&mut self.deferred);
        let done = self.owners.drain(..).filter(|owner| !deferred.contains(owner)).collect();
        self.ctx.evictions.remember_owners(&name, self.digest, done);
        for listed in [&mut self.bare, &mut self.skipped] {
            listed.sort();
            listed.truncate(MAX_LISTED_STUCK_PODS);
        }
        let evicted = self.ctx.evictions.count(&name, self.previous.evicted, self.evicted_now);
        StuckPodCounts { evicted, bare: self.bare, skipped: self.skipped }
    }
}

/// At most this many bare, and as many skipped, stuck Pods are listed in status.
const MAX_LISTED_STUCK_PODS: usize = 20;

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
            selects && budget.status.as_ref().is_none_or(|s| s.disruptions_allowed < 1)
        })
    }
}

/// The labels of the Pod, if it is still the one seen (`None`: gone or replaced).
async fn current_labels(
    ctx: &Context,
    namespace: &str,
    pod: &str,
    uid: &str,
) -> kube::Result<Option<BTreeMap<String, String>>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let found = pods.get_metadata_opt(pod).await?;
    Ok(found
        .filter(|found| found.metadata.uid.as_deref() == Some(uid))
        .map(|found| found.metadata.labels.unwrap_or_default()))
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
    ctx.metrics.api_write("pod", "evict", pods.evict(pod, &params)).await.map(|_| ())
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
    if let Err(error) = ctx.metrics.api_write("event", "create", ctx.recorder.publish(&event, &reference)).await {
        warn!(%namespace, %pod, %error, "could not record Event");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fixture;
    use crate::crd::selection::{POD_INJECTION_DISABLED, POD_INJECTION_LABEL};

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
        let injected = Replacement { keys: &keys(), injected: true, from_account: &|_, _, _| false };
        let decided = stuck_pods(&credential(), &pods, &namespaces, |_| true, &[], &injected);
        assert_eq!(
            decided,
            vec![
                StuckPod::Evict {
                    namespace: "team-a".into(),
                    name: "web".into(),
                    uid: "uid-web".into(),
                    owner: "u".into(),
                },
                StuckPod::Bare { namespace: "team-a".into(), name: "bare".into() },
            ]
        );
        let no_copy_yet = stuck_pods(&credential(), &pods, &namespaces, |_| false, &[], &injected);
        assert!(no_copy_yet.is_empty(), "no copy yet: no use");
        assert!(pods[0].metadata.annotations.is_none(), "the cache keeps only what the decision reads");
    }

    fn keys() -> Vec<String> {
        vec!["registry.test".to_owned()]
    }

    fn why(decided: &[StuckPod]) -> Option<Skip> {
        match decided {
            [StuckPod::Skipped { why, .. }] => Some(*why),
            _ => None,
        }
    }

    #[test]
    fn a_pod_is_evicted_only_where_its_replacement_pulls() {
        let labels = BTreeMap::new();
        let namespaces = HashMap::from([("team-a", &labels)]);
        let decide = |pod: &Pod, replacement: &Replacement| {
            stuck_pods(&credential(), [pod], &namespaces, |_| true, &[], replacement)
        };
        let injected = Replacement { keys: &keys(), injected: true, from_account: &|_, _, _| false };
        let not_injected = Replacement { keys: &keys(), injected: false, from_account: &|_, _, _| false };
        let from_account = Replacement { keys: &keys(), injected: false, from_account: &|_, _, own| own.is_empty() };

        // An outage of another registry: the copy holds nothing for it.
        let mut elsewhere = pod("team-a", "web", "ImagePullBackOff", Some("Job"), &[]);
        elsewhere.status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0].image =
            "docker.io/library/nginx:1".into();
        assert_eq!(why(&decide(&elsewhere, &injected)), Some(Skip::NotCovered));

        // A list of its own and no injection: the ServiceAccount's list never reaches it.
        let own = pod("team-a", "web", "ImagePullBackOff", Some("Job"), &["own"]);
        assert_eq!(why(&decide(&own, &not_injected)), Some(Skip::ReplacementWithoutCopy));
        assert_eq!(why(&decide(&own, &from_account)), Some(Skip::ReplacementWithoutCopy));
        assert!(matches!(decide(&own, &injected)[..], [StuckPod::Evict { .. }]), "injected at admission");
        let opted_out = BTreeMap::from([(POD_INJECTION_LABEL.to_owned(), POD_INJECTION_DISABLED.to_owned())]);
        let opted_out_namespaces = HashMap::from([("team-a", &opted_out)]);
        let in_opted_out = stuck_pods(&credential(), [&own], &opted_out_namespaces, |_| true, &[], &injected);
        assert_eq!(why(&in_opted_out), Some(Skip::ReplacementWithoutCopy), "its namespace opted out of injection");

        // A list longer than the cache keeps: the replacement's pull secrets cannot be told.
        let long = pod("team-a", "web", "ImagePullBackOff", Some("Job"), &["own", trim::LIST_CUT]);
        assert_eq!(why(&decide(&long, &injected)), Some(Skip::LongList));

        let without_list = pod("team-a", "web", "ImagePullBackOff", Some("Job"), &[]);
        assert!(matches!(decide(&without_list, &from_account)[..], [StuckPod::Evict { .. }]), "the account lists it");
        assert_eq!(why(&decide(&without_list, &not_injected)), Some(Skip::ReplacementWithoutCopy));
    }
}
