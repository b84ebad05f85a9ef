//! The diagnosis of a Pod that cannot pull: a pure function of what `doctor` read from the cluster.
//!
//! The kubelet pulls an image with the Secrets in the Pod's own `spec.imagePullSecrets`, read at
//! each attempt. A ServiceAccount's `imagePullSecrets` reach a Pod only once, when the Pod is
//! created: the ServiceAccount admission plugin copies them into a spec that has none. So a Secret
//! created later repairs a running Pod, but a ServiceAccount patched later does not.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodSpec, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::cli::near_miss::near_misses;
use crate::crd::selection::{SYSTEM_NAMESPACES, glob_matches, selects_namespace_reserving, selects_service_account};
use crate::crd::{NamespaceFilter, RegistryCredential, RegistryCredentialSpec};
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
    /// Whether the admission policy that injects pull secrets into Pods is installed.
    pub(crate) admission: Admission,
    /// The version of the kubelet on the Pod's node (`v1.35.2`), when the Pod is scheduled and
    /// the Node could be read.
    pub(crate) kubelet_version: Option<String>,
    /// The workload that owns the Pod's owner (the Deployment of its ReplicaSet): `(kind, name)`.
    pub(crate) workload: Option<(String, String)>,
}

impl Evidence {
    /// The namespaces the operator reads sources from, as far as the credentials tell: a source
    /// is refused anywhere else, and these namespaces are selected only by name.
    pub(crate) fn reserved_namespaces(&self) -> Vec<String> {
        reserved_namespaces(&self.credentials)
    }

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
        created: Option<Timestamp>,
    },
    Missing,
    /// It could not be read (e.g. forbidden): the reason.
    Unreadable(String),
}

/// The namespaces of the credentials' sources: the operator trusts them for sources, and selects
/// them only by an exact include entry.
pub(crate) fn reserved_namespaces(credentials: &[RegistryCredential]) -> Vec<String> {
    let sources = credentials.iter().filter_map(|c| c.spec.source.secret_ref.as_ref());
    let namespaces: BTreeSet<String> = sources.map(|source| source.namespace.clone()).collect();
    namespaces.into_iter().collect()
}

/// The MutatingAdmissionPolicy that appends a RegistryCredential's copy to new Pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A policy with RegistryCredentials as parameters, and a binding for it.
    Active {
        policy: String,
    },
    /// The policy exists but no binding uses it: it changes nothing.
    Unbound {
        policy: String,
    },
    NotInstalled,
    /// `admissionregistration.k8s.io/v1` MutatingAdmissionPolicy is not served (before 1.36).
    NotServed,
    /// It could not be read: the reason.
    Unknown(String),
    #[default]
    NotRead,
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

/// What every detector reads: the evidence, and what is derived from it once.
pub(crate) struct Context<'e> {
    pub(crate) evidence: &'e Evidence,
    pub(crate) namespace: String,
    pub(crate) spec: PodSpec,
    /// The Pod's own `spec.imagePullSecrets`, the only ones the kubelet uses.
    pub(crate) pod_secrets: Vec<String>,
    pub(crate) account: String,
    /// Every Secret that was found, read as a pull secret.
    pub(crate) readings: BTreeMap<&'e str, PullSecretReading>,
    pub(crate) images: Vec<ImageCheck>,
}

impl<'e> Context<'e> {
    pub(crate) fn new(evidence: &'e Evidence) -> Context<'e> {
        let spec = evidence.pod.spec.clone().unwrap_or_default();
        let pod_secrets: Vec<String> = spec.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
        let readings: BTreeMap<&str, PullSecretReading> = evidence
            .secrets
            .iter()
            .filter_map(|(name, lookup)| match lookup {
                SecretLookup::Found { secret_type, data, .. } => {
                    Some((name.as_str(), read_pull_secret(secret_type.as_deref(), data)))
                }
                _ => None,
            })
            .collect();
        let images = image_checks(&spec, &pod_secrets, &readings);
        Context {
            evidence,
            namespace: evidence.pod.namespace().unwrap_or_default(),
            account: spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned()),
            spec,
            pod_secrets,
            readings,
            images,
        }
    }

    /// Images that need a credential the Pod's own pull secrets do not give: they parse, no key
    /// covers them, and they are not on Docker Hub (mostly public).
    fn uncovered_private_images(&self) -> impl Iterator<Item = (&ImageCheck, ImageReference)> {
        self.images.iter().filter(|check| check.covered_by.is_none()).filter_map(|check| {
            let reference = ImageReference::parse(&check.image).ok().filter(|r| !r.is_docker_hub())?;
            Some((check, reference))
        })
    }
}

/// One named detector: a kind of cause, and the function that finds it.
pub(crate) struct Detector {
    /// What it detects, for readers and tests; the report names causes by their summary.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) name: &'static str,
    detect: fn(&Context) -> Vec<Cause>,
}

