//! What a tenant or a careless admin cannot make the operator do: trust a label, write a source,
//! point a ServiceAccount at a Secret that is not there, or fight another instance.

use std::time::Duration;

use base64::Engine as _;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::wait_for;
use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;

/// A Secret a tenant labelled as if the operator managed it, with no owner.
async fn put_labelled_secret(admin: &kube::Client, namespace: &str, name: &str, credential: &str) -> Secret {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {MANAGED_BY: "regcred-operator", "regcred.dev/credential": credential}},
        "type": "Opaque",
        "stringData": {"note": "a tenant's backup"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap()
}

fn failure_reasons(credential: &RegistryCredential) -> Vec<(String, String)> {
    credential.status.iter().flat_map(|s| &s.failures).map(|f| (f.namespace.clone(), f.reason.clone())).collect()
}

#[tokio::test]
async fn a_secret_labelled_as_ours_by_a_tenant_is_never_deleted() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "tenant-label", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.credential("main", json!({}));
    let backup = put_labelled_secret(&admin, &namespace.name, "regcred-bak", &credential.name_any()).await;
    let credential = fx.apply(&credential).await;
    fx.wait_ready(&credential, "True", "Synced").await;

    // A rename makes every copy under the old name "stale": only copies the credential controls go.
    let renamed = fx.apply(&fx.credential("main", json!({"secretName": "pull-secret"}))).await;
    wait_for_copy(&admin, &namespace.name, "pull-secret", &canonical("registry.example.test", "ci", "pw")).await;
    wait_for_no_copy(&admin, &namespace.name, "regcred").await;
    fx.delete(&renamed).await;
    wait_for_no_copy(&admin, &namespace.name, "pull-secret").await;

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let kept = secrets.get("regcred-bak").await.expect("the tenant's Secret survives rename and cleanup");
    assert_eq!(kept.uid(), backup.uid());
    assert_eq!(kept.resource_version(), backup.resource_version(), "not even written");
}

#[tokio::test]
async fn the_source_secret_is_never_written_adopted_or_selected_by_a_glob() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "source-safe", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let source_api: Api<Secret> = Api::namespaced(admin.clone(), &fx.source.name);
    let before = source_api.get("pull").await.unwrap();
    // The trusted namespace carries the selecting label, as `include: ["*"]` would reach it.
    relabel(&admin, &fx.source.name, &fx.instance).await;
    let other = fx.namespace(true).await;
    let by_glob = fx.apply(&fx.credential("glob", json!({"secretName": "pull", "onConflict": "Adopt"}))).await;
    fx.wait_ready(&by_glob, "True", "Synced").await;
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let status = api.get(&by_glob.name_any()).await.unwrap().status.unwrap();
    assert_eq!(status.synced.as_deref(), Some("1/1"), "only {} is selected", other.name);

    // Named exactly, the namespace is selected, but the source itself is still never written.
    let named = fx
        .apply(&fx.credential(
            "named",
            json!({"secretName": "pull", "onConflict": "Adopt", "namespaces": {"include": [fx.source.name]}}),
        ))
        .await;
    let refused = fx.wait_ready(&named, "False", "SyncFailed").await;
    assert_eq!(failure_reasons(&refused), vec![(fx.source.name.clone(), "SecretIsSource".to_owned())]);
    fx.delete(&named).await;
    fx.delete(&by_glob).await;
    let after = source_api.get("pull").await.expect("the source survives its credentials' cleanup");
    assert_eq!(after.resource_version(), before.resource_version(), "never written, labelled or owned");
    assert!(after.owner_references().is_empty());
}

#[tokio::test]
async fn a_copy_stripped_of_its_labels_is_repaired() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "unlabelled", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "pw")).await;
    fx.wait_ready(&credential, "True", "Synced").await;

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let strip = json!({"metadata": {"labels": {MANAGED_BY: null, "regcred.dev/credential": null}}});
    secrets.patch("regcred", &PatchParams::default(), &Patch::Merge(&strip)).await.unwrap();
    wait_for(&secrets, "regcred", "the copy's labels restored", TIMEOUT, |s| {
        s.is_some_and(|s| s.labels().get(MANAGED_BY).map(String::as_str) == Some("regcred-operator"))
    })
    .await;
    // And rotation reaches it again.
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "rotated")).await;
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "rotated")).await;
    fx.wait_ready(&credential, "True", "Synced").await;
}

