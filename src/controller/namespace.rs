//! The namespace reconciler: one namespace, every RegistryCredential. A change in a namespace (a
//! ServiceAccount appearing, a copy deleted, a label edited) costs that namespace's plan and
//! writes, whatever the size of the cluster; a credential-wide change (a rotation, a selector
//! edit) reconciles every namespace, as many at once as `--concurrency` allows.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use super::context::{Context, cluster_state};
use super::error::{Error, Result};
use super::ownership::is_active;
use super::plan::{NamespacePlan, NamespaceView, Planner};
use super::write::{Writing, sync_namespace};

pub(crate) async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    ctx.wait_for_caches().await.map_err(Error::CachesNotListed)?;
    let name = namespace.name_any();
    let credentials = ctx.stores.credentials.state();
    let state = cluster_state(&credentials, &ctx.settings);
    // A contest's next re-add, when one is due sooner than the namespace's backoff.
    let mut retry_after: Option<std::time::Duration> = None;
    let mut failed = false;
    for credential in credentials.iter().filter(|c| is_active(c)) {
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
        let objects = ctx.stores.objects.namespace(&name);
        let view = NamespaceView { namespace: &namespace, objects: &objects };
        let planner = Planner::new(credential, &state);
        let plan = planner.namespace(view, source.map(|s| s.digest.as_str()));
        let shown = shown_in_status(&planner, view, &plan);
        let outcome = match (plan, source) {
            (NamespacePlan::Work { work, .. }, Some(source)) if !work.is_empty() => {
                Some(sync_namespace(credential, &ctx, &name, &work, Writing::Sync(source)).await)
            }
            _ => None,
        };
        if let Some(Err(failure)) = &outcome {
            failed = true;
            retry_after = failure.retry_after.into_iter().chain(retry_after).min();
        }
        let recorded = ctx.outcomes.record(&credential.name_any(), &name, outcome.as_ref());
        if ctx.outcomes.shown(&credential.name_any(), &name, shown) || recorded {
            let _ = ctx.retrigger.unbounded_send(ObjectRef::from_obj(credential.as_ref()));
        }
    }
    let next = if failed {
        let namespaces = &ctx.stores.namespaces;
        ctx.namespace_backoff.forget_gone(|ns| namespaces.get(&ObjectRef::new(ns)).is_some());
        let backoff = ctx.namespace_backoff.next_delay(&name);
        retry_after.map_or(backoff, |retry| retry.min(backoff))
    } else {
        ctx.namespace_backoff.reset(&name);
        ctx.settings.resync
    };
    ctx.metrics.namespace_reconciled();
    debug!(namespace = %name, failed, "namespace reconciled");
    Ok(Action::requeue(next))
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

/// The reconcile records its failures as outcomes and returns no error; the runtime asks for a
/// policy all the same.
pub(crate) fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(namespace = %namespace.name_any(), %error, "namespace reconcile failed");
    Action::requeue(ctx.namespace_backoff.next_delay(&namespace.name_any()))
}
