//! The ServiceAccounts and copies the planner reads, grouped by namespace and kept compact.
//!
//! At 10,000 namespaces with several ServiceAccounts each, these are most of the objects the
//! operator knows. A Kubernetes struct with its ObjectMeta costs about a kilobyte even when
//! trimmed, and a reflector store has no index by namespace, so every plan of one namespace would
//! scan the cluster. Here each object keeps only the fields a decision reads, names repeated
//! across namespaces (`default`, the copy's name, field managers) share one allocation, and the
//! objects of a namespace are found in one lookup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{ObjectMeta, PartialObjectMeta};
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::warn;

use super::ownership::{
    ADDED_PULL_SECRETS_ANNOTATION, AddedPullSecrets, CONTENT_DIGEST_ANNOTATION, CREDENTIAL_LABEL, FIELD_MANAGER,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::crd::selection::ENFORCE_MOUNTABLE_SECRETS_ANNOTATION;

/// A name shared by every object that uses it.
pub(crate) type Name = Arc<str>;

/// Names seen in more than one place share one allocation. Names no object holds any more are
/// dropped now and then, so the table follows the cluster rather than its history.
pub(crate) fn intern(name: &str) -> Name {
    static TABLE: Mutex<Option<(HashSet<Name>, usize)>> = Mutex::new(None);
    let mut table = TABLE.lock().expect("intern lock");
    let (names, inserted) = table.get_or_insert_with(Default::default);
    if let Some(known) = names.get(name) {
        return known.clone();
    }
    *inserted += 1;
    if *inserted % 4096 == 0 {
        names.retain(|name| Arc::strong_count(name) > 1);
    }
    let name: Name = Arc::from(name);
    names.insert(name.clone());
    name
}

/// A ServiceAccount keeps its lists whole up to this many entries each. A longer list (a tenant's
/// thousands) keeps only the names the credentials use, so a ServiceAccount costs the cache at most
/// `2 × 16` names of at most 253 bytes, or the names in use that it lists, whatever its size.
pub(crate) const WHOLE_LISTS_UP_TO: usize = 16;

/// A ServiceAccount as the planner and the patches read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) name: Name,
    /// The guard of every patch.
    pub(crate) resource_version: Box<str>,
    /// Its `imagePullSecrets`: whole, or (not `whole`) the names the credentials use.
    pub(crate) pull_secrets: Box<[Name]>,
    /// The operator's record of the entries it added: whole, or the names the credentials use.
    added: Box<[Name]>,
    /// Whether both lists are whole: a patch is computed from the cache only then, otherwise from
    /// a fresh read.
    pub(crate) whole: bool,
    /// Partial lists kept before a name came into use: what they hold of that name is unknown
    /// until the ServiceAccount is read again.
    pub(crate) stale: bool,
    /// A field manager other than the operator's that owns `imagePullSecrets`: who else writes it.
    pub(crate) list_writer: Option<Name>,
    /// `kubernetes.io/enforce-mountable-secrets: "true"`: the API server refuses its Pods that
    /// list a pull secret it does not list itself.
    pub(crate) enforces_mountable_secrets: bool,
}

impl Account {
    /// The operator's record of the entries it added (empty when it has none).
    pub(crate) fn added_pull_secrets(&self) -> AddedPullSecrets {
        self.added.iter().map(|name| &**name).collect()
    }

    /// The whole ServiceAccount, as a patch is computed from it.
    pub(crate) fn from_object(account: &ServiceAccount) -> Account {
        Self::kept(account, None)
    }

