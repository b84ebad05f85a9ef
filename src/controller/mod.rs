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
mod error;
#[cfg(test)]
mod fixture;
mod mint;
mod namespace;
mod namespace_cache;
mod ownership;
mod plan;
mod queue;
mod reconcile;
mod recovery;
mod source;
mod state;
mod status;
mod trim;
mod watch;
mod write;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates};
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use context::{Concerned, Context, ResolvedSources};
pub(crate) use context::{Settings, Stores};
pub(crate) use ownership::FIELD_MANAGER;
use state::Backoff;
use watch::{watch_backoff, watch_related};

use crate::crd::RegistryCredential;
use crate::metrics::Metrics;

/// The caches and both controllers; `run` drives them until `shutdown` resolves.
pub(crate) struct Operator {
    credentials: Controller<RegistryCredential>,
    /// What asks for namespace reconciles: one namespace, or every one.
    namespace_triggers: BoxStream<'static, Trigger>,
    context: Arc<Context>,
}

/// Why namespaces are to be reconciled.
enum Trigger {
    One(cache::Name),
    /// A change that concerns more than one namespace, or the resync (every namespace).
    Many(Concerned),
}

impl Operator {
    pub(crate) fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Operator {
        // Every namespace is reconciled when this channel yields: a credential-wide change.
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let (stores, watches) = watch_related(&client, &settings, wake.clone());
        let wake_for_sources = wake.clone();
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
        let (namespaces, reserved) = (stores.namespaces.clone(), settings.source_namespaces.clone());
        let credentials = credentials
            // A Pod failing to pull concerns the credentials that recover stuck Pods and select it.
            .watches_stream(watches.pods, move |pod: Pod| {
                let namespace = pod.namespace().unwrap_or_default();
                let Some(labels) = namespaces.get(&namespace).map(|n| n.labels) else {
                    return Vec::new();
                };
                refs(&by_pod, |c| recovery::concerns(c, &pod, &labels, &reserved))
            })
            // A source Secret concerns the credentials reading it, and the namespaces they select
            // or hold a copy in.
            .watches_stream(watches.sources, move |secret: PartialObjectMeta<Secret>| {
                let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                let reads = |c: &RegistryCredential| {
                    c.spec.source.secret_ref.as_ref().is_some_and(|r| r.namespace == namespace && r.name == name)
                };
                let readers: Vec<cache::Name> = by_source
                    .state()
                    .iter()
                    .filter(|c| reads(c))
                    .map(|c| cache::intern(c.metadata.uid.as_deref().unwrap_or_default()))
                    .collect();
                if !readers.is_empty() {
                    let _ = wake.unbounded_send(Concerned::OfCredentials(readers));
                }
                refs(&by_source, reads)
            });
        // Reconciles asked for by other reconciles: a credential whose namespaces' outcomes
        // changed, or the next claimant of a name whose holder left.
        let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
        let credentials = credentials.reconcile_on(retriggered);
        let namespace_triggers =
            namespace_triggers([watches.namespaces, watches.accounts, watches.copies], woken, settings.resync);
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "regcred-operator".into(), instance: instance_name() },
        );
        let context = Arc::new(Context {
            client,
            settings,
            stores,
            recorder,
            sources: ResolvedSources::new(wake_for_sources, metrics.clone()),
            metrics,
            backoff: Backoff::default(),
            namespace_backoff: Backoff::default(),
            outcomes: Default::default(),
            contests: Default::default(),
            evictions: Default::default(),
            write_gates: Default::default(),
            retrigger,
        });
        Operator { credentials, namespace_triggers, context }
    }

    /// The caches, for readiness checks.
    pub(crate) fn stores(&self) -> Stores {
        self.context.stores.clone()
    }

    /// Runs until `shutdown` resolves, then lets in-flight reconciles finish. A controller that
    /// ends before (a panic) ends the other at once and is returned as an error: the process must
    /// exit so that its Deployment restarts it and a standby takes the Lease. Dropping the
    /// returned future aborts every reconcile in flight (the Lease is lost: not one more write).
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) -> Result<(), Ended> {
        info!(sources = ?self.context.settings.source_namespaces, "controller starting");
        let shutdown = shutdown.shared();
        let credentials = self
            .credentials
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile::reconcile, reconcile::error_policy, self.context.clone())
            .for_each(|result| async move { log_controller_error(result.err()) });
        let namespaces = run_namespaces(self.namespace_triggers, self.context, shutdown.clone());
        // Each controller in a task of its own: the credential controller's plan over every
        // namespace never holds up namespace reconciles, and the two use both cores.
        let controllers = [("credential", credentials.boxed()), ("namespace", namespaces.boxed())];
        let ended = supervise(controllers, || shutdown.clone().now_or_never().is_some()).await;
        info!("controller stopped");
        ended
    }
}

/// The namespace controller: its triggers fill the queue, `--concurrency` workers drain it, until
/// `shutdown` resolves and the reconciles in flight end. Ends early only if the triggers do (the
/// watches never end on their own).
async fn run_namespaces(
    triggers: BoxStream<'static, Trigger>,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let queue = Arc::new(queue::WorkQueue::default());
    let workers = queue::run_workers(queue.clone(), context.settings.concurrency, {
        let context = context.clone();
        move |taken| namespace::reconcile(taken, context.clone())
    });
    let namespaces = context.stores.namespaces.clone();
    let fill = triggers.for_each(|trigger| {
        match trigger {
            Trigger::One(name) => queue.ask(name),
            Trigger::Many(Concerned::Every) => queue.ask_all(namespaces.names()),
            Trigger::Many(Concerned::OfCredentials(uids)) => queue.ask_all(namespace::concerned_by(&context, &uids)),
        }
        futures::future::ready(())
    });
    let until_shutdown = async {
        tokio::select! {
            () = fill => warn!("the namespace triggers ended"),
            () = queue.run_retries() => {}
            () = shutdown => {}
        }
        queue.close();
    };
    futures::join!(until_shutdown, workers);
}

