//! Test support: clients, throwaway namespaces, watch-based waits, ServiceAccount identities.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher::{self, watch_object};
use kube::{Api, Client, Config, CustomResourceExt, Resource, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde::de::DeserializeOwned;

/// Label on every namespace the tests create, so a leftover can be traced to the tests.
pub const TEST_LABEL: &str = "regcred.dev/test";

/// An admin client for the cluster in `KUBECONFIG`, or `None` (with the reason printed) when the
/// tests may skip. With `CI=true` a missing cluster panics: CI never skips these tests.
pub async fn admin_client() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but KUBECONFIG is not set: the control plane did not start"
        );
        eprintln!("skipped: KUBECONFIG is not set; start a control plane with tests/cluster/up.sh");
        return None;
    }
    let client = Client::try_default().await.expect("a client from KUBECONFIG");
    client.apiserver_version().await.expect("the API server in KUBECONFIG answers");
    Some(client)
}

/// Evaluates to the admin client, or returns from the test when it may skip.
#[macro_export]
macro_rules! cluster_or_skip {
    () => {
        match $crate::cluster::admin_client().await {
            Some(client) => client,
            None => return,
        }
    };
}

/// A namespace for one test, deleted when dropped (also when the test panics).
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<pid>-<n>` with the test label and `labels`.
    pub async fn create(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> TestNamespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        create_namespace(client, &name, labels).await;
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's own client is bound to the runtime this blocks; a
        // new client on a short-lived runtime of its own finishes the delete.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                if let Ok(client) = Client::try_default().await {
                    let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
                }
            });
        })
        .join();
    }
}

pub async fn create_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> Namespace {
    let mut all_labels: std::collections::BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all_labels.insert(TEST_LABEL.to_owned(), "true".to_owned());
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(name.to_owned()), labels: Some(all_labels), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace created")
}

/// Waits, by watching the object, until `condition` holds for it (`None` = absent). Panics with
/// `what` and the last state seen on timeout.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Fn(Option<&K>) -> bool,
) -> Option<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut last: Option<K> = None;
    let watch = async {
        let mut stream = watch_object(api.clone(), name).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(object) => {
                    if condition(object.as_ref()) {
                        return object;
                    }
                    last = object;
                }
                // The watcher retries by itself; an error here is worth seeing but not fatal.
                Err(error) => eprintln!("wait_for({what}): watch error: {error}"),
            }
        }
        unreachable!("watch_object never ends")
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(object) => object,
        Err(_) => panic!("timed out after {timeout:?} waiting for {what}; last seen: {last:#?}"),
    }
}

/// Waits until the controller-manager has given the namespace its `default` ServiceAccount: Pods
/// are refused before it exists.
pub async fn wait_for_default_service_account(client: &Client, namespace: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(&accounts, "default", "the default ServiceAccount", Duration::from_secs(30), |a| a.is_some()).await;
}

/// Waits, by watching a list, until `condition` holds for all objects the list selects.
pub async fn wait_for_list<K>(
    api: &Api<K>,
    config: watcher::Config,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&[K]) -> bool,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let mut stream = kube::runtime::reflector(writer, watcher::watcher(api.clone(), config)).boxed();
    let wait = async {
        loop {
            let objects: Vec<K> = reader.state().iter().map(|o| (**o).clone()).collect();
            let listed = futures::FutureExt::now_or_never(reader.wait_until_ready()).is_some();
            if listed && condition(&objects) {
                return;
            }
            stream.try_next().await.expect("watch stream");
        }
    };
    if tokio::time::timeout(timeout, wait).await.is_err() {
        let objects: Vec<K> = reader.state().iter().map(|o| (**o).clone()).collect();
        panic!("timed out after {timeout:?} waiting for {what}; last seen: {objects:#?}");
    }
}

/// A client that authenticates as ServiceAccount `namespace/name` with a TokenRequest token, so
/// that what it may do is exactly what RBAC grants that account.
pub async fn service_account_client(admin: &Client, namespace: &str, name: &str) -> Client {
    let token = service_account_token(admin, namespace, name).await;
    let mut config = Config::infer().await.expect("kubeconfig");
    config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..Default::default() };
    Client::try_from(config).expect("service account client")
}

/// A TokenRequest token, valid for an hour, of ServiceAccount `namespace/name`.
pub async fn service_account_token(admin: &Client, namespace: &str, name: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
        ..Default::default()
    };
    let token = accounts.create_token_request(name, &PostParams::default(), &request).await.expect("token request");
    token.status.expect("token request status").token
}

/// Installs the generated CRD with server-side apply and waits until it is served.
pub async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = RegistryCredential::crd();
    let name = crd.name_any();
    crds.patch(&name, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&crd)).await.expect("CRD applied");
    wait_for(&crds, &name, "the CRD to be established", Duration::from_secs(60), |crd| {
        crd.and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"))
    })
    .await;
}

/// The version of the MutatingAdmissionPolicy API the cluster serves, newest first: `v1`
/// (Kubernetes 1.36+), `v1beta1` (1.34 / 1.35 where enabled), or none. The version matrix
/// (tests/matrix/run.sh) names what each cluster it starts must serve in
/// REGCRED_EXPECT_ADMISSION_API (`v1`, `v1beta1` or `none`): a cluster serving anything else fails
/// the test that asks, instead of silently testing another branch.
pub async fn admission_policy_api(client: &Client) -> Option<&'static str> {
    let mut served = None;
    for version in ["v1", "v1beta1"] {
        match client.list_api_group_resources(&format!("admissionregistration.k8s.io/{version}")).await {
            Ok(list) if list.resources.iter().any(|r| r.name == "mutatingadmissionpolicies") => {
                served = Some(version);
                break;
            }
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => panic!("discovery of admissionregistration.k8s.io/{version}: {error}"),
        }
    }
    if let Ok(expected) = std::env::var("REGCRED_EXPECT_ADMISSION_API") {
        assert_eq!(served.unwrap_or("none"), expected, "the MutatingAdmissionPolicy API this cluster serves");
    }
    served
}

/// MutatingAdmissionPolicy or MutatingAdmissionPolicyBinding (`kind`) in the version `version`.
pub fn admission_api(client: &Client, version: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", version, kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}
