//! `lifeboat daemon` end to end: the real binary against kubesim and moto_server, driven and
//! observed the way Kubernetes and Prometheus would (HTTP probes, /metrics, SIGTERM).

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::VolumeType;
use kubesim::{Fault, FaultAction, KubeSim};
use lifeboat_testkit::{Cli, FaultProxy, Moto, Rule, s3_config};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

struct Env {
    moto: Moto,
    sim: KubeSim,
    dir: tempfile::TempDir,
    cli: Cli,
}

/// A running daemon: its process, the address it serves on, and its log lines.
struct Daemon {
    child: tokio::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Env {
    async fn new() -> Option<Env> {
        let moto = Moto::start()?;
        moto.create_bucket("backups").await;
        Some(Env {
            moto,
            sim: KubeSim::start().await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
            cli: Cli::new(BIN),
        })
    }

    /// Writes a config with S3 (through `s3_endpoint`) and EC2 in moto plus `extra`.
    fn config(&self, name: &str, s3_endpoint: &str, extra: &str) -> String {
        let volumes = format!(
            "volumes:\n  region: us-east-1\n  endpoint: {}\n",
            self.moto.endpoint()
        );
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            s3_config(s3_endpoint, "backups", "d", &format!("{volumes}{extra}")),
        )
        .unwrap();
        path.display().to_string()
    }

    async fn daemon(&self, config: &str) -> Daemon {
        let kc = self.sim.kubeconfig_path().display().to_string();
        let mut child = self
            .cli
            .command(&[
                "--config",
                config,
                "--kubeconfig",
                &kc,
                "--log-format",
                "json",
                "daemon",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ] {
            let log = log.clone();
            let mut lines = tokio::io::BufReader::new(stream.unwrap()).lines();
            tokio::spawn(async move {
                while let Ok(Some(l)) = lines.next_line().await {
                    log.lock().unwrap().push(l);
                }
            });
        }
        // The daemon logs the address it bound (server.listen may use port 0).
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| {
                    (v["message"] == "daemon started")
                        .then(|| v["listen"].as_str().map(String::from))
                        .flatten()
                });
            if let Some(a) = found {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start:\n{}",
                log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Daemon { child, addr, log }
    }

    async fn lifeboat(&self, config: &str, args: &[&str]) -> lifeboat_testkit::Run {
        let kc = self.sim.kubeconfig_path().display().to_string();
        let mut all = vec!["--config", config, "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }

    async fn backups(&self, config: &str) -> Vec<Value> {
        self.lifeboat(config, &["backup", "list", "--output", "json"])
            .await
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    async fn lifeboat_snapshots(&self) -> usize {
        let f = aws_sdk_ec2::types::Filter::builder()
            .name("tag-key")
            .values("lifeboat.io/backup")
            .build();
        self.moto
            .ec2_client()
            .describe_snapshots()
            .filters(f)
            .send()
            .await
            .unwrap()
            .snapshots()
            .len()
    }

    async fn seed_volume(&self) {
        let vol = self
            .moto
            .ec2_client()
            .create_volume()
            .availability_zone("us-east-1a")
            .size(1)
            .volume_type(VolumeType::Gp3)
            .send()
            .await
            .unwrap();
        let vol = vol.volume_id().unwrap();
        self.sim
            .seed_yaml(&format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-1}}\nspec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadWriteOnce], csi: {{driver: ebs.csi.aws.com, volumeHandle: {vol}}}, nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1a]}}]}}]}}}}}}\n"))
            .unwrap();
    }
}