    /// The ServiceAccount as the cache keeps it: its lists whole up to [`WHOLE_LISTS_UP_TO`]
    /// entries, else only the names `in_use` (`None`: whole whatever their length).
    pub(crate) fn kept(account: &ServiceAccount, in_use: Option<&dyn Fn(&str) -> bool>) -> Account {
        let entries: Vec<&str> = account.image_pull_secrets.iter().flatten().map(|r| r.name.as_str()).collect();
        let record =
            AddedPullSecrets::parse(account.annotations().get(ADDED_PULL_SECRETS_ANNOTATION).map(String::as_str));
        let whole =
            in_use.is_none() || (entries.len() <= WHOLE_LISTS_UP_TO && record.names().count() <= WHOLE_LISTS_UP_TO);
        let keep = |name: &str| whole || in_use.is_some_and(|in_use| in_use(name));
        let list_writer = account
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|entry| entry.fields_v1.as_ref().is_some_and(|f| f.0.get("f:imagePullSecrets").is_some()))
            .filter_map(|entry| entry.manager.as_deref())
            .find(|manager| *manager != FIELD_MANAGER)
            .map(intern);
        Account {
            name: intern(&account.name_any()),
            resource_version: account.resource_version().unwrap_or_default().into(),
            pull_secrets: entries.into_iter().filter(|name| keep(name)).map(intern).collect(),
            added: record.names().filter(|name| keep(name)).map(intern).collect(),
            whole,
            stale: false,
            list_writer,
            enforces_mountable_secrets: account
                .annotations()
                .get(ENFORCE_MOUNTABLE_SECRETS_ANNOTATION)
                .is_some_and(|value| value == "true"),
        }
    }

    /// Whether it lists `name`: exact for a whole list and for the names in use when it was kept.
    pub(crate) fn has_pull_secret(&self, name: &str) -> bool {
        self.pull_secrets.iter().any(|entry| &**entry == name)
    }

    /// Whether the operator's record may hold `name`: it does, or the cache cannot tell (a stale
    /// partial list). A removal planned on doubt is computed from a fresh read, which settles it.
    pub(crate) fn may_record(&self, name: &str) -> bool {
        self.stale || self.added.iter().any(|entry| &**entry == name)
    }
}

/// The RegistryCredential that controls a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Controller {
    pub(crate) uid: Name,
    pub(crate) name: Name,
}

/// A Secret labelled as managed and controlled by a RegistryCredential, from its metadata alone
/// (the watch never transfers a payload): whatever a tenant puts in a Secret labelled as ours,
/// the cache keeps a few dozen bytes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Copy {
    pub(crate) name: Name,
    pub(crate) uid: Box<str>,
    pub(crate) controller: Controller,
    /// The value of the credential label, if any.
    pub(crate) credential_label: Option<Name>,
    /// Whether the managed-by label says regcred-operator.
    pub(crate) managed_by_label: bool,
    /// The digest of the payload the operator wrote: one allocation for all the copies of it.
    pub(crate) digest: Option<Name>,
    pub(crate) resource_version: Box<str>,
    /// Whether this very version is one the operator wrote (in this process). Only then is the
    /// digest proof of the payload: labels, annotations and field-manager names are anyone's to
    /// write, a resourceVersion is not.
    pub(crate) written_here: bool,
}

impl Copy {
    /// The copy, or `None` when no RegistryCredential controls the Secret: anything else carrying
    /// the label is a tenant's, and stays out of the cache.
    pub(crate) fn from_metadata(secret: &ObjectMeta) -> Option<Copy> {
        let controller = secret.owner_references.iter().flatten().find(|owner| {
            owner.controller == Some(true)
                && owner.kind == "RegistryCredential"
                && owner.api_version.starts_with("regcred.dev/")
        })?;
        let label = |key: &str| secret.labels.as_ref().and_then(|labels| labels.get(key));
        Some(Copy {
            name: intern(secret.name.as_deref().unwrap_or_default()),
            uid: secret.uid.as_deref().unwrap_or_default().into(),
            controller: Controller { uid: intern(&controller.uid), name: intern(&controller.name) },
            credential_label: label(CREDENTIAL_LABEL).map(|v| intern(v)),
            managed_by_label: label(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE),
            digest: secret
                .annotations
                .as_ref()
                .and_then(|a| a.get(CONTENT_DIGEST_ANNOTATION))
                .filter(|digest| is_digest(digest))
                .map(|digest| intern(digest)),
            resource_version: secret.resource_version.as_deref().unwrap_or_default().into(),
            written_here: false,
        })
    }
}

