//! Credential provider plugins for tests: a plugin directory and the kubelet
//! CredentialProviderConfig naming them, the minting plugin of tests/expiry, the RBAC the chart
//! renders for the ServiceAccount tokens, and what a copy holds.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::operator::OPERATOR_NAMESPACE;

/// The audience the minting plugin wants on the ServiceAccount token.
pub const TEST_AUDIENCE: &str = "regcred-test-audience";

/// A plugin directory, a state directory for the minting plugin, and the config file.
pub struct Plugins {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
}

impl Plugins {
    pub fn new(test: &str) -> Plugins {
        let root = std::env::temp_dir().join(format!("regcred-plugins-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, state) = (root.join("bin"), root.join("state"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        Plugins { dir, state, config: root.join("credential-providers.yaml") }
    }

    /// Writes the plugin `name` as a shell script.
    pub fn shell(&self, name: &str, script: &str) {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes the plugin `name` as the minting plugin (tests/expiry/minting-plugin.py), run by
    /// this machine's own python3 (the plugin's environment is only what the config gives it).
    pub fn minting(&self, name: &str) {
        let script = crate::repo().join("tests/expiry/minting-plugin.py");
        self.shell(name, &format!("exec '{}' '{}' \"$@\"", python().display(), script.display()));
    }

    /// Links an executable built elsewhere (the upstream ECR plugin) in as `name`.
    pub fn link(&self, name: &str, binary: &Path) {
        std::os::unix::fs::symlink(binary, self.dir.join(name)).unwrap();
    }

    /// Writes the config file with `providers` (each a CredentialProviderConfig entry, to which
    /// the protocol's apiVersion is added) and returns the operator's arguments for it.
    pub fn configure(&self, providers: Vec<Value>, timeout_seconds: u64) -> Vec<&'static str> {
        let providers: Vec<Value> = providers
            .into_iter()
            .map(|mut provider| {
                provider["apiVersion"] = json!("credentialprovider.kubelet.k8s.io/v1");
                provider
            })
            .collect();
        let config = json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": providers,
        });
        std::fs::write(&self.config, serde_norway::to_string(&config).unwrap()).unwrap();
        [
            format!("--credential-provider-config={}", self.config.display()),
            format!("--credential-provider-bin-dir={}", self.dir.display()),
            format!("--credential-provider-timeout-seconds={timeout_seconds}"),
        ]
        .into_iter()
        .map(|arg| &*Box::leak(arg.into_boxed_str()))
        .collect()
    }

    /// The minting plugin's environment for `registry`, each password living `lifetime`.
    pub fn minting_env(&self, registry: &str, lifetime: Duration) -> Value {
        json!([
            {"name": "MINT_STATE", "value": self.state.display().to_string()},
            {"name": "MINT_REGISTRY", "value": registry},
            {"name": "MINT_LIFETIME", "value": lifetime.as_secs().to_string()},
            {"name": "PATH", "value": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
        ])
    }

    /// What the minting plugin recorded of each call, in order.
    pub fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.state.join("calls.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// Makes the minting plugin's calls fail (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        let flag = self.state.join("fail");
        if failing { std::fs::write(flag, "").unwrap() } else { std::fs::remove_file(flag).unwrap() }
    }
}

/// The interpreter running python3 here, resolved once (a shim needs an environment the plugin
/// does not get).
fn python() -> PathBuf {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The ServiceAccount `name` in `namespace` with `annotations`, and the Role the chart renders
/// for `credentialProviders.serviceAccounts`: the operator may request tokens for exactly these.
pub async fn token_account(admin: &Client, namespace: &str, name: &str, annotations: Value, granted: &[&str]) {
    let params = PatchParams::apply("regcred-tests").force();
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "annotations": annotations}});
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .patch(name, &params, &Patch::Apply(&account))
        .await
        .unwrap();
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "regcred-operator-credential-provider-tokens"},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"], "resourceNames": granted}]});
    let roles: Api<Role> = Api::namespaced(admin.clone(), namespace);
    roles.patch("regcred-operator-credential-provider-tokens", &params, &Patch::Apply(&role)).await.unwrap();
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "regcred-operator-credential-provider-tokens"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "regcred-operator-credential-provider-tokens"},
        "subjects": [{"kind": "ServiceAccount", "name": "regcred-operator", "namespace": OPERATOR_NAMESPACE}]});
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), namespace);
    bindings.patch("regcred-operator-credential-provider-tokens", &params, &Patch::Apply(&binding)).await.unwrap();
}

/// The username and password a copy holds for `registry`.
pub fn copy_login(secret: &Secret, registry: &str) -> Option<(String, String)> {
    let config: Value = serde_json::from_str(&crate::fixture::payload(secret)?).ok()?;
    let entry = &config["auths"][registry];
    let auth = base64::engine::general_purpose::STANDARD.decode(entry["auth"].as_str()?).ok()?;
    let (user, password) = String::from_utf8(auth).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, password))
}

/// The user and password of the copy `namespace/name` for `registry`, once `wanted` holds.
pub async fn wait_for_copy_user(
    admin: &Client,
    namespace: &str,
    name: &str,
    registry: &str,
    timeout: Duration,
    wanted: impl Fn(&(String, String)) -> bool,
) -> (String, String) {
    let api: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let login = api.get_opt(name).await.unwrap().as_ref().and_then(|secret| copy_login(secret, registry));
        if let Some(login) = login.as_ref().filter(|login| wanted(login)) {
            return login.clone();
        }
        let user = login.map(|(user, _)| user);
        assert!(
            tokio::time::Instant::now() < deadline,
            "copy {namespace}/{name}: user {user:?}: never the login wanted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
