//! The pull secret references: a name the set has only in another namespace, or nowhere.

use std::collections::BTreeSet;

use crate::cli::lint::finding::{Code, Report, Severity};
use crate::cli::lint::set::{ManifestSet, Object, PullSecretUse, Resolution, SecretEntry};
use crate::cli::near_miss::near_misses;
use crate::credential::pull_secret::DOCKER_CONFIG_JSON_TYPE;

/// RC011: a pull secret that the set has only in other namespaces; moved when exactly one
/// namespace needs it and nothing uses it where it is.
pub(super) fn pull_secret_in_other_namespace(set: &ManifestSet, report: &mut Report) {
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
pub(super) fn pull_secret_not_found(set: &ManifestSet, report: &mut Report) {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::lint::check::fixture::{CORP, DOCKER_CONFIG_JSON, edits, found, pod, run, secret};
    use serde_norway::Value;

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
    fn a_credential_never_provides_its_copy_in_its_source_namespace_unless_named_there() {
        let credential = "---\napiVersion: regcred.dev/v1alpha1\nkind: RegistryCredential\nmetadata: {name: corp}\n\
                          spec: {source: {secretRef: {namespace: regcred-system, name: src}}}\n";
        let uses =
            |namespace: &str| credential.to_owned() + &pod("app", namespace, &["regcred"], "registry.corp/app:1");
        assert!(found(&run(pull_secret_not_found, &uses("production"))).is_empty(), "`*` selects production");
        let beside_the_source = run(pull_secret_not_found, &uses("regcred-system"));
        assert_eq!(found(&beside_the_source)[0].0, "RC010", "as the controller: no copy beside the sources");
    }
}
