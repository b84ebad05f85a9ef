//! The chart's alerting rules and Grafana dashboard against the operator's real /metrics: every
//! metric they query is one the operator exports, and the per-credential gauges they read follow
//! a credential from Ready to a broken source, and go when it is deleted or no longer managed.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::json;

use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;
use regcred_test_support::operator::{INSTANCE_LABEL, OperatorProcess};

const RULES: &str = "charts/regcred-operator/files/prometheus-rules.yaml";
const DASHBOARD: &str = "charts/regcred-operator/files/grafana-dashboard.json";

fn read(file: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
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

#[tokio::test]
async fn alert_and_dashboard_queries_name_only_metrics_the_operator_exports() {
    let admin = cluster_or_skip!();
    let fx = Fixture::start(admin.clone(), "observability", &[]).await;
    fx.put_source("pull", &docker_config("registry.example.test", "ci", "pw")).await;
    let _selected = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", json!({}))).await;
    fx.wait_ready(&credential, "True", "Synced").await;
    let name = credential.name_any();

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