impl Daemon {
    async fn get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let Ok(mut s) = tokio::net::TcpStream::connect(&self.addr).await else {
            return (0, String::new());
        };
        let _ = s
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf).await;
        let code = buf
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (
            code,
            buf.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default(),
        )
    }

    /// The value of the first sample whose line starts with `prefix`, or 0.
    async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_metric(&self, prefix: &str, at_least: f64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.metric(prefix).await < at_least {
            assert!(
                Instant::now() < deadline,
                "{prefix} did not reach {at_least} within {within:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM, then the exit status and how long it took.
    async fn terminate(mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        self.signal("-TERM");
        let status = tokio::time::timeout(Duration::from_secs(35), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        (status.code(), started.elapsed())
    }
}

const QUICK: &str = "schedules:\n  - name: quick\n    cron: \"*/2 * * * * *\"\n    retention: {keepLast: 2}\nserver:\n  listen: 127.0.0.1:0\n  leaderElection: {enabled: false}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_run_on_time_and_retention_keeps_the_newest_with_their_snapshots() {
    let Some(env) = Env::new().await else { return };
    env.seed_volume().await;
    let config = env.config("lb.yaml", &env.moto.endpoint(), QUICK);
    let d = env.daemon(&config).await;
    d.wait_metric(
        "lifeboat_backups_total{schedule=\"quick\",phase=\"Completed\"}",
        4.0,
        Duration::from_mins(1),
    )
    .await;
    assert!(
        d.metric("lifeboat_backup_last_success_timestamp_seconds{schedule=\"quick\"}")
            .await
            > 1.7e9
    );
    assert!(
        d.metric("lifeboat_volume_snapshots_total{schedule=\"quick\",result=\"completed\"}")
            .await
            >= 4.0
    );
    let log = d.log.clone();
    let (code, elapsed) = d.terminate().await;
    assert_eq!(code, Some(0));
    assert!(elapsed < Duration::from_secs(30));

    // Retention ran after the runs: the newest two are left (a third may have finished just
    // before the stop); a prune leaves exactly two, with exactly their snapshots.
    let listed = env.backups(&config).await;
    assert!((2..=3).contains(&listed.len()), "{listed:?}");
    env.lifeboat(&config, &["backup", "prune"])
        .await
        .expect_code(0);
    let kept = env.backups(&config).await;
    assert_eq!(kept.len(), 2);
    assert_eq!(
        env.lifeboat_snapshots().await,
        2,
        "the snapshots of deleted backups are deleted too"
    );
    // Named <schedule>-<UTC yyyymmddhhmmss>, on even seconds, the newest first.
    for b in &kept {
        let name = b["name"].as_str().unwrap();
        let stamp = name.strip_prefix("quick-").unwrap();
        assert_eq!(stamp.len(), 14);
        assert_eq!(
            stamp[12..].parse::<u32>().unwrap() % 2,
            0,
            "{name} fired on its tick"
        );
        assert_eq!(b["schedule"], "quick");
    }
    // Every log line of a run is JSON on stdout and names the schedule and the backup.
    let lines: Vec<Value> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let run_lines: Vec<&Value> = lines
        .iter()
        .filter(|v| v["message"] == "archive written" || v["message"] == "backup finished")
        .collect();
    assert!(!run_lines.is_empty());
    for v in run_lines {
        assert_eq!(v["span"]["schedule"], "quick", "{v}");
        assert!(
            v["span"]["backup"]
                .as_str()
                .is_some_and(|b| b.starts_with("quick-")),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_and_the_newest_completed_backup_is_kept() {
    let Some(env) = Env::new().await else { return };
    let config = env.config(
        "lb.yaml",
        &env.moto.endpoint(),
        "schedules:\n  - name: daily\n    cron: \"@daily\"\n    retention: {maxAge: 1s}\n",
    );
    env.lifeboat(&config, &["schedule", "run", "daily"])
        .await
        .expect_code(0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.lifeboat(&config, &["schedule", "run", "daily"])
        .await
        .expect_code(0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(env.backups(&config).await.len(), 2);
    let dry = env
        .lifeboat(
            &config,
            &["backup", "prune", "--dry-run", "--output", "json"],
        )
        .await;
    dry.expect_code(0);
    assert_eq!(
        dry.json()["daily"]["deleted"].as_array().unwrap().len(),
        1,
        "{}",
        dry.stdout
    );
    assert_eq!(
        env.backups(&config).await.len(),
        2,
        "a dry run deletes nothing"
    );
    env.lifeboat(&config, &["backup", "prune"])
        .await
        .expect_code(0);
    let left = env.backups(&config).await;
    assert_eq!(
        left.len(),
        1,
        "both expired, but the newest Completed stays"
    );
    // schedule list shows next runs and the last result.
    let list = env
        .lifeboat(&config, &["schedule", "list", "--output", "json"])
        .await
        .json();
    assert_eq!(list[0]["name"], "daily");
    assert_eq!(list[0]["lastBackup"]["name"], left[0]["name"]);
    assert!(!list[0]["nextRuns"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_run_makes_the_next_tick_skip_and_it_is_counted() {
    let Some(env) = Env::new().await else { return };
    env.sim.add_fault(Fault::new(
        "/api/v1/configmaps",
        FaultAction::Latency(Duration::from_secs(5)),
    ));
    let config = env.config("lb.yaml", &env.moto.endpoint(), QUICK);
    let d = env.daemon(&config).await;
    d.wait_metric(
        "lifeboat_skipped_runs_total{schedule=\"quick\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    let (code, _) = d.terminate().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_metrics_parse_and_ready_fails_while_storage_is_unreachable() {
    let Some(env) = Env::new().await else { return };
    let proxy = FaultProxy::start(&env.moto.endpoint());
    let config = env.config("lb.yaml", &proxy.endpoint(), "schedules:\n  - name: nightly\n    cron: \"0 2 * * *\"\nserver:\n  listen: 127.0.0.1:0\n  leaderElection: {enabled: false}\n");
    let d = env.daemon(&config).await;
    assert_eq!(d.get("/healthz").await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.get("/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = d.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("lifeboat_leader 1"), "{body}");
    // The reference parser (Python prometheus_client) reads the whole exposition.
    let parsed = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        });
    match parsed {
        Ok(out) if out.status.success() => assert!(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u32>()
                .unwrap()
                >= 8
        ),
        _ => assert!(
            std::env::var("CI").is_err(),
            "python3 with prometheus_client is needed (pip install prometheus-client)"
        ),
    }
    // Storage down: /ready fails (with the reason) while /healthz stays up.
    proxy.add(Rule::internal_error());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = d.get("/ready").await;
        if code == 503 {
            assert!(body.contains("storage"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/ready kept answering {code}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(d.get("/healthz").await.0, 200);
    let (code, _) = d.terminate().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_elect_one_leader_and_the_other_takes_over() {
    let Some(env) = Env::new().await else { return };
    let le = "schedules:\n  - name: quick\n    cron: \"*/2 * * * * *\"\nserver:\n  listen: 127.0.0.1:0\n  leaderElection: {enabled: true, namespace: default, leaseName: lifeboat, leaseDuration: 3s, renewDeadline: 2s, retryPeriod: 1s}\n";
    let config = env.config("lb.yaml", &env.moto.endpoint(), le);
    let a = env.daemon(&config).await;
    let b = env.daemon(&config).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (leader, follower) = loop {
        let (la, lb) = (
            a.metric("lifeboat_leader ").await,
            b.metric("lifeboat_leader ").await,
        );
        assert!(la + lb <= 1.5, "two leaders at once");
        if la > 0.5 {
            break (a, b);
        }
        if lb > 0.5 {
            break (b, a);
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    leader
        .wait_metric(
            "lifeboat_backups_total{schedule=\"quick\",phase=\"Completed\"}",
            1.0,
            Duration::from_secs(20),
        )
        .await;
    assert!(
        follower
            .metric("lifeboat_backups_total{schedule=\"quick\",phase=\"Completed\"}")
            .await
            < 0.5,
        "only the leader backs up"
    );
    // Kill the leader (no release): the follower takes over within the lease duration.
    leader.signal("-KILL");
    let killed = Instant::now();
    follower
        .wait_metric("lifeboat_leader ", 1.0, Duration::from_secs(10))
        .await;
    assert!(
        killed.elapsed() < Duration::from_secs(3 + 1 + 2),
        "takeover took {:?}",
        killed.elapsed()
    );
    follower
        .wait_metric(
            "lifeboat_backups_total{schedule=\"quick\",phase=\"Completed\"}",
            1.0,
            Duration::from_secs(20),
        )
        .await;
    let (code, _) = follower.terminate().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_backup_exits_cleanly_leaving_no_manifest_and_no_open_upload() {
    let Some(env) = Env::new().await else { return };
    // Enough incompressible data for a multipart upload, then a type that hangs.
    for i in 0..30 {
        let data = lifeboat_testkit::incompressible(7 + i, 700_000);
        env.sim.seed_object(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("big-{i}"), "namespace": "default"}, "data": {"blob": data}})).unwrap();
    }
    env.sim.add_fault(Fault::new(
        "/apis/apps/v1/deployments",
        FaultAction::Latency(Duration::from_mins(1)),
    ));
    let config = env.config("lb.yaml", &env.moto.endpoint(), "schedules:\n  - name: quick\n    cron: \"*/2 * * * * *\"\nserver:\n  listen: 127.0.0.1:0\n  shutdownGracePeriod: 2s\n  leaderElection: {enabled: false}\n");
    let d = env.daemon(&config).await;
    // Wait until the run has an upload in flight.
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.moto.open_multipart_uploads("backups").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no upload started; log:\n{}",
            d.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, elapsed) = d.terminate().await;
    assert_eq!(code, Some(0), "exit 0 on SIGTERM");
    assert!(
        elapsed < Duration::from_secs(2 + 6),
        "grace period respected: {elapsed:?}"
    );
    assert!(
        env.moto.open_multipart_uploads("backups").await.is_empty(),
        "the upload was aborted"
    );
    assert!(
        env.backups(&config).await.is_empty(),
        "no manifest for the aborted run"
    );
}
