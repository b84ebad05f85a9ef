//! The diagnosis of a Pod that cannot pull: a pure function of what `doctor` read from the cluster.
//!
//! The kubelet pulls an image with the Secrets in the Pod's own `spec.imagePullSecrets`, read at
//! each attempt. A ServiceAccount's `imagePullSecrets` reach a Pod only once, when the Pod is
//! created: the ServiceAccount admission plugin copies them into a spec that has none. So a Secret
//! created later repairs a running Pod, but a ServiceAccount patched later does not.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::cli::near_miss::near_misses;
use crate::crd::RegistryCredential;
use crate::crd::selection::{SYSTEM_NAMESPACES, glob_matches, label_selector_matches, selects_service_account};
use crate::credential::pull_secret::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, PullSecretReading, read_pull_secret,
};
use crate::credential::{ImageReference, key_matches_image, normalize_registry_key};

/// What `doctor` read about one Pod. Secret data is held only to be parsed, never shown.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    pub(crate) pod: Pod,
    /// The labels of the Pod's namespace, if it could be read.
    pub(crate) namespace_labels: Option<BTreeMap<String, String>>,
    pub(crate) service_account: Option<ServiceAccount>,
    /// Every Secret the Pod spec or its ServiceAccount names.
    pub(crate) secrets: BTreeMap<String, SecretLookup>,
    /// `(namespace, name)` of the Secrets in the cluster (metadata only, every namespace when
    /// allowed), for near misses and same-named Secrets elsewhere.
    pub(crate) secret_names: Vec<(String, String)>,
    pub(crate) credentials: Vec<RegistryCredential>,
    pub(crate) events: Vec<PodEvent>,
}

impl Evidence {
    /// The `imagePullSecrets` entries of the Pod's ServiceAccount as it is now.
    pub(crate) fn service_account_pull_secrets(&self) -> Vec<String> {
        self.service_account
            .iter()
            .flat_map(|sa| sa.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect()
    }
}

#[derive(Debug)]
pub(crate) enum SecretLookup {
    Found {
        secret_type: Option<String>,
        data: BTreeMap<String, Vec<u8>>,
    },
    Missing,
    /// It could not be read (e.g. forbidden): the reason.
    Unreadable(String),
}

/// An Event about the Pod, from core/v1 or events.k8s.io/v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodEvent {
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) warning: bool,
    pub(crate) count: i32,
}

/// One likely cause, with the commands that remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    /// Lower is more likely to be what blocks the Pod.
    pub(crate) rank: u8,
    pub(crate) summary: String,
    pub(crate) details: Vec<String>,
    pub(crate) commands: Vec<String>,
}

/// How one container image fares with the Pod's pull secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageCheck {
    pub(crate) container: String,
    pub(crate) image: String,
    /// The registry, or why the reference does not parse.
    pub(crate) registry: Result<String, String>,
    /// `(secret, key)` the kubelet would use.
    pub(crate) covered_by: Option<(String, String)>,
}

#[derive(Debug, Default)]
pub(crate) struct Diagnosis {
    pub(crate) images: Vec<ImageCheck>,
    /// Most likely first.
    pub(crate) causes: Vec<Cause>,
}

const RANK_SANDBOX: u8 = 0;
const RANK_SECRET_MISSING: u8 = 1;
const RANK_SECRET_UNUSABLE: u8 = 2;
const RANK_NOT_COVERED: u8 = 3;
const RANK_RACE: u8 = 4;
const RANK_NOT_PROVIDED: u8 = 5;
const RANK_REFUSED: u8 = 6;

