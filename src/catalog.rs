//! The bucket is the catalogue: backups are found by listing `backups/` and reading manifests,
//! so they can be listed, described and restored when the cluster they came from is gone.
//!
//! Deleting under S3 Object Lock: an Object Lock bucket is always versioned, and there a plain
//! DeleteObject does not fail on a locked object (AWS and moto agree): it stacks a delete
//! marker on top, the backup vanishes from listings, and its locked data stays. A delete that
//! reports success then would be a lie. So [`delete`] works on versions: it first reads the
//! lock of every version of the backup and, when any is still locked, refuses with
//! [`CatalogError::Locked`] before touching anything (not even the manifest, so a locked backup
//! is never left half-deleted, and its EBS snapshots stay with it); otherwise it deletes every
//! version by its id, so the data is really gone.

use std::fmt;

use futures::StreamExt as _;
use serde::Serialize;

use crate::archive::manifest::{Manifest, ManifestError, Summary};
use crate::archive::reader::HashingReader;
use crate::backup;
use crate::store::{LockState, ObjectLockMode, ObjectVersion, Store, StoreError};
use crate::volumes::ec2::Ec2;
use crate::volumes::record::VolumesFile;

/// Why a catalogue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "backup {name:?} not found in {storage}; `lifeboat backup list` shows the backups there"
    )]
    NotFound { name: String, storage: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error(
        "backup {name:?} has {snapshots} EBS snapshot(s) to delete, which needs EC2 access; configure volumes (region, credentials) and run the delete again"
    )]
    NeedsEc2 { name: String, snapshots: usize },
    #[error(
        "deleting the snapshots of backup {name:?}: {message}; run the delete again to finish it"
    )]
    Snapshot { name: String, message: String },
    #[error("volumes.json of backup {name:?} is unreadable: {message}")]
    Volumes { name: String, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("backup {name:?} is {lock}: S3 Object Lock refuses to delete its objects, so nothing was deleted; {}", lock.advice())]
    Locked { name: String, lock: Lock },
}

/// The S3 Object Lock that keeps a backup from being deleted: the latest retention date among
/// its object versions, and whether any of them is under a legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    /// The mode of the retention that ends last; `None` when only a legal hold keeps it.
    pub mode: Option<ObjectLockMode>,
    /// When the last retention ends; `None` when only a legal hold keeps it.
    pub until: Option<jiff::Timestamp>,
    pub legal_hold: bool,
}

impl Lock {
    /// What still holds at `now` over the lock states of a backup's versions, or `None` when
    /// S3 would let every version be deleted. The backup is deletable only when all of them
    /// are, so the latest date is the one that counts.
    pub fn in_force(
        states: impl IntoIterator<Item = LockState>,
        now: jiff::Timestamp,
    ) -> Option<Lock> {
        let mut lock = Lock {
            mode: None,
            until: None,
            legal_hold: false,
        };
        for state in states {
            lock.legal_hold |= state.legal_hold;
            let Some(r) = state.retention.filter(|r| r.until > now) else {
                continue;
            };
            let later = lock.until.is_none_or(|u| r.until > u);
            // On the same date COMPLIANCE is the one to report: nobody can lift it.
            let stricter = lock.until == Some(r.until) && r.mode == ObjectLockMode::Compliance;
            if later || stricter {
                lock.until = Some(r.until);
                lock.mode = Some(r.mode);
            }
        }
        (lock.legal_hold || lock.until.is_some()).then_some(lock)
    }

    /// What an operator can do about it.
    fn advice(&self) -> String {
        let mut out = Vec::new();
        match (self.mode, self.until) {
            (Some(ObjectLockMode::Governance), Some(until)) => out.push(format!(
                "retention deletes it on its first run after {}; to delete it earlier, someone with s3:BypassGovernanceRetention must remove its object versions (lifeboat never bypasses a lock)",
                crate::report::timestamp(until)
            )),
            (_, Some(until)) => out.push(format!(
                "COMPLIANCE mode cannot be lifted by anyone; retention deletes it on its first run after {}",
                crate::report::timestamp(until)
            )),
            _ => {}
        }
        if self.legal_hold {
            out.push("a legal hold lasts until someone with s3:PutObjectLegalHold removes it from the backup's objects".into());
        }
        out.join("; ")
    }
}

