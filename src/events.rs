//! Typed events of a run. Each thing that happens (a page listed, a part uploaded, a backup
//! finished) is one [`Event`], emitted in one place; observers turn events into logs, the run's
//! own log file, a progress bar or metrics. The core never knows about terminals.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::archive::manifest::Phase;

/// Something that happened during a backup or restore. Never carries object contents.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    BackupStarted {
        backup: String,
        schedule: Option<String>,
        storage: String,
    },
    /// Discovery of one API group failed; its types are not backed up.
    DiscoveryFailed {
        group: String,
        message: String,
    },
    /// The number of types that will be listed.
    TypesDiscovered {
        types: u64,
    },
    /// One list page of a type was written to the archive.
    PageListed {
        resource: String,
        objects: u64,
        bytes: u64,
    },
    /// A list resumed after its continue token expired (410).
    ListResumed {
        resource: String,
        message: String,
    },
    /// A request is being retried after a transient error.
    Retrying {
        what: String,
        attempt: u32,
        message: String,
    },
    /// All objects of a type are in the archive.
    TypeDone {
        resource: String,
        objects: u64,
    },
    /// A type could not be listed; the backup goes on without it.
    TypeFailed {
        resource: String,
        message: String,
    },
    /// A warning that does not fail the backup.
    Warning {
        resource: String,
        message: String,
    },
    /// A volume's snapshot finished (`completed`) or could not be taken (`failed`).
    VolumeSnapshot {
        persistent_volume: String,
        result: String,
        message: String,
    },
    /// A volume was recreated from its snapshot for a restore (`created`), or not (`failed`).
    VolumeRestore {
        persistent_volume: String,
        result: String,
        message: String,
    },
    /// A restore started, planned, or finished.
    RestoreStarted {
        restore: String,
        backup: String,
        dry_run: bool,
    },
    RestorePlanned {
        restore: String,
        objects: u64,
        volumes: u64,
    },
    RestoreFinished {
        restore: String,
        phase: Phase,
        created: u64,
        failed: u64,
        seconds: f64,
    },
    /// Compressed archive bytes handed to storage.
    ArchiveBytes {
        bytes: u64,
    },
    ArchiveWritten {
        key: String,
        bytes: u64,
        sha256: String,
    },
    BackupFinished {
        backup: String,
        phase: Phase,
        items: u64,
        archive_bytes: u64,
        seconds: f64,
        /// The process's peak resident memory so far (Linux), to see memory stay flat.
        peak_rss_bytes: Option<u64>,
        /// CPU time the process has used so far, user plus system (Linux).
        cpu_seconds: Option<f64>,
    },
    BackupFailed {
        backup: String,
        message: String,
    },
    /// `backup verify` (or the daemon's `server.verifyAfterBackup`) checked a backup.
    VerifyFinished {
        backup: String,
        phase: crate::verify::Phase,
        objects: u64,
        /// Each problem as `what: message`; empty when verified.
        problems: Vec<String>,
        seconds: f64,
    },
}

impl Event {
    fn is_problem(&self) -> bool {
        match self {
            Event::VolumeSnapshot { result, .. } => result != "completed",
            Event::VolumeRestore { result, .. } => result != "created",
            Event::VerifyFinished { phase, .. } => *phase != crate::verify::Phase::Verified,
            Event::DiscoveryFailed { .. }
            | Event::TypeFailed { .. }
            | Event::Warning { .. }
            | Event::BackupFailed { .. } => true,
            _ => false,
        }
    }
}

/// The process's peak resident set size (VmHWM), where the OS tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) this process has used, where the OS tells it.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start with the state.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports these in USER_HZ, 100 on every architecture lifeboat runs on.
    Some(ticks as f64 / 100.0)
}

/// Receives events. Implementations must be cheap: they run inline with the backup.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

/// Several observers behind one.
#[derive(Clone, Default)]
pub struct Observers(Vec<Arc<dyn Observer>>);

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.0.len())
    }
}

impl Observers {
    #[must_use]
    pub fn with(mut self, o: Arc<dyn Observer>) -> Self {
        self.0.push(o);
        self
    }