pub(crate) fn diagnose(evidence: &Evidence) -> Diagnosis {
    let pod = &evidence.pod;
    let namespace = pod.namespace().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_secrets: Vec<String> = spec.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
    let account = spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned());
    let mut causes = Vec::new();

    if let Some(cause) = sandbox_cause(&evidence.events) {
        causes.push(cause);
    }

    let readings: BTreeMap<&str, PullSecretReading> = evidence
        .secrets
        .iter()
        .filter_map(|(name, lookup)| match lookup {
            SecretLookup::Found { secret_type, data } => {
                Some((name.as_str(), read_pull_secret(secret_type.as_deref(), data)))
            }
            _ => None,
        })
        .collect();

    for name in &pod_secrets {
        match evidence.secrets.get(name) {
            Some(SecretLookup::Found { .. }) => {
                if let Some(cause) = unusable_cause(name, &namespace, &readings[name.as_str()]) {
                    causes.push(cause);
                }
            }
            Some(SecretLookup::Unreadable(reason)) => causes.push(Cause {
                rank: RANK_SECRET_UNUSABLE,
                summary: format!("pull secret {name:?} could not be read: {reason}"),
                details: vec!["doctor needs `get` on Secrets in this namespace to check it".to_owned()],
                commands: Vec::new(),
            }),
            Some(SecretLookup::Missing) | None => causes.push(missing_cause(name, &namespace, evidence)),
        }
    }

    let images = image_checks(&spec, &pod_secrets, &readings);
    for check in &images {
        let Ok(registry) = &check.registry else { continue };
        let Ok(reference) = ImageReference::parse(&check.image) else { continue };
        let failing = evidence.events.iter().any(|e| e.message.contains(&check.image));
        // Docker Hub images are mostly public: without a failed pull there is nothing to explain.
        if check.covered_by.is_some() || (reference.is_docker_hub() && !failing) {
            continue;
        }
        if pod_secrets.is_empty() {
            continue;
        }
        let usable: Vec<&str> =
            pod_secrets.iter().map(String::as_str).filter(|n| readings.get(n).is_some_and(|r| r.is_usable())).collect();
        if usable.is_empty() {
            continue;
        }
        let keys: Vec<String> = usable.iter().filter_map(|n| readings[n].kubelet_keys()).flatten().collect();
        let canonical = canonical_key_that_would_cover(&usable, &readings, &reference);
        let mut details = vec![format!(
            "the kubelet matches {:?} against the keys {keys:?} of {usable:?}: host parts, port and path prefix must all match",
            reference.name()
        )];
        if let Some((secret, key, canonical)) = &canonical {
            details.push(format!(
                "key {key:?} of {secret:?} would cover it in its canonical form {canonical:?}: the kubelet reads it differently"
            ));
        }
        let target = canonical.as_ref().map_or(usable[0], |(secret, _, _)| secret.as_str());
        causes.push(Cause {
            rank: RANK_NOT_COVERED,
            summary: format!("no pull secret of the Pod covers registry {registry} (container {})", check.container),
            details,
            commands: vec![
                check_secret_command(target, &namespace, DOCKER_CONFIG_JSON_KEY),
                format!(
                    "kubectl create secret docker-registry {target} -n {namespace} --docker-server={registry} --docker-username=<user> --docker-password=<password> --dry-run=client -o yaml | kubectl apply -f -"
                ),
            ],
        });
    }

    let needs_credentials = images.iter().any(|check| {
        check.covered_by.is_none() && ImageReference::parse(&check.image).is_ok_and(|r| !r.is_docker_hub())
    });
    if pod_secrets.is_empty() && needs_credentials {
        causes.extend(no_pull_secret_causes(evidence, &namespace, &account));
    }

    let all_covered = !images.is_empty() && images.iter().all(|c| c.covered_by.is_some());
    let refused = evidence.events.iter().any(|e| {
        !is_sandbox(e) && e.message.contains("pull") && (e.message.contains("401") || e.message.contains("403"))
    });
    if all_covered && refused {
        causes.push(Cause {
            rank: RANK_REFUSED,
            summary: "the registry refused the credentials the kubelet sent".to_owned(),
            details: vec![
                "every image is covered by a pull secret, yet a pull failed with 401/403: the password or token is wrong, expired, or lacks pull rights on the repository".to_owned(),
            ],
            commands: vec![format!(
                "kubectl create secret docker-registry <secret> -n {namespace} --docker-server=<registry> --docker-username=<user> --docker-password=<new token> --dry-run=client -o yaml | kubectl apply -f -"
            )],
        });
    }

    causes.sort_by_key(|c| c.rank);
    Diagnosis { images, causes }
}

fn is_sandbox(event: &PodEvent) -> bool {
    event.reason == "FailedCreatePodSandBox" || event.message.to_ascii_lowercase().contains("pod sandbox")
}

