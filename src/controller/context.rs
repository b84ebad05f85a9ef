//! What every reconcile shares: the client, settings, caches, Event recorder, metrics, and what
//! the controllers remember between reconciles.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tokio::sync::watch;

use super::cache::{Name, ObjectCache, WatchErrors, intern};
use super::contest::Contests;
use super::mint::{MintState, mint, source_key};
use super::namespace_cache::NamespaceCache;
use super::ownership::is_active;
use super::plan::ClusterState;
use super::source::{ResolvedSource, SourceProblem, resolve_source};
use super::state::{Backoff, EvictionBudget, Outcomes, WriteGates};
use crate::crd::RegistryCredential;
use crate::metrics::Metrics;
use crate::provider::config::Providers;

/// How long a reconcile waits for the caches before it reports a watch that cannot list.
const CACHE_PATIENCE: Duration = Duration::from_secs(10);

/// How the controller runs; from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Namespaces whose Secrets may be sources; a source anywhere else is refused.
    pub(crate) source_namespaces: Vec<String>,
    /// Namespaces reconciled at once (and written at once by a cleanup).
    pub(crate) concurrency: usize,
    /// How often a converged RegistryCredential is checked again (a safety net; watches drive the rest).
    pub(crate) resync: Duration,
    /// How long before a credential's expiry `Expiring` turns True.
    pub(crate) expiry_warning: Duration,
    /// Whether the cluster serves MutatingAdmissionPolicy (the shipped policy can inject).
    pub(crate) admission_policies_served: bool,
    /// Only RegistryCredentials matching this label selector are managed by this instance.
    pub(crate) credential_selector: Option<String>,
    /// The credential provider plugins `source.credentialProvider` may name.
    pub(crate) credential_providers: Arc<Providers>,
}

/// A Secret of a trusted source namespace as the cache keeps it: its name and version.
pub(crate) type SourceSecret = PartialObjectMeta<Secret>;

/// The caches, each filled by one watch.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) credentials: Store<RegistryCredential>,
    pub(crate) namespaces: Arc<NamespaceCache>,
    /// ServiceAccounts and copies (Secrets labelled as managed AND controlled by a
    /// RegistryCredential, from their metadata), by namespace and compact.
    pub(crate) objects: Arc<ObjectCache>,
    /// Pending Pods, trimmed to what recovery reads.
    pub(crate) pods: Store<Pod>,
    /// Secrets of each trusted source namespace, by their name and version only.
    pub(crate) source_namespaces: BTreeMap<String, Store<SourceSecret>>,
    /// For each reflector store above, whether its first list is in. (A reflector store's own
    /// `wait_until_ready` wakes a single waiter, and many reconciles wait at once.)
    pub(crate) listed: Vec<watch::Receiver<bool>>,
    /// Why a cache is not listed yet, when its watch fails.
    pub(crate) watch_errors: Arc<WatchErrors>,
}

impl Stores {
    pub(crate) async fn wait_until_ready(&self) {
        for listed in &self.listed {
            // An error means the watch is gone: the controller is shutting down.
            let _ = listed.clone().wait_for(|listed| *listed).await;
        }
        self.objects.wait_until_ready().await;
    }

    /// Whether the cache holds this very credential (same UID), active.
    pub(crate) fn is_active_credential(&self, credential: &RegistryCredential) -> bool {
        let current = self.credentials.get(&ObjectRef::from_obj(credential));
        current.is_some_and(|now| now.metadata.uid == credential.metadata.uid && is_active(&now))
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.listed.iter().all(|listed| *listed.borrow()) && self.objects.is_ready()
    }

    /// Whether the RegistryCredential `name` is cached: it exists, and this instance manages it.
    pub(crate) fn has_credential(&self, name: &str) -> bool {
        self.credentials.get(&ObjectRef::new(name)).is_some()
    }

    /// The UID and resourceVersion of a source Secret, when its namespace is trusted and it exists.
    fn source_version(&self, namespace: &str, name: &str) -> Option<[Option<String>; 2]> {
        let secret = self.source_namespaces.get(namespace)?.get(&ObjectRef::new(name).within(namespace))?;
        Some([secret.metadata.uid.clone(), secret.metadata.resource_version.clone()])
    }
}

