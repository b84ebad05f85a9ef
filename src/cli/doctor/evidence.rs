//! What `doctor` read from the cluster about one Pod, what every detector derives from it, and
//! what the detectors hand back: the vocabulary below the detectors and the report.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::RegistryCredential;
use crate::crd::selection::source_namespaces;
use crate::credential::ImageReference;
use crate::credential::pull_secret::{PullSecretReading, read_pull_secret};

/// What `doctor` read about one Pod. Secret data is held only to be parsed, never shown.
#[derive(Debug, Default)]
pub(super) struct Evidence {
    pub(super) pod: Pod,
    /// The labels of the Pod's namespace, if it could be read.
    pub(super) namespace_labels: Option<BTreeMap<String, String>>,
    pub(super) service_account: Option<ServiceAccount>,
    /// Every Secret the Pod spec or its ServiceAccount names.
    pub(super) secrets: BTreeMap<String, SecretLookup>,
    /// `(namespace, name)` of the Secrets in the cluster (metadata only, every namespace when
    /// allowed), for near misses and same-named Secrets elsewhere.
    pub(super) secret_names: Vec<(String, String)>,
    pub(super) credentials: Vec<RegistryCredential>,
    pub(super) events: Vec<PodEvent>,
    /// Whether the admission policy that injects pull secrets into Pods is installed.
    pub(super) admission: Admission,
    /// The version of the kubelet on the Pod's node (`v1.35.2`), when the Pod is scheduled and
    /// the Node could be read.
    pub(super) kubelet_version: Option<String>,
    /// The workload that owns the Pod's owner (the Deployment of its ReplicaSet): `(kind, name)`.
    pub(super) workload: Option<(String, String)>,
    /// When it was read: what "expired" is judged against.
    pub(super) read_at: Timestamp,
}

impl Evidence {
    /// The namespaces the operator reads sources from, as far as the credentials tell: a source
    /// is refused anywhere else, and these namespaces are selected only by name.
    pub(super) fn reserved_namespaces(&self) -> Vec<String> {
        reserved_namespaces(&self.credentials)
    }

    /// The `imagePullSecrets` entries of the Pod's ServiceAccount as it is now.
    pub(super) fn service_account_pull_secrets(&self) -> Vec<String> {
        self.service_account
            .iter()
            .flat_map(|sa| sa.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect()
    }
}

/// A pull secret as `doctor` read it. `Debug` names its data keys, never their values.
pub(super) enum SecretLookup {
    Found {
        secret_type: Option<String>,
        data: BTreeMap<String, Vec<u8>>,
        created: Option<Timestamp>,
        /// The UID of the RegistryCredential that controls it (its owner reference): a copy.
        copy_of: Option<String>,
    },
    Missing,
    /// It could not be read (e.g. forbidden): the reason.
    Unreadable(String),
}

impl std::fmt::Debug for SecretLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretLookup::Found { secret_type, data, created, copy_of } => f
                .debug_struct("Found")
                .field("secret_type", secret_type)
                .field("data_keys", &data.keys().collect::<Vec<_>>())
                .field("created", created)
                .field("copy_of", copy_of)
                .finish(),
            SecretLookup::Missing => f.write_str("Missing"),
            SecretLookup::Unreadable(why) => f.debug_tuple("Unreadable").field(why).finish(),
        }
    }
}

/// The namespaces of the credentials' sources: the operator trusts them for sources, and selects
/// them only by an exact include entry.
pub(super) fn reserved_namespaces(credentials: &[RegistryCredential]) -> Vec<String> {
    source_namespaces(credentials.iter().map(|credential| &credential.spec))
}

/// The MutatingAdmissionPolicy that appends a RegistryCredential's copy to new Pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Admission {
    /// A policy with RegistryCredentials as parameters, and a binding for it.
    Active {
        policy: String,
    },
    /// The policy exists but no binding uses it: it changes nothing.
    Unbound {
        policy: String,
    },
    NotInstalled,
    /// No version of the MutatingAdmissionPolicy API is served (1.34 / 1.35 as they ship).
    NotServed,
    /// It could not be read: the reason.
    Unknown(String),
    #[default]
    NotRead,
}

