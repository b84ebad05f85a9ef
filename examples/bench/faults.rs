//! Under faults: a rollout over every namespace (their `default` ServiceAccount) with the API
//! server restarted once a third of the namespaces hold the copy. What counts: the time to
//! converge once the API server is back, that nothing is lost (every copy and entry in place),
//! and the writes the API server answered beyond one Secret and one patch per namespace (those
//! repeated: at most the ones in flight when it went down may be), apart from the requests sent
//! while it was down, which no one answered.

use std::process::Command;
use std::time::{Duration, Instant};

use kube::{Api, Client};
use regcred_operator::crd::RegistryCredential;
use serde::Serialize;
use serde_json::json;

use super::{
    Accounts, Args, Operator, SOURCE_NAMESPACE, Shared, TIER_LABEL, apply, canonical, clean_up, converged, delta,
    put_source, until,
};

#[derive(Serialize)]
pub(crate) struct FaultResult {
    namespaces: usize,
    /// Namespaces holding the copy when the API server was stopped.
    holding_at_restart: usize,
    /// How long the API server took to stop, start and be ready again.
    outage_seconds: f64,
    /// From the API server ready again to every copy and entry in place.
    converged_after_return_seconds: f64,
    secret_writes: f64,
    service_account_writes: f64,
    /// Writes beyond one Secret and one ServiceAccount patch per namespace.
    repeated_writes: f64,
    /// Write requests that got no answer (sent while the API server was down).
    unanswered_writes: f64,
    /// The most requests the operator has in flight (`--concurrency`).
    concurrency: usize,
}

/// The restart-mid-rollout run; `None` without a local control plane to restart.
pub(crate) async fn restart_mid_rollout(
    args: &Args,
    client: &Client,
    observed: &Shared,
    namespaces: &[String],
    tiers: &[String],
) -> Option<FaultResult> {
    let Ok(cluster) = std::env::var("REGCRED_CLUSTER_DIR") else {
        eprintln!("[faults] left out: no REGCRED_CLUSTER_DIR (a control plane of tests/cluster/up.sh) to restart");
        return None;
    };
    let credentials: Api<RegistryCredential> = Api::all(client.clone());
    put_source(client, "first").await;
    let expected = canonical("first");
    let operator = Operator::start(&args.operator, &args.operator_args);
    operator.wait_ready().await;
    let before = operator.writes().await;
    let name = "bench-fault";
    let body = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": name},
        "spec": {"source": {"secretRef": {"namespace": SOURCE_NAMESPACE, "name": "pull"}}, "secretName": name,
                 "serviceAccounts": {"names": Accounts::Default.selector()},
                 "namespaceSelector": {"matchExpressions": [{"key": TIER_LABEL, "operator": "In", "values": tiers}]}}});
    apply(&credentials, name, body).await;
    let holding = |o: &super::Observed| {
        namespaces.iter().filter(|ns| o.copies.get(*ns).is_some_and(|c| c.contains_key(name))).count()
    };
    until(observed, "a third of the copies", Duration::from_secs(600), |o| holding(o) * 3 >= namespaces.len()).await;
    let holding_at_restart = holding(&observed.lock().unwrap());
    let stopped = Instant::now();
    let restarted = Command::new("bash").args(["tests/cluster/restart-apiserver.sh", &cluster]).status();
    assert!(restarted.is_ok_and(|s| s.success()), "the API server restarts");
    let returned = Instant::now();
    let done = until(observed, "convergence after the restart", Duration::from_secs(900), |o| {
        converged(o, namespaces, &["default"], name, &expected)
    })
    .await;
    operator.settle().await;
    let after = operator.writes().await;
    // Answered writes: those sent, less those no one answered (sent while the API server was down).
    let unanswered = operator.unanswered_writes().await;
    let answered = |resource| delta(&after, &before, resource) - unanswered.get(resource).copied().unwrap_or_default();
    let (secret_writes, service_account_writes) = (answered("secret"), answered("serviceaccount"));
    let result = FaultResult {
        namespaces: namespaces.len(),
        holding_at_restart,
        outage_seconds: (returned - stopped).as_secs_f64(),
        converged_after_return_seconds: done.saturating_duration_since(returned).as_secs_f64(),
        secret_writes,
        service_account_writes,
        repeated_writes: secret_writes + service_account_writes - 2.0 * namespaces.len() as f64,
        unanswered_writes: unanswered.values().sum(),
        concurrency: concurrency(&args.operator_args),
    };
    eprintln!(
        "[faults] API server down {:.1}s with {holding_at_restart} of {} copies in place; converged {:.2}s after its return; {} Secret writes, {} patches",
        result.outage_seconds,
        namespaces.len(),
        result.converged_after_return_seconds,
        secret_writes,
        service_account_writes
    );
    clean_up(observed, &credentials, name, name, namespaces).await;
    drop(operator);
    Some(result)
}

/// `--concurrency` among the operator's arguments, else its default.
fn concurrency(operator_args: &[String]) -> usize {
    let given = operator_args.windows(2).find(|w| w[0] == "--concurrency").and_then(|w| w[1].parse().ok());
    given.unwrap_or(128)
}

/// The run as Markdown.
pub(crate) fn describe(r: &FaultResult) -> String {
    format!(
        "- API server restarted mid-rollout ({} namespaces, `[\"default\"]`, {} copies in place when it stopped; down {:.1} s): every copy and entry in place {:.2} s after it was back; {} Secret writes and {} ServiceAccount patches answered, {} beyond one each per namespace (requests in flight at most {}); {} write requests unanswered while it was down.\n",
        r.namespaces,
        r.holding_at_restart,
        r.outage_seconds,
        r.converged_after_return_seconds,
        r.secret_writes,
        r.service_account_writes,
        r.repeated_writes,
        r.concurrency,
        r.unanswered_writes
    )
}
