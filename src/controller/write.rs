//! The writes that carry out one namespace's plan: the copy first, then the ServiceAccount
//! entries, each with the cheapest call that keeps ownership clear.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::debug;

use super::cache::{Account, Copy, Name};
use super::contest::Readd;
use super::context::Context;
use super::error::quoted;
use super::ownership::{
    ADDED_PULL_SECRETS_ANNOTATION, CONTENT_DIGEST_ANNOTATION, CREDENTIAL_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
};
use super::plan::{CopyRef, NamespaceWork, SecretChange};
use super::source::ResolvedSource;
use super::state::{NamespaceFailure, NamespaceOutcome, failure};
use crate::crd::{OnConflict, RegistryCredential};
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE};
use crate::reason::Reason;

/// Attempts at a guarded ServiceAccount patch before the namespace is reported as failed.
const PATCH_ATTEMPTS: usize = 5;

/// What the writes are for.
#[derive(Clone, Copy)]
pub(crate) enum Writing<'a> {
    /// Bring the namespace to the usable source.
    Sync(&'a ResolvedSource),
    /// The RegistryCredential is being deleted: only removals.
    Cleanup,
}

/// The removals of a deleted credential, many namespaces at once: each namespace's work is
/// planned (`plan`) just before its writes, so the cleanup holds the plans of the namespaces in
/// flight, not of the cluster (7 MB at 10,000 namespaces). One namespace's failure never stops
/// the others. Returns how many namespaces had work, and the failures by namespace.
pub(crate) async fn clean_up(
    credential: &RegistryCredential,
    ctx: &Context,
    namespaces: Vec<Name>,
    plan: impl Fn(&str) -> NamespaceWork,
) -> (usize, BTreeMap<String, NamespaceFailure>) {
    let work = namespaces.into_iter().filter_map(|namespace| {
        let work = plan(&namespace);
        (!work.is_empty()).then_some((namespace, work))
    });
    let outcomes = stream::iter(work)
        .map(|(namespace, work)| async move {
            let outcome = sync_namespace(credential, ctx, &namespace, &work, Writing::Cleanup).await;
            (namespace, outcome)
        })
        .buffer_unordered(ctx.settings.concurrency);
    let mut outcomes = std::pin::pin!(outcomes);
    let (mut cleaned, mut failures) = (0, BTreeMap::new());
    while let Some((namespace, outcome)) = outcomes.next().await {
        cleaned += 1;
        if let Err(failure) = outcome {
            failures.insert(namespace.to_string(), failure);
        }
    }
    (cleaned, failures)
}

/// Carries out one namespace's work for one RegistryCredential; a failure is counted and logged
/// (it names the object and the problem, never a value).
pub(crate) async fn sync_namespace(
    credential: &RegistryCredential,
    ctx: &Context,
    namespace: &str,
    work: &NamespaceWork,
    writing: Writing<'_>,
) -> NamespaceOutcome {
    // The entries follow the copy, never precede it: an entry naming a Secret that a failed write
    // left missing would send Pods to pull without credentials. New Pods do not wait for either:
    // the admission policy names the copy in them already.
    let outcome = match write_copies(credential, ctx, namespace, work, writing).await {
        Ok(()) => write_entries(ctx, namespace, work, &credential.spec.secret_name).await,
        failed => failed,
    };
    if let Err(failure) = &outcome {
        ctx.metrics.sync_failure(failure.reason);
        debug!(credential = %credential.name_any(), %namespace, reason = %failure.reason, message = ?failure.message, "namespace not synced");
    }
    outcome
}