/// `locked until 2026-12-01 02:00:05 UTC (GOVERNANCE)`, `under a legal hold`.
impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(until) = self.until {
            write!(f, "locked until {}", crate::report::timestamp(until))?;
            if let Some(mode) = self.mode {
                write!(f, " ({mode})")?;
            }
            if self.legal_hold {
                f.write_str(" and")?;
            }
        }
        if self.legal_hold {
            f.write_str(if self.until.is_some() {
                " under a legal hold"
            } else {
                "locked by a legal hold"
            })?;
        }
        Ok(())
    }
}

/// A backup directory without a manifest: a run that failed or is still going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub name: String,
}

/// Every backup with a manifest, newest first, and the directories without one.
pub async fn list(store: &Store) -> Result<(Vec<Summary>, Vec<Incomplete>), CatalogError> {
    let names = store.list_dirs("backups/").await?;
    let fetched: Vec<(String, Result<Option<Manifest>, CatalogError>)> =
        futures::stream::iter(names)
            .map(|name| async move {
                let r = read_manifest(store, &name).await;
                (name, r)
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let mut summaries = Vec::new();
    let mut incomplete = Vec::new();
    for (name, r) in fetched {
        match r? {
            Some(m) => summaries.push(Summary::from(&m)),
            None => incomplete.push(Incomplete { name }),
        }
    }
    summaries.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.name.cmp(&a.name))
    });
    incomplete.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((summaries, incomplete))
}

async fn read_manifest(store: &Store, name: &str) -> Result<Option<Manifest>, CatalogError> {
    match store.get(&backup::manifest_key(name)).await {
        Ok(bytes) => Ok(Some(Manifest::parse(name, &bytes)?)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The manifest of one backup.
pub async fn manifest(store: &Store, name: &str) -> Result<Manifest, CatalogError> {
    read_manifest(store, name)
        .await?
        .ok_or_else(|| CatalogError::NotFound {
            name: name.to_string(),
            storage: store.url(),
        })
}

/// `volumes.json` of a backup, as stored, or `None` when it has none.
pub async fn volumes(
    store: &Store,
    manifest: &Manifest,
) -> Result<Option<serde_json::Value>, CatalogError> {
    let Some(key) = &manifest.volumes.key else {
        return Ok(None);
    };
    match store.get(key).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Streams the archive of a backup into a local file (written to a temporary name first).
pub async fn download(
    store: &Store,
    name: &str,
    path: &std::path::Path,
) -> Result<u64, CatalogError> {
    let m = manifest(store, name).await?;
    download_archive(store, &m, path).await
}

/// [`download`] of the archive of a manifest already read.
async fn download_archive(
    store: &Store,
    m: &Manifest,
    path: &std::path::Path,
) -> Result<u64, CatalogError> {
    use tokio::io::AsyncWriteExt as _;
    let write_err = |source| CatalogError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("partial");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(write_err)?;
    let mut stream = store.get_stream(&m.archive.key).await?;
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                drop(file);
                tokio::fs::remove_file(&tmp).await.ok();
                return Err(e.into());
            }
        };
        n += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(write_err)?;
    }
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(write_err)?;
    Ok(n)
}

/// What a delete removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    pub objects: Vec<String>,
    pub snapshots: Vec<String>,
}

