//! A fault-injecting HTTP/1.1 reverse proxy for S3 and EC2 tests.
//!
//! Every request is read whole before a rule is applied, as a real server would have read it
//! before failing, then either answered with an S3-style or EC2-style error, dropped
//! (connection closed without an answer), delayed, or forwarded to the upstream (moto), whose
//! answer a rule may rewrite. Each request goes to the upstream on a fresh connection, which
//! keeps the proxy simple; moto is local.
//!
//! S3 requests are told apart by method, path and query. EC2's API is one path and a POST form
//! body (`Action=CreateSnapshot&VolumeId=...`), so rules can also match on the body
//! ([`Rule::body_contains`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a matching request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer with this status and an S3 `<Error>` body carrying `code` and `message`.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// Close the connection without answering, after reading the request.
    Reset,
    /// Answer with this status and an EC2 `<Response><Errors><Error>` body carrying `code`
    /// and `message`, as EC2 (and every AWS query-protocol service) does.
    Ec2Status {
        status: u16,
        code: String,
        message: String,
    },
    /// Wait, then go on (other rules still apply; latencies add up).
    Latency(Duration),
    /// Forward the request, then replace every `from` in the upstream's response body by `to`
    /// (e.g. `<status>completed</status>` by `<status>pending</status>`: a snapshot that never
    /// completes). Other rules still apply; rewrites are applied in the order rules were added,
    /// and only to forwarded requests.
    Rewrite { from: String, to: String },
}

/// One injected fault: which requests (all conditions must hold), what happens, how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub query_contains: Option<String>,
    /// Exact `name=value` query parameters, for when a substring is ambiguous
    /// (`partNumber=1` is a substring of `partNumber=10`).
    pub query_params: Vec<(String, String)>,
    /// A substring of the request body, e.g. `Action=DescribeSnapshots` for EC2.
    pub body_contains: Option<String>,
    pub action: Action,
    /// Fire at most this many times; `None` for ever.
    pub times: Option<u64>,
    /// Fire with this probability (0.0-1.0) for each matching request.
    pub probability: f64,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            method: None,
            path_contains: None,
            query_contains: None,
            query_params: Vec::new(),
            body_contains: None,
            action,
            times: None,
            probability: 1.0,
        }
    }

    /// An S3 error answer.
    pub fn status(status: u16, code: &str, message: &str) -> Rule {
        Rule::new(Action::Status {
            status,
            code: code.to_string(),
            message: message.to_string(),
        })
    }

    /// 500 InternalError, which S3 clients retry.
    pub fn internal_error() -> Rule {
        Rule::status(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }

    /// 503 SlowDown, S3's throttling answer.
    pub fn slow_down() -> Rule {
        Rule::status(503, "SlowDown", "Please reduce your request rate.")
    }

    /// An EC2 error answer, e.g. `Rule::ec2_error(503, "RequestLimitExceeded", "Request limit
    /// exceeded.")`, EC2's throttling. Combine with [`Rule::body_contains`] to pick the action.
    pub fn ec2_error(status: u16, code: &str, message: &str) -> Rule {
        Rule::new(Action::Ec2Status {
            status,
            code: code.to_string(),
            message: message.to_string(),
        })
    }

    /// 503 RequestLimitExceeded, EC2's throttling answer.
    pub fn ec2_request_limit_exceeded() -> Rule {
        Rule::ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
    }

    /// Forwards, then replaces `from` by `to` in the upstream's response body.
    pub fn rewrite(from: &str, to: &str) -> Rule {
        Rule::new(Action::Rewrite {
            from: from.to_string(),
            to: to.to_string(),
        })
    }

    pub fn reset() -> Rule {
        Rule::new(Action::Reset)
    }

    pub fn latency(delay: Duration) -> Rule {
        Rule::new(Action::Latency(delay))
    }

    #[must_use]
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    #[must_use]
    pub fn path_contains(mut self, text: &str) -> Rule {
        self.path_contains = Some(text.to_string());
        self
    }

    #[must_use]
    pub fn query_contains(mut self, text: &str) -> Rule {
        self.query_contains = Some(text.to_string());
        self
    }

    #[must_use]
    pub fn query_param(mut self, name: &str, value: &str) -> Rule {
        self.query_params
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Matches requests whose body contains `text`. For EC2, `Action=CreateSnapshot&` picks
    /// one operation (the `&` keeps `Action=CreateSnapshot` from matching `CreateSnapshots`).
    #[must_use]
    pub fn body_contains(mut self, text: &str) -> Rule {
        self.body_contains = Some(text.to_string());
        self
    }

    #[must_use]
    pub fn times(mut self, n: u64) -> Rule {
        self.times = Some(n);
        self
    }

    #[must_use]
    pub fn probability(mut self, p: f64) -> Rule {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str, body: &[u8]) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
            && self.query_params.iter().all(|(name, value)| {
                query.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    k == name && v == value
                })
            })
            && self
                .body_contains
                .as_deref()
                .is_none_or(|b| contains(body, b.as_bytes()))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Handle to a rule, to remove it or ask how often it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

