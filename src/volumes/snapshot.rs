//! Snapshotting the EBS volumes of a backup: describe each volume (type, size, IOPS,
//! throughput, encryption, KMS key, tags, AZ), create a tagged snapshot, and wait until it is
//! `completed` (bounded), a few volumes at a time. A snapshot is never recorded as done before
//! EC2 says it is.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::events::{Event, Observers};
use crate::volumes::discover::PvInfo;
use crate::volumes::ec2::{Ec2, Ec2Error};
use crate::volumes::record::{State, VolumeRecord};

/// How one backup snapshots its volumes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub backup: String,
    pub cluster: String,
    /// Volumes snapshotted at the same time.
    pub concurrency: usize,
    /// How long to wait for one snapshot to complete.
    pub wait_timeout: Duration,
    /// First and longest pause between state checks (it doubles up to the longest).
    pub poll_initial: Duration,
    pub poll_max: Duration,
}

impl Plan {
    pub fn new(backup: &str, cluster: &str) -> Self {
        Plan {
            backup: backup.to_string(),
            cluster: cluster.to_string(),
            concurrency: 8,
            wait_timeout: Duration::from_mins(30),
            poll_initial: Duration::from_secs(1),
            poll_max: Duration::from_secs(15),
        }
    }
}

/// A volume to consider, with the reason it must be skipped if it must.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pv: PvInfo,
    pub skip: Option<String>,
}

/// Tags EC2 reserves; a volume's own tags with this prefix cannot be copied.
const RESERVED_PREFIX: &str = "aws:";
/// EC2's limit of tags per resource.
const MAX_TAGS: usize = 50;

/// The records of every candidate (in no particular order) and the warnings for the manifest.
#[derive(Debug, Default)]
pub struct Outcome {
    pub records: Vec<VolumeRecord>,
    pub warnings: Vec<(String, String)>,
}

/// Snapshots every candidate, a few at a time.
pub async fn run<E: Ec2>(
    ec2: &E,
    plan: &Plan,
    candidates: Vec<Candidate>,
    observers: &Observers,
) -> Outcome {
    let done: Vec<(VolumeRecord, Option<String>)> = futures::stream::iter(candidates)
        .map(|c| async move { one(ec2, plan, c, observers).await })
        .buffer_unordered(plan.concurrency.max(1))
        .collect()
        .await;
    let mut out = Outcome::default();
    for (record, warning) in done {
        if let Some(w) = warning {
            out.warnings.push((record.persistent_volume.clone(), w));
        }
        out.records.push(record);
    }
    out
}

async fn one<E: Ec2>(
    ec2: &E,
    plan: &Plan,
    c: Candidate,
    observers: &Observers,
) -> (VolumeRecord, Option<String>) {
    let pv = c.pv;
    let Some(volume_id) = pv.volume_id.clone() else {
        let reason = c.skip.unwrap_or_else(|| {
            format!(
                "not an EBS volume ({}); its data is not snapshotted",
                pv.driver
            )
        });
        return (
            VolumeRecord::skipped(&pv.name, pv.claim.clone(), &pv.driver, None, reason),
            None,
        );
    };
    if let Some(reason) = c.skip {
        return (
            VolumeRecord::skipped(
                &pv.name,
                pv.claim.clone(),
                &pv.driver,
                Some(volume_id),
                reason,
            ),
            None,
        );
    }
    let mut record = VolumeRecord::skipped(
        &pv.name,
        pv.claim.clone(),
        &pv.driver,
        Some(volume_id.clone()),
        String::new(),
    );
    record.error = None;
    let fail = |mut record: VolumeRecord, e: &Ec2Error| {
        record.state = State::Failed;
        record.error = Some(e.to_string());
        observers.emit(&Event::VolumeSnapshot {
            persistent_volume: record.persistent_volume.clone(),
            result: "failed".into(),
            message: e.to_string(),
        });
        (record, None)
    };
    let volume = match ec2.describe_volume(&volume_id).await {
        Ok(v) => v,
        Err(e) => return fail(record, &e),
    };
    record.availability_zone = Some(volume.availability_zone.clone());
    record.volume_type = Some(volume.volume_type.clone());
    record.size_gib = Some(volume.size_gib);
    record.iops = volume.iops;
    record.throughput = volume.throughput;
    record.encrypted = Some(volume.encrypted);
    record.kms_key_id.clone_from(&volume.kms_key_id);
    record.tags = volume.tags.iter().cloned().collect();
    let mut warning = None;
    if let Some((zone, from)) = &pv.zone
        && *zone != volume.availability_zone
    {
        let message = format!(
            "the PersistentVolume says zone {zone} ({from}) but EC2 has {volume_id} in {}; recorded EC2's",
            volume.availability_zone
        );
        observers.emit(&Event::Warning {
            resource: "persistentvolumes".into(),
            message: format!("{}: {message}", pv.name),
        });
        warning = Some(message);
    }
    let tags = snapshot_tags(plan, &pv, &volume.tags);
    let description = format!(
        "lifeboat backup {} of PersistentVolume {}",
        plan.backup, pv.name
    );
    let started = jiff::Timestamp::now();
    record.started_at = Some(started);
    let snapshot_id = match ec2.create_snapshot(&volume_id, &description, &tags).await {
        Ok(id) => id,
        Err(e) => return fail(record, &e),
    };
    record.snapshot_id = Some(snapshot_id.clone());
    let (state, message) = wait(ec2, plan, &snapshot_id).await;
    record.state = state;
    if state == State::Completed {
        record.completed_at = Some(jiff::Timestamp::now());
        observers.emit(&Event::VolumeSnapshot {
            persistent_volume: pv.name.clone(),
            result: "completed".into(),
            message: snapshot_id,
        });
    } else {
        let why = message.unwrap_or_default();
        observers.emit(&Event::VolumeSnapshot {
            persistent_volume: pv.name.clone(),
            result: "failed".into(),
            message: why.clone(),
        });
        record.error = Some(why);
    }
    (record, warning)
}

