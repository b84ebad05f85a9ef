//! `regcred-operator run`: the controller, with metrics and health probes over HTTP.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use kube::Client;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::controller::{Operator, Settings, Stores, admission_policies_served};
use crate::leader_election::{Fence, FenceLayer, Leadership, LeaseSettings, election_client};
use crate::metrics::Metrics;
use crate::pace::{Pace, paced_client};
use crate::provider::config::{ConfigError, Providers};
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
    pub(crate) source_namespaces: Vec<String>,

    /// Manage only the RegistryCredentials matching this label selector (e.g. `shard=a`).
    #[arg(long, env = "REGCRED_CREDENTIAL_SELECTOR")]
    pub(crate) credential_selector: Option<String>,

    /// Namespaces reconciled at once, and the most API requests in flight (fewer while the API
    /// server answers 429).
    #[arg(long, env = "REGCRED_CONCURRENCY", default_value_t = 128)]
    pub(crate) concurrency: usize,

    /// Never send more API requests per second than this (bursts up to one second's worth);
    /// unset, the operator goes as fast as the API server answers.
    #[arg(long, env = "REGCRED_MAX_REQUESTS_PER_SECOND")]
    pub(crate) max_requests_per_second: Option<NonZeroU32>,

    /// Seconds between safety-net resyncs of a converged RegistryCredential.
    #[arg(long, env = "REGCRED_RESYNC_SECONDS", default_value_t = 300)]
    pub(crate) resync_seconds: u64,

    /// Seconds before a credential's stated expiry (`status.expiresAt`) at which `Expiring` turns
    /// True and a Warning Event is recorded.
    #[arg(long, env = "REGCRED_EXPIRY_WARNING_SECONDS", default_value_t = 600)]
    pub(crate) expiry_warning_seconds: u64,

    /// The kubelet's CredentialProviderConfig file (`kubelet.config.k8s.io/v1`) naming the
    /// credential provider plugins RegistryCredentials may mint from (`source.credentialProvider`).
    #[arg(long, env = "REGCRED_CREDENTIAL_PROVIDER_CONFIG", requires = "credential_provider_bin_dir")]
    pub(crate) credential_provider_config: Option<PathBuf>,

    /// The directory the credential provider plugins are run from, by provider name.
    #[arg(long, env = "REGCRED_CREDENTIAL_PROVIDER_BIN_DIR", requires = "credential_provider_config")]
    pub(crate) credential_provider_bin_dir: Option<PathBuf>,

    /// Seconds a credential provider plugin may take before it is killed.
    #[arg(long, env = "REGCRED_CREDENTIAL_PROVIDER_TIMEOUT_SECONDS", default_value_t = 30)]
    pub(crate) credential_provider_timeout_seconds: u64,

    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "REGCRED_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub(crate) http_addr: SocketAddr,

    /// Elect one active replica through a Lease; off runs this process as the only one.
    #[arg(long, env = "REGCRED_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) leader_election: bool,

    /// Name of the leader election Lease.
    #[arg(long, env = "REGCRED_LEASE_NAME", default_value = "regcred-operator")]
    pub(crate) lease_name: String,

    /// Namespace of the Lease. Default: the namespace the operator runs in, or regcred-system.
    #[arg(long, env = "REGCRED_LEASE_NAMESPACE")]
    pub(crate) lease_namespace: Option<String>,

    /// Seconds a Lease outlives its last renewal: the longest a crashed leader delays a standby.
    #[arg(long, env = "REGCRED_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub(crate) lease_duration_seconds: u64,

    /// Seconds before expiry at which the leader renews the Lease.
    #[arg(long, env = "REGCRED_LEASE_GRACE_SECONDS", default_value_t = 5)]
    pub(crate) lease_grace_seconds: u64,

    /// Log format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
}

impl RunArgs {
    /// The credential providers, read and checked once; a config that cannot be used stops the
    /// operator at start, as it stops the kubelet.
    fn credential_providers(&self) -> Result<Providers, ConfigError> {
        let timeout = Duration::from_secs(self.credential_provider_timeout_seconds.max(1));
        match (&self.credential_provider_config, &self.credential_provider_bin_dir) {
            (Some(config), Some(bin_dir)) => Providers::load(config, bin_dir, timeout),
            _ => Ok(Providers { timeout, ..Providers::default() }),
        }
    }

