//! `lifeboat backup verify`: shows that a stored backup can be restored, without restoring it.
//!
//! The archive is read the way a restore reads it: the same [`ArchiveReader`] with the same
//! [`Limits`], and every object checked against its path with [`check_objects`]. So whatever a
//! restore would refuse (unsafe paths, links, a newer format, an object filed under another
//! name, entries after the end marker), verify refuses too, and nothing is written anywhere.
//! The snapshots listed in `volumes.json` are looked up in EC2: each must still exist and be
//! `completed`, or its volume cannot be recreated.
//!
//! Unlike a restore, verify does not stop at the first problem when it can see past it. The
//! SHA-256 and size are computed over every stored byte, even after the archive stops parsing,
//! so a flipped byte shows up as a checksum mismatch (the cause) next to the parse error (its
//! effect); the snapshots are checked whatever the archive's state. Everything found goes into
//! one [`Report`], and the command exits 1 unless the report is [`Phase::Verified`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::archive::manifest::{ArchiveInfo, EncryptionInfo, Manifest};
use crate::archive::reader::{ArchiveError, ArchiveReader, HashingReader, Limits, check_objects};
use crate::catalog::{self, CatalogError};
use crate::events::{Event, Observers};
use crate::report;
use crate::store::{BlockingReader, Store};
use crate::volumes::ec2::Ec2;
use crate::volumes::record::{VolumeRecord, VolumesFile};

/// A verification to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// The backup to verify.
    pub name: String,
    /// age identity file, for encrypted backups (`--identity-file` or `encryption.identityFile`).
    pub identity_file: Option<PathBuf>,
    /// Bounds on what reading the archive may allocate: a restore's, so that verify accepts
    /// exactly what a restore accepts.
    pub limits: Limits,
    /// DescribeSnapshots calls in flight at once.
    pub snapshot_concurrency: usize,
}

impl Request {
    pub fn new(name: &str) -> Self {
        Request {
            name: name.to_string(),
            identity_file: None,
            limits: Limits::default(),
            snapshot_concurrency: 8,
        }
    }
}

/// Whether a backup passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The archive matches its manifest, every entry is sound, every snapshot is there.
    Verified,
    /// At least one problem: the report's `problems` say which.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Verified => "Verified",
            Phase::Failed => "Failed",
        }
    }

    /// The process exit code of `backup verify`: 0 or 1.
    pub fn exit_code(self) -> u8 {
        match self {
            Phase::Verified => 0,
            Phase::Failed => 1,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `backup verify` found (printed as JSON by `--output json`; the shape only grows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub name: String,
    pub phase: Phase,
    pub archive: ArchiveCheck,
    /// Everything wrong, the snapshots' problems included; empty when `Verified`.
    pub problems: Vec<Problem>,
    /// One per PersistentVolume of `volumes.json`, in its order.
    pub volumes: Vec<VolumeCheck>,
}

/// The archive as the manifest records it and as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveCheck {
    pub key: String,
    pub expected_size: u64,
    /// Stored bytes read; `null` when the archive could not be read to its end (missing, or a
    /// storage failure), so no size was measured.
    pub actual_size: Option<u64>,
    pub expected_sha256: String,
    /// Hex SHA-256 of the stored bytes; `null` like `actualSize`.
    pub actual_sha256: Option<String>,
    /// Tar entries read and found sound (`metadata/version` included), up to the first
    /// problem in the archive's content.
    pub entries: u64,
    /// The Kubernetes objects among them.
    pub objects: u64,
}

/// One thing wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What it is about: `archive` (missing or undecodable), `storage` (could not be read),
    /// `size`, `checksum`, `entry` (an unsafe or mismatched entry), `format`, `encryption`,
    /// `manifest` (counts that disagree with the archive), `volumes` (`volumes.json`) or
    /// `snapshot`.
    pub what: String,
    pub message: String,
}

impl Problem {
    fn new(what: &str, message: impl Into<String>) -> Self {
        Problem {
            what: what.to_string(),
            message: message.into(),
        }
    }
}

/// One PersistentVolume's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeCheck {
    pub persistent_volume: String,
    /// `null` for a PV the backup did not snapshot (not EBS, or snapshots off): nothing to check.
    pub snapshot_id: Option<String>,
    /// The snapshot's state in EC2 now (`completed`, `pending`, `error`, ...), `missing` when
    /// EC2 no longer has it, `null` when it was not or could not be asked.
    pub state: Option<String>,
    /// Why it cannot be restored from, or `null`.
    pub problem: Option<String>,
}

