//! The install manifests: `kustomize build config/default` and the Helm chart, rendered by the
//! tools built from their Go modules (tests/cluster/build-tools.sh), checked for what an
//! installation relies on, and applied server-side to the real control plane.
//!
//! The control plane has no scheduler and no deployment controller: the operator's Pods never
//! run here. What is tested is that the API server accepts every object as rendered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};

use regcred_test_support::cluster::{admission_api, admission_policy_api, install_crd};
use regcred_test_support::cluster_or_skip;

const NAMESPACE: &str = "regcred-system";
const NAME: &str = "regcred-operator";
const IMAGE: &str = "ghcr.io/regcred/regcred-operator:0.2.0";
const FIELD_MANAGER: &str = "regcred-packaging-tests";
/// The Helm render applied to the cluster uses its own release and namespace, so that it never
/// rewrites the RBAC objects that the operator tests running at the same time rely on.
const HELM_TEST_RELEASE: &str = "regcred-pkgtest";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory with kustomize, helm and kubectl: `REGCRED_TOOLS_BIN` (tests/run.sh sets it),
/// else what tests/cluster/build-tools.sh prints (it builds them on first use, cached after).
/// `None` (with the reason printed) when the tests may skip; with `CI=true` they never do.
fn tools() -> Option<&'static Path> {
    static TOOLS: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("REGCRED_TOOLS_BIN").filter(|d| !d.is_empty()) {
                return Some(PathBuf::from(dir));
            }
            let script = repo().join("tests/cluster/build-tools.sh");
            let output = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output();
            match output {
                Ok(output) if output.status.success() => {
                    Some(PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim()))
                }
                other => {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "CI=true but {} failed ({other:?}): kustomize and helm are required",
                        script.display()
                    );
                    eprintln!("skipped: {} failed (needs Go); see its output above", script.display());
                    None
                }
            }
        })
        .as_deref()
}

macro_rules! tools_or_skip {
    () => {
        match tools() {
            Some(dir) => dir,
            None => return,
        }
    };
}

/// Runs a tool from the tools directory in the repository root; its stdout.
fn run_tool(tools: &Path, tool: &str, args: &[&str]) -> String {
    let output = Command::new(tools.join(tool))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        output.status.success(),
        "{tool} {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Every non-empty document of a multi-document YAML stream.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

fn read_documents(path: &str) -> Vec<Value> {
    documents(&std::fs::read_to_string(repo().join(path)).unwrap())
}

fn kustomize_default(tools: &Path) -> Vec<Value> {
    documents(&run_tool(tools, "kustomize", &["build", "config/default"]))
}

/// What `helm template` is told the cluster serves, as `helm install` learns it from a
/// Kubernetes 1.36 cluster: the admission policy's v1 API.
const SERVES_V1: [&str; 2] = ["--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"];

fn helm_template(tools: &Path, release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    helm_template_for(tools, release, namespace, &[&SERVES_V1[..], extra].concat())
}

/// `helm template` with only `extra` telling it what the cluster serves.
fn helm_template_for(tools: &Path, release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, "charts/regcred-operator", "--namespace", namespace, "--include-crds"];
    args.extend_from_slice(extra);
    documents(&run_tool(tools, "helm", &args))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:#?}", identities(objects)))
}

/// (kind, namespace, name) of every object.
fn identities(objects: &[Value]) -> BTreeSet<(String, String, String)> {
    objects
        .iter()
        .map(|o| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&o["kind"]), text(&o["metadata"]["namespace"]), text(&o["metadata"]["name"]))
        })
        .collect()
}

/// `value` with every number as a float, so that `0` and `0.0` compare equal.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers_as_floats(v))).collect()),
        other => other.clone(),
    }
}

