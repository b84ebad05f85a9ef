//! The RegistryCredential's status and Events: computed from a reconcile's outcome, written only
//! when they change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::context::Context;
use super::error::{Error, Result, quoted};
use super::ownership::FIELD_MANAGER;
use super::plan::Blocked;
use super::source::{ResolvedSource, SourceProblem};
use super::state::NamespaceFailure;
use crate::crd::selection::{POD_INJECTION_DISABLED, POD_INJECTION_LABEL};
use crate::crd::{NamespaceCounts, RegistryCredential, RegistryCredentialStatus, StuckPodCounts, SyncFailure};
use crate::credential::expiry::Expiry;
use crate::reason::{Category, Reason};

/// At most this many failures are listed in status; the counts cover the rest.
pub(crate) const MAX_LISTED_FAILURES: usize = 20;

/// Where the namespaces of one RegistryCredential stand: the plan over every namespace, and what
/// the namespace reconciles found. The status is their aggregate.
pub(crate) struct Aggregate<'a> {
    /// Selected, non-terminating namespaces.
    pub(crate) matched: &'a BTreeSet<String>,
    /// Selected namespaces where the copy must not be written.
    pub(crate) blocked: &'a BTreeMap<String, Blocked>,
    /// Namespaces whose last writes failed.
    pub(crate) failed: &'a BTreeMap<String, NamespaceFailure>,
    /// Namespaces with changes not yet written (and not failed).
    pub(crate) pending: usize,
    /// Namespaces written since the last status.
    pub(crate) written: usize,
    /// Selected ServiceAccounts whose Pods are refused while they do not list the copy
    /// (`namespace/name`).
    pub(crate) enforcing_accounts: &'a BTreeSet<String>,
}

/// The moment a status is computed at, and how long before an expiry `Expiring` turns True.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) now: Timestamp,
    pub(crate) expiry_warning: Duration,
}

impl Clock {
    pub(crate) fn now(expiry_warning: Duration) -> Clock {
        Clock { now: Timestamp::now(), expiry_warning }
    }

    /// The credential's expiry seen from now: lapsed, within the warning window, or further.
    fn stage(&self, expiry: &Expiry) -> ExpiryStage {
        let left = expiry.at.duration_since(self.now);
        if left <= SignedDuration::ZERO {
            ExpiryStage::Expired
        } else if left.unsigned_abs() <= self.expiry_warning {
            ExpiryStage::Soon
        } else {
            ExpiryStage::Ahead
        }
    }

