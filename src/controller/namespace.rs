//! The namespace reconciler: one namespace, every RegistryCredential. A change in a namespace (a
//! ServiceAccount appearing, a copy deleted, a label edited) costs that namespace's plan and
//! writes, whatever the size of the cluster; a credential-wide change (a rotation, a selector
//! edit) reconciles every namespace, as many at once as `--concurrency` allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use super::cache::Name;
use super::context::{Context, cluster_state};
use super::error::{Error, Result};
use super::ownership::is_active;
use super::plan::{NamespacePlan, NamespaceView, Planner};
use super::queue::Taken;
use super::write::{Writing, sync_namespace};
use crate::crd::selection::selects_namespace_reserving;

/// Reconciles the namespace taken from the queue; returns when to retry it, if it failed.
pub(crate) async fn reconcile(taken: Taken, ctx: Arc<Context>) -> Option<Duration> {
    let waited = taken.asked_at.elapsed();
    let started = Instant::now();
    let retry = match reconcile_namespace(&taken.name, &ctx).await {
        Ok(retry) => retry,
        Err(error) => {
            warn!(namespace = %taken.name, %error, "namespace reconcile failed");
            Some(ctx.namespace_backoff.next_delay(&taken.name))
        }
    };
    ctx.metrics.namespace_reconciled(waited);
    debug!(
        namespace = %taken.name,
        waited_ms = waited.as_secs_f64() * 1000.0,
        took_ms = started.elapsed().as_secs_f64() * 1000.0,
        failed = retry.is_some(),
        "namespace reconciled"
    );
    retry
}

async fn reconcile_namespace(name: &str, ctx: &Context) -> Result<Option<Duration>> {
    ctx.wait_for_caches().await.map_err(Error::CachesNotListed)?;
    // Gone meanwhile: its objects went with it.
    let Some(namespace) = ctx.stores.namespaces.get(name) else { return Ok(None) };
    let credentials = ctx.stores.credentials.state();
    let state = cluster_state(&credentials, &ctx.settings);
    // A contest's next re-add, when one is due sooner than the namespace's backoff.
    let mut retry_after: Option<std::time::Duration> = None;
    let mut failed = false;
    for credential in credentials.iter().filter(|c| is_active(c)) {
        // Admitted while the credential is still active: its cleanup never runs beside these writes.
        let uid = credential.metadata.uid.as_deref().unwrap_or_default();
        let Some(_admitted) = ctx.write_gates.admit(uid, || ctx.stores.is_active_credential(credential)) else {
            continue;
        };
        let resolved = match credential.spec.source.credential_provider {
            // Minted by the credential's own reconcile; never waited for here.
            Some(_) => Ok(ctx.sources.minted_for_namespace(credential)),
            None => ctx.sources.resolve(credential, &ctx.client, &ctx.stores, &ctx.settings).await.map(Some),
        };
        let resolution = match resolved {
            Ok(Some(resolution)) => resolution,
            Ok(None) => continue,
            Err(error) => {
                // Nothing is known of the source: nothing to write, nothing to report; retried.
                warn!(namespace = %name, credential = %credential.name_any(), %error, "cannot read the source Secret");
                failed = true;
                continue;
            }
        };
        let source = resolution.as_ref().as_ref().ok();
        // Read for each credential: the writes for the one before are in the cache already.
        let objects = ctx.stores.objects.namespace(name);
        let view = NamespaceView { namespace: &namespace, objects: &objects };
        let planner = Planner::new(credential, &state);
        let plan = planner.namespace(view, source.map(|s| s.digest.as_str()));
        let shown = shown_in_status(&planner, view, &plan);
        let outcome = match (plan, source) {
            (NamespacePlan::Work { work, .. }, Some(source)) if !work.is_empty() => {
                Some(sync_namespace(credential, ctx, name, &work, Writing::Sync(source)).await)
            }
            _ => None,
        };
        if let Some(Err(failure)) = &outcome {
            failed = true;
            retry_after = failure.retry_after.into_iter().chain(retry_after).min();
        }
        let recorded = ctx.outcomes.record(&credential.name_any(), name, outcome.as_ref());
        if ctx.outcomes.shown(&credential.name_any(), name, shown) || recorded {
            let _ = ctx.retrigger.unbounded_send(ObjectRef::from_obj(credential.as_ref()));
        }
    }
    if !failed {
        ctx.namespace_backoff.reset(name);
        return Ok(None);
    }
    let namespaces = &ctx.stores.namespaces;
    ctx.namespace_backoff.forget_gone(|ns| namespaces.contains(ns));
    let backoff = ctx.namespace_backoff.next_delay(name);
    Ok(Some(retry_after.map_or(backoff, |retry| retry.min(backoff))))
}

/// The namespaces that a change of the source of the credentials with these UIDs concerns: those
/// they select, and those holding one of their copies (to be updated, or pruned where no longer
/// selected). A rotation then costs the credential's namespaces, not the cluster.
pub(crate) fn concerned_by(ctx: &Context, uids: &[Name]) -> Vec<Name> {
    let credentials = ctx.stores.credentials.state();
    let readers: Vec<_> =
        credentials.iter().filter(|c| uids.iter().any(|uid| Some(&**uid) == c.metadata.uid.as_deref())).collect();
    let reserved = &ctx.settings.source_namespaces;
    let namespaces = ctx.stores.namespaces.read();
    let objects = ctx.stores.objects.read();
    let holds_copy =
        |name: &str| objects.get(name).is_some_and(|o| o.copies.iter().any(|copy| uids.contains(&copy.controller.uid)));
    namespaces
        .values()
        .filter(|ns| {
            readers.iter().any(|c| selects_namespace_reserving(&c.spec, &ns.name, &ns.labels, reserved))
                || holds_copy(&ns.name)
        })
        .map(|ns| ns.name.clone())
        .collect()
}

/// A digest of what the credential's status shows of the namespace, `None` when nothing: whether
/// it is selected, why it is blocked, and its ServiceAccounts that enforce mountable secrets.
fn shown_in_status(planner: &Planner, view: NamespaceView, plan: &NamespacePlan) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    match plan {
        NamespacePlan::Untouched | NamespacePlan::Work { matched: false, .. } => return None,
        NamespacePlan::Work { matched: true, .. } => "selected".hash(&mut digest),
        NamespacePlan::Blocked(blocked) => blocked.hash(&mut digest),
    }
    planner.enforcing_accounts(view).for_each(|account| account.hash(&mut digest));
    Some(digest.finish())
}
