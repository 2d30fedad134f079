//! Crash safety: the `lifeboat` binary killed with SIGKILL in the middle of a backup or a
//! restore (no signal handler runs, nothing is cleaned up), then run again.
//!
//! A backup is only a backup once its manifest exists, so a killed one must never be listed as
//! one, and the next run (same name or another) must complete and list cleanly. A restore run
//! again with the same `--name` must finish what the killed run started without duplicating
//! anything: no second EBS volume for a PV (the volume a killed run made is found by its tags
//! and reused), and no object twice.
//!
//! Each run is held at a chosen point by a long latency on one request (kubesim's fault
//! injection, or the fault proxy in front of moto), the test polls until the run has reached
//! that point, then kills it. Nothing waits on a fixed sleep.

use std::collections::BTreeSet;
use std::future::Future;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, VolumeType};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Secret, Service,
};
use kube::api::{Api, ListParams};
use kubesim::{Fault, FaultAction, KubeSim};
use lifeboat_testkit::{Cli, FaultProxy, Moto, Rule, Run, file_config, s3_config};
use rand::RngCore as _;
use serde_json::{Value, json};
use tokio::process::Child;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// How long a run may take to reach the point where it is killed, on a busy 2-core machine.
const REACH: Duration = Duration::from_mins(2);
/// Long enough that a held request never completes while a test runs.
const HOLD: Duration = Duration::from_mins(10);
const BUCKET: &str = "backups";

/// A `lifeboat` process started in the background, its output going to files.
struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Bg {
    fn output(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read(&self.out), read(&self.err))
    }

    /// Polls `reached` until it holds; fails if the process ends first or the deadline passes.
    async fn wait_until<F, Fut>(&mut self, what: &str, mut reached: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + REACH;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("lifeboat ended ({status}) before {what}\n{}", self.output());
            }
            if reached().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lifeboat did not reach {what} within {REACH:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no handler, no cleanup, like an OOM kill or a lost node.
    async fn kill(mut self) -> String {
        self.child.kill().await.unwrap();
        let status = self.child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
        self.output()
    }
}

struct Env {
    moto: Moto,
    dir: tempfile::TempDir,
    cli: Cli,
}

impl Env {
    async fn new() -> Option<Env> {
        let moto = Moto::start()?;
        moto.create_bucket(BUCKET).await;
        Some(Env {
            moto,
            dir: tempfile::tempdir().unwrap(),
            cli: Cli::new(BIN),
        })
    }

