//! What the controllers remember between reconciles, shared by the reconcilers that record it and
//! the status that reports it: each namespace's outcome, requeue backoff, the eviction budget, and
//! the gate between a credential's cleanup and its namespaces' writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::reason::Reason;

/// Keeps a credential's cleanup apart from its namespaces' writes. A namespace reconcile that
/// began before the credential's deletion (held up by an API server outage, say) would otherwise
/// write its ServiceAccount entry after the cleanup removed them all, and an entry has no owner to
/// be collected by. Writes are admitted per credential while it is still active once admitted;
/// the cleanup closes the gate, waiting for the writes admitted before it.
#[derive(Default)]
pub(crate) struct WriteGates(Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>);

impl WriteGates {
    fn gate(&self, uid: &str) -> Arc<tokio::sync::RwLock<()>> {
        self.0.lock().expect("write gates lock").entry(uid.to_owned()).or_default().clone()
    }

    /// Admits a namespace's writes for the credential with this UID, if `still_active` says so
    /// once admitted; `None`: it is being cleaned up, or gone. Never waits: a namespace reconcile
    /// held up behind one credential's cleanup would hold up the others' too.
    pub(crate) fn admit(
        &self,
        uid: &str,
        still_active: impl FnOnce() -> bool,
    ) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
        let admitted = self.gate(uid).try_read_owned().ok()?;
        still_active().then_some(admitted)
    }

    /// Closes the gate for the credential's cleanup, once the writes admitted before have ended.
    pub(crate) async fn close(&self, uid: &str) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate(uid).write_owned().await
    }

    /// The credential is gone.
    pub(crate) fn forget(&self, uid: &str) {
        self.0.lock().expect("write gates lock").remove(uid);
    }
}

/// Why a namespace could not be synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceFailure {
    pub(crate) reason: Reason,
    pub(crate) message: String,
    /// When to look again, if sooner than the credential's backoff (a contest's next re-add).
    pub(crate) retry_after: Option<std::time::Duration>,
}

pub(crate) type NamespaceOutcome = std::result::Result<(), NamespaceFailure>;

pub(crate) fn failure(reason: Reason, message: impl Into<String>) -> NamespaceFailure {
    NamespaceFailure { reason, message: message.into(), retry_after: None }
}

/// What the last reconcile of each namespace found, per RegistryCredential (by name): its
/// failures, and how many namespaces it wrote since the credential's status last told.
#[derive(Default)]
pub(crate) struct Outcomes {
    credentials: Mutex<HashMap<String, CredentialOutcomes>>,
}

#[derive(Default)]
struct CredentialOutcomes {
    failed: BTreeMap<String, NamespaceFailure>,
    written: usize,
    /// The credential's own reconcile is polling while namespaces are being written: no nudges.
    progressing: bool,
    /// A digest of what status shows of each namespace it shows anything of (selected, why
    /// blocked, ServiceAccounts that enforce mountable secrets).
    shown: HashMap<String, u64>,
}

impl Outcomes {
    /// Records one namespace's outcome (`None`: nothing to write). Returns whether the
    /// credential's reconcile should look again: a failure appeared, changed or went away, or a
    /// write happened while nothing polls.
    pub(crate) fn record(&self, credential: &str, namespace: &str, outcome: Option<&NamespaceOutcome>) -> bool {
        let mut credentials = self.credentials.lock().expect("outcomes lock");
        let entry = credentials.entry(credential.to_owned()).or_default();
        let previous = match outcome {
            Some(Err(failure)) => entry.failed.insert(namespace.to_owned(), failure.clone()),
            _ => entry.failed.remove(namespace),
        };
        let wrote = matches!(outcome, Some(Ok(())));
        entry.written += usize::from(wrote);
        let failure_changed = match (&previous, outcome) {
            (Some(before), Some(Err(now))) => (before.reason, &before.message) != (now.reason, &now.message),
            (None, Some(Err(_))) | (Some(_), _) => true,
            (None, _) => false,
        };
        (failure_changed || wrote) && !entry.progressing
    }

