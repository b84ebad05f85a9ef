//! Turning a RegistryCredential's source Secret into the payload of the copies. Pure.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use thiserror::Error;

use super::ownership::content_digest;
use crate::crd::RegistryCredentialSpec;
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE};
use crate::credential::{
    InvalidDockerConfig, KeyProblem, KeyRewrite, Normalized, docker_config_from_basic_auth, normalize_docker_config,
    normalize_registry_key, redact_key,
};
use crate::reason::Reason;

/// A usable source: the canonical docker config JSON and what status shows about it. `Debug`
/// shows what status shows, never the payload nor its digest.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ResolvedSource {
    /// Canonical `.dockerconfigjson`; a credential, never logged.
    pub(crate) payload: String,
    /// The digest written on each copy (see [`content_digest`]).
    pub(crate) digest: String,
    pub(crate) registries: Vec<String>,
    pub(crate) rewrites: Vec<KeyRewrite>,
    /// Warnings, already rendered; they name keys and fields, never values.
    pub(crate) warnings: Vec<String>,
}

impl std::fmt::Debug for ResolvedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedSource")
            .field("registries", &self.registries)
            .field("rewrites", &self.rewrites)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Why a source cannot be used. Messages name the Secret and the problem, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum SourceProblem {
    // The CRD's validation requires one; a credential stored before that rule, or past it, is
    // reported like any other unusable source, never a crash.
    #[error("spec.source names no source: spec.source.secretRef is required")]
    NoSource,
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
    pub(crate) fn reason(&self) -> Reason {
        match self {
            SourceProblem::NotTrusted { .. } => Reason::SourceNotTrusted,
            SourceProblem::NotFound { .. } => Reason::SourceNotFound,
            _ => Reason::SourceInvalid,
        }
    }
}

