//! A test's world for the controller tests: its source namespace, its operator process, its
//! RegistryCredentials, and waits on what the operator should bring about.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use regcred_operator::crd::{RegistryCredential, SyncFailure};
use serde_json::{Value, json};

use crate::cluster::{TestNamespace, wait_for};
use crate::operator::{INSTANCE_LABEL, OperatorProcess};

pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const RECORD: &str = "regcred.dev/added-pull-secrets";
/// Labels a test's namespaces so its RegistryCredentials select only those.
pub const TEST_SELECT_LABEL: &str = "regcred.dev/test-select";

/// One test's world: its source namespace, its operator, its credentials.
pub struct Fixture {
    pub admin: Client,
    pub instance: String,
    pub source: TestNamespace,
    pub operator: OperatorProcess,
    extra_args: Vec<&'static str>,
}

impl Fixture {
    pub async fn start(admin: Client, test: &str, extra_args: &[&'static str]) -> Fixture {
        let source = TestNamespace::create(&admin, "src", &[]).await;
        Fixture::start_with_source(admin, test, source, extra_args).await
    }

    /// Like `start`, trusting `source`, which the test set up before the operator starts.
    pub async fn start_with_source(
        admin: Client,
        test: &str,
        source: TestNamespace,
        extra_args: &[&'static str],
    ) -> Fixture {
        let instance = format!("{test}-{}", std::process::id());
        let operator = OperatorProcess::start(&admin, &instance, &source.name, extra_args).await;
        Fixture { admin, instance, source, operator, extra_args: extra_args.to_vec() }
    }

    /// Like `start`, with the operator running as the ServiceAccount `account`, which
    /// `install_account` set up.
    pub async fn start_as(admin: Client, test: &str, account: &str, extra_args: &[&'static str]) -> Fixture {
        let instance = format!("{test}-{}", std::process::id());
        let source = TestNamespace::create(&admin, "src", &[]).await;
        let operator = OperatorProcess::start_as(&admin, account, &instance, "0", &source.name, extra_args).await;
        Fixture { admin, instance, source, operator, extra_args: extra_args.to_vec() }
    }

    pub async fn restart_operator(&mut self) {
        self.operator.restart(&self.admin, &self.instance, &self.source.name, &self.extra_args).await;
    }

    /// A namespace this test's credentials select (or not, with `selected = false`).
    pub async fn namespace(&self, selected: bool) -> TestNamespace {
        let value = if selected { self.instance.as_str() } else { "no" };
        TestNamespace::create(&self.admin, "ns", &[(TEST_SELECT_LABEL, value)]).await
    }

    /// Creates a source Secret of type dockerconfigjson holding `config`.
    pub async fn put_source(&self, name: &str, config: &Value) {
        put_docker_config(&self.admin, &self.source.name, name, config).await;
    }

    pub fn credential(&self, name: &str, spec: Value) -> RegistryCredential {
        let mut full = json!({
            "source": {"secretRef": {"namespace": self.source.name, "name": "pull"}},
            "namespaceSelector": {"matchLabels": {TEST_SELECT_LABEL: self.instance}},
        });
        merge(&mut full, spec);
        serde_json::from_value(json!({
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": format!("{name}-{}", self.instance), "labels": {INSTANCE_LABEL: self.instance}},
            "spec": full,
        }))
        .unwrap()
    }

    pub async fn apply(&self, credential: &RegistryCredential) -> RegistryCredential {
        let api: Api<RegistryCredential> = Api::all(self.admin.clone());
        let mut body = serde_json::to_value(credential).unwrap();
        body.as_object_mut().unwrap().remove("status");
        api.patch(&credential.name_any(), &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&body))
            .await
            .unwrap()
    }

    pub async fn delete(&self, credential: &RegistryCredential) {
        let api: Api<RegistryCredential> = Api::all(self.admin.clone());
        api.delete(&credential.name_any(), &DeleteParams::default()).await.unwrap();
        wait_for(&api, &credential.name_any(), "the RegistryCredential to be gone", TIMEOUT, |c| c.is_none()).await;
    }

    pub async fn wait_ready(&self, credential: &RegistryCredential, status: &str, reason: &str) -> RegistryCredential {
        let api: Api<RegistryCredential> = Api::all(self.admin.clone());
        let what = format!("Ready={status} ({reason})");
        wait_for(&api, &credential.name_any(), &what, TIMEOUT, |c| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == status && c.reason == reason)
        })
        .await
        .unwrap()
    }

