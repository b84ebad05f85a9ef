//! The behaviour contract of docs/design.md, against the real control plane, with the operator
//! running as a separate process under its own ServiceAccount and RBAC.

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::{TestNamespace, admission_policy_api, wait_for, wait_for_list};
use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;

#[tokio::test]
async fn copies_reach_namespaces_created_before_and_after_the_credential() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "before-after", &[]).await;
    fx.put_source("pull", &docker_config("https://Registry.Example.test/v2/", "ci", "pw1")).await;
    let before = fx.namespace(true).await;
    let unselected = fx.namespace(false).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    // The host as written is kept beside the canonical one: the kubelet compares hosts as written.
    let one = canonical("registry.example.test", "ci", "pw1");
    let entry = &one[one.find(":{\"auth\"").unwrap() + 1..one.len() - 2];
    let expected = format!(r#"{{"auths":{{"Registry.Example.test":{entry},"registry.example.test":{entry}}}}}"#);

    let copy = wait_for_copy(&admin, &before.name, "regcred", &expected).await;
    assert_eq!(copy.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(copy.labels().get(MANAGED_BY).map(String::as_str), Some("regcred-operator"));
    assert_eq!(copy.labels().get("regcred.dev/credential"), Some(&credential.name_any()));
    let owner = &copy.owner_references()[0];
    assert_eq!((owner.kind.as_str(), &owner.uid), ("RegistryCredential", credential.uid().as_ref().unwrap()));
    wait_for_entries(&admin, &before.name, "default", &["regcred"]).await;

    // Created after the credential: the default ServiceAccount appears after the namespace,
    // and the operator reacts to it.
    let after = fx.namespace(true).await;
    wait_for_copy(&admin, &after.name, "regcred", &expected).await;
    let account = wait_for_entries(&admin, &after.name, "default", &["regcred"]).await;
    assert_eq!(account.annotations().get(RECORD).map(String::as_str), Some("regcred"));

    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let ready = wait_for(&api, &credential.name_any(), "status 2/2 synced", TIMEOUT, |c| {
        c.and_then(|c| c.status.as_ref()).is_some_and(|s| s.synced.as_deref() == Some("2/2"))
    })
    .await
    .unwrap();
    let status = ready.status.unwrap();
    let condition = &status.conditions[0];
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str(), condition.reason.as_str()),
        ("Ready", "True", "Synced")
    );
    assert_eq!(condition.message, "2/2 namespaces");
    // PodInjection tells the truth about this cluster: 1.36+ serves the policy's v1 API, 1.34 /
    // 1.35 serve v1beta1 only where enabled (the version matrix starts one of each).
    let injection = status.conditions.iter().find(|c| c.type_ == "PodInjection").expect("a PodInjection condition");
    let served = admission_policy_api(&admin).await;
    let expected =
        if served.is_some() { ("True", "AdmissionPolicyServed") } else { ("False", "AdmissionPolicyNotServed") };
    assert_eq!((injection.status.as_str(), injection.reason.as_str()), expected, "served: {served:?}");
    assert_eq!(status.registries, vec!["Registry.Example.test", "registry.example.test"]);
    assert_eq!(status.normalized[0].from, "https://Registry.Example.test/v2/");
    assert_eq!(status.observed_generation, ready.metadata.generation);

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &unselected.name);
    assert!(secrets.get_opt("regcred").await.unwrap().is_none(), "an unselected namespace gets nothing");
}

