//! The watches that fill the caches, one per kind, and the streams that trigger the controllers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::debug;

use super::cache::{self, Account, Copy, ObjectCache, WatchErrors};
use super::context::{Concerned, NamespaceWake, Settings, SourceSecret, Stores};
use super::namespace_cache::{self, NamespaceCache};
use super::ownership::{self, managed_selector};
use super::trim;
use crate::crd::RegistryCredential;

/// How long a broken watch waits before it retries. The default grows to 30 s and stays there
/// for two minutes, so after an API server restart the operator would sit out half a minute of
/// events; a 5 s cap resumes within seconds, at the cost of a few more retries during an outage.
pub(super) fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(builder.into(), Duration::from_secs(30))
}

/// Objects per list page of the tenant-sized kinds, against the API server's default of 500.
const TENANT_SIZED_PAGE: u32 = 50;

/// A watch feeding a cache, yielding each object it sees so the controller can map it.
///
/// Objects are trimmed to what the operator reads, and only those `keep` accepts enter the cache
/// (one that stops being accepted leaves it as if deleted). `inspect` sees every event first. The
/// returned flag turns true once the first list is in the cache: a reflector store's own
/// readiness wakes only one waiter at a time, and every reconcile waits for the caches. The
/// watch retries with its own backoff and its errors stop here: a controller pauses all of its
/// triggers after any error it sees, so one watch's hiccup would delay every other.
fn cached_watch<K>(
    (what, errors): (String, Arc<WatchErrors>),
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    trim_object: fn(&mut K),
    keep: fn(&K) -> bool,
    mut inspect: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> (Store<K>, tokio::sync::watch::Receiver<bool>, impl Stream<Item = Result<K, watcher::Error>> + Send)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (listed, is_listed) = tokio::sync::watch::channel(false);
    let (on_list, on_error) = (errors.clone(), what.clone());
    let stream = events
        .backoff(watch_backoff())
        .modify(trim_object)
        .filter_map(move |event| async move {
            match event {
                Ok(watcher::Event::Apply(object)) if !keep(&object) => Some(Ok(watcher::Event::Delete(object))),
                Ok(watcher::Event::InitApply(object)) if !keep(&object) => None,
                other => Some(other),
            }
        })
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                // Any event after an error: the watch works again.
                on_list.working(&what);
                if matches!(event, watcher::Event::InitDone) {
                    listed.send_replace(true);
                }
                inspect(event);
            }
        })
        .touched_objects()
        .filter_map(move |event| {
            let object = match event {
                Ok(object) => Some(Ok(object)),
                Err(error) => {
                    errors.failed(&on_error, &error);
                    None
                }
            };
            async move { object }
        });
    (reader, is_listed, stream)
}

fn keep_all<K>(_: &K) -> bool {
    true
}

fn keep_as_is<K>(_: &mut K) {}

fn ignore<K>(_: &watcher::Event<K>) {}

type Events<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// What the watches yield: the objects each controller is triggered by.
pub(super) struct Watches {
    pub(super) credentials: Events<RegistryCredential>,
    /// Namespaces that appeared, changed or left.
    pub(super) namespaces: futures::stream::BoxStream<'static, cache::Name>,
    /// Namespaces whose ServiceAccounts changed.
    pub(super) accounts: futures::stream::BoxStream<'static, cache::Name>,
    /// Namespaces whose copies changed.
    pub(super) copies: futures::stream::BoxStream<'static, cache::Name>,
    /// Pending Pods.
    pub(super) pods: Events<Pod>,
    /// Secrets of the trusted source namespaces, by their metadata.
    pub(super) sources: Events<SourceSecret>,
}

