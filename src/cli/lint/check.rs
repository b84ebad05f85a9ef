//! The checks behind `lint`: a pure function from manifest documents to findings, and to the
//! edits that fix what can be fixed without guessing.
//!
//! The documents are read as one set ([`super::set`]), the way `kubectl apply -f` would create
//! them: a Pod's pull secret is looked up among the Secrets of the set (and the copies a
//! RegistryCredential of the set makes), and its images are matched against their keys as the
//! kubelet would match them. A namespace left unset is taken to be the one the set is applied
//! to, so it never conflicts.
//!
//! Each check is a function in [`CHECKS`], named, with the codes it reports. To add one: write
//! the function, list it there with its codes, and give it a unit test below.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::finding::{Code, Edit, Report, Severity};
use super::manifest::{Document, FieldPath};
use super::set::{ConfigField, ManifestSet, Object, PullSecretUse, Resolution, SecretEntry};
use crate::cli::near_miss::near_misses;
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, PullSecretReading};
use crate::credential::{
    ConfigProblem, ConfigWarning, ImageReference, InvalidDockerConfig, KeyWarning, Normalized, covering_key,
    kubelet_key, normalize_registry_key,
};

/// One named check over the set: the codes it reports, and the function that finds them.
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) codes: &'static [Code],
    run: fn(&ManifestSet, &mut Report),
}

/// Every check, in the order they run. The order only matters for findings of one code on one
/// line, which keep it.
pub(crate) const CHECKS: &[Check] = &[
    Check { name: "secret type", codes: &[Code::WrongSecretType], run: secret_type },
    Check { name: "config encoding", codes: &[Code::MalformedConfig], run: config_encoding },
    Check { name: "non-canonical registry keys", codes: &[Code::NonCanonicalKey], run: non_canonical_keys },
    Check { name: "invalid config", codes: &[Code::MalformedConfig, Code::EmptyCredentials], run: invalid_config },
    Check { name: "risky config", codes: &[Code::RiskyConfig], run: risky_config },
    // Findings come from the two checks before it; this one only fixes them.
    Check {
        name: "canonical config (--fix)",
        codes: &[Code::NonCanonicalKey, Code::RiskyConfig],
        run: canonical_config,
    },
    Check {
        name: "RegistryCredential registries",
        codes: &[Code::InvalidRegistryCredential],
        run: credential_registries,
    },
    Check {
        name: "pull secret in another namespace",
        codes: &[Code::PullSecretInOtherNamespace],
        run: pull_secret_in_other_namespace,
    },
    Check { name: "pull secret not found", codes: &[Code::PullSecretNotFound], run: pull_secret_not_found },
    Check { name: "image reference", codes: &[Code::InvalidImage], run: invalid_image },
    Check { name: "no pull secrets", codes: &[Code::NoPullSecrets], run: no_pull_secrets },
    Check { name: "registry not covered", codes: &[Code::RegistryNotCovered], run: registry_not_covered },
];

