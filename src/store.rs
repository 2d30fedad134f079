//! Object storage: one interface, two backends.
//!
//! The bucket is lifeboat's catalogue (a backup exists when its `manifest.json` does), so this
//! module is where "the data arrived or it did not" is decided. The design choices:
//!
//! - [`Store`] is an enum over the two backends, which both implement [`Backend`]. Static
//!   dispatch keeps the futures `Send` without boxing, and the rest of lifeboat never names a
//!   backend.
//! - [`s3`] talks to S3 and S3-compatible stores through aws-sdk-s3. Credentials, IRSA and the
//!   region come from aws-config's default chain; [`Settings`] carries only what the config
//!   file can say, so no SDK type leaks into the configuration.
//! - [`local`] is a directory (`file:///dir`) for laptops, CI and the embedded demo. It keeps
//!   the property that matters for S3 too: a reader never sees half an object.
//! - Uploads stream: memory is bounded by `part_size * (upload_concurrency + 1)` whatever the
//!   object's size, and an upload that does not finish is aborted, even when it is merely
//!   dropped, so a failed backup never leaves an open multipart upload behind.
//! - Every [`StoreError`] names the operation, the bucket or directory and the key, says what to
//!   do, and carries a [`StoreErrorKind`] that decides whether a retry can help.

pub mod local;
pub mod s3;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::config::StorageUrl;

/// S3 refuses smaller parts (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Large enough to keep request overhead low, small enough that a few parts in flight stay
/// well inside a small pod's memory limit.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's limit on the number of parts of one multipart upload.
pub const MAX_PARTS: usize = 10_000;
/// Every S3 call gets at least this many attempts (the retry contract in DESIGN.md).
pub const MAX_ATTEMPTS: u32 = 5;

/// Server-side encryption applied to every object lifeboat writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sse {
    /// S3-managed keys (`AES256`).
    Aes256,
    /// KMS keys (`aws:kms`), with [`Settings::kms_key_id`] or the account's default S3 key.
    AwsKms,
}

impl Sse {
    /// The value S3 uses in `x-amz-server-side-encryption`, which is also the config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Sse::Aes256 => "AES256",
            Sse::AwsKms => "aws:kms",
        }
    }
}

impl fmt::Display for Sse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When the SDK adds and checks payload checksums. Some S3-compatible stores reject the
/// checksum headers that AWS S3 accepts by default, hence the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// Checksums on every request that supports them (the SDK's default; AWS S3).
    #[default]
    WhenSupported,
    /// Only where the operation requires one (for stores that reject the defaults).
    WhenRequired,
}

/// S3 Object Lock retention applied to every object written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    /// Each object stays locked this many days after it is written.
    pub retain_days: u32,
}

/// Serialised as S3 writes it (`GOVERNANCE`, `COMPLIANCE`), for reports of locked backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ObjectLockMode {
    /// Identities with `s3:BypassGovernanceRetention` can still delete.
    Governance,
    /// Nobody can delete before the period ends, not even the account's root.
    Compliance,
}

impl ObjectLockMode {
    /// The value S3 uses in `x-amz-object-lock-mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectLockMode::Governance => "GOVERNANCE",
            ObjectLockMode::Compliance => "COMPLIANCE",
        }
    }
}

impl fmt::Display for ObjectLockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fixed credentials for tests and S3-compatible stores. Never read from the config file:
/// in production credentials come from the default chain (IRSA, instance profile, env).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl StaticCredentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

/// Secrets are data: a `{:?}` of the settings must not print them.
impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// How to reach and write the store. Plain data: the config file maps onto it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// AWS region; `None` takes it from the default chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for S3-compatible stores and tests (`AWS_ENDPOINT_URL` also works).
    pub endpoint: Option<String>,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`; most S3-compatible
    /// stores need it.
    pub force_path_style: bool,
    pub server_side_encryption: Option<Sse>,
    /// Only used with [`Sse::AwsKms`].
    pub kms_key_id: Option<String>,
    pub checksum_mode: ChecksumMode,
    /// Multipart part size in bytes; at least [`MIN_PART_SIZE`].
    pub part_size: usize,
    /// Parts uploaded at once; at least 1.
    pub upload_concurrency: usize,
    /// `None`: aws-config's default chain, which includes IRSA.
    pub credentials: Option<StaticCredentials>,
    /// Object Lock on every write, so that not even lifeboat's own credentials can delete a
    /// backup early. S3 only; the bucket must have Object Lock enabled.
    pub object_lock: Option<ObjectLock>,
    /// Base of the jittered exponential backoff between attempts. Tests shorten it; the default
    /// (1 s) is the SDK's and suits real S3.
    pub retry_initial_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            region: None,
            endpoint: None,
            force_path_style: false,
            server_side_encryption: None,
            kms_key_id: None,
            checksum_mode: ChecksumMode::default(),
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: 4,
            credentials: None,
            object_lock: None,
            retry_initial_backoff: Duration::from_secs(1),
        }
    }
}

/// Where the objects live, parsed from `storage.url`. The parsing is
/// [`StorageUrl`]'s, so a URL the config accepts opens, and a refused one gets the
/// same reason here as at config load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// `s3://bucket/prefix`; `prefix` has no leading or trailing `/` and may be empty.
    S3 { bucket: String, prefix: String },
    /// `file:///absolute/dir`.
    Local { root: PathBuf },
}

