//! Runs the operator binary as a separate process under its own ServiceAccount and RBAC, the
//! way it runs in a cluster, and reads what it exposes: logs and metrics.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::config::{AuthInfo, Kubeconfig, NamedAuthInfo};
use kube::{Api, Client};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::install_crd;

/// The namespace of the operator's ServiceAccount, as config/rbac declares it.
pub const OPERATOR_NAMESPACE: &str = "regcred-system";
const OPERATOR_ACCOUNT: &str = "regcred-operator";
/// Label on the RegistryCredentials of one test, which only that test's operator manages.
pub const INSTANCE_LABEL: &str = "regcred.dev/test-instance";

/// Installs the CRD and config/rbac as a cluster admin would.
pub async fn install(admin: &Client) {
    install_account(admin, OPERATOR_ACCOUNT, None).await;
}

/// Installs the CRD and config/rbac for a ServiceAccount named `account` (every object of
/// config/rbac renamed after it), without the ClusterRole rules on the resource `without`.
pub async fn install_account(admin: &Client, account: &str, without: Option<&str>) {
    install_crd(admin).await;
    let params = PatchParams::apply("regcred-tests").force();
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": OPERATOR_NAMESPACE}})).unwrap();
    Api::<Namespace>::all(admin.clone()).patch(OPERATOR_NAMESPACE, &params, &Patch::Apply(&namespace)).await.unwrap();
    let dir = crate::repo().join("config/rbac");
    for file in ["service_account.yaml", "cluster_role.yaml", "cluster_role_binding.yaml", "leader_election_role.yaml"]
    {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let mut value = Value::deserialize(document).unwrap();
            rename_for(&mut value, account, without);
            match value["kind"].as_str().unwrap() {
                "ServiceAccount" => {
                    apply::<ServiceAccount>(Api::namespaced(admin.clone(), OPERATOR_NAMESPACE), value).await
                }
                "ClusterRole" => apply::<ClusterRole>(Api::all(admin.clone()), value).await,
                "ClusterRoleBinding" => apply::<ClusterRoleBinding>(Api::all(admin.clone()), value).await,
                "Role" => apply::<Role>(Api::namespaced(admin.clone(), OPERATOR_NAMESPACE), value).await,
                "RoleBinding" => apply::<RoleBinding>(Api::namespaced(admin.clone(), OPERATOR_NAMESPACE), value).await,
                other => panic!("config/rbac/{file}: unexpected kind {other}"),
            }
        }
    }
}

/// config/rbac's object for `account`: names, subjects and role references renamed after it,
/// and without the rules on `without`.
fn rename_for(value: &mut Value, account: &str, without: Option<&str>) {
    let rename = |name: &mut Value| {
        let renamed = name.as_str().unwrap().replacen(OPERATOR_ACCOUNT, account, 1);
        *name = Value::String(renamed);
    };
    rename(&mut value["metadata"]["name"]);
    // `get_mut`, not indexing: indexing would add the fields it looks for.
    if let Some(role) = value.get_mut("roleRef") {
        rename(&mut role["name"]);
    }
    for subject in value.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
        rename(&mut subject["name"]);
    }
    if let (Some(resource), Some(rules)) = (without, value.get_mut("rules").and_then(Value::as_array_mut)) {
        rules.retain(|rule| !rule["resources"].as_array().unwrap().iter().any(|r| r == resource));
    }
}

async fn apply<K>(api: Api<K>, value: Value)
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(&name, &PatchParams::apply("regcred-tests").force(), &Patch::Apply(&value)).await.unwrap();
}

/// A kubeconfig file for the operator's ServiceAccount `account`, with a fresh TokenRequest token.
async fn operator_kubeconfig(admin: &Client, dir: &std::path::Path, account: &str) -> PathBuf {
    let token = crate::cluster::service_account_token(admin, OPERATOR_NAMESPACE, account).await;
    let mut config = Kubeconfig::read().unwrap();
    let user = config.contexts[0].context.as_ref().unwrap().user.clone().unwrap();
    config.auth_infos = vec![NamedAuthInfo {
        name: user,
        auth_info: Some(AuthInfo { token: Some(token.into()), ..Default::default() }),
        other: Default::default(),
    }];
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_norway::to_string(&config).unwrap()).unwrap();
    path
}

/// GET on `addr` (`host:port`); returns (status code, body). HTTP/1.0, so that no server sends
/// the body in chunks.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// One operator process, killed when dropped.
pub struct OperatorProcess {
    child: Child,
    /// The ServiceAccount it runs as.
    account: String,
    dir: PathBuf,
    /// One log file per start, so that each start's output can be told apart.
    starts: usize,
    metrics_addr: String,
}

