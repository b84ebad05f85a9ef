//! Another writer that keeps removing the operator's `imagePullSecrets` entry (a GitOps tool's
//! self-heal, a Helm upgrade, a policy), or keeps changing or deleting a copy (a tenant's loop,
//! a GitOps tool that owns an adopted Secret), is a contest, not a reason to write in a loop: each
//! object's repairs are spaced by a delay that doubles with every undoing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cache::Account;

/// Removals tolerated before re-adds are spaced out: a person's one-off edit is simply repaired.
const FREE_REPAIRS: u32 = 2;
const FIRST_DELAY: Duration = Duration::from_secs(5);
const MAX_DELAY: Duration = Duration::from_secs(300);
/// A ServiceAccount left alone this long is forgiven.
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Forgiven objects are dropped at most this often: every first copy of a rollout is recorded (a
/// create is a repair), so a sweep at every call would cost the square of the namespaces.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What is known of the undoings of the operator's work on one object.
#[derive(Debug, Clone)]
struct Removals {
    count: u32,
    last_readd: Instant,
    /// The field manager that last owned what was undone, when known.
    remover: Option<String>,
}

/// Whether the operator may repair its work now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readd {
    /// Repair now (a first repair, or the backoff has passed).
    Now,
    /// Not before `wait` has passed: the work was undone `removals` times, last by `remover`.
    Contested { wait: Duration, removals: u32, remover: Option<String> },
}

/// Per object (`kind namespace/name`), the undoings of the operator's work.
#[derive(Default)]
pub(crate) struct Contests {
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    removals: HashMap<String, Removals>,
    swept: Option<Instant>,
}

impl Ledger {
    /// The undoings of `key`, unless it was left alone long enough to be forgiven.
    fn current(&mut self, key: &str, now: Instant) -> Option<&mut Removals> {
        let forgiven = |removals: &Removals| now.saturating_duration_since(removals.last_readd) >= FORGET_AFTER;
        if self.swept.is_none_or(|swept| now.saturating_duration_since(swept) >= SWEEP_EVERY) {
            self.removals.retain(|_, removals| !forgiven(removals));
            self.swept = Some(now);
        }
        if self.removals.get(key).is_some_and(forgiven) {
            self.removals.remove(key);
        }
        self.removals.get_mut(key)
    }
}

impl Contests {
    /// Called when the operator finds its recorded entry missing from `account` and wants it
    /// back: counts the removal and says whether to re-add now.
    pub(crate) fn readd(&self, key: &str, account: &Account, now: Instant) -> Readd {
        self.repair(key, pull_secrets_owner(account), now)
    }

    /// Whether a repair of the object may be made now, counting nothing: a failed attempt must
    /// not count as an undoing. [`repaired`](Self::repaired) counts one that was made.
    pub(crate) fn due(&self, key: &str, now: Instant) -> Readd {
        let mut ledger = self.ledger.lock().expect("contests lock");
        let Some(removals) = ledger.current(key, now) else { return Readd::Now };
        let delay = delay_after(removals.count);
        let since = now.duration_since(removals.last_readd);
        if since < delay {
            return Readd::Contested {
                wait: delay - since,
                removals: removals.count,
                remover: removals.remover.clone(),
            };
        }
        Readd::Now
    }

    /// Counts a repair made of work that `remover` (when known) undid.
    pub(crate) fn repaired(&self, key: &str, remover: Option<String>, now: Instant) {
        let _ = self.repair(key, remover, now);
    }

    /// Called when the operator finds its work on an object undone by `remover` (when known) and
    /// wants to repair it: counts the undoing and says whether to repair now.
    pub(crate) fn repair(&self, key: &str, remover: Option<String>, now: Instant) -> Readd {
        let mut ledger = self.ledger.lock().expect("contests lock");
        let Some(removals) = ledger.current(key, now) else {
            ledger.removals.insert(key.to_owned(), Removals { count: 1, last_readd: now, remover });
            return Readd::Now;
        };
        let delay = delay_after(removals.count);
        let since = now.duration_since(removals.last_readd);
        if since < delay {
            let wait = delay - since;
            return Readd::Contested { wait, removals: removals.count, remover: removals.remover.clone() };
        }
        removals.count = removals.count.saturating_add(1);
        removals.last_readd = now;
        if remover.is_some() {
            removals.remover = remover;
        }
        Readd::Now
    }
}