impl Location {
    /// Parses `storage.url`; a bad one is [`StoreErrorKind::InvalidLocation`] and its message
    /// names the URL (credentials hidden) and says what to write.
    pub fn parse(url: &str) -> Result<Location, StoreError> {
        match url.parse::<StorageUrl>() {
            Ok(StorageUrl::S3 { bucket, prefix }) => Ok(Location::S3 { bucket, prefix }),
            Ok(StorageUrl::File { path }) => Ok(Location::Local { root: path }),
            Err(e) => Err(StoreError::url(e.url(), e.reason().to_string())),
        }
    }

    /// The canonical URL, for messages.
    pub fn url(&self) -> String {
        match self {
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Location::Local { root } => format!("file://{}", root.display()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl std::str::FromStr for Location {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

/// Why `key` cannot name an object, if it cannot. The same rules hold for both backends, so
/// a key that works on a laptop works on S3 and cannot escape the local root.
pub(crate) fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("is empty");
    }
    if key.len() > 1024 {
        return Err("is longer than S3's 1024 bytes");
    }
    if key.starts_with('/') {
        return Err("is absolute (starts with /); keys are relative to the store's root");
    }
    if key.ends_with('/') {
        return Err("ends with /, which names a directory, not an object");
    }
    if key.contains('\0') {
        return Err("contains a NUL byte");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("has an empty, \".\" or \"..\" path segment");
    }
    Ok(())
}

/// Like [`check_key`] for a listing prefix, which may be empty, end with `/`, or end in the
/// middle of a name (`backups/b` matches `backups/b1/...`).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') {
        return Err("is absolute (starts with /); prefixes are relative to the store's root");
    }
    if prefix.contains('\0') {
        return Err("contains a NUL byte");
    }
    let segments: Vec<&str> = prefix.split('/').collect();
    let (last, dirs) = segments
        .split_last()
        .expect("split yields at least one item");
    if dirs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") || *last == "." || *last == ".."
    {
        return Err("has an empty, \".\" or \"..\" path segment");
    }
    Ok(())
}

/// The prefix of a one-level directory listing always ends with `/` (or is empty).
pub(crate) fn dir_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Relative to the store's root (the URL's prefix or directory).
    pub key: String,
    pub size: u64,
    pub last_modified: Option<jiff::Timestamp>,
}

/// One stored version of an object. On a versioned bucket (and every Object Lock bucket is
/// one) a plain delete only stacks a delete marker on top: the object disappears from listings
/// but its data stays. The data is gone only when every version is deleted by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Relative to the store's root.
    pub key: String,
    /// S3's version id: `"null"` for an object written while the bucket was unversioned.
    /// `None` where the store has no versions (a local directory, an S3-compatible store
    /// without ListObjectVersions): the key is the only copy.
    pub version_id: Option<String>,
    /// A delete marker holds no data; it only hides the versions below it.
    pub delete_marker: bool,
}

/// An Object Lock retention period on one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: ObjectLockMode,
    /// S3 refuses to delete the version before this instant.
    pub until: jiff::Timestamp,
}

/// What keeps one object version from being deleted, as S3 reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockState {
    pub retention: Option<Retention>,
    /// A legal hold has no end date: it holds until someone removes it.
    pub legal_hold: bool,
}

impl LockState {
    /// Whether S3 refuses to delete the version at `now`. Governance mode counts as a lock:
    /// lifeboat never sends `x-amz-bypass-governance-retention`, since a backup tool that can
    /// lift its own locks protects nothing.
    pub fn blocks_delete_at(&self, now: jiff::Timestamp) -> bool {
        self.legal_hold || self.retention.is_some_and(|r| r.until > now)
    }
}