/// The pause image is pulled by the container runtime for the sandbox, with the node's
/// credentials: no pull secret of any Pod is ever used for it.
fn sandbox_cause(events: &[PodEvent]) -> Option<Cause> {
    let sandbox: Vec<&PodEvent> = events.iter().filter(|e| is_sandbox(e)).collect();
    if sandbox.is_empty() {
        return None;
    }
    let image = sandbox.iter().find_map(|e| quoted_image(&e.message));
    let shown = image.map(|i| format!(" {i}")).unwrap_or_default();
    let registry = image.and_then(|i| ImageReference::parse(i).ok()).map(|r| r.registry);
    let mut details: Vec<String> =
        sandbox.iter().map(|e| format!("event {}: {}", e.reason, one_line(&e.message))).collect();
    details.dedup();
    details.push(format!(
        "the sandbox (pause) image{shown} is pulled by the container runtime on the node with the node's credentials; imagePullSecrets never apply to it, so fixing this Pod's pull secrets cannot help"
    ));
    if sandbox.iter().any(|e| e.message.contains("error getting credentials")) {
        details.push(
            "the node's credential helper failed: the `secret ... not found` in the message is the helper's own lookup, not this Pod's imagePullSecrets".to_owned(),
        );
    }
    let host = registry.unwrap_or_else(|| "<registry>".to_owned());
    Some(Cause {
        rank: RANK_SANDBOX,
        summary: format!("the node cannot pull the sandbox image{shown}"),
        details,
        commands: vec![
            "on the node: crictl info | grep -i sandbox   # the sandbox image containerd is configured with".to_owned(),
            format!(
                "on the node: give containerd credentials for {host} (registry config_path hosts.toml or a credential provider), or point `sandbox_image` at a registry the node can pull from, then: systemctl restart containerd"
            ),
            format!("on the node: crictl pull {}   # verifies the fix", image.unwrap_or("<sandbox image>")),
        ],
    })
}

fn quoted_image(message: &str) -> Option<&str> {
    let start = message.find("image \"")? + "image \"".len();
    let rest = &message[start..];
    Some(&rest[..rest.find('"')?])
}

pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A Secret that exists but that the kubelet gets no credentials from.
fn unusable_cause(name: &str, namespace: &str, reading: &PullSecretReading) -> Option<Cause> {
    let recreate = format!(
        "kubectl create secret docker-registry {name} -n {namespace} --docker-server=<registry> --docker-username=<user> --docker-password=<password> --dry-run=client -o yaml | kubectl apply -f -"
    );
    let (summary, details, commands) = match reading {
        PullSecretReading::Config { normalized: Ok(_), registry_keys: Some(_), .. } => return None,
        PullSecretReading::Config { data_key, normalized, .. } => {
            let problems: Vec<String> = match normalized {
                Err(invalid) => invalid.problems.iter().map(ToString::to_string).collect(),
                Ok(_) => vec!["not valid JSON".to_owned()],
            };
            (
                format!("pull secret {name:?} holds an invalid docker config"),
                problems.into_iter().map(|p| format!("{data_key}: {p}")).collect(),
                vec![check_secret_command(name, namespace, data_key), recreate],
            )
        }
        PullSecretReading::WrongType { secret_type, data_key, expected_type } => (
            format!(
                "pull secret {name:?} has type {secret_type}; the kubelet only reads {data_key} from type {expected_type}"
            ),
            vec!["the type of a Secret cannot change in place: replace it".to_owned()],
            vec![format!(
                "kubectl get secret {name} -n {namespace} -o json | jq '.type = \"{expected_type}\" | del(.metadata.resourceVersion, .metadata.uid)' | kubectl replace --force -f -"
            )],
        ),
        PullSecretReading::MissingKey { secret_type, data_key } => {
            (format!("pull secret {name:?} has type {secret_type} but no {data_key}"), Vec::new(), vec![recreate])
        }
        PullSecretReading::NoConfig { secret_type } => (
            format!("{name:?} is a Secret of type {secret_type}, not a pull secret"),
            vec![format!("the kubelet needs type {DOCKER_CONFIG_JSON_TYPE} with {DOCKER_CONFIG_JSON_KEY}")],
            vec![recreate],
        ),
    };
    Some(Cause { rank: RANK_SECRET_UNUSABLE, summary, details, commands })
}

/// How many RegistryCredentials or namespaces a detail lists before it says how many more.
const SHOWN: usize = 3;