    /// Records what status shows of `namespace` (`None`: nothing). Returns whether the
    /// credential's reconcile should look again: it changed though nothing may have been written
    /// (a label that opts the namespace out of injection, an annotated ServiceAccount). A
    /// namespace seen for the first time is no change: the credential's own plan counted it.
    pub(crate) fn shown(&self, credential: &str, namespace: &str, shown: Option<u64>) -> bool {
        let mut credentials = self.credentials.lock().expect("outcomes lock");
        let entry = credentials.entry(credential.to_owned()).or_default();
        let before = match shown {
            Some(shown) => entry.shown.insert(namespace.to_owned(), shown),
            None => entry.shown.remove(namespace),
        };
        before.is_some_and(|before| Some(before) != shown) && !entry.progressing
    }

    /// Why the last reconcile of `namespace` failed for `credential`, if it did.
    pub(crate) fn failure_reason(&self, credential: &str, namespace: &str) -> Option<Reason> {
        let credentials = self.credentials.lock().expect("outcomes lock");
        Some(credentials.get(credential)?.failed.get(namespace)?.reason)
    }

    /// The failures to report for `credential`, dropping those of namespaces that no longer exist.
    pub(crate) fn failures(
        &self,
        credential: &str,
        exists: impl Fn(&str) -> bool,
    ) -> BTreeMap<String, NamespaceFailure> {
        let mut credentials = self.credentials.lock().expect("outcomes lock");
        let entry = credentials.entry(credential.to_owned()).or_default();
        entry.failed.retain(|namespace, _| exists(namespace));
        entry.failed.clone()
    }

    /// Whether the credential's reconcile polls from now on (namespaces still being written),
    /// and once they are all written, how many were (told once per rollout, not every second).
    pub(crate) fn take_written(&self, credential: &str, progressing: bool) -> usize {
        let mut credentials = self.credentials.lock().expect("outcomes lock");
        let entry = credentials.entry(credential.to_owned()).or_default();
        entry.progressing = progressing;
        if progressing { 0 } else { std::mem::take(&mut entry.written) }
    }

    pub(crate) fn forget(&self, credential: &str) {
        self.credentials.lock().expect("outcomes lock").remove(credential);
    }
}

/// Exponential requeue delay per RegistryCredential while it has failures.
#[derive(Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(300);

    pub(crate) fn next_delay(&self, credential: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(credential.to_owned()).or_default();
        *count = count.saturating_add(1);
        Self::FIRST.saturating_mul(1 << (*count - 1).min(8)).min(Self::MAX)
    }

    pub(crate) fn reset(&self, credential: &str) {
        self.failures.lock().expect("backoff lock").remove(credential);
    }

    /// Forgets the objects that no longer exist: one deleted while failing is never reconciled
    /// again to reset its entry.
    pub(crate) fn forget_gone(&self, exists: impl Fn(&str) -> bool) {
        self.failures.lock().expect("backoff lock").retain(|name, _| exists(name));
    }
}

/// At most `BURST` evictions at once per credential, refilled at one per `REFILL`: a rollout of
/// a new credential over thousands of stuck Pods must not empty a cluster at once.
#[derive(Default)]
pub(crate) struct EvictionBudget {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Evictions so far per credential. Kept here, not only read back from status: a reconcile
    /// may start from a cached object whose status does not show the last evictions yet.
    evicted: Mutex<HashMap<String, i64>>,
    /// Per credential: the payload digest, and the owners whose Pods were evicted for it.
    owners: Mutex<HashMap<String, (String, HashSet<String>)>>,
}

impl EvictionBudget {
    const BURST: f64 = 10.0;
    const REFILL: Duration = Duration::from_secs(6);

    /// Adds `new` evictions to the credential's total, which is at least what status showed.
    pub(crate) fn count(&self, credential: &str, in_status: i64, new: i64) -> i64 {
        let mut evicted = self.evicted.lock().expect("eviction count lock");
        let total = evicted.entry(credential.to_owned()).or_default();
        *total = (*total).max(in_status) + new;
        *total
    }

    /// Whether the credential's budget has an eviction left now; takes nothing. Checked before
    /// anything that costs a request (a Pod's PodDisruptionBudgets are listed to evict it).
    pub(crate) fn available(&self, credential: &str, now: Instant) -> bool {
        let buckets = self.buckets.lock().expect("eviction budget lock");
        buckets.get(credential).is_none_or(|&(tokens, at)| Self::refilled(tokens, at, now) >= 1.0)
    }

    fn refilled(tokens: f64, at: Instant, now: Instant) -> f64 {
        (tokens + now.duration_since(at).as_secs_f64() / Self::REFILL.as_secs_f64()).min(Self::BURST)
    }

