//! S3 and S3-compatible stores through aws-sdk-s3.
//!
//! The client comes from aws-config's default chain, so IRSA (`AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`), instance profiles, profiles and `AWS_ENDPOINT_URL` work the
//! way every AWS tool does. Retries are the SDK's standard mode (jittered exponential backoff)
//! with at least [`MAX_ATTEMPTS`] attempts per request; what is left after them is classified
//! once, here, into a [`StoreErrorKind`] with advice.
//!
//! Uploads of at most one part are a single PutObject; larger ones are multipart uploads whose
//! parts go out concurrently, bounded, and which are aborted on every failure path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockLegalHoldStatus,
    ObjectLockMode as SdkLockMode, ServerSideEncryption,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::aws::{Transport, error_chain};

use super::{
    Backend, BackendUpload, ChecksumMode, LockState, MAX_ATTEMPTS, MAX_PART_SIZE, MAX_PARTS,
    MIN_PART_SIZE, ObjectLock, ObjectLockMode, ObjectMeta, ObjectVersion, Retention, Settings, Sse,
    StoreError, StoreErrorKind, check_key, check_prefix, dir_prefix,
};

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// A bucket and a prefix in it. Cheap to clone: the client and settings are shared.
#[derive(Clone)]
pub struct S3Store {
    shared: Arc<Shared>,
}

/// What every request and every part-upload task needs.
struct Shared {
    client: Client,
    bucket: String,
    /// No leading or trailing `/`; may be empty.
    prefix: String,
    sse: Option<Sse>,
    kms_key_id: Option<String>,
    object_lock: Option<ObjectLock>,
    checksums: ChecksumMode,
    part_size: usize,
    concurrency: usize,
    endpoint: Option<String>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("S3Store")
            .field("bucket", &s.bucket)
            .field("prefix", &s.prefix)
            .field("endpoint", &s.endpoint)
            .field("sse", &s.sse)
            .field("object_lock", &s.object_lock)
            .field("part_size", &s.part_size)
            .field("concurrency", &s.concurrency)
            .finish_non_exhaustive()
    }
}

/// Time allowed for one attempt of one request: generous for a slow link (a part at
/// 256 KiB/s) yet finite, so that a hung connection becomes a retry rather than a hung backup.
fn attempt_timeout(part_size: usize) -> Duration {
    Duration::from_secs(120 + (part_size / (256 * 1024)) as u64)
}

impl S3Store {
    /// Builds the client. No request is sent: credentials and the bucket are checked on first
    /// use or by [`Backend::check`].
    pub async fn connect(
        bucket: String,
        prefix: String,
        settings: &Settings,
    ) -> Result<S3Store, StoreError> {
        let invalid = |kind: StoreErrorKind, message: String| {
            StoreError::s3("configure client", &bucket, None, kind, message)
        };
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.part_size) {
            return Err(invalid(
                StoreErrorKind::Other,
                format!(
                    "the part size {} bytes is outside S3's limits (5 MiB to 5 GiB)",
                    settings.part_size
                ),
            ));
        }
        if settings.upload_concurrency == 0 {
            return Err(invalid(
                StoreErrorKind::Other,
                "the upload concurrency must be at least 1".to_string(),
            ));
        }
        if settings.kms_key_id.is_some() && settings.server_side_encryption != Some(Sse::AwsKms) {
            return Err(invalid(
                StoreErrorKind::Other,
                "a KMS key id is set but server-side encryption is not aws:kms; set storage.serverSideEncryption: aws:kms or drop storage.kmsKeyId".to_string(),
            ));
        }
        if let Some(endpoint) = &settings.endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(invalid(
                    StoreErrorKind::InvalidLocation,
                    format!(
                        "the endpoint \"{endpoint}\" is not an http(s) URL; fix storage.endpoint"
                    ),
                ));
            }
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(settings.retry_initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(attempt_timeout(settings.part_size))
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(c) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "lifeboat-settings",
            ));
        }
        let sdk = loader.load().await;

        let checksums = match settings.checksum_mode {
            ChecksumMode::WhenSupported => (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            ),
            ChecksumMode::WhenRequired => (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            ),
        };
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.force_path_style)
            .request_checksum_calculation(checksums.0)
            .response_checksum_validation(checksums.1);
        if sdk.region().is_none() {
            // S3-compatible stores rarely care about the region, but SigV4 needs one.
            if settings.endpoint.is_some() || sdk.endpoint_url().is_some() {
                config = config.region(Region::from_static("us-east-1"));
            } else {
                return Err(invalid(
                    StoreErrorKind::InvalidLocation,
                    "no AWS region is configured; set storage.region or AWS_REGION to the bucket's region".to_string(),
                ));
            }
        }
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        Ok(S3Store {
            shared: Arc::new(Shared {
                client: Client::from_conf(config.build()),
                bucket,
                prefix,
                sse: settings.server_side_encryption,
                kms_key_id: settings.kms_key_id.clone(),
                object_lock: settings.object_lock,
                checksums: settings.checksum_mode,
                part_size: settings.part_size,
                concurrency: settings.upload_concurrency,
                endpoint,
            }),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.shared.bucket
    }

    /// The URL's prefix, without slashes at either end; empty for the bucket's root.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }
}

