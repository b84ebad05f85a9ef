//! The checks behind `lint`: a pure function from manifest documents to findings, and to the
//! edits that fix what can be fixed without guessing.
//!
//! The documents are read as one set, the way `kubectl apply -f` would create them: a Pod's pull
//! secret is looked up among the Secrets of the set (and the copies a RegistryCredential of the set
//! makes), and its images are matched against their keys as the kubelet would match them. A
//! namespace left unset is taken to be the one the set is applied to, so it never conflicts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Serialize, Serializer};
use serde_norway::Value;

use super::manifest::{Document, FieldPath, lookup};
use crate::cli::near_miss::near_misses;
use crate::crd::RegistryCredentialSpec;
use crate::crd::selection::{selects_namespace, selects_service_account};
use crate::credential::pull_secret::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, PullSecretReading, read_pull_secret,
};
use crate::credential::{
    ConfigProblem, ConfigWarning, ImageReference, InvalidDockerConfig, KeyWarning, Normalized, covering_key,
    kubelet_key, normalize_registry_key,
};

/// A stable finding code. Scripts match on these, so a code never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    MalformedConfig,
    EmptyCredentials,
    NonCanonicalKey,
    WrongSecretType,
    RiskyConfig,
    PullSecretNotFound,
    PullSecretInOtherNamespace,
    RegistryNotCovered,
    NoPullSecrets,
    InvalidImage,
    InvalidRegistryCredential,
}

impl Code {
    pub const ALL: [Code; 11] = [
        Code::MalformedConfig,
        Code::EmptyCredentials,
        Code::NonCanonicalKey,
        Code::WrongSecretType,
        Code::RiskyConfig,
        Code::PullSecretNotFound,
        Code::PullSecretInOtherNamespace,
        Code::RegistryNotCovered,
        Code::NoPullSecrets,
        Code::InvalidImage,
        Code::InvalidRegistryCredential,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Code::MalformedConfig => "RC001",
            Code::EmptyCredentials => "RC002",
            Code::NonCanonicalKey => "RC003",
            Code::WrongSecretType => "RC004",
            Code::RiskyConfig => "RC005",
            Code::PullSecretNotFound => "RC010",
            Code::PullSecretInOtherNamespace => "RC011",
            Code::RegistryNotCovered => "RC012",
            Code::NoPullSecrets => "RC013",
            Code::InvalidImage => "RC014",
            Code::InvalidRegistryCredential => "RC020",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The pull fails, or pulls anonymously.
    Error,
    /// Works, but is fragile, risky, or cannot be verified from the set.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, where it is, and what to do. Never holds a credential value.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub file: String,
    /// The document's position in its file, from 1.
    pub document: usize,
    pub line: usize,
    /// `Kind namespace/name`.
    pub object: String,
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// A change `--fix` makes: the value at `path` of document `document` (an index into the slice
/// given to [`check`]) becomes `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub document: usize,
    pub path: FieldPath,
    pub value: Value,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Edits that do not contradict each other.
    pub edits: Vec<Edit>,
}

/// Checks the documents as one set.
pub fn check(documents: &[Document]) -> Report {
    let set = ManifestSet::new(documents);
    let mut report = Report::default();
    for secret in &set.secrets {
        set.check_secret(secret, &mut report);
    }
    for credential in &set.credentials {
        set.check_credential(credential, &mut report);
    }
    for pull_secret_use in &set.uses {
        set.check_use(pull_secret_use, &mut report);
    }
    for pod in &set.pods {
        set.check_images(pod, &mut report);
    }
    report.findings.sort_by(|a, b| (&a.file, a.document, a.line, a.code).cmp(&(&b.file, b.document, b.line, b.code)));
    report.edits = consistent(report.edits);
    report
}

/// Drops every edit that another edit of the same field contradicts: neither is unambiguous.
fn consistent(edits: Vec<Edit>) -> Vec<Edit> {
    let mut by_field: BTreeMap<(usize, String), Vec<Edit>> = BTreeMap::new();
    for edit in edits {
        let field = by_field.entry((edit.document, edit.path.to_string())).or_default();
        if !field.contains(&edit) {
            field.push(edit);
        }
    }
    by_field.into_values().filter(|edits| edits.len() == 1).flatten().collect()
}

/// A Kubernetes object of the set: a document, or an item of a `List` document.
struct Object<'d> {
    document: usize,
    source: &'d Document,
    /// Where the object is in its document: empty, or `items[3]`.
    base: FieldPath,
    value: &'d Value,
    kind: &'d str,
    name: &'d str,
    namespace: Option<&'d str>,
}