    /// When the status of a credential expiring at `expiry` next changes by the clock alone: the
    /// warning window opening, or the expiry itself. None once it expired.
    pub(crate) fn next_expiry_change(&self, expiry: &Expiry) -> Option<Duration> {
        let warning = SignedDuration::try_from(self.expiry_warning).unwrap_or(SignedDuration::MAX);
        let left = expiry.at.duration_since(self.now);
        let next = if left > warning { left - warning } else { left };
        (next > SignedDuration::ZERO).then(|| next.unsigned_abs())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpiryStage {
    Ahead,
    Soon,
    Expired,
}

/// The status an aggregate describes. The credential's current status keeps
/// `lastTransitionTime` stable while a condition's status does not change.
pub(crate) fn desired_status(
    credential: &RegistryCredential,
    aggregate: &Aggregate,
    source: std::result::Result<&ResolvedSource, &SourceProblem>,
    admission_policies_served: bool,
    clock: Clock,
) -> RegistryCredentialStatus {
    let matched = aggregate.matched;
    let mut failures = failures(&credential.spec.secret_name, aggregate);
    let failed = i32::try_from(failures.iter().filter(|f| matched.contains(&f.namespace)).count()).unwrap_or(i32::MAX);
    let total = i32::try_from(matched.len()).unwrap_or(i32::MAX);
    let pending = i32::try_from(aggregate.pending).unwrap_or(i32::MAX);
    let synced = if source.is_ok() { total.saturating_sub(failed).saturating_sub(pending).max(0) } else { 0 };
    let expiry = source.ok().and_then(|source| source.expiry);
    let health = match source {
        Err(problem) => Health::Source(problem),
        Ok(source) if expiry.is_some_and(|expiry| clock.stage(&expiry) == ExpiryStage::Expired) => {
            Health::Expired(expiry.expect("checked above"), source.refresh_failure.as_ref())
        }
        Ok(_) if failures.is_empty() && pending > 0 => Health::Progressing { pending, total },
        Ok(_) if failures.is_empty() => Health::Synced { synced, total },
        Ok(_) => {
            let needs_a_person = failures
                .iter()
                .any(|f| f.reason.parse::<Reason>().is_ok_and(|reason| reason.category() == Category::Conflict));
            Health::Failed { failed, total, needs_a_person }
        }
    };
    failures.truncate(MAX_LISTED_FAILURES);
    let mut conditions = health.conditions(credential);
    if let (Ok(ResolvedSource { refresh_failure: Some(problem), .. }), Health::Synced { .. } | Health::Failed { .. }) =
        (source, &health)
        && !conditions.iter().any(|c| c.type_ == "Reconciling" || c.type_ == "Stalled")
    {
        let message =
            format!("refreshing the credential failed, retried with backoff; the copies keep the last one: {problem}");
        conditions.push(condition(credential, "Reconciling", "True", problem.reason(), message));
    }
    let injected = credential.spec.inject_into_pods && admission_policies_served;
    let enforcing_accounts: Vec<String> = match injected {
        true => aggregate.enforcing_accounts.iter().take(MAX_LISTED_FAILURES).cloned().collect(),
        false => Vec::new(),
    };
    conditions.push(injection_condition(credential, admission_policies_served, aggregate.enforcing_accounts.len()));
    conditions.extend(expiry.map(|expiry| expiring_condition(credential, &expiry, clock)));
    let (registries, normalized) = match source {
        Ok(source) => (source.registries.clone(), source.rewrites.clone()),
        Err(_) => (Vec::new(), Vec::new()),
    };
    RegistryCredentialStatus {
        observed_generation: credential.metadata.generation,
        conditions,
        synced: Some(format!("{synced}/{total}")),
        namespaces: Some(NamespaceCounts { matched: total, synced, failed }),
        failures,
        registries,
        normalized,
        stuck_pods: None,
        mountable_secrets_enforced: enforcing_accounts,
        expires_at: expiry.map(|expiry| Time(expiry.at)),
    }
}

/// Every namespace that is not as it should be, sorted: those blocked by the plan, and those whose
/// writes failed. Namespaces that stopped matching are listed too: a failed prune left a copy.
fn failures(secret_name: &str, aggregate: &Aggregate) -> Vec<SyncFailure> {
    let blocked = aggregate.blocked.iter().map(|(namespace, blocked)| {
        let (reason, message) = match blocked {
            Blocked::NameClaimedBy(winner) => (
                Reason::NameConflict,
                format!("RegistryCredential {winner} claims Secret {secret_name} here and takes precedence (older)"),
            ),
            Blocked::ControlledByAnother(owner) => (
                Reason::NameConflict,
                format!(
                    "Secret {secret_name} here is controlled by RegistryCredential {}, which this operator instance does not manage",
                    quoted(owner)
                ),
            ),
            Blocked::SourceSecret => (
                Reason::SecretIsSource,
                format!("Secret {secret_name} here is the source of a RegistryCredential; it is never written"),
            ),
        };
        SyncFailure { namespace: namespace.clone(), reason: reason.to_string(), message }
    });
    let failed = aggregate.failed.iter().map(|(namespace, failure)| {
        let pruning =
            if aggregate.matched.contains(namespace) { "" } else { "pruning a namespace that stopped matching: " };
        SyncFailure {
            namespace: namespace.clone(),
            reason: failure.reason.to_string(),
            message: format!("{pruning}{}", failure.message),
        }
    });
    let mut failures: Vec<SyncFailure> = blocked.chain(failed).collect();
    failures.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    failures
}

/// Where a credential stands, as its conditions tell it.
enum Health<'a> {
    Synced {
        synced: i32,
        total: i32,
    },
    /// The namespace reconciles are still writing.
    Progressing {
        pending: i32,
        total: i32,
    },
    /// The source is unusable: a person has to act.
    Source(&'a SourceProblem),
    /// The credential expired, as its source states: whatever refreshes the source has stopped
    /// (for a minted one, why its last refresh failed).
    Expired(Expiry, Option<&'a SourceProblem>),
    /// Some namespaces failed; a person has to act when any failure is a conflict.
    Failed {
        failed: i32,
        total: i32,
        needs_a_person: bool,
    },
}

impl Health<'_> {
    /// `Ready`, and beside it what kstatus (Flux, `kubectl wait`) and Argo CD read: `Stalled`
    /// while a person has to act, `Reconciling` while failed writes are retried.
    fn conditions(&self, credential: &RegistryCredential) -> Vec<Condition> {
        match self {
            Health::Synced { synced, total } => {
                vec![condition(credential, "Ready", "True", Reason::Synced, format!("{synced}/{total} namespaces"))]
            }
            Health::Progressing { pending, total } => {
                let message = format!("writing {pending} of {total} namespaces");
                vec![
                    condition(credential, "Ready", "False", Reason::Progressing, message.clone()),
                    condition(credential, "Reconciling", "True", Reason::Progressing, message),
                ]
            }
            Health::Source(problem) => vec![
                condition(credential, "Ready", "False", problem.reason(), problem.to_string()),
                condition(credential, "Stalled", "True", problem.reason(), problem.to_string()),
            ],
            Health::Expired(expiry, refresh_failure) => {
                let remedy = match (refresh_failure, &credential.spec.source.credential_provider) {
                    (Some(problem), _) => format!("its refresh fails: {problem}"),
                    (None, Some(_)) => "it is minted again at the next refresh".to_owned(),
                    (None, None) => "refresh the source Secret".to_owned(),
                };
                let message = format!(
                    "the credential expired at {} ({}); {remedy}",
                    expiry.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    expiry.from
                );
                vec![
                    condition(credential, "Ready", "False", Reason::Expired, message.clone()),
                    condition(credential, "Stalled", "True", Reason::Expired, message),
                ]
            }
            Health::Failed { failed, total, needs_a_person } => {
                let ready = format!("{failed} of {total} namespaces failed; see status.failures");
                let (progress, message) = if *needs_a_person {
                    ("Stalled", format!("{failed} of {total} namespaces need a person; see status.failures"))
                } else {
                    ("Reconciling", format!("retrying {failed} of {total} namespaces with backoff"))
                };
                vec![
                    condition(credential, "Ready", "False", Reason::SyncFailed, ready),
                    condition(credential, progress, "True", Reason::SyncFailed, message),
                ]
            }
        }
    }
}

/// `PodInjection`: whether new Pods get the copy at admission, and whether that can get some of
/// them refused (`enforcing` selected ServiceAccounts enforce mountable secrets).
fn injection_condition(
    credential: &RegistryCredential,
    admission_policies_served: bool,
    enforcing: usize,
) -> Condition {
    let secret = &credential.spec.secret_name;
    let (status, reason, message) = match (credential.spec.inject_into_pods, admission_policies_served) {
        (false, _) => ("False", Reason::InjectionDisabled, "injectIntoPods is false: ServiceAccount patching only".to_owned()),
        (true, false) => (
            "False",
            Reason::AdmissionPolicyNotServed,
            "the cluster serves no MutatingAdmissionPolicy API (admissionregistration.k8s.io/v1 on Kubernetes 1.36+, \
             v1beta1 where 1.34 / 1.35 enable it): ServiceAccount patching only, so a Pod listing its own pull secrets or created before the patch goes without the copy"
                .to_owned(),
        ),
        (true, true) if enforcing > 0 => (
            "True",
            Reason::MountableSecretsEnforced,
            format!(
                "new Pods get the copy at admission, but {enforcing} selected ServiceAccounts enforce mountable secrets \
                 (status.mountableSecretsEnforced): their Pods are refused while they do not list {secret}; label such a \
                 namespace {POD_INJECTION_LABEL}={POD_INJECTION_DISABLED} to leave its Pods to ServiceAccount patching"
            ),
        ),
        (true, true) => (
            "True",
            Reason::AdmissionPolicyServed,
            "the cluster serves MutatingAdmissionPolicy: with the shipped policy installed, new Pods of \
             selected namespaces and ServiceAccounts get the copy at admission"
                .to_owned(),
        ),
    };
    condition(credential, "PodInjection", status, reason, message)
}

/// `Expiring`: whether the credential's stated expiry is near (`ExpiresSoon`), passed (`Expired`)
/// or further than the warning window (`ExpiryAhead`).
fn expiring_condition(credential: &RegistryCredential, expiry: &Expiry, clock: Clock) -> Condition {
    let at = expiry.at.strftime("%Y-%m-%dT%H:%M:%SZ");
    let (status, reason, message) = match clock.stage(expiry) {
        ExpiryStage::Ahead => ("False", Reason::ExpiryAhead, format!("expires at {at} ({})", expiry.from)),
        ExpiryStage::Soon => {
            let minutes = expiry.at.duration_since(clock.now).unsigned_abs().as_secs().div_ceil(60);
            let message = format!(
                "expires at {at}, in {minutes} min ({}): the source Secret should be refreshed by now",
                expiry.from
            );
            ("True", Reason::ExpiresSoon, message)
        }
        ExpiryStage::Expired => ("True", Reason::Expired, format!("expired at {at} ({})", expiry.from)),
    };
    condition(credential, "Expiring", status, reason, message)
}

/// A condition of this generation; its `lastTransitionTime` stays while its status does not change.
fn condition(credential: &RegistryCredential, type_: &str, status: &str, reason: Reason, message: String) -> Condition {
    let previous = credential.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.to_string(),
        message,
        observed_generation: credential.metadata.generation,
        last_transition_time,
    }
}

/// Writes the status when it differs from the current one, and records the Events it implies.
pub(crate) async fn publish(
    credential: &RegistryCredential,
    ctx: &Context,
    aggregate: &Aggregate<'_>,
    source: std::result::Result<&ResolvedSource, &SourceProblem>,
    stuck_pods: Option<StuckPodCounts>,
) -> Result<()> {
    let served = ctx.settings.admission_policies_served;
    let clock = Clock::now(ctx.settings.expiry_warning);
    let mut status = desired_status(credential, aggregate, source, served, clock);
    status.stuck_pods = stuck_pods;
    export(ctx, credential, &status);
    for event in events(credential.status.as_ref(), &status, aggregate.written) {
        record(ctx, credential, event).await;
    }
    if credential.status.as_ref() == Some(&status) {
        return Ok(());
    }
    write(credential, ctx, &status).await
}

/// The credential's gauges, read from the status computed for it (never computed apart).
fn export(ctx: &Context, credential: &RegistryCredential, status: &RegistryCredentialStatus) {
    let name = credential.name_any();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    if let Some((ready, reason)) = ready.and_then(|c| Some((c.status == "True", c.reason.parse::<Reason>().ok()?))) {
        ctx.metrics.set_credential_ready(&name, ready, reason);
    }
    if let Some(counts) = status.namespaces {
        ctx.metrics.set_namespace_counts(&name, counts.matched, counts.synced, counts.failed);
    }
    ctx.metrics.set_credential_expiry(&name, status.expires_at.as_ref().map(|at| at.0));
}

/// A Warning when `Expiring` turns to `ExpiresSoon` (the lapse itself is a source Event of `Ready`).
fn expiring_event(previous: Option<&RegistryCredentialStatus>, status: &RegistryCredentialStatus) -> Option<Event> {
    let expiring = |status: &RegistryCredentialStatus| {
        status.conditions.iter().find(|c| c.type_ == "Expiring").map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (reason, message) = expiring(status).filter(|(reason, _)| reason == Reason::ExpiresSoon.as_str())?;
    if previous.and_then(expiring).is_some_and(|(was, _)| was == reason) {
        return None;
    }
    Some(Event {
        type_: EventType::Warning,
        reason,
        note: Some(format!("the credential {message}")),
        action: "ReadSource".into(),
        secondary: None,
    })
}

/// The Events a new status implies, compared with the previous one: changes written, a source
/// turning bad, new conflicts. Repeating the same state records nothing.
fn events(
    previous: Option<&RegistryCredentialStatus>,
    status: &RegistryCredentialStatus,
    written: usize,
) -> Vec<Event> {
    let mut events = Vec::new();
    let category = |reason: &str| reason.parse::<Reason>().ok().map(Reason::category);
    // A source turning bad (Ready), or a minted credential's refresh failing (Reconciling).
    for type_ in ["Ready", "Reconciling"] {
        let find = |status: &RegistryCredentialStatus| status.conditions.iter().find(|c| c.type_ == type_).cloned();
        let (now, was) = (find(status), previous.and_then(find));
        if let Some(now) = now.filter(|now| category(&now.reason) == Some(Category::Source))
            && was.is_none_or(|w| w.reason != now.reason || w.message != now.message)
        {
            events.push(Event {
                type_: EventType::Warning,
                reason: now.reason.clone(),
                note: Some(format!("{}; existing copies are left in place", now.message)),
                action: "ReadSource".into(),
                secondary: None,
            });
        }
    }
    if written > 0 {
        events.push(Event {
            type_: EventType::Normal,
            reason: Reason::Synced.to_string(),
            note: Some(format!(
                "wrote changes to {written} namespace{}; {} synced",
                if written == 1 { "" } else { "s" },
                status.synced.as_deref().unwrap_or_default()
            )),
            action: "Sync".into(),
            secondary: None,
        });
    }
    events.extend(expiring_event(previous, status));
    let known: BTreeSet<(&str, &str)> =
        previous.iter().flat_map(|p| &p.failures).map(|f| (f.namespace.as_str(), f.reason.as_str())).collect();
    let new_conflicts: Vec<&SyncFailure> = status
        .failures
        .iter()
        .filter(|f| {
            category(&f.reason) == Some(Category::Conflict)
                && !known.contains(&(f.namespace.as_str(), f.reason.as_str()))
        })
        .collect();
    if let Some(first) = new_conflicts.first() {
        events.push(Event {
            type_: EventType::Warning,
            reason: first.reason.clone(),
            note: Some(format!(
                "{} namespaces: {}{}",
                new_conflicts.len(),
                first.message,
                if new_conflicts.len() > 1 { " (and others; see status.failures)" } else { "" }
            )),
            action: "Sync".into(),
            secondary: None,
        });
    }
    events
}

/// Records the Event for a finished cleanup.
pub(crate) async fn record_cleanup(credential: &RegistryCredential, ctx: &Context, namespaces: usize) {
    let event = Event {
        type_: EventType::Normal,
        reason: Reason::Cleanup.to_string(),
        note: Some(format!("removed copies and ServiceAccount entries from {namespaces} namespaces")),
        action: "Cleanup".into(),
        secondary: None,
    };
    record(ctx, credential, event).await;
    ctx.metrics.forget_credential(&credential.name_any());
}

/// Shows in status what a cleanup could not remove yet (the finalizer stays and it is retried).
pub(crate) async fn record_cleanup_failure(
    credential: &RegistryCredential,
    ctx: &Context,
    failed: &BTreeMap<String, NamespaceFailure>,
) -> Result<()> {
    let mut failures: Vec<SyncFailure> = failed
        .iter()
        .map(|(namespace, failure)| SyncFailure {
            namespace: namespace.clone(),
            reason: failure.reason.to_string(),
            message: failure.message.clone(),
        })
        .collect();
    let message = format!("{} namespaces not cleaned up yet; retrying; see status.failures", failures.len());
    failures.truncate(MAX_LISTED_FAILURES);
    let mut status = credential.status.clone().unwrap_or_default();
    let ready = condition(credential, "Ready", "False", Reason::CleanupFailed, message);
    status.conditions.retain(|c| c.type_ != "Ready");
    status.conditions.insert(0, ready);
    status.failures = failures;
    export(ctx, credential, &status);
    if credential.status.as_ref() == Some(&status) {
        return Ok(());
    }
    write(credential, ctx, &status).await
}

/// Says in status why the credential is not reconciled: a cache it waits for cannot be listed
/// (RBAC that forbids a list, say). Only `Ready` and `Reconciling` change; the rest is as last seen.
pub(crate) async fn record_caches_not_listed(credential: &RegistryCredential, ctx: &Context, why: &str) -> Result<()> {
    let mut status = credential.status.clone().unwrap_or_default();
    let message = format!("waiting for caches the operator cannot list: {why}");
    status.conditions.retain(|c| c.type_ != "Ready" && c.type_ != "Reconciling");
    status.conditions.insert(0, condition(credential, "Ready", "False", Reason::CachesNotListed, message.clone()));
    status.conditions.insert(1, condition(credential, "Reconciling", "True", Reason::CachesNotListed, message));
    export(ctx, credential, &status);
    if credential.status.as_ref() == Some(&status) {
        return Ok(());
    }
    write(credential, ctx, &status).await
}

async fn write(credential: &RegistryCredential, ctx: &Context, status: &RegistryCredentialStatus) -> Result<()> {
    let api: Api<RegistryCredential> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": RegistryCredential::api_version(&()),
        "kind": RegistryCredential::kind(&()),
        "status": status,
    });
    let (name, params, patch) =
        (credential.name_any(), PatchParams::apply(FIELD_MANAGER).force(), Patch::Apply(&patch));
    let written = api.patch_status(&name, &params, &patch);
    ctx.metrics.api_write("registrycredential", "status", written).await.map_err(Error::Status)?;
    Ok(())
}

