//! On a real node (kubelet, containerd, an authenticated registry: tests/cluster/node-up.sh): the
//! copy the operator writes makes a pull succeed, and nothing else does.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;

/// tests/run.sh taints the node so that only these tests' Pods run there.
static NODE_TOLERATION: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"key": "regcred.dev/node-tests", "operator": "Equal", "value": "true", "effect": "NoSchedule"}),
);

/// How long a pull may take on the node, Events included.
const PULL_TIMEOUT: Duration = Duration::from_secs(90);

/// The node's environment (node-up.sh writes `export NAME=value` lines), or `None` (the reason
/// printed) when no node runs; with `CI=true` a missing node is a failure.
fn node() -> Option<BTreeMap<String, String>> {
    let Some(path) = std::env::var_os("REGCRED_NODE_ENV").filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but REGCRED_NODE_ENV is not set: no node");
        eprintln!("skipped: REGCRED_NODE_ENV is not set; start a node with tests/cluster/node-up.sh");
        return None;
    };
    let text = std::fs::read_to_string(&path).expect("the node's env file");
    let values = text
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').replace('\\', "")))
        .collect();
    Some(values)
}

/// One node test at a time: the registry's password is rotated by one of them.
static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Evaluates to the node's environment and the node for this test alone, or returns when the
/// test may skip.
macro_rules! node_or_skip {
    () => {
        match node() {
            Some(env) => (env, NODE.lock().await),
            None => return,
        }
    };
}

/// The source as the seed article's broken example writes it: a `https://host/v2/` key.
fn seed_article_source(env: &BTreeMap<String, String>, password: &str) -> Value {
    let registry = &env["REGCRED_REGISTRY"];
    docker_config(&format!("https://{registry}/v2/"), &env["REGCRED_REGISTRY_USER"], password)
}

fn private_pod(name: &str, image: &str, own_pull_secrets: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "tolerations": [NODE_TOLERATION.clone()],
            "imagePullSecrets": own_pull_secrets.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "Always"}],
        },
    }))
    .unwrap()
}