impl<'d> Object<'d> {
    fn path(&self, keys: &[&str]) -> FieldPath {
        self.base.keys(keys)
    }

    fn get(&self, keys: &[&str]) -> Option<&'d Value> {
        lookup(self.value, &FieldPath::root().keys(keys))
    }

    fn describe(&self) -> String {
        match self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    fn finding(&self, code: Code, severity: Severity, path: &FieldPath, message: String, fix: String) -> Finding {
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

    fn edit(&self, path: FieldPath, value: &str) -> Edit {
        Edit { document: self.document, path, value: Value::String(value.to_owned()) }
    }
}

struct SecretEntry<'d> {
    object: Object<'d>,
    reading: PullSecretReading,
    config_field: Option<ConfigField>,
}

/// The field holding a Secret's docker config.
struct ConfigField {
    path: FieldPath,
    /// Under `stringData` (plain text) rather than `data` (base64).
    plain: bool,
    /// Under `data`, and not base64.
    undecodable: bool,
}

/// An `imagePullSecrets` entry of a Pod, a workload's pod template, or a ServiceAccount.
struct PullSecretUse<'d> {
    user: usize,
    path: FieldPath,
    name: &'d str,
    namespace: Option<&'d str>,
}

struct PodEntry {
    object: usize,
    /// The pod spec, relative to the object.
    spec: FieldPath,
}

struct CredentialEntry<'d> {
    object: Object<'d>,
    spec: RegistryCredentialSpec,
}

/// Where the set finds a pull secret by name for a namespace.
enum Resolution<'s, 'd> {
    Secrets(Vec<&'s SecretEntry<'d>>),
    Credential(&'s CredentialEntry<'d>),
    /// Secrets of that name exist only in other namespaces.
    Elsewhere(Vec<&'s SecretEntry<'d>>),
    Missing,
}