/// Every detector, in the order they run; causes of equal rank keep it.
pub(crate) const DETECTORS: &[Detector] = &[
    Detector { name: "sandbox image", detect: sandbox_image },
    Detector { name: "pull secret unreadable or unusable", detect: pull_secrets_unusable },
    Detector { name: "pull secret missing", detect: pull_secrets_missing },
    // Before `registry not covered`, of equal rank: a hidden ServiceAccount entry is the likelier fix.
    Detector { name: "own pull secrets hide the ServiceAccount's", detect: own_pull_secrets_hide_service_account },
    Detector { name: "registry not covered", detect: registry_not_covered },
    Detector { name: "ServiceAccount patched after the Pod", detect: service_account_patched_after_the_pod },
    Detector { name: "nothing provides a pull secret", detect: nothing_provides_a_pull_secret },
    Detector { name: "created before the secret", detect: created_before_the_secret },
    Detector { name: "cached image needs the Pod's own credential", detect: cached_image_needs_own_credential },
    Detector { name: "credentials refused", detect: credentials_refused },
];

pub(crate) fn diagnose(evidence: &Evidence) -> Diagnosis {
    let context = Context::new(evidence);
    let mut causes: Vec<Cause> = DETECTORS.iter().flat_map(|detector| (detector.detect)(&context)).collect();
    causes.sort_by_key(|c| c.rank);
    Diagnosis { images: context.images, causes }
}

/// The sandbox (pause) image failed: the node's problem, never the Pod's pull secrets.
fn sandbox_image(context: &Context) -> Vec<Cause> {
    sandbox_cause(&context.evidence.events).into_iter().collect()
}

/// A pull secret of the Pod that exists but gives the kubelet nothing, or could not be read.
fn pull_secrets_unusable(context: &Context) -> Vec<Cause> {
    let mut causes = Vec::new();
    for name in &context.pod_secrets {
        match context.evidence.secrets.get(name) {
            Some(SecretLookup::Found { .. }) => {
                causes.extend(unusable_cause(name, &context.namespace, &context.readings[name.as_str()]));
            }
            Some(SecretLookup::Unreadable(reason)) => causes.push(Cause {
                rank: RANK_SECRET_UNUSABLE,
                summary: format!("pull secret {name:?} could not be read: {reason}"),
                details: vec!["doctor needs `get` on Secrets in this namespace to check it".to_owned()],
                commands: Vec::new(),
            }),
            Some(SecretLookup::Missing) | None => {}
        }
    }
    causes
}

/// A pull secret of the Pod that is not in its namespace.
fn pull_secrets_missing(context: &Context) -> Vec<Cause> {
    context
        .pod_secrets
        .iter()
        .filter(|name| matches!(context.evidence.secrets.get(*name), Some(SecretLookup::Missing) | None))
        .map(|name| missing_cause(name, &context.namespace, context.evidence))
        .collect()
}

/// An image that no key of the Pod's usable pull secrets matches.
fn registry_not_covered(context: &Context) -> Vec<Cause> {
    let (evidence, namespace, pod_secrets, readings) =
        (context.evidence, &context.namespace, &context.pod_secrets, &context.readings);
    let mut causes = Vec::new();
    for check in &context.images {
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
        let canonical = canonical_key_that_would_cover(&usable, readings, &reference);
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
                check_secret_command(target, namespace, DOCKER_CONFIG_JSON_KEY),
                format!(
                    "kubectl create secret docker-registry {target} -n {namespace} --docker-server={registry} --docker-username=<user> --docker-password=<password> --dry-run=client -o yaml | kubectl apply -f -"
                ),
            ],
        });
    }
    causes
}

/// Every image is covered, yet the registry answered 401/403 to a pull.
fn credentials_refused(context: &Context) -> Vec<Cause> {
    let images = &context.images;
    let all_covered = !images.is_empty() && images.iter().all(|c| c.covered_by.is_some());
    let refused = context.evidence.events.iter().any(|e| {
        !is_sandbox(e) && e.message.contains("pull") && (e.message.contains("401") || e.message.contains("403"))
    });
    if !(all_covered && refused) {
        return Vec::new();
    }
    vec![Cause {
        rank: RANK_REFUSED,
        summary: "the registry refused the credentials the kubelet sent".to_owned(),
        details: vec![
            "every image is covered by a pull secret, yet a pull failed with 401/403: the password or token is wrong, expired, or lacks pull rights on the repository".to_owned(),
        ],
        commands: vec![format!(
            "kubectl create secret docker-registry <secret> -n {} --docker-server=<registry> --docker-username=<user> --docker-password=<new token> --dry-run=client -o yaml | kubectl apply -f -",
            context.namespace
        )],
    }]
}

