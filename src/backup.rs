//! One backup run, end to end: discover, list every type page by page into the archive stream,
//! upload it while it is written, then the run log, then the manifest, last.
//!
//! Nothing holds a whole type in memory: pages go through bounded channels to the archive
//! writer thread and on to the multipart upload. A run that cannot finish writes no manifest
//! and aborts its upload, so a failed backup never looks like a good one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;

use crate::archive::layout;
use crate::archive::manifest::{
    self, ArchiveInfo, ClusterInfo, EncryptionInfo, Filters, Issue, Manifest, Phase, VolumesInfo,
};
use crate::archive::seal::Recipients;
use crate::archive::writer::{self, CompressionOptions, EntrySink};
use crate::cluster::discovery::{self, ResourceType};
use crate::cluster::list::{self, ListRequest, ListedObject};
use crate::cluster::retry::{self, Policy};
use crate::cluster::scope::{self, Scope};
use crate::cluster::{ClusterError, Connection};
use crate::events::{Event, Observers, RunLog};
use crate::store::{Store, StoreError};
use crate::volumes::discover::{self, PvInfo, PvcInfo};
use crate::volumes::ec2::Ec2;
use crate::volumes::record::{VolumeRecord, VolumesFile};
use crate::volumes::snapshot;

/// Where the objects of a backup live in the bucket.
pub fn backup_prefix(name: &str) -> String {
    format!("backups/{name}/")
}
pub fn archive_key(name: &str) -> String {
    format!("backups/{name}/archive.tar.zst")
}
pub fn manifest_key(name: &str) -> String {
    format!("backups/{name}/manifest.json")
}
pub fn log_key(name: &str) -> String {
    format!("backups/{name}/log.jsonl.zst")
}
pub fn volumes_key(name: &str) -> String {
    format!("backups/{name}/volumes.json")
}

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub schedule: Option<String>,
    pub filters: Filters,
    /// Retention: the manifest's `expiresAt` is the start plus this.
    pub ttl: Option<Duration>,
    pub compression: CompressionOptions,
    /// Encrypt the archive and the run log to these age recipients (`encryption.recipients`).
    pub recipients: Option<Recipients>,
    /// Resource types listed at the same time.
    pub concurrency: usize,
    pub page_size: u32,
    pub retry: Policy,
    /// Snapshot the EBS volumes in scope (`volumes.snapshots`, `--snapshot-volumes`).
    pub snapshot_volumes: bool,
    /// Volumes snapshotted at once (`volumes.concurrency`).
    pub volume_concurrency: usize,
    /// How long one snapshot may take to complete (`volumes.waitTimeout`).
    pub volume_wait_timeout: Duration,
    /// Set to true to stop the run: the archive upload is aborted, no manifest is written.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Request {
    pub fn new(name: impl Into<String>) -> Self {
        Request {
            name: name.into(),
            schedule: None,
            filters: Filters {
                include_cluster_resources: "auto".into(),
                ..Filters::default()
            },
            ttl: None,
            compression: CompressionOptions::default(),
            recipients: None,
            concurrency: 4,
            page_size: 500,
            retry: Policy::default(),
            snapshot_volumes: true,
            volume_concurrency: 8,
            volume_wait_timeout: Duration::from_mins(30),
            cancel: None,
        }
    }
}

/// Why a backup failed as a whole (no manifest was written).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("invalid backup name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error(
        "backup {name:?} already exists in {storage}; choose another name or delete it first (lifeboat backup delete {name})"
    )]
    Exists { name: String, storage: String },
    #[error(transparent)]
    Scope(#[from] scope::ScopeError),
    #[error("cannot read the cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("writing the archive: {0}")]
    Archive(String),
    #[error("no resource type could be listed; the last error: {0}")]
    NothingListed(String),
    #[error(
        "cancelled (the daemon is shutting down); the upload was aborted and no manifest written"
    )]
    Cancelled,
}

