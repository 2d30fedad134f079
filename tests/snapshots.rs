//! EBS snapshots during a backup, end to end: volumes created in moto_server (EC2) in three
//! AZs, PersistentVolumes in kubesim pointing at them, the `lifeboat` binary backing up to
//! moto's S3. Pending snapshots and throttling come from a fault proxy in front of moto.

use aws_sdk_ec2::types::VolumeType;
use kubesim::KubeSim;
use lifeboat_testkit::{Cli, FaultProxy, Moto, Rule, Run, s3_config};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

struct Env {
    moto: Moto,
    sim: KubeSim,
    dir: tempfile::TempDir,
    cli: Cli,
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

    /// A config with S3 and EC2 in moto (EC2 through `ec2_endpoint`, e.g. a fault proxy).
    fn config(&self, ec2_endpoint: &str, volumes: &str) -> String {
        let extra = format!("volumes:\n  region: us-east-1\n  endpoint: {ec2_endpoint}\n{volumes}");
        let path = self.dir.path().join(format!("lb-{}.yaml", rand_suffix()));
        std::fs::write(
            &path,
            s3_config(&self.moto.endpoint(), "backups", "c1", &extra),
        )
        .unwrap();
        path.display().to_string()
    }

    async fn lifeboat(&self, config: &str, args: &[&str]) -> Run {
        let kc = self.sim.kubeconfig_path().display().to_string();
        let mut all = vec!["--config", config, "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }

    async fn volume(
        &self,
        az: &str,
        kind: VolumeType,
        size: i32,
        iops: Option<i32>,
        throughput: Option<i32>,
    ) -> String {
        let mut req = self
            .moto
            .ec2_client()
            .create_volume()
            .availability_zone(az)
            .size(size)
            .volume_type(kind)
            .encrypted(true)
            .kms_key_id("alias/ebs-backups");
        if let Some(i) = iops {
            req = req.iops(i);
        }
        if let Some(t) = throughput {
            req = req.throughput(t);
        }
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("team")
                    .value("shop")
                    .build(),
            )
            .build();
        req.tag_specifications(tags)
            .send()
            .await
            .unwrap()
            .volume_id()
            .unwrap()
            .to_string()
    }

    async fn volumes_json(&self, backup: &str) -> Value {
        let s3 = self.moto.s3_client();
        let body = s3
            .get_object()
            .bucket("backups")
            .key(format!("c1/backups/{backup}/volumes.json"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap();
        serde_json::from_slice(&body.into_bytes()).unwrap()
    }

    async fn snapshot_ids(&self) -> Vec<String> {
        // moto pre-seeds public snapshots; lifeboat's carry its tags.
        let lifeboat = aws_sdk_ec2::types::Filter::builder()
            .name("tag-key")
            .values("lifeboat.io/backup")
            .build();
        let out = self
            .moto
            .ec2_client()
            .describe_snapshots()
            .filters(lifeboat)
            .send()
            .await
            .unwrap();
        out.snapshots()
            .iter()
            .filter_map(|s| s.snapshot_id().map(String::from))
            .collect()
    }
}

fn rand_suffix() -> u64 {
    rand::random()
}

fn record<'a>(volumes: &'a Value, pv: &str) -> &'a Value {
    volumes["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["persistentVolume"] == pv)
        .unwrap_or_else(|| panic!("no record for {pv}: {volumes}"))
}

/// PVs of every kind the issue names, with their claims in namespace `shop` (and `other`).
async fn seed(env: &Env) -> (String, String, String) {
    let gp3 = env
        .volume("us-east-1b", VolumeType::Gp3, 4, Some(3500), Some(200))
        .await;
    let io2 = env
        .volume("us-east-1c", VolumeType::Io2, 8, Some(4000), None)
        .await;
    let gp2 = env
        .volume("us-east-1a", VolumeType::Gp2, 2, None, None)
        .await;
    env.sim
        .seed_yaml(&format!(
            r"
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: other}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-csi}}
spec:
  capacity: {{storage: 4Gi}}
  accessModes: [ReadWriteOnce]
  claimRef: {{namespace: shop, name: data}}
  csi: {{driver: ebs.csi.aws.com, volumeHandle: {gp3}}}
  nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1b]}}]}}]}}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-intree, labels: {{failure-domain.beta.kubernetes.io/zone: us-east-1c}}}}
