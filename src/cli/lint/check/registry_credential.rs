//! The RegistryCredentials of the set: registries that are registries.

use crate::cli::lint::finding::{Code, Report, Severity};
use crate::cli::lint::set::ManifestSet;
use crate::credential::normalize_registry_key;

/// RC020: a RegistryCredential registry that is not a registry.
pub(super) fn credential_registries(set: &ManifestSet, report: &mut Report) {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::lint::check::fixture::{found, run};

    #[test]
    fn credential_registries_must_be_registries() {
        let yaml = "kind: RegistryCredential\nmetadata: {name: corp}\nspec:\n  source: {secretRef: {namespace: regcred-system, name: s}}\n  registries: [registry.corp, 'not a host']\n";
        let report = run(credential_registries, yaml);
        assert_eq!(found(&report), [("RC020", Severity::Error, 5, "spec.registries[1]".to_owned())]);
    }
}