/// The Object Lock that keeps a backup from being deleted at `now`, if any.
pub async fn lock(
    store: &Store,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Option<Lock>, CatalogError> {
    let versions = versions(store, name).await?;
    lock_of(store, &versions, now).await
}

/// Every stored version of a backup's objects; a backup without one does not exist.
async fn versions(store: &Store, name: &str) -> Result<Vec<ObjectVersion>, CatalogError> {
    let not_found = || CatalogError::NotFound {
        name: name.to_string(),
        storage: store.url(),
    };
    backup::validate_name(name).map_err(|_| not_found())?;
    let versions = store.versions(&backup::backup_prefix(name)).await?;
    // Delete markers alone are what an earlier plain delete left: no data, nothing to delete.
    if versions.iter().all(|v| v.delete_marker) {
        return Err(not_found());
    }
    Ok(versions)
}

async fn lock_of(
    store: &Store,
    versions: &[ObjectVersion],
    now: jiff::Timestamp,
) -> Result<Option<Lock>, CatalogError> {
    // The futures are made up front: a `Stream::map` closure over borrowed versions trips the
    // compiler's `Send` check in the daemon's spawned tasks (rust-lang/rust#102211).
    let heads: Vec<_> = versions.iter().map(|v| store.lock_state(v)).collect();
    let states: Vec<Result<LockState, StoreError>> = futures::stream::iter(heads)
        .buffer_unordered(8)
        .collect()
        .await;
    let states = states.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Lock::in_force(states, now))
}

/// Deletes a backup for good, every version of every object (see the module docs for why).
/// First the locks: a backup with any version still under Object Lock is refused with
/// [`CatalogError::Locked`] before anything is deleted. Then the manifest, so a half-deleted
/// backup is never listed as complete; then its EBS snapshots; then the other objects,
/// `volumes.json` last so that a delete that stops half-way still knows which snapshots to
/// remove when it is run again; delete markers at the very end, since removing one earlier
/// would bring back the version below it. Snapshots and objects already gone are fine: a
/// delete can always be re-run.
pub async fn delete<E: Ec2>(
    store: &Store,
    name: &str,
    ec2: Option<&E>,
) -> Result<Deleted, CatalogError> {
    let versions = versions(store, name).await?;
    // S3 enforces locks by its own clock, so the check uses the real one.
    if let Some(lock) = lock_of(store, &versions, jiff::Timestamp::now()).await? {
        return Err(CatalogError::Locked {
            name: name.to_string(),
            lock,
        });
    }
    let volumes_key = backup::volumes_key(name);
    let snapshots: Vec<String> = match store.get(&volumes_key).await {
        Ok(bytes) => serde_json::from_slice::<VolumesFile>(&bytes)
            .map_err(|e| CatalogError::Volumes {
                name: name.to_string(),
                message: e.to_string(),
            })?
            .snapshot_ids()
            .map(String::from)
            .collect(),
        // No volumes.json, or one hidden by a delete marker: an earlier plain delete hid it
        // last, after deleting its snapshots.
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if !snapshots.is_empty() && ec2.is_none() {
        return Err(CatalogError::NeedsEc2 {
            name: name.to_string(),
            snapshots: snapshots.len(),
        });
    }
    let manifest_key = backup::manifest_key(name);
    let mut deleted = Deleted::default();
    delete_versions(store, &versions, |v| v.key == manifest_key, &mut deleted).await?;
    if let Some(ec2) = ec2 {
        for id in snapshots {
            ec2.delete_snapshot(&id)
                .await
                .map_err(|e| CatalogError::Snapshot {
                    name: name.to_string(),
                    message: e.to_string(),
                })?;
            deleted.snapshots.push(id);
        }
    }
    delete_versions(
        store,
        &versions,
        |v| v.key != manifest_key && v.key != volumes_key,
        &mut deleted,
    )
    .await?;
    delete_versions(store, &versions, |v| v.key == volumes_key, &mut deleted).await?;
    for marker in versions.iter().filter(|v| v.delete_marker) {
        store.delete_version(marker).await?;
    }
    Ok(deleted)
}

/// Deletes the data versions that `which` selects, recording each key once.
async fn delete_versions(
    store: &Store,
    versions: &[ObjectVersion],
    which: impl Fn(&ObjectVersion) -> bool,
    deleted: &mut Deleted,
) -> Result<(), StoreError> {
    for v in versions.iter().filter(|v| !v.delete_marker && which(v)) {
        store.delete_version(v).await?;
        if !deleted.objects.contains(&v.key) {
            deleted.objects.push(v.key.clone());
        }
    }
    Ok(())
}

/// What [`download_plain`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written to the file.
    pub bytes: u64,
    /// Whether they were decrypted (the backup is encrypted and identities were given).
    pub decrypted: bool,
}

