//! What every reconcile shares: the client, settings, caches, Event recorder, metrics, backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

use super::plan::ClusterState;
use crate::crd::RegistryCredential;
use crate::metrics::Metrics;

/// How the controller runs; from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Namespaces whose Secrets may be sources; a source anywhere else is refused.
    pub(crate) source_namespaces: Vec<String>,
    /// Namespaces written at once within one reconcile.
    pub(crate) concurrency: usize,
    /// How often a converged RegistryCredential is checked again (a safety net; watches drive the rest).
    pub(crate) resync: Duration,
    /// Whether the cluster serves MutatingAdmissionPolicy (the shipped policy can inject).
    pub(crate) admission_policies_served: bool,
    /// Only RegistryCredentials matching this label selector are managed by this instance.
    pub(crate) credential_selector: Option<String>,
}

/// The caches, each filled by one watch.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) credentials: Store<RegistryCredential>,
    pub(crate) namespaces: Store<Namespace>,
    /// Copies: Secrets labelled as managed AND controlled by a RegistryCredential, as metadata.
    pub(crate) managed_secrets: Store<PartialObjectMeta<Secret>>,
    /// Every ServiceAccount, trimmed to its pull secrets, record and the writers of the list.
    pub(crate) service_accounts: Store<ServiceAccount>,
    /// Pending Pods, trimmed to what recovery reads.
    pub(crate) pods: Store<Pod>,
    /// Secrets of each trusted source namespace.
    pub(crate) source_namespaces: BTreeMap<String, Store<Secret>>,
}

impl Stores {
    pub(crate) async fn wait_until_ready(&self) {
        // A dropped writer means the controller is shutting down; nothing to wait for then.
        let _ = self.credentials.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.managed_secrets.wait_until_ready().await;
        let _ = self.service_accounts.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        for store in self.source_namespaces.values() {
            let _ = store.wait_until_ready().await;
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        // `wait_until_ready` resolving at once is the only readiness signal a Store offers.
        futures::FutureExt::now_or_never(self.wait_until_ready()).is_some()
    }

    /// A source Secret, when its namespace is trusted and it exists.
    pub(crate) fn source(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.source_namespaces.get(namespace)?.get(&ObjectRef::new(name).within(namespace))
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            credentials: self.credentials.state(),
            namespaces: self.namespaces.state(),
            managed_secrets: self.managed_secrets.state(),
            service_accounts: self.service_accounts.state(),
            source_namespaces: self.source_namespaces.keys().cloned().collect(),
        }
    }
}

/// The caches' contents at one moment, for planning.
pub(crate) struct Snapshot {
    credentials: Vec<Arc<RegistryCredential>>,
    namespaces: Vec<Arc<Namespace>>,
    managed_secrets: Vec<Arc<PartialObjectMeta<Secret>>>,
    service_accounts: Vec<Arc<ServiceAccount>>,
    source_namespaces: Vec<String>,
}

impl Snapshot {
    pub(crate) fn state(&self) -> ClusterState<'_> {
        ClusterState {
            credentials: self.credentials.iter().map(Arc::as_ref).collect(),
            namespaces: self.namespaces.iter().map(Arc::as_ref).collect(),
            managed_secrets: self.managed_secrets.iter().map(Arc::as_ref).collect(),
            service_accounts: self.service_accounts.iter().map(Arc::as_ref).collect(),
            source_namespaces: &self.source_namespaces,
        }
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
}

pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) stores: Stores,
    pub(crate) recorder: Recorder,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) backoff: Backoff,
    pub(crate) contests: super::contest::Contests,
    pub(crate) evictions: super::recovery::EvictionBudget,
    /// Asks the controller to reconcile another RegistryCredential now.
    pub(crate) retrigger: futures::channel::mpsc::UnboundedSender<ObjectRef<RegistryCredential>>,
}

impl Context {
    pub(crate) async fn wait_for_caches(&self) {
        self.stores.wait_until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay("a").as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.next_delay("b").as_secs(), 2, "per credential");
        backoff.reset("a");
        assert_eq!(backoff.next_delay("a").as_secs(), 2);
    }
}