    /// Writes a config file; returns its path.
    fn config(&self, name: &str, yaml: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    fn args<'a>(config: &'a str, sim: &'a KubeSim, args: &[&'a str]) -> Vec<String> {
        let mut all = vec![
            "--config".to_string(),
            config.to_string(),
            "--kubeconfig".to_string(),
            sim.kubeconfig_path().display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_string()));
        all
    }

    async fn run(&self, config: &str, sim: &KubeSim, args: &[&str]) -> Run {
        let all = Self::args(config, sim, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.cli.run(&all).await
    }

    fn spawn(&self, label: &str, config: &str, sim: &KubeSim, args: &[&str]) -> Bg {
        let all = Self::args(config, sim, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = self.dir.path().join(format!("{label}.out"));
        let err = self.dir.path().join(format!("{label}.err"));
        let child = self
            .cli
            .command(&all)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("lifeboat starts");
        Bg { child, out, err }
    }

    /// Keys under `prefix` in the bucket.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .moto
            .s3_client()
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(String::from))
            .collect()
    }

    /// Open multipart uploads in the bucket, as (key, upload id).
    async fn open_uploads(&self) -> BTreeSet<(String, String)> {
        let out = self
            .moto
            .s3_client()
            .list_multipart_uploads()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap_or_default().to_string(),
                    u.upload_id().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// `backup list --output json`, checked to exit 0.
async fn listed(env: &Env, config: &str, sim: &KubeSim) -> Vec<Value> {
    let run = env
        .run(config, sim, &["backup", "list", "--output", "json"])
        .await;
    run.expect_code(0);
    run.json().as_array().unwrap().clone()
}

/// Asserts that `name` is not a backup anywhere a user looks: not in `backup list` (JSON or
/// text, except as the note about a directory without a manifest), not describable.
async fn assert_not_a_backup(env: &Env, config: &str, sim: &KubeSim, name: &str) {
    let list = listed(env, config, sim).await;
    assert!(
        list.iter().all(|b| b["name"] != name),
        "{name} is listed as a backup: {list:?}"
    );
    let text = env.run(config, sim, &["backup", "list"]).await;
    text.expect_code(0);
    for line in text.stdout.lines().filter(|l| l.contains(name)) {
        assert!(
            line.starts_with("note: ") && line.contains("has no manifest"),
            "{name} appears in `backup list` as more than a note: {line:?}\n{}",
            text.stdout
        );
    }
    let describe = env
        .run(
            config,
            sim,
            &["backup", "describe", name, "--output", "json"],
        )
        .await;
    describe.expect_code(1);
    assert!(describe.stderr.contains("not found"), "{}", describe.stderr);
}

/// Asserts that `name` is listed once, Completed, and that the text listing has no note about
/// it.
async fn assert_listed_completed(env: &Env, config: &str, sim: &KubeSim, name: &str) {
    let list = listed(env, config, sim).await;
    let found: Vec<&Value> = list.iter().filter(|b| b["name"] == name).collect();
    assert_eq!(found.len(), 1, "{list:?}");
    assert_eq!(found[0]["phase"], "Completed", "{list:?}");
    let text = env.run(config, sim, &["backup", "list"]).await;
    text.expect_code(0);
    assert!(!text.stdout.contains("note:"), "{}", text.stdout);
}

/// Incompressible text: 64 symbols, so zstd cannot shrink it below three quarters.
fn noise(len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

// ---------------------------------------------------------------------------------- backup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_while_listing_leaves_no_manifest_and_the_next_run_completes() {
    let Some(env) = Env::new().await else { return };
    let sim = KubeSim::start().await.unwrap();
    // About 15 MB of incompressible ConfigMaps: more than one 8 MiB part, so the archive is
    // a multipart upload that the kill leaves open.
    sim.seed_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}}))
        .unwrap();
    for i in 0..160 {
        sim.seed_object(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("blob-{i:03}"), "namespace": "bulk"},
            "data": {"blob": noise(96 * 1024)},
        }))
        .unwrap();
    }
    // Secrets are never answered: the run stays mid-listing.
    let held = sim.add_fault(Fault::new("/api/v1/secrets", FaultAction::Latency(HOLD)));
    let config = env.config(
        "lb.yaml",
        &s3_config(
            &env.moto.endpoint(),
            BUCKET,
            "c1",
            "volumes:\n  snapshots: false\n",
        ),
    );
    let archive = "c1/backups/crash/archive.tar.zst";

    let mut bg = env.spawn(
        "backup-killed",
        &config,
        &sim,
        &["backup", "create", "crash", "--output", "json"],
    );
    bg.wait_until("a multipart upload of its archive", || async {
        env.open_uploads().await.iter().any(|(k, _)| k == archive)
    })
    .await;
    bg.kill().await;

    // Nothing claims to be a backup.
    let left = env.keys("c1/backups/crash/").await;
    assert!(
        !left.iter().any(|k| k.ends_with("manifest.json")),
        "{left:?}"
    );
    assert_not_a_backup(&env, &config, &sim, "crash").await;
    // The killed run's multipart upload stays open: no process is left to abort it. It is
    // invisible to listings; the next run of the same name aborts it (and the bucket's
    // AbortIncompleteMultipartUpload lifecycle rule, docs/operations.md, catches the rest).
    let stale = env.open_uploads().await;
    assert_eq!(stale.len(), 1, "{stale:?}");

    // The same name again completes, and lists cleanly.
    sim.remove_fault(held);
    let run = env
        .run(
            &config,
            &sim,
            &["backup", "create", "crash", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    let manifest = run.json();
    assert_eq!(manifest["phase"], "Completed", "{manifest}");
    assert!(manifest["itemCount"].as_u64().unwrap() >= 160, "{manifest}");
    assert_listed_completed(&env, &config, &sim, "crash").await;
    let size = env
        .moto
        .s3_client()
        .head_object()
        .bucket(BUCKET)
        .key(archive)
        .send()
        .await
        .unwrap()
        .content_length();
    assert_eq!(
        size,
        manifest["archive"]["size"].as_i64(),
        "the new archive is whole"
    );
    // The next run aborted the killed run's upload and left none of its own open.
    assert!(env.open_uploads().await.is_empty(), "{stale:?} still open");
    assert!(
        run.stderr.contains("aborted 1 unfinished upload"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_before_its_manifest_is_incomplete_and_the_next_run_completes() {
    let Some(env) = Env::new().await else { return };
    let sim = KubeSim::start().await.unwrap();
    sim.seed_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {mode: fast}\n",
    )
    .unwrap();
    // Storage through a proxy that holds the run log's upload, which comes after the archive
    // and before the manifest: the run is killed with its archive stored and no manifest.
    let proxy = FaultProxy::start(&env.moto.endpoint());
    let held = proxy.add(
        Rule::latency(HOLD)
            .method("PUT")
            .path_contains("log.jsonl.zst"),
    );
    let config = env.config(
        "lb.yaml",
        &s3_config(
            &proxy.endpoint(),
            BUCKET,
            "c1",
            "volumes:\n  snapshots: false\n",
        ),
    );

    let mut bg = env.spawn(
        "backup-half",
        &config,
        &sim,
        &["backup", "create", "half", "--output", "json"],
    );
    bg.wait_until("its archive is stored", || async {
        env.keys("c1/backups/half/")
            .await
            .iter()
            .any(|k| k.ends_with("archive.tar.zst"))
    })
    .await;
    bg.kill().await;

    let left = env.keys("c1/backups/half/").await;
    assert!(
        !left.iter().any(|k| k.ends_with("manifest.json")),
        "{left:?}"
    );
    assert_not_a_backup(&env, &config, &sim, "half").await;
    // It is reported as what it is: a directory without a manifest.
    let text = env.run(&config, &sim, &["backup", "list"]).await;
    assert!(
        text.stdout
            .contains("note: backups/half/ has no manifest (a failed or running backup)"),
        "{}",
        text.stdout
    );

    proxy.remove(held);
    let run = env
        .run(
            &config,
            &sim,
            &["backup", "create", "half", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    assert_eq!(run.json()["phase"], "Completed");
    assert_listed_completed(&env, &config, &sim, "half").await;
    // Another name completes too, and both list.
    env.run(&config, &sim, &["backup", "create", "after"])
        .await
        .expect_code(0);
    let names: Vec<Value> = listed(&env, &config, &sim)
        .await
        .iter()
        .map(|b| b["name"].clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(env.open_uploads().await.is_empty());
}

// --------------------------------------------------------------------------------- restore

/// Names of the objects of one kind in one namespace.
async fn names<K>(sim: &KubeSim, namespace: &str) -> BTreeSet<String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(sim.client(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

async fn pv_names(sim: &KubeSim) -> BTreeSet<String> {
    Api::<PersistentVolume>::all(sim.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect()
}

/// What "every object exactly once" is checked on: the names per kind in namespace `shop`,
/// and the PVs.
async fn inventory(sim: &KubeSim) -> Vec<(&'static str, BTreeSet<String>)> {
    let ns = "shop";
    vec![
        ("configmaps", names::<ConfigMap>(sim, ns).await),
        ("secrets", names::<Secret>(sim, ns).await),
        ("services", names::<Service>(sim, ns).await),
        ("deployments", names::<Deployment>(sim, ns).await),
        (
            "persistentvolumeclaims",
            names::<PersistentVolumeClaim>(sim, ns).await,
        ),
        ("persistentvolumes", pv_names(sim).await),
    ]
}

/// Volumes in moto made from `snapshot`.
async fn volumes_from(moto: &Moto, snapshot: &str) -> Vec<aws_sdk_ec2::types::Volume> {
    moto.ec2_client()
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("snapshot-id")
                .values(snapshot)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .volumes()
        .to_vec()
}

async fn exists<K>(sim: &KubeSim, namespace: &str, name: &str) -> bool
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(sim.client(), namespace)
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}

/// Cluster A with namespace `shop` (one EBS-backed PV and its claim, a Secret, a Service, a
/// Deployment, ConfigMaps, one of them named by `generateName`), backed up as `b1` to a local
/// store with the PV snapshotted in moto. Returns A, the config and the snapshot id.
async fn backed_up(env: &Env) -> (KubeSim, String, String) {
    let a = KubeSim::start().await.unwrap();
    let source = env
        .moto
        .ec2_client()
        .create_volume()
        .availability_zone("us-east-1b")
        .size(4)
        .volume_type(VolumeType::Gp3)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    a.seed_yaml(&format!(
        r"
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-data}}
spec:
  capacity: {{storage: 4Gi}}
  accessModes: [ReadWriteOnce]
  claimRef: {{namespace: shop, name: data}}
  csi: {{driver: ebs.csi.aws.com, volumeHandle: {source}}}
  nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1b]}}]}}]}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: shop}}