#[tokio::test]
async fn a_failed_copy_write_never_points_a_service_account_at_a_missing_secret() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "quota", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    fx.wait_ready(&credential, "True", "Synced").await;

    // The namespace is at its Secret quota: the renamed copy cannot be created.
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "secrets"}, "spec": {"hard": {"count/secrets": "1"}}}))
            .unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(admin.clone(), &namespace.name);
    // Whether or not a quota controller has counted yet, the API server refuses a new Secret.
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let renamed = fx.apply(&fx.credential("main", json!({"secretName": "renamed"}))).await;
    let failed = fx.wait_ready(&renamed, "False", "SyncFailed").await;
    assert_eq!(failure_reasons(&failed), vec![(namespace.name.clone(), "SecretWriteFailed".to_owned())]);
    // The ServiceAccount still names the copy that exists, and the copy is still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    assert!(secrets.get_opt("regcred").await.unwrap().is_some());

    quotas.delete("secrets", &DeleteParams::default()).await.unwrap();
    // The retry comes with the credential's backoff, which a loaded machine may have grown past
    // the wait; an event in the namespace brings it at once.
    let nudge = json!({"metadata": {"labels": {"regcred.dev/nudge": "quota-lifted"}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(&namespace.name, &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    wait_for_entries(&admin, &namespace.name, "default", &["renamed"]).await;
}

#[tokio::test]
async fn the_loser_of_a_name_takes_over_as_soon_as_the_winner_is_deleted() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "takeover", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "first")).await;
    fx.put_source("pull-2", &docker_config("registry.example.test", "ci", "second")).await;
    let namespace = fx.namespace(true).await;
    let winner = fx.apply(&fx.credential("a-first", json!({}))).await;
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "first")).await;
    let loser = fx.apply(&fx.credential("b-second", json!({"source": {"secretRef": {"name": "pull-2"}}}))).await;
    fx.wait_ready(&loser, "False", "SyncFailed").await;
    // Let the loser's backoff grow past the wait below (2 s, 4 s, 8 s, ...).
    tokio::time::sleep(Duration::from_secs(8)).await;

    fx.delete(&winner).await;
    let api: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let expected = canonical("registry.example.test", "ci", "second");
    wait_for(&api, "regcred", "the loser's copy, within 5 s", Duration::from_secs(5), |s| {
        s.and_then(payload).as_deref() == Some(expected.as_str())
    })
    .await;
    fx.wait_ready(&loser, "True", "Synced").await;
}

#[tokio::test]
async fn two_operator_instances_never_overwrite_each_others_copies() {
    let admin = cluster_or_skip!();
    let first = Fixture::start(admin.clone(), "instance-a", &[]).await;
    let second = Fixture::start(admin.clone(), "instance-b", &[]).await;
    first.put_source("pull", &docker_config("registry.example.test", "ci", "a")).await;
    second.put_source("pull", &docker_config("registry.example.test", "ci", "b")).await;
    let namespace = first.namespace(true).await;
    let a = first.apply(&first.credential("main", json!({}))).await;
    let copy = wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "a")).await;
    first.wait_ready(&a, "True", "Synced").await;

    // The second instance's credential selects the same namespace under the same secret name.
    let b = second
        .apply(
            &second
                .credential("main", json!({"namespaceSelector": {"matchLabels": {TEST_SELECT_LABEL: first.instance}}})),
        )
        .await;
    let blocked = second.wait_ready(&b, "False", "SyncFailed").await;
    assert_eq!(failure_reasons(&blocked), vec![(namespace.name.clone(), "NameConflict".to_owned())]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let still = secrets.get("regcred").await.unwrap();
    assert_eq!(still.resource_version(), copy.resource_version(), "no write fight over the copy");
    first.wait_ready(&a, "True", "Synced").await;
}

#[tokio::test]
async fn a_name_too_long_for_a_label_is_refused_at_apply_time() {
    let admin = cluster_or_skip!();
    regcred_test_support::operator::install(&admin).await;
    let credential: RegistryCredential = serde_json::from_value(json!({
        "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
        "metadata": {"name": "x".repeat(64)},
        "spec": {"source": {"secretRef": {"namespace": "regcred-system", "name": "pull"}}},
    }))
    .unwrap();
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let error = api.create(&PostParams::default(), &credential).await.expect_err("a 64-character name is refused");
    assert!(error.to_string().contains("at most 63 characters"), "{error}");
}

