//! HTTP: routing of Kubernetes REST paths onto the cluster, the request log and faults.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cluster::{self, Cluster, DeleteOpts, ListOpts, PatchType, Target, WriteOpts};
use crate::discovery::{self, Flavour};
use crate::faults::{FaultAction, Faults};
use crate::openapi;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::watch::{self, WatchOpts};

type Body = BoxBody<Bytes, Infallible>;

/// One request as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

impl RequestRecord {
    /// Whether the request could change state (any method but GET/HEAD/OPTIONS).
    pub fn is_mutating(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

/// The request log keeps this many newest entries.
const LOG_CAPACITY: usize = 1_000_000;

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub cluster: Arc<Cluster>,
    pub(crate) faults: Faults,
    log: Mutex<std::collections::VecDeque<RequestRecord>>,
    /// Interval of watch bookmarks (a real server sends about one a minute).
    pub bookmark_interval: Duration,
}

impl Shared {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Shared {
            cluster,
            faults: Faults::default(),
            log: Mutex::new(std::collections::VecDeque::new()),
            bookmark_interval: Duration::from_secs(5),
        }
    }

    fn log_lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<RequestRecord>> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log_lock().iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.log_lock().clear();
    }

    fn record(&self, r: RequestRecord) {
        let mut log = self.log_lock();
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(r);
    }
}

/// Accepts connections until the task is aborted; every connection runs in a task owned by
/// this one, so aborting it closes them all.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { handle(shared, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(io, svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Returning `Err` makes hyper close the connection without an answer (the DropConnection fault).
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let decision = shared.faults.decide(&method, &path, &query);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let response = match decision.action {
        Some(FaultAction::DropConnection) => {
            shared.record(RequestRecord {
                method,
                path,
                query,
                status: 0,
            });
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "fault: dropped connection",
            ));
        }
        Some(FaultAction::Status { code, retry_after }) => {
            let (reason, message) = match code {
                429 => (
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                ),
                500 => ("InternalError", "Internal error occurred: injected fault"),
                503 => (
                    "ServiceUnavailable",
                    "The server is currently unable to handle the request",
                ),
                504 => (
                    "Timeout",
                    "The server was unable to return a response in the time allotted, but may still be processing the request",
                ),
                410 => ("Expired", "too old resource version"),
                _ => ("", "injected fault"),
            };
            let mut e = ApiError::new(code, reason, message);
            if let Some(s) = retry_after {
                e = e.header("Retry-After", s.to_string());
                e.body["details"] = json!({"retryAfterSeconds": s});
            }
            error_response(&e)
        }
        Some(FaultAction::ExpireContinue) => {
            let token = query_params(&query)
                .into_iter()
                .find(|(k, _)| k == "continue")
                .map(|(_, v)| v)
                .unwrap_or_default();
            error_response(&cluster::expired(&token))
        }
        Some(FaultAction::Latency(_)) | None => route(&shared, req, &path, &query).await,
    };
    shared.record(RequestRecord {
        method,
        path,
        query,
        status: response.status().as_u16(),
    });
    Ok(response)
}