/// What a failure means for the caller. Metrics are labelled with [`StoreErrorKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The object does not exist.
    NotFound,
    /// The bucket (or local directory) does not exist.
    NoSuchBucket,
    /// Credentials missing or rejected, or the identity lacks a permission.
    AccessDenied,
    /// The store asked us to slow down and kept doing so through every retry.
    Throttled,
    /// Network trouble, timeouts, 5xx: a later attempt may succeed.
    Transient,
    /// The URL, region or endpoint does not lead to a usable store.
    InvalidLocation,
    Other,
}

impl StoreErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::NotFound => "not_found",
            StoreErrorKind::NoSuchBucket => "no_such_bucket",
            StoreErrorKind::AccessDenied => "access_denied",
            StoreErrorKind::Throttled => "throttled",
            StoreErrorKind::Transient => "transient",
            StoreErrorKind::InvalidLocation => "invalid_location",
            StoreErrorKind::Other => "other",
        }
    }
}

/// Which world an error comes from; decides how [`StoreError`] names the place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    S3,
    Local,
    Url,
}

/// A storage failure, rendered as one sentence that names the operation, the place and the
/// key, and says what to do. The cause's text is part of the message rather than a `source`,
/// so that error chains do not print it twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    origin: Origin,
    op: &'static str,
    location: String,
    key: Option<String>,
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    pub(crate) fn s3(
        op: &'static str,
        bucket: &str,
        key: Option<&str>,
        kind: StoreErrorKind,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            origin: Origin::S3,
            op,
            location: bucket.to_string(),
            key: key.map(str::to_string),
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn local(
        op: &'static str,
        dir: &Path,
        key: Option<&str>,
        kind: StoreErrorKind,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            origin: Origin::Local,
            op,
            location: dir.display().to_string(),
            key: key.map(str::to_string),
            kind,
            message: message.into(),
        }
    }

    fn url(url: &str, message: String) -> Self {
        StoreError {
            origin: Origin::Url,
            op: "parse storage.url",
            location: url.to_string(),
            key: None,
            kind: StoreErrorKind::InvalidLocation,
            message,
        }
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }

    /// Whether trying the whole operation again later can help. The SDK has already retried
    /// each request; this is for callers that retry at a higher level (the next schedule).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Throttled | StoreErrorKind::Transient
        )
    }

    /// The operation: an S3 API name (`PutObject`, `UploadPart`) or a file operation.
    pub fn op(&self) -> &str {
        self.op
    }

    /// The bucket, directory or URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The full key (with the URL's prefix), when the operation had one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The explanation and advice, without the operation and place.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::S3 => write!(f, "S3 {} on bucket \"{}\"", self.op, self.location)?,
            Origin::Local => write!(f, "{} in directory \"{}\"", self.op, self.location)?,
            Origin::Url => {
                return write!(
                    f,
                    "storage URL \"{}\" is invalid: {}",
                    self.location, self.message
                );
            }
        }
        if let Some(key) = &self.key {
            write!(f, " (key \"{key}\")")?;
        }
        write!(f, " failed: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// What a storage backend does. Both backends implement it; [`Store`] dispatches statically.
/// Keys are relative to the backend's root and checked by the same rules everywhere.
pub trait Backend: Send + Sync {
    type Upload: BackendUpload;

    fn url(&self) -> String;
    fn put(&self, key: &str, body: Bytes) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Bytes, StoreError>> + Send;
    fn get_stream(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError>> + Send;
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectMeta>, StoreError>> + Send;
    fn list_dirs(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn upload(&self, key: &str) -> impl Future<Output = Result<Self::Upload, StoreError>> + Send;
    fn open_uploads(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    fn abort_uploads(&self, key: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A streaming upload in progress. Dropping one unfinished must clean up (abort) on its own.
pub trait BackendUpload: Send {
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn finish(self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn abort(self) -> impl Future<Output = ()> + Send;
    /// Bytes accepted by `write` so far.
    fn written(&self) -> u64;
}

/// The store a backup is written to and a restore reads from.
#[derive(Debug, Clone)]
pub enum Store {
    S3(s3::S3Store),
    Local(local::LocalStore),
}

macro_rules! delegate {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Store::S3($b) => $e,
            Store::Local($b) => $e,
        }
    };
}

impl Store {
    /// Parses `url` and prepares the backend. No network call is made: [`Store::check`] is
    /// the probe, so a daemon can start (and report not-ready) while S3 is unreachable.
    pub async fn open(url: &str, settings: &Settings) -> Result<Store, StoreError> {
        match Location::parse(url)? {
            Location::S3 { bucket, prefix } => Ok(Store::S3(
                s3::S3Store::connect(bucket, prefix, settings).await?,
            )),
            Location::Local { root } if settings.object_lock.is_some() => Err(StoreError::local(
                "open",
                &root,
                None,
                StoreErrorKind::InvalidLocation,
                "Object Lock needs S3 storage; remove objectLock or store backups in a bucket with Object Lock enabled",
            )),
            Location::Local { root } => Ok(Store::Local(local::LocalStore::new(root))),
        }
    }

    /// The store as a URL, for messages: `s3://bucket/prefix` or `file:///dir`.
    pub fn url(&self) -> String {
        delegate!(self, b => b.url())
    }

    /// Writes a whole object at once; for small objects (manifests, volume records).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        delegate!(self, b => b.put(key, body).await)
    }

    /// Reads a whole object; a missing one is [`StoreErrorKind::NotFound`].
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        delegate!(self, b => b.get(key).await)
    }

    /// Reads an object as a stream of chunks, for archives that must not sit in memory.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        delegate!(self, b => b.get_stream(key).await)
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        delegate!(self, b => b.head(key).await)
    }

    /// Every object whose key starts with `prefix`, in key order, keys relative to the root.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        delegate!(self, b => b.list(prefix).await)
    }

    /// The names one level below `prefix` that hold at least one object, sorted:
    /// `list_dirs("backups/")` gives `["b1", "b2"]`. A prefix without a trailing `/` is taken
    /// as a directory (`"backups"` means `"backups/"`).
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        delegate!(self, b => b.list_dirs(prefix).await)
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        delegate!(self, b => b.delete(key).await)
    }

    /// Every version under `prefix`, delete markers included, in key order. A store without
    /// versions (a directory) has one version per object, without an id.
    pub async fn versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        match self {
            Store::S3(b) => b.versions(prefix).await,
            Store::Local(b) => Ok(b
                .list(prefix)
                .await?
                .into_iter()
                .map(|o| ObjectVersion {
                    key: o.key,
                    version_id: None,
                    delete_marker: false,
                })
                .collect()),
        }
    }

    /// The Object Lock state of one version. Only S3 versions can carry a lock.
    pub async fn lock_state(&self, version: &ObjectVersion) -> Result<LockState, StoreError> {
        match self {
            Store::S3(b) => b.lock_state(version).await,
            Store::Local(_) => Ok(LockState::default()),
        }
    }

    /// Deletes one version for good (a delete marker too); one that is already gone is not an
    /// error. A locked version is refused by S3 with [`StoreErrorKind::AccessDenied`].
    pub async fn delete_version(&self, version: &ObjectVersion) -> Result<(), StoreError> {
        match self {
            Store::S3(b) => b.delete_version(version).await,
            Store::Local(b) => b.delete(&version.key).await,
        }
    }

    /// Starts a streaming upload. Nothing is visible under `key` until [`Upload::finish`].
    pub async fn upload(&self, key: &str) -> Result<Upload, StoreError> {
        Ok(Upload {
            inner: match self {
                Store::S3(b) => UploadInner::S3(b.upload(key).await?),
                Store::Local(b) => UploadInner::Local(b.upload(key).await?),
            },
        })
    }

    /// Keys under `prefix` with an unfinished upload: open multipart uploads on S3, leftover
    /// partial files locally. Garbage collection and tests use it.
    pub async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        delegate!(self, b => b.open_uploads(prefix).await)
    }

    /// Aborts every unfinished upload of exactly `key` (a run that was killed, whose multipart
    /// upload S3 would otherwise keep, and bill, until a lifecycle rule removes it); returns
    /// how many there were.
    pub async fn abort_uploads(&self, key: &str) -> Result<u64, StoreError> {
        delegate!(self, b => b.abort_uploads(key).await)
    }

    /// Readiness probe: the bucket answers and we may use it (HeadBucket), or the directory
    /// exists (it is created if missing) and is writable.
    pub async fn check(&self) -> Result<(), StoreError> {
        delegate!(self, b => b.check().await)
    }
}