#[tokio::test]
async fn an_adopt_that_cannot_succeed_is_reported_and_never_attempted() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "adopt-impossible", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(false).await;
    // Someone's Opaque Secret of the copy's name: a Secret's type cannot change.
    let theirs: Secret =
        serde_json::from_value(json!({"metadata": {"name": "regcred"}, "type": "Opaque", "stringData": {"k": "v"}}))
            .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let theirs = secrets.create(&PostParams::default(), &theirs).await.unwrap();
    relabel(&admin, &namespace.name, &fx.instance).await;
    let credential = fx.apply(&fx.credential("main", json!({"onConflict": "Adopt"}))).await;
    let failed = fx.wait_ready(&credential, "False", "SyncFailed").await;
    assert_eq!(failure_reasons(&failed), vec![(namespace.name.clone(), "AdoptImpossible".to_owned())]);
    let message = &failed.status.unwrap().failures[0].message;
    assert!(message.contains("Opaque"), "{message}");
    let writes = fx.operator.writes("secret").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fx.operator.writes("secret").await, writes, "no write attempted");
    assert_eq!(secrets.get("regcred").await.unwrap().resource_version(), theirs.resource_version());
}

#[tokio::test]
async fn service_accounts_that_enforce_mountable_secrets_are_reported_until_their_namespace_opts_out() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "enforce", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    for (name, enforce) in [("builder", "true"), ("relaxed", "false")] {
        let account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"kubernetes.io/enforce-mountable-secrets": enforce}},
        }))
        .unwrap();
        Api::<ServiceAccount>::namespaced(admin.clone(), &namespace.name)
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
    }
    let names = json!({"serviceAccounts": {"names": ["default", "builder", "relaxed"]}});
    let credential = fx.apply(&fx.credential("main", names)).await;
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let injection = |c: &RegistryCredential| {
        let status = c.status.as_ref()?;
        let condition = status.conditions.iter().find(|c| c.type_ == "PodInjection")?;
        Some((condition.reason.clone(), status.mountable_secrets_enforced.clone()))
    };
    let at_risk = (String::from("MountableSecretsEnforced"), vec![format!("{}/builder", namespace.name)]);
    wait_for(&api, &credential.name_any(), "the enforcing ServiceAccount reported", TIMEOUT, |c| {
        c.and_then(injection).as_ref() == Some(&at_risk)
    })
    .await
    .unwrap();
    // Patched all the same: ServiceAccount patching is what such a namespace relies on.
    wait_for_entries(&admin, &namespace.name, "builder", &["regcred"]).await;

    let opt_out = json!({"metadata": {"labels": {"regcred.dev/pod-injection": "disabled"}}});
    Api::<Namespace>::all(admin.clone())
        .patch(&namespace.name, &PatchParams::default(), &Patch::Merge(opt_out))
        .await
        .unwrap();
    let safe = (String::from("AdmissionPolicyServed"), Vec::new());
    wait_for(&api, &credential.name_any(), "nothing reported once opted out", TIMEOUT, |c| {
        c.and_then(injection).as_ref() == Some(&safe)
    })
    .await
    .unwrap();
    wait_for_entries(&admin, &namespace.name, "builder", &["regcred"]).await;
}

/// The payload key of a pull secret, as a data entry.
fn data_of(config: &serde_json::Value) -> serde_json::Value {
    json!({".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_string())})
}

#[tokio::test]
async fn a_copy_edited_under_the_operators_field_manager_name_is_repaired() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "impostor", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;

    // Any client may call itself regcred-operator; the digest annotation stays as it was.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let forged = docker_config("registry.example.test", "someone", "else");
    let impostor = PatchParams { field_manager: Some("regcred-operator".into()), ..PatchParams::default() };
    secrets.patch("regcred", &impostor, &Patch::Merge(json!({"data": data_of(&forged)}))).await.unwrap();
    let repaired = wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
    assert!(repaired.annotations().contains_key("regcred.dev/content-digest"));
}

#[tokio::test]
async fn an_adopted_secret_that_a_gitops_tool_keeps_rewriting_is_a_bounded_reported_contest() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "adopt-contest", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let theirs = docker_config("registry.example.test", "gitops", "theirs");
    // The Secret as a GitOps tool applies it, again and again (self-heal).
    let gitops = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
                        "type": "kubernetes.io/dockerconfigjson", "data": data_of(&theirs)});
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let self_heal = PatchParams::apply("argocd-controller").force();
    secrets.patch("regcred", &self_heal, &Patch::Apply(&gitops)).await.unwrap();
    let credential = fx.apply(&fx.credential("main", json!({"onConflict": "Adopt"}))).await;
    let ours = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &namespace.name, "regcred", &ours).await;

    // Self-heal every 200 ms for 12 s; every version holding our payload is one rewrite.
    let (mut rewrites, mut applies) = (0, 0);
    let mut last_version = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while tokio::time::Instant::now() < deadline {
        let now = secrets.get("regcred").await.unwrap();
        let version = now.resource_version().unwrap_or_default();
        if payload(&now).as_deref() == Some(ours.as_str()) && version != last_version {
            rewrites += 1;
            last_version = version;
        }
        secrets.patch("regcred", &self_heal, &Patch::Apply(&gitops)).await.unwrap();
        applies += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("operator rewrites of a Secret a GitOps tool re-applied {applies} times in 12 s: {rewrites}");
    assert!(rewrites <= 5, "a bounded contest, not a write loop: {rewrites} rewrites");
    let failure = fx.wait_for_failure(&credential, "Contested").await;
    assert_eq!(failure.namespace, namespace.name);
    assert!(failure.message.contains("\"argocd-controller\""), "names the other writer: {}", failure.message);
}

