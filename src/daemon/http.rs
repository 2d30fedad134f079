//! The daemon's HTTP endpoint on `server.listen`: probes for Kubernetes and metrics for
//! Prometheus.
//!
//! - `GET /healthz` (liveness): 200 `ok` while the scheduler loop beats ([`Health`]), 503 with
//!   the reason once its last beat is older than the threshold. It checks nothing outside the
//!   process, so an S3 outage never gets the pod restarted.
//! - `GET /ready` (readiness): runs the daemon's [`ReadyCheck`] (config loaded, storage and API
//!   server reachable). Its result, good or bad, is reused for a few seconds and concurrent
//!   probes share one check, so probes do not hammer S3; a check that hangs fails after 5 s.
//! - `GET /metrics`: the [`Metrics`] exposition, OpenMetrics when the scraper asks for it (as
//!   Prometheus does), else the Prometheus text format.
//!
//! Anything else is 404, and another method on these paths 405. Answers are small and plain
//! text, so a person with `curl` reads them as easily as the kubelet does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// How long a readiness result is reused by default.
/// Liveness: the scheduler loop is alive (the chart's livenessProbe and startupProbe).
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: config loaded, storage and the API server reachable (the chart's readinessProbe).
pub const READY_PATH: &str = "/ready";
/// The Prometheus exposition (the chart's Service and ServiceMonitor).
pub const METRICS_PATH: &str = "/metrics";

pub const READY_CACHE: Duration = Duration::from_secs(5);

/// How long a readiness check may take by default before it counts as failed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that has not sent a whole request header by then is disconnected, so an idle or
/// slow connection cannot hold a shutdown up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The scheduler loop's heartbeat. The loop calls [`Health::beat`] on every turn (on every
/// replica, leader or not); `/healthz` fails once the last beat is older than `stale_after`.
#[derive(Debug)]
pub struct Health {
    origin: Instant,
    stale_after: Duration,
    /// Nanoseconds from `origin` to the last beat.
    last_beat: AtomicU64,
}

impl Health {
    /// A heartbeat that counts as having beaten now, so the loop has `stale_after` to start.
    pub fn new(stale_after: Duration) -> Self {
        Health {
            origin: Instant::now(),
            stale_after,
            last_beat: AtomicU64::new(0),
        }
    }

    /// The scheduler loop is alive now.
    pub fn beat(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_beat.fetch_max(nanos, Ordering::Relaxed);
    }

    /// `Ok` while the last beat is younger than the threshold; otherwise why not.
    pub fn alive(&self) -> Result<(), String> {
        let last = self.origin + Duration::from_nanos(self.last_beat.load(Ordering::Relaxed));
        let since = last.elapsed();
        if since <= self.stale_after {
            Ok(())
        } else {
            Err(format!(
                "the scheduler loop has not run for {:.1}s (limit {:.1}s): it is stuck or has stopped",
                since.as_secs_f64(),
                self.stale_after.as_secs_f64()
            ))
        }
    }
}

/// The daemon's readiness check: `Ok` when the config is loaded and storage and the API server
/// answer; `Err` says which is not and why.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What the endpoints answer from.
pub struct State {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub ready: ReadyCheck,
    ready_cache: Duration,
    ready_timeout: Duration,
    /// The last readiness result and when it was taken. Held while a check runs, so
    /// concurrent probes wait for that check instead of starting their own.
    last_ready: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("health", &self.health)
            .field("ready_cache", &self.ready_cache)
            .field("ready_timeout", &self.ready_timeout)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Readiness results are reused for [`READY_CACHE`] and checks time out after
    /// [`READY_TIMEOUT`].
    pub fn new(metrics: Arc<Metrics>, health: Arc<Health>, ready: ReadyCheck) -> Self {
        State {
            metrics,
            health,
            ready,
            ready_cache: READY_CACHE,
            ready_timeout: READY_TIMEOUT,
            last_ready: tokio::sync::Mutex::new(None),
        }
    }

    /// How long a readiness result, good or bad, is reused (zero: never).
    #[must_use]
    pub fn ready_cache(mut self, ttl: Duration) -> Self {
        self.ready_cache = ttl;
        self
    }

    /// How long a readiness check may run before it counts as failed.
    #[must_use]
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The readiness result, from the cache while it is fresh.
    pub async fn readiness(&self) -> Result<(), String> {
        let mut last = self.last_ready.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < self.ready_cache
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(self.ready_timeout, (self.ready)()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the readiness check did not answer within {:.1}s (storage or the API server is slow or unreachable)",
                self.ready_timeout.as_secs_f64()
            )),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Binds the listener for `server.listen`. The error names the address and says why in words
/// an operator can act on; its kind is the OS's.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is already in use (another process, or another lifeboat, listens there); stop it or change server.listen".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); use a higher port in server.listen".to_owned()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "the address is not one of this host's; use 0.0.0.0, [::] or one of its addresses in server.listen".to_owned()
            }
            _ => e.to_string(),
        };
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} (server.listen): {why}"))
    })
}

