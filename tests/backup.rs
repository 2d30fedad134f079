//! `lifeboat backup` end to end: the binary against kubesim (Kubernetes) and moto_server (S3),
//! both started by the tests on loopback ports. Archives are read back with the real `zstd`
//! and `tar` and compared with what the real `kubectl get -o json` returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubesim::kubectl::{self, Kubectl};
use kubesim::{Fault, FaultAction, KubeSim};
use lifeboat::archive::layout;
use lifeboat_testkit::{Cli, FaultProxy, Moto, Rule, file_config, s3_config};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// The command-line tools the tests read archives with; missing ones fail a CI run and skip
/// a local one, saying how to install them.
fn tools_available() -> bool {
    let missing: Vec<&str> = ["zstd", "tar"]
        .into_iter()
        .filter(|t| {
            std::process::Command::new(t)
                .arg("--version")
                .output()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let hint = format!(
        "{} needed to read archives back (Debian: apt-get install zstd tar)",
        missing.join(" and ")
    );
    assert!(std::env::var("CI").is_err(), "{hint}");
    eprintln!("skipping: {hint}");
    false
}

struct Env {
    sim: KubeSim,
    dir: tempfile::TempDir,
    cli: Cli,
}

impl Env {
    async fn new() -> Env {
        Env {
            sim: KubeSim::start().await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
            cli: Cli::new(BIN),
        }
    }

    fn kubeconfig(&self) -> String {
        self.sim.kubeconfig_path().display().to_string()
    }

    /// Writes a config file and returns its path.
    fn config(&self, name: &str, yaml: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.display().to_string()
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Local storage; volume snapshots off unless `extra` says otherwise (these tests are
    /// about resources; tests/snapshots.rs is about volumes).
    fn local_config(&self, extra: &str) -> String {
        let extra = if extra.contains("volumes:") {
            extra.to_string()
        } else {
            format!("volumes:\n  snapshots: false\n{extra}")
        };
        self.config("local.yaml", &file_config(&self.store_dir(), &extra))
    }

    async fn lifeboat(&self, config: &str, args: &[&str]) -> lifeboat_testkit::Run {
        let kc = self.kubeconfig();
        let mut all = vec!["--config", config, "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }
}

/// Extracts an archive with the real zstd and tar (plain `zstd -d`, no flags) and returns the
/// directory and the entry paths.
fn extract(archive: &Path) -> (tempfile::TempDir, Vec<String>) {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            archive.display(),
            out.path().display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "zstd -dc | tar -x failed");
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar -t", archive.display()))
        .output()
        .unwrap();
    let paths = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    (out, paths)
}

/// Every object kubectl sees in the types lifeboat backs up (all but events), as JSON.
async fn kubectl_objects(k: &Kubectl) -> Vec<Value> {
    let types = k
        .ok(&[
            "api-resources",
            "--verbs=list,get,create,delete",
            "-o",
            "name",
        ])
        .await;
    let types: Vec<&str> = types
        .lines()
        .filter(|t| !t.is_empty() && *t != "events" && *t != "events.events.k8s.io")
        .collect();
    let all: Value = serde_json::from_str(
        &k.ok(&[
            "get",
            &types.join(","),
            "-A",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await,
    )
    .unwrap();
    all["items"].as_array().unwrap().clone()
}

/// Reads every archived object, keyed by (apiVersion group, kind, namespace, name).
fn archived_objects(
    root: &Path,
    paths: &[String],
) -> BTreeMap<(String, String, String, String), Value> {
    let mut out = BTreeMap::new();
    for p in paths
        .iter()
        .filter(|p| Path::new(p).extension().is_some_and(|e| e == "json"))
    {
        let v: Value = serde_json::from_slice(&std::fs::read(root.join(p)).unwrap()).unwrap();
        let group = v["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_string();
        let key = (
            group,
            v["kind"].as_str().unwrap().to_string(),
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            v["metadata"]["name"].as_str().unwrap().to_string(),
        );
        assert!(
            out.insert(key.clone(), v).is_none(),
            "{key:?} archived twice"
        );
    }
    out
}

fn key_of(v: &Value) -> (String, String, String, String) {
    (
        v["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_string(),
        v["kind"].as_str().unwrap().to_string(),
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["name"].as_str().unwrap().to_string(),
    )
}

/// Backs up a seeded cluster into a local directory and checks that the archive holds exactly
/// the live objects, each equal to what `kubectl get -o json` returns.
async fn backup_equals_live(env: &Env) -> Value {
    let config = env.local_config("");
    let run = env
        .lifeboat(&config, &["backup", "create", "b1", "--output", "json"])
        .await;
    run.expect_code(0);
    let manifest = run.json();
    assert_eq!(manifest["phase"], "Completed");
    let archive = env
        .store_dir()
        .join(manifest["archive"]["key"].as_str().unwrap());
    let (root, paths) = extract(&archive);
    assert_eq!(paths[0], "metadata/version");
    let archived = archived_objects(root.path(), &paths);
    let k = Kubectl::new(env.sim.kubeconfig_path()).unwrap();
    let live = kubectl_objects(&k).await;
    assert_eq!(
        archived.len(),
        live.len(),
        "one archive entry per live object"
    );
    assert_eq!(manifest["itemCount"].as_u64().unwrap() as usize, live.len());
    for obj in &live {
        let key = key_of(obj);
        let got = archived
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} is live but not in the archive"));
        assert_eq!(got, obj, "{key:?} differs from kubectl get -o json");
    }
    // Entry paths follow the layout, names shortened only past 255 bytes.
    for p in paths.iter().skip(1) {
        assert!(
            matches!(layout::parse_path(p), Ok(layout::EntryPath::Object { .. })),
            "{p}"
        );
    }
    manifest
}

async fn scenario(name: &str) {
    if !kubectl::available() || !tools_available() {
        return;
    }
    let Some(root) = std::env::var_os("LIFEBOAT_FIXTURES").map(PathBuf::from) else {
        eprintln!("LIFEBOAT_FIXTURES is not set: skipping the real-world scenario {name:?}");
        return;
    };
    let env = Env::new().await;
    env.sim.seed_dir(root.join(name)).unwrap();
    let manifest = backup_equals_live(&env).await;
    assert!(
        manifest["resources"]
            .as_object()
            .unwrap()
            .values()
            .any(|n| n.as_u64() > Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_apps() {
    scenario("apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_autoscaling() {
    scenario("autoscaling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_certs() {
    scenario("certs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_edge_cases() {
    scenario("edge-cases").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_monitoring() {
    scenario("monitoring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_storage_ebs() {
    scenario("storage-ebs").await;
}

fn seed_synthetic(sim: &KubeSim, n: usize) {
    sim.seed_object(kubesim::synth::crd()).unwrap();
    for ns in kubesim::synth::namespaces(n) {
        sim.seed_object(ns).unwrap();
    }
    for o in kubesim::synth::objects(n, 7) {
        sim.seed_object(o).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_cluster_to_s3_lists_describes_and_downloads() {
    if !kubectl::available() || !tools_available() {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("backups").await;
    let env = Env::new().await;
    seed_synthetic(&env.sim, 3000);
    let config = env.config(
        "s3.yaml",
        &s3_config(&moto.endpoint(), "backups", "prod/eu", ""),
    );
    let run = env
        .lifeboat(
            &config,
            &[
                "backup",
                "create",
                "nightly-1",
                "--output",
                "json",
                "--ttl",
                "7d",
            ],
        )
        .await;
    run.expect_code(0);
    let manifest = run.json();
    assert_eq!(
        manifest["archive"]["key"],
        "backups/nightly-1/archive.tar.zst"
    );
    assert_eq!(manifest["resources"]["widgets.synth.example.com"], 300);
    assert_eq!(manifest["resources"]["configmaps"], 1200);
    let started: jiff::Timestamp = manifest["startedAt"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = manifest["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.duration_since(started).as_secs(), 7 * 86_400);

    // The bucket holds archive, log and manifest under the prefix, and nothing is left open.
    let s3 = moto.s3_client();
    let keys: Vec<String> = s3
        .list_objects_v2()
        .bucket("backups")
        .prefix("prod/eu/backups/nightly-1/")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(moto.open_multipart_uploads("backups").await.is_empty());

    let list = env
        .lifeboat(&config, &["backup", "list", "--output", "json"])
        .await;
    list.expect_code(0);
    let list = list.json();
    assert_eq!(list[0]["name"], "nightly-1");
    assert_eq!(list[0]["phase"], "Completed");
    for key in [
        "name",
        "phase",
        "schedule",
        "startedAt",
        "completedAt",
        "itemCount",
        "archiveSize",
        "volumeCount",
        "expiresAt",
    ] {
        assert!(list[0].get(key).is_some(), "summary lacks {key}");
    }
    let text = env.lifeboat(&config, &["backup", "list"]).await;
    assert!(
        text.stdout.starts_with("NAME")
            && text.stdout.contains("nightly-1")
            && text.stdout.contains("Completed"),
        "{}",
        text.stdout
    );
    let described = env
        .lifeboat(
            &config,
            &["backup", "describe", "nightly-1", "--output", "json"],
        )
        .await
        .json();
    assert_eq!(described["itemCount"], manifest["itemCount"]);
    assert!(described["volumes"].is_array());
    let text = env
        .lifeboat(&config, &["backup", "describe", "nightly-1"])
        .await;
    assert!(
        text.stdout.contains("widgets.synth.example.com")
            && text.stdout.contains("Phase:       Completed"),
        "{}",
        text.stdout
    );

    let file = env.dir.path().join("nightly-1.tar.zst");
    env.lifeboat(
        &config,
        &[
            "backup",
            "download",
            "nightly-1",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(0);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        manifest["archive"]["size"].as_u64().unwrap()
    );
    let (root, paths) = extract(&file);
    let archived = archived_objects(root.path(), &paths);
    let k = Kubectl::new(env.sim.kubeconfig_path()).unwrap();
    for obj in kubectl_objects(&k).await {
        assert_eq!(archived.get(&key_of(&obj)), Some(&obj));
    }

    env.lifeboat(&config, &["backup", "delete", "nightly-1"])
        .await
        .expect_code(0);
    assert_eq!(
        env.lifeboat(&config, &["backup", "list", "--output", "json"])
            .await
            .json(),
        json!([])
    );
    env.lifeboat(&config, &["backup", "describe", "nightly-1"])
        .await
        .expect_code(1);
}

/// Entry paths of a backup made with `args`.
async fn paths_of(env: &Env, name: &str, args: &[&str]) -> Vec<String> {
    let config = env.local_config("");
    let mut all = vec!["backup", "create", name, "--output", "json"];
    all.extend_from_slice(args);
    let run = env.lifeboat(&config, &all).await;
    run.expect_code(0);
    let archive = env
        .store_dir()
        .join(run.json()["archive"]["key"].as_str().unwrap());
    extract(&archive).1
}

const APPS: &str = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, kind: Gadget}
  versions: [{name: v1, served: true, storage: true}]
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Namespace
metadata: {name: tools}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: team-a, labels: {app: web}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: db, namespace: team-a, labels: {app: db}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: team-b, labels: {app: web}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: lint, namespace: tools}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g1, namespace: team-a}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-a}
spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], nfs: {server: nfs.example.com, path: /a}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: team-a}
spec: {accessModes: [ReadWriteOnce], volumeName: pv-a, resources: {requests: {storage: 1Gi}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: []
---
apiVersion: v1
kind: Event
metadata: {name: e1, namespace: team-a}
involvedObject: {kind: ConfigMap, name: web, namespace: team-a}
reason: Test
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_globs_selectors_and_cluster_scope() {
    if !tools_available() {
        return;
    }
    let env = Env::new().await;
    env.sim.seed_yaml(APPS).unwrap();
    let has = |paths: &[String], p: &str| paths.iter().any(|x| x == p);

    // Whole cluster: cluster-scoped resources in (auto), events out by default.
    let all = paths_of(&env, "all", &[]).await;
    assert!(has(
        &all,
        "resources/clusterroles.rbac.authorization.k8s.io/cluster/reader.json"
    ));
    assert!(has(&all, "resources/configmaps/namespaces/tools/lint.json"));
    assert!(
        !all.iter().any(|p| p.starts_with("resources/events")),
        "events are excluded by default"
    );

    // A namespace glob: its objects, its Namespace object, the CRD of its custom resources and
    // the PV of its claim; no other cluster-scoped object, nothing of other namespaces.
    let team = paths_of(
        &env,
        "team",
        &[
            "--include-namespaces",
            "team-*",
            "--exclude-namespaces",
            "team-b",
        ],
    )
    .await;
    assert!(has(
        &team,
        "resources/configmaps/namespaces/team-a/web.json"
    ));
    assert!(!has(
        &team,
        "resources/configmaps/namespaces/team-b/web.json"
    ));
    assert!(!has(
        &team,
        "resources/configmaps/namespaces/tools/lint.json"
    ));
    assert!(has(&team, "resources/namespaces/cluster/team-a.json"));
    assert!(!has(&team, "resources/namespaces/cluster/tools.json"));
    assert!(has(
        &team,
        "resources/gadgets.example.com/namespaces/team-a/g1.json"
    ));
    assert!(has(
        &team,
        "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/gadgets.example.com.json"
    ));
    assert!(has(&team, "resources/persistentvolumes/cluster/pv-a.json"));
    assert!(!has(
        &team,
        "resources/clusterroles.rbac.authorization.k8s.io/cluster/reader.json"
    ));

    // Literal namespaces are listed one by one; the result is the same kind of selection.
    let one = paths_of(&env, "one", &["--include-namespaces", "tools"]).await;
    assert!(
        has(&one, "resources/configmaps/namespaces/tools/lint.json")
            && !has(&one, "resources/configmaps/namespaces/team-a/web.json")
    );

    // A label selector applies to every type.
    let web = paths_of(&env, "web", &["--selector", "app=web"]).await;
    let objects: Vec<&String> = web.iter().filter(|p| p.starts_with("resources/")).collect();
    assert_eq!(
        objects,
        [
            "resources/configmaps/namespaces/team-a/web.json",
            "resources/configmaps/namespaces/team-b/web.json"
        ]
    );

    // Resources by plural, plural.group or Kind; exclusions; events when asked for.
    let only = paths_of(
        &env,
        "only",
        &[
            "--include-resources",
            "Gadget,configmaps",
            "--exclude-namespaces",
            "team-b,tools",
        ],
    )
    .await;
    assert!(
        has(
            &only,
            "resources/gadgets.example.com/namespaces/team-a/g1.json"
        ) && has(&only, "resources/configmaps/namespaces/team-a/db.json")
    );
    assert!(
        !only
            .iter()
            .any(|p| p.starts_with("resources/persistentvolumeclaims"))
    );
    let no_cm = paths_of(
        &env,
        "nocm",
        &[
            "--exclude-resources",
            "configmaps",
            "--include-cluster-resources",
            "false",
        ],
    )
    .await;
    assert!(!no_cm.iter().any(|p| p.starts_with("resources/configmaps/")));
    assert!(!has(
        &no_cm,
        "resources/clusterroles.rbac.authorization.k8s.io/cluster/reader.json"
    ));
    let ev = paths_of(&env, "ev", &["--include-resources", "events"]).await;
    assert!(has(&ev, "resources/events/namespaces/team-a/e1.json"));

    // A bad filter is a usage error.
    let config = env.local_config("");
    let bad = env
        .lifeboat(
            &config,
            &["backup", "create", "bad", "--include-namespaces", "x["],
        )
        .await;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("x["), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_named_and_fails() {
    let Some(moto) = Moto::start() else { return };
    let env = Env::new().await;
    let config = env.config(
        "s3.yaml",
        &s3_config(&moto.endpoint(), "no-such-bucket", "x", ""),
    );
    let run = env.lifeboat(&config, &["backup", "create", "b1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no-such-bucket") && run.stderr.contains("does not exist"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failing_mid_upload_leaves_no_manifest_and_no_open_upload() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("backups").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let env = Env::new().await;
    // Incompressible data so that the archive needs several 8 MiB parts.
    for i in 0..40 {
        let data = lifeboat_testkit::incompressible(1 + i, 700_000);
        env.sim.seed_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("big-{i}"), "namespace": "default"}, "data": {"blob": data}})).unwrap();
    }
    let rule = proxy.add(
        Rule::internal_error()
            .method("PUT")
            .query_param("partNumber", "2"),
    );
    let config = env.config("s3.yaml", &s3_config(&proxy.endpoint(), "backups", "p", ""));
    let run = env.lifeboat(&config, &["backup", "create", "b1"]).await;
    assert_eq!(run.code, 1, "stdout {}\nstderr {}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("nothing was committed"),
        "{}",
        run.stderr
    );
    assert!(
        proxy.fired(rule) >= 5,
        "the part was retried at least five times"
    );
    let s3 = moto.s3_client();
    assert!(
        s3.head_object()
            .bucket("backups")
            .key("p/backups/b1/manifest.json")
            .send()
            .await
            .is_err(),
        "no manifest"
    );
    assert!(
        moto.open_multipart_uploads("backups").await.is_empty(),
        "the multipart upload was aborted"
    );
    proxy.remove(rule);
    let list = env
        .lifeboat(&config, &["backup", "list", "--output", "json"])
        .await;
    assert_eq!(list.json(), json!([]));
    // The next run succeeds and is the only backup.
    env.lifeboat(&config, &["backup", "create", "b2"])
        .await
        .expect_code(0);
    let list = env
        .lifeboat(&config, &["backup", "list", "--output", "json"])
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_type_gives_partially_failed_naming_it() {
    let env = Env::new().await;
    env.sim.seed_yaml(APPS).unwrap();
    env.sim.add_fault(Fault::status("/api/v1/configmaps", 500));
    let config = env.local_config("");
    let run = env
        .lifeboat(
            &config,
            &["backup", "create", "partial", "--output", "json"],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let m = run.json();
    assert_eq!(m["phase"], "PartiallyFailed");
    let errors = m["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["resource"], "configmaps");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("500"),
        "{errors:?}"
    );
    assert!(
        m["resources"]["gadgets.example.com"].as_u64() == Some(1),
        "the other types are in"
    );
    // It is listed, so operators see it, with its phase.
    let list = env
        .lifeboat(&config, &["backup", "list", "--output", "json"])
        .await
        .json();
    assert_eq!(list[0]["phase"], "PartiallyFailed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_continue_token_is_resumed_without_duplicates() {
    if !tools_available() {
        return;
    }
    let env = Env::new().await;
    for i in 0..1234 {
        env.sim.seed_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i:04}"), "namespace": "default"}})).unwrap();
    }
    env.sim
        .add_fault(Fault::new("/api/v1/configmaps", FaultAction::ExpireContinue).times(1));
    let config = env.local_config("");
    let run = env
        .lifeboat(
            &config,
            &["backup", "create", "resumed", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    let m = run.json();
    assert_eq!(m["resources"]["configmaps"], 1234);
    let log = env.sim.requests();
    assert!(
        log.iter()
            .any(|r| r.path == "/api/v1/configmaps" && r.status == 410),
        "the fault fired"
    );
    let (root, paths) = extract(&env.store_dir().join(m["archive"]["key"].as_str().unwrap()));
    let cms = archived_objects(root.path(), &paths)
        .into_keys()
        .filter(|k| k.1 == "ConfigMap")
        .count();
    assert_eq!(cms, 1234, "each object exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_flaky_api_are_retried() {
    let env = Env::new().await;
    env.sim.seed_yaml(APPS).unwrap();
    env.sim.add_fault(
        Fault::new(
            "/api/v1/configmaps",
            FaultAction::Status {
                code: 429,
                retry_after: Some(1),
            },
        )
        .times(2),
    );
    env.sim.add_fault(
        Fault::new("/apis/example.com/v1/gadgets", FaultAction::DropConnection).times(1),
    );
    env.sim
        .add_fault(Fault::status("/api/v1/persistentvolumeclaims", 503).times(3));
    let config = env.local_config("");
    let run = env
        .lifeboat(&config, &["backup", "create", "flaky", "--output", "json"])
        .await;
    run.expect_code(0);
    let m = run.json();
    assert_eq!(m["resources"]["configmaps"], 4);
    assert_eq!(m["resources"]["gadgets.example.com"], 1);
    assert_eq!(m["resources"]["persistentvolumeclaims"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_of_all_requests_throttled_still_gives_a_complete_backup() {
    let env = Env::new().await;
    seed_synthetic(&env.sim, 3000);
    let config = env.local_config("");
    let clean = env
        .lifeboat(&config, &["backup", "create", "clean", "--output", "json"])
        .await;
    clean.expect_code(0);
    let before = env.sim.requests().len();
    // Every 4th request of any kind (discovery, lists, version) is throttled.
    env.sim.add_fault(
        Fault::new(
            "*",
            FaultAction::Status {
                code: 429,
                retry_after: None,
            },
        )
        .every(4),
    );
    let run = env
        .lifeboat(
            &config,
            &["backup", "create", "throttled", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    let (m, c) = (run.json(), clean.json());
    assert_eq!(m["phase"], "Completed");
    assert_eq!(m["itemCount"], c["itemCount"]);
    assert_eq!(m["resources"], c["resources"]);
    let requests = &env.sim.requests()[before..];
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    assert!(
        throttled * 5 >= requests.len() && throttled * 3 <= requests.len(),
        "{throttled} of {} requests throttled",
        requests.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_and_names_are_refused_with_the_key_and_line() {
    let env = Env::new().await;
    let config = env.config(
        "bad.yaml",
        "storage:\n  url: s3://bkt/p\n  region: us-east-1\n  partSize: 5\n",
    );
    let run = env.lifeboat(&config, &["backup", "list"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("bad.yaml:4:3") && run.stderr.contains("storage.partSize"),
        "{}",
        run.stderr
    );
    let validate = env.cli.run(&["config", "validate", &config]).await;
    assert_eq!(validate.code, 1);
    assert!(
        validate.stderr.contains("storage.partSize"),
        "{}",
        validate.stderr
    );
    let good = env.local_config("");
    env.cli
        .run(&["config", "validate", &good])
        .await
        .expect_code(0);
    let run = env.lifeboat(&good, &["backup", "create", "Bad_Name"]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid backup name"), "{}", run.stderr);
    // Usage errors exit 1 (2 means PartiallyFailed).
    assert_eq!(env.cli.run(&["backup", "create"]).await.code, 1);
    assert_eq!(env.cli.run(&["--help"]).await.code, 0);
    // A name that exists is refused, nothing is overwritten.
    env.lifeboat(&good, &["backup", "create", "same"])
        .await
        .expect_code(0);
    let again = env.lifeboat(&good, &["backup", "create", "same"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_is_ever_printed_or_logged() {
    let env = Env::new().await;
    let canary = "canary-7f3a-do-not-print";
    let b64 = "Y2FuYXJ5LTdmM2EtZG8tbm90LXByaW50";
    env.sim.seed_yaml(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s1, namespace: default}}\nstringData: {{token: {canary}}}\n")).unwrap();
    let config = env.local_config("");
    let mut outputs = Vec::new();
    for (i, level) in ["info", "debug", "trace"].iter().enumerate() {
        for format in ["text", "json"] {
            let name = format!("s-{i}-{format}");
            let run = env
                .lifeboat(
                    &config,
                    &[
                        "backup",
                        "create",
                        &name,
                        "--log-level",
                        level,
                        "--log-format",
                        format,
                        "--output",
                        format,
                    ],
                )
                .await;
            run.expect_code(0);
            outputs.push(run.stdout + &run.stderr);
            let d = env
                .lifeboat(
                    &config,
                    &[
                        "backup",
                        "describe",
                        &name,
                        "--log-level",
                        level,
                        "--output",
                        format,
                    ],
                )
                .await;
            outputs.push(d.stdout + &d.stderr);
        }
    }
    let traced = Cli::new(BIN).env("RUST_LOG", "trace");
    let kc = env.kubeconfig();
    let run = traced
        .run(&[
            "--config",
            &config,
            "--kubeconfig",
            &kc,
            "backup",
            "create",
            "s-rust-log",
        ])
        .await;
    run.expect_code(0);
    outputs.push(run.stdout + &run.stderr);
    for out in &outputs {
        assert!(
            !out.contains(canary) && !out.contains(b64),
            "a Secret value was printed"
        );
    }
    assert!(
        outputs.iter().any(|o| o.len() > 1000),
        "trace logging produced output to check"
    );
    // The run logs stored next to the archives are clean too.
    for entry in walk(&env.store_dir()) {
        if entry.ends_with("log.jsonl.zst") {
            let text =
                String::from_utf8(zstd::decode_all(std::fs::File::open(&entry).unwrap()).unwrap())
                    .unwrap();
            assert!(!text.contains(canary) && !text.contains(b64));
            assert!(text.contains("archiveWritten") && text.contains("typeDone"));
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Peak memory of the backup process must not grow with the number of objects once the
/// compression window is full (a small window here, so that both sizes fill it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_does_not_grow_with_cluster_size() {
    let mut peaks = Vec::new();
    for n in [4000, 20_000] {
        let env = Env::new().await;
        seed_synthetic(&env.sim, n);
        let config = env.local_config("archive:\n  windowLog: 20\n");
        let run = env
            .lifeboat(
                &config,
                &["backup", "create", "mem", "--log-format", "json"],
            )
            .await;
        run.expect_code(0);
        let finished: Value = run
            .stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "backup finished")
            .expect("a backup finished log line");
        assert_eq!(
            finished["items"].as_u64().unwrap() as usize,
            n + n.div_ceil(200) + 4 + 1,
            "{finished}"
        );
        peaks.push(finished["peak_rss_bytes"].as_u64().unwrap());
    }
    let growth = peaks[1].saturating_sub(peaks[0]);
    eprintln!(
        "peak RSS: {} MiB at 4k objects, {} MiB at 20k objects",
        peaks[0] >> 20,
        peaks[1] >> 20
    );
    assert!(
        growth < 24 << 20,
        "peak RSS grew by {} MiB for 5x the objects",
        growth >> 20
    );
}