/// Polls the snapshot until it is completed or failed, or the timeout passes. `NotFound` right
/// after creation is EC2's eventual consistency (its own waiter fails on it), not a failure.
async fn wait<E: Ec2>(ec2: &E, plan: &Plan, snapshot_id: &str) -> (State, Option<String>) {
    let started = Instant::now();
    let mut pause = plan.poll_initial;
    let mut last: Option<String>;
    loop {
        match ec2.describe_snapshot(snapshot_id).await {
            Ok(s) if s.state == "completed" => return (State::Completed, None),
            Ok(s) if s.state == "error" => {
                return (
                    State::Error,
                    Some(format!(
                        "EC2 reports snapshot {snapshot_id} failed: {}",
                        s.state_message.unwrap_or_else(|| "no reason given".into())
                    )),
                );
            }
            Ok(s) => {
                last = Some(format!(
                    "{}{}",
                    s.state,
                    s.progress.map(|p| format!(" ({p})")).unwrap_or_default()
                ));
            }
            Err(e) if e.is_not_found() && started.elapsed() < Duration::from_mins(2) => {
                last = Some("not visible yet".into());
            }
            Err(e) => return (State::Failed, Some(e.to_string())),
        }
        if started.elapsed() + pause > plan.wait_timeout {
            return (
                State::Pending,
                Some(format!(
                    "snapshot {snapshot_id} was not completed within {}s (last state: {}); it may still complete, but this backup cannot rely on it",
                    plan.wait_timeout.as_secs(),
                    last.unwrap_or_else(|| "unknown".into())
                )),
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(plan.poll_max);
    }
}

/// lifeboat's tags plus the volume's own (EC2's reserved `aws:` tags cannot be copied), at most
/// EC2's 50. The volume's `Name` is kept on the volume's record for restore; the snapshot gets
/// a Name of its own.
pub fn snapshot_tags(
    plan: &Plan,
    pv: &PvInfo,
    volume_tags: &[(String, String)],
) -> Vec<(String, String)> {
    let mut ours: BTreeMap<String, String> = BTreeMap::new();
    ours.insert(
        "Name".into(),
        format!("lifeboat/{}/{}", plan.backup, pv.name),
    );
    ours.insert("lifeboat.io/backup".into(), plan.backup.clone());
    ours.insert("lifeboat.io/cluster".into(), plan.cluster.clone());
    ours.insert("lifeboat.io/pv".into(), pv.name.clone());
    if let Some(c) = &pv.claim {
        ours.insert(
            "lifeboat.io/pvc".into(),
            format!("{}/{}", c.namespace, c.name),
        );
    }
    let mut tags: Vec<(String, String)> =
        ours.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in volume_tags {
        if tags.len() >= MAX_TAGS {
            break;
        }
        if !k.starts_with(RESERVED_PREFIX) && !ours.contains_key(k) {
            tags.push((k.clone(), v.clone()));
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::record::Claim;

    #[test]
    fn tags_name_the_backup_pv_claim_and_keep_the_volume_tags() {
        let pv = PvInfo {
            name: "pv-1".into(),
            claim: Some(Claim {
                namespace: "shop".into(),
                name: "data".into(),
            }),
            driver: "ebs.csi.aws.com".into(),
            volume_id: Some("vol-1".into()),
            zone: None,
            opted_out: false,
        };
        let own = vec![
            ("team".into(), "shop".into()),
            ("aws:cloudformation:stack".into(), "x".into()),
            ("Name".into(), "data-vol".into()),
        ];
        let tags = snapshot_tags(&Plan::new("nightly-1", "prod"), &pv, &own);
        let get = |k: &str| tags.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("lifeboat.io/backup"), Some("nightly-1"));
        assert_eq!(get("lifeboat.io/pvc"), Some("shop/data"));
        assert_eq!(get("lifeboat.io/cluster"), Some("prod"));
        assert_eq!(get("team"), Some("shop"));
        assert_eq!(get("Name"), Some("lifeboat/nightly-1/pv-1"));
        assert_eq!(get("aws:cloudformation:stack"), None);
        let many: Vec<(String, String)> = (0..80).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(
            snapshot_tags(&Plan::new("b", "c"), &pv, &many).len(),
            MAX_TAGS
        );
    }
}
