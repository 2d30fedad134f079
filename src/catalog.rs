//! The bucket is the catalogue: backups are found by listing `backups/` and reading manifests,
//! so they can be listed, described and restored when the cluster they came from is gone.

use futures::StreamExt as _;

use crate::archive::manifest::{Manifest, ManifestError, Summary};
use crate::backup;
use crate::store::{Store, StoreError};
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
    use tokio::io::AsyncWriteExt as _;
    let m = manifest(store, name).await?;
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

/// Deletes a backup: the manifest first, so a half-deleted backup is never listed as complete;
/// then its EBS snapshots; then the other objects, `volumes.json` last so that a delete that
/// stops half-way still knows which snapshots to remove when it is run again. Snapshots and
/// objects already gone are fine: a delete can always be re-run.
pub async fn delete<E: Ec2>(
    store: &Store,
    name: &str,
    ec2: Option<&E>,
) -> Result<Deleted, CatalogError> {
    let not_found = || CatalogError::NotFound {
        name: name.to_string(),
        storage: store.url(),
    };
    backup::validate_name(name).map_err(|_| not_found())?;
    let objects = store.list(&backup::backup_prefix(name)).await?;
    if objects.is_empty() {
        return Err(not_found());
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
    store.delete(&manifest_key).await?;
    let mut deleted = Deleted {
        objects: vec![manifest_key.clone()],
        snapshots: Vec::new(),
    };
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
    for o in objects
        .iter()
        .filter(|o| o.key != manifest_key && o.key != volumes_key)
    {
        store.delete(&o.key).await?;
        deleted.objects.push(o.key.clone());
    }
    if objects.iter().any(|o| o.key == volumes_key) {
        store.delete(&volumes_key).await?;
        deleted.objects.push(volumes_key);
    }
    Ok(deleted)
}