/// Checks a backup name: it becomes an S3 key component and is typed in commands.
pub fn validate_name(name: &str) -> Result<(), BackupError> {
    let bad = |why| {
        Err(BackupError::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > 253 {
        return bad("must be 1 to 253 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return bad("use lower-case letters, digits, '-' and '.'");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return bad("must start and end with a letter or digit");
    }
    Ok(())
}

/// Counts and problems gathered while listing, shared by the concurrent listers.
#[derive(Default)]
struct Tally {
    resources: BTreeMap<String, u64>,
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
    /// The claims in scope, for the volumes they are bound to and their snapshot opt-outs.
    pvcs: Vec<PvcInfo>,
    /// The PersistentVolumes in the archive, by name.
    pvs: BTreeMap<String, PvInfo>,
    /// Custom resource types with at least one object in the archive.
    custom_types: BTreeSet<String>,
    last_error: Option<String>,
}

/// Runs one backup. `Ok` means a manifest was written (Completed or PartiallyFailed); `Err`
/// means Failed: nothing usable exists and no manifest was written.
///
/// `ec2` snapshots the EBS volumes in scope; without it (or with `snapshot_volumes` off) the
/// volumes are recorded in `volumes.json` as not snapshotted.
pub async fn run<E: Ec2>(
    conn: &Connection,
    store: &Store,
    req: &Request,
    ec2: Option<&E>,
    observers: &Observers,
) -> Result<Manifest, BackupError> {
    // Failures before the run starts are reported like any other failed run (logs, metrics).
    let scope = match preflight(store, req).await {
        Ok(scope) => scope,
        Err(e) => {
            observers.emit(&Event::BackupFailed {
                backup: req.name.clone(),
                message: e.to_string(),
            });
            return Err(e);
        }
    };
    let run_log = Arc::new(RunLog::default());
    let observers = observers.clone().with(run_log.clone());
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    observers.emit(&Event::BackupStarted {
        backup: req.name.clone(),
        schedule: req.schedule.clone(),
        storage: store.url(),
    });
    let result = run_inner(
        conn, store, req, ec2, &scope, &observers, started_at, &run_log,
    )
    .await;
    match &result {
        Ok(m) => observers.emit(&Event::BackupFinished {
            backup: req.name.clone(),
            phase: m.phase,
            items: m.item_count,
            archive_bytes: m.archive.size,
            seconds: clock.elapsed().as_secs_f64(),
            peak_rss_bytes: crate::events::peak_rss_bytes(),
            cpu_seconds: crate::events::cpu_seconds(),
        }),
        Err(e) => observers.emit(&Event::BackupFailed {
            backup: req.name.clone(),
            message: e.to_string(),
        }),
    }
    result
}

async fn preflight(store: &Store, req: &Request) -> Result<Scope, BackupError> {
    validate_name(&req.name)?;
    let scope = Scope::new(&req.filters)?;
    if store.head(&manifest_key(&req.name)).await?.is_some() {
        return Err(BackupError::Exists {
            name: req.name.clone(),
            storage: store.url(),
        });
    }
    Ok(scope)
}

#[allow(clippy::too_many_arguments)]
async fn run_inner<E: Ec2>(
    conn: &Connection,
    store: &Store,
    req: &Request,
    ec2: Option<&E>,
    scope: &Scope,
    observers: &Observers,
    started_at: jiff::Timestamp,
    run_log: &RunLog,
) -> Result<Manifest, BackupError> {
    let client = &conn.client;
    let server_version = crate::cluster::server_version(client).await?;
    let discovered = discovery::discover(client, observers).await?;
    let mut tally = Tally::default();
    for (gv, message) in &discovered.failures {
        observers.emit(&Event::DiscoveryFailed {
            group: gv.clone(),
            message: message.clone(),
        });
        tally.warnings.push(Issue {
            resource: gv.clone(),
            namespace: None,
            name: None,
            message: format!("API group skipped: {message}"),
        });
    }
    let types: Vec<ResourceType> = discovered
        .types
        .iter()
        .filter(|t| scope.type_included(t))
        .cloned()
        .collect();
    observers.emit(&Event::TypesDiscovered {
        types: types.len() as u64,
    });

    let key = archive_key(&req.name);
    // A killed earlier run of this name may have left its upload open (no manifest, so the
    // name is free): S3 keeps, and bills, such an upload until a lifecycle rule removes it.
    match store.abort_uploads(&key).await {
        Ok(0) => {}
        Ok(n) => observers.emit(&Event::Warning {
            resource: key.clone(),
            message: format!(
                "aborted {n} unfinished upload(s) left by an interrupted earlier run of this backup"
            ),
        }),
        Err(e) => observers.emit(&Event::Warning {
            resource: key.clone(),
            message: format!("unfinished uploads of an earlier run could not be aborted: {e}"),
        }),
    }
    let mtime = u64::try_from(started_at.as_second()).unwrap_or(0);
    let (sink, mut chunks, handle) =
        writer::spawn_sealed(req.compression, req.recipients.clone(), mtime, 256, 8);

    // The upload runs while the archive is written; its failure stops the writer (its chunk
    // receiver goes away), which stops the listers. It is completed only when told the archive
    // is whole: an archive cut short by a failure is aborted, never committed.
    let (commit_tx, commit_rx) = tokio::sync::oneshot::channel::<bool>();
    let upload_store = store.clone();
    let upload_key = key.clone();
    let upload_observers = observers.clone();
    let uploader = tokio::spawn(async move {
        let mut upload = upload_store.upload(&upload_key).await?;
        while let Some(chunk) = chunks.recv().await {
            let n = chunk.len() as u64;
            if let Err(e) = upload.write(chunk).await {
                upload.abort().await;
                return Err(e);
            }
            upload_observers.emit(&Event::ArchiveBytes { bytes: n });
        }
        if commit_rx.await.unwrap_or(false) {
            upload.finish().await.map(Some)
        } else {
            upload.abort().await;
            Ok(None)
        }
    });

    let tally = Arc::new(Mutex::new(tally));
    let listing = async {
        collect(client, req, scope, &types, &sink, &tally, observers).await?;
        if !scope.include_cluster_resources() {
            related_cluster_objects(client, req, &discovered, &sink, &tally, observers).await;
        }
        Ok(())
    };
    // A cancelled run (the daemon shutting down after its grace period) stops listing; the
    // upload is then aborted below like after any other failure: no manifest, nothing open.
    let listed = match req.cancel.clone() {
        Some(mut cancel) => tokio::select! {
            r = listing => r,
            _ = cancel.wait_for(|c| *c) => Err(BackupError::Cancelled),
        },
        None => listing.await,
    };
    let written = handle.finish(sink).await;
    let _ = commit_tx.send(written.is_ok() && listed.is_ok());
    let upload_result = uploader
        .await
        .map_err(|e| BackupError::Archive(format!("upload task: {e}")))?;
    let summary = match (written, upload_result, listed) {
        (_, Err(e), _) => return Err(BackupError::Store(e)),
        (Err(e), Ok(_), _) => return Err(BackupError::Archive(e.to_string())),
        (Ok(_), Ok(_), Err(e)) => return Err(e),
        (Ok(summary), Ok(Some(size)), Ok(())) => {
            if size != summary.size {
                store.delete(&key).await.ok();
                return Err(BackupError::Archive(format!(
                    "stored {size} bytes but wrote {}",
                    summary.size
                )));
            }
            summary
        }
        (Ok(_), Ok(None), Ok(())) => {
            unreachable!("the upload is committed when writing and listing succeed")
        }
    };
    observers.emit(&Event::ArchiveWritten {
        key: key.clone(),
        bytes: summary.size,
        sha256: summary.sha256.clone(),
    });

    let mut tally = std::mem::take(
        &mut *tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if tally.resources.values().all(|n| *n == 0)
        && !tally.errors.is_empty()
        && tally.errors.len() >= types.len()
    {
        store.delete(&key).await.ok();
        return Err(BackupError::NothingListed(
            tally.last_error.unwrap_or_default(),
        ));
    }
    let volumes =
        snapshot_volumes(store, req, ec2, scope, &conn.name, &mut tally, observers).await?;
    let phase = if tally.errors.is_empty() {
        Phase::Completed
    } else {
        Phase::PartiallyFailed
    };
    let completed_at = jiff::Timestamp::now();
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        name: req.name.clone(),
        schedule: req.schedule.clone(),
        cluster: ClusterInfo {
            name: conn.name.clone(),
            server_version,
        },
        started_at,
        completed_at,
        phase,
        filters: req.filters.clone(),
        item_count: tally.resources.values().sum(),
        resources: tally.resources,
        archive: ArchiveInfo {
            key,
            size: summary.size,
            sha256: summary.sha256,
            compression: "zstd".into(),
            encryption: req.recipients.as_ref().map(|r| EncryptionInfo {
                scheme: "age".into(),
                recipients: r.public_keys().to_vec(),
            }),
        },
        volumes,
        errors: tally.errors,
        warnings: tally.warnings,
        expires_at: req
            .ttl
            .and_then(|ttl| jiff::SignedDuration::try_from(ttl).ok())
            .and_then(|d| started_at.checked_add(d).ok()),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // The run log goes first, the manifest last: the manifest is the commit marker.
    // The log names objects and quotes API errors: sealed like the archive when encrypting.
    let log = match &req.recipients {
        Some(r) => r
            .seal_bytes(&run_log.finish())
            .map_err(|e| BackupError::Archive(format!("encrypting the run log: {e}")))?,
        None => run_log.finish(),
    };
    store.put(&log_key(&req.name), Bytes::from(log)).await?;
    store
        .put(&manifest_key(&req.name), Bytes::from(manifest.to_json()))
        .await?;
    Ok(manifest)
}

/// Snapshots the EBS volumes in scope and writes `volumes.json`; failures become errors of the
/// backup (PartiallyFailed), never silent.
async fn snapshot_volumes<E: Ec2>(
    store: &Store,
    req: &Request,
    ec2: Option<&E>,
    scope: &Scope,
    cluster: &str,
    tally: &mut Tally,
    observers: &Observers,
) -> Result<VolumesInfo, BackupError> {
    // A whole-cluster backup covers every PV; otherwise the PVs bound to claims in scope.
    let bound = bound_volumes(&tally.pvcs);
    let claim_opt_out: BTreeMap<&str, &PvcInfo> = tally
        .pvcs
        .iter()
        .filter(|c| c.opted_out)
        .filter_map(|c| c.volume_name.as_deref().map(|v| (v, c)))
        .collect();
    let mut candidates = Vec::new();
    for pv in tally.pvs.values() {
        if !scope.whole_cluster() && !bound.contains(&pv.name) {
            continue;
        }
        let skip = if !req.snapshot_volumes || ec2.is_none() {
            Some("volume snapshots are turned off for this backup (volumes.snapshots, --snapshot-volumes)".to_string())
        } else if pv.opted_out {
            Some(format!(
                "{}: \"false\" on the PersistentVolume",
                discover::SNAPSHOT_ANNOTATION
            ))
        } else {
            claim_opt_out.get(pv.name.as_str()).map(|c| {
                format!(
                    "{}: \"false\" on PersistentVolumeClaim {}/{}",
                    discover::SNAPSHOT_ANNOTATION,
                    c.claim.namespace,
                    c.claim.name
                )
            })
        };
        candidates.push(snapshot::Candidate {
            pv: pv.clone(),
            skip,
        });
    }
    if candidates.is_empty() {
        return Ok(VolumesInfo::default());
    }
    let records = match ec2 {
        Some(ec2) => {
            let mut plan = snapshot::Plan::new(&req.name, cluster);
            plan.concurrency = req.volume_concurrency;
            plan.wait_timeout = req.volume_wait_timeout;
            let outcome = snapshot::run(ec2, &plan, candidates, observers).await;
            for (pv, message) in outcome.warnings {
                tally.warnings.push(Issue {
                    resource: "persistentvolumes".into(),
                    namespace: None,
                    name: Some(pv),
                    message,
                });
            }
            outcome.records
        }
        None => candidates
            .into_iter()
            .map(|c| {
                let reason = c.skip.unwrap_or_default();
                VolumeRecord::skipped(
                    &c.pv.name,
                    c.pv.claim.clone(),
                    &c.pv.driver,
                    c.pv.volume_id.clone(),
                    reason,
                )
            })
            .collect(),
    };
    for r in records.iter().filter(|r| r.state.is_failure()) {
        tally.errors.push(Issue {
            resource: "persistentvolumes".into(),
            namespace: None,
            name: Some(r.persistent_volume.clone()),
            message: r
                .error
                .clone()
                .unwrap_or_else(|| "the snapshot did not complete".into()),
        });
    }
    let file = VolumesFile::new(records);
    let key = volumes_key(&req.name);
    store.put(&key, Bytes::from(file.to_json())).await?;
    Ok(VolumesInfo {
        count: file.volumes.len() as u64,
        key: Some(key),
    })
}

/// Lists every type in scope, a few at a time, into the archive.
async fn collect(
    client: &kube::Client,
    req: &Request,
    scope: &Scope,
    types: &[ResourceType],
    sink: &EntrySink,
    tally: &Arc<Mutex<Tally>>,
    observers: &Observers,
) -> Result<(), BackupError> {
    // (type, namespace to list in) pairs: one per type, or one per literal namespace.
    let namespaces = scope.literal_namespaces();
    let mut jobs: Vec<(&ResourceType, Option<String>)> = Vec::new();
    for t in types {
        match (&namespaces, t.namespaced) {
            (Some(list), true) => jobs.extend(list.iter().map(|ns| (t, Some(ns.clone())))),
            _ => jobs.push((t, None)),
        }
    }
    let results: Vec<Result<(), BackupError>> = futures::stream::iter(jobs)
        .map(|(t, ns)| async move {
            collect_type(client, req, scope, t, ns.as_deref(), sink, tally, observers).await
        })
        .buffer_unordered(req.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Lists one type (in one namespace or cluster-wide). A type that cannot be listed is recorded
/// as an error and the backup goes on; an archive that cannot be written ends the backup.
#[allow(clippy::too_many_arguments)]
async fn collect_type(
    client: &kube::Client,
    req: &Request,
    scope: &Scope,
    t: &ResourceType,
    namespace: Option<&str>,
    sink: &EntrySink,
    tally: &Arc<Mutex<Tally>>,
    observers: &Observers,
) -> Result<(), BackupError> {
    let resource = t.resource();
    let dir = layout::resource_dir(&t.plural, &t.group);
    let is_pvc = t.group.is_empty() && t.plural == "persistentvolumeclaims";
    let is_pv = t.group.is_empty() && t.plural == "persistentvolumes";
    let is_namespaces = scope::is_namespaces(t);
    // Any grouped type may be a custom resource (gateway.networking.k8s.io is); a GET of its
    // CRD later tells, for namespace-limited backups only.
    let maybe_custom = !t.group.is_empty();
    let lr = ListRequest {
        ty: t,
        namespace,
        selector: scope.selector(),
        page_size: req.page_size,
        page_timeout: Duration::from_mins(1),
    };
    // Shared with the per-page futures (the callback is FnMut, so it lends them references).
    let sink_error: Mutex<Option<String>> = Mutex::new(None);
    let kept = std::sync::atomic::AtomicU64::new(0);
    let listed = list::list_pages(
        client,
        &lr,
        &req.retry,
        observers,
        |page: Vec<ListedObject>| {
            let (sink, dir, resource, sink_error, kept) = (
                sink.clone(),
                dir.clone(),
                resource.clone(),
                &sink_error,
                &kept,
            );
            async move {
                let mut objects = 0u64;
                let mut bytes = 0u64;
                let mut claims = Vec::new();
                let mut volumes = Vec::new();
                for o in page {
                    let in_scope = match (&o.namespace, is_namespaces) {
                        (Some(ns), _) => scope.namespace_included(ns),
                        (None, true) => scope.namespace_included(&o.name),
                        (None, false) => true,
                    };
                    if !in_scope {
                        continue;
                    }
                    if is_pvc && let Some(c) = discover::inspect_pvc(&o.json) {
                        claims.push(c);
                    }
                    if is_pv && let Some(v) = discover::inspect_pv(&o.json) {
                        volumes.push(v);
                    }
                    let path = layout::object_path(&dir, o.namespace.as_deref(), &o.name);
                    bytes += o.json.len() as u64;
                    objects += 1;
                    if let Err(e) = sink.send(path, o.json).await {
                        *sink_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(e.to_string());
                        return false;
                    }
                }
                kept.fetch_add(objects, std::sync::atomic::Ordering::Relaxed);
                observers.emit(&Event::PageListed {
                    resource,
                    objects,
                    bytes,
                });
                if !claims.is_empty() || !volumes.is_empty() {
                    let mut t = tally
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    t.pvcs.extend(claims);
                    t.pvs
                        .extend(volumes.into_iter().map(|v| (v.name.clone(), v)));
                }
                true
            }
        },
    )
    .await;
    if let Some(e) = sink_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(BackupError::Archive(e));
    }
    let kept = kept.into_inner();
    let mut tally = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *tally.resources.entry(resource.clone()).or_default() += kept;
    match listed {
        Ok(_) => {
            if maybe_custom && kept > 0 {
                tally.custom_types.insert(resource.clone());
            }
            observers.emit(&Event::TypeDone {
                resource,
                objects: kept,
            });
        }
        Err(e) => {
            observers.emit(&Event::TypeFailed {
                resource: resource.clone(),
                message: e.to_string(),
            });
            tally.last_error = Some(e.to_string());
            tally.errors.push(Issue {
                resource,
                namespace: namespace.map(String::from),
                name: None,
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

/// The PersistentVolumes that claims in scope are bound to.
fn bound_volumes(pvcs: &[PvcInfo]) -> BTreeSet<String> {
    pvcs.iter().filter_map(|c| c.volume_name.clone()).collect()
}

/// For a backup limited to some namespaces: the cluster-scoped objects its contents need to
/// be restored: the CRDs of its custom resources and the PersistentVolumes of its claims.
async fn related_cluster_objects(
    client: &kube::Client,
    req: &Request,
    discovered: &discovery::Discovered,
    sink: &EntrySink,
    tally: &Arc<Mutex<Tally>>,
    observers: &Observers,
) {
    let (crds, pvs) = {
        let t = tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (t.custom_types.clone(), bound_volumes(&t.pvcs))
    };
    let wanted: Vec<(&str, String)> = crds
        .into_iter()
        .map(|r| ("customresourcedefinitions.apiextensions.k8s.io", r))
        .chain(pvs.into_iter().map(|pv| ("persistentvolumes", pv)))
        .collect();
    for (resource, name) in wanted {
        let Some(t) = discovered.find(resource) else {
            continue;
        };
        let what = format!("get {resource} {name}");
        let fetched = retry::with_retry(&req.retry, &what, observers, || {
            get_object(client, t, &name, &what)
        })
        .await;
        match fetched {
            Ok(Some(json)) => {
                let path =
                    layout::object_path(&layout::resource_dir(&t.plural, &t.group), None, &name);
                let pv = (resource == "persistentvolumes")
                    .then(|| discover::inspect_pv(&json))
                    .flatten();
                if sink.send(path, json).await.is_err() {
                    // The writer is gone; the caller sees its error when it finishes it.
                    return;
                }
                let mut t = tally
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *t.resources.entry(resource.to_string()).or_default() += 1;
                if let Some(pv) = pv {
                    t.pvs.insert(pv.name.clone(), pv);
                }
            }
            // Not a CRD (an aggregated API), or a PV that is gone: nothing to add.
            Ok(None) => {}
            Err(e) => tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .warnings
                .push(Issue {
                    resource: resource.to_string(),
                    namespace: None,
                    name: Some(name),
                    message: e.to_string(),
                }),
        }
    }
}

/// One object as compact JSON, or `None` if it does not exist.
async fn get_object(
    client: &kube::Client,
    t: &ResourceType,
    name: &str,
    what: &str,
) -> Result<Option<Vec<u8>>, ClusterError> {
    let request = http::Request::get(t.object_path(None, name))
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| ClusterError::Protocol {
            what: what.to_string(),
            message: e.to_string(),
        })?;
    match client.request_text(request).await {
        Ok(text) => Ok(Some(list::minify(&text))),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(retry::classify(what, &e)),
    }
}
