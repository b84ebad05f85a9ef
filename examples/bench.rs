//! Benchmark: convergence time, API writes and memory of regcred-operator at 100, 1,000 and
//! 10,000 namespaces, against the raw limit of the same writes from a plain client.
//!
//! Run it with `bash scripts/bench.sh` (a dedicated local control plane, release builds), or
//! against the cluster in KUBECONFIG:
//! `cargo run --release --example bench -- --operator target/release/regcred-operator`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde::Serialize;
use serde_json::{Value, json};

const SOURCE_NAMESPACE: &str = "regcred-bench-source";
const TIER_LABEL: &str = "regcred.dev/bench-tier";
const RAW_SECRET: &str = "raw-bench";

#[derive(Parser)]
struct Args {
    /// The operator binary to measure (a release build).
    #[arg(long, default_value = "target/release/regcred-operator")]
    operator: PathBuf,
    /// Namespace counts to measure, in increasing order.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    sizes: Vec<usize>,
    /// Concurrency levels tried for the raw client; the best counts.
    #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
    raw_concurrency: Vec<usize>,
    /// Namespaces created in one burst for the new-namespace latency.
    #[arg(long, default_value_t = 200)]
    burst: usize,
    /// Where results.md and results.json go.
    #[arg(long, default_value = "docs/benchmark")]
    out: PathBuf,
    /// Extra arguments for `regcred-operator run`.
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    operator_args: Vec<String>,
}

/// What the watches saw, with the instant each thing was first seen.
#[derive(Default)]
struct Observed {
    /// namespace -> (secret name -> payload) of managed copies.
    copies: HashMap<String, HashMap<String, String>>,
    /// namespace -> imagePullSecrets of its default ServiceAccount.
    entries: HashMap<String, Vec<String>>,
    /// namespace -> when its default ServiceAccount was first seen.
    account_seen: HashMap<String, Instant>,
    /// (namespace, entry) -> when the default ServiceAccount was first seen listing it.
    entry_seen: HashMap<(String, String), Instant>,
}

type Shared = Arc<Mutex<Observed>>;

async fn watch_copies(client: Client, observed: Shared) {
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=regcred-operator");
    let mut events = watcher::watcher(Api::<Secret>::all(client), config).boxed();
    while let Some(event) = events.next().await {
        let mut observed = observed.lock().unwrap();
        match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                let payload = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(".dockerconfigjson"))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned());
                observed
                    .copies
                    .entry(s.namespace().unwrap())
                    .or_default()
                    .insert(s.name_any(), payload.unwrap_or_default());
            }
            Ok(watcher::Event::Delete(s)) => {
                if let Some(copies) = observed.copies.get_mut(&s.namespace().unwrap()) {
                    copies.remove(&s.name_any());
                }
            }
            _ => {}
        }
    }
}

async fn watch_default_accounts(client: Client, observed: Shared) {
    let config = watcher::Config::default().fields("metadata.name=default");
    let mut events = watcher::watcher(Api::<ServiceAccount>::all(client), config).boxed();
    while let Some(event) = events.next().await {
        let now = Instant::now();
        if let Ok(watcher::Event::Apply(a) | watcher::Event::InitApply(a)) = event {
            let namespace = a.namespace().unwrap();
            let entries: Vec<String> = a.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
            let mut observed = observed.lock().unwrap();
            observed.account_seen.entry(namespace.clone()).or_insert(now);
            for entry in &entries {
                observed.entry_seen.entry((namespace.clone(), entry.clone())).or_insert(now);
            }
            observed.entries.insert(namespace, entries);
        }
    }
}

/// Waits until `done` holds for what the watches saw; returns when it first did (to 10 ms).
async fn until(observed: &Shared, what: &str, timeout: Duration, done: impl Fn(&Observed) -> bool) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&observed.lock().unwrap()) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every namespace holds copy `secret_name` with `payload` and lists it on its default account.
fn converged(observed: &Observed, namespaces: &[String], secret_name: &str, payload: &str) -> bool {
    namespaces.iter().all(|ns| {
        observed.copies.get(ns).and_then(|c| c.get(secret_name)).is_some_and(|p| p == payload)
            && observed.entries.get(ns).is_some_and(|e| e.iter().any(|name| name == secret_name))
    })
}