/// The cluster state a plan reads, over `credentials` (from [`Stores::credentials`]).
pub(crate) fn cluster_state<'a>(
    credentials: &'a [Arc<RegistryCredential>],
    settings: &'a Settings,
) -> ClusterState<'a> {
    ClusterState {
        credentials: credentials.iter().map(Arc::as_ref).collect(),
        source_namespaces: &settings.source_namespaces,
    }
}

/// A RegistryCredential's source, resolved once per version of the credential and of the source
/// Secret: every namespace's reconcile reads it.
pub(crate) type Resolution = Result<ResolvedSource, SourceProblem>;

/// One minting credential: its state, locked across a plugin run (only its own reconcile waits
/// for that), and what the last run left for the namespace reconciles (never waited for).
#[derive(Default)]
struct MintSlot {
    state: tokio::sync::Mutex<MintState>,
    shown: Mutex<Option<Shown>>,
}

/// The source key a minted resolution was made for, the resolution, and the next plugin run.
type Shown = (String, Arc<Resolution>, Option<std::time::Instant>);

pub(crate) struct ResolvedSources {
    /// By credential UID: the last resolution and what it was computed from, behind a lock of its
    /// own so that the namespaces reconciled at once after a rotation read the source once.
    resolved: Mutex<HashMap<String, ResolutionSlot>>,
    /// By credential UID: what a minting credential keeps between plugin runs.
    minted: Mutex<HashMap<String, Arc<MintSlot>>>,
    /// Reconciles the namespaces of a minted credential that changed.
    wake: NamespaceWake,
    metrics: Arc<Metrics>,
}

type ResolutionSlot = Arc<tokio::sync::Mutex<Option<(SourceVersion, Arc<Resolution>)>>>;

/// Which namespaces a change concerns, to be reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Concerned {
    /// Every namespace: a credential's spec, finalizer or deletion changed, or a relist.
    Every,
    /// Those the credentials with these UIDs select or hold a copy in: their source changed.
    OfCredentials(Vec<Name>),
}

/// Asks for the reconcile of the namespaces a change concerns.
pub(crate) type NamespaceWake = futures::channel::mpsc::UnboundedSender<Concerned>;

/// The generation of the credential (its spec), and the UID and resourceVersion of its source
/// Secret as the cache lists it.
type SourceVersion = [Option<String>; 3];

impl ResolvedSources {
    pub(crate) fn new(wake: NamespaceWake, metrics: Arc<Metrics>) -> ResolvedSources {
        ResolvedSources { resolved: Mutex::default(), minted: Mutex::default(), wake, metrics }
    }

