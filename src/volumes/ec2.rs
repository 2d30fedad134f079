//! What lifeboat needs from EC2, behind a small trait.
//!
//! [`Ec2`] is the seven calls a backup and a restore make: describe a volume, snapshot it, follow
//! the snapshot, delete it, find the volumes a restore already made (by their tags), create a
//! volume from a snapshot, delete that volume. [`AwsEc2`] implements them with aws-sdk-ec2;
//! tests of the snapshot and restore logic can implement the trait with a fake. No SDK type crosses this module's boundary: the records are plain data and the error
//! is [`Ec2Error`].
//!
//! The design choices:
//!
//! - The client comes from aws-config's default chain, exactly like the S3 store's
//!   ([`crate::store::s3`]): IRSA, instance profiles, profiles and `AWS_ENDPOINT_URL` work as
//!   in every AWS tool; [`Settings`] only carries what the config file can say.
//! - Retries are the SDK's standard mode (jittered exponential backoff) with
//!   [`DEFAULT_MAX_ATTEMPTS`] attempts, more than S3's because EC2 throttles per account and
//!   region (`RequestLimitExceeded`) far sooner. The SDK already classifies
//!   `RequestLimitExceeded` as throttling; [`ThrottlingCodes`] adds EC2's snapshot-rate codes,
//!   which it does not know. Each client gets its own retry quota ("token bucket") without a
//!   limit: lifeboat's calls are already bounded by its volume concurrency times the attempts,
//!   and a process-wide quota drained by one throttled burst would turn the next throttle into
//!   a failed backup instead of a slower one.
//! - What is left after the retries is classified once, here, into an [`Ec2ErrorKind`], with a
//!   message that names the operation and the resource and says what to do (which IAM action
//!   is missing, which setting to check).
//! - Deleting something that is already gone succeeds, so cleanup can be re-run.
//! - Tags: EC2 refuses keys starting with `aws:` and duplicate keys, and allows 50 tags per
//!   resource, while lifeboat copies a volume's own tags onto its snapshot and back. Tags are
//!   therefore normalised before every create: `aws:` keys dropped, the last value of a key
//!   wins, and past 50 the earliest ones are dropped (callers put their own tags last).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::interceptors::InterceptorContext;
use aws_sdk_ec2::config::retry::{ClassifyRetry, RetryAction, RetryPartition, TokenBucket};
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VolumeType};
use tracing::{debug, warn};

use crate::aws::Transport;

use crate::store::StaticCredentials;

type HttpResponse = aws_sdk_ec2::config::http::HttpResponse;

/// Attempts per EC2 request unless [`Settings::max_attempts`] says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// The retry contract in DESIGN.md: every EC2 call gets at least this many attempts.
pub const MIN_ATTEMPTS: u32 = 5;
/// EC2's limit on tags per resource.
pub const MAX_TAGS: usize = 50;

/// Volume types that take a provisioned IOPS value.
const IOPS_TYPES: &[&str] = &["io1", "io2", "gp3"];
/// Volume types that take a provisioned throughput.
const THROUGHPUT_TYPES: &[&str] = &["gp3"];

/// EC2 error codes that mean "slow down". The SDK's own list (`RequestLimitExceeded`,
/// `Throttling`, ...) covers the account-wide limits; these are EBS's per-volume ones.
const EXTRA_THROTTLING_CODES: &[&str] = &[
    "SnapshotCreationPerVolumeRateExceeded",
    "ConcurrentSnapshotLimitExceeded",
];

/// How to reach EC2. Plain data: the config file's `volumes` section maps onto it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// AWS region of the volumes; `None` takes it from the default chain (`AWS_REGION`,
    /// profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for EC2-compatible endpoints and tests (`AWS_ENDPOINT_URL` also works).
    pub endpoint: Option<String>,
    /// `None`: aws-config's default chain, which includes IRSA.
    pub credentials: Option<StaticCredentials>,
    /// Base of the jittered exponential backoff between attempts. The default (1 s) is the
    /// SDK's and suits real EC2; tests shorten it.
    pub retry_initial_backoff: Duration,
    /// Attempts per request, at least [`MIN_ATTEMPTS`].
    pub max_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            region: None,
            endpoint: None,
            credentials: None,
            retry_initial_backoff: Duration::from_secs(1),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// An EBS volume as DescribeVolumes reports it: everything needed to recreate it faithfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub volume_id: String,
    pub availability_zone: String,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    pub volume_type: String,
    pub size_gib: u64,
    /// Provisioned (io1, io2, gp3) or baseline (gp2) IOPS.
    pub iops: Option<u64>,
    /// MiB/s; gp3 only.
    pub throughput: Option<u64>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// `creating`, `available`, `in-use`, `deleting`, `deleted`, `error`.
    pub state: String,
    /// The snapshot the volume was created from, if any.
    pub snapshot_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl VolumeInfo {
    /// Whether the volume can be attached (a new volume starts in `creating`).
    pub fn is_available(&self) -> bool {
        self.state == "available"
    }
}