/// The delay before the next re-add after `count` removals.
fn delay_after(count: u32) -> Duration {
    if count < FREE_REPAIRS {
        return Duration::ZERO;
    }
    FIRST_DELAY.saturating_mul(1 << (count - FREE_REPAIRS).min(8)).min(MAX_DELAY)
}

/// The field manager other than ours that owns `imagePullSecrets`, as the cache keeps it.
fn pull_secrets_owner(account: &Account) -> Option<String> {
    account.list_writer.as_ref().map(|manager| manager.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ServiceAccount default, whose `imagePullSecrets` `manager` wrote last.
    fn account(manager: &str) -> Account {
        let account: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "default", "resourceVersion": "1",
                         "managedFields": [{"manager": manager, "operation": "Apply",
                                            "fieldsV1": {"f:imagePullSecrets": {}}}]},
        }))
        .unwrap();
        Account::from_object(&account)
    }

    #[test]
    fn a_one_off_removal_is_repaired_at_once_and_a_contest_backs_off_doubling() {
        let contests = Contests::default();
        let start = Instant::now();
        let argo = account("argocd-controller");
        assert_eq!(contests.readd("a/default", &argo, start), Readd::Now);
        assert_eq!(contests.readd("a/default", &argo, start), Readd::Now, "a second repair is still free");
        let third = contests.readd("a/default", &argo, start + Duration::from_secs(1));
        assert_eq!(
            third,
            Readd::Contested { wait: Duration::from_secs(4), removals: 2, remover: Some("argocd-controller".into()) }
        );
        assert_eq!(contests.readd("a/default", &argo, start + Duration::from_secs(5)), Readd::Now);
        let waits: Vec<Duration> = (3..12).map(delay_after).collect();
        assert_eq!(waits[0], Duration::from_secs(10));
        assert_eq!(*waits.last().unwrap(), MAX_DELAY, "capped");
        assert_eq!(contests.readd("b/default", &argo, start), Readd::Now, "per ServiceAccount");
    }

    #[test]
    fn a_quiet_service_account_is_forgiven() {
        let contests = Contests::default();
        let start = Instant::now();
        let argo = account("argocd-controller");
        for _ in 0..3 {
            contests.readd("a/default", &argo, start);
        }
        assert_eq!(contests.readd("a/default", &argo, start + FORGET_AFTER), Readd::Now);
        let again = contests.readd("a/default", &argo, start + FORGET_AFTER);
        assert_eq!(again, Readd::Now, "counted from one again: a second free repair");
    }

    #[test]
    fn objects_left_alone_are_dropped_in_a_sweep_at_most_once_a_minute() {
        let contests = Contests::default();
        let start = Instant::now();
        for namespace in 0..1000 {
            contests.repaired(&format!("secret ns-{namespace}/regcred"), None, start);
        }
        let held = || contests.ledger.lock().unwrap().removals.len();
        assert_eq!(held(), 1000, "every first copy of a rollout is recorded");
        let _ = contests.due("secret ns-0/regcred", start + FORGET_AFTER - Duration::from_secs(1));
        assert_eq!(held(), 1000, "none forgiven yet");
        let _ = contests.due("secret ns-0/regcred", start + FORGET_AFTER + Duration::from_secs(1));
        assert_eq!(held(), 999, "swept less than a minute ago: only the one looked up is dropped");
        let _ = contests.due("secret ns-0/regcred", start + FORGET_AFTER + SWEEP_EVERY);
        assert_eq!(held(), 0, "the sweep drops every forgiven object");
    }
}
