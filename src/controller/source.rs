//! Turning a RegistryCredential's source Secret into the payload of the copies. Pure.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use thiserror::Error;

use super::error::quoted;
use super::ownership::content_digest;
use crate::crd::{CredentialProviderSource, RegistryCredentialSpec};
use crate::credential::expiry::{
    EXPIRES_AT_ANNOTATION, EXPIRES_AT_KEY, Expiry, ExpirySource, parse_annotation, parse_unix_seconds,
};
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY, DOCKERCFG_TYPE};
use crate::credential::{
    ConfigProblem, DockerConfig, ImageReference, InvalidDockerConfig, KeyProblem, KeyRewrite, Normalized, covering_key,
    docker_config_from_basic_auth, normalize_docker_config, normalize_registry_key, redact_key,
};
use crate::provider::exec::RunProblem;
use crate::provider::protocol::{AuthConfig, CredentialProviderResponse, ResponseProblem};

/// The source Secret key of External Secrets' ECR generator that names the registry
/// (`https://<account>.dkr.ecr.<region>.amazonaws.com`) its `username` and `password` are for.
pub(crate) const PROXY_ENDPOINT_KEY: &str = "proxy_endpoint";
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
    /// When the credential stops working, where the source says so.
    pub(crate) expiry: Option<Expiry>,
    /// Why the last refresh of a minted credential failed, while this earlier one is kept.
    pub(crate) refresh_failure: Option<SourceProblem>,
}

impl std::fmt::Debug for ResolvedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedSource")
            .field("registries", &self.registries)
            .field("rewrites", &self.rewrites)
            .field("warnings", &self.warnings)
            .field("expiry", &self.expiry)
            .field("refresh_failure", &self.refresh_failure)
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
        "source Secret {namespace}/{name} holds `username` and `password`: spec.registries must name the registries they are for (or the Secret a `{PROXY_ENDPOINT_KEY}`, as External Secrets' ECR generator writes)"
    )]
    RegistriesRequired { namespace: String, name: String },
    #[error("source Secret {namespace}/{name}: {from} is {value}, not {format}")]
    InvalidExpiry { namespace: String, name: String, from: ExpirySource, value: String, format: &'static str },
    #[error("spec.registries[{index}] {registry:?}: {problem}")]
    InvalidRegistry { index: usize, registry: String, problem: KeyProblem },
    #[error("source Secret {namespace}/{name}: {invalid}")]
    Invalid { namespace: String, name: String, invalid: InvalidDockerConfig },
    #[error("source Secret {namespace}/{name} has no entry for any registry in spec.registries")]
    NoAllowedRegistries { namespace: String, name: String },
    #[error("credential provider {provider}: {why}")]
    ProviderNotConfigured { provider: String, why: String },
    #[error("ServiceAccount {namespace}/{name} is not in a namespace the operator trusts for sources ({trusted})")]
    ServiceAccountNotTrusted { namespace: String, name: String, trusted: String },
    #[error("ServiceAccount {namespace}/{name}: {why}")]
    ServiceAccountToken { namespace: String, name: String, why: String },
    #[error("credential provider {}", .0)]
    Run(RunProblem),
    #[error("credential provider {provider}: {problem}")]
    InvalidResponse { provider: String, problem: ResponseProblem },
    #[error("credential provider {provider}: its auth {invalid}")]
    InvalidAuth { provider: String, invalid: InvalidDockerConfig },
    #[error(
        "credential provider {provider}: no auth entry it returned covers {image}{}",
        if *.allow_listed { " among spec.registries" } else { "" }
    )]
    NoMatchingAuth { provider: String, image: String, allow_listed: bool },
}