/// What the operator's Deployment must say, however it was rendered.
fn assert_operator_deployment(deployment: &Value, origin: &str) {
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2, "{origin}: two replicas, one leader");
    let selector = &spec["selector"]["matchLabels"];
    assert_eq!(selector, &json!({"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}), "{origin}");
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&spec["template"]["metadata"]["labels"][key], value, "{origin}: the selector selects the Pods");
    }

    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], NAME, "{origin}");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30, "{origin}");
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true, "{origin}");
    assert_eq!(pod_security["runAsUser"], 65532, "{origin}");
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault", "{origin}");

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{origin}");
    let container = &containers[0];
    assert_eq!(container["image"], IMAGE, "{origin}");
    assert_eq!(container["args"], json!(["run", "--log-format", "json"]), "{origin}");
    let env = container["env"].as_array().unwrap();
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let var = env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{origin}: no {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{origin}: {name} from the downward API");
    }
    assert_eq!(container["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]), "{origin}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"], json!({"path": path, "port": "http"}), "{origin}: {probe}");
    }
    let resources = &container["resources"];
    for quantity in ["/requests/cpu", "/requests/memory", "/limits/cpu", "/limits/memory"] {
        assert!(resources.pointer(quantity).is_some_and(Value::is_string), "{origin}: resources{quantity}");
    }
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false, "{origin}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{origin}");
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{origin}");
}

/// The whole install, however it was rendered (release regcred-operator in regcred-system).
fn assert_operator_install(objects: &[Value], origin: &str) {
    let deployment = find(objects, "Deployment", NAME);
    assert_operator_deployment(deployment, origin);

    let budget = find(objects, "PodDisruptionBudget", NAME);
    assert_eq!(budget["spec"]["minAvailable"], 1, "{origin}");
    assert_eq!(budget["spec"]["selector"], deployment["spec"]["selector"], "{origin}: the PDB covers the Deployment");
    let service = find(objects, "Service", "regcred-operator-metrics");
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"], "{origin}");

    // Every namespaced object lands in the operator's namespace.
    for object in objects {
        let kind = object["kind"].as_str().unwrap();
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        ];
        if !cluster_scoped.contains(&kind) {
            assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{origin}: {kind} {}", object["metadata"]["name"]);
        }
    }

    // The CRD is the generated one. kustomize re-serializes it (`0.0` becomes `0`): compare the
    // content, numbers by value.
    let generated = &read_documents("crds/registrycredentials.regcred.dev.yaml")[0];
    let crd = find(objects, "CustomResourceDefinition", "registrycredentials.regcred.dev");
    assert!(
        numbers_as_floats(&crd["spec"]) == numbers_as_floats(&generated["spec"]),
        "{origin}: the CRD differs from crds/registrycredentials.regcred.dev.yaml"
    );

    // RBAC: exactly config/rbac's rules, bound to the ServiceAccount the Deployment runs as.
    let rbac: Vec<Value> = ["cluster_role.yaml", "leader_election_role.yaml"]
        .iter()
        .flat_map(|file| read_documents(&format!("config/rbac/{file}")))
        .collect();
    let subject = json!([{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]);
    find(objects, "ServiceAccount", NAME);
    for (kind, binding, name) in
        [("ClusterRole", "ClusterRoleBinding", NAME), ("Role", "RoleBinding", "regcred-operator-leader-election")]
    {
        assert_eq!(find(objects, kind, name)["rules"], find(&rbac, kind, name)["rules"], "{origin}: {kind} rules");
        let bound = find(objects, binding, name);
        assert_eq!(bound["subjects"], subject, "{origin}: {binding}");
        assert_eq!(bound["roleRef"]["name"], name, "{origin}: {binding}");
    }
}

#[test]
fn kustomize_default_renders_the_operator_install() {
    let tools = tools_or_skip!();
    let objects = kustomize_default(tools);
    assert_operator_install(&objects, "kustomize build config/default");
    let namespace = find(&objects, "Namespace", NAMESPACE);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "the operator's namespace enforces the restricted Pod Security Standard its Pods meet"
    );
    // The samples are their own kustomization, not part of the install.
    let samples = documents(&run_tool(tools, "kustomize", &["build", "config/samples"]));
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["kind"], "RegistryCredential");
    assert!(!identities(&objects).iter().any(|(kind, _, _)| kind == "RegistryCredential"));
}