spec: {{accessModes: [ReadWriteOnce], volumeName: pv-data, resources: {{requests: {{storage: 4Gi}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: db-password, namespace: shop}}
stringData: {{password: hunter2}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: nginx}}]}}
"
    ))
    .unwrap();
    for i in 0..20 {
        a.seed_object(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i:02}"), "namespace": "shop"},
            "data": {"i": i.to_string()},
        }))
        .unwrap();
    }
    // A name the server chose: restored under that name, never generated anew.
    a.seed_object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"generateName": "gen-", "namespace": "shop"},
        "data": {"x": "y"},
    }))
    .unwrap();
    let config = env.config(
        "lb.yaml",
        &file_config(
            &env.dir.path().join("store"),
            &format!(
                "volumes:\n  region: us-east-1\n  endpoint: {}\n",
                env.moto.endpoint()
            ),
        ),
    );
    let backup = env
        .run(&config, &a, &["backup", "create", "b1", "--output", "json"])
        .await;
    backup.expect_code(0);
    let described = env
        .run(
            &config,
            &a,
            &["backup", "describe", "b1", "--output", "json"],
        )
        .await
        .json();
    let snapshot = described["volumes"][0]["snapshotId"]
        .as_str()
        .unwrap_or_else(|| panic!("a snapshot of pv-data: {described}"))
        .to_string();
    (a, config, snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_twice_then_run_again_completes_with_one_volume_and_no_duplicates() {
    let Some(env) = Env::new().await else { return };
    let (a, config, snapshot) = backed_up(&env).await;
    let b = KubeSim::start().await.unwrap();
    let expected = inventory(&a).await;
    let restore = [
        "restore",
        "create",
        "--from-backup",
        "b1",
        "--name",
        "r1",
        "--output",
        "json",
    ];

    // 1. Killed after its volume was created and before the PV pointing at it exists.
    let held = b.add_fault(
        Fault::new("/api/v1/persistentvolumes", FaultAction::Latency(HOLD)).method("POST"),
    );
    let mut bg = env.spawn("restore-1", &config, &b, &restore);
    bg.wait_until("the namespace tier", || exists_ns(&b, "shop"))
        .await;
    bg.kill().await;
    let made = volumes_from(&env.moto, &snapshot).await;
    assert_eq!(made.len(), 1, "the killed run made its volume: {made:?}");
    let volume = made[0].volume_id().unwrap().to_string();
    assert!(pv_names(&b).await.is_empty(), "and no PV yet");
    b.remove_fault(held);

    // 2. Killed again after the PV and the Service exist, while Deployments are held.
    let held = b.add_fault(Fault::new("*/deployments", FaultAction::Latency(HOLD)).method("POST"));
    let mut bg = env.spawn("restore-2", &config, &b, &restore);
    bg.wait_until("the Service tier", || exists::<Service>(&b, "shop", "web"))
        .await;
    let log = bg.kill().await;
    assert!(
        log.contains(&format!("reusing volume {volume}")),
        "the rerun says it reused the killed run's volume:\n{log}"
    );
    assert_eq!(volumes_from(&env.moto, &snapshot).await.len(), 1);
    assert_eq!(pv_names(&b).await, BTreeSet::from(["pv-data".to_string()]));
    assert!(!exists::<Deployment>(&b, "shop", "web").await);
    b.remove_fault(held);

    // 3. The same restore again completes.
    let run = env.run(&config, &b, &restore).await;
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["phase"], "Completed", "{result}");
    assert_eq!(result["counts"]["failed"], 0, "{result}");
    let item = |resource: &str, name: &str| -> Value {
        result["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["resource"] == resource && i["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no item for {resource} {name}: {result}"))
    };
    assert_eq!(item("persistentvolumes", "pv-data")["action"], "exists");
    assert_eq!(item("deployments.apps", "web")["action"], "created");
    assert_eq!(
        result["volumes"],
        json!([]),
        "no volume is made for a PV already there"
    );

    // Every object exactly once, one volume from the snapshot, and the PV points at it.
    assert_eq!(inventory(&b).await, expected);
    let generated: Vec<String> = names::<ConfigMap>(&b, "shop")
        .await
        .into_iter()
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(generated.len(), 1, "{generated:?}");
    let made = volumes_from(&env.moto, &snapshot).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].volume_id(), Some(volume.as_str()));
    let pv = Api::<PersistentVolume>::all(b.client())
        .get("pv-data")
        .await
        .unwrap();
    assert_eq!(
        pv.spec.unwrap().csi.unwrap().volume_handle,
        volume,
        "the PV points at the one volume"
    );
}

