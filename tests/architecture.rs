//! The dependency direction of the crate: CLI -> controller's entry point / CRD -> credential
//! core. A layer that reaches into one above it, or into another's internals, fails here.

use std::path::Path;

/// Every `crate::...` path that a source file under `dir` names, with the file it is in.
fn crate_paths(dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                found.push((path.display().to_string(), rest[..end].trim_end_matches(':').to_owned()));
            }
        }
    }
    assert!(!found.is_empty() || dir == "credential", "no source read under src/{dir}");
    found
}

#[test]
fn the_cli_uses_only_the_controllers_entry_point() {
    let allowed = ["controller::{", "controller"];
    for (file, path) in crate_paths("cli") {
        if path.starts_with("controller") {
            // `use crate::controller::{Operator, Settings, Stores}` is the entry point; nothing deeper.
            assert!(allowed.contains(&path.as_str()), "{file} reaches into controller internals: crate::{path}");
        }
    }
}

#[test]
fn the_crd_and_the_credential_core_know_nothing_above_them() {
    for (file, path) in crate_paths("crd") {
        assert!(
            path.starts_with("crd") || path.starts_with("credential"),
            "{file}: the CRD type depends only on the credential core, not crate::{path}"
        );
    }
    for (file, path) in crate_paths("credential") {
        assert!(path.starts_with("credential"), "{file}: the credential core is pure, not crate::{path}");
    }
}

#[test]
fn the_credential_core_does_no_kubernetes_io() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/credential");
    for entry in std::fs::read_dir(core).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for forbidden in ["use kube", "k8s_openapi", "tokio", "std::fs", "std::net"] {
            assert!(
                !text.contains(forbidden),
                "{}: the credential core is pure, but names {forbidden}",
                path.display()
            );
        }
    }
}