#[test]
fn helm_chart_renders_the_same_install_as_kustomize() {
    let tools = tools_or_skip!();
    let chart = helm_template(tools, NAME, NAMESPACE, &[]);
    assert_operator_install(&chart, "helm template");
    let kustomized = kustomize_default(tools);

    // The same objects, except the Namespace: `helm install --create-namespace` makes that one.
    let mut expected = identities(&kustomized);
    expected.remove(&("Namespace".to_owned(), String::new(), NAMESPACE.to_owned()));
    assert_eq!(identities(&chart), expected);
    // With the same content where it matters; labels differ (Helm's own).
    for (kind, name, pointer) in [
        ("Deployment", NAME, "/spec/template/spec"),
        ("Deployment", NAME, "/spec/selector"),
        ("PodDisruptionBudget", NAME, "/spec"),
        ("Service", "regcred-operator-metrics", "/spec"),
    ] {
        assert_eq!(
            find(&chart, kind, name).pointer(pointer),
            find(&kustomized, kind, name).pointer(pointer),
            "{kind}/{name} {pointer}: the chart and config/default differ"
        );
    }
}

#[test]
fn the_kustomize_overlays_differ_from_config_default_only_in_the_policy() {
    let tools = tools_or_skip!();
    let is_policy = |o: &Value| o["kind"].as_str().is_some_and(|k| k.starts_with("MutatingAdmissionPolicy"));
    let default = kustomize_default(tools);
    assert_eq!(default.iter().filter(|o| is_policy(o)).count(), 2, "config/default has the policy and binding");
    let operator: Vec<Value> = default.iter().filter(|o| !is_policy(o)).cloned().collect();

    let without = documents(&run_tool(tools, "kustomize", &["build", "config/overlays/without-admission-policy"]));
    assert_eq!(without, operator, "without-admission-policy: config/default less the policy");

    let v1beta1 = documents(&run_tool(tools, "kustomize", &["build", "config/overlays/admission-policy-v1beta1"]));
    let mut expected = default.clone();
    for object in expected.iter_mut().filter(|o| is_policy(o)) {
        assert_eq!(object["apiVersion"], "admissionregistration.k8s.io/v1");
        object["apiVersion"] = json!("admissionregistration.k8s.io/v1beta1");
    }
    assert_eq!(v1beta1, expected, "admission-policy-v1beta1: config/default with the policy in v1beta1");
}

#[test]
fn the_chart_renders_the_admission_policy_with_the_api_the_cluster_serves() {
    let tools = tools_or_skip!();
    let policy_versions = |extra: &[&str]| -> Vec<String> {
        let chart = helm_template_for(tools, NAME, NAMESPACE, extra);
        let admission = chart.iter().filter(|o| o["kind"].as_str().is_some_and(|k| k.starts_with("MutatingAdmission")));
        admission.map(|o| format!("{} {}", o["kind"].as_str().unwrap(), o["apiVersion"].as_str().unwrap())).collect()
    };
    let v1 = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";
    let v1beta1 = "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy";
    let both = |version: &str| {
        vec![
            format!("MutatingAdmissionPolicy admissionregistration.k8s.io/{version}"),
            format!("MutatingAdmissionPolicyBinding admissionregistration.k8s.io/{version}"),
        ]
    };
    // Kubernetes 1.36+ (1.37 serves only v1).
    assert_eq!(policy_versions(&["--api-versions", v1]), both("v1"));
    assert_eq!(policy_versions(&["--api-versions", v1, "--api-versions", v1beta1]), both("v1"));
    // 1.34 / 1.35 with the API enabled.
    assert_eq!(policy_versions(&["--api-versions", v1beta1]), both("v1beta1"));
    // Neither served (1.34 / 1.35 as they ship): left out, so the install does not fail on it.
    assert_eq!(policy_versions(&[]), Vec::<String>::new());
    // A version set by hand wins; enabled=false leaves it out whatever the cluster serves.
    let forced = ["--set", "admissionPolicy.apiVersion=admissionregistration.k8s.io/v1beta1"];
    assert_eq!(policy_versions(&forced), both("v1beta1"));
    assert_eq!(
        policy_versions(&["--api-versions", v1, "--set", "admissionPolicy.enabled=false"]),
        Vec::<String>::new()
    );
}

