//! `storage`: where backups go (an S3 bucket or a local directory) and how objects are written.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Checker, ConfigError, nullable};

/// Where backups are stored and how S3 is spoken to.
///
/// Credentials never go here: they come from the AWS default chain (environment, profile, IRSA's
/// `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, instance metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageConfig {
    /// Required. `s3://bucket[/prefix]` for S3 or an S3-compatible server, or
    /// `file:///absolute/dir` for a local directory (laptops, CI, the demo). Everything lifeboat
    /// writes goes under `<prefix>/backups/<name>/`.
    pub url: StorageUrl,
    /// AWS region of the bucket, e.g. `eu-west-1`. Default: the AWS default chain (`AWS_REGION`,
    /// the profile, instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3 endpoint for S3-compatible servers (MinIO, Ceph, moto), as an `http://` or `https://`
    /// URL. Default: AWS's endpoint for the region (or `AWS_ENDPOINT_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Address the bucket in the path (`https://host/bucket/key`) rather than the host name
    /// (`https://bucket.host/key`). Most S3-compatible servers need `true`. Default `false`.
    #[serde(default)]
    pub force_path_style: bool,
    /// Server-side encryption requested on every object: `AES256` (S3-managed keys) or
    /// `aws:kms` (a KMS key, see `kmsKeyId`). Default: none requested, the bucket's default
    /// encryption applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// KMS key (id, ARN or `alias/...`) for `serverSideEncryption: aws:kms`. Default: the
    /// account's AWS-managed `aws/s3` key. Only valid with `aws:kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// When the S3 client computes request checksums: `whenSupported` (every upload) or
    /// `whenRequired` (only where S3 demands one; for S3-compatible servers that reject
    /// the newer checksum headers). Default `whenSupported`.
    #[serde(default)]
    pub checksum_mode: ChecksumMode,
    /// S3 Object Lock retention set on every object of a backup, so nobody (not even the
    /// cluster's own credentials) can delete a backup early. The bucket must have Object Lock
    /// enabled. Default: no lock.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub object_lock: Option<ObjectLockConfig>,
}

impl StorageConfig {
    /// Storage at `url` with every other setting at its default.
    pub fn new(url: StorageUrl) -> StorageConfig {
        StorageConfig {
            url,
            region: None,
            endpoint: None,
            force_path_style: false,
            server_side_encryption: None,
            kms_key_id: None,
            checksum_mode: ChecksumMode::default(),
            object_lock: None,
        }
    }

    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if let Some(region) = &self.region {
            c.region("storage.region", region)?;
        }
        if let Some(key) = &self.kms_key_id {
            if self.server_side_encryption != Some(ServerSideEncryption::AwsKms) {
                return Err(c.conflict(
                    "storage.kmsKeyId",
                    "is only used with serverSideEncryption: aws:kms",
                    "set storage.serverSideEncryption to aws:kms, or remove kmsKeyId",
                ));
            }
            if key.trim().is_empty() || key.chars().any(char::is_whitespace) {
                return Err(c.invalid(
                    "storage.kmsKeyId",
                    format!("{} is not a KMS key id", super::quoted(key)),
                    "use a key id, a key ARN or alias/NAME, or remove it to use the aws/s3 key",
                ));
            }
        }
        if let Some(lock) = &self.object_lock {
            if lock.retain_days == 0 || lock.retain_days > MAX_RETAIN_DAYS {
                return Err(c.invalid(
                    "storage.objectLock.retainDays",
                    format!("{} is out of range", lock.retain_days),
                    format!("use a number of days from 1 to {MAX_RETAIN_DAYS}"),
                ));
            }
            if matches!(self.url, StorageUrl::File { .. }) {
                return Err(c.conflict(
                    "storage.objectLock",
                    "needs S3 storage, but storage.url is a local directory",
                    "remove objectLock, or store backups in an S3 bucket with Object Lock enabled",
                ));
            }
        }
        Ok(())
    }
}

/// Object Lock periods longer than this are almost certainly typos (S3 allows up to 100 years).
const MAX_RETAIN_DAYS: u32 = 36_500;

/// Never echo what is probably a secret; say where credentials belong.
const NO_CREDENTIALS: &str =
    "it contains credentials (user@), which come from the AWS default chain, never the config";

/// The advice every storage URL error ends with.
const URL_FORMS: &str = "use s3://bucket/prefix or file:///absolute/dir";