/// Waits until the Pod runs, or until a container waits for `reason`; returns which happened.
async fn pod_outcome(admin: &Client, namespace: &str, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let deadline = tokio::time::Instant::now() + PULL_TIMEOUT;
    loop {
        if let Some(pod) = pods.get_opt(name).await.unwrap() {
            let status = pod.status.unwrap_or_default();
            if status.phase.as_deref() == Some("Running") {
                return "Running".into();
            }
            let waiting = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .find(|r| r == "ErrImagePull" || r == "ImagePullBackOff");
            if let Some(reason) = waiting {
                return reason;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "Pod {namespace}/{name} neither ran nor failed to pull");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_pod(admin: &Client, namespace: &str, pod: &Pod) {
    Api::<Pod>::namespaced(admin.clone(), namespace).create(&PostParams::default(), pod).await.unwrap();
}

fn registry_saw_401(env: &BTreeMap<String, String>) -> bool {
    std::fs::read_to_string(&env["REGCRED_REGISTRY_LOG"]).unwrap_or_default().contains("\" 401 ")
}

#[tokio::test]
async fn a_private_image_is_pulled_with_the_copy_and_not_without_it() {
    let admin = cluster_or_skip!();
    let (env, _node) = node_or_skip!();
    let image = env["REGCRED_NODE_IMAGE"].clone();

    // No operator, no pull secret: the registry refuses.
    let bare = regcred_test_support::cluster::TestNamespace::create(&admin, "node-none", &[]).await;
    regcred_test_support::cluster::wait_for_default_service_account(&admin, &bare.name).await;
    create_pod(&admin, &bare.name, &private_pod("app", &image, &[])).await;
    let outcome = pod_outcome(&admin, &bare.name, "app").await;
    assert!(outcome == "ErrImagePull" || outcome == "ImagePullBackOff", "without a secret: {outcome}");
    assert!(registry_saw_401(&env), "the registry refused an anonymous pull with 401");
    // A hand-made pull secret whose key ends in `/v2` without the slash: the kubelet reads `v2`
    // as a repository path, so the credential never reaches this image.
    let registry = env["REGCRED_REGISTRY"].as_str();
    let (user, password) = (env["REGCRED_REGISTRY_USER"].as_str(), env["REGCRED_REGISTRY_PASSWORD"].as_str());
    let misread = docker_config(&format!("https://{registry}/v2"), user, password);
    put_docker_config(&admin, &bare.name, "by-hand", &misread).await;
    create_pod(&admin, &bare.name, &private_pod("by-hand", &image, &["by-hand"])).await;
    let outcome = pod_outcome(&admin, &bare.name, "by-hand").await;
    assert!(outcome == "ErrImagePull" || outcome == "ImagePullBackOff", "the kubelet misreads `/v2`: {outcome}");

    // The operator, with that same source: its normalized copy pulls.
    let fx = Fixture::start(admin.clone(), "node-pull", &[]).await;
    fx.put_source("pull", &misread).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    // Through the ServiceAccount.
    create_pod(&admin, &namespace.name, &private_pod("via-account", &image, &[])).await;
    assert_eq!(pod_outcome(&admin, &namespace.name, "via-account").await, "Running");
    // Through admission: a Pod that lists pull secrets of its own gets none of its
    // ServiceAccount's; the policy appends the copy.
    create_pod(&admin, &namespace.name, &private_pod("own-list", &image, &["chart-own"])).await;
    let pod = Api::<Pod>::namespaced(admin.clone(), &namespace.name).get("own-list").await.unwrap();
    let names: Vec<String> = pod.spec.unwrap().image_pull_secrets.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["chart-own", "regcred"]);
    assert_eq!(pod_outcome(&admin, &namespace.name, "own-list").await, "Running");
}

#[tokio::test]
async fn a_deployment_stuck_before_the_credential_runs_after_recovery() {
    let admin = cluster_or_skip!();
    let (env, _node) = node_or_skip!();
    let fx = Fixture::start(admin.clone(), "node-recover", &[]).await;
    fx.put_source("pull", &seed_article_source(&env, &env["REGCRED_REGISTRY_PASSWORD"])).await;
    let namespace = fx.namespace(true).await;
    let ns = namespace.name.as_str();
    regcred_test_support::cluster::wait_for_default_service_account(&admin, ns).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "tolerations": [NODE_TOLERATION.clone()],
                                       "containers": [{"name": "app", "image": env["REGCRED_NODE_IMAGE"]}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(admin.clone(), ns).create(&PostParams::default(), &deployment).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let stuck = loop {
        let list = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
        if let Some(pod) = list.items.into_iter().next() {
            break pod;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let outcome = pod_outcome(&admin, ns, &stuck.name_any()).await;
    assert!(outcome == "ErrImagePull" || outcome == "ImagePullBackOff", "stuck before the credential: {outcome}");

    fx.apply(&fx.credential("main", json!({"evictStuckPods": true}))).await;
    let deadline = tokio::time::Instant::now() + PULL_TIMEOUT;
    loop {
        let list = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
        let running = list
            .items
            .iter()
            .any(|p| p.uid() != stuck.uid() && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if running {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the recreated Pod never ran");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_rotated_password_reaches_new_pods() {
    let admin = cluster_or_skip!();
    let (env, _node) = node_or_skip!();
    let env_file = std::env::var("REGCRED_NODE_ENV").unwrap();
    let node_dir = std::path::Path::new(&env_file).parent().unwrap().to_path_buf();
    let fx = Fixture::start(admin.clone(), "node-rotate", &[]).await;
    fx.put_source("pull", &seed_article_source(&env, &env["REGCRED_REGISTRY_PASSWORD"])).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    create_pod(&admin, &namespace.name, &private_pod("before", &env["REGCRED_NODE_IMAGE_OTHER"], &[])).await;
    assert_eq!(pod_outcome(&admin, &namespace.name, "before").await, "Running");

    // The registry takes a new password, then the source gets it.
    let rotated = format!("rotated-{}", std::process::id());
    let status = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/registry-passwd.sh"))
        .arg(&node_dir)
        .arg(&rotated)
        .status()
        .unwrap();
    assert!(status.success(), "registry-passwd.sh");
    fx.put_source("pull", &seed_article_source(&env, &rotated)).await;
    let registry = env["REGCRED_REGISTRY"].as_str();
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical(registry, &env["REGCRED_REGISTRY_USER"], &rotated))
        .await;
    create_pod(&admin, &namespace.name, &private_pod("after", &env["REGCRED_NODE_IMAGE_OTHER"], &[])).await;
    assert_eq!(pod_outcome(&admin, &namespace.name, "after").await, "Running");
    // Put the password back for the other tests on this node.
    let restored = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/registry-passwd.sh"))
        .arg(&node_dir)
        .arg(&env["REGCRED_REGISTRY_PASSWORD"])
        .status()
        .unwrap();
    assert!(restored.success());
}

/// `regcred-operator doctor pod` on the Pod, as a person runs it; its report.
async fn doctor(namespace: &str, pod: &str) -> String {
    let (namespace, pod) = (namespace.to_owned(), pod.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_regcred-operator"))
            .args(["doctor", "pod", &pod, "-n", &namespace])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Waits for the kubelet's pull failure Events, then asks doctor.
async fn failed_pull_diagnosis(admin: &Client, namespace: &str, pod: &Pod) -> String {
    create_pod(admin, namespace, pod).await;
    let name = pod.name_any();
    let outcome = pod_outcome(admin, namespace, &name).await;
    assert!(outcome == "ErrImagePull" || outcome == "ImagePullBackOff", "{name}: {outcome}");
    doctor(namespace, &name).await
}

#[tokio::test]
async fn doctor_reads_the_kubelets_real_events() {
    let admin = cluster_or_skip!();
    let (env, _node) = node_or_skip!();
    let image = env["REGCRED_NODE_IMAGE"].clone();
    let registry = env["REGCRED_REGISTRY"].as_str();
    let user = env["REGCRED_REGISTRY_USER"].as_str();
    let namespace = regcred_test_support::cluster::TestNamespace::create(&admin, "node-doctor", &[]).await;
    let elsewhere = regcred_test_support::cluster::TestNamespace::create(&admin, "node-doctor-other", &[]).await;
    let ns = namespace.name.as_str();
    regcred_test_support::cluster::wait_for_default_service_account(&admin, ns).await;
    put_docker_config(&admin, ns, "wrong-password", &docker_config(registry, user, "not-the-password")).await;
    put_docker_config(&admin, ns, "other-registry", &docker_config("registry.example.test", user, "pw")).await;
    put_docker_config(&admin, &elsewhere.name, "misplaced", &docker_config(registry, user, "pw")).await;

    let cases = [
        ("missing", "nosuch", "pull secret \"nosuch\" does not exist in namespace"),
        ("misplaced", "misplaced", "is in another namespace"),
        ("wrong-password", "wrong-password", "the registry refused the credentials the kubelet sent"),
        ("not-covered", "other-registry", &format!("no pull secret of the Pod covers registry {registry}")),
    ];
    for (pod, secret, cause) in cases {
        let report = failed_pull_diagnosis(&admin, ns, &private_pod(pod, &image, &[secret])).await;
        assert!(report.contains(cause), "doctor on {pod}: expected {cause:?} in:\n{report}");
        assert!(!report.contains(&env["REGCRED_REGISTRY_PASSWORD"]), "doctor showed a credential");
    }

    // Kubernetes 1.35+: an image another namespace's Pod pulled onto this node is not this Pod's
    // to use without a credential of its own (KubeletEnsureSecretPulledImages).
    let node = env["REGCRED_NODE_NAME"].clone();
    let cached = |name: &str, secrets: &[&str]| {
        let mut pod = private_pod(name, &env["REGCRED_NODE_IMAGE_OTHER"], secrets);
        let spec = pod.spec.as_mut().unwrap();
        spec.node_name = Some(node.clone());
        spec.containers[0].image_pull_policy = Some("IfNotPresent".into());
        pod
    };
    put_docker_config(
        &admin,
        &elsewhere.name,
        "good",
        &docker_config(registry, user, &env["REGCRED_REGISTRY_PASSWORD"]),
    )
    .await;
    create_pod(&admin, &elsewhere.name, &cached("puller", &["good"])).await;
    assert_eq!(pod_outcome(&admin, &elsewhere.name, "puller").await, "Running");
    let report = failed_pull_diagnosis(&admin, ns, &cached("borrower", &[])).await;
    assert!(
        report.contains("an image cached on the node is not usable by a Pod without its own credential"),
        "{report}"
    );
}

#[tokio::test]
async fn a_static_pod_in_a_selected_namespace_gets_its_mirror_pod() {
    let admin = cluster_or_skip!();
    let (env, _node) = node_or_skip!();
    crate::admission::install_policy(&admin).await;
    let namespace = regcred_test_support::cluster::TestNamespace::create(&admin, "node-static", &[]).await;
    // Selected by an exact include entry, as kube-system would be; the policy alone acts on it.
    let name = format!("static-{}", std::process::id());
    crate::admission::credential(
        &admin,
        &name,
        json!({"secretName": name, "namespaces": {"include": [namespace.name]}}),
    )
    .await;
    crate::admission::until_injected(&admin, &namespace.name, &name).await;

    let manifest = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "static-web", "namespace": namespace.name},
        "spec": {"containers": [{"name": "web", "image": env["REGCRED_NODE_PAUSE_IMAGE"],
                                 "imagePullPolicy": "IfNotPresent"}]},
    });
    let path = std::path::Path::new(&env["REGCRED_NODE_STATIC_POD_DIR"]).join(format!("{}.json", namespace.name));
    std::fs::write(&path, manifest.to_string()).unwrap();
    // The kubelet creates the mirror Pod `<name>-<node>`; a refused one it retries, never seen here.
    let mirror_name = format!("static-web-{}", env["REGCRED_NODE_NAME"]);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace.name);
    let deadline = tokio::time::Instant::now() + PULL_TIMEOUT;
    let mirror = loop {
        if let Some(pod) = pods.get_opt(&mirror_name).await.unwrap() {
            break pod;
        }
        if tokio::time::Instant::now() > deadline {
            std::fs::remove_file(&path).unwrap();
            panic!("no mirror Pod {mirror_name} in {} after {PULL_TIMEOUT:?}", namespace.name);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    std::fs::remove_file(&path).unwrap();
    assert!(mirror.annotations().contains_key("kubernetes.io/config.mirror"), "a mirror Pod");
    assert_eq!(mirror.spec.unwrap().image_pull_secrets, None, "nothing appended to it");
    let _ = Api::<regcred_operator::crd::RegistryCredential>::all(admin.clone())
        .delete(&name, &kube::api::DeleteParams::default())
        .await;
}

/// The registry's answer to `GET /v2/` with these credentials: 200 only for a password it holds.
async fn registry_answers(registry: &str, user: &str, password: &str) -> u16 {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut stream = tokio::net::TcpStream::connect(registry).await.unwrap();
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {registry}\r\nAuthorization: Basic {basic}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// A plugin that mints a password on each call, valid for 8 s, which the node's registry accepts
/// only while valid (a reaper drops it from the htpasswd file at its expiry): Pods pull before
/// and after three refreshes, when the first password is refused.
#[tokio::test]
async fn pods_pull_with_a_minted_password_before_and_after_it_is_refreshed() {
    use regcred_test_support::plugins::{Plugins, copy_login, wait_for_copy_user};
    let admin = cluster_or_skip!();
    let (env, _node) = node_or_skip!();
    let (registry, image) = (env["REGCRED_REGISTRY"].clone(), env["REGCRED_NODE_IMAGE"].clone());
    let plugins = Plugins::new("node-mint");
    plugins.minting("mint");
    let lifetime = Duration::from_secs(8);
    let mut plugin_env = plugins.minting_env(&registry, lifetime);
    let htpasswd = json!({"name": "MINT_HTPASSWD", "value": env["REGCRED_REGISTRY_HTPASSWD"]});
    plugin_env.as_array_mut().unwrap().push(htpasswd.clone());
    let provider = json!({"name": "mint", "matchImages": [registry], "defaultCacheDuration": "1h", "env": plugin_env});
    let args = plugins.configure(vec![provider], 10);
    let mut reaper = std::process::Command::new(plugins.dir.join("mint"))
        .arg("reap")
        .env("MINT_STATE", &plugins.state)
        .env("MINT_HTPASSWD", &env["REGCRED_REGISTRY_HTPASSWD"])
        .spawn()
        .unwrap();

    let fx = Fixture::start(admin.clone(), "node-mint", &args).await;
    let namespace = fx.namespace(true).await;
    let source = json!({"source": {"secretRef": null,
        "credentialProvider": {"name": "mint", "image": image}}});
    let credential = fx.apply(&fx.credential("main", source)).await;
    let first = wait_for_copy_user(&admin, &namespace.name, "regcred", &registry, TIMEOUT, |_| true).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    create_pod(&admin, &namespace.name, &private_pod("before", &image, &[])).await;
    assert_eq!(pod_outcome(&admin, &namespace.name, "before").await, "Running");

    wait_for_copy_user(&admin, &namespace.name, "regcred", &registry, Duration::from_secs(60), |(user, _)| {
        user == "mint-4"
    })
    .await;
    // The first password expired and the registry refuses it; the copy holds a valid one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(registry_answers(&registry, &first.0, &first.1).await, 401, "the first password outlived its expiry");
    let copy = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &namespace.name)
        .get("regcred")
        .await
        .unwrap();
    let (user, password) = copy_login(&copy, &registry).unwrap();
    assert_eq!(registry_answers(&registry, &user, &password).await, 200, "the copy's password ({user}) is refused");
    create_pod(&admin, &namespace.name, &private_pod("after", &image, &[])).await;
    assert_eq!(pod_outcome(&admin, &namespace.name, "after").await, "Running");
    let calls = plugins.calls();
    let at: Vec<f64> = calls.iter().map(|c| c["at"].as_f64().unwrap()).collect();
    let fractions: Vec<String> =
        at.windows(2).map(|w| format!("{:.2}", (w[1] - w[0]) / lifetime.as_secs_f64())).collect();
    println!("node: {} mints, refresh intervals / lifetime: {}", calls.len(), fractions.join(", "));

    // The registry's own users back, for the other tests on this node.
    std::fs::write(plugins.state.join("stop"), "").unwrap();
    let _ = reaper.wait();
    let base = std::fs::read(plugins.state.join("htpasswd.base")).unwrap();
    let restored = format!("{}.restore", env["REGCRED_REGISTRY_HTPASSWD"]);
    std::fs::write(&restored, base).unwrap();
    std::fs::rename(&restored, &env["REGCRED_REGISTRY_HTPASSWD"]).unwrap();
    fx.delete(&credential).await;
}