spec:
  capacity: {{storage: 8Gi}}
  accessModes: [ReadWriteOnce]
  claimRef: {{namespace: shop, name: db}}
  awsElasticBlockStore: {{volumeID: aws://us-east-1c/{io2}, fsType: ext4}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-other, labels: {{topology.kubernetes.io/zone: us-east-1a}}}}
spec:
  capacity: {{storage: 2Gi}}
  accessModes: [ReadWriteOnce]
  claimRef: {{namespace: other, name: cache}}
  csi: {{driver: ebs.csi.aws.com, volumeHandle: {gp2}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-nfs}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteMany]
  claimRef: {{namespace: shop, name: shared}}
  nfs: {{server: nfs.example.com, path: /exports/shop}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: shop}}
spec: {{accessModes: [ReadWriteOnce], volumeName: pv-csi, resources: {{requests: {{storage: 4Gi}}}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: db, namespace: shop}}
spec: {{accessModes: [ReadWriteOnce], volumeName: pv-intree, resources: {{requests: {{storage: 8Gi}}}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: shared, namespace: shop}}
spec: {{accessModes: [ReadWriteMany], volumeName: pv-nfs, resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: cache, namespace: other}}
spec: {{accessModes: [ReadWriteOnce], volumeName: pv-other, resources: {{requests: {{storage: 2Gi}}}}}}
"
        ))
        .unwrap();
    (gp3, io2, gp2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ebs_volume_gets_a_completed_tagged_snapshot_recorded_as_ec2_says() {
    let Some(env) = Env::new().await else { return };
    let (gp3, io2, gp2) = seed(&env).await;
    let config = env.config(&env.moto.endpoint(), "");
    let run = env
        .lifeboat(&config, &["backup", "create", "full", "--output", "json"])
        .await;
    run.expect_code(0);
    let manifest = run.json();
    assert_eq!(manifest["phase"], "Completed");
    assert_eq!(manifest["volumes"]["count"], 4);
    assert_eq!(manifest["volumes"]["key"], "backups/full/volumes.json");
    let volumes = env.volumes_json("full").await;
    assert_eq!(volumes["formatVersion"], 1);

    let csi = record(&volumes, "pv-csi");
    assert_eq!(csi["volumeId"], gp3.as_str());
    assert_eq!(csi["driver"], "ebs.csi.aws.com");
    assert_eq!(
        csi["availabilityZone"], "us-east-1b",
        "the zone of a CSI volume with only nodeAffinity"
    );
    assert_eq!(csi["volumeType"], "gp3");
    assert_eq!(csi["sizeGiB"], 4);
    assert_eq!(csi["iops"], 3500);
    assert_eq!(csi["throughput"], 200);
    assert_eq!(csi["encrypted"], true);
    assert_eq!(csi["kmsKeyId"], "alias/ebs-backups");
    assert_eq!(csi["state"], "completed");
    assert_eq!(csi["claim"], json!({"namespace": "shop", "name": "data"}));
    assert!(
        csi["startedAt"].is_string() && csi["completedAt"].is_string() && csi["error"].is_null()
    );
    assert_eq!(csi["tags"]["team"], "shop");

    let intree = record(&volumes, "pv-intree");
    assert_eq!(intree["volumeId"], io2.as_str());
    assert_eq!(intree["driver"], "kubernetes.io/aws-ebs");
    assert_eq!(intree["availabilityZone"], "us-east-1c");
    assert_eq!(
        (intree["volumeType"].as_str(), intree["iops"].as_u64()),
        (Some("io2"), Some(4000))
    );
    assert_eq!(
        record(&volumes, "pv-other")["availabilityZone"],
        "us-east-1a"
    );
    assert_eq!(record(&volumes, "pv-other")["volumeId"], gp2.as_str());

    let nfs = record(&volumes, "pv-nfs");
    assert_eq!(nfs["driver"], "nfs");
    assert_eq!(nfs["state"], "skipped");
    assert!(nfs["snapshotId"].is_null());
    assert!(nfs["error"].as_str().unwrap().contains("not an EBS volume"));

    // The snapshots exist, completed, with lifeboat's tags and the volume's own.
    let ec2 = env.moto.ec2_client();
    let snap_id = csi["snapshotId"].as_str().unwrap();
    let snap = ec2
        .describe_snapshots()
        .snapshot_ids(snap_id)
        .send()
        .await
        .unwrap();
    let snap = &snap.snapshots()[0];
    assert_eq!(snap.volume_id(), Some(gp3.as_str()));
    assert_eq!(
        snap.state().map(aws_sdk_ec2::types::SnapshotState::as_str),
        Some("completed")
    );
    let tag = |k: &str| {
        snap.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(String::from)
    };
    assert_eq!(tag("lifeboat.io/backup").as_deref(), Some("full"));
    assert_eq!(tag("lifeboat.io/pv").as_deref(), Some("pv-csi"));
    assert_eq!(tag("lifeboat.io/pvc").as_deref(), Some("shop/data"));
    assert_eq!(tag("lifeboat.io/cluster").as_deref(), Some("test"));
    assert_eq!(tag("team").as_deref(), Some("shop"));
    assert!(tag("Name").is_some());

    // describe shows the volumes; JSON adds the records.
    let text = env.lifeboat(&config, &["backup", "describe", "full"]).await;
    assert!(
        text.stdout.contains("pv-csi")
            && text.stdout.contains("us-east-1b")
            && text.stdout.contains(snap_id),
        "{}",
        text.stdout
    );
    let described = env
        .lifeboat(&config, &["backup", "describe", "full", "--output", "json"])
        .await
        .json();
    assert_eq!(described["volumes"].as_array().unwrap().len(), 4);
    assert_eq!(
        env.lifeboat(&config, &["backup", "list", "--output", "json"])
            .await
            .json()[0]["volumeCount"],
        4
    );

    // backup delete removes the snapshots; a second delete is harmless.
    assert_eq!(env.snapshot_ids().await.len(), 3);
    let deleted = env
        .lifeboat(&config, &["backup", "delete", "full", "--output", "json"])
        .await;
    deleted.expect_code(0);
    assert_eq!(deleted.json()["snapshots"].as_array().unwrap().len(), 3);
    assert!(env.snapshot_ids().await.is_empty());
    let again = env.lifeboat(&config, &["backup", "delete", "full"]).await;
    assert_eq!(
        again.code, 1,
        "nothing left to delete is reported, not an error of its own: {}",
        again.stderr
    );
    assert!(again.stderr.contains("not found"), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_interrupted_after_the_manifest_finishes_when_run_again() {
    let Some(env) = Env::new().await else { return };
    seed(&env).await;
    let config = env.config(&env.moto.endpoint(), "");
    env.lifeboat(&config, &["backup", "create", "b1"])
        .await
        .expect_code(0);
    // Simulate a delete that stopped after the manifest: the rest must still go.
    env.moto
        .s3_client()
        .delete_object()
        .bucket("backups")
        .key("c1/backups/b1/manifest.json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        env.lifeboat(&config, &["backup", "list", "--output", "json"])
            .await
            .json(),
        json!([])
    );
    env.lifeboat(&config, &["backup", "delete", "b1"])
        .await
        .expect_code(0);
    assert!(env.snapshot_ids().await.is_empty());
    let left = env
        .moto
        .s3_client()
        .list_objects_v2()
        .bucket("backups")
        .prefix("c1/backups/b1/")
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_filtered_backups_snapshot_only_their_volumes_and_opt_outs_work() {
    let Some(env) = Env::new().await else { return };
    seed(&env).await;
    let config = env.config(&env.moto.endpoint(), "");
    let run = env
        .lifeboat(
            &config,
            &[
                "backup",
                "create",
                "shop",
                "--include-namespaces",
                "shop",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    let volumes = env.volumes_json("shop").await;
    let names: Vec<&str> = volumes["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["persistentVolume"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pv-csi", "pv-intree", "pv-nfs"],
        "only the PVs of the shop claims"
    );

    // Opt out on a PVC and on a PV.
    env.sim.cluster();
    let kc = kubesim::kubectl::Kubectl::new(env.sim.kubeconfig_path()).unwrap();
    if kubesim::kubectl::available() {
        kc.ok(&[
            "annotate",
            "pvc",
            "data",
            "-n",
            "shop",
            "lifeboat.io/snapshot=false",
        ])
        .await;
        kc.ok(&["annotate", "pv", "pv-other", "lifeboat.io/snapshot=false"])
            .await;
        let run = env
            .lifeboat(&config, &["backup", "create", "optout", "--output", "json"])
            .await;
        run.expect_code(0);
        let v = env.volumes_json("optout").await;
        assert_eq!(record(&v, "pv-csi")["state"], "skipped");
        assert!(
            record(&v, "pv-csi")["error"]
                .as_str()
                .unwrap()
                .contains("PersistentVolumeClaim shop/data")
        );
        assert_eq!(record(&v, "pv-other")["state"], "skipped");
        assert_eq!(record(&v, "pv-intree")["state"], "completed");
    }

    // Snapshots off for one run: recorded, not taken.
    let before = env.snapshot_ids().await.len();
    let run = env
        .lifeboat(
            &config,
            &[
                "backup",
                "create",
                "nosnap",
                "--snapshot-volumes=false",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    assert_eq!(env.snapshot_ids().await.len(), before);
    assert_eq!(
        record(&env.volumes_json("nosnap").await, "pv-csi")["state"],
        "skipped"
    );
    assert_eq!(run.json()["filters"]["snapshotVolumes"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_volume_gives_partially_failed_naming_the_pv() {
    let Some(env) = Env::new().await else { return };
    seed(&env).await;
    env.sim
        .seed_yaml("apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv-ghost}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], csi: {driver: ebs.csi.aws.com, volumeHandle: vol-0123456789abcdef0}}\n")
        .unwrap();
    let config = env.config(&env.moto.endpoint(), "");
    let run = env
        .lifeboat(&config, &["backup", "create", "ghost", "--output", "json"])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let m = run.json();
    assert_eq!(m["phase"], "PartiallyFailed");
    let err = m["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "pv-ghost")
        .expect("an error naming the PV");
    assert_eq!(err["resource"], "persistentvolumes");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("vol-0123456789abcdef0"),
        "{err}"
    );
    let v = env.volumes_json("ghost").await;
    assert_eq!(record(&v, "pv-ghost")["state"], "failed");
    assert_eq!(
        record(&v, "pv-csi")["state"],
        "completed",
        "the other volumes are still snapshotted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_still_pending_at_the_timeout_is_reported_not_called_done() {
    let Some(env) = Env::new().await else { return };
    seed(&env).await;
    let proxy = FaultProxy::start(&env.moto.endpoint());
    proxy.add(
        Rule::new(lifeboat_testkit::Action::Rewrite {
            from: "<status>completed</status>".into(),
            to: "<status>pending</status>".into(),
        })
        .body_contains("Action=DescribeSnapshots"),
    );
    let config = env.config(&proxy.endpoint(), "  waitTimeout: 3s\n");
    let run = env
        .lifeboat(
            &config,
            &[
                "backup",
                "create",
                "slow",
                "--include-namespaces",
                "other",
                "--output",
                "json",
            ],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let m = run.json();
    assert_eq!(m["phase"], "PartiallyFailed");
    let v = env.volumes_json("slow").await;
    let r = record(&v, "pv-other");
    assert_eq!(r["state"], "pending");
    assert!(r["completedAt"].is_null());
    assert!(
        r["snapshotId"].is_string(),
        "the snapshot id is kept so it can be found and deleted"
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("not completed within 3s"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_throttling_is_retried() {
    let Some(env) = Env::new().await else { return };
    seed(&env).await;
    let proxy = FaultProxy::start(&env.moto.endpoint());
    let rule = proxy.add(
        Rule::ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
            .body_contains("Action=CreateSnapshot")
            .times(3),
    );
    let config = env.config(&proxy.endpoint(), "");
    let run = env
        .lifeboat(
            &config,
            &[
                "backup",
                "create",
                "throttled",
                "--include-namespaces",
                "other",
                "--output",
                "json",
            ],
        )
        .await;
    run.expect_code(0);
    assert_eq!(proxy.fired(rule), 3);
    assert_eq!(
        record(&env.volumes_json("throttled").await, "pv-other")["state"],
        "completed"
    );
}
