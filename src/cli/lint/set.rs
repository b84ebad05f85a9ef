//! The manifest documents as one set of Kubernetes objects: the Secrets, the users of pull
//! secrets, the pod specs and the RegistryCredentials, and how a pull secret's name resolves in
//! a namespace. The checks in [`super::check`] read it; nothing here reports.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_norway::Value;

use super::finding::{Code, Edit, Finding, Severity};
use super::manifest::{Document, FieldPath, lookup};
use crate::crd::RegistryCredentialSpec;
use crate::crd::selection::{selects_namespace_reserving, selects_service_account, source_namespaces};
use crate::credential::pull_secret::{PullSecretReading, read_pull_secret};
use crate::credential::{ImageReference, normalize_registry_key};

/// A Kubernetes object of the set: a document, or an item of a `List` document.
pub(super) struct Object<'d> {
    pub(super) document: usize,
    pub(super) source: &'d Document,
    /// Where the object is in its document: empty, or `items[3]`.
    pub(super) base: FieldPath,
    pub(super) value: &'d Value,
    pub(super) kind: &'d str,
    pub(super) name: &'d str,
    pub(super) namespace: Option<&'d str>,
}

impl<'d> Object<'d> {
    pub(super) fn path(&self, keys: &[&str]) -> FieldPath {
        self.base.keys(keys)
    }

    pub(super) fn get(&self, keys: &[&str]) -> Option<&'d Value> {
        lookup(self.value, &FieldPath::root().keys(keys))
    }

    pub(super) fn describe(&self) -> String {
        match self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    pub(super) fn finding(
        &self,
        code: Code,
        severity: Severity,
        path: &FieldPath,
        message: String,
        fix: String,
    ) -> Finding {
        Finding {
            code,
            severity,
            file: self.source.source.clone(),
            document: self.source.number,
            line: self.source.line_of(path),
            object: self.describe(),
            path: path.to_string(),
            message,
            fix,
        }
    }

    pub(super) fn edit(&self, path: FieldPath, value: &str) -> Edit {
        Edit { document: self.document, path, value: Value::String(value.to_owned()) }
    }
}

pub(super) struct SecretEntry<'d> {
    pub(super) object: Object<'d>,
    pub(super) reading: PullSecretReading,
    pub(super) config_field: Option<ConfigField>,
}

/// The field holding a Secret's docker config.
pub(super) struct ConfigField {
    pub(super) path: FieldPath,
    /// Under `stringData` (plain text) rather than `data` (base64).
    pub(super) plain: bool,
    /// Under `data`, and not base64.
    pub(super) undecodable: bool,
}

/// An `imagePullSecrets` entry of a Pod, a workload's pod template, or a ServiceAccount.
pub(super) struct PullSecretUse<'d> {
    pub(super) user: usize,
    pub(super) path: FieldPath,
    pub(super) name: &'d str,
    pub(super) namespace: Option<&'d str>,
}

pub(super) struct PodEntry {
    pub(super) object: usize,
    /// The pod spec, relative to the object.
    pub(super) spec: FieldPath,
}

pub(super) struct CredentialEntry<'d> {
    pub(super) object: Object<'d>,
    pub(super) spec: RegistryCredentialSpec,
}

/// Where the set finds a pull secret by name for a namespace.
pub(super) enum Resolution<'s, 'd> {
    Secrets(Vec<&'s SecretEntry<'d>>),
    Credential(&'s CredentialEntry<'d>),
    /// Secrets of that name exist only in other namespaces.
    Elsewhere(Vec<&'s SecretEntry<'d>>),
    Missing,
}

pub(super) struct ManifestSet<'d> {
    pub(super) objects: Vec<Object<'d>>,
    pub(super) secrets: Vec<SecretEntry<'d>>,
    pub(super) credentials: Vec<CredentialEntry<'d>>,
    /// Indexes into `objects`.
    pub(super) service_accounts: Vec<usize>,
    pub(super) pods: Vec<PodEntry>,
    pub(super) uses: Vec<PullSecretUse<'d>>,
    pub(super) namespace_labels: BTreeMap<&'d str, BTreeMap<String, String>>,
    /// The credentials' source namespaces, selected only by an exact include entry.
    pub(super) source_namespaces: Vec<String>,
}

