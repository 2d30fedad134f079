//! Recreating EBS volumes from a backup's snapshots: each in the availability zone it came from
//! (or the one `--zone-mapping` names), with its recorded type, size, IOPS, throughput,
//! encryption, KMS key and tags, waited until `available` before its PersistentVolume is
//! written.
//!
//! A restore can be interrupted (killed, OOM, node lost) after CreateVolume and before the
//! PersistentVolume that points at the new volume exists; nothing in the cluster then records
//! the volume. Running the same restore again must not make a second one: every volume is
//! tagged at creation (TagSpecifications, so a volume is never untagged) with the restore's
//! name, the PV's name in the target and the snapshot id, and before creating one the restore
//! looks for a volume with those three tags in the job's zone and reuses it when it is
//! `creating` or `available`.
//!
//! The restore's name is part of the key on purpose: a volume made by *another* restore of the
//! same backup (a drill into staging, an earlier restore whose PV was deleted with the
//! `Retain` policy) may have been written to since, or belong to another cluster, and taking it
//! over would silently restore different data than the snapshot holds. Only the operator can
//! say "this is the same restore", by running it again with the same `--name`. An unattached
//! volume of another restore with the same PV and snapshot is reported as a warning, so the
//! leftover of an interrupted run is never silent.
//!
//! EC2's API is eventually consistent: a volume created just before the interruption may
//! briefly be missing from DescribeVolumes. A rerun first re-reads the backup and plans, which
//! in practice gives EC2 that time.

use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::events::{Event, Observers};
use crate::volumes::ec2::{Ec2, NewVolume, VolumeInfo};
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
    /// The volume was made by an interrupted earlier run of this restore and is used instead
    /// of a new one.
    pub reused: bool,
}

/// Tag keys on every volume a restore creates; together they say which restore made it, for
/// which PersistentVolume, from which snapshot.
pub const RESTORE_TAG: &str = "lifeboat.io/restore";
pub const PV_TAG: &str = "lifeboat.io/pv";
pub const SNAPSHOT_TAG: &str = "lifeboat.io/snapshot";

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

