//! The reconciling controllers behind `regcred-operator run`.
//!
//! Two controllers share the caches. The namespace controller reconciles one namespace at a time
//! for every RegistryCredential: it asks the pure [`plan`] what that namespace needs and writes
//! only that, so an event in a namespace costs that namespace. The credential controller keeps
//! each RegistryCredential's finalizer, status (the aggregate of the namespaces' outcomes) and
//! stuck-Pod recovery, and cleans up when it is deleted. A credential-wide change (its spec, its
//! source Secret) reconciles every namespace; a periodic resync is the safety net and writes
//! nothing when converged.

mod cache;
mod contest;
mod context;
mod namespace;
mod ownership;
mod plan;
mod reason;
mod reconcile;
mod recovery;
mod source;
mod status;
mod trim;
mod write;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{Predicate, predicates};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{debug, info, warn};

use cache::{Account, Copy, ObjectCache};
use context::{Backoff, Context};
pub(crate) use context::{Settings, Stores};
pub(crate) use ownership::FIELD_MANAGER;
use ownership::managed_selector;
pub(crate) use reason::Reason;

use crate::crd::RegistryCredential;
use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub(crate) enum Error {
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("cleanup incomplete: {0}")]
    Cleanup(String),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a broken watch waits before it retries. The default grows to 30 s and stays there
/// for two minutes, so after an API server restart the operator would sit out half a minute of
/// events; a 5 s cap resumes within seconds, at the cost of a few more retries during an outage.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(builder.into(), Duration::from_secs(30))
}

/// A watch feeding a cache, yielding each object it sees so the controller can map it.
///
/// Objects are trimmed to what the operator reads, and only those `keep` accepts enter the cache
/// (one that stops being accepted leaves it as if deleted). `inspect` sees every event first. The
/// returned flag turns true once the first list is in the cache: a reflector store's own
/// readiness wakes only one waiter at a time, and every reconcile waits for the caches. The
/// watch retries with its own backoff and its errors stop here: a controller pauses all of its
/// triggers after any error it sees, so one watch's hiccup would delay every other.
fn cached_watch<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    trim_object: fn(&mut K),
    keep: fn(&K) -> bool,
    mut inspect: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> (Store<K>, tokio::sync::watch::Receiver<bool>, impl Stream<Item = Result<K, watcher::Error>> + Send)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (listed, is_listed) = tokio::sync::watch::channel(false);
    let stream = events
        .backoff(watch_backoff())
        .modify(trim_object)
        .filter_map(move |event| async move {
            match event {
                Ok(watcher::Event::Apply(object)) if !keep(&object) => Some(Ok(watcher::Event::Delete(object))),
                Ok(watcher::Event::InitApply(object)) if !keep(&object) => None,
                other => Some(other),
            }
        })
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                if matches!(event, watcher::Event::InitDone) {
                    listed.send_replace(true);
                }
                inspect(event);
            }
        })
        .touched_objects()
        .filter_map(|event| async move {
            match event {
                Ok(object) => Some(Ok(object)),
                Err(error) => {
                    warn!(kind = %K::kind(&()), %error, "watch interrupted; retrying");
                    None
                }
            }
        });
    (reader, is_listed, stream)
}

fn keep_all<K>(_: &K) -> bool {
    true
}

fn keep_as_is<K>(_: &mut K) {}

fn ignore<K>(_: &watcher::Event<K>) {}

/// The caches and both controllers; `run` drives them until `shutdown` resolves.
pub(crate) struct Operator {
    credentials: Controller<RegistryCredential>,
    namespaces: Controller<Namespace>,
    context: Arc<Context>,
}