async fn record(ctx: &Context, credential: &RegistryCredential, event: Event) {
    let reference = credential.object_ref(&());
    let published = ctx.recorder.publish(&event, &reference);
    if let Err(error) = ctx.metrics.api_write("event", "create", published).await {
        warn!(credential = %credential.name_any(), %error, "could not record Event");
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::controller::fixture;
    use crate::controller::state::failure;
    use crate::credential::expiry::ExpirySource;

    fn credential() -> RegistryCredential {
        fixture::credential("rc").generation(3).build()
    }

    fn source() -> ResolvedSource {
        ResolvedSource {
            payload: "{}".into(),
            digest: "d".into(),
            registries: vec!["registry.test".into()],
            rewrites: vec![],
            warnings: vec![],
            expiry: None,
            refresh_failure: None,
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn clock() -> Clock {
        Clock { now: Timestamp::from_second(NOW).unwrap(), expiry_warning: Duration::from_secs(600) }
    }

    fn expiring_in(seconds: i64) -> ResolvedSource {
        let at = Timestamp::from_second(NOW + seconds).unwrap();
        ResolvedSource { expiry: Some(Expiry { at, from: ExpirySource::ExpiresAtKey }), ..source() }
    }

    fn find<'a>(status: &'a RegistryCredentialStatus, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
        let c = status.conditions.iter().find(|c| c.type_ == type_)?;
        Some((c.status.as_str(), c.reason.as_str(), c.message.as_str()))
    }

    #[test]
    fn a_stated_expiry_is_shown_and_warned_of_before_it_passes() {
        let matched: BTreeSet<String> = ["a".to_owned()].into();
        let (no_blocks, no_failures) = (BTreeMap::new(), BTreeMap::new());
        let synced = aggregate(&matched, &no_blocks, &no_failures);
        let at = |seconds| desired_status(&credential(), &synced, Ok(&expiring_in(seconds)), true, clock());

        let ahead = at(3600);
        assert_eq!(ahead.expires_at, Some(Time(Timestamp::from_second(NOW + 3600).unwrap())));
        assert_eq!(find(&ahead, "Ready").map(|c| c.1), Some("Synced"));
        let (status, reason, message) = find(&ahead, "Expiring").unwrap();
        assert_eq!((status, reason), ("False", "ExpiryAhead"));
        assert_eq!(message, "expires at 2027-01-15T09:00:00Z (the key expires_at)");

        let soon = at(600);
        assert_eq!(find(&soon, "Ready").map(|c| c.1), Some("Synced"), "still works until it expires");
        let (status, reason, message) = find(&soon, "Expiring").unwrap();
        assert_eq!((status, reason), ("True", "ExpiresSoon"));
        assert!(message.starts_with("expires at 2027-01-15T08:10:00Z, in 10 min"), "{message}");
        let reasons =
            |previous, status| events(Some(previous), status, 0).into_iter().map(|e| e.reason).collect::<Vec<_>>();
        assert_eq!(reasons(&ahead, &soon), ["ExpiresSoon"]);
        assert!(reasons(&soon, &soon).is_empty(), "warned once");

        let lapsed = at(0);
        let (status, reason, message) = find(&lapsed, "Ready").unwrap();
        assert_eq!((status, reason), ("False", "Expired"));
        assert!(message.starts_with("the credential expired at 2027-01-15T08:00:00Z"), "{message}");
        assert_eq!(find(&lapsed, "Stalled").map(|c| c.1), Some("Expired"));
        assert_eq!(find(&lapsed, "Expiring").map(|c| (c.0, c.1)), Some(("True", "Expired")));
        assert_eq!(reasons(&soon, &lapsed), ["Expired"]);

        let unknown = desired_status(&credential(), &synced, Ok(&source()), true, clock());
        assert_eq!((&unknown.expires_at, find(&unknown, "Expiring")), (&None, None));
    }

    #[test]
    fn the_clock_wakes_a_credential_when_its_window_opens_and_when_it_expires() {
        let expiry =
            |seconds| Expiry { at: Timestamp::from_second(NOW + seconds).unwrap(), from: ExpirySource::Annotation };
        assert_eq!(clock().next_expiry_change(&expiry(3600)), Some(Duration::from_secs(3000)));
        assert_eq!(clock().next_expiry_change(&expiry(601)), Some(Duration::from_secs(1)));
        assert_eq!(clock().next_expiry_change(&expiry(600)), Some(Duration::from_secs(600)));
        assert_eq!(clock().next_expiry_change(&expiry(5)), Some(Duration::from_secs(5)));
        assert_eq!(clock().next_expiry_change(&expiry(0)), None);
        assert_eq!(clock().next_expiry_change(&expiry(-5)), None);
    }

    fn aggregate<'a>(
        matched: &'a BTreeSet<String>,
        blocked: &'a BTreeMap<String, Blocked>,
        failed: &'a BTreeMap<String, NamespaceFailure>,
    ) -> Aggregate<'a> {
        static NO_ACCOUNTS: BTreeSet<String> = BTreeSet::new();
        Aggregate { matched, blocked, failed, pending: 0, written: 0, enforcing_accounts: &NO_ACCOUNTS }
    }

    /// The status of a credential with a good source, these namespaces matched and these failed.
    fn status_of(matched: &BTreeSet<String>, failed: &BTreeMap<String, NamespaceFailure>) -> RegistryCredentialStatus {
        desired_status(&credential(), &aggregate(matched, &BTreeMap::new(), failed), Ok(&source()), true, clock())
    }

    #[test]
    fn failures_are_sorted_capped_and_counted_in_full() {
        let matched: BTreeSet<String> = (0..30).map(|i| format!("ns-{i:02}")).collect();
        let failed: BTreeMap<String, NamespaceFailure> =
            matched.iter().rev().map(|ns| (ns.clone(), failure(Reason::SecretWriteFailed, "denied"))).collect();
        let status = status_of(&matched, &failed);
        assert_eq!(status.failures.len(), MAX_LISTED_FAILURES);
        assert_eq!(status.failures[0].namespace, "ns-00");
        assert_eq!(status.namespaces, Some(NamespaceCounts { matched: 30, synced: 0, failed: 30 }));
        let ready = &status.conditions[0];
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SyncFailed"));
        assert_eq!(ready.observed_generation, Some(3));
        let retrying = &status.conditions[1];
        assert_eq!((retrying.type_.as_str(), retrying.status.as_str()), ("Reconciling", "True"), "API failures retry");
    }

    #[test]
    fn a_failed_prune_is_listed_and_keeps_ready_false() {
        let matched = BTreeSet::from(["a".to_owned()]);
        let failed = BTreeMap::from([("gone".to_owned(), failure(Reason::SecretDeleteFailed, "denied"))]);
        let status = status_of(&matched, &failed);
        assert_eq!(status.failures.len(), 1);
        assert!(status.failures[0].message.starts_with("pruning a namespace that stopped matching"));
        assert_eq!(status.namespaces, Some(NamespaceCounts { matched: 1, synced: 1, failed: 0 }));
        assert_eq!(status.conditions[0].status, "False");
        assert_eq!(status.conditions[1].type_, "Reconciling");
    }

    #[test]
    fn an_unchanged_outcome_keeps_the_status_byte_equal_and_records_no_event() {
        let matched = BTreeSet::from(["a".to_owned()]);
        let mut rc = credential();
        let (none, no_failures) = (BTreeMap::new(), BTreeMap::new());
        let converged = aggregate(&matched, &none, &no_failures);
        let first = desired_status(&rc, &converged, Ok(&source()), true, clock());
        assert_eq!(first.synced.as_deref(), Some("1/1"));
        rc.status = Some(first.clone());
        let again = desired_status(&rc, &converged, Ok(&source()), true, clock());
        assert_eq!(again, first, "lastTransitionTime is kept, so nothing is rewritten");
        assert!(events(Some(&first), &again, 0).is_empty());
    }

    #[test]
    fn namespaces_still_being_written_keep_ready_false_and_reconciling_true() {
        let matched: BTreeSet<String> = (0..10).map(|i| format!("ns-{i}")).collect();
        let (none, no_failures) = (BTreeMap::new(), BTreeMap::new());
        let writing = Aggregate { pending: 4, written: 6, ..aggregate(&matched, &none, &no_failures) };
        let status = desired_status(&credential(), &writing, Ok(&source()), true, clock());
        assert_eq!(status.synced.as_deref(), Some("6/10"));
        let (ready, reconciling) = (&status.conditions[0], &status.conditions[1]);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Progressing"));
        assert_eq!((reconciling.type_.as_str(), reconciling.status.as_str()), ("Reconciling", "True"));
        assert_eq!(events(None, &status, writing.written)[0].reason, "Synced", "what was written is told");
    }

    #[test]
    fn a_bad_source_is_reported_once_and_conflicts_when_new() {
        let matched = BTreeSet::from(["a".to_owned()]);
        let problem = SourceProblem::NotFound { namespace: "regcred-system".into(), name: "src".into() };
        let (none, no_failures) = (BTreeMap::new(), BTreeMap::new());
        let bad =
            desired_status(&credential(), &aggregate(&matched, &none, &no_failures), Err(&problem), true, clock());
        assert_eq!(bad.conditions[0].reason, "SourceNotFound");
        assert_eq!(
            (bad.conditions[1].type_.as_str(), bad.conditions[1].reason.as_str()),
            ("Stalled", "SourceNotFound"),
            "a bad source waits for a person"
        );
        assert_eq!(events(None, &bad, 0)[0].reason, "SourceNotFound");
        assert!(events(Some(&bad), &bad, 0).is_empty());

        let conflicts = BTreeMap::from([("a".to_owned(), Blocked::NameClaimedBy("older".to_owned()))]);
        let conflicted =
            desired_status(&credential(), &aggregate(&matched, &conflicts, &no_failures), Ok(&source()), true, clock());
        assert_eq!(events(None, &conflicted, 0)[0].reason, "NameConflict");
        assert_eq!(conflicted.conditions[1].type_, "Stalled");
        assert!(events(Some(&conflicted), &conflicted, 0).is_empty());
    }
}
