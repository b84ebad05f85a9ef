//! Benchmark: convergence time, API writes, CPU and memory of regcred-operator at 1,000 and
//! 10,000 namespaces, each with 5 ServiceAccounts and 10 unrelated Secrets, against the raw limit
//! of the same writes from a plain client, measured in the same run. Every size is measured twice:
//! the credential selecting every ServiceAccount (`names: ["*"]`, five patches per namespace) and
//! only `default` (one).
//!
//! Run it with `bash scripts/bench.sh` (a dedicated local control plane, release builds), or
//! against the cluster in KUBECONFIG:
//! `cargo run --release --example bench -- --operator target/release/regcred-operator`.

mod charts;
mod faults;
mod heap;
mod memory;
mod trace;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
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
/// ServiceAccounts created in each namespace beside `default`.
const EXTRA_ACCOUNTS: [&str; 4] = ["builder", "deployer", "app", "batch"];
/// Unrelated Secrets in each namespace: the operator must not pay for them.
const UNRELATED_SECRETS: usize = 10;

#[derive(Parser)]
struct Args {
    /// The operator binary to measure (a release build).
    #[arg(long, default_value = "target/release/regcred-operator")]
    operator: PathBuf,
    /// Namespace counts to measure, in increasing order.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Concurrency levels tried for the raw client; the best counts.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    raw_concurrency: Vec<usize>,
    /// Record a CPU profile of the operator (perf, at 99 Hz with DWARF call graphs) during the
    /// shipped build's rollout of the memory comparison (`["default"]`, the largest size), into
    /// this file: apart from the measured runs, which perf would slow down.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Record the heap of the system-allocator build (heaptrack, preloaded) in one more rollout
    /// of the memory comparison, into this raw trace (for `heaptrack_interpret`).
    #[arg(long, requires = "system_allocator_operator")]
    heap_trace: Option<PathBuf>,
    /// Namespaces created in one burst for the new-namespace latency.
    #[arg(long, default_value_t = 200)]
    burst: usize,
    /// Where results.md and results.json go.
    #[arg(long, default_value = "docs/benchmark")]
    out: PathBuf,
    /// The operator built on the system allocator (`--no-default-features`): at the largest size,
    /// its memory under glibc, tuned glibc, jemalloc and mimalloc beside the shipped build's.
    #[arg(long)]
    system_allocator_operator: Option<PathBuf>,
    /// Only the memory comparison by allocator, at the largest size (needs
    /// --system-allocator-operator).
    #[arg(long, requires = "system_allocator_operator")]
    memory_only: bool,
    /// Leave out the memory comparison by allocator.
    #[arg(long, conflicts_with = "memory_only")]
    skip_memory: bool,
    /// Leave out the API server restart at the largest size.
    #[arg(long)]
    skip_faults: bool,
    /// Only draw the charts, from the results of these earlier runs together (results.json
    /// files), into --out; nothing is measured.
    #[arg(long, value_delimiter = ',')]
    charts_from: Vec<PathBuf>,
    /// Only summarize a heap profile (heaptrack's stacks at the peak, `heaptrack_print
    /// --flamegraph-cost-type peak -F`) by the operator's own functions, into --out/heap.md.
    #[arg(long)]
    heap_summary: Option<PathBuf>,
    /// Extra arguments for `regcred-operator run`.
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    operator_args: Vec<String>,
}

