//! The config file: one YAML document, camelCase keys like Kubernetes objects, one struct per
//! concern. The field doc comments are the user reference (`docs/configuration.md` and the
//! examples in `config/` say the same).
//!
//! Loading is strict and explains itself: an unknown key, a bad URL, cron expression, duration
//! or enum value, a wrong type, or two settings that contradict each other is a [`ConfigError`]
//! that names the file, line, column and key path (`schedules[0].cron`), what is wrong and what
//! to do. Values with a syntax (URLs, durations, cron, time zones, selectors, age recipients)
//! are newtypes checked as they are deserialised, so a [`Config`] in hand holds only valid ones;
//! ranges and cross-field rules are checked by [`Config::validate`], which [`Config::parse`]
//! runs too.
//!
//! Lines for the second kind of check come from an index (`config/locate.rs`) built from the YAML
//! parser's events: it maps key paths to positions and positions to key paths, which
//! serde-saphyr's errors (a position, no key) need as well.
//!
//! The config holds no secret: credentials come from the AWS default chain and the
//! kubeconfig, the age identity is a path. Errors still show no more of the file than the
//! offending value.

mod duration;
mod encryption;
mod error;
mod locate;
mod schedule;
mod server;
mod storage;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

pub use duration::{Duration, DurationError};
pub use encryption::{AgeRecipient, AgeRecipientError, EncryptionConfig};
pub use error::{ConfigError, ConfigErrorKind};
pub use schedule::{
    CronExpr, CronExprError, IncludeClusterResources, LabelSelector, LabelSelectorError,
    MAX_SCHEDULE_NAME_LEN, Retention, Schedule, Timezone, TimezoneError,
};
pub use server::{LeaderElectionConfig, ServerConfig};
pub use storage::{
    ChecksumMode, Endpoint, EndpointError, ObjectLockConfig, ObjectLockMode, ServerSideEncryption,
    StorageConfig, StorageUrl, StorageUrlError,
};

use locate::PathIndex;

/// Every default value, in one place.
pub mod defaults {
    use super::Duration;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    /// `server.listen`.
    pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000);
    /// `server.shutdownGracePeriod`: ends inside Kubernetes' default 30 s grace period.
    pub const SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(25);
    /// `server.leaderElection.leaseName`.
    pub const LEASE_NAME: &str = "lifeboat";
    /// `server.leaderElection.leaseDuration`.
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    /// `server.leaderElection.renewDeadline`.
    pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
    /// `server.leaderElection.retryPeriod`.
    pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
    /// `volumes.snapshots`.
    pub const SNAPSHOTS: bool = true;
    /// `volumes.concurrency`.
    pub const VOLUME_CONCURRENCY: u32 = 8;
    /// `volumes.waitTimeout`.
    pub const VOLUME_WAIT_TIMEOUT: Duration = Duration::from_mins(30);
    /// `archive.compressionLevel`.
    pub const COMPRESSION_LEVEL: i32 = 3;
    /// `archive.compressionWorkers` (0: compress on the calling thread).
    pub const COMPRESSION_WORKERS: u32 = 0;
    /// `archive.windowLog`: 2^24 (16 MiB). lifeboat writes objects grouped by type, so the
    /// copies of one application in many namespaces sit close together in the stream and a
    /// 16 MiB window finds them; 2^27 cost a backup 128 MiB more memory for under 3% smaller
    /// archives (docs/benchmarks.md).
    pub const WINDOW_LOG: u32 = 24;
    /// `archive.longDistanceMatching`: off. On lifeboat's type-ordered stream it gained nothing
    /// measurable and doubled compression CPU (docs/benchmarks.md).
    pub const LONG_DISTANCE_MATCHING: bool = false;
    /// The largest config file read: a real one is a few kilobytes.
    pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The cluster backed up (or restored into).
    #[serde(default, deserialize_with = "nullable")]
    pub cluster: ClusterConfig,
    /// Required: where backups are stored.
    #[serde(deserialize_with = "required_storage")]
    pub storage: StorageConfig,
    /// EBS snapshots of PersistentVolumes.
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: VolumesConfig,
    /// Client-side encryption of archives and logs.
    #[serde(default, deserialize_with = "nullable")]
    pub encryption: EncryptionConfig,
    /// Backups the daemon takes on a schedule. Default: none (the daemon then only serves
    /// probes; `backup create` still works).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub schedules: Vec<Schedule>,
    /// The daemon: HTTP endpoint, shutdown, leader election.
    #[serde(default, deserialize_with = "nullable")]
    pub server: ServerConfig,
    /// How archives are compressed.
    #[serde(default, deserialize_with = "nullable")]
    pub archive: ArchiveConfig,
}