/// A Secret the Pod names that is not in its namespace: misnamed, elsewhere, or never made.
fn missing_cause(name: &str, namespace: &str, evidence: &Evidence) -> Cause {
    let mut details = Vec::new();
    let mut commands = Vec::new();
    let here: Vec<&str> =
        evidence.secret_names.iter().filter(|(ns, _)| ns == namespace).map(|(_, n)| n.as_str()).collect();
    let close_here = near_misses(name, here);
    let same_name_elsewhere: Vec<&str> = evidence
        .secret_names
        .iter()
        .filter(|(ns, n)| n == name && ns != namespace)
        .map(|(ns, _)| ns.as_str())
        .collect();
    let others: BTreeSet<&str> =
        evidence.secret_names.iter().filter(|(ns, _)| ns != namespace).map(|(_, n)| n.as_str()).collect();
    let close_elsewhere: Vec<(&str, &str)> = near_misses(name, others)
        .into_iter()
        .flat_map(|candidate| {
            evidence
                .secret_names
                .iter()
                .filter(move |(ns, n)| n == candidate && ns != namespace)
                .map(|(ns, n)| (ns.as_str(), n.as_str()))
        })
        .collect();

    if let Some(candidate) = close_here.first() {
        details.push(format!("Secret {candidate:?} exists in {namespace}: a near miss of {name:?}"));
        commands.extend(copy_secret(namespace, candidate, namespace, name));
    }
    if !same_name_elsewhere.is_empty() {
        details.push(format!(
            "Secret {name:?} exists in {}: the kubelet only reads Secrets from the Pod's own namespace",
            listed(&same_name_elsewhere)
        ));
        commands.extend(copy_secret(same_name_elsewhere[0], name, namespace, name));
    }
    for (other_namespace, candidate) in close_elsewhere.iter().take(SHOWN) {
        details.push(format!(
            "Secret {candidate:?} in {other_namespace} is a near miss of {name:?}, in another namespace"
        ));
    }
    if let Some((other_namespace, candidate)) = close_elsewhere.first() {
        commands.extend(copy_secret(other_namespace, candidate, namespace, name));
    }
    if commands.is_empty() {
        commands.push(format!(
            "kubectl create secret docker-registry {name} -n {namespace} --docker-server=<registry> --docker-username=<user> --docker-password=<password>"
        ));
    }
    let summary = match (close_here.first(), same_name_elsewhere.is_empty(), close_elsewhere.first()) {
        (Some(candidate), _, _) => {
            format!("pull secret {name:?} does not exist in namespace {namespace}; did you mean {candidate:?}?")
        }
        (None, false, _) => format!("pull secret {name:?} is in another namespace, not in {namespace}"),
        (None, true, Some((other_namespace, candidate))) => format!(
            "pull secret {name:?} does not exist in namespace {namespace}; did you mean {candidate:?} (in {other_namespace})?"
        ),
        (None, true, None) => format!("pull secret {name:?} does not exist in namespace {namespace}"),
    };
    let makers: Vec<&RegistryCredential> =
        by_relevance(evidence, namespace).into_iter().filter(|c| c.spec.secret_name == name).collect();
    for credential in makers.iter().take(SHOWN) {
        details.push(format!(
            "RegistryCredential {} makes Secret {name:?}, but not here: {}",
            credential.name_any(),
            why_not_selected(credential, namespace, evidence.namespace_labels.as_ref())
                .unwrap_or_else(|| sync_state(credential, namespace))
        ));
    }
    if makers.len() > SHOWN {
        details.push(format!("{} more RegistryCredentials make Secret {name:?} elsewhere", makers.len() - SHOWN));
    }
    details.push(
        "the kubelet re-reads pull secrets at every attempt: once the Secret exists, the next retry pulls".to_owned(),
    );
    Cause { rank: RANK_SECRET_MISSING, summary, details, commands }
}

/// `a, b, c and 4 more`.
fn listed(items: &[&str]) -> String {
    let mut shown = items.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        shown.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    shown
}

/// Checks a Secret's docker config without showing it: `normalize` prints the problems on stderr
/// and the config, credentials included, on stdout, which goes nowhere.
fn check_secret_command(name: &str, namespace: &str, data_key: &str) -> String {
    format!(
        "kubectl get secret {name} -n {namespace} -o jsonpath='{{.data.\\{data_key}}}' | base64 -d | regcred-operator normalize >/dev/null   # problems on stderr; credentials not shown"
    )
}

