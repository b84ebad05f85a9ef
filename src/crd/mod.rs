//! The `RegistryCredential` custom resource (group `regcred.dev`, version `v1alpha1`).
//!
//! Doc comments on the fields are what `kubectl explain registrycredential.spec` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::credential::KeyRewrite;

pub mod selection;

/// A DNS-1123 subdomain: the name of a Secret or ServiceAccount.
const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label: the name of a namespace.
const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A namespace name in which `*` matches any run of characters and `?` any one character.
const NAMESPACE_GLOB: &str = r"^[a-z0-9*?]([-a-z0-9*?]*[a-z0-9*?])?$";
/// A ServiceAccount name, or `*` for every ServiceAccount.
const SERVICE_ACCOUNT_NAME: &str = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$";
/// A credential provider plugin's file name: no path separators, not `.` or `..`.
const PROVIDER_NAME: &str = r"^[A-Za-z0-9_][-A-Za-z0-9_.]*$";
/// A registry as written in docker config keys: optional scheme, host, optional port and path.
const REGISTRY: &str = r"^(https?://)?[A-Za-z0-9*?]([-A-Za-z0-9*?.]*)(:[0-9]{1,5})?(/[-a-z0-9._/]*)?$";

/// A credential for pulling images, copied as a normalized `kubernetes.io/dockerconfigjson` Secret
/// into every selected namespace and added to the `imagePullSecrets` of the selected
/// ServiceAccounts there.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "regcred.dev",
    version = "v1alpha1",
    kind = "RegistryCredential",
    shortname = "regcred",
    status = "RegistryCredentialStatus",
    doc = "Declares an image pull credential and the namespaces and ServiceAccounts that receive it.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.synced"),
    printcolumn(name = "Registries", type_ = "string", json_path = ".status.registries"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63")
        .message("the name of a RegistryCredential is a label value on its copies: at most 63 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredentialSpec {
    /// Where the credential comes from. Exactly one kind of source must be set.
    pub source: CredentialSource,

    /// Registries the credential is for (`registry.internal.corp`, `quay.io/org`). Required when
    /// the source Secret holds `username` and `password`; for docker config sources it is an
    /// allow-list: entries for other registries are left out of the copies. Written in any form a
    /// docker config accepts; compared after normalization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = REGISTRY)))]
    #[schemars(length(max = 64))]
    pub registries: Vec<String>,

    /// Name of the Secret created in each selected namespace, and of the `imagePullSecrets`
    /// entry added to the selected ServiceAccounts.
    #[serde(default = "default_secret_name")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub secret_name: String,

    /// Selects namespaces by label, in addition to `namespaces`. Empty or absent selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Selects namespaces by name.
    #[serde(default)]
    pub namespaces: NamespaceFilter,

    /// Which ServiceAccounts in each selected namespace get the pull secret reference.
    #[serde(default)]
    pub service_accounts: ServiceAccountSelector,

    /// What to do when a Secret named `secretName` exists in a namespace and was not created by
    /// this operator: `Skip` leaves it alone and reports the namespace as failed; `Adopt` takes
    /// it over and overwrites it.
    #[serde(default)]
    pub on_conflict: OnConflict,

    /// Remove the copy and the ServiceAccount references from namespaces that stop matching.
    #[serde(default = "default_true")]
    pub prune: bool,

    /// Add `secretName` to the `imagePullSecrets` of every Pod created in a selected namespace
    /// under a selected ServiceAccount, also when the Pod lists pull secrets of its own. Done at
    /// admission by the MutatingAdmissionPolicy installed with the operator (Kubernetes 1.36+;
    /// 1.34 and 1.35 where they serve its v1beta1 API), so Pods created before the ServiceAccount
    /// is patched get it too.
    #[serde(default = "default_true")]
    pub inject_into_pods: bool,

    /// Evict Pods in selected namespaces that wait in `ErrImagePull` / `ImagePullBackOff`
    /// without `secretName` in their `imagePullSecrets`, when a controller owns them, so that it
    /// creates them again with the secret. PodDisruptionBudgets are respected; bare Pods are
    /// only reported, never deleted.
    #[serde(default)]
    pub evict_stuck_pods: bool,
}

/// The source of the credential.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.secretRef), has(self.credentialProvider)].filter(s, s).size() == 1").message("exactly one source must be set: secretRef or credentialProvider"))]
pub struct CredentialSource {
    /// A Secret in one of the namespaces the operator trusts for sources, of type
    /// `kubernetes.io/dockerconfigjson`, `kubernetes.io/dockercfg`, or holding `username` and
    /// `password` keys (then `registries` is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,

    /// A credential minted by a kubelet image credential provider plugin that the operator was
    /// started with (`--credential-provider-config`), refreshed before it lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_provider: Option<CredentialProviderSource>,
}

/// A kubelet image credential provider to ask for the credential, and what to ask it.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderSource {
    /// Name of a provider in the operator's credential provider config; never a path.
    #[schemars(regex(pattern = PROVIDER_NAME), length(min = 1, max = 253))]
    pub name: String,
    /// The image the plugin is asked about (`111122223333.dkr.ecr.us-east-1.amazonaws.com/app`);
    /// it must match the provider's `matchImages`, and the returned auth must cover it.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// A ServiceAccount, in a namespace the operator trusts for sources, whose token (for the
    /// provider's `tokenAttributes.serviceAccountTokenAudience`) and listed annotations are passed
    /// to the plugin, so the cloud identity comes from workload identity federation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountReference>,
}

