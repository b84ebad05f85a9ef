//! The thin I/O layer: reads the caches, asks [`plan`](super::plan) what to change, writes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, GetParams, ListParams, ObjectMeta, PartialObjectMeta, Patch, PatchParams, Preconditions,
};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::contest::Readd;
use super::context::Context;
use super::ownership::{
    ADDED_PULL_SECRETS_ANNOTATION, AddedPullSecrets, CONTENT_DIGEST_ANNOTATION, CREDENTIAL_LABEL, FIELD_MANAGER,
    FINALIZER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use super::plan::{CopyRef, NamespaceWork, SecretChange, plan, plan_cleanup};
use super::reason::Reason;
use super::source::{ResolvedSource, resolve_source};
use super::status::{self, NamespaceFailure, NamespaceOutcome};
use super::trim::content_digest;
use super::{Error, Result};
use crate::crd::{OnConflict, RegistryCredential};
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE};

/// Attempts at a guarded ServiceAccount patch before the namespace is reported as failed.
const PATCH_ATTEMPTS: usize = 5;

/// The controller's entry point for one RegistryCredential.
pub(crate) async fn reconcile(credential: Arc<RegistryCredential>, ctx: Arc<Context>) -> Result<Action> {
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
pub(crate) fn error_policy(credential: Arc<RegistryCredential>, error: &Error, ctx: Arc<Context>) -> Action {
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
        info!(credential = %name, reason = %problem.reason(), %problem, "source unusable; copies left as they are");
    }

    let mut stuck_pods = None;
    let outcomes = match &source {
        Ok(resolved) => {
            let creates: Vec<&str> = plan
                .work
                .iter()
                .filter(|(_, w)| w.secret == Some(SecretChange::Create))
                .map(|(ns, _)| ns.as_str())
                .collect();
            let existing = same_named_secrets(ctx, credential, &creates).await?;
            execute(credential, ctx, plan.work, Writing::Sync { source: resolved, existing: &existing }).await
        }
        Err(_) => BTreeMap::new(),
    };
    if credential.spec.evict_stuck_pods && source.is_ok() {
        // Only where the copy is in place does a recreated Pod find it.
        let in_place = |ns: &str| {
            plan.matched.contains(ns) && !plan.blocked.contains_key(ns) && outcomes.get(ns).is_none_or(|o| o.is_ok())
        };
        stuck_pods = Some(super::recovery::recover(credential, ctx, in_place).await);
    }
    let written = started.elapsed();
    let failed = outcomes.values().any(|o| o.is_err()) || !plan.blocked.is_empty();
    status::publish(credential, ctx, &plan.matched, &plan.blocked, &outcomes, source.as_ref(), stuck_pods).await?;
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
        let retry = outcomes.values().filter_map(|o| o.as_ref().err()?.retry_after).min();
        let backoff = ctx.backoff.next_delay(&name);
        Ok(Action::requeue(retry.map_or(backoff, |retry| retry.min(backoff))))
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
    let outcomes = execute(credential, ctx, work, Writing::Cleanup).await;
    let failures: Vec<String> =
        outcomes.iter().filter_map(|(ns, o)| o.as_ref().err().map(|f| format!("{ns}: {}", f.message))).collect();
    if !failures.is_empty() {
        // The finalizer stays until every copy is gone, so a retry finishes the job.
        status::record_cleanup_failure(credential, ctx, &outcomes).await?;
        return Err(Error::Cleanup(failures.join("; ")));
    }
    status::record_cleanup(credential, ctx, namespaces).await;
    // Whoever lost the secret name to this credential takes the namespaces over now, not at its
    // next backoff or resync.
    for rival in ctx.stores.credentials.state() {
        if rival.spec.secret_name == credential.spec.secret_name && rival.metadata.uid != credential.metadata.uid {
            let _ = ctx.retrigger.unbounded_send(ObjectRef::from_obj(rival.as_ref()));
        }
    }
    Ok(Action::await_change())
}

/// Below this many copies to create, each namespace is asked on its own; above it, one list.
const LIST_INSTEAD_OF_READS: usize = 500;