/// Why a verification could not start: the backup itself could not be found or read. Problems
/// with what the backup holds are in the [`Report`] instead.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// A backup's records, read before anything is checked, so the caller knows whether checking
/// it needs EC2 (and creates no EC2 client when it does not).
#[derive(Debug, Clone)]
pub struct Target {
    manifest: Manifest,
    records: Vec<VolumeRecord>,
    /// `volumes.json` missing or unreadable.
    volumes_problem: Option<Problem>,
}

impl Target {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Snapshots to look up in EC2.
    pub fn snapshots(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.snapshot_id.is_some())
            .count()
    }
}

/// Reads a backup's manifest and `volumes.json`. A backup that does not exist is an error that
/// names it.
pub async fn open(store: &Store, name: &str) -> Result<Target, VerifyError> {
    // A name that cannot be a backup's could still make a key outside `backups/`.
    crate::backup::validate_name(name).map_err(|_| CatalogError::NotFound {
        name: name.to_string(),
        storage: store.url(),
    })?;
    let manifest = catalog::manifest(store, name).await?;
    let (records, volumes_problem) = match &manifest.volumes.key {
        None => (Vec::new(), None),
        Some(key) => match store.get(key).await {
            Ok(bytes) => match serde_json::from_slice::<VolumesFile>(&bytes) {
                Ok(file) => (file.volumes, None),
                Err(e) => (
                    Vec::new(),
                    Some(Problem::new(
                        "volumes",
                        format!(
                            "{key} is unreadable ({e}): its snapshots cannot be checked, and a restore would refuse it"
                        ),
                    )),
                ),
            },
            // Without it a restore would bring the PVs back pointing at their old volumes.
            Err(e) if e.is_not_found() => (
                Vec::new(),
                Some(Problem::new(
                    "volumes",
                    format!(
                        "{key} is missing, though the manifest records {} volume(s): a restore cannot recreate them",
                        manifest.volumes.count
                    ),
                )),
            ),
            Err(e) => (
                Vec::new(),
                Some(Problem::new(
                    "storage",
                    format!("cannot read {key}: {e}; run verify again"),
                )),
            ),
        },
    };
    Ok(Target {
        manifest,
        records,
        volumes_problem,
    })
}

/// [`open`] then [`check`]: for callers that have an EC2 client anyway (the daemon).
pub async fn run<E: Ec2>(
    store: &Store,
    req: &Request,
    ec2: Option<&E>,
    observers: &Observers,
) -> Result<Report, VerifyError> {
    let target = open(store, &req.name).await?;
    Ok(check(store, target, req, ec2, observers).await)
}

/// Checks the archive and the snapshots of an opened backup. Writes nothing. Without `ec2`,
/// a backup with snapshots fails: they could not be checked.
pub async fn check<E: Ec2>(
    store: &Store,
    target: Target,
    req: &Request,
    ec2: Option<&E>,
    observers: &Observers,
) -> Report {
    let clock = Instant::now();
    let ((archive, mut problems), (volumes, snapshot_problems)) = futures::join!(
        check_archive(store, &target.manifest, req),
        check_snapshots(&target.records, ec2, req.snapshot_concurrency),
    );
    problems.extend(target.volumes_problem);
    problems.extend(snapshot_problems);
    let phase = if problems.is_empty() {
        Phase::Verified
    } else {
        Phase::Failed
    };
    let report = Report {
        name: target.manifest.name.clone(),
        phase,
        archive,
        problems,
        volumes,
    };
    observers.emit(&Event::VerifyFinished {
        backup: report.name.clone(),
        phase,
        objects: report.archive.objects,
        problems: report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.what, p.message))
            .collect(),
        seconds: clock.elapsed().as_secs_f64(),
    });
    report
}