impl Operator {
    pub(crate) fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Operator {
        // Every namespace is reconciled when this channel yields: a credential-wide change.
        let (every_namespace, every_namespace_trigger) = futures::channel::mpsc::unbounded();
        let (stores, watches) = watch_related(&client, &settings, every_namespace.clone());
        // Its own status writes do not wake a credential's reconcile: only its spec (and deletion,
        // which bumps the generation) and its finalizers do. Status refreshes come from the
        // namespaces' outcomes and from its own requeue.
        let own_changes = watches
            .credentials
            .predicate_filter(predicates::generation.combine(predicates::finalizers), Default::default());
        let credentials = Controller::for_stream(own_changes, stores.credentials.clone())
            .with_config(controller::Config::default().concurrency(4))
            .trigger_backoff(watch_backoff());
        let (by_pod, by_source) = (stores.credentials.clone(), stores.credentials.clone());
        let credentials = credentials
            // A Pod failing to pull concerns the credentials that recover stuck Pods.
            .watches_stream(watches.pods, move |pod: Pod| {
                if recovery::pull_failed(&pod) { refs(&by_pod, |c| c.spec.evict_stuck_pods) } else { Vec::new() }
            })
            // A source Secret concerns the credentials reading it, and every namespace's copy.
            .watches_stream(watches.sources, move |secret: Secret| {
                let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                let readers = refs(&by_source, |c| {
                    c.spec.source.secret_ref.as_ref().is_some_and(|r| r.namespace == namespace && r.name == name)
                });
                if !readers.is_empty() {
                    let _ = every_namespace.unbounded_send(());
                }
                readers
            });
        // Reconciles asked for by other reconciles: a credential whose namespaces' outcomes
        // changed, or the next claimant of a name whose holder left.
        let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
        let credentials = credentials.reconcile_on(retriggered);
        let concurrency = u16::try_from(settings.concurrency).unwrap_or(u16::MAX);
        let namespaces = Controller::for_stream(watches.namespaces, stores.namespaces.clone())
            .with_config(controller::Config::default().concurrency(concurrency))
            .trigger_backoff(watch_backoff())
            .reconcile_on(watches.accounts.map(|namespace| ObjectRef::new(&namespace)))
            .reconcile_on(watches.copies.map(|namespace| ObjectRef::new(&namespace)))
            .reconcile_all_on(every_namespace_trigger);
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "regcred-operator".into(), instance: instance_name() },
        );
        let context = Arc::new(Context {
            client,
            settings,
            stores,
            recorder,
            metrics,
            backoff: Backoff::default(),
            namespace_backoff: Backoff::default(),
            sources: Default::default(),
            outcomes: Default::default(),
            contests: Default::default(),
            evictions: Default::default(),
            retrigger,
        });
        Operator { credentials, namespaces, context }
    }

    /// The caches, for readiness checks.
    pub(crate) fn stores(&self) -> Stores {
        self.context.stores.clone()
    }

    /// Runs until `shutdown` resolves, then lets in-flight reconciles finish.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        info!(sources = ?self.context.settings.source_namespaces, "controller starting");
        let shutdown = shutdown.shared();
        let credentials = self
            .credentials
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile::reconcile, reconcile::error_policy, self.context.clone())
            .for_each(|result| async move { log_controller_error(result.err()) });
        let namespaces = self
            .namespaces
            .graceful_shutdown_on(shutdown)
            .run(namespace::reconcile, namespace::error_policy, self.context)
            .for_each(|result| async move { log_controller_error(result.err()) });
        // Each controller in a task of its own: the credential controller's plan over every
        // namespace never holds up namespace reconciles, and the two use both cores.
        let (credentials, namespaces) = futures::join!(tokio::spawn(credentials), tokio::spawn(namespaces));
        for stopped in [credentials, namespaces] {
            if let Err(error) = stopped {
                warn!(%error, "controller task failed");
            }
        }
        info!("controller stopped");
    }
}

fn log_controller_error<E: std::error::Error, Q: std::error::Error>(error: Option<controller::Error<E, Q>>) {
    match error {
        None | Some(controller::Error::ReconcilerFailed(..)) => {} // logged by the error policies
        // A namespace deleted after its reconcile was asked for: nothing left to do.
        Some(controller::Error::ObjectNotFound(object)) => debug!(%object, "gone before its reconcile"),
        Some(other) => warn!(error = %other, "controller"),
    }
}

type Events<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// What the watches yield: the objects each controller is triggered by.
struct Watches {
    credentials: Events<RegistryCredential>,
    namespaces: Events<Namespace>,
    /// Namespaces whose ServiceAccounts changed.
    accounts: futures::stream::BoxStream<'static, cache::Name>,
    /// Namespaces whose copies changed.
    copies: futures::stream::BoxStream<'static, cache::Name>,
    /// Pending Pods.
    pods: Events<Pod>,
    /// Secrets of the trusted source namespaces.
    sources: Events<Secret>,
}

/// Starts the watches that fill the caches, one per kind, each trimmed to what the operator reads.
fn watch_related(client: &Client, settings: &Settings, every_namespace: UnboundedSender<()>) -> (Stores, Watches) {
    let all = watcher::Config::default();
    let mut credential_watch = all.clone();
    if let Some(selector) = &settings.credential_selector {
        credential_watch = credential_watch.labels(selector);
    }
    let mut changes = CredentialChanges::default();
    let fan_out = every_namespace.clone();
    let (credentials, credentials_listed, credential_events) = cached_watch(
        watcher(Api::<RegistryCredential>::all(client.clone()), credential_watch),
        keep_as_is,
        keep_all,
        move |event| {
            if changes.credential_wide(event) {
                debug!("a credential-wide change: every namespace is reconciled");
                let _ = fan_out.unbounded_send(());
            }
        },
    );
    let (namespaces, namespaces_listed, namespace_events) =
        cached_watch(watcher(Api::<Namespace>::all(client.clone()), all.clone()), trim::namespace, keep_all, ignore);
    let objects = Arc::new(ObjectCache::default());
    let accounts = cache::feed::<Account>(
        objects.clone(),
        watcher(Api::<ServiceAccount>::all(client.clone()), all.clone()).backoff(watch_backoff()),
    );
    // Copies by metadata alone: whatever a tenant labels as ours, no payload is ever transferred.
    let copies = cache::feed::<Copy>(
        objects.clone(),
        watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), all.clone().labels(&managed_selector()))
            .backoff(watch_backoff()),
    );
    // Pods waiting to start, for recovering those stuck without the copy (evictStuckPods).
    let (pods, pods_listed, pod_events) = cached_watch(
        watcher(Api::<Pod>::all(client.clone()), all.clone().fields("status.phase=Pending")),
        trim::pending_pod,
        keep_all,
        ignore,
    );
    let mut listed = vec![credentials_listed, namespaces_listed, pods_listed];
    let mut source_namespaces = std::collections::BTreeMap::new();
    let mut source_events = Vec::new();
    for namespace in &settings.source_namespaces {
        let (store, store_listed, events) = cached_watch(
            watcher(Api::<Secret>::namespaced(client.clone(), namespace), all.clone()),
            trim::source_secret,
            keep_all,
            ignore,
        );
        source_namespaces.insert(namespace.clone(), store);
        listed.push(store_listed);
        source_events.push(events.boxed());
    }
    let stores = Stores { credentials: credentials.clone(), namespaces, objects, pods, source_namespaces, listed };
    let watches = Watches {
        credentials: credential_events.boxed(),
        namespaces: namespace_events.boxed(),
        accounts: accounts.boxed(),
        copies: copies.boxed(),
        pods: pod_events.boxed(),
        sources: stream::select_all(source_events).boxed(),
    };
    (stores, watches)
}

