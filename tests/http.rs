//! The daemon's HTTP endpoint (`/healthz`, `/ready`, `/metrics`) served on a loopback port and
//! spoken to over real TCP, the way the kubelet and Prometheus do. The exposition is read back
//! with the reference parser (Python's prometheus_client); without it the parse is skipped with
//! a hint, except under `CI=true`, where it fails.

// The values compared are counts and numbers the test wrote itself, which the text format
// carries exactly.
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat::archive::manifest::Phase;
use lifeboat::daemon::http::{Health, ReadyCheck, State, bind, serve};
use lifeboat::daemon::metrics::Metrics;
use lifeboat::events::Event;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(10);

/// A readiness check the test steers: its answer, how often it ran, and an optional gate it
/// waits at (to keep a request in flight).
#[derive(Default)]
struct FakeReady {
    /// Why the check fails; `None`: it passes.
    failure: Mutex<Option<String>>,
    calls: AtomicUsize,
    entered: Notify,
    gate: Mutex<Option<Arc<Notify>>>,
}

impl FakeReady {
    fn check(self: &Arc<Self>) -> ReadyCheck {
        let me = Arc::clone(self);
        Arc::new(move || {
            let me = Arc::clone(&me);
            Box::pin(async move {
                me.calls.fetch_add(1, Ordering::SeqCst);
                let gate = me.gate.lock().unwrap().clone();
                if let Some(gate) = gate {
                    me.entered.notify_one();
                    gate.notified().await;
                }
                me.failure.lock().unwrap().clone().map_or(Ok(()), Err)
            })
        })
    }

    fn answer(&self, answer: Result<(), &str>) {
        *self.failure.lock().unwrap() = answer.err().map(str::to_owned);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A server on 127.0.0.1:0 and the means to stop it.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(state: State) -> Server {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::new(state), async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[]).await
    }

    fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Reads one response from `stream`: head, then as many body bytes as Content-Length says.
async fn read_reply(stream: &mut TcpStream, head_only: bool) -> Reply {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a whole response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    // A response to HEAD announces a length but carries no body.
    let len: usize = if head_only {
        0
    } else {
        headers["content-length"].parse().unwrap()
    };
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// One request on its own connection, HTTP/1.1 as curl sends it.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        write!(req, "{k}: {v}\r\n").unwrap();
    }
    if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    tokio::time::timeout(DEADLINE, read_reply(&mut stream, method == "HEAD"))
        .await
        .expect("a response within the deadline")
}

/// Endpoint state with a heartbeat that stays fresh for the test's length.
fn state(ready: &Arc<FakeReady>) -> State {
    let health = Arc::new(Health::new(Duration::from_mins(10)));
    State::new(Arc::new(Metrics::new()), health, ready.check())
}

#[tokio::test]
async fn healthz_follows_the_scheduler_heartbeat() {
    let ready = Arc::new(FakeReady::default());
    let health = Arc::new(Health::new(Duration::from_secs(1)));
    let st = State::new(Arc::new(Metrics::new()), Arc::clone(&health), ready.check());
    let server = Server::start(st).await;

    health.beat();
    let r = server.get("/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");

    // No more beats: within the deadline the probe turns to 503 and says why.
    let start = Instant::now();
    let r = loop {
        let r = server.get("/healthz").await;
        if r.status != 200 {
            break r;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "/healthz stayed 200 without beats"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.status, 503);
    assert!(r.body.contains("scheduler loop has not run"), "{}", r.body);

    health.beat();
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(ready.calls(), 0, "liveness never runs the readiness check");
}

#[tokio::test]
async fn ready_reports_the_check_and_its_reason() {
    let ready = Arc::new(FakeReady::default());
    let server = Server::start(state(&ready).ready_cache(Duration::ZERO)).await;
    let r = server.get("/ready").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    ready.answer(Err(
        "storage s3://backups/prod: connection refused (is the endpoint reachable?)",
    ));
    let r = server.get("/ready").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "storage s3://backups/prod: connection refused (is the endpoint reachable?)\n"
    );
    ready.answer(Ok(()));
    assert_eq!(server.get("/ready").await.status, 200);
    assert_eq!(ready.calls(), 3, "without a cache every probe checks");
    assert_eq!(
        server.get("/healthz").await.status,
        200,
        "liveness is not readiness"
    );
}

#[tokio::test]
async fn ready_reuses_a_recent_result() {
    let ready = Arc::new(FakeReady::default());
    let server = Server::start(state(&ready).ready_cache(Duration::from_hours(1))).await;
    assert_eq!(server.get("/ready").await.status, 200);
    ready.answer(Err("API server unreachable"));
    for _ in 0..5 {
        assert_eq!(
            server.get("/ready").await.status,
            200,
            "served from the cache"
        );
    }
    assert_eq!(ready.calls(), 1, "five probes, one check");
}

