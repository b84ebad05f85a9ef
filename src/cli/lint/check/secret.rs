//! The Secrets' docker configs: their type, encoding, keys and content, and the canonical form
//! `--fix` writes back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cli::lint::finding::{Code, Report, Severity};
use crate::cli::lint::set::{ConfigField, ManifestSet, Object, SecretEntry};
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, PullSecretReading};
use crate::credential::{
    ConfigProblem, ConfigWarning, InvalidDockerConfig, KeyWarning, Normalized, kubelet_key, normalize_registry_key,
};

/// A Secret's docker config that decodes, as the config checks read it.
struct Config<'s, 'd> {
    object: &'s Object<'d>,
    field: &'s ConfigField,
    data_key: &'static str,
    registry_keys: Option<&'s [String]>,
    normalized: &'s Result<Normalized, InvalidDockerConfig>,
}

/// The Secrets of the set that hold a docker config under the right type, and that decode.
fn configs<'s, 'd>(set: &'s ManifestSet<'d>) -> impl Iterator<Item = Config<'s, 'd>> {
    set.secrets.iter().filter_map(|secret| match (&secret.reading, &secret.config_field) {
        (PullSecretReading::Config { data_key, registry_keys, normalized }, Some(field)) if !field.undecodable => {
            Some(Config {
                object: &secret.object,
                field,
                data_key,
                registry_keys: registry_keys.as_deref(),
                normalized,
            })
        }
        _ => None,
    })
}

/// RC004: a docker config under a type the kubelet does not read, or the type without its key.
pub(super) fn secret_type(set: &ManifestSet, report: &mut Report) {
    for SecretEntry { object, reading, .. } in &set.secrets {
        match reading {
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
            PullSecretReading::Config { .. } | PullSecretReading::NoConfig { .. } => {}
        }
    }
}

/// RC001: a docker config under `data` that is not base64.
pub(super) fn config_encoding(set: &ManifestSet, report: &mut Report) {
    for secret in &set.secrets {
        let (PullSecretReading::Config { data_key, .. }, Some(field)) = (&secret.reading, &secret.config_field) else {
            continue;
        };
        if field.undecodable {
            report.findings.push(secret.object.finding(
                Code::MalformedConfig,
                Severity::Error,
                &field.path,
                format!("{data_key}: the value is not valid base64"),
                "put base64 of the docker config under `data`, or the plain JSON under `stringData`".to_owned(),
            ));
        }
    }
}

/// RC003: registry keys that are not in canonical form; an error where the kubelet files them
/// differently from the images they are meant for.
pub(super) fn non_canonical_keys(set: &ManifestSet, report: &mut Report) {
    for Config { object, field, registry_keys, .. } in configs(set) {
        let field = &field.path;
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
    }
}

/// RC001 and RC002: a docker config that does not normalize, with the command that recreates it.
pub(super) fn invalid_config(set: &ManifestSet, report: &mut Report) {
    for Config { object, field, data_key, registry_keys, normalized } in configs(set) {
        let Err(invalid) = normalized else { continue };
        let server = registry_keys
            .and_then(|keys| keys.iter().find_map(|key| normalize_registry_key(key).ok()))
            .map_or_else(|| "<registry>".to_owned(), |key| key.canonical);
        let recreate = format!(
            "recreate it: `kubectl create secret docker-registry {} --docker-server={server} --docker-username=<user> --docker-password=<password>{}`",
            object.name,
            object.namespace.map(|ns| format!(" -n {ns}")).unwrap_or_default()
        );
        for problem in &invalid.problems {
            let code = match problem {
                ConfigProblem::NoEntries | ConfigProblem::NoCredentials { .. } | ConfigProblem::EmptyField { .. } => {
                    Code::EmptyCredentials
                }
                _ => Code::MalformedConfig,
            };
            report.findings.push(object.finding(
                code,
                Severity::Error,
                &field.path,
                format!("{data_key}: {problem}"),
                recreate.clone(),
            ));
        }
    }
}