/// [`download`], then, for an encrypted backup and given `identities`, decrypted to the plain
/// tar.zst. Without identities an encrypted backup is written as stored (an age file). The
/// stored bytes are checked against the manifest's size and SHA-256 before anything is
/// decrypted, and the file appears only once complete.
pub async fn download_plain(
    store: &Store,
    name: &str,
    path: &std::path::Path,
    identities: Option<crate::archive::seal::Identities>,
) -> Result<Downloaded, CatalogError> {
    let m = manifest(store, name).await?;
    let (Some(_), Some(identities)) = (&m.archive.encryption, identities) else {
        let bytes = download_archive(store, &m, path).await?;
        return Ok(Downloaded {
            bytes,
            decrypted: false,
        });
    };
    let write_err = |source| CatalogError::Write {
        path: path.display().to_string(),
        source,
    };
    let stream = store.get_stream(&m.archive.key).await?;
    let (reader, feeding) = crate::store::BlockingReader::new(stream);
    let out = path.to_path_buf();
    let (size, sha256) = (m.archive.size, m.archive.sha256.clone());
    let written =
        tokio::task::spawn_blocking(move || decrypt_to(reader, &out, &identities, size, &sha256))
            .await
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?
            .map_err(write_err)?;
    drop(feeding);
    Ok(Downloaded {
        bytes: written,
        decrypted: true,
    })
}

