//! A directory as an object store, for laptops, CI and the embedded demo.
//!
//! It mirrors what matters about S3: an object appears whole or not at all (writes go to a
//! `*.partial` file in the same directory, are fsync'd, then renamed), keys are `/`-separated
//! paths that cannot leave the root, and unfinished writes can be listed like open multipart
//! uploads. Directories exist only as long as they hold objects, as on S3.

use std::fmt;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::{debug, warn};

use super::{
    Backend, BackendUpload, ObjectMeta, StoreError, StoreErrorKind, check_key, check_prefix,
    dir_prefix,
};

/// Unfinished writes end with this; they are never listed as objects.
const PARTIAL_SUFFIX: &str = ".partial";
/// Chunk size of [`Backend::get_stream`].
const READ_CHUNK: usize = 256 * 1024;

/// Objects under `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// `root` must be absolute ([`super::Location::parse`] ensures it); it is created on the
    /// first write.
    pub fn new(root: PathBuf) -> Self {
        LocalStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        let why = check_key(key).err().or_else(|| {
            key.ends_with(PARTIAL_SUFFIX)
                .then_some("ends with .partial, which marks unfinished local writes")
        });
        if let Some(why) = why {
            return Err(StoreError::local(
                op,
                &self.root,
                Some(key),
                StoreErrorKind::Other,
                format!("the key {why}"),
            ));
        }
        Ok(key.split('/').fold(self.root.clone(), |p, s| p.join(s)))
    }

    fn io_error(&self, op: &'static str, key: Option<&str>, err: &std::io::Error) -> StoreError {
        io_error(&self.root, op, key, err)
    }

    /// Every file under `prefix`, objects and partial files, via a blocking walk.
    async fn walk(&self, op: &'static str, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        check_prefix(prefix).map_err(|why| {
            StoreError::local(
                op,
                &self.root,
                Some(prefix),
                StoreErrorKind::Other,
                format!("the prefix {why}"),
            )
        })?;
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || walk(&root, &prefix))
            .await
            .map_err(|e| {
                StoreError::local(
                    op,
                    &self.root,
                    None,
                    StoreErrorKind::Other,
                    format!("the directory walk ended abnormally: {e}"),
                )
            })?
            .map_err(|(key, e)| self.io_error(op, Some(&key), &e))
    }
}

fn io_error(root: &Path, op: &'static str, key: Option<&str>, err: &std::io::Error) -> StoreError {
    let (kind, advice) = match err.kind() {
        IoKind::NotFound => (StoreErrorKind::NotFound, "it does not exist".to_string()),
        IoKind::PermissionDenied | IoKind::ReadOnlyFilesystem => (
            StoreErrorKind::AccessDenied,
            format!(
                "permission denied ({err}); give lifeboat's user write access to the directory or fix storage.url"
            ),
        ),
        IoKind::StorageFull | IoKind::QuotaExceeded => (
            StoreErrorKind::Other,
            format!("the disk is full ({err}); free space or move storage.url"),
        ),
        IoKind::NotADirectory => (
            StoreErrorKind::InvalidLocation,
            format!("a path component is a file, not a directory ({err}); fix storage.url"),
        ),
        IoKind::Interrupted | IoKind::TimedOut | IoKind::WouldBlock => {
            (StoreErrorKind::Transient, err.to_string())
        }
        _ => (StoreErrorKind::Other, err.to_string()),
    };
    StoreError::local(op, root, key, kind, advice)
}

struct Entry {
    /// For a partial file, the key it will become.
    key: String,
    partial: bool,
    size: u64,
    modified: Option<jiff::Timestamp>,
}