/// Serves the endpoints until `shutdown` completes. It then stops accepting connections, lets
/// the requests in flight finish (idle keep-alive connections are closed) and returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /healthz, /ready and /metrics");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let mut stop = stop_rx.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<_>| {
                        let state = Arc::clone(&state);
                        // The body is never read: every endpoint answers GET.
                        let (parts, _body) = req.into_parts();
                        async move { Ok::<_, Infallible>(handle(&state, &parts).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    let result = tokio::select! {
                        result = conn.as_mut() => result,
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
}

async fn handle(state: &State, req: &Parts) -> Response<Full<Bytes>> {
    let path = req.uri.path();
    if ![HEALTHZ_PATH, READY_PATH, METRICS_PATH].contains(&path) {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /ready or /metrics\n",
        );
    }
    if req.method != Method::GET {
        let mut res = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed: {path} answers GET\n", req.method),
        );
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return res;
    }
    match path {
        HEALTHZ_PATH => probe(state.health.alive()),
        READY_PATH => probe(state.readiness().await),
        _ => {
            let (body, content_type) = if wants_openmetrics(req) {
                (
                    state.metrics.encode_openmetrics(),
                    Metrics::OPENMETRICS_CONTENT_TYPE,
                )
            } else {
                (state.metrics.encode(), Metrics::CONTENT_TYPE)
            };
            let mut res = Response::new(Full::new(Bytes::from(body)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            res
        }
    }
}

fn probe(result: Result<(), String>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => text(StatusCode::OK, "ok\n"),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Whether the `Accept` header takes OpenMetrics text (with a non-zero quality), as
/// Prometheus' does by default. Anything else (curl's `*/*`, no header) gets format 0.0.4.
fn wants_openmetrics(req: &Parts) -> bool {
    req.headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn request(method: Method, path: &str, accept: Option<&str>) -> Parts {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(accept) = accept {
            b = b.header(header::ACCEPT, accept);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn state_with(check: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> State {
        let check = Arc::new(check);
        State::new(
            Arc::new(Metrics::new()),
            Arc::new(Health::new(Duration::from_mins(1))),
            Arc::new(move || {
                let check = Arc::clone(&check);
                Box::pin(async move { check() })
            }),
        )
    }

    async fn body(res: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt as _;
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn health_is_alive_until_the_beat_is_stale() {
        let health = Health::new(Duration::from_millis(50));
        assert_eq!(health.alive(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        let why = health.alive().unwrap_err();
        assert!(why.contains("scheduler loop has not run"), "{why}");
        health.beat();
        assert_eq!(health.alive(), Ok(()));
    }

    #[test]
    fn openmetrics_is_negotiated_from_accept() {
        let prometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let yes = |a: Option<&str>| wants_openmetrics(&request(Method::GET, "/metrics", a));
        assert!(yes(Some(prometheus)));
        assert!(yes(Some("application/OpenMetrics-Text")));
        assert!(!yes(None));
        assert!(!yes(Some("*/*")));
        assert!(!yes(Some("text/plain;version=0.0.4")));
        assert!(!yes(Some("application/openmetrics-text;q=0, text/plain")));
    }

    #[tokio::test]
    async fn routes_and_methods() {
        let state = state_with(|| Ok(()));
        let res = handle(&state, &request(Method::GET, "/nope", None)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = handle(&state, &request(Method::POST, "/metrics", None)).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET");
        let res = handle(&state, &request(Method::GET, "/healthz", None)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body(res).await, "ok\n");
        let res = handle(&state, &request(Method::GET, "/metrics", None)).await;
        assert_eq!(res.headers()[header::CONTENT_TYPE], Metrics::CONTENT_TYPE);
        assert!(body(res).await.contains("lifeboat_build_info{"));
        let res = handle(
            &state,
            &request(
                Method::GET,
                "/metrics",
                Some("application/openmetrics-text"),
            ),
        )
        .await;
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            Metrics::OPENMETRICS_CONTENT_TYPE
        );
        assert!(body(res).await.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn readiness_is_cached_shared_and_reports_the_reason() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let state = Arc::new(
            state_with(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Err("storage s3://b/p: connection refused".to_owned())
            })
            .ready_cache(Duration::from_hours(1)),
        );
        let probes: Vec<_> = (0..8)
            .map(|_| {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let res = handle(&state, &request(Method::GET, "/ready", None)).await;
                    (res.status(), body(res).await)
                })
            })
            .collect();
        for p in probes {
            let (status, text) = p.await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(text, "storage s3://b/p: connection refused\n");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one check for eight probes"
        );
    }

    #[tokio::test]
    async fn a_hanging_readiness_check_times_out() {
        let state = State::new(
            Arc::new(Metrics::new()),
            Arc::new(Health::new(Duration::from_mins(1))),
            Arc::new(|| Box::pin(futures::future::pending())),
        )
        .ready_timeout(Duration::from_millis(50));
        let why = tokio::time::timeout(Duration::from_secs(10), state.readiness())
            .await
            .expect("the check's own timeout ends it")
            .unwrap_err();
        assert!(why.contains("did not answer within 0.1s"), "{why}");
    }

    #[tokio::test]
    async fn bind_errors_name_the_address_and_the_cause() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        let text = e.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("already in use"), "{text}");
        assert!(text.contains("server.listen"), "{text}");
    }
}