#[tokio::test]
async fn label_changes_move_a_namespace_into_and_out_of_the_selection() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "labels", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(false).await;
    create_account(&admin, &namespace.name, "builder", &["mine"]).await;
    let credential =
        fx.apply(&fx.credential("main", json!({"serviceAccounts": {"names": ["default", "builder"]}}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    fx.wait_ready(&credential, "True", "Synced").await;

    relabel(&admin, &namespace.name, &fx.instance).await;
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
    wait_for_entries(&admin, &namespace.name, "builder", &["mine", "regcred"]).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;

    relabel(&admin, &namespace.name, "elsewhere").await;
    wait_for_no_copy(&admin, &namespace.name, "regcred").await;
    let builder = wait_for_entries(&admin, &namespace.name, "builder", &["mine"]).await;
    assert!(!builder.annotations().contains_key(RECORD), "the record goes with the last entry");
    wait_for_entries(&admin, &namespace.name, "default", &[]).await;
}

#[tokio::test]
async fn drift_is_repaired_deleted_and_edited_copies_and_removed_entries() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "drift", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);

    secrets.delete("regcred", &DeleteParams::default()).await.unwrap();
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;

    let edit =
        json!({"data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(r#"{"auths":{}}"#)}});
    secrets.patch("regcred", &PatchParams::default(), &Patch::Merge(edit)).await.unwrap();
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;

    set_entries(&admin, &namespace.name, "default", &["mine"]).await;
    wait_for_entries(&admin, &namespace.name, "default", &["mine", "regcred"]).await;
}

#[tokio::test]
async fn a_users_own_entries_survive_add_prune_and_delete() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "user-entries", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let other = fx.namespace(true).await;
    // The user listed regcred themselves here before the operator: not recorded, never removed.
    create_account(&admin, &other.name, "app", &["regcred", "mine"]).await;
    wait_for(
        &Api::<ServiceAccount>::namespaced(admin.clone(), &namespace.name),
        "default",
        "default SA",
        TIMEOUT,
        |a| a.is_some(),
    )
    .await;
    set_entries(&admin, &namespace.name, "default", &["first", "second"]).await;
    let credential = fx.apply(&fx.credential("main", json!({"serviceAccounts": {"names": ["default", "app"]}}))).await;

    wait_for_entries(&admin, &namespace.name, "default", &["first", "second", "regcred"]).await;
    let app = wait_for_entries(&admin, &other.name, "app", &["regcred", "mine"]).await;
    assert!(!app.annotations().contains_key(RECORD), "an entry the user put there is not the operator's");

    relabel(&admin, &namespace.name, "elsewhere").await;
    wait_for_entries(&admin, &namespace.name, "default", &["first", "second"]).await;
    relabel(&admin, &namespace.name, &fx.instance).await;
    wait_for_entries(&admin, &namespace.name, "default", &["first", "second", "regcred"]).await;

    fx.delete(&credential).await;
    wait_for_entries(&admin, &namespace.name, "default", &["first", "second"]).await;
    wait_for_no_copy(&admin, &namespace.name, "regcred").await;
    let app = Api::<ServiceAccount>::namespaced(admin.clone(), &other.name).get("app").await.unwrap();
    assert_eq!(entries(&app), vec!["regcred", "mine"], "the user's own regcred entry stays");
}

#[tokio::test]
async fn source_rotation_reaches_every_copy() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "rotation", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "old")).await;
    let namespaces = [fx.namespace(true).await, fx.namespace(true).await, fx.namespace(true).await];
    fx.apply(&fx.credential("main", json!({}))).await;
    for namespace in &namespaces {
        wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "old")).await;
    }
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "new")).await;
    for namespace in &namespaces {
        wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", "new")).await;
    }
}

#[tokio::test]
async fn deletion_removes_exactly_what_it_created() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "deletion", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    put_docker_config(&admin, &namespace.name, "unrelated", &docker_config("other.test", "u", "p")).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    assert!(credential.finalizers().is_empty(), "the finalizer is added by the operator, not by the user");

    fx.delete(&credential).await;
    wait_for_no_copy(&admin, &namespace.name, "regcred").await;
    wait_for_entries(&admin, &namespace.name, "default", &[]).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    assert!(secrets.get_opt("unrelated").await.unwrap().is_some(), "a Secret the operator did not create stays");
    let source: Api<Secret> = Api::namespaced(admin.clone(), &fx.source.name);
    assert!(source.get_opt("pull").await.unwrap().is_some(), "the source stays");
}