/// An EBS snapshot as DescribeSnapshots reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub snapshot_id: String,
    pub volume_id: Option<String>,
    /// `pending`, `completed`, `error`, `recoverable`, `recovering`.
    pub state: String,
    /// Percentage, as EC2 writes it (`"42%"`).
    pub progress: Option<String>,
    /// Why a snapshot failed (set with `error`).
    pub state_message: Option<String>,
    pub start_time: Option<jiff::Timestamp>,
    pub volume_size_gib: Option<u64>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl SnapshotInfo {
    /// A volume can be created from it.
    pub fn is_completed(&self) -> bool {
        self.state == "completed"
    }

    /// It will never complete: `error` (see [`SnapshotInfo::state_message`]).
    pub fn is_failed(&self) -> bool {
        self.state == "error"
    }
}

/// A volume to create from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVolume {
    pub snapshot_id: String,
    pub availability_zone: String,
    /// Empty: EC2's default type.
    pub volume_type: String,
    /// 0: the snapshot's size.
    pub size_gib: u64,
    /// Sent only for types that take it (io1, io2, gp3).
    pub iops: Option<u64>,
    /// Sent only for gp3.
    pub throughput: Option<u64>,
    /// A volume from an encrypted snapshot is always encrypted; `true` also encrypts one from
    /// an unencrypted snapshot.
    pub encrypted: bool,
    /// Only used when `encrypted`; `None` is the account's default EBS key.
    pub kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// What a failure means for the caller. Metrics are labelled with [`Ec2ErrorKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ec2ErrorKind {
    /// The volume or snapshot does not exist (in this region).
    NotFound,
    /// Credentials missing or rejected, or the identity lacks a permission.
    AccessDenied,
    /// EC2 asked us to slow down and kept doing so through every retry.
    Throttled,
    /// Network trouble, timeouts, 5xx, no capacity: a later attempt may succeed.
    Transient,
    /// EC2 refused a value: a malformed id, an unknown zone or type, an IOPS value out of range.
    InvalidParameter,
    /// The settings cannot work (no region, a bad endpoint); nothing was sent.
    InvalidSettings,
    Other,
}

impl Ec2ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Ec2ErrorKind::NotFound => "not_found",
            Ec2ErrorKind::AccessDenied => "access_denied",
            Ec2ErrorKind::Throttled => "throttled",
            Ec2ErrorKind::Transient => "transient",
            Ec2ErrorKind::InvalidParameter => "invalid_parameter",
            Ec2ErrorKind::InvalidSettings => "invalid_settings",
            Ec2ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for Ec2ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An EC2 failure, rendered as one sentence: `EC2 CreateSnapshot for volume vol-123 failed:
/// access denied; the IAM role lifeboat runs as needs ...`. The cause's text is part of the
/// message rather than a `source`, so that error chains do not print it twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    op: &'static str,
    resource: String,
    kind: Ec2ErrorKind,
    code: String,
    message: String,
}

impl Ec2Error {
    /// For fakes of [`Ec2`] in tests, and for the few errors this module makes itself.
    /// `resource` reads after "for" (`volume vol-123`); `code` is the AWS error code or empty.
    pub fn new(
        op: &'static str,
        resource: impl Into<String>,
        kind: Ec2ErrorKind,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Ec2Error {
            op,
            resource: resource.into(),
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn kind(&self) -> Ec2ErrorKind {
        self.kind
    }

    /// The AWS error code (`InvalidVolume.NotFound`, `UnauthorizedOperation`), or empty when
    /// EC2 never answered (timeouts, network, settings).
    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == Ec2ErrorKind::NotFound
    }

    /// Whether trying the whole operation again later can help. The SDK has already retried
    /// each request; this is for callers that retry at a higher level.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, Ec2ErrorKind::Throttled | Ec2ErrorKind::Transient)
    }

    /// The EC2 API name (`CreateSnapshot`), or `configure client`.
    pub fn op(&self) -> &str {
        self.op
    }

    /// What the operation was about: `volume vol-123`, `snapshot snap-456`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The explanation and advice, without the operation and resource.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EC2 {} for {} failed: {}",
            self.op, self.resource, self.message
        )
    }
}

impl std::error::Error for Ec2Error {}

/// The EC2 calls lifeboat makes. [`AwsEc2`] is the real one; tests may fake it.
pub trait Ec2: Send + Sync {
    /// DescribeVolumes for one volume; a missing one is [`Ec2ErrorKind::NotFound`].
    fn describe_volume(
        &self,
        volume_id: &str,
    ) -> impl Future<Output = Result<VolumeInfo, Ec2Error>> + Send;