/// A Secret of the copy's name found where the cache has no copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExistingSecret {
    /// Controlled by this RegistryCredential: the cache had not seen it yet, or someone removed
    /// its labels (then the write restores them).
    Managed,
    /// Someone else's: never overwritten unless `onConflict: Adopt`, and never adopted from
    /// another controller (`kind/name` of its controller owner).
    Unmanaged { controller: Option<String> },
}

/// In which of `namespaces` a Secret named `name` exists, and whether it is managed by the
/// operator. The cache holds only managed Secrets, so before creating copies this finds the
/// unmanaged Secrets a copy must never overwrite. A few namespaces (a new namespace, the usual
/// case) are read one by one from the API server's watch cache; many (a rollout) take one
/// metadata-only list, which costs the API server a scan of every Secret (about 250 ms at 10,000
/// namespaces) but saves a round trip per namespace.
async fn same_named_secrets(
    ctx: &Context,
    credential: &RegistryCredential,
    namespaces: &[&str],
) -> Result<HashMap<String, ExistingSecret>> {
    let name = credential.spec.secret_name.as_str();
    let existing = |secret: &PartialObjectMeta<Secret>| {
        let controller = secret.owner_references().iter().find(|o| o.controller == Some(true));
        match controller {
            Some(owner) if Some(&owner.uid) == credential.metadata.uid.as_ref() => ExistingSecret::Managed,
            other => ExistingSecret::Unmanaged { controller: other.map(|o| format!("{}/{}", o.kind, o.name)) },
        }
    };
    let mut found = HashMap::new();
    if namespaces.len() < LIST_INSTEAD_OF_READS {
        let reads = namespaces.iter().map(|namespace| async move {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            api.get_metadata_opt_with(name, &GetParams::any()).await.map(|secret| (namespace, secret))
        });
        for (namespace, secret) in futures::future::try_join_all(reads).await.map_err(Error::FindSameNamedSecrets)? {
            if let Some(secret) = secret {
                found.insert((*namespace).to_owned(), existing(&secret));
            }
        }
        return Ok(found);
    }
    let api: Api<Secret> = Api::all(ctx.client.clone());
    let mut params = ListParams::default().fields(&format!("metadata.name={name}")).limit(500);
    loop {
        let page = api.list_metadata(&params).await.map_err(Error::FindSameNamedSecrets)?;
        for secret in &page.items {
            found.insert(secret.namespace().unwrap_or_default(), existing(secret));
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(found),
        }
    }
}

/// What the writes of a reconcile are for.
#[derive(Clone, Copy)]
enum Writing<'a> {
    /// Bring namespaces to the usable `source`, knowing where Secrets of the copy's name exist.
    Sync { source: &'a ResolvedSource, existing: &'a HashMap<String, ExistingSecret> },
    /// The RegistryCredential is being deleted: only removals.
    Cleanup,
}

