//! Memory under each allocator, side by side in one run: the same rollout (every namespace, the
//! `default` ServiceAccount) by the shipped build and by a build on the system allocator, that
//! one as it is (glibc), with glibc's arenas and trim threshold tuned, and with jemalloc and
//! mimalloc preloaded in place of malloc.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::{Api, Client};
use regcred_operator::crd::RegistryCredential;
use serde::Serialize;
use serde_json::json;

use super::{
    Accounts, Operator, Profiler, SOURCE_NAMESPACE, Shared, TIER_LABEL, apply, canonical, clean_up, converged,
    put_source, until,
};

/// The variant under heaptrack: its RSS counts heaptrack's own bookkeeping.
const HEAPTRACKED: &str = "glibc under heaptrack (its bookkeeping counted)";

/// One way to run the operator.
pub(crate) struct Variant {
    pub(crate) name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

/// heaptrack's preloaded library, which records every allocation with its stack.
const HEAPTRACK_LIBRARY: &str = "/usr/lib/heaptrack/libheaptrack_preload.so";

/// The variants measured: the shipped build, then `system` (a build on the system allocator)
/// under each allocator this machine has, and with `heap_trace` the system build once more under
/// heaptrack, its trace written there. A preloaded library that is missing is left out, said on
/// stderr.
pub(crate) fn variants(shipped: &Path, system: &Path, heap_trace: Option<&Path>) -> Vec<Variant> {
    let variant = |name: &str, binary: &Path, env: &[(&str, &str)]| Variant {
        name: name.to_owned(),
        binary: binary.to_owned(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let jemalloc_defaults = format!("narenas:{},dirty_decay_ms:10000,muzzy_decay_ms:0", 4 * cpus);
    let mut variants = vec![
        variant("shipped build", shipped, &[]),
        // Options in this variable override those built in (its symbols are prefixed `_rjem_`).
        variant("shipped build on jemalloc's default options", shipped, &[("_RJEM_MALLOC_CONF", &jemalloc_defaults)]),
        variant("glibc malloc", system, &[]),
        variant(
            "glibc, 2 arenas, trim at 128 KiB",
            system,
            &[("MALLOC_ARENA_MAX", "2"), ("MALLOC_TRIM_THRESHOLD_", "131072")],
        ),
    ];
    for (name, library) in
        [("jemalloc 5 (preloaded)", "libjemalloc.so.2"), ("mimalloc 2 (preloaded)", "libmimalloc.so.2")]
    {
        let library = format!("/usr/lib/{}-linux-gnu/{library}", std::env::consts::ARCH);
        if Path::new(&library).exists() {
            variants.push(variant(name, system, &[("LD_PRELOAD", &library)]));
        } else {
            eprintln!("[memory] {name} left out: {library} is missing (apt-get install libjemalloc2 libmimalloc2.0)");
        }
    }
    match heap_trace {
        Some(trace) if Path::new(HEAPTRACK_LIBRARY).exists() => variants.push(variant(
            HEAPTRACKED,
            system,
            &[("LD_PRELOAD", HEAPTRACK_LIBRARY), ("DUMP_HEAPTRACK_OUTPUT", &trace.display().to_string())],
        )),
        Some(_) => eprintln!("[memory] no heap profile: {HEAPTRACK_LIBRARY} is missing (apt-get install heaptrack)"),
        None => {}
    }
    variants
}

#[derive(Serialize)]
pub(crate) struct AllocatorResult {
    allocator: String,
    namespaces: usize,
    seconds: f64,
    peak_rss_mib: f64,
    /// After the rollout, once two seconds pass without a write.
    settled_rss_mib: f64,
}

/// The rollout of a credential selecting every namespace's `default` ServiceAccount by each
/// variant in turn, each from a clean start (the previous one's copies removed).
pub(crate) async fn compare(
    client: &Client,
    observed: &Shared,
    (operator_args, profile): (&[String], Option<&Path>),
    namespaces: &[String],
    tiers: &[String],
    variants: &[Variant],
) -> Vec<AllocatorResult> {
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    put_source(client, "first").await;
    let expected = canonical("first");
    let mut results = Vec::new();
    for variant in variants {
        let operator = Operator::start_with(&variant.binary, operator_args, &variant.env);
        operator.wait_ready().await;
        // The CPU profile is of the shipped build's rollout: perf costs the measured runs nothing.
        let profiler = profile.filter(|_| results.is_empty()).map(|out| Profiler::attach(operator.child.id(), out));
        let name = "bench-memory";
        let body = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": name},
            "spec": {"source": {"secretRef": {"namespace": SOURCE_NAMESPACE, "name": "pull"}}, "secretName": name,
                     "serviceAccounts": {"names": Accounts::Default.selector()},
                     "namespaceSelector": {"matchExpressions": [{"key": TIER_LABEL, "operator": "In", "values": tiers}]}}});
        let started = Instant::now();
        apply(&credentials, name, body).await;
        let done = until(observed, "the rollout", Duration::from_secs(900), |o| {
            converged(o, namespaces, &["default"], name, &expected)
        })
        .await;
        let seconds = (done - started).as_secs_f64();
        operator.settle().await;
        drop(profiler);
        let (settled_rss_mib, peak_rss_mib) = operator.rss_mib();
        eprintln!(
            "[memory] {}: {} namespaces in {seconds:.2}s, peak RSS {peak_rss_mib:.1} MiB, settled {settled_rss_mib:.1} MiB",
            variant.name,
            namespaces.len()
        );
        clean_up(observed, &credentials, name, name, namespaces).await;
        drop(operator);
        let allocator = variant.name.clone();
        results.push(AllocatorResult {
            allocator,
            namespaces: namespaces.len(),
            seconds,
            peak_rss_mib,
            settled_rss_mib,
        });
    }
    results
}

/// The comparison as a Markdown table.
pub(crate) fn table(results: &[AllocatorResult]) -> String {
    let mut table = String::from(
        "| allocator | namespaces | rollout (`default`) | peak RSS | RSS once settled |\n|---|---|---|---|---|\n",
    );
    for r in results {
        table.push_str(&format!(
            "| {} | {} | {:.2} s | {:.1} MiB | {:.1} MiB |\n",
            r.allocator, r.namespaces, r.seconds, r.peak_rss_mib, r.settled_rss_mib
        ));
    }
    table
}