/// The copy, and the stale copies of an earlier name.
async fn write_copies(
    credential: &RegistryCredential,
    ctx: &Context,
    namespace: &str,
    work: &NamespaceWork,
    writing: Writing<'_>,
) -> NamespaceOutcome {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret_name = &credential.spec.secret_name;
    match (&work.secret, writing) {
        (Some(SecretChange::Create), Writing::Sync(source)) => {
            // A first copy, or one someone deleted: the same call, counted alike once made.
            repair_due(ctx, namespace, secret_name)?;
            create_copy(credential, ctx, &secrets, source).await?;
            repaired(ctx, namespace, secret_name, None);
        }
        (Some(SecretChange::Rewrite { copy, repair }), Writing::Sync(source)) => {
            if *repair {
                repair_due(ctx, namespace, secret_name)?;
            }
            rewrite_copy(ctx, &secrets, copy, source).await?;
            if *repair {
                repaired(ctx, namespace, secret_name, None);
            }
        }
        (Some(SecretChange::Verify(copy)), Writing::Sync(source)) => {
            verify_copy(credential, ctx, &secrets, copy, source).await?
        }
        (Some(SecretChange::TakeOver(copy)), Writing::Sync(source)) => {
            repair_due(ctx, namespace, secret_name)?;
            let version = Some(&*copy.resource_version);
            apply_copy(credential, ctx, &secrets, source, &copy.resource_version, version).await?;
            repaired(ctx, namespace, secret_name, None);
        }
        (Some(SecretChange::Delete(copy)), _) => delete_copy(ctx, &secrets, copy).await?,
        (Some(_), Writing::Cleanup) | (None, _) => {}
    }
    for stale in &work.delete_stale_secrets {
        delete_copy(ctx, &secrets, stale).await?;
    }
    Ok(())
}

