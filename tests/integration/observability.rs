//! The chart's alerting rules and Grafana dashboard against the operator's real /metrics: every
//! metric they query is one the operator exports, and the per-credential gauges they read follow
//! a credential from Ready to a broken source, and go when it is deleted or no longer managed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster::TestNamespace;
use regcred_test_support::fixture::*;
use regcred_test_support::operator::{INSTANCE_LABEL, OperatorProcess, http_get};
use regcred_test_support::{cluster_or_skip, repo};

const RULES: &str = "charts/regcred-operator/files/prometheus-rules.yaml";
const DASHBOARD: &str = "charts/regcred-operator/files/grafana-dashboard.json";

fn read(file: &str) -> String {
    std::fs::read_to_string(repo().join(file)).unwrap()
}

/// The `regcred_...` names in `text`, YAML comment lines left out (the rule file holds the place
/// of a rule still to come in one).
fn queried_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|line| !line.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("regcred_") {
            let inside_a_word = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            if !inside_a_word {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    names
}

/// The series names an exposition serves: its samples' and those its `# TYPE` lines declare (a
/// labelled family has no sample until first used), with the suffixes Prometheus stores.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (family, kind) = declared.split_once(' ').unwrap();
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{family}{suffix}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            names.insert(line[..line.find(['{', ' ']).unwrap_or(line.len())].to_owned());
        }
    }
    names
}

/// The lines of /metrics that name `credential`.
async fn series_of(operator: &OperatorProcess, credential: &str) -> Vec<String> {
    let needle = format!("credential=\"{credential}\"");
    operator.http_get("/metrics").await.1.lines().filter(|line| line.contains(&needle)).map(str::to_owned).collect()
}

async fn wait_for_no_series(operator: &OperatorProcess, credential: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let left = series_of(operator, credential).await;
        if left.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "series of {credential} left: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A credential of the test's source `pull`, Ready over one namespace (kept by the caller).
async fn synced_credential(fx: &Fixture) -> (RegistryCredential, TestNamespace) {
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let selected = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    (credential, selected)
}

#[tokio::test]
async fn alert_and_dashboard_queries_name_only_metrics_the_operator_exports() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "observability", &[]).await;
    let (credential, _selected) = synced_credential(&fx).await;
    let name = credential.name_any();
    // A source that states its expiry: the expiry gauge has a series too.
    let expires_at = json!({"metadata": {"annotations": {"regcred.dev/expires-at": "2100-01-01T00:00:00Z"}}});
    let sources: Api<Secret> = Api::namespaced(admin.clone(), &fx.source.name);
    sources.patch("pull", &PatchParams::default(), &Patch::Merge(&expires_at)).await.unwrap();
    let expiry = format!("regcred_credential_expiry_timestamp_seconds{{credential=\"{name}\"}}");
    wait_for_metric(&fx.operator, &expiry, 4_102_444_800.0).await;

    let (code, body) = fx.operator.http_get("/metrics").await;
    assert_eq!(code, 200);
    let exported = exported_names(&body);
    for file in [RULES, DASHBOARD] {
        let unknown: Vec<String> = queried_names(&read(file)).difference(&exported).cloned().collect();
        assert!(unknown.is_empty(), "{file} queries metrics the operator does not export: {unknown:?}\n{body}");
    }
    for (gauge, value) in [
        ("regcred_credential_ready{credential=\"NAME\",reason=\"Synced\"}", 1.0),
        ("regcred_selected_namespaces{credential=\"NAME\"}", 1.0),
        ("regcred_managed_namespaces{credential=\"NAME\"}", 1.0),
        ("regcred_failed_namespaces{credential=\"NAME\"}", 0.0),
    ] {
        let sample = gauge.replace("NAME", &name);
        assert_eq!(fx.operator.metric(&sample).await, value, "{sample}\n{body}");
    }

    // A broken source: one Ready series, of the new reason.
    let broken = json!({"source": {"secretRef": {"name": "missing"}}});
    fx.apply(&fx.credential("main", broken)).await;
    fx.wait_ready(&credential, "False", "SourceNotFound").await;
    let ready: Vec<String> = series_of(&fx.operator, &name)
        .await
        .into_iter()
        .filter(|line| line.starts_with("regcred_credential_ready"))
        .collect();
    assert_eq!(ready, [format!("regcred_credential_ready{{credential=\"{name}\",reason=\"SourceNotFound\"}} 0")]);

    fx.delete(&credential).await;
    assert_eq!(series_of(&fx.operator, &name).await, Vec::<String>::new(), "cleaned up: no series left");
}

