//! `lifeboat restore` and `lifeboat drill` end to end: back up kubesim cluster A, restore into
//! an empty cluster B (or into A under a namespace mapping), with volumes recreated in moto's
//! EC2 and storage in moto's S3 or a local directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_ec2::types::VolumeType;
use kubesim::KubeSim;
use kubesim::kubectl::{self, Kubectl};
use lifeboat_testkit::{Cli, Moto, Run, file_config, s3_config};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

struct Env {
    a: KubeSim,
    b: KubeSim,
    dir: tempfile::TempDir,
    cli: Cli,
    config: String,
}

impl Env {
    /// Two clusters and local storage (no AWS).
    async fn local() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lb.yaml");
        std::fs::write(
            &config,
            file_config(&dir.path().join("store"), "volumes:\n  snapshots: false\n"),
        )
        .unwrap();
        Env {
            a: KubeSim::start().await.unwrap(),
            b: KubeSim::start().await.unwrap(),
            config: config.display().to_string(),
            dir,
            cli: Cli::new(BIN),
        }
    }

    async fn on(&self, sim: &KubeSim, args: &[&str]) -> Run {
        let kc = sim.kubeconfig_path().display().to_string();
        let mut all = vec!["--config", self.config.as_str(), "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }
}

/// Fields a restore legitimately changes (and the server fills in) are dropped before
/// comparing: identity, timestamps, managedFields, status, allocated Service addresses.
fn normalized(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "ownerReferences",
        ] {
            m.remove(k);
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    if v["kind"] == "Service" {
        for k in ["clusterIP", "clusterIPs"] {
            if v["spec"][k] != json!("None") && v["spec"][k] != json!(["None"]) {
                v["spec"].as_object_mut().map(|s| s.remove(k));
            }
        }
        if let Some(ports) = v["spec"]["ports"].as_array_mut() {
            for p in ports {
                p.as_object_mut().map(|p| p.remove("nodePort"));
            }
        }
    }
    if v["kind"] == "PersistentVolumeClaim"
        && let Some(a) = v["metadata"]["annotations"].as_object_mut()
    {
        a.retain(|k, _| {
            !k.starts_with("pv.kubernetes.io/")
                && !k.contains("storage-provisioner")
                && k != "volume.kubernetes.io/selected-node"
        });
    }
    if v["kind"] == "PersistentVolume" {
        v["spec"]["claimRef"].as_object_mut().map(|c| {
            c.remove("uid");
            c.remove("resourceVersion")
        });
    }
    v
}

/// Every object of the types a backup holds, keyed by group/kind/namespace/name.
async fn objects(k: &Kubectl) -> BTreeMap<String, Value> {
    let types = k
        .ok(&[
            "api-resources",
            "--verbs=list,get,create,delete",
            "-o",
            "name",
        ])
        .await;
    let types: Vec<&str> = types.lines().filter(|t| !t.is_empty()).collect();
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
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let group = o["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .map_or("", |(g, _)| g);
            (
                format!(
                    "{group}/{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o.clone(),
            )
        })
        .collect()
}

/// Kinds a restore never writes (DESIGN.md "Restore rules").
fn never_restored(key: &str) -> bool {
    [
        "/Node/",
        "/Event/",
        "/CSINode/",
        "/VolumeAttachment/",
        "/Lease/",
    ]
    .iter()
    .any(|k| key.contains(k))
}

/// Backs up A, restores into empty B, and checks B holds every restorable object of A.
async fn round_trip(env: &Env) {
    env.on(&env.a, &["backup", "create", "b1"])
        .await
        .expect_code(0);
    let run = env
        .on(
            &env.b,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r1",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["phase"], "Completed");
    assert_eq!(result["counts"]["failed"], 0, "{result}");
    let ka = Kubectl::new(env.a.kubeconfig_path()).unwrap();
    let kb = Kubectl::new(env.b.kubeconfig_path()).unwrap();
    let (a, b) = (objects(&ka).await, objects(&kb).await);
    let skipped: Vec<String> = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == "skipped")
        .map(|i| {
            format!(
                "{}/{}/{}",
                i["resource"],
                i["namespace"].as_str().unwrap_or(""),
                i["name"]
            )
        })
        .collect();
    let mut compared = 0;
    for (key, obj) in &a {
        if never_restored(key) {
            continue;
        }
        let Some(restored) = b.get(key) else {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
            let name = obj["metadata"]["name"].as_str().unwrap();
            assert!(
                skipped
                    .iter()
                    .any(|s| s.ends_with(&format!("/{ns}/\"{name}\""))),
                "{key} is in A, not in B, and not reported as skipped"
            );
            continue;
        };
        assert_eq!(
            normalized(restored.clone()),
            normalized(obj.clone()),
            "{key} differs after the restore"
        );
        compared += 1;
    }
    assert!(compared > 0);
    // The report is stored with the backups.
    let stored = env.dir.path().join("store/restores/r1/result.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(stored).unwrap()).unwrap();
    assert_eq!(stored["name"], "r1");
}

async fn scenario(name: &str) {
    if !kubectl::available() {
        return;
    }
    let Some(root) = std::env::var_os("LIFEBOAT_FIXTURES").map(PathBuf::from) else {
        eprintln!("LIFEBOAT_FIXTURES is not set: skipping the real-world scenario {name:?}");
        return;
    };
    let env = Env::local().await;
    env.a.seed_dir(root.join(name)).unwrap();
    round_trip(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_apps() {
    scenario("apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_autoscaling() {
    scenario("autoscaling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_certs() {
    scenario("certs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_edge_cases() {
    scenario("edge-cases").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_monitoring() {
    scenario("monitoring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_storage_ebs() {
    scenario("storage-ebs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_generated_cluster_and_drill() {
    if !kubectl::available() {
        return;
    }
    let env = Env::local().await;
    env.a.seed_object(kubesim::synth::crd()).unwrap();
    for ns in kubesim::synth::namespaces(1500) {
        env.a.seed_object(ns).unwrap();
    }
    for o in kubesim::synth::objects(1500, 3) {
        env.a.seed_object(o).unwrap();
    }
    round_trip(&env).await;
    // A drill into an embedded cluster checks the same backup and passes.
    let drill = env
        .on(
            &env.a,
            &[
                "drill",
                "--from-backup",
                "b1",
                "--target",
                "embedded",
                "--output",
                "json",
            ],
        )
        .await;
    drill.expect_code(0);
    let report = drill.json();
    assert_eq!(report["passed"], true, "{report}");
    assert!(report["checked"].as_u64().unwrap() >= 1500);
    assert!(report["rtoSeconds"].as_f64().unwrap() > 0.0);
    // And into a staging cluster by kubeconfig (B already has everything: it all exists).
    let kb = env.b.kubeconfig_path().display().to_string();
    let drill = env
        .on(
            &env.a,
            &[
                "drill",
                "--from-backup",
                "b1",
                "--target-kubeconfig",
                &kb,
                "--output",
                "json",
            ],
        )
        .await;
    drill.expect_code(0);
    assert_eq!(
        drill.json()["restore"]["counts"]["exists"]
            .as_u64()
            .unwrap(),
        drill.json()["checked"].as_u64().unwrap()
    );
}

const SHOP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: production}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: app, namespace: shop}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_mapping_into_the_same_cluster_and_existing_policies() {
    if !kubectl::available() {
        return;
    }
    let env = Env::local().await;
    env.a.seed_yaml(SHOP).unwrap();
    env.on(&env.a, &["backup", "create", "b1"])
        .await
        .expect_code(0);
    let k = Kubectl::new(env.a.kubeconfig_path()).unwrap();

    // A copy of shop as shop-drill, next to the original.
    let run = env
        .on(
            &env.a,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--include-namespaces",
                "shop",
                "--namespace-mapping",
                "shop:shop-drill",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let rb: Value = serde_json::from_str(
        &k.ok(&[
            "get",
            "rolebinding",
            "app-reader",
            "-n",
            "shop-drill",
            "-o",
            "json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(
        rb["subjects"][0]["namespace"], "shop-drill",
        "RoleBinding subjects follow the mapping"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop-drill",
            "-o",
            "jsonpath={.data.mode}"
        ])
        .await,
        "production"
    );
    let svc: Value = serde_json::from_str(
        &k.ok(&["get", "svc", "web", "-n", "shop-drill", "-o", "json"])
            .await,
    )
    .unwrap();
    let orig: Value = serde_json::from_str(
        &k.ok(&["get", "svc", "web", "-n", "shop", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_ne!(
        svc["spec"]["clusterIP"], orig["spec"]["clusterIP"],
        "the copy gets its own cluster IP"
    );

    // Restoring over the live namespace: `none` leaves objects alone and reports them.
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "-p",
        r#"{"data":{"mode":"maintenance"}}"#,
    ])
    .await;
    let run = env
        .on(
            &env.a,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--include-namespaces",
                "shop",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let result = run.json();
    let action = |name: &str, resource: &str| {
        result["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name && i["resource"] == resource)
            .map(|i| (i["action"].clone(), i["message"].clone()))
            .unwrap()
    };
    let (a, msg) = action("settings", "configmaps");
    assert_eq!(a, "differs");
    assert!(msg.as_str().unwrap().contains(".data.mode"), "{msg}");
    assert_eq!(action("app", "serviceaccounts").0, "exists");
    assert_eq!(
        result["phase"], "Completed",
        "exists and differs are warnings"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.mode}"
        ])
        .await,
        "maintenance"
    );

    // `update` puts the backed-up object back.
    let run = env
        .on(
            &env.a,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--include-namespaces",
                "shop",
                "--existing-resource-policy",
                "update",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    assert_eq!(
        run.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "settings")
            .unwrap()["action"],
        "updated"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.mode}"
        ])
        .await,
        "production"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_anywhere() {
    let env = Env::local().await;
    env.a.seed_yaml(SHOP).unwrap();
    env.on(&env.a, &["backup", "create", "b1"])
        .await
        .expect_code(0);
    env.b.clear_requests();
    let files_before = count_files(&env.dir.path().join("store"));
    let run = env
        .on(
            &env.b,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--dry-run",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["dryRun"], true);
    assert!(
        result["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "would-create" && i["name"] == "settings")
    );
    let mutating: Vec<_> = env
        .b
        .requests()
        .into_iter()
        .filter(kubesim::RequestRecord::is_mutating)
        .collect();
    assert!(mutating.is_empty(), "a dry run sent {mutating:?}");
    assert_eq!(
        count_files(&env.dir.path().join("store")),
        files_before,
        "no object written to storage"
    );
    let text = env
        .on(
            &env.b,
            &["restore", "create", "--from-backup", "b1", "--dry-run"],
        )
        .await;
    assert!(
        text.stdout.contains("dry run: nothing was written"),
        "{}",
        text.stdout
    );
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |it| {
        it.filter_map(Result::ok)
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_archive_is_refused_before_any_write() {
    let env = Env::local().await;
    env.a.seed_yaml(SHOP).unwrap();
    let m = env
        .on(&env.a, &["backup", "create", "b1", "--output", "json"])
        .await
        .json();
    let archive = env
        .dir
        .path()
        .join("store")
        .join(m["archive"]["key"].as_str().unwrap());
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&archive, bytes).unwrap();
    env.b.clear_requests();
    let run = env
        .on(&env.b, &["restore", "create", "--from-backup", "b1"])
        .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was restored"),
        "{}",
        run.stderr
    );
    assert!(
        env.b.requests().iter().all(|r| !r.is_mutating()),
        "no write before the checksum is verified"
    );
}

// ---------------------------------------------------------------- volumes (moto)

struct AwsEnv {
    moto: Moto,
    a: KubeSim,
    b: KubeSim,
    cli: Cli,
    config: String,
    _dir: tempfile::TempDir,
}

impl AwsEnv {
    async fn new() -> Option<AwsEnv> {
        let moto = Moto::start()?;
        moto.create_bucket("backups").await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lb.yaml");
        let extra = format!(
            "volumes:\n  region: us-east-1\n  endpoint: {}\n",
            moto.endpoint()
        );
        std::fs::write(&config, s3_config(&moto.endpoint(), "backups", "p", &extra)).unwrap();
        Some(AwsEnv {
            a: KubeSim::start().await.unwrap(),
            b: KubeSim::start().await.unwrap(),
            cli: Cli::new(BIN),
            config: config.display().to_string(),
            _dir: dir,
            moto,
        })
    }

    async fn on(&self, sim: &KubeSim, args: &[&str]) -> Run {
        let kc = sim.kubeconfig_path().display().to_string();
        let mut all = vec!["--config", self.config.as_str(), "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }

    async fn volume(
        &self,
        az: &str,
        kind: VolumeType,
        iops: Option<i32>,
        throughput: Option<i32>,
    ) -> String {
        let mut req = self
            .moto
            .ec2_client()
            .create_volume()
            .availability_zone(az)
            .size(4)
            .volume_type(kind);
        if let Some(i) = iops {
            req = req.iops(i);
        }
        if let Some(t) = throughput {
            req = req.throughput(t);
        }
        req.send().await.unwrap().volume_id().unwrap().to_string()
    }

    async fn describe(&self, id: &str) -> aws_sdk_ec2::types::Volume {
        self.moto
            .ec2_client()
            .describe_volumes()
            .volume_ids(id)
            .send()
            .await
            .unwrap()
            .volumes()[0]
            .clone()
    }
}

fn pv_yaml(name: &str, ns: &str, claim: &str, csi: bool, vol: &str, zone: &str) -> String {
    let source = if csi {
        format!(
            "csi: {{driver: ebs.csi.aws.com, volumeHandle: {vol}}}\n  nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: topology.ebs.csi.aws.com/zone, operator: In, values: [{zone}]}}]}}]}}}}"
        )
    } else {
        format!("awsElasticBlockStore: {{volumeID: aws://{zone}/{vol}}}")
    };
    let labels = if csi {
        String::new()
    } else {
        format!(", labels: {{topology.kubernetes.io/zone: {zone}}}")
    };
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}{labels}}}\nspec:\n  capacity: {{storage: 4Gi}}\n  accessModes: [ReadWriteOnce]\n  claimRef: {{namespace: {ns}, name: {claim}}}\n  {source}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {claim}, namespace: {ns}}}\nspec: {{accessModes: [ReadWriteOnce], volumeName: {name}, resources: {{requests: {{storage: 4Gi}}}}}}\n---\n"
    )
}

async fn seed_volumes(env: &AwsEnv) -> [String; 3] {
    let v1 = env
        .volume("us-east-1a", VolumeType::Gp3, Some(4000), Some(250))
        .await;
    let v2 = env
        .volume("us-east-1b", VolumeType::Io2, Some(6000), None)
        .await;
    let v3 = env.volume("us-east-1c", VolumeType::Gp2, None, None).await;
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: db}}\n---\n{}{}{}",
        pv_yaml("pv-a", "db", "data-a", true, &v1, "us-east-1a"),
        pv_yaml("pv-b", "db", "data-b", false, &v2, "us-east-1b"),
        pv_yaml("pv-c", "db", "data-c", true, &v3, "us-east-1c")
    );
    env.a.seed_yaml(&yaml).unwrap();
    [v1, v2, v3]
}

async fn pv(sim: &KubeSim, name: &str) -> Value {
    let k = Kubectl::new(sim.kubeconfig_path()).unwrap();
    serde_json::from_str(&k.ok(&["get", "pv", name, "-o", "json"]).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_come_back_in_their_zones_with_type_iops_and_throughput() {
    if !kubectl::available() {
        return;
    }
    let Some(env) = AwsEnv::new().await else {
        return;
    };
    let old = seed_volumes(&env).await;
    env.on(&env.a, &["backup", "create", "b1"])
        .await
        .expect_code(0);
    let run = env
        .on(
            &env.b,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r1",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let result = run.json();
    let volumes = result["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 3);
    for (pv_name, old_id, zone, kind, iops, throughput) in [
        ("pv-a", &old[0], "us-east-1a", "gp3", Some(4000), Some(250)),
        ("pv-b", &old[1], "us-east-1b", "io2", Some(6000), None),
        ("pv-c", &old[2], "us-east-1c", "gp2", None, None),
    ] {
        let r = volumes
            .iter()
            .find(|v| v["persistentVolume"] == pv_name)
            .unwrap();
        assert_eq!(r["oldVolumeId"], old_id.as_str());
        assert_eq!(r["availabilityZone"], zone);
        let new_id = r["newVolumeId"].as_str().unwrap();
        assert_ne!(new_id, old_id);
        let v = env.describe(new_id).await;
        assert_eq!(
            v.availability_zone(),
            Some(zone),
            "{pv_name} in its original AZ"
        );
        assert_eq!(
            v.volume_type().map(aws_sdk_ec2::types::VolumeType::as_str),
            Some(kind)
        );
        if let Some(i) = iops {
            assert_eq!(v.iops(), Some(i));
        }
        assert_eq!(v.throughput(), throughput);
        assert!(v.snapshot_id().is_some(), "made from the snapshot");
        let restored = pv(&env.b, pv_name).await;
        if pv_name == "pv-b" {
            assert_eq!(
                restored["spec"]["awsElasticBlockStore"]["volumeID"],
                format!("aws://{zone}/{new_id}")
            );
            assert_eq!(
                restored["metadata"]["labels"]["topology.kubernetes.io/zone"],
                zone
            );
        } else {
            assert_eq!(restored["spec"]["csi"]["volumeHandle"], new_id);
            assert_eq!(
                restored["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"]
                    [0]["values"],
                json!([zone])
            );
        }
    }

    // --zone-mapping moves a volume and rewrites its nodeAffinity.
    let run = env
        .on(
            &env.b,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r2",
                "--namespace-mapping",
                "db:db2",
                "--zone-mapping",
                "us-east-1a:us-east-1f",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let result = run.json();
    let moved = result["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["persistentVolume"] == "pv-a-db2")
        .expect("PV renamed because pv-a exists for another claim");
    assert_eq!(moved["availabilityZone"], "us-east-1f");
    assert_eq!(
        env.describe(moved["newVolumeId"].as_str().unwrap())
            .await
            .availability_zone(),
        Some("us-east-1f")
    );
    let renamed = pv(&env.b, "pv-a-db2").await;
    assert_eq!(renamed["spec"]["claimRef"]["namespace"], "db2");
    assert_eq!(
        renamed["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"],
        json!(["us-east-1f"])
    );
    let k = Kubectl::new(env.b.kubeconfig_path()).unwrap();
    assert_eq!(
        k.ok(&[
            "get",
            "pvc",
            "data-a",
            "-n",
            "db2",
            "-o",
            "jsonpath={.spec.volumeName}"
        ])
        .await,
        "pv-a-db2"
    );

    // Restoring again where the PVs exist makes no new volume.
    let before = env
        .moto
        .ec2_client()
        .describe_volumes()
        .send()
        .await
        .unwrap()
        .volumes()
        .len();
    let run = env
        .on(
            &env.b,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r3",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    assert!(run.json()["volumes"].as_array().unwrap().is_empty());
    assert_eq!(
        env.moto
            .ec2_client()
            .describe_volumes()
            .send()
            .await
            .unwrap()
            .volumes()
            .len(),
        before,
        "no orphan volume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_snapshot_is_refused_before_any_write_and_a_dry_run_creates_no_volume() {
    let Some(env) = AwsEnv::new().await else {
        return;
    };
    seed_volumes(&env).await;
    env.on(&env.a, &["backup", "create", "b1"])
        .await
        .expect_code(0);
    let ec2 = env.moto.ec2_client();
    let volumes_before = ec2.describe_volumes().send().await.unwrap().volumes().len();
    env.b.clear_requests();
    let run = env
        .on(
            &env.b,
            &[
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--dry-run",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    assert_eq!(run.json()["volumes"].as_array().unwrap().len(), 3);
    assert!(run.json()["volumes"][0]["newVolumeId"].is_null());
    assert_eq!(
        ec2.describe_volumes().send().await.unwrap().volumes().len(),
        volumes_before,
        "a dry run creates no volume"
    );
    assert!(env.b.requests().iter().all(|r| !r.is_mutating()));
    let objects = env
        .moto
        .s3_client()
        .list_objects_v2()
        .bucket("backups")
        .prefix("p/restores/")
        .send()
        .await
        .unwrap();
    assert_eq!(objects.key_count(), Some(0), "a dry run writes no report");

    // Delete one snapshot: the restore refuses before writing anything.
    let lifeboat = aws_sdk_ec2::types::Filter::builder()
        .name("tag:lifeboat.io/pv")
        .values("pv-b")
        .build();
    let snap = ec2
        .describe_snapshots()
        .filters(lifeboat)
        .send()
        .await
        .unwrap()
        .snapshots()[0]
        .snapshot_id()
        .unwrap()
        .to_string();
    ec2.delete_snapshot()
        .snapshot_id(&snap)
        .send()
        .await
        .unwrap();
    let run = env
        .on(&env.b, &["restore", "create", "--from-backup", "b1"])
        .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&snap)
            && run.stderr.contains("no longer exists")
            && run.stderr.contains("nothing was written"),
        "{}",
        run.stderr
    );
    assert!(
        env.b.requests().iter().all(|r| !r.is_mutating()),
        "no API write"
    );
    assert_eq!(
        ec2.describe_volumes().send().await.unwrap().volumes().len(),
        volumes_before,
        "no volume"
    );
}
