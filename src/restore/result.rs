//! The report of a restore: `restores/<name>/result.json` and `restore create --output json`.
//! The JSON shape is a public contract (DESIGN.md "Contracts"): fields are only ever added.

use serde::{Deserialize, Serialize};

use crate::archive::manifest::Phase;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    /// Server-side applied over an existing object (`--existing-resource-policy update`).
    Updated,
    /// Already there and equal to the backup: left alone.
    Exists,
    /// Already there and different from the backup: left alone (`none` policy), with a diff.
    Differs,
    /// Not restored on purpose (never-restored kinds, objects their owners recreate, ...).
    Skipped,
    Failed,
    /// Dry run: would be created.
    WouldCreate,
    /// Dry run: would be server-side applied over the existing object.
    WouldUpdate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Exists => "exists",
            Action::Differs => "differs",
            Action::Skipped => "skipped",
            Action::Failed => "failed",
            Action::WouldCreate => "would-create",
            Action::WouldUpdate => "would-update",
        }
    }
}

/// One object of the plan and its fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// `<plural>[.<group>]`.
    pub resource: String,
    /// The namespace in the target cluster (after mapping), `null` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    pub action: Action,
    /// Why (skipped, failed), or what differs (a short diff, never Secret values).
    pub message: Option<String>,
}

/// One volume recreated from its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredVolume {
    /// The PV's name in the target (renamed when that name was taken).
    pub persistent_volume: String,
    pub snapshot_id: String,
    pub old_volume_id: Option<String>,
    /// `null` in a dry run, or when creating it failed (`error` says why).
    pub new_volume_id: Option<String>,
    pub availability_zone: String,
    pub error: Option<String>,
}

/// Objects per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Created (in a dry run: would be created).
    pub created: u64,
    /// Updated (in a dry run: would be updated).
    pub updated: u64,
    pub exists: u64,
    pub differs: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResult {
    pub name: String,
    pub backup: String,
    /// Completed, PartiallyFailed (some objects or volumes failed) or Failed (nothing applied).
    /// `exists` and `differs` are warnings: a restore whose other items succeeded is Completed.
    pub phase: Phase,
    pub dry_run: bool,
    pub started_at: jiff::Timestamp,
    pub completed_at: jiff::Timestamp,
    pub counts: Counts,
    pub items: Vec<Item>,
    pub volumes: Vec<RestoredVolume>,
}

impl RestoreResult {
    /// Counts and phase from the items and volumes.
    pub fn finish(&mut self) {
        let mut c = Counts::default();
        for i in &self.items {
            match i.action {
                Action::Created | Action::WouldCreate => c.created += 1,
                Action::Updated | Action::WouldUpdate => c.updated += 1,
                Action::Exists => c.exists += 1,
                Action::Differs => c.differs += 1,
                Action::Skipped => c.skipped += 1,
                Action::Failed => c.failed += 1,
            }
        }
        self.counts = c;
        let failed = c.failed > 0 || self.volumes.iter().any(|v| v.error.is_some());
        self.phase = if failed {
            Phase::PartiallyFailed
        } else {
            Phase::Completed
        };
        self.completed_at = jiff::Timestamp::now();
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_uses_the_contract_keys_and_exists_is_a_warning() {
        let now = jiff::Timestamp::now();
        let item = |action| Item {
            resource: "configmaps".into(),
            namespace: Some("a".into()),
            name: "x".into(),
            action,
            message: None,
        };
        let mut r = RestoreResult {
            name: "r1".into(),
            backup: "b1".into(),
            phase: Phase::Failed,
            dry_run: false,
            started_at: now,
            completed_at: now,
            counts: Counts::default(),
            items: vec![
                item(Action::Created),
                item(Action::Exists),
                item(Action::Differs),
            ],
            volumes: vec![],
        };
        r.finish();
        assert_eq!(r.phase, Phase::Completed);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "name",
            "backup",
            "phase",
            "dryRun",
            "startedAt",
            "completedAt",
            "counts",
            "items",
            "volumes",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in [
            "created", "updated", "exists", "differs", "skipped", "failed",
        ] {
            assert!(v["counts"].get(key).is_some(), "missing counts.{key}");
        }
        assert_eq!(v["items"][0]["action"], "created");
        r.items.push(item(Action::Failed));
        r.finish();
        assert_eq!(r.phase, Phase::PartiallyFailed);
        assert_eq!(
            serde_json::to_value(Action::WouldCreate).unwrap(),
            "would-create"
        );
    }
}
