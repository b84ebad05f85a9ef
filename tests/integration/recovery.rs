//! Pods stuck before the copy existed: evicted for their controller to recreate with the secret,
//! when the credential opts in; bare Pods reported, never deleted; PodDisruptionBudgets hold.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::wait_for;
use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;

const IMAGE: &str = "registry.example.test/app:1";

async fn replica_set(admin: &Client, namespace: &str, name: &str) -> ReplicaSet {
    let set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": IMAGE}]}}},
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(admin.clone(), namespace).create(&PostParams::default(), &set).await.unwrap()
}

/// The one Pod with `app=<app>`, once it exists.
async fn pod_of(admin: &Client, namespace: &str, app: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        if let Some(pod) = list.items.into_iter().find(|p| p.metadata.deletion_timestamp.is_none()) {
            return pod;
        }
        assert!(tokio::time::Instant::now() < deadline, "no Pod app={app} in {namespace}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes what a kubelet writes when the pull fails (there is no kubelet here).
async fn mark_image_pull_backoff(admin: &Client, namespace: &str, pod: &str) {
    let status = json!({"status": {"phase": "Pending", "containerStatuses": [{
        "name": "app", "image": IMAGE, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}});
    Api::<Pod>::namespaced(admin.clone(), namespace)
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

fn pull_secrets(pod: &Pod) -> Vec<String> {
    pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten()).map(|r| r.name.clone()).collect()
}

#[tokio::test]
async fn pods_stuck_before_the_credential_are_evicted_and_recreated_with_the_secret() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "recovery", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let ns = namespace.name.as_str();
    regcred_test_support::cluster::wait_for_default_service_account(&admin, ns).await;
    // Before any credential: a ReplicaSet's Pod, a bare Pod, and a Pod whose budget allows no eviction.
    replica_set(&admin, ns, "web").await;
    replica_set(&admin, ns, "guarded").await;
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "guarded"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "guarded"}}},
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(admin.clone(), ns).create(&PostParams::default(), &budget).await.unwrap();
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {"containers": [{"name": "app", "image": IMAGE}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(admin.clone(), ns).create(&PostParams::default(), &bare).await.unwrap();
    let stuck = pod_of(&admin, ns, "web").await;
    let guarded = pod_of(&admin, ns, "guarded").await;
    for pod in [&stuck, &guarded, &bare] {
        assert!(pull_secrets(pod).is_empty(), "created before the credential: no pull secret");
        mark_image_pull_backoff(&admin, ns, &pod.name_any()).await;
    }

    // Off by default: a synced credential leaves stuck Pods alone.
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    assert_eq!(pods.get(&stuck.name_any()).await.unwrap().uid(), stuck.uid(), "evictStuckPods is opt-in");

    // Opted in: the ReplicaSet's Pod is evicted, and its replacement carries the secret.
    let credential = fx.apply(&fx.credential("main", json!({"evictStuckPods": true}))).await;
    wait_for(&pods, &stuck.name_any(), "the stuck Pod evicted", TIMEOUT, |p| p.is_none()).await;
    let replacement = pod_of(&admin, ns, "web").await;
    assert_ne!(replacement.uid(), stuck.uid());
    assert!(pull_secrets(&replacement).contains(&"regcred".to_owned()), "{:?}", pull_secrets(&replacement));

    // The bare Pod is reported, not deleted; the budget keeps the guarded one.
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let reported = wait_for(&api, &credential.name_any(), "the bare Pod reported", TIMEOUT, |c| {
        c.and_then(|c| c.status.as_ref()?.stuck_pods.as_ref())
            .is_some_and(|s| s.evicted >= 1 && s.bare == vec![format!("{ns}/bare")])
    })
    .await
    .unwrap();
    assert_eq!(reported.status.unwrap().stuck_pods.unwrap().evicted, 1, "only the ReplicaSet's Pod");
    assert!(pods.get_opt("bare").await.unwrap().is_some(), "a bare Pod is never deleted");
    assert_eq!(pods.get(&guarded.name_any()).await.unwrap().uid(), guarded.uid(), "the PodDisruptionBudget holds");
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    wait_for_event(&events, "bare", "StuckWithoutPullSecret").await;
    wait_for_event(&events, &stuck.name_any(), "EvictedStuckPod").await;
    // Left alone, and told why: on the Pod and in status.
    let held = wait_for_event(&events, &guarded.name_any(), "NotEvicted").await;
    assert!(held.note.as_deref().unwrap_or_default().contains("PodDisruptionBudget"), "{held:?}");
    let skipped = wait_for(&api, &credential.name_any(), "the guarded Pod listed as skipped", TIMEOUT, |c| {
        c.and_then(|c| c.status.as_ref()?.stuck_pods.as_ref())
            .is_some_and(|s| s.skipped.iter().any(|entry| entry.starts_with(&format!("{ns}/{}: ", guarded.name_any()))))
    })
    .await;
    assert!(skipped.is_some());
}