/// Checks a Secret's docker config, then copies it under the wanted name and namespace.
fn copy_secret(from_namespace: &str, from: &str, to_namespace: &str, to: &str) -> [String; 2] {
    [
        format!("{}; check it first", check_secret_command(from, from_namespace, DOCKER_CONFIG_JSON_KEY)),
        format!(
            "kubectl get secret {from} -n {from_namespace} -o json | jq '.metadata |= {{name: \"{to}\", namespace: \"{to_namespace}\"}}' | kubectl apply -f -"
        ),
    ]
}

/// Why the Pod's spec has no pull secret: the race with the ServiceAccount, or nothing provides one.
fn no_pull_secret_causes(evidence: &Evidence, namespace: &str, account: &str) -> Vec<Cause> {
    let sa_secrets = evidence.service_account_pull_secrets();
    if !sa_secrets.is_empty() {
        let created_at = evidence.pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let patched = evidence.service_account.as_ref().and_then(pull_secrets_written);
        let created = created_at.map_or_else(|| "its creation".to_owned(), |t| t.to_string());
        // Admission copies the ServiceAccount's entries into a Pod that lists none, so an empty
        // list proves the ServiceAccount had none then. managedFields adds the time when the API
        // server kept it (it keeps none on objects created without any, like default accounts).
        let mut details = vec![
            format!(
                "the Pod lists no imagePullSecrets; the ServiceAccount admission plugin would have copied {account}'s into it, so {account} had none at {created}"
            ),
            format!("ServiceAccount {account} lists {sa_secrets:?} now: it was patched after the Pod was created"),
        ];
        match &patched {
            Some((manager, at)) if created_at.is_none_or(|c| c < *at) => {
                details.push(format!("{manager} wrote its imagePullSecrets at {at}"))
            }
            Some((manager, at)) => details.push(format!(
                "{manager} last wrote its imagePullSecrets at {at}, not after the Pod was created: is the ServiceAccount admission plugin disabled?"
            )),
            None => {}
        }
        let owner = evidence.pod.owner_references().first().map(|o| format!("{} {}", o.kind, o.name));
        let recreate = format!("kubectl delete pod {} -n {namespace}", evidence.pod.name_any());
        return vec![Cause {
            rank: RANK_RACE,
            summary: format!("the Pod was created before ServiceAccount {account} had its pull secrets"),
            details,
            commands: vec![match owner {
                Some(owner) => format!("{recreate}   # {owner} creates a new one, which gets {sa_secrets:?}"),
                None => format!("{recreate} && kubectl apply -f <its manifest>"),
            }],
        }];
    }
    let mut details = vec![format!("neither the Pod spec nor ServiceAccount {account} lists a pull secret")];
    let mut commands = Vec::new();
    if evidence.credentials.is_empty() {
        details.push("no RegistryCredential exists to provide one".to_owned());
        commands.push(
            "kubectl explain registrycredential.spec   # declare one for the registry, selecting this namespace"
                .to_owned(),
        );
    }
    for credential in by_relevance(evidence, namespace).into_iter().take(SHOWN) {
        let reason = why_not_selected(credential, namespace, evidence.namespace_labels.as_ref())
            .or_else(|| {
                (!selects_service_account(&credential.spec, account)).then(|| {
                    format!(
                        "spec.serviceAccounts.names {:?} does not include {account}",
                        credential.spec.service_accounts.names
                    )
                })
            })
            .unwrap_or_else(|| sync_state(credential, namespace));
        details.push(format!("RegistryCredential {}: {reason}", credential.name_any()));
        commands.push(format!("kubectl describe registrycredential {}", credential.name_any()));
    }
    if evidence.credentials.len() > SHOWN {
        details.push(format!(
            "{} more RegistryCredentials: kubectl get registrycredentials",
            evidence.credentials.len() - SHOWN
        ));
    }
    if evidence.service_account.is_none() {
        details.push(format!("ServiceAccount {account} does not exist"));
    }
    vec![Cause {
        rank: RANK_NOT_PROVIDED,
        summary: format!("ServiceAccount {account} has no pull secret, so the Pod got none"),
        details,
        commands,
    }]
}