/// Whether an annotation value is shaped like the operator's digests (SHA-256, hex): only those
/// are kept and shared, never a tenant's 256 KiB; anything else can never match a payload.
fn is_digest(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the cache knows of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NamespaceObjects {
    /// Sorted by name.
    pub(crate) accounts: Vec<Account>,
    /// Sorted by name.
    pub(crate) copies: Vec<Copy>,
}

impl NamespaceObjects {
    pub(crate) fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.binary_search_by(|a| (*a.name).cmp(name)).ok().map(|i| &self.accounts[i])
    }

    fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.copies.is_empty()
    }
}

/// A namespace's lists grow a slot at a time up to this length (five ServiceAccounts in five slots,
/// not eight: the doubling's spare slots were 6 MB at 10,000 namespaces), then by doubling.
const EXACT_GROWTH_UP_TO: usize = 32;

fn insert_compact<T>(entries: &mut Vec<T>, index: usize, entry: T) {
    if entries.len() == entries.capacity() && entries.len() < EXACT_GROWTH_UP_TO {
        entries.reserve_exact(1);
    }
    entries.insert(index, entry);
}

/// One kind kept in [`NamespaceObjects`].
pub(crate) trait Cached: Sized {
    type Object: kube::Resource<DynamicType = ()> + Send + 'static;
    /// The compact form, or `None` for an object the cache does not keep.
    fn compact(object: &Self::Object, cache: &ObjectCache) -> Option<Self>;
    fn name(&self) -> &str;
    /// Its resourceVersion.
    fn version(&self) -> &str;
    fn entries(objects: &mut NamespaceObjects) -> &mut Vec<Self>;
    /// The bit this kind sets in the readiness mask once listed.
    const READY_BIT: u8;
    /// Keeps what the cache knew of the same object beyond the object itself.
    fn carry_over(&mut self, _previous: &Self) {}
}

impl Cached for Account {
    type Object = ServiceAccount;
    const READY_BIT: u8 = 1;

    fn compact(object: &ServiceAccount, cache: &ObjectCache) -> Option<Self> {
        Some(cache.keep(object))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.resource_version
    }

    fn entries(objects: &mut NamespaceObjects) -> &mut Vec<Self> {
        &mut objects.accounts
    }
}

impl Cached for Copy {
    type Object = PartialObjectMeta<Secret>;
    const READY_BIT: u8 = 2;

    fn compact(object: &PartialObjectMeta<Secret>, _: &ObjectCache) -> Option<Self> {
        Copy::from_metadata(&object.metadata)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.resource_version
    }

    fn entries(objects: &mut NamespaceObjects) -> &mut Vec<Self> {
        &mut objects.copies
    }

    /// The event of the operator's own write, or a relist, carries the version it wrote.
    fn carry_over(&mut self, previous: &Self) {
        self.written_here |= previous.written_here && previous.resource_version == self.resource_version;
    }
}

const ALL_READY: u8 = Account::READY_BIT | Copy::READY_BIT;

/// ServiceAccounts and copies by namespace, filled by one watch per kind.
pub(crate) struct ObjectCache {
    namespaces: RwLock<HashMap<Name, NamespaceObjects>>,
    ready: watch::Sender<u8>,
    /// The secret names of the credentials seen: the entries a long list keeps.
    names_in_use: RwLock<HashSet<Name>>,
}

impl Default for ObjectCache {
    fn default() -> Self {
        ObjectCache { namespaces: RwLock::default(), ready: watch::Sender::new(0), names_in_use: RwLock::default() }
    }
}

impl ObjectCache {
    /// A credential uses this secret name: long lists keep it from now on, and those kept before
    /// turn stale, to be read again before anything is concluded of them.
    pub(crate) fn use_name(&self, name: &str) {
        let known = self.names_in_use.read().expect("names lock").contains(name);
        if known || !self.names_in_use.write().expect("names lock").insert(intern(name)) {
            return;
        }
        let mut namespaces = self.namespaces.write().expect("cache lock");
        let partial = namespaces.values_mut().flat_map(|objects| objects.accounts.iter_mut()).filter(|a| !a.whole);
        partial.for_each(|account| account.stale = true);
    }

    /// The ServiceAccount as the cache keeps it.
    pub(crate) fn keep(&self, account: &ServiceAccount) -> Account {
        let names = self.names_in_use.read().expect("names lock");
        Account::kept(account, Some(&|name: &str| names.contains(name)))
    }