    fn settings(&self, credential_providers: Providers) -> Settings {
        let source_namespaces = if self.source_namespaces.is_empty() {
            vec![own_namespace()]
        } else {
            self.source_namespaces.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect()
        };
        Settings {
            source_namespaces,
            concurrency: self.concurrency.max(1),
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            expiry_warning: Duration::from_secs(self.expiry_warning_seconds),
            credential_selector: self.credential_selector.clone(),
            admission_policies_served: false,
            credential_providers: Arc::new(credential_providers),
        }
    }
}

impl RunArgs {
    fn lease_settings(&self) -> LeaseSettings {
        let pod = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "regcred-operator".into());
        LeaseSettings {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone().unwrap_or_else(own_namespace),
            // The pid keeps two processes on one host (tests, a local run) from sharing an identity.
            identity: format!("{pod}-{}", std::process::id()),
            duration_seconds: self.lease_duration_seconds.max(2),
            grace_seconds: self.lease_grace_seconds.clamp(1, self.lease_duration_seconds.max(2) - 1),
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

/// Why the controller stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Signal,
    LostLease,
}

/// Runs until SIGTERM or SIGINT (exit 0), or until the Lease is lost (exit 1, so that the
/// replica restarts clean); returns the exit code.
pub async fn run(args: RunArgs) -> u8 {
    telemetry::init(args.log_format);
    let metrics = Arc::new(Metrics::default());
    let Some((client, paced, fence)) = clients(&args, metrics.clone()).await else {
        return 1;
    };
    let providers = match args.credential_providers() {
        Ok(providers) => providers,
        Err(error) => {
            error!(%error, "cannot start");
            return 1;
        }
    };
    for provider in providers.by_name.values().filter(|provider| !provider.plugin.is_file()) {
        warn!(provider = %provider.name, plugin = %provider.plugin.display(), "credential provider plugin not found; its credentials report ProviderNotFound");
    }
    let mut settings = args.settings(providers);
    settings.admission_policies_served = admission_policies_served(&client).await;
    let operator = Operator::new(paced, settings, metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(None::<Stop>);
    let leading = Arc::new(AtomicBool::new(false));
    let probes = Probes { metrics: metrics.clone(), stores: operator.stores(), leading: leading.clone() };
    let Some(server) = serve_probes(args.http_addr, probes, stop_rx.clone()).await else {
        return 1;
    };
    stop_on_signal(stop_tx.clone());

    let leadership = match elect(&args, client, fence, &stop_tx, stop_rx.clone()).await {
        Election::Leading(leadership) => leadership,
        Election::Stopped => {
            let _ = server.await;
            return 0;
        }
        Election::Failed => return 1,
    };
    leading.store(true, Ordering::Relaxed);
    metrics.set_leader(true);

    let ended = tokio::select! {
        biased;
        // Dropping the controllers aborts every reconcile in flight: the new leader writes now.
        () = stopped_by(stop_rx.clone(), Stop::LostLease) => Ok(()),
        ended = operator.run(stopped_by(stop_rx.clone(), Stop::Signal)) => ended,
    };
    if let Err(error) = &ended {
        error!(%error, "stopping: a controller must not run without the other");
    }

    metrics.set_leader(false);
    let lost = *stop_rx.borrow() == Some(Stop::LostLease);
    if let Some((election, lost_watch)) = leadership {
        // The watch holds a receiver too; the Lease is released only once all are gone.
        lost_watch.abort();
        let _ = lost_watch.await;
        election.release().await;
    }
    let _ = stop_tx.send(Some(Stop::Signal));
    let _ = server.await;
    if lost || ended.is_err() { 1 } else { 0 }
}

/// The client of leader election and discovery, and the paced client of the controllers: a Lease
/// renewal never waits behind the controllers' requests. With leader election, the controllers'
/// writes stop at the returned fence once this replica no longer holds the Lease.
async fn clients(args: &RunArgs, metrics: Arc<Metrics>) -> Option<(Client, Client, Option<Arc<Fence>>)> {
    let pace = Pace::new(args.concurrency, args.max_requests_per_second, metrics);
    let fence = args.leader_election.then(|| Fence::new(&args.lease_settings()));
    let clients = match election_client(fence.clone()).await {
        Ok(client) => paced_client(pace, FenceLayer(fence.clone())).await.map(|paced| (client, paced, fence)),
        Err(error) => Err(error),
    };
    clients.inspect_err(|error| error!(%error, "no Kubernetes client: set KUBECONFIG or run in a cluster")).ok()
}

/// Serves /metrics and the probes until the controller stops.
async fn serve_probes(
    addr: SocketAddr,
    probes: Probes,
    stop: watch::Receiver<Option<Stop>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            error!(%addr, %error, "cannot serve metrics and probes");
            return None;
        }
    };
    info!(addr = %listener.local_addr().map_or(addr, |a| a), "serving /metrics, /healthz, /readyz");
    Some(tokio::spawn(serve(listener, probes, stopped(stop))))
}

