//! The watches that fill the caches, one per kind, and the streams that trigger the controllers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
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
use super::context::{Settings, Stores};
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
    pub(super) namespaces: Events<Namespace>,
    /// Namespaces whose ServiceAccounts changed.
    pub(super) accounts: futures::stream::BoxStream<'static, cache::Name>,
    /// Namespaces whose copies changed.
    pub(super) copies: futures::stream::BoxStream<'static, cache::Name>,
    /// Pending Pods.
    pub(super) pods: Events<Pod>,
    /// Secrets of the trusted source namespaces.
    pub(super) sources: Events<Secret>,
}

/// Starts the watches that fill the caches, one per kind, each trimmed to what the operator reads.
pub(super) fn watch_related(
    client: &Client,
    settings: &Settings,
    every_namespace: UnboundedSender<()>,
) -> (Stores, Watches) {
    let all = watcher::Config::default();
    // ServiceAccounts and Pods are tenant-sized: a list page is decoded whole before it is trimmed,
    // so the page, not the cache, sets the peak.
    let tenant_sized = all.clone().page_size(TENANT_SIZED_PAGE);
    let errors = Arc::new(WatchErrors::default());
    let named = |what: &str| (what.to_owned(), errors.clone());
    let objects = Arc::new(ObjectCache::default());
    let (credentials, credentials_listed, credential_events) =
        credential_watch(client, settings, named("RegistryCredentials"), every_namespace, objects.clone());
    let (namespaces, namespaces_listed, namespace_events) = cached_watch(
        named("Namespaces"),
        watcher(Api::<Namespace>::all(client.clone()), all.clone()),
        trim::namespace,
        keep_all,
        ignore,
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
    // Pods waiting to start, for recovering those stuck without the copy (evictStuckPods).
    let (pods, pods_listed, pod_events) = cached_watch(
        named("Pending Pods"),
        watcher(Api::<Pod>::all(client.clone()), tenant_sized.fields("status.phase=Pending")),
        trim::pending_pod,
        keep_all,
        ignore,
    );
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

/// The Secrets of each trusted source namespace, by namespace, and their events; each watch's
/// first-list flag joins `listed`.
fn source_watches(
    client: &Client,
    settings: &Settings,
    named: &dyn Fn(&str) -> (String, Arc<WatchErrors>),
    listed: &mut Vec<tokio::sync::watch::Receiver<bool>>,
) -> (BTreeMap<String, Store<Secret>>, Vec<Events<Secret>>) {
    let mut stores = BTreeMap::new();
    let mut events = Vec::new();
    for namespace in &settings.source_namespaces {
        let (store, store_listed, secrets) = cached_watch(
            named(&format!("Secrets of {namespace}")),
            watcher(Api::<Secret>::namespaced(client.clone(), namespace), watcher::Config::default()),
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

/// The RegistryCredentials this instance manages; a credential-wide change wakes every namespace,
/// and every secret name a credential uses is one the ServiceAccounts' long lists keep.
fn credential_watch(
    client: &Client,
    settings: &Settings,
    named: (String, Arc<WatchErrors>),
    every_namespace: UnboundedSender<()>,
    objects: Arc<ObjectCache>,
) -> (
    Store<RegistryCredential>,
    tokio::sync::watch::Receiver<bool>,
    impl Stream<Item = Result<RegistryCredential, watcher::Error>> + Send + use<>,
) {
    let mut config = watcher::Config::default();
    if let Some(selector) = &settings.credential_selector {
        config = config.labels(selector);
    }
    let mut changes = CredentialChanges::default();
    cached_watch(named, watcher(Api::<RegistryCredential>::all(client.clone()), config), keep_as_is, keep_all, {
        move |event| {
            if let watcher::Event::Apply(credential) | watcher::Event::InitApply(credential) = event {
                objects.use_name(&credential.spec.secret_name);
            }
            if changes.credential_wide(event) {
                debug!("a credential-wide change: every namespace is reconciled");
                let _ = every_namespace.unbounded_send(());
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
}
