//! Prometheus metrics (text exposition via prometheus-client). Labels carry names of objects and
//! kinds of work, never anything read from a credential.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::reason::Reason;

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

pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    namespace_reconciles: Counter,
    api_writes: Family<WriteLabels, Counter>,
    sync_failures: Family<ReasonLabels, Counter>,
    patch_conflicts: Counter,
    requests_throttled: Counter,
    request_limit: Gauge,
    pods_evicted: Counter,
    managed_namespaces: Family<CredentialLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("regcred");
        let r = &mut registry;
        let reconciles = registered(r, "reconciles", "RegistryCredential reconciles by result");
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        r.register_with_unit(
            "reconcile_duration",
            "Time one RegistryCredential reconcile takes",
            prometheus_client::registry::Unit::Seconds,
            reconcile_duration.clone(),
        );
        Metrics {
            reconciles,
            reconcile_duration,
            namespace_reconciles: registered(
                r,
                "namespace_reconciles",
                "Namespace reconciles (each plans one namespace for every RegistryCredential)",
            ),
            api_writes: registered(r, "api_writes", "Write requests sent to the API server, by resource and verb"),
            sync_failures: registered(r, "sync_failures", "Namespaces that failed to sync, by reason"),
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
                "Namespaces holding the current copy, by RegistryCredential",
            ),
            leader: registered(r, "leader", "1 when this replica holds the leader Lease"),
            registry: Mutex::new(registry),
        }
    }
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

    pub(crate) fn namespace_reconciled(&self) {
        self.namespace_reconciles.inc();
    }

    pub(crate) fn api_write(&self, resource: &'static str, verb: &'static str) {
        self.api_writes.get_or_create(&WriteLabels { resource, verb }).inc();
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

    pub(crate) fn set_managed_namespaces(&self, credential: &str, count: i32) {
        self.managed_namespaces
            .get_or_create(&CredentialLabels { credential: credential.to_owned() })
            .set(count.into());
    }

    pub(crate) fn forget_credential(&self, credential: &str) {
        self.managed_namespaces.remove(&CredentialLabels { credential: credential.to_owned() });
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
