//! Credentials that expire, as their source states it: shown in status and as a metric, warned of
//! before, `Ready=False` (`Expired`) once lapsed with the copies left in place, and Ready again
//! when the source is refreshed. External Secrets' ECR generator output is a source as it is.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::wait_for;
use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;

fn condition(credential: &RegistryCredential, type_: &str) -> Option<(String, String)> {
    let found = credential.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((found.status.clone(), found.reason.clone()))
}

fn pair(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.to_owned(), reason.to_owned()))
}

/// Whole seconds: what RFC 3339 in status and the metric keep.
fn in_seconds(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + seconds).unwrap()
}

#[tokio::test]
async fn an_expiring_credential_is_warned_of_then_expired_and_its_copies_stay() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "expiry", &["--expiry-warning-seconds=60"]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let sources: Api<Secret> = Api::namespaced(admin.clone(), &fx.source.name);
    let annotate = |at: Timestamp| {
        let sources = sources.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"regcred.dev/expires-at": at.to_string()}}});
            sources.patch("pull", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        }
    };
    let expires = in_seconds(8);
    annotate(expires).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let expected = canonical("registry.example.test", "ci", "pw");
    wait_for_copy(&admin, &namespace.name, "regcred", &expected).await;

    // Within the warning window: still Ready, Expiring=True, a Warning Event, the metric.
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let name = credential.name_any();
    let warned = wait_for(&api, &name, "Ready=True, Expiring=True (ExpiresSoon)", TIMEOUT, |c| {
        c.is_some_and(|c| {
            condition(c, "Expiring") == pair("True", "ExpiresSoon") && condition(c, "Ready") == pair("True", "Synced")
        })
    })
    .await
    .unwrap();
    assert_eq!(warned.status.as_ref().unwrap().expires_at.as_ref().map(|t| t.0), Some(expires));
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let event = wait_for_event(&events, &name, "ExpiresSoon").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let sample = format!("regcred_credential_expiry_timestamp_seconds{{credential=\"{name}\"}}");
    assert_eq!(fx.operator.metric(&sample).await, expires.as_second() as f64);

    // Lapsed: Ready=False (Expired) with no change in the source, and the copy untouched.
    let lapsed = fx.wait_ready(&credential, "False", "Expired").await;
    assert!(Timestamp::now() >= expires, "Expired before the stated expiry");
    assert_eq!(condition(&lapsed, "Stalled"), pair("True", "Expired"));
    let copy = Api::<Secret>::namespaced(admin.clone(), &namespace.name).get("regcred").await.unwrap();
    assert_eq!(payload(&copy).unwrap(), expected, "an expired credential never removes the copy");
    wait_for_event(&events, &name, "Expired").await;

    // Refreshed: the new expiry is far away, the credential Ready again.
    let refreshed = in_seconds(7200);
    annotate(refreshed).await;
    let ready = fx.wait_ready(&credential, "True", "Synced").await;
    assert_eq!(condition(&ready, "Expiring"), pair("False", "ExpiryAhead"));
    assert_eq!(ready.status.unwrap().expires_at.map(|t| t.0), Some(refreshed));
    fx.delete(&credential).await;
    assert_eq!(fx.operator.metric(&sample).await, 0.0, "the series of a deleted credential goes");
}

#[tokio::test]
async fn the_ecr_generators_secret_is_a_source_as_it_is() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "ecr-generator", &[]).await;
    let expires = in_seconds(12 * 3600);
    // What External Secrets' ECRAuthorizationToken generator writes: no docker config, no template.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pull"},
        "type": "Opaque",
        "stringData": {
            "username": "AWS",
            "password": "ecr-token",
            "proxy_endpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "expires_at": expires.as_second().to_string(),
        },
    }))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), &fx.source.name).create(&Default::default(), &secret).await.unwrap();
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    let registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    wait_for_copy(&admin, &namespace.name, "regcred", &canonical(registry, "AWS", "ecr-token")).await;
    let ready = fx.wait_ready(&credential, "True", "Synced").await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.registries, vec![registry]);
    assert_eq!(status.expires_at.as_ref().map(|t| t.0), Some(expires));
    assert_eq!(condition(&ready, "Expiring"), pair("False", "ExpiryAhead"));
}