/// Decrypts `stored` into `out` in one pass, hashing the stored bytes on the way; `out`
/// appears only once they match the manifest's size and SHA-256.
fn decrypt_to(
    stored: impl std::io::Read,
    out: &std::path::Path,
    identities: &crate::archive::seal::Identities,
    size: u64,
    sha256: &str,
) -> std::io::Result<u64> {
    use std::io::{Error, ErrorKind};
    let partial = out.with_extension("partial");
    let mut stored = HashingReader::new(stored);
    let decrypted = (|| {
        let mut target = std::fs::File::create(&partial)?;
        let mut plain = identities
            .open(&mut stored)
            .map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?;
        let written = std::io::copy(&mut plain, &mut target)?;
        target.sync_all()?;
        Ok(written)
    })();
    // Whatever age did not read is hashed too: a mismatch names a replaced or corrupt archive
    // better than the decryption error it may have caused.
    let drained = std::io::copy(&mut stored, &mut std::io::sink());
    let failed = stored.failed();
    let (stored_bytes, actual) = stored.finish();
    let result = match (decrypted, drained) {
        (_, _) if !failed && (stored_bytes != size || !actual.eq_ignore_ascii_case(sha256)) => {
            Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "the archive downloaded is {stored_bytes} bytes with SHA-256 {actual}, but its manifest records {size} bytes with {sha256}: it is corrupt or was replaced"
                ),
            ))
        }
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(written), Ok(_)) => std::fs::rename(&partial, out).map(|()| written),
    };
    if result.is_err() {
        std::fs::remove_file(&partial).ok();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;

    const NOW: &str = "2026-11-28T12:00:00Z";

    fn at(hours_from_now: i64) -> jiff::Timestamp {
        NOW.parse::<jiff::Timestamp>().unwrap() + jiff::SignedDuration::from_hours(hours_from_now)
    }

    fn retained(mode: ObjectLockMode, hours_from_now: i64) -> LockState {
        LockState {
            retention: Some(Retention {
                mode,
                until: at(hours_from_now),
            }),
            legal_hold: false,
        }
    }

    #[test]
    fn a_backup_is_locked_until_its_last_version_is_free() {
        use ObjectLockMode::{Compliance as C, Governance as G};
        let now = at(0);
        // The archive was written first, the manifest last: the manifest's date counts.
        let backup = [retained(G, 20), retained(G, 23), retained(G, 24)];
        assert_eq!(
            Lock::in_force(backup, now),
            Some(Lock {
                mode: Some(G),
                until: Some(at(24)),
                legal_hold: false
            })
        );
        // One version still locked keeps the whole backup.
        assert_eq!(
            Lock::in_force([retained(G, -5), retained(C, 1)], now).map(|l| l.until),
            Some(Some(at(1)))
        );
        // Expired retentions, versions without any, and no versions at all: free.
        assert_eq!(
            Lock::in_force([retained(C, -1), LockState::default()], now),
            None
        );
        assert_eq!(Lock::in_force([], now), None);
        // The lock ends at its date, not a second later.
        assert_eq!(Lock::in_force([retained(G, 0)], now), None);
        assert!(
            Lock::in_force([retained(G, 0)], now - jiff::SignedDuration::from_secs(1)).is_some()
        );
        // Same date: COMPLIANCE is reported, whatever the order.
        for states in [
            [retained(G, 3), retained(C, 3)],
            [retained(C, 3), retained(G, 3)],
        ] {
            assert_eq!(Lock::in_force(states, now).unwrap().mode, Some(C));
        }
    }

    #[test]
    fn a_legal_hold_has_no_end() {
        let hold = LockState {
            retention: None,
            legal_hold: true,
        };
        let lock = Lock::in_force([hold, retained(ObjectLockMode::Governance, -1)], at(10_000))
            .expect("held");
        assert_eq!((lock.mode, lock.until, lock.legal_hold), (None, None, true));
        assert_eq!(lock.to_string(), "locked by a legal hold");
    }

    #[test]
    fn locked_errors_name_the_mode_the_date_and_what_to_do() {
        let governance = Lock::in_force([retained(ObjectLockMode::Governance, 24)], at(0)).unwrap();
        assert_eq!(
            governance.to_string(),
            "locked until 2026-11-29 12:00:00 UTC (GOVERNANCE)"
        );
        let err = CatalogError::Locked {
            name: "nightly-1".into(),
            lock: governance,
        }
        .to_string();
        assert!(
            err.starts_with("backup \"nightly-1\" is locked until 2026-11-29 12:00:00 UTC (GOVERNANCE): S3 Object Lock refuses to delete its objects, so nothing was deleted; "),
            "{err}"
        );
        assert!(err.contains("s3:BypassGovernanceRetention"), "{err}");
        let compliance = CatalogError::Locked {
            name: "b".into(),
            lock: Lock {
                mode: Some(ObjectLockMode::Compliance),
                until: Some(at(1)),
                legal_hold: true,
            },
        }
        .to_string();
        assert!(
            compliance.contains("(COMPLIANCE) and under a legal hold"),
            "{compliance}"
        );
        assert!(
            compliance.contains("cannot be lifted by anyone"),
            "{compliance}"
        );
        assert!(compliance.contains("s3:PutObjectLegalHold"), "{compliance}");
    }

    #[test]
    fn locks_serialise_for_json_reports() {
        let lock = Lock::in_force([retained(ObjectLockMode::Compliance, 24)], at(0)).unwrap();
        assert_eq!(
            serde_json::to_value(&lock).unwrap(),
            serde_json::json!({"mode": "COMPLIANCE", "until": "2026-11-29T12:00:00Z", "legalHold": false})
        );
    }
}
