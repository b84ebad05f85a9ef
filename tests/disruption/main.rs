//! Tests that disrupt the whole control plane, so they run in a test binary of their own: cargo
//! runs test binaries one after another, so no other test sees the disruption.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::{Fixture, canonical, docker_config, wait_for_copy, wait_for_entries};

/// Restarts kube-apiserver with the same flags, on the control plane tests/run.sh started.
async fn restart_api_server() {
    let Ok(dir) = std::env::var("REGCRED_CLUSTER_DIR") else {
        panic!("REGCRED_CLUSTER_DIR is not set: only a control plane from tests/cluster/up.sh can be restarted");
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/restart-apiserver.sh");
    let status = tokio::task::spawn_blocking(move || std::process::Command::new("bash").arg(script).arg(dir).status())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "restart-apiserver.sh failed: {status}");
}

#[tokio::test]
async fn the_operator_rides_out_an_api_server_restart() {
    let admin = cluster_or_skip!();
    if std::env::var_os("REGCRED_CLUSTER_DIR").is_none() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!(
            "skipped: the cluster in KUBECONFIG was not started by tests/cluster/up.sh, so it cannot be restarted"
        );
        return;
    }
    let fx = Fixture::start(admin.clone(), "apiserver-restart", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let before = fx.namespace(true).await;
    fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &before.name, "regcred", &expected).await;

    restart_api_server().await;
    // The admin client reconnects on its own; the operator's watches must resume too.
    let after = fx.namespace(true).await;
    wait_for_copy(&admin, &after.name, "regcred", &expected).await;
    wait_for_entries(&admin, &after.name, "default", &["regcred"]).await;
    Api::<Secret>::namespaced(admin.clone(), &before.name).delete("regcred", &DeleteParams::default()).await.unwrap();
    wait_for_copy(&admin, &before.name, "regcred", &expected).await;
    assert_eq!(fx.operator.http_get("/healthz").await.0, 200, "the operator kept running");
}