    /// CreateSnapshot, tagged at creation (TagSpecifications, so an untagged snapshot never
    /// exists). Returns the snapshot id; the snapshot starts `pending`.
    fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send;

    /// DescribeSnapshots for one snapshot; a missing one is [`Ec2ErrorKind::NotFound`] (which
    /// can also happen just after creation: EC2 is eventually consistent).
    fn describe_snapshot(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<SnapshotInfo, Ec2Error>> + Send;

    /// DeleteSnapshot; a snapshot that no longer exists is success.
    fn delete_snapshot(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;

    /// DescribeVolumes of every volume carrying all of `tags` (key and value; at least one),
    /// across all pages; none is an empty list, not an error. A restore uses it to find the
    /// volume an interrupted run of itself created, since the tags are set at creation.
    fn find_volumes(
        &self,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<VolumeInfo>, Ec2Error>> + Send;

    /// CreateVolume from a snapshot, tagged at creation. Returns the volume id; the volume
    /// starts `creating`.
    fn create_volume(
        &self,
        spec: &NewVolume,
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send;

    /// DeleteVolume; a volume that no longer exists is success.
    fn delete_volume(&self, volume_id: &str) -> impl Future<Output = Result<(), Ec2Error>> + Send;
}

impl<T: Ec2> Ec2 for Arc<T> {
    fn describe_volume(
        &self,
        volume_id: &str,
    ) -> impl Future<Output = Result<VolumeInfo, Ec2Error>> + Send {
        (**self).describe_volume(volume_id)
    }

    fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send {
        (**self).create_snapshot(volume_id, description, tags)
    }

    fn describe_snapshot(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<SnapshotInfo, Ec2Error>> + Send {
        (**self).describe_snapshot(snapshot_id)
    }

    fn delete_snapshot(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        (**self).delete_snapshot(snapshot_id)
    }

    fn find_volumes(
        &self,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<VolumeInfo>, Ec2Error>> + Send {
        (**self).find_volumes(tags)
    }

    fn create_volume(
        &self,
        spec: &NewVolume,
    ) -> impl Future<Output = Result<String, Ec2Error>> + Send {
        (**self).create_volume(spec)
    }

    fn delete_volume(&self, volume_id: &str) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        (**self).delete_volume(volume_id)
    }
}

/// EC2 through aws-sdk-ec2. Cheap to clone: the client is shared.
#[derive(Clone)]
pub struct AwsEc2 {
    client: Client,
    region: String,
    endpoint: Option<String>,
    max_attempts: u32,
}

impl fmt::Debug for AwsEc2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsEc2")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Every EC2 call lifeboat makes has a small body; a minute is generous, and a hung
/// connection becomes a retry rather than a hung backup.
const ATTEMPT_TIMEOUT: Duration = Duration::from_mins(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl AwsEc2 {
    /// Builds the client. No request is sent: credentials are checked on first use.
    pub async fn new(settings: &Settings) -> Result<AwsEc2, Ec2Error> {
        let invalid = |message: String| {
            Ec2Error::new(
                "configure client",
                "the volumes section",
                Ec2ErrorKind::InvalidSettings,
                "",
                message,
            )
        };
        if settings.max_attempts < MIN_ATTEMPTS {
            return Err(invalid(format!(
                "{} attempts per request is too few; EC2 throttles often, use at least {MIN_ATTEMPTS}",
                settings.max_attempts
            )));
        }
        if let Some(endpoint) = &settings.endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(invalid(format!(
                    "the endpoint \"{endpoint}\" is not an http(s) URL; fix volumes.endpoint"
                )));
            }
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts)
                    .with_initial_backoff(settings.retry_initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
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

        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        let mut config = aws_sdk_ec2::config::Builder::from(&sdk)
            .retry_classifier(ThrottlingCodes)
            .retry_partition(
                RetryPartition::custom("lifeboat-ec2")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            );
        let region = if let Some(region) = sdk.region() {
            region.to_string()
        } else if endpoint.is_some() {
            // EC2-compatible endpoints rarely care about the region, but SigV4 needs one.
            config = config.region(Region::from_static("us-east-1"));
            "us-east-1".to_string()
        } else {
            return Err(invalid(
                "no AWS region is configured; set volumes.region (or storage.region, or AWS_REGION) to the region of the cluster's volumes".to_string(),
            ));
        };
        Ok(AwsEc2 {
            client: Client::from_conf(config.build()),
            region,
            endpoint,
            max_attempts: settings.max_attempts,
        })
    }

    /// The region the client talks to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint override, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    fn error<E>(
        &self,
        op: &'static str,
        resource: &str,
        err: &SdkError<E, HttpResponse>,
    ) -> Ec2Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (kind, message) = self.classify(op, err);
        let code = match err {
            SdkError::ServiceError(_) => err.code().unwrap_or_default(),
            _ => "",
        };
        Ec2Error::new(op, resource, kind, code, message)
    }

    /// Turns what the SDK reports after its retries into a kind and an actionable message.
    fn classify<E>(
        &self,
        op: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> (Ec2ErrorKind, String)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let service = crate::aws::Service {
            name: "EC2",
            endpoint: self.endpoint.as_deref(),
            attempts: self.max_attempts,
            reach: "check the network, volumes.endpoint and volumes.region",
        };
        match crate::aws::transport_failure(&service, err) {
            Some((Transport::Other, message)) => (Ec2ErrorKind::Other, message),
            Some((Transport::Transient, message)) => (Ec2ErrorKind::Transient, message),
            Some((Transport::NoCredentials, message)) => (Ec2ErrorKind::AccessDenied, message),
            None => self.classify_service(op, err),
        }
    }

    fn classify_service<E>(
        &self,
        op: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> (Ec2ErrorKind, String)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map_or(0, |r| r.status().as_u16());
        let code = err.code().unwrap_or("");
        let message = err.message().unwrap_or("");
        let detail = match (code, message) {
            ("", _) => format!("HTTP {status}"),
            (c, m) if !m.is_empty() => format!("HTTP {status} {c}: {m}"),
            (c, _) => format!("HTTP {status} {c}"),
        };
        let (kind, advice) =
            classify_code(op, code, message, status, &self.region, self.max_attempts);
        (kind, format!("{advice} ({detail})"))
    }
}

/// The kind and the advice for an EC2 error code (or, for codes it does not know, the HTTP
/// status). Pure, so that the table is unit-tested.
fn classify_code(
    op: &str,
    code: &str,
    message: &str,
    status: u16,
    region: &str,
    attempts: u32,
) -> (Ec2ErrorKind, String) {
    use Ec2ErrorKind as K;
    let throttled = || {
        (
            K::Throttled,
            format!(
                "EC2 kept asking to slow down through {attempts} attempts; try again later, or lower volumes.concurrency"
            ),
        )
    };
    let server = || {
        (
            K::Transient,
            format!(
                "EC2 kept failing with server errors through {attempts} attempts; try again later"
            ),
        )
    };
    let not_found = || {
        let what = if code.starts_with("InvalidSnapshot") || op.contains("Snapshot") {
            "snapshot"
        } else {
            "volume"
        };
        (
            K::NotFound,
            format!(
                "the {what} does not exist in region {region}; check that volumes.region is the region of the cluster's volumes"
            ),
        )
    };
    let invalid = |hint: &str| {
        (
            K::InvalidParameter,
            format!("EC2 refused a parameter{hint}"),
        )
    };
    match code {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "RequestThrottled"
        | "EC2ThrottledException" => throttled(),
        c if EXTRA_THROTTLING_CODES.contains(&c) => (
            K::Throttled,
            format!(
                "EBS limits how fast one volume can be snapshotted and kept refusing through {attempts} attempts; wait for the volume's pending snapshots to complete, then try again"
            ),
        ),
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "Blocked"
        | "OptInRequired" => (K::AccessDenied, iam_hint(op, message)),
        "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken"
        | "RequestExpired" | "InvalidToken" | "MissingAuthenticationToken" => (
            K::AccessDenied,
            "the credentials were rejected; check the IAM role lifeboat runs as (IRSA) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and the clock of this machine".to_string(),
        ),
        c if c.contains("KMS") || c.contains("Kms") => (
            K::AccessDenied,
            "the KMS key of the volume cannot be used; the IAM role lifeboat runs as needs kms:CreateGrant, kms:Decrypt, kms:DescribeKey, kms:GenerateDataKeyWithoutPlaintext and kms:ReEncrypt* on it, and the key policy must allow that role (see docs/iam-policy.json)".to_string(),
        ),
        "InvalidZone.NotFound" | "InvalidAvailabilityZone" => invalid(
            "; the availability zone does not exist in this region: check --zone-mapping and volumes.region",
        ),
        c if c.ends_with(".Malformed") => invalid("; the id is malformed"),
        c if c.ends_with(".NotFound") => not_found(),
        "InvalidParameterValue" | "InvalidParameter" | "InvalidParameterCombination"
        | "InvalidParameterDependency" | "MissingParameter" | "UnknownParameter"
        | "Unsupported" | "UnsupportedOperation" | "InvalidVolume.ZoneMismatch"
        | "InvalidSnapshot.NotCompleted" => invalid(""),
        "IncorrectState" | "VolumeInUse" | "InvalidVolume.InUse" | "IncorrectInstanceState" => (
            K::Other,
            "the volume is in use or in a state that does not allow this; detach it or wait, then try again".to_string(),
        ),
        "InvalidSnapshot.InUse" => (
            K::Other,
            "the snapshot is in use (by an AMI, or a fast snapshot restore); release it first".to_string(),
        ),
        "VolumeLimitExceeded" | "SnapshotLimitExceeded" | "MaxIOPSLimitExceeded"
        | "ResourceLimitExceeded" | "MaxSpotInstanceCountExceeded" => (
            K::Other,
            "an EBS quota of the account is reached; delete unused volumes or snapshots, or request a quota increase (Service Quotas, Amazon EBS)".to_string(),
        ),
        "InsufficientVolumeCapacity" => (
            K::Transient,
            "EC2 has no capacity for this volume type in this availability zone right now; try again later, or another type or zone (--zone-mapping)".to_string(),
        ),
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => server(),
        _ => match status {
            401 | 403 => (K::AccessDenied, iam_hint(op, message)),
            404 => not_found(),
            429 => throttled(),
            503 if code.is_empty() => throttled(),
            s if s >= 500 => server(),
            400 => invalid(""),
            _ => (K::Other, "EC2 refused the request".to_string()),
        },
    }
}

/// Names the permissions an operation needs, in the form an IAM policy takes.
fn iam_hint(op: &str, message: &str) -> String {
    let actions = match op {
        "DescribeVolumes" => "ec2:DescribeVolumes",
        "CreateSnapshot" => "ec2:CreateSnapshot and ec2:CreateTags",
        "DescribeSnapshots" => "ec2:DescribeSnapshots",
        "DeleteSnapshot" => "ec2:DeleteSnapshot",
        "CreateVolume" => {
            "ec2:CreateVolume and ec2:CreateTags (and, for an encrypted volume, kms:CreateGrant, kms:Decrypt, kms:DescribeKey and kms:GenerateDataKeyWithoutPlaintext on its KMS key)"
        }
        "DeleteVolume" => "ec2:DeleteVolume",
        _ => "the EC2 permissions in docs/iam-policy.json",
    };
    let decode = if message.contains("Encoded authorization failure message") {
        "; `aws sts decode-authorization-message --encoded-message ...` shows which statement denied it"
    } else {
        ""
    };
    format!(
        "access denied; the IAM role lifeboat runs as needs {actions} (see docs/iam-policy.json){decode}"
    )
}

/// Retries EC2's throttling codes that the SDK's own classifier does not know
/// ([`EXTRA_THROTTLING_CODES`]). EC2 answers errors with a small buffered XML body
/// (`<Response><Errors><Error><Code>...`), which is read here, so one classifier serves every
/// operation.
#[derive(Debug)]
struct ThrottlingCodes;

impl ClassifyRetry for ThrottlingCodes {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if response.status().is_success() {
            return RetryAction::NoActionIndicated;
        }
        let code = response
            .body()
            .bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(error_code);
        match code {
            Some(c) if EXTRA_THROTTLING_CODES.contains(&c) => RetryAction::throttling_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "lifeboat EC2 throttling codes"
    }
}

/// The first `<Code>` of an EC2 error body.
fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(body[start..start + len].trim())
}

/// Drops `aws:` keys (EC2 reserves them), keeps the last value of a repeated key at its first
/// position, and keeps the last [`MAX_TAGS`].
fn normalise_tags(tags: &[(String, String)], what: &str) -> Vec<Tag> {
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(tags.len());
    for (key, value) in tags {
        if key.to_ascii_lowercase().starts_with("aws:") {
            debug!(key, "dropping a tag in EC2's reserved aws: namespace");
            continue;
        }
        if let Some(existing) = out.iter_mut().find(|(k, _)| k == key) {
            existing.1 = value;
        } else {
            out.push((key, value));
        }
    }
    if out.len() > MAX_TAGS {
        let dropped: Vec<&str> = out[..out.len() - MAX_TAGS]
            .iter()
            .map(|(k, _)| *k)
            .collect();
        warn!(
            ?dropped,
            "{what} would have more than EC2's {MAX_TAGS} tags; dropping the earliest"
        );
        out.drain(..out.len() - MAX_TAGS);
    }
    out.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_spec(resource: ResourceType, tags: Vec<Tag>) -> Option<TagSpecification> {
    (!tags.is_empty()).then(|| {
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags))
            .build()
    })
}

fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The plain-data view of an SDK volume.
fn volume_info(v: &aws_sdk_ec2::types::Volume) -> VolumeInfo {
    VolumeInfo {
        volume_id: v.volume_id().unwrap_or_default().to_string(),
        availability_zone: v.availability_zone().unwrap_or_default().to_string(),
        volume_type: v
            .volume_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        size_gib: to_u64(v.size()).unwrap_or(0),
        iops: to_u64(v.iops()),
        throughput: to_u64(v.throughput()),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(str::to_string),
        state: v
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        snapshot_id: v
            .snapshot_id()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        tags: tag_pairs(v.tags()),
    }
}

fn to_u64(n: Option<i32>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

fn to_timestamp(t: &aws_sdk_ec2::primitives::DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(t.secs(), i32::try_from(t.subsec_nanos()).ok()?).ok()
}

/// An empty id would make a Describe call list every volume or snapshot in the region.
fn check_id(op: &'static str, what: &str, id: &str) -> Result<(), Ec2Error> {
    if id.trim().is_empty() {
        return Err(Ec2Error::new(
            op,
            format!("{what} \"{id}\""),
            Ec2ErrorKind::InvalidParameter,
            "",
            format!("the {what} id is empty"),
        ));
    }
    Ok(())
}

fn as_i32(op: &'static str, resource: &str, field: &str, n: u64) -> Result<i32, Ec2Error> {
    i32::try_from(n).map_err(|_| {
        Ec2Error::new(
            op,
            resource,
            Ec2ErrorKind::InvalidParameter,
            "",
            format!("the {field} {n} is out of EC2's range"),
        )
    })
}

impl Ec2 for AwsEc2 {
    async fn describe_volume(&self, volume_id: &str) -> Result<VolumeInfo, Ec2Error> {
        const OP: &str = "DescribeVolumes";
        check_id(OP, "volume", volume_id)?;
        let resource = format!("volume {volume_id}");
        let out = self
            .client
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
            .map_err(|e| self.error(OP, &resource, &e))?;
        let Some(v) = out
            .volumes()
            .iter()
            .find(|v| v.volume_id() == Some(volume_id))
        else {
            let (kind, message) =
                classify_code(OP, "InvalidVolume.NotFound", "", 200, &self.region, 1);
            return Err(Ec2Error::new(
                OP,
                resource,
                kind,
                "InvalidVolume.NotFound",
                message,
            ));
        };
        Ok(volume_info(v))
    }

    async fn find_volumes(&self, tags: &[(String, String)]) -> Result<Vec<VolumeInfo>, Ec2Error> {
        const OP: &str = "DescribeVolumes";
        let resource = format!(
            "volumes tagged {}",
            tags.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // No filter would list every volume of the account: never what a caller means.
        if tags.is_empty() {
            return Err(Ec2Error::new(
                OP,
                resource,
                Ec2ErrorKind::InvalidParameter,
                "",
                "no tag to look for was given",
            ));
        }
        let filters: Vec<Filter> = tags
            .iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect();
        let mut pages = self
            .client
            .describe_volumes()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(OP, &resource, &e))?;
            found.extend(page.volumes().iter().map(volume_info));
        }
        Ok(found)
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<String, Ec2Error> {
        const OP: &str = "CreateSnapshot";
        check_id(OP, "volume", volume_id)?;
        let resource = format!("volume {volume_id}");
        let tags = normalise_tags(tags, &format!("the snapshot of {volume_id}"));
        let out = self
            .client
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .set_tag_specifications(tag_spec(ResourceType::Snapshot, tags).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| self.error(OP, &resource, &e))?;
        let id = out.snapshot_id.filter(|s| !s.is_empty()).ok_or_else(|| {
            Ec2Error::new(
                OP,
                resource,
                Ec2ErrorKind::Other,
                "",
                "EC2 answered without a snapshot id",
            )
        })?;
        debug!(volume_id, snapshot_id = %id, "snapshot started");
        Ok(id)
    }

    async fn describe_snapshot(&self, snapshot_id: &str) -> Result<SnapshotInfo, Ec2Error> {
        const OP: &str = "DescribeSnapshots";
        check_id(OP, "snapshot", snapshot_id)?;
        let resource = format!("snapshot {snapshot_id}");
        let out = self
            .client
            .describe_snapshots()
            .snapshot_ids(snapshot_id)
            .send()
            .await
            .map_err(|e| self.error(OP, &resource, &e))?;
        let Some(s) = out
            .snapshots()
            .iter()
            .find(|s| s.snapshot_id() == Some(snapshot_id))
        else {
            let (kind, message) =
                classify_code(OP, "InvalidSnapshot.NotFound", "", 200, &self.region, 1);
            return Err(Ec2Error::new(
                OP,
                resource,
                kind,
                "InvalidSnapshot.NotFound",
                message,
            ));
        };
        Ok(SnapshotInfo {
            snapshot_id: snapshot_id.to_string(),
            volume_id: s.volume_id().filter(|v| !v.is_empty()).map(str::to_string),
            state: s
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            progress: s.progress().map(str::to_string),
            state_message: s
                .state_message()
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            start_time: s.start_time().and_then(to_timestamp),
            volume_size_gib: to_u64(s.volume_size()),
            encrypted: s.encrypted().unwrap_or(false),
            kms_key_id: s.kms_key_id().map(str::to_string),
            tags: tag_pairs(s.tags()),
        })
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), Ec2Error> {
        const OP: &str = "DeleteSnapshot";
        check_id(OP, "snapshot", snapshot_id)?;
        let resource = format!("snapshot {snapshot_id}");
        match self
            .client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
        {
            Ok(_) => {
                debug!(snapshot_id, "snapshot deleted");
                Ok(())
            }
            Err(e) => {
                let err = self.error(OP, &resource, &e);
                if err.is_not_found() {
                    debug!(snapshot_id, "snapshot already gone");
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn create_volume(&self, spec: &NewVolume) -> Result<String, Ec2Error> {
        const OP: &str = "CreateVolume";
        check_id(OP, "snapshot", &spec.snapshot_id)?;
        let resource = format!(
            "a volume from snapshot {} in {}",
            spec.snapshot_id, spec.availability_zone
        );
        if spec.availability_zone.trim().is_empty() {
            return Err(Ec2Error::new(
                OP,
                resource,
                Ec2ErrorKind::InvalidParameter,
                "",
                "no availability zone given",
            ));
        }
        let ty = spec.volume_type.as_str();
        let size = match spec.size_gib {
            0 => None,
            n => Some(as_i32(OP, &resource, "size (GiB)", n)?),
        };
        let iops = match spec.iops {
            Some(n) if IOPS_TYPES.contains(&ty) => Some(as_i32(OP, &resource, "IOPS", n)?),
            _ => None,
        };
        let throughput = match spec.throughput {
            Some(n) if THROUGHPUT_TYPES.contains(&ty) => {
                Some(as_i32(OP, &resource, "throughput", n)?)
            }
            _ => None,
        };
        let tags = normalise_tags(&spec.tags, &resource);
        // Only `true` is sent: `false` cannot turn off the account's encryption by default,
        // and a KMS key without encryption is an error.
        let out = self
            .client
            .create_volume()
            .snapshot_id(&spec.snapshot_id)
            .availability_zone(&spec.availability_zone)
            .set_volume_type((!ty.is_empty()).then(|| VolumeType::from(ty)))
            .set_size(size)
            .set_iops(iops)
            .set_throughput(throughput)
            .set_encrypted(spec.encrypted.then_some(true))
            .set_kms_key_id(
                spec.kms_key_id
                    .clone()
                    .filter(|k| spec.encrypted && !k.is_empty()),
            )
            .set_tag_specifications(tag_spec(ResourceType::Volume, tags).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| self.error(OP, &resource, &e))?;
        let id = out.volume_id.filter(|v| !v.is_empty()).ok_or_else(|| {
            Ec2Error::new(
                OP,
                resource,
                Ec2ErrorKind::Other,
                "",
                "EC2 answered without a volume id",
            )
        })?;
        debug!(snapshot_id = %spec.snapshot_id, zone = %spec.availability_zone, volume_id = %id, "volume created");
        Ok(id)
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), Ec2Error> {
        const OP: &str = "DeleteVolume";
        check_id(OP, "volume", volume_id)?;
        let resource = format!("volume {volume_id}");
        match self
            .client
            .delete_volume()
            .volume_id(volume_id)
            .send()
            .await
        {
            Ok(_) => {
                debug!(volume_id, "volume deleted");
                Ok(())
            }
            Err(e) => {
                let err = self.error(OP, &resource, &e);
                if err.is_not_found() {
                    debug!(volume_id, "volume already gone");
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
        tag_pairs(tags)
    }

    fn t(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn tags_drop_reserved_keys_and_keep_the_last_value_of_a_repeated_key() {
        let tags = [
            t("Name", "data-0"),
            t("aws:cloudformation:stack-name", "s"),
            t("AWS:other", "x"),
            t("team", "db"),
            t("Name", "lifeboat-b1"),
        ];
        assert_eq!(
            pairs(&normalise_tags(&tags, "test")),
            vec![t("Name", "lifeboat-b1"), t("team", "db")]
        );
    }

    #[test]
    fn tags_past_the_limit_drop_the_earliest() {
        let tags: Vec<_> = (0..60).map(|i| t(&format!("k{i}"), "v")).collect();
        let out = pairs(&normalise_tags(&tags, "test"));
        assert_eq!(out.len(), MAX_TAGS);
        assert_eq!(out[0].0, "k10");
        assert_eq!(out[MAX_TAGS - 1].0, "k59");
    }

    #[test]
    fn no_tags_means_no_tag_specification() {
        assert!(tag_spec(ResourceType::Snapshot, Vec::new()).is_none());
    }

    #[test]
    fn error_code_is_read_from_an_ec2_error_body() {
        let body = "<?xml version=\"1.0\"?><Response><Errors><Error><Code>SnapshotCreationPerVolumeRateExceeded</Code><Message>slow</Message></Error></Errors><RequestID>x</RequestID></Response>";
        assert_eq!(
            error_code(body),
            Some("SnapshotCreationPerVolumeRateExceeded")
        );
        assert_eq!(error_code("<Response/>"), None);
    }

    #[test]
    fn codes_map_to_kinds() {
        use Ec2ErrorKind as K;
        let kind = |op: &str, code: &str, status: u16| {
            classify_code(op, code, "", status, "eu-west-1", 8).0
        };
        assert_eq!(
            kind("DescribeVolumes", "InvalidVolume.NotFound", 400),
            K::NotFound
        );
        assert_eq!(
            kind("DeleteSnapshot", "InvalidSnapshot.NotFound", 400),
            K::NotFound
        );
        assert_eq!(
            kind("CreateSnapshot", "RequestLimitExceeded", 503),
            K::Throttled
        );
        assert_eq!(
            kind(
                "CreateSnapshot",
                "SnapshotCreationPerVolumeRateExceeded",
                400
            ),
            K::Throttled
        );
        assert_eq!(
            kind("CreateSnapshot", "UnauthorizedOperation", 403),
            K::AccessDenied
        );
        assert_eq!(kind("CreateVolume", "AuthFailure", 401), K::AccessDenied);
        assert_eq!(
            kind("CreateVolume", "InvalidZone.NotFound", 400),
            K::InvalidParameter
        );
        assert_eq!(
            kind("DescribeVolumes", "InvalidVolumeID.Malformed", 400),
            K::InvalidParameter
        );
        assert_eq!(
            kind("CreateVolume", "InvalidParameterValue", 400),
            K::InvalidParameter
        );
        assert_eq!(
            kind("CreateVolume", "InsufficientVolumeCapacity", 503),
            K::Transient
        );
        assert_eq!(kind("CreateVolume", "InternalError", 500), K::Transient);
        assert_eq!(kind("DeleteVolume", "VolumeInUse", 400), K::Other);
        assert_eq!(kind("CreateVolume", "", 503), K::Throttled);
        assert_eq!(kind("CreateVolume", "", 502), K::Transient);
        assert_eq!(kind("CreateVolume", "Whatever", 403), K::AccessDenied);
    }

    #[test]
    fn access_denied_names_the_iam_actions() {
        let (_, message) = classify_code(
            "CreateSnapshot",
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. Encoded authorization failure message: abc",
            403,
            "us-east-1",
            8,
        );
        assert!(
            message.starts_with("access denied; the IAM role lifeboat runs as needs ec2:CreateSnapshot and ec2:CreateTags (see docs/iam-policy.json)"),
            "{message}"
        );
        assert!(
            message.contains("decode-authorization-message"),
            "{message}"
        );
    }

    #[test]
    fn not_found_points_at_the_region() {
        let (_, message) = classify_code(
            "DescribeSnapshots",
            "InvalidSnapshot.NotFound",
            "",
            400,
            "eu-west-1",
            8,
        );
        assert!(
            message.contains("snapshot does not exist in region eu-west-1"),
            "{message}"
        );
    }

    #[test]
    fn errors_render_operation_resource_and_advice() {
        let e = Ec2Error::new(
            "CreateSnapshot",
            "volume vol-123",
            Ec2ErrorKind::AccessDenied,
            "UnauthorizedOperation",
            "access denied",
        );
        assert_eq!(
            e.to_string(),
            "EC2 CreateSnapshot for volume vol-123 failed: access denied"
        );
        assert_eq!(e.code(), "UnauthorizedOperation");
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn settings_are_checked_before_any_request() {
        let few = Settings {
            max_attempts: 2,
            region: Some("us-east-1".into()),
            ..Settings::default()
        };
        let err = AwsEc2::new(&few).await.unwrap_err();
        assert_eq!(err.kind(), Ec2ErrorKind::InvalidSettings);
        let bad = Settings {
            endpoint: Some("localhost:4566".into()),
            region: Some("us-east-1".into()),
            ..Settings::default()
        };
        let err = AwsEc2::new(&bad).await.unwrap_err();
        assert!(err.to_string().contains("volumes.endpoint"), "{err}");
    }

    #[test]
    fn empty_ids_are_refused() {
        let err = check_id("DescribeVolumes", "volume", " ").unwrap_err();
        assert_eq!(err.kind(), Ec2ErrorKind::InvalidParameter);
    }
}
