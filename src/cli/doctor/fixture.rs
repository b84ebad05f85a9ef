//! Evidence as the unit tests of the detectors need it: a Pod of Deployment web in namespace
//! shop, its ServiceAccount, its pull secrets and the RegistryCredentials around it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::evidence::{Cause, Evidence, SecretLookup};
use crate::crd::{CredentialSource, NamespaceFilter, RegistryCredential, RegistryCredentialSpec, SecretReference};
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE};

/// RegistryCredential corp, whose copy is `regcred`, selecting namespaces by name and, with a
/// team, by the label `team`.
pub(super) fn credential(include: &[&str], exclude: &[&str], team: Option<&str>) -> RegistryCredential {
    RegistryCredential::new(
        "corp",
        RegistryCredentialSpec {
            source: CredentialSource {
                secret_ref: Some(SecretReference { namespace: "regcred-system".into(), name: "s".into() }),
                credential_provider: None,
            },
            registries: Vec::new(),
            secret_name: "regcred".into(),
            namespace_selector: team.map(|team| LabelSelector {
                match_labels: Some([("team".to_owned(), team.to_owned())].into()),
                match_expressions: None,
            }),
            namespaces: NamespaceFilter {
                include: include.iter().map(|s| s.to_string()).collect(),
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
            },
            service_accounts: Default::default(),
            on_conflict: Default::default(),
            prune: true,
            inject_into_pods: true,
            evict_stuck_pods: false,
        },
    )
}

/// Pod shop/web-1, created 2026-01-01T10:00:00Z, owned by `owner` when given.
pub(super) fn pod(spec: serde_json::Value, owner: Option<(&str, &str)>) -> Pod {
    let owners: Vec<serde_json::Value> = owner
        .iter()
        .map(|(kind, name)| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2026-01-01T10:00:00Z",
                     "ownerReferences": owners},
        "spec": spec,
    }))
    .unwrap()
}

/// A `kubernetes.io/dockerconfigjson` Secret with credentials for `registry`.
pub(super) fn pull_secret(registry: &str, created: &str) -> SecretLookup {
    let config = format!(r#"{{"auths":{{"{registry}":{{"username":"u","password":"p"}}}}}}"#);
    SecretLookup::Found {
        secret_type: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
        data: [(DOCKER_CONFIG_JSON_KEY.to_owned(), config.into_bytes())].into(),
        created: Some(created.parse().unwrap()),
        copy_of: None,
    }
}

/// ServiceAccount default, listing `pull_secrets`.
pub(super) fn account(pull_secrets: &[&str]) -> ServiceAccount {
    let names: Vec<serde_json::Value> = pull_secrets.iter().map(|n| serde_json::json!({"name": n})).collect();
    serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}, "imagePullSecrets": names})).unwrap()
}

/// A Pod of Deployment web that lists `quay-pull` and runs an image from registry.corp.
pub(super) fn own_list_evidence() -> Evidence {
    Evidence {
        pod: pod(
            serde_json::json!({"imagePullSecrets": [{"name": "quay-pull"}],
                               "containers": [{"name": "app", "image": "registry.corp/app:1"}]}),
            Some(("ReplicaSet", "web-5d9c")),
        ),
        namespace_labels: Some(BTreeMap::new()),
        service_account: Some(account(&["regcred"])),
        secrets: [
            ("quay-pull".to_owned(), pull_secret("quay.io", "2025-12-01T00:00:00Z")),
            ("regcred".to_owned(), pull_secret("registry.corp", "2026-01-02T00:00:00Z")),
        ]
        .into(),
        workload: Some(("Deployment".to_owned(), "web".to_owned())),
        ..Default::default()
    }
}

/// The summaries of the causes, in order.
pub(super) fn summaries(causes: &[Cause]) -> Vec<&str> {
    causes.iter().map(|c| c.summary.as_str()).collect()
}
