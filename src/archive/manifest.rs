//! `manifest.json`: the commit marker of a backup and the record scripts read.
//!
//! A backup exists when and only when its manifest exists, so the manifest is written last.
//! The JSON shape is a public contract (DESIGN.md "Contracts"): fields are only ever added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest format this build writes. Readers refuse a newer major format.
pub const FORMAT_VERSION: u32 = 1;

/// How a backup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Everything in scope was written.
    Completed,
    /// The archive is usable but some items, types or volumes failed; `errors` says which.
    PartiallyFailed,
    /// Nothing usable was written. Never stored in a manifest (a failed run writes none); it
    /// appears in command results, exit codes and metrics.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Completed => "Completed",
            Phase::PartiallyFailed => "PartiallyFailed",
            Phase::Failed => "Failed",
        }
    }

    /// The process exit code of a command that ended in this phase: 0, 2 or 1.
    pub fn exit_code(self) -> i32 {
        match self {
            Phase::Completed => 0,
            Phase::PartiallyFailed => 2,
            Phase::Failed => 1,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cluster a backup was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub name: String,
    /// `gitVersion` of the API server, e.g. `v1.32.4-eks-1234`.
    pub server_version: String,
}

/// The filters a backup ran with, as given (globs unexpanded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Filters {
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    pub include_resources: Vec<String>,
    pub exclude_resources: Vec<String>,
    /// `auto`, `true` or `false`.
    pub include_cluster_resources: String,
    pub selector: Option<String>,
    pub snapshot_volumes: bool,
}

/// Where the archive is and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveInfo {
    /// Object key relative to the storage prefix, e.g. `backups/nightly-20261128020000/archive.tar.zst`.
    pub key: String,
    /// Bytes as stored (after compression and, when enabled, encryption).
    pub size: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// `zstd`.
    pub compression: String,
    /// How the archive is encrypted, or `null`.
    pub encryption: Option<EncryptionInfo>,
}

/// Client-side encryption of a backup: which public keys can read it. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionInfo {
    /// `age`.
    pub scheme: String,
    /// The recipients' public keys (`age1...`).
    pub recipients: Vec<String>,
}

/// The volume snapshots of a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumesInfo {
    /// PersistentVolumes recorded in `volumes.json` (snapshotted or not).
    pub count: u64,
    /// Key of `volumes.json`, or `null` when no volume was in scope.
    pub key: Option<String>,
}

/// One thing that went wrong (or a warning): what it was about and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// `<plural>[.<group>]`, or a component such as `volumes` or `discovery`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub message: String,
}

/// The manifest of one backup (DESIGN.md "Contracts").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    /// The schedule that made it, or `null` for a manual backup.
    pub schedule: Option<String>,
    pub cluster: ClusterInfo,
    pub started_at: jiff::Timestamp,
    pub completed_at: jiff::Timestamp,
    pub phase: Phase,
    pub filters: Filters,
    pub item_count: u64,
    /// Objects per resource, keyed `<plural>[.<group>]`.
    pub resources: BTreeMap<String, u64>,
    pub archive: ArchiveInfo,
    pub volumes: VolumesInfo,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// When retention may delete it, or `null` to keep it until deleted by hand.
    pub expires_at: Option<jiff::Timestamp>,
    pub lifeboat_version: String,
}

/// One line of `backup list --output json`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub phase: Phase,
    pub schedule: Option<String>,
    pub started_at: jiff::Timestamp,
    pub completed_at: jiff::Timestamp,
    pub item_count: u64,
    pub archive_size: u64,
    pub volume_count: u64,
    pub expires_at: Option<jiff::Timestamp>,
}

impl From<&Manifest> for Summary {
    fn from(m: &Manifest) -> Self {
        Summary {
            name: m.name.clone(),
            phase: m.phase,
            schedule: m.schedule.clone(),
            started_at: m.started_at,
            completed_at: m.completed_at,
            item_count: m.item_count,
            archive_size: m.archive.size,
            volume_count: m.volumes.count,
            expires_at: m.expires_at,
        }
    }
}

/// Why a stored manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest of backup {name:?} is not valid JSON or misses fields: {source}")]
    Parse {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "backup {name:?} was written in manifest format {found}, newer than this lifeboat understands ({FORMAT_VERSION}); upgrade lifeboat to read it"
    )]
    NewerFormat { name: String, found: u64 },
    #[error("the manifest of backup {name:?} is invalid: {detail}")]
    Invalid { name: String, detail: String },
}

impl Manifest {
    /// Parses a stored manifest, refusing a newer format before reading its fields (a newer
    /// format may change their meaning).
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            format_version: u64,
        }
        let parse = |source| ManifestError::Parse {
            name: name.to_string(),
            source,
        };
        let v: Version = serde_json::from_slice(bytes).map_err(parse)?;
        if v.format_version == 0 {
            return Err(ManifestError::Invalid {
                name: name.to_string(),
                detail: "formatVersion is 0, which no lifeboat writes".into(),
            });
        }
        if v.format_version > u64::from(FORMAT_VERSION) {
            return Err(ManifestError::NewerFormat {
                name: name.to_string(),
                found: v.format_version,
            });
        }
        serde_json::from_slice(bytes).map_err(parse)
    }

    /// Pretty JSON, as stored and as `--output json` prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifests always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: "b1".into(),
            schedule: None,
            cluster: ClusterInfo {
                name: "prod".into(),
                server_version: "v1.32.4".into(),
            },
            started_at: "2026-11-28T10:00:00Z".parse().unwrap(),
            completed_at: "2026-11-28T10:00:05Z".parse().unwrap(),
            phase: Phase::Completed,
            filters: Filters::default(),
            item_count: 3,
            resources: [("configmaps".to_string(), 3)].into(),
            archive: ArchiveInfo {
                key: "backups/b1/archive.tar.zst".into(),
                size: 100,
                sha256: "0".repeat(64),
                compression: "zstd".into(),
                encryption: None,
            },
            volumes: VolumesInfo::default(),
            errors: vec![],
            warnings: vec![],
            expires_at: None,
            lifeboat_version: "0.1.0".into(),
        }
    }

    #[test]
    fn manifest_uses_the_contract_keys() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for key in [
            "formatVersion",
            "name",
            "schedule",
            "cluster",
            "startedAt",
            "completedAt",
            "phase",
            "filters",
            "itemCount",
            "resources",
            "archive",
            "volumes",
            "errors",
            "warnings",
            "expiresAt",
            "lifeboatVersion",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["cluster"]["serverVersion"], "v1.32.4");
        assert_eq!(v["archive"]["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(v["startedAt"], "2026-11-28T10:00:00Z");
    }

    #[test]
    fn newer_format_is_refused_before_fields_are_read() {
        let err = Manifest::parse("b1", br#"{"formatVersion": 9}"#).unwrap_err();
        assert!(err.to_string().contains("upgrade lifeboat"), "{err}");
        let round = Manifest::parse("b1", sample().to_json().as_bytes()).unwrap();
        assert_eq!(round, sample());
    }
}
