//! How fast the operator talks to the API server: as fast as it answers, slower when it pushes
//! back, and never faster than an optional cap.
//!
//! A layer on the client, under the retry of 429/503/504 responses (which honours `Retry-After`),
//! so that it sees every response the API server sends: each one saying "too many requests"
//! halves the number of requests allowed in flight, each success raises it by one over a round
//! of requests (additive increase, multiplicative decrease), so bursts such as a rotation over
//! 10,000 namespaces settle at the API server's capacity instead of a storm of 429s. Watches are
//! long-lived and neither limited nor counted.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Request, Response, StatusCode};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tokio::sync::Notify;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::leader_election::FenceLayer;
use crate::metrics::Metrics;

/// After a decrease, further "too many requests" within this window are the same overload.
const DECREASE_WINDOW: Duration = Duration::from_millis(250);

/// The limits of one client.
pub(crate) struct Pace {
    in_flight: Mutex<InFlight>,
    released: Notify,
    max_in_flight: f64,
    rate: Option<DefaultDirectRateLimiter>,
    metrics: Arc<Metrics>,
}

struct InFlight {
    /// Requests allowed in flight now, between 1 and the maximum.
    limit: f64,
    count: usize,
    last_decrease: Option<Instant>,
}

impl Pace {
    /// `max_in_flight` requests at most at once; with `max_per_second`, never more requests than
    /// that per second (bursts up to one second's worth).
    pub(crate) fn new(max_in_flight: usize, max_per_second: Option<NonZeroU32>, metrics: Arc<Metrics>) -> Arc<Pace> {
        let max_in_flight = max_in_flight.max(1) as f64;
        metrics.set_request_limit(max_in_flight as i64);
        Arc::new(Pace {
            in_flight: Mutex::new(InFlight { limit: max_in_flight, count: 0, last_decrease: None }),
            released: Notify::new(),
            max_in_flight,
            rate: max_per_second.map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            metrics,
        })
    }

    async fn admit(self: &Arc<Self>) -> Admitted {
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        loop {
            let released = self.released.notified();
            {
                let mut in_flight = self.in_flight.lock().expect("pace lock");
                if (in_flight.count as f64) < in_flight.limit.floor() {
                    in_flight.count += 1;
                    return Admitted(self.clone());
                }
            }
            released.await;
        }
    }

    /// Adjusts the limit to what the API server said of a request.
    fn observe(&self, status: StatusCode, now: Instant) {
        let mut in_flight = self.in_flight.lock().expect("pace lock");
        let before = in_flight.limit.floor();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            self.metrics.request_throttled();
            if in_flight.last_decrease.is_none_or(|last| now.duration_since(last) >= DECREASE_WINDOW) {
                in_flight.limit = (in_flight.limit / 2.0).max(1.0);
                in_flight.last_decrease = Some(now);
            }
        } else if !status.is_server_error() {
            in_flight.limit = (in_flight.limit + 1.0 / in_flight.limit).min(self.max_in_flight);
        }
        let after = in_flight.limit.floor();
        drop(in_flight);
        if after != before {
            self.metrics.set_request_limit(after as i64);
        }
        if after > before {
            self.released.notify_one();
        }
    }

    /// The current limit of requests in flight.
    #[cfg(test)]
    fn limit(&self) -> usize {
        self.in_flight.lock().expect("pace lock").limit.floor() as usize
    }
}

/// A client whose requests keep `pace`, for the cluster in KUBECONFIG or the one it runs in. 429
/// and 503 responses are retried as kube's default client retries them, honouring `Retry-After`.
/// Its writes stop at `fence` once it closes.
pub(crate) async fn paced_client(pace: Arc<Pace>, fence: FenceLayer) -> Result<Client, BoxError> {
    let mut config = Config::infer().await?;
    // The same retry, placed above the pace so that the pace sees every response.
    config.default_retry = false;
    let client = ClientBuilder::try_from(config)?
        // Nearest the connection: a write is judged as it leaves, after any wait above.
        .with_layer(&fence)
        // The retry clones the service for each attempt; the connection stack is not Clone.
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&PaceLayer(pace))
        .with_layer(&RetryLayer::new(RetryPolicy::server_retry()))
        .build();
    Ok(client)
}