    /// The credential's source, resolved again (the Secret read whole) only when the credential's
    /// spec or the source Secret's version changed; a minted one, from the plugin when a refresh
    /// is due. Fails only when reading the Secret does.
    pub(crate) async fn resolve(
        &self,
        credential: &RegistryCredential,
        client: &Client,
        stores: &Stores,
        settings: &Settings,
    ) -> Result<Arc<Resolution>, kube::Error> {
        if credential.spec.source.credential_provider.is_some() {
            return Ok(self.resolve_minted(credential, client, settings).await);
        }
        let reference = credential.spec.source.secret_ref.as_ref();
        let [uid, version] = reference.and_then(|r| stores.source_version(&r.namespace, &r.name)).unwrap_or_default();
        let listed = uid.is_some();
        let wanted = [credential.metadata.generation.map(|generation| generation.to_string()), uid, version];
        let slot = {
            let mut resolved = self.resolved.lock().expect("sources lock");
            resolved.entry(credential.metadata.uid.clone().unwrap_or_default()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some((seen, resolution)) = slot.as_ref()
            && *seen == wanted
        {
            return Ok(resolution.clone());
        }
        let secret = match reference.filter(|_| listed) {
            Some(r) => Api::<Secret>::namespaced(client.clone(), &r.namespace).get_opt(&r.name).await?,
            None => None,
        };
        let resolution = Arc::new(resolve_source(&credential.spec, secret.as_ref(), &settings.source_namespaces));
        *slot = Some((wanted, resolution.clone()));
        Ok(resolution)
    }

    /// A minted source as the credential's reconcile resolves it: the plugin runs when a refresh
    /// is due, and what it gave is then shown to the namespace reconciles.
    async fn resolve_minted(
        &self,
        credential: &RegistryCredential,
        client: &Client,
        settings: &Settings,
    ) -> Arc<Resolution> {
        let source = credential.spec.source.credential_provider.as_ref().expect("a minted source");
        let slot = self.mint_slot(credential);
        let mut state = slot.state.lock().await;
        let before = state.current_digest();
        let key = source_key(&credential.spec);
        let minting = state
            .resolve(&key, std::time::Instant::now(), || {
                mint(client, &credential.spec, source, &settings.credential_providers, &settings.source_namespaces)
            })
            .await;
        if minting.tried() {
            // Only configured names label the metric: a RegistryCredential's author picks the name.
            let configured = settings.credential_providers.by_name.contains_key(&source.name);
            let label = if configured { source.name.as_str() } else { "unconfigured" };
            self.metrics.provider_run(label, minting.failure.as_ref().map(SourceProblem::reason));
        }
        let resolution = Arc::new(minting.resolution);
        *slot.shown.lock().expect("mint slot lock") = Some((key, resolution.clone(), state.next_run()));
        if minting.minted && state.current_digest() != before {
            // Every copy is stale now; the namespaces learn it from no watch.
            let uid = credential.metadata.uid.as_deref().unwrap_or_default();
            let _ = self.wake.unbounded_send(Concerned::OfCredentials(vec![intern(uid)]));
        }
        resolution
    }

    /// A minted source as a namespace reconcile sees it: the last resolution the credential's
    /// reconcile made for its current source, without waiting for a plugin run; `None` before
    /// the first (that reconcile then wakes every namespace).
    pub(crate) fn minted_for_namespace(&self, credential: &RegistryCredential) -> Option<Arc<Resolution>> {
        let (key, resolution, _) = self.shown(credential)?;
        (key == source_key(&credential.spec)).then_some(resolution)
    }

    /// What the credential's last mint left, without making a slot for a credential that has none.
    fn shown(&self, credential: &RegistryCredential) -> Option<Shown> {
        let minted = self.minted.lock().expect("minted lock");
        let slot = minted.get(credential.metadata.uid.as_deref().unwrap_or_default())?;
        slot.shown.lock().expect("mint slot lock").clone()
    }

    fn mint_slot(&self, credential: &RegistryCredential) -> Arc<MintSlot> {
        let mut minted = self.minted.lock().expect("minted lock");
        minted.entry(credential.metadata.uid.clone().unwrap_or_default()).or_default().clone()
    }

    /// When a minting credential's plugin runs next; `None` for other sources.
    pub(crate) fn next_mint(&self, credential: &RegistryCredential) -> Option<std::time::Instant> {
        self.shown(credential)?.2
    }

    pub(crate) fn forget(&self, credential: &RegistryCredential) {
        let uid = credential.metadata.uid.as_deref().unwrap_or_default();
        self.resolved.lock().expect("sources lock").remove(uid);
        self.minted.lock().expect("minted lock").remove(uid);
    }
}

pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) stores: Stores,
    pub(crate) recorder: Recorder,
    pub(crate) metrics: Arc<Metrics>,
    /// Requeue delays of credentials with failures.
    pub(crate) backoff: Backoff,
    /// Requeue delays of namespaces with failures.
    pub(crate) namespace_backoff: Backoff,
    pub(crate) sources: ResolvedSources,
    pub(crate) outcomes: Outcomes,
    pub(crate) contests: Contests,
    pub(crate) evictions: EvictionBudget,
    /// Keeps each credential's cleanup apart from its namespaces' writes.
    pub(crate) write_gates: WriteGates,
    /// Asks the credential controller to reconcile a RegistryCredential now.
    pub(crate) retrigger: futures::channel::mpsc::UnboundedSender<ObjectRef<RegistryCredential>>,
}

impl Context {
    /// Waits until every cache is listed. Past [`CACHE_PATIENCE`] with a watch failing, gives
    /// up with what fails, for the reconcile to report and retry; a list that is only slow is
    /// waited for.
    pub(crate) async fn wait_for_caches(&self) -> Result<(), String> {
        loop {
            if tokio::time::timeout(CACHE_PATIENCE, self.stores.wait_until_ready()).await.is_ok() {
                return Ok(());
            }
            if let Some(why) = self.stores.watch_errors.describe() {
                return Err(why);
            }
        }
    }
}