impl OperatorProcess {
    /// Starts `regcred-operator run` for the RegistryCredentials labelled with `instance`,
    /// trusting `source_namespace`, and waits until it serves its probes.
    pub async fn start(admin: &Client, instance: &str, source_namespace: &str, extra_args: &[&str]) -> OperatorProcess {
        Self::start_replica(admin, instance, "0", source_namespace, extra_args).await
    }

    /// Like `start`, for one of several replicas of the same instance (they share its Lease).
    pub async fn start_replica(
        admin: &Client,
        instance: &str,
        replica: &str,
        source_namespace: &str,
        extra_args: &[&str],
    ) -> OperatorProcess {
        install(admin).await;
        Self::start_as(admin, OPERATOR_ACCOUNT, instance, replica, source_namespace, extra_args).await
    }

    /// Like `start_replica`, as the ServiceAccount `account` (see [`install_account`]).
    pub async fn start_as(
        admin: &Client,
        account: &str,
        instance: &str,
        replica: &str,
        source_namespace: &str,
        extra_args: &[&str],
    ) -> OperatorProcess {
        let dir = std::env::temp_dir().join(format!("regcred-operator-{instance}-{replica}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = operator_kubeconfig(admin, &dir, account).await;
        let child = spawn(&dir, 1, &kubeconfig, instance, source_namespace, extra_args);
        let account = account.to_owned();
        let mut process = OperatorProcess { child, account, dir, starts: 1, metrics_addr: String::new() };
        process.metrics_addr = process.wait_for_serving().await;
        process
    }

    /// Starts the operator again with the same arguments, after `kill` or `terminate`.
    pub async fn restart(&mut self, admin: &Client, instance: &str, source_namespace: &str, extra_args: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let kubeconfig = operator_kubeconfig(admin, &self.dir, &self.account).await;
        self.starts += 1;
        self.child = spawn(&self.dir, self.starts, &kubeconfig, instance, source_namespace, extra_args);
        self.metrics_addr = self.wait_for_serving().await;
    }

    /// Everything the operator logged, across restarts.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.dir.join(format!("operator-{n}.log"))).unwrap_or_default())
            .collect()
    }

    async fn wait_for_serving(&mut self) -> String {
        let marker = "serving /metrics, /healthz, /readyz addr=";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log =
                std::fs::read_to_string(self.dir.join(format!("operator-{}.log", self.starts))).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains(marker)) {
                return line.split(marker).nth(1).unwrap().trim().to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("operator exited with {status} before serving:\n{log}");
            }
            assert!(tokio::time::Instant::now() < deadline, "operator did not start serving in 30 s:\n{log}");
            // Waiting for a child process's output: there is nothing to watch but the file.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET on the operator's HTTP port; returns (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics_addr, path).await
    }

    /// Where it serves /metrics and its probes (`host:port`).
    pub fn metrics_addr(&self) -> &str {
        &self.metrics_addr
    }

    /// The value of one sample in /metrics, 0 when absent (`name{labels}` exactly as exposed).
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .find_map(|line| {
                line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Sum of the API writes the operator made to one resource.
    pub async fn writes(&self, resource: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .filter(|line| {
                line.starts_with("regcred_api_writes_total{") && line.contains(&format!("resource=\"{resource}\""))
            })
            .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }

    /// SIGKILL: no cleanup, no graceful anything; as a node failure would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process stays, frozen, as on a starved node or behind a partition.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success(), "kill {signal} {pid}");
    }

    /// The exit code once the process ends by itself within `timeout`; `None` if it does not.
    pub async fn exit_within(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().code()
    }
}

fn spawn(
    dir: &std::path::Path,
    start: usize,
    kubeconfig: &std::path::Path,
    instance: &str,
    source_namespace: &str,
    extra_args: &[&str],
) -> Child {
    let log = File::create(dir.join(format!("operator-{start}.log"))).unwrap();
    let selector = format!("{INSTANCE_LABEL}={instance}");
    Command::new(crate::operator_binary())
        .args(["run", "--credential-selector", &selector, "--source-namespace", source_namespace])
        .args(["--http-addr", "127.0.0.1:0"])
        // One Lease per test: the tests' operators must not wait for each other.
        .args(["--lease-name", &format!("regcred-test-{instance}")])
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        // Debug level: the secret-leak test wants every line the operator could ever write.
        .env("RUST_LOG", "debug,tower=info,hyper=info,hyper_util=info,h2=info,rustls=info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
