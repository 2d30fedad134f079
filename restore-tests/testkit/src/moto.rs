//! `moto_server`, one per test.
//!
//! The server is started with `-p 0`, so the OS picks a free port and moto reports it: there
//! is no window in which another process can take the port between choosing and binding it.
//! Readiness is polled (`GET /moto-api/`) against a deadline, never waited for by a fixed
//! sleep.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

/// How to get moto when it is missing.
/// 5.2.5 or later: 5.2.1 answers CompleteMultipartUpload with a `CompleteMultipartUploadResponse`
/// root element, which aws-sdk-s3 rightly rejects (getmoto/moto#10055).
pub const INSTALL_HINT: &str = "moto_server is not installed; install it with: pip install 'moto[server]>=5.2.5' (or set MOTO_SERVER to its path)";

/// Python imports every moto backend on start; on a busy 2-core CI machine that can take a
/// while.
const START_DEADLINE: Duration = Duration::from_mins(1);
/// Lines of moto's output kept for panic messages.
const LOG_LINES: usize = 50;

/// A running `moto_server` on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl Moto {
    /// Starts a server, or returns `None` (after printing how to install moto) when
    /// `moto_server` is missing. Under `CI=true` a missing moto is a failure, not a skip: CI
    /// must not pass by testing nothing.
    pub fn start() -> Option<Moto> {
        let Some(bin) = find_moto_server() else {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!in_ci, "{INSTALL_HINT}");
            eprintln!("skipping: {INSTALL_HINT}");
            return None;
        };
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Moto::spawn(&bin) {
                Ok(moto) => return Some(moto),
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "moto_server ({}) did not start:\n{}",
            bin.display(),
            failures.join("\n---\n")
        );
    }

    fn spawn(bin: &PathBuf) -> Result<Moto, String> {
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = mpsc::channel();
        // Both pipes are drained for the server's whole life: werkzeug logs every request,
        // and a full pipe would block moto.
        if let Some(out) = child.stdout.take() {
            drain(out, output.clone(), port_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, output.clone(), port_tx);
        }
        let mut moto = Moto {
            child,
            port: 0,
            output,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!(
                    "moto_server exited with {status}:\n{}",
                    moto.output()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not report its port within {START_DEADLINE:?}:\n{}",
                    moto.output()
                ));
            }
            if let Ok(port) = port_rx.recv_timeout(Duration::from_millis(100)) {
                moto.port = port;
                break;
            }
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], moto.port));
        let mut delay = Duration::from_millis(10);
        loop {
            if http_request(addr, "GET", "/moto-api/").is_ok_and(|status| status == 200) {
                return Ok(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!(
                    "moto_server exited with {status}:\n{}",
                    moto.output()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server on port {} did not answer GET /moto-api/ within {START_DEADLINE:?}:\n{}",
                    moto.port,
                    moto.output()
                ));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// `http://127.0.0.1:PORT`, for `storage.endpoint` and [`crate::FaultProxy::start`].
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client for assertions, independent of the code under test: static credentials
    /// `testing`/`testing`, us-east-1, path-style addressing.
    pub fn s3_client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "lifeboat-testkit",
            ))
            .build();
        Client::from_conf(config)
    }

    /// An EC2 client for tests to set the scene (volumes in chosen AZs) and inspect what the
    /// code under test made: static credentials `testing`/`testing`, us-east-1. moto completes
    /// snapshots at once and accepts any availability zone name; use a
    /// [`crate::FaultProxy`] for pending snapshots and throttling.
    pub fn ec2_client(&self) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::from_static("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "lifeboat-testkit",
            ))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    pub async fn create_bucket(&self, name: &str) {
        self.s3_client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating bucket {name} in moto failed: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }

    /// Keys with an open multipart upload in `bucket`, as moto reports them.
    pub async fn open_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let out = self
            .s3_client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "ListMultipartUploads on {bucket} failed: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_string))
            .collect()
    }

    /// Forgets every bucket and object (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let status =
            tokio::task::spawn_blocking(move || http_request(addr, "POST", "/moto-api/reset"))
                .await
                .expect("reset task");
        assert!(
            matches!(status, Ok(200)),
            "resetting moto failed: {status:?}"
        );
    }

    /// The last lines moto printed, for failure messages.
    pub fn output(&self) -> String {
        let lines = self
            .output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
}

/// Keeps the tail of a pipe and reports the port from werkzeug's
/// ` * Running on http://127.0.0.1:PORT` line.
fn drain(
    pipe: impl std::io::Read + Send + 'static,
    output: Arc<Mutex<VecDeque<String>>>,
    port: mpsc::Sender<u16>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(p) = line
                .split("Running on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| {
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse::<u16>()
                        .ok()
                })
            {
                let _ = port.send(p);
            }
            let mut out = output
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if out.len() == LOG_LINES {
                out.pop_front();
            }
            out.push_back(line);
        }
    });
}

/// A minimal blocking HTTP/1.0 request; returns the status code.
fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
        addr.port()
    )?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let response = String::from_utf8_lossy(&raw);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.200}")))
}
