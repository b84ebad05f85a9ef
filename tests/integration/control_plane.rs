//! The control plane is real: the behaviours the operator relies on happen here as in a cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::{TestNamespace, install_crd, service_account_client, wait_for};
use regcred_test_support::cluster_or_skip;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn default_service_account(client: &kube::Client, namespace: &str) -> ServiceAccount {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(&accounts, "default", "the default ServiceAccount", TIMEOUT, |sa| sa.is_some()).await.unwrap()
}

#[tokio::test]
async fn new_namespace_gets_its_default_service_account() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "cp-default-sa", &[]).await;
    let account = default_service_account(&client, &namespace.name).await;
    assert_eq!(account.namespace().as_deref(), Some(namespace.name.as_str()));
}

fn api_error(error: kube::Error) -> Status {
    match error {
        kube::Error::Api(response) => *response,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn crd_installs_and_the_api_server_rejects_invalid_specs() {
    let client = cluster_or_skip!();
    install_crd(&client).await;
    // Untyped, so that what the Rust type cannot even express still reaches the server.
    let credentials: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<RegistryCredential>(&()));
    let invalid = [
        (json!({"source": {}}), "exactly one source must be set"),
        (
            json!({"source": {"secretRef": {"namespace": "regcred-system", "name": "s"}}, "secretName": "Reg_Cred"}),
            "spec.secretName",
        ),
        (json!({"source": {"secretRef": {"namespace": "Bad Ns", "name": "s"}}}), "spec.source.secretRef.namespace"),
        (
            json!({"source": {"secretRef": {"namespace": "ns", "name": "s"}}, "namespaces": {"include": ["team/*"]}}),
            "spec.namespaces.include[0]",
        ),
        (
            json!({"source": {"secretRef": {"namespace": "ns", "name": "s"}}, "onConflict": "Overwrite"}),
            "spec.onConflict",
        ),
    ];
    for (index, (spec, expected)) in invalid.into_iter().enumerate() {
        let object = json!({
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": format!("invalid-{}-{index}", std::process::id())}, "spec": spec,
        });
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        let error = api_error(credentials.create(&PostParams::default(), &object).await.expect_err("rejected"));
        assert_eq!(error.code, 422, "{error:?}");
        assert!(error.message.contains(expected), "case {index}: {:?} does not name {expected:?}", error.message);
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.internal.corp/team/app:1.0"}]},
    }))
    .unwrap()
}

fn pull_secret_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

#[tokio::test]
async fn service_account_admission_copies_pull_secrets_only_into_later_pods() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "cp-admission", &[]).await;
    default_service_account(&client, &namespace.name).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace.name);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace.name);

    let before = pods.create(&PostParams::default(), &pod("before")).await.unwrap();
    let patch = json!({"imagePullSecrets": [{"name": "regcred"}]});
    accounts.patch("default", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    // The ServiceAccount admission plugin reads ServiceAccounts from the API server's own cache,
    // which may trail the patch by a moment: a Pod created in that moment gets none either.
    let mut after = pods.create(&PostParams::default(), &pod("after-0")).await.unwrap();
    for attempt in 1..50 {
        if !pull_secret_names(&after).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = pods.create(&PostParams::default(), &pod(&format!("after-{attempt}"))).await.unwrap();
    }

    assert_eq!(pull_secret_names(&before), Vec::<String>::new(), "a Pod created before the patch keeps none");
    assert_eq!(pull_secret_names(&after), vec!["regcred"], "admission copies the ServiceAccount's entries");
    let stored = pods.get("before").await.unwrap();
    assert!(pull_secret_names(&stored).is_empty(), "nothing updates an existing Pod: the race is real");
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "cp-delete", &[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace.name);
    let content =
        ConfigMap { metadata: ObjectMeta { name: Some("content".into()), ..Default::default() }, ..Default::default() };
    config_maps.create(&PostParams::default(), &content).await.unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&namespace.name, &DeleteParams::default()).await.unwrap();
    wait_for(&namespaces, &namespace.name, "the namespace to be gone", TIMEOUT, |ns| ns.is_none()).await;
}

#[tokio::test]
async fn object_owned_by_a_deleted_owner_is_collected() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "cp-gc", &[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace.name);
    let owner =
        ConfigMap { metadata: ObjectMeta { name: Some("owner".into()), ..Default::default() }, ..Default::default() };
    let owner = config_maps.create(&PostParams::default(), &owner).await.unwrap();
    let owned: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owned", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap(),
    }]}}))
    .unwrap();
    config_maps.create(&PostParams::default(), &owned).await.unwrap();

    config_maps.delete("owner", &DeleteParams::background()).await.unwrap();
    wait_for(&config_maps, "owned", "the garbage collector to delete the owned ConfigMap", TIMEOUT, |cm| cm.is_none())
        .await;
}

#[tokio::test]
async fn service_account_token_is_limited_to_its_role() {
    let client = cluster_or_skip!();
    let namespace = TestNamespace::create(&client, "cp-rbac", &[]).await;
    let ns = namespace.name.as_str();
    let account = ServiceAccount {
        metadata: ObjectMeta { name: Some("limited".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns).create(&PostParams::default(), &account).await.unwrap();
    let role = Role {
        metadata: ObjectMeta { name: Some("read-config-maps".into()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), ns).create(&PostParams::default(), &role).await.unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some("limited".into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-config-maps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "limited".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns).create(&PostParams::default(), &binding).await.unwrap();

    let limited = service_account_client(&client, ns, "limited").await;
    let granted = Api::<ConfigMap>::namespaced(limited.clone(), ns).list(&ListParams::default()).await;
    assert!(granted.is_ok(), "the Role grants listing ConfigMaps: {granted:?}");
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(limited, ns);
    let denied = api_error(secrets.list(&ListParams::default()).await.expect_err("secrets are not granted"));
    assert_eq!(denied.code, 403, "{denied:?}");
}
