//! One active replica: leader election on a coordination.k8s.io Lease (kube-lease-manager), and
//! the fence that keeps a replica which lost the Lease from writing.
//!
//! The election tells a replica it lost the Lease only once it has talked to the API server
//! again: a replica paused past the Lease's expiry (a stopped process, a starved node, a network
//! partition) would run its in-flight work beside the new leader until then. The [`Fence`]
//! knows without asking: every Lease write the API server answers with this replica as holder
//! keeps the fence open for the Lease duration from when that write was sent, on the monotonic
//! clock; every other request of the controllers that writes is refused once it has closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Either, Full};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::client::{Body, ClientBuilder};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{BoxError, Layer, Service};
use tracing::{info, warn};

use crate::controller::FIELD_MANAGER;

#[derive(Debug, Clone)]
pub(crate) struct LeaseSettings {
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// This replica's name in the Lease's `holderIdentity`.
    pub(crate) identity: String,
    /// How long a Lease held by a replica that stopped renewing keeps others waiting.
    pub(crate) duration_seconds: u64,
    /// How long before expiry the holder renews.
    pub(crate) grace_seconds: u64,
}

/// A running election: the Lease is acquired and renewed in the background.
pub(crate) struct Leadership {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Joins the election for the Lease (creating it if needed).
    pub(crate) async fn join(client: Client, settings: &LeaseSettings) -> Result<Leadership, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration_seconds)
            .with_grace(settings.grace_seconds)
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joined leader election");
        Ok(Leadership { is_leader, task })
    }

    /// Resolves once this replica holds the Lease; `false` if the election ended first.
    pub(crate) async fn acquired(&mut self) -> bool {
        self.is_leader.wait_for(|leading| *leading).await.is_ok()
    }

    /// A receiver that turns `false` when this replica loses the Lease.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Gives the Lease up, so a standby replica takes over without waiting for it to expire.
    pub(crate) async fn release(self) {
        let Leadership { is_leader, task } = self;
        // The manager releases the Lease once every receiver is gone.
        drop(is_leader);
        match task.await {
            Ok(Ok(_)) => info!("leader Lease released"),
            Ok(Err(error)) => warn!(%error, "could not release the leader Lease"),
            Err(error) => warn!(%error, "leader election task failed"),
        }
    }
}

/// Until when this replica may write: the Lease duration from the send of the last Lease write
/// that the API server answered with this replica as holder, less [`fence_margin`]. Closed until
/// the Lease is first held, and at once when an answer names another holder (or none).
pub(crate) struct Fence {
    lease: LeaseSettings,
    open_until: Mutex<Option<Instant>>,
}

/// How long before the Lease's expiry the fence closes: the other replicas judge expiry by their
/// wall clocks against the `renewTime` this replica wrote, and this margin covers their clocks
/// running ahead of ours. Half the grace (at most 2 s), so that the renewal, sent a grace ahead
/// of expiry, has the other half to be answered before the fence closes.
fn fence_margin(grace: Duration) -> Duration {
    (grace / 2).min(Duration::from_secs(2))
}

impl Fence {
    pub(crate) fn new(lease: &LeaseSettings) -> Arc<Fence> {
        Arc::new(Fence { lease: lease.clone(), open_until: Mutex::new(None) })
    }

    /// Takes note of the API server's answer to a Lease write sent at `sent`.
    fn observe(&self, sent: Instant, lease: &Lease) {
        if lease.metadata.name.as_deref() != Some(&self.lease.name)
            || lease.metadata.namespace.as_deref() != Some(&self.lease.namespace)
        {
            return;
        }
        let spec = lease.spec.as_ref();
        let held = spec.and_then(|spec| spec.holder_identity.as_deref()) == Some(self.lease.identity.as_str());
        let mut open_until = self.open_until.lock().expect("fence lock");
        *open_until = held.then(|| {
            let seconds = spec
                .and_then(|spec| spec.lease_duration_seconds)
                .map_or(self.lease.duration_seconds, |s| u64::try_from(s).unwrap_or_default());
            let duration = Duration::from_secs(seconds);
            sent + duration.saturating_sub(fence_margin(Duration::from_secs(self.lease.grace_seconds)))
        });
    }

    /// Whether this replica may write at `now`.
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        self.open_until.lock().expect("fence lock").is_some_and(|until| now < until)
    }

    /// Resolves once the fence is closed: the Lease went unrenewed past its deadline, or another
    /// replica holds it.
    pub(crate) async fn closed(&self) {
        loop {
            let until = *self.open_until.lock().expect("fence lock");
            match until {
                Some(until) if Instant::now() < until => tokio::time::sleep_until(until.into()).await,
                _ => return,
            }
        }
    }
}

/// The client of leader election and discovery: every Lease write's answer reaches `fence`.
pub(crate) async fn election_client(fence: Option<Arc<Fence>>) -> Result<Client, BoxError> {
    let builder = ClientBuilder::try_from(kube::Config::infer().await?)?;
    Ok(match fence {
        Some(fence) => builder.with_layer(&LeaseWrites(fence)).build(),
        None => builder.build(),
    })
}

/// A write refused because this replica no longer holds the Lease.
#[derive(Debug, Error)]
#[error("not written: this replica no longer holds the leader Lease")]
pub(crate) struct Fenced;

