//! The committed CRD is the generated one, and the sample parses as a RegistryCredential.

use regcred_operator::cli::crd::crd_yaml;
use regcred_operator::crd::{OnConflict, RegistryCredential};

const COMMITTED_CRD: &str = include_str!("../crds/registrycredentials.regcred.dev.yaml");

#[test]
fn committed_crd_equals_generated_crd() {
    assert!(
        COMMITTED_CRD == crd_yaml(),
        "crds/registrycredentials.regcred.dev.yaml is stale: run `cargo run -- crd > crds/registrycredentials.regcred.dev.yaml`"
    );
}

#[test]
fn helm_chart_crd_equals_generated_crd() {
    // Helm installs crds/ of the chart as is; a chart CRD that lags the generated one would
    // install a schema the operator does not speak.
    assert!(
        include_str!("../charts/regcred-operator/crds/registrycredentials.regcred.dev.yaml") == crd_yaml(),
        "charts/regcred-operator/crds/registrycredentials.regcred.dev.yaml is stale: run `cargo run -- crd > charts/regcred-operator/crds/registrycredentials.regcred.dev.yaml`"
    );
}

#[test]
fn sample_is_a_valid_registry_credential() {
    let sample: RegistryCredential =
        serde_norway::from_str(include_str!("../config/samples/registrycredential.yaml")).unwrap();
    let source = sample.spec.source.secret_ref.as_ref().unwrap();
    assert_eq!((source.namespace.as_str(), source.name.as_str()), ("regcred-system", "corp-pull"));
    assert_eq!(sample.spec.secret_name, "regcred");
    assert_eq!(sample.spec.on_conflict, OnConflict::Skip);
}

#[test]
fn omitted_fields_take_their_documented_defaults() {
    let minimal: RegistryCredential = serde_norway::from_str(
        "apiVersion: regcred.dev/v1alpha1\nkind: RegistryCredential\nmetadata: {name: m}\n\
         spec: {source: {secretRef: {namespace: regcred-system, name: s}}}\n",
    )
    .unwrap();
    assert_eq!(minimal.spec.secret_name, "regcred");
    assert_eq!(minimal.spec.namespaces.include, vec!["*"]);
    assert!(minimal.spec.namespaces.exclude.is_empty());
    assert_eq!(minimal.spec.service_accounts.names, vec!["default"]);
    assert_eq!(minimal.spec.on_conflict, OnConflict::Skip);
    assert!(minimal.spec.prune);
}