impl Shared {
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Checks `key` and returns it with the URL's prefix.
    fn object_key(&self, op: &'static str, key: &str) -> Result<String, StoreError> {
        check_key(key).map_err(|why| {
            StoreError::s3(
                op,
                &self.bucket,
                Some(key),
                StoreErrorKind::Other,
                format!("the key {why}"),
            )
        })?;
        Ok(self.full_key(key))
    }

    fn list_prefix(&self, op: &'static str, prefix: &str) -> Result<String, StoreError> {
        check_prefix(prefix).map_err(|why| {
            StoreError::s3(
                op,
                &self.bucket,
                Some(prefix),
                StoreErrorKind::Other,
                format!("the prefix {why}"),
            )
        })?;
        Ok(if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        })
    }

    /// `full` without the URL's prefix.
    fn relative<'k>(&self, full: &'k str) -> &'k str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        self.sse.map(|s| match s {
            Sse::Aes256 => ServerSideEncryption::Aes256,
            Sse::AwsKms => ServerSideEncryption::AwsKms,
        })
    }

    fn kms_key_id(&self) -> Option<String> {
        if self.sse == Some(Sse::AwsKms) {
            self.kms_key_id.clone()
        } else {
            None
        }
    }

    fn lock_mode(&self) -> Option<SdkLockMode> {
        self.object_lock.map(|l| match l.mode {
            ObjectLockMode::Governance => SdkLockMode::Governance,
            ObjectLockMode::Compliance => SdkLockMode::Compliance,
        })
    }

    /// Computed per write: the period starts when the object is written.
    fn lock_until(&self) -> Option<aws_sdk_s3::primitives::DateTime> {
        self.object_lock.map(|l| {
            let retain = Duration::from_secs(u64::from(l.retain_days) * 86_400);
            aws_sdk_s3::primitives::DateTime::from(std::time::SystemTime::now() + retain)
        })
    }

    /// Whether writes name a checksum algorithm. S3 demands a checksum header on writes under
    /// Object Lock, whatever the checksum mode; otherwise the mode decides.
    fn explicit_checksums(&self) -> bool {
        self.checksums == ChecksumMode::WhenSupported || self.object_lock.is_some()
    }

    fn error<E>(
        &self,
        op: &'static str,
        key: Option<&str>,
        err: &SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (kind, message) = self.classify(op, err);
        StoreError::s3(op, &self.bucket, key, kind, message)
    }

    /// Turns what the SDK reports after its retries into a kind and an actionable message.
    fn classify<E>(
        &self,
        op: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> (StoreErrorKind, String)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let service = crate::aws::Service {
            name: "S3",
            endpoint: self.endpoint.as_deref(),
            attempts: MAX_ATTEMPTS,
            reach: "check the network, storage.endpoint and storage.region",
        };
        match crate::aws::transport_failure(&service, err) {
            Some((Transport::Other, message)) => (StoreErrorKind::Other, message),
            Some((Transport::Transient, message)) => (StoreErrorKind::Transient, message),
            Some((Transport::NoCredentials, message)) => (StoreErrorKind::AccessDenied, message),
            None => self.classify_service(op, err),
        }
    }

    fn classify_service<E>(
        &self,
        op: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> (StoreErrorKind, String)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use StoreErrorKind as K;
        let status = err.raw_response().map_or(0, |r| r.status().as_u16());
        let code = err.code().unwrap_or("");
        let detail = detail(err);
        let bucket_ops = matches!(
            op,
            "HeadBucket" | "ListObjectsV2" | "ListObjectVersions" | "ListMultipartUploads"
        );
        let no_bucket = || {
            (
                K::NoSuchBucket,
                "the bucket does not exist; create it or fix storage.url".to_string(),
            )
        };
        let not_found = || {
            if bucket_ops {
                no_bucket()
            } else {
                (K::NotFound, "the object does not exist".to_string())
            }
        };
        let wrong_region = || {
            (
                K::InvalidLocation,
                "the bucket is in another region; set storage.region to the bucket's region"
                    .to_string(),
            )
        };
        let server = || {
            (
                K::Transient,
                format!(
                    "S3 kept failing with server errors through {MAX_ATTEMPTS} attempts; try again later"
                ),
            )
        };
        let throttled = || {
            (
                K::Throttled,
                format!(
                    "S3 kept asking to slow down through {MAX_ATTEMPTS} attempts; try again later, or spread the schedules over time"
                ),
            )
        };
        let (kind, advice) = match code {
            "NoSuchBucket" => no_bucket(),
            "NoSuchKey" | "NotFound" => not_found(),
            "NoSuchUpload" => (
                K::NotFound,
                "the multipart upload no longer exists (it was aborted or expired)".to_string(),
            ),
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken"
            | "TokenRefreshRequired" => (
                K::AccessDenied,
                "the credentials were rejected; check the IAM role lifeboat runs as (IRSA) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and the clock of this machine".to_string(),
            ),
            "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
                (K::AccessDenied, self.iam_hint(op))
            }
            c if c.starts_with("KMS.") => (
                K::AccessDenied,
                format!(
                    "the KMS key {} cannot be used; check storage.kmsKeyId and the key policy",
                    self.kms_key_id.as_deref().unwrap_or("(the bucket's default)")
                ),
            ),
            "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded"
            | "TooManyRequests" | "RequestThrottled" => throttled(),
            "InternalError" | "ServiceUnavailable" | "RequestTimeout" => server(),
            "PermanentRedirect" | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException" | "IncorrectEndpoint" => wrong_region(),
            "InvalidBucketName" => (
                K::InvalidLocation,
                "the bucket name is invalid; fix storage.url".to_string(),
            ),
            _ => match status {
                301 | 307 => wrong_region(),
                403 => (K::AccessDenied, self.iam_hint(op)),
                404 => not_found(),
                429 | 503 => throttled(),
                s if s >= 500 => server(),
                _ => (
                    K::Other,
                    format!("S3 refused the request: {}", error_chain(err)),
                ),
            },
        };
        (kind, format!("{advice} ({detail})"))
    }

    /// The ARN the object permissions of an IAM policy name.
    fn objects_arn(&self) -> String {
        if self.prefix.is_empty() {
            format!("arn:aws:s3:::{}/*", self.bucket)
        } else {
            format!("arn:aws:s3:::{}/{}/*", self.bucket, self.prefix)
        }
    }

    /// Names the permission an operation needs, in the form an IAM policy takes.
    fn iam_hint(&self, op: &str) -> String {
        let objects = self.objects_arn();
        let bucket = format!("arn:aws:s3:::{}", self.bucket);
        let (action, resource, data) = match op {
            "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" => {
                ("s3:PutObject", objects, true)
            }
            "GetObject" | "HeadObject" => ("s3:GetObject", objects, true),
            "DeleteObject" => ("s3:DeleteObject", objects, false),
            "AbortMultipartUpload" => ("s3:AbortMultipartUpload", objects, false),
            "ListMultipartUploads" => ("s3:ListBucketMultipartUploads", bucket, false),
            "ListObjectVersions" => ("s3:ListBucketVersions", bucket, false),
            _ => ("s3:ListBucket", bucket, false),
        };
        let kms = if data && self.sse == Some(Sse::AwsKms) {
            format!(
                ", and with aws:kms encryption kms:GenerateDataKey and kms:Decrypt on {}",
                self.kms_key_id.as_deref().unwrap_or("the bucket's KMS key")
            )
        } else {
            String::new()
        };
        // Without s3:ListBucket, S3 answers 403 rather than 404 for a missing object.
        let missing = if matches!(op, "GetObject" | "HeadObject") {
            format!(
                "; S3 also answers 403 for a missing object unless s3:ListBucket on arn:aws:s3:::{} is granted",
                self.bucket
            )
        } else {
            String::new()
        };
        format!(
            "access denied; the IAM role lifeboat runs as needs {action} on {resource}{kms} (see docs/iam-policy.json){missing}"
        )
    }
}