#[tokio::test]
async fn an_unmanaged_secret_is_skipped_or_adopted() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "unmanaged", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let skip_ns = fx.namespace(true).await;
    let user_config = docker_config("registry.example.test", "someone", "theirs");
    put_docker_config(&admin, &skip_ns.name, "regcred", &user_config).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;

    let ready = fx.wait_ready(&credential, "False", "SyncFailed").await;
    let status = ready.status.unwrap();
    assert_eq!(status.failures.len(), 1);
    assert_eq!(
        (status.failures[0].namespace.as_str(), status.failures[0].reason.as_str()),
        (skip_ns.name.as_str(), "SecretConflict")
    );
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &skip_ns.name);
    let untouched = secrets.get("regcred").await.unwrap();
    assert_eq!(payload(&untouched).unwrap(), user_config.to_string(), "Skip never overwrites");
    assert!(!untouched.labels().contains_key(MANAGED_BY));

    let adopt = fx.apply(&fx.credential("main", json!({"onConflict": "Adopt"}))).await;
    let adopted =
        wait_for_copy(&admin, &skip_ns.name, "regcred", &canonical("registry.example.test", "ci", "pw")).await;
    assert_eq!(adopted.labels().get(MANAGED_BY).map(String::as_str), Some("regcred-operator"));
    fx.wait_ready(&adopt, "True", "Synced").await;
}

#[tokio::test]
async fn two_credentials_claiming_one_name_have_a_deterministic_winner() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "name-conflict", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "first")).await;
    fx.put_source("pull-2", &docker_config("registry.example.test", "ci", "second")).await;
    let namespace = fx.namespace(true).await;
    let first = fx.apply(&fx.credential("a-first", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "first");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
    // Created later (or, within the same second, named later): it loses.
    let second = fx.apply(&fx.credential("b-second", json!({"source": {"secretRef": {"name": "pull-2"}}}))).await;

    let lost = fx.wait_ready(&second, "False", "SyncFailed").await;
    let failure = &lost.status.unwrap().failures[0];
    assert_eq!((failure.namespace.as_str(), failure.reason.as_str()), (namespace.name.as_str(), "NameConflict"));
    assert!(failure.message.contains(&first.name_any()), "{}", failure.message);
    fx.wait_ready(&first, "True", "Synced").await;
    let copy = Api::<Secret>::namespaced(admin.clone(), &namespace.name).get("regcred").await.unwrap();
    assert_eq!(payload(&copy).unwrap(), expected, "the older credential keeps the copy");
    assert_eq!(copy.labels().get("regcred.dev/credential"), Some(&first.name_any()));

    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let name = second.name_any();
    wait_for_event(&events, &name, "NameConflict").await;
}

#[tokio::test]
async fn an_invalid_source_keeps_the_working_copies() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "invalid-source", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "good")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "good");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;
    fx.wait_ready(&credential, "True", "Synced").await;

    fx.put_source("pull", &json!({"auths": {"registry.example.test": {}}})).await;
    let failed = fx.wait_ready(&credential, "False", "SourceInvalid").await;
    let message = &failed.status.unwrap().conditions[0].message;
    assert!(message.contains("no credentials"), "{message}");
    wait_for_event(&Api::namespaced(admin.clone(), "default"), &credential.name_any(), "SourceInvalid").await;
    // A new namespace while the source is broken gets nothing, and the old copy stays good.
    let later = fx.namespace(true).await;
    Api::<Secret>::namespaced(admin.clone(), &fx.source.name).delete("pull", &DeleteParams::default()).await.unwrap();
    fx.wait_ready(&credential, "False", "SourceNotFound").await;
    let copy = Api::<Secret>::namespaced(admin.clone(), &namespace.name).get("regcred").await.unwrap();
    assert_eq!(payload(&copy).unwrap(), expected);
    assert!(Api::<Secret>::namespaced(admin.clone(), &later.name).get_opt("regcred").await.unwrap().is_none());
}

