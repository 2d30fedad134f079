//! `lifeboat backup verify` end to end, and the daemon's `server.verifyAfterBackup`: the real
//! binary against kubesim, local storage (whose files the tests damage by hand) and moto's EC2.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::VolumeType;
use kubesim::KubeSim;
use lifeboat::archive::layout::EntryPath;
use lifeboat::archive::reader::{ArchiveReader, Limits};
use lifeboat::archive::writer::{ArchiveWriter, CompressionOptions};
use lifeboat_testkit::{Cli, Moto, Run, file_config};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncBufReadExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

const SHOP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: shop}
stringData: {token: hunter2}
";

/// One cluster, local storage under `dir/store`, and the CLI.
struct Env {
    sim: KubeSim,
    dir: tempfile::TempDir,
    cli: Cli,
    config: String,
}

impl Env {
    /// `volumes` is the config's `volumes:` section.
    async fn new(volumes: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lb.yaml");
        std::fs::write(&config, file_config(&dir.path().join("store"), volumes)).unwrap();
        let sim = KubeSim::start().await.unwrap();
        sim.seed_yaml(SHOP).unwrap();
        Env {
            sim,
            config: config.display().to_string(),
            dir,
            cli: Cli::new(BIN),
        }
    }

    async fn local() -> Env {
        Env::new("volumes:\n  snapshots: false\n").await
    }