/// What S3 answered, for the end of a message: `HTTP 403 AccessDenied: Access Denied`.
fn detail<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata,
{
    let status = err.raw_response().map_or(0, |r| r.status().as_u16());
    match (err.code().unwrap_or(""), err.message()) {
        ("", _) => format!("HTTP {status}"),
        (c, Some(m)) if !m.is_empty() => format!("HTTP {status} {c}: {m}"),
        (c, _) => format!("HTTP {status} {c}"),
    }
}

fn to_timestamp(t: &aws_sdk_s3::primitives::DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(t.secs(), i32::try_from(t.subsec_nanos()).ok()?).ok()
}

async fn put_object(shared: &Shared, full_key: &str, body: Bytes) -> Result<(), StoreError> {
    let size = body.len();
    shared
        .client
        .put_object()
        .bucket(&shared.bucket)
        .key(full_key)
        .body(ByteStream::from(body))
        .set_server_side_encryption(shared.sse())
        .set_ssekms_key_id(shared.kms_key_id())
        .set_object_lock_mode(shared.lock_mode())
        .set_object_lock_retain_until_date(shared.lock_until())
        .set_checksum_algorithm(
            shared
                .object_lock
                .is_some()
                .then_some(ChecksumAlgorithm::Crc32),
        )
        .send()
        .await
        .map_err(|e| shared.error("PutObject", Some(full_key), &e))?;
    debug!(bucket = %shared.bucket, key = full_key, bytes = size, "object written");
    Ok(())
}

