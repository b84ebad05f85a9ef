//! GitOps as the tools see it: the health kstatus (Flux, `kubectl wait`) and Argo CD's health
//! check compute from the operator's real status, the way Argo CD and Flux apply a
//! ServiceAccount while the operator runs, and copies free of the tools' tracking metadata.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::{Value, json};

use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;

/// A tool's path from the environment tests/run.sh sets; `None` (the reason printed) when the
/// test may skip, a failure under `CI=true`.
fn tool(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {var} is not set (tests/run.sh sets it)"
            );
            eprintln!("skipped: {var} is not set; run the tests with tests/run.sh");
            None
        }
    }
}

macro_rules! tool_or_skip {
    ($var:expr) => {
        match tool($var) {
            Some(path) => path,
            None => return,
        }
    };
}

/// Runs a health tool on one object (JSON on stdin) and returns its verdict line.
fn verdict(program: &std::path::Path, object: &Value) -> Value {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child.stdin.take().unwrap().write_all(object.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}: {}", program.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

struct Health {
    kstatus: PathBuf,
    argo: PathBuf,
}

impl Health {
    /// (kstatus status, Argo CD status) of the credential as the API server has it now.
    async fn of(&self, admin: &Client, name: &str) -> (String, String) {
        let api: Api<RegistryCredential> = Api::all(admin.clone());
        let object = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
        let kstatus = verdict(&self.kstatus, &object)["status"].as_str().unwrap().to_owned();
        let argo = verdict(&self.argo, &object)["status"].as_str().unwrap().to_owned();
        (kstatus, argo)
    }

    async fn wait(&self, admin: &Client, name: &str, expected: (&str, &str)) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let seen = self.of(admin, name).await;
            if (seen.0.as_str(), seen.1.as_str()) == expected {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name}: health {seen:?}, expected {expected:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn kubectl_wait_ready(tools: &std::path::Path, name: &str, timeout: &str) -> bool {
    Command::new(tools.join("kubectl"))
        .args(["wait", "--for=condition=Ready", &format!("registrycredential/{name}"), &format!("--timeout={timeout}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn health_as_kstatus_and_argo_cd_compute_it_through_a_credentials_life() {
    let admin = cluster_or_skip!();
    let health = Health { kstatus: tool_or_skip!("REGCRED_KSTATUS"), argo: tool_or_skip!("REGCRED_ARGO_HEALTH") };
    let tools = tool_or_skip!("REGCRED_TOOLS_BIN");
    let fx = Fixture::start(admin.clone(), "health", &[]).await;
    let namespace = fx.namespace(true).await;

    // Not yet seen by any operator: the status the API server defaults reads as in progress.
    let mut unseen = fx.credential("unseen", json!({}));
    unseen.metadata.labels = None;
    let unseen = fx.apply(&unseen).await;
    health.wait(&admin, &unseen.name_any(), ("InProgress", "Progressing")).await;

    // A source that does not exist: a person has to act.
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let name = credential.name_any();
    fx.wait_ready(&credential, "False", "SourceNotFound").await;
    health.wait(&admin, &name, ("Failed", "Degraded")).await;
    assert!(!kubectl_wait_ready(&tools, &name, "1s"), "kubectl wait must not report a broken credential Ready");

    // The source appears: synced everywhere.
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "pw")).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    health.wait(&admin, &name, ("Current", "Healthy")).await;
    assert!(kubectl_wait_ready(&tools, &name, "30s"), "kubectl wait --for=condition=Ready");

    // A conflict in one namespace needs a person too.
    let blocked = fx.namespace(false).await;
    put_docker_config(&admin, &blocked.name, "regcred", &docker_config("registry.example.test", "x", "y")).await;
    relabel(&admin, &blocked.name, &fx.instance).await;
    fx.wait_ready(&credential, "False", "SyncFailed").await;
    health.wait(&admin, &name, ("Failed", "Degraded")).await;

    Api::<RegistryCredential>::all(admin.clone()).delete(&unseen.name_any(), &Default::default()).await.unwrap();
}

#[tokio::test]
async fn copies_carry_none_of_the_tools_tracking_metadata() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "tracking", &[]).await;
    let tracking_labels = json!({
        "app.kubernetes.io/instance": "platform", "app.kubernetes.io/managed-by": "Helm",
        "kustomize.toolkit.fluxcd.io/name": "platform", "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
        "helm.sh/chart": "platform-1.0.0",
    });
    let tracking_annotations = json!({
        "argocd.argoproj.io/tracking-id": "platform:regcred.dev/RegistryCredential:/main",
        "meta.helm.sh/release-name": "platform", "meta.helm.sh/release-namespace": "platform",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    });
    // The source carries them, as a Secret synced by a tool would.
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let sources: Api<Secret> = Api::namespaced(admin.clone(), &fx.source.name);
    let marks = json!({"metadata": {"labels": tracking_labels, "annotations": tracking_annotations}});
    sources.patch("pull", &PatchParams::default(), &Patch::Merge(&marks)).await.unwrap();
    let namespace = fx.namespace(true).await;
    let mut credential = fx.credential("main", json!({}));
    let mut labels = credential.metadata.labels.clone().unwrap_or_default();
    labels.extend(serde_json::from_value::<std::collections::BTreeMap<String, String>>(tracking_labels).unwrap());
    credential.metadata.labels = Some(labels);
    credential.metadata.annotations = Some(serde_json::from_value(tracking_annotations).unwrap());
    let credential = fx.apply(&credential).await;

    let copy = wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "pw")).await;
    let label_keys: Vec<&String> = copy.labels().keys().collect();
    assert_eq!(label_keys, vec![MANAGED_BY, "regcred.dev/credential"], "only the operator's labels");
    assert_eq!(copy.labels().get(MANAGED_BY).map(String::as_str), Some("regcred-operator"), "not Helm's");
    let annotation_keys: Vec<&String> = copy.annotations().keys().collect();
    assert_eq!(annotation_keys, vec!["regcred.dev/content-digest"], "only the operator's digest");
    fx.wait_ready(&credential, "True", "Synced").await;
}

