//! Prometheus metrics (text exposition via prometheus-client). Labels carry names of objects and
//! kinds of work, never anything read from a credential.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::reason::{Category, Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    resource: &'static str,
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderRunLabels {
    provider: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    credential: String,
    reason: &'static str,
}

pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    namespace_reconciles: Counter,
    namespace_queue_wait: Histogram,
    api_writes: Family<WriteLabels, Counter>,
    api_writes_unanswered: Family<WriteLabels, Counter>,
    sync_failures: Family<ReasonLabels, Counter>,
    patch_conflicts: Counter,
    requests_throttled: Counter,
    request_limit: Gauge,
    pods_evicted: Counter,
    managed_namespaces: Family<CredentialLabels, Gauge>,
    selected_namespaces: Family<CredentialLabels, Gauge>,
    failed_namespaces: Family<CredentialLabels, Gauge>,
    credential_ready: Family<ReadyLabels, Gauge>,
    credential_expiry: Family<CredentialLabels, Gauge>,
    provider_runs: Family<ProviderRunLabels, Counter>,
    /// The credentials that have series, so that those of a credential gone can be removed.
    credentials: Mutex<BTreeSet<String>>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("regcred");
        let r = &mut registry;
        Metrics {
            reconciles: reconcile_counters(r),
            reconcile_duration: duration_histogram(r),
            namespace_reconciles: registered(
                r,
                "namespace_reconciles",
                "Namespace reconciles (each plans one namespace for every RegistryCredential)",
            ),
            namespace_queue_wait: queue_wait_histogram(r),
            api_writes: registered(r, "api_writes", WRITES_HELP),
            api_writes_unanswered: registered(r, "api_writes_unanswered", UNWRITES_HELP),
            sync_failures: failure_counters(r),
            patch_conflicts: registered(
                r,
                "service_account_patch_conflicts",
                "Guarded ServiceAccount patches refused because the ServiceAccount changed meanwhile",
            ),
            requests_throttled: registered(
                r,
                "api_requests_throttled",
                "Responses 429 (too many requests) or 503 from the API server; each one slows the operator down",
            ),
            request_limit: registered(
                r,
                "api_requests_in_flight_limit",
                "Requests the operator allows itself in flight now (halved on 429, regained on success)",
            ),
            pods_evicted: registered(
                r,
                "stuck_pods_evicted",
                "Pods stuck without the copy that were evicted for their controllers to recreate",
            ),
            managed_namespaces: registered(
                r,
                "managed_namespaces",
                "Namespaces holding the current copy, by RegistryCredential (status.namespaces.synced)",
            ),
            selected_namespaces: registered(
                r,
                "selected_namespaces",
                "Namespaces a RegistryCredential selects (status.namespaces.matched)",
            ),
            failed_namespaces: registered(
                r,
                "failed_namespaces",
                "Selected namespaces whose copy failed or is blocked, by RegistryCredential (status.namespaces.failed)",
            ),
            credential_ready: registered(
                r,
                "credential_ready",
                "1 when the RegistryCredential is Ready, else 0; reason: its Ready condition's reason",
            ),
            credential_expiry: registered(
                r,
                "credential_expiry_timestamp_seconds",
                "When the RegistryCredential's credential expires, as its source states it (status.expiresAt), in UNIX seconds; no series when unknown",
            ),
            provider_runs: registered(
                r,
                "credential_provider_runs",
                "Credential provider plugin runs, by provider; result: success, or the reason it failed",
            ),
            credentials: Mutex::default(),
            leader: registered(r, "leader", "1 when this replica holds the leader Lease"),
            registry: Mutex::new(registry),
        }
    }
}

const WRITES_HELP: &str = "Write requests the API server answered (a refusal included), by resource and verb";
const UNWRITES_HELP: &str =
    "Write requests sent that got no answer from the API server (no connection, a reset), by resource and verb";

/// `reconcile_duration_seconds`.
fn duration_histogram(registry: &mut Registry) -> Histogram {
    seconds_histogram(registry, "reconcile_duration", "Time one RegistryCredential reconcile takes")
}

/// `namespace_queue_wait_seconds`.
fn queue_wait_histogram(registry: &mut Registry) -> Histogram {
    let help = "Time a namespace waits in the work queue, from the first request for its reconcile to its start";
    seconds_histogram(registry, "namespace_queue_wait", help)
}