    /// Whether the owner's Pods were evicted for this credential's payload (its digest) before.
    pub(crate) fn evicted_before(&self, credential: &str, digest: &str, owner: &str) -> bool {
        let owners = self.owners.lock().expect("evicted owners lock");
        owners.get(credential).is_some_and(|(seen, evicted)| seen == digest && evicted.contains(owner))
    }

    /// Remembers the owners whose Pods were evicted for this payload; another payload starts over.
    pub(crate) fn remember_owners(&self, credential: &str, digest: &str, evicted: Vec<String>) {
        let mut owners = self.owners.lock().expect("evicted owners lock");
        let (seen, owners) = owners.entry(credential.to_owned()).or_default();
        if seen != digest {
            *seen = digest.to_owned();
            owners.clear();
        }
        owners.extend(evicted);
    }

    /// Takes one eviction from the credential's budget; `false` when it is spent.
    pub(crate) fn take(&self, credential: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("eviction budget lock");
        let (tokens, at) = buckets.entry(credential.to_owned()).or_insert((Self::BURST, now));
        *tokens = Self::refilled(*tokens, *at, now);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_in_what_status_shows_of_a_namespace_wakes_the_credential_once() {
        let outcomes = Outcomes::default();
        assert!(!outcomes.shown("rc", "a", Some(1)), "first seen: the credential's own plan counted it");
        assert!(!outcomes.shown("rc", "a", Some(1)), "unchanged");
        assert!(outcomes.shown("rc", "a", Some(2)), "opted out of injection, say");
        assert!(outcomes.shown("rc", "a", None), "no longer selected");
        assert!(!outcomes.shown("rc", "a", None));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay("a").as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.next_delay("b").as_secs(), 2, "per credential");
        backoff.reset("a");
        assert_eq!(backoff.next_delay("a").as_secs(), 2);
        backoff.next_delay("gone");
        backoff.forget_gone(|name| name != "gone");
        let mut kept: Vec<String> = backoff.failures.lock().unwrap().keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["a", "b"], "failing, not gone");
    }

    #[test]
    fn the_eviction_budget_allows_a_burst_then_refills_slowly() {
        let budget = EvictionBudget::default();
        let start = Instant::now();
        assert!(budget.available("rc", start), "a full budget");
        let taken = (0..15).filter(|_| budget.take("rc", start)).count();
        assert_eq!(taken, 10);
        assert!(!budget.available("rc", start + Duration::from_secs(1)), "spent");
        assert!(!budget.take("rc", start + Duration::from_secs(1)));
        assert!(budget.available("rc", start + Duration::from_secs(7)), "refilled, and looking takes nothing");
        assert!(budget.take("rc", start + Duration::from_secs(7)));
        assert!(budget.take("other", start), "per credential");
        assert_eq!(budget.count("rc", 3, 1), 4, "status showed 3");
        assert_eq!(budget.count("rc", 0, 0), 4, "a stale status never lowers the total");
        budget.remember_owners("rc", "digest-1", vec!["rs-1".into()]);
        assert!(budget.evicted_before("rc", "digest-1", "rs-1"));
        assert!(
            !budget.evicted_before("rc", "digest-1", "rs-2") && !budget.evicted_before("other", "digest-1", "rs-1")
        );
        budget.remember_owners("rc", "digest-2", Vec::new());
        assert!(!budget.evicted_before("rc", "digest-2", "rs-1"), "a new source payload: once more");
    }

    #[tokio::test]
    async fn a_cleanup_waits_for_the_writes_admitted_before_and_admits_none_after() {
        let gates = Arc::new(WriteGates::default());
        let writing = gates.admit("uid", || true).expect("active: admitted");
        let cleanup = tokio::spawn({
            let gates = gates.clone();
            async move { gates.close("uid").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!cleanup.is_finished(), "the cleanup waits while a namespace's writes are in flight");
        assert!(gates.admit("uid", || true).is_none(), "and, waiting, admits no more");
        drop(writing);
        let closed = tokio::time::timeout(Duration::from_secs(5), cleanup).await.expect("then it runs").unwrap();
        assert!(gates.admit("uid", || true).is_none(), "no namespace's writes while the cleanup runs");
        assert!(gates.admit("other", || true).is_some(), "per credential: the others' go on");
        drop(closed);
        assert!(gates.admit("uid", || false).is_none(), "after it, the credential no longer active: none");
    }
}