/// What the report says about admission injection for the Pod's namespace and ServiceAccount.
pub(crate) fn injection_coverage(context: &Context) -> Vec<String> {
    let (evidence, namespace, account) = (context.evidence, &context.namespace, &context.account);
    let mut lines = vec![match &evidence.admission {
        Admission::Active { policy } => format!(
            "MutatingAdmissionPolicy {policy} is installed and bound: a Pod created now gets the copy of each RegistryCredential that selects it"
        ),
        Admission::Unbound { policy } => {
            format!("MutatingAdmissionPolicy {policy} is installed but no binding uses it: it injects nothing")
        }
        Admission::NotInstalled => "no MutatingAdmissionPolicy for RegistryCredentials is installed: only ServiceAccount patching applies, and only to Pods that list no pull secrets".to_owned(),
        Admission::NotServed => "the cluster does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy (Kubernetes 1.36+): only ServiceAccount patching applies".to_owned(),
        Admission::Unknown(reason) => format!("whether the admission policy is installed is unknown: {reason}"),
        Admission::NotRead => "the admission policy was not checked".to_owned(),
    }];
    let selecting = selecting_credentials(context);
    if selecting.is_empty() {
        lines.push(format!("no RegistryCredential selects namespace {namespace} and ServiceAccount {account}"));
    }
    for credential in selecting {
        let secret = &credential.spec.secret_name;
        let state = match injection(credential, &evidence.admission) {
            Injection::Active => format!("injects Secret {secret:?} into Pods created here"),
            Injection::OptedOut => format!("spec.injectIntoPods is false: Secret {secret:?} is not injected"),
            Injection::Deleting => "it is being deleted: injects nothing".to_owned(),
            Injection::PolicyInactive => format!("would inject Secret {secret:?}, but the policy is not active"),
        };
        lines.push(format!(
            "RegistryCredential {} selects namespace {namespace} and ServiceAccount {account}: {state}",
            credential.name_any()
        ));
    }
    lines
}

/// Whether a RegistryCredential that selects a Pod's namespace and ServiceAccount injects its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injection {
    Active,
    OptedOut,
    Deleting,
    PolicyInactive,
}

fn injection(credential: &RegistryCredential, admission: &Admission) -> Injection {
    if credential.metadata.deletion_timestamp.is_some() {
        Injection::Deleting
    } else if !credential.spec.inject_into_pods {
        Injection::OptedOut
    } else if matches!(admission, Admission::Active { .. }) {
        Injection::Active
    } else {
        Injection::PolicyInactive
    }
}

/// The RegistryCredentials that select the Pod's namespace and ServiceAccount, by the rules the
/// controller and the admission policy share.
fn selecting_credentials<'e>(context: &Context<'e>) -> Vec<&'e RegistryCredential> {
    let labels = context.evidence.namespace_labels.clone().unwrap_or_default();
    let reserved = context.evidence.reserved_namespaces();
    let (namespace, account) = (&context.namespace, &context.account);
    context
        .evidence
        .credentials
        .iter()
        .filter(|c| c.spec.selects_pods_of(namespace, &labels, account, &reserved))
        .collect()
}

/// Case 2: the Pod lists pull secrets of its own, so its ServiceAccount's never reached it.
fn own_pull_secrets_hide_service_account(context: &Context) -> Vec<Cause> {
    let (evidence, account) = (context.evidence, &context.account);
    let hidden: Vec<String> =
        evidence.service_account_pull_secrets().into_iter().filter(|n| !context.pod_secrets.contains(n)).collect();
    let uncovered: Vec<(&ImageCheck, ImageReference)> = context.uncovered_private_images().collect();
    if context.pod_secrets.is_empty() || hidden.is_empty() || uncovered.is_empty() {
        return Vec::new();
    }
    let mut details = vec![format!(
        "the ServiceAccount admission plugin copies {account}'s imagePullSecrets {hidden:?} only into a Pod that lists none; this one lists {:?}, and the kubelet uses the Pod's own only",
        context.pod_secrets
    )];
    for (check, reference) in &uncovered {
        let covering = hidden
            .iter()
            .find(|n| context.readings.get(n.as_str()).is_some_and(|r| r.covering_key(reference).is_some()));
        if let Some(secret) = covering {
            details.push(format!(
                "{secret:?} of ServiceAccount {account} covers registry {} (container {})",
                reference.registry, check.container
            ));
        }
    }
    let injected: Vec<&str> = selecting_credentials(context)
        .into_iter()
        .filter(|c| injection(c, &evidence.admission) == Injection::Active && hidden.contains(&c.spec.secret_name))
        .map(|c| c.spec.secret_name.as_str())
        .collect();
    let commands = if injected.is_empty() {
        details.push(format!(
            "list {hidden:?} in the imagePullSecrets of the Pod's template too, or let a RegistryCredential with admission injection (Kubernetes 1.36+) append its copy to Pods that list their own"
        ));
        add_to_template_commands(context, &hidden)
    } else {
        details.push(format!(
            "admission injection appends {injected:?} also to Pods that list their own: a Pod created again gets it"
        ));
        recreate_commands(context)
    };
    vec![Cause {
        rank: RANK_NOT_COVERED,
        summary: format!("the Pod's own pull secrets hide ServiceAccount {account}'s {hidden:?}"),
        details,
        commands,
    }]
}