    async fn on(&self, sim: &KubeSim, args: &[&str]) -> Run {
        let kc = sim.kubeconfig_path().display().to_string();
        let mut all = vec!["--config", self.config.as_str(), "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }

    async fn lifeboat(&self, args: &[&str]) -> Run {
        self.on(&self.sim, args).await
    }

    /// Backs up the cluster as `name` and returns the manifest.
    async fn backup(&self, name: &str) -> Value {
        let run = self
            .lifeboat(&["backup", "create", name, "--output", "json"])
            .await;
        run.expect_code(0);
        run.json()
    }

    async fn verify(&self, name: &str) -> (Run, Value) {
        let run = self
            .lifeboat(&["backup", "verify", name, "--output", "json"])
            .await;
        let report = run.json();
        (run, report)
    }

    fn stored(&self, key: &str) -> PathBuf {
        self.dir.path().join("store").join(key)
    }
}

/// The problems of a report whose `what` is `what`.
fn problems<'a>(report: &'a Value, what: &str) -> Vec<&'a str> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["what"] == what)
        .map(|p| p["message"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_backup_verifies_and_every_entry_is_counted() {
    let env = Env::local().await;
    let m = env.backup("b1").await;
    let (run, report) = env.verify("b1").await;
    run.expect_code(0);
    assert_eq!(report["name"], "b1");
    assert_eq!(report["phase"], "Verified");
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["volumes"], serde_json::json!([]));
    let a = &report["archive"];
    assert_eq!(a["key"], m["archive"]["key"]);
    assert_eq!(a["actualSha256"], m["archive"]["sha256"]);
    assert_eq!(a["expectedSha256"], m["archive"]["sha256"]);
    assert_eq!(a["actualSize"], m["archive"]["size"]);
    assert_eq!(a["objects"], m["itemCount"]);
    assert!(m["itemCount"].as_u64().unwrap() >= 3, "{m}");
    // Every object plus metadata/version.
    assert_eq!(
        a["entries"].as_u64().unwrap(),
        a["objects"].as_u64().unwrap() + 1
    );

    let text = env.lifeboat(&["backup", "verify", "b1"]).await;
    text.expect_code(0);
    assert!(
        text.stdout.contains("Phase:     Verified"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("as recorded"), "{}", text.stdout);

    // A backup that is not there is an error naming it, not a report.
    let missing = env.lifeboat(&["backup", "verify", "nope"]).await;
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("\"nope\"") && missing.stderr.contains("not found"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_the_checksum() {
    let env = Env::local().await;
    let m = env.backup("b1").await;
    let path = env.stored(m["archive"]["key"].as_str().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let (run, report) = env.verify("b1").await;
    run.expect_code(1);
    assert_eq!(report["phase"], "Failed");
    let checksum = problems(&report, "checksum");
    assert_eq!(checksum.len(), 1, "{report:#}");
    assert!(checksum[0].contains("SHA-256"), "{report:#}");
    assert!(problems(&report, "size").is_empty(), "{report:#}");
    assert_eq!(
        report["archive"]["actualSha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(&bytes))
    );

    let text = env.lifeboat(&["backup", "verify", "b1"]).await;
    text.expect_code(1);
    assert!(text.stdout.contains("- checksum: "), "{}", text.stdout);
}

/// The archive's entries, `metadata/version` left out.
fn objects(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut reader = ArchiveReader::new(archive, Limits::default()).unwrap();
    let mut out = Vec::new();
    while let Some(e) = reader.next_entry().unwrap() {
        if matches!(e.kind, EntryPath::Object { .. }) {
            out.push((e.path, e.data));
        }
    }
    out
}

/// A lifeboat archive of `objects`, then (raw, past every check a writer makes) an entry named
/// `extra`.
fn forge(objects: &[(String, Vec<u8>)], extra: Option<&[u8]>) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), &CompressionOptions::default(), 0).unwrap();
    for (path, data) in objects {
        w.append(path, data).unwrap();
    }
    let (bytes, _) = w.finish().unwrap();
    let Some(name) = extra else { return bytes };
    let mut tar = zstd::decode_all(&bytes[..]).unwrap();
    // tar ends with two zero blocks; the hostile entry goes before them.
    let end = tar.len() - 1024;
    assert!(tar[end..].iter().all(|b| *b == 0));
    tar.truncate(end);
    let data = br#"{"metadata":{"name":"x"}}"#;
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    zstd::encode_all(&tar[..], 3).unwrap()
}

/// Replaces a backup's archive with `bytes` and makes its manifest agree with them, so that
/// only the entries can give the forgery away.
fn replace_archive(env: &Env, manifest: &Value, bytes: &[u8]) {
    std::fs::write(
        env.stored(manifest["archive"]["key"].as_str().unwrap()),
        bytes,
    )
    .unwrap();
    let mut m = manifest.clone();
    m["archive"]["size"] = bytes.len().into();
    m["archive"]["sha256"] = hex::encode(Sha256::digest(bytes)).into();
    let name = m["name"].as_str().unwrap().to_string();
    std::fs::write(
        env.stored(&format!("backups/{name}/manifest.json")),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_with_a_matching_checksum_are_refused_by_verify_and_restore() {
    let env = Env::local().await;
    let target = KubeSim::start().await.unwrap();
    let settings = "resources/configmaps/namespaces/shop/settings.json";
    for (name, forged_entry) in [("renamed", settings), ("escape", "../x")] {
        let m = env.backup(name).await;
        let original = std::fs::read(env.stored(m["archive"]["key"].as_str().unwrap())).unwrap();
        let mut entries = objects(&original);
        assert!(entries.iter().any(|(p, _)| p == settings), "{entries:?}");
        let forged = if forged_entry == settings {
            // Another object's content filed as `settings`: a restore would write `other`.
            for (path, data) in &mut entries {
                if path == settings {
                    *data = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other","namespace":"shop"}}"#.to_vec();
                }
            }
            forge(&entries, None)
        } else {
            forge(&entries, Some(forged_entry.as_bytes()))
        };
        replace_archive(&env, &m, &forged);

        let (run, report) = env.verify(name).await;
        run.expect_code(1);
        assert_eq!(report["phase"], "Failed", "{name}");
        assert!(problems(&report, "checksum").is_empty(), "{report:#}");
        assert!(problems(&report, "size").is_empty(), "{report:#}");
        let entry = problems(&report, "entry");
        assert_eq!(entry.len(), 1, "{report:#}");
        assert!(entry[0].contains(forged_entry), "{name}: {report:#}");

        target.clear_requests();
        let restore = env
            .on(&target, &["restore", "create", "--from-backup", name])
            .await;
        restore.expect_code(1);
        assert!(restore.stderr.contains(forged_entry), "{}", restore.stderr);
        assert!(
            target.requests().iter().all(|r| !r.is_mutating()),
            "{name}: a restore wrote before refusing the archive"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_snapshot_fails_verification_and_names_it() {
    let Some(moto) = Moto::start() else { return };
    let env = Env::new(&format!(
        "volumes:\n  region: us-east-1\n  endpoint: {}\n",
        moto.endpoint()
    ))
    .await;
    let ec2 = moto.ec2_client();
    let vol = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .volume_type(VolumeType::Gp3)
        .send()
        .await
        .unwrap();
    let vol = vol.volume_id().unwrap();
    env.sim
        .seed_yaml(&format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-1}}\nspec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadWriteOnce], csi: {{driver: ebs.csi.aws.com, volumeHandle: {vol}}}, nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1a]}}]}}]}}}}}}\n"))
        .unwrap();
    env.backup("b1").await;

    let (run, report) = env.verify("b1").await;
    run.expect_code(0);
    let volumes = report["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1, "{report:#}");
    assert_eq!(volumes[0]["persistentVolume"], "pv-1");
    assert_eq!(volumes[0]["state"], "completed");
    let snapshot = volumes[0]["snapshotId"].as_str().unwrap().to_string();

    ec2.delete_snapshot()
        .snapshot_id(&snapshot)
        .send()
        .await
        .unwrap();
    let (run, report) = env.verify("b1").await;
    run.expect_code(1);
    assert_eq!(report["phase"], "Failed");
    assert_eq!(report["volumes"][0]["state"], "missing");
    let snapshots = problems(&report, "snapshot");
    assert_eq!(snapshots.len(), 1, "{report:#}");
    assert!(
        snapshots[0].contains(&snapshot) && snapshots[0].contains("pv-1"),
        "{report:#}"
    );
    // The archive itself is fine, and says so.
    assert_eq!(
        report["archive"]["actualSha256"],
        report["archive"]["expectedSha256"]
    );
}

/// The body of `GET path` from the daemon, or `None` while it does not answer.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The JSON log lines so far.
fn json_lines(log: &std::sync::Mutex<Vec<String>>) -> Vec<Value> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `found` against the daemon's log until it returns something or `within` passes.
async fn wait_log<T>(
    log: &std::sync::Mutex<Vec<String>>,
    within: Duration,
    what: &str,
    found: impl Fn(&[Value]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = found(&json_lines(log)) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}; log:\n{}",
            log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_verifies_each_new_backup_when_asked() {
    let env = Env::new(
        "volumes:\n  snapshots: false\nschedules:\n  - name: quick\n    cron: \"*/2 * * * * *\"\nserver:\n  listen: 127.0.0.1:0\n  verifyAfterBackup: true\n  leaderElection: {enabled: false}\n",
    )
    .await;
    let kc = env.sim.kubeconfig_path().display().to_string();
    let mut child = env
        .cli
        .command(&[
            "--config",
            &env.config,
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
    let addr = wait_log(&log, Duration::from_secs(30), "daemon started", |lines| {
        lines.iter().find_map(|v| {
            (v["message"] == "daemon started")
                .then(|| v["listen"].as_str().map(String::from))
                .flatten()
        })
    })
    .await;

    // The first verification, in the log with its backup and schedule...
    let verified = wait_log(&log, Duration::from_mins(1), "backup verified", |lines| {
        lines
            .iter()
            .find(|v| v["message"] == "backup verified")
            .cloned()
    })
    .await;
    let backup = verified["backup"].as_str().unwrap().to_string();
    assert!(backup.starts_with("quick-"), "{verified}");
    assert_eq!(verified["span"]["schedule"], "quick", "{verified}");
    assert_eq!(verified["phase"], "Verified", "{verified}");
    assert!(verified["objects"].as_u64().unwrap() >= 3, "{verified}");
    // ...and in the metrics, which count verifications by result.
    let verified_metric = r#"lifeboat_verifications_total{schedule="quick",result="verified"}"#;
    let failed_metric = r#"lifeboat_verifications_total{schedule="quick",result="failed"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = http_get(&addr, "/metrics").await.unwrap_or_default();
        if metric(&body, verified_metric).is_some_and(|v| v >= 1.0) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no verification counted:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(metric(&body, failed_metric), Some(0.0), "{body}");
    assert!(
        json_lines(&log)
            .iter()
            .all(|v| v["message"] != "backup verification failed"),
        "{}",
        log.lock().unwrap().join("\n")
    );

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(35), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // The verified backup is still there: verifying never deletes.
    assert!(
        env.stored(&format!("backups/{backup}/manifest.json"))
            .exists()
    );
}

/// The value of the sample line that starts with `prefix`.
fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