fn query_params(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Parsed query parameters with the lookups handlers need.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(code: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn value_response(code: u16, v: &Value) -> Response<Body> {
    json_response(code, serde_json::to_vec(v).expect("JSON values serialise"))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = value_response(e.code, &e.body);
    for (name, value) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r
}

async fn route(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    path: &str,
    query: &str,
) -> Response<Body> {
    match route_inner(shared, req, path, query).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn route_inner(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    path: &str,
    query: &str,
) -> Result<Response<Body>, ApiError> {
    let cluster = &shared.cluster;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match segs.as_slice() {
        ["version"] if get => return Ok(value_response(200, &discovery::version())),
        ["healthz" | "readyz" | "livez"] if get => {
            let mut r = Response::new(full("ok"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(r);
        }
        ["api"] if get => {
            return Ok(match Flavour::negotiate(accept.as_deref()) {
                Flavour::Legacy => value_response(200, &discovery::core_versions()),
                f @ Flavour::Aggregated(v) => typed_response(
                    &discovery::aggregated(&cluster.read().registry, true, v),
                    &f.content_type(),
                ),
            });
        }
        ["apis"] if get => {
            let st = cluster.read();
            return Ok(match Flavour::negotiate(accept.as_deref()) {
                Flavour::Legacy => value_response(200, &discovery::group_list(&st.registry)),
                f @ Flavour::Aggregated(v) => typed_response(
                    &discovery::aggregated(&st.registry, false, v),
                    &f.content_type(),
                ),
            });
        }
        ["api", "v1"] if get => {
            return discovery::resource_list(&cluster.read().registry, "", "v1")
                .map(|d| value_response(200, &d))
                .ok_or_else(ApiError::route_not_found);
        }
        ["apis", g] if get => {
            return discovery::group(&cluster.read().registry, g)
                .map(|d| value_response(200, &d))
                .ok_or_else(ApiError::route_not_found);
        }
        ["apis", g, v] if get => {
            return discovery::resource_list(&cluster.read().registry, g, v)
                .map(|d| value_response(200, &d))
                .ok_or_else(ApiError::route_not_found);
        }
        ["openapi", "v3"] if get => {
            return Ok(value_response(
                200,
                &openapi::root(&cluster.read().registry),
            ));
        }
        ["openapi", "v2"] if get => {
            let (ct, body) = openapi::v2(accept.as_deref());
            let mut r = Response::new(full(body));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            return Ok(r);
        }
        ["openapi", "v3", "api", v] if get => {
            return openapi::group_version(&cluster.read().registry, "", v)
                .map(|d| value_response(200, &d))
                .ok_or_else(ApiError::route_not_found);
        }
        ["openapi", "v3", "apis", g, v] if get => {
            return openapi::group_version(&cluster.read().registry, g, v)
                .map(|d| value_response(200, &d))
                .ok_or_else(ApiError::route_not_found);
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::route_not_found()),
    };
    // `namespaces/{name}[/status|/finalize]` is the Namespace itself; `namespaces/{ns}/{plural}…`
    // is a namespaced resource.
    let (ns, plural, name, sub): (Option<&str>, &str, Option<&str>, Option<&str>) = match rest {
        [plural] => (None, plural, None, None),
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*name), Some(*sub))
        }
        ["namespaces", ns, plural] => (Some(*ns), plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), plural, Some(*name), Some(*sub)),
        [plural, name] => (None, plural, Some(*name), None),
        [plural, name, sub] => (None, plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::route_not_found()),
    };
    let ty = cluster
        .read()
        .registry
        .lookup(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::route_not_found)?;
    if ns.is_some() && !ty.namespaced {
        return Err(ApiError::route_not_found());
    }
    let t = Target {
        ty: ty.clone(),
        version: version.to_string(),
        ns: ns.map(String::from),
    };
    let q = Query(query_params(query));
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let wopts = WriteOpts {
        manager: q.get("fieldManager").map_or_else(
            || user_agent.split('/').next().unwrap_or("").to_string(),
            String::from,
        ),
        dry_run: q.get("dryRun") == Some("All"),
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?
        .to_bytes();

    match (name, sub, &method) {
        // Collections.
        (None, None, m) if *m == Method::GET => {
            let select = list_opts(&q, &ty)?;
            if q.flag("watch") {
                let timeout = q
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .map_or(Duration::from_mins(30), Duration::from_secs);
                let wo = WatchOpts {
                    select,
                    resource_version: q.get("resourceVersion").map(String::from),
                    bookmarks: q.flag("allowWatchBookmarks"),
                    send_initial_events: q.flag("sendInitialEvents"),
                    timeout,
                    bookmark_interval: shared.bookmark_interval,
                };
                let rx = watch::start(cluster, t, wo)?;
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                });
                let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return Ok(r);
            }
            Ok(json_response(200, cluster.list(&t, &select)?))
        }
        (None, None, m) if *m == Method::POST => {
            if ty.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let v = parse_body(&content_type, &body)?;
            let created = cluster.create(&t, v, &wopts)?;
            Ok(value_response(201, &created))
        }
        (None, None, m) if *m == Method::DELETE => {
            let select = list_opts(&q, &ty)?;
            let dopts = delete_opts(&q, &body)?;
            Ok(value_response(
                200,
                &cluster.delete_collection(&t, &select, &dopts)?,
            ))
        }
        // Objects.
        (Some(name), None, m) if *m == Method::GET => {
            Ok(json_response(200, cluster.get(&t, name)?))
        }
        (Some(name), None | Some("status"), m) if *m == Method::PUT => {
            let v = parse_body(&content_type, &body)?;
            Ok(value_response(
                200,
                &cluster.replace(&t, name, v, &wopts, sub)?,
            ))
        }
        (Some(name), None | Some("status"), m) if *m == Method::PATCH => {
            let ptype = PatchType::from_content_type(&content_type).ok_or_else(|| {
                ApiError::unsupported_media_type("application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            })?;
            let v = if ptype == PatchType::Apply {
                parse_yaml_or_json(&body)?
            } else {
                parse_json(&body)?
            };
            let (obj, created) =
                cluster.patch(&t, name, ptype, &v, &wopts, sub, q.flag("force"))?;
            Ok(value_response(if created { 201 } else { 200 }, &obj))
        }
        (Some(name), None, m) if *m == Method::DELETE => {
            let dopts = delete_opts(&q, &body)?;
            Ok(value_response(200, &cluster.delete(&t, name, &dopts)?))
        }
        (Some(name), Some("status"), m) if *m == Method::GET && ty.status_subresource => {
            Ok(json_response(200, cluster.get(&t, name)?))
        }
        (Some(name), Some("scale"), m) if ty.scale.is_some() => {
            if *m == Method::GET {
                return Ok(value_response(200, &cluster.get_scale(&t, name)?));
            }
            let v = parse_json(&body)?;
            let replicas = if *m == Method::PUT || *m == Method::PATCH {
                v.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ApiError::bad_request("spec.replicas is required"))?
            } else {
                return Err(ApiError::method_not_allowed());
            };
            Ok(value_response(
                200,
                &cluster.set_scale(&t, name, replicas, &wopts)?,
            ))
        }
        (Some(name), Some("finalize"), m)
            if *m == Method::PUT && ty.plural == "namespaces" && ty.group.is_empty() =>
        {
            let v = parse_body(&content_type, &body)?;
            Ok(value_response(
                200,
                &cluster.finalize_namespace(&t, name, &v, &wopts)?,
            ))
        }
        (_, Some(_), _) => Err(ApiError::route_not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn typed_response(v: &Value, content_type: &str) -> Response<Body> {
    let mut r = value_response(200, v);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

fn list_opts(q: &Query, ty: &crate::registry::ResourceType) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), &ty.field_labels)
            .map_err(ApiError::bad_request)?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(String::from),
        resource_version: q.get("resourceVersion").map(String::from),
        resource_version_match: q.get("resourceVersionMatch").map(String::from),
    })
}

fn delete_opts(q: &Query, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        dry_run: q.get("dryRun") == Some("All"),
        ..DeleteOpts::default()
    };
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let v = parse_json(body)?;
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
        o.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.precondition_rv = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
    }
    Ok(o)
}

fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "" | "application/json" | "*/*" => parse_json(body),
        "application/yaml" => parse_yaml_or_json(body),
        _ => Err(ApiError::unsupported_media_type(
            "application/json, application/yaml",
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal the request body: {e}")))
}

fn parse_yaml_or_json(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    crate::yaml::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}
