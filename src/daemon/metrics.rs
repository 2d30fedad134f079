//! The daemon's Prometheus metrics.
//!
//! Every metric lives in one [`prometheus_client`] registry with the `lifeboat_` prefix; the
//! crate derives the conventional suffixes (`_total` for counters, the unit for `_seconds` and
//! `_bytes`, `_info` for the build info), so no exposition text is written by hand. Backups feed
//! the metrics through the same typed [`Event`]s that feed the logs: [`Metrics::observer`] is one
//! more [`Observer`] on a run. The few things that are not events of a run (a skipped tick,
//! retention, leadership) have a method each, called by the daemon where they happen.
//!
//! Two expositions are served: the Prometheus text format 0.0.4 ([`Metrics::encode`], what
//! `curl` and most tools get) and OpenMetrics 1.0 ([`Metrics::encode_openmetrics`], what
//! Prometheus asks for first). Both come from the same registry.
//!
//! Label values stay bounded: `schedule` is a configured schedule name, `phase` and `result` are
//! small fixed sets. A backup's own name is never a label.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::archive::manifest::Phase;
use crate::events::{Event, Observer};

/// Upper bounds of the backup duration buckets, in seconds: from a one-second backup of a small
/// namespace to the two hours a large cluster with many volume snapshots can take.
pub const DURATION_BUCKETS: [f64; 14] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 5400.0, 7200.0,
];

/// The results of a volume snapshot, as `lifeboat_volume_snapshots_total{result}` has them.
pub const SNAPSHOT_RESULTS: [&str; 2] = ["completed", "failed"];

/// The results of a retention deletion, as `lifeboat_retention_deletions_total{result}` has
/// them: deleted, failed, or refused by the bucket's object lock.
pub const RETENTION_RESULTS: [&str; 3] = ["deleted", "failed", "locked"];

/// The results of verifying a new backup (`server.verifyAfterBackup`), as
/// `lifeboat_verifications_total{result}` has them.
pub const VERIFY_RESULTS: [&str; 2] = ["verified", "failed"];

const PHASES: [Phase; 3] = [Phase::Completed, Phase::PartiallyFailed, Phase::Failed];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    schedule: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    schedule: String,
    result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type CountGauge = Gauge<u64, AtomicU64>;