impl SourceProblem {
    /// The condition reason and Event reason for this problem.
    pub(crate) fn reason(&self) -> Reason {
        match self {
            SourceProblem::NotTrusted { .. } => Reason::SourceNotTrusted,
            SourceProblem::NotFound { .. } => Reason::SourceNotFound,
            SourceProblem::ServiceAccountNotTrusted { .. } => Reason::SourceNotTrusted,
            SourceProblem::ProviderNotConfigured { .. } => Reason::ProviderNotConfigured,
            SourceProblem::ServiceAccountToken { .. } => Reason::ServiceAccountTokenFailed,
            SourceProblem::Run(RunProblem::NotFound { .. }) => Reason::ProviderNotFound,
            SourceProblem::Run(RunProblem::TimedOut { .. }) => Reason::ProviderTimedOut,
            SourceProblem::Run(RunProblem::OutputTooLarge { .. }) => Reason::ProviderOutputTooLarge,
            SourceProblem::Run(RunProblem::Failed { .. } | RunProblem::NotStarted { .. }) => Reason::ProviderFailed,
            SourceProblem::InvalidResponse { .. } | SourceProblem::InvalidAuth { .. } => {
                Reason::ProviderInvalidResponse
            }
            SourceProblem::NoMatchingAuth { .. } => Reason::ProviderNoMatchingAuth,
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
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                let registries = match (allowed.is_empty(), field(PROXY_ENDPOINT_KEY)) {
                    (false, _) => spec.registries.clone(),
                    (true, Some(endpoint)) => vec![text(endpoint)],
                    (true, None) => return Err(SourceProblem::RegistriesRequired { namespace, name }),
                };
                docker_config_from_basic_auth(&registries, &text(username), &text(password))
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
    let expiry = read_expiry(secret, field(EXPIRES_AT_KEY), &normalized.config)?;
    Ok(ResolvedSource::from_normalized(normalized, expiry))
}

/// Resolves what a credential provider plugin answered for `source`: its auth map normalized like
/// any docker config, narrowed to `spec.registries`, and covering the image it was asked about.
/// The expiry is the `exp` of a password that is a JWT.
pub(crate) fn resolve_minted(
    spec: &RegistryCredentialSpec,
    source: &CredentialProviderSource,
    response: &CredentialProviderResponse,
) -> Result<ResolvedSource, SourceProblem> {
    let provider = source.name.clone();
    let allowed = canonical_registries(&spec.registries)?;
    // Narrowed before it is judged: an entry the copies would leave out cannot spoil the rest.
    // Entries without any credential (ACR's plugin adds an anonymous one) have no place in a pull
    // secret.
    let kept = |key: &str, auth: &AuthConfig| {
        let anonymous = auth.username.is_empty() && auth.password.is_empty();
        let allowed = allowed.is_empty()
            || normalize_registry_key(key).is_ok_and(|normalized| allowed.contains(&normalized.canonical));
        !anonymous && allowed
    };
    let normalized = normalize_docker_config(&response.docker_config_json(kept))
        .map_err(|invalid| SourceProblem::InvalidAuth { provider: provider.clone(), invalid });
    let normalized = match normalized {
        Err(SourceProblem::InvalidAuth { invalid, .. }) if invalid.problems == [ConfigProblem::NoEntries] => {
            return Err(SourceProblem::NoMatchingAuth {
                provider,
                image: quoted(&source.image),
                allow_listed: !allowed.is_empty(),
            });
        }
        other => other?,
    };
    let image = ImageReference::parse(&source.image).map_err(|error| SourceProblem::ProviderNotConfigured {
        provider: provider.clone(),
        why: format!("spec.source.credentialProvider.image: {error}"),
    })?;
    let keys: Vec<&str> = normalized.config.registries().collect();
    if covering_key(keys.iter().copied(), &image).is_none() {
        return Err(SourceProblem::NoMatchingAuth {
            provider,
            image: quoted(&source.image),
            allow_listed: !allowed.is_empty(),
        });
    }
    let expiry = normalized.config.token_expiry().map(|at| Expiry { at, from: ExpirySource::TokenClaim });
    Ok(ResolvedSource::from_normalized(normalized, expiry))
}

impl ResolvedSource {
    #[cfg(test)]
    pub(crate) fn from_normalized_for_tests(normalized: Normalized) -> ResolvedSource {
        ResolvedSource::from_normalized(normalized, None)
    }

    fn from_normalized(normalized: Normalized, expiry: Option<Expiry>) -> ResolvedSource {
        let payload = normalized.config.to_canonical_json();
        ResolvedSource {
            expiry,
            digest: content_digest(payload.as_bytes()),
            payload,
            registries: normalized.config.registries().map(str::to_owned).collect(),
            rewrites: normalized.rewrites,
            warnings: normalized.warnings.iter().map(ToString::to_string).collect(),
            refresh_failure: None,
        }
    }
}

/// The earliest of the expiries the source states: its annotation, its `expires_at` key, the `exp`
/// of a password that is a JWT. A stated expiry that cannot be read is a bad source, never ignored.
fn read_expiry(
    secret: &Secret,
    expires_at: Option<&[u8]>,
    config: &DockerConfig,
) -> Result<Option<Expiry>, SourceProblem> {
    let invalid = |from, value: &str, format| SourceProblem::InvalidExpiry {
        namespace: secret.namespace().unwrap_or_default(),
        name: secret.name_any(),
        from,
        value: quoted(value),
        format,
    };
    let mut found = Vec::new();
    if let Some(value) = secret.annotations().get(EXPIRES_AT_ANNOTATION) {
        let at = parse_annotation(value)
            .ok_or_else(|| invalid(ExpirySource::Annotation, value, "an RFC 3339 time like 2026-12-04T18:00:00Z"))?;
        found.push(Expiry { at, from: ExpirySource::Annotation });
    }
    if let Some(value) = expires_at.map(String::from_utf8_lossy) {
        let at = parse_unix_seconds(&value)
            .ok_or_else(|| invalid(ExpirySource::ExpiresAtKey, &value, "whole UNIX seconds"))?;
        found.push(Expiry { at, from: ExpirySource::ExpiresAtKey });
    }
    found.extend(config.token_expiry().map(|at| Expiry { at, from: ExpirySource::TokenClaim }));
    Ok(Expiry::earliest(found))
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
    fn the_ecr_generators_keys_are_a_source_without_a_template() {
        let ecr = secret(
            "Opaque",
            &[
                ("username", "AWS"),
                ("password", "token"),
                (PROXY_ENDPOINT_KEY, "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                (EXPIRES_AT_KEY, "1796407200"),
            ],
        );
        let resolved = resolve_source(&spec(&[]), Some(&ecr), &trusted()).unwrap();
        assert_eq!(resolved.registries, vec!["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]);
        let expiry = resolved.expiry.unwrap();
        assert_eq!((expiry.at.as_second(), expiry.from), (1_796_407_200, ExpirySource::ExpiresAtKey));
        // spec.registries, when set, still decides which registries the copies are for.
        let listed = resolve_source(&spec(&["other.test"]), Some(&ecr), &trusted()).unwrap();
        assert_eq!(listed.registries, vec!["other.test"]);
    }

    #[test]
    fn the_earliest_stated_expiry_wins_and_an_unreadable_one_is_a_bad_source() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(r#"{"exp":1796400000}"#));
        let config = format!(
            r#"{{"auths":{{"a.test":{{"username":"00000000-0000-0000-0000-000000000000","password":"{jwt}"}}}}}}"#
        );
        let mut source = secret(DOCKER_CONFIG_JSON_TYPE, &[(DOCKER_CONFIG_JSON_KEY, &config)]);
        let expiry = resolve_source(&spec(&[]), Some(&source), &trusted()).unwrap().expiry.unwrap();
        assert_eq!((expiry.at.as_second(), expiry.from), (1_796_400_000, ExpirySource::TokenClaim));

        let annotate = |source: &mut Secret, value: &str| {
            source.metadata.annotations = Some([(EXPIRES_AT_ANNOTATION.to_owned(), value.to_owned())].into());
        };
        annotate(&mut source, "2026-12-04T15:00:00Z");
        let expiry = resolve_source(&spec(&[]), Some(&source), &trusted()).unwrap().expiry.unwrap();
        assert_eq!((expiry.at.as_second(), expiry.from), (1_796_396_400, ExpirySource::Annotation));

        annotate(&mut source, "next tuesday");
        let problem = resolve_source(&spec(&[]), Some(&source), &trusted()).unwrap_err();
        assert_eq!(problem.reason(), Reason::SourceInvalid);
        assert_eq!(
            problem.to_string(),
            "source Secret regcred-system/src: the annotation regcred.dev/expires-at is \"next tuesday\", not an RFC 3339 time like 2026-12-04T18:00:00Z"
        );
        let bad_key = secret("Opaque", &[("username", "AWS"), ("password", "t"), (EXPIRES_AT_KEY, "soon")]);
        let problem = resolve_source(&spec(&["a.test"]), Some(&bad_key), &trusted()).unwrap_err();
        assert!(problem.to_string().ends_with("the key expires_at is \"soon\", not whole UNIX seconds"), "{problem}");
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

    fn minted(registries: &[&str], image: &str, auth: serde_json::Value) -> Result<ResolvedSource, SourceProblem> {
        let source = CredentialProviderSource { name: "p".into(), image: image.into(), service_account_ref: None };
        let response = json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderResponse",
            "auth": auth,
        });
        let response = CredentialProviderResponse::parse(response.to_string().as_bytes()).unwrap();
        resolve_minted(&spec(registries), &source, &response)
    }

    #[test]
    fn a_minted_auth_is_normalized_and_must_cover_the_image_it_was_asked_for() {
        let ok = minted(
            &[],
            "registry.example:5000/app:1",
            json!({"https://registry.example:5000/v2/": {"username": "u", "password": "p"}}),
        )
        .unwrap();
        assert_eq!(ok.registries, ["registry.example:5000"]);
        assert!(ok.refresh_failure.is_none() && ok.expiry.is_none());

        let elsewhere =
            minted(&[], "registry.example:5000/app", json!({"other.example": {"username": "u", "password": "p"}}));
        let problem = elsewhere.unwrap_err();
        assert_eq!(problem.reason(), Reason::ProviderNoMatchingAuth);
        assert!(problem.to_string().contains("\"registry.example:5000/app\""), "{problem}");
        // The ECR plugin drops the port: the key no longer covers an image on a port.
        let portless = minted(&[], "127.0.0.1:5000/app", json!({"127.0.0.1": {"username": "AWS", "password": "p"}}));
        assert_eq!(portless.unwrap_err().reason(), Reason::ProviderNoMatchingAuth);
    }

    #[test]
    fn the_allow_list_and_anonymous_entries_are_dropped_before_the_auth_is_judged() {
        let auth = json!({
            "*.azurecr.io": {"username": "", "password": ""},
            "team.azurecr.io": {"username": "00000000-0000-0000-0000-000000000000", "password": "token"},
            "bad key with spaces": {"username": "u", "password": "p"},
        });
        let narrowed = minted(&["team.azurecr.io"], "team.azurecr.io/app", auth.clone()).unwrap();
        assert_eq!(narrowed.registries, ["team.azurecr.io"]);
        // Without the allow-list the bad key spoils the answer, named without its credential.
        let problem = minted(&[], "team.azurecr.io/app", auth).unwrap_err();
        assert_eq!(problem.reason(), Reason::ProviderInvalidResponse);
        assert!(!problem.to_string().contains("token"), "{problem}");
        // An allow-list that keeps nothing: no auth covers the image.
        let none =
            minted(&["quay.io"], "team.azurecr.io/app", json!({"team.azurecr.io": {"username": "u", "password": "p"}}));
        assert!(none.unwrap_err().to_string().contains("among spec.registries"));
    }

    #[test]
    fn a_minted_password_that_is_a_jwt_states_the_expiry() {
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1893456000}"#);
        let password = format!("eyJhbGciOiJub25lIn0.{claims}.c2ln");
        let source =
            minted(&[], "r.example/app", json!({"r.example": {"username": "u", "password": password}})).unwrap();
        let expiry = source.expiry.unwrap();
        assert_eq!((expiry.at.as_second(), expiry.from), (1893456000, ExpirySource::TokenClaim));
    }
}