/// S3's limit on a key's length, which the prefix is part of.
const MAX_KEY_BYTES: usize = 1024;

/// Where backups live: an S3 bucket with an optional key prefix, or a local directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StorageUrl {
    /// `s3://bucket/prefix`. `prefix` has no leading or trailing `/` and is empty when the
    /// backups are at the bucket's root.
    S3 { bucket: String, prefix: String },
    /// `file:///absolute/dir`.
    File { path: PathBuf },
}

/// Why a text is not a storage URL. This is the one parser of `storage.url`: the store's
/// `Location::parse` reports the same reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a valid storage URL: {reason}", super::quoted(.url))]
pub struct StorageUrlError {
    /// The URL as written, with any credentials replaced by `***`.
    url: String,
    /// Why, and what to write instead.
    reason: String,
}

impl StorageUrlError {
    fn new(url: &str, why: &str) -> StorageUrlError {
        StorageUrlError {
            url: url.to_string(),
            reason: format!("{why}; {URL_FORMS}"),
        }
    }

    /// The URL as written, safe to show: credentials in it are replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Why the URL was refused and what to write instead, without the URL itself.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl StorageUrl {
    /// The bucket, for S3 storage.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            StorageUrl::S3 { bucket, .. } => Some(bucket),
            StorageUrl::File { .. } => None,
        }
    }
}

impl FromStr for StorageUrl {
    type Err = StorageUrlError;

    fn from_str(text: &str) -> Result<StorageUrl, StorageUrlError> {
        if let Some(shown) = without_credentials(text) {
            return Err(StorageUrlError::new(&shown, NO_CREDENTIALS));
        }
        let fail = |why: &str| StorageUrlError::new(text, why);
        let text = text.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(fail("it contains control characters"));
        }
        if text.starts_with('/') {
            return Err(fail(&format!(
                "a local directory is written as file://{text}"
            )));
        }
        let Some((scheme, rest)) = text.split_once(':').filter(|(s, _)| is_scheme(s)) else {
            return Err(fail("it has no scheme"));
        };
        match scheme {
            "s3" => parse_s3(rest).map_err(|why| fail(&why)),
            "file" => parse_file(text, rest).map_err(|why| fail(&why)),
            _ if scheme.eq_ignore_ascii_case("s3") || scheme.eq_ignore_ascii_case("file") => {
                Err(fail(&format!(
                    "write the scheme in lowercase ({}://)",
                    scheme.to_ascii_lowercase()
                )))
            }
            // `minio:9000` is a host and port, not a URL.
            _ if !rest.starts_with("//") => Err(fail("it has no scheme")),
            _ if scheme.starts_with("http") => Err(fail(&format!(
                "{scheme}:// is not a storage scheme (for an S3-compatible server, set storage.url: s3://bucket and storage.endpoint: {scheme}://host:port)"
            ))),
            _ => Err(fail(&format!("unsupported scheme {scheme:?}"))),
        }
    }
}

/// The URL with its user info replaced by `***`, when it has any. A secret access key may
/// contain `/`, which ends the authority early, so a `:` there followed by an `@` anywhere
/// counts too, and everything up to the last `@` is hidden.
fn without_credentials(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let at = rest.rfind('@')?;
    (authority.contains('@') || authority.contains(':'))
        .then(|| format!("{scheme}://***@{}", &rest[at + 1..]))
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` and `.`.
fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `s3://bucket/prefix`, given what follows `s3:`.
fn parse_s3(rest: &str) -> Result<StorageUrl, String> {
    let Some(rest) = rest.strip_prefix("//") else {
        let rest = rest.trim_start_matches('/');
        let example = if rest.is_empty() {
            "bucket/prefix"
        } else {
            rest
        };
        return Err(format!("write it with two slashes: s3://{example}"));
    };
    if rest.contains(['?', '#']) {
        return Err(
            "an S3 URL takes no ?query or #fragment; put settings in the storage section".into(),
        );
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("the bucket name is missing".into());
    }
    if bucket.contains(':') {
        return Err(format!(
            "a port is not part of a bucket name ({}); for an S3-compatible server, set storage.endpoint: http://host:port and storage.url: s3://bucket/prefix",
            super::quoted(bucket)
        ));
    }
    check_bucket(bucket).map_err(|why| format!("bucket {} {why}", super::quoted(bucket)))?;
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        check_prefix(prefix)?;
    }
    Ok(StorageUrl::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// The prefix is the start of every key lifeboat writes, so it must be a clean relative path.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the prefix is longer than S3's {MAX_KEY_BYTES}-byte key limit"
        ));
    }
    for segment in prefix.split('/') {
        if segment.is_empty() {
            return Err("the prefix has an empty segment (//)".into());
        }
        if segment == "." || segment == ".." {
            return Err(format!("the prefix has a {segment:?} segment"));
        }
    }
    Ok(())
}