fn schedule(name: &str) -> ScheduleLabels {
    ScheduleLabels {
        schedule: name.to_owned(),
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Seconds since the Unix epoch, as Prometheus timestamps are.
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// All of the daemon's metrics. `Send + Sync`; share it in an `Arc`.
pub struct Metrics {
    registry: Registry,
    backups: Family<PhaseLabels, Counter>,
    duration: Family<ScheduleLabels, Histogram, fn() -> Histogram>,
    items: Family<ScheduleLabels, CountGauge>,
    archive_bytes: Family<ScheduleLabels, CountGauge>,
    last_success: Family<ScheduleLabels, FloatGauge>,
    interval: Family<ScheduleLabels, FloatGauge>,
    snapshots: Family<ResultLabels, Counter>,
    retention: Family<ResultLabels, Counter>,
    verifications: Family<ResultLabels, Counter>,
    skipped: Family<ScheduleLabels, Counter>,
    leader: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The content type of [`Metrics::encode`]: the Prometheus text format 0.0.4.
    pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

    /// The content type of [`Metrics::encode_openmetrics`].
    pub const OPENMETRICS_CONTENT_TYPE: &str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// A registry with every metric registered; per-schedule series appear with
    /// [`Metrics::init_schedule`] or the schedule's first event.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("lifeboat"),
            backups: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            items: Family::default(),
            archive_bytes: Family::default(),
            last_success: Family::default(),
            interval: Family::default(),
            snapshots: Family::default(),
            retention: Family::default(),
            verifications: Family::default(),
            skipped: Family::default(),
            leader: Gauge::default(),
        };
        m.registry.register(
            "backups",
            "Backup runs by schedule and final phase (Completed, PartiallyFailed, Failed)",
            m.backups.clone(),
        );
        m.registry.register_with_unit(
            "backup_duration",
            "Wall-clock duration of backup runs, failed ones included",
            Unit::Seconds,
            m.duration.clone(),
        );
        m.registry.register(
            "backup_items",
            "Objects in the schedule's last backup that wrote a manifest",
            m.items.clone(),
        );
        m.registry.register_with_unit(
            "backup_archive",
            "Compressed archive size of the schedule's last backup that wrote a manifest",
            Unit::Bytes,
            m.archive_bytes.clone(),
        );
        m.registry.register_with_unit(
            "backup_last_success_timestamp",
            "When the schedule's last Completed backup finished (Unix time); absent until one is known",
            Unit::Seconds,
            m.last_success.clone(),
        );
        m.registry.register_with_unit(
            "schedule_interval",
            "The longest gap between two consecutive runs of the schedule, for staleness alerts",
            Unit::Seconds,
            m.interval.clone(),
        );
        m.registry.register(
            "volume_snapshots",
            "EBS volume snapshots by schedule and result (completed, failed)",
            m.snapshots.clone(),
        );
        m.registry.register(
            "retention_deletions",
            "Backups removed by retention, by schedule and result (deleted, failed, locked)",
            m.retention.clone(),
        );
        m.registry.register(
            "verifications",
            "Verifications of new backups (server.verifyAfterBackup) by schedule and result (verified, failed)",
            m.verifications.clone(),
        );
        m.registry.register(
            "skipped_runs",
            "Ticks skipped because the schedule's previous run was still going",
            m.skipped.clone(),
        );
        m.registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs schedules, else 0",
            m.leader.clone(),
        );
        let start: FloatGauge = Gauge::default();
        start.set(unix_seconds(SystemTime::now()));
        m.registry.register_with_unit(
            "start_time",
            "When this daemon process started (Unix time)",
            Unit::Seconds,
            start,
        );
        m.registry.register(
            "build",
            "The running lifeboat's version; always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        m
    }

    /// The Prometheus text exposition (format 0.0.4), served with [`Metrics::CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The OpenMetrics 1.0 text exposition, `# EOF` included, served with
    /// [`Metrics::OPENMETRICS_CONTENT_TYPE`].
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// An observer for one run of `schedule`: give it to the backup with the run's other
    /// observers. A fresh one per run, since it times the run from its `BackupStarted`.
    pub fn observer(self: &Arc<Self>, schedule: &str) -> Arc<dyn Observer> {
        Arc::new(RunObserver {
            metrics: Arc::clone(self),
            schedule: schedule.to_owned(),
            started: Mutex::new(None),
        })
    }

    /// Creates the schedule's counters at 0 and its (empty) duration histogram, so that
    /// `rate()`, `increase()` and absence alerts work before its first run. The last-backup
    /// gauges stay absent until there is a last backup: a 0 there would be a lie.
    pub fn init_schedule(&self, schedule: &str) {
        for phase in PHASES {
            let _ = self.backups.get_or_create(&PhaseLabels {
                schedule: schedule.to_owned(),
                phase: phase.as_str().to_owned(),
            });
        }
        let _ = self.duration.get_or_create(&self::schedule(schedule));
        for result in SNAPSHOT_RESULTS {
            let _ = self
                .snapshots
                .get_or_create(&result_labels(schedule, result));
        }
        for result in RETENTION_RESULTS {
            let _ = self
                .retention
                .get_or_create(&result_labels(schedule, result));
        }
        let _ = self.skipped.get_or_create(&self::schedule(schedule));
    }

    /// Creates the schedule's verification counters at 0. Called only when
    /// `server.verifyAfterBackup` is on, so that a daemon that never verifies does not claim
    /// to have verified nothing.
    pub fn init_verifications(&self, schedule: &str) {
        for result in VERIFY_RESULTS {
            let _ = self
                .verifications
                .get_or_create(&result_labels(schedule, result));
        }
    }

    /// A tick of `schedule` found its previous run still going and did not start another.
    pub fn skipped_run(&self, schedule: &str) {
        self.skipped.get_or_create(&self::schedule(schedule)).inc();
    }

    /// Retention handled `count` backups of `schedule` with `result`: one of
    /// [`RETENTION_RESULTS`] (`deleted`, `failed`, `locked`).
    pub fn retention(&self, schedule: &str, result: &str, count: u64) {
        debug_assert!(
            RETENTION_RESULTS.contains(&result),
            "retention result {result:?} is not one of {RETENTION_RESULTS:?}"
        );
        self.retention
            .get_or_create(&result_labels(schedule, result))
            .inc_by(count);
    }

    /// Whether this replica now holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The longest gap between consecutive runs of `schedule` (for `0 2 * * 1-5`, the
    /// weekend's), which staleness alerts multiply: see docs/metrics.md.
    pub fn set_schedule_interval(&self, schedule: &str, interval: Duration) {
        self.interval
            .get_or_create(&self::schedule(schedule))
            .set(interval.as_secs_f64());
    }

    /// Records a Completed backup of `schedule` that finished at `completed_at`, unless a later
    /// one is already recorded. The daemon calls it at start with the newest Completed
    /// manifest in the bucket, so a restart does not look like a schedule that never succeeded.
    pub fn set_last_success(&self, schedule: &str, completed_at: SystemTime) {
        let seconds = unix_seconds(completed_at);
        let gauge = self.last_success.get_or_create(&self::schedule(schedule));
        // A run finishing while the catalogue is read must not be overwritten by an older time.
        let _ = gauge
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                (seconds > f64::from_bits(bits)).then_some(seconds.to_bits())
            });
    }

    fn backup_finished(&self, schedule: &str, phase: Phase, items: u64, bytes: u64, secs: f64) {
        self.count_backup(schedule, phase);
        self.duration
            .get_or_create(&self::schedule(schedule))
            .observe(secs);
        if phase != Phase::Failed {
            self.items
                .get_or_create(&self::schedule(schedule))
                .set(items);
            self.archive_bytes
                .get_or_create(&self::schedule(schedule))
                .set(bytes);
        }
        if phase == Phase::Completed {
            self.set_last_success(schedule, SystemTime::now());
        }
    }

    fn count_backup(&self, schedule: &str, phase: Phase) {
        self.backups
            .get_or_create(&PhaseLabels {
                schedule: schedule.to_owned(),
                phase: phase.as_str().to_owned(),
            })
            .inc();
    }
}

