//! `regcred-operator doctor pod` against the real control plane. No kubelet runs there, so each
//! test writes the Events a kubelet would write, and the Pods, Secrets and ServiceAccounts the
//! story needs.

use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::{TestNamespace, admission_policy_api, install_crd, wait_for};
use regcred_test_support::cluster_or_skip;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The seed article's two kubelet events.
const SANDBOX_401: &str = "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to pull image \"registry.internal.corp/pause:3.9\": failed to pull and unpack image \"registry.internal.corp/pause:3.9\": failed to resolve reference \"registry.internal.corp/pause:3.9\": unexpected status code 401 Unauthorized";
const SANDBOX_HELPER: &str = "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox image \"registry.internal.corp/pause:3.9\": error getting credentials - err: docker-credential-ecr-login: resolving credentials: secret \"regcred\" not found";

async fn doctor(pod: &str, namespace: &str) -> Output {
    let (pod, namespace) = (pod.to_owned(), namespace.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_regcred-operator"))
            .args(["doctor", "pod", &pod, "-n", &namespace])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The numbered causes of the report, in order.
fn causes(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter_map(|line| line.split_once(". ").filter(|(n, _)| n.parse::<u32>().is_ok()).map(|(_, cause)| cause))
        .collect()
}

fn docker_config(entries: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "auths": entries })).unwrap()
}

async fn put_secret(client: &Client, namespace: &str, name: &str, secret_type: &str, key: &str, value: Vec<u8>) {
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        type_: Some(secret_type.to_owned()),
        data: Some([(key.to_owned(), ByteString(value))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
}

/// Creates a Pod once the namespace's default ServiceAccount exists (its admission needs it).
async fn create_pod(client: &Client, namespace: &str, name: &str, spec: serde_json::Value) -> Pod {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(&accounts, "default", "the default ServiceAccount", TIMEOUT, |sa| sa.is_some()).await;
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), namespace).create(&PostParams::default(), &pod).await.unwrap()
}

fn regarding(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Named as the kubelet names its Events: the Pod's name and a hexadecimal timestamp.
fn event_meta(pod: &Pod) -> ObjectMeta {
    let nanos = Timestamp::now().as_nanosecond();
    ObjectMeta { name: Some(format!("{}.{nanos:x}", pod.name_any())), ..Default::default() }
}

/// An Event as the kubelet's recorder writes it (core/v1).
async fn kubelet_event(client: &Client, pod: &Pod, reason: &str, message: &str) {
    let now = Time(Timestamp::now());
    let event = CoreEvent {
        metadata: event_meta(pod),
        involved_object: regarding(pod),
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some("node-1".into()) }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(3),
        ..Default::default()
    };
    let namespace = pod.namespace().unwrap();
    Api::<CoreEvent>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &event).await.unwrap();
}

/// The same through events.k8s.io/v1, as newer components write them.
async fn series_event(client: &Client, pod: &Pod, reason: &str, note: &str) {
    let event = Event {
        metadata: event_meta(pod),
        event_time: Some(MicroTime(Timestamp::now())),
        reporting_controller: Some("kubelet".into()),
        reporting_instance: Some("node-1".into()),
        action: Some("CreatePodSandbox".into()),
        reason: Some(reason.into()),
        regarding: Some(regarding(pod)),
        note: Some(note.into()),
        type_: Some("Warning".into()),
        ..Default::default()
    };
    let namespace = pod.namespace().unwrap();
    Api::<Event>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &event).await.unwrap();
}