/// Tells a credential-wide change (one that every namespace's plan depends on) from a status
/// write: an active credential (finalizer in place, not being deleted) that is new, newly active
/// or of a new generation, or a credential gone (its rivals may take the name over).
#[derive(Default)]
struct CredentialChanges {
    /// The generation of each active credential, by UID.
    active: HashMap<String, Option<i64>>,
}

impl CredentialChanges {
    fn credential_wide(&mut self, event: &watcher::Event<RegistryCredential>) -> bool {
        match event {
            watcher::Event::Apply(credential) | watcher::Event::InitApply(credential) => {
                let uid = credential.metadata.uid.clone().unwrap_or_default();
                if !ownership::is_active(credential) {
                    self.active.remove(&uid);
                    return false;
                }
                let generation = credential.metadata.generation;
                self.active.insert(uid, generation) != Some(generation) && matches!(event, watcher::Event::Apply(_))
            }
            watcher::Event::Delete(credential) => {
                self.active.remove(credential.metadata.uid.as_deref().unwrap_or_default());
                true
            }
            watcher::Event::Init => false,
            // After a (re)list, whatever changed meanwhile.
            watcher::Event::InitDone => true,
        }
    }
}

/// Whether the cluster serves `admissionregistration.k8s.io/v1` MutatingAdmissionPolicy, which
/// the shipped admission policy needs (Kubernetes 1.36+). Discovery needs no RBAC.
pub(crate) async fn admission_policies_served(client: &Client) -> bool {
    match client.list_api_group_resources("admissionregistration.k8s.io/v1").await {
        Ok(resources) => resources.resources.iter().any(|r| r.name == "mutatingadmissionpolicies"),
        Err(error) => {
            warn!(%error, "could not tell whether MutatingAdmissionPolicy is served; assuming not");
            false
        }
    }
}

/// References to the credentials in `store` that `filter` keeps.
fn refs(
    store: &Store<RegistryCredential>,
    filter: impl Fn(&RegistryCredential) -> bool,
) -> Vec<ObjectRef<RegistryCredential>> {
    store.state().iter().filter(|c| filter(c)).map(|c| ObjectRef::from_obj(c.as_ref())).collect()
}

fn instance_name() -> Option<String> {
    std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn credential(generation: i64, finalizer: bool, deleting: bool) -> RegistryCredential {
        let mut credential: RegistryCredential = serde_json::from_value(json!({
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": "rc", "uid": "u", "generation": generation},
            "spec": {"source": {"secretRef": {"namespace": "regcred-system", "name": "src"}}},
        }))
        .unwrap();
        if finalizer {
            credential.metadata.finalizers = Some(vec![ownership::FINALIZER.to_owned()]);
        }
        if deleting {
            credential.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        }
        credential
    }

    #[test]
    fn only_changes_of_an_active_credential_and_its_removal_reconcile_every_namespace() {
        let mut changes = CredentialChanges::default();
        let apply = |c| watcher::Event::Apply(c);
        assert!(
            !changes.credential_wide(&apply(credential(1, false, false))),
            "no finalizer yet: nothing written for it"
        );
        assert!(changes.credential_wide(&apply(credential(1, true, false))), "active now");
        assert!(!changes.credential_wide(&apply(credential(1, true, false))), "a status write");
        assert!(changes.credential_wide(&apply(credential(2, true, false))), "a spec change");
        assert!(!changes.credential_wide(&apply(credential(3, true, true))), "being deleted: its cleanup works");
        assert!(changes.credential_wide(&watcher::Event::Delete(credential(3, false, true))), "gone: rivals take over");
        assert!(!changes.credential_wide(&watcher::Event::InitApply(credential(1, true, false))), "listed");
        assert!(changes.credential_wide(&watcher::Event::InitDone), "after a (re)list");
    }
}