/// RC005: a valid docker config with wildcard or plain-http keys, or fields the kubelet ignores.
pub(super) fn risky_config(set: &ManifestSet, report: &mut Report) {
    for Config { object, field, data_key, normalized, .. } in configs(set) {
        let Ok(normalized) = normalized else { continue };
        for warning in &normalized.warnings {
            report.findings.push(object.finding(
                Code::RiskyConfig,
                Severity::Warning,
                &field.path,
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
    }
}

/// The fix of RC003 and RC005: a valid `.dockerconfigjson` that normalization changes is written
/// back in canonical form. A legacy `.dockercfg` is not rewritten into another format.
pub(super) fn canonical_config(set: &ManifestSet, report: &mut Report) {
    for Config { object, field, data_key, normalized, .. } in configs(set) {
        let Ok(normalized) = normalized else { continue };
        let rewritten = !normalized.rewrites.is_empty()
            || normalized.warnings.iter().any(|w| !matches!(w, ConfigWarning::Key { .. }));
        if rewritten && data_key == DOCKER_CONFIG_JSON_KEY {
            let canonical = normalized.config.to_canonical_json();
            let value = if field.plain { canonical } else { STANDARD.encode(canonical) };
            report.edits.push(object.edit(field.path.clone(), &value));
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::lint::check::fixture::{CORP, DOCKER_CONFIG_JSON, edits, found, run, secret};
    use serde_norway::Value;

    #[test]
    fn secret_type_wrong_or_without_its_key() {
        let report = run(secret_type, &secret("a", "ns", "Opaque", CORP));
        assert_eq!(found(&report), [("RC004", Severity::Error, 5, "type".to_owned())]);
        assert_eq!(edits(&report), [("type".to_owned(), Value::String(DOCKER_CONFIG_JSON.into()))]);

        let without_key = "kind: Secret\nmetadata: {name: a}\ntype: kubernetes.io/dockerconfigjson\ndata: {}\n";
        let report = run(secret_type, without_key);
        assert_eq!(found(&report), [("RC004", Severity::Error, 3, "type".to_owned())]);
        assert!(report.edits.is_empty(), "nothing to guess the config from");
        assert!(found(&run(secret_type, &secret("a", "ns", DOCKER_CONFIG_JSON, CORP))).is_empty());
    }

    #[test]
    fn config_encoding_is_base64_under_data() {
        let yaml = "kind: Secret\nmetadata: {name: a}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: '%%%'\n";
        let report = run(config_encoding, yaml);
        assert_eq!(found(&report), [("RC001", Severity::Error, 5, r#"data[".dockerconfigjson"]"#.to_owned())]);
        assert!(report.findings[0].message.contains("not valid base64"));
        assert!(found(&run(config_encoding, &secret("a", "ns", DOCKER_CONFIG_JSON, CORP))).is_empty());
    }

    #[test]
    fn non_canonical_keys_by_what_the_kubelet_makes_of_them() {
        let same_for_kubelet = r#"{"auths":{"https://registry.corp/v2/":{"username":"u","password":"p"}}}"#;
        let report = run(non_canonical_keys, &secret("a", "ns", DOCKER_CONFIG_JSON, same_for_kubelet));
        assert_eq!(found(&report), [("RC003", Severity::Warning, 7, r#"stringData[".dockerconfigjson"]"#.to_owned())]);
        assert!(report.findings[0].fix.contains(r#"use the key "registry.corp""#), "{:?}", report.findings);

        let misread = r#"{"auths":{"https://registry.corp/v2":{"username":"u","password":"p"}}}"#;
        let report = run(non_canonical_keys, &secret("a", "ns", DOCKER_CONFIG_JSON, misread));
        assert_eq!(found(&report)[0].1, Severity::Error, "{:?}", report.findings);
        assert!(found(&run(non_canonical_keys, &secret("a", "ns", DOCKER_CONFIG_JSON, CORP))).is_empty());
    }

    #[test]
    fn invalid_config_empty_credentials_or_malformed() {
        let empty = r#"{"auths":{"registry.corp":{}}}"#;
        let report = run(invalid_config, &secret("a", "ns", DOCKER_CONFIG_JSON, empty));
        assert_eq!(found(&report)[0].0, "RC002");
        assert!(
            report.findings[0].fix.contains("kubectl create secret docker-registry a --docker-server=registry.corp"),
            "{:?}",
            report.findings
        );
        let report = run(invalid_config, &secret("a", "ns", DOCKER_CONFIG_JSON, "not json"));
        assert_eq!(found(&report)[0].0, "RC001");
        assert!(report.findings[0].fix.contains("--docker-server=<registry>"));
        assert!(found(&run(invalid_config, &secret("a", "ns", DOCKER_CONFIG_JSON, CORP))).is_empty());
    }

    #[test]
    fn risky_config_wildcards() {
        let wildcard = r#"{"auths":{"*.corp":{"username":"u","password":"p"}}}"#;
        let report = run(risky_config, &secret("a", "ns", DOCKER_CONFIG_JSON, wildcard));
        assert_eq!(found(&report), [("RC005", Severity::Warning, 7, r#"stringData[".dockerconfigjson"]"#.to_owned())]);
        assert!(found(&run(risky_config, &secret("a", "ns", DOCKER_CONFIG_JSON, CORP))).is_empty());
    }

    #[test]
    fn canonical_config_is_written_back_in_the_field_it_came_from() {
        let scheme = r#"{"auths":{"https://registry.corp/v2/":{"username":"u","password":"p"}}}"#;
        let report = run(canonical_config, &secret("a", "ns", DOCKER_CONFIG_JSON, scheme));
        assert!(report.findings.is_empty(), "findings are the other checks'");
        let [(path, Value::String(value))] = &edits(&report)[..] else { panic!("{:?}", report.edits) };
        assert_eq!(path, r#"stringData[".dockerconfigjson"]"#);
        assert!(value.contains(r#""registry.corp""#), "plain text stays plain: {value}");

        let encoded = format!(
            "kind: Secret\nmetadata: {{name: a}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            STANDARD.encode(scheme)
        );
        let report = run(canonical_config, &encoded);
        let [(_, Value::String(value))] = &edits(&report)[..] else { panic!("{:?}", report.edits) };
        assert!(STANDARD.decode(value).is_ok(), "base64 stays base64");
        assert!(run(canonical_config, &secret("a", "ns", DOCKER_CONFIG_JSON, CORP)).edits.is_empty());
    }
}