/// Carries out the work of each namespace, namespaces concurrently; one namespace's failure
/// never stops the others.
async fn execute(
    credential: &RegistryCredential,
    ctx: &Context,
    work: BTreeMap<String, NamespaceWork>,
    writing: Writing<'_>,
) -> BTreeMap<String, NamespaceOutcome> {
    stream::iter(work)
        .map(|(namespace, work)| async move {
            let outcome = sync_namespace(credential, ctx, &namespace, &work, writing).await;
            if let Err(failure) = &outcome {
                ctx.metrics.sync_failure(failure.reason);
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
    writing: Writing<'_>,
) -> NamespaceOutcome {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret_name = &credential.spec.secret_name;
    // Decided before any write: where the name belongs to someone else, nothing is written,
    // not even the entry.
    let create_mode = match (&work.secret, writing) {
        (Some(SecretChange::Create), Writing::Sync { existing, .. }) => {
            Some(create_mode(existing.get(namespace), credential.spec.on_conflict, secret_name)?)
        }
        _ => None,
    };
    let copy = async {
        match (&work.secret, writing) {
            (Some(SecretChange::Create), Writing::Sync { source, .. }) => {
                let mode = create_mode.unwrap_or(CreateMode::KeepOthersFields);
                if mode == CreateMode::Adopt {
                    check_adoptable(&secrets, secret_name).await?;
                }
                apply_copy(credential, ctx, &secrets, source, mode).await?
            }
            (Some(SecretChange::Update), Writing::Sync { source, .. }) => {
                apply_copy(credential, ctx, &secrets, source, CreateMode::TakeOver).await?
            }
            (Some(SecretChange::Delete(copy)), _) => delete_copy(ctx, &secrets, copy).await?,
            (Some(_), Writing::Cleanup) | (None, _) => {}
        }
        for stale in &work.delete_stale_secrets {
            delete_copy(ctx, &secrets, stale).await?;
        }
        Ok(())
    };
    let entries = async {
        let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
        let mut contested = None;
        for account in &work.add_to {
            match readd(ctx, namespace, account, secret_name) {
                Readd::Now => edit_pull_secrets(ctx, &accounts, account, &PullSecretEdit::Add(secret_name)).await?,
                Readd::Contested { wait, removals, remover } => {
                    let remover = remover.unwrap_or_else(|| "an unknown writer".to_owned());
                    let message = format!(
                        "ServiceAccount {account}: {remover} removed the {secret_name} entry {removals} times; \
                         re-adding in {}s",
                        wait.as_secs().max(1)
                    );
                    contested = Some(NamespaceFailure {
                        retry_after: Some(wait),
                        ..status::failure(Reason::Contested, message)
                    });
                }
            }
        }
        let mut removals: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (account, entry) in &work.remove_from {
            removals.entry(account).or_default().push(entry);
        }
        for (account, entries) in removals {
            edit_pull_secrets(ctx, &accounts, account, &PullSecretEdit::Remove(entries)).await?;
        }
        contested.map_or(Ok(()), Err)
    };
    // The entries follow the copy, never precede it: an entry naming a Secret that a failed write
    // left missing would send Pods to pull without credentials. New Pods do not wait for either:
    // the admission policy names the copy in them already.
    copy.await?;
    entries.await
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
            annotations: Some(
                [(CONTENT_DIGEST_ANNOTATION.to_owned(), content_digest(source.payload.as_bytes()))].into(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
        data: Some([(DOCKER_CONFIG_JSON_KEY.to_owned(), ByteString(source.payload.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// How a copy is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateMode {
    /// Apply without force: an unmanaged Secret appearing meanwhile conflicts instead of losing
    /// its fields.
    KeepOthersFields,
    /// Apply with force: the copy is ours (the cache had not seen it yet).
    TakeOver,
    /// Apply with force over someone else's Secret, once it is known to be adoptable.
    Adopt,
}

/// How to create a copy where the cache has none, given the Secret of that name found there.
/// An unmanaged Secret is never overwritten unless `onConflict: Adopt`.
fn create_mode(
    existing: Option<&ExistingSecret>,
    on_conflict: OnConflict,
    name: &str,
) -> Result<CreateMode, NamespaceFailure> {
    match existing {
        None => Ok(CreateMode::KeepOthersFields),
        Some(ExistingSecret::Managed) => Ok(CreateMode::TakeOver),
        Some(ExistingSecret::Unmanaged { controller: Some(controller) }) if on_conflict == OnConflict::Adopt => {
            Err(adopt_impossible(name, &format!("it is controlled by {controller}")))
        }
        Some(ExistingSecret::Unmanaged { .. }) if on_conflict == OnConflict::Adopt => Ok(CreateMode::Adopt),
        Some(ExistingSecret::Unmanaged { .. }) => Err(unmanaged_conflict(name)),
    }
}

fn adopt_impossible(name: &str, why: &str) -> NamespaceFailure {
    status::failure(Reason::AdoptImpossible, format!("Secret {name} cannot be adopted: {why}; delete or rename it"))
}

/// Whether someone else's Secret can become the copy: the type of a Secret cannot change, and an
/// immutable one cannot be written. Checked before the write, so it is reported, not attempted.
async fn check_adoptable(secrets: &Api<Secret>, name: &str) -> NamespaceOutcome {
    let existing = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(()),
        Err(e) => return Err(api_failure(Reason::SecretWriteFailed, &e)),
    };
    let secret_type = existing.type_.as_deref().unwrap_or("Opaque");
    if secret_type != DOCKER_CONFIG_JSON_TYPE {
        return Err(adopt_impossible(name, &format!("its type is {secret_type}, which cannot change")));
    }
    if existing.immutable == Some(true) {
        return Err(adopt_impossible(name, "it is immutable"));
    }
    Ok(())
}

fn unmanaged_conflict(name: &str) -> NamespaceFailure {
    status::failure(
        Reason::SecretConflict,
        format!("Secret {name} exists and is not managed by regcred-operator; set onConflict: Adopt to take it over"),
    )
}

/// Writes the copy with server-side apply under the operator's field manager.
async fn apply_copy(
    credential: &RegistryCredential,
    ctx: &Context,
    secrets: &Api<Secret>,
    source: &ResolvedSource,
    mode: CreateMode,
) -> NamespaceOutcome {
    let namespace = secrets.namespace().unwrap_or_default();
    let copy = desired_copy(credential, namespace, source);
    let patch = Patch::Apply(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": copy.metadata, "type": copy.type_, "data": copy.data,
    }));
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = mode != CreateMode::KeepOthersFields;
    ctx.metrics.api_write("secret", "apply");
    match secrets.patch(&credential.spec.secret_name, &params, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if mode == CreateMode::KeepOthersFields && is_status(&e, 409) => {
            Err(unmanaged_conflict(&credential.spec.secret_name))
        }
        Err(e) => Err(api_failure(Reason::SecretWriteFailed, &e)),
    }
}

/// Deletes a copy, only if it still is the object the cache saw (UID precondition): a Secret
/// that took the name since is someone else's.
async fn delete_copy(ctx: &Context, secrets: &Api<Secret>, copy: &CopyRef) -> NamespaceOutcome {
    ctx.metrics.api_write("secret", "delete");
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(copy.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match secrets.delete(&copy.name, &params).await {
        Ok(_) => Ok(()),
        // Gone, or the name now belongs to another object: nothing of ours to delete.
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(api_failure(Reason::SecretDeleteFailed, &e)),
    }
}

/// Whether to add the entry to `account` now: at once for a first add or a one-off repair; spaced
/// out when the operator's recorded entry keeps disappearing.
fn readd(ctx: &Context, namespace: &str, account: &str, secret_name: &str) -> Readd {
    let Some(cached) = ctx.stores.service_accounts.get(&ObjectRef::new(account).within(namespace)) else {
        return Readd::Now;
    };
    if !AddedPullSecrets::of(&cached).contains(secret_name) {
        return Readd::Now;
    }
    ctx.contests.readd(&format!("{namespace}/{account}"), &cached, std::time::Instant::now())
}

/// A change to a ServiceAccount's `imagePullSecrets`.
#[derive(Debug)]
enum PullSecretEdit<'a> {
    /// Append the entry after the others, unless present, and record it as the operator's.
    Add(&'a str),
    /// Remove these entries, but only those the operator recorded as its own.
    Remove(Vec<&'a str>),
}

/// Edits a ServiceAccount's `imagePullSecrets`, touching only entries the operator added. The
/// list is atomic, so the patch carries the resourceVersion it was computed from and is
/// recomputed from a fresh read on conflict.
async fn edit_pull_secrets(
    ctx: &Context,
    accounts: &Api<ServiceAccount>,
    name: &str,
    edit: &PullSecretEdit<'_>,
) -> NamespaceOutcome {
    let namespace = accounts.namespace().unwrap_or_default();
    let mut account = match ctx.stores.service_accounts.get(&ObjectRef::new(name).within(namespace)) {
        Some(cached) => (*cached).clone(),
        None => return Ok(()),
    };
    for _ in 0..PATCH_ATTEMPTS {
        let Some(patch) = pull_secrets_patch(&account, edit) else { return Ok(()) };
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
                    Err(e) => return Err(api_failure(Reason::ServiceAccountReadFailed, &e)),
                };
            }
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(api_failure(Reason::ServiceAccountPatchFailed, &e)),
        }
    }
    Err(status::failure(
        Reason::ServiceAccountPatchConflict,
        format!("ServiceAccount {name} kept changing during {PATCH_ATTEMPTS} attempts to patch it"),
    ))
}

/// The merge patch for the change, guarded by the resourceVersion it was computed from, or
/// `None` when the ServiceAccount already is as wanted.
fn pull_secrets_patch(account: &ServiceAccount, edit: &PullSecretEdit) -> Option<serde_json::Value> {
    let mut entries = account.image_pull_secrets.clone().unwrap_or_default();
    let mut record = AddedPullSecrets::of(account);
    match edit {
        PullSecretEdit::Add(name) => {
            if entries.iter().any(|e| e.name == *name) {
                return None;
            }
            entries.push(k8s_openapi::api::core::v1::LocalObjectReference { name: (*name).to_owned() });
            record.insert(name);
        }
        PullSecretEdit::Remove(names) => {
            let ours: Vec<&str> = names.iter().copied().filter(|name| record.contains(name)).collect();
            if ours.is_empty() {
                return None;
            }
            entries.retain(|e| !ours.contains(&e.name.as_str()));
            ours.iter().for_each(|name| record.remove(name));
        }
    }
    Some(json!({
        "metadata": {
            "resourceVersion": account.resource_version(),
            "annotations": { ADDED_PULL_SECRETS_ANNOTATION: record.annotation() },
        },
        "imagePullSecrets": entries,
    }))
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// A failure from an API error; API messages name objects and fields, not Secret data.
fn api_failure(reason: Reason, error: &kube::Error) -> NamespaceFailure {
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
        let unmanaged = ExistingSecret::Unmanaged { controller: None };
        assert_eq!(create_mode(None, OnConflict::Skip, "regcred"), Ok(CreateMode::KeepOthersFields));
        assert_eq!(create_mode(Some(&ExistingSecret::Managed), OnConflict::Skip, "regcred"), Ok(CreateMode::TakeOver));
        assert_eq!(create_mode(Some(&unmanaged), OnConflict::Adopt, "regcred"), Ok(CreateMode::Adopt));
        let refused = create_mode(Some(&unmanaged), OnConflict::Skip, "regcred").unwrap_err();
        assert_eq!(refused.reason, Reason::SecretConflict);
        let controlled = ExistingSecret::Unmanaged { controller: Some("SealedSecret/pull".into()) };
        let impossible = create_mode(Some(&controlled), OnConflict::Adopt, "regcred").unwrap_err();
        assert_eq!(impossible.reason, Reason::AdoptImpossible);
        assert!(impossible.message.contains("SealedSecret/pull"), "{}", impossible.message);
    }

    #[test]
    fn add_appends_after_the_users_entries_and_records_it() {
        let patch = pull_secrets_patch(&account(&["mine", "other"], None), &PullSecretEdit::Add("regcred")).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7", "annotations": {ADDED_PULL_SECRETS_ANNOTATION: "regcred"}},
                   "imagePullSecrets": [{"name": "mine"}, {"name": "other"}, {"name": "regcred"}]})
        );
    }

    #[test]
    fn an_entry_already_present_is_neither_added_nor_recorded() {
        assert_eq!(pull_secrets_patch(&account(&["regcred"], None), &PullSecretEdit::Add("regcred")), None);
    }

    #[test]
    fn remove_takes_only_recorded_entries_and_drops_an_empty_record() {
        let patch = pull_secrets_patch(
            &account(&["mine", "regcred"], Some("regcred")),
            &PullSecretEdit::Remove(vec!["regcred"]),
        )
        .unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7", "annotations": {ADDED_PULL_SECRETS_ANNOTATION: null}},
                   "imagePullSecrets": [{"name": "mine"}]})
        );
        assert_eq!(
            pull_secrets_patch(&account(&["mine", "regcred"], None), &PullSecretEdit::Remove(vec!["regcred"])),
            None
        );
    }
}