/// A streaming upload: [`Upload::write`] as data is produced, then [`Upload::finish`].
/// On any failure the upload is aborted before the error is returned; an `Upload` dropped
/// without `finish` or `abort` aborts in a background task (inside a tokio runtime).
#[derive(Debug)]
pub struct Upload {
    inner: UploadInner,
}

#[derive(Debug)]
enum UploadInner {
    S3(s3::S3Upload),
    Local(local::LocalUpload),
}

impl Upload {
    /// Buffers `chunk`, sending full parts with bounded concurrency: it waits for a free slot,
    /// which is the backpressure that keeps memory flat.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match &mut self.inner {
            UploadInner::S3(u) => u.write(chunk).await,
            UploadInner::Local(u) => u.write(chunk).await,
        }
    }

    /// Makes the object visible; returns its size in bytes.
    pub async fn finish(self) -> Result<u64, StoreError> {
        match self.inner {
            UploadInner::S3(u) => u.finish().await,
            UploadInner::Local(u) => u.finish().await,
        }
    }

    /// Discards everything written. Failures are logged, never returned: there is nothing
    /// more a caller could do, and the bucket's lifecycle rule is the last line of defence.
    pub async fn abort(self) {
        match self.inner {
            UploadInner::S3(u) => u.abort().await,
            UploadInner::Local(u) => u.abort().await,
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        match &self.inner {
            UploadInner::S3(u) => u.written(),
            UploadInner::Local(u) => u.written(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// A refused URL is an invalid location whose message names it and gives the reason.
    fn refused(url: &str) -> String {
        let err = Location::parse(url).expect_err(url);
        assert_eq!(err.kind(), StoreErrorKind::InvalidLocation, "{url}");
        assert_eq!(err.location(), url);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("storage URL \"{url}\" is invalid: ")),
            "{text}"
        );
        assert!(
            text.ends_with("use s3://bucket/prefix or file:///absolute/dir"),
            "{text}"
        );
        text
    }

    #[test]
    fn parses_s3_urls_with_and_without_prefix() {
        assert_eq!(Location::parse("s3://b-1").unwrap(), s3("b-1", ""));
        assert_eq!(Location::parse("s3://b-1/").unwrap(), s3("b-1", ""));
        assert_eq!(
            Location::parse("s3://prod.backups/eks/prod/").unwrap(),
            s3("prod.backups", "eks/prod")
        );
        assert_eq!(Location::parse(" s3://abc/x ").unwrap(), s3("abc", "x"));
    }

    #[test]
    fn s3_url_round_trips_through_display() {
        for url in ["s3://bucket", "s3://bucket/a/b"] {
            assert_eq!(Location::parse(url).unwrap().url(), url);
        }
    }

    #[test]
    fn refuses_bad_s3_urls_with_a_reason() {
        let cases = [
            ("s3://", "bucket name is missing"),
            ("s3:bucket", "write it with two slashes: s3://bucket"),
            ("S3://abc/x", "write the scheme in lowercase (s3://)"),
            ("s3://bucket:9000/x", "set storage.endpoint"),
            ("s3://bucket/x?versionId=1", "no ?query or #fragment"),
            ("s3://b/x", "must be 3 to 63 characters long"),
            (
                "s3://-bucket/x",
                "must begin and end with a letter or a digit",
            ),
            ("s3://my_bucket/x", "may only contain lowercase letters"),
            ("s3://bucket/a//b", "empty segment"),
            ("s3://bucket/a/../b", "\"..\" segment"),
        ];
        for (url, why) in cases {
            let text = refused(url);
            assert!(text.contains(why), "{url}: {text}");
        }
    }

    #[test]
    fn refuses_credentials_without_showing_them() {
        let err = Location::parse("s3://key:secret@bucket/x").unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidLocation);
        assert_eq!(err.location(), "s3://***@bucket/x");
        let text = err.to_string();
        assert!(text.contains("credentials"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn parses_absolute_file_urls() {
        assert_eq!(
            Location::parse("file:///var/backups/lifeboat").unwrap(),
            Location::Local {
                root: "/var/backups/lifeboat".into()
            }
        );
        assert_eq!(
            Location::parse("file://localhost/tmp/x/").unwrap(),
            Location::Local {
                root: "/tmp/x".into()
            }
        );
        assert_eq!(
            Location::parse("file:///tmp/with%20space").unwrap(),
            Location::Local {
                root: "/tmp/with space".into()
            }
        );
    }

    #[test]
    fn refuses_relative_file_urls_and_says_how_to_write_them() {
        for (url, why) in [
            (
                "file://backups",
                "must be absolute: three slashes, as in file:///backups",
            ),
            (
                "file:backups",
                "must be absolute: three slashes, as in file:///backups",
            ),
            (
                "file://./backups",
                "must be absolute: three slashes, as in file:///var/lib/lifeboat",
            ),
            ("file:/x", "write it with three slashes: file:///x"),
            ("file:///", "filesystem root"),
            ("file:///x?y", "no ?query or #fragment"),
        ] {
            let text = refused(url);
            assert!(text.contains(why), "{url}: {text}");
        }
    }

    #[test]
    fn refuses_other_schemes_and_bare_paths() {
        let text = refused("gs://bucket");
        assert!(text.contains("unsupported scheme \"gs\""), "{text}");
        let text = refused("/var/backups");
        assert!(
            text.contains("written as file:///var/backups"),
            "a bare path gets the URL to write: {text}"
        );
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "dir/",
            "nul\0byte",
            "..",
        ] {
            assert!(check_key(key).is_err(), "{key:?} must be refused");
        }
        let long = "k".repeat(1025);
        assert!(check_key(&long).is_err());
        for key in [
            "manifest.json",
            "backups/b1/archive.tar.zst",
            "a/..b/c..",
            "x y/ü.json",
        ] {
            assert_eq!(check_key(key), Ok(()), "{key:?}");
        }
    }

    #[test]
    fn prefixes_may_be_partial_but_not_escape() {
        for p in ["", "backups/", "backups/b", "a/b/", "a/..b"] {
            assert_eq!(check_prefix(p), Ok(()), "{p:?}");
        }
        for p in ["/", "/x", "../", "a/../", "..", "a//", "a/."] {
            assert!(check_prefix(p).is_err(), "{p:?} must be refused");
        }
    }

    #[test]
    fn dir_prefix_adds_one_slash() {
        assert_eq!(dir_prefix(""), "");
        assert_eq!(dir_prefix("backups"), "backups/");
        assert_eq!(dir_prefix("backups/"), "backups/");
    }

    #[test]
    fn errors_name_operation_place_and_key() {
        let e = StoreError::s3(
            "PutObject",
            "prod-backups",
            Some("eks/manifest.json"),
            StoreErrorKind::NoSuchBucket,
            "the bucket does not exist; create it or fix storage.url",
        );
        assert_eq!(
            e.to_string(),
            "S3 PutObject on bucket \"prod-backups\" (key \"eks/manifest.json\") failed: the bucket does not exist; create it or fix storage.url"
        );
        assert!(!e.is_retryable());
        let e = StoreError::local(
            "write file",
            Path::new("/data"),
            Some("x"),
            StoreErrorKind::Transient,
            "m",
        );
        assert_eq!(
            e.to_string(),
            "write file in directory \"/data\" (key \"x\") failed: m"
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn settings_debug_hides_secrets() {
        let settings = Settings {
            credentials: Some(StaticCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI".into(),
                session_token: Some("FwoGZXIvYXdzEK".into()),
            }),
            ..Settings::default()
        };
        let text = format!("{settings:?}");
        assert!(text.contains("AKIDEXAMPLE"));
        assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
        assert!(!text.contains("FwoGZXIvYXdzEK"), "{text}");
    }
}

/// A blocking [`std::io::Read`] over an object's stream (from [`Store::get_stream`]), for the
/// parsers that run on a blocking thread (tar and zstd are synchronous). A task on the runtime
/// moves the chunks across, at most 8 ahead.
#[derive(Debug)]
pub struct BlockingReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    buf: Bytes,
}

/// The task feeding a [`BlockingReader`]. Dropping it stops the download, which ends the
/// reader's input: a caller that gives up (a daemon shutting down) does not leave a blocking
/// thread reading the rest of an archive.
#[derive(Debug)]
pub struct Feeding(tokio::task::JoinHandle<()>);

impl Drop for Feeding {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BlockingReader {
    /// Starts moving `stream` into a reader; must be called on a Tokio runtime.
    pub fn new(mut stream: BoxStream<'static, Result<Bytes, StoreError>>) -> (Self, Feeding) {
        use futures::StreamExt as _;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let task = tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                if tx.send(chunk.map_err(|e| e.to_string())).await.is_err() || failed {
                    break;
                }
            }
        });
        (
            BlockingReader {
                rx,
                buf: Bytes::new(),
            },
            Feeding(task),
        )
    }
}

impl std::io::Read for BlockingReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}
