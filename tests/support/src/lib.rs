//! What every test binary of regcred-operator shares: clients for the real control plane
//! (tests/cluster/up.sh), throwaway namespaces and watch-based waits ([`cluster`]), the operator
//! binary run as a process under its own ServiceAccount and RBAC ([`operator`]), one test's world
//! of source, operator and RegistryCredentials ([`fixture`]), the CLI as scripts run it
//! ([`cli`]), and credential provider plugins with their config and token RBAC ([`plugins`]).

pub mod cli;
pub mod cluster;
pub mod fixture;
pub mod operator;
pub mod plugins;

use std::path::PathBuf;

/// The repository's root, for the manifests and scripts the tests use.
pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `regcred-operator` binary that cargo built for the test run: it sits beside the `deps`
/// directory that holds the running test executable.
pub fn operator_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test executable");
    let dir = test.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let binary = dir.join("regcred-operator");
    assert!(binary.exists(), "{} is missing: run the tests with cargo test", binary.display());
    binary
}