/// One request as the proxy saw it. `status` is 0 for a reset connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Request headers (names in lower case), to check what went over the wire where the
    /// emulator does not keep it.
    pub headers: Vec<(String, String)>,
    /// The start of the request body ([`BODY_RECORDED`] bytes at most, lossy UTF-8): enough for
    /// an EC2 form body, not a copy of every S3 part.
    pub body: String,
}

/// How much of each request body [`RequestRecord::body`] keeps.
pub const BODY_RECORDED: usize = 16 * 1024;

impl RequestRecord {
    /// The EC2 (query protocol) operation: `CreateSnapshot` for a body `Action=CreateSnapshot&...`.
    pub fn ec2_action(&self) -> Option<&str> {
        self.body
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    upstream: String,
    next_id: AtomicU64,
    rules: Mutex<Vec<(RuleId, Rule, u64)>>,
    log: Mutex<Vec<RequestRecord>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a request as in flight while it lives.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn new(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What to do with one request.
#[derive(Default)]
struct Decision {
    latency: Duration,
    action: Option<Action>,
    /// `(from, to)` replacements for the upstream's answer.
    rewrites: Vec<(String, String)>,
}

impl State {
    fn decide(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Decision {
        let mut d = Decision::default();
        for (_, rule, fired) in lock(&self.rules).iter_mut() {
            if rule.times.is_some_and(|n| *fired >= n) || !rule.matches(method, path, query, body) {
                continue;
            }
            if rule.probability < 1.0 && rand::random::<f64>() >= rule.probability {
                continue;
            }
            match &rule.action {
                Action::Latency(l) => {
                    *fired += 1;
                    d.latency += *l;
                }
                Action::Rewrite { from, to } => {
                    *fired += 1;
                    d.rewrites.push((from.clone(), to.clone()));
                }
                other if d.action.is_none() => {
                    *fired += 1;
                    d.action = Some(other.clone());
                }
                _ => {}
            }
        }
        d
    }

    fn record(&self, head: &http::request::Parts, body: &[u8], status: u16) {
        lock(&self.log).push(RequestRecord {
            method: head.method.to_string(),
            path: head.uri.path().to_string(),
            query: head.uri.query().unwrap_or("").to_string(),
            status,
            headers: head
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body[..body.len().min(BODY_RECORDED)]).into_owned(),
        });
    }
}

/// The proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    /// Must be called inside a tokio runtime, which runs the proxy.
    pub fn start(upstream: &str) -> FaultProxy {
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/')
            .to_string();
        assert!(
            authority.starts_with("127.0.0.1:") || authority.starts_with("localhost:"),
            "the fault proxy only forwards to loopback, not {upstream}"
        );
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let listener =
            TcpListener::from_std(listener).expect("FaultProxy::start needs a tokio runtime");
        let state = Arc::new(State {
            upstream: authority,
            next_id: AtomicU64::new(0),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        FaultProxy { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`, to use as the store's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, rule: Rule) -> RuleId {
        let id = RuleId(self.state.next_id.fetch_add(1, Ordering::Relaxed));
        lock(&self.state.rules).push((id, rule, 0));
        id
    }

    pub fn remove(&self, id: RuleId) {
        lock(&self.state.rules).retain(|(i, _, _)| *i != id);
    }

    pub fn clear_rules(&self) {
        lock(&self.state.rules).clear();
    }

    /// How many requests the rule has acted on.
    pub fn fired(&self, id: RuleId) -> u64 {
        lock(&self.state.rules)
            .iter()
            .find(|(i, _, _)| *i == id)
            .map_or(0, |(_, _, n)| *n)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }

    /// The most requests the proxy was handling at once, to check a client's concurrency
    /// bound (add latency so that requests overlap).
    pub fn max_concurrent(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_max_concurrent(&self) {
        self.state.max_in_flight.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; connections live in a set owned by this task, so
/// aborting it closes them all.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Hop-by-hop headers, and `expect` (the proxy has already taken the whole body).
fn forwardable(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
    )
}

/// Returning `Err` makes hyper close the connection without an answer.
async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let _in_flight = InFlight::new(&state);
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let decision = state.decide(&method, &path, &query, &body);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let response = match decision.action {
        Some(Action::Reset) => {
            state.record(&parts, &body, 0);
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault: connection reset",
            ));
        }
        Some(Action::Status {
            status,
            code,
            message,
        }) => s3_error(&parts.method, status, &code, &message, &path),
        Some(Action::Ec2Status {
            status,
            code,
            message,
        }) => ec2_error(status, &code, &message),
        Some(Action::Latency(_) | Action::Rewrite { .. }) | None => {
            forward(&state.upstream, &parts, body.clone(), &decision.rewrites)
                .await
                .unwrap_or_else(|e| {
                    s3_error(
                        &http::Method::GET,
                        502,
                        "BadGateway",
                        &format!("fault proxy: upstream failed: {e}"),
                        &path,
                    )
                })
        }
    };
    state.record(&parts, &body, response.status().as_u16());
    Ok(response)
}

fn s3_error(
    method: &http::Method,
    status: u16,
    code: &str,
    message: &str,
    resource: &str,
) -> Response<Full<Bytes>> {
    static REQUEST: AtomicU64 = AtomicU64::new(0);
    let id = format!("testkit-{}", REQUEST.fetch_add(1, Ordering::Relaxed));
    // Like S3: errors to HEAD requests have no body.
    let body = if method == http::Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource><RequestId>{id}</RequestId></Error>"
        ))
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", id)
        .body(Full::new(body))
        .expect("static response parts are valid")
}

/// EC2's error document (the query protocol's), which aws-sdk-ec2 parses for the code.
fn ec2_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    static REQUEST: AtomicU64 = AtomicU64::new(0);
    let id = format!("testkit-ec2-{}", REQUEST.fetch_add(1, Ordering::Relaxed));
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
    );
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/xml;charset=UTF-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Replaces every `from` by `to`, in order.
fn rewrite(body: Bytes, rewrites: &[(String, String)]) -> Bytes {
    if rewrites.is_empty() {
        return body;
    }
    let mut text = String::from_utf8_lossy(&body).into_owned();
    for (from, to) in rewrites {
        text = text.replace(from.as_str(), to);
    }
    Bytes::from(text)
}

async fn forward(
    upstream: &str,
    parts: &http::request::Parts,
    body: Bytes,
    rewrites: &[(String, String)],
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), ToString::to_string);
    let mut req = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        if forwardable(name) && name != header::CONTENT_LENGTH {
            req = req.header(name, value);
        }
    }
    if !body.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH) {
        req = req.header(header::CONTENT_LENGTH, body.len());
    }
    let response = sender.send_request(req.body(Full::new(body))?).await?;
    let (rparts, rbody) = response.into_parts();
    let rbody = rbody.collect().await?.to_bytes();
    conn.abort();
    let rewritten = !rewrites.is_empty();
    let rbody = rewrite(rbody, rewrites);
    let mut out = Response::builder().status(rparts.status);
    for (name, value) in &rparts.headers {
        // A rewritten body has another length (hyper sets it from the body) and no longer
        // matches the upstream's checksums.
        let stale = rewritten
            && (name == header::CONTENT_LENGTH
                || name == header::ETAG
                || name.as_str() == "content-md5"
                || name.as_str().starts_with("x-amz-checksum-"));
        if forwardable(name) && !stale {
            out = out.header(name, value);
        }
    }
    Ok(out.body(Full::new(rbody))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_on_method_path_and_query() {
        let r = Rule::internal_error()
            .method("put")
            .path_contains("/bucket/")
            .query_param("partNumber", "3");
        assert!(r.matches("PUT", "/bucket/k", "partNumber=3&uploadId=x", b""));
        assert!(!r.matches("PUT", "/bucket/k", "partNumber=30&uploadId=x", b""));
        assert!(!r.matches("GET", "/bucket/k", "partNumber=3", b""));
        assert!(!r.matches("PUT", "/other/k", "partNumber=3", b""));
        let q = Rule::reset().query_contains("uploadId");
        assert!(q.matches("POST", "/b/k", "uploadId=abc", b""));
        assert!(!q.matches("POST", "/b/k", "uploads", b""));
    }

    #[test]
    fn rules_match_on_the_body() {
        let r = Rule::ec2_request_limit_exceeded().body_contains("Action=CreateSnapshot&");
        assert!(r.matches("POST", "/", "", b"Action=CreateSnapshot&Version=2016-11-15"));
        assert!(!r.matches(
            "POST",
            "/",
            "",
            b"Action=CreateSnapshots&Version=2016-11-15"
        ));
        assert!(!r.matches("POST", "/", "", b""));
        assert!(Rule::reset().matches("POST", "/", "", b"anything"));
    }

    #[tokio::test]
    async fn ec2_errors_carry_the_code_in_ec2s_document() {
        let response = ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
        assert_eq!(response.status(), 503);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes);
        assert!(
            body.contains("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>"),
            "{body}"
        );
    }

    #[test]
    fn rewrites_replace_every_occurrence_in_order() {
        let body = Bytes::from_static(b"<status>completed</status><status>completed</status>");
        let out = rewrite(
            body,
            &[
                ("completed".to_string(), "pending".to_string()),
                (
                    "pending</status><".to_string(),
                    "error</status><".to_string(),
                ),
            ],
        );
        assert_eq!(&out[..], b"<status>error</status><status>pending</status>");
    }

    #[test]
    fn the_ec2_action_is_read_from_the_recorded_body() {
        let record = RequestRecord {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            status: 200,
            headers: Vec::new(),
            body: "Action=DescribeSnapshots&Version=2016-11-15&SnapshotId.1=snap-1".into(),
        };
        assert_eq!(record.ec2_action(), Some("DescribeSnapshots"));
    }

    #[test]
    fn times_limits_firing_and_latency_adds_up() {
        let state = State {
            upstream: String::new(),
            next_id: AtomicU64::new(0),
            rules: Mutex::new(vec![
                (RuleId(0), Rule::latency(Duration::from_millis(5)), 0),
                (RuleId(1), Rule::latency(Duration::from_millis(7)), 0),
                (RuleId(2), Rule::slow_down().times(1), 0),
                (RuleId(3), Rule::rewrite("a", "b"), 0),
            ]),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        };
        let first = state.decide("GET", "/", "", b"");
        assert_eq!(first.latency, Duration::from_millis(12));
        assert!(matches!(
            first.action,
            Some(Action::Status { status: 503, .. })
        ));
        assert_eq!(first.rewrites, vec![("a".to_string(), "b".to_string())]);
        let second = state.decide("GET", "/", "", b"");
        assert!(second.action.is_none());
        assert_eq!(second.rewrites.len(), 1);
    }
}