#[tokio::test]
async fn seed_article_pod_sandbox_first_then_the_misplaced_secret() {
    let client = cluster_or_skip!();
    let default = TestNamespace::create(&client, "doctor-default", &[]).await;
    let production = TestNamespace::create(&client, "doctor-production", &[]).await;
    let seed_config = STANDARD.decode("eyJhdXRocyI6eyJodHRwczovL3JlZ2lzdHJ5LmludGVybmFsLmNvcnAvdjIvIjp7fX19").unwrap();
    put_secret(&client, &default.name, "reg-cred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", seed_config)
        .await;
    let pod = create_pod(
        &client,
        &production.name,
        "app-worker",
        json!({"imagePullSecrets": [{"name": "regcred"}],
               "containers": [{"name": "app", "image": "registry.internal.corp/app:v2.1.0"}]}),
    )
    .await;
    kubelet_event(&client, &pod, "Failed", SANDBOX_401).await;
    series_event(&client, &pod, "FailedCreatePodSandBox", SANDBOX_HELPER).await;

    let out = doctor("app-worker", &production.name).await;
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    assert!(report.contains("Warning Failed (x3): Failed to create pod sandbox"), "core/v1 event: {report}");
    assert!(report.contains("Warning FailedCreatePodSandBox (x1)"), "events.k8s.io event: {report}");
    assert!(report.contains("Pod spec: regcred (missing)"), "{report}");

    let causes = causes(&report);
    assert_eq!(causes[0], "the node cannot pull the sandbox image registry.internal.corp/pause:3.9", "{report}");
    // Other tests' namespaces may hold a `regcred` too: the near miss is what this test pins down.
    assert!(causes[1].starts_with("pull secret \"regcred\""), "{report}");
    assert!(report.contains("imagePullSecrets never apply to it"), "{report}");
    assert!(report.contains("the helper's own lookup, not this Pod's imagePullSecrets"), "{report}");
    assert!(
        report.contains(&format!("Secret \"reg-cred\" in {} is a near miss of \"regcred\"", default.name)),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "$ kubectl get secret reg-cred -n {} -o json | jq '.metadata |= {{name: \"regcred\", namespace: \"{}\"}}' | kubectl apply -f -",
            default.name, production.name
        )),
        "{report}"
    );
}

#[tokio::test]
async fn pod_created_before_the_service_account_was_patched() {
    let client = cluster_or_skip!();
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client, "doctor-race", &[]).await;
    let sentinel = "Sentinel-Doctor-9b2e";
    let config = docker_config(json!({"registry.internal.corp": {"username": "svc", "password": sentinel}}));
    put_secret(&client, &namespace.name, "regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", config)
        .await;
    let image = json!([{"name": "app", "image": "registry.internal.corp/app:1"}]);
    create_pod(&client, &namespace.name, "early", json!({"containers": image})).await;
    // A labelled account has managedFields, so the API server records who patches it and when.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace.name);
    let worker: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "worker", "labels": {"app": "worker"}}})).unwrap();
    accounts.create(&PostParams::default(), &worker).await.unwrap();
    create_pod(&client, &namespace.name, "early-worker", json!({"serviceAccountName": "worker", "containers": image}))
        .await;
    let credential: RegistryCredential = serde_json::from_value(json!({
        "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
        "metadata": {"name": format!("doctor-race-{}", std::process::id())},
        "spec": {"source": {"secretRef": {"namespace": "regcred-system", "name": "corp-pull"}},
                 "namespaces": {"include": [namespace.name.as_str()]},
                 "namespaceSelector": {"matchLabels": {"team": "payments"}}},
    }))
    .unwrap();
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    credentials.create(&PostParams::default(), &credential).await.unwrap();

    let out = doctor("early", &namespace.name).await;
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    assert_eq!(causes(&report), vec!["ServiceAccount default has no pull secret, so the Pod got none"], "{report}");
    assert!(
        report.contains(&format!(
            "RegistryCredential {}: spec.namespaceSelector {{\"matchLabels\":{{\"team\":\"payments\"}}}} does not match the labels of {}",
            credential.name_any(),
            namespace.name
        )),
        "{report}"
    );

    // The operator patches the accounts after the Pods exist: admission never copies it over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let patch = json!({"imagePullSecrets": [{"name": "regcred"}]});
    let params = PatchParams { field_manager: Some("regcred-operator".into()), ..Default::default() };
    for account in ["default", "worker"] {
        accounts.patch(account, &params, &Patch::Merge(&patch)).await.unwrap();
    }

    for (pod, account) in [("early", "default"), ("early-worker", "worker")] {
        let out = doctor(pod, &namespace.name).await;
        let report = text(&out.stdout);
        assert_eq!(
            causes(&report),
            vec![format!("the Pod was created before ServiceAccount {account} had its pull secrets")],
            "{report}"
        );
        assert!(report.contains(&format!("so {account} had none at")), "{report}");
        assert!(report.contains(&format!("$ kubectl delete pod {pod} -n {}", namespace.name)), "{report}");
        assert!(report.contains(&format!("ServiceAccount {account}: regcred (type kubernetes.io/dockerconfigjson")));
        for shown in [report.as_str(), &text(&out.stderr)] {
            assert!(!shown.contains(sentinel) && !shown.contains(&STANDARD.encode(format!("svc:{sentinel}"))));
        }
        let timed = report.contains("regcred-operator wrote its imagePullSecrets at");
        assert_eq!(timed, account == "worker", "only the labelled account has managedFields: {report}");
    }
    credentials.delete(&credential.name_any(), &Default::default()).await.unwrap();
}

