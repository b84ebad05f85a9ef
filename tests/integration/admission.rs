//! The shipped MutatingAdmissionPolicy, as the API server runs it, with no operator running: which
//! Pods get the copy's name at creation, and that its selection is the controller's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde::Deserialize;
use serde_json::{Value, json};

use regcred_test_support::cluster::{TestNamespace, admission_api, admission_policy_api, create_namespace};
use regcred_test_support::cluster_or_skip;

/// The namespaces the shipped policy treats like the system namespaces (config/admission).
const TRUSTED: &str = "regcred-system";

/// The version of the policy API this cluster serves; the tests of this file need one.
async fn served_version(client: &Client) -> &'static str {
    admission_policy_api(client).await.expect("the cluster serves no MutatingAdmissionPolicy API")
}

/// The documents of a file in config/admission, in API version `version` (the shipped objects
/// are valid in v1 and v1beta1 alike: config/admission/v1beta1 changes nothing else).
fn shipped(file: &str, version: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/admission").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut documents: Vec<Value> =
        serde_norway::Deserializer::from_str(&text).map(|document| Value::deserialize(document).unwrap()).collect();
    for document in &mut documents {
        document["apiVersion"] = json!(format!("admissionregistration.k8s.io/{version}"));
    }
    documents
}

/// Installs the CRD and the shipped policy and binding, as an admin applying config/ would.
pub(crate) async fn install_policy(admin: &Client) {
    regcred_test_support::operator::install(admin).await;
    let version = served_version(admin).await;
    for (file, kind) in [
        ("mutating_admission_policy.yaml", "MutatingAdmissionPolicy"),
        ("mutating_admission_policy_binding.yaml", "MutatingAdmissionPolicyBinding"),
    ] {
        let api = admission_api(admin, version, kind);
        for document in shipped(file, version) {
            let name = document["metadata"]["name"].as_str().unwrap().to_owned();
            api.patch(&name, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&document)).await.unwrap();
        }
    }
}

/// A credential no test operator manages: only the policy acts on it.
pub(crate) async fn credential(admin: &Client, name: &str, spec: Value) -> RegistryCredential {
    let mut full = json!({"source": {"secretRef": {"namespace": TRUSTED, "name": "pull"}}});
    regcred_test_support::fixture::merge(&mut full, spec);
    let credential: RegistryCredential = serde_json::from_value(json!({
        "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
        "metadata": {"name": name}, "spec": full,
    }))
    .unwrap();
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    api.patch(name, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&credential)).await.unwrap()
}

