//! `regcred-operator crd`: the CustomResourceDefinition, generated from the Rust type.

use kube::CustomResourceExt;

use crate::crd::RegistryCredential;

/// The CRD as YAML, exactly as `crds/registrycredentials.regcred.dev.yaml` holds it.
pub fn crd_yaml() -> String {
    serde_norway::to_string(&RegistryCredential::crd()).expect("the CRD type always serializes")
}