#[tokio::test]
async fn a_source_outside_the_trusted_namespaces_is_refused() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "untrusted", &[]).await;
    let elsewhere = TestNamespace::create(&admin, "elsewhere", &[]).await;
    put_docker_config(&admin, &elsewhere.name, "pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential =
        fx.apply(&fx.credential("main", json!({"source": {"secretRef": {"namespace": elsewhere.name}}}))).await;
    let refused = fx.wait_ready(&credential, "False", "SourceNotTrusted").await;
    assert!(refused.status.unwrap().conditions[0].message.contains(&fx.source.name));
    assert!(Api::<Secret>::namespaced(admin.clone(), &namespace.name).get_opt("regcred").await.unwrap().is_none());
}

#[tokio::test]
async fn star_selects_every_service_account() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "star", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    create_account(&admin, &namespace.name, "builder", &[]).await;
    fx.apply(&fx.credential("main", json!({"serviceAccounts": {"names": ["*"]}}))).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    wait_for_entries(&admin, &namespace.name, "builder", &["regcred"]).await;
    create_account(&admin, &namespace.name, "late", &["mine"]).await;
    wait_for_entries(&admin, &namespace.name, "late", &["mine", "regcred"]).await;
}

#[tokio::test]
async fn a_killed_operator_converges_after_restart() {
    let admin = cluster_or_skip!();
    let mut fx = Fixture::start(admin.clone(), "killed", &["--concurrency", "1"]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let mut namespaces = Vec::new();
    for _ in 0..40 {
        namespaces.push(fx.namespace(true).await);
    }
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    // Kill it as soon as the rollout has begun.
    wait_for_copy(&admin, &namespaces[0].name, "regcred", &expected).await;
    fx.operator.kill();
    fx.restart_operator().await;
    let copies = watcher::Config::default().labels(&format!("regcred.dev/credential={}", credential.name_any()));
    wait_for_list(&Api::<Secret>::all(admin.clone()), copies, "a copy in every namespace", TIMEOUT, |secrets| {
        secrets.len() == namespaces.len() && secrets.iter().all(|s| payload(s).as_deref() == Some(expected.as_str()))
    })
    .await;
    for namespace in &namespaces {
        wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    }
}

#[tokio::test]
async fn sigterm_stops_the_operator_with_exit_0() {
    let admin = cluster_or_skip!();
    let mut fx = Fixture::start(admin.clone(), "sigterm", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    assert_eq!(fx.operator.terminate(), Some(0));
    let log = fx.operator.log();
    assert!(log.contains("shutdown requested") && log.contains("controller stopped"), "{log}");
}

#[tokio::test]
async fn converged_state_costs_no_writes_and_a_new_namespace_costs_two() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "writes", &["--resync-seconds", "1"]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let first = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_entries(&admin, &first.name, "default", &["regcred"]).await;
    fx.wait_ready(&credential, "True", "Synced").await;

    let reconciles = "regcred_reconciles_total{result=\"success\"}";
    let settle = fx.operator.metric(reconciles).await;
    wait_for_metric(&fx.operator, reconciles, settle + 2.0).await;
    let before = (fx.operator.writes("secret").await, fx.operator.writes("serviceaccount").await);
    let resyncs = fx.operator.metric(reconciles).await;
    wait_for_metric(&fx.operator, reconciles, resyncs + 3.0).await;
    let after = (fx.operator.writes("secret").await, fx.operator.writes("serviceaccount").await);
    assert_eq!(after, before, "converged resyncs wrote to Secrets or ServiceAccounts");
    let status_writes = fx.operator.writes("registrycredential").await;
    let resyncs = fx.operator.metric(reconciles).await;
    wait_for_metric(&fx.operator, reconciles, resyncs + 2.0).await;
    assert_eq!(fx.operator.writes("registrycredential").await, status_writes, "an unchanged status is not rewritten");

    let second = fx.namespace(true).await;
    wait_for_entries(&admin, &second.name, "default", &["regcred"]).await;
    let settled = fx.operator.metric(reconciles).await;
    wait_for_metric(&fx.operator, reconciles, settled + 2.0).await;
    let new = (fx.operator.writes("secret").await, fx.operator.writes("serviceaccount").await);
    assert_eq!((new.0 - after.0, new.1 - after.1), (1.0, 1.0), "a new namespace costs one Secret write and one patch");
}

#[tokio::test]
async fn a_sentinel_password_appears_in_no_log_event_or_status() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "sentinel", &[]).await;
    let sentinel = "S3ntinel-P4ssw0rd-7f3a";
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{sentinel}"));
    fx.put_source("pull", &docker_config("https://registry.example.test/v2/", "ci", sentinel)).await;
    let namespace = fx.namespace(true).await;
    let conflicted = fx.namespace(true).await;
    put_docker_config(&admin, &conflicted.name, "regcred", &docker_config("x.test", "u", "p")).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical("registry.example.test", "ci", sentinel)).await;
    fx.wait_ready(&credential, "False", "SyncFailed").await;
    // An invalid source whose auth disagrees with its password, to exercise the error paths too.
    fx.put_source(
        "pull",
        &json!({"auths": {"registry.example.test": {"auth": encoded, "password": format!("{sentinel}x")}}}),
    )
    .await;
    fx.wait_ready(&credential, "False", "SourceInvalid").await;
    // The sentinel written into the registry keys, where a careless paste puts a token.
    for (key, problem) in [
        (format!("https://ci:{sentinel}@registry.example.test/v2/"), "user information"),
        (format!("registry.example.test/?access_token={sentinel}"), "query strings"),
        (format!("registry.example.test:{sentinel}"), "the port"),
    ] {
        fx.put_source("pull", &docker_config(&key, "ci", "pw")).await;
        let api: Api<RegistryCredential> = Api::all(admin.clone());
        wait_for(&api, &credential.name_any(), "the key named, redacted, in Ready", TIMEOUT, |c| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.conditions.first())
                .is_some_and(|ready| ready.message.contains(problem) && ready.message.contains("***"))
        })
        .await;
    }

    let status = serde_json::to_string(
        &Api::<RegistryCredential>::all(admin.clone()).get(&credential.name_any()).await.unwrap(),
    )
    .unwrap();
    let events = serde_json::to_string(
        &Api::<Event>::namespaced(admin.clone(), "default").list(&ListParams::default()).await.unwrap(),
    )
    .unwrap();
    let (_, metrics) = fx.operator.http_get("/metrics").await;
    let log = fx.operator.log();
    assert!(log.contains("source unusable"), "the log covered the failure path");
    // The copy carries a digest of its own payload; it must not travel anywhere else either.
    let digest: String = {
        use sha2::Digest as _;
        let payload = canonical("registry.example.test", "ci", sentinel);
        sha2::Sha256::digest(payload.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    for (place, text) in [("log", &log), ("status", &status), ("events", &events), ("metrics", &metrics)] {
        for needle in [sentinel, encoded.as_str(), digest.as_str()] {
            assert!(!text.contains(needle), "a credential value reached the operator's {place}");
        }
    }
}

#[tokio::test]
async fn probes_and_metrics_are_served() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "probes", &[]).await;
    assert_eq!(fx.operator.http_get("/healthz").await.0, 200);
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    wait_for_entries(&admin, &namespace.name, "default", &["regcred"]).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while fx.operator.http_get("/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = fx.operator.http_get("/metrics").await;
    assert_eq!(code, 200);
    for family in ["regcred_reconciles", "regcred_reconcile_duration_seconds", "regcred_api_writes", "regcred_leader"] {
        assert!(body.contains(&format!("# TYPE {family} ")), "{family} missing:\n{body}");
    }
    assert!(fx.operator.metric("regcred_reconciles_total{result=\"success\"}").await >= 1.0);
    assert!(fx.operator.metric("regcred_reconcile_duration_seconds_count").await >= 1.0);
    assert_eq!(fx.operator.metric("regcred_api_writes_total{resource=\"secret\",verb=\"create\"}").await, 1.0);
    assert_eq!(fx.operator.metric("regcred_api_writes_total{resource=\"serviceaccount\",verb=\"patch\"}").await, 1.0);
    let managed = format!("regcred_managed_namespaces{{credential=\"{}\"}}", credential.name_any());
    assert_eq!(fx.operator.metric(&managed).await, 1.0);
}