fn writes(request: &Request<Body>) -> bool {
    !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The layer that refuses the controllers' writes once the [`Fence`] is closed (without leader
/// election, none), checked as the request leaves: one that waited (behind the pace, or in a
/// paused process) is judged then.
#[derive(Clone)]
pub(crate) struct FenceLayer(pub(crate) Option<Arc<Fence>>);

impl<S> Layer<S> for FenceLayer {
    type Service = FencedService<S>;

    fn layer(&self, inner: S) -> FencedService<S> {
        FencedService { fence: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub(crate) struct FencedService<S> {
    fence: Option<Arc<Fence>>,
    inner: S,
}

type Answer<B> = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

impl<S, B> Service<Request<Body>> for FencedService<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Answer<B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Answer<B> {
        let closed = self.fence.as_ref().is_some_and(|fence| !fence.is_open(Instant::now()));
        if closed && writes(&request) {
            return Box::pin(std::future::ready(Err(Fenced.into())));
        }
        Box::pin(self.inner.call(request))
    }
}

/// The layer of the election's client that shows the [`Fence`] each answer to a Lease write.
#[derive(Clone)]
struct LeaseWrites(Arc<Fence>);

impl<S> Layer<S> for LeaseWrites {
    type Service = LeaseWritesService<S>;

    fn layer(&self, inner: S) -> LeaseWritesService<S> {
        LeaseWritesService { fence: self.0.clone(), inner }
    }
}

#[derive(Clone)]
struct LeaseWritesService<S> {
    fence: Arc<Fence>,
    inner: S,
}

fn is_lease_write(request: &Request<Body>) -> bool {
    writes(request) && request.uri().path().starts_with("/apis/coordination.k8s.io/")
}

impl<S, B> Service<Request<Body>> for LeaseWritesService<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<B, Full<Bytes>>>;
    type Error = BoxError;
    type Future = Answer<Either<B, Full<Bytes>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (fence, lease_write, sent) = (self.fence.clone(), is_lease_write(&request), Instant::now());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let (parts, body) = answer.await.map_err(Into::into)?.into_parts();
            if !lease_write || !parts.status.is_success() {
                return Ok(Response::from_parts(parts, Either::Left(body)));
            }
            // A Lease is small: read it whole, take note, hand the same bytes on.
            let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
            if let Ok(lease) = serde_json::from_slice::<Lease>(&bytes) {
                fence.observe(sent, &lease);
            }
            Ok(Response::from_parts(parts, Either::Right(Full::new(bytes))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            name: "regcred-operator".into(),
            namespace: "regcred-system".into(),
            identity: "replica-a".into(),
            duration_seconds: 8,
            grace_seconds: 2,
        }
    }

    fn lease(holder: Option<&str>) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "regcred-operator", "namespace": "regcred-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 8},
        }))
        .unwrap()
    }

    #[test]
    fn the_fence_opens_for_the_lease_duration_from_a_write_that_holds_it_less_the_margin() {
        let fence = Fence::new(&settings());
        let sent = Instant::now();
        assert!(!fence.is_open(sent), "closed until the Lease is held");
        fence.observe(sent, &lease(Some("replica-a")));
        assert!(fence.is_open(sent + Duration::from_millis(6_900)));
        assert!(!fence.is_open(sent + Duration::from_secs(7)), "8 s less half the 2 s grace");
        fence.observe(sent + Duration::from_secs(4), &lease(Some("replica-a")));
        assert!(fence.is_open(sent + Duration::from_secs(9)), "a renewal moves the deadline");
    }

    #[test]
    fn an_answer_naming_another_holder_or_none_closes_the_fence_at_once() {
        let fence = Fence::new(&settings());
        let sent = Instant::now();
        for other in [Some("replica-b"), None] {
            fence.observe(sent, &lease(Some("replica-a")));
            fence.observe(sent, &lease(other));
            assert!(!fence.is_open(sent), "{other:?} holds it");
        }
        let mut elsewhere = lease(Some("replica-a"));
        elsewhere.metadata.name = Some("another-lease".into());
        fence.observe(sent, &elsewhere);
        assert!(!fence.is_open(sent), "another Lease says nothing of ours");
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_writes_and_lets_reads_through() {
        let fence = Fence::new(&settings());
        let answered = tower::service_fn(|_: Request<Body>| async { Ok::<_, BoxError>(Response::new(Body::empty())) });
        let mut service = FenceLayer(Some(fence.clone())).layer(answered);
        let request =
            |method: Method| Request::builder().method(method).uri("/api/v1/secrets").body(Body::empty()).unwrap();
        assert!(service.call(request(Method::GET)).await.is_ok());
        for method in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
            let refused = service.call(request(method.clone())).await.unwrap_err();
            assert!(refused.is::<Fenced>(), "{method} refused: {refused}");
        }
        fence.observe(Instant::now(), &lease(Some("replica-a")));
        assert!(service.call(request(Method::PATCH)).await.is_ok(), "open while the Lease is held");
    }

    #[tokio::test]
    async fn closed_resolves_when_the_deadline_passes_unrenewed() {
        let fence = Fence::new(&LeaseSettings { duration_seconds: 1, grace_seconds: 1, ..settings() });
        fence.observe(Instant::now(), &lease(Some("replica-a")));
        let mut one_second = lease(Some("replica-a"));
        one_second.spec.as_mut().unwrap().lease_duration_seconds = Some(1);
        fence.observe(Instant::now(), &one_second);
        assert!(fence.is_open(Instant::now()));
        tokio::time::timeout(Duration::from_secs(3), fence.closed())
            .await
            .expect("closed after 1 s less half the grace");
        assert!(!fence.is_open(Instant::now()));
    }
}