/// The directory to walk for `prefix`: up to its last `/`.
fn walk(root: &Path, prefix: &str) -> Result<Vec<Entry>, (String, std::io::Error)> {
    let dir_key = prefix.rsplit_once('/').map_or("", |(d, _)| d);
    let mut out = Vec::new();
    let start = dir_key
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(root.to_path_buf(), |p, s| p.join(s));
    let mut stack = vec![(start, dir_key.to_string())];
    while let Some((dir, key)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Gone (or never there): as on S3, an empty listing.
            Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::NotADirectory) => continue,
            Err(e) => return Err((key, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| (key.clone(), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let child = if key.is_empty() {
                name.clone()
            } else {
                format!("{key}/{name}")
            };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                // Only descend where keys can still match the prefix.
                let dir_key = format!("{child}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    stack.push((entry.path(), child));
                }
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let (key, partial) = match partial_target(&child) {
                Some(target) => (target, true),
                None => (child, false),
            };
            if !key.starts_with(prefix) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Renamed or deleted since read_dir: not there any more.
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err((key, e)),
            };
            out.push(Entry {
                key,
                partial,
                size: meta.len(),
                modified: meta
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok()),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// `dir/name.<16 hex>.partial` is an unfinished write of `dir/name`.
fn partial_target(path_key: &str) -> Option<String> {
    let stem = path_key.strip_suffix(PARTIAL_SUFFIX)?;
    let (target, nonce) = stem.rsplit_once('.')?;
    (nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()) && !target.ends_with('/'))
        .then(|| target.to_string())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{:016x}{PARTIAL_SUFFIX}", rand::random::<u64>()));
    path.with_file_name(name)
}

/// Makes a rename or an unlink in `dir` durable.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

impl Backend for LocalStore {
    type Upload = LocalUpload;

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let mut upload = self.upload(key).await?;
        upload.write(body).await?;
        upload.finish().await.map(drop)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path("read file", key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            // A directory, or a path through a file: no such object either way.
            Err(e) if matches!(e.kind(), IoKind::IsADirectory | IoKind::NotADirectory) => {
                Err(StoreError::local(
                    "read file",
                    &self.root,
                    Some(key),
                    StoreErrorKind::NotFound,
                    "it does not exist",
                ))
            }
            Err(e) => Err(self.io_error("read file", Some(key), &e)),
        }
    }

    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let path = self.path("read file", key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.io_error("read file", Some(key), &e))?;
        let is_dir = file
            .metadata()
            .await
            .map_err(|e| self.io_error("read file", Some(key), &e))?
            .is_dir();
        if is_dir {
            return Err(StoreError::local(
                "read file",
                &self.root,
                Some(key),
                StoreErrorKind::NotFound,
                "it is a directory, not an object",
            ));
        }
        let root = self.root.clone();
        let key = key.to_string();
        let stream =
            futures::stream::try_unfold((file, root, key), |(mut file, root, key)| async move {
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                match file.read_buf(&mut buf).await {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some((buf.freeze(), (file, root, key)))),
                    Err(e) => Err(io_error(&root, "read file", Some(&key), &e)),
                }
            });
        Ok(stream.boxed())
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path("stat file", key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::NotADirectory) => Ok(None),
            Err(e) => Err(self.io_error("stat file", Some(key), &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        Ok(self
            .walk("list directory", prefix)
            .await?
            .into_iter()
            .filter(|e| !e.partial)
            .map(|e| ObjectMeta {
                key: e.key,
                size: e.size,
                last_modified: e.modified,
            })
            .collect())
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = dir_prefix(prefix);
        let mut dirs: Vec<String> = self
            .walk("list directory", &prefix)
            .await?
            .into_iter()
            .filter(|e| !e.partial)
            .filter_map(|e| {
                let rest = e.key.strip_prefix(&prefix)?;
                let (dir, _) = rest.split_once('/')?;
                Some(dir.to_string())
            })
            .collect();
        dirs.dedup();
        Ok(dirs)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path("delete file", key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::NotADirectory) => return Ok(()),
            Err(e) => return Err(self.io_error("delete file", Some(key), &e)),
        }
        // Directories exist only while they hold objects, as on S3. `remove_dir` refuses a
        // non-empty directory, so a concurrent write into it is safe (it retries its create).
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root
                || !d.starts_with(&self.root)
                || tokio::fs::remove_dir(d).await.is_err()
            {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    async fn upload(&self, key: &str) -> Result<LocalUpload, StoreError> {
        let path = self.path("create file", key)?;
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = partial_path(&path);
        let mut attempt = 0;
        let file = loop {
            attempt += 1;
            tokio::fs::create_dir_all(&parent)
                .await
                .map_err(|e| self.io_error("create directory", Some(key), &e))?;
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await
            {
                Ok(f) => break f,
                // A concurrent delete pruned the directory between the two calls.
                Err(e) if e.kind() == IoKind::NotFound && attempt < 3 => {}
                Err(e) => return Err(self.io_error("create file", Some(key), &e)),
            }
        };
        Ok(LocalUpload {
            root: self.root.clone(),
            key: key.to_string(),
            path,
            tmp: Some(tmp),
            file: Some(file),
            written: 0,
            failed: None,
        })
    }

    async fn abort_uploads(&self, key: &str) -> Result<u64, StoreError> {
        let path = self.path("remove file", key)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(0);
        };
        let name = name.to_string_lossy().into_owned();
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io_error("list directory", Some(key), &e)),
        };
        let mut removed = 0;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.io_error("list directory", Some(key), &e))?
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            if partial_target(&file).as_deref() == Some(name.as_str()) {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == IoKind::NotFound => {}
                    Err(e) => return Err(self.io_error("remove file", Some(key), &e)),
                }
            }
        }
        Ok(removed)
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = self
            .walk("list directory", prefix)
            .await?
            .into_iter()
            .filter(|e| e.partial)
            .map(|e| e.key)
            .collect();
        keys.dedup();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let op = "check directory";
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| self.io_error(op, None, &e))?;
        let probe = partial_path(&self.root.join(".lifeboat-check"));
        tokio::fs::write(&probe, b"")
            .await
            .map_err(|e| self.io_error(op, None, &e))?;
        tokio::fs::remove_file(&probe)
            .await
            .map_err(|e| self.io_error(op, None, &e))?;
        Ok(())
    }
}