/// Case 3: the Pod was created before the copy of a RegistryCredential that selects it existed; a
/// Pod's imagePullSecrets never change after creation.
fn created_before_the_secret(context: &Context) -> Vec<Cause> {
    let evidence = context.evidence;
    let Some(pod_created) = evidence.pod.metadata.creation_timestamp.as_ref().map(|t| t.0) else { return Vec::new() };
    // A Pod that lists none while its ServiceAccount lists some now is the race `no pull secret`
    // explains; and a Pod whose images are all covered needs nothing.
    let race = context.pod_secrets.is_empty() && !evidence.service_account_pull_secrets().is_empty();
    if race || context.uncovered_private_images().next().is_none() {
        return Vec::new();
    }
    let mut causes = Vec::new();
    for credential in selecting_credentials(context) {
        let secret = &credential.spec.secret_name;
        if context.pod_secrets.contains(secret) {
            continue;
        }
        let Some(SecretLookup::Found { created: Some(copy_created), .. }) = evidence.secrets.get(secret) else {
            continue;
        };
        if *copy_created <= pod_created {
            continue;
        }
        let now = match injection(credential, &evidence.admission) {
            Injection::Active => format!("admission injection gives {secret:?} to a Pod created now"),
            _ => format!(
                "a Pod created now that lists no pull secrets gets {secret:?} from ServiceAccount {}",
                context.account
            ),
        };
        causes.push(Cause {
            rank: RANK_RACE,
            summary: format!(
                "the Pod was created before Secret {secret:?} of RegistryCredential {} existed",
                credential.name_any()
            ),
            details: vec![
                format!("the Pod was created at {pod_created}, the Secret at {copy_created}"),
                "a Pod's imagePullSecrets never change after creation: neither ServiceAccount patching nor admission injection reaches a Pod that exists already".to_owned(),
                now,
            ],
            commands: recreate_commands(context),
        });
    }
    causes
}

/// The kubelet version from which an image pulled with credentials is only used by Pods that
/// have credentials for it too (KubeletEnsureSecretPulledImages, beta and on by default).
const ENSURE_SECRET_PULLED_IMAGES: (u32, u32) = (1, 35);

/// Kubernetes 1.35+: an image another Pod pulled with credentials, cached on the node, is no
/// longer usable by a Pod without its own; the kubelet pulls again, and the registry refuses.
fn cached_image_needs_own_credential(context: &Context) -> Vec<Cause> {
    let Some(version) = context.evidence.kubelet_version.as_deref() else { return Vec::new() };
    if kubernetes_minor(version).is_none_or(|v| v < ENSURE_SECRET_PULLED_IMAGES) {
        return Vec::new();
    }
    let mut causes = Vec::new();
    for (check, reference) in context.uncovered_private_images() {
        let policy = pull_policy(&context.spec, &check.container, &reference);
        let failing = context.evidence.events.iter().any(|e| !is_sandbox(e) && e.message.contains(&check.image));
        if policy == "Always" || !failing {
            continue;
        }
        causes.push(Cause {
            rank: RANK_NOT_PROVIDED,
            summary: format!(
                "on Kubernetes 1.35+ an image cached on the node is not usable by a Pod without its own credential (container {})",
                check.container
            ),
            details: vec![
                format!(
                    "the node's kubelet is {version}: with KubeletEnsureSecretPulledImages an image pulled with credentials serves only Pods that have credentials for it; this Pod has none for {}, so the kubelet pulls {} again despite imagePullPolicy {policy}, and the registry refuses",
                    reference.registry, check.image
                ),
                "before 1.35 such a Pod started wherever another Pod had pulled the image: it worked by chance".to_owned(),
                format!("give the Pod its own pull secret for {}: see the other causes", reference.registry),
            ],
            commands: Vec::new(),
        });
    }
    causes
}

/// `(1, 35)` of `v1.35.2` or `v1.35.0-eks-1`.
fn kubernetes_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor.parse().ok()?))
}

/// The container's imagePullPolicy, or the API server's default for its image.
fn pull_policy(spec: &PodSpec, container: &str, reference: &ImageReference) -> String {
    let set = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == container)
        .and_then(|c| c.image_pull_policy.clone())
        .or_else(|| {
            spec.ephemeral_containers.iter().flatten().find(|c| c.name == container)?.image_pull_policy.clone()
        });
    set.unwrap_or_else(|| {
        let latest = reference.digest.is_none() && reference.tag.as_deref().is_none_or(|t| t == "latest");
        if latest { "Always" } else { "IfNotPresent" }.to_owned()
    })
}