#[tokio::test]
async fn wrong_type_and_uncovered_registry_are_ranked() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "doctor-cover", &[]).await;
    let quay = docker_config(json!({"quay.io/acme": {"username": "robot", "password": "p"}}));
    put_secret(&client, &namespace.name, "quay-pull", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", quay)
        .await;
    let corp = docker_config(json!({"registry.internal.corp": {"username": "svc", "password": "p"}}));
    put_secret(&client, &namespace.name, "corp-pull", "Opaque", ".dockerconfigjson", corp).await;
    create_pod(
        &client,
        &namespace.name,
        "mixed",
        json!({"imagePullSecrets": [{"name": "quay-pull"}, {"name": "corp-pull"}],
               "containers": [{"name": "api", "image": "registry.internal.corp:5000/api:2"},
                              {"name": "agent", "image": "quay.io/acme/agent:1"}]}),
    )
    .await;

    let out = doctor("mixed", &namespace.name).await;
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(
        causes(&report),
        vec![
            "pull secret \"corp-pull\" has type Opaque; the kubelet only reads .dockerconfigjson from type kubernetes.io/dockerconfigjson",
            "no pull secret of the Pod covers registry registry.internal.corp:5000 (container api)",
        ],
        "{report}"
    );
    assert!(
        report.contains(
            "agent: quay.io/acme/agent:1 (registry quay.io, covered by \"quay-pull\" (key \"quay.io/acme\"))"
        )
    );
    assert!(report.contains("corp-pull (type Opaque, keys [\".dockerconfigjson\"])"), "{report}");
}

#[tokio::test]
async fn healthy_pod_and_missing_pod() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "doctor-ok", &[]).await;
    let config = docker_config(json!({"https://registry.internal.corp/v2/": {"username": "svc", "password": "p"}}));
    put_secret(&client, &namespace.name, "regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", config)
        .await;
    create_pod(
        &client,
        &namespace.name,
        "fine",
        json!({"imagePullSecrets": [{"name": "regcred"}],
               "containers": [{"name": "app", "image": "registry.internal.corp/app:1"}, {"name": "db", "image": "postgres:16"}]}),
    )
    .await;
    let out = doctor("fine", &namespace.name).await;
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("Diagnosis: no pull-secret problem found."), "{report}");
    assert!(report.contains("covered by \"regcred\" (key \"https://registry.internal.corp/v2/\")"), "{report}");

    let out = doctor("no-such-pod", &namespace.name).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("Pod {}/no-such-pod not found", namespace.name)));
}