/// The RegistryCredentials, those nearest to serving this Pod first: selecting its namespace and
/// ServiceAccount, then its namespace, then naming it exactly; among equals, those whose
/// registries cover one of its images.
fn by_relevance<'e>(evidence: &'e Evidence, namespace: &str) -> Vec<&'e RegistryCredential> {
    let spec = evidence.pod.spec.clone().unwrap_or_default();
    let account = spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned());
    let images: Vec<ImageReference> =
        spec.containers.iter().filter_map(|c| ImageReference::parse(c.image.as_deref()?).ok()).collect();
    let mut credentials: Vec<&RegistryCredential> = evidence.credentials.iter().collect();
    credentials.sort_by_key(|credential| {
        let selected = why_not_selected(credential, namespace, evidence.namespace_labels.as_ref()).is_none();
        let distance = match (selected, selects_service_account(&credential.spec, &account)) {
            (true, true) => 0,
            (true, false) => 1,
            _ if credential.spec.namespaces.include.iter().any(|p| p == namespace) => 2,
            _ => 3,
        };
        let covers = credential
            .spec
            .registries
            .iter()
            .filter_map(|r| normalize_registry_key(r).ok())
            .any(|key| images.iter().any(|image| key_matches_image(&key.canonical, image)));
        (distance, !covers, credential.name_any())
    });
    credentials
}

/// The last time a field manager wrote the ServiceAccount's `imagePullSecrets`, and who.
fn pull_secrets_written(account: &ServiceAccount) -> Option<(String, Timestamp)> {
    account
        .managed_fields()
        .iter()
        .filter(|entry| {
            entry.fields_v1.as_ref().is_some_and(|fields| fields.0.to_string().contains("\"f:imagePullSecrets\""))
        })
        .filter_map(|entry| Some((entry.manager.clone().unwrap_or_default(), entry.time.as_ref()?.0)))
        .max_by_key(|(_, at)| *at)
}

/// Why the credential does not select the namespace, or `None` when it does.
fn why_not_selected(
    credential: &RegistryCredential,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    let filter = &credential.spec.namespaces;
    if SYSTEM_NAMESPACES.contains(&namespace) && !filter.include.iter().any(|p| p == namespace) {
        return Some(format!("{namespace} is a system namespace, selected only by an exact include entry"));
    }
    if !filter.include.iter().any(|pattern| glob_matches(pattern, namespace)) {
        return Some(format!("spec.namespaces.include {:?} does not match {namespace}", filter.include));
    }
    if let Some(pattern) = filter.exclude.iter().find(|pattern| glob_matches(pattern, namespace)) {
        return Some(format!("spec.namespaces.exclude entry {pattern:?} matches {namespace}"));
    }
    let selector = credential.spec.namespace_selector.as_ref()?;
    let empty = BTreeMap::new();
    if label_selector_matches(selector, labels.unwrap_or(&empty)) {
        return None;
    }
    let wanted = serde_json::to_string(selector).unwrap_or_default();
    let has = serde_json::to_string(labels.unwrap_or(&empty)).unwrap_or_default();
    Some(format!("spec.namespaceSelector {wanted} does not match the labels of {namespace} {has}"))
}

/// What the credential's status says about the namespace it selects.
fn sync_state(credential: &RegistryCredential, namespace: &str) -> String {
    let status = credential.status.as_ref();
    if let Some(failure) = status.and_then(|s| s.failures.iter().find(|f| f.namespace == namespace)) {
        return format!("it selects {namespace} but failed there: {}: {}", failure.reason, failure.message);
    }
    let ready = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("Ready={} ({}: {})", c.status, c.reason, c.message));
    match ready {
        Some(ready) => format!("it selects {namespace}; {ready}: is the operator running?"),
        None => format!("it selects {namespace} but has no status yet: is the operator running?"),
    }
}

