//! Which EBS volume is behind a PersistentVolume, and in which availability zone.
//!
//! Both the CSI driver (`spec.csi.driver: ebs.csi.aws.com`, `volumeHandle: vol-…`) and the
//! in-tree plugin (`spec.awsElasticBlockStore.volumeID: aws://<az>/vol-…` or `vol-…`) are read.
//! The zone comes from the labels first, then the required node affinity (CSI volumes often
//! carry it only there, which is where Velero misses it), then the in-tree volume id; EC2's
//! own answer is checked against it when the snapshot is taken.

use serde_json::Value;

use crate::volumes::record::Claim;

/// The CSI driver of EBS.
pub const EBS_CSI_DRIVER: &str = "ebs.csi.aws.com";
/// How in-tree EBS volumes are named in `volumes.json`.
pub const EBS_IN_TREE: &str = "kubernetes.io/aws-ebs";
/// The opt-out annotation, on a PV or its PVC: `lifeboat.io/snapshot: "false"`.
pub const SNAPSHOT_ANNOTATION: &str = "lifeboat.io/snapshot";

const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
const ZONE_AFFINITY_KEYS: [&str; 3] = [
    "topology.ebs.csi.aws.com/zone",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// What a PersistentVolume says about its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvInfo {
    pub name: String,
    pub claim: Option<Claim>,
    /// `ebs.csi.aws.com`, `kubernetes.io/aws-ebs`, or the kind/driver of another volume.
    pub driver: String,
    /// The EBS volume id, for EBS volumes.
    pub volume_id: Option<String>,
    /// The zone the PV states, and where it says it.
    pub zone: Option<(String, &'static str)>,
    /// `lifeboat.io/snapshot: "false"` on the PV.
    pub opted_out: bool,
}

impl PvInfo {
    pub fn is_ebs(&self) -> bool {
        self.volume_id.is_some()
    }
}

/// What a PersistentVolumeClaim says about snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcInfo {
    pub claim: Claim,
    pub volume_name: Option<String>,
    pub opted_out: bool,
}

fn opted_out(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(SNAPSHOT_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// Reads a PersistentVolumeClaim (as archived JSON).
pub fn inspect_pvc(json: &[u8]) -> Option<PvcInfo> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let claim = Claim {
        namespace: v.pointer("/metadata/namespace")?.as_str()?.to_string(),
        name: v.pointer("/metadata/name")?.as_str()?.to_string(),
    };
    let volume_name = v
        .pointer("/spec/volumeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    Some(PvcInfo {
        claim,
        volume_name,
        opted_out: opted_out(&v),
    })
}

/// Reads a PersistentVolume (as archived JSON).
pub fn inspect_pv(json: &[u8]) -> Option<PvInfo> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let name = v.pointer("/metadata/name")?.as_str()?.to_string();
    let spec = v.get("spec")?;
    let claim = spec.get("claimRef").and_then(|c| {
        Some(Claim {
            namespace: c.get("namespace")?.as_str()?.to_string(),
            name: c.get("name")?.as_str()?.to_string(),
        })
    });
    let (driver, volume_id, in_tree_zone) = source(spec);
    let zone = zone_from_labels(&v)
        .or_else(|| zone_from_affinity(spec))
        .or(in_tree_zone.map(|z| (z, "spec.awsElasticBlockStore.volumeID")));
    Some(PvInfo {
        name,
        claim,
        driver,
        volume_id,
        zone,
        opted_out: opted_out(&v),
    })
}

/// Volume sources other than EBS, named by their key in the PV spec (nfs, hostPath, ...).
const OTHER_SOURCES: [&str; 16] = [
    "nfs",
    "hostPath",
    "local",
    "iscsi",
    "fc",
    "cephfs",
    "rbd",
    "glusterfs",
    "azureDisk",
    "azureFile",
    "gcePersistentDisk",
    "portworxVolume",
    "flexVolume",
    "vsphereVolume",
    "quobyte",
    "storageos",
];

/// The driver name, the EBS volume id (for EBS) and the zone an in-tree id carries.
fn source(spec: &Value) -> (String, Option<String>, Option<String>) {
    if let Some(csi) = spec.get("csi") {
        let driver = csi
            .get("driver")
            .and_then(Value::as_str)
            .unwrap_or("csi")
            .to_string();
        let handle = csi
            .get("volumeHandle")
            .and_then(Value::as_str)
            .map(String::from);
        return if driver == EBS_CSI_DRIVER {
            (driver, handle, None)
        } else {
            (driver, None, None)
        };
    }
    if let Some(id) = spec
        .pointer("/awsElasticBlockStore/volumeID")
        .and_then(Value::as_str)
    {
        let (zone, volume) = parse_in_tree_id(id);
        return (EBS_IN_TREE.to_string(), Some(volume), zone);
    }
    let driver = OTHER_SOURCES
        .iter()
        .find(|k| spec.get(**k).is_some())
        .map_or("unknown", |k| k);
    (driver.to_string(), None, None)
}