/// Where each kind keeps its pod spec.
fn pod_spec_keys(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            Some(&["spec", "template", "spec"])
        }
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// An unset namespace is whatever the set is applied to: compatible with every namespace.
fn same_namespace(a: Option<&str>, b: Option<&str>) -> bool {
    a.is_none() || b.is_none() || a == b
}

fn objects_of(documents: &[Document]) -> Vec<Object<'_>> {
    let mut objects = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let is_list = document.value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"));
        let items = document.value.get("items").and_then(Value::as_sequence).filter(|_| is_list);
        let values: Vec<(FieldPath, &Value)> = match items {
            Some(items) => {
                items.iter().enumerate().map(|(i, item)| (FieldPath::root().keys(&["items"]).index(i), item)).collect()
            }
            None => vec![(FieldPath::root(), &document.value)],
        };
        for (base, value) in values {
            let text = |keys: &[&str]| lookup(value, &FieldPath::root().keys(keys)).and_then(Value::as_str);
            let (Some(kind), Some(name)) = (text(&["kind"]), text(&["metadata", "name"])) else { continue };
            let namespace = text(&["metadata", "namespace"]).filter(|ns| !ns.is_empty());
            objects.push(Object { document: index, source: document, base, value, kind, name, namespace });
        }
    }
    objects
}

impl<'d> ManifestSet<'d> {
    pub(super) fn new(documents: &'d [Document]) -> ManifestSet<'d> {
        let mut set = ManifestSet {
            objects: Vec::new(),
            secrets: Vec::new(),
            credentials: Vec::new(),
            service_accounts: Vec::new(),
            pods: Vec::new(),
            uses: Vec::new(),
            namespace_labels: BTreeMap::new(),
            source_namespaces: Vec::new(),
        };
        for object in objects_of(documents) {
            let index = set.objects.len();
            match object.kind {
                "Secret" => {
                    let (reading, config_field) = read_secret(&object);
                    set.secrets.push(SecretEntry { object, reading, config_field });
                    continue;
                }
                "RegistryCredential" => {
                    if let Some(spec) = object.get(&["spec"]).and_then(|s| serde_norway::from_value(s.clone()).ok()) {
                        set.credentials.push(CredentialEntry { object, spec });
                    }
                    continue;
                }
                "Namespace" => {
                    let labels = object
                        .get(&["metadata", "labels"])
                        .and_then(|l| serde_norway::from_value(l.clone()).ok())
                        .unwrap_or_default();
                    set.namespace_labels.insert(object.name, labels);
                }
                "ServiceAccount" => {
                    set.service_accounts.push(index);
                    set.uses.extend(pull_secret_uses(index, &object, FieldPath::root()));
                }
                kind => {
                    if let Some(keys) = pod_spec_keys(kind) {
                        let spec = FieldPath::root().keys(keys);
                        set.uses.extend(pull_secret_uses(index, &object, spec.clone()));
                        set.pods.push(PodEntry { object: index, spec });
                    }
                }
            }
            set.objects.push(object);
        }
        set.source_namespaces = source_namespaces(set.credentials.iter().map(|c| &c.spec));
        set
    }

    pub(super) fn resolve(&self, name: &str, namespace: Option<&str>) -> Resolution<'_, 'd> {
        let named: Vec<&SecretEntry<'d>> = self.secrets.iter().filter(|s| s.object.name == name).collect();
        let (here, elsewhere): (Vec<_>, Vec<_>) =
            named.into_iter().partition(|s| same_namespace(s.object.namespace, namespace));
        if !here.is_empty() {
            return Resolution::Secrets(here);
        }
        if let Some(credential) =
            self.credentials.iter().find(|c| c.spec.secret_name == name && self.selects(c, namespace))
        {
            return Resolution::Credential(credential);
        }
        if elsewhere.is_empty() { Resolution::Missing } else { Resolution::Elsewhere(elsewhere) }
    }

    /// Whether the credential selects the namespace, as far as the set tells: an unset namespace,
    /// or a label selector without the Namespace object in the set, is given the benefit of the doubt.
    pub(super) fn selects(&self, credential: &CredentialEntry, namespace: Option<&str>) -> bool {
        let Some(namespace) = namespace else { return true };
        match self.namespace_labels.get(namespace) {
            Some(labels) => selects_namespace_reserving(&credential.spec, namespace, labels, &self.source_namespaces),
            None => {
                let by_name = RegistryCredentialSpec { namespace_selector: None, ..credential.spec.clone() };
                selects_namespace_reserving(&by_name, namespace, &BTreeMap::new(), &self.source_namespaces)
            }
        }
    }

    /// The one namespace where users lack the Secret named `name`, if there is exactly one.
    pub(super) fn single_user_namespace(&self, name: &str) -> Option<&'d str> {
        let namespaces: BTreeSet<Option<&str>> = self
            .uses
            .iter()
            .filter(|u| u.name == name && matches!(self.resolve(name, u.namespace), Resolution::Elsewhere(_)))
            .map(|u| u.namespace)
            .collect();
        match namespaces.into_iter().collect::<Vec<_>>()[..] {
            [Some(namespace)] => Some(namespace),
            _ => None,
        }
    }