struct ManifestSet<'d> {
    objects: Vec<Object<'d>>,
    secrets: Vec<SecretEntry<'d>>,
    credentials: Vec<CredentialEntry<'d>>,
    /// Indexes into `objects`.
    service_accounts: Vec<usize>,
    pods: Vec<PodEntry>,
    uses: Vec<PullSecretUse<'d>>,
    namespace_labels: BTreeMap<&'d str, BTreeMap<String, String>>,
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
    fn new(documents: &'d [Document]) -> ManifestSet<'d> {
        let mut set = ManifestSet {
            objects: Vec::new(),
            secrets: Vec::new(),
            credentials: Vec::new(),
            service_accounts: Vec::new(),
            pods: Vec::new(),
            uses: Vec::new(),
            namespace_labels: BTreeMap::new(),
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
        set
    }

    fn resolve(&self, name: &str, namespace: Option<&str>) -> Resolution<'_, 'd> {
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
    fn selects(&self, credential: &CredentialEntry, namespace: Option<&str>) -> bool {
        let Some(namespace) = namespace else { return true };
        match self.namespace_labels.get(namespace) {
            Some(labels) => selects_namespace(&credential.spec, namespace, labels),
            None => {
                let by_name = RegistryCredentialSpec { namespace_selector: None, ..credential.spec.clone() };
                selects_namespace(&by_name, namespace, &BTreeMap::new())
            }
        }
    }

    fn check_secret(&self, secret: &SecretEntry, report: &mut Report) {
        let object = &secret.object;
        match &secret.reading {
            PullSecretReading::NoConfig { .. } => {}
            PullSecretReading::MissingKey { secret_type, data_key } => report.findings.push(object.finding(
                Code::WrongSecretType,
                Severity::Error,
                &object.path(&["type"]),
                format!("type {secret_type} requires data key {data_key:?}, which is missing"),
                format!("put the docker config under data[{data_key:?}]"),
            )),
            PullSecretReading::WrongType { secret_type, data_key, expected_type } => {
                report.findings.push(object.finding(
                    Code::WrongSecretType,
                    Severity::Error,
                    &object.path(&["type"]),
                    format!(
                        "holds {data_key:?} but has type {secret_type}: the kubelet only reads pull secrets of type {expected_type}"
                    ),
                    format!("set `type: {expected_type}`"),
                ));
                report.edits.push(object.edit(object.path(&["type"]), expected_type));
            }
            PullSecretReading::Config { data_key, registry_keys, normalized } => {
                let Some(field) = &secret.config_field else { return };
                if field.undecodable {
                    report.findings.push(object.finding(
                        Code::MalformedConfig,
                        Severity::Error,
                        &field.path,
                        format!("{data_key}: the value is not valid base64"),
                        "put base64 of the docker config under `data`, or the plain JSON under `stringData`".to_owned(),
                    ));
                    return;
                }
                self.check_config(object, field, data_key, registry_keys.as_deref(), normalized, report);
            }
        }
    }

    fn check_config(
        &self,
        object: &Object,
        config_field: &ConfigField,
        data_key: &str,
        registry_keys: Option<&[String]>,
        normalized: &Result<Normalized, InvalidDockerConfig>,
        report: &mut Report,
    ) {
        let field = &config_field.path;
        let server = registry_keys
            .and_then(|keys| keys.iter().find_map(|key| normalize_registry_key(key).ok()))
            .map_or_else(|| "<registry>".to_owned(), |key| key.canonical);
        let recreate = format!(
            "recreate it: `kubectl create secret docker-registry {} --docker-server={server} --docker-username=<user> --docker-password=<password>{}`",
            object.name,
            object.namespace.map(|ns| format!(" -n {ns}")).unwrap_or_default()
        );
        let keys = registry_keys.unwrap_or_default();
        for key in keys {
            let Ok(canonical) = normalize_registry_key(key) else { continue };
            if canonical.canonical == key.as_str() {
                continue;
            }
            // A spelling the kubelet matches differently (host case, a Docker Hub alias), kept
            // beside its canonical key, is what normalization writes.
            if canonical.kept.as_deref() == Some(key.as_str()) && keys.contains(&canonical.canonical) {
                continue;
            }
            let filed = kubelet_key(key);
            let same_for_kubelet =
                filed == canonical.canonical || (filed == "index.docker.io" && canonical.canonical == "docker.io");
            let (severity, effect) = if same_for_kubelet {
                (Severity::Warning, "the kubelet reads it the same way, but other tools may not".to_owned())
            } else if canonical.kept.is_some() {
                (
                    Severity::Error,
                    format!(
                        "the kubelet files it as {filed:?}, which matches only images that name the registry exactly so"
                    ),
                )
            } else {
                (
                    Severity::Error,
                    format!("the kubelet files it as {filed:?} and will not match the images it is meant for"),
                )
            };
            let fix = match &canonical.kept {
                Some(kept) => format!("use the key {:?}, and keep {kept:?} beside it", canonical.canonical),
                None => format!("use the key {:?}", canonical.canonical),
            };
            report.findings.push(object.finding(
                Code::NonCanonicalKey,
                severity,
                field,
                format!("registry key {key:?} is not canonical ({:?}): {effect}", canonical.canonical),
                fix,
            ));
        }
        match normalized {
            Err(invalid) => {
                for problem in &invalid.problems {
                    let code = match problem {
                        ConfigProblem::NoEntries
                        | ConfigProblem::NoCredentials { .. }
                        | ConfigProblem::EmptyField { .. } => Code::EmptyCredentials,
                        _ => Code::MalformedConfig,
                    };
                    report.findings.push(object.finding(
                        code,
                        Severity::Error,
                        field,
                        format!("{data_key}: {problem}"),
                        recreate.clone(),
                    ));
                }
            }
            Ok(normalized) => {
                for warning in &normalized.warnings {
                    report.findings.push(object.finding(
                        Code::RiskyConfig,
                        Severity::Warning,
                        field,
                        format!("{data_key}: {warning}"),
                        match warning {
                            ConfigWarning::Key { warning: KeyWarning::PathPrefix, .. } => {
                                "end the key with `/` if only repositories below the path are meant".to_owned()
                            }
                            ConfigWarning::Key { .. } => "list each registry explicitly, over https".to_owned(),
                            _ => "keep only `auths` entries with `username`, `password`, `auth`".to_owned(),
                        },
                    ));
                }
                let rewritten = !normalized.rewrites.is_empty()
                    || normalized.warnings.iter().any(|w| !matches!(w, ConfigWarning::Key { .. }));
                // The canonical form is `.dockerconfigjson`'s; a legacy `.dockercfg` is not rewritten.
                if rewritten && data_key == DOCKER_CONFIG_JSON_KEY {
                    let canonical = normalized.config.to_canonical_json();
                    let value = if config_field.plain { canonical } else { STANDARD.encode(canonical) };
                    report.edits.push(object.edit(field.clone(), &value));
                }
            }
        }
    }

    fn check_credential(&self, credential: &CredentialEntry, report: &mut Report) {
        let object = &credential.object;
        for (i, registry) in credential.spec.registries.iter().enumerate() {
            if let Err(problem) = normalize_registry_key(registry) {
                report.findings.push(object.finding(
                    Code::InvalidRegistryCredential,
                    Severity::Error,
                    &object.path(&["spec", "registries"]).index(i),
                    format!("registry {registry:?}: {problem}"),
                    "write the registry as `host[:port][/path]`".to_owned(),
                ));
            }
        }
    }

    fn check_use(&self, pull_secret_use: &PullSecretUse, report: &mut Report) {
        let user = &self.objects[pull_secret_use.user];
        let (name, namespace) = (pull_secret_use.name, pull_secret_use.namespace);
        let in_namespace = namespace.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        match self.resolve(name, namespace) {
            Resolution::Secrets(_) | Resolution::Credential(_) => {}
            Resolution::Elsewhere(secrets) => {
                let places: Vec<String> = secrets.iter().map(|s| s.object.describe()).collect();
                let target = self.single_user_namespace(name);
                let movable = match (&secrets[..], target) {
                    ([secret], Some(target)) if !self.is_used_in(name, secret.object.namespace) => {
                        Some((secret, target))
                    }
                    _ => None,
                };
                let fix = match movable {
                    Some((secret, target)) => {
                        report.edits.push(secret.object.edit(secret.object.path(&["metadata", "namespace"]), target));
                        format!("move {} to namespace {target}", secret.object.describe())
                    }
                    None => format!(
                        "create Secret {name}{in_namespace} (a Secret is only visible in its own namespace), or declare a RegistryCredential with secretName {name} that selects the namespace"
                    ),
                };
                report.findings.push(user.finding(
                    Code::PullSecretInOtherNamespace,
                    Severity::Error,
                    &pull_secret_use.path,
                    format!(
                        "pull secret {name:?} is not in the set{in_namespace}; only {} has that name, and the kubelet never looks outside the Pod's namespace",
                        places.join(", ")
                    ),
                    fix,
                ));
            }
            Resolution::Missing => {
                let (message, fix) = self.missing(pull_secret_use, user, report);
                report.findings.push(user.finding(
                    Code::PullSecretNotFound,
                    Severity::Error,
                    &pull_secret_use.path,
                    message,
                    fix,
                ));
            }
        }
    }

    /// The message and fix for a name that nothing in the set provides, with the near miss.
    fn missing(&self, pull_secret_use: &PullSecretUse, user: &Object, report: &mut Report) -> (String, String) {
        let name = pull_secret_use.name;
        let in_namespace = pull_secret_use.namespace.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        let names: BTreeSet<&str> = self
            .secrets
            .iter()
            .map(|s| s.object.name)
            .chain(self.credentials.iter().map(|c| c.spec.secret_name.as_str()))
            .collect();
        let close = near_misses(name, names);
        let not_found = format!("no Secret named {name:?}{in_namespace} in the set");
        let [candidate] = close[..] else {
            let fix = if close.is_empty() {
                format!("create Secret {name}{in_namespace} of type {DOCKER_CONFIG_JSON_TYPE}, or fix the name")
            } else {
                format!("use one of {close:?}, or create Secret {name}{in_namespace}")
            };
            return (format!("{not_found}; the kubelet pulls without credentials"), fix);
        };
        let secrets: Vec<&SecretEntry> = self.secrets.iter().filter(|s| s.object.name == candidate).collect();
        let made_by = self.credentials.iter().find(|c| c.spec.secret_name == candidate);
        let described = match (&secrets[..], made_by) {
            ([secret], _) => secret.object.describe(),
            ([], Some(credential)) => format!("{candidate:?}, the copy {} makes", credential.object.describe()),
            _ => format!("{candidate:?}"),
        };
        let message = format!("{not_found}; did you mean {described}?");
        let rename_secret = matches!(&secrets[..], [_]) && !self.is_referenced(candidate);
        if rename_secret {
            let secret = &secrets[0].object;
            report.edits.push(secret.edit(secret.path(&["metadata", "name"]), name));
            let also_move = match (secret.namespace, pull_secret_use.namespace) {
                (Some(from), Some(to)) if from != to => format!(", and move it to namespace {to}"),
                _ => String::new(),
            };
            return (message, format!("rename {} to {name}{also_move}", secret.describe()));
        }
        // Something else uses the candidate by its name: point this reference at it instead.
        if !matches!(self.resolve(candidate, pull_secret_use.namespace), Resolution::Missing) {
            report.edits.push(user.edit(pull_secret_use.path.clone(), candidate));
            return (message, format!("reference {candidate:?} instead"));
        }
        (message, format!("rename the reference or the Secret so they agree ({name:?} or {candidate:?})"))
    }

    /// The one namespace where users lack the Secret named `name`, if there is exactly one.
    fn single_user_namespace(&self, name: &str) -> Option<&'d str> {
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
    fn is_used_in(&self, name: &str, namespace: Option<&str>) -> bool {
        self.uses.iter().any(|u| u.name == name && u.namespace == namespace)
    }

    fn is_referenced(&self, name: &str) -> bool {
        self.uses.iter().any(|u| u.name == name)
    }

    /// The images of a pod spec against the pull secrets it gets from itself, its ServiceAccount
    /// and the RegistryCredentials of the set.
    fn check_images(&self, pod: &PodEntry, report: &mut Report) {
        let object = &self.objects[pod.object];
        let Some(spec) = lookup(object.value, &pod.spec) else { return };
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

        for field in ["initContainers", "containers", "ephemeralContainers"] {
            let Some(containers) = spec.get(field).and_then(Value::as_sequence) else { continue };
            for (i, container) in containers.iter().enumerate() {
                let Some(image) = container.get("image").and_then(Value::as_str) else { continue };
                let path = object.base.join(&pod.spec).keys(&[field]).index(i).keys(&["image"]);
                let reference = match ImageReference::parse(image) {
                    Ok(reference) => reference,
                    Err(error) => {
                        report.findings.push(
                            object.finding(
                                Code::InvalidImage,
                                Severity::Error,
                                &path,
                                error.to_string(),
                                "write the image as `[registry/]repository[:tag][@digest]`, repository in lowercase"
                                    .to_owned(),
                            ),
                        );
                        continue;
                    }
                };
                // Docker Hub images are mostly public: a missing credential is not a finding there.
                if reference.is_docker_hub() {
                    continue;
                }
                if names.is_empty() {
                    report.findings.push(object.finding(
                        Code::NoPullSecrets,
                        Severity::Warning,
                        &path,
                        format!(
                            "image {image:?} is from registry {}, and neither the pod spec nor ServiceAccount {account} lists a pull secret; a private registry refuses the anonymous pull",
                            reference.registry
                        ),
                        self.no_pull_secret_fix(&reference, namespace, account),
                    ));
                    continue;
                }
                let Some(keys) = &keys else { continue };
                if covering_key(keys.iter().map(String::as_str), &reference).is_none() {
                    let names: Vec<&str> = names.iter().copied().collect();
                    report.findings.push(object.finding(
                        Code::RegistryNotCovered,
                        Severity::Warning,
                        &path,
                        format!(
                            "no key of its pull secrets {names:?} matches image {image:?} (keys: {keys:?}); the kubelet pulls it anonymously"
                        ),
                        format!(
                            "add an entry for {:?} to one of {names:?}, or a pull secret that has one",
                            reference.registry
                        ),
                    ));
                }
            }
        }
    }

    /// The canonical keys of the copies a RegistryCredential makes, when the set tells.
    fn credential_keys(&self, credential: &CredentialEntry) -> Option<Vec<String>> {
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

    fn no_pull_secret_fix(&self, image: &ImageReference, namespace: Option<&str>, account: &str) -> String {
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