/// A write to a `*.partial` file that becomes the object on [`BackendUpload::finish`].
pub struct LocalUpload {
    root: PathBuf,
    key: String,
    path: PathBuf,
    /// `None` once renamed or removed.
    tmp: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    written: u64,
    failed: Option<StoreError>,
}

impl fmt::Debug for LocalUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalUpload")
            .field("root", &self.root)
            .field("key", &self.key)
            .field("tmp", &self.tmp)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl LocalUpload {
    fn fail(&mut self, op: &'static str, err: &std::io::Error) -> StoreError {
        let err = io_error(&self.root, op, Some(&self.key), err);
        self.failed = Some(err.clone());
        self.discard();
        err
    }

    fn discard(&mut self) {
        self.file = None;
        if let Some(tmp) = self.tmp.take()
            && let Err(e) = std::fs::remove_file(&tmp)
            && e.kind() != IoKind::NotFound
        {
            warn!(path = %tmp.display(), error = %e, "could not remove a partial file");
        }
    }

    async fn commit(&mut self) -> std::io::Result<()> {
        let mut file = self
            .file
            .take()
            .expect("commit runs once, on an open upload");
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let tmp = self.tmp.as_ref().expect("open upload has a partial file");
        tokio::fs::rename(tmp, &self.path).await?;
        self.tmp = None;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir).await?;
        }
        Ok(())
    }
}

impl BackendUpload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(file) = self.file.as_mut() else {
            unreachable!("a LocalUpload without a file has failed or finished");
        };
        match file.write_all(&chunk).await {
            Ok(()) => {
                self.written += chunk.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail("write file", &e)),
        }
    }

    async fn finish(mut self) -> Result<u64, StoreError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match self.commit().await {
            Ok(()) => {
                debug!(root = %self.root.display(), key = %self.key, bytes = self.written, "object written");
                Ok(self.written)
            }
            Err(e) => Err(self.fail("write file", &e)),
        }
    }

    async fn abort(mut self) {
        self.discard();
    }

    fn written(&self) -> u64 {
        self.written
    }
}

/// A dropped upload leaves nothing behind; removing one file needs no runtime.
impl Drop for LocalUpload {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_map_back_to_their_key() {
        let p = partial_path(Path::new("/r/backups/b1/archive.tar.zst"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("archive.tar.zst."), "{name}");
        assert!(name.ends_with(".partial"), "{name}");
        assert_eq!(
            partial_target(&format!("backups/b1/{name}")).as_deref(),
            Some("backups/b1/archive.tar.zst")
        );
        assert_eq!(partial_target("backups/notes.partial"), None);
        assert_eq!(partial_target("backups/archive.tar.zst"), None);
    }

    #[test]
    fn keys_map_under_the_root_only() {
        let store = LocalStore::new("/data/lifeboat".into());
        assert_eq!(
            store.path("read file", "backups/b1/manifest.json").unwrap(),
            Path::new("/data/lifeboat/backups/b1/manifest.json")
        );
        for key in ["../etc/passwd", "/etc/passwd", "a/../../b", "x.partial"] {
            let err = store.path("read file", key).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Other, "{key}");
            assert!(err.to_string().contains("/data/lifeboat"), "{err}");
        }
    }
}