fn stop_on_signal(stop: watch::Sender<Option<Stop>>) {
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested: finishing in-flight work");
        let _ = stop.send(Some(Stop::Signal));
    });
}

/// How waiting for the Lease ended.
enum Election {
    /// This replica leads (without leader election, at once); the Lease and the task that stops
    /// the controller when it is lost.
    Leading(Option<(Leadership, tokio::task::JoinHandle<()>)>),
    /// Stopped before it was elected; the Lease is released.
    Stopped,
    Failed,
}

async fn elect(
    args: &RunArgs,
    client: Client,
    fence: Option<Arc<Fence>>,
    stop_tx: &watch::Sender<Option<Stop>>,
    stop_rx: watch::Receiver<Option<Stop>>,
) -> Election {
    if !args.leader_election {
        return Election::Leading(None);
    }
    let mut election = match Leadership::join(client, &args.lease_settings()).await {
        Ok(election) => election,
        Err(error) => {
            error!(%error, "cannot join leader election");
            return Election::Failed;
        }
    };
    tokio::select! {
        acquired = election.acquired() => if !acquired {
            error!("leader election ended before this replica was elected");
            return Election::Failed;
        },
        _ = stopped(stop_rx) => {
            election.release().await;
            return Election::Stopped;
        }
    }
    info!("elected leader");
    let mut is_leader = election.subscribe();
    let lost_tx = stop_tx.clone();
    let lost_watch = tokio::spawn(async move {
        let fence_closed = async {
            match &fence {
                Some(fence) => fence.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            lost = is_leader.wait_for(|leading| !*leading) => if lost.is_err() { return },
            () = fence_closed => {}
        }
        error!("lost the leader Lease: stopping");
        let _ = lost_tx.send(Some(Stop::LostLease));
    });
    Election::Leading(Some((election, lost_watch)))
}

async fn stopped(mut stop: watch::Receiver<Option<Stop>>) {
    let _ = stop.wait_for(Option::is_some).await;
}

/// Resolves once the controller is asked to stop for this `reason`; never for another.
async fn stopped_by(mut stop: watch::Receiver<Option<Stop>>, reason: Stop) {
    if stop.wait_for(|stop| *stop == Some(reason)).await.is_err() {
        std::future::pending::<()>().await;
    }
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
    /// A standby replica is ready as it is: it has nothing to sync until elected.
    leading: Arc<AtomicBool>,
}

impl Probes {
    fn ready(&self) -> bool {
        !self.leading.load(Ordering::Relaxed) || self.stores.is_ready()
    }

    /// The exposition, without the series of credentials gone since they were set.
    fn metrics(&self) -> String {
        self.metrics.retain_credentials(|name| self.stores.has_credential(name));
        self.metrics.encode()
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    probes: Probes,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(|State(p): State<Probes>| async move { p.metrics() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(p): State<Probes>| async move {
                if p.ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "caches syncing") }
            }),
        )
        .with_state(probes);
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        error!(%error, "HTTP server failed");
    }
}