    /// Waits until the credential's status lists a failure for `reason`, and returns it.
    pub async fn wait_for_failure(&self, credential: &RegistryCredential, reason: &str) -> SyncFailure {
        let api: Api<RegistryCredential> = Api::all(self.admin.clone());
        let failure = |c: &RegistryCredential| c.status.as_ref()?.failures.iter().find(|f| f.reason == reason).cloned();
        let found = wait_for(&api, &credential.name_any(), &format!("a {reason} failure"), TIMEOUT, |c| {
            c.and_then(failure).is_some()
        })
        .await
        .unwrap();
        failure(&found).unwrap()
    }
}

pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}

pub fn docker_config(registry: &str, username: &str, password: &str) -> Value {
    json!({"auths": {registry: {"username": username, "password": password}}})
}

/// The canonical payload the operator writes for one registry.
pub fn canonical(registry: &str, username: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}","password":"{password}","username":"{username}"}}}}}}"#)
}

pub async fn put_docker_config(admin: &Client, namespace: &str, name: &str, config: &Value) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap();
    let api: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let mut body = serde_json::to_value(&secret).unwrap();
    body["apiVersion"] = json!("v1");
    body["kind"] = json!("Secret");
    api.patch(name, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&body)).await.unwrap();
}

pub fn payload(secret: &Secret) -> Option<String> {
    secret.data.as_ref()?.get(".dockerconfigjson").map(|v| String::from_utf8(v.0.clone()).unwrap())
}

pub async fn wait_for_copy(admin: &Client, namespace: &str, name: &str, expected: &str) -> Secret {
    let api: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    wait_for(&api, name, &format!("copy {namespace}/{name} with the expected payload"), TIMEOUT, |s| {
        s.and_then(payload).as_deref() == Some(expected)
    })
    .await
    .unwrap()
}

pub async fn wait_for_no_copy(admin: &Client, namespace: &str, name: &str) {
    let api: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    wait_for(&api, name, &format!("copy {namespace}/{name} to be gone"), TIMEOUT, |s| s.is_none()).await;
}

pub fn entries(account: &ServiceAccount) -> Vec<String> {
    account.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect()
}

pub async fn wait_for_entries(admin: &Client, namespace: &str, account: &str, expected: &[&str]) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    wait_for(
        &api,
        account,
        &format!("ServiceAccount {namespace}/{account} imagePullSecrets == {expected:?}"),
        TIMEOUT,
        |a| a.is_some_and(|a| entries(a) == expected),
    )
    .await
    .unwrap()
}

pub async fn set_entries(admin: &Client, namespace: &str, account: &str, names: &[&str]) {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let list: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    api.patch(account, &PatchParams::default(), &Patch::Merge(json!({"imagePullSecrets": list}))).await.unwrap();
}

pub async fn create_account(admin: &Client, namespace: &str, name: &str, entries: &[&str]) {
    let list: Vec<Value> = entries.iter().map(|n| json!({"name": n})).collect();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}, "imagePullSecrets": list})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace).create(&PostParams::default(), &account).await.unwrap();
}

pub async fn relabel(admin: &Client, namespace: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {TEST_SELECT_LABEL: value}}});
    Api::<Namespace>::all(admin.clone()).patch(namespace, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

pub async fn wait_for_event(events: &Api<Event>, regarding: &str, reason: &str) -> Event {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let found = events.list(&ListParams::default()).await.unwrap().items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                && e.reason.as_deref() == Some(reason)
        });
        if let Some(event) = found {
            return event;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {reason} Event for {regarding}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_for_metric(operator: &OperatorProcess, sample: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while operator.metric(sample).await < at_least {
        assert!(tokio::time::Instant::now() < deadline, "{sample} did not reach {at_least}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts, from the API server's side, how often each copy of `credential` is written.
pub async fn count_copy_writes(admin: Client, credential: String, writes: Arc<Mutex<BTreeMap<String, Vec<String>>>>) {
    let config = watcher::Config::default().labels(&format!("regcred.dev/credential={credential}"));
    let mut events = watcher::watcher(Api::<Secret>::all(admin), config).boxed();
    while let Some(Ok(event)) = events.next().await {
        if let watcher::Event::Apply(secret) | watcher::Event::InitApply(secret) = event {
            let key = format!("{}/{}", secret.namespace().unwrap(), secret.name_any());
            let version = secret.resource_version().unwrap();
            let mut writes = writes.lock().unwrap();
            let versions = writes.entry(key).or_default();
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
    }
}
