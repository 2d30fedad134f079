//! Retention: which backups of a schedule to delete (beyond `keepLast`, older than `maxAge`),
//! and deleting them with their snapshots, manifest first. The newest Completed backup of a
//! schedule is never deleted, whatever the policy says: retention must never leave a schedule
//! without a good backup.
//!
//! A backup still under S3 Object Lock is kept and reported as locked, with its date, rather
//! than failing the run: the lock is the operator's decision, not an error, and the backup is
//! deleted on the first run after the lock ends (see [`catalog::delete`] for how).

use std::time::Duration;

use serde::Serialize;

use crate::archive::manifest::{Phase, Summary};
use crate::catalog::{self, CatalogError, Incomplete, Lock};
use crate::store::Store;
use crate::volumes::ec2::Ec2;

/// A schedule's retention (`schedules[].retention`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub max_age: Option<Duration>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.max_age.is_none()
    }
}

/// One backup retention deletes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub name: String,
    pub reason: String,
}

/// Which of a schedule's backups (any order) the policy deletes at `now`.
pub fn decide(backups: &[Summary], policy: Policy, now: jiff::Timestamp) -> Vec<Expired> {
    let mut sorted: Vec<&Summary> = backups.iter().collect();
    sorted.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.name.cmp(&a.name))
    });
    let newest_completed = sorted
        .iter()
        .find(|b| b.phase == Phase::Completed)
        .map(|b| b.name.clone());
    let mut out = Vec::new();
    for (i, b) in sorted.iter().enumerate() {
        let age = Duration::try_from(now.duration_since(b.started_at)).unwrap_or_default();
        let reason = match (policy.keep_last, policy.max_age) {
            (Some(n), _) if i >= n as usize => format!("beyond keepLast {n}"),
            (_, Some(max)) if age > max => {
                format!("older than maxAge {}", crate::report::duration(max))
            }
            _ => continue,
        };
        if Some(&b.name) == newest_completed.as_ref() {
            // Never leave a schedule without its newest good backup.
            continue;
        }
        out.push(Expired {
            name: b.name.clone(),
            reason,
        });
    }
    out
}

/// A backup the policy deletes but S3 Object Lock still protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locked {
    pub name: String,
    /// Why the policy deletes it.
    pub reason: String,
    #[serde(flatten)]
    pub lock: Lock,
}

/// What applying retention did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub deleted: Vec<Expired>,
    /// Backups that could not be deleted, and why (they are tried again next time).
    pub failed: Vec<Expired>,
    /// Backups kept, whole, because their objects are still locked; deleted once the lock ends.
    pub locked: Vec<Locked>,
    /// Directories of runs that died before their manifest, cleaned up.
    pub debris: Vec<String>,
}

/// How old a backup directory without a manifest must be before it counts as debris of a dead
/// run rather than a backup still being written.
pub const DEBRIS_AGE: Duration = Duration::from_hours(6);