#[tokio::test]
async fn ready_fails_when_the_check_hangs() {
    let ready = Arc::new(FakeReady::default());
    *ready.gate.lock().unwrap() = Some(Arc::new(Notify::new()));
    let server = Server::start(state(&ready).ready_timeout(Duration::from_millis(200))).await;
    let r = server.get("/ready").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("did not answer within 0.2s"), "{}", r.body);
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let ready = Arc::new(FakeReady::default());
    let server = Server::start(state(&ready)).await;
    for path in ["/", "/metrics/extra", "/healthz/", "/favicon.ico"] {
        assert_eq!(server.get(path).await.status, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let r = request(server.addr, method, "/metrics", &[]).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.headers["allow"], "GET");
    }
    assert_eq!(ready.calls(), 0);
}

/// Feeds one run's events to the metrics as a backup of schedule `quick` would.
fn run_quick(metrics: &Arc<Metrics>) {
    metrics.init_schedule("quick");
    metrics.init_schedule("nightly");
    metrics.set_schedule_interval("quick", Duration::from_secs(2));
    metrics.set_leader(true);
    metrics.skipped_run("nightly");
    metrics.retention("quick", "deleted", 2);
    let o = metrics.observer("quick");
    for event in [
        Event::BackupStarted {
            backup: "quick-20250101020000".into(),
            schedule: Some("quick".into()),
            storage: "s3://backups/prod".into(),
        },
        Event::VolumeSnapshot {
            persistent_volume: "pvc-0a1b".into(),
            result: "completed".into(),
            message: "snap-0123456789abcdef0".into(),
        },
        Event::BackupFinished {
            backup: "quick-20250101020000".into(),
            phase: Phase::Completed,
            items: 306,
            archive_bytes: 660_000,
            seconds: 4.2,
            peak_rss_bytes: None,
            cpu_seconds: None,
        },
    ] {
        o.event(&event);
    }
}

/// Runs the reference parser over `text`: `Some(families)` as JSON (name, type, samples), or
/// `None` (skipped) when python3 or prometheus_client is missing outside CI.
fn reference_parse(text: &str, openmetrics: bool) -> Option<Value> {
    let module = if openmetrics {
        "prometheus_client.openmetrics.parser"
    } else {
        "prometheus_client.parser"
    };
    let script = format!(
        "import json, sys\n\
         from {module} import text_string_to_metric_families as parse\n\
         print(json.dumps([{{'name': f.name, 'type': f.type, 'samples': \
         [{{'name': s.name, 'labels': s.labels, 'value': s.value}} for s in f.samples]}} \
         for f in parse(sys.stdin.read())]))"
    );
    let child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let out = child.and_then(|mut c| {
        use std::io::Write as _;
        c.stdin.take().unwrap().write_all(text.as_bytes())?;
        c.wait_with_output()
    });
    let hint = "python3 with prometheus_client is needed to check the exposition \
                (pip install -r scripts/test-requirements.txt)";
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match out {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // A parse error is always a failure; only a missing module may skip.
            assert!(
                stderr.contains("ModuleNotFoundError") && !in_ci,
                "{module} rejected the exposition or is missing: {stderr}\n{text}"
            );
            eprintln!("skipping the reference parse: {hint}");
            None
        }
        Err(e) => {
            assert!(!in_ci, "{hint}: {e}");
            eprintln!("skipping the reference parse: {hint} ({e})");
            None
        }
    }
}

fn family<'a>(families: &'a Value, name: &str) -> &'a Value {
    families
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name} in {families}"))
}