/// A ServiceAccount by namespace and name.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountReference {
    /// Namespace of the ServiceAccount.
    #[schemars(regex(pattern = DNS_LABEL), length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the ServiceAccount.
    #[schemars(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub name: String,
}

/// A Secret by namespace and name.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretReference {
    /// Namespace of the Secret.
    #[schemars(regex(pattern = DNS_LABEL), length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub name: String,
}

/// Namespace name globs. A namespace is selected when it matches an include glob and no exclude
/// glob. The system namespaces `kube-system`, `kube-public` and `kube-node-lease` are only
/// selected when an include entry names them exactly, never through a glob.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NamespaceFilter {
    /// Globs of namespaces to select (`*` any characters, `?` one character). Default `["*"]`.
    #[serde(default = "default_include")]
    #[schemars(inner(regex(pattern = NAMESPACE_GLOB)))]
    pub include: Vec<String>,
    /// Globs of namespaces never to select; exclude wins over include.
    #[serde(default)]
    #[schemars(inner(regex(pattern = NAMESPACE_GLOB)))]
    pub exclude: Vec<String>,
}

impl Default for NamespaceFilter {
    fn default() -> Self {
        NamespaceFilter { include: default_include(), exclude: Vec::new() }
    }
}

/// ServiceAccounts to patch in each selected namespace.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceAccountSelector {
    /// ServiceAccount names; `*` selects every ServiceAccount. Default `["default"]`.
    #[serde(default = "default_service_accounts")]
    #[schemars(inner(regex(pattern = SERVICE_ACCOUNT_NAME)))]
    pub names: Vec<String>,
}

impl Default for ServiceAccountSelector {
    fn default() -> Self {
        ServiceAccountSelector { names: default_service_accounts() }
    }
}

/// What to do with an existing Secret of the same name that this operator does not manage.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Leave the Secret alone and report the namespace as failed.
    #[default]
    Skip,
    /// Take the Secret over: overwrite it and manage it from now on.
    Adopt,
}

/// Observed state of a RegistryCredential.
// The API server defaults a new object's status to generation 0 observed, so that kstatus (Flux,
// `kubectl wait`) reads it as InProgress until the operator has looked, instead of Current.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": 0}))]
pub struct RegistryCredentialStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when every selected namespace holds the current copy. `Stalled` is True
    /// while a person has to act (a bad source, a conflict); `Reconciling` is True while failed
    /// writes are retried.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// `synced/matched`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<String>,
    /// Counts of selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceCounts>,
    /// Namespaces that could not be synced, at most 20, sorted by namespace.
    #[serde(default)]
    pub failures: Vec<SyncFailure>,
    /// Canonical registry keys in the copies.
    #[serde(default)]
    pub registries: Vec<String>,
    /// Source keys that normalization rewrote.
    #[serde(default)]
    pub normalized: Vec<KeyRewrite>,
    /// Pods found stuck in `ErrImagePull` / `ImagePullBackOff` without the copy, with
    /// `evictStuckPods` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_pods: Option<StuckPodCounts>,
    /// When the credential in the copies stops working, as the source states it: the annotation
    /// `regcred.dev/expires-at` (RFC 3339), the key `expires_at` (UNIX seconds, External Secrets'
    /// ECR generator), or the `exp` of a password that is a JWT; the earliest of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Selected ServiceAccounts annotated `kubernetes.io/enforce-mountable-secrets: "true"` in
    /// namespaces where new Pods get the copy at admission (`namespace/name`, at most 20): the API
    /// server refuses their Pods while they do not list the copy. Label such a namespace
    /// `regcred.dev/pod-injection: disabled` to opt it out of injection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mountable_secrets_enforced: Vec<String>,
}

/// What recovery of stuck Pods did.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StuckPodCounts {
    /// Pods evicted so far so that their controllers create them again with the secret.
    pub evicted: i64,
    /// Stuck Pods that no controller would recreate (`namespace/name`, at most 20): reported,
    /// never deleted.
    #[serde(default)]
    pub bare: Vec<String>,
    /// Stuck Pods left alone because evicting them would not help, or not now (`namespace/name:
    /// why`, at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// How many selected namespaces hold the current copy.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceCounts {
    /// Namespaces selected by this RegistryCredential.
    pub matched: i32,
    /// Selected namespaces holding the current copy, with every selected ServiceAccount patched.
    pub synced: i32,
    /// Selected namespaces where syncing failed.
    pub failed: i32,
}

/// Why one namespace is not synced.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    /// The namespace.
    pub namespace: String,
    /// A CamelCase reason, such as `SecretConflict`.
    pub reason: String,
    /// What went wrong, for people.
    pub message: String,
}

fn default_secret_name() -> String {
    "regcred".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_include() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_service_accounts() -> Vec<String> {
    vec!["default".to_owned()]
}