async fn exists_ns(sim: &KubeSim, name: &str) -> bool {
    Api::<Namespace>::all(sim.client())
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_restore_again_makes_no_second_volume_for_a_pv_it_renamed() {
    let Some(env) = Env::new().await else { return };
    let (a, config, snapshot) = backed_up(&env).await;
    // A copy into the same cluster: pv-data is taken by the original claim, so the copy's PV
    // is renamed. Run twice, as after a crash once the renamed PV exists.
    let restore = [
        "restore",
        "create",
        "--from-backup",
        "b1",
        "--name",
        "copy",
        "--include-namespaces",
        "shop",
        "--namespace-mapping",
        "shop:shop2",
        "--output",
        "json",
    ];
    let first = env.run(&config, &a, &restore).await;
    first.expect_code(0);
    let first = first.json();
    let renamed = first["volumes"][0]["persistentVolume"]
        .as_str()
        .unwrap_or_else(|| panic!("one volume: {first}"))
        .to_string();
    assert_ne!(renamed, "pv-data");
    let again = env.run(&config, &a, &restore).await;
    again.expect_code(0);
    let again = again.json();
    assert_eq!(again["phase"], "Completed", "{again}");
    assert_eq!(again["volumes"], json!([]), "{again}");
    let pv = again["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["resource"] == "persistentvolumes" && i["name"] == renamed.as_str())
        .unwrap_or_else(|| panic!("no item for {renamed}: {again}"));
    assert_eq!(pv["action"], "exists", "{again}");
    // Without --name (a new, timestamped name) the PV already there decides too: no volume.
    let unnamed: Vec<&str> = restore
        .iter()
        .copied()
        .filter(|a| !["--name", "copy"].contains(a))
        .collect();
    let other = env.run(&config, &a, &unnamed).await;
    other.expect_code(0);
    assert_eq!(other.json()["volumes"], json!([]), "{}", other.stdout);
    assert_eq!(
        volumes_from(&env.moto, &snapshot).await.len(),
        1,
        "one volume for the copy, none orphaned"
    );
}