/// Starts the watches that fill the caches, one per kind, each trimmed to what the operator reads.
pub(super) fn watch_related(client: &Client, settings: &Settings, every_namespace: NamespaceWake) -> (Stores, Watches) {
    let all = watcher::Config::default();
    // ServiceAccounts and Pods are tenant-sized: a list page is decoded whole before it is trimmed,
    // so the page, not the cache, sets the peak.
    let tenant_sized = all.clone().page_size(TENANT_SIZED_PAGE);
    let errors = Arc::new(WatchErrors::default());
    let named = |what: &str| (what.to_owned(), errors.clone());
    let objects = Arc::new(ObjectCache::default());
    let (pods_needed_tx, pods_needed) = tokio::sync::watch::channel(false);
    let credential_cues = CredentialCues { every_namespace, objects: objects.clone(), pods_needed: pods_needed_tx };
    let (credentials, credentials_listed, credential_events) =
        credential_watch(client, settings, named("RegistryCredentials"), credential_cues);
    let namespaces = Arc::new(NamespaceCache::default());
    let namespaces_listed = namespaces.listed();
    // By their metadata: nothing else of a namespace is read.
    let namespace_events = namespace_cache::feed(
        named("Namespaces"),
        namespaces.clone(),
        watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), all.clone()).backoff(watch_backoff()),
    );
    let accounts = cache::feed::<Account>(
        named("ServiceAccounts"),
        objects.clone(),
        watcher(Api::<ServiceAccount>::all(client.clone()), tenant_sized.clone()).backoff(watch_backoff()),
    );
    // Copies by metadata alone: whatever a tenant labels as ours, no payload is ever transferred.
    let copies = cache::feed::<Copy>(
        named("copies"),
        objects.clone(),
        watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), all.clone().labels(&managed_selector()))
            .backoff(watch_backoff()),
    );
    let (pods, pods_listed, pod_events) = pending_pods_watch(client, tenant_sized, pods_needed, named("Pending Pods"));
    let mut listed = vec![credentials_listed, namespaces_listed, pods_listed];
    let (source_namespaces, source_events) = source_watches(client, settings, &named, &mut listed);
    let stores = Stores {
        credentials: credentials.clone(),
        namespaces,
        objects,
        pods,
        source_namespaces,
        listed,
        watch_errors: errors,
    };
    let watches = Watches {
        credentials: credential_events.boxed(),
        namespaces: namespace_events.boxed(),
        accounts: accounts.boxed(),
        copies: copies.boxed(),
        pods: pod_events.boxed(),
        sources: stream::select_all(source_events).boxed(),
    };
    (stores, watches)
}

/// Pods waiting to start, for recovering those stuck without the copy: watched only while
/// `needed` (some credential sets evictStuckPods). Its list is waited for each time it starts,
/// not only the first: a credential that turns recovery on finds the Pods listed (or the watch's
/// failure reported).
fn pending_pods_watch(
    client: &Client,
    tenant_sized: watcher::Config,
    needed: tokio::sync::watch::Receiver<bool>,
    named: (String, Arc<WatchErrors>),
) -> (Store<Pod>, tokio::sync::watch::Receiver<bool>, impl Stream<Item = Result<Pod, watcher::Error>> + Send + use<>) {
    let pods = Api::<Pod>::all(client.clone());
    let pending = tenant_sized.fields("status.phase=Pending");
    let (current, listed) = tokio::sync::watch::channel(false);
    let (store, _, events) = cached_watch(
        named,
        while_needed(needed, move || watcher(pods.clone(), pending.clone()).boxed()),
        trim::pending_pod,
        keep_all,
        move |event| match event {
            watcher::Event::Init => drop(current.send_replace(false)),
            watcher::Event::InitDone => drop(current.send_replace(true)),
            _ => {}
        },
    );
    (store, listed, events)
}

/// The Secrets of each trusted source namespace by their metadata, by namespace, and their
/// events; each watch's first-list flag joins `listed`.
fn source_watches(
    client: &Client,
    settings: &Settings,
    named: &dyn Fn(&str) -> (String, Arc<WatchErrors>),
    listed: &mut Vec<tokio::sync::watch::Receiver<bool>>,
) -> (BTreeMap<String, Store<SourceSecret>>, Vec<Events<SourceSecret>>) {
    let mut stores = BTreeMap::new();
    let mut events = Vec::new();
    for namespace in &settings.source_namespaces {
        let secrets = Api::<SourceSecret>::namespaced(client.clone(), namespace);
        let (store, store_listed, secrets) = cached_watch(
            named(&format!("Secrets of {namespace}")),
            watcher(secrets, watcher::Config::default()),
            trim::source_secret,
            keep_all,
            ignore,
        );
        stores.insert(namespace.clone(), store);
        listed.push(store_listed);
        events.push(secrets.boxed());
    }
    (stores, events)
}

/// What the credential watch tells the rest of the operator.
struct CredentialCues {
    /// Wakes every namespace on a credential-wide change.
    every_namespace: NamespaceWake,
    /// Every secret name a credential uses is one the ServiceAccounts' long lists keep.
    objects: Arc<ObjectCache>,
    /// Whether some credential recovers stuck Pods, so that Pending Pods are watched.
    pods_needed: tokio::sync::watch::Sender<bool>,
}

