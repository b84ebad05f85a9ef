//! The reconciling controller behind `regcred-operator run`.
//!
//! One reconcile per RegistryCredential: it reads the caches (namespaces, the ServiceAccounts,
//! the managed Secrets, the source Secrets), asks the pure [`plan`] what should change, and
//! writes only that, namespaces concurrently. Watches on every kind map each event back to the
//! RegistryCredentials it concerns, so drift is repaired as it happens; a periodic resync is the
//! safety net and writes nothing when converged.

mod contest;
mod context;
mod ownership;
mod plan;
mod reason;
mod reconcile;
mod recovery;
mod source;
mod status;
mod trim;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{info, warn};

use context::{Backoff, Context};
pub(crate) use context::{Settings, Stores};
pub(crate) use ownership::FIELD_MANAGER;
use ownership::{AddedPullSecrets, managed_selector};
pub(crate) use reason::Reason;

use crate::crd::RegistryCredential;
use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub(crate) enum Error {
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("looking for Secrets of the copy's name: {0}")]
    FindSameNamedSecrets(#[source] kube::Error),
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
/// Objects are trimmed to what the planner reads, and only those `keep` accepts enter the cache
/// (one that stops being accepted leaves it as if deleted). The watch retries with its own
/// backoff and its errors stop here: the controller pauses all of its triggers after any error
/// it sees, so one watch's hiccup would delay every other.
fn cached_watch<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    trim_object: fn(&mut K),
    keep: fn(&K) -> bool,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
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
    (reader, stream)
}

fn keep_all<K>(_: &K) -> bool {
    true
}

/// The caches and the controller; `run` drives them until `shutdown` resolves.
pub(crate) struct Operator {
    controller: Controller<RegistryCredential>,
    context: Arc<Context>,
}

impl Operator {
    pub(crate) fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Operator {
        let mut credential_watch = watcher::Config::default();
        if let Some(selector) = &settings.credential_selector {
            credential_watch = credential_watch.labels(selector);
        }
        let credentials: Api<RegistryCredential> = Api::all(client.clone());
        let controller = Controller::new(credentials, credential_watch)
            .with_config(controller::Config::default().concurrency(4))
            .trigger_backoff(watch_backoff());
        let (stores, events) = watch_related(&client, &settings, controller.store());
        let controller = events.trigger(controller, &stores.credentials);
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "regcred-operator".into(), instance: instance_name() },
        );
        // Reconciles asked for by other reconciles: the next claimant of a name whose holder left.
        let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
        let controller = controller.reconcile_on(retriggered);
        let context = Arc::new(Context {
            client,
            settings,
            stores,
            recorder,
            metrics,
            backoff: Backoff::default(),
            contests: Default::default(),
            evictions: Default::default(),
            retrigger,
        });
        Operator { controller, context }
    }

    /// The caches, for readiness checks.
    pub(crate) fn stores(&self) -> Stores {
        self.context.stores.clone()
    }

    /// Runs until `shutdown` resolves, then lets in-flight reconciles finish.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        info!(sources = ?self.context.settings.source_namespaces, "controller starting");
        self.controller
            .graceful_shutdown_on(shutdown)
            .run(reconcile::reconcile, reconcile::error_policy, self.context)
            .for_each(|result| async move {
                if let Err(error) = result {
                    match error {
                        controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                        other => warn!(error = %other, "controller"),
                    }
                }
            })
            .await;
        info!("controller stopped");
    }
}

type Events<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// What happens to the objects a RegistryCredential's outcome depends on.
struct RelatedEvents {
    namespaces: Events<Namespace>,
    service_accounts: Events<ServiceAccount>,
    managed_secrets: Events<PartialObjectMeta<Secret>>,
    pods: Events<Pod>,
    sources: Events<Secret>,
}

