//! The namespaces the controllers read, each as its name, labels and whether it is terminating.
//!
//! Every namespace of the cluster is here, so a namespace's size is paid tens of thousands of
//! times. A reflector store would keep a Kubernetes struct (its ObjectMeta alone is hundreds of
//! bytes, empty) behind a key of its own for each; here a namespace is a few words, its labels
//! sorted pairs of shared names (the `kubernetes.io/metadata.name` value is the namespace's own
//! name, and a team label's value is shared by every namespace of the team), and the watch
//! transfers metadata only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PartialObjectMeta};
use kube::runtime::watcher;
use tokio::sync::watch;

use super::cache::{Name, WatchErrors, intern};
use crate::crd::selection::Labels;

/// A namespace's labels, sorted by key, every key and value shared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompactLabels(Box<[(Name, Name)]>);

impl CompactLabels {
    pub(crate) fn new<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> CompactLabels {
        let mut pairs: Vec<(Name, Name)> =
            labels.into_iter().map(|(key, value)| (intern(key), intern(value))).collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        CompactLabels(pairs.into_boxed_slice())
    }
}

impl Labels for CompactLabels {
    fn label(&self, key: &str) -> Option<&str> {
        let found = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[found].1)
    }
}

/// A namespace as the planner and recovery read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceMeta {
    pub(crate) name: Name,
    pub(crate) labels: CompactLabels,
    /// Being deleted: nothing is written there any more.
    pub(crate) terminating: bool,
}

impl NamespaceMeta {
    pub(crate) fn from_metadata(metadata: &ObjectMeta) -> NamespaceMeta {
        NamespaceMeta {
            name: intern(metadata.name.as_deref().unwrap_or_default()),
            labels: CompactLabels::new(metadata.labels.iter().flatten()),
            terminating: metadata.deletion_timestamp.is_some(),
        }
    }
}

/// Every namespace, by name, filled by one metadata watch.
pub(crate) struct NamespaceCache {
    namespaces: RwLock<HashMap<Name, NamespaceMeta>>,
    listed: watch::Sender<bool>,
}

impl Default for NamespaceCache {
    fn default() -> Self {
        NamespaceCache { namespaces: RwLock::default(), listed: watch::Sender::new(false) }
    }
}

impl NamespaceCache {
    pub(crate) fn get(&self, name: &str) -> Option<NamespaceMeta> {
        self.read().get(name).cloned()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Every namespace's name.
    pub(crate) fn names(&self) -> Vec<Name> {
        self.read().keys().cloned().collect()
    }

    /// Reads the cache; hold the guard only while planning, never across an await.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Name, NamespaceMeta>> {
        self.namespaces.read().expect("namespace cache lock")
    }

    /// Whether the first list is in.
    pub(crate) fn listed(&self) -> watch::Receiver<bool> {
        self.listed.subscribe()
    }

    /// Puts a namespace in (or takes it out: `None`); returns whether anything changed.
    pub(crate) fn apply(&self, name: &str, namespace: Option<NamespaceMeta>) -> bool {
        let mut namespaces = self.namespaces.write().expect("namespace cache lock");
        match namespace {
            Some(namespace) => {
                namespaces.insert(namespace.name.clone(), namespace.clone()).as_ref() != Some(&namespace)
            }
            None => namespaces.remove(name).is_some(),
        }
    }

    /// Replaces every namespace after a (re)list; returns the names that changed or left.
    fn replace_all(&self, listed: HashMap<Name, NamespaceMeta>) -> Vec<Name> {
        let mut namespaces = self.namespaces.write().expect("namespace cache lock");
        let gone = namespaces.keys().filter(|name| !listed.contains_key(*name)).cloned();
        let mut changed: Vec<Name> = gone.collect();
        changed.extend(listed.iter().filter(|(name, now)| namespaces.get(*name) != Some(now)).map(|(n, _)| n.clone()));
        *namespaces = listed;
        namespaces.shrink_to_fit();
        drop(namespaces);
        self.listed.send_replace(true);
        changed
    }
}