/// Creates every volume (or reuses the one an interrupted run of the same restore made), a few
/// at a time, and waits for each to become available.
pub async fn create_all<E: Ec2>(
    ec2: &E,
    jobs: Vec<Job>,
    opts: &Options,
    observers: &Observers,
) -> Vec<Outcome> {
    futures::stream::iter(jobs)
        .map(|job| async move {
            let (volume_id, reused) = match create_one(ec2, &job, opts, observers).await {
                Ok((id, reused)) => (Ok(id), reused),
                Err(e) => (Err(e), false),
            };
            let (result, message) = match &volume_id {
                Ok(id) => ("created", id.clone()),
                Err(e) => ("failed", e.clone()),
            };
            observers.emit(&Event::VolumeRestore {
                persistent_volume: job.persistent_volume.clone(),
                result: result.into(),
                message,
            });
            Outcome {
                job,
                volume_id,
                reused,
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await
}

/// The volume of one job, and whether it was reused.
async fn create_one<E: Ec2>(
    ec2: &E,
    job: &Job,
    opts: &Options,
    observers: &Observers,
) -> Result<(String, bool), String> {
    let r = &job.record;
    let snapshot_id = r
        .snapshot_id
        .clone()
        .ok_or("the backup has no snapshot of this volume")?;
    let ours = [
        (PV_TAG.to_string(), job.persistent_volume.clone()),
        (SNAPSHOT_TAG.to_string(), snapshot_id.clone()),
    ];
    // Without knowing, creating could duplicate a volume: a failed lookup fails the job.
    let found = ec2.find_volumes(&ours).await.map_err(|e| {
        format!("could not check for a volume left by an interrupted run of this restore: {e}")
    })?;
    let (reuse, leftovers) = pick(&found, &opts.restore, &job.zone);
    for v in leftovers {
        observers.emit(&Event::Warning {
            resource: "persistentvolumes".into(),
            message: leftover_message(job, &snapshot_id, &opts.restore, v),
        });
    }
    let (id, reused) = if let Some(v) = reuse {
        observers.emit(&Event::Warning {
            resource: "persistentvolumes".into(),
            message: format!(
                "{}: reusing volume {} ({}), created from snapshot {snapshot_id} by an interrupted run of restore {}",
                job.persistent_volume, v.volume_id, v.state, opts.restore
            ),
        });
        (v.volume_id.clone(), true)
    } else {
        let mut tags: Vec<(String, String)> =
            r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // Last, so they win over copies of older lifeboat tags on the source volume.
        tags.push((RESTORE_TAG.into(), opts.restore.clone()));
        tags.extend(ours);
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
        (
            ec2.create_volume(&spec).await.map_err(|e| e.to_string())?,
            false,
        )
    };
    wait_available(ec2, &id, opts).await?;
    Ok((id, reused))
}

/// States of a volume that nothing uses yet and that is or will be usable.
fn unattached(v: &VolumeInfo) -> bool {
    matches!(v.state.as_str(), "creating" | "available")
}

/// Among the volumes with the job's PV and snapshot tags: the one to reuse (this restore's,
/// unattached, in the job's zone; `available` before `creating`, then the lowest id, so that
/// a choice is stable), and the other unattached ones, which are left over from somewhere.
fn pick<'a>(
    found: &'a [VolumeInfo],
    restore: &str,
    zone: &str,
) -> (Option<&'a VolumeInfo>, Vec<&'a VolumeInfo>) {
    let is_ours = |v: &VolumeInfo| {
        v.tags
            .iter()
            .any(|(k, val)| k == RESTORE_TAG && val == restore)
    };
    let mut candidates: Vec<&VolumeInfo> = found.iter().filter(|v| unattached(v)).collect();
    candidates
        .sort_by(|a, b| (!a.is_available(), &a.volume_id).cmp(&(!b.is_available(), &b.volume_id)));
    let chosen = candidates
        .iter()
        .position(|v| is_ours(v) && v.availability_zone == zone)
        .map(|i| candidates.remove(i));
    (chosen, candidates)
}

/// What to do about an unattached volume that looks like a leftover.
fn leftover_message(job: &Job, snapshot_id: &str, restore: &str, v: &VolumeInfo) -> String {
    let by = v
        .tags
        .iter()
        .find(|(k, _)| k == RESTORE_TAG)
        .map_or("", |(_, r)| r.as_str());
    let (id, pv, zone) = (&v.volume_id, &job.persistent_volume, &v.availability_zone);
    if by == restore {
        format!(
            "{pv}: volume {id} in {zone}, created from snapshot {snapshot_id} by an earlier run of this restore, is not attached and not used (this run creates the volume in {}); delete it if nothing needs it",
            job.zone
        )
    } else {
        format!(
            "{pv}: volume {id} in {zone}, created from snapshot {snapshot_id} for this PersistentVolume by restore {by:?}, is not attached; if that restore was interrupted, the volume is left over: run it again with --name {by} to use it, or delete it"
        )
    }
}

/// Polls until the volume is `available`, with a growing pause.
async fn wait_available<E: Ec2>(ec2: &E, id: &str, opts: &Options) -> Result<(), String> {
    let started = Instant::now();
    let mut pause = opts.poll_initial;
    loop {
        match ec2.describe_volume(id).await {
            Ok(v) if v.is_available() => return Ok(()),
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::events::Observer;
    use crate::volumes::ec2::{Ec2Error, Ec2ErrorKind, SnapshotInfo};
    use crate::volumes::record::State;

    /// EC2 as a list of volumes; CreateVolume makes them `available` at once.
    #[derive(Default)]
    struct FakeEc2 {
        volumes: Mutex<Vec<VolumeInfo>>,
        fail_lookup: bool,
    }

    impl FakeEc2 {
        fn volumes(&self) -> Vec<VolumeInfo> {
            self.volumes.lock().unwrap().clone()
        }

        fn add(&self, id: &str, zone: &str, state: &str, tags: &[(&str, &str)]) {
            self.volumes.lock().unwrap().push(VolumeInfo {
                volume_id: id.into(),
                availability_zone: zone.into(),
                volume_type: "gp3".into(),
                size_gib: 4,
                iops: None,
                throughput: None,
                encrypted: false,
                kms_key_id: None,
                state: state.into(),
                snapshot_id: Some("snap-1".into()),
                tags: tags
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            });
        }
    }

    fn unused(op: &'static str) -> Ec2Error {
        Ec2Error::new(
            op,
            "test",
            Ec2ErrorKind::Other,
            "",
            "not used by these tests",
        )
    }

    impl Ec2 for FakeEc2 {
        async fn describe_volume(&self, volume_id: &str) -> Result<VolumeInfo, Ec2Error> {
            self.volumes()
                .into_iter()
                .find(|v| v.volume_id == volume_id)
                .ok_or_else(|| {
                    Ec2Error::new(
                        "DescribeVolumes",
                        volume_id,
                        Ec2ErrorKind::NotFound,
                        "InvalidVolume.NotFound",
                        "gone",
                    )
                })
        }

        async fn create_snapshot(
            &self,
            _: &str,
            _: &str,
            _: &[(String, String)],
        ) -> Result<String, Ec2Error> {
            Err(unused("CreateSnapshot"))
        }

        async fn describe_snapshot(&self, _: &str) -> Result<SnapshotInfo, Ec2Error> {
            Err(unused("DescribeSnapshots"))
        }

        async fn delete_snapshot(&self, _: &str) -> Result<(), Ec2Error> {
            Err(unused("DeleteSnapshot"))
        }

        async fn find_volumes(
            &self,
            tags: &[(String, String)],
        ) -> Result<Vec<VolumeInfo>, Ec2Error> {
            if self.fail_lookup {
                return Err(Ec2Error::new(
                    "DescribeVolumes",
                    "volumes",
                    Ec2ErrorKind::AccessDenied,
                    "UnauthorizedOperation",
                    "access denied",
                ));
            }
            Ok(self
                .volumes()
                .into_iter()
                .filter(|v| tags.iter().all(|t| v.tags.contains(t)))
                .collect())
        }

        async fn create_volume(&self, spec: &NewVolume) -> Result<String, Ec2Error> {
            let mut volumes = self.volumes.lock().unwrap();
            let id = format!("vol-new{}", volumes.len());
            volumes.push(VolumeInfo {
                volume_id: id.clone(),
                availability_zone: spec.availability_zone.clone(),
                volume_type: spec.volume_type.clone(),
                size_gib: spec.size_gib,
                iops: None,
                throughput: None,
                encrypted: spec.encrypted,
                kms_key_id: None,
                state: "available".into(),
                snapshot_id: Some(spec.snapshot_id.clone()),
                tags: spec.tags.clone(),
            });
            Ok(id)
        }

        async fn delete_volume(&self, _: &str) -> Result<(), Ec2Error> {
            Err(unused("DeleteVolume"))
        }
    }

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);

    impl Observer for Warnings {
        fn event(&self, event: &Event) {
            if let Event::Warning { message, .. } = event {
                self.0.lock().unwrap().push(message.clone());
            }
        }
    }

    fn job(pv: &str, zone: &str) -> Job {
        let mut record = VolumeRecord::skipped(pv, None, "ebs.csi.aws.com", None, String::new());
        record.state = State::Completed;
        record.snapshot_id = Some("snap-1".into());
        record.availability_zone = Some("us-east-1a".into());
        record.tags.insert("team".into(), "shop".into());
        Job {
            persistent_volume: pv.into(),
            record,
            zone: zone.into(),
        }
    }

    fn opts(restore: &str) -> Options {
        let mut o = Options::new(restore);
        o.poll_initial = Duration::from_millis(1);
        o
    }

    async fn run(ec2: &FakeEc2, restore: &str, zone: &str) -> (Outcome, Vec<String>) {
        let warnings = Arc::new(Warnings::default());
        let observers = Observers::default().with(warnings.clone());
        let mut out = create_all(ec2, vec![job("pv-a", zone)], &opts(restore), &observers).await;
        let messages = warnings.0.lock().unwrap().clone();
        (out.remove(0), messages)
    }

    #[tokio::test]
    async fn volumes_are_tagged_with_the_restore_the_pv_and_the_snapshot() {
        let ec2 = FakeEc2::default();
        let (out, _) = run(&ec2, "r1", "us-east-1a").await;
        assert!(!out.reused);
        let v = &ec2.volumes()[0];
        assert_eq!(out.volume_id.as_deref(), Ok(v.volume_id.as_str()));
        for tag in [
            ("team", "shop"),
            (RESTORE_TAG, "r1"),
            (PV_TAG, "pv-a"),
            (SNAPSHOT_TAG, "snap-1"),
        ] {
            assert!(
                v.tags.contains(&(tag.0.to_string(), tag.1.to_string())),
                "{tag:?} in {:?}",
                v.tags
            );
        }
    }

    #[tokio::test]
    async fn a_rerun_of_the_same_restore_reuses_its_volume() {
        let ec2 = FakeEc2::default();
        let (first, _) = run(&ec2, "r1", "us-east-1a").await;
        let (again, warnings) = run(&ec2, "r1", "us-east-1a").await;
        assert_eq!(ec2.volumes().len(), 1, "no second volume");
        assert!(again.reused);
        assert_eq!(again.volume_id, first.volume_id);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("reusing volume vol-new0"),
            "{warnings:?}"
        );
    }

    #[tokio::test]
    async fn a_volume_still_creating_is_reused_and_waited_for() {
        let ec2 = FakeEc2::default();
        let tags = [
            (RESTORE_TAG, "r1"),
            (PV_TAG, "pv-a"),
            (SNAPSHOT_TAG, "snap-1"),
        ];
        ec2.add("vol-1", "us-east-1a", "available", &tags);
        ec2.volumes.lock().unwrap()[0].state = "creating".into();
        let waiting = run(&ec2, "r1", "us-east-1a");
        let done = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ec2.volumes.lock().unwrap()[0].state = "available".into();
        };
        let ((out, _), ()) = tokio::join!(waiting, done);
        assert!(out.reused);
        assert_eq!(out.volume_id.as_deref(), Ok("vol-1"));
        assert_eq!(ec2.volumes().len(), 1);
    }

    #[tokio::test]
    async fn another_restores_volume_is_not_taken_over_but_reported() {
        let ec2 = FakeEc2::default();
        run(&ec2, "r1", "us-east-1a").await;
        let (out, warnings) = run(&ec2, "r2", "us-east-1a").await;
        assert!(!out.reused);
        assert_eq!(ec2.volumes().len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("by restore \"r1\"") && warnings[0].contains("--name r1"),
            "{warnings:?}"
        );
    }

    #[test]
    fn only_unattached_volumes_of_this_restore_in_the_jobs_zone_are_picked() {
        let ec2 = FakeEc2::default();
        let ours = [
            (RESTORE_TAG, "r1"),
            (PV_TAG, "pv-a"),
            (SNAPSHOT_TAG, "snap-1"),
        ];
        ec2.add("vol-3", "us-east-1a", "creating", &ours);
        ec2.add("vol-4", "us-east-1a", "in-use", &ours);
        ec2.add("vol-5", "us-east-1b", "available", &ours);
        ec2.add("vol-6", "us-east-1a", "available", &ours);
        ec2.add("vol-7", "us-east-1a", "deleting", &ours);
        let found = ec2.volumes();
        let (chosen, leftovers) = pick(&found, "r1", "us-east-1a");
        assert_eq!(chosen.map(|v| v.volume_id.as_str()), Some("vol-6"));
        let ids: Vec<&str> = leftovers.iter().map(|v| v.volume_id.as_str()).collect();
        assert_eq!(ids, ["vol-5", "vol-3"]);
        let (chosen, _) = pick(&found, "r2", "us-east-1a");
        assert!(chosen.is_none());
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_the_volume_instead_of_risking_a_duplicate() {
        let ec2 = FakeEc2 {
            fail_lookup: true,
            ..FakeEc2::default()
        };
        let (out, _) = run(&ec2, "r1", "us-east-1a").await;
        let err = out.volume_id.unwrap_err();
        assert!(err.contains("interrupted run"), "{err}");
        assert!(ec2.volumes().is_empty());
    }
}
