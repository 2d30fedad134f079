//! S3 Object Lock end to end: the `lifeboat` binary against kubesim and a moto_server bucket
//! created with Object Lock (so versioned, as on AWS). Backups are written with
//! `storage.objectLock`; retention and `backup delete` must keep what is locked, whole, and say
//! until when, and delete every version of what is no longer locked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::VolumeType;
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use kubesim::KubeSim;
use lifeboat_testkit::{Cli, Moto, Run, s3_config};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");
const BUCKET: &str = "vault";
const DAY: i64 = 86_400;

/// One stored version, as the test's own S3 client sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    key: String,
    id: String,
    delete_marker: bool,
}

struct Env {
    moto: Moto,
    sim: KubeSim,
    /// Holds the config file.
    _dir: tempfile::TempDir,
    cli: Cli,
    config: String,
}

impl Env {
    /// An Object Lock bucket, a cluster with one EBS-backed PV (so every backup has a
    /// `volumes.json` and a snapshot), and a config with GOVERNANCE for one day and a schedule
    /// that keeps one backup.
    async fn new() -> Option<Env> {
        let moto = Moto::start()?;
        moto.s3_client()
            .create_bucket()
            .bucket(BUCKET)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("create an Object Lock bucket in moto");
        let sim = KubeSim::start().await.unwrap();
        let vol = moto
            .ec2_client()
            .create_volume()
            .availability_zone("us-east-1a")
            .size(1)
            .volume_type(VolumeType::Gp3)
            .send()
            .await
            .unwrap();
        let vol = vol.volume_id().unwrap();
        sim.seed_yaml(&format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-1}}\nspec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadWriteOnce], csi: {{driver: ebs.csi.aws.com, volumeHandle: {vol}}}, nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1a]}}]}}]}}}}}}\n"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "  objectLock: {{mode: GOVERNANCE, retainDays: 1}}\nvolumes:\n  region: us-east-1\n  endpoint: {}\nschedules:\n  - name: nightly\n    cron: \"@daily\"\n    retention: {{keepLast: 1}}\n",
            moto.endpoint()
        );
        let path = dir.path().join("lifeboat.yaml");
        std::fs::write(&path, s3_config(&moto.endpoint(), BUCKET, "c1", &extra)).unwrap();
        Some(Env {
            config: path.display().to_string(),
            moto,
            sim,
            _dir: dir,
            cli: Cli::new(BIN),
        })
    }

    async fn lifeboat(&self, args: &[&str]) -> Run {
        let kc = self.sim.kubeconfig_path().display().to_string();
        let mut all = vec!["--config", &self.config, "--kubeconfig", &kc];
        all.extend_from_slice(args);
        self.cli.run(&all).await
    }

    /// `schedule run nightly` `n` times; returns the backup names, oldest first. Names carry
    /// the UTC second, so each run starts in a later second than the one before.
    async fn scheduled_backups(&self, n: usize) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for _ in 0..n {
            if let Some(last) = names.last() {
                let stamp = last.strip_prefix("nightly-").unwrap();
                let taken = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", stamp)
                    .unwrap()
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .unwrap()
                    .timestamp();
                wait_until(taken + jiff::SignedDuration::from_secs(1)).await;
            }
            self.lifeboat(&["schedule", "run", "nightly"])
                .await
                .expect_code(0);
            let listed = self.backups().await;
            let newest = listed[0]["name"].as_str().unwrap().to_string();
            assert!(!names.contains(&newest), "{names:?} {newest}");
            names.push(newest);
        }
        names
    }

    /// `backup list --output json`, names only, newest first.
    async fn backups(&self) -> Vec<Value> {
        self.lifeboat(&["backup", "list", "--output", "json"])
            .await
            .expect_code(0)
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    async fn backup_names(&self) -> BTreeSet<String> {
        self.backups()
            .await
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Every version and delete marker under `prefix` (relative to the bucket).
    async fn versions(&self, prefix: &str) -> Vec<Version> {
        let out = self
            .moto
            .s3_client()
            .list_object_versions()
            .bucket(BUCKET)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        assert_ne!(out.is_truncated(), Some(true), "one page is enough here");
        let mut all: Vec<Version> = out
            .versions()
            .iter()
            .map(|v| Version {
                key: v.key().unwrap().to_string(),
                id: v.version_id().unwrap().to_string(),
                delete_marker: false,
            })
            .chain(out.delete_markers().iter().map(|m| Version {
                key: m.key().unwrap().to_string(),
                id: m.version_id().unwrap().to_string(),
                delete_marker: true,
            }))
            .collect();
        all.sort();
        all
    }

    /// The lock mode and retain-until date of one version.
    async fn retention(&self, v: &Version) -> (Option<ObjectLockMode>, Option<i64>) {
        let head = self
            .moto
            .s3_client()
            .head_object()
            .bucket(BUCKET)
            .key(&v.key)
            .version_id(&v.id)
            .send()
            .await
            .unwrap();
        (
            head.object_lock_mode().cloned(),
            head.object_lock_retain_until_date()
                .map(aws_sdk_s3::primitives::DateTime::secs),
        )
    }

    /// Snapshots lifeboat made that still exist.
    async fn snapshots(&self) -> usize {
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
}

fn prefix(name: &str) -> String {
    format!("c1/backups/{name}/")
}

/// Waits for the wall clock to pass `t` (a point in time, not a guess at readiness).
async fn wait_until(t: jiff::Timestamp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while jiff::Timestamp::now() <= t {
        assert!(Instant::now() < deadline, "the clock did not reach {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The backups of `schedule` in a `backup prune --output json` answer, under `field`.
fn entries<'a>(prune: &'a Value, field: &str) -> &'a Vec<Value> {
    prune["nightly"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no nightly.{field} in {prune}"))
}

fn names(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_locked_and_a_locked_backup_cannot_be_deleted() {
    let Some(env) = Env::new().await else { return };
    let before = jiff::Timestamp::now().as_second();
    let name = env.scheduled_backups(1).await.remove(0);
    let after = jiff::Timestamp::now().as_second();

    // (a) Every object of the backup carries the retention, one day from its write.
    let versions = env.versions(&prefix(&name)).await;
    let keys: BTreeSet<&str> = versions
        .iter()
        .map(|v| v.key.strip_prefix(&prefix(&name)).unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "archive.tar.zst",
            "log.jsonl.zst",
            "manifest.json",
            "volumes.json"
        ])
    );
    for v in &versions {
        assert!(!v.delete_marker, "{v:?}");
        let (mode, until) = env.retention(v).await;
        assert_eq!(mode, Some(ObjectLockMode::Governance), "{v:?}");
        let until = until.unwrap_or_else(|| panic!("{v:?} has no retain-until date"));
        assert!(
            (before + DAY - 1..=after + DAY + 1).contains(&until),
            "{v:?} locked until {until}, written between {before} and {after}"
        );
    }

    // (c) Deleting it is refused with the lock named, and nothing is deleted: no object, no
    // version, no delete marker, no snapshot.
    let denied = env.lifeboat(&["backup", "delete", &name]).await;
    denied.expect_code(1);
    for part in [
        format!("backup \"{name}\" is locked until "),
        "(GOVERNANCE)".to_string(),
        "nothing was deleted".to_string(),
        "s3:BypassGovernanceRetention".to_string(),
    ] {
        assert!(denied.stderr.contains(&part), "{part}: {}", denied.stderr);
    }
    assert_eq!(env.versions(&prefix(&name)).await, versions);
    assert_eq!(env.backup_names().await, BTreeSet::from([name.clone()]));
    assert_eq!(env.snapshots().await, 1, "its snapshot is kept too");
    let described = env
        .lifeboat(&["backup", "describe", &name, "--output", "json"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(described["phase"], "Completed");
    assert_eq!(described["volumes"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_locked_backups_whole_and_reports_until_when() {
    let Some(env) = Env::new().await else { return };
    let backups = env.scheduled_backups(3).await;
    let all = env.versions("c1/backups/").await;
    assert_eq!(all.len(), 12, "{all:?}");

    // (b) keepLast 1 over three locked backups: the two oldest are due, and both are kept.
    let due = BTreeSet::from([backups[0].clone(), backups[1].clone()]);
    for args in [
        &["backup", "prune", "--dry-run", "--output", "json"][..],
        &["backup", "prune", "--output", "json"][..],
    ] {
        let prune = env.lifeboat(args).await.expect_code(0).json();
        assert!(entries(&prune, "deleted").is_empty(), "{args:?}: {prune}");
        assert!(entries(&prune, "failed").is_empty(), "{args:?}: {prune}");
        let locked = entries(&prune, "locked");
        assert_eq!(names(locked), due, "{args:?}: {prune}");
        for l in locked {
            assert_eq!(l["mode"], "GOVERNANCE", "{l}");
            assert_eq!(l["reason"], "beyond keepLast 1", "{l}");
            assert_eq!(l["legalHold"], false, "{l}");
            let until: jiff::Timestamp = l["until"].as_str().unwrap().parse().unwrap();
            let left = until.as_second() - jiff::Timestamp::now().as_second();
            assert!((DAY - 600..=DAY).contains(&left), "{l}: {left} s left");
        }
    }
    let text = env.lifeboat(&["backup", "prune"]).await;
    text.expect_code(0);
    for name in &due {
        let line = text
            .stdout
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not reported:\n{}", text.stdout));
        assert!(
            line.contains("kept")
                && line.contains("locked until ")
                && line.contains("(GOVERNANCE)"),
            "{line}"
        );
    }

    assert_eq!(
        env.backup_names().await,
        backups.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        env.versions("c1/backups/").await,
        all,
        "not a version touched"
    );
    assert_eq!(env.snapshots().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_lock_ends_retention_deletes_every_version() {
    let Some(env) = Env::new().await else { return };
    let backups = env.scheduled_backups(2).await;
    let (old, new) = (&backups[0], &backups[1]);

    // (d) An administrator shortens the older backup's lock to a few seconds from now (S3
    // refuses a date in the past, and GOVERNANCE can be shortened with the bypass, which
    // lifeboat itself never sends).
    let until = jiff::Timestamp::now().as_second() + 3;
    for v in env.versions(&prefix(old)).await {
        env.moto
            .s3_client()
            .put_object_retention()
            .bucket(BUCKET)
            .key(&v.key)
            .version_id(&v.id)
            .bypass_governance_retention(true)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(until))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let locked = env
        .lifeboat(&["backup", "prune", "--dry-run", "--output", "json"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(
        names(entries(&locked, "locked")),
        BTreeSet::from([old.clone()])
    );

    wait_until(jiff::Timestamp::from_second(until).unwrap()).await;
    let dry = env
        .lifeboat(&["backup", "prune", "--dry-run", "--output", "json"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(
        names(entries(&dry, "deleted")),
        BTreeSet::from([old.clone()])
    );
    assert!(entries(&dry, "locked").is_empty(), "{dry}");

    let prune = env
        .lifeboat(&["backup", "prune", "--output", "json"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(
        names(entries(&prune, "deleted")),
        BTreeSet::from([old.clone()])
    );
    assert!(entries(&prune, "locked").is_empty(), "{prune}");
    assert!(entries(&prune, "failed").is_empty(), "{prune}");

    // Really gone: no version and no delete marker left, and its snapshot deleted.
    assert_eq!(env.versions(&prefix(old)).await, []);
    assert_eq!(env.snapshots().await, 1);
    // The newer backup is untouched and still locked.
    assert_eq!(env.backup_names().await, BTreeSet::from([new.clone()]));
    let kept = env.versions(&prefix(new)).await;
    assert_eq!(kept.len(), 4, "{kept:?}");
    for v in &kept {
        assert_eq!(env.retention(v).await.0, Some(ObjectLockMode::Governance));
    }
}

/// The store calls under the catalogue: versions (with and without versioning), their locks,
/// and a delete S3 refuses, which must say that a lock may be why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_lists_versions_reads_locks_and_explains_a_refused_delete() {
    use lifeboat::store::{
        ObjectLock, ObjectLockMode as Mode, Settings, StaticCredentials, Store, StoreErrorKind,
    };
    let Some(moto) = Moto::start() else { return };
    moto.s3_client()
        .create_bucket()
        .bucket(BUCKET)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    moto.create_bucket("plain").await;
    let settings = Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint()),
        force_path_style: true,
        credentials: Some(StaticCredentials::new("testing", "testing")),
        retry_initial_backoff: Duration::from_millis(5),
        ..Settings::default()
    };
    let locked = Store::open(
        "s3://vault/p",
        &Settings {
            object_lock: Some(ObjectLock {
                mode: Mode::Compliance,
                retain_days: 2,
            }),
            ..settings.clone()
        },
    )
    .await
    .unwrap();
    let plain = Store::open("s3://plain/p", &settings).await.unwrap();
    for store in [&locked, &plain] {
        store.put("b/x", "1".into()).await.unwrap();
        store.put("b/x", "2".into()).await.unwrap();
        store.put("b/y", "3".into()).await.unwrap();
    }

    // Unversioned: one copy per key, version "null", no lock; deleting it removes it.
    let versions = plain.versions("b/").await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        versions
            .iter()
            .all(|v| v.version_id.as_deref() == Some("null") && !v.delete_marker),
        "{versions:?}"
    );
    assert!(!plain.lock_state(&versions[0]).await.unwrap().legal_hold);
    plain.delete_version(&versions[0]).await.unwrap();
    assert_eq!(plain.versions("b/").await.unwrap().len(), 1);

    // Versioned: both versions of b/x, ids, keys relative to the prefix, each locked.
    let versions = locked.versions("b/").await.unwrap();
    let keys: Vec<&str> = versions.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(keys, ["b/x", "b/x", "b/y"]);
    let now = jiff::Timestamp::now();
    for v in &versions {
        assert!(v.version_id.is_some() && !v.delete_marker, "{v:?}");
        let state = locked.lock_state(v).await.unwrap();
        let retention = state.retention.expect("a retention");
        assert_eq!(retention.mode, Mode::Compliance);
        let left = retention.until.as_second() - now.as_second();
        assert!((2 * DAY - 60..=2 * DAY).contains(&left), "{left}");
        assert!(state.blocks_delete_at(now));
        assert!(!state.blocks_delete_at(retention.until));
    }
    let err = locked.delete_version(&versions[0]).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AccessDenied, "{err}");
    assert!(
        err.to_string().contains("under Object Lock")
            && err.to_string().contains("s3:DeleteObjectVersion"),
        "{err}"
    );
    assert_eq!(locked.versions("b/").await.unwrap(), versions);

    // A plain delete on a versioned bucket "succeeds" and only hides the object: the reason
    // the catalogue deletes versions.
    locked.delete("b/y").await.unwrap();
    assert_eq!(locked.head("b/y").await.unwrap(), None);
    let after = locked.versions("b/").await.unwrap();
    assert_eq!(after.len(), 4, "{after:?}");
    let marker = after
        .iter()
        .find(|v| v.delete_marker)
        .expect("a delete marker");
    assert_eq!(marker.key, "b/y");
    assert!(
        !locked
            .lock_state(marker)
            .await
            .unwrap()
            .blocks_delete_at(now)
    );
    locked.delete_version(marker).await.unwrap();
    assert_eq!(
        locked.head("b/y").await.unwrap(),
        Some(1),
        "the marker hid it"
    );
}