/// What the API server would store for this Pod (a server-side dry run: admission runs, nothing
/// is stored), as the names in its `imagePullSecrets`.
async fn admitted(admin: &Client, namespace: &str, service_account: Option<&str>, own: &[&str]) -> Vec<String> {
    let mut spec = json!({"containers": [{"name": "app", "image": "registry.example.test/app:1"}]});
    if let Some(account) = service_account {
        spec["serviceAccountName"] = json!(account);
    }
    if !own.is_empty() {
        spec["imagePullSecrets"] = json!(own.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
    }
    let pod: Pod = serde_json::from_value(json!({"metadata": {"generateName": "probe-"}, "spec": spec})).unwrap();
    let api: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let params = PostParams { dry_run: true, ..PostParams::default() };
    let created = api.create(&params, &pod).await.expect("the Pod is admitted");
    created.spec.unwrap().image_pull_secrets.into_iter().flatten().map(|r| r.name).collect()
}

/// The shipped policy installed, and a namespace where a credential of its own (named as the
/// returned run, with the Secret name alike) is already injected.
async fn injecting_namespace(admin: &Client, kind: &str) -> (String, TestNamespace) {
    install_policy(admin).await;
    let run = format!("adm-{kind}-{}", std::process::id());
    let namespace = TestNamespace::create(admin, &format!("adm-{kind}"), &[("regcred.dev/admission", &run)]).await;
    credential(
        admin,
        &run,
        json!({"secretName": run, "namespaceSelector": {"matchLabels": {"regcred.dev/admission": run}}}),
    )
    .await;
    until_injected(admin, &namespace.name, &run).await;
    (run, namespace)
}

/// Waits until the API server's policy sees the credential: a Pod in `namespace` gets `name`.
pub(crate) async fn until_injected(admin: &Client, namespace: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !admitted(admin, namespace, None, &[]).await.iter().any(|n| n == name) {
        assert!(tokio::time::Instant::now() < deadline, "the policy never injected {name} in {namespace}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn until_not_injected(admin: &Client, namespace: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while admitted(admin, namespace, None, &[]).await.iter().any(|n| n == name) {
        assert!(tokio::time::Instant::now() < deadline, "the policy still injects {name} in {namespace}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn new_pods_get_the_copy_appended_and_nothing_else_changes() {
    let admin = cluster_or_skip!();
    install_policy(&admin).await;
    let run = format!("adm-{}", std::process::id());
    let selected = TestNamespace::create(&admin, "adm-in", &[("regcred.dev/admission", &run)]).await;
    let sandbox = TestNamespace::create(&admin, "adm-sandbox", &[("regcred.dev/admission", &run)]).await;
    let other = TestNamespace::create(&admin, "adm-out", &[]).await;
    let name = format!("inject-{run}");
    credential(
        &admin,
        &name,
        json!({"secretName": name, "namespaceSelector": {"matchLabels": {"regcred.dev/admission": run}},
               "namespaces": {"exclude": ["adm-sandbox-*"]}, "serviceAccounts": {"names": ["default"]}}),
    )
    .await;
    until_injected(&admin, &selected.name, &name).await;

    assert_eq!(admitted(&admin, &selected.name, None, &[]).await, vec![name.clone()]);
    assert_eq!(admitted(&admin, &selected.name, Some("default"), &[]).await, vec![name.clone()]);
    assert_eq!(
        admitted(&admin, &selected.name, None, &["chart-own", "other"]).await,
        vec!["chart-own".to_owned(), "other".to_owned(), name.clone()],
        "appended after the Pod's own, which stay in order"
    );
    assert_eq!(
        admitted(&admin, &selected.name, None, &[&name, "own"]).await,
        vec![name.clone(), "own".to_owned()],
        "already listed: unchanged"
    );
    assert!(admitted(&admin, &other.name, None, &[]).await.is_empty(), "unselected namespace");
    assert!(admitted(&admin, &sandbox.name, None, &[]).await.is_empty(), "excluded namespace");
    regcred_test_support::fixture::create_account(&admin, &selected.name, "builder", &[]).await;
    assert!(admitted(&admin, &selected.name, Some("builder"), &[]).await.is_empty(), "unselected ServiceAccount");

    // Opt-out, and back.
    credential(
        &admin,
        &name,
        json!({"secretName": name, "injectIntoPods": false,
               "namespaceSelector": {"matchLabels": {"regcred.dev/admission": run}}}),
    )
    .await;
    until_not_injected(&admin, &selected.name, &name).await;
    credential(
        &admin,
        &name,
        json!({"secretName": name, "namespaceSelector": {"matchLabels": {"regcred.dev/admission": run}}}),
    )
    .await;
    until_injected(&admin, &selected.name, &name).await;

    // Deleting the credential stops injection.
    Api::<RegistryCredential>::all(admin.clone()).delete(&name, &DeleteParams::default()).await.unwrap();
    until_not_injected(&admin, &selected.name, &name).await;
}

#[tokio::test]
async fn a_kubelets_mirror_pod_is_admitted_untouched() {
    let admin = cluster_or_skip!();
    let (run, namespace) = injecting_namespace(&admin, "mirror").await;

    // As a kubelet creates the mirror of its static Pod: no ServiceAccount, the mirror annotation,
    // bound to its node.
    // The API server's ServiceAccount plugin refuses a mirror Pod that names any Secret.
    let mirror: Pod = serde_json::from_value(json!({
        "metadata": {"name": "static-web", "annotations": {"kubernetes.io/config.mirror": "0123abcd",
                                                           "kubernetes.io/config.source": "file"}},
        "spec": {"nodeName": "node-of-the-static-pod", "containers": [{"name": "web", "image": "registry.example.test/web:1"}]},
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(admin.clone(), &namespace.name);
    let params = PostParams { dry_run: true, ..PostParams::default() };
    let created = api.create(&params, &mirror).await.expect("the mirror Pod is admitted");
    assert_eq!(created.spec.unwrap().image_pull_secrets, None, "nothing appended to a mirror Pod");
    let _ = Api::<RegistryCredential>::all(admin.clone()).delete(&run, &DeleteParams::default()).await;
}

/// Creates a Pod under the namespace's default ServiceAccount (a server-side dry run): the
/// API server's answer when it refuses it.
async fn refusal(admin: &Client, namespace: &str) -> Option<String> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "probe-"},
        "spec": {"containers": [{"name": "app", "image": "registry.example.test/app:1"}]},
    }))
    .unwrap();
    let params = PostParams { dry_run: true, ..PostParams::default() };
    Api::<Pod>::namespaced(admin.clone(), namespace).create(&params, &pod).await.err().map(|e| e.to_string())
}

#[tokio::test]
async fn a_namespace_labelled_out_of_injection_admits_pods_its_enforcing_account_would_refuse() {
    let admin = cluster_or_skip!();
    let (run, namespace) = injecting_namespace(&admin, "enforce").await;
    // The ServiceAccount admission plugin lets such a ServiceAccount's Pods list only the pull
    // secrets it lists itself; it lists none yet (no operator runs here).
    let enforcing = json!({"metadata": {"annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}}});
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace.name);
    accounts.patch("default", &PatchParams::default(), &Patch::Merge(&enforcing)).await.unwrap();
    // The plugin reads ServiceAccounts from its informer: the annotation reaches it moments later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        if let Some(refused) = refusal(&admin, &namespace.name).await {
            break refused;
        }
        assert!(tokio::time::Instant::now() < deadline, "the appended name never got the Pod refused");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(refused.contains(&run), "refused for the appended name: {refused}");

    let opt_out = json!({"metadata": {"labels": {"regcred.dev/pod-injection": "disabled"}}});
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces.patch(&namespace.name, &PatchParams::default(), &Patch::Merge(&opt_out)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(refused) = refusal(&admin, &namespace.name).await {
        assert!(tokio::time::Instant::now() < deadline, "still refused after opting out: {refused}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(admitted(&admin, &namespace.name, None, &[]).await, Vec::<String>::new(), "nothing appended");
    let _ = Api::<RegistryCredential>::all(admin.clone()).delete(&run, &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_policy_that_cannot_evaluate_never_blocks_a_pod() {
    let admin = cluster_or_skip!();
    let (run, namespace) = injecting_namespace(&admin, "broken").await;

    // The shipped policy with its mutation failing at run time, bound to this test's credential only.
    let version = served_version(&admin).await;
    let mut policy = shipped("mutating_admission_policy.yaml", version).remove(0);
    policy["metadata"]["name"] = json!(run);
    policy["spec"]["mutations"][0]["jsonPatch"]["expression"] =
        json!("[JSONPatch{op: 'add', path: '/spec/x', value: 1 / 0}]");
    let mut binding = shipped("mutating_admission_policy_binding.yaml", version).remove(0);
    binding["metadata"]["name"] = json!(run);
    binding["spec"]["policyName"] = json!(run);
    binding["spec"]["paramRef"]["selector"] = json!({"matchLabels": {"regcred.dev/broken": run}});
    let policies = admission_api(&admin, version, "MutatingAdmissionPolicy");
    let bindings = admission_api(&admin, version, "MutatingAdmissionPolicyBinding");
    policies.patch(&run, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&policy)).await.unwrap();
    bindings.patch(&run, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&binding)).await.unwrap();
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let label = json!({"metadata": {"labels": {"regcred.dev/broken": run}}});
    api.patch(&run, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();

    for _ in 0..20 {
        // Admitted every time, and the working policy still injects beside the broken one.
        assert_eq!(admitted(&admin, &namespace.name, None, &[]).await, vec![run.clone()]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = bindings.delete(&run, &DeleteParams::default()).await;
    let _ = policies.delete(&run, &DeleteParams::default()).await;
    let _ = api.delete(&run, &DeleteParams::default()).await;
}

/// A tiny deterministic generator: the same seed gives the same cases in every run.
struct Cases(u64);

impl Cases {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next(from.len())]
    }
}

#[tokio::test]
async fn the_policy_selects_exactly_what_the_controller_selects() {
    let admin = cluster_or_skip!();
    install_policy(&admin).await;
    let run = format!("{}", std::process::id());
    let mut cases = Cases(0x5eed_2026);
    let words = ["pay", "pay-dev", "search", "pay-sandbox", "ops"];
    let tiers = ["prod", "dev", "sandbox"];
    // Namespaces with generated names and labels; every credential also requires `run`.
    let mut namespaces: Vec<(TestNamespace, BTreeMap<String, String>)> = Vec::new();
    for i in 0..8 {
        let name = format!("sel-{}-{}-{i}", cases.pick(&words), run);
        let mut labels = vec![("regcred.dev/selection", run.as_str())];
        let tier = cases.pick(&tiers);
        if cases.next(3) > 0 {
            labels.push(("tier", tier));
        }
        // Opted out of injection, or a near miss of that label that must not count; the first
        // namespace keeps injection for the marker below.
        match (i, cases.next(4)) {
            (0, _) => {}
            (_, 0) => labels.push(("regcred.dev/pod-injection", "disabled")),
            (_, 1) => labels.push(("regcred.dev/pod-injection", "Disabled")),
            _ => {}
        }
        let namespace = create_namespace(&admin, &name, &labels).await;
        for account in ["builder", "other"] {
            regcred_test_support::fixture::create_account(&admin, &name, account, &[]).await;
        }
        namespaces.push((TestNamespace { name }, namespace.labels().clone()));
    }
    let includes = ["*", "sel-pay*", "sel-pay-*", "sel-?ps-*", "sel-search-*", "sel-*-dev-*"];
    let excludes = ["sel-pay-sandbox-*", "*-3", "sel-ops-*", "nothing"];
    let expressions = [
        json!(null),
        json!([{"key": "tier", "operator": "In", "values": ["prod", "dev"]}]),
        json!([{"key": "tier", "operator": "NotIn", "values": ["sandbox"]}]),
        json!([{"key": "tier", "operator": "Exists"}]),
        json!([{"key": "tier", "operator": "DoesNotExist"}]),
    ];
    let accounts = [["default"].as_slice(), &["*"], &["builder"], &["default", "builder"]];
    let mut credentials = Vec::new();
    for i in 0..10 {
        let name = format!("sel-{run}-{i}");
        let mut selector = json!({"matchLabels": {"regcred.dev/selection": run}});
        let expression = &expressions[cases.next(expressions.len())];
        if !expression.is_null() {
            selector["matchExpressions"] = expression.clone();
        }
        let mut spec = json!({
            "secretName": name,
            "namespaceSelector": selector,
            "namespaces": {"include": [cases.pick(&includes)]},
            "serviceAccounts": {"names": accounts[cases.next(accounts.len())]},
        });
        if cases.next(2) == 0 {
            spec["namespaces"]["exclude"] = json!([cases.pick(&excludes)]);
        }
        credentials.push(credential(&admin, &name, spec).await);
    }
    // Events reach the policy in order: once a credential made last injects, all the others are seen.
    let marker = format!("sel-{run}-marker");
    let first = &namespaces[0].0.name;
    credential(&admin, &marker, json!({"secretName": marker, "namespaces": {"include": [first]}})).await;
    until_injected(&admin, first, &marker).await;

    let trusted = vec![TRUSTED.to_owned()];
    let (mut compared, mut injected) = (0, 0);
    for (namespace, labels) in &namespaces {
        for account in ["default", "builder", "other"] {
            let got: Vec<String> = admitted(&admin, &namespace.name, Some(account), &[])
                .await
                .into_iter()
                .filter(|n| n != &marker)
                .collect();
            let mut expected: Vec<String> = credentials
                .iter()
                .filter(|c| c.spec.selects_pods_of(&namespace.name, labels, account, &trusted))
                .filter(|c| c.spec.injects_into(labels))
                .map(|c| c.spec.secret_name.clone())
                .collect();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            expected.sort();
            assert_eq!(got_sorted, expected, "namespace {} {labels:?}, ServiceAccount {account}", namespace.name);
            compared += 1;
            injected += expected.len();
        }
    }
    let pairs = compared * credentials.len();
    println!(
        "policy and controller agree on {compared} Pods x {} credentials: {injected} of {pairs} inject",
        credentials.len()
    );
    assert!(injected > 0 && injected < pairs, "the generated cases select some Pods and not others");
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    for credential in credentials.iter().map(|c| c.name_any()).chain([marker]) {
        let _ = api.delete(&credential, &DeleteParams::default()).await;
    }
}