#[tokio::test]
async fn a_credential_the_operator_no_longer_manages_leaves_no_series() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "observability-unselected", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    let name = credential.name_any();
    assert!(!series_of(&fx.operator, &name).await.is_empty());

    // Out of the operator's --credential-selector: no cleanup runs, and no series stays.
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let away = json!({"metadata": {"labels": {INSTANCE_LABEL: "elsewhere"}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&away)).await.unwrap();
    wait_for_no_series(&fx.operator, &name).await;

    // Nothing runs its finalizer any more.
    let release = json!({"metadata": {"finalizers": null}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    fx.delete(&credential).await;
}

/// Prometheus (cmd/prometheus, REGCRED_PROMETHEUS_BIN or built and cached by
/// tests/observability/build-prometheus.sh) scraping one operator every second with the chart's
/// rules, their `for:` cut to 3 s; killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    /// None where Prometheus cannot be built (never in CI).
    fn binary() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("REGCRED_PROMETHEUS_BIN").filter(|dir| !dir.is_empty()) {
            return Some(PathBuf::from(dir).join("prometheus"));
        }
        let script = repo().join("tests/observability/build-prometheus.sh");
        let output = Command::new("bash").arg(script).stderr(Stdio::inherit()).output().unwrap();
        assert!(output.status.success() || std::env::var("CI").as_deref() != Ok("true"), "Prometheus did not build");
        output
            .status
            .success()
            .then(|| PathBuf::from(String::from_utf8(output.stdout).unwrap().trim()).join("prometheus"))
    }

    async fn start(binary: PathBuf, operator: &OperatorProcess) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("regcred-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = read(RULES);
        let rules = rules.lines().map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 3s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_owned(),
        });
        std::fs::write(dir.join("rules.yaml"), rules.collect::<Vec<_>>().join("\n")).unwrap();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{
                "job_name": "regcred-operator",
                "static_configs": [{"targets": [operator.metrics_addr()], "labels": {"namespace": "regcred-system", "pod": "operator-0"}}],
            }],
        });
        std::fs::write(dir.join("prometheus.yml"), config.to_string()).unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .current_dir(&dir)
            .args(["--config.file=prometheus.yml", "--storage.tsdb.path=data", &format!("--web.listen-address={addr}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let prometheus = Prometheus { child, addr, dir };
        let ready = |addr: String| async move {
            tokio::net::TcpStream::connect(&addr).await.is_ok() && http_get(&addr, "/-/ready").await.0 == 200
        };
        prometheus.wait_for("ready", ready).await;
        prometheus
    }

    /// Waits until `check` of its address holds.
    async fn wait_for<F: std::future::Future<Output = bool>>(&self, what: &str, check: impl Fn(String) -> F) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !check(self.addr.clone()).await {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            assert!(tokio::time::Instant::now() < deadline, "Prometheus: never {what}; its log:\n{log}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The active (pending or firing) alerts named `alert` about `credential`, of the Prometheus at `addr`.
async fn alerts(addr: String, alert: &str, credential: String) -> Vec<serde_json::Value> {
    let (code, body) = http_get(&addr, "/api/v1/alerts").await;
    assert_eq!(code, 200, "{body}");
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let about = |a: &&serde_json::Value| a["labels"]["alertname"] == alert && a["labels"]["credential"] == credential;
    alerts["data"]["alerts"].as_array().unwrap().iter().filter(about).cloned().collect()
}

/// Whether the Prometheus at `addr` holds the one series `selector` at `value`.
async fn has(addr: String, selector: String, value: &str) -> bool {
    let escape =
        |c: char| if c.is_ascii_alphanumeric() || c == '_' { c.to_string() } else { format!("%{:02X}", c as u32) };
    let query: String = selector.chars().map(escape).collect();
    let body = http_get(&addr, &format!("/api/v1/query?query={query}")).await.1;
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    result["data"]["result"][0]["value"][1] == value
}

#[tokio::test]
async fn prometheus_fires_the_not_ready_alert_while_a_source_is_broken_and_resolves_it() {
    let admin = cluster_or_skip!();
    let Some(binary) = Prometheus::binary() else { return };
    let fx = Fixture::start(admin.clone(), "observability-prometheus", &[]).await;
    let (credential, _selected) = synced_credential(&fx).await;
    let name = credential.name_any();
    let prometheus = Prometheus::start(binary, &fx.operator).await;
    let ready = format!("regcred_credential_ready{{credential=\"{name}\",reason=\"Synced\"}}");
    prometheus.wait_for("scraped Ready", |addr| has(addr, ready.clone(), "1")).await;
    let not_ready = |addr: String| alerts(addr, "RegcredCredentialNotReady", name.clone());
    // Longer than the shortened `for:`: a healthy credential stays silent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(not_ready(prometheus.addr.clone()).await, Vec::<serde_json::Value>::new(), "healthy");

    let broken = json!({"source": {"secretRef": {"name": "missing"}}});
    fx.apply(&fx.credential("main", broken)).await;
    fx.wait_ready(&credential, "False", "SourceNotFound").await;
    let firing = |addr: String| async move { not_ready(addr).await.iter().any(|alert| alert["state"] == "firing") };
    prometheus.wait_for("firing RegcredCredentialNotReady", firing).await;
    let alert = &not_ready(prometheus.addr.clone()).await[0];
    assert_eq!(
        (&alert["labels"]["reason"], &alert["labels"]["severity"]),
        (&json!("SourceNotFound"), &json!("warning"))
    );
    assert_eq!(alert["annotations"]["summary"], format!("RegistryCredential {name} is not Ready: SourceNotFound"));
    let runbook = alert["annotations"]["runbook_url"].as_str().unwrap();
    assert!(runbook.ends_with("docs/operations.md#regcredcredentialnotready"), "{runbook}");

    fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    let resolved = |addr: String| async move { not_ready(addr).await.is_empty() };
    prometheus.wait_for("resolved RegcredCredentialNotReady", resolved).await;
}

#[test]
fn exported_names_carry_the_suffixes_prometheus_stores() {
    let exposition = "# TYPE regcred_a counter\n# TYPE regcred_b histogram\nregcred_b_bucket{le=\"1\"} 0\n\
                      # TYPE regcred_c gauge\nregcred_c{credential=\"x\"} 1\n# EOF\n";
    let names: Vec<String> = exported_names(exposition).into_iter().collect();
    assert_eq!(names, ["regcred_a_total", "regcred_b_bucket", "regcred_b_count", "regcred_b_sum", "regcred_c"]);
}

#[test]
fn the_rules_and_the_dashboard_are_read_for_every_metric_they_name() {
    let rules = queried_names(&read(RULES));
    let dashboard = queried_names(&read(DASHBOARD));
    for used in ["regcred_credential_ready", "regcred_failed_namespaces", "regcred_leader", "regcred_reconciles_total"]
    {
        assert!(rules.contains(used) && dashboard.contains(used), "{used} not found: {rules:?} {dashboard:?}");
    }
    assert!(dashboard.contains("regcred_reconcile_duration_seconds_bucket"), "{dashboard:?}");
    assert_eq!(
        queried_names("# regcred_comment\nx{} + not_regcred_word + regcred_y_total"),
        BTreeSet::from(["regcred_y_total".to_owned()])
    );
}