/// Streams the archive from storage into [`read_archive`] on a blocking thread (tar and zstd
/// are synchronous), as a restore does.
async fn check_archive(
    store: &Store,
    manifest: &Manifest,
    req: &Request,
) -> (ArchiveCheck, Vec<Problem>) {
    let info = &manifest.archive;
    let unread = ArchiveCheck {
        key: info.key.clone(),
        expected_size: info.size,
        actual_size: None,
        expected_sha256: info.sha256.clone(),
        actual_sha256: None,
        entries: 0,
        objects: 0,
    };
    let stream = match store.get_stream(&info.key).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            let message = format!(
                "the archive {} is missing from {}: the backup cannot be restored",
                info.key,
                store.url()
            );
            return (unread, vec![Problem::new("archive", message)]);
        }
        Err(e) => {
            let message = format!(
                "cannot read the archive {}: {e}; run verify again",
                info.key
            );
            return (unread, vec![Problem::new("storage", message)]);
        }
    };
    // Dropped with this future (the daemon's shutdown), which stops the download and so the
    // blocking reader, rather than leaving it to download the rest of the archive.
    let (reader, _feeding) = BlockingReader::new(stream);
    let expected = Expected {
        archive: info.clone(),
        item_count: manifest.item_count,
        resources: manifest.resources.clone(),
    };
    let (identity, limits) = (req.identity_file.clone(), req.limits);
    let read = tokio::task::spawn_blocking(move || {
        read_archive(reader, &expected, identity.as_deref(), limits)
    })
    .await;
    read.unwrap_or_else(|e| {
        let message = format!("the archive check stopped unexpectedly: {e}; run verify again");
        (unread, vec![Problem::new("archive", message)])
    })
}

/// What the manifest says the archive is.
#[derive(Debug, Clone)]
struct Expected {
    archive: ArchiveInfo,
    item_count: u64,
    resources: BTreeMap<String, u64>,
}

/// Reads a whole stored archive: its size and SHA-256 against the manifest, every entry as a
/// restore checks it, and the objects counted against the manifest's counts.
fn read_archive(
    stored: impl Read,
    expected: &Expected,
    identity: Option<&Path>,
    limits: Limits,
) -> (ArchiveCheck, Vec<Problem>) {
    let info = &expected.archive;
    // The archive reader hashes too, but what it is given (after decryption), not what was
    // stored.
    let mut stored = HashingReader::new(stored);
    let mut check = ArchiveCheck {
        key: info.key.clone(),
        expected_size: info.size,
        actual_size: None,
        expected_sha256: info.sha256.clone(),
        actual_sha256: None,
        entries: 0,
        objects: 0,
    };
    let mut resources: BTreeMap<String, u64> = BTreeMap::new();
    let content = plaintext(&mut stored, info.encryption.as_ref(), identity).and_then(|plain| {
        read_entries(plain, limits, &mut check, &mut resources).map_err(|e| archive_problem(&e))
    });
    // Whatever the reader left unread (after a refused entry, or zstd's unread tail) is still
    // hashed: the checksum is over every stored byte, so it names corruption the parse only
    // stumbled on.
    let drained = io::copy(&mut stored, &mut io::sink());
    let mut problems = Vec::new();
    if stored.failed() || drained.is_err() {
        // The bytes were not all read: a size or checksum now would blame the archive for the
        // storage's failure. The reader may already have said so.
        if !matches!(&content, Err(p) if p.what == "storage") {
            let e = drained.err().map_or_else(String::new, |e| format!(": {e}"));
            problems.push(Problem::new(
                "storage",
                format!(
                    "reading the archive {} from storage failed{e}; run verify again",
                    info.key
                ),
            ));
        }
    } else {
        let (bytes, sha256) = stored.finish();
        if bytes != info.size {
            problems.push(Problem::new(
                "size",
                format!(
                    "the archive is {} bytes, but its manifest records {}: it is truncated, corrupt or was replaced",
                    bytes, info.size
                ),
            ));
        }
        if !sha256.eq_ignore_ascii_case(&info.sha256) {
            problems.push(Problem::new(
                "checksum",
                format!(
                    "the archive's SHA-256 is {sha256}, but its manifest records {}: the archive is corrupt or was replaced",
                    info.sha256
                ),
            ));
        }
        check.actual_size = Some(bytes);
        check.actual_sha256 = Some(sha256);
    }
    match content {
        Err(p) => problems.push(p),
        Ok(()) => problems.extend(count_problems(expected, check.objects, &resources)),
    }
    (check, problems)
}

