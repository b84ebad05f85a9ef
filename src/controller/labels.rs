//! The names this operator writes on the objects it manages.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

/// The field manager of every write, so `managedFields` shows what is ours.
pub const FIELD_MANAGER: &str = "regcred-operator";
/// On every Secret the operator creates; the managed-Secret watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "regcred-operator";
/// The RegistryCredential a copy belongs to.
pub const CREDENTIAL_LABEL: &str = "regcred.dev/credential";
/// On a ServiceAccount: the `imagePullSecrets` entries the operator added (comma-separated), so
/// cleanup removes exactly those and never an entry a person or another tool put there.
pub const ADDED_PULL_SECRETS_ANNOTATION: &str = "regcred.dev/added-pull-secrets";
/// Finalizer on RegistryCredentials: cleanup runs before the object goes away.
pub const FINALIZER: &str = "regcred.dev/cleanup";

pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// The label selector of the managed-Secret watch.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}

/// The entries the operator recorded as added to this ServiceAccount.
pub fn added_pull_secrets(account: &ServiceAccount) -> BTreeSet<&str> {
    account
        .annotations()
        .get(ADDED_PULL_SECRETS_ANNOTATION)
        .map(|record| record.split(',').map(str::trim).filter(|name| !name.is_empty()).collect())
        .unwrap_or_default()
}