/// Runs one suggested command as a user would paste it, with kubectl from `REGCRED_TOOLS_BIN`
/// and this build of regcred-operator on PATH; `None` when kubectl is not available.
async fn run_suggested(command: &str) -> Option<String> {
    let tools = std::env::var_os("REGCRED_TOOLS_BIN").filter(|dir| !dir.is_empty())?;
    let binary_dir = std::path::Path::new(env!("CARGO_BIN_EXE_regcred-operator")).parent().unwrap().to_owned();
    let system = std::env::var_os("PATH").unwrap_or_default();
    let dirs = [std::path::PathBuf::from(tools), binary_dir].into_iter().chain(std::env::split_paths(&system));
    let path = std::env::join_paths(dirs).unwrap();
    let command = command.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh").args(["-c", &command]).env("PATH", path).output().unwrap()
    })
    .await
    .unwrap();
    Some(format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[tokio::test]
async fn event_text_is_escaped_and_no_suggested_command_shows_a_credential() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "doctor-hostile", &[]).await;
    let sentinel = "Sentinel-Doctor-5c1d";
    let config = docker_config(json!({"quay.io": {"username": "robot", "password": sentinel}}));
    put_secret(&client, &namespace.name, "regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", config)
        .await;
    let pod = create_pod(
        &client,
        &namespace.name,
        "hostile",
        json!({"imagePullSecrets": [{"name": "regcred"}],
               "containers": [{"name": "app", "image": "registry.internal.corp/app:1"}]}),
    )
    .await;
    // Whoever can write Events in the namespace controls this text.
    let hostile =
        "Failed to pull image \"registry.internal.corp/app:1\": \u{1b}]0;owned\u{7}\u{1b}[2J\rall good \u{202e}";
    kubelet_event(&client, &pod, "Failed\u{1b}[32m", hostile).await;

    let out = doctor("hostile", &namespace.name).await;
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(!report.contains(raw), "{raw:?} reached the terminal: {report:?}");
    }
    assert!(report.contains("Warning Failed\\u{1b}[32m (x3)"), "{report}");
    assert!(report.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[2J all good \\u{202e}"), "{report}");

    let commands: Vec<&str> = report.lines().filter_map(|line| line.trim_start().strip_prefix("$ ")).collect();
    let reads_data: Vec<&str> = commands.iter().copied().filter(|c| c.contains("base64 -d")).collect();
    assert!(!reads_data.is_empty(), "the uncovered registry suggests checking the Secret: {report}");
    for command in reads_data {
        let Some(output) = run_suggested(command).await else {
            assert!(command.contains("regcred-operator normalize >/dev/null"), "{command}");
            continue;
        };
        assert!(!output.contains(sentinel), "`{command}` shows the password: {output}");
        assert!(!output.contains(&STANDARD.encode(format!("robot:{sentinel}"))), "`{command}`: {output}");
    }
}

#[tokio::test]
async fn own_pull_secrets_hide_the_service_accounts_and_the_pod_predates_its_copy() {
    let client = cluster_or_skip!();
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client, "doctor-own", &[]).await;
    let quay = docker_config(json!({"quay.io": {"username": "robot", "password": "p"}}));
    put_secret(&client, &namespace.name, "quay-pull", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", quay)
        .await;
    create_pod(
        &client,
        &namespace.name,
        "chart-app",
        json!({"imagePullSecrets": [{"name": "quay-pull"}],
               "containers": [{"name": "app", "image": "registry.internal.corp/app:1"}]}),
    )
    .await;
    // The credential arrives after the Pod: its copy, and the ServiceAccount entry the operator adds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let corp = docker_config(json!({"registry.internal.corp": {"username": "svc", "password": "p"}}));
    put_secret(&client, &namespace.name, "regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", corp).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace.name);
    accounts
        .patch("default", &PatchParams::default(), &Patch::Merge(&json!({"imagePullSecrets": [{"name": "regcred"}]})))
        .await
        .unwrap();
    let credential: RegistryCredential = serde_json::from_value(json!({
        "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
        "metadata": {"name": format!("doctor-own-{}", std::process::id())},
        "spec": {"source": {"secretRef": {"namespace": "regcred-system", "name": "corp-pull"}},
                 "namespaces": {"include": [namespace.name.as_str()]}},
    }))
    .unwrap();
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    credentials.create(&PostParams::default(), &credential).await.unwrap();

    // The shipped policy, where the cluster serves its API, installed after the Pod was created
    // (it would have given the Pod the copy): doctor must find it in the version served.
    let served = admission_policy_api(&client).await;
    if served.is_some() {
        crate::admission::install_policy(&client).await;
    }

    let out = doctor("chart-app", &namespace.name).await;
    let report = text(&out.stdout);
    credentials.delete(&credential.name_any(), &Default::default()).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    let causes = causes(&report);
    assert!(causes.contains(&"the Pod's own pull secrets hide ServiceAccount default's [\"regcred\"]"), "{report}");
    let predates = format!(
        "the Pod was created before Secret \"regcred\" of RegistryCredential {} existed",
        credential.name_any()
    );
    assert!(causes.contains(&predates.as_str()), "{report}");
    assert!(
        report.contains("\"regcred\" of ServiceAccount default covers registry registry.internal.corp (container app)")
    );
    assert!(
        report.contains(&format!(
            "$ kubectl delete pod chart-app -n {} && kubectl apply -f <its manifest>",
            namespace.name
        )),
        "{report}"
    );
    assert!(report.contains("\nAdmission injection:\n"), "{report}");
    // Whichever version of the policy API the cluster serves (v1, or v1beta1 on 1.34 / 1.35),
    // doctor finds the policy in it; "serves none" only where it serves none.
    let admission = if served.is_some() {
        "MutatingAdmissionPolicy regcred-operator-inject-pull-secret is installed and bound"
    } else {
        "the cluster serves no MutatingAdmissionPolicy API"
    };
    assert!(report.contains(admission), "{served:?}: {report}");
    assert!(
        report.contains(&format!(
            "RegistryCredential {} selects namespace {} and ServiceAccount default: ",
            credential.name_any(),
            namespace.name
        )),
        "{report}"
    );
}