    /// Whether anything in `namespace` (exactly) references `name`.
    pub(super) fn is_used_in(&self, name: &str, namespace: Option<&str>) -> bool {
        self.uses.iter().any(|u| u.name == name && u.namespace == namespace)
    }

    pub(super) fn is_referenced(&self, name: &str) -> bool {
        self.uses.iter().any(|u| u.name == name)
    }

    /// The canonical keys of the copies a RegistryCredential makes, when the set tells.
    pub(super) fn credential_keys(&self, credential: &CredentialEntry) -> Option<Vec<String>> {
        let allowed: Vec<String> = credential
            .spec
            .registries
            .iter()
            .filter_map(|r| normalize_registry_key(r).ok())
            .map(|k| k.canonical)
            .collect();
        let source = credential.spec.source.secret_ref.as_ref().and_then(|source| {
            self.secrets
                .iter()
                .find(|s| s.object.name == source.name && s.object.namespace == Some(source.namespace.as_str()))
        });
        match source.map(|s| &s.reading) {
            Some(PullSecretReading::Config { normalized: Ok(normalized), .. }) => Some(
                normalized
                    .config
                    .registries()
                    .filter(|k| allowed.is_empty() || allowed.iter().any(|a| a == k))
                    .map(str::to_owned)
                    .collect(),
            ),
            _ if !allowed.is_empty() => Some(allowed),
            _ => None,
        }
    }

    /// The fix for a private image without pull secrets: the Secret of the set that covers it, if any.
    pub(super) fn no_pull_secret_fix(&self, image: &ImageReference, namespace: Option<&str>, account: &str) -> String {
        let covering: Vec<String> = self
            .secrets
            .iter()
            .filter(|s| same_namespace(s.object.namespace, namespace) && s.reading.covering_key(image).is_some())
            .map(|s| s.object.name.to_owned())
            .collect();
        match covering.first() {
            Some(name) => {
                format!("add `imagePullSecrets: [{{name: {name}}}]` to the pod spec or to ServiceAccount {account}")
            }
            None => format!(
                "if {} is private, create a pull secret for it and list it in `imagePullSecrets` of the pod spec or of ServiceAccount {account}, or let a RegistryCredential do both",
                image.registry
            ),
        }
    }

    /// Each pod spec with the pull secrets it gets from itself, its ServiceAccount and the
    /// RegistryCredentials of the set, and its container images.
    pub(super) fn pods(&self) -> Vec<PodView<'_, 'd>> {
        self.pods.iter().filter_map(|pod| self.pod_view(pod)).collect()
    }