/// What asks for namespace reconciles: the namespaces named by the watches, those a change
/// concerns (every one for a credential-wide change, a credential's for its source), and every
/// namespace at each resync (one timer for the whole cluster: a converged namespace holds no
/// timer of its own).
fn namespace_triggers(
    named: [BoxStream<'static, cache::Name>; 3],
    concerned: impl futures::Stream<Item = Concerned> + Send + 'static,
    resync: std::time::Duration,
) -> BoxStream<'static, Trigger> {
    let resync = ticks_every(resync).map(|()| Concerned::Every);
    let every = stream::select(concerned, resync).map(Trigger::Many);
    stream::select(stream::select_all(named.map(|names| names.map(Trigger::One).boxed())), every).boxed()
}

/// Yields every `period`, the first time one period from now.
fn ticks_every(period: std::time::Duration) -> impl futures::Stream<Item = ()> + Send {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some(((), interval))
    })
}

/// A controller ended while the operator was still meant to run.
#[derive(Debug, Error)]
#[error("the {controller} controller ended: {how}")]
pub(crate) struct Ended {
    controller: &'static str,
    how: String,
}

/// Runs each controller in a task of its own until all end; the first to end while `stopping`
/// says no ends the rest at once. Dropping the future aborts them all.
async fn supervise(
    controllers: impl IntoIterator<Item = (&'static str, BoxFuture<'static, ()>)>,
    stopping: impl Fn() -> bool,
) -> Result<(), Ended> {
    let mut tasks = JoinSet::new();
    let mut names = HashMap::new();
    for (name, controller) in controllers {
        names.insert(tasks.spawn(controller).id(), name);
    }
    while let Some(ended) = tasks.join_next_with_id().await {
        if stopping() {
            continue;
        }
        let ended = match ended {
            Ok((id, ())) => Ended { controller: names[&id], how: "its event stream stopped".to_owned() },
            Err(error) if error.is_panic() => Ended { controller: names[&error.id()], how: "it panicked".to_owned() },
            Err(error) => Ended { controller: names[&error.id()], how: error.to_string() },
        };
        tasks.shutdown().await;
        return Err(ended);
    }
    Ok(())
}

fn log_controller_error<E: std::error::Error, Q: std::error::Error>(error: Option<controller::Error<E, Q>>) {
    match error {
        None | Some(controller::Error::ReconcilerFailed(..)) => {} // logged by the error policies
        // A namespace deleted after its reconcile was asked for: nothing left to do.
        Some(controller::Error::ObjectNotFound(object)) => debug!(%object, "gone before its reconcile"),
        Some(other) => warn!(error = %other, "controller"),
    }
}

/// Whether the cluster serves MutatingAdmissionPolicy, which the shipped admission policy needs:
/// `admissionregistration.k8s.io/v1` (Kubernetes 1.36+), or `v1beta1` where 1.34 / 1.35 enable
/// it (the chart renders whichever is served). Discovery needs no RBAC.
pub(crate) async fn admission_policies_served(client: &Client) -> bool {
    for version in ["admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1"] {
        match client.list_api_group_resources(version).await {
            Ok(resources) if resources.resources.iter().any(|r| r.name == "mutatingadmissionpolicies") => return true,
            Ok(_) => {}
            // 404: this version is not served at all.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                warn!(%error, "could not tell whether MutatingAdmissionPolicy is served; assuming not");
                return false;
            }
        }
    }
    false
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
    use std::time::Duration;

    use super::*;

    fn forever() -> BoxFuture<'static, ()> {
        futures::future::pending().boxed()
    }

    /// A controller that runs for ever, and what tells when it was dropped (an error on receipt).
    fn runs_until_aborted() -> (BoxFuture<'static, ()>, tokio::sync::oneshot::Receiver<()>) {
        let (aborted, dropped) = tokio::sync::oneshot::channel::<()>();
        let controller = async move {
            let _held_until_aborted = aborted;
            futures::future::pending::<()>().await;
        };
        (controller.boxed(), dropped)
    }

    #[tokio::test]
    async fn a_controller_that_panics_ends_the_others_and_is_reported() {
        let (watched, dropped) = runs_until_aborted();
        let controllers =
            [("namespace", async { panic!("a bug") }.boxed()), ("credential", watched), ("other", forever())];
        let ended = tokio::time::timeout(Duration::from_secs(5), supervise(controllers, || false)).await;
        let error = ended.expect("supervise returns at once").expect_err("a panic is an error");
        assert_eq!(error.to_string(), "the namespace controller ended: it panicked");
        assert!(dropped.await.is_err(), "the other controllers were aborted");
    }

    #[tokio::test]
    async fn controllers_that_end_at_shutdown_are_no_error() {
        let controllers = [("credential", async {}.boxed()), ("namespace", async {}.boxed())];
        assert!(supervise(controllers, || true).await.is_ok());
        let controllers = [("credential", async {}.boxed()), ("namespace", forever())];
        let ended = tokio::time::timeout(Duration::from_secs(5), supervise(controllers, || false)).await;
        assert_eq!(
            ended.unwrap().unwrap_err().to_string(),
            "the credential controller ended: its event stream stopped"
        );
    }

    #[tokio::test]
    async fn dropping_the_supervisor_aborts_every_controller() {
        let (watched, dropped) = runs_until_aborted();
        let supervisor = supervise([("credential", watched)], || false);
        let _ = tokio::time::timeout(Duration::from_millis(50), supervisor).await;
        assert!(dropped.await.is_err(), "the Lease is lost: nothing may run on");
    }
}