    /// Reads the cache; hold the guard only while planning, never across an await.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<Name, NamespaceObjects>> {
        self.namespaces.read().expect("cache lock")
    }

    /// One cached ServiceAccount.
    pub(crate) fn account(&self, namespace: &str, name: &str) -> Option<Account> {
        self.read().get(namespace)?.account(name).cloned()
    }

    /// A copy of one namespace's objects.
    pub(crate) fn namespace(&self, namespace: &str) -> NamespaceObjects {
        self.read().get(namespace).cloned().unwrap_or_default()
    }

    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow() & ALL_READY == ALL_READY
    }

    pub(crate) async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives as long as the cache: an error cannot happen while it is awaited.
        let _ = ready.wait_for(|mask| *mask & ALL_READY == ALL_READY).await;
    }

    /// Puts the object in, or takes it out when the cache does not keep it; returns whether
    /// anything changed. Also called with the result of the operator's own writes, so the next
    /// plan does not act on what it just did, and the watch event of that write changes nothing.
    pub(crate) fn apply<K: Cached + PartialEq>(&self, namespace: &str, name: &str, object: Option<K>) -> bool {
        self.apply_over(namespace, name, object, |_| true)
    }

    /// [`apply`](Self::apply), only when `over` accepts what the cache holds now (`None`: nothing).
    fn apply_over<K: Cached + PartialEq>(
        &self,
        namespace: &str,
        name: &str,
        object: Option<K>,
        over: impl FnOnce(Option<&K>) -> bool,
    ) -> bool {
        let mut namespaces = self.namespaces.write().expect("cache lock");
        if object.is_none() && !namespaces.contains_key(namespace) {
            return false;
        }
        let objects = namespaces.entry(intern(namespace)).or_default();
        let entries = K::entries(objects);
        let found = entries.binary_search_by(|e| e.name().cmp(name));
        if !over(found.ok().map(|i| &entries[i])) {
            if objects.is_empty() {
                namespaces.remove(namespace);
            }
            return false;
        }
        let changed = match (found, object) {
            (Ok(i), Some(mut object)) => {
                object.carry_over(&entries[i]);
                let changed = entries[i] != object;
                entries[i] = object;
                changed
            }
            (Err(i), Some(object)) => {
                insert_compact(entries, i, object);
                true
            }
            (Ok(i), None) => {
                entries.remove(i);
                true
            }
            (Err(_), None) => false,
        };
        if objects.is_empty() {
            namespaces.remove(namespace);
        }
        changed
    }

    /// Puts in a copy the operator just wrote, as written by it, so that the next plan does not
    /// act on it again and the watch event of the write changes nothing; `seen` is the version
    /// the cache held when the write was sent (`None`: no copy of that name).
    pub(crate) fn remember_write(&self, written: &ObjectMeta, seen: Option<&str>) {
        let Some(mut copy) = Copy::from_metadata(written) else { return };
        copy.written_here = true;
        self.apply_seen(written.namespace.as_deref().unwrap_or_default(), copy, seen);
    }

    /// Puts in a ServiceAccount as the operator just read or patched it; `seen` is the version
    /// the cache held when the request was sent (for a patch, the one it was based on).
    pub(crate) fn remember_account(&self, namespace: &str, account: &ServiceAccount, seen: Option<&str>) {
        self.apply_seen(namespace, self.keep(account), seen);
    }

    /// Puts in what one of the operator's own requests returned, only over the version the cache
    /// held when it was sent (`seen`; `None`: nothing) or the same version: whatever the watch
    /// delivered meanwhile (a newer version, a deletion) stands, never overwritten by an older
    /// answer.
    fn apply_seen<K: Cached + PartialEq>(&self, namespace: &str, object: K, seen: Option<&str>) -> bool {
        let (name, version) = (object.name().to_owned(), object.version().to_owned());
        self.apply_over(namespace, &name, Some(object), |current: Option<&K>| match current {
            None => seen.is_none(),
            Some(current) => Some(current.version()) == seen || current.version() == version,
        })
    }

    /// Replaces every object of one kind after a (re)list; returns the namespaces whose objects
    /// of that kind changed.
    fn replace_all<K: Cached + PartialEq>(&self, listed: HashMap<Name, Vec<K>>) -> Vec<Name> {
        let mut namespaces = self.namespaces.write().expect("cache lock");
        let mut changed = Vec::new();
        for (namespace, objects) in namespaces.iter_mut() {
            if !listed.contains_key(namespace) && !K::entries(objects).is_empty() {
                K::entries(objects).clear();
                changed.push(namespace.clone());
            }
        }
        for (namespace, mut listed) in listed {
            listed.sort_by(|a, b| a.name().cmp(b.name()));
            listed.shrink_to_fit();
            let entries = K::entries(namespaces.entry(namespace.clone()).or_default());
            for object in &mut listed {
                if let Ok(i) = entries.binary_search_by(|e| e.name().cmp(object.name())) {
                    object.carry_over(&entries[i]);
                }
            }
            if *entries != listed {
                *entries = listed;
                changed.push(namespace);
            }
        }
        namespaces.retain(|_, objects| !objects.is_empty());
        drop(namespaces);
        self.ready.send_modify(|mask| *mask |= K::READY_BIT);
        changed
    }
}