/// Applies a schedule's policy: deletes what [`decide`] says, except what is still locked, and
/// the debris of runs that died before their manifest. With `dry_run` only reports (the locks
/// are read all the same, so a dry run shows what stays locked and until when). A lock never
/// fails the run.
pub async fn apply<E: Ec2>(
    store: &Store,
    ec2: Option<&E>,
    schedule: &str,
    policy: Policy,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<Outcome, catalog::CatalogError> {
    let (all, incomplete) = catalog::list(store).await?;
    let mine: Vec<Summary> = all
        .into_iter()
        .filter(|s| s.schedule.as_deref() == Some(schedule))
        .collect();
    let mut outcome = Outcome::default();
    if !policy.is_empty() {
        for e in decide(&mine, policy, now) {
            // A real delete checks the locks itself, before it deletes anything.
            let result = if dry_run {
                match catalog::lock(store, &e.name, now).await {
                    Ok(None) => Ok(()),
                    Ok(Some(lock)) => Err(CatalogError::Locked {
                        name: e.name.clone(),
                        lock,
                    }),
                    Err(err) => Err(err),
                }
            } else {
                catalog::delete(store, &e.name, ec2).await.map(|_| ())
            };
            match result {
                Ok(()) => outcome.deleted.push(e),
                Err(CatalogError::Locked { lock, .. }) => outcome.locked.push(Locked {
                    name: e.name,
                    reason: e.reason,
                    lock,
                }),
                Err(err) => outcome.failed.push(Expired {
                    name: e.name,
                    reason: err.to_string(),
                }),
            }
        }
    }
    for Incomplete { name } in incomplete
        .into_iter()
        .filter(|i| is_debris(&i.name, schedule, now))
    {
        // Debris that cannot go yet (locked, or a failure) is tried again next time; it is
        // not a backup, so it is not reported.
        let gone = if dry_run {
            matches!(catalog::lock(store, &name, now).await, Ok(None))
        } else {
            catalog::delete(store, &name, ec2).await.is_ok()
        };
        if gone {
            outcome.debris.push(name);
        }
    }
    Ok(outcome)
}

/// `<schedule>-<UTC yyyymmddhhmmss>` older than [`DEBRIS_AGE`].
fn is_debris(name: &str, schedule: &str, now: jiff::Timestamp) -> bool {
    let Some(stamp) = name
        .strip_prefix(schedule)
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    let Ok(t) = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", stamp) else {
        return false;
    };
    let Ok(t) = t.to_zoned(jiff::tz::TimeZone::UTC) else {
        return false;
    };
    Duration::try_from(now.duration_since(t.timestamp())).is_ok_and(|age| age > DEBRIS_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: &str, hours_ago: i64, phase: Phase) -> Summary {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let t = now - jiff::SignedDuration::from_hours(hours_ago);
        Summary {
            name: name.into(),
            phase,
            schedule: Some("nightly".into()),
            started_at: t,
            completed_at: t,
            item_count: 1,
            archive_size: 1,
            volume_count: 0,
            expires_at: None,
        }
    }

    fn names(v: &[Expired]) -> Vec<&str> {
        v.iter().map(|e| e.name.as_str()).collect()
    }

    const NOW: &str = "2026-11-28T12:00:00Z";

    /// (backups, keepLast, maxAge, the names deleted)
    type Case = (
        Vec<Summary>,
        Option<u32>,
        Option<Duration>,
        Vec<&'static str>,
    );

    #[test]
    fn retention_table() {
        use Phase::{Completed as C, PartiallyFailed as P};
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let day = |d: u64| Some(Duration::from_hours(24 * d));
        let cases: Vec<Case> = vec![
            (
                vec![b("d", 1, C), b("c", 2, C), b("b", 3, C), b("a", 4, C)],
                Some(2),
                None,
                vec!["b", "a"],
            ),
            (
                vec![b("d", 1, C), b("c", 50, C), b("b", 80, C)],
                None,
                day(2),
                vec!["c", "b"],
            ),
            // Everything expired: the newest Completed stays.
            (
                vec![b("c", 100, C), b("b", 200, C)],
                None,
                day(1),
                vec!["b"],
            ),
            // The newest is PartiallyFailed: the newest Completed is kept although beyond keepLast.
            (
                vec![b("c", 1, P), b("b", 2, P), b("a", 3, C)],
                Some(1),
                None,
                vec!["b"],
            ),
            (vec![b("b", 1, C), b("a", 2, C)], None, None, vec![]),
            (
                vec![b("c", 1, C), b("b", 2, C), b("a", 80, C)],
                Some(5),
                day(3),
                vec!["a"],
            ),
        ];
        for (backups, keep_last, max_age, want) in cases {
            let got = decide(&backups, Policy { keep_last, max_age }, now);
            assert_eq!(
                names(&got),
                want,
                "keepLast {keep_last:?} maxAge {max_age:?}"
            );
        }
        let reasons = decide(
            &[b("b", 1, C), b("a", 2, C)],
            Policy {
                keep_last: Some(1),
                max_age: None,
            },
            now,
        );
        assert_eq!(reasons[0].reason, "beyond keepLast 1");
    }

    #[test]
    fn debris_is_an_old_directory_named_like_the_schedule() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        assert!(is_debris("nightly-20261127020000", "nightly", now));
        assert!(
            !is_debris("nightly-20261128110000", "nightly", now),
            "may still be running"
        );
        assert!(!is_debris("nightly-manual", "nightly", now));
        assert!(!is_debris("hourly-20261127020000", "nightly", now));
    }
}