#[test]
fn helm_values_reach_the_manifests() {
    let tools = tools_or_skip!();
    let chart = helm_template(
        tools,
        "shard-a",
        "platform",
        &[
            "--set",
            "replicaCount=3,image.tag=0.2.0,logFormat=text,sourceNamespaces={platform,vault-sync}",
            "--set",
            "credentialSelector=shard=a,extraArgs={--concurrency=64},namespace.create=true",
            "--set",
            "serviceAccount.name=puller,podDisruptionBudget.enabled=false,service.enabled=false",
            "--set",
            "nodeSelector.pool=system,resources.limits.memory=256Mi",
        ],
    );
    let name = "shard-a-regcred-operator";
    let deployment = find(&chart, "Deployment", name);
    assert_eq!(deployment["metadata"]["namespace"], "platform");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "puller");
    assert_eq!(pod["nodeSelector"], json!({"pool": "system"}));
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "ghcr.io/regcred/regcred-operator:0.2.0");
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(
        container["args"],
        json!([
            "run",
            "--log-format",
            "text",
            "--source-namespace=platform",
            "--source-namespace=vault-sync",
            "--credential-selector=shard=a",
            "--concurrency=64"
        ])
    );
    let lease = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "REGCRED_LEASE_NAME").cloned();
    assert_eq!(lease, Some(json!({"name": "REGCRED_LEASE_NAME", "value": name})), "a Lease of its own");
    let namespace = find(&chart, "Namespace", "platform");
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
    find(&chart, "ServiceAccount", "puller");
    assert_eq!(find(&chart, "ClusterRoleBinding", name)["subjects"][0]["name"], "puller");
    assert_eq!(find(&chart, "RoleBinding", &format!("{name}-leader-election"))["subjects"][0]["namespace"], "platform");
    let kinds: BTreeSet<String> = identities(&chart).into_iter().map(|(kind, _, _)| kind).collect();
    assert!(!kinds.contains("PodDisruptionBudget") && !kinds.contains("Service"), "{kinds:?}");

    // A mistyped value is refused by the chart's schema, not rendered into a broken Deployment.
    let output = Command::new(tools.join("helm"))
        .args(["template", "x", "charts/regcred-operator", "--set", "logFormat=yaml"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("logFormat"));
}