fn result_labels(schedule: &str, result: &str) -> ResultLabels {
    ResultLabels {
        schedule: schedule.to_owned(),
        result: result.to_owned(),
    }
}

/// One run's view of the metrics: the schedule it belongs to and when it started.
struct RunObserver {
    metrics: Arc<Metrics>,
    schedule: String,
    started: Mutex<Option<Instant>>,
}

impl Observer for RunObserver {
    fn event(&self, event: &Event) {
        let m = &self.metrics;
        match event {
            Event::BackupStarted { .. } => {
                *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
            Event::BackupFinished {
                phase,
                items,
                archive_bytes,
                seconds,
                ..
            } => m.backup_finished(&self.schedule, *phase, *items, *archive_bytes, *seconds),
            Event::BackupFailed { .. } => {
                m.count_backup(&self.schedule, Phase::Failed);
                let started = *self.started.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(started) = started {
                    m.duration
                        .get_or_create(&schedule(&self.schedule))
                        .observe(started.elapsed().as_secs_f64());
                }
            }
            Event::VerifyFinished { phase, .. } => {
                let result = if *phase == crate::verify::Phase::Verified {
                    "verified"
                } else {
                    "failed"
                };
                m.verifications
                    .get_or_create(&result_labels(&self.schedule, result))
                    .inc();
            }
            Event::VolumeSnapshot { result, .. } => {
                // Anything but completed is a failure: keeps the label to its two values.
                let result = if result == "completed" {
                    "completed"
                } else {
                    "failed"
                };
                m.snapshots
                    .get_or_create(&result_labels(&self.schedule, result))
                    .inc();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(phase: Phase, items: u64, bytes: u64, seconds: f64) -> Event {
        Event::BackupFinished {
            backup: "nightly-20250101020000".into(),
            phase,
            items,
            archive_bytes: bytes,
            seconds,
            peak_rss_bytes: Some(50 << 20),
            cpu_seconds: Some(1.5),
        }
    }

    fn snapshot(result: &str) -> Event {
        Event::VolumeSnapshot {
            persistent_volume: "pvc-1".into(),
            result: result.into(),
            message: "snap-0123".into(),
        }
    }

    fn started() -> Event {
        Event::BackupStarted {
            backup: "nightly-20250101020000".into(),
            schedule: Some("nightly".into()),
            storage: "s3://bucket/prefix".into(),
        }
    }

    /// The value of the one sample line that starts with `prefix` (name and labels).
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        let mut found = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap());
        let value = found.next();
        assert!(
            found.next().is_none(),
            "{prefix} matches more than one line"
        );
        value
    }

    #[test]
    fn completed_backup_counts_and_sets_last_backup_gauges() {
        let metrics = Arc::new(Metrics::new());
        let o = metrics.observer("quick");
        o.event(&started());
        o.event(&snapshot("completed"));
        o.event(&snapshot("failed"));
        o.event(&finished(Phase::Completed, 306, 660_000, 2.5));
        let text = metrics.encode();

        let line = text
            .lines()
            .find(|l| l.starts_with("lifeboat_backups_total{"))
            .unwrap();
        assert_eq!(
            line,
            r#"lifeboat_backups_total{schedule="quick",phase="Completed"} 1"#
        );
        assert!(text.contains("# TYPE lifeboat_backups_total counter\n"));
        assert_eq!(
            sample(&text, r#"lifeboat_backup_items{schedule="quick"}"#),
            Some(306.0)
        );
        assert_eq!(
            sample(&text, r#"lifeboat_backup_archive_bytes{schedule="quick"}"#),
            Some(660_000.0)
        );
        assert!(text.contains("# TYPE lifeboat_backup_archive_bytes gauge\n"));
        let last = sample(
            &text,
            r#"lifeboat_backup_last_success_timestamp_seconds{schedule="quick"}"#,
        )
        .unwrap();
        let now = unix_seconds(SystemTime::now());
        assert!((now - 60.0..=now).contains(&last), "{last} is not now");
        assert!(text.contains("# TYPE lifeboat_backup_duration_seconds histogram\n"));
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backup_duration_seconds_bucket{schedule="quick",le="5"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backup_duration_seconds_bucket{schedule="quick",le="1"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backup_duration_seconds_sum{schedule="quick"}"#
            ),
            Some(2.5)
        );
        for result in SNAPSHOT_RESULTS {
            assert_eq!(
                sample(
                    &text,
                    &format!(
                        r#"lifeboat_volume_snapshots_total{{schedule="quick",result="{result}"}}"#
                    )
                ),
                Some(1.0),
                "{result}"
            );
        }
    }

    #[test]
    fn partial_failure_is_not_a_success() {
        let metrics = Arc::new(Metrics::new());
        let o = metrics.observer("nightly");
        o.event(&started());
        o.event(&finished(Phase::PartiallyFailed, 10, 1000, 30.0));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backups_total{schedule="nightly",phase="PartiallyFailed"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"lifeboat_backup_items{schedule="nightly"}"#),
            Some(10.0)
        );
        assert!(!text.contains("lifeboat_backup_last_success_timestamp_seconds{"));
    }

    #[test]
    fn failed_backup_counts_as_failed_and_is_timed_from_its_start() {
        let metrics = Arc::new(Metrics::new());
        let o = metrics.observer("nightly");
        o.event(&started());
        o.event(&Event::BackupFailed {
            backup: "nightly-20250101020000".into(),
            message: "bucket not found".into(),
        });
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backups_total{schedule="nightly",phase="Failed"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backup_duration_seconds_count{schedule="nightly"}"#
            ),
            Some(1.0)
        );
        // A failed run wrote nothing: the last backup's size is not its.
        assert!(!text.contains("lifeboat_backup_items{"));
        assert!(!text.contains("lifeboat_backup_last_success_timestamp_seconds{"));
    }

    #[test]
    fn unknown_snapshot_results_count_as_failed() {
        let metrics = Arc::new(Metrics::new());
        metrics.observer("s").event(&snapshot("error"));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_volume_snapshots_total{schedule="s",result="failed"}"#
            ),
            Some(1.0)
        );
        assert!(!text.contains(r#"result="error""#));
    }

    #[test]
    fn init_schedule_creates_counters_at_zero() {
        let metrics = Metrics::new();
        metrics.init_schedule("weekly");
        let text = metrics.encode();
        for phase in PHASES {
            let prefix = format!(
                r#"lifeboat_backups_total{{schedule="weekly",phase="{}"}}"#,
                phase.as_str()
            );
            assert_eq!(sample(&text, &prefix), Some(0.0), "{prefix}");
        }
        for result in SNAPSHOT_RESULTS {
            let prefix = format!(
                r#"lifeboat_volume_snapshots_total{{schedule="weekly",result="{result}"}}"#
            );
            assert_eq!(sample(&text, &prefix), Some(0.0), "{prefix}");
        }
        for result in RETENTION_RESULTS {
            let prefix = format!(
                r#"lifeboat_retention_deletions_total{{schedule="weekly",result="{result}"}}"#
            );
            assert_eq!(sample(&text, &prefix), Some(0.0), "{prefix}");
        }
        assert_eq!(
            sample(&text, r#"lifeboat_skipped_runs_total{schedule="weekly"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_backup_duration_seconds_count{schedule="weekly"}"#
            ),
            Some(0.0)
        );
        assert!(!text.contains("lifeboat_backup_last_success_timestamp_seconds{"));
    }

    #[test]
    fn daemon_side_metrics() {
        let metrics = Metrics::new();
        metrics.skipped_run("quick");
        metrics.skipped_run("quick");
        metrics.retention("quick", "deleted", 3);
        metrics.retention("quick", "locked", 1);
        metrics.set_schedule_interval("quick", Duration::from_mins(5));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, r#"lifeboat_skipped_runs_total{schedule="quick"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_retention_deletions_total{schedule="quick",result="deleted"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_retention_deletions_total{schedule="quick",result="locked"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_schedule_interval_seconds{schedule="quick"}"#
            ),
            Some(300.0)
        );
        assert_eq!(sample(&text, "lifeboat_leader "), Some(0.0));
        metrics.set_leader(true);
        assert_eq!(sample(&metrics.encode(), "lifeboat_leader "), Some(1.0));
        metrics.set_leader(false);
        assert_eq!(sample(&metrics.encode(), "lifeboat_leader "), Some(0.0));
    }

    #[test]
    fn verifications_are_counted_by_result() {
        let metrics = Arc::new(Metrics::new());
        let verify = |phase| Event::VerifyFinished {
            backup: "nightly-20250101020000".into(),
            phase,
            objects: 3,
            problems: Vec::new(),
            seconds: 0.5,
        };
        assert!(!metrics.encode().contains("lifeboat_verifications_total{"));
        metrics.init_verifications("nightly");
        let o = metrics.observer("nightly");
        o.event(&verify(crate::verify::Phase::Verified));
        o.event(&verify(crate::verify::Phase::Verified));
        o.event(&verify(crate::verify::Phase::Failed));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_verifications_total{schedule="nightly",result="verified"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"lifeboat_verifications_total{schedule="nightly",result="failed"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn build_info_and_start_time() {
        let text = Metrics::new().encode();
        let line = format!(
            r#"lifeboat_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(text.contains("# TYPE lifeboat_build_info gauge\n"));
        assert!(sample(&text, "lifeboat_start_time_seconds ").unwrap() > 1.7e9);
    }

    #[test]
    fn last_success_only_moves_forward() {
        let metrics = Metrics::new();
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        metrics.set_last_success("nightly", t(2_000_000_000));
        metrics.set_last_success("nightly", t(1_900_000_000));
        let prefix = r#"lifeboat_backup_last_success_timestamp_seconds{schedule="nightly"}"#;
        assert_eq!(sample(&metrics.encode(), prefix), Some(2e9));
        metrics.set_last_success("nightly", t(2_000_000_100));
        assert_eq!(sample(&metrics.encode(), prefix), Some(2_000_000_100.0));
    }

    #[test]
    fn openmetrics_exposition_has_types_units_and_eof() {
        let metrics = Arc::new(Metrics::new());
        metrics.init_schedule("quick");
        metrics
            .observer("quick")
            .event(&finished(Phase::Completed, 1, 2, 3.0));
        let text = metrics.encode_openmetrics();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE lifeboat_backups counter\n"));
        assert!(text.contains("# UNIT lifeboat_backup_duration_seconds seconds\n"));
        assert!(text.contains("# TYPE lifeboat_build info\n"));
        assert!(
            text.lines()
                .any(|l| l == r#"lifeboat_backups_total{schedule="quick",phase="Completed"} 1"#)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.skipped_run("odd \"name\"\\");
        assert!(
            metrics
                .encode()
                .contains(r#"lifeboat_skipped_runs_total{schedule="odd \"name\"\\"} 1"#)
        );
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }

    /// Every line of the 0.0.4 exposition is a comment or `name{labels} value`, and each
    /// sample's family was declared with `# TYPE` before it, as Prometheus' parser wants.
    #[test]
    fn exposition_is_well_formed() {
        let metrics = Arc::new(Metrics::new());
        metrics.init_schedule("a");
        let o = metrics.observer("a");
        o.event(&started());
        o.event(&finished(Phase::Completed, 5, 6, 7.0));
        let text = metrics.encode();
        let mut typed: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("lifeboat_"), "{line}");
            let (family, kind) = typed.last().expect("a sample before any # TYPE");
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}")),
                _ => name == family,
            };
            assert!(ok, "{name} under # TYPE {family} {kind}");
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        }
        assert!(typed.len() >= 11, "{typed:?}");
    }
}