/// Starts reading `key` (relative to the prefix): the full key and the body still to be read.
async fn get_object(shared: &Shared, key: &str) -> Result<(String, ByteStream), StoreError> {
    let full = shared.object_key("GetObject", key)?;
    let out = shared
        .client
        .get_object()
        .bucket(&shared.bucket)
        .key(&full)
        .send()
        .await
        .map_err(|e| shared.error("GetObject", Some(&full), &e))?;
    Ok((full, out.body))
}

/// Object versions and their locks: what deleting a backup for good needs on a versioned bucket.
/// S3-only, so they are not part of [`Backend`]; [`super::Store`] answers for a directory.
impl S3Store {
    pub async fn versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let s = &self.shared;
        let full = s.list_prefix("ListObjectVersions", prefix)?;
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = match s
                .client
                .list_object_versions()
                .bucket(&s.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                // Some S3-compatible stores have no versioning and do not implement the call;
                // there, each key is its only copy.
                Err(e) if out.is_empty() && is_not_implemented(&e) => {
                    debug!(bucket = %s.bucket, "ListObjectVersions is not implemented; listing objects instead");
                    return Ok(self
                        .list(prefix)
                        .await?
                        .into_iter()
                        .map(|o| ObjectVersion {
                            key: o.key,
                            version_id: None,
                            delete_marker: false,
                        })
                        .collect());
                }
                Err(e) => return Err(s.error("ListObjectVersions", Some(&full), &e)),
            };
            let id = |v: Option<&str>| v.map(str::to_string);
            for v in page.versions() {
                let Some(key) = v.key() else { continue };
                out.push(ObjectVersion {
                    key: s.relative(key).to_string(),
                    version_id: id(v.version_id()),
                    delete_marker: false,
                });
            }
            for m in page.delete_markers() {
                let Some(key) = m.key() else { continue };
                out.push(ObjectVersion {
                    key: s.relative(key).to_string(),
                    version_id: id(m.version_id()),
                    delete_marker: true,
                });
            }
            if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
                break;
            }
            key_marker = page.next_key_marker;
            version_marker = page.next_version_id_marker;
        }
        // Stable: the versions of one key stay newest first, as S3 lists them.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// HeadObject on the version: S3 reports its retention and legal hold as headers. On AWS
    /// the headers appear only with s3:GetObjectRetention and s3:GetObjectLegalHold; without
    /// them a locked version looks unlocked here, and its delete is then refused instead.
    pub async fn lock_state(&self, version: &ObjectVersion) -> Result<LockState, StoreError> {
        // A delete marker holds no lock. Neither does version "null", an object written while
        // the bucket was unversioned, before Object Lock (which needs versioning) could apply;
        // and some stores (moto) refuse HeadObject with that id on an unversioned bucket.
        let (Some(id), false) = (&version.version_id, version.delete_marker) else {
            return Ok(LockState::default());
        };
        if id == "null" {
            return Ok(LockState::default());
        }
        let s = &self.shared;
        let full = s.object_key("HeadObject", &version.key)?;
        let out = match s
            .client
            .head_object()
            .bucket(&s.bucket)
            .key(&full)
            .version_id(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let mut err = s.error("HeadObject", Some(&full), &e);
                if err.is_not_found() {
                    // Deleted meanwhile: nothing left to hold.
                    return Ok(LockState::default());
                }
                if err.kind == StoreErrorKind::AccessDenied {
                    err.message = format!(
                        "access denied reading the Object Lock of version {id}; the IAM role lifeboat runs as needs s3:GetObjectVersion, s3:GetObjectRetention and s3:GetObjectLegalHold on {} (see docs/iam-policy.json) ({})",
                        s.objects_arn(),
                        detail(&e)
                    );
                }
                return Err(err);
            }
        };
        let retention = match (
            out.object_lock_mode(),
            out.object_lock_retain_until_date().and_then(to_timestamp),
        ) {
            (Some(mode), Some(until)) => Some(Retention {
                mode: match mode {
                    SdkLockMode::Governance => ObjectLockMode::Governance,
                    // COMPLIANCE, or a mode this build does not know: reported as the
                    // strictest, which nobody can lift.
                    _ => ObjectLockMode::Compliance,
                },
                until,
            }),
            _ => None,
        };
        let legal_hold =
            out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On);
        Ok(LockState {
            retention,
            legal_hold,
        })
    }

    /// DeleteObject with the version id, which removes the data rather than hiding it; also
    /// for version "null", which a plain delete on a versioned bucket would only hide. Never
    /// with `x-amz-bypass-governance-retention`: a lock is reported, not lifted.
    pub async fn delete_version(&self, version: &ObjectVersion) -> Result<(), StoreError> {
        let Some(id) = &version.version_id else {
            return Backend::delete(self, &version.key).await;
        };
        let s = &self.shared;
        let full = s.object_key("DeleteObject", &version.key)?;
        s.client
            .delete_object()
            .bucket(&s.bucket)
            .key(&full)
            .version_id(id)
            .send()
            .await
            .map_err(|e| {
                let mut err = s.error("DeleteObject", Some(&full), &e);
                if err.kind == StoreErrorKind::AccessDenied {
                    // S3 answers a locked version with the same 403 as a missing permission.
                    err.message = format!(
                        "access denied deleting version {id}: it is under Object Lock (a retention period or a legal hold, which lifeboat never bypasses), or the IAM role lifeboat runs as lacks s3:DeleteObjectVersion on {} (see docs/iam-policy.json) ({})",
                        s.objects_arn(),
                        detail(&e)
                    );
                }
                err
            })?;
        Ok(())
    }
}