/// The commands that create the Pod again, so that admission gives it what it lacks.
fn recreate_commands(context: &Context) -> Vec<String> {
    let (pod, namespace) = (context.evidence.pod.name_any(), &context.namespace);
    let Some(owner) = controller_of(&context.evidence.pod) else {
        return vec![format!(
            "kubectl delete pod {pod} -n {namespace} && kubectl apply -f <its manifest>   # a bare Pod: nothing creates it again"
        )];
    };
    let mut commands =
        vec![format!("kubectl delete pod {pod} -n {namespace}   # {} {} creates it again", owner.0, owner.1)];
    if let Some((kind, name)) = restartable(context, &owner) {
        commands.push(format!(
            "kubectl rollout restart {kind}/{name} -n {namespace}   # every Pod of it, when they all predate the fix"
        ));
    }
    commands
}

/// A JSON patch that appends the pull secrets to the template of the workload that creates the Pod.
fn add_to_template_commands(context: &Context, names: &[String]) -> Vec<String> {
    let Some(owner) = controller_of(&context.evidence.pod) else {
        return vec![format!(
            "kubectl delete pod {} -n {} && kubectl apply -f <its manifest>   # after adding {names:?} to its imagePullSecrets",
            context.evidence.pod.name_any(),
            context.namespace
        )];
    };
    let Some((kind, name)) = restartable(context, &owner) else { return Vec::new() };
    let patch: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "{{\"op\":\"add\",\"path\":\"/spec/template/spec/imagePullSecrets/-\",\"value\":{{\"name\":\"{n}\"}}}}"
            )
        })
        .collect();
    vec![format!("kubectl patch {kind} {name} -n {} --type=json -p '[{}]'", context.namespace, patch.join(","))]
}

/// `(kind, name)` of the Pod's controller.
fn controller_of(pod: &Pod) -> Option<(String, String)> {
    let owners = pod.owner_references();
    let owner = owners.iter().find(|o| o.controller == Some(true)).or(owners.first())?;
    Some((owner.kind.clone(), owner.name.clone()))
}