#[tokio::test]
async fn a_tenant_deleting_the_copy_in_a_loop_gets_a_bounded_reported_contest() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "delete-loop", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;

    // Delete every 200 ms for 12 s; every copy seen with a new UID is one the operator made again.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let (mut recreations, mut deletions) = (0, 0);
    let mut last_uid = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while tokio::time::Instant::now() < deadline {
        if let Some(copy) = secrets.get_opt("regcred").await.unwrap() {
            let uid = copy.uid().unwrap_or_default();
            if uid != last_uid {
                recreations += 1;
                last_uid = uid;
            }
            if secrets.delete("regcred", &DeleteParams::default()).await.is_ok() {
                deletions += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("copies made again while a tenant deleted the copy {deletions} times in 12 s: {recreations}");
    assert!(recreations <= 5, "a bounded contest, not a write loop: {recreations} copies");
    let failure = fx.wait_for_failure(&credential, "Contested").await;
    assert_eq!(failure.namespace, namespace.name);
    assert!(failure.message.contains("deleted or changed it"), "says what happened: {}", failure.message);
    // Left alone, the copy comes back.
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
}

#[tokio::test]
async fn pending_pods_are_watched_only_for_recovery_and_a_cache_that_cannot_list_is_named_in_status() {
    let admin = cluster_or_skip!();
    // The shipped ClusterRole without its rule on Pods: the Pending Pods cache never lists.
    let account = "regcred-operator-no-pods";
    regcred_test_support::operator::install_account(&admin, account, Some("pods")).await;
    let fx = Fixture::start_as(admin.clone(), "no-pods", account, &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    // No credential recovers stuck Pods: no Pod is watched, and none needs to be.
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;

    let recovering = fx.apply(&fx.credential("main", json!({"evictStuckPods": true}))).await;
    let waiting = fx.wait_ready(&recovering, "False", "CachesNotListed").await;
    let ready = &waiting.status.unwrap().conditions[0];
    assert!(ready.message.contains("Pending Pods: "), "names the cache: {}", ready.message);
    assert!(ready.message.contains("forbidden"), "and the API server's answer: {}", ready.message);
    // Recovery off again: the watch stops and the credential is Ready once more.
    let credential = fx.apply(&fx.credential("main", json!({"evictStuckPods": false}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
}

#[tokio::test]
async fn a_service_account_of_thousands_of_entries_gets_the_copy_and_keeps_every_entry() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "long-list", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    // The cache keeps only the names in use of such a list: every write reads it whole first.
    let theirs: Vec<String> = (0..3_000).map(|i| format!("tenant-{i:05}")).collect();
    let names: Vec<&str> = theirs.iter().map(String::as_str).collect();
    create_account(&admin, &namespace.name, "builder", &names).await;
    let credential = fx.apply(&fx.credential("main", json!({"serviceAccounts": {"names": ["builder"]}}))).await;
    let mut expected = names.clone();
    expected.push("regcred");
    let account = wait_for_entries(&admin, &namespace.name, "builder", &expected).await;
    assert_eq!(account.annotations().get(RECORD).map(String::as_str), Some("regcred"));
    fx.wait_ready(&credential, "True", "Synced").await;

    fx.delete(&credential).await;
    wait_for_entries(&admin, &namespace.name, "builder", &names).await;
}