/// Which cluster, and how to reach it. Every key defaults to what kubectl would use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Name recorded in manifests and snapshot tags (`lifeboat.io/cluster`), e.g.
    /// `prod-eu-west-1`. Default: the kubeconfig context's name, else `kubernetes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kubeconfig file; `--kubeconfig` overrides it. Default: `KUBECONFIG`, then
    /// `~/.kube/config`, then the in-cluster service account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; `--context` overrides it. Default: the current context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// EBS snapshots of the volumes behind PersistentVolumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VolumesConfig {
    /// Snapshot EBS-backed PersistentVolumes during backups; a schedule's `snapshotVolumes`
    /// or `--snapshot-volumes` overrides it. Default `true`.
    pub snapshots: bool,
    /// AWS region of the volumes. Default: `storage.region`, then the AWS default chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// EC2 endpoint for an EC2-compatible API (moto, a VPC endpoint). Default: AWS's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Volumes snapshotted at the same time (1 to 64). Default `8`.
    pub concurrency: u32,
    /// How long to wait for one snapshot to reach `completed` before the backup reports it
    /// as failed (PartiallyFailed). Default `30m`.
    pub wait_timeout: Duration,
}

impl Default for VolumesConfig {
    fn default() -> VolumesConfig {
        VolumesConfig {
            snapshots: defaults::SNAPSHOTS,
            region: None,
            endpoint: None,
            concurrency: defaults::VOLUME_CONCURRENCY,
            wait_timeout: defaults::VOLUME_WAIT_TIMEOUT,
        }
    }
}

/// Compression of the archive (tar + zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// zstd level, 1 (fastest) to 19 (smallest). Default `3`.
    pub compression_level: i32,
    /// zstd worker threads; `0` compresses on the backup's own thread. Default `0`.
    pub compression_workers: u32,
    /// Base-2 log of zstd's window, 10 to 27. Larger windows find repetition between objects
    /// further apart in the stream; 27 (128 MiB) is the largest that plain `zstd -d` reads
    /// without `--long`. The backup's memory grows with it. Default `24`.
    pub window_log: u32,
    /// zstd's long-distance matcher. Default `false`.
    pub long_distance_matching: bool,
}

impl Default for ArchiveConfig {
    fn default() -> ArchiveConfig {
        ArchiveConfig {
            compression_level: defaults::COMPRESSION_LEVEL,
            compression_workers: defaults::COMPRESSION_WORKERS,
            window_log: defaults::WINDOW_LOG,
            long_distance_matching: defaults::LONG_DISTANCE_MATCHING,
        }
    }
}

/// Every key pattern of the file format (`storage.url`, `schedules[].retention.keepLast`),
/// in the order the types declare them. Docs checks and tests read the format's keys from
/// here rather than keeping lists of their own.
pub fn key_paths() -> &'static [String] {
    known_keys()
}

/// The key names of the file format, each once (`url`, `keepLast`, ...), from [`key_paths`].
pub fn key_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for path in known_keys() {
        let name = path
            .rsplit('.')
            .next()
            .unwrap_or(path)
            .trim_end_matches("[]");
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Every key pattern of the file format (`storage.url`, `schedules[].retention.keepLast`),
/// read off a config with every optional part set, so the list cannot drift from the types.
/// In the order the types declare them, which is the order hints list them in.
fn known_keys() -> &'static [String] {
    static KEYS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let mut keys = Vec::new();
        flatten(
            &serde_json::to_value(shape()).expect("configs serialise"),
            "",
            &mut keys,
        );
        keys
    });
    &KEYS
}

fn flatten(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.push(p.clone());
                flatten(child, &p, out);
            }
        }
        serde_json::Value::Array(items) => {
            let p = format!("{path}[]");
            out.push(p.clone());
            if let Some(first) = items.first() {
                flatten(first, &p, out);
            }
        }
        _ => {}
    }
}