/// The stored bytes as the archive reader wants them: decrypted when the backup is encrypted.
/// The stored bytes themselves were hashed before this, as the manifest's SHA-256 is theirs.
fn plaintext<'a>(
    stored: impl Read + 'a,
    encryption: Option<&EncryptionInfo>,
    identity: Option<&Path>,
) -> Result<Box<dyn Read + 'a>, Problem> {
    let Some(encryption) = encryption else {
        return Ok(Box::new(stored));
    };
    let Some(path) = identity else {
        return Err(Problem::new(
            "encryption",
            format!(
                "the archive is encrypted ({}, recipients {}), so only its size and checksum were checked: pass --identity-file (or set encryption.identityFile) with a matching age identity to check its entries",
                encryption.scheme,
                encryption.recipients.join(", ")
            ),
        ));
    };
    let identities = crate::archive::seal::Identities::load(path)
        .map_err(|e| Problem::new("encryption", e.to_string()))?;
    let plain = identities.open(stored).map_err(|e| {
        Problem::new(
            "encryption",
            format!(
                "the archive cannot be decrypted with {}: {e}",
                path.display()
            ),
        )
    })?;
    Ok(Box::new(plain))
}

/// Every entry through the restore's reader and object check, counting as it goes.
fn read_entries(
    plain: impl Read,
    limits: Limits,
    check: &mut ArchiveCheck,
    resources: &mut BTreeMap<String, u64>,
) -> Result<(), ArchiveError> {
    let mut reader = ArchiveReader::new(plain, limits)?;
    let read = check_objects(&mut reader, |resource, _| {
        *resources.entry(resource.to_string()).or_default() += 1;
        check.objects += 1;
    });
    // Counted as far as the reader got, `metadata/version` included, also when it stopped.
    check.entries = match &read {
        Ok(n) => *n,
        Err(_) => check.objects + u64::from(check.objects > 0),
    };
    read?;
    // The reader's own hash is of what it was given (the plaintext), not of the stored bytes,
    // so only its end-of-archive checks matter here.
    reader.finish()?;
    Ok(())
}

fn archive_problem(e: &ArchiveError) -> Problem {
    let what = match e {
        ArchiveError::Io(_) => "storage",
        ArchiveError::UnsafePath { .. }
        | ArchiveError::NotRegular { .. }
        | ArchiveError::TooLarge { .. }
        | ArchiveError::Mismatch { .. } => "entry",
        ArchiveError::NewerFormat { .. } => "format",
        ArchiveError::ChecksumMismatch { .. } => "checksum",
        ArchiveError::SizeMismatch { .. } => "size",
        _ => "archive",
    };
    Problem::new(what, e.to_string())
}

/// The manifest's counts against a sound archive's: restore does not need them, but a
/// difference means the manifest and the archive are not of the same backup.
fn count_problems(
    expected: &Expected,
    objects: u64,
    resources: &BTreeMap<String, u64>,
) -> Option<Problem> {
    if objects != expected.item_count {
        return Some(Problem::new(
            "manifest",
            format!(
                "the archive holds {objects} objects, but the manifest records {}: the manifest is not this archive's",
                expected.item_count
            ),
        ));
    }
    let keys: std::collections::BTreeSet<&String> =
        expected.resources.keys().chain(resources.keys()).collect();
    let count = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let differs: Vec<String> = keys
        .into_iter()
        .filter(|k| count(&expected.resources, k) != count(resources, k))
        .map(|k| {
            format!(
                "{k}: {} in the archive, {} in the manifest",
                count(resources, k),
                count(&expected.resources, k)
            )
        })
        .collect();
    (!differs.is_empty()).then(|| {
        Problem::new(
            "manifest",
            format!(
                "the archive's objects per resource differ from the manifest's ({}): the manifest is not this archive's",
                differs.join("; ")
            ),
        )
    })
}