#[test]
fn credential_providers_render_their_config_plugins_and_tokens_narrowed_by_name() {
    let tools = tools_or_skip!();
    let off = helm_template(tools, NAME, NAMESPACE, &[]);
    assert!(!identities(&off).iter().any(|(_, _, name)| name.contains("credential-provider")));
    let chart = helm_template(
        tools,
        NAME,
        NAMESPACE,
        &[
            "--set",
            "credentialProviders.enabled=true,sourceNamespaces={regcred-system,cloud-identities}",
            "--set",
            "credentialProviders.pluginsImage.repository=registry.example/plugins,credentialProviders.pluginsImage.tag=v1.37.1",
            "--set",
            "credentialProviders.serviceAccounts={ecr-puller},credentialProviders.providers[0].name=ecr-credential-provider",
            "--set",
            "credentialProviders.providers[0].matchImages={*.dkr.ecr.*.amazonaws.com},credentialProviders.providers[0].defaultCacheDuration=12h",
            "--set",
            "credentialProviders.providers[0].apiVersion=credentialprovider.kubelet.k8s.io/v1",
        ],
    );
    let config = find(&chart, "ConfigMap", &format!("{NAME}-credential-providers"));
    let config: Value = serde_norway::from_str(config["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&config["kind"], &config["providers"][0]["name"]),
        (&json!("CredentialProviderConfig"), &json!("ecr-credential-provider"))
    );
    for namespace in ["regcred-system", "cloud-identities"] {
        let role = objects_named(&chart, "Role", &format!("{NAME}-credential-provider-tokens"), namespace);
        let rule = json!([{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"], "resourceNames": ["ecr-puller"]}]);
        assert_eq!(role["rules"], rule, "{namespace}");
        objects_named(&chart, "RoleBinding", &format!("{NAME}-credential-provider-tokens"), namespace);
    }
    let pod = &find(&chart, "Deployment", NAME)["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(
        (&init["image"], &init["command"]),
        (&json!("registry.example/plugins:v1.37.1"), &json!(["cp", "-R", "/plugins/.", "/credential-providers/"]))
    );
    assert_eq!(pod["shareProcessNamespace"], true, "a plugin's leftovers are reaped by pause, not the operator");
    let manager = &pod["containers"][0];
    let args: Vec<&str> = manager["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--credential-provider-bin-dir=/var/lib/regcred-operator/credential-providers"), "{args:?}");
    let plugins = manager["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "credential-provider-plugins")
        .unwrap();
    assert_eq!(plugins["readOnly"], true, "the operator cannot change the plugins it runs");
}

/// The object of `kind` named `name` in `namespace`.
fn objects_named<'a>(objects: &'a [Value], kind: &str, name: &str, namespace: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name && o["metadata"]["namespace"] == namespace)
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name}"))
}

#[test]
fn helm_lint_passes() {
    let tools = tools_or_skip!();
    run_tool(tools, "helm", &["lint", "--strict", "charts/regcred-operator"]);
}

#[test]
fn monitoring_switches_render_monitors_of_the_metrics_port_the_rules_and_the_dashboard() {
    let tools = tools_or_skip!();
    let monitoring = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];
    let default = helm_template(tools, "regcred-operator", "regcred-system", &[]);
    let kinds: BTreeSet<String> = identities(&default).into_iter().map(|(kind, _, _)| kind).collect();
    assert!(monitoring.iter().all(|kind| !kinds.contains(*kind)), "all off by default: {kinds:?}");
    assert!(!identities(&default).iter().any(|(_, _, name)| name.ends_with("-dashboard")));

    let on = helm_template(
        tools,
        "regcred-operator",
        "regcred-system",
        &[
            "--set",
            "serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
            "--set",
            "serviceMonitor.labels.release=kps,prometheusRule.labels.release=kps,grafanaDashboard.folder=Platform",
        ],
    );
    let pod = &find(&on, "Deployment", "regcred-operator")["spec"]["template"];
    let service = find(&on, "Service", "regcred-operator-metrics");
    let selects = |monitor: &Value, labels: &Value| {
        let wanted = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
        !wanted.is_empty() && wanted.iter().all(|(key, value)| &labels[key] == value)
    };
    let service_monitor = find(&on, "ServiceMonitor", "regcred-operator");
    assert!(selects(service_monitor, &service["metadata"]["labels"]));
    assert_eq!(service_monitor["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(service_monitor["metadata"]["labels"]["release"], "kps");
    let pod_monitor = find(&on, "PodMonitor", "regcred-operator");
    assert!(selects(pod_monitor, &pod["metadata"]["labels"]));
    assert_eq!(pod_monitor["spec"]["podMetricsEndpoints"][0]["port"], pod["spec"]["containers"][0]["ports"][0]["name"]);

    // The rule groups and the dashboard are the files promtool and the metrics test read, as they are.
    let rule = find(&on, "PrometheusRule", "regcred-operator");
    assert_eq!(rule["spec"], read_documents("charts/regcred-operator/files/prometheus-rules.yaml")[0]);
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let dashboard = find(&on, "ConfigMap", "regcred-operator-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["annotations"]["grafana_folder"], "Platform");
    let file = std::fs::read_to_string(repo().join("charts/regcred-operator/files/grafana-dashboard.json")).unwrap();
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(json(dashboard["data"]["regcred-operator.json"].as_str().unwrap()), json(&file));

    // A ServiceMonitor needs the Service it scrapes through.
    let output = Command::new(tools.join("helm"))
        .args([
            "template",
            "x",
            "charts/regcred-operator",
            "--set",
            "serviceMonitor.enabled=true,service.enabled=false",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("service.enabled"));
}

#[test]
fn the_kustomize_prometheus_component_renders_what_the_chart_does() {
    let tools = tools_or_skip!();
    // An overlay of config/default with the component, as a user writes it (inside the clone:
    // kustomize takes no absolute path).
    let overlay = repo().join(format!("target/kustomize-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&overlay).unwrap();
    let kustomization = "resources: [../../config/default]\ncomponents: [../../config/prometheus]\n";
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    let built = documents(&run_tool(tools, "kustomize", &["build", overlay.to_str().unwrap()]));
    std::fs::remove_dir_all(&overlay).unwrap();

    let rules = read_documents("charts/regcred-operator/files/prometheus-rules.yaml").remove(0);
    let rule = find(&built, "PrometheusRule", "regcred-operator");
    assert_eq!(
        rule["spec"], rules,
        "config/prometheus/prometheus_rule.yaml is stale: bash config/prometheus/generate.sh"
    );
    assert_eq!(rule["metadata"]["namespace"], "regcred-system");
    let chart = helm_template(tools, "regcred-operator", "regcred-system", &["--set", "serviceMonitor.enabled=true"]);
    let (ours, theirs) =
        (find(&built, "ServiceMonitor", "regcred-operator"), find(&chart, "ServiceMonitor", "regcred-operator"));
    assert_eq!(ours["spec"]["selector"], theirs["spec"]["selector"]);
    assert_eq!(ours["spec"]["endpoints"], theirs["spec"]["endpoints"]);
    let service = find(&built, "Service", "regcred-operator-metrics");
    assert_eq!(ours["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"]);
}

/// Server-side applies every object (force, one field manager: applying again is a no-op) and
/// returns what the API server stored.
async fn apply_all(client: &Client, objects: &[Value], origin: &str) -> Vec<DynamicObject> {
    let mut stored = Vec::new();
    for object in objects {
        let (kind, name) = (object["kind"].as_str().unwrap(), object["metadata"]["name"].as_str().unwrap());
        let api_version = object["apiVersion"].as_str().unwrap();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{origin}: {api_version} {kind} is not served: {e}"));
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{origin}: namespaced {kind}/{name} without a namespace"));
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let applied = api
            .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("{origin}: the API server refused {kind}/{name}: {e}"));
        stored.push(applied);
    }
    stored
}

fn stored<'a>(objects: &'a [DynamicObject], kind: &str, name: &str) -> &'a DynamicObject {
    objects
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == kind) && o.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{kind}/{name} was not applied"))
}

#[tokio::test]
async fn kustomize_and_helm_renders_apply_server_side() {
    let client = cluster_or_skip!();
    let tools = tools_or_skip!();
    // Established before anything else, so the sample below can be validated against it.
    install_crd(&client).await;

    // kustomize: the real names. They are the ones the operator tests install from config/rbac,
    // with the same rules, so applying them changes nothing those tests rely on.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let preexisting = deployments.get_opt(NAME).await.unwrap().is_some();
    let kustomized = kustomize_default(tools);
    let applied = apply_all(&client, &kustomized, "kustomize").await;
    assert_eq!(applied.len(), kustomized.len());
    let deployment = stored(&applied, "Deployment", NAME);
    assert_eq!(deployment.data["spec"]["replicas"], 2);
    assert_eq!(deployment.data["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(stored(&applied, "PodDisruptionBudget", NAME).data["spec"]["minAvailable"], 1);
    // Applying the same render again is a no-op: nothing fights over a field. Where a controller
    // runs (the Deployment's, on the test node), status moves on its own: the spec's generation
    // is what an apply would change.
    let again = apply_all(&client, &kustomized, "kustomize (again)").await;
    for (first, second) in applied.iter().zip(&again) {
        match (first.metadata.generation, second.metadata.generation) {
            (Some(before), Some(after)) => assert_eq!(before, after, "{:?}", first.metadata.name),
            _ => assert_eq!(
                first.metadata.resource_version, second.metadata.resource_version,
                "{:?}",
                first.metadata.name
            ),
        }
    }

    // The sample passes the CRD's schema and CEL rules (dry run: no operator acts on it here).
    let credentials: Api<DynamicObject> =
        Api::all_with(client.clone(), &kube::api::ApiResource::erase::<regcred_operator::crd::RegistryCredential>(&()));
    let sample = &read_documents("config/samples/registrycredential.yaml")[0];
    credentials
        .patch("internal-corp", &PatchParams::apply(FIELD_MANAGER).force().dry_run(), &Patch::Apply(sample))
        .await
        .expect("the sample passes the CRD's validation");

    // Helm: a release of its own, in a namespace the chart creates.
    let namespace = format!("{HELM_TEST_RELEASE}-{}", std::process::id());
    let chart = helm_template(tools, HELM_TEST_RELEASE, &namespace, &["--set", "namespace.create=true"]);
    let applied = apply_all(&client, &chart, "helm").await;
    let name = format!("{HELM_TEST_RELEASE}-regcred-operator");
    assert_eq!(stored(&applied, "Deployment", &name).data["spec"]["replicas"], 2);
    assert_eq!(
        stored(&applied, "ClusterRoleBinding", &name).data["subjects"][0],
        json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
    );

    // Clean up what only this test made: the Helm release, and the Deployment, PDB and Service
    // of config/default unless they were there before (a real installation in KUBECONFIG).
    let background = DeleteParams::background();
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).delete(&namespace, &background).await;
    let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone()).delete(&name, &background).await;
    let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone()).delete(&name, &background).await;
    // The release's admission policy acts on every Pod in the cluster: it goes with the release.
    let admission = |kind: &str, plural: &str| {
        let gvk = kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        Api::<DynamicObject>::all_with(client.clone(), &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural))
    };
    let policy = format!("{name}-inject-pull-secret");
    let _ = admission("MutatingAdmissionPolicyBinding", "mutatingadmissionpolicybindings")
        .delete(&policy, &background)
        .await;
    let _ = admission("MutatingAdmissionPolicy", "mutatingadmissionpolicies").delete(&policy, &background).await;
    if !preexisting {
        let _ = deployments.delete(NAME, &background).await;
        let _ = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(client.clone(), NAMESPACE)
            .delete(NAME, &background)
            .await;
        let _ = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), NAMESPACE)
            .delete("regcred-operator-metrics", &background)
            .await;
    }
}

