//! The thin I/O layer: reads the caches, asks [`plan`](super::plan) what to change, writes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, GetParams, ListParams, ObjectMeta, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::context::Context;
use super::labels::{
    ADDED_PULL_SECRETS_ANNOTATION, CREDENTIAL_LABEL, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, FIELD_MANAGER,
    FINALIZER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, added_pull_secrets,
};
use super::plan::{NamespaceWork, SecretChange, plan, plan_cleanup, record_with};
use super::source::{ResolvedSource, resolve_source};
use super::status::{self, NamespaceOutcome};
use super::{Error, Result};
use crate::crd::{OnConflict, RegistryCredential};

/// Attempts at a guarded ServiceAccount patch before the namespace is reported as failed.
const PATCH_ATTEMPTS: usize = 5;

/// The controller's entry point for one RegistryCredential.
pub async fn reconcile(credential: Arc<RegistryCredential>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.wait_for_caches().await;
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
pub fn error_policy(credential: Arc<RegistryCredential>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(credential = %credential.name_any(), %error, "reconcile failed");
    Action::requeue(ctx.backoff.next_delay(&credential.name_any()))
}

async fn sync(credential: &RegistryCredential, ctx: &Context) -> Result<Action> {
    let name = credential.name_any();
    let source = {
        let secret = credential.spec.source.secret_ref.as_ref().and_then(|r| ctx.stores.source(&r.namespace, &r.name));
        resolve_source(&credential.spec, secret.as_deref(), &ctx.settings.source_namespaces)
    };
    let payload = source.as_ref().ok().map(|s| s.payload.as_str());
    let started = Instant::now();
    let plan = {
        let snapshot = ctx.stores.snapshot();
        let state = snapshot.state();
        plan(credential, &state, payload)
    };
    let planned = started.elapsed();
    if let Err(problem) = &source {
        info!(credential = %name, reason = problem.reason(), %problem, "source unusable; copies left as they are");
    }

    let outcomes = match &source {
        Ok(resolved) => {
            let creates: Vec<&str> = plan
                .work
                .iter()
                .filter(|(_, w)| w.secret == Some(SecretChange::Create))
                .map(|(ns, _)| ns.as_str())
                .collect();
            let existing = same_named_secrets(ctx, &credential.spec.secret_name, &creates).await?;
            execute(credential, ctx, plan.work, Some((resolved, &existing))).await
        }
        Err(_) => BTreeMap::new(),
    };
    let written = started.elapsed();
    let failed = outcomes.values().any(|o| o.is_err()) || !plan.name_conflicts.is_empty();
    status::publish(credential, ctx, &plan.matched, &plan.name_conflicts, &outcomes, source.as_ref()).await?;
    debug!(
        credential = %name,
        matched = plan.matched.len(),
        changed = outcomes.len(),
        plan_ms = planned.as_millis() as u64,
        write_ms = (written - planned).as_millis() as u64,
        status_ms = (started.elapsed() - written).as_millis() as u64,
        "synced"
    );
    if failed || source.is_err() {
        Ok(Action::requeue(ctx.backoff.next_delay(&name)))
    } else {
        ctx.backoff.reset(&name);
        Ok(Action::requeue(ctx.settings.resync))
    }
}

async fn cleanup(credential: &RegistryCredential, ctx: &Context) -> Result<Action> {
    let work = {
        let snapshot = ctx.stores.snapshot();
        plan_cleanup(credential, &snapshot.state())
    };
    let namespaces = work.len();
    let outcomes = execute(credential, ctx, work, None).await;
    let failures: Vec<String> =
        outcomes.iter().filter_map(|(ns, o)| o.as_ref().err().map(|f| format!("{ns}: {}", f.message))).collect();
    if !failures.is_empty() {
        // The finalizer stays until every copy is gone, so a retry finishes the job.
        return Err(Error::Cleanup(failures.join("; ")));
    }
    status::record_cleanup(credential, ctx, namespaces).await;
    Ok(Action::await_change())
}

/// Below this many copies to create, each namespace is asked on its own; above it, one list.
const LIST_INSTEAD_OF_READS: usize = 500;

/// In which of `namespaces` a Secret named `name` exists, and whether it is managed by the
/// operator. The cache holds only managed Secrets, so before creating copies this finds the
/// unmanaged Secrets a copy must never overwrite. A few namespaces (a new namespace, the usual
/// case) are read one by one from the API server's watch cache; many (a rollout) take one
/// metadata-only list, which costs the API server a scan of every Secret (about 250 ms at 10,000
/// namespaces) but saves a round trip per namespace.
async fn same_named_secrets(ctx: &Context, name: &str, namespaces: &[&str]) -> Result<HashMap<String, bool>> {
    let is_managed = |secret: &PartialObjectMeta<Secret>| {
        secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
    };
    let mut found = HashMap::new();
    if namespaces.len() < LIST_INSTEAD_OF_READS {
        let reads = namespaces.iter().map(|namespace| async move {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            api.get_metadata_opt_with(name, &GetParams::any()).await.map(|secret| (namespace, secret))
        });
        for (namespace, secret) in futures::future::try_join_all(reads).await.map_err(Error::FindSameNamedSecrets)? {
            if let Some(secret) = secret {
                found.insert((*namespace).to_owned(), is_managed(&secret));
            }
        }
        return Ok(found);
    }
    let api: Api<Secret> = Api::all(ctx.client.clone());
    let mut params = ListParams::default().fields(&format!("metadata.name={name}")).limit(500);
    loop {
        let page = api.list_metadata(&params).await.map_err(Error::FindSameNamedSecrets)?;
        for secret in &page.items {
            found.insert(secret.namespace().unwrap_or_default(), is_managed(secret));
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(found),
        }
    }
}

/// A usable source, with where Secrets of the copy's name already exist (namespace -> managed).
type SourceAndExisting<'a> = (&'a ResolvedSource, &'a HashMap<String, bool>);

/// Carries out the work of each namespace, namespaces concurrently; one namespace's failure
/// never stops the others.
async fn execute(
    credential: &RegistryCredential,
    ctx: &Context,
    work: BTreeMap<String, NamespaceWork>,
    source: Option<SourceAndExisting<'_>>,
) -> BTreeMap<String, NamespaceOutcome> {
    stream::iter(work)
        .map(|(namespace, work)| async move {
            let outcome = sync_namespace(credential, ctx, &namespace, &work, source).await;
            if let Err(failure) = &outcome {
                ctx.metrics.sync_failure(&failure.reason);
                debug!(credential = %credential.name_any(), %namespace, reason = %failure.reason, message = %failure.message, "namespace not synced");
            }
            (namespace, outcome)
        })
        .buffer_unordered(ctx.settings.concurrency)
        .collect()
        .await
}

async fn sync_namespace(
    credential: &RegistryCredential,
    ctx: &Context,
    namespace: &str,
    work: &NamespaceWork,
    source: Option<SourceAndExisting<'_>>,
) -> NamespaceOutcome {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret_name = &credential.spec.secret_name;
    // Decided before any write: where the name belongs to someone else, nothing is written,
    // not even the entry.
    let create_forced = match (work.secret, source) {
        (Some(SecretChange::Create), Some((_, existing))) => {
            Some(create_mode(existing.get(namespace).copied(), credential.spec.on_conflict, secret_name)?)
        }
        _ => None,
    };
    let copy = async {
        match (work.secret, source) {
            (Some(SecretChange::Create), Some((source, _))) => {
                apply_copy(credential, ctx, &secrets, source, create_forced.unwrap_or_default()).await?
            }
            (Some(SecretChange::Update), Some((source, _))) => {
                apply_copy(credential, ctx, &secrets, source, true).await?
            }
            (Some(SecretChange::Delete), _) => delete_copy(ctx, &secrets, secret_name).await?,
            (Some(_), None) | (None, _) => {}
        }
        for stale in &work.delete_stale_secrets {
            delete_copy(ctx, &secrets, stale).await?;
        }
        Ok(())
    };
    let entries = async {
        let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
        for account in &work.add_to {
            update_pull_secrets(ctx, &accounts, account, Some(secret_name), &[]).await?;
        }
        let mut removals: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (account, entry) in &work.remove_from {
            removals.entry(account).or_default().push(entry);
        }
        for (account, entries) in removals {
            update_pull_secrets(ctx, &accounts, account, None, &entries).await?;
        }
        Ok(())
    };
    // The copy and the entries are independent writes: together they halve a new namespace's
    // wait. A Pod admitted in the moment between them names a Secret that appears right after,
    // and the kubelet's next pull attempt finds it.
    let (copy, entries): (NamespaceOutcome, NamespaceOutcome) = futures::join!(copy, entries);
    copy.and(entries)
}

/// The copy as this operator writes it.
fn desired_copy(credential: &RegistryCredential, namespace: &str, source: &ResolvedSource) -> Secret {
    let owner = OwnerReference {
        api_version: RegistryCredential::api_version(&()).into_owned(),
        kind: RegistryCredential::kind(&()).into_owned(),
        name: credential.name_any(),
        uid: credential.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(credential.spec.secret_name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [(MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_owned()), (CREDENTIAL_LABEL, credential.name_any())]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
        data: Some([(DOCKER_CONFIG_JSON_KEY.to_owned(), ByteString(source.payload.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// How to create a copy where the cache has none, given whether a Secret of that name exists
/// (`Some(managed)`): `Ok(false)` applies without force, so that an unmanaged Secret appearing
/// meanwhile conflicts instead of losing its fields; `Ok(true)` forces, for a copy that is ours
/// (the cache had not seen it yet) or adopted. An unmanaged Secret is never overwritten unless
/// `onConflict: Adopt`.
fn create_mode(existing: Option<bool>, on_conflict: OnConflict, name: &str) -> Result<bool, status::SyncFailureDetail> {
    match existing {
        None => Ok(false),
        Some(managed) if managed || on_conflict == OnConflict::Adopt => Ok(true),
        Some(_) => Err(unmanaged_conflict(name)),
    }
}

fn unmanaged_conflict(name: &str) -> status::SyncFailureDetail {
    status::failure(
        "SecretConflict",
        format!("Secret {name} exists and is not managed by regcred-operator; set onConflict: Adopt to take it over"),
    )
}

/// Writes the copy with server-side apply under the operator's field manager. `force` takes
/// over fields from other managers: right for a copy that is ours by label or adoption.
async fn apply_copy(
    credential: &RegistryCredential,
    ctx: &Context,
    secrets: &Api<Secret>,
    source: &ResolvedSource,
    force: bool,
) -> NamespaceOutcome {
    let namespace = secrets.namespace().unwrap_or_default();
    let copy = desired_copy(credential, namespace, source);
    let patch = Patch::Apply(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": copy.metadata, "type": copy.type_, "data": copy.data,
    }));
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = force;
    ctx.metrics.api_write("secret", "apply");
    match secrets.patch(&credential.spec.secret_name, &params, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if !force && is_status(&e, 409) => Err(unmanaged_conflict(&credential.spec.secret_name)),
        Err(e) => Err(api_failure("SecretWriteFailed", &e)),
    }
}

async fn delete_copy(ctx: &Context, secrets: &Api<Secret>, name: &str) -> NamespaceOutcome {
    ctx.metrics.api_write("secret", "delete");
    match secrets.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(api_failure("SecretDeleteFailed", &e)),
    }
}

/// Appends `add` to a ServiceAccount's `imagePullSecrets` and removes `remove` from it, touching
/// only entries the operator added. The list is atomic, so the patch carries the
/// resourceVersion it was computed from and is recomputed from a fresh read on conflict.
async fn update_pull_secrets(
    ctx: &Context,
    accounts: &Api<ServiceAccount>,
    name: &str,
    add: Option<&str>,
    remove: &[&str],
) -> NamespaceOutcome {
    let namespace = accounts.namespace().unwrap_or_default();
    let mut account = match ctx.stores.service_accounts.get(&ObjectRef::new(name).within(namespace)) {
        Some(cached) => (*cached).clone(),
        None => return Ok(()),
    };
    for _ in 0..PATCH_ATTEMPTS {
        let Some(patch) = pull_secrets_patch(&account, add, remove) else { return Ok(()) };
        ctx.metrics.api_write("serviceaccount", "patch");
        match accounts
            .patch(
                name,
                &PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 409) => {
                ctx.metrics.patch_conflict();
                account = match accounts.get_opt(name).await {
                    Ok(Some(fresh)) => fresh,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(api_failure("ServiceAccountReadFailed", &e)),
                };
            }
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(api_failure("ServiceAccountPatchFailed", &e)),
        }
    }
    Err(status::failure(
        "ServiceAccountPatchConflict",
        format!("ServiceAccount {name} kept changing during {PATCH_ATTEMPTS} attempts to patch it"),
    ))
}

/// The merge patch for the change, guarded by the resourceVersion it was computed from, or
/// `None` when the ServiceAccount already is as wanted.
fn pull_secrets_patch(account: &ServiceAccount, add: Option<&str>, remove: &[&str]) -> Option<serde_json::Value> {
    let mut entries = account.image_pull_secrets.clone().unwrap_or_default();
    let mut record = account.clone();
    let mut changed = false;
    if let Some(add) = add
        && !entries.iter().any(|e| e.name == add)
    {
        entries.push(k8s_openapi::api::core::v1::LocalObjectReference { name: add.to_owned() });
        let value = record_with(&record, add, true);
        record.annotations_mut().insert(ADDED_PULL_SECRETS_ANNOTATION.to_owned(), value);
        changed = true;
    }
    for entry in remove {
        if added_pull_secrets(&record).contains(entry) {
            entries.retain(|e| e.name != *entry);
            let value = record_with(&record, entry, false);
            record.annotations_mut().insert(ADDED_PULL_SECRETS_ANNOTATION.to_owned(), value);
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    let record_value = record.annotations().get(ADDED_PULL_SECRETS_ANNOTATION).filter(|v| !v.is_empty()).cloned();
    Some(json!({
        "metadata": {
            "resourceVersion": account.resource_version(),
            "annotations": { ADDED_PULL_SECRETS_ANNOTATION: record_value },
        },
        "imagePullSecrets": entries,
    }))
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// A failure from an API error; API messages name objects and fields, not Secret data.
fn api_failure(reason: &str, error: &kube::Error) -> status::SyncFailureDetail {
    status::failure(reason, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::LocalObjectReference;

    fn account(entries: &[&str], record: Option<&str>) -> ServiceAccount {
        let mut account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            image_pull_secrets: Some(entries.iter().map(|n| LocalObjectReference { name: n.to_string() }).collect()),
            ..Default::default()
        };
        if let Some(record) = record {
            account.annotations_mut().insert(ADDED_PULL_SECRETS_ANNOTATION.into(), record.into());
        }
        account
    }

    #[test]
    fn an_unmanaged_secret_is_never_overwritten_unless_adopted() {
        assert_eq!(create_mode(None, OnConflict::Skip, "regcred"), Ok(false));
        assert_eq!(create_mode(Some(true), OnConflict::Skip, "regcred"), Ok(true));
        assert_eq!(create_mode(Some(false), OnConflict::Adopt, "regcred"), Ok(true));
        let refused = create_mode(Some(false), OnConflict::Skip, "regcred").unwrap_err();
        assert_eq!(refused.reason, "SecretConflict");
    }

    #[test]
    fn add_appends_after_the_users_entries_and_records_it() {
        let patch = pull_secrets_patch(&account(&["mine", "other"], None), Some("regcred"), &[]).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7", "annotations": {ADDED_PULL_SECRETS_ANNOTATION: "regcred"}},
                   "imagePullSecrets": [{"name": "mine"}, {"name": "other"}, {"name": "regcred"}]})
        );
    }

    #[test]
    fn an_entry_already_present_is_neither_added_nor_recorded() {
        assert_eq!(pull_secrets_patch(&account(&["regcred"], None), Some("regcred"), &[]), None);
    }

    #[test]
    fn remove_takes_only_recorded_entries_and_drops_an_empty_record() {
        let patch = pull_secrets_patch(&account(&["mine", "regcred"], Some("regcred")), None, &["regcred"]).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7", "annotations": {ADDED_PULL_SECRETS_ANNOTATION: null}},
                   "imagePullSecrets": [{"name": "mine"}]})
        );
        assert_eq!(pull_secrets_patch(&account(&["mine", "regcred"], None), None, &["regcred"]), None);
    }
}