/// A histogram of seconds, 1 ms to about 33 s.
fn seconds_histogram(registry: &mut Registry, name: &str, help: &str) -> Histogram {
    let histogram = Histogram::new(exponential_buckets(0.001, 2.0, 16));
    registry.register_with_unit(name, help, prometheus_client::registry::Unit::Seconds, histogram.clone());
    histogram
}

/// `reconciles`, both results at 0 from the start: an alert on no reconciles needs a series
/// that stays at zero.
fn reconcile_counters(registry: &mut Registry) -> Family<ResultLabels, Counter> {
    let reconciles: Family<ResultLabels, Counter> =
        registered(registry, "reconciles", "RegistryCredential reconciles by result");
    for result in ["success", "error"] {
        let _ = reconciles.get_or_create(&ResultLabels { result });
    }
    reconciles
}

/// `sync_failures`, with every reason of trouble at 0 from the start: a family without series is
/// not exported at all, and a rate over a series that appears with its first failure misses it.
fn failure_counters(registry: &mut Registry) -> Family<ReasonLabels, Counter> {
    let failures: Family<ReasonLabels, Counter> =
        registered(registry, "sync_failures", "Namespaces that failed to sync, by reason");
    for reason in Reason::ALL.into_iter().filter(|r| matches!(r.category(), Category::Conflict | Category::Api)) {
        let _ = failures.get_or_create(&ReasonLabels { reason: reason.as_str().to_owned() });
    }
    failures
}