/// What the watches saw, with the instant each thing was first seen.
#[derive(Default)]
struct Observed {
    /// namespace -> (secret name -> payload) of managed copies.
    copies: HashMap<String, HashMap<String, String>>,
    /// namespace -> ServiceAccount -> its imagePullSecrets.
    entries: HashMap<String, HashMap<String, Vec<String>>>,
    /// namespace -> when its default ServiceAccount was first seen.
    account_seen: HashMap<String, Instant>,
    /// (namespace, entry) -> when the default ServiceAccount was first seen listing it.
    entry_seen: HashMap<(String, String), Instant>,
    /// The same two instants on the wall clock, for the operator's log.
    account_seen_wall: HashMap<String, jiff::Timestamp>,
    entry_seen_wall: HashMap<(String, String), jiff::Timestamp>,
    /// (secret name, payload) -> when a copy was first seen holding it.
    payload_seen: HashMap<(String, String), Instant>,
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
                let first_holder = (s.name_any(), payload.clone().unwrap_or_default());
                observed.payload_seen.entry(first_holder).or_insert_with(Instant::now);
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

async fn watch_accounts(client: Client, observed: Shared) {
    let mut events = watcher::watcher(Api::<ServiceAccount>::all(client), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let (now, wall) = (Instant::now(), jiff::Timestamp::now());
        if let Ok(watcher::Event::Apply(a) | watcher::Event::InitApply(a)) = event {
            let (namespace, name) = (a.namespace().unwrap(), a.name_any());
            let entries: Vec<String> = a.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
            let mut observed = observed.lock().unwrap();
            if name == "default" {
                observed.account_seen.entry(namespace.clone()).or_insert(now);
                observed.account_seen_wall.entry(namespace.clone()).or_insert(wall);
                for entry in &entries {
                    observed.entry_seen.entry((namespace.clone(), entry.clone())).or_insert(now);
                    observed.entry_seen_wall.entry((namespace.clone(), entry.clone())).or_insert(wall);
                }
            }
            observed.entries.entry(namespace).or_default().insert(name, entries);
        }
    }
}

/// Which ServiceAccounts the credential selects.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
enum Accounts {
    /// `names: ["*"]`: all five in each namespace.
    Every,
    /// `names: ["default"]`.
    Default,
}

impl Accounts {
    fn names(self) -> Vec<&'static str> {
        match self {
            Accounts::Every => std::iter::once("default").chain(EXTRA_ACCOUNTS).collect(),
            Accounts::Default => vec!["default"],
        }
    }

    fn selector(self) -> Value {
        match self {
            Accounts::Every => json!(["*"]),
            Accounts::Default => json!(["default"]),
        }
    }
}