/// Starts the watches that fill the caches, one per kind, each trimmed to what the operator reads.
fn watch_related(
    client: &Client,
    settings: &Settings,
    credentials: Store<RegistryCredential>,
) -> (Stores, RelatedEvents) {
    let all = watcher::Config::default();
    let (namespaces, namespace_events) =
        cached_watch(watcher(Api::<Namespace>::all(client.clone()), all.clone()), trim::namespace, keep_all);
    let (service_accounts, account_events) =
        cached_watch(watcher(Api::<ServiceAccount>::all(client.clone()), all.clone()), trim::service_account, keep_all);
    // Copies by metadata alone: whatever a tenant labels as ours, no payload is ever transferred.
    let (managed_secrets, managed_events) = cached_watch(
        watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), all.clone().labels(&managed_selector())),
        trim::managed_secret,
        trim::is_controlled_by_a_credential,
    );
    // Pods waiting to start, for recovering those stuck without the copy (evictStuckPods).
    let (pods, pod_events) = cached_watch(
        watcher(Api::<Pod>::all(client.clone()), all.clone().fields("status.phase=Pending")),
        trim::pending_pod,
        keep_all,
    );
    let mut source_namespaces = std::collections::BTreeMap::new();
    let mut source_events = Vec::new();
    for namespace in &settings.source_namespaces {
        let (store, events) = cached_watch(
            watcher(Api::<Secret>::namespaced(client.clone(), namespace), all.clone()),
            trim::source_secret,
            keep_all,
        );
        source_namespaces.insert(namespace.clone(), store);
        source_events.push(events.boxed());
    }
    let stores = Stores { credentials, namespaces, managed_secrets, service_accounts, pods, source_namespaces };
    let events = RelatedEvents {
        namespaces: namespace_events.boxed(),
        service_accounts: account_events.boxed(),
        managed_secrets: managed_events.boxed(),
        pods: pod_events.boxed(),
        sources: stream::select_all(source_events).boxed(),
    };
    (stores, events)
}

impl RelatedEvents {
    /// Maps each event to the RegistryCredentials it concerns, so drift is repaired as it happens.
    fn trigger(
        self,
        controller: Controller<RegistryCredential>,
        credentials: &Store<RegistryCredential>,
    ) -> Controller<RegistryCredential> {
        let (all, by_account, by_copy, by_pod, by_source) =
            (credentials.clone(), credentials.clone(), credentials.clone(), credentials.clone(), credentials.clone());
        controller
            // A namespace appearing, changing labels or terminating concerns every credential.
            .watches_stream(self.namespaces, move |_: Namespace| refs(&all, |_| true))
            .watches_stream(self.service_accounts, move |account: ServiceAccount| {
                let name = account.name_any();
                refs(&by_account, |c| {
                    c.spec.service_accounts.names.iter().any(|n| n == "*" || *n == name) || touched_by(c, &account)
                })
            })
            // The credential that controls the copy, when this instance manages it (another
            // instance may run with another selector).
            .watches_stream(self.managed_secrets, move |secret: PartialObjectMeta<Secret>| {
                let owner =
                    secret.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.name.clone());
                owner.map(|name| ObjectRef::new(&name)).filter(|r| by_copy.get(r).is_some())
            })
            // A Pod failing to pull concerns the credentials that recover stuck Pods.
            .watches_stream(self.pods, move |pod: Pod| {
                if recovery::pull_failed(&pod) { refs(&by_pod, |c| c.spec.evict_stuck_pods) } else { Vec::new() }
            })
            .watches_stream(self.sources, move |secret: Secret| {
                let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                refs(&by_source, |c| {
                    c.spec.source.secret_ref.as_ref().is_some_and(|r| r.namespace == namespace && r.name == name)
                })
            })
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

/// Whether the operator recorded an entry of this credential on the ServiceAccount (so that
/// an account leaving the selection is cleaned).
fn touched_by(credential: &RegistryCredential, account: &ServiceAccount) -> bool {
    AddedPullSecrets::of(account).contains(&credential.spec.secret_name)
}

fn instance_name() -> Option<String> {
    std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok())
}