/// The workload whose template makes the Pod and that `kubectl rollout restart` knows, lower case.
fn restartable(context: &Context, owner: &(String, String)) -> Option<(String, String)> {
    match (&context.evidence.workload, owner.0.as_str()) {
        (Some((kind, name)), _) if kind == "Deployment" => Some(("deployment".to_owned(), name.clone())),
        (_, "StatefulSet" | "DaemonSet") => Some((owner.0.to_ascii_lowercase(), owner.1.clone())),
        _ => None,
    }
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
            why_not_selected(
                credential,
                namespace,
                evidence.namespace_labels.as_ref(),
                &evidence.reserved_namespaces()
            )
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

/// The Pod lists no pull secret, though its ServiceAccount lists some now: it was patched after
/// the Pod was created, and admission copied nothing.
fn service_account_patched_after_the_pod(context: &Context) -> Vec<Cause> {
    let sa_secrets = context.evidence.service_account_pull_secrets();
    if !context.pod_secrets.is_empty() || sa_secrets.is_empty() || context.uncovered_private_images().next().is_none() {
        return Vec::new();
    }
    vec![race_cause(context.evidence, &context.namespace, &context.account, &sa_secrets)]
}

/// The Pod and its ServiceAccount list no pull secret: which RegistryCredential could, and why not.
fn nothing_provides_a_pull_secret(context: &Context) -> Vec<Cause> {
    let sa_secrets = context.evidence.service_account_pull_secrets();
    if !context.pod_secrets.is_empty() || !sa_secrets.is_empty() || context.uncovered_private_images().next().is_none()
    {
        return Vec::new();
    }
    vec![not_provided_cause(context.evidence, &context.namespace, &context.account)]
}

fn race_cause(evidence: &Evidence, namespace: &str, account: &str, sa_secrets: &[String]) -> Cause {
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
    Cause {
        rank: RANK_RACE,
        summary: format!("the Pod was created before ServiceAccount {account} had its pull secrets"),
        details,
        commands: vec![match owner {
            Some(owner) => format!("{recreate}   # {owner} creates a new one, which gets {sa_secrets:?}"),
            None => format!("{recreate} && kubectl apply -f <its manifest>"),
        }],
    }
}

fn not_provided_cause(evidence: &Evidence, namespace: &str, account: &str) -> Cause {
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
        let reason = why_not_selected(
            credential,
            namespace,
            evidence.namespace_labels.as_ref(),
            &evidence.reserved_namespaces(),
        )
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
    Cause {
        rank: RANK_NOT_PROVIDED,
        summary: format!("ServiceAccount {account} has no pull secret, so the Pod got none"),
        details,
        commands,
    }
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
        let selected = why_not_selected(
            credential,
            namespace,
            evidence.namespace_labels.as_ref(),
            &evidence.reserved_namespaces(),
        )
        .is_none();
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

/// Why the credential does not select the namespace, or `None` when it does. The decision is
/// `selects_namespace`'s; this only finds which part of the spec it turned on.
fn why_not_selected(
    credential: &RegistryCredential,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    reserved: &[String],
) -> Option<String> {
    let spec = &credential.spec;
    let empty = BTreeMap::new();
    if selects_namespace_reserving(spec, namespace, labels.unwrap_or(&empty), reserved) {
        return None;
    }
    let filter = &spec.namespaces;
    let by_include = RegistryCredentialSpec {
        namespace_selector: None,
        namespaces: NamespaceFilter { include: filter.include.clone(), exclude: Vec::new() },
        ..spec.clone()
    };
    if !selects_namespace_reserving(&by_include, namespace, &empty, reserved) {
        return Some(if SYSTEM_NAMESPACES.contains(&namespace) {
            format!("{namespace} is a system namespace, selected only by an exact include entry")
        } else if reserved.iter().any(|r| r == namespace) {
            format!("{namespace} holds credential sources, selected only by an exact include entry")
        } else {
            format!("spec.namespaces.include {:?} does not match {namespace}", filter.include)
        });
    }
    if let Some(pattern) = filter.exclude.iter().find(|pattern| glob_matches(pattern, namespace)) {
        return Some(format!("spec.namespaces.exclude entry {pattern:?} matches {namespace}"));
    }
    let Some(selector) = &spec.namespace_selector else {
        return Some(format!("it does not select {namespace}"));
    };
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
    use crate::crd::{CredentialSource, SecretReference};
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
            assert_eq!(why_not_selected(&credential, namespace, Some(&team("search")), &[]).as_deref(), Some(expected));
        }
        assert_eq!(
            why_not_selected(&credential(&["*"], &[], Some("payments")), "production", Some(&team("payments")), &[]),
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

    fn pod(spec: serde_json::Value, owner: Option<(&str, &str)>) -> Pod {
        let owners: Vec<serde_json::Value> = owner
            .iter()
            .map(|(kind, name)| {
                serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2026-01-01T10:00:00Z",
                         "ownerReferences": owners},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pull_secret(registry: &str, created: &str) -> SecretLookup {
        let config = format!(r#"{{"auths":{{"{registry}":{{"username":"u","password":"p"}}}}}}"#);
        SecretLookup::Found {
            secret_type: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
            data: [(DOCKER_CONFIG_JSON_KEY.to_owned(), config.into_bytes())].into(),
            created: Some(created.parse().unwrap()),
        }
    }

    fn account(pull_secrets: &[&str]) -> ServiceAccount {
        let names: Vec<serde_json::Value> = pull_secrets.iter().map(|n| serde_json::json!({"name": n})).collect();
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}, "imagePullSecrets": names})).unwrap()
    }

    /// A Pod of Deployment web that lists `quay-pull` and runs an image from registry.corp.
    fn own_list_evidence() -> Evidence {
        Evidence {
            pod: pod(
                serde_json::json!({"imagePullSecrets": [{"name": "quay-pull"}],
                                   "containers": [{"name": "app", "image": "registry.corp/app:1"}]}),
                Some(("ReplicaSet", "web-5d9c")),
            ),
            namespace_labels: Some(BTreeMap::new()),
            service_account: Some(account(&["regcred"])),
            secrets: [
                ("quay-pull".to_owned(), pull_secret("quay.io", "2025-12-01T00:00:00Z")),
                ("regcred".to_owned(), pull_secret("registry.corp", "2026-01-02T00:00:00Z")),
            ]
            .into(),
            workload: Some(("Deployment".to_owned(), "web".to_owned())),
            ..Default::default()
        }
    }

    fn summaries(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.summary.as_str()).collect()
    }

    #[test]
    fn every_detector_has_its_own_name() {
        let names: BTreeSet<&str> = DETECTORS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), DETECTORS.len());
    }

    #[test]
    fn injection_coverage_of_the_pods_namespace_and_service_account() {
        let mut evidence = own_list_evidence();
        evidence.admission = Admission::Active { policy: "regcred-operator-inject-pull-secret".into() };
        evidence.credentials = vec![credential(&["*"], &[], None), credential(&["other"], &[], None)];
        let lines = injection_coverage(&Context::new(&evidence));
        assert!(
            lines[0].starts_with("MutatingAdmissionPolicy regcred-operator-inject-pull-secret is installed and bound")
        );
        assert_eq!(
            lines[1..],
            [
                "RegistryCredential corp selects namespace shop and ServiceAccount default: injects Secret \"regcred\" into Pods created here"
            ]
        );

        evidence.credentials[0].spec.inject_into_pods = false;
        let lines = injection_coverage(&Context::new(&evidence));
        assert!(lines[1].ends_with("spec.injectIntoPods is false: Secret \"regcred\" is not injected"), "{lines:?}");

        evidence.credentials[0].spec.inject_into_pods = true;
        evidence.admission = Admission::NotServed;
        let lines = injection_coverage(&Context::new(&evidence));
        assert!(lines[0].contains("does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy"));
        assert!(lines[1].ends_with("would inject Secret \"regcred\", but the policy is not active"), "{lines:?}");

        evidence.credentials = vec![credential(&["other"], &[], None)];
        let lines = injection_coverage(&Context::new(&evidence));
        assert_eq!(lines[1], "no RegistryCredential selects namespace shop and ServiceAccount default");

        // The namespace of the sources is selected by name only, as the controller and the policy do.
        evidence.credentials = vec![credential(&["*"], &[], None)];
        evidence.pod.metadata.namespace = Some("regcred-system".into());
        let lines = injection_coverage(&Context::new(&evidence));
        assert_eq!(lines[1], "no RegistryCredential selects namespace regcred-system and ServiceAccount default");
        assert_eq!(
            why_not_selected(&evidence.credentials[0], "regcred-system", None, &evidence.reserved_namespaces())
                .as_deref(),
            Some("regcred-system holds credential sources, selected only by an exact include entry")
        );
    }

    #[test]
    fn case_2_the_pods_own_pull_secrets_hide_the_service_accounts() {
        let evidence = own_list_evidence();
        let causes = own_pull_secrets_hide_service_account(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["the Pod's own pull secrets hide ServiceAccount default's [\"regcred\"]"]);
        let cause = &causes[0];
        assert!(
            cause
                .details
                .iter()
                .any(|d| d == "\"regcred\" of ServiceAccount default covers registry registry.corp (container app)")
        );
        assert_eq!(
            cause.commands,
            [
                r#"kubectl patch deployment web -n shop --type=json -p '[{"op":"add","path":"/spec/template/spec/imagePullSecrets/-","value":{"name":"regcred"}}]'"#
            ]
        );

        let mut bare = own_list_evidence();
        bare.pod.metadata.owner_references = None;
        let causes = own_pull_secrets_hide_service_account(&Context::new(&bare));
        assert_eq!(
            causes[0].commands,
            [
                "kubectl delete pod web-1 -n shop && kubectl apply -f <its manifest>   # after adding [\"regcred\"] to its imagePullSecrets"
            ]
        );

        // With injection, a Pod created again gets the copy appended to its own list.
        let mut injected = own_list_evidence();
        injected.admission = Admission::Active { policy: "p".into() };
        injected.credentials = vec![credential(&["*"], &[], None)];
        let causes = own_pull_secrets_hide_service_account(&Context::new(&injected));
        assert!(causes[0].commands[0].starts_with("kubectl delete pod web-1 -n shop"), "{:?}", causes[0].commands);

        // Nothing hidden when the Pod lists none, or when its own cover every image.
        let mut none = own_list_evidence();
        none.pod.spec.as_mut().unwrap().image_pull_secrets = None;
        assert!(own_pull_secrets_hide_service_account(&Context::new(&none)).is_empty());
        let mut covered = own_list_evidence();
        covered.secrets.insert("quay-pull".into(), pull_secret("registry.corp", "2025-12-01T00:00:00Z"));
        assert!(own_pull_secrets_hide_service_account(&Context::new(&covered)).is_empty());
    }

    #[test]
    fn case_3_created_before_the_secret_existed_with_the_command_that_recreates_it() {
        let mut evidence = own_list_evidence();
        evidence.admission = Admission::Active { policy: "p".into() };
        evidence.credentials = vec![credential(&["*"], &[], None)];
        let causes = created_before_the_secret(&Context::new(&evidence));
        assert_eq!(
            summaries(&causes),
            ["the Pod was created before Secret \"regcred\" of RegistryCredential corp existed"]
        );
        assert_eq!(
            causes[0].commands,
            [
                "kubectl delete pod web-1 -n shop   # ReplicaSet web-5d9c creates it again",
                "kubectl rollout restart deployment/web -n shop   # every Pod of it, when they all predate the fix",
            ]
        );
        assert!(causes[0].details.contains(&"admission injection gives \"regcred\" to a Pod created now".to_owned()));

        let mut bare = own_list_evidence();
        bare.credentials = vec![credential(&["*"], &[], None)];
        bare.pod.metadata.owner_references = None;
        let causes = created_before_the_secret(&Context::new(&bare));
        assert_eq!(
            causes[0].commands,
            [
                "kubectl delete pod web-1 -n shop && kubectl apply -f <its manifest>   # a bare Pod: nothing creates it again"
            ]
        );

        let mut later = own_list_evidence();
        later.credentials = vec![credential(&["*"], &[], None)];
        later.secrets.insert("regcred".into(), pull_secret("registry.corp", "2025-12-31T00:00:00Z"));
        assert!(created_before_the_secret(&Context::new(&later)).is_empty(), "the copy was there first");
    }

    #[test]
    fn kubernetes_1_35_cached_image_needs_the_pods_own_credential() {
        let failed = PodEvent {
            reason: "Failed".into(),
            message: "Failed to pull image \"registry.corp/app:1\": 401 Unauthorized".into(),
            warning: true,
            count: 2,
        };
        let evidence = |version: &str, policy: Option<&str>| Evidence {
            pod: pod(
                serde_json::json!({"nodeName": "node-1",
                                   "containers": [{"name": "app", "image": "registry.corp/app:1", "imagePullPolicy": policy}]}),
                None,
            ),
            events: vec![failed.clone()],
            kubelet_version: Some(version.to_owned()),
            ..Default::default()
        };
        let on_1_35 = evidence("v1.35.2", None);
        let causes = cached_image_needs_own_credential(&Context::new(&on_1_35));
        assert_eq!(
            summaries(&causes),
            [
                "on Kubernetes 1.35+ an image cached on the node is not usable by a Pod without its own credential (container app)"
            ]
        );
        assert!(causes[0].details[0].contains("KubeletEnsureSecretPulledImages"));
        assert!(causes[0].details[0].contains("despite imagePullPolicy IfNotPresent"));
        for quiet in [evidence("v1.34.5", None), evidence("v1.36.0", Some("Always"))] {
            assert!(cached_image_needs_own_credential(&Context::new(&quiet)).is_empty());
        }
        assert_eq!(kubernetes_minor("v1.35.0-eks-4f4795d"), Some((1, 35)));
        assert_eq!(kubernetes_minor("1.9"), Some((1, 9)));
        assert_eq!(kubernetes_minor("unknown"), None);
    }

    #[test]
    fn no_suggested_command_prints_secret_data() {
        let evidence = own_list_evidence();
        let causes = registry_not_covered(&Context::new(&evidence));
        let reading: Vec<&String> =
            causes.iter().flat_map(|c| &c.commands).filter(|c| c.contains("base64 -d")).collect();
        assert!(!reading.is_empty());
        for command in reading {
            assert!(command.contains("| regcred-operator normalize >/dev/null"), "{command}");
        }
    }

    #[test]
    fn pull_secrets_unusable_or_unreadable() {
        let mut evidence = own_list_evidence();
        evidence.secrets.insert(
            "quay-pull".into(),
            SecretLookup::Found { secret_type: Some("Opaque".into()), data: BTreeMap::new(), created: None },
        );
        let causes = pull_secrets_unusable(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["\"quay-pull\" is a Secret of type Opaque, not a pull secret"]);
        evidence.secrets.insert("quay-pull".into(), SecretLookup::Unreadable("forbidden".into()));
        let causes = pull_secrets_unusable(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["pull secret \"quay-pull\" could not be read: forbidden"]);
        assert!(pull_secrets_unusable(&Context::new(&own_list_evidence())).is_empty());
    }

    #[test]
    fn pull_secrets_missing_with_the_near_miss() {
        let mut evidence = own_list_evidence();
        evidence.secrets.insert("quay-pull".into(), SecretLookup::Missing);
        evidence.secret_names = vec![("shop".into(), "quay-pul".into())];
        let causes = pull_secrets_missing(&Context::new(&evidence));
        assert_eq!(
            summaries(&causes),
            ["pull secret \"quay-pull\" does not exist in namespace shop; did you mean \"quay-pul\"?"]
        );
        assert_eq!(causes[0].rank, RANK_SECRET_MISSING);
    }

    #[test]
    fn registry_not_covered_by_the_pods_own_pull_secrets() {
        let causes = registry_not_covered(&Context::new(&own_list_evidence()));
        assert_eq!(summaries(&causes), ["no pull secret of the Pod covers registry registry.corp (container app)"]);
        assert!(causes[0].details[0].contains("against the keys [\"quay.io\"] of [\"quay-pull\"]"), "{:?}", causes[0]);
    }

    #[test]
    fn no_pull_secret_when_the_pod_and_its_account_list_none() {
        let mut evidence = own_list_evidence();
        evidence.pod.spec.as_mut().unwrap().image_pull_secrets = None;
        evidence.service_account = Some(account(&[]));
        let causes = nothing_provides_a_pull_secret(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["ServiceAccount default has no pull secret, so the Pod got none"]);
        assert!(causes[0].details.contains(&"no RegistryCredential exists to provide one".to_owned()));
        assert!(
            nothing_provides_a_pull_secret(&Context::new(&own_list_evidence())).is_empty(),
            "the Pod lists its own"
        );
        evidence.service_account = Some(account(&["regcred"]));
        assert!(nothing_provides_a_pull_secret(&Context::new(&evidence)).is_empty());
        let race = service_account_patched_after_the_pod(&Context::new(&evidence));
        assert_eq!(summaries(&race), ["the Pod was created before ServiceAccount default had its pull secrets"]);
    }

    #[test]
    fn credentials_refused_when_every_image_is_covered() {
        let mut evidence = own_list_evidence();
        evidence.secrets.insert("quay-pull".into(), pull_secret("registry.corp", "2025-12-01T00:00:00Z"));
        evidence.events = vec![PodEvent {
            reason: "Failed".into(),
            message: "Failed to pull image \"registry.corp/app:1\": 403 Forbidden".into(),
            warning: true,
            count: 1,
        }];
        let causes = credentials_refused(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["the registry refused the credentials the kubelet sent"]);
        evidence.events.clear();
        assert!(credentials_refused(&Context::new(&evidence)).is_empty());
    }
}
