//! Recreating EBS volumes from a backup's snapshots: each in the availability zone it came from
//! (or the one `--zone-mapping` names), with its recorded type, size, IOPS, throughput,
//! encryption, KMS key and tags, waited until `available` before its PersistentVolume is
//! written.

use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::events::{Event, Observers};
use crate::volumes::ec2::{Ec2, NewVolume};
use crate::volumes::record::{State, VolumeRecord};

/// One volume to create.
#[derive(Debug, Clone)]
pub struct Job {
    /// The PersistentVolume it backs, by its name in the target.
    pub persistent_volume: String,
    pub record: VolumeRecord,
    /// Where to create it.
    pub zone: String,
}

/// A created volume, or why it could not be.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub job: Job,
    pub volume_id: Result<String, String>,
}

/// How volumes are created.
#[derive(Debug, Clone)]
pub struct Options {
    pub restore: String,
    pub concurrency: usize,
    pub wait_timeout: Duration,
    pub poll_initial: Duration,
    pub poll_max: Duration,
}

impl Options {
    pub fn new(restore: &str) -> Self {
        Options {
            restore: restore.to_string(),
            concurrency: 8,
            wait_timeout: Duration::from_mins(30),
            poll_initial: Duration::from_secs(1),
            poll_max: Duration::from_secs(15),
        }
    }
}

/// Checks, before anything is written, that every snapshot a restore needs exists and is
/// complete; returns one message per problem.
pub async fn preflight<E: Ec2>(ec2: &E, records: &[&VolumeRecord]) -> Vec<String> {
    let checks: Vec<Option<String>> = futures::stream::iter(records)
        .map(|r| async move {
            let id = r.snapshot_id.as_deref()?;
            match ec2.describe_snapshot(id).await {
                Ok(s) if s.state == "completed" => None,
                Ok(s) => Some(format!("snapshot {id} of PersistentVolume {} is {}, not completed", r.persistent_volume, s.state)),
                Err(e) if e.is_not_found() => Some(format!(
                    "snapshot {id} of PersistentVolume {} no longer exists (deleted, or in another region/account): its data cannot be restored; restore with --restore-volumes=false to create the PV without data, or from another backup",
                    r.persistent_volume
                )),
                Err(e) => Some(format!("snapshot {id} of PersistentVolume {}: {e}", r.persistent_volume)),
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    checks.into_iter().flatten().collect()
}

/// Whether a record has a snapshot a volume can be made from.
pub fn restorable(r: &VolumeRecord) -> bool {
    r.state == State::Completed && r.snapshot_id.is_some()
}

/// Creates every volume, a few at a time, and waits for each to become available.
pub async fn create_all<E: Ec2>(
    ec2: &E,
    jobs: Vec<Job>,
    opts: &Options,
    observers: &Observers,
) -> Vec<Outcome> {
    futures::stream::iter(jobs)
        .map(|job| async move {
            let volume_id = create_one(ec2, &job, opts).await;
            let (result, message) = match &volume_id {
                Ok(id) => ("created", id.clone()),
                Err(e) => ("failed", e.clone()),
            };
            observers.emit(&Event::VolumeRestore {
                persistent_volume: job.persistent_volume.clone(),
                result: result.into(),
                message,
            });
            Outcome { job, volume_id }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await
}

async fn create_one<E: Ec2>(ec2: &E, job: &Job, opts: &Options) -> Result<String, String> {
    let r = &job.record;
    let snapshot_id = r
        .snapshot_id
        .clone()
        .ok_or("the backup has no snapshot of this volume")?;
    let mut tags: Vec<(String, String)> =
        r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    tags.push(("lifeboat.io/restore".into(), opts.restore.clone()));
    tags.push(("lifeboat.io/pv".into(), job.persistent_volume.clone()));
    tags.push(("lifeboat.io/snapshot".into(), snapshot_id.clone()));
    let spec = NewVolume {
        snapshot_id,
        availability_zone: job.zone.clone(),
        volume_type: r.volume_type.clone().unwrap_or_default(),
        size_gib: r.size_gib.unwrap_or(0),
        iops: r.iops,
        throughput: r.throughput,
        encrypted: r.encrypted.unwrap_or(false),
        kms_key_id: r.kms_key_id.clone(),
        tags,
    };
    let id = ec2.create_volume(&spec).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut pause = opts.poll_initial;
    loop {
        match ec2.describe_volume(&id).await {
            Ok(v) if v.state == "available" => return Ok(id),
            Ok(v) if v.state == "error" => {
                return Err(format!(
                    "EC2 reports volume {id} failed to create from the snapshot"
                ));
            }
            Ok(_) => {}
            // Eventual consistency right after CreateVolume.
            Err(e) if e.is_not_found() && started.elapsed() < Duration::from_mins(2) => {}
            Err(e) => return Err(e.to_string()),
        }
        if started.elapsed() + pause > opts.wait_timeout {
            return Err(format!(
                "volume {id} was not available within {}s; it may still become available",
                opts.wait_timeout.as_secs()
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(opts.poll_max);
    }
}