fn docker_config(password: &str) -> String {
    json!({"auths": {"https://registry.bench.test/v2/": {"username": "bench", "password": password}}}).to_string()
}

fn canonical(password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("bench:{password}"));
    format!(r#"{{"auths":{{"registry.bench.test":{{"auth":"{auth}","password":"{password}","username":"bench"}}}}}}"#)
}

async fn apply<K>(api: &Api<K>, name: &str, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("regcred-bench").force(), &Patch::Apply(&body)).await.unwrap();
}

async fn put_source(client: &Client, password: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull", "namespace": SOURCE_NAMESPACE},
        "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": docker_config(password)}});
    apply(&Api::<Secret>::namespaced(client.clone(), SOURCE_NAMESPACE), "pull", body).await;
}

/// Creates namespaces `names` in tier `tier` and waits for their default ServiceAccounts.
async fn create_namespaces(client: &Client, observed: &Shared, names: &[String], tier: &str) -> Duration {
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    stream::iter(names)
        .map(|name| {
            let api = api.clone();
            let body: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": {TIER_LABEL: tier}}})).unwrap();
            async move { api.create(&PostParams::default(), &body).await.map(drop) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    until(observed, "default ServiceAccounts", Duration::from_secs(600), |o| {
        names.iter().all(|n| o.account_seen.contains_key(n))
    })
    .await;
    started.elapsed()
}

/// The same writes the operator makes (one Secret, one ServiceAccount patch per namespace),
/// from a plain client at `concurrency`; then undone, untimed. `server_side_apply` writes the
/// Secret as the operator does instead of with a plain create, to show what that costs.
async fn raw_writes(client: &Client, namespaces: &[String], concurrency: usize, server_side_apply: bool) -> Duration {
    let payload = canonical("raw");
    let started = Instant::now();
    stream::iter(namespaces)
        .map(|ns| {
            let (client, payload) = (client.clone(), payload.clone());
            async move {
                let secret: Secret = serde_json::from_value(json!({"metadata": {"name": RAW_SECRET},
                    "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": payload}}))
                .unwrap();
                let secrets = Api::<Secret>::namespaced(client.clone(), ns);
                if server_side_apply {
                    let mut body = serde_json::to_value(&secret).unwrap();
                    body["apiVersion"] = json!("v1");
                    body["kind"] = json!("Secret");
                    secrets.patch(RAW_SECRET, &PatchParams::apply("regcred-bench"), &Patch::Apply(&body)).await?;
                } else {
                    secrets.create(&PostParams::default(), &secret).await?;
                }
                let patch = json!({"imagePullSecrets": [{"name": RAW_SECRET}]});
                Api::<ServiceAccount>::namespaced(client, ns)
                    .patch("default", &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    stream::iter(namespaces)
        .map(|ns| {
            let client = client.clone();
            async move {
                Api::<Secret>::namespaced(client.clone(), ns)
                    .delete(RAW_SECRET, &DeleteParams::default())
                    .await
                    .unwrap();
                let patch = json!({"imagePullSecrets": null});
                Api::<ServiceAccount>::namespaced(client, ns)
                    .patch("default", &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await;
    elapsed
}

struct Operator {
    child: Child,
    http: String,
}

impl Operator {
    fn start(binary: &PathBuf, extra: &[String]) -> Operator {
        // A free port: a fixed one could be held by an operator left over from an interrupted run.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let http = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(std::env::temp_dir().join("regcred-bench-operator.log")).unwrap();
        let child = Command::new(binary)
            .args(["run", "--source-namespace", SOURCE_NAMESPACE, "--leader-election=false", "--http-addr", &http])
            .args(extra)
            .env("RUST_LOG", std::env::var("REGCRED_BENCH_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the operator binary starts");
        Operator { child, http }
    }

    async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..200 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&self.http).await {
                let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).await.unwrap();
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the operator does not serve /metrics on {}", self.http);
    }

    /// Write requests by resource.
    async fn writes(&self) -> BTreeMap<String, f64> {
        let mut writes = BTreeMap::new();
        for line in self.metrics().await.lines().filter(|l| l.starts_with("regcred_api_writes_total{")) {
            let resource = line.split("resource=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
            *writes.entry(resource).or_default() += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        }
        writes
    }

    async fn reconciles(&self) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("regcred_reconciles_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }

    /// Waits until a second passes without a reconcile, so late writes are counted.
    async fn settle(&self) {
        loop {
            let reconciles = self.reconciles().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.reconciles().await == reconciles {
                return;
            }
        }
    }

    /// CPU seconds (user + system) the operator has used, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// (current, peak) resident set size in MiB, from /proc.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap()
                .parse::<f64>()
                .unwrap()
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>, resource: &str) -> f64 {
    after.get(resource).copied().unwrap_or(0.0) - before.get(resource).copied().unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Serialize)]
struct SizeResult {
    namespaces: usize,
    raw_seconds: f64,
    raw_best_concurrency: usize,
    raw_by_concurrency: BTreeMap<usize, f64>,
    raw_apply_seconds: f64,
    operator_seconds: f64,
    /// CPU the operator itself used while converging (it shares the 2 cores with the API server).
    operator_cpu_seconds: f64,
    ratio: f64,
    secret_writes: f64,
    service_account_writes: f64,
    status_writes: f64,
    event_writes: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    resync_secret_writes: f64,
    resync_service_account_writes: f64,
    resync_status_writes: f64,
    rotation_seconds: f64,
    new_namespace_ms: Option<[f64; 3]>,
}

/// The plain client doing the operator's writes: at each concurrency, and by server-side apply at
/// the best one.
struct RawLimit {
    by_concurrency: BTreeMap<usize, f64>,
    best_concurrency: usize,
    seconds: f64,
    apply_seconds: f64,
}

impl RawLimit {
    async fn measure(client: &Client, namespaces: &[String], concurrencies: &[usize], size: usize) -> RawLimit {
        let mut by_concurrency = BTreeMap::new();
        for &concurrency in concurrencies {
            let took = raw_writes(client, namespaces, concurrency, false).await;
            eprintln!("[{size}] raw client, concurrency {concurrency}: {took:.2?}");
            by_concurrency.insert(concurrency, took.as_secs_f64());
        }
        let (&best_concurrency, &seconds) = by_concurrency.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        let apply_seconds = raw_writes(client, namespaces, best_concurrency, true).await.as_secs_f64();
        eprintln!(
            "[{size}] raw client, Secrets by server-side apply, concurrency {best_concurrency}: {apply_seconds:.2}s"
        );
        RawLimit { by_concurrency, best_concurrency, seconds, apply_seconds }
    }
}

/// p50, p90 and p99 in ms from a burst of new namespaces (their default ServiceAccount appearing)
/// to the operator's entry on it, once the credential selects the burst's tier.
async fn burst_latencies(
    client: &Client,
    observed: &Shared,
    credentials: &Api<RegistryCredential>,
    name: &str,
    secret_name: &str,
    tiers: &[String],
    burst: &[String],
) -> [f64; 3] {
    let tier_patch = json!({"spec": {"namespaceSelector": {"matchExpressions": [{"key": TIER_LABEL, "operator": "In",
        "values": tiers}]}}});
    credentials.patch(name, &PatchParams::default(), &Patch::Merge(tier_patch)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    create_namespaces(client, observed, burst, "burst").await;
    until(observed, "the burst to be patched", Duration::from_secs(120), |o| {
        burst.iter().all(|ns| o.entry_seen.contains_key(&(ns.clone(), secret_name.to_owned())))
    })
    .await;
    let observed = observed.lock().unwrap();
    let mut latencies: Vec<f64> = burst
        .iter()
        .map(|ns| {
            (observed.entry_seen[&(ns.clone(), secret_name.to_owned())] - observed.account_seen[ns]).as_secs_f64()
                * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    [percentile(&latencies, 0.5), percentile(&latencies, 0.9), percentile(&latencies, 0.99)]
}

/// Deletes the credential through the operator, so the next size starts without its copies.
async fn clean_up(
    observed: &Shared,
    credentials: &Api<RegistryCredential>,
    name: &str,
    secret_name: &str,
    namespaces: &[String],
) {
    credentials.delete(name, &DeleteParams::default()).await.unwrap();
    until(observed, "cleanup", Duration::from_secs(900), |o| {
        namespaces.iter().all(|ns| o.copies.get(ns).is_none_or(|c| !c.contains_key(secret_name)))
            && namespaces.iter().all(|ns| o.entries.get(ns).is_none_or(|e| !e.iter().any(|entry| entry == secret_name)))
    })
    .await;
    while credentials.get_opt(name).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = Client::try_default().await.expect("a cluster in KUBECONFIG");
    let version = client.apiserver_version().await.unwrap().git_version;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    apply(&crds, "registrycredentials.regcred.dev", serde_json::to_value(RegistryCredential::crd()).unwrap()).await;
    apply(
        &Api::<Namespace>::all(client.clone()),
        SOURCE_NAMESPACE,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SOURCE_NAMESPACE}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the CRD becomes served
    put_source(&client, "first").await;

    let observed: Shared = Arc::default();
    tokio::spawn(watch_copies(client.clone(), observed.clone()));
    tokio::spawn(watch_default_accounts(client.clone(), observed.clone()));

    let mut all: Vec<String> = Vec::new();
    let mut tiers: Vec<String> = Vec::new();
    let mut results = Vec::new();
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    for (index, &size) in args.sizes.iter().enumerate() {
        let tier = size.to_string();
        let names: Vec<String> = (all.len()..size).map(|i| format!("bench-{i:05}")).collect();
        let took = create_namespaces(&client, &observed, &names, &tier).await;
        eprintln!("[{size}] {} namespaces created with their default ServiceAccounts in {took:.1?}", names.len());
        all.extend(names);
        tiers.push(tier.clone());

        let raw = RawLimit::measure(&client, &all, &args.raw_concurrency, size).await;

        put_source(&client, "first").await;
        let operator = Operator::start(&args.operator, &args.operator_args);
        let before = operator.writes().await;
        let secret_name = format!("bench-{size}");
        let name = format!("bench-{size}");
        let body = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": name},
            "spec": {"source": {"secretRef": {"namespace": SOURCE_NAMESPACE, "name": "pull"}}, "secretName": secret_name,
                     "namespaceSelector": {"matchExpressions": [{"key": TIER_LABEL, "operator": "In", "values": tiers}]}}});
        let expected = canonical("first");
        let cpu_before = operator.cpu_seconds();
        let started = Instant::now();
        apply(&credentials, &name, body).await;
        let done = until(&observed, "the operator to converge", Duration::from_secs(900), |o| {
            converged(o, &all, &secret_name, &expected)
        })
        .await;
        let operator_seconds = (done - started).as_secs_f64();
        let operator_cpu_seconds = operator.cpu_seconds() - cpu_before;
        operator.settle().await;
        let after = operator.writes().await;
        eprintln!("[{size}] operator converged in {operator_seconds:.2}s; writes {after:?}");

        // Converged: a forced reconcile (an annotation change) must write nothing.
        let reconciles = operator.reconciles().await;
        let touch = json!({"metadata": {"annotations": {"regcred.dev/bench-resync": format!("{size}")}}});
        credentials.patch(&name, &PatchParams::default(), &Patch::Merge(touch)).await.unwrap();
        while operator.reconciles().await < reconciles + 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        operator.settle().await;
        let resynced = operator.writes().await;

        // New-namespace latency: a burst of namespaces the credential selects.
        let new_namespace_ms = if index + 1 == args.sizes.len() && args.burst > 0 {
            let burst: Vec<String> = (0..args.burst).map(|i| format!("bench-burst-{i:04}")).collect();
            tiers.push("burst".into());
            let latencies =
                burst_latencies(&client, &observed, &credentials, &name, &secret_name, &tiers, &burst).await;
            all.extend(burst);
            Some(latencies)
        } else {
            None
        };
        let (rss_mib, peak_rss_mib) = operator.rss_mib();

        // Rotation: the source changes; every copy must carry the new payload.
        let rotated = canonical("second");
        let started = Instant::now();
        put_source(&client, "second").await;
        let done =
            until(&observed, "rotation", Duration::from_secs(900), |o| converged(o, &all, &secret_name, &rotated))
                .await;
        let rotation_seconds = (done - started).as_secs_f64();
        eprintln!("[{size}] rotation reached every copy in {rotation_seconds:.2}s");

        results.push(SizeResult {
            namespaces: size,
            raw_seconds: raw.seconds,
            raw_best_concurrency: raw.best_concurrency,
            raw_by_concurrency: raw.by_concurrency,
            raw_apply_seconds: raw.apply_seconds,
            operator_seconds,
            operator_cpu_seconds,
            ratio: operator_seconds / raw.seconds,
            secret_writes: delta(&after, &before, "secret"),
            service_account_writes: delta(&after, &before, "serviceaccount"),
            status_writes: delta(&after, &before, "registrycredential"),
            event_writes: delta(&after, &before, "event"),
            rss_mib,
            peak_rss_mib,
            resync_secret_writes: delta(&resynced, &after, "secret"),
            resync_service_account_writes: delta(&resynced, &after, "serviceaccount"),
            resync_status_writes: delta(&resynced, &after, "registrycredential"),
            rotation_seconds,
            new_namespace_ms,
        });

        clean_up(&observed, &credentials, &name, &secret_name, &all).await;
        drop(operator);
    }
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(TIER_LABEL))
        .await
        .unwrap()
        .items
        .len();
    report(&args, &version, namespaces, &results);
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap().trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().and_then(|l| l.split_whitespace().nth(1)).map(|kb| kb.parse::<f64>().unwrap() / 1048576.0)
        })
        .unwrap_or_default();
    format!("{} cores ({cpu}), {memory:.0} GiB", std::thread::available_parallelism().map_or(0, |n| n.get()))
}

fn report(args: &Args, version: &str, namespaces: usize, results: &[SizeResult]) {
    let flags = std::env::var("REGCRED_CLUSTER_DIR")
        .ok()
        .and_then(|dir| std::fs::read_to_string(format!("{dir}/kube-apiserver.cmd")).ok())
        .map(|cmd| cmd.lines().filter(|l| l.contains("inflight")).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "(cluster from KUBECONFIG: flags unknown)".into());
    let mut table = String::from(
        "| namespaces | raw client | raw, Secrets by SSA | operator (its CPU) | ratio | Secret writes | SA patches | status writes | peak RSS | resync writes (Secret/SA/status) | rotation | new namespace p50/p90/p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let latency =
            r.new_namespace_ms.map_or("-".into(), |[p50, p90, p99]| format!("{p50:.0} / {p90:.0} / {p99:.0} ms"));
        table.push_str(&format!(
            "| {} | {:.2} s (c={}) | {:.2} s | {:.2} s ({:.1} s) | {:.2} | {} | {} | {} | {:.1} MiB | {}/{}/{} | {:.2} s | {} |\n",
            r.namespaces,
            r.raw_seconds,
            r.raw_best_concurrency,
            r.raw_apply_seconds,
            r.operator_seconds,
            r.operator_cpu_seconds,
            r.ratio,
            r.secret_writes,
            r.service_account_writes,
            r.status_writes,
            r.peak_rss_mib,
            r.resync_secret_writes,
            r.resync_service_account_writes,
            r.resync_status_writes,
            r.rotation_seconds,
            latency
        ));
    }
    let context = format!(
        "Machine: {}. Kubernetes {version} (local control plane: etcd, kube-apiserver, kube-controller-manager). API server flags: {flags}. Operator: release build, `run --leader-election=false {}`, admin credentials. {namespaces} benchmark namespaces at the end.",
        machine(),
        args.operator_args.join(" ")
    );
    println!("{table}\n{context}");
    std::fs::create_dir_all(&args.out).unwrap();
    let markdown = format!(
        "# Benchmark results\n\nProduced by `bash scripts/bench.sh` (examples/bench.rs).\n\n{table}\n{context}\n\n\
         - *raw client*: the same writes (one Secret create, one ServiceAccount patch per namespace) from a plain kube client at the best of the tried concurrencies.\n\
         - *raw, Secrets by SSA*: the same, with the Secrets written by server-side apply as the operator writes them (same concurrency).\n\
         - *operator*: from applying the RegistryCredential until every namespace holds the copy and lists it on its default ServiceAccount, as seen by watches.\n\
         - *writes*: the operator's own `regcred_api_writes_total`, counted from start to convergence; *resync writes*: after a forced reconcile of the converged state.\n\
         - *new namespace*: {} namespaces created at once; from each default ServiceAccount appearing to it listing the secret, both seen by the benchmark's watch.\n",
        args.burst
    );
    std::fs::write(args.out.join("results.md"), markdown).unwrap();
    let json = json!({"context": context, "results": results});
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
}