/// The RegistryCredentials this instance manages.
fn credential_watch(
    client: &Client,
    settings: &Settings,
    named: (String, Arc<WatchErrors>),
    cues: CredentialCues,
) -> (
    Store<RegistryCredential>,
    tokio::sync::watch::Receiver<bool>,
    impl Stream<Item = Result<RegistryCredential, watcher::Error>> + Send + use<>,
) {
    let mut config = watcher::Config::default();
    if let Some(selector) = &settings.credential_selector {
        config = config.labels(selector);
    }
    let (mut changes, mut recovering) = (CredentialChanges::default(), Recovering::default());
    cached_watch(named, watcher(Api::<RegistryCredential>::all(client.clone()), config), keep_as_is, keep_all, {
        move |event| {
            if let watcher::Event::Apply(credential) | watcher::Event::InitApply(credential) = event {
                cues.objects.use_name(&credential.spec.secret_name);
            }
            if changes.credential_wide(event) {
                debug!("a credential-wide change: every namespace is reconciled");
                let _ = cues.every_namespace.unbounded_send(Concerned::Every);
            }
            let needed = recovering.observe(event);
            cues.pods_needed.send_if_modified(|was| std::mem::replace(was, needed) != needed);
        }
    })
}

/// The active credentials that recover stuck Pods (evictStuckPods), by UID, across relists.
#[derive(Default)]
struct Recovering {
    now: HashSet<String>,
    relisting: HashSet<String>,
}

impl Recovering {
    /// Takes note of `event`; says whether any credential recovers stuck Pods.
    fn observe(&mut self, event: &watcher::Event<RegistryCredential>) -> bool {
        let uid = |credential: &RegistryCredential| credential.metadata.uid.clone().unwrap_or_default();
        let recovers =
            |credential: &RegistryCredential| credential.spec.evict_stuck_pods && ownership::is_active(credential);
        match event {
            watcher::Event::Init => self.relisting.clear(),
            watcher::Event::InitApply(credential) if recovers(credential) => {
                self.relisting.insert(uid(credential));
            }
            watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => self.now = std::mem::take(&mut self.relisting),
            watcher::Event::Apply(credential) if recovers(credential) => {
                self.now.insert(uid(credential));
            }
            watcher::Event::Apply(credential) | watcher::Event::Delete(credential) => {
                self.now.remove(&uid(credential));
            }
        }
        !self.now.is_empty()
    }
}

type EventStream<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// The events of the watch `start` makes while `needed` says so. Otherwise no watch runs, and
/// the cache gets an empty list: emptied, and listed (reconciles need not wait for it).
fn while_needed<K: Send + 'static>(
    needed: tokio::sync::watch::Receiver<bool>,
    start: impl Fn() -> EventStream<K> + Send + 'static,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send {
    struct Switch<K, F> {
        needed: tokio::sync::watch::Receiver<bool>,
        start: F,
        running: Option<EventStream<K>>,
        queued: Vec<watcher::Event<K>>,
    }
    // Taken from the end: Init, then InitDone.
    let empty_list = || vec![watcher::Event::InitDone, watcher::Event::Init];
    let switch = Switch { needed, start, running: None, queued: empty_list() };
    stream::unfold(switch, move |mut switch| async move {
        loop {
            if let Some(event) = switch.queued.pop() {
                return Some((Ok(event), switch));
            }
            let Some(running) = switch.running.as_mut() else {
                if *switch.needed.borrow_and_update() {
                    switch.running = Some((switch.start)());
                } else if switch.needed.changed().await.is_err() {
                    return None;
                }
                continue;
            };
            tokio::select! {
                changed = switch.needed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    if !*switch.needed.borrow_and_update() {
                        switch.running = None;
                        switch.queued = empty_list();
                    }
                }
                // A watcher's stream never ends; should it, so does this one.
                event = running.next() => return event.map(|event| (event, switch)),
            }
        }
    })
}

/// Tells a credential-wide change (one that every namespace's plan depends on) from a status
/// write: an active credential (finalizer in place, not being deleted) that is new, newly active
/// or of a new generation, or a credential gone (its rivals may take the name over).
#[derive(Default)]
struct CredentialChanges {
    /// The generation of each active credential, by UID.
    active: HashMap<String, Option<i64>>,
}

