//! `regcred-operator crd`: the CustomResourceDefinition, generated from the Rust type.

use kube::CustomResourceExt;

use crate::crd::RegistryCredential;

/// The annotation naming the release a CRD manifest belongs to, so that `kubectl get crd` tells
/// which release last installed the schema.
pub const VERSION_ANNOTATION: &str = "regcred.dev/version";

/// The CRD as YAML, exactly as `crds/registrycredentials.regcred.dev.yaml` holds it.
pub fn crd_yaml() -> String {
    let mut crd = RegistryCredential::crd();
    crd.metadata
        .annotations
        .get_or_insert_default()
        .insert(VERSION_ANNOTATION.to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    serde_norway::to_string(&crd).expect("the CRD type always serializes")
}