/// Looks up every snapshot of `volumes.json` in EC2, a few at a time, keeping the file's order.
async fn check_snapshots<E: Ec2>(
    records: &[VolumeRecord],
    ec2: Option<&E>,
    concurrency: usize,
) -> (Vec<VolumeCheck>, Vec<Problem>) {
    let checks: Vec<VolumeCheck> = futures::stream::iter(records)
        .map(|r| async move {
            let mut c = VolumeCheck {
                persistent_volume: r.persistent_volume.clone(),
                snapshot_id: r.snapshot_id.clone(),
                state: None,
                problem: None,
            };
            let Some(id) = r.snapshot_id.as_deref() else {
                return c;
            };
            let pv = &r.persistent_volume;
            let Some(ec2) = ec2 else {
                c.problem = Some(format!(
                    "snapshot {id} of PersistentVolume {pv} was not checked: no EC2 access (configure volumes.region and credentials)"
                ));
                return c;
            };
            match ec2.describe_snapshot(id).await {
                Ok(s) if s.is_completed() => c.state = Some(s.state),
                Ok(s) => {
                    let why = s
                        .state_message
                        .as_deref()
                        .map_or_else(String::new, |m| format!(" ({m})"));
                    c.problem = Some(format!(
                        "snapshot {id} of PersistentVolume {pv} is {}{why}, not completed: its volume cannot be recreated from it",
                        s.state
                    ));
                    c.state = Some(s.state);
                }
                Err(e) if e.is_not_found() => {
                    c.state = Some("missing".to_string());
                    c.problem = Some(format!(
                        "snapshot {id} of PersistentVolume {pv} no longer exists (deleted, or in another region or account): its data cannot be restored"
                    ));
                }
                Err(e) => {
                    c.problem = Some(format!(
                        "snapshot {id} of PersistentVolume {pv} could not be checked: {e}"
                    ));
                }
            }
            c
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let problems = checks
        .iter()
        .filter_map(|c| c.problem.as_ref())
        .map(|m| Problem::new("snapshot", m.clone()))
        .collect();
    (checks, problems)
}

impl Report {
    /// Whether `backup verify` exits 0.
    pub fn is_verified(&self) -> bool {
        self.phase == Phase::Verified
    }

    /// The report for people: the verdict, the archive's numbers, the volumes, the problems.
    pub fn text(&self) -> String {
        let a = &self.archive;
        let mut out = String::new();
        let _ = writeln!(out, "Backup:    {}", self.name);
        let _ = writeln!(out, "Phase:     {}", self.phase);
        let _ = writeln!(out, "Archive:   {}", a.key);
        let measured = |actual: Option<String>, matches: bool| match actual {
            None => "not measured".to_string(),
            Some(_) if matches => "as recorded".to_string(),
            Some(v) => format!("read {v}"),
        };
        let _ = writeln!(
            out,
            "  size:    {} ({} bytes), {}",
            report::bytes(a.expected_size),
            a.expected_size,
            measured(
                a.actual_size.map(|n| format!("{n} bytes")),
                a.actual_size == Some(a.expected_size)
            )
        );
        let _ = writeln!(
            out,
            "  sha256:  {}, {}",
            a.expected_sha256,
            measured(
                a.actual_sha256.clone(),
                a.actual_sha256
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(&a.expected_sha256))
            )
        );
        let _ = writeln!(
            out,
            "  entries: {} checked ({} objects)",
            a.entries, a.objects
        );
        if !self.volumes.is_empty() {
            out.push_str("\nVolumes:\n");
            let mut t = report::Table::new(&["PERSISTENT VOLUME", "SNAPSHOT", "STATE", "PROBLEM"]);
            for v in &self.volumes {
                t.row(vec![
                    v.persistent_volume.clone(),
                    v.snapshot_id.clone().unwrap_or_else(|| "-".into()),
                    v.state.clone().unwrap_or_else(|| "-".into()),
                    v.problem.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            out.push_str(&t.render());
        }
        if self.problems.is_empty() {
            out.push_str("\nThe backup can be restored: archive and snapshots verified.\n");
        } else {
            out.push_str("\nProblems:\n");
            for p in &self.problems {
                let _ = writeln!(out, "- {}: {}", p.what, p.message);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::writer::{ArchiveWriter, CompressionOptions};
    use crate::volumes::ec2::{Ec2Error, Ec2ErrorKind, NewVolume, SnapshotInfo, VolumeInfo};
    use sha2::{Digest as _, Sha256};

    const CM: &[u8] =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}}"#;
    const CM_PATH: &str = "resources/configmaps/namespaces/ns/a.json";

    fn archive(objects: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), &CompressionOptions::default(), 0).unwrap();
        for (path, data) in objects {
            w.append(path, data).unwrap();
        }
        w.finish().unwrap().0
    }

    fn expected_for(bytes: &[u8], resources: &[(&str, u64)]) -> Expected {
        let resources: BTreeMap<String, u64> = resources
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        Expected {
            archive: ArchiveInfo {
                key: "backups/b/archive.tar.zst".into(),
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(bytes)),
                compression: "zstd".into(),
                encryption: None,
            },
            item_count: resources.values().sum(),
            resources,
        }
    }

    fn whats(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.what.as_str()).collect()
    }

    #[test]
    fn a_sound_archive_has_no_problems_and_is_counted() {
        let bytes = archive(&[(CM_PATH, CM)]);
        let expected = expected_for(&bytes, &[("configmaps", 1)]);
        let (check, problems) = read_archive(&bytes[..], &expected, None, Limits::default());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((check.entries, check.objects), (2, 1));
        assert_eq!(check.actual_size, Some(bytes.len() as u64));
        assert_eq!(
            check.actual_sha256.as_deref(),
            Some(expected.archive.sha256.as_str())
        );
    }

    #[test]
    fn a_flipped_byte_is_named_as_a_checksum_mismatch() {
        let bytes = archive(&[(CM_PATH, CM)]);
        let expected = expected_for(&bytes, &[("configmaps", 1)]);
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let (check, problems) = read_archive(&bad[..], &expected, None, Limits::default());
        assert_eq!(whats(&problems)[0], "checksum", "{problems:?}");
        assert_eq!(check.actual_size, Some(bytes.len() as u64));
    }

    #[test]
    fn a_truncated_archive_is_named_by_size_and_checksum() {
        let bytes = archive(&[(CM_PATH, CM)]);
        let expected = expected_for(&bytes, &[("configmaps", 1)]);
        let (_, problems) = read_archive(
            &bytes[..bytes.len() - 7],
            &expected,
            None,
            Limits::default(),
        );
        let w = whats(&problems);
        assert_eq!(&w[..2], ["size", "checksum"], "{problems:?}");
        assert_eq!(w.len(), 3, "and the parse error: {problems:?}");
    }

    #[test]
    fn an_object_filed_under_another_name_is_an_entry_problem_even_with_a_matching_checksum() {
        let bytes = archive(&[("resources/configmaps/namespaces/ns/b.json", CM)]);
        let expected = expected_for(&bytes, &[("configmaps", 1)]);
        let (_, problems) = read_archive(&bytes[..], &expected, None, Limits::default());
        assert_eq!(whats(&problems), ["entry"], "{problems:?}");
        assert!(problems[0].message.contains("b.json"), "{problems:?}");
    }

    #[test]
    fn counts_that_disagree_with_the_manifest_are_reported() {
        let bytes = archive(&[(CM_PATH, CM)]);
        let (_, problems) = read_archive(
            &bytes[..],
            &expected_for(&bytes, &[("configmaps", 2)]),
            None,
            Limits::default(),
        );
        assert_eq!(whats(&problems), ["manifest"], "{problems:?}");
        let (_, problems) = read_archive(
            &bytes[..],
            &expected_for(&bytes, &[("secrets", 1)]),
            None,
            Limits::default(),
        );
        let message = &problems[0].message;
        assert!(
            message.contains("configmaps: 1 in the archive, 0 in the manifest")
                && message.contains("secrets: 0 in the archive, 1 in the manifest"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_storage_failure_is_not_blamed_on_the_archive() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
                }
                let n = buf.len().min(self.0.len()).min(16);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bytes = archive(&[(CM_PATH, CM)]);
        let expected = expected_for(&bytes, &[("configmaps", 1)]);
        let (check, problems) = read_archive(
            Failing(&bytes[..bytes.len() / 2]),
            &expected,
            None,
            Limits::default(),
        );
        assert_eq!(whats(&problems), ["storage"], "{problems:?}");
        assert_eq!(check.actual_sha256, None);
    }

    #[test]
    fn an_encrypted_archive_still_gets_its_checksum_checked() {
        let bytes = b"age-encryption.org/v1 not really".to_vec();
        let mut expected = expected_for(&bytes, &[]);
        expected.archive.encryption = Some(EncryptionInfo {
            scheme: "age".into(),
            recipients: vec![],
        });
        let (check, problems) = read_archive(&bytes[..], &expected, None, Limits::default());
        assert_eq!(whats(&problems), ["encryption"], "{problems:?}");
        assert!(problems[0].message.contains("--identity-file"));
        assert_eq!(check.actual_size, Some(bytes.len() as u64));
    }

    /// EC2 with a fixed set of snapshots and their states.
    struct Snapshots(Vec<(&'static str, &'static str)>);

    impl Ec2 for Snapshots {
        async fn describe_volume(&self, _: &str) -> Result<VolumeInfo, Ec2Error> {
            unreachable!("verify only describes snapshots")
        }
        async fn create_snapshot(
            &self,
            _: &str,
            _: &str,
            _: &[(String, String)],
        ) -> Result<String, Ec2Error> {
            unreachable!("verify writes nothing")
        }
        async fn describe_snapshot(&self, id: &str) -> Result<SnapshotInfo, Ec2Error> {
            let Some((_, state)) = self.0.iter().find(|(s, _)| *s == id) else {
                return Err(Ec2Error::new(
                    "DescribeSnapshots",
                    format!("snapshot {id}"),
                    Ec2ErrorKind::NotFound,
                    "InvalidSnapshot.NotFound",
                    "gone",
                ));
            };
            Ok(SnapshotInfo {
                snapshot_id: id.to_string(),
                volume_id: None,
                state: (*state).to_string(),
                progress: None,
                state_message: None,
                start_time: None,
                volume_size_gib: None,
                encrypted: false,
                kms_key_id: None,
                tags: Vec::new(),
            })
        }
        async fn delete_snapshot(&self, _: &str) -> Result<(), Ec2Error> {
            unreachable!("verify writes nothing")
        }
        async fn find_volumes(&self, _: &[(String, String)]) -> Result<Vec<VolumeInfo>, Ec2Error> {
            unreachable!("verify only describes snapshots")
        }
        async fn create_volume(&self, _: &NewVolume) -> Result<String, Ec2Error> {
            unreachable!("verify writes nothing")
        }
        async fn delete_volume(&self, _: &str) -> Result<(), Ec2Error> {
            unreachable!("verify writes nothing")
        }
    }

    fn record(pv: &str, snapshot: Option<&str>) -> VolumeRecord {
        let mut r = VolumeRecord::skipped(pv, None, "ebs.csi.aws.com", None, String::new());
        r.snapshot_id = snapshot.map(String::from);
        r
    }

    #[tokio::test]
    async fn snapshots_must_exist_and_be_completed() {
        let ec2 = Snapshots(vec![("snap-1", "completed"), ("snap-2", "pending")]);
        let records = [
            record("pv-a", Some("snap-1")),
            record("pv-b", Some("snap-2")),
            record("pv-c", Some("snap-3")),
            record("pv-d", None),
        ];
        let (checks, problems) = check_snapshots(&records, Some(&ec2), 2).await;
        let states: Vec<Option<&str>> = checks.iter().map(|c| c.state.as_deref()).collect();
        assert_eq!(
            states,
            [Some("completed"), Some("pending"), Some("missing"), None]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("snap-2"));
        assert!(problems[1].message.contains("snap-3"));
        assert!(problems[1].message.contains("pv-c"));
        assert!(checks[3].problem.is_none());

        let (_, problems) = check_snapshots(&records, None::<&Snapshots>, 2).await;
        assert_eq!(problems.len(), 3, "unchecked snapshots fail: {problems:?}");
    }

    #[test]
    fn the_json_shape_is_camel_case() {
        let report = Report {
            name: "b".into(),
            phase: Phase::Failed,
            archive: ArchiveCheck {
                key: "k".into(),
                expected_size: 1,
                actual_size: None,
                expected_sha256: "x".into(),
                actual_sha256: None,
                entries: 0,
                objects: 0,
            },
            problems: vec![Problem::new("archive", "missing")],
            volumes: vec![VolumeCheck {
                persistent_volume: "pv".into(),
                snapshot_id: Some("snap-1".into()),
                state: Some("missing".into()),
                problem: Some("gone".into()),
            }],
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["phase"], "Failed");
        assert!(v["archive"]["actualSha256"].is_null());
        assert_eq!(v["archive"]["expectedSize"], 1);
        assert_eq!(v["volumes"][0]["persistentVolume"], "pv");
        assert_eq!(v["volumes"][0]["snapshotId"], "snap-1");
        assert_eq!(v["problems"][0]["what"], "archive");
        let text = report.text();
        assert!(text.contains("- archive: missing"), "{text}");
        assert!(text.contains("pv  "), "{text}");
    }
}