/// Why a cache is not listed yet: the last error of each watch that has not listed since (RBAC
/// that forbids the list, say), by what it watches.
#[derive(Default)]
pub(crate) struct WatchErrors(Mutex<BTreeMap<String, String>>);

impl WatchErrors {
    pub(crate) fn failed(&self, what: &str, error: &watcher::Error) {
        warn!(watch = %what, %error, "watch interrupted; retrying");
        self.0.lock().expect("watch errors lock").insert(what.to_owned(), error.to_string());
    }

    /// The watch of `what` works (again).
    pub(crate) fn working(&self, what: &str) {
        self.0.lock().expect("watch errors lock").remove(what);
    }

    /// What keeps the caches from being listed, for people: `Pods: <error>; ...`.
    pub(crate) fn describe(&self) -> Option<String> {
        let errors = self.0.lock().expect("watch errors lock");
        let described: Vec<String> = errors.iter().map(|(what, error)| format!("{what}: {error}")).collect();
        (!described.is_empty()).then(|| described.join("; "))
    }
}

/// Feeds one kind of the cache from a watch; yields the namespaces whose objects changed.
pub(crate) fn feed<K>(
    (what, errors): (String, Arc<WatchErrors>),
    cache: Arc<ObjectCache>,
    events: impl Stream<Item = Result<watcher::Event<K::Object>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Name> + Send
where
    K: Cached + PartialEq + Send + 'static,
{
    let mut listing: Option<HashMap<Name, Vec<K>>> = None;
    events
        .inspect({
            let (errors, what) = (errors.clone(), what.clone());
            // Any event after an error: the watch works again.
            move |event| {
                if event.is_ok() {
                    errors.working(&what);
                }
            }
        })
        .map(move |event| match event {
            Ok(watcher::Event::Init) => {
                listing = Some(HashMap::new());
                Vec::new()
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(compact) = K::compact(&object, &cache) {
                    let namespace = intern(&object.namespace().unwrap_or_default());
                    listing.get_or_insert_with(HashMap::new).entry(namespace).or_default().push(compact);
                }
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => cache.replace_all(listing.take().unwrap_or_default()),
            // Only changes wake the namespace: the event of the operator's own write, already in
            // the cache, does not.
            Ok(watcher::Event::Apply(object)) => {
                let namespace = object.namespace().unwrap_or_default();
                let changed = cache.apply(&namespace, &object.name_any(), K::compact(&object, &cache));
                if changed { vec![intern(&namespace)] } else { Vec::new() }
            }
            Ok(watcher::Event::Delete(object)) => {
                let namespace = object.namespace().unwrap_or_default();
                let changed = cache.apply::<K>(&namespace, &object.name_any(), None);
                if changed { vec![intern(&namespace)] } else { Vec::new() }
            }
            Err(error) => {
                errors.failed(&what, &error);
                Vec::new()
            }
        })
        .flat_map(stream::iter)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_account_keeps_what_patches_need_and_only_the_operators_record() {
        let account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": "default", "namespace": "a", "resourceVersion": "7", "uid": "u",
                         "annotations": {ADDED_PULL_SECRETS_ANNOTATION: "regcred", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                         ENFORCE_MOUNTABLE_SECRETS_ANNOTATION: "true"},
                         "managedFields": [{"manager": "kubectl"},
                                           {"manager": "argocd-controller", "operation": "Apply",
                                            "fieldsV1": {"f:imagePullSecrets": {}}}]},
            "imagePullSecrets": [{"name": "regcred"}],
            "secrets": [{"name": "token"}],
        }))
        .unwrap();
        assert_eq!(
            Account::from_object(&account),
            Account {
                name: intern("default"),
                resource_version: "7".into(),
                pull_secrets: [intern("regcred")].into(),
                added: [intern("regcred")].into(),
                whole: true,
                stale: false,
                list_writer: Some(intern("argocd-controller")),
                enforces_mountable_secrets: true,
            }
        );
    }

    #[test]
    fn a_long_list_costs_the_cache_the_names_in_use_that_it_lists_and_no_more() {
        // A tenant's ServiceAccount: 5,000 entries of 200 bytes and a forged record as long.
        let long: Vec<String> = (0..5_000).map(|i| format!("{i:0200}")).collect();
        let mut entries: Vec<serde_json::Value> = long.iter().map(|name| json!({"name": name})).collect();
        entries.push(json!({"name": "regcred"}));
        let record = format!("{},regcred", long.join(","));
        let bloated: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": "builder", "resourceVersion": "9", "annotations": {ADDED_PULL_SECRETS_ANNOTATION: record}},
            "imagePullSecrets": entries,
        }))
        .unwrap();
        let cache = ObjectCache::default();
        cache.use_name("regcred");
        let kept = cache.keep(&bloated);
        assert!(!kept.whole, "a patch needs a fresh read");
        assert_eq!(kept.pull_secrets.iter().map(|n| &**n).collect::<Vec<_>>(), ["regcred"]);
        assert!(kept.has_pull_secret("regcred") && kept.added_pull_secrets().contains("regcred"));
        assert!(!kept.has_pull_secret("pull"), "not in use when kept: the writer reads it fresh");
        // A name that comes into use later: the partial list kept before cannot tell it.
        cache.apply("a", "builder", Some(kept.clone()));
        cache.use_name("pull");
        let stale = cache.account("a", "builder").unwrap();
        assert!(stale.stale && stale.may_record("pull"), "a removal reads it fresh");
        assert!(!kept.may_record("pull") && kept.may_record("regcred"));
        // The same ServiceAccount read for a patch keeps everything.
        let whole = Account::from_object(&bloated);
        assert!(whole.whole && whole.pull_secrets.len() == 5_001 && whole.added_pull_secrets().contains(&long[0]));
        // A short list is kept whole, names in use or not.
        let short: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "mine"}]}))
                .unwrap();
        let kept = cache.keep(&short);
        assert!(kept.whole && kept.has_pull_secret("mine"));
    }

    const DIGEST: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn secret(owners: serde_json::Value) -> PartialObjectMeta<Secret> {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "a", "resourceVersion": "7", "uid": "u",
                         "labels": {MANAGED_BY_LABEL: "regcred-operator", CREDENTIAL_LABEL: "rc", "tenant": "x"},
                         "annotations": {"big": "...", CONTENT_DIGEST_ANNOTATION: DIGEST},
                         "ownerReferences": owners},
        }))
        .unwrap()
    }

    fn ours() -> serde_json::Value {
        json!([{"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "name": "rc",
                "uid": "rc-uid", "controller": true},
               {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "cm"}])
    }

    #[test]
    fn a_copy_keeps_our_labels_owner_digest_and_version() {
        let copy = Copy::from_metadata(&secret(ours()).metadata).unwrap();
        assert_eq!(
            copy,
            Copy {
                name: intern("regcred"),
                uid: "u".into(),
                controller: Controller { uid: intern("rc-uid"), name: intern("rc") },
                credential_label: Some(intern("rc")),
                managed_by_label: true,
                digest: Some(DIGEST.into()),
                resource_version: "7".into(),
                written_here: false,
            }
        );
    }

    #[test]
    fn only_a_version_the_operator_wrote_counts_as_written_by_it() {
        let cache = ObjectCache::default();
        let at = |version: &str| {
            let mut secret = secret(ours());
            secret.metadata.resource_version = Some(version.into());
            secret.metadata
        };
        let written_here = |cache: &ObjectCache| {
            let copy = cache.namespace("a").copies[0].clone();
            (copy.resource_version.to_string(), copy.written_here)
        };
        cache.remember_write(&at("7"), None);
        assert_eq!(written_here(&cache), ("7".into(), true));
        assert!(!cache.apply("a", "regcred", Copy::from_metadata(&at("7"))), "the event of our write changes nothing");
        assert_eq!(written_here(&cache), ("7".into(), true));

        // Anyone's change, labels and digest annotation kept: a version the operator did not write.
        assert!(cache.apply("a", "regcred", Copy::from_metadata(&at("8"))));
        assert_eq!(written_here(&cache), ("8".into(), false));
        // A write based on an older version than the cache holds does not hide the newer one.
        cache.remember_write(&at("9"), Some("5"));
        assert_eq!(written_here(&cache), ("8".into(), false));
        cache.remember_write(&at("9"), Some("8"));
        assert_eq!(written_here(&cache), ("9".into(), true));
        // Deleted after a write based on a version the cache held: the deletion stands.
        assert!(cache.apply::<Copy>("a", "regcred", None));
        cache.remember_write(&at("11"), Some("9"));
        assert!(cache.namespace("a").copies.is_empty(), "deleted meanwhile: not believed back");
        cache.remember_write(&at("9"), None);
        // A relist keeps what the operator wrote only where the version is the same.
        cache.replace_all(HashMap::from([(intern("a"), vec![Copy::from_metadata(&at("9")).unwrap()])]));
        assert_eq!(written_here(&cache), ("9".into(), true));
        cache.replace_all(HashMap::from([(intern("a"), vec![Copy::from_metadata(&at("10")).unwrap()])]));
        assert_eq!(written_here(&cache), ("10".into(), false));
    }

    #[test]
    fn an_answer_older_than_what_the_watch_delivered_meanwhile_never_replaces_it() {
        let cache = ObjectCache::default();
        let at = |version: &str| {
            let mut account = account("a", "default");
            account.metadata.resource_version = Some(version.into());
            account
        };
        let version = |cache: &ObjectCache| cache.account("a", "default").map(|a| a.resource_version.to_string());
        cache.apply("a", "default", Some(cache.keep(&at("3"))));
        // A read sent while the cache held 3 answers 4, but the watch delivered 5 first.
        cache.apply("a", "default", Some(cache.keep(&at("5"))));
        cache.remember_account("a", &at("4"), Some("3"));
        assert_eq!(version(&cache).as_deref(), Some("5"));
        // A patch based on 5 answers 6: the cache moves on.
        cache.remember_account("a", &at("6"), Some("5"));
        assert_eq!(version(&cache).as_deref(), Some("6"));
        // Deleted while a read was in flight: the deletion stands.
        cache.apply::<Account>("a", "default", None);
        cache.remember_account("a", &at("7"), Some("6"));
        assert_eq!(version(&cache), None);
    }

    #[test]
    fn only_a_value_shaped_like_our_digests_is_kept_as_one() {
        let with_digest = |value: &str| {
            let mut secret = secret(ours());
            secret.metadata.annotations.get_or_insert_default().insert(CONTENT_DIGEST_ANNOTATION.into(), value.into());
            Copy::from_metadata(&secret.metadata).unwrap().digest
        };
        assert_eq!(with_digest(DIGEST).as_deref(), Some(DIGEST));
        // A tenant's value in a Secret it labelled and owned as ours: never kept, never shared.
        assert_eq!((with_digest(&"f".repeat(256 * 1024)), with_digest(&DIGEST.replace('2', "z"))), (None, None));
    }

    #[test]
    fn a_label_alone_does_not_make_a_secret_ours() {
        assert_eq!(Copy::from_metadata(&secret(json!([])).metadata), None);
        let not_a_credential =
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "c", "controller": true}]);
        assert_eq!(Copy::from_metadata(&secret(not_a_credential).metadata), None);
    }

    fn account(namespace: &str, name: &str) -> ServiceAccount {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}}))
            .unwrap()
    }

    #[tokio::test]
    async fn a_namespace_holds_no_spare_slots_until_its_lists_grow_long() {
        let cache = Arc::new(ObjectCache::default());
        let names: Vec<String> = (0..40).map(|i| format!("account-{i:02}")).collect();
        let listed: Vec<_> = names[..5].iter().map(|name| Ok(watcher::Event::InitApply(account("a", name)))).collect();
        let events = [Ok(watcher::Event::Init)].into_iter().chain(listed).chain([Ok(watcher::Event::InitDone)]);
        let fed = feed::<Account>(("ServiceAccounts".into(), Arc::default()), cache.clone(), stream::iter(events));
        fed.collect::<Vec<Name>>().await;
        let capacity = |cache: &ObjectCache| cache.read()["a"].accounts.capacity();
        assert_eq!(capacity(&cache), 5, "five listed, five slots");
        let add = |name: &String| cache.apply("a", name, Some(Account::from_object(&account("a", name))));
        add(&names[5]);
        assert_eq!(capacity(&cache), 6, "one more, one more slot");
        names[6..].iter().for_each(|name| _ = add(name));
        let sorted = cache.namespace("a").accounts.windows(2).all(|w| w[0].name < w[1].name);
        assert!(cache.namespace("a").accounts.len() == 40 && sorted);
        assert!(capacity(&cache) >= 40 && capacity(&cache) <= 64, "past 32, grown by doubling");
    }

    #[tokio::test]
    async fn a_relist_replaces_a_kind_and_names_the_namespaces_that_changed() {
        let cache = Arc::new(ObjectCache::default());
        let first = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(account("a", "default"))),
            Ok(watcher::Event::InitApply(account("b", "default"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(account("a", "builder"))),
            Ok(watcher::Event::Delete(account("b", "default"))),
        ];
        let errors = Arc::new(WatchErrors::default());
        let named = || ("ServiceAccounts".to_owned(), errors.clone());
        let touched: Vec<Name> = feed::<Account>(named(), cache.clone(), stream::iter(first)).collect().await;
        assert_eq!(touched.iter().map(|n| &**n).collect::<Vec<_>>().len(), 4);
        let a = cache.namespace("a");
        let names: Vec<&str> = a.accounts.iter().map(|a| &*a.name).collect();
        assert_eq!(names, vec!["builder", "default"], "sorted by name");
        assert!(cache.read().get("b").is_none(), "an empty namespace leaves the cache");
        assert!(cache.read().get("a").unwrap().account("builder").is_some());

        let relist = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(account("a", "builder"))),
            Ok(watcher::Event::InitApply(account("a", "default"))),
            Ok(watcher::Event::InitApply(account("c", "default"))),
            Ok(watcher::Event::InitDone),
        ];
        let touched: Vec<Name> = feed::<Account>(named(), cache.clone(), stream::iter(relist)).collect().await;
        assert_eq!(touched, vec![intern("c")], "a is unchanged");

        // A list the API server refuses is what keeps the cache from being ready, until a list.
        let refused = vec![Err(watcher::Error::NoResourceVersion)];
        let _: Vec<Name> = feed::<Account>(named(), cache.clone(), stream::iter(refused)).collect().await;
        let why = errors.describe().unwrap();
        assert!(why.starts_with("ServiceAccounts: no metadata.resourceVersion"), "{why}");
        let listed = vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)];
        let _: Vec<Name> = feed::<Account>(named(), cache.clone(), stream::iter(listed)).collect().await;
        assert_eq!(errors.describe(), None);

        // The operator's own write, already in the cache: its watch event wakes no one.
        let mut patched = account("a", "default");
        patched.metadata.resource_version = Some("2".into());
        assert!(cache.apply("a", "default", Some(Account::from_object(&patched))));
        let touched: Vec<Name> =
            feed::<Account>(named(), cache.clone(), stream::iter(vec![Ok(watcher::Event::Apply(patched))]))
                .collect()
                .await;
        assert!(touched.is_empty());
    }

    #[test]
    fn interned_names_share_one_allocation() {
        let (a, b) = (intern("default"), intern(&String::from("default")));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