/// Resolves the source of `spec`, given the source Secret from the cache (`None` when absent).
pub(crate) fn resolve_source(
    spec: &RegistryCredentialSpec,
    secret: Option<&Secret>,
    trusted_namespaces: &[String],
) -> Result<ResolvedSource, SourceProblem> {
    let Some(reference) = &spec.source.secret_ref else {
        return Err(SourceProblem::NoSource);
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
    let payload = normalized.config.to_canonical_json();
    Ok(ResolvedSource {
        digest: content_digest(payload.as_bytes()),
        payload,
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
                .map_err(|problem| SourceProblem::InvalidRegistry { index, registry: redact_key(registry), problem })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;

    fn spec(registries: &[&str]) -> RegistryCredentialSpec {
        serde_json::from_value(json!({
            "source": {"secretRef": {"namespace": "regcred-system", "name": "src"}},
            "registries": registries,
        }))
        .unwrap()
    }

    fn secret(type_: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("src".into()),
                namespace: Some("regcred-system".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn trusted() -> Vec<String> {
        vec!["regcred-system".into()]
    }

    const TWO_REGISTRIES: &str =
        r#"{"auths":{"https://a.test/v2/":{"username":"u","password":"p"},"b.test":{"username":"u","password":"p"}}}"#;

    #[test]
    fn a_docker_config_source_is_normalized() {
        let resolved = resolve_source(
            &spec(&[]),
            Some(&secret(DOCKER_CONFIG_JSON_TYPE, &[(DOCKER_CONFIG_JSON_KEY, TWO_REGISTRIES)])),
            &trusted(),
        )
        .unwrap();
        assert_eq!(resolved.registries, vec!["a.test", "b.test"]);
        assert_eq!(resolved.rewrites, vec![KeyRewrite { from: "https://a.test/v2/".into(), to: "a.test".into() }]);
    }

    #[test]
    fn a_credential_without_a_source_is_an_invalid_source_not_a_crash() {
        let spec: RegistryCredentialSpec = serde_json::from_value(json!({"source": {}})).unwrap();
        let problem = resolve_source(&spec, None, &trusted()).unwrap_err();
        assert_eq!(problem, SourceProblem::NoSource);
        assert_eq!(problem.reason(), Reason::SourceInvalid);
    }

    #[test]
    fn a_resolved_source_prints_neither_its_payload_nor_its_digest() {
        let password = "Sentinel-Debug-9f2e";
        let config = format!(r#"{{"auths":{{"a.test":{{"username":"u","password":"{password}"}}}}}}"#);
        let source = secret(DOCKER_CONFIG_JSON_TYPE, &[(DOCKER_CONFIG_JSON_KEY, &config)]);
        let resolved = resolve_source(&spec(&[]), Some(&source), &trusted()).unwrap();
        let printed = format!("{resolved:?} {:?}", Ok::<_, SourceProblem>(resolved.clone()));
        assert!(printed.contains("a.test"), "{printed}");
        for derived in [password, &resolved.payload, &resolved.digest, "dTpTZW50aW5l"] {
            assert!(!printed.contains(derived), "{printed}");
        }
    }

    #[test]
    fn registries_are_an_allow_list_compared_after_normalization() {
        let source = secret(DOCKER_CONFIG_JSON_TYPE, &[(DOCKER_CONFIG_JSON_KEY, TWO_REGISTRIES)]);
        let resolved = resolve_source(&spec(&["https://B.test/v2/"]), Some(&source), &trusted()).unwrap();
        assert_eq!(resolved.registries, vec!["b.test"]);
        let none = resolve_source(&spec(&["c.test"]), Some(&source), &trusted()).unwrap_err();
        assert_eq!(none.reason(), Reason::SourceInvalid);
        assert!(none.to_string().contains("no entry for any registry in spec.registries"), "{none}");
    }

    #[test]
    fn legacy_dockercfg_and_basic_auth_sources() {
        let dockercfg = secret(DOCKERCFG_TYPE, &[(DOCKERCFG_KEY, r#"{"a.test":{"username":"u","password":"p"}}"#)]);
        assert_eq!(resolve_source(&spec(&[]), Some(&dockercfg), &trusted()).unwrap().registries, vec!["a.test"]);
        let basic = secret("kubernetes.io/basic-auth", &[("username", "u"), ("password", "p")]);
        assert_eq!(
            resolve_source(&spec(&["quay.io/org"]), Some(&basic), &trusted()).unwrap().registries,
            vec!["quay.io/org"]
        );
        let error = resolve_source(&spec(&[]), Some(&basic), &trusted()).unwrap_err();
        assert!(matches!(error, SourceProblem::RegistriesRequired { .. }), "{error}");
    }

    #[test]
    fn unusable_sources_name_the_reason() {
        let untrusted = resolve_source(&spec(&[]), None, &["elsewhere".into()]).unwrap_err();
        assert_eq!(untrusted.reason(), Reason::SourceNotTrusted);
        assert_eq!(resolve_source(&spec(&[]), None, &trusted()).unwrap_err().reason(), Reason::SourceNotFound);
        let opaque = secret("Opaque", &[("token", "x")]);
        assert!(matches!(
            resolve_source(&spec(&[]), Some(&opaque), &trusted()),
            Err(SourceProblem::NoCredentialKeys { .. })
        ));
        let invalid = secret(DOCKER_CONFIG_JSON_TYPE, &[(DOCKER_CONFIG_JSON_KEY, r#"{"auths":{"a.test":{}}}"#)]);
        let error = resolve_source(&spec(&[]), Some(&invalid), &trusted()).unwrap_err();
        assert!(error.to_string().starts_with("source Secret regcred-system/src: invalid docker config"), "{error}");
        let bad_registry = resolve_source(&spec(&["ftp://x"]), Some(&invalid), &trusted()).unwrap_err();
        assert!(bad_registry.to_string().starts_with("spec.registries[0] \"ftp://x\""), "{bad_registry}");
    }
}
