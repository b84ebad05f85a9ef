//! Manifests as the unit tests of the checks write them, and what a check made of them.

use serde_norway::Value;

use crate::cli::lint::finding::{Report, Severity};
use crate::cli::lint::manifest::parse_documents;
use crate::cli::lint::set::ManifestSet;

/// One check over the documents of `yaml`, alone.
pub(super) fn run(check: fn(&ManifestSet, &mut Report), yaml: &str) -> Report {
    let documents = parse_documents("test.yaml", yaml).unwrap();
    let set = ManifestSet::new(&documents);
    let mut report = Report::default();
    check(&set, &mut report);
    report
}

/// `(code, severity, line, path)` of each finding.
pub(super) fn found(report: &Report) -> Vec<(&'static str, Severity, usize, String)> {
    report.findings.iter().map(|f| (f.code.id(), f.severity, f.line, f.path.clone())).collect()
}

/// `(path, value)` of each edit.
pub(super) fn edits(report: &Report) -> Vec<(String, Value)> {
    report.edits.iter().map(|e| (e.path.to_string(), e.value.clone())).collect()
}

/// A Secret with its docker config in plain text under `stringData`.
pub(super) fn secret(name: &str, namespace: &str, secret_type: &str, config: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: {secret_type}\nstringData:\n  .dockerconfigjson: '{config}'\n"
    )
}

/// A Pod listing `pull_secrets`, with one container running `image`.
pub(super) fn pod(name: &str, namespace: &str, pull_secrets: &[&str], image: &str) -> String {
    let names: Vec<String> = pull_secrets.iter().map(|n| format!("{{name: {n}}}")).collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  imagePullSecrets: [{}]\n  containers: [{{name: app, image: {image:?}}}]\n",
        names.join(", ")
    )
}

pub(super) const CORP: &str = r#"{"auths":{"registry.corp":{"username":"u","password":"p"}}}"#;
pub(super) const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