/// S3-compatible stores answer an API they lack with 501 NotImplemented.
fn is_not_implemented<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.code() == Some("NotImplemented")
        || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 501)
}

impl Backend for S3Store {
    type Upload = S3Upload;

    fn url(&self) -> String {
        let s = &self.shared;
        if s.prefix.is_empty() {
            format!("s3://{}", s.bucket)
        } else {
            format!("s3://{}/{}", s.bucket, s.prefix)
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let full = self.shared.object_key("PutObject", key)?;
        put_object(&self.shared, &full, body).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let s = &self.shared;
        let (full, body) = get_object(s, key).await?;
        let body = body.collect().await.map_err(|e| {
            StoreError::s3(
                "GetObject",
                &s.bucket,
                Some(&full),
                StoreErrorKind::Transient,
                format!("reading the object failed: {}", error_chain(&e)),
            )
        })?;
        Ok(body.into_bytes())
    }

    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let (full, body) = get_object(&self.shared, key).await?;
        let bucket = self.shared.bucket.clone();
        let stream = futures::stream::try_unfold(
            (body, bucket, full),
            |(mut body, bucket, key)| async move {
                match body.try_next().await {
                    Ok(Some(chunk)) => Ok(Some((chunk, (body, bucket, key)))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(StoreError::s3(
                        "GetObject",
                        &bucket,
                        Some(&key),
                        StoreErrorKind::Transient,
                        format!(
                            "reading the object failed part way: {}; read it again",
                            error_chain(&e)
                        ),
                    )),
                }
            },
        );
        Ok(stream.boxed())
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let s = &self.shared;
        let full = s.object_key("HeadObject", key)?;
        match s
            .client
            .head_object()
            .bucket(&s.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) => {
                let err = s.error("HeadObject", Some(&full), &e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let s = &self.shared;
        let full = s.list_prefix("ListObjectsV2", prefix)?;
        let mut pages = s
            .client
            .list_objects_v2()
            .bucket(&s.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s.error("ListObjectsV2", Some(&full), &e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectMeta {
                    key: s.relative(key).to_string(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: o.last_modified().and_then(to_timestamp),
                });
            }
        }
        Ok(out)
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let s = &self.shared;
        let full = s.list_prefix("ListObjectsV2", &dir_prefix(prefix))?;
        let mut pages = s
            .client
            .list_objects_v2()
            .bucket(&s.bucket)
            .prefix(&full)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s.error("ListObjectsV2", Some(&full), &e))?;
            for p in page.common_prefixes() {
                let Some(name) = p.prefix().and_then(|p| p.strip_prefix(full.as_str())) else {
                    continue;
                };
                let name = name.trim_end_matches('/');
                if !name.is_empty() {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let s = &self.shared;
        let full = s.object_key("DeleteObject", key)?;
        s.client
            .delete_object()
            .bucket(&s.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| s.error("DeleteObject", Some(&full), &e))?;
        Ok(())
    }

    async fn upload(&self, key: &str) -> Result<S3Upload, StoreError> {
        let full = self.shared.object_key("PutObject", key)?;
        Ok(S3Upload {
            shared: self.shared.clone(),
            key: full,
            buf: BytesMut::new(),
            upload_id: None,
            parts_sent: 0,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            written: 0,
            failed: None,
        })
    }

    async fn abort_uploads(&self, key: &str) -> Result<u64, StoreError> {
        let s = &self.shared;
        let full = s.object_key("AbortMultipartUpload", key)?;
        let mut aborted = 0;
        for (k, id) in list_uploads(s, key).await? {
            if k == full {
                abort_multipart(s, &k, &id).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let s = &self.shared;
        let mut keys: Vec<String> = list_uploads(s, prefix)
            .await?
            .into_iter()
            .map(|(k, _)| s.relative(&k).to_string())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let s = &self.shared;
        s.client
            .head_bucket()
            .bucket(&s.bucket)
            .send()
            .await
            .map_err(|e| s.error("HeadBucket", None, &e))?;
        Ok(())
    }
}

/// A streaming upload to S3. Parts are uploaded by tasks in a [`JoinSet`], at most
/// `upload_concurrency` at once; dropping the set cancels them.
pub struct S3Upload {
    shared: Arc<Shared>,
    /// With the URL's prefix.
    key: String,
    /// Less than one part, waiting for more data.
    buf: BytesMut,
    /// Set once the first full part exists; an upload that never fills a part is a PutObject.
    upload_id: Option<String>,
    parts_sent: usize,
    in_flight: JoinSet<Result<CompletedPart, StoreError>>,
    done: Vec<CompletedPart>,
    written: u64,
    /// The first failure; the upload is aborted by then and only reports it again.
    failed: Option<StoreError>,
}

/// Never prints the buffer: object contents are data, not log material.
impl fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Upload")
            .field("bucket", &self.shared.bucket)
            .field("key", &self.key)
            .field("upload_id", &self.upload_id)
            .field("written", &self.written)
            .field("buffered", &self.buf.len())
            .field("parts_sent", &self.parts_sent)
            .field("in_flight", &self.in_flight.len())
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

impl S3Upload {
    /// Remembers the error, aborts the multipart upload (after cancelling the parts in
    /// flight, so none lands after the abort) and hands the error back.
    async fn fail(&mut self, err: StoreError) -> StoreError {
        self.failed = Some(err.clone());
        self.buf = BytesMut::new();
        let in_flight = std::mem::take(&mut self.in_flight);
        if let Some(id) = self.upload_id.clone() {
            abort_upload(&self.shared, &self.key, &id, in_flight).await;
            // Cleared only now: if this future is dropped half way, `Drop` aborts again.
            self.upload_id = None;
        }
        err
    }

    async fn send_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        match self.try_send_part(part).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn try_send_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        let upload_id = if let Some(id) = &self.upload_id {
            id.clone()
        } else {
            let id = self.create().await?;
            self.upload_id = Some(id.clone());
            id
        };
        // Notice failed parts early, without waiting for a free slot.
        while let Some(done) = self.in_flight.try_join_next() {
            self.reaped(done)?;
        }
        if self.parts_sent == MAX_PARTS {
            return Err(StoreError::s3(
                "UploadPart",
                &self.shared.bucket,
                Some(&self.key),
                StoreErrorKind::Other,
                format!(
                    "the object needs more than S3's {MAX_PARTS} parts of {} bytes; use a larger part size",
                    self.shared.part_size
                ),
            ));
        }
        while self.in_flight.len() >= self.shared.concurrency {
            let Some(done) = self.in_flight.join_next().await else {
                break;
            };
            self.reaped(done)?;
        }
        self.parts_sent += 1;
        let number = i32::try_from(self.parts_sent).expect("at most MAX_PARTS parts");
        self.in_flight.spawn(upload_part(
            self.shared.clone(),
            self.key.clone(),
            upload_id,
            number,
            part,
        ));
        Ok(())
    }

    fn reaped(
        &mut self,
        done: Result<Result<CompletedPart, StoreError>, tokio::task::JoinError>,
    ) -> Result<(), StoreError> {
        match done {
            Ok(Ok(part)) => {
                self.done.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(join) => Err(StoreError::s3(
                "UploadPart",
                &self.shared.bucket,
                Some(&self.key),
                StoreErrorKind::Other,
                format!("the part upload task ended abnormally: {join}"),
            )),
        }
    }

    async fn create(&self) -> Result<String, StoreError> {
        let s = &self.shared;
        let mut req = s
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .set_server_side_encryption(s.sse())
            .set_ssekms_key_id(s.kms_key_id())
            .set_object_lock_mode(s.lock_mode())
            .set_object_lock_retain_until_date(s.lock_until());
        if s.explicit_checksums() {
            // Explicit, so that parts and the completion agree on one algorithm.
            req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
        }
        let out = req
            .send()
            .await
            .map_err(|e| s.error("CreateMultipartUpload", Some(&self.key), &e))?;
        let id = out.upload_id.ok_or_else(|| {
            StoreError::s3(
                "CreateMultipartUpload",
                &s.bucket,
                Some(&self.key),
                StoreErrorKind::Other,
                "S3 returned no upload id",
            )
        })?;
        debug!(bucket = %s.bucket, key = %self.key, "multipart upload started");
        Ok(id)
    }

    async fn complete(&mut self) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            let last = self.buf.split().freeze();
            self.try_send_part(last).await?;
        }
        while let Some(done) = self.in_flight.join_next().await {
            self.reaped(done)?;
        }
        let Some(upload_id) = self.upload_id.clone() else {
            return Ok(());
        };
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(CompletedPart::part_number);
        let count = parts.len();
        let s = &self.shared;
        s.client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s.error("CompleteMultipartUpload", Some(&self.key), &e))?;
        self.upload_id = None;
        debug!(bucket = %s.bucket, key = %self.key, parts = count, bytes = self.written, "multipart upload completed");
        Ok(())
    }
}

async fn upload_part(
    shared: Arc<Shared>,
    key: String,
    upload_id: String,
    number: i32,
    body: Bytes,
) -> Result<CompletedPart, StoreError> {
    let size = body.len();
    let mut req = shared
        .client
        .upload_part()
        .bucket(&shared.bucket)
        .key(&key)
        .upload_id(upload_id)
        .part_number(number)
        .body(ByteStream::from(body));
    if shared.explicit_checksums() {
        req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
    }
    let out = req.send().await.map_err(|e| {
        let mut err = shared.error("UploadPart", Some(&key), &e);
        err.message = format!("part {number}: {}", err.message);
        err
    })?;
    debug!(bucket = %shared.bucket, key = %key, part = number, bytes = size, "part uploaded");
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag)
        .set_checksum_crc32(out.checksum_crc32)
        .build())
}

/// Cancels the parts in flight, then aborts. Never fails: a leftover upload is reported, and
/// the bucket's AbortIncompleteMultipartUpload lifecycle rule is the last line of defence.
async fn abort_upload(
    shared: &Shared,
    key: &str,
    upload_id: &str,
    mut in_flight: JoinSet<Result<CompletedPart, StoreError>>,
) {
    in_flight.shutdown().await;
    if let Err(err) = abort_multipart(shared, key, upload_id).await {
        warn!(error = %err, upload_id, "could not abort a multipart upload; it stays until the bucket's AbortIncompleteMultipartUpload lifecycle rule removes it");
    }
}

/// Aborts one multipart upload of `key` (a full key); one already gone is fine.
async fn abort_multipart(shared: &Shared, key: &str, upload_id: &str) -> Result<(), StoreError> {
    match shared
        .client
        .abort_multipart_upload()
        .bucket(&shared.bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => {
            debug!(bucket = %shared.bucket, key, "multipart upload aborted");
            Ok(())
        }
        Err(e) => {
            let err = shared.error("AbortMultipartUpload", Some(key), &e);
            if err.is_not_found() { Ok(()) } else { Err(err) }
        }
    }
}

/// The open multipart uploads under `prefix` (relative to the storage prefix), as (full key,
/// upload id), every page.
async fn list_uploads(shared: &Shared, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
    let full = shared.list_prefix("ListMultipartUploads", prefix)?;
    let mut uploads = Vec::new();
    let (mut key_marker, mut id_marker) = (None, None);
    loop {
        let page = shared
            .client
            .list_multipart_uploads()
            .bucket(&shared.bucket)
            .prefix(&full)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await
            .map_err(|e| shared.error("ListMultipartUploads", Some(&full), &e))?;
        uploads.extend(
            page.uploads()
                .iter()
                .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string()))),
        );
        if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
            return Ok(uploads);
        }
        key_marker = page.next_key_marker;
        id_marker = page.next_upload_id_marker;
    }
}