/// A config with every optional key set (values do not matter, only which keys exist).
fn shape() -> Config {
    let mut c = Config::new("s3://shape-bucket/prefix".parse().expect("valid URL"));
    c.cluster = ClusterConfig {
        name: Some("x".into()),
        kubeconfig: Some("x".into()),
        context: Some("x".into()),
    };
    c.storage.region = Some("x".into());
    c.storage.endpoint = Some("http://127.0.0.1".parse().expect("valid endpoint"));
    c.storage.server_side_encryption = Some(ServerSideEncryption::AwsKms);
    c.storage.kms_key_id = Some("x".into());
    c.storage.object_lock = Some(ObjectLockConfig {
        mode: ObjectLockMode::Governance,
        retain_days: 1,
    });
    c.volumes.region = Some("x".into());
    c.volumes.endpoint = c.storage.endpoint.clone();
    c.encryption.recipients = vec![
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
            .parse()
            .expect("valid recipient"),
    ];
    c.encryption.identity_file = Some("x".into());
    c.server.leader_election.namespace = Some("x".into());
    let mut s = Schedule::new("x", "@daily".parse().expect("valid cron"));
    s.retention.keep_last = Some(1);
    s.retention.max_age = Some(Duration::from_days(1));
    for list in [
        &mut s.include_namespaces,
        &mut s.exclude_namespaces,
        &mut s.include_resources,
        &mut s.exclude_resources,
    ] {
        list.push("x".into());
    }
    s.selector = Some("a=b".parse().expect("valid selector"));
    s.snapshot_volumes = Some(true);
    c.schedules.push(s);
    c
}

impl Config {
    /// A config storing backups at `url`, everything else at its default.
    pub fn new(url: StorageUrl) -> Config {
        Config {
            cluster: ClusterConfig::default(),
            storage: StorageConfig::new(url),
            volumes: VolumesConfig::default(),
            encryption: EncryptionConfig::default(),
            schedules: Vec::new(),
            server: ServerConfig::default(),
            archive: ArchiveConfig::default(),
        }
    }

    /// Reads, parses and validates the file at `path`. Errors name the file as given.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let unreadable = |e: std::io::Error| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "check the path given with --config or LIFEBOAT_CONFIG"
            } else {
                "check the path and its permissions"
            };
            ConfigError::io(
                &origin,
                format!("cannot read the config file: {e}"),
                hint,
                Some(e),
            )
        };
        let metadata = std::fs::metadata(path).map_err(unreadable)?;
        if metadata.is_dir() {
            return Err(ConfigError::io(
                &origin,
                "is a directory, not a config file".into(),
                "give the path of a YAML file, such as config/production.yaml",
                None,
            ));
        }
        if metadata.len() > defaults::MAX_FILE_SIZE {
            return Err(ConfigError::io(
                &origin,
                format!("is {} bytes, too large for a config file", metadata.len()),
                "check that --config names the right file",
                None,
            ));
        }
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ConfigError::io(
                &origin,
                "is not UTF-8 text".into(),
                "save it as UTF-8",
                None,
            )
        })?;
        Config::parse(&text, &origin)
    }

    /// Parses and validates a config. `origin` (usually the file name) starts every message.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let options = serde_saphyr::options! {
            strict_booleans: true,
            with_snippet: false,
        };
        let parsed: Result<Config, _> = serde_saphyr::from_str_with_options(text, options);
        // Built only when needed: errors, and the positions of validation errors.
        let index = PathIndex::build(text);
        if index.is_empty() {
            // Nothing but comments and blank lines: say what the file needs.
            return Err(ConfigError::new(
                ConfigErrorKind::MissingKey,
                "storage.url",
                "is required but not set (the file is empty)",
                Some(error::missing_hint("storage.url")),
            )
            .with_origin(origin));
        }
        let unknown = error::unknown_keys(&index, known_keys(), origin);
        let config = match parsed {
            Ok(config) => config,
            Err(e) => {
                let first = error::from_yaml(&e, text, &index, origin);
                // The parser's own report of an unknown key lists the keys in declaration order
                // and knows more context: it wins over the pre-pass for the same key.
                let mut all: Vec<ConfigError> = unknown
                    .into_iter()
                    .filter(|u| u.key() != first.key())
                    .collect();
                all.push(first);
                return Err(ConfigError::many(all).expect("at least the parse error"));
            }
        };
        config.check(&Checker {
            origin,
            index: Some(&index),
        })?;
        Ok(config)
    }

    /// Checks ranges and the rules between keys (also run by [`Config::parse`]). On a config
    /// built in code, errors name the key but no file or line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&Checker {
            origin: "",
            index: None,
        })
    }

    /// The schedule called `name`.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// Region for EC2 calls: `volumes.region`, else `storage.region` (else the AWS chain).
    pub fn volumes_region(&self) -> Option<&str> {
        self.volumes
            .region
            .as_deref()
            .or(self.storage.region.as_deref())
    }

    fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        self.cluster.check(c)?;
        self.storage.check(c)?;
        self.volumes.check(c)?;
        self.encryption.check(c)?;
        for (i, schedule) in self.schedules.iter().enumerate() {
            let at = format!("schedules[{i}]");
            schedule.check(c, &at)?;
            if let Some(first) = self.schedules[..i]
                .iter()
                .position(|s| s.name == schedule.name)
            {
                return Err(c.error(
                    ConfigErrorKind::Duplicate,
                    &format!("{at}.name"),
                    format!(
                        "{} is already the name of schedules[{first}]",
                        quoted(&schedule.name)
                    ),
                    "give each schedule a unique name: it starts the names of its backups",
                ));
            }
        }
        self.server.check(c)?;
        self.archive.check(c)
    }
}