    pub fn emit(&self, event: &Event) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

/// Writes events to the process log through `tracing`: problems as warnings, milestones at
/// info, per-page progress at debug.
#[derive(Debug, Default)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&self, e: &Event) {
        match e {
            Event::BackupStarted {
                backup,
                schedule,
                storage,
            } => {
                tracing::info!(
                    backup,
                    schedule = schedule.as_deref(),
                    storage,
                    "backup started"
                );
            }
            Event::DiscoveryFailed { group, message } => {
                tracing::warn!(group, message, "API group skipped");
            }
            Event::TypesDiscovered { types } => tracing::info!(types, "resource types discovered"),
            Event::PageListed {
                resource,
                objects,
                bytes,
            } => tracing::debug!(resource, objects, bytes, "page listed"),
            Event::ListResumed { resource, message } => {
                tracing::warn!(resource, message, "list resumed");
            }
            Event::Retrying {
                what,
                attempt,
                message,
            } => tracing::info!(what, attempt, message, "retrying"),
            Event::TypeDone { resource, objects } => {
                tracing::debug!(resource, objects, "resource type done");
            }
            Event::TypeFailed { resource, message } => {
                tracing::warn!(resource, message, "resource type failed");
            }
            Event::Warning { resource, message } => tracing::warn!(resource, message, "warning"),
            Event::VolumeSnapshot {
                persistent_volume,
                result,
                message,
            } if result == "completed" => {
                tracing::info!(
                    persistent_volume,
                    snapshot = message,
                    "volume snapshot completed"
                );
            }
            Event::VolumeSnapshot {
                persistent_volume,
                result,
                message,
            } => {
                tracing::warn!(persistent_volume, result, message, "volume snapshot failed");
            }
            Event::VolumeRestore {
                persistent_volume,
                result,
                message,
            } if result == "created" => {
                tracing::info!(
                    persistent_volume,
                    volume = message,
                    "volume restored from snapshot"
                );
            }
            Event::VolumeRestore {
                persistent_volume,
                result,
                message,
            } => {
                tracing::warn!(persistent_volume, result, message, "volume restore failed");
            }
            Event::RestoreStarted {
                restore,
                backup,
                dry_run,
            } => tracing::info!(restore, backup, dry_run, "restore started"),
            Event::RestorePlanned {
                restore,
                objects,
                volumes,
            } => tracing::info!(restore, objects, volumes, "restore planned"),
            Event::RestoreFinished {
                restore,
                phase,
                created,
                failed,
                seconds,
            } => {
                tracing::info!(
                    restore,
                    phase = phase.as_str(),
                    created,
                    failed,
                    seconds,
                    "restore finished"
                );
            }
            Event::ArchiveBytes { .. } => {}
            Event::ArchiveWritten { key, bytes, sha256 } => {
                tracing::info!(key, bytes, sha256, "archive written");
            }
            Event::BackupFinished {
                backup,
                phase,
                items,
                archive_bytes,
                seconds,
                peak_rss_bytes,
                cpu_seconds,
            } => {
                tracing::info!(
                    backup,
                    phase = phase.as_str(),
                    items,
                    archive_bytes,
                    seconds,
                    peak_rss_bytes,
                    cpu_seconds,
                    "backup finished"
                );
            }
            Event::BackupFailed { backup, message } => {
                tracing::error!(backup, message, "backup failed");
            }
            Event::VerifyFinished {
                backup,
                phase,
                objects,
                problems,
                seconds,
            } => {
                if problems.is_empty() {
                    tracing::info!(
                        backup,
                        phase = phase.as_str(),
                        objects,
                        seconds,
                        "backup verified"
                    );
                } else {
                    // One line per problem would scatter one verdict; the joined list keeps it
                    // whole for log searches.
                    tracing::warn!(
                        backup,
                        phase = phase.as_str(),
                        objects,
                        seconds,
                        problems = problems.join("; "),
                        "backup verification failed"
                    );
                }
            }
        }
    }
}

/// The run's own structured log (`log.jsonl.zst` next to the archive): one JSON object per
/// event with a timestamp, compressed as it is written so it stays small.
pub struct RunLog {
    inner: Mutex<Option<zstd::stream::write::Encoder<'static, Vec<u8>>>>,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunLog")
    }
}

impl Default for RunLog {
    fn default() -> Self {
        let enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd encoder in memory");
        RunLog {
            inner: Mutex::new(Some(enc)),
        }
    }
}

impl RunLog {
    /// The compressed log so far, closed: later events are dropped.
    pub fn finish(&self) -> Vec<u8> {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .take()
            .and_then(|enc| enc.finish().ok())
            .unwrap_or_default()
    }
}

impl Observer for RunLog {
    fn event(&self, e: &Event) {
        // Per-page events would dominate the file without telling an operator much.
        if matches!(e, Event::ArchiveBytes { .. }) {
            return;
        }
        let mut line = serde_json::json!({
            "time": jiff::Timestamp::now().to_string(),
            "level": if e.is_problem() { "warn" } else { "info" },
        });
        if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
            (line.as_object_mut(), serde_json::to_value(e))
        {
            obj.extend(fields);
        }
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(enc) = guard.as_mut() {
            let _ = writeln!(enc, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_log_is_compressed_json_lines() {
        let log = RunLog::default();
        log.event(&Event::TypeDone {
            resource: "configmaps".into(),
            objects: 3,
        });
        log.event(&Event::TypeFailed {
            resource: "secrets".into(),
            message: "500".into(),
        });
        let bytes = log.finish();
        let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "typeDone");
        assert_eq!(lines[0]["resource"], "configmaps");
        assert_eq!(lines[1]["level"], "warn");
        log.event(&Event::TypeDone {
            resource: "late".into(),
            objects: 1,
        });
        assert!(log.finish().is_empty(), "closed logs take no more events");
    }
}