impl BackendUpload for S3Upload {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.written += chunk.len() as u64;
        let part_size = self.shared.part_size;
        while !chunk.is_empty() {
            if self.buf.is_empty() && chunk.len() >= part_size {
                // Whole parts straight from the caller's buffer, without a copy.
                let part = chunk.split_to(part_size);
                self.send_part(part).await?;
                continue;
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(part_size);
            }
            let take = (part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            if self.buf.len() == part_size {
                let part = self.buf.split().freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, StoreError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buf).freeze();
            put_object(&self.shared, &self.key, body).await?;
            return Ok(self.written);
        }
        match self.complete().await {
            Ok(()) => Ok(self.written),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn abort(mut self) {
        self.buf = BytesMut::new();
        let in_flight = std::mem::take(&mut self.in_flight);
        if let Some(id) = self.upload_id.clone() {
            abort_upload(&self.shared, &self.key, &id, in_flight).await;
            self.upload_id = None;
        }
    }

    fn written(&self) -> u64 {
        self.written
    }
}

/// The safety net for early returns and panics in the caller: a dropped upload is aborted in
/// the background. It needs a live tokio runtime; without one the upload stays open until the
/// bucket's lifecycle rule removes it, so callers still call `abort` on their error paths.
impl Drop for S3Upload {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let in_flight = std::mem::take(&mut self.in_flight);
        let shared = self.shared.clone();
        let key = std::mem::take(&mut self.key);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            debug!(bucket = %shared.bucket, key = %key, "unfinished upload dropped; aborting it in the background");
            runtime.spawn(async move {
                abort_upload(&shared, &key, &upload_id, in_flight).await;
            });
        } else {
            warn!(bucket = %shared.bucket, key = %key, upload_id, "unfinished upload dropped outside a runtime; it stays open until the bucket's lifecycle rule removes it");
        }
    }
}
