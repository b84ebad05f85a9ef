//! One active replica: a standby takes over when the leader dies, and a leader that lost its
//! Lease writes nothing after, as the API server's audit log witnesses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;
use regcred_test_support::operator::{OPERATOR_NAMESPACE, OperatorProcess, install_account};

#[tokio::test]
async fn a_standby_takes_over_within_the_lease_duration_writing_nothing_twice() {
    let admin = cluster_or_skip!();
    let lease = ["--lease-duration-seconds", "4", "--lease-grace-seconds", "1"];
    let mut fx = Fixture::start(admin.clone(), "failover", &lease).await;
    wait_for_metric(&fx.operator, "regcred_leader", 1.0).await;
    let mut standby = OperatorProcess::start_replica(&admin, &fx.instance, "1", &fx.source.name, &lease).await;
    assert_eq!(standby.metric("regcred_leader").await, 0.0, "one active replica");
    assert_eq!(standby.http_get("/readyz").await.0, 200, "a standby is ready: it has nothing to sync");

    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let mut namespaces = vec![fx.namespace(true).await, fx.namespace(true).await, fx.namespace(true).await];
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    for namespace in &namespaces {
        wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    }
    let writes = Arc::new(Mutex::new(BTreeMap::new()));
    let counter = tokio::spawn(count_copy_writes(admin.clone(), credential.name_any(), writes.clone()));

    fx.operator.kill();
    let killed = std::time::Instant::now();
    for _ in 0..3 {
        namespaces.push(fx.namespace(true).await);
    }
    wait_for_metric(&standby, "regcred_leader", 1.0).await;
    let takeover = killed.elapsed();
    println!("standby took over {takeover:?} after the leader was killed (lease duration 4 s)");
    assert!(takeover < Duration::from_secs(4) + Duration::from_millis(1500), "takeover took {takeover:?}");
    for namespace in &namespaces {
        wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
        wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    }
    counter.abort();
    let writes = writes.lock().unwrap().clone();
    assert_eq!(writes.len(), namespaces.len(), "a copy in every namespace: {writes:?}");
    for (copy, versions) in &writes {
        assert_eq!(versions.len(), 1, "{copy} was written more than once: {versions:?}");
    }

    // A graceful stop releases the Lease: the next replica need not wait for it to expire.
    let mut third = OperatorProcess::start_replica(&admin, &fx.instance, "2", &fx.source.name, &lease).await;
    assert_eq!(standby.terminate(), Some(0));
    let released = std::time::Instant::now();
    wait_for_metric(&third, "regcred_leader", 1.0).await;
    println!("after SIGTERM the next replica led within {:?}", released.elapsed());
    third.kill();
}

/// The audit log of the control plane tests/run.sh started; `None` (the test skips) for another
/// cluster, except in CI.
fn audit_log() -> Option<PathBuf> {
    match std::env::var("REGCRED_CLUSTER_DIR") {
        Ok(dir) => Some(PathBuf::from(dir).join("audit.log")),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("REGCRED_CLUSTER_DIR is not set in CI"),
        Err(_) => {
            eprintln!(
                "skipped: the cluster in KUBECONFIG was not started by tests/cluster/up.sh, so it has no audit log"
            );
            None
        }
    }
}

/// The writes `user` made after `after`, as the API server's audit log recorded them: one line
/// each (verb, resource, namespace/name, response code), the election's own Lease writes aside.
fn writes_after(audit: &PathBuf, user: &str, after: Timestamp) -> Vec<String> {
    let log = std::fs::read_to_string(audit).unwrap_or_else(|e| panic!("{}: {e}", audit.display()));
    let text = |event: &Value, pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_owned();
    log.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| text(event, "/user/username") == user && text(event, "/objectRef/resource") != "leases")
        .filter(|event| text(event, "/requestReceivedTimestamp").parse::<Timestamp>().unwrap() > after)
        .map(|event| {
            let code = event.pointer("/responseStatus/code").and_then(Value::as_i64).unwrap_or_default();
            let object = [text(&event, "/objectRef/namespace"), text(&event, "/objectRef/name")].join("/");
            let received = text(&event, "/requestReceivedTimestamp");
            format!("{received} {} {} {object} -> {code}", text(&event, "/verb"), text(&event, "/objectRef/resource"))
        })
        .collect()
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_writes_nothing_once_it_runs_again() {
    let admin = cluster_or_skip!();
    let Some(audit) = audit_log() else { return };
    // A ServiceAccount of its own for each replica: the audit log tells their writes apart.
    let (paused, standby_account) = ("regcred-operator-paused", "regcred-operator-standby");
    install_account(&admin, paused, None).await;
    install_account(&admin, standby_account, None).await;
    let lease = ["--lease-duration-seconds", "4", "--lease-grace-seconds", "1"];
    let mut fx = Fixture::start_as(admin.clone(), "paused", paused, &lease).await;
    wait_for_metric(&fx.operator, "regcred_leader", 1.0).await;
    let standby = OperatorProcess::start_as(&admin, standby_account, &fx.instance, "1", &fx.source.name, &lease).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let mut namespaces = vec![fx.namespace(true).await, fx.namespace(true).await];
    fx.apply(&fx.credential("main", json!({}))).await;
    for namespace in &namespaces {
        wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    }

    // Frozen past its Lease: the standby takes over, and work piles up for the frozen leader's
    // watches (a rotation, new namespaces) while the standby does it.
    fx.operator.pause();
    let paused_at = Timestamp::now();
    wait_for_metric(&standby, "regcred_leader", 1.0).await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let lease_object = leases.get(&format!("regcred-test-{}", fx.instance)).await.unwrap();
    let spec = lease_object.spec.unwrap();
    assert!(spec.holder_identity.is_some_and(|holder| holder.starts_with("regcred-operator")));
    let taken_over = spec.acquire_time.unwrap().0;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "rotated")).await;
    for _ in 0..3 {
        namespaces.push(fx.namespace(true).await);
    }
    let rotated = canonical("registry.example.test", "ci", "rotated");
    for namespace in &namespaces {
        wait_for_copy(&admin, &namespace.name, "regcred", &rotated).await;
        wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    }

    let resumed_at = Timestamp::now();
    fx.operator.resume();
    let exit = fx.operator.exit_within(Duration::from_secs(20)).await;
    assert_eq!(exit, Some(1), "a replica that lost its Lease exits 1, to restart clean as a standby");
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{paused}");
    let late = writes_after(&audit, &user, taken_over);
    println!(
        "paused at {paused_at}, the standby took over at {taken_over}, resumed at {resumed_at}; writes of the paused leader after the takeover: {}",
        late.len()
    );
    assert!(late.is_empty(), "the paused leader wrote after losing its Lease:\n{}", late.join("\n"));
    assert!(
        !writes_after(&audit, &user, Timestamp::UNIX_EPOCH).is_empty(),
        "the audit log holds the paused leader's writes from before"
    );
}