impl ClusterConfig {
    fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.len() > 253 || name.chars().any(char::is_control))
        {
            return Err(c.invalid(
                "cluster.name",
                format!("{} is not a usable cluster name", quoted(name)),
                "use a short name such as prod-eu-west-1 (at most 253 characters), or remove it",
            ));
        }
        if let Some(context) = &self.context
            && context.trim().is_empty()
        {
            return Err(c.invalid(
                "cluster.context",
                "is empty",
                "name a kubeconfig context, or remove the key",
            ));
        }
        if let Some(path) = &self.kubeconfig {
            c.path("cluster.kubeconfig", path, "a kubeconfig file")?;
        }
        Ok(())
    }
}

impl VolumesConfig {
    fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if let Some(region) = &self.region {
            c.region("volumes.region", region)?;
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(c.invalid(
                "volumes.concurrency",
                format!("{} is out of range", self.concurrency),
                "use 1 to 64 (EC2 throttles snapshot calls beyond that)",
            ));
        }
        if self.wait_timeout.is_zero() {
            return Err(c.invalid(
                "volumes.waitTimeout",
                "0s would give up on every snapshot at once",
                "use a duration such as 30m",
            ));
        }
        Ok(())
    }
}

impl ArchiveConfig {
    fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if !(1..=19).contains(&self.compression_level) {
            return Err(c.invalid(
                "archive.compressionLevel",
                format!("{} is out of range", self.compression_level),
                "use 1 (fastest) to 19 (smallest), 3 is a good balance",
            ));
        }
        if self.compression_workers > 256 {
            return Err(c.invalid(
                "archive.compressionWorkers",
                format!("{} is out of range", self.compression_workers),
                "use 0 (no extra thread) to 256, at most the number of cores",
            ));
        }
        if !(10..=27).contains(&self.window_log) {
            return Err(c.invalid(
                "archive.windowLog",
                format!("{} is out of range", self.window_log),
                "use 10 to 27 (above 27, plain zstd -d could not read the archive)",
            ));
        }
        Ok(())
    }
}

/// Builds validation errors: the key path, and its position when the document is known.
pub(crate) struct Checker<'a> {
    origin: &'a str,
    index: Option<&'a PathIndex>,
}