/// `file:///absolute/dir` or `file://localhost/absolute/dir`, given `text` whole and what
/// follows `file:`.
fn parse_file(text: &str, rest: &str) -> Result<StorageUrl, String> {
    let must_be_absolute = |path: &str| {
        let example = if path.is_empty() || path.starts_with('.') {
            "var/lib/lifeboat"
        } else {
            path
        };
        format!("the path must be absolute: three slashes, as in file:///{example}")
    };
    let Some(after) = rest.strip_prefix("//") else {
        return Err(if rest.starts_with('/') {
            format!("write it with three slashes: file://{rest}")
        } else {
            must_be_absolute(rest)
        });
    };
    if !after
        .strip_prefix("localhost")
        .unwrap_or(after)
        .starts_with('/')
    {
        return Err(must_be_absolute(after));
    }
    let url = url::Url::parse(text).map_err(|e| format!("it is not a valid URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a file URL takes no ?query or #fragment".into());
    }
    // Percent escapes are decoded; collecting the components drops a trailing `/`.
    let path: PathBuf = url
        .to_file_path()
        .map_err(|()| "it does not name a local absolute path".to_string())?
        .components()
        .collect();
    if path.parent().is_none() {
        return Err(
            "it names the filesystem root; name a directory for lifeboat's objects, such as file:///var/lib/lifeboat"
                .into(),
        );
    }
    Ok(StorageUrl::File { path })
}

/// Checks an S3 general purpose bucket name: 3-63 characters; lowercase letters, digits, dots
/// and hyphens; a letter or digit at each end; no `..`; not an IP address; none of AWS's
/// reserved prefixes. (Legacy us-east-1 names with capitals or underscores are not accepted.)
fn check_bucket(bucket: &str) -> Result<(), String> {
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!(
            "must be 3 to 63 characters long (it has {})",
            bucket.chars().count()
        ));
    }
    if let Some(bad) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "may only contain lowercase letters, digits, dots and hyphens, not {bad:?}"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(bucket.chars().next()) || !alnum(bucket.chars().last()) {
        return Err("must begin and end with a letter or a digit".into());
    }
    if bucket.contains("..") {
        return Err("must not contain two adjacent dots".into());
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not be formatted as an IP address".into());
    }
    for reserved in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if bucket.starts_with(reserved) {
            return Err(format!(
                "must not start with the reserved prefix {reserved:?}"
            ));
        }
    }
    Ok(())
}

/// Gives back the URL: `s3://bucket`, `s3://bucket/prefix` or `file:///dir`.
impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StorageUrl::File { path } => match url::Url::from_file_path(path) {
                Ok(url) => f.write_str(url.as_str()),
                Err(()) => write!(f, "file://{}", path.display()),
            },
        }
    }
}

impl Serialize for StorageUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StorageUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StorageUrl, D::Error> {
        super::from_str_value(deserializer)
    }
}

/// An `http://` or `https://` endpoint URL (for S3- or EC2-compatible services).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(url::Url);

/// Why a text is not an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{shown} is not a valid endpoint: {why}; use a URL such as https://s3.example.com or http://127.0.0.1:9000"
)]
pub struct EndpointError {
    shown: String,
    why: String,
}

impl Endpoint {
    /// The URL as text, as the SDKs take it.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        let text = text.trim();
        let fail = |why: &str| EndpointError {
            shown: super::quoted(text),
            why: why.to_string(),
        };
        let url = url::Url::parse(text).map_err(|e| fail(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointError {
                shown: "the URL".into(),
                why: NO_CREDENTIALS.into(),
            });
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(fail("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(fail("it has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(fail("an endpoint takes no ?query or #fragment"));
        }
        Ok(Endpoint(url))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Endpoint, D::Error> {
        super::from_str_value(deserializer)
    }
}

/// S3 server-side encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerSideEncryption {
    /// S3-managed keys (SSE-S3).
    #[serde(rename = "AES256")]
    Aes256,
    /// A KMS key (SSE-KMS), see `storage.kmsKeyId`.
    #[serde(rename = "aws:kms")]
    AwsKms,
}

impl ServerSideEncryption {
    /// The value S3 uses in `x-amz-server-side-encryption`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerSideEncryption::Aes256 => "AES256",
            ServerSideEncryption::AwsKms => "aws:kms",
        }
    }
}

