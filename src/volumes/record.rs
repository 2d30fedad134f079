//! `volumes.json`: one record per PersistentVolume of a backup, with everything needed to
//! recreate its EBS volume faithfully (type, size, IOPS, throughput, encryption, AZ, tags).
//! The JSON shape is a public contract (DESIGN.md "Contracts"): every key is always present,
//! `null` when it does not apply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `volumes.json` format this build writes.
pub const FORMAT_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumesFile {
    pub format_version: u32,
    pub volumes: Vec<VolumeRecord>,
}

/// The claim a volume was bound to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
}

/// What happened to one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// The snapshot is complete and usable for a restore.
    Completed,
    /// The snapshot did not complete within the wait timeout (it may still complete).
    Pending,
    /// EC2 reported the snapshot failed.
    Error,
    /// No snapshot could be taken (volume missing, access denied, ...).
    Failed,
    /// Not snapshotted on purpose: not an EBS volume, snapshots turned off, or opted out.
    Skipped,
}

impl State {
    /// Whether this record makes the backup PartiallyFailed.
    pub fn is_failure(self) -> bool {
        matches!(self, State::Pending | State::Error | State::Failed)
    }
}

/// One PersistentVolume (DESIGN.md "Contracts": `volumes.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    pub persistent_volume: String,
    pub claim: Option<Claim>,
    /// `ebs.csi.aws.com`, `kubernetes.io/aws-ebs` (in-tree), or the other volume's kind or
    /// CSI driver (`efs.csi.aws.com`, `nfs`, `hostPath`, ...).
    pub driver: String,
    pub volume_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub availability_zone: Option<String>,
    pub volume_type: Option<String>,
    #[serde(rename = "sizeGiB")]
    pub size_gib: Option<u64>,
    pub iops: Option<u64>,
    /// MiB/s (gp3).
    pub throughput: Option<u64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub state: State,
    pub started_at: Option<jiff::Timestamp>,
    pub completed_at: Option<jiff::Timestamp>,
    /// Why the volume has no usable snapshot, or `null`.
    pub error: Option<String>,
    /// The volume's own tags, which a restore puts back on the new volume.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl VolumeRecord {
    /// A record for a volume that gets no snapshot, with the reason.
    pub fn skipped(
        pv: &str,
        claim: Option<Claim>,
        driver: &str,
        volume_id: Option<String>,
        reason: String,
    ) -> Self {
        VolumeRecord {
            persistent_volume: pv.to_string(),
            claim,
            driver: driver.to_string(),
            volume_id,
            snapshot_id: None,
            availability_zone: None,
            volume_type: None,
            size_gib: None,
            iops: None,
            throughput: None,
            encrypted: None,
            kms_key_id: None,
            state: State::Skipped,
            started_at: None,
            completed_at: None,
            error: Some(reason),
            tags: BTreeMap::new(),
        }
    }
}

impl VolumesFile {
    pub fn new(mut volumes: Vec<VolumeRecord>) -> Self {
        volumes.sort_by(|a, b| a.persistent_volume.cmp(&b.persistent_volume));
        VolumesFile {
            format_version: FORMAT_VERSION,
            volumes,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("records always serialise")
    }

    /// Snapshot ids that exist (or may still), for deletion.
    pub fn snapshot_ids(&self) -> impl Iterator<Item = &str> {
        self.volumes.iter().filter_map(|v| v.snapshot_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_use_the_contract_keys_with_nulls() {
        let r = VolumeRecord::skipped(
            "pv-nfs",
            Some(Claim {
                namespace: "a".into(),
                name: "b".into(),
            }),
            "nfs",
            None,
            "not an EBS volume".into(),
        );
        let v: serde_json::Value =
            serde_json::from_str(&VolumesFile::new(vec![r]).to_json()).unwrap();
        assert_eq!(v["formatVersion"], 1);
        let rec = &v["volumes"][0];
        for key in [
            "persistentVolume",
            "claim",
            "driver",
            "volumeId",
            "snapshotId",
            "availabilityZone",
            "volumeType",
            "sizeGiB",
            "iops",
            "throughput",
            "encrypted",
            "kmsKeyId",
            "state",
            "startedAt",
            "completedAt",
            "error",
        ] {
            assert!(rec.get(key).is_some(), "missing {key}");
        }
        assert_eq!(rec["snapshotId"], serde_json::Value::Null);
        assert_eq!(rec["state"], "skipped");
        assert_eq!(rec["claim"]["namespace"], "a");
    }
}