impl Checker<'_> {
    pub(crate) fn error(
        &self,
        kind: ConfigErrorKind,
        key: &str,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(kind, key, problem, Some(hint.into()))
            .with_origin(self.origin)
            .with_pos(self.index.and_then(|index| index.locate(key)))
    }

    pub(crate) fn invalid(
        &self,
        key: &str,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        self.error(ConfigErrorKind::InvalidValue, key, problem, hint)
    }

    pub(crate) fn conflict(
        &self,
        key: &str,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        self.error(ConfigErrorKind::Conflict, key, problem, hint)
    }

    /// Whether the document sets `key` (rather than leaving it at its default).
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.index.is_some_and(|index| index.get(key).is_some())
    }

    /// A file path: not empty, and no `~`, which nothing here expands.
    pub(crate) fn path(&self, key: &str, path: &Path, what: &str) -> Result<(), ConfigError> {
        let text = path.to_string_lossy();
        if text.trim().is_empty() {
            return Err(self.invalid(
                key,
                "is empty",
                format!("give the path of {what}, or remove the key"),
            ));
        }
        if text.starts_with('~') {
            return Err(self.invalid(
                key,
                format!("{} starts with ~, which is not expanded", quoted(&text)),
                format!(
                    "write the full path of {what}, such as /home/ops/{}",
                    text.trim_start_matches(['~', '/'])
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn region(&self, key: &str, region: &str) -> Result<(), ConfigError> {
        let valid = !region.is_empty()
            && region.len() <= 64
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(())
        } else {
            Err(self.invalid(
                key,
                format!("{} is not a region name", quoted(region)),
                "use a region such as eu-west-1, or remove it to use the AWS default chain",
            ))
        }
    }
}

/// A value as messages show it: quoted, escaped, and cut when long.
pub(crate) fn quoted(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() > MAX {
        format!("{:?}...", value.chars().take(MAX - 10).collect::<String>())
    } else {
        format!("{value:?}")
    }
}

/// A value parsed from its text by `FromStr`, whose error message becomes the config error.
fn from_str_value<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// A section or list written with no value (`server:` with everything commented out) is
/// the same as leaving it out.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `storage:` with no value reports the missing `storage.url`.
fn required_storage<'de, D>(deserializer: D) -> Result<StorageConfig, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<StorageConfig>::deserialize(deserializer)?
        .ok_or_else(|| serde::de::Error::missing_field("storage"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_key_shape_sets_every_optional_key() {
        // A new optional field left unset here would make its key "unknown".
        fn no_nulls(v: &serde_json::Value, path: &str) {
            match v {
                serde_json::Value::Null => panic!("{path} is not set in shape()"),
                serde_json::Value::Object(m) => {
                    for (k, c) in m {
                        no_nulls(c, &format!("{path}.{k}"));
                    }
                }
                serde_json::Value::Array(a) => {
                    for c in a {
                        no_nulls(c, &format!("{path}[]"));
                    }
                }
                _ => {}
            }
        }
        no_nulls(&serde_json::to_value(super::shape()).unwrap(), "");
        let keys = super::known_keys();
        for k in [
            "storage.url",
            "storage.objectLock.retainDays",
            "schedules[].retention.maxAge",
            "server.leaderElection.leaseName",
            "encryption.recipients",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = super::Config::parse(
            "storage:\n  url: s3://b/p\n  bogusKey: 1\nserver:\n  lisen: x\n",
            "bad.yaml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml:2:"), "{text}");
        assert!(
            text.contains("bad.yaml:3:3: storage.bogusKey: unknown key"),
            "{text}"
        );
        assert!(
            text.contains("bad.yaml:5:3: server.lisen: unknown key; did you mean listen?"),
            "{text}"
        );
        assert_eq!(err.also().len(), 2);
    }
    use super::*;

    const MINIMAL: &str = "storage:\n  url: s3://backups\n";

    fn error(text: &str) -> String {
        Config::parse(text, "lifeboat.yaml")
            .expect_err(text)
            .to_string()
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let config = Config::parse(MINIMAL, "lifeboat.yaml").unwrap();
        assert_eq!(config, Config::new("s3://backups".parse().unwrap()));
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.volumes.concurrency, 8);
        assert_eq!(config.volumes.wait_timeout.to_string(), "30m");
        assert_eq!(
            config.archive,
            ArchiveConfig {
                compression_level: 3,
                compression_workers: 0,
                window_log: 24,
                long_distance_matching: false,
            }
        );
        assert!(config.volumes.snapshots);
    }

    #[test]
    fn empty_sections_mean_defaults() {
        let text = "cluster:\nstorage:\n  url: file:///tmp/x\n  objectLock:\nvolumes:\nencryption:\n  recipients:\nschedules:\nserver:\n  leaderElection:\narchive:\n";
        let config = Config::parse(text, "x.yaml").unwrap();
        assert_eq!(config, Config::new("file:///tmp/x".parse().unwrap()));
    }

    #[test]
    fn storage_url_is_the_one_required_key() {
        assert_eq!(
            error(""),
            "lifeboat.yaml: storage.url: is required but not set (the file is empty); add storage: {url: s3://bucket/prefix} or storage: {url: file:///var/lib/lifeboat}"
        );
        assert!(
            error("cluster:\n  name: x\n")
                .starts_with("lifeboat.yaml:1:1: storage.url: is required but not set")
        );
        assert!(
            error("storage:\n").contains("storage.url: is required but not set"),
            "{}",
            error("storage:\n")
        );
        assert!(
            error("storage:\n  region: eu-west-1\n")
                .starts_with("lifeboat.yaml:2:3: storage.url: is required but not set")
        );
    }

    #[test]
    fn validate_names_the_key_without_a_file() {
        let mut config = Config::new("s3://backups".parse().unwrap());
        config.archive.compression_level = 22;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "archive.compressionLevel: 22 is out of range; use 1 (fastest) to 19 (smallest), 3 is a good balance"
        );
    }
}
