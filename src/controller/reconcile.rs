//! The RegistryCredential reconciler: its finalizer, its status as the aggregate of every
//! namespace's outcome, the recovery of stuck Pods, and the cleanup when it is deleted. The
//! copies and entries themselves are written namespace by namespace ([`namespace`](super::namespace)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use super::cache::NamespaceObjects;
use super::context::{Context, cluster_state};
use super::error::{Error, Result};
use super::ownership::FINALIZER;
use super::plan::{ClusterState, NamespaceView, NamespaceWork, Planner, plan};
use super::status::{self, Aggregate, Clock};
use super::write::clean_up;
use crate::crd::RegistryCredential;

/// How often the status is refreshed while namespaces are still being written.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How long after an expiry change the credential is looked at again (the clock has passed it then).
const EXPIRY_WAKE_MARGIN: Duration = Duration::from_millis(500);

/// The controller's entry point for one RegistryCredential.
pub(crate) async fn reconcile(credential: Arc<RegistryCredential>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    if let Err(why) = ctx.wait_for_caches().await {
        status::record_caches_not_listed(&credential, &ctx, &why).await?;
        return Err(Error::CachesNotListed(why));
    }
    let api: Api<RegistryCredential> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, credential, |event| async {
        match event {
            Finalizer::Apply(credential) => sync(&credential, &ctx).await,
            Finalizer::Cleanup(credential) => cleanup(&credential, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(started.elapsed(), result.is_ok());
    result
}

/// Requeue after a failed reconcile, with a backoff per RegistryCredential.
pub(crate) fn error_policy(credential: Arc<RegistryCredential>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(credential = %credential.name_any(), %error, "reconcile failed");
    Action::requeue(ctx.backoff.next_delay(&credential.name_any()))
}

/// Runs `f` over the cluster state and a view of every cached namespace (CPU only: the cache is
/// locked for reading meanwhile). At tens of thousands of namespaces that takes milliseconds, so
/// the runtime first moves the worker's other tasks away: watches and probes are not held up.
fn over_every_namespace<R>(ctx: &Context, f: impl FnOnce(&ClusterState, Vec<NamespaceView>) -> R) -> R {
    tokio::task::block_in_place(|| over_every_namespace_now(ctx, f))
}

/// What a namespace without cached objects holds.
static NO_OBJECTS: NamespaceObjects = NamespaceObjects { accounts: Vec::new(), copies: Vec::new() };

fn over_every_namespace_now<R>(ctx: &Context, f: impl FnOnce(&ClusterState, Vec<NamespaceView>) -> R) -> R {
    let credentials = ctx.stores.credentials.state();
    let state = cluster_state(&credentials, &ctx.settings);
    let namespaces = ctx.stores.namespaces.read();
    let objects = ctx.stores.objects.read();
    let views = namespaces
        .values()
        .map(|namespace| NamespaceView { namespace, objects: objects.get(&namespace.name).unwrap_or(&NO_OBJECTS) })
        .collect();
    f(&state, views)
}

async fn sync(credential: &RegistryCredential, ctx: &Context) -> Result<Action> {
    let name = credential.name_any();
    let resolution =
        ctx.sources.resolve(credential, &ctx.client, &ctx.stores, &ctx.settings).await.map_err(Error::SourceRead)?;
    let source = resolution.as_ref().as_ref();
    if let Err(problem) = source {
        info!(credential = %name, reason = %problem.reason(), %problem, "source unusable; copies left as they are");
    }
    let started = Instant::now();
    let digest = source.ok().map(|s| s.digest.as_str());
    let plan = over_every_namespace(ctx, |state, views| plan(credential, state, views, digest));
    let planned = started.elapsed();
    let namespaces = &ctx.stores.namespaces;
    let failed = ctx.outcomes.failures(&name, |ns| namespaces.contains(ns));
    let pending = plan.work.iter().filter(|(ns, work)| !failed.contains_key(*ns) && !work.only_checks()).count();
    let written = ctx.outcomes.take_written(&name, pending > 0);

    let mut stuck_pods = None;
    if let (true, Ok(source)) = (credential.spec.evict_stuck_pods, &source) {
        // Only where the copy is in place does a recreated Pod find it.
        let in_place = |ns: &str| {
            plan.matched.contains(ns)
                && !plan.blocked.contains_key(ns)
                // A copy still to be verified may hold another payload: not in place yet.
                && !plan.work.contains_key(ns)
                && !failed.contains_key(ns)
        };
        stuck_pods = Some(super::recovery::recover(credential, ctx, source, in_place).await);
    }
    let aggregate = Aggregate {
        matched: &plan.matched,
        blocked: &plan.blocked,
        failed: &failed,
        pending,
        written,
        enforcing_accounts: &plan.enforcing_accounts,
    };
    status::publish(credential, ctx, &aggregate, source, stuck_pods).await?;
    debug!(
        credential = %name,
        matched = plan.matched.len(),
        pending,
        failed = failed.len(),
        written,
        plan_ms = planned.as_millis() as u64,
        "status"
    );
    let delay = if !failed.is_empty() || !plan.blocked.is_empty() || source.is_err() {
        let retry = failed.values().filter_map(|f| f.retry_after).min();
        let backoff = ctx.backoff.next_delay(&name);
        retry.map_or(backoff, |retry| retry.min(backoff))
    } else if pending > 0 {
        PROGRESS_INTERVAL
    } else {
        ctx.backoff.reset(&name);
        ctx.settings.resync
    };
    // The clock alone turns an expiring credential's status (the warning window, the expiry): wake
    // just past that moment.
    let clock = Clock::now(ctx.settings.expiry_warning);
    let wake = source.ok().and_then(|s| s.expiry).and_then(|expiry| clock.next_expiry_change(&expiry));
    let delay = wake.map_or(delay, |wake| (wake + EXPIRY_WAKE_MARGIN).min(delay));
    // A minted credential is refreshed (or its failed mint retried) by its own reconcile.
    let mint = ctx.sources.next_mint(credential).map(|at| at.saturating_duration_since(Instant::now()));
    Ok(Action::requeue(mint.map_or(delay, |mint| mint.min(delay))))
}

async fn cleanup(credential: &RegistryCredential, ctx: &Context) -> Result<Action> {
    // Once the namespaces' writes admitted before the deletion have ended: none comes after.
    let uid = credential.metadata.uid.as_deref().unwrap_or_default();
    let _closed = ctx.write_gates.close(uid).await;
    let credentials = ctx.stores.credentials.state();
    let state = cluster_state(&credentials, &ctx.settings);
    let planner = Planner::new(credential, &state);
    // Planned from the caches as they are, borrowed (the locks in over_every_namespace's order).
    let plan = |name: &str| {
        let namespaces = ctx.stores.namespaces.read();
        let Some(namespace) = namespaces.get(name) else { return NamespaceWork::default() };
        let objects = ctx.stores.objects.read();
        let objects = objects.get(name).unwrap_or(&NO_OBJECTS);
        planner.cleanup(NamespaceView { namespace, objects })
    };
    // The namespaces with work, found off the runtime's workers (milliseconds at tens of
    // thousands); each is planned again just before its writes, so no plan is held meanwhile.
    let with_work = tokio::task::block_in_place(|| {
        let names = ctx.stores.namespaces.names();
        names.into_iter().filter(|name| !plan(name).is_empty()).collect()
    });
    let (namespaces, failures) = clean_up(credential, ctx, with_work, plan).await;
    if !failures.is_empty() {
        // The finalizer stays until every copy is gone, so a retry finishes the job.
        status::record_cleanup_failure(credential, ctx, &failures).await?;
        let failures: Vec<String> = failures.iter().map(|(ns, f)| format!("{ns}: {}", f.message)).collect();
        return Err(Error::Cleanup(failures.join("; ")));
    }
    status::record_cleanup(credential, ctx, namespaces).await;
    ctx.outcomes.forget(&credential.name_any());
    ctx.backoff.reset(&credential.name_any());
    ctx.sources.forget(credential);
    ctx.write_gates.forget(uid);
    // Whoever lost the secret name to this credential takes the namespaces over as soon as this
    // one is gone (its removal reconciles every namespace); its status follows here.
    for rival in ctx.stores.credentials.state() {
        if rival.spec.secret_name == credential.spec.secret_name && rival.metadata.uid != credential.metadata.uid {
            let _ = ctx.retrigger.unbounded_send(ObjectRef::from_obj(rival.as_ref()));
        }
    }
    Ok(Action::await_change())
}