/// `aws://us-east-1b/vol-0abc` -> (Some("us-east-1b"), "vol-0abc"); `vol-0abc` -> (None, ..).
pub fn parse_in_tree_id(id: &str) -> (Option<String>, String) {
    match id.strip_prefix("aws://") {
        Some(rest) => match rest.rsplit_once('/') {
            Some((zone, vol)) if !zone.is_empty() => (Some(zone.to_string()), vol.to_string()),
            Some((_, vol)) => (None, vol.to_string()),
            None => (None, rest.to_string()),
        },
        None => (None, id.to_string()),
    }
}

fn zone_from_labels(pv: &Value) -> Option<(String, &'static str)> {
    let labels = pv.pointer("/metadata/labels")?;
    ZONE_LABELS.iter().find_map(|k| {
        labels
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|z| (z.to_string(), *k))
    })
}

fn zone_from_affinity(spec: &Value) -> Option<(String, &'static str)> {
    let terms = spec
        .pointer("/nodeAffinity/required/nodeSelectorTerms")?
        .as_array()?;
    for key in ZONE_AFFINITY_KEYS {
        for term in terms {
            for expr in term
                .get("matchExpressions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if expr.get("key").and_then(Value::as_str) == Some(key)
                    && expr.get("operator").and_then(Value::as_str) == Some("In")
                    && let Some(zone) = expr
                        .get("values")
                        .and_then(Value::as_array)
                        .and_then(|v| v.first())
                        .and_then(Value::as_str)
                {
                    return Some((zone.to_string(), "spec.nodeAffinity"));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(v: &Value) -> PvInfo {
        inspect_pv(&serde_json::to_vec(v).unwrap()).unwrap()
    }

    #[test]
    fn csi_volume_with_zone_only_in_node_affinity() {
        let p = pv(&json!({"metadata": {"name": "pv-data"}, "spec": {
            "claimRef": {"namespace": "shop", "name": "data"},
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["us-east-1b"]}]}]}}}}));
        assert_eq!(p.volume_id.as_deref(), Some("vol-1"));
        assert_eq!(p.driver, EBS_CSI_DRIVER);
        assert_eq!(p.zone, Some(("us-east-1b".into(), "spec.nodeAffinity")));
        assert_eq!(
            p.claim,
            Some(Claim {
                namespace: "shop".into(),
                name: "data".into()
            })
        );
    }

    #[test]
    fn labels_win_over_affinity_and_in_tree_ids_carry_a_zone() {
        let p = pv(
            &json!({"metadata": {"name": "old", "labels": {"failure-domain.beta.kubernetes.io/zone": "eu-west-1a"}},
            "spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1c/vol-2"}}}),
        );
        assert_eq!(p.driver, EBS_IN_TREE);
        assert_eq!(p.volume_id.as_deref(), Some("vol-2"));
        assert_eq!(
            p.zone,
            Some((
                "eu-west-1a".into(),
                "failure-domain.beta.kubernetes.io/zone"
            ))
        );
        let bare = pv(
            &json!({"metadata": {"name": "b"}, "spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1c/vol-3"}}}),
        );
        assert_eq!(
            bare.zone,
            Some(("eu-west-1c".into(), "spec.awsElasticBlockStore.volumeID"))
        );
        assert_eq!(parse_in_tree_id("vol-4"), (None, "vol-4".into()));
    }

    #[test]
    fn other_volumes_are_named_by_driver_and_opt_out_is_read() {
        let nfs = pv(
            &json!({"metadata": {"name": "n", "annotations": {"lifeboat.io/snapshot": "false"}}, "spec": {"nfs": {"server": "x", "path": "/"}}}),
        );
        assert!(!nfs.is_ebs() && nfs.opted_out);
        assert_eq!(nfs.driver, "nfs");
        let efs = pv(
            &json!({"metadata": {"name": "e"}, "spec": {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}}}),
        );
        assert_eq!(
            (efs.driver.as_str(), efs.volume_id),
            ("efs.csi.aws.com", None)
        );
        let pvc = inspect_pvc(br#"{"metadata":{"name":"data","namespace":"shop","annotations":{"lifeboat.io/snapshot":"False"}},"spec":{"volumeName":"pv-data"}}"#).unwrap();
        assert!(pvc.opted_out);
        assert_eq!(pvc.volume_name.as_deref(), Some("pv-data"));
    }
}