/// Feeds the cache from a metadata watch of Namespaces; yields the names of the namespaces that
/// changed, appeared or left.
pub(crate) fn feed(
    (what, errors): (String, Arc<WatchErrors>),
    cache: Arc<NamespaceCache>,
    events: impl Stream<Item = Result<watcher::Event<PartialObjectMeta<Namespace>>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Name> + Send {
    let mut listing: Option<HashMap<Name, NamespaceMeta>> = None;
    events
        .map(move |event| {
            if event.is_ok() {
                // Any event after an error: the watch works again.
                errors.working(&what);
            }
            match event {
                Ok(watcher::Event::Init) => {
                    listing = Some(HashMap::new());
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(object)) => {
                    let namespace = NamespaceMeta::from_metadata(&object.metadata);
                    listing.get_or_insert_with(HashMap::new).insert(namespace.name.clone(), namespace);
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => cache.replace_all(listing.take().unwrap_or_default()),
                Ok(watcher::Event::Apply(object)) => {
                    let namespace = NamespaceMeta::from_metadata(&object.metadata);
                    let name = namespace.name.clone();
                    if cache.apply(&name, Some(namespace)) { vec![name] } else { Vec::new() }
                }
                Ok(watcher::Event::Delete(object)) => {
                    let name = intern(object.metadata.name.as_deref().unwrap_or_default());
                    if cache.apply(&name, None) { vec![name] } else { Vec::new() }
                }
                Err(error) => {
                    errors.failed(&what, &error);
                    Vec::new()
                }
            }
        })
        .flat_map(stream::iter)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn metadata(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn labels_are_looked_up_by_key_and_shared_between_namespaces() {
        let a =
            NamespaceMeta::from_metadata(&metadata("a", &[("team", "payments"), ("kubernetes.io/metadata.name", "a")]));
        let b = NamespaceMeta::from_metadata(&metadata("b", &[("team", "payments")]));
        assert_eq!(a.labels.label("team"), Some("payments"));
        assert_eq!(a.labels.label("kubernetes.io/metadata.name"), Some("a"));
        assert_eq!(a.labels.label("tier"), None);
        assert!(Arc::ptr_eq(&a.labels.0[1].1, &b.labels.0[0].1), "one allocation for a shared value");
        assert!(Arc::ptr_eq(&a.labels.0[0].1, &a.name), "the metadata.name label is the name itself");
        let map: BTreeMap<String, String> = [("team".to_owned(), "payments".to_owned())].into();
        assert_eq!(map.label("team"), b.labels.label("team"), "the same answers as the API's map");
    }

    #[tokio::test]
    async fn a_relist_replaces_every_namespace_and_names_what_changed() {
        let cache = Arc::new(NamespaceCache::default());
        let object = |name: &str, team: &str| PartialObjectMeta::<Namespace> {
            metadata: metadata(name, &[("team", team)]),
            ..Default::default()
        };
        let mut deleting = object("c", "x");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let events = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(object("a", "x")),
            watcher::Event::InitApply(object("b", "x")),
            watcher::Event::InitDone,
            watcher::Event::Apply(object("a", "x")),
            watcher::Event::Apply(object("a", "y")),
            watcher::Event::Apply(deleting),
            watcher::Event::Delete(object("b", "x")),
            watcher::Event::Init,
            watcher::Event::InitApply(object("a", "y")),
            watcher::Event::InitApply(object("d", "x")),
            watcher::Event::InitDone,
        ];
        let errors = Arc::new(WatchErrors::default());
        let fed = feed(("Namespaces".into(), errors), cache.clone(), stream::iter(events.into_iter().map(Ok)));
        let changed: Vec<String> = fed.map(|name| name.to_string()).collect().await;
        let (first, relisted) = changed.split_at(2);
        let mut first = first.to_vec();
        first.sort();
        assert_eq!(first, ["a", "b"], "the first list");
        let mut relisted = relisted.to_vec();
        let after_relist = relisted.split_off(3);
        assert_eq!(relisted, ["a", "c", "b"], "an unchanged apply wakes nothing");
        let mut after_relist = after_relist;
        after_relist.sort();
        assert_eq!(after_relist, ["c", "d"], "c left while the watch was down, d came");
        assert!(*cache.listed().borrow());
        let mut names: Vec<String> = cache.names().iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(names, ["a", "d"]);
        assert_eq!(cache.get("a").unwrap().labels.label("team"), Some("y"));
    }

    #[test]
    fn a_namespace_being_deleted_is_terminating() {
        let mut deleting = metadata("gone", &[]);
        assert!(!NamespaceMeta::from_metadata(&deleting).terminating);
        deleting.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(NamespaceMeta::from_metadata(&deleting).terminating);
    }
}