/// An Event about the Pod, from core/v1 or events.k8s.io/v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodEvent {
    pub(super) reason: String,
    pub(super) message: String,
    pub(super) warning: bool,
    pub(super) count: i32,
}

impl PodEvent {
    /// About the Pod's sandbox (pause) image, which the node pulls without any pull secret.
    pub(super) fn is_sandbox(&self) -> bool {
        self.reason == "FailedCreatePodSandBox" || self.message.to_ascii_lowercase().contains("pod sandbox")
    }
}

/// One likely cause, with the commands that remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cause {
    /// Lower is more likely to be what blocks the Pod.
    pub(super) rank: u8,
    pub(super) summary: String,
    pub(super) details: Vec<String>,
    pub(super) commands: Vec<String>,
}

/// How one container image fares with the Pod's pull secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ImageCheck {
    pub(super) container: String,
    pub(super) image: String,
    /// The registry, or why the reference does not parse.
    pub(super) registry: Result<String, String>,
    /// `(secret, key)` the kubelet would use.
    pub(super) covered_by: Option<(String, String)>,
}

#[derive(Debug, Default)]
pub(super) struct Diagnosis {
    pub(super) images: Vec<ImageCheck>,
    /// Most likely first.
    pub(super) causes: Vec<Cause>,
}

pub(super) const RANK_SANDBOX: u8 = 0;
pub(super) const RANK_SECRET_MISSING: u8 = 1;
pub(super) const RANK_SECRET_UNUSABLE: u8 = 2;
pub(super) const RANK_NOT_COVERED: u8 = 3;
pub(super) const RANK_RACE: u8 = 4;
pub(super) const RANK_NOT_PROVIDED: u8 = 5;
pub(super) const RANK_REFUSED: u8 = 6;
/// Not this Pod's trouble, but its workload's next Pods'.
pub(super) const RANK_NEW_PODS_REFUSED: u8 = 7;

/// What every detector reads: the evidence, and what is derived from it once.
pub(super) struct Context<'e> {
    pub(super) evidence: &'e Evidence,
    pub(super) namespace: String,
    pub(super) spec: PodSpec,
    /// The Pod's own `spec.imagePullSecrets`, the only ones the kubelet uses.
    pub(super) pod_secrets: Vec<String>,
    pub(super) account: String,
    /// Every Secret that was found, read as a pull secret.
    pub(super) readings: BTreeMap<&'e str, PullSecretReading>,
    pub(super) images: Vec<ImageCheck>,
}

impl<'e> Context<'e> {
    pub(super) fn new(evidence: &'e Evidence) -> Context<'e> {
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
    pub(super) fn uncovered_private_images(&self) -> impl Iterator<Item = (&ImageCheck, ImageReference)> {
        self.images.iter().filter(|check| check.covered_by.is_none()).filter_map(|check| {
            let reference = ImageReference::parse(&check.image).ok().filter(|r| !r.is_docker_hub())?;
            Some((check, reference))
        })
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

/// A message on one line: what Events and status hold may carry line breaks a tenant put there.
pub(super) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::fixture::own_list_evidence;

    #[test]
    fn the_evidence_prints_no_secret_data() {
        let mut evidence = own_list_evidence();
        let config = r#"{"auths":{"quay.io":{"username":"robot","password":"Sentinel-Evidence-71c3"}}}"#;
        let found = SecretLookup::Found {
            secret_type: Some("kubernetes.io/dockerconfigjson".into()),
            data: [(".dockerconfigjson".to_owned(), config.as_bytes().to_vec())].into(),
            created: None,
            copy_of: None,
        };
        evidence.secrets.insert("quay-pull".into(), found);
        let printed = format!("{evidence:?}");
        assert!(printed.contains(".dockerconfigjson"), "{printed}");
        assert!(!printed.contains("Sentinel") && !printed.contains("83, 101, 110"), "{printed}");
    }
}
