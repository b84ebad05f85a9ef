//! `regcred-operator run`: the controller, with metrics and health probes over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use kube::Client;
use tokio::sync::watch;
use tracing::{error, info};

use crate::controller::{Operator, Settings, Stores};
use crate::metrics::Metrics;
use crate::telemetry::{self, LogFormat};

/// Where the in-cluster namespace of the operator's own Pod is written.
const SERVICE_ACCOUNT_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The source namespace when the operator runs outside a cluster and none is given.
const DEFAULT_SOURCE_NAMESPACE: &str = "regcred-system";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Namespaces whose Secrets RegistryCredentials may use as sources (repeat or comma-separate).
    /// Default: the namespace the operator runs in, or regcred-system outside a cluster.
    #[arg(long = "source-namespace", env = "REGCRED_SOURCE_NAMESPACES", value_delimiter = ',')]
    pub source_namespaces: Vec<String>,

    /// Manage only the RegistryCredentials matching this label selector (e.g. `shard=a`).
    #[arg(long, env = "REGCRED_CREDENTIAL_SELECTOR")]
    pub credential_selector: Option<String>,

    /// Namespaces written concurrently within one reconcile.
    #[arg(long, env = "REGCRED_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,

    /// Seconds between safety-net resyncs of a converged RegistryCredential.
    #[arg(long, env = "REGCRED_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,

    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "REGCRED_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl RunArgs {
    fn settings(&self) -> Settings {
        let source_namespaces = if self.source_namespaces.is_empty() {
            vec![own_namespace()]
        } else {
            self.source_namespaces.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect()
        };
        Settings {
            source_namespaces,
            concurrency: self.concurrency.max(1),
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            credential_selector: self.credential_selector.clone(),
        }
    }
}

fn own_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE_FILE).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_SOURCE_NAMESPACE.to_owned())
}

/// Runs until SIGTERM or SIGINT; returns the exit code.
pub async fn run(args: RunArgs) -> u8 {
    telemetry::init(args.log_format);
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            error!(%error, "no Kubernetes client: set KUBECONFIG or run in a cluster");
            return 1;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let operator = Operator::new(client, args.settings(), metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(false);

    let listener = match tokio::net::TcpListener::bind(args.http_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            error!(addr = %args.http_addr, %error, "cannot serve metrics and probes");
            return 1;
        }
    };
    info!(addr = %listener.local_addr().map_or(args.http_addr, |a| a), "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(serve(listener, metrics, operator.stores(), stopped(stop_rx.clone())));

    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested: finishing in-flight work");
        let _ = stop_tx.send(true);
    });
    operator.run(stopped(stop_rx)).await;
    let _ = server.await;
    0
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    stores: Stores,
}

async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stores: Stores,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(|State(p): State<Probes>| async move { p.metrics.encode() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(p): State<Probes>| async move {
                if p.stores.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches syncing")
                }
            }),
        )
        .with_state(Probes { metrics, stores });
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        error!(%error, "HTTP server failed");
    }
}