/// Checks the documents as one set.
pub fn check(documents: &[Document]) -> Report {
    let set = ManifestSet::new(documents);
    let mut report = Report::default();
    for check in CHECKS {
        let before = report.findings.len();
        (check.run)(&set, &mut report);
        debug_assert!(
            report.findings[before..].iter().all(|f| check.codes.contains(&f.code)),
            "check {:?} reported a code it does not list",
            check.name
        );
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
fn secret_type(set: &ManifestSet, report: &mut Report) {
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
fn config_encoding(set: &ManifestSet, report: &mut Report) {
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
fn non_canonical_keys(set: &ManifestSet, report: &mut Report) {
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
fn invalid_config(set: &ManifestSet, report: &mut Report) {
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
fn risky_config(set: &ManifestSet, report: &mut Report) {
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
fn canonical_config(set: &ManifestSet, report: &mut Report) {
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

/// RC020: a RegistryCredential registry that is not a registry.
fn credential_registries(set: &ManifestSet, report: &mut Report) {
    for credential in &set.credentials {
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
}

/// RC011: a pull secret that the set has only in other namespaces; moved when exactly one
/// namespace needs it and nothing uses it where it is.
fn pull_secret_in_other_namespace(set: &ManifestSet, report: &mut Report) {
    for pull_secret_use in &set.uses {
        let user = &set.objects[pull_secret_use.user];
        let (name, namespace) = (pull_secret_use.name, pull_secret_use.namespace);
        let Resolution::Elsewhere(secrets) = set.resolve(name, namespace) else { continue };
        let in_namespace = namespace.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        let places: Vec<String> = secrets.iter().map(|s| s.object.describe()).collect();
        let target = set.single_user_namespace(name);
        let movable = match (&secrets[..], target) {
            ([secret], Some(target)) if !set.is_used_in(name, secret.object.namespace) => Some((secret, target)),
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
}

/// RC010: a pull secret that nothing in the set provides, with its near miss.
fn pull_secret_not_found(set: &ManifestSet, report: &mut Report) {
    for pull_secret_use in &set.uses {
        if !matches!(set.resolve(pull_secret_use.name, pull_secret_use.namespace), Resolution::Missing) {
            continue;
        }
        let user = &set.objects[pull_secret_use.user];
        let (message, fix) = missing(set, pull_secret_use, user, report);
        report.findings.push(user.finding(
            Code::PullSecretNotFound,
            Severity::Error,
            &pull_secret_use.path,
            message,
            fix,
        ));
    }
}

/// The message and fix for a name that nothing in the set provides, with the near miss.
fn missing(set: &ManifestSet, pull_secret_use: &PullSecretUse, user: &Object, report: &mut Report) -> (String, String) {
    let name = pull_secret_use.name;
    let in_namespace = pull_secret_use.namespace.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
    let names: BTreeSet<&str> = set
        .secrets
        .iter()
        .map(|s| s.object.name)
        .chain(set.credentials.iter().map(|c| c.spec.secret_name.as_str()))
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
    let secrets: Vec<&SecretEntry> = set.secrets.iter().filter(|s| s.object.name == candidate).collect();
    let made_by = set.credentials.iter().find(|c| c.spec.secret_name == candidate);
    let described = match (&secrets[..], made_by) {
        ([secret], _) => secret.object.describe(),
        ([], Some(credential)) => format!("{candidate:?}, the copy {} makes", credential.object.describe()),
        _ => format!("{candidate:?}"),
    };
    let message = format!("{not_found}; did you mean {described}?");
    let rename_secret = matches!(&secrets[..], [_]) && !set.is_referenced(candidate);
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
    if !matches!(set.resolve(candidate, pull_secret_use.namespace), Resolution::Missing) {
        report.edits.push(user.edit(pull_secret_use.path.clone(), candidate));
        return (message, format!("reference {candidate:?} instead"));
    }
    (message, format!("rename the reference or the Secret so they agree ({name:?} or {candidate:?})"))
}

/// RC014: a container image that is not an image reference.
fn invalid_image(set: &ManifestSet, report: &mut Report) {
    for pod in set.pods() {
        for container in &pod.images {
            if let Err(error) = ImageReference::parse(container.image) {
                report.findings.push(pod.object.finding(
                    Code::InvalidImage,
                    Severity::Error,
                    &container.path,
                    error.to_string(),
                    "write the image as `[registry/]repository[:tag][@digest]`, repository in lowercase".to_owned(),
                ));
            }
        }
    }
}

/// The images of a pod that may need a credential: they parse, and are not on Docker Hub, whose
/// images are mostly public, so a missing credential is not a finding there.
fn private_images<'p>(
    images: &'p [super::set::ContainerImage],
) -> impl Iterator<Item = (&'p FieldPath, &'p str, ImageReference)> {
    images.iter().filter_map(|container| {
        let reference = ImageReference::parse(container.image).ok().filter(|r| !r.is_docker_hub())?;
        Some((&container.path, container.image, reference))
    })
}

/// RC013: a private image, and neither the pod spec nor its ServiceAccount lists a pull secret.
fn no_pull_secrets(set: &ManifestSet, report: &mut Report) {
    for pod in set.pods() {
        if !pod.names.is_empty() {
            continue;
        }
        let (object, account) = (pod.object, pod.account);
        for (path, image, reference) in private_images(&pod.images) {
            report.findings.push(object.finding(
                Code::NoPullSecrets,
                Severity::Warning,
                path,
                format!(
                    "image {image:?} is from registry {}, and neither the pod spec nor ServiceAccount {account} lists a pull secret; a private registry refuses the anonymous pull",
                    reference.registry
                ),
                set.no_pull_secret_fix(&reference, object.namespace, account),
            ));
        }
    }
}

/// RC012: a private image that no key of the pod's pull secrets matches, when the set holds
/// them all.
fn registry_not_covered(set: &ManifestSet, report: &mut Report) {
    for pod in set.pods() {
        let Some(keys) = &pod.keys else { continue };
        if pod.names.is_empty() {
            continue;
        }
        let names: Vec<&str> = pod.names.iter().copied().collect();
        for (path, image, reference) in private_images(&pod.images) {
            if covering_key(keys.iter().map(String::as_str), &reference).is_some() {
                continue;
            }
            report.findings.push(pod.object.finding(
                Code::RegistryNotCovered,
                Severity::Warning,
                path,
                format!(
                    "no key of its pull secrets {names:?} matches image {image:?} (keys: {keys:?}); the kubelet pulls it anonymously"
                ),
                format!("add an entry for {:?} to one of {names:?}, or a pull secret that has one", reference.registry),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::manifest::parse_documents;
    use super::*;
    use serde_norway::Value;

    /// One check over the documents of `yaml`, alone.
    fn run(check: fn(&ManifestSet, &mut Report), yaml: &str) -> Report {
        let documents = parse_documents("test.yaml", yaml).unwrap();
        let set = ManifestSet::new(&documents);
        let mut report = Report::default();
        check(&set, &mut report);
        report
    }

    /// `(code, severity, line, path)` of each finding.
    fn found(report: &Report) -> Vec<(&'static str, Severity, usize, String)> {
        report.findings.iter().map(|f| (f.code.id(), f.severity, f.line, f.path.clone())).collect()
    }

    fn edits(report: &Report) -> Vec<(String, Value)> {
        report.edits.iter().map(|e| (e.path.to_string(), e.value.clone())).collect()
    }

    /// A Secret with its docker config in plain text under `stringData`.
    fn secret(name: &str, namespace: &str, secret_type: &str, config: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: {secret_type}\nstringData:\n  .dockerconfigjson: '{config}'\n"
        )
    }

    fn pod(name: &str, namespace: &str, pull_secrets: &[&str], image: &str) -> String {
        let names: Vec<String> = pull_secrets.iter().map(|n| format!("{{name: {n}}}")).collect();
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  imagePullSecrets: [{}]\n  containers: [{{name: app, image: {image:?}}}]\n",
            names.join(", ")
        )
    }

    const CORP: &str = r#"{"auths":{"registry.corp":{"username":"u","password":"p"}}}"#;
    const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";

    #[test]
    fn every_code_has_a_check_and_every_check_a_name() {
        for code in Code::ALL {
            assert!(CHECKS.iter().any(|c| c.codes.contains(&code)), "no check reports {code}");
        }
        let names: BTreeSet<&str> = CHECKS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CHECKS.len(), "check names are unique");
    }

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

    #[test]
    fn credential_registries_must_be_registries() {
        let yaml = "kind: RegistryCredential\nmetadata: {name: corp}\nspec:\n  source: {secretRef: {namespace: regcred-system, name: s}}\n  registries: [registry.corp, 'not a host']\n";
        let report = run(credential_registries, yaml);
        assert_eq!(found(&report), [("RC020", Severity::Error, 5, "spec.registries[1]".to_owned())]);
    }

    #[test]
    fn pull_secret_in_other_namespace_is_moved_when_one_namespace_needs_it() {
        let yaml = secret("regcred", "default", DOCKER_CONFIG_JSON, CORP)
            + &pod("app", "production", &["regcred"], "registry.corp/app:1");
        let report = run(pull_secret_in_other_namespace, &yaml);
        assert_eq!(found(&report), [("RC011", Severity::Error, 13, "spec.imagePullSecrets[0].name".to_owned())]);
        assert_eq!(report.findings[0].fix, "move Secret default/regcred to namespace production");
        assert_eq!(edits(&report), [("metadata.namespace".to_owned(), Value::String("production".into()))]);
        assert!(found(&run(pull_secret_not_found, &yaml)).is_empty(), "found elsewhere is not missing");
    }

    #[test]
    fn pull_secret_not_found_names_the_near_miss() {
        let yaml = secret("reg-cred", "production", DOCKER_CONFIG_JSON, CORP)
            + &pod("app", "production", &["regcred"], "registry.corp/app:1");
        let report = run(pull_secret_not_found, &yaml);
        assert_eq!(found(&report), [("RC010", Severity::Error, 13, "spec.imagePullSecrets[0].name".to_owned())]);
        assert!(report.findings[0].message.ends_with("did you mean Secret production/reg-cred?"));
        assert_eq!(edits(&report), [("metadata.name".to_owned(), Value::String("regcred".into()))]);

        let report = run(pull_secret_not_found, &pod("app", "production", &["gone"], "registry.corp/app:1"));
        assert!(report.findings[0].message.ends_with("the kubelet pulls without credentials"));
        assert!(report.edits.is_empty());
    }

    #[test]
    fn invalid_image_references() {
        let report = run(invalid_image, &pod("app", "ns", &[], "Registry.corp/App:1"));
        assert_eq!(found(&report), [("RC014", Severity::Error, 7, "spec.containers[0].image".to_owned())]);
        assert!(found(&run(invalid_image, &pod("app", "ns", &[], "registry.corp/app:1"))).is_empty());
    }

    #[test]
    fn no_pull_secrets_for_a_private_registry_only() {
        let report = run(no_pull_secrets, &pod("app", "ns", &[], "registry.corp/app:1"));
        assert_eq!(found(&report), [("RC013", Severity::Warning, 7, "spec.containers[0].image".to_owned())]);
        assert!(found(&run(no_pull_secrets, &pod("app", "ns", &[], "nginx:1.27"))).is_empty(), "Docker Hub");
        let account = "---\nkind: ServiceAccount\nmetadata: {name: default, namespace: ns}\nimagePullSecrets: [{name: regcred}]\n";
        let yaml = pod("app", "ns", &[], "registry.corp/app:1") + account;
        assert!(found(&run(no_pull_secrets, &yaml)).is_empty(), "the ServiceAccount's count");
    }

    #[test]
    fn registry_not_covered_by_the_keys_of_the_set() {
        let quay = r#"{"auths":{"quay.io":{"username":"u","password":"p"}}}"#;
        let yaml =
            secret("regcred", "ns", DOCKER_CONFIG_JSON, quay) + &pod("app", "ns", &["regcred"], "registry.corp/app:1");
        let report = run(registry_not_covered, &yaml);
        assert_eq!(found(&report), [("RC012", Severity::Warning, 14, "spec.containers[0].image".to_owned())]);
        let covered =
            secret("regcred", "ns", DOCKER_CONFIG_JSON, CORP) + &pod("app", "ns", &["regcred"], "registry.corp/app:1");
        assert!(found(&run(registry_not_covered, &covered)).is_empty());
        let unknown = pod("app", "ns", &["elsewhere"], "registry.corp/app:1");
        assert!(found(&run(registry_not_covered, &unknown)).is_empty(), "keys the set does not hold are not judged");
    }
}
