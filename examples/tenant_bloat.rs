//! Benchmark: the operator's peak memory when tenants bloat what it watches. Namespaces whose
//! ServiceAccounts list thousands of pull secrets, and Pending Pods with hundreds of labels and
//! pull secrets of their own, and beside the source Secret the large Secrets a trusted namespace
//! holds too (Helm release Secrets), against the cluster in KUBECONFIG (the local control plane has no
//! scheduler, so Pods stay Pending). Each operator binary given is started in turn, runs until the
//! credential is Ready, and its peak RSS (VmHWM) is printed.
//!
//! `cargo run --release --example tenant_bloat -- --operator new=target/release/regcred-operator
//!  --operator old=/tmp/old/regcred-operator`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::{Value, json};

const SOURCE_NAMESPACE: &str = "regcred-bloat-source";
const SELECT_LABEL: &str = "regcred.dev/bloat";

#[derive(Parser)]
struct Args {
    /// `label=path` of an operator binary to measure; repeat to compare.
    #[arg(long, required = true)]
    operator: Vec<String>,
    #[arg(long, default_value_t = 20)]
    namespaces: usize,
    /// ServiceAccounts per namespace, each listing `entries` pull secrets.
    #[arg(long, default_value_t = 5)]
    accounts: usize,
    #[arg(long, default_value_t = 3_000)]
    entries: usize,
    /// Pending Pods, each with `labels` labels and `entries / 10` pull secrets of its own.
    #[arg(long, default_value_t = 200)]
    pods: usize,
    #[arg(long, default_value_t = 400)]
    labels: usize,
    /// Secrets in the source namespace beside the source, `release_kib` KiB each (Helm releases).
    #[arg(long, default_value_t = 10)]
    releases: usize,
    #[arg(long, default_value_t = 512)]
    release_kib: usize,
    /// The credential does not recover stuck Pods (evictStuckPods off).
    #[arg(long)]
    without_recovery: bool,
}

fn filler(prefix: &str, i: usize, width: usize) -> String {
    format!("{prefix}{i:0width$}", width = width - prefix.len())
}

async fn apply<K>(api: &Api<K>, name: &str, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("regcred-bloat").force(), &Patch::Apply(body)).await.unwrap();
}

/// Creates what tenants bloated; returns the bytes of names and labels they wrote.
async fn bloat(client: &Client, args: &Args) -> usize {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply(
        &namespaces,
        SOURCE_NAMESPACE,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SOURCE_NAMESPACE}}),
    )
    .await;
    let config = json!({"auths": {"registry.example.test": {"username": "u", "password": "p"}}}).to_string();
    let source = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}});
    let secrets = Api::<Secret>::namespaced(client.clone(), SOURCE_NAMESPACE);
    apply(&secrets, "pull", source).await;
    for r in 0..args.releases {
        let release = filler("", r, 8).repeat(args.release_kib * 128);
        let body = json!({"metadata": {"name": format!("sh.helm.release.v1.bloat.v{r}"), "labels": {"owner": "helm"}},
                          "type": "helm.sh/release.v1", "data": {"release": base64::engine::general_purpose::STANDARD.encode(release)}});
        create(&secrets, body).await;
    }
    // Every ServiceAccount's names its own: no cache can share them between ServiceAccounts.
    let entries = |owner: &str| -> Vec<Value> {
        (0..args.entries).map(|i| json!({"name": filler(&format!("{owner}-"), i, 60)})).collect()
    };
    let mut bytes = 0;
    for n in 0..args.namespaces {
        let namespace = format!("regcred-bloat-{n}");
        let body = json!({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace, "labels": {SELECT_LABEL: "yes"}}});
        apply(&namespaces, &namespace, body).await;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        stream::iter(0..args.accounts)
            .for_each_concurrent(8, |a| {
                let accounts = accounts.clone();
                let body = json!({"metadata": {"name": format!("bloated-{a}")},
                                  "imagePullSecrets": entries(&format!("{n}-{a}"))});
                async move { create(&accounts, body).await }
            })
            .await;
        bytes += args.accounts * args.entries * 60;
    }
    let labels: serde_json::Map<String, Value> =
        (0..args.labels).map(|i| (filler("tenant.example/l", i, 60), json!(filler("v", i, 60)))).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "regcred-bloat-0");
    let own_entries = args.entries / 10;
    stream::iter(0..args.pods)
        .for_each_concurrent(8, |p| {
            let own: Vec<Value> = entries(&format!("pod-{p}")).into_iter().take(own_entries).collect();
            let body = json!({"metadata": {"name": format!("pending-{p}"), "labels": labels},
                              "spec": {"imagePullSecrets": own, "containers": [{"name": "app", "image": "registry.example.test/app:1"}]}});
            let pods = pods.clone();
            async move { create(&pods, body).await }
        })
        .await;
    bytes + args.pods * (args.labels * 120 + own_entries * 60) + args.releases * args.release_kib * 1024
}

/// Creates the object unless it exists: a later run measures the same state, not a reset one.
async fn create<K>(api: &Api<K>, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(body).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("{error}"),
    }
}

/// Peak and settled RSS in MiB of `binary` running until the credential is Ready (and 5 s more),
/// and how long Ready took.
async fn measure(client: &Client, binary: &str) -> (f64, f64, Duration) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(binary)
        .args(["run", "--source-namespace", SOURCE_NAMESPACE, "--leader-election=false"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the operator binary starts");
    let started = Instant::now();
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    loop {
        let credential = credentials.get("bloat").await.unwrap();
        let ready =
            credential.status.iter().flat_map(|s| &s.conditions).any(|c| c.type_ == "Ready" && c.status == "True");
        if ready && started.elapsed() > Duration::from_secs(5) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{binary}: not Ready within 300 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let mib = |field: &str| {
        let kib = status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).unwrap();
        kib.parse::<f64>().unwrap() / 1024.0
    };
    let (peak, settled) = (mib("VmHWM:"), mib("VmRSS:"));
    let _ = child.kill();
    let _ = child.wait();
    (peak, settled, took)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = Client::try_default().await.expect("a cluster in KUBECONFIG");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = serde_json::to_value(RegistryCredential::crd()).unwrap();
    apply(&crds, "registrycredentials.regcred.dev", crd).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bytes = bloat(&client, &args).await;
    let credential = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": "bloat"},
        "spec": {"source": {"secretRef": {"namespace": SOURCE_NAMESPACE, "name": "pull"}},
                 "namespaceSelector": {"matchLabels": {SELECT_LABEL: "yes"}},
                 "serviceAccounts": {"names": ["*"]}, "evictStuckPods": !args.without_recovery}});
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    apply(&credentials, "bloat", credential).await;
    println!(
        "tenant bloat: {} namespaces x {} ServiceAccounts of {} entries, {} Pending Pods of {} labels, {} Secrets of {} KiB beside the source: {:.1} MiB; evictStuckPods {}",
        args.namespaces,
        args.accounts,
        args.entries,
        args.pods,
        args.labels,
        args.releases,
        args.release_kib,
        bytes as f64 / (1024.0 * 1024.0),
        !args.without_recovery,
    );
    println!("| operator | peak RSS (MiB) | RSS once Ready (MiB) | Ready after |\n|---|---|---|---|");
    for operator in &args.operator {
        let (label, binary) = operator.split_once('=').expect("label=path");
        let (peak, settled, took) = measure(&client, binary).await;
        println!("| {label} | {peak:.1} | {settled:.1} | {:.1} s |", took.as_secs_f64());
    }
}
