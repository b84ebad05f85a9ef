//! The checks behind `lint`: a pure function from manifest documents to findings, and to the
//! edits that fix what can be fixed without guessing.
//!
//! The documents are read as one set ([`super::set`]), the way `kubectl apply -f` would create
//! them: a Pod's pull secret is looked up among the Secrets of the set (and the copies a
//! RegistryCredential of the set makes), and its images are matched against their keys as the
//! kubelet would match them. A namespace left unset is taken to be the one the set is applied
//! to, so it never conflicts.
//!
//! Each check is a function in [`CHECKS`], named, with the codes it reports, in the module of its
//! family: the Secrets' docker configs, the RegistryCredentials, the pull secret references, the
//! images. To add one: write the function there with a unit test, and list it here with its codes.

mod image;
mod reference;
mod registry_credential;
mod secret;

use std::collections::BTreeMap;

use super::finding::{Code, Edit, Report};
use super::manifest::Document;
use super::set::ManifestSet;
use image::{invalid_image, no_pull_secrets, registry_not_covered};
use reference::{pull_secret_in_other_namespace, pull_secret_not_found};
use registry_credential::credential_registries;
use secret::{canonical_config, config_encoding, invalid_config, non_canonical_keys, risky_config, secret_type};

/// One named check over the set: the codes it reports, and the function that finds them.
struct Check {
    name: &'static str,
    codes: &'static [Code],
    run: fn(&ManifestSet, &mut Report),
}

/// Every check, in the order they run. The order only matters for findings of one code on one
/// line, which keep it.
const CHECKS: &[Check] = &[
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

#[cfg(test)]
mod fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_code_has_a_check_and_every_check_a_name() {
        for code in Code::ALL {
            assert!(CHECKS.iter().any(|c| c.codes.contains(&code)), "no check reports {code}");
        }
        let names: BTreeSet<&str> = CHECKS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CHECKS.len(), "check names are unique");
    }
}