fn image_checks(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    pod_secrets: &[String],
    readings: &BTreeMap<&str, PullSecretReading>,
) -> Vec<ImageCheck> {
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (&c.name, &c.image))
        .chain(spec.containers.iter().map(|c| (&c.name, &c.image)))
        .chain(spec.ephemeral_containers.iter().flatten().map(|c| (&c.name, &c.image)));
    containers
        .filter_map(|(name, image)| Some((name.clone(), image.clone()?)))
        .map(|(container, image)| {
            let reference = ImageReference::parse(&image);
            let covered_by = reference.as_ref().ok().and_then(|reference| {
                pod_secrets.iter().find_map(|secret| {
                    let key = readings.get(secret.as_str())?.covering_key(reference)?;
                    Some((secret.clone(), key.to_owned()))
                })
            });
            ImageCheck {
                container,
                registry: reference.map(|r| r.registry).map_err(|e| e.to_string()),
                image,
                covered_by,
            }
        })
        .collect()
}

/// A key of the usable secrets that, written canonically, would cover the image.
fn canonical_key_that_would_cover(
    usable: &[&str],
    readings: &BTreeMap<&str, PullSecretReading>,
    image: &ImageReference,
) -> Option<(String, String, String)> {
    usable.iter().find_map(|secret| {
        let PullSecretReading::Config { registry_keys: Some(keys), .. } = &readings[secret] else { return None };
        keys.iter().find_map(|key| {
            let canonical = normalize_registry_key(key).ok()?.canonical;
            key_matches_image(&canonical, image).then(|| ((*secret).to_owned(), key.clone(), canonical))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CredentialSource, NamespaceFilter, RegistryCredentialSpec, SecretReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn credential(include: &[&str], exclude: &[&str], team: Option<&str>) -> RegistryCredential {
        RegistryCredential::new(
            "corp",
            RegistryCredentialSpec {
                source: CredentialSource {
                    secret_ref: Some(SecretReference { namespace: "regcred-system".into(), name: "s".into() }),
                },
                registries: Vec::new(),
                secret_name: "regcred".into(),
                namespace_selector: team.map(|team| LabelSelector {
                    match_labels: Some([("team".to_owned(), team.to_owned())].into()),
                    match_expressions: None,
                }),
                namespaces: NamespaceFilter {
                    include: include.iter().map(|s| s.to_string()).collect(),
                    exclude: exclude.iter().map(|s| s.to_string()).collect(),
                },
                service_accounts: Default::default(),
                on_conflict: Default::default(),
                prune: true,
                inject_into_pods: true,
                evict_stuck_pods: false,
            },
        )
    }

    #[test]
    fn why_a_namespace_is_not_selected() {
        let team = |t: &str| BTreeMap::from([("team".to_owned(), t.to_owned())]);
        let cases = [
            (
                credential(&["team-*"], &[], None),
                "production",
                "spec.namespaces.include [\"team-*\"] does not match production",
            ),
            (
                credential(&["*"], &["prod*"], None),
                "production",
                "spec.namespaces.exclude entry \"prod*\" matches production",
            ),
            (
                credential(&["*"], &[], None),
                "kube-system",
                "kube-system is a system namespace, selected only by an exact include entry",
            ),
            (
                credential(&["*"], &[], Some("payments")),
                "production",
                "spec.namespaceSelector {\"matchLabels\":{\"team\":\"payments\"}} does not match the labels of production {\"team\":\"search\"}",
            ),
        ];
        for (credential, namespace, expected) in cases {
            assert_eq!(why_not_selected(&credential, namespace, Some(&team("search"))).as_deref(), Some(expected));
        }
        assert_eq!(
            why_not_selected(&credential(&["*"], &[], Some("payments")), "production", Some(&team("payments"))),
            None
        );
    }

    #[test]
    fn the_sandbox_image_is_named_and_never_blamed_on_pull_secrets() {
        let event = |reason: &str, message: &str| PodEvent {
            reason: reason.into(),
            message: message.into(),
            warning: true,
            count: 1,
        };
        let pull = event("Failed", "Failed to pull image \"registry.corp/app:1\": 401 Unauthorized");
        assert_eq!(sandbox_cause(std::slice::from_ref(&pull)), None);
        let sandbox = event(
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: rpc error: failed to get sandbox image \"registry.k8s.io/pause:3.10\": 401",
        );
        let cause = sandbox_cause(&[pull, sandbox]).expect("a sandbox cause");
        assert_eq!(cause.summary, "the node cannot pull the sandbox image registry.k8s.io/pause:3.10");
        assert!(cause.commands.iter().any(|c| c.contains("crictl pull registry.k8s.io/pause:3.10")));
    }
}