/// The ServiceAccounts' entries: added (unless contested) and removed.
async fn write_entries(ctx: &Context, namespace: &str, work: &NamespaceWork, secret_name: &str) -> NamespaceOutcome {
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let mut contested = None;
    for account in &work.add_to {
        match readd(ctx, namespace, account, secret_name) {
            Readd::Now => edit_pull_secrets(ctx, &accounts, account, &PullSecretEdit::Add(secret_name)).await?,
            Readd::Contested { wait, removals, remover } => {
                let message = contest_message(account, secret_name, removals, remover.as_deref(), wait);
                contested = Some(NamespaceFailure { retry_after: Some(wait), ..failure(Reason::Contested, message) });
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
}

/// What status and Events say of a contest over an entry.
fn contest_message(account: &str, secret_name: &str, removals: u32, remover: Option<&str>, wait: Duration) -> String {
    format!(
        "ServiceAccount {account}: {} removed the {secret_name} entry {removals} times; re-adding in {}s",
        writer(remover),
        wait.as_secs().max(1)
    )
}

/// Who undid the operator's work. A field manager name is any client's choice: quoted and
/// escaped, it can neither drive a terminal nor pass for our words.
fn writer(remover: Option<&str>) -> String {
    remover.map_or_else(|| "an unknown writer".to_owned(), |name| format!("field manager {}", quoted(name)))
}

/// Whether to repair the copy `name` now: a copy deleted, stripped of its labels or changed again
/// and again is a contest, repaired at a doubling interval. Only repairs made count.
fn repair_due(ctx: &Context, namespace: &str, name: &str) -> NamespaceOutcome {
    match ctx.contests.due(&copy_contest(namespace, name), std::time::Instant::now()) {
        Readd::Now => Ok(()),
        Readd::Contested { wait, removals, remover } => {
            let message = format!(
                "Secret {name}: {} deleted or changed it {removals} times; writing it again in {}s",
                writer(remover.as_deref()),
                wait.as_secs().max(1)
            );
            Err(NamespaceFailure { retry_after: Some(wait), ..failure(Reason::Contested, message) })
        }
    }
}

/// Counts a repair made of the copy `name`, which `remover` (when known) undid.
fn repaired(ctx: &Context, namespace: &str, name: &str, remover: Option<String>) {
    ctx.contests.repaired(&copy_contest(namespace, name), remover, std::time::Instant::now());
}

fn copy_contest(namespace: &str, name: &str) -> String {
    format!("Secret {namespace}/{name}")
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
            annotations: Some([(CONTENT_DIGEST_ANNOTATION.to_owned(), source.digest.clone())].into()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
        data: Some([(DOCKER_CONFIG_JSON_KEY.to_owned(), ByteString(source.payload.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// A Secret of the copy's name that was there when the copy was to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExistingSecret {
    /// Controlled by this RegistryCredential: the cache had not seen it yet, or someone removed
    /// its labels (then the write restores them).
    Managed,
    /// Someone else's: never overwritten unless `onConflict: Adopt`, and never adopted from
    /// another controller (`kind/name` of its controller owner).
    Unmanaged { controller: Option<String> },
}

impl ExistingSecret {
    fn of(credential: &RegistryCredential, secret: &ObjectMeta) -> ExistingSecret {
        let controller = secret.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        match controller {
            Some(owner) if Some(&owner.uid) == credential.metadata.uid.as_ref() => ExistingSecret::Managed,
            other => ExistingSecret::Unmanaged {
                controller: other.map(|o| format!("{}/{}", quoted(&o.kind), quoted(&o.name))),
            },
        }
    }
}

/// How a Secret that is in the way becomes the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overwrite {
    /// It is ours already (the cache had not seen it, or its labels were removed).
    TakeOver,
    /// Someone else's, and `onConflict: Adopt` says to take it, once it is known to be adoptable.
    Adopt,
}

/// Whether and how the Secret found in the way may be written. An unmanaged Secret is never
/// overwritten unless `onConflict: Adopt`.
fn overwrite(existing: &ExistingSecret, on_conflict: OnConflict, name: &str) -> Result<Overwrite, NamespaceFailure> {
    match existing {
        ExistingSecret::Managed => Ok(Overwrite::TakeOver),
        ExistingSecret::Unmanaged { controller: Some(controller) } if on_conflict == OnConflict::Adopt => {
            Err(adopt_impossible(name, &format!("it is controlled by {controller}")))
        }
        ExistingSecret::Unmanaged { .. } if on_conflict == OnConflict::Adopt => Ok(Overwrite::Adopt),
        ExistingSecret::Unmanaged { .. } => Err(unmanaged_conflict(name)),
    }
}

fn adopt_impossible(name: &str, why: &str) -> NamespaceFailure {
    failure(Reason::AdoptImpossible, format!("Secret {name} cannot be adopted: {why}; delete or rename it"))
}

fn unmanaged_conflict(name: &str) -> NamespaceFailure {
    failure(
        Reason::SecretConflict,
        format!("Secret {name} exists and is not managed by regcred-operator; set onConflict: Adopt to take it over"),
    )
}

/// Creates the copy: one POST, which fails rather than touch a Secret of that name that the
/// cache did not know; that Secret is then read and judged. Once a Secret was found in the way
/// here, it is read first: telling it again costs a read, not a refused write.
async fn create_copy(
    credential: &RegistryCredential,
    ctx: &Context,
    secrets: &Api<Secret>,
    source: &ResolvedSource,
) -> NamespaceOutcome {
    let name = &credential.spec.secret_name;
    let namespace = secrets.namespace().unwrap_or_default();
    let was_in_the_way = matches!(
        ctx.outcomes.failure_reason(&credential.name_any(), namespace),
        Some(Reason::SecretConflict | Reason::AdoptImpossible)
    );
    if !was_in_the_way || read_metadata(secrets, name).await?.is_none() {
        let copy = desired_copy(credential, namespace, source);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        match ctx.metrics.api_write("secret", "create", secrets.create(&params, &copy)).await {
            Ok(created) => {
                ctx.stores.objects.remember_write(&created.metadata, None);
                return Ok(());
            }
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(api_failure(Reason::SecretWriteFailed, &e)),
        }
    }
    let Some(existing) = read_metadata(secrets, name).await? else {
        // Deleted since: the next reconcile creates the copy.
        return Err(failure(Reason::SecretWriteFailed, format!("Secret {name} changed while being created")));
    };
    if overwrite(&ExistingSecret::of(credential, &existing), credential.spec.on_conflict, name)? == Overwrite::Adopt {
        check_adoptable(secrets, name).await?;
    }
    // The cache held no copy of this name (the plan asked for a create).
    apply_copy(credential, ctx, secrets, source, existing.resource_version.as_deref().unwrap_or_default(), None).await
}

async fn read_metadata(secrets: &Api<Secret>, name: &str) -> Result<Option<ObjectMeta>, NamespaceFailure> {
    match secrets.get_metadata_opt(name).await {
        Ok(found) => Ok(found.map(|secret| secret.metadata)),
        Err(e) => Err(api_failure(Reason::SecretWriteFailed, &e)),
    }
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
        return Err(adopt_impossible(name, &format!("its type is {}, which cannot change", quoted(secret_type))));
    }
    if existing.immutable == Some(true) {
        return Err(adopt_impossible(name, "it is immutable"));
    }
    Ok(())
}

/// Writes the whole copy with a forced server-side apply under the operator's field manager:
/// labels, owner and payload become ours, fields others added beside them stay. Only over the
/// version `based_on` that was judged: a Secret changed or recreated since is judged again.
/// `cached` is the version the cache held of it when the write was planned (`None`: none).
async fn apply_copy(
    credential: &RegistryCredential,
    ctx: &Context,
    secrets: &Api<Secret>,
    source: &ResolvedSource,
    based_on: &str,
    cached: Option<&str>,
) -> NamespaceOutcome {
    let copy = desired_copy(credential, secrets.namespace().unwrap_or_default(), source);
    let mut metadata = serde_json::to_value(&copy.metadata).unwrap_or_default();
    metadata["resourceVersion"] = json!(based_on);
    let patch = Patch::Apply(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": copy.type_, "data": copy.data,
    }));
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match ctx.metrics.api_write("secret", "apply", secrets.patch(&credential.spec.secret_name, &params, &patch)).await {
        Ok(written) => {
            ctx.stores.objects.remember_write(&written.metadata, cached);
            Ok(())
        }
        Err(e) if is_status(&e, 409) => Err(changed_meanwhile(&credential.spec.secret_name)),
        Err(e) => Err(api_failure(Reason::SecretWriteFailed, &e)),
    }
}

/// Writes the payload and its digest over the version of a copy that the plan saw (labels and
/// owner are the operator's there already).
async fn rewrite_copy(
    ctx: &Context,
    secrets: &Api<Secret>,
    copy: &CopyRef,
    source: &ResolvedSource,
) -> NamespaceOutcome {
    let patch = json!({
        "metadata": {
            "resourceVersion": &copy.resource_version,
            "annotations": { CONTENT_DIGEST_ANNOTATION: &source.digest },
        },
        "data": { DOCKER_CONFIG_JSON_KEY: ByteString(source.payload.as_bytes().to_vec()) },
    });
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    match ctx.metrics.api_write("secret", "patch", secrets.patch(&copy.name, &params, &Patch::Merge(&patch))).await {
        Ok(written) => {
            ctx.stores.objects.remember_write(&written.metadata, Some(&copy.resource_version));
            Ok(())
        }
        Err(e) if is_status(&e, 409) => Err(changed_meanwhile(&copy.name)),
        // Deleted since: the next plan creates it.
        Err(e) if is_status(&e, 404) => Err(changed_meanwhile(&copy.name)),
        Err(e) => Err(api_failure(Reason::SecretWriteFailed, &e)),
    }
}

/// Reads a copy the operator did not write in this version, and writes it again only when it no
/// longer holds the payload under the operator's labels, owner and digest: a verified copy costs
/// a read, and a copy edited under a kept digest annotation is repaired.
async fn verify_copy(
    credential: &RegistryCredential,
    ctx: &Context,
    secrets: &Api<Secret>,
    copy: &CopyRef,
    source: &ResolvedSource,
) -> NamespaceOutcome {
    let found = match secrets.get_opt(&copy.name).await {
        Ok(Some(found)) if found.metadata.uid.as_deref() == Some(&copy.uid) => found,
        // Deleted or replaced since: the watch brings that, and the next plan judges it.
        Ok(_) => return Ok(()),
        Err(e) => return Err(api_failure(Reason::SecretWriteFailed, &e)),
    };
    let based_on = found.metadata.resource_version.clone().unwrap_or_default();
    if holds_wanted(credential, &found, source) {
        ctx.stores.objects.remember_write(&found.metadata, Some(&copy.resource_version));
        return Ok(());
    }
    let namespace = secrets.namespace().unwrap_or_default();
    repair_due(ctx, namespace, &copy.name)?;
    let seen = CopyRef { resource_version: based_on, ..copy.clone() };
    rewrite_copy(ctx, secrets, &seen, source).await?;
    repaired(ctx, namespace, &copy.name, payload_writer(&found.metadata));
    Ok(())
}

/// Whether a Secret read in full is the copy as the operator writes it for this payload.
fn holds_wanted(credential: &RegistryCredential, found: &Secret, source: &ResolvedSource) -> bool {
    let payload = found.data.as_ref().and_then(|data| data.get(DOCKER_CONFIG_JSON_KEY));
    let Some(copy) = Copy::from_metadata(&found.metadata) else { return false };
    Some(&*copy.controller.uid) == credential.metadata.uid.as_deref()
        && copy.managed_by_label
        && copy.credential_label.as_deref() == Some(credential.name_any().as_str())
        && copy.digest.as_deref() == Some(source.digest.as_str())
        && payload.is_some_and(|payload| payload.0 == source.payload.as_bytes())
}

/// The field manager other than ours that last wrote a copy's payload, if any.
fn payload_writer(metadata: &ObjectMeta) -> Option<String> {
    let entries = metadata.managed_fields.iter().flatten();
    let writes_payload = |entry: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        entry.fields_v1.as_ref().is_some_and(|f| {
            f.0.get("f:data").and_then(|data| data.get(format!("f:{DOCKER_CONFIG_JSON_KEY}"))).is_some()
        })
    };
    let writers = entries.filter(writes_payload).filter_map(|entry| entry.manager.clone());
    writers.rev().find(|manager| manager != FIELD_MANAGER)
}

fn changed_meanwhile(name: &str) -> NamespaceFailure {
    failure(Reason::SecretWriteFailed, format!("Secret {name} changed while being written; it is read again"))
}

/// Deletes a copy, only if it still is the object the cache saw (UID precondition): a Secret
/// that took the name since is someone else's.
async fn delete_copy(ctx: &Context, secrets: &Api<Secret>, copy: &CopyRef) -> NamespaceOutcome {
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(copy.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match ctx.metrics.api_write("secret", "delete", secrets.delete(&copy.name, &params)).await {
        Ok(_) => {
            ctx.stores.objects.apply::<Copy>(secrets.namespace().unwrap_or_default(), &copy.name, None);
            Ok(())
        }
        // Gone, or the name now belongs to another object: nothing of ours to delete.
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(api_failure(Reason::SecretDeleteFailed, &e)),
    }
}

/// Whether to add the entry to `account` now: at once for a first add or a one-off repair; spaced
/// out when the operator's recorded entry keeps disappearing.
fn readd(ctx: &Context, namespace: &str, account: &str, secret_name: &str) -> Readd {
    let Some(cached) = ctx.stores.objects.account(namespace, account) else {
        return Readd::Now;
    };
    if !cached.added_pull_secrets().contains(secret_name) {
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
    let Some(mut account) = ctx.stores.objects.account(namespace, name) else { return Ok(()) };
    if !account.whole {
        // The cache keeps part of a long list: the patch, which replaces the list, needs all of it.
        let Some(fresh) = read_account(ctx, accounts, name).await? else { return Ok(()) };
        account = fresh;
    }
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    for _ in 0..PATCH_ATTEMPTS {
        let Some(patch) = pull_secrets_patch(&account, edit) else { return Ok(()) };
        let patch = Patch::Merge(&patch);
        match ctx.metrics.api_write("serviceaccount", "patch", accounts.patch(name, &params, &patch)).await {
            Ok(patched) => {
                ctx.stores.objects.remember_account(namespace, &patched, Some(&account.resource_version));
                return Ok(());
            }
            Err(e) if is_status(&e, 409) => {
                ctx.metrics.patch_conflict();
                let Some(fresh) = read_account(ctx, accounts, name).await? else { return Ok(()) };
                account = fresh;
            }
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(api_failure(Reason::ServiceAccountPatchFailed, &e)),
        }
    }
    Err(failure(
        Reason::ServiceAccountPatchConflict,
        format!("ServiceAccount {name} kept changing during {PATCH_ATTEMPTS} attempts to patch it"),
    ))
}

/// A ServiceAccount read fresh, whole (`None`: gone). The cache takes what it keeps of it, so
/// what the cache could not tell before (a name that came into use since) it tells now.
async fn read_account(
    ctx: &Context,
    accounts: &Api<ServiceAccount>,
    name: &str,
) -> Result<Option<Account>, NamespaceFailure> {
    let namespace = accounts.namespace().unwrap_or_default();
    let seen = ctx.stores.objects.account(namespace, name).map(|cached| cached.resource_version);
    match accounts.get_opt(name).await {
        Ok(Some(fresh)) => {
            ctx.stores.objects.remember_account(namespace, &fresh, seen.as_deref());
            Ok(Some(Account::from_object(&fresh)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(api_failure(Reason::ServiceAccountReadFailed, &e)),
    }
}

/// The merge patch for the change, guarded by the resourceVersion it was computed from, or
/// `None` when the ServiceAccount already is as wanted.
fn pull_secrets_patch(account: &Account, edit: &PullSecretEdit) -> Option<serde_json::Value> {
    let mut entries: Vec<&str> = account.pull_secrets.iter().map(|name| &**name).collect();
    let mut record = account.added_pull_secrets();
    match edit {
        PullSecretEdit::Add(name) => {
            if entries.contains(name) {
                return None;
            }
            entries.push(name);
            record.insert(name);
        }
        PullSecretEdit::Remove(names) => {
            let ours: Vec<&str> = names.iter().copied().filter(|name| record.contains(name)).collect();
            if ours.is_empty() {
                return None;
            }
            entries.retain(|entry| !ours.contains(entry));
            ours.iter().for_each(|name| record.remove(name));
        }
    }
    let entries: Vec<serde_json::Value> = entries.into_iter().map(|name| json!({ "name": name })).collect();
    Some(json!({
        "metadata": {
            "resourceVersion": &*account.resource_version,
            "annotations": { ADDED_PULL_SECRETS_ANNOTATION: record.annotation() },
        },
        "imagePullSecrets": entries,
    }))
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// A failure from an API error; API messages name objects and fields, not Secret data, but may
/// echo what a tenant wrote (an invalid value, an admission webhook's denial): quoted.
fn api_failure(reason: Reason, error: &kube::Error) -> NamespaceFailure {
    match error {
        kube::Error::Api(status) => failure(reason, format!("API error {}: {}", status.code, quoted(&status.message))),
        other => failure(reason, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::LocalObjectReference;

    #[test]
    fn a_field_manager_name_in_a_contest_is_quoted_and_escaped() {
        let hostile = "argocd\u{1b}]0;owned\u{7}\r\u{202e}; the operator is fine";
        let message = contest_message("default", "regcred", 3, Some(hostile), Duration::from_secs(8));
        for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
            assert!(!message.contains(raw), "{raw:?} in {message:?}");
        }
        assert!(message.starts_with("ServiceAccount default: field manager \"argocd\\u{1b}]0;owned"), "{message}");
        assert_eq!(
            contest_message("default", "regcred", 3, None, Duration::from_secs(8)),
            "ServiceAccount default: an unknown writer removed the regcred entry 3 times; re-adding in 8s"
        );
    }

    fn account(entries: &[&str], record: Option<&str>) -> Account {
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
        Account::from_object(&account)
    }

    #[test]
    fn an_unmanaged_secret_is_never_overwritten_unless_adopted() {
        let unmanaged = ExistingSecret::Unmanaged { controller: None };
        assert_eq!(overwrite(&ExistingSecret::Managed, OnConflict::Skip, "regcred"), Ok(Overwrite::TakeOver));
        assert_eq!(overwrite(&unmanaged, OnConflict::Adopt, "regcred"), Ok(Overwrite::Adopt));
        let refused = overwrite(&unmanaged, OnConflict::Skip, "regcred").unwrap_err();
        assert_eq!(refused.reason, Reason::SecretConflict);
        let controlled = ExistingSecret::Unmanaged { controller: Some("SealedSecret/pull".into()) };
        let impossible = overwrite(&controlled, OnConflict::Adopt, "regcred").unwrap_err();
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