/// When the S3 client adds request checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChecksumMode {
    /// On every request that supports one (the AWS SDK's default).
    #[default]
    WhenSupported,
    /// Only where S3 requires one: for S3-compatible servers that reject the newer headers.
    WhenRequired,
}

/// S3 Object Lock retention applied to every object of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectLockConfig {
    /// Required. `GOVERNANCE` (users with `s3:BypassGovernanceRetention` can still delete) or
    /// `COMPLIANCE` (nobody can, not even the root account, until the period ends).
    pub mode: ObjectLockMode,
    /// Required. Days each object stays locked after it is written (1 to 36500). Retention
    /// deletes nothing younger than this and reports it instead of failing.
    pub retain_days: u32,
}

/// S3 Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ObjectLockMode {
    Governance,
    Compliance,
}

impl ObjectLockMode {
    /// The value S3 uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectLockMode::Governance => "GOVERNANCE",
            ObjectLockMode::Compliance => "COMPLIANCE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Result<StorageUrl, String> {
        text.parse::<StorageUrl>().map_err(|e| e.to_string())
    }

    #[test]
    fn s3_urls_split_bucket_and_prefix() {
        assert_eq!(
            url("s3://my-backups/prod/eks-1/").unwrap(),
            StorageUrl::S3 {
                bucket: "my-backups".into(),
                prefix: "prod/eks-1".into()
            }
        );
        assert_eq!(
            url("s3://my.backups").unwrap(),
            StorageUrl::S3 {
                bucket: "my.backups".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            url("s3://my-backups/prod/").unwrap().to_string(),
            "s3://my-backups/prod"
        );
        assert_eq!(
            url("s3://my-backups").unwrap().to_string(),
            "s3://my-backups"
        );
    }

    #[test]
    fn file_urls_need_an_absolute_path() {
        assert_eq!(
            url("file:///var/lib/lifeboat").unwrap(),
            StorageUrl::File {
                path: "/var/lib/lifeboat".into()
            }
        );
        assert_eq!(
            url("file:///tmp/with%20space").unwrap(),
            StorageUrl::File {
                path: "/tmp/with space".into()
            }
        );
        assert_eq!(
            url("file:///tmp/with%20space").unwrap().to_string(),
            "file:///tmp/with%20space"
        );
        for (text, why) in [
            (
                "file://relative/dir",
                "three slashes, as in file:///relative/dir",
            ),
            ("file:relative", "three slashes, as in file:///relative"),
            (
                "file://./backups",
                "three slashes, as in file:///var/lib/lifeboat",
            ),
            (
                "file:/var/backups",
                "write it with three slashes: file:///var/backups",
            ),
            ("/var/backups", "written as file:///var/backups"),
            ("file:///", "filesystem root"),
            ("file://localhost/", "filesystem root"),
            ("file:///tmp/x?mode=1", "no ?query or #fragment"),
            ("file:///tmp/x#y", "no ?query or #fragment"),
            (
                "file://server/share",
                "three slashes, as in file:///server/share",
            ),
        ] {
            let message = url(text).expect_err(text);
            assert!(message.contains(why), "{text}: {message}");
        }
    }

    #[test]
    fn file_urls_may_name_localhost_and_end_with_a_slash() {
        let dir = StorageUrl::File {
            path: "/tmp/x".into(),
        };
        assert_eq!(url("file://localhost/tmp/x/").unwrap(), dir);
        assert_eq!(url("file:///tmp/x/").unwrap(), dir);
        assert_eq!(url("file:///tmp/x/").unwrap().to_string(), "file:///tmp/x");
    }

    #[test]
    fn bad_buckets_and_schemes_are_explained() {
        for (text, why) in [
            ("s3://", "bucket name is missing"),
            ("s3:///prefix", "bucket name is missing"),
            ("s3:bucket/x", "write it with two slashes: s3://bucket/x"),
            ("s3://ab", "3 to 63"),
            ("s3://My_Bucket", "lowercase letters"),
            ("s3://my_bucket", "lowercase letters"),
            ("s3://-bucket", "begin and end"),
            ("s3://a..b", "adjacent dots"),
            ("s3://192.168.1.1", "IP address"),
            ("s3://xn--bucket", "reserved prefix"),
            ("s3://minio:9000/bucket", "set storage.endpoint"),
            ("s3://bucket/x?versionId=1", "no ?query or #fragment"),
            ("s3://bucket/x#y", "no ?query or #fragment"),
            ("s3://bucket/a//b", "empty segment"),
            ("s3://bucket//a", "empty segment"),
            ("s3://bucket/a/../b", "\"..\" segment"),
            ("s3://bucket/a\tb", "control characters"),
            ("s3://bucket/a\0b", "control characters"),
            ("S3://bucket", "lowercase (s3://)"),
            ("FILE:///tmp/x", "lowercase (file://)"),
            ("https://s3.amazonaws.com/bucket", "storage.endpoint"),
            ("gs://bucket", "unsupported scheme \"gs\""),
            ("minio:9000", "no scheme"),
            ("bucket", "no scheme"),
            ("", "empty"),
        ] {
            let message = url(text).expect_err(text);
            assert!(message.contains(why), "{text}: {message}");
            assert!(message.ends_with(URL_FORMS), "{text}: {message}");
        }
    }

    #[test]
    fn prefixes_are_bounded_by_the_key_limit() {
        let long = format!("s3://bucket/{}", "p".repeat(MAX_KEY_BYTES + 1));
        assert!(url(&long).unwrap_err().contains("1024-byte"));
        let longest = format!("s3://bucket/{}", "p".repeat(MAX_KEY_BYTES));
        assert!(url(&longest).is_ok());
    }

    #[test]
    fn errors_give_the_reason_apart_from_the_url() {
        let err = "s3://bucket:9000/x".parse::<StorageUrl>().unwrap_err();
        assert_eq!(err.url(), "s3://bucket:9000/x");
        assert!(
            err.reason()
                .starts_with("a port is not part of a bucket name")
        );
        assert!(err.reason().ends_with(URL_FORMS));
        assert_eq!(
            err.to_string(),
            format!(
                "\"s3://bucket:9000/x\" is not a valid storage URL: {}",
                err.reason()
            )
        );
    }

    #[test]
    fn credentials_are_refused_and_never_echoed() {
        for (text, shown) in [
            ("s3://AKIASECRET:hunter2@bucket/x", "s3://***@bucket/x"),
            // A secret key may hold `/`, `?` or `@`.
            ("s3://AKIASECRET:hun/ter2@bucket/x", "s3://***@bucket/x"),
            ("s3://AKIASECRET:hun@ter2@bucket", "s3://***@bucket"),
            ("s3://AKIASECRET:hun?ter2@bucket", "s3://***@bucket"),
            (
                "https://AKIASECRET:hunter2@minio:9000",
                "https://***@minio:9000",
            ),
        ] {
            let err = text.parse::<StorageUrl>().unwrap_err();
            assert_eq!(err.url(), shown, "{text}");
            let message = err.to_string();
            assert!(message.contains("credentials"), "{message}");
            assert!(
                !message.contains("hunter2") && !message.contains("AKIASECRET"),
                "{message}"
            );
        }
        // An `@` further down a prefix is not a credential.
        assert_eq!(
            url("s3://bucket/team@corp").unwrap(),
            StorageUrl::S3 {
                bucket: "bucket".into(),
                prefix: "team@corp".into()
            }
        );
        let message = "https://user:hunter2@minio:9000"
            .parse::<Endpoint>()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("credentials") && !message.contains("hunter2"),
            "{message}"
        );
    }

    #[test]
    fn endpoints_are_http_urls() {
        assert_eq!(
            "http://127.0.0.1:9000"
                .parse::<Endpoint>()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/"
        );
        for (text, why) in [
            ("ftp://x", "http or https"),
            ("minio:9000", "http or https"),
            ("not a url", "relative URL"),
        ] {
            let message = text.parse::<Endpoint>().unwrap_err().to_string();
            assert!(message.contains(why), "{text}: {message}");
        }
    }
}