/// A request in flight; dropping it lets the next one go.
struct Admitted(Arc<Pace>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.lock().expect("pace lock").count -= 1;
        self.0.released.notify_one();
    }
}

/// The layer that applies a [`Pace`] to a client's requests.
#[derive(Clone)]
pub(crate) struct PaceLayer(pub(crate) Arc<Pace>);

impl<S> Layer<S> for PaceLayer {
    type Service = Paced<S>;

    fn layer(&self, inner: S) -> Paced<S> {
        Paced { pace: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub(crate) struct Paced<S> {
    pace: Arc<Pace>,
    inner: S,
}

fn is_watch(request: &Request<Body>) -> bool {
    request.uri().query().is_some_and(|query| query.split('&').any(|pair| pair == "watch=true" || pair == "watch=1"))
}

impl<S, B> Service<Request<Body>> for Paced<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service is made ready inside the call, once the request is admitted.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (pace, inner) = (self.pace.clone(), self.inner.clone());
        Box::pin(async move {
            if is_watch(&request) {
                return inner.oneshot(request).await;
            }
            let admitted = pace.admit().await;
            let response = inner.oneshot(request).await;
            if let Ok(response) = &response {
                pace.observe(response.status(), Instant::now());
            }
            drop(admitted);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(max: usize) -> Arc<Pace> {
        Pace::new(max, None, Arc::new(Metrics::default()))
    }

    #[test]
    fn too_many_requests_halves_the_limit_once_per_window_and_successes_win_it_back() {
        let pace = pace(64);
        let start = Instant::now();
        pace.observe(StatusCode::TOO_MANY_REQUESTS, start);
        assert_eq!(pace.limit(), 32);
        pace.observe(StatusCode::TOO_MANY_REQUESTS, start + Duration::from_millis(10));
        assert_eq!(pace.limit(), 32, "the same overload");
        pace.observe(StatusCode::SERVICE_UNAVAILABLE, start + DECREASE_WINDOW);
        assert_eq!(pace.limit(), 16);
        for _ in 0..17 {
            pace.observe(StatusCode::OK, start);
        }
        assert_eq!(pace.limit(), 17, "one more per round of successes (a round is the limit's worth)");
        for _ in 0..10_000 {
            pace.observe(StatusCode::CREATED, start);
        }
        assert_eq!(pace.limit(), 64, "never above the maximum");
        for i in 0..20 {
            pace.observe(StatusCode::TOO_MANY_REQUESTS, start + DECREASE_WINDOW * (i + 2));
        }
        assert_eq!(pace.limit(), 1, "never below one");
    }

    #[tokio::test]
    async fn no_more_requests_are_in_flight_than_the_limit() {
        let pace = pace(2);
        let first = pace.admit().await;
        let _second = pace.admit().await;
        let third = tokio::time::timeout(Duration::from_millis(50), pace.admit()).await;
        assert!(third.is_err(), "a third waits while two are in flight");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), pace.admit()).await;
        assert!(third.is_ok(), "and goes once one is done");
    }

    #[tokio::test]
    async fn a_rate_cap_spaces_requests() {
        let pace = Pace::new(64, NonZeroU32::new(20), Arc::new(Metrics::default()));
        let start = Instant::now();
        for _ in 0..30 {
            drop(pace.admit().await);
        }
        // A burst of one second's worth (20), then 20 per second: the last 10 take about 0.5 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "30 requests at 20/s took {elapsed:?}");
    }

    #[test]
    fn watches_are_told_from_other_requests() {
        let request = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
        assert!(is_watch(&request("/api/v1/namespaces?watch=true&resourceVersion=5")));
        assert!(!is_watch(&request("/api/v1/namespaces?limit=500")));
        assert!(!is_watch(&request("/api/v1/namespaces/a/secrets/watch-true")));
    }
}