/// Waits until `done` holds for what the watches saw; returns when it first did (to 20 ms).
async fn until(observed: &Shared, what: &str, timeout: Duration, done: impl Fn(&Observed) -> bool) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&observed.lock().unwrap()) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every namespace holds copy `secret_name` with `payload` and lists it on the selected accounts.
fn converged(observed: &Observed, namespaces: &[String], accounts: &[&str], secret_name: &str, payload: &str) -> bool {
    namespaces.iter().all(|ns| {
        observed.copies.get(ns).and_then(|c| c.get(secret_name)).is_some_and(|p| p == payload)
            && accounts.iter().all(|account| {
                let entries = observed.entries.get(ns).and_then(|accounts| accounts.get(*account));
                entries.is_some_and(|e| e.iter().any(|name| name == secret_name))
            })
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

/// Creates namespaces `names` in tier `tier` (with `populate`, each with the extra ServiceAccounts
/// and the unrelated Secrets) and waits for their default ServiceAccounts.
async fn create_namespaces(
    client: &Client,
    observed: &Shared,
    names: &[String],
    tier: &str,
    populate: bool,
) -> Duration {
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    stream::iter(names)
        .map(|name| {
            let (api, client) = (api.clone(), client.clone());
            let body: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": {TIER_LABEL: tier}}})).unwrap();
            async move {
                match api.create(&PostParams::default(), &body).await {
                    // Left by an earlier run on the same cluster, populated then: in this run's tier.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let tier = json!({"metadata": {"labels": {TIER_LABEL: tier}}});
                        api.patch(name, &PatchParams::default(), &Patch::Merge(&tier)).await?;
                        return Ok(());
                    }
                    created => created?,
                };
                if !populate {
                    return Ok::<(), kube::Error>(());
                }
                let accounts = Api::<ServiceAccount>::namespaced(client.clone(), name);
                for account in EXTRA_ACCOUNTS {
                    let body: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": account}})).unwrap();
                    accounts.create(&PostParams::default(), &body).await?;
                }
                let secrets = Api::<Secret>::namespaced(client, name);
                for i in 0..UNRELATED_SECRETS {
                    let body: Secret = serde_json::from_value(json!({"metadata": {"name": format!("app-config-{i}")},
                        "stringData": {"config.yaml": "a: b\n".repeat(32)}}))
                    .unwrap();
                    secrets.create(&PostParams::default(), &body).await?;
                }
                Ok(())
            }
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

/// What the plain client took for the operator's writes in every namespace.
struct RawRun {
    /// One Secret create and a patch of each selected ServiceAccount.
    writes: Duration,
    /// A merge patch of each Secret's payload, as the operator rotates a copy.
    rotation: Duration,
}

/// The same writes the operator makes, from a plain client at `concurrency`; then undone, untimed.
async fn raw_writes(client: &Client, namespaces: &[String], accounts: Accounts, concurrency: usize) -> RawRun {
    let payload = canonical("raw");
    let names = accounts.names();
    let started = Instant::now();
    stream::iter(namespaces)
        .map(|ns| {
            let (client, payload, names) = (client.clone(), payload.clone(), names.clone());
            async move {
                // Labelled as the copies are, so the benchmark's own watch of them costs the API
                // server the same here as in the operator's runs.
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": RAW_SECRET, "labels": {"app.kubernetes.io/managed-by": "regcred-operator"}},
                    "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": payload}}))
                .unwrap();
                Api::<Secret>::namespaced(client.clone(), ns).create(&PostParams::default(), &secret).await?;
                let patch = json!({"imagePullSecrets": [{"name": RAW_SECRET}]});
                let service_accounts = Api::<ServiceAccount>::namespaced(client, ns);
                for name in names {
                    service_accounts.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                }
                Ok::<(), kube::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let writes = started.elapsed();
    let rotated = base64::engine::general_purpose::STANDARD.encode(canonical("raw-rotated"));
    let started = Instant::now();
    stream::iter(namespaces)
        .map(|ns| {
            let (client, rotated) = (client.clone(), rotated.clone());
            async move {
                let patch = json!({"data": {".dockerconfigjson": rotated}});
                Api::<Secret>::namespaced(client, ns)
                    .patch(RAW_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let rotation = started.elapsed();
    stream::iter(namespaces)
        .map(|ns| {
            let (client, names) = (client.clone(), names.clone());
            async move {
                Api::<Secret>::namespaced(client.clone(), ns)
                    .delete(RAW_SECRET, &DeleteParams::default())
                    .await
                    .unwrap();
                let patch = json!({"imagePullSecrets": null});
                let service_accounts = Api::<ServiceAccount>::namespaced(client, ns);
                for name in names {
                    service_accounts.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
                }
            }
        })
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await;
    RawRun { writes, rotation }
}

struct Operator {
    child: Child,
    http: String,
    /// Its stderr, kept after the run.
    log: PathBuf,
}

impl Operator {
    fn start(binary: &Path, extra: &[String]) -> Operator {
        Operator::start_with(binary, extra, &[])
    }

    /// The operator with these environment variables set (an allocator preloaded, say).
    fn start_with(binary: &Path, extra: &[String], env: &[(String, String)]) -> Operator {
        // A free port: a fixed one could be held by an operator left over from an interrupted run.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let http = format!("127.0.0.1:{port}");
        let log_path = next_operator_log();
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .args(["run", "--source-namespace", SOURCE_NAMESPACE, "--leader-election=false", "--http-addr", &http])
            .args(extra)
            .env("RUST_LOG", log_filter())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the operator binary starts");
        eprintln!("[operator] pid {}, log {}", child.id(), log_path.display());
        Operator { child, http, log: log_path }
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await
    }

    /// The answer to a GET of `path` on the operator's HTTP port, status line included.
    async fn get(&self, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..200 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&self.http).await {
                let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).await.unwrap();
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the operator does not serve {path} on {}", self.http);
    }

    /// Waits until /readyz says every cache is listed; returns how long that took from now.
    async fn wait_ready(&self) -> Duration {
        let started = Instant::now();
        while !self.get("/readyz").await.starts_with("HTTP/1.1 200") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// Write requests by resource.
    async fn writes(&self) -> BTreeMap<String, f64> {
        self.by_resource("regcred_api_writes_total{").await
    }

    /// Write requests that got no answer, by resource.
    async fn unanswered_writes(&self) -> BTreeMap<String, f64> {
        self.by_resource("regcred_api_writes_unanswered_total{").await
    }

    /// A counter of writes summed by resource.
    async fn by_resource(&self, series: &str) -> BTreeMap<String, f64> {
        let mut writes = BTreeMap::new();
        for line in self.metrics().await.lines().filter(|l| l.starts_with(series)) {
            let resource = line.split("resource=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
            *writes.entry(resource).or_default() += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        }
        writes
    }

    /// A counter's value (summed over its labels).
    async fn counter(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }

    /// Waits until two seconds pass without a write, so late writes are counted.
    async fn settle(&self) {
        loop {
            let writes = self.writes().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            if self.writes().await == writes {
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

/// The operator's log filter: `REGCRED_BENCH_LOG`, else info.
fn log_filter() -> String {
    std::env::var("REGCRED_BENCH_LOG").unwrap_or_else(|_| "info".into())
}

/// Where the next operator's log goes: one file per start, each kept.
fn next_operator_log() -> PathBuf {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("regcred-bench-operator-{n}.log"))
}

impl Drop for Operator {
    /// SIGTERM, so it shuts down as in a cluster (and a preloaded profiler writes its end), then
    /// SIGKILL after ten seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
    accounts: Accounts,
    raw_seconds: f64,
    raw_best_concurrency: usize,
    raw_by_concurrency: BTreeMap<usize, f64>,
    raw_rotation_seconds: f64,
    operator_seconds: f64,
    /// From the operator's start to every cache listed (/readyz), before the credential.
    startup_seconds: f64,
    /// From the credential's creation to the first copy seen.
    first_copy_ms: f64,
    /// CPU the operator itself used while converging (it shares the 2 cores with the API server).
    operator_cpu_seconds: f64,
    ratio: f64,
    secret_writes: f64,
    service_account_writes: f64,
    status_writes: f64,
    event_writes: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    /// After a change of the source Secret that changes no payload: every namespace re-planned.
    resync_secret_writes: f64,
    resync_service_account_writes: f64,
    rotation_seconds: f64,
    /// From the source write to the first copy seen holding the new payload.
    rotation_first_copy_ms: f64,
    rotation_cpu_seconds: f64,
    rotation_ratio: f64,
    throttled_responses: f64,
    new_namespace_ms: Option<[f64; 4]>,
    /// Secret writes and ServiceAccount patches per namespace of the burst.
    new_namespace_writes: Option<[f64; 2]>,
    /// The burst's slowest 1%, each with where its time went.
    new_namespace_slowest: Option<Vec<trace::Sample>>,
}

/// The plain client doing the operator's writes, at each concurrency; the best counts, and the
/// rotation is measured at that one.
struct RawLimit {
    by_concurrency: BTreeMap<usize, f64>,
    best_concurrency: usize,
    seconds: f64,
    rotation_seconds: f64,
}

impl RawLimit {
    async fn measure(client: &Client, namespaces: &[String], accounts: Accounts, concurrencies: &[usize]) -> RawLimit {
        let size = namespaces.len();
        let mut by_concurrency = BTreeMap::new();
        let mut rotations = BTreeMap::new();
        for &concurrency in concurrencies {
            let run = raw_writes(client, namespaces, accounts, concurrency).await;
            eprintln!(
                "[{size} {accounts:?}] raw client, concurrency {concurrency}: {:.2?}, rotation {:.2?}",
                run.writes, run.rotation
            );
            by_concurrency.insert(concurrency, run.writes.as_secs_f64());
            rotations.insert(concurrency, run.rotation.as_secs_f64());
        }
        let (&best_concurrency, &seconds) = by_concurrency.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        let rotation_seconds = rotations.values().copied().min_by(f64::total_cmp).unwrap();
        RawLimit { by_concurrency, best_concurrency, seconds, rotation_seconds }
    }
}

/// p50, p90, p99 and max in ms from a burst of new namespaces (their default ServiceAccount
/// appearing) to the operator's entry on it, once the credential selects the burst's tier.
async fn burst_latencies(
    client: &Client,
    observed: &Shared,
    credentials: &Api<RegistryCredential>,
    name: &str,
    secret_name: &str,
    tiers: &[String],
    burst: &[String],
) -> [f64; 4] {
    let tier_patch = json!({"spec": {"namespaceSelector": {"matchExpressions": [{"key": TIER_LABEL, "operator": "In",
        "values": tiers}]}}});
    credentials.patch(name, &PatchParams::default(), &Patch::Merge(tier_patch)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    create_namespaces(client, observed, burst, "burst", false).await;
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
    [
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    ]
}

/// Deletes the credential through the operator, so the next run starts without its copies.
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
            && namespaces.iter().all(|ns| {
                o.entries.get(ns).is_none_or(|accounts| {
                    accounts.values().all(|entries| !entries.iter().any(|entry| entry == secret_name))
                })
            })
    })
    .await;
    while credentials.get_opt(name).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `perf record` attached to the operator until dropped.
struct Profiler(Child);

impl Profiler {
    fn attach(pid: u32, out: &Path) -> Profiler {
        let child = Command::new("perf")
            .args(["record", "-F", "99", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf starts");
        Profiler(child)
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        // SIGINT: perf writes its file and exits.
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// What one run of the operator is asked to do.
struct Run<'a> {
    size: usize,
    accounts: Accounts,
    namespaces: &'a mut Vec<String>,
    tiers: &'a mut Vec<String>,
    /// Namespaces created in a burst once converged, if any.
    burst: usize,
}

async fn measure_operator(args: &Args, client: &Client, observed: &Shared, raw: RawLimit, run: Run<'_>) -> SizeResult {
    let Run { size, accounts, namespaces, tiers, burst } = run;
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    put_source(client, "first").await;
    // With a burst, every namespace reconcile is logged (JSON) to trace the burst's samples.
    let operator = if burst > 0 {
        let traced = format!("{},regcred_operator::controller::namespace=debug", log_filter());
        let extra: Vec<String> =
            args.operator_args.iter().cloned().chain(["--log-format".into(), "json".into()]).collect();
        Operator::start_with(&args.operator, &extra, &[("RUST_LOG".into(), traced)])
    } else {
        Operator::start(&args.operator, &args.operator_args)
    };
    // Its caches listed first: a credential created in a running operator does not wait for them.
    let startup_seconds = operator.wait_ready().await.as_secs_f64();
    let before = operator.writes().await;
    let name = format!("bench-{size}-{}", format!("{accounts:?}").to_lowercase());
    let secret_name = name.clone();
    let body = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": name},
        "spec": {"source": {"secretRef": {"namespace": SOURCE_NAMESPACE, "name": "pull"}}, "secretName": secret_name,
                 "serviceAccounts": {"names": accounts.selector()},
                 "namespaceSelector": {"matchExpressions": [{"key": TIER_LABEL, "operator": "In", "values": tiers}]}}});
    let selected = accounts.names();
    let expected = canonical("first");
    let cpu_before = operator.cpu_seconds();
    let started = Instant::now();
    apply(&credentials, &name, body).await;
    let done = until(observed, "the operator to converge", Duration::from_secs(900), |o| {
        converged(o, namespaces, &selected, &secret_name, &expected)
    })
    .await;
    let operator_seconds = (done - started).as_secs_f64();
    let operator_cpu_seconds = operator.cpu_seconds() - cpu_before;
    let first_copy = observed.lock().unwrap().payload_seen[&(secret_name.clone(), expected.clone())];
    let first_copy_ms = (first_copy - started).as_secs_f64() * 1000.0;
    operator.settle().await;
    let after = operator.writes().await;
    eprintln!(
        "[{size} {accounts:?}] operator ready in {startup_seconds:.2}s; first copy after {first_copy_ms:.0} ms, converged in {operator_seconds:.2}s; writes {after:?}"
    );

    // Converged: a change of the source Secret that leaves the payload as it is re-plans every
    // namespace, and must write nothing.
    let reconciled = operator.counter("regcred_namespace_reconciles_total").await;
    let touch = json!({"metadata": {"annotations": {"regcred.dev/bench-touch": format!("{size}-{accounts:?}")}}});
    Api::<Secret>::namespaced(client.clone(), SOURCE_NAMESPACE)
        .patch("pull", &PatchParams::default(), &Patch::Merge(touch))
        .await
        .unwrap();
    while operator.counter("regcred_namespace_reconciles_total").await < reconciled + namespaces.len() as f64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    operator.settle().await;
    let resynced = operator.writes().await;

    // New-namespace latency: a burst of namespaces the credential selects.
    let mut slowest = None;
    let (new_namespace_ms, new_namespace_writes) = if burst > 0 {
        let names: Vec<String> = (0..burst).map(|i| format!("bench-burst-{i:04}")).collect();
        tiers.push("burst".into());
        let latencies = burst_latencies(client, observed, &credentials, &name, &secret_name, tiers, &names).await;
        operator.settle().await;
        slowest = Some(trace_burst(observed, &operator.log, &names, &secret_name));
        let burst_writes = operator.writes().await;
        namespaces.extend(names);
        let per_namespace = |resource| delta(&burst_writes, &resynced, resource) / burst as f64;
        (Some(latencies), Some([per_namespace("secret"), per_namespace("serviceaccount")]))
    } else {
        (None, None)
    };

    // Rotation: the source changes; every copy must carry the new payload.
    let rotated = canonical("second");
    let cpu_before = operator.cpu_seconds();
    let started = Instant::now();
    put_source(client, "second").await;
    let done = until(observed, "rotation", Duration::from_secs(900), |o| {
        converged(o, namespaces, &selected, &secret_name, &rotated)
    })
    .await;
    let rotation_seconds = (done - started).as_secs_f64();
    let rotation_cpu_seconds = operator.cpu_seconds() - cpu_before;
    let first_copy = observed.lock().unwrap().payload_seen[&(secret_name.clone(), rotated.clone())];
    let rotation_first_copy_ms = (first_copy - started).as_secs_f64() * 1000.0;
    eprintln!(
        "[{size} {accounts:?}] rotation reached the first copy in {rotation_first_copy_ms:.0} ms, every copy in {rotation_seconds:.2}s"
    );
    let (rss_mib, peak_rss_mib) = operator.rss_mib();
    let throttled_responses = operator.counter("regcred_api_requests_throttled_total").await;

    clean_up(observed, &credentials, &name, &secret_name, namespaces).await;
    drop(operator);
    SizeResult {
        namespaces: size,
        accounts,
        raw_seconds: raw.seconds,
        raw_best_concurrency: raw.best_concurrency,
        raw_by_concurrency: raw.by_concurrency,
        raw_rotation_seconds: raw.rotation_seconds,
        operator_seconds,
        startup_seconds,
        first_copy_ms,
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
        rotation_seconds,
        rotation_first_copy_ms,
        rotation_cpu_seconds,
        rotation_ratio: rotation_seconds / raw.rotation_seconds,
        throttled_responses,
        new_namespace_ms,
        new_namespace_writes,
        new_namespace_slowest: slowest,
    }
}

/// The burst's slowest samples, each with where its time went (the operator's log).
fn trace_burst(observed: &Shared, log: &Path, burst: &[String], secret_name: &str) -> Vec<trace::Sample> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let observed = observed.lock().unwrap();
    let samples: Vec<(String, jiff::Timestamp, jiff::Timestamp)> = burst
        .iter()
        .map(|ns| {
            let entry = (ns.clone(), secret_name.to_owned());
            (ns.clone(), observed.account_seen_wall[ns], observed.entry_seen_wall[&entry])
        })
        .collect();
    let explained = trace::explain(&log, &samples);
    eprintln!("[trace] {} of {} burst samples found in the operator's log", explained.len(), samples.len());
    trace::slowest(&explained)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.charts_from.is_empty() {
        return draw_charts(&args.charts_from, &args.out);
    }
    if let Some(stacks) = &args.heap_summary {
        let stacks = std::fs::read_to_string(stacks).unwrap_or_else(|e| panic!("{}: {e}", stacks.display()));
        std::fs::create_dir_all(&args.out).unwrap();
        return std::fs::write(args.out.join("heap.md"), heap::summary(&stacks, Path::new("src"), 25)).unwrap();
    }
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
    tokio::spawn(watch_accounts(client.clone(), observed.clone()));

    let mut all: Vec<String> = Vec::new();
    let mut tiers: Vec<String> = Vec::new();
    let mut results = Vec::new();
    let mut allocators = Vec::new();
    let mut fault = None;
    for (index, &size) in args.sizes.iter().enumerate() {
        let tier = size.to_string();
        let names: Vec<String> = (all.len()..size).map(|i| format!("bench-{i:05}")).collect();
        let took = create_namespaces(&client, &observed, &names, &tier, true).await;
        eprintln!(
            "[{size}] {} namespaces created, each with {} ServiceAccounts and {UNRELATED_SECRETS} unrelated Secrets, in {took:.1?}",
            names.len(),
            EXTRA_ACCOUNTS.len() + 1
        );
        all.extend(names);
        tiers.push(tier.clone());
        let largest = index + 1 == args.sizes.len();
        let runs = if args.memory_only { &[][..] } else { &[Accounts::Every, Accounts::Default][..] };
        for &accounts in runs {
            let raw = RawLimit::measure(&client, &all, accounts, &args.raw_concurrency).await;
            let run = Run {
                size,
                accounts,
                namespaces: &mut all,
                tiers: &mut tiers,
                burst: if largest && accounts == Accounts::Default { args.burst } else { 0 },
            };
            results.push(measure_operator(&args, &client, &observed, raw, run).await);
        }
        let sized: Vec<String> = all.iter().filter(|n| !n.starts_with("bench-burst-")).cloned().collect();
        let sized_tiers: Vec<String> = tiers.iter().filter(|t| *t != "burst").cloned().collect();
        if largest && !args.memory_only && !args.skip_faults {
            fault = faults::restart_mid_rollout(&args, &client, &observed, &sized, &sized_tiers).await;
        }
        if let (true, false, Some(system)) = (largest, args.skip_memory, &args.system_allocator_operator) {
            let variants = memory::variants(&args.operator, system, args.heap_trace.as_deref());
            let profile = args.profile.as_deref();
            allocators =
                memory::compare(&client, &observed, (&args.operator_args, profile), &sized, &sized_tiers, &variants)
                    .await;
        }
    }
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(TIER_LABEL))
        .await
        .unwrap()
        .items
        .len();
    report(&args, &version, namespaces, &results, (&allocators, fault.as_ref()));
}

/// The charts of several runs' results together (each size from the run that measured it).
fn draw_charts(runs: &[PathBuf], out: &Path) {
    let mut rows = Vec::new();
    for run in runs {
        let text = std::fs::read_to_string(run).unwrap_or_else(|e| panic!("{}: {e}", run.display()));
        let results: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", run.display()));
        rows.extend(results["results"].as_array().cloned().unwrap_or_default());
    }
    std::fs::create_dir_all(out).unwrap();
    for (file, svg) in charts::charts(&Value::Array(rows)) {
        std::fs::write(out.join(file), svg).unwrap();
    }
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

fn report(
    args: &Args,
    version: &str,
    namespaces: usize,
    results: &[SizeResult],
    (allocators, fault): (&[memory::AllocatorResult], Option<&faults::FaultResult>),
) {
    let flags = std::env::var("REGCRED_CLUSTER_DIR")
        .ok()
        .and_then(|dir| std::fs::read_to_string(format!("{dir}/kube-apiserver.cmd")).ok())
        .map(|cmd| cmd.lines().filter(|l| l.contains("inflight")).collect::<Vec<_>>().join(" "))
        .map(|flags| if flags.is_empty() { "the default inflight limits (400 / 200)".into() } else { flags })
        .unwrap_or_else(|| "(cluster from KUBECONFIG: flags unknown)".into());
    let mut table = String::from(
        "| namespaces | accounts | raw client | operator (its CPU) | ratio | Secret writes | SA patches | status writes | resync writes (Secret/SA) | raw rotation | rotation (its CPU) | ratio | peak RSS | 429s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        table.push_str(&format!(
            "| {} | {} | {:.2} s (c={}) | {:.2} s ({:.1} s) | {:.2} | {} | {} | {} | {}/{} | {:.2} s | {:.2} s ({:.1} s) | {:.2} | {:.1} MiB | {} |\n",
            r.namespaces,
            r.accounts.selector(),
            r.raw_seconds,
            r.raw_best_concurrency,
            r.operator_seconds,
            r.operator_cpu_seconds,
            r.ratio,
            r.secret_writes,
            r.service_account_writes,
            r.status_writes,
            r.resync_secret_writes,
            r.resync_service_account_writes,
            r.raw_rotation_seconds,
            r.rotation_seconds,
            r.rotation_cpu_seconds,
            r.rotation_ratio,
            r.peak_rss_mib,
            r.throttled_responses,
        ));
    }
    let mut notes = String::new();
    for r in results {
        if let (Some([p50, p90, p99, max]), Some([secrets, patches])) = (r.new_namespace_ms, r.new_namespace_writes) {
            notes.push_str(&format!(
                "- New namespaces ({} at once, beside {} selected, `{}`): default ServiceAccount patched p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; {secrets:.2} Secret writes and {patches:.2} ServiceAccount patches per new namespace.\n",
                args.burst,
                r.namespaces,
                r.accounts.selector()
            ));
        }
        for sample in r.new_namespace_slowest.iter().flatten() {
            notes.push_str(&format!("  - one of the slowest 1%: {}\n", trace::describe(sample)));
        }
        notes.push_str(&format!(
            "- {} `{}`: the operator's caches listed in {:.2} s after its start (before the credential); the first copy {:.0} ms after the credential's creation; in a rotation, the first copy held the new payload {:.0} ms after the source write.\n",
            r.namespaces,
            r.accounts.selector(),
            r.startup_seconds,
            r.first_copy_ms,
            r.rotation_first_copy_ms
        ));
    }
    let every: Vec<&SizeResult> = results.iter().filter(|r| r.accounts == Accounts::Every).collect();
    if let [small, .., large] = every.as_slice() {
        let per_namespace =
            (large.peak_rss_mib - small.peak_rss_mib) * 1024.0 / (large.namespaces - small.namespaces) as f64;
        notes.push_str(&format!(
            "- Memory per extra namespace (5 ServiceAccounts, 10 unrelated Secrets, one copy): {per_namespace:.2} KiB, from the peak RSS at {} and {} namespaces.\n",
            small.namespaces, large.namespaces
        ));
    }
    if let Some(fault) = fault {
        notes.push_str(&faults::describe(fault));
    }
    let context = format!(
        "Machine: {}. Kubernetes {version} (local control plane: etcd, kube-apiserver, kube-controller-manager). API server flags: {flags}. Operator: release build, `run --leader-election=false {}`, admin credentials. {namespaces} benchmark namespaces at the end.",
        machine(),
        args.operator_args.join(" ")
    );
    let allocator_table = if allocators.is_empty() {
        String::new()
    } else {
        format!(
            "\n## Memory by allocator\n\nThe same rollout by each, one after the other:\n\n{}",
            memory::table(allocators)
        )
    };
    println!("{table}\n{notes}\n{context}\n{allocator_table}");
    std::fs::create_dir_all(&args.out).unwrap();
    let markdown = format!(
        "# Benchmark results\n\nProduced by `bash scripts/bench.sh` (examples/bench/).\n\n{table}\n{notes}\n{context}\n\n\
         - Every namespace holds 5 ServiceAccounts (`default` and four more) and {UNRELATED_SECRETS} unrelated Secrets; *accounts* is the credential's `serviceAccounts.names`.\n\
         - *raw client*: the same writes (one Secret create and a merge patch of each selected ServiceAccount per namespace) from a plain kube client at the best of the tried concurrencies, in the same run; *raw rotation*: a merge patch of each of those Secrets' payload.\n\
         - *operator*: from applying the RegistryCredential until every namespace holds the copy and lists it on every selected ServiceAccount, as seen by watches; *rotation*: from changing the source Secret until every copy holds the new payload.\n\
         - *writes*: the operator's own `regcred_api_writes_total` from start to convergence; *resync writes*: after a change of the source Secret that leaves its payload as it is, which re-plans every namespace.\n\
         - *peak RSS*: VmHWM of the operator process at the end of the run; *429s*: responses 429/503 the operator received (`regcred_api_requests_throttled_total`).\n"
    );
    std::fs::write(args.out.join("results.md"), markdown + &allocator_table).unwrap();
    let json = json!({"context": context, "results": results, "allocators": allocators, "restart_mid_rollout": fault});
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    for (file, svg) in charts::charts(&json) {
        std::fs::write(args.out.join(file), svg).unwrap();
    }
}
