//! Turning a RegistryCredential's source Secret into the payload of the copies. Pure.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use thiserror::Error;

use super::labels::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE};
use crate::crd::RegistryCredentialSpec;
use crate::credential::{
    InvalidDockerConfig, KeyProblem, KeyRewrite, Normalized, docker_config_from_basic_auth, normalize_docker_config,
    normalize_registry_key,
};

/// A usable source: the canonical docker config JSON and what status shows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    /// Canonical `.dockerconfigjson`; a credential, never logged.
    pub payload: String,
    pub registries: Vec<String>,
    pub rewrites: Vec<KeyRewrite>,
    /// Warnings, already rendered; they name keys and fields, never values.
    pub warnings: Vec<String>,
}

/// Why a source cannot be used. Messages name the Secret and the problem, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourceProblem {
    #[error("source Secret {namespace}/{name} is not in a namespace the operator trusts for sources ({trusted})")]
    NotTrusted { namespace: String, name: String, trusted: String },
    #[error("source Secret {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error(
        "source Secret {namespace}/{name} has no `{DOCKER_CONFIG_JSON_KEY}`, `{DOCKERCFG_KEY}`, or `username` and `password`"
    )]
    NoCredentialKeys { namespace: String, name: String },
    #[error(
        "source Secret {namespace}/{name} holds `username` and `password`: spec.registries must name the registries they are for"
    )]
    RegistriesRequired { namespace: String, name: String },
    #[error("spec.registries[{index}] {registry:?}: {problem}")]
    InvalidRegistry { index: usize, registry: String, problem: KeyProblem },
    #[error("source Secret {namespace}/{name}: {invalid}")]
    Invalid { namespace: String, name: String, invalid: InvalidDockerConfig },
    #[error("source Secret {namespace}/{name} has no entry for any registry in spec.registries")]
    NoAllowedRegistries { namespace: String, name: String },
}

impl SourceProblem {
    /// The condition reason and Event reason for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceProblem::NotTrusted { .. } => "SourceNotTrusted",
            SourceProblem::NotFound { .. } => "SourceNotFound",
            _ => "SourceInvalid",
        }
    }
}

/// Resolves the source of `spec`, given the source Secret from the cache (`None` when absent).
pub fn resolve_source(
    spec: &RegistryCredentialSpec,
    secret: Option<&Secret>,
    trusted_namespaces: &[String],
) -> Result<ResolvedSource, SourceProblem> {
    let Some(reference) = &spec.source.secret_ref else {
        unreachable!("the CRD's validation requires exactly one source, and secretRef is the only kind")
    };
    let (namespace, name) = (reference.namespace.clone(), reference.name.clone());
    if !trusted_namespaces.contains(&namespace) {
        return Err(SourceProblem::NotTrusted { namespace, name, trusted: trusted_namespaces.join(", ") });
    }
    let Some(secret) = secret else {
        return Err(SourceProblem::NotFound { namespace, name });
    };
    let allowed = canonical_registries(&spec.registries)?;
    let data = secret.data.clone().unwrap_or_default();
    let field = |key: &str| data.get(key).map(|value| value.0.as_slice());
    let normalized: Result<Normalized, InvalidDockerConfig> = match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON_TYPE) => normalize_docker_config(field(DOCKER_CONFIG_JSON_KEY).unwrap_or_default()),
        Some(DOCKERCFG_TYPE) => normalize_docker_config(field(DOCKERCFG_KEY).unwrap_or_default()),
        _ => match (field(DOCKER_CONFIG_JSON_KEY).or(field(DOCKERCFG_KEY)), field("username"), field("password")) {
            (Some(config), _, _) => normalize_docker_config(config),
            (None, Some(username), Some(password)) => {
                if allowed.is_empty() {
                    return Err(SourceProblem::RegistriesRequired { namespace, name });
                }
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                docker_config_from_basic_auth(&spec.registries, &text(username), &text(password))
            }
            _ => return Err(SourceProblem::NoCredentialKeys { namespace, name }),
        },
    };
    let mut normalized = normalized.map_err(|invalid| SourceProblem::Invalid {
        namespace: secret.namespace().unwrap_or_default(),
        name: secret.name_any(),
        invalid,
    })?;
    if !allowed.is_empty() {
        normalized.config.retain_registries(&allowed);
        if normalized.config.is_empty() {
            return Err(SourceProblem::NoAllowedRegistries { namespace, name });
        }
    }
    Ok(ResolvedSource {
        payload: normalized.config.to_canonical_json(),
        registries: normalized.config.registries().map(str::to_owned).collect(),
        rewrites: normalized.rewrites,
        warnings: normalized.warnings.iter().map(ToString::to_string).collect(),
    })
}

fn canonical_registries(registries: &[String]) -> Result<Vec<String>, SourceProblem> {
    registries
        .iter()
        .enumerate()
        .map(|(index, registry)| {
            normalize_registry_key(registry)
                .map(|key| key.canonical)
                .map_err(|problem| SourceProblem::InvalidRegistry { index, registry: registry.clone(), problem })
        })
        .collect()
}