/// A ServiceAccount manifest as it stands in Git.
fn manifest(namespace: &str, own_pull_secrets: Option<&[&str]>) -> Value {
    let mut account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
    });
    if let Some(names) = own_pull_secrets {
        account["imagePullSecrets"] = json!(names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
    }
    account
}

/// How a GitOps tool writes a ServiceAccount manifest.
#[derive(Clone, Copy, Debug)]
enum Applier {
    /// Argo CD's default: client-side apply, with the last-applied annotation.
    ArgoClientSide,
    /// Argo CD with `ServerSideApply=true`.
    ArgoServerSide,
    /// Flux's kustomize-controller.
    Flux,
}

async fn apply_as(applier: Applier, admin: &Client, tools: &std::path::Path, account: &Value) {
    let namespace = account["metadata"]["namespace"].as_str().unwrap();
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    match applier {
        Applier::ArgoClientSide => {
            let mut child = Command::new(tools.join("kubectl"))
                .args(["apply", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(account.to_string().as_bytes()).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&output.stderr));
        }
        Applier::ArgoServerSide | Applier::Flux => {
            let manager = if matches!(applier, Applier::Flux) { "kustomize-controller" } else { "argocd-controller" };
            api.patch("web", &PatchParams::apply(manager).force(), &Patch::Apply(account)).await.unwrap();
        }
    }
}

#[tokio::test]
async fn gitops_tools_without_the_field_in_git_never_fight_the_operator() {
    let admin = cluster_or_skip!();
    let tools = tool_or_skip!("REGCRED_TOOLS_BIN");
    let fx = Fixture::start(admin.clone(), "gitops-apply", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let credential = fx.apply(&fx.credential("main", json!({"serviceAccounts": {"names": ["web"]}}))).await;
    for applier in [Applier::ArgoClientSide, Applier::ArgoServerSide, Applier::Flux] {
        let namespace = fx.namespace(true).await;
        let account = manifest(&namespace.name, None);
        apply_as(applier, &admin, &tools, &account).await;
        wait_for_entries(&admin, &namespace.name, "web", &["regcred"]).await;
        let patches = fx.operator.writes("serviceaccount").await;
        // Sync after sync, as the tools do on every reconcile and self-heal.
        for _ in 0..5 {
            apply_as(applier, &admin, &tools, &account).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        wait_for_entries(&admin, &namespace.name, "web", &["regcred"]).await;
        assert_eq!(fx.operator.writes("serviceaccount").await, patches, "{applier:?}: no re-add, no drift");
    }
    fx.wait_ready(&credential, "True", "Synced").await;
}

#[tokio::test]
async fn a_tool_that_owns_the_list_is_a_reported_contest_with_bounded_writes() {
    let admin = cluster_or_skip!();
    let tools = tool_or_skip!("REGCRED_TOOLS_BIN");
    let fx = Fixture::start(admin.clone(), "gitops-contest", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({"serviceAccounts": {"names": ["web"]}}))).await;
    let in_git = manifest(&namespace.name, Some(&["chart-own"]));
    apply_as(Applier::Flux, &admin, &tools, &in_git).await;
    wait_for_entries(&admin, &namespace.name, "web", &["chart-own", "regcred"]).await;

    // Flux re-applies its list every second (force), removing the operator's entry each time.
    let before = fx.operator.writes("serviceaccount").await;
    let rounds = 20;
    for _ in 0..rounds {
        apply_as(Applier::Flux, &admin, &tools, &in_git).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let readds = fx.operator.writes("serviceaccount").await - before;
    println!("{rounds} forced applies in {rounds} s: the operator re-added its entry {readds} times");
    assert!(readds <= 5.0, "bounded: two free repairs, then 5 s, 10 s, ... apart; got {readds}");

    let failure = fx.wait_for_failure(&credential, "Contested").await;
    assert_eq!(failure.namespace, namespace.name);
    assert!(failure.message.contains("kustomize-controller"), "names the other writer: {}", failure.message);
    wait_for_event(&Api::<Event>::namespaced(admin.clone(), "default"), &credential.name_any(), "Contested").await;

    // The documented fix (Argo CD RespectIgnoreDifferences, Flux `ssa: IfNotPresent` / ignore):
    // the tool leaves the live list as it is, and the contest ends.
    // Once the backed-off re-add has happened, the tool applies what it finds live.
    wait_for_entries(&admin, &namespace.name, "web", &["chart-own", "regcred"]).await;
    let live = Api::<ServiceAccount>::namespaced(admin.clone(), &namespace.name).get("web").await.unwrap();
    let mut respecting = in_git.clone();
    respecting["imagePullSecrets"] = serde_json::to_value(live.image_pull_secrets.unwrap_or_default()).unwrap();
    let settled = fx.operator.writes("serviceaccount").await;
    for _ in 0..5 {
        apply_as(Applier::Flux, &admin, &tools, &respecting).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_entries(&admin, &namespace.name, "web", &["chart-own", "regcred"]).await;
    assert_eq!(fx.operator.writes("serviceaccount").await, settled, "no fight once the tool keeps the live list");
}