fn value(family: &Value, sample: &str, labels: &[(&str, &str)]) -> f64 {
    family["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == sample && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .unwrap_or_else(|| panic!("no {sample}{labels:?} in {family}"))["value"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn metrics_parse_with_the_reference_parser() {
    let ready = Arc::new(FakeReady::default());
    let st = state(&ready);
    run_quick(&st.metrics);
    let server = Server::start(st).await;

    // As curl and scripts fetch it: the Prometheus text format.
    let r = server.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    // What scripts grep for: ^lifeboat_backups_total\{.*schedule="quick".*\} [1-9]
    assert!(
        r.body
            .lines()
            .any(|l| l.starts_with("lifeboat_backups_total{")
                && l.contains(r#"schedule="quick""#)
                && l.split_once("} ")
                    .is_some_and(|(_, v)| v.starts_with(|c: char| ('1'..='9').contains(&c)))),
        "{}",
        r.body
    );
    if let Some(f) = reference_parse(&r.body, false) {
        let backups = family(&f, "lifeboat_backups");
        assert_eq!(backups["type"], "counter");
        let labels = [("schedule", "quick"), ("phase", "Completed")];
        assert_eq!(value(backups, "lifeboat_backups_total", &labels), 1.0);
        let failed = [("schedule", "nightly"), ("phase", "Failed")];
        assert_eq!(value(backups, "lifeboat_backups_total", &failed), 0.0);
        let duration = family(&f, "lifeboat_backup_duration_seconds");
        assert_eq!(duration["type"], "histogram");
        let q = [("schedule", "quick")];
        assert_eq!(
            value(duration, "lifeboat_backup_duration_seconds_count", &q),
            1.0
        );
        assert_eq!(
            value(duration, "lifeboat_backup_duration_seconds_sum", &q),
            4.2
        );
        let bucket = [("schedule", "quick"), ("le", "5")];
        assert_eq!(
            value(duration, "lifeboat_backup_duration_seconds_bucket", &bucket),
            1.0
        );
        for (name, kind, sample, v) in [
            (
                "lifeboat_backup_items",
                "gauge",
                "lifeboat_backup_items",
                306.0,
            ),
            (
                "lifeboat_backup_archive_bytes",
                "gauge",
                "lifeboat_backup_archive_bytes",
                660_000.0,
            ),
            (
                "lifeboat_schedule_interval_seconds",
                "gauge",
                "lifeboat_schedule_interval_seconds",
                2.0,
            ),
        ] {
            let fam = family(&f, name);
            assert_eq!(fam["type"], kind, "{name}");
            assert_eq!(value(fam, sample, &q), v, "{name}");
        }
        let last = value(
            family(&f, "lifeboat_backup_last_success_timestamp_seconds"),
            "lifeboat_backup_last_success_timestamp_seconds",
            &q,
        );
        assert!(last > 1.7e9, "{last}");
        let snaps = family(&f, "lifeboat_volume_snapshots");
        assert_eq!(snaps["type"], "counter");
        let completed = [("schedule", "quick"), ("result", "completed")];
        assert_eq!(
            value(snaps, "lifeboat_volume_snapshots_total", &completed),
            1.0
        );
        let deleted = [("schedule", "quick"), ("result", "deleted")];
        let retention = family(&f, "lifeboat_retention_deletions");
        assert_eq!(
            value(retention, "lifeboat_retention_deletions_total", &deleted),
            2.0
        );
        let skipped = family(&f, "lifeboat_skipped_runs");
        let nightly = [("schedule", "nightly")];
        assert_eq!(value(skipped, "lifeboat_skipped_runs_total", &nightly), 1.0);
        assert_eq!(
            value(family(&f, "lifeboat_leader"), "lifeboat_leader", &[]),
            1.0
        );
        let info = family(&f, "lifeboat_build_info");
        assert_eq!(info["type"], "gauge");
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(value(info, "lifeboat_build_info", &version), 1.0);
        assert_eq!(family(&f, "lifeboat_start_time_seconds")["type"], "gauge");
    }

    // As Prometheus asks for it: OpenMetrics, checked by the stricter OpenMetrics parser.
    let accept =
        "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let r = request(server.addr, "GET", "/metrics", &[("Accept", accept)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(r.body.ends_with("# EOF\n"));
    if let Some(f) = reference_parse(&r.body, true) {
        let backups = family(&f, "lifeboat_backups");
        assert_eq!(backups["type"], "counter");
        let labels = [("schedule", "quick"), ("phase", "Completed")];
        assert_eq!(value(backups, "lifeboat_backups_total", &labels), 1.0);
        assert_eq!(
            family(&f, "lifeboat_backup_duration_seconds")["type"],
            "histogram"
        );
        let info = family(&f, "lifeboat_build");
        assert_eq!(info["type"], "info");
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_requests_in_flight_finish() {
    let ready = Arc::new(FakeReady::default());
    let gate = Arc::new(Notify::new());
    *ready.gate.lock().unwrap() = Some(Arc::clone(&gate));
    let mut server = Server::start(state(&ready).ready_cache(Duration::ZERO)).await;
    let addr = server.addr;

    // An idle keep-alive connection, which must not hold the shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_reply(&mut idle, false).await.status, 200);

    // A /ready request held inside the readiness check.
    let in_flight = tokio::spawn(request(addr, "GET", "/ready", &[]));
    tokio::time::timeout(DEADLINE, ready.entered.notified())
        .await
        .expect("the readiness check started");

    server.shutdown();
    let start = Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(start.elapsed() < DEADLINE, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The idle connection is closed by the server.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(DEADLINE, idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "no bytes after the answered request");
    assert!(
        !server.task.is_finished(),
        "serve returned with a request in flight"
    );

    gate.notify_one();
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    tokio::time::timeout(DEADLINE, &mut server.task)
        .await
        .expect("serve returned after the last request")
        .unwrap();
}

#[tokio::test]
async fn bind_says_which_address_is_taken() {
    let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let e = bind(addr).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        e.to_string()
            .starts_with(&format!("cannot listen on {addr}")),
        "{e}"
    );
}