    fn pod_view(&self, pod: &PodEntry) -> Option<PodView<'_, 'd>> {
        let object = &self.objects[pod.object];
        let spec = lookup(object.value, &pod.spec)?;
        let namespace = object.namespace;
        let account = ["serviceAccountName", "serviceAccount"]
            .iter()
            .find_map(|k| spec.get(*k).and_then(Value::as_str))
            .unwrap_or("default");

        let mut names: BTreeSet<&str> = names_in(spec.get("imagePullSecrets")).collect();
        for &index in &self.service_accounts {
            let sa = &self.objects[index];
            if sa.name == account && same_namespace(sa.namespace, namespace) {
                names.extend(names_in(sa.get(&["imagePullSecrets"])));
            }
        }
        for credential in &self.credentials {
            if self.selects(credential, namespace) && selects_service_account(&credential.spec, account) {
                names.insert(&credential.spec.secret_name);
            }
        }
        // Keys as the kubelet files them; `None` once any pull secret's keys are unknown.
        let mut keys: Option<Vec<String>> = Some(Vec::new());
        for name in &names {
            let found = match self.resolve(name, namespace) {
                Resolution::Secrets(secrets) => {
                    secrets.iter().map(|s| s.reading.kubelet_keys()).collect::<Option<Vec<_>>>().map(|all| all.concat())
                }
                Resolution::Credential(credential) => self.credential_keys(credential),
                Resolution::Elsewhere(_) | Resolution::Missing => None,
            };
            keys = keys.zip(found).map(|(mut keys, found)| {
                keys.extend(found);
                keys
            });
        }

        let mut images = Vec::new();
        for field in ["initContainers", "containers", "ephemeralContainers"] {
            let Some(containers) = spec.get(field).and_then(Value::as_sequence) else { continue };
            for (i, container) in containers.iter().enumerate() {
                let Some(image) = container.get("image").and_then(Value::as_str) else { continue };
                let path = object.base.join(&pod.spec).keys(&[field]).index(i).keys(&["image"]);
                images.push(ContainerImage { path, image });
            }
        }
        Some(PodView { object, account, names, keys, images })
    }
}

fn names_in(list: Option<&Value>) -> impl Iterator<Item = &str> {
    list.and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("name").and_then(Value::as_str))
}

fn pull_secret_uses<'d>(user: usize, object: &Object<'d>, spec: FieldPath) -> Vec<PullSecretUse<'d>> {
    let list = spec.keys(&["imagePullSecrets"]);
    let Some(entries) = lookup(object.value, &list).and_then(Value::as_sequence) else { return Vec::new() };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let name = entry.get("name").and_then(Value::as_str)?;
            Some(PullSecretUse {
                user,
                path: object.base.join(&list).index(i).keys(&["name"]),
                name,
                namespace: object.namespace,
            })
        })
        .collect()
}

/// Decodes the Secret's data (`stringData` wins, as the API server merges it) and reads it as a
/// pull secret; also says which field holds the docker config.
fn read_secret(object: &Object) -> (PullSecretReading, Option<ConfigField>) {
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut fields: BTreeMap<String, ConfigField> = BTreeMap::new();
    for (section, plain) in [("data", false), ("stringData", true)] {
        let Some(entries) = object.get(&[section]).and_then(Value::as_mapping) else { continue };
        for (key, value) in entries {
            let (Some(key), Some(text)) = (key.as_str(), value.as_str()) else { continue };
            let bytes = if plain { Some(text.as_bytes().to_vec()) } else { STANDARD.decode(text.trim()).ok() };
            let undecodable = bytes.is_none();
            data.insert(key.to_owned(), bytes.unwrap_or_default());
            fields.insert(key.to_owned(), ConfigField { path: object.path(&[section, key]), plain, undecodable });
        }
    }
    let secret_type = object.get(&["type"]).and_then(Value::as_str);
    let reading = read_pull_secret(secret_type, &data);
    let config_key = match &reading {
        PullSecretReading::Config { data_key, .. } | PullSecretReading::WrongType { data_key, .. } => Some(*data_key),
        _ => None,
    };
    (reading, config_key.and_then(|key| fields.remove(key)))
}

/// A pod spec as the image checks read it.
pub(super) struct PodView<'s, 'd> {
    pub(super) object: &'s Object<'d>,
    /// Its ServiceAccount (`default` when unset).
    pub(super) account: &'d str,
    /// The pull secrets it gets, from any of the three places.
    pub(super) names: BTreeSet<&'s str>,
    /// The keys of those pull secrets as the kubelet files them; `None` when some are unknown.
    pub(super) keys: Option<Vec<String>>,
    pub(super) images: Vec<ContainerImage<'d>>,
}

/// A container's `image` field.
pub(super) struct ContainerImage<'d> {
    pub(super) path: FieldPath,
    pub(super) image: &'d str,
}