/// A new metric of its default value, registered under `name`.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub(crate) fn observe_reconcile(&self, duration: Duration, ok: bool) {
        self.reconciles.get_or_create(&ResultLabels { result: if ok { "success" } else { "error" } }).inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// A namespace reconcile ran, after waiting `waited` in the queue.
    pub(crate) fn namespace_reconciled(&self, waited: Duration) {
        self.namespace_reconciles.inc();
        self.namespace_queue_wait.observe(waited.as_secs_f64());
    }

    /// Sends a write request and counts it, before it is sent (so that it is counted by the time
    /// its effect can be seen); once more as unanswered if the API server never answered (no
    /// connection, a reset: it may or may not have been applied).
    pub(crate) async fn api_write<T>(
        &self,
        resource: &'static str,
        verb: &'static str,
        request: impl std::future::Future<Output = kube::Result<T>>,
    ) -> kube::Result<T> {
        let labels = WriteLabels { resource, verb };
        self.api_writes.get_or_create(&labels).inc();
        let result = request.await;
        if !matches!(&result, Ok(_) | Err(kube::Error::Api(_))) {
            self.api_writes_unanswered.get_or_create(&labels).inc();
        }
        result
    }

    pub(crate) fn sync_failure(&self, reason: Reason) {
        self.sync_failures.get_or_create(&ReasonLabels { reason: reason.as_str().to_owned() }).inc();
    }

    pub(crate) fn patch_conflict(&self) {
        self.patch_conflicts.inc();
    }

    pub(crate) fn request_throttled(&self) {
        self.requests_throttled.inc();
    }

    pub(crate) fn set_request_limit(&self, limit: i64) {
        self.request_limit.set(limit);
    }

    pub(crate) fn pod_evicted(&self) {
        self.pods_evicted.inc();
    }

    /// The counts of the credential's `status.namespaces`: selected, holding the current copy,
    /// failed (the rest are still being written).
    pub(crate) fn set_namespace_counts(&self, credential: &str, selected: i32, synced: i32, failed: i32) {
        self.track(credential);
        let labels = CredentialLabels { credential: credential.to_owned() };
        self.selected_namespaces.get_or_create(&labels).set(selected.into());
        self.managed_namespaces.get_or_create(&labels).set(synced.into());
        self.failed_namespaces.get_or_create(&labels).set(failed.into());
    }

    /// The credential's Ready condition: one series, labelled with its reason.
    pub(crate) fn set_credential_ready(&self, credential: &str, ready: bool, reason: Reason) {
        self.track(credential);
        let mut labels = ReadyLabels { credential: credential.to_owned(), reason: reason.as_str() };
        // The new series first: a scrape in between never finds the credential without one.
        self.credential_ready.get_or_create(&labels).set(i64::from(ready));
        for other in Reason::ALL.into_iter().filter(|other| *other != reason) {
            labels.reason = other.as_str();
            self.credential_ready.remove(&labels);
        }
    }

    /// The credential's `status.expiresAt`; no series when the source states none.
    pub(crate) fn set_credential_expiry(&self, credential: &str, expires_at: Option<jiff::Timestamp>) {
        self.track(credential);
        let labels = CredentialLabels { credential: credential.to_owned() };
        match expires_at {
            Some(at) => {
                self.credential_expiry.get_or_create(&labels).set(at.as_second());
            }
            None => {
                self.credential_expiry.remove(&labels);
            }
        }
    }

    /// One run of a credential provider plugin: `None` when it minted, else why not.
    pub(crate) fn provider_run(&self, provider: &str, failure: Option<Reason>) {
        let result = failure.map_or("success", Reason::as_str);
        self.provider_runs.get_or_create(&ProviderRunLabels { provider: provider.to_owned(), result }).inc();
    }

    fn track(&self, credential: &str) {
        let mut credentials = self.credentials.lock().expect("metrics credentials lock");
        if !credentials.contains(credential) {
            credentials.insert(credential.to_owned());
        }
    }

    /// Removes every series of the credential.
    pub(crate) fn forget_credential(&self, credential: &str) {
        self.credentials.lock().expect("metrics credentials lock").remove(credential);
        let labels = CredentialLabels { credential: credential.to_owned() };
        for family in
            [&self.managed_namespaces, &self.selected_namespaces, &self.failed_namespaces, &self.credential_expiry]
        {
            family.remove(&labels);
        }
        for reason in Reason::ALL {
            self.credential_ready.remove(&ReadyLabels { credential: credential.to_owned(), reason: reason.as_str() });
        }
    }

    /// Removes the series of every credential that `exists` no longer knows: deleted without a
    /// cleanup by this replica (its finalizer removed by hand), or no longer selected by
    /// `--credential-selector`.
    pub(crate) fn retain_credentials(&self, exists: impl Fn(&str) -> bool) {
        let gone: Vec<String> = {
            let credentials = self.credentials.lock().expect("metrics credentials lock");
            credentials.iter().filter(|name| !exists(name)).cloned().collect()
        };
        for credential in gone {
            self.forget_credential(&credential);
        }
    }

    pub(crate) fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition's lines that name `credential`.
    fn series_of(metrics: &Metrics, credential: &str) -> Vec<String> {
        let needle = format!("credential=\"{credential}\"");
        metrics.encode().lines().filter(|line| line.contains(&needle)).map(str::to_owned).collect()
    }

    #[test]
    fn a_credential_has_one_ready_series_labelled_with_its_current_reason() {
        let metrics = Metrics::default();
        metrics.set_credential_ready("rc", false, Reason::SourceNotFound);
        metrics.set_credential_ready("rc", true, Reason::Synced);
        let ready: Vec<String> =
            series_of(&metrics, "rc").into_iter().filter(|l| l.starts_with("regcred_credential_ready")).collect();
        assert_eq!(ready, ["regcred_credential_ready{credential=\"rc\",reason=\"Synced\"} 1"]);
    }

    #[test]
    fn counters_that_alerts_and_the_dashboard_rate_are_exported_at_zero_from_the_start() {
        let text = Metrics::default().encode();
        for sample in [
            "regcred_reconciles_total{result=\"error\"} 0",
            "regcred_reconciles_total{result=\"success\"} 0",
            "regcred_sync_failures_total{reason=\"SecretWriteFailed\"} 0",
            "regcred_sync_failures_total{reason=\"SecretConflict\"} 0",
        ] {
            assert!(text.lines().any(|line| line == sample), "{sample} missing:\n{text}");
        }
        assert!(!text.contains("reason=\"Synced\""), "only reasons of trouble count failures");
    }

    #[test]
    fn the_series_of_a_credential_gone_are_removed() {
        let metrics = Metrics::default();
        for name in ["kept", "deleted", "unselected"] {
            metrics.set_credential_ready(name, true, Reason::Synced);
            metrics.set_namespace_counts(name, 3, 2, 1);
        }
        assert_eq!(series_of(&metrics, "deleted").len(), 4, "ready, selected, managed, failed");
        metrics.forget_credential("deleted");
        assert!(series_of(&metrics, "deleted").is_empty());
        metrics.retain_credentials(|name| name == "kept");
        assert!(series_of(&metrics, "unselected").is_empty());
        assert!(series_of(&metrics, "kept").contains(&"regcred_failed_namespaces{credential=\"kept\"} 1".to_owned()));
    }
}