/// kubectl with `stdin`; its exit status and stderr.
fn kubectl_with_input(tools: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(tools.join("kubectl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn the_documented_helm_crd_upgrade_replaces_a_crd_helm_installed() {
    let client = cluster_or_skip!();
    let tools = tools_or_skip!();
    // The chart's CRD under a group of its own, so the shared CRD the other tests use stays as is.
    let group = format!("upgrade-{}.regcred.test", std::process::id());
    let current = run_tool(tools, "helm", &["show", "crds", "charts/regcred-operator"]).replace("regcred.dev", &group);
    let crd_name = format!("registrycredentials.{group}");
    // What an older chart installed: the CRD without a field added since, owned by Helm.
    let mut older: Value = documents(&current).remove(0);
    let properties = &mut older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    properties.as_object_mut().unwrap().remove("evictStuckPods");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(&crd_name, &PatchParams::apply("helm").force(), &Patch::Apply(&older)).await.unwrap();

    // Without --force-conflicts, Helm's ownership of every field stops the apply.
    let plain = ["apply", "--server-side", "-f", "-"];
    let (applied, stderr) = kubectl_with_input(tools, &plain, &current);
    assert!(!applied, "a plain server-side apply conflicts with Helm's field manager");
    assert!(stderr.contains("conflict"), "{stderr}");
    // The documented command.
    let (applied, stderr) =
        kubectl_with_input(tools, &["apply", "--server-side", "--force-conflicts", "-f", "-"], &current);
    assert!(applied, "{stderr}");
    let upgraded = crds.get(&crd_name).await.unwrap();
    let schema = serde_json::to_value(&upgraded.spec.versions[0].schema).unwrap();
    assert!(
        schema["openAPIV3Schema"]["properties"]["spec"]["properties"].get("evictStuckPods").is_some(),
        "the new field is served after the upgrade"
    );
    crds.delete(&crd_name, &DeleteParams::background()).await.unwrap();
}

/// The kustomize directory docs/operations.md gives for a cluster serving `served`, the version of
/// the MutatingAdmissionPolicy API.
fn kustomize_install_dir(served: Option<&str>) -> &'static str {
    match served {
        Some("v1") => "config/default",
        Some(_) => "config/overlays/admission-policy-v1beta1",
        None => "config/overlays/without-admission-policy",
    }
}

/// Which admission objects named `name` the cluster stores, as "Kind version": in the version
/// it serves, or in either when it serves none (where both lists are refused, 404).
async fn policy_objects_named(client: &Client, name: &str, served: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    for version in served.map_or(vec!["v1", "v1beta1"], |v| vec![v]) {
        for kind in ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"] {
            let names = match admission_api(client, version, kind).list(&Default::default()).await {
                Ok(list) => list.items.iter().map(|o| o.name_any()).collect(),
                Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
                Err(error) => panic!("listing {kind} {version}: {error}"),
            };
            if names.iter().any(|n| n == name) {
                found.push(format!("{kind} {version}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_documented_install_applies_on_this_clusters_version_with_the_policy_it_serves() {
    let client = cluster_or_skip!();
    let tools = tools_or_skip!();
    let served = admission_policy_api(&client).await;
    let expected: Vec<String> = served
        .map(|v| vec![format!("MutatingAdmissionPolicy {v}"), format!("MutatingAdmissionPolicyBinding {v}")])
        .unwrap_or_default();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let preexisting = deployments.get_opt(NAME).await.unwrap().is_some();

    // kustomize build DIR | kubectl apply --server-side -f -, with --force-conflicts: other tests
    // of the suite apply the same objects under field managers of their own, at any moment, and
    // the server may count a field as theirs (an atomic struct with server defaults). On a
    // cluster with no other manager, as a user's and the matrix's, the flag changes nothing.
    let dir = kustomize_install_dir(served);
    let apply = ["apply", "--server-side", "--force-conflicts", "-f", "-"];
    let (applied, stderr) = kubectl_with_input(tools, &apply, &run_tool(tools, "kustomize", &["build", dir]));
    assert!(applied, "kustomize build {dir} | kubectl {} (served: {served:?}): {stderr}", apply.join(" "));
    let found = policy_objects_named(&client, "regcred-operator-inject-pull-secret", served).await;
    assert_eq!(found, expected, "kustomize build {dir}: the policy objects stored");
    assert!(deployments.get_opt(NAME).await.unwrap().is_some(), "kustomize build {dir}: the Deployment");

    // helm install, which asks the cluster what it serves (a release of its own: the one above
    // owns the default names).
    let release = "regcred-helm-install";
    let namespace = format!("{release}-{}", std::process::id());
    run_tool(
        tools,
        "helm",
        &["install", release, "charts/regcred-operator", "--namespace", &namespace, "--create-namespace"],
    );
    let policy = format!("{release}-regcred-operator-inject-pull-secret");
    let found = policy_objects_named(&client, &policy, served).await;
    assert_eq!(found, expected, "helm install: the policy objects stored (served: {served:?})");
    run_tool(tools, "helm", &["uninstall", release, "--namespace", &namespace]);
    assert_eq!(policy_objects_named(&client, &policy, served).await, Vec::<String>::new(), "helm uninstall");
    let background = DeleteParams::background();
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).delete(&namespace, &background).await;
    if !preexisting {
        let _ = deployments.delete(NAME, &background).await;
    }
}