impl CredentialChanges {
    fn credential_wide(&mut self, event: &watcher::Event<RegistryCredential>) -> bool {
        match event {
            watcher::Event::Apply(credential) | watcher::Event::InitApply(credential) => {
                let uid = credential.metadata.uid.clone().unwrap_or_default();
                if !ownership::is_active(credential) {
                    self.active.remove(&uid);
                    return false;
                }
                let generation = credential.metadata.generation;
                self.active.insert(uid, generation) != Some(generation) && matches!(event, watcher::Event::Apply(_))
            }
            watcher::Event::Delete(credential) => {
                self.active.remove(credential.metadata.uid.as_deref().unwrap_or_default());
                true
            }
            watcher::Event::Init => false,
            // After a (re)list, whatever changed meanwhile.
            watcher::Event::InitDone => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture;

    #[test]
    fn only_changes_of_an_active_credential_and_its_removal_reconcile_every_namespace() {
        let mut changes = CredentialChanges::default();
        let apply = |c| watcher::Event::Apply(c);
        let rc = |generation| fixture::credential("rc").generation(generation);
        assert!(!changes.credential_wide(&apply(rc(1).build())), "no finalizer yet: nothing written for it");
        assert!(changes.credential_wide(&apply(rc(1).finalized().build())), "active now");
        assert!(!changes.credential_wide(&apply(rc(1).finalized().build())), "a status write");
        assert!(changes.credential_wide(&apply(rc(2).finalized().build())), "a spec change");
        assert!(
            !changes.credential_wide(&apply(rc(3).finalized().deleting().build())),
            "being deleted: its cleanup works"
        );
        assert!(changes.credential_wide(&watcher::Event::Delete(rc(3).deleting().build())), "gone: rivals take over");
        assert!(!changes.credential_wide(&watcher::Event::InitApply(rc(1).finalized().build())), "listed");
        assert!(changes.credential_wide(&watcher::Event::InitDone), "after a (re)list");
    }

    #[test]
    fn pods_are_needed_while_an_active_credential_recovers_stuck_pods() {
        let mut recovering = Recovering::default();
        let evicting = |name: &str| {
            let mut credential = fixture::credential(name).finalized().build();
            credential.spec.evict_stuck_pods = true;
            credential
        };
        let apply = |c| watcher::Event::Apply(c);
        assert!(!recovering.observe(&apply(fixture::credential("plain").finalized().build())));
        assert!(recovering.observe(&apply(evicting("a"))));
        assert!(recovering.observe(&apply(evicting("b"))));
        assert!(recovering.observe(&watcher::Event::Delete(evicting("a"))), "b still recovers");
        let mut opted_out = evicting("b");
        opted_out.spec.evict_stuck_pods = false;
        assert!(!recovering.observe(&apply(opted_out)), "none left");
        assert!(!recovering.observe(&apply(fixture::credential("c").build())), "no finalizer: not active");
        // A relist replaces what was known: one deleted while the watch was down is forgotten.
        recovering.observe(&apply(evicting("gone")));
        assert!(recovering.observe(&watcher::Event::Init), "until the list is in");
        assert!(recovering.observe(&watcher::Event::InitApply(evicting("d"))));
        assert!(recovering.observe(&watcher::Event::InitDone));
        assert!(!recovering.observe(&watcher::Event::Delete(evicting("d"))), "gone was forgotten");
    }

    #[tokio::test]
    async fn a_watch_runs_only_while_needed_and_empties_its_cache_when_stopped() {
        let (needed, needed_rx) = tokio::sync::watch::channel(false);
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let starts = started.clone();
        let events = while_needed(needed_rx, move || {
            starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let listed = [watcher::Event::Init, watcher::Event::InitApply(1), watcher::Event::InitDone];
            stream::iter(listed.map(Ok)).chain(stream::pending()).boxed()
        });
        let mut events = Box::pin(events);
        let mut next = async || match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            _ => None,
        };
        let kinds = |events: Vec<Option<watcher::Event<i32>>>| -> Vec<String> {
            events.into_iter().map(|e| format!("{e:?}")).collect()
        };
        assert_eq!(kinds(vec![next().await, next().await]), ["Some(Init)", "Some(InitDone)"], "an empty list");
        assert!(next().await.is_none(), "and nothing while not needed");
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0, "no watch started");
        needed.send_replace(true);
        let listed = vec![next().await, next().await, next().await];
        assert_eq!(kinds(listed), ["Some(Init)", "Some(InitApply(1))", "Some(InitDone)"], "the watch's own list");
        needed.send_replace(false);
        assert_eq!(kinds(vec![next().await, next().await]), ["Some(Init)", "Some(InitDone)"], "emptied");
        needed.send_replace(true);
        assert_eq!(kinds(vec![next().await]), ["Some(Init)"], "started again");
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
