//! The config file as users meet it: the examples in `config/` load, every mistake is an error
//! naming the file, line, column and key, defaults are applied, and no input makes the loader
//! panic.

use std::path::{Path, PathBuf};

use lifeboat::config::{
    ChecksumMode, Config, ConfigErrorKind, Duration, IncludeClusterResources, ObjectLockMode,
    ServerSideEncryption, StorageUrl,
};

const ORIGIN: &str = "lifeboat.yaml";

/// A valid config to build the error cases on.
const BASE: &str = "storage:\n  url: s3://acme-backups/prod\n";

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
        })
        .collect();
    files.sort();
    files
}

/// The message for a config that must fail.
fn error(text: &str) -> String {
    match Config::parse(text, ORIGIN) {
        Ok(config) => panic!("accepted:\n{text}\n{config:#?}"),
        Err(e) => e.to_string(),
    }
}

fn with_base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn schedule(fields: &str) -> String {
    with_base(&format!(
        "schedules:\n  - name: nightly\n    cron: \"0 2 * * *\"\n{fields}"
    ))
}

#[test]
fn every_example_loads() {
    let files = examples();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["production.yaml", "staging-drill.yaml", "pre-upgrade.yaml"] {
        assert!(
            names.iter().any(|n| n == expected),
            "config/{expected} is missing: {names:?}"
        );
    }
    for file in &files {
        let config = Config::load(file).unwrap_or_else(|e| panic!("{e}"));
        config.validate().unwrap();
        // What the loader reads, it can write back and read again unchanged.
        let yaml = serde_saphyr::to_string(&config).unwrap();
        let again = Config::parse(&yaml, "round-trip").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(again, config, "{}", file.display());
    }
}

#[test]
fn every_key_is_documented_in_every_example_and_the_reference() {
    let keys = lifeboat::config::key_names();
    assert!(keys.contains(&"longDistanceMatching") && keys.contains(&"keepLast"));
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let mut documents = examples();
    documents.push(reference);
    for file in documents {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for key in &keys {
            let written = text.contains(&format!("{key}:"))
                || text.contains(&format!("`{key}`"))
                || text.contains(&format!(".{key}`"));
            assert!(written, "{} does not document `{key}`", file.display());
        }
    }
}

#[test]
fn the_production_example_reads_as_intended() {
    let config =
        Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/production.yaml"))
            .unwrap();
    assert_eq!(
        config.storage.url,
        StorageUrl::S3 {
            bucket: "acme-lifeboat-prod".into(),
            prefix: "eks/prod-eu-west-1".into()
        }
    );
    assert_eq!(
        config.storage.server_side_encryption,
        Some(ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        config.storage.object_lock.unwrap().mode,
        ObjectLockMode::Governance
    );
    let nightly = config.schedule("nightly").unwrap();
    assert_eq!(nightly.cron.as_str(), "0 2 * * *");
    assert_eq!(nightly.timezone.name(), "Europe/Berlin");
    assert_eq!(nightly.retention.max_age, Some(Duration::from_days(35)));
    let hourly = config.schedule("hourly-apps").unwrap();
    assert_eq!(
        hourly.include_cluster_resources,
        IncludeClusterResources::False
    );
    assert!(!hourly.snapshot_volumes_or(config.volumes.snapshots));
    assert!(config.schedule("weekly").is_none());
}

#[test]
fn defaults_are_applied() {
    let config = Config::parse(BASE, ORIGIN).unwrap();
    assert_eq!(config.cluster.name, None);
    assert_eq!(config.storage.region, None);
    assert!(!config.storage.force_path_style);
    assert_eq!(config.storage.server_side_encryption, None);
    assert_eq!(config.storage.checksum_mode, ChecksumMode::WhenSupported);
    assert_eq!(config.storage.object_lock, None);
    assert!(config.volumes.snapshots);
    assert_eq!(config.volumes.concurrency, 8);
    assert_eq!(config.volumes.wait_timeout, Duration::from_mins(30));
    assert!(!config.encryption.enabled());
    assert!(config.schedules.is_empty());
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8000");
    assert_eq!(config.server.shutdown_grace_period, Duration::from_secs(25));
    assert!(!config.server.verify_after_backup);
    let le = &config.server.leader_election;
    assert!(le.enabled);
    assert_eq!(le.namespace, None);
    assert_eq!(le.lease_name, "lifeboat");
    assert_eq!(
        (le.lease_duration, le.renew_deadline, le.retry_period),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    assert_eq!(
        (
            config.archive.compression_level,
            config.archive.compression_workers,
            config.archive.window_log,
            config.archive.long_distance_matching
        ),
        (3, 0, 24, false)
    );

    let config = Config::parse(&schedule(""), ORIGIN).unwrap();
    let nightly = &config.schedules[0];
    assert_eq!(nightly.timezone.name(), "UTC");
    assert!(nightly.retention.keeps_everything());
    assert_eq!(
        nightly.include_cluster_resources,
        IncludeClusterResources::Auto
    );
    assert_eq!(nightly.selector, None);
    assert!(nightly.snapshot_volumes_or(true));
}

#[test]
fn cron_accepts_five_and_six_fields_and_macros() {
    for cron in [
        "0 2 * * *",
        "*/15 * * * *",
        "30 1 * * mon-fri",
        "0 0 1 * *",
        "15 30 2 * * *",
        "0 */5 * * * *",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
    ] {
        let text = with_base(&format!("schedules:\n  - name: s\n    cron: \"{cron}\"\n"));
        let config = Config::parse(&text, ORIGIN).unwrap_or_else(|e| panic!("{cron}: {e}"));
        assert_eq!(config.schedules[0].cron.as_str(), cron);
    }
}

#[test]
fn unknown_keys_are_named_with_their_line_at_any_depth() {
    assert_eq!(
        error(&format!("{BASE}  bogusKey: 1\n")),
        "lifeboat.yaml:3:3: storage.bogusKey: unknown key; expected one of url, region, endpoint, forcePathStyle, serverSideEncryption, kmsKeyId, checksumMode, objectLock"
    );
    assert_eq!(
        error(&format!("clutser:\n  name: x\n{BASE}")),
        "lifeboat.yaml:1:1: clutser: unknown key; did you mean cluster? expected one of cluster, storage, volumes, encryption, schedules, server, archive"
    );
    assert_eq!(
        error(&with_base("server:\n  leaderElection:\n    leaseNam: x\n")),
        "lifeboat.yaml:5:5: server.leaderElection.leaseNam: unknown key; did you mean leaseName? expected one of enabled, namespace, leaseName, leaseDuration, renewDeadline, retryPeriod"
    );
    assert_eq!(
        error(&format!(
            "{BASE}  objectLock: {{mode: GOVERNANCE, retainDays: 7, legalHold: true}}\n"
        )),
        "lifeboat.yaml:3:49: storage.objectLock.legalHold: unknown key; expected one of mode, retainDays"
    );
    assert_eq!(
        error(&with_base(
            "schedules:\n  - name: a\n    cron: \"@daily\"\n  - name: b\n    cron: \"@daily\"\n    retention:\n      keep_last: 3\n"
        )),
        "lifeboat.yaml:9:7: schedules[1].retention.keep_last: unknown key; did you mean keepLast? expected one of keepLast, maxAge"
    );
}

#[test]
fn bad_values_name_key_line_and_fix() {
    let cases: &[(&str, &str)] = &[
        // URLs.
        (
            "storage:\n  url: s3://Acme_Backups/prod\n",
            "lifeboat.yaml:2:8: storage.url: \"s3://Acme_Backups/prod\" is not a valid storage URL: bucket \"Acme_Backups\" may only contain lowercase letters, digits, dots and hyphens, not 'A'; use s3://bucket/prefix or file:///absolute/dir",
        ),
        (
            "storage:\n  url: file://backups\n",
            "lifeboat.yaml:2:8: storage.url: \"file://backups\" is not a valid storage URL: the path must be absolute: three slashes, as in file:///backups; use s3://bucket/prefix or file:///absolute/dir",
        ),
        (
            "storage:\n  url: https://s3.amazonaws.com/acme\n",
            "lifeboat.yaml:2:8: storage.url: \"https://s3.amazonaws.com/acme\" is not a valid storage URL: https:// is not a storage scheme (for an S3-compatible server, set storage.url: s3://bucket and storage.endpoint: https://host:port); use s3://bucket/prefix or file:///absolute/dir",
        ),
        (
            &format!("{BASE}  endpoint: minio:9000\n"),
            "lifeboat.yaml:3:13: storage.endpoint: \"minio:9000\" is not a valid endpoint: the scheme must be http or https; use a URL such as https://s3.example.com or http://127.0.0.1:9000",
        ),
        // Durations.
        (
            &with_base("volumes:\n  waitTimeout: 30\n"),
            "lifeboat.yaml:4:16: volumes.waitTimeout: \"30\" is not a valid duration: 30 has no unit (add one of d, h, m, s or ms, e.g. 30s); write it like 30s, 15m, 2h, 7d or 1h30m",
        ),
        (
            &with_base("server:\n  shutdownGracePeriod: -5s\n"),
            "lifeboat.yaml:4:24: server.shutdownGracePeriod: \"-5s\" is not a valid duration: a duration cannot be negative; write it like 30s, 15m, 2h, 7d or 1h30m",
        ),
        (
            &schedule("    retention:\n      maxAge: 2w\n"),
            "lifeboat.yaml:7:15: schedules[0].retention.maxAge: \"2w\" is not a valid duration: unknown unit \"w\" (use d, h, m, s or ms); write it like 30s, 15m, 2h, 7d or 1h30m",
        ),
        // Cron: 5 and 6 fields, macros, garbage.
        (
            &with_base("schedules:\n  - name: nightly\n    cron: \"61 * * * *\"\n"),
            "lifeboat.yaml:5:11: schedules[0].cron: \"61 * * * *\" is not a valid cron expression: minute 61 out of range (0-59); use 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", 6 with seconds first, or a macro such as @daily",
        ),
        (
            &with_base("schedules:\n  - name: nightly\n    cron: \"0 0 25 * * *\"\n"),
            "lifeboat.yaml:5:11: schedules[0].cron: \"0 0 25 * * *\" is not a valid cron expression: hour 25 out of range (0-23); use 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", 6 with seconds first, or a macro such as @daily",
        ),
        (
            &with_base("schedules:\n  - name: nightly\n    cron: \"@fortnightly\"\n"),
            "lifeboat.yaml:5:11: schedules[0].cron: \"@fortnightly\" is not a valid cron expression: unknown macro @fortnightly (known: @hourly, @daily, @midnight, @weekly, @monthly, @yearly); use 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", 6 with seconds first, or a macro such as @daily",
        ),
        (
            &with_base("schedules:\n  - name: nightly\n    cron: every night\n"),
            "lifeboat.yaml:5:11: schedules[0].cron: \"every night\" is not a valid cron expression: it has 2 fields; use 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", 6 with seconds first, or a macro such as @daily",
        ),
        (
            &with_base("schedules:\n  - name: nightly\n    cron: \"0 2 * * * * *\"\n"),
            "lifeboat.yaml:5:11: schedules[0].cron: \"0 2 * * * * *\" is not a valid cron expression: it has 7 fields; use 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", 6 with seconds first, or a macro such as @daily",
        ),
        (
            &with_base("schedules:\n  - name: nightly\n    cron: @daily\n"),
            "lifeboat.yaml:5:11: schedules[0].cron: invalid YAML: unexpected character: `@'; a value cannot start with @ in YAML: quote it, as in cron: \"*/15 * * * *\" or cron: \"@daily\"",
        ),
        // Time zones.
        (
            &schedule("    timezone: Europe/Berln\n"),
            "lifeboat.yaml:6:15: schedules[0].timezone: \"Europe/Berln\" is not a known IANA time zone; use a name such as UTC, Europe/Berlin or America/New_York",
        ),
        // Enums.
        (
            &format!("{BASE}  serverSideEncryption: aws:kms:dsse\n"),
            "lifeboat.yaml:3:25: storage.serverSideEncryption: \"aws:kms:dsse\" is not a valid value; expected one of AES256, aws:kms",
        ),
        (
            &format!("{BASE}  objectLock:\n    mode: governance\n    retainDays: 7\n"),
            "lifeboat.yaml:4:11: storage.objectLock.mode: \"governance\" is not a valid value; expected one of GOVERNANCE, COMPLIANCE",
        ),
        (
            &schedule("    includeClusterResources: maybe\n"),
            "lifeboat.yaml:6:30: schedules[0].includeClusterResources: \"maybe\" is not a valid value; expected one of auto, true, false",
        ),
        // Wrong types.
        (
            &format!("{BASE}  forcePathStyle: yes\n"),
            "lifeboat.yaml:3:19: storage.forcePathStyle: \"yes\" is not a boolean; write true or false",
        ),
        (
            &with_base("volumes:\n  concurrency: [8]\n"),
            "lifeboat.yaml:4:16: volumes.concurrency: expected a whole number, found a list",
        ),
        (
            &with_base("volumes:\n  concurrency: eight\n"),
            "lifeboat.yaml:4:16: volumes.concurrency: \"eight\" is not a whole number; write a whole number, without quotes or units",
        ),
        (
            &with_base("schedules:\n  name: nightly\n"),
            "lifeboat.yaml:4:3: schedules: expected a list of schedules (- name: ...), found a mapping",
        ),
        (
            &schedule("    includeNamespaces: shop\n"),
            "lifeboat.yaml:6:24: schedules[0].includeNamespaces: expected a list of names (- name, or [a, b]), found a single value",
        ),
        // Selectors and names.
        (
            &schedule("    selector: \"tier in (web,\"\n"),
            "lifeboat.yaml:6:15: schedules[0].selector: \"tier in (web,\" is not a valid label selector: a '(' is not closed; write requirements such as app=web, tier!=cache, env in (prod,staging) or !canary, separated by commas",
        ),
        (
            &with_base("schedules:\n  - name: Nightly_Full\n    cron: \"@daily\"\n"),
            "lifeboat.yaml:4:11: schedules[0].name: \"Nightly_Full\" contains 'N'; use lowercase letters, digits and '-', such as nightly or hourly-apps",
        ),
        // Required keys.
        (
            &with_base("schedules:\n  - cron: \"@daily\"\n"),
            "lifeboat.yaml:4:5: schedules[0].name: is required but not set; give each schedule a unique name, such as nightly",
        ),
        (
            "cluster:\n  name: prod\n",
            "lifeboat.yaml:1:1: storage.url: is required but not set; add storage: {url: s3://bucket/prefix} or storage: {url: file:///var/lib/lifeboat}",
        ),
        // Ranges.
        (
            &with_base("archive:\n  compressionLevel: 20\n"),
            "lifeboat.yaml:4:21: archive.compressionLevel: 20 is out of range; use 1 (fastest) to 19 (smallest), 3 is a good balance",
        ),
        (
            &with_base("archive:\n  windowLog: 31\n"),
            "lifeboat.yaml:4:14: archive.windowLog: 31 is out of range; use 10 to 27 (above 27, plain zstd -d could not read the archive)",
        ),
        (
            &schedule("    retention: {keepLast: 0}\n"),
            "lifeboat.yaml:6:27: schedules[0].retention.keepLast: 0 would keep no backup; use 1 or more, or remove keepLast to keep any number",
        ),
        // YAML itself.
        (
            &format!("{BASE}  region: eu-west-1\n  region: us-east-1\n"),
            "lifeboat.yaml:4:3: storage.region: is given twice in the same mapping; keep one of them",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&error(text), expected, "\n{text}");
    }
}

#[test]
fn rules_between_keys_name_the_key_that_breaks_them() {
    assert_eq!(
        error(&with_base(
            "schedules:\n  - name: nightly\n    cron: \"0 2 * * *\"\n  - name: hourly\n    cron: \"@hourly\"\n  - name: nightly\n    cron: \"0 3 * * *\"\n"
        )),
        "lifeboat.yaml:8:11: schedules[2].name: \"nightly\" is already the name of schedules[0]; give each schedule a unique name: it starts the names of its backups"
    );
    assert_eq!(
        error(&format!("{BASE}  kmsKeyId: alias/lifeboat\n")),
        "lifeboat.yaml:3:13: storage.kmsKeyId: is only used with serverSideEncryption: aws:kms; set storage.serverSideEncryption to aws:kms, or remove kmsKeyId"
    );
    assert_eq!(
        error(&format!(
            "{BASE}  serverSideEncryption: AES256\n  kmsKeyId: alias/lifeboat\n"
        )),
        "lifeboat.yaml:4:13: storage.kmsKeyId: is only used with serverSideEncryption: aws:kms; set storage.serverSideEncryption to aws:kms, or remove kmsKeyId"
    );
    assert!(
        Config::parse(
            &format!("{BASE}  serverSideEncryption: aws:kms\n  kmsKeyId: alias/lifeboat\n"),
            ORIGIN
        )
        .is_ok()
    );
    assert_eq!(
        error(&with_base(
            "server:\n  leaderElection:\n    leaseDuration: 20s\n    renewDeadline: 20s\n"
        )),
        "lifeboat.yaml:6:20: server.leaderElection.renewDeadline: renewDeadline (20s) must be shorter than leaseDuration (20s); a leader must give up before its Lease can expire; for example leaseDuration: 15s and renewDeadline: 10s"
    );
    // Only leaseDuration is written: it is the key to blame.
    assert_eq!(
        error(&with_base(
            "server:\n  leaderElection:\n    leaseDuration: 8s\n"
        )),
        "lifeboat.yaml:5:20: server.leaderElection.leaseDuration: renewDeadline (10s) must be shorter than leaseDuration (8s); a leader must give up before its Lease can expire; for example leaseDuration: 15s and renewDeadline: 10s"
    );
    assert_eq!(
        error(&with_base(
            "server:\n  leaderElection:\n    retryPeriod: 10s\n"
        )),
        "lifeboat.yaml:5:18: server.leaderElection.retryPeriod: retryPeriod (10s) must be shorter than renewDeadline (10s); the leader must be able to retry a renewal before the deadline; for example renewDeadline: 10s and retryPeriod: 2s"
    );
    assert_eq!(
        error(
            "storage:\n  url: file:///var/lib/lifeboat\n  objectLock: {mode: COMPLIANCE, retainDays: 30}\n"
        ),
        "lifeboat.yaml:3:15: storage.objectLock: needs S3 storage, but storage.url is a local directory; remove objectLock, or store backups in an S3 bucket with Object Lock enabled"
    );
}

#[test]
fn error_parts_are_available_separately() {
    let err = Config::parse(&with_base("volumes:\n  waitTimeout: soon\n"), ORIGIN).unwrap_err();
    assert_eq!(err.origin(), ORIGIN);
    assert_eq!((err.line(), err.column()), (Some(4), Some(16)));
    assert_eq!(err.key(), "volumes.waitTimeout");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidValue);
    assert!(
        err.problem()
            .starts_with("\"soon\" is not a valid duration"),
        "{}",
        err.problem()
    );
    assert_eq!(err.hint(), Some("write it like 30s, 15m, 2h, 7d or 1h30m"));

    let kinds = [
        (format!("{BASE}  bogus: 1\n"), ConfigErrorKind::UnknownKey),
        ("cluster: {}\n".to_string(), ConfigErrorKind::MissingKey),
        (
            format!("{BASE}  region: a\n  region: b\n"),
            ConfigErrorKind::Duplicate,
        ),
        (with_base("volumes: [1]\n"), ConfigErrorKind::WrongType),
        (format!("{BASE}  kmsKeyId: k\n"), ConfigErrorKind::Conflict),
        (
            "storage: {url: \"s3://x\n".to_string(),
            ConfigErrorKind::Syntax,
        ),
    ];
    for (text, kind) in kinds {
        assert_eq!(
            Config::parse(&text, ORIGIN).unwrap_err().kind(),
            kind,
            "{text}"
        );
    }
}

#[test]
fn load_reports_unreadable_files() {
    let missing = Config::load(Path::new("/nonexistent/lifeboat.yaml")).unwrap_err();
    assert_eq!(missing.kind(), ConfigErrorKind::Io);
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/lifeboat.yaml: cannot read the config file: "),
        "{missing}"
    );
    assert!(
        missing
            .to_string()
            .ends_with("; check the path given with --config or LIFEBOAT_CONFIG"),
        "{missing}"
    );
    assert!(std::error::Error::source(&missing).is_some());

    let dir = Config::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_err();
    assert!(
        dir.to_string()
            .contains("is a directory, not a config file"),
        "{dir}"
    );

    let empty = tempfile::NamedTempFile::new().unwrap();
    let err = Config::load(empty.path()).unwrap_err();
    assert_eq!(err.key(), "storage.url");
    assert_eq!(err.kind(), ConfigErrorKind::MissingKey);
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut config = Config::new("file:///var/lib/lifeboat".parse().unwrap());
    config.validate().unwrap();
    config.server.leader_election.renew_deadline = Duration::from_secs(30);
    let err = config.validate().unwrap_err();
    assert_eq!(err.line(), None);
    assert_eq!(
        err.to_string(),
        "server.leaderElection.leaseDuration: renewDeadline (30s) must be shorter than leaseDuration (15s); a leader must give up before its Lease can expire; for example leaseDuration: 15s and renewDeadline: 10s"
    );
}

#[test]
fn errors_show_nothing_of_the_file_but_the_offending_value() {
    let canary = "CANARY-7f3a9c";
    let texts = [
        format!("# token: {canary}\n{BASE}  bogus: 1\n"),
        format!("cluster:\n  name: {canary}\n{BASE}volumes:\n  waitTimeout: soon\n"),
        format!("{BASE}  kmsKeyId: {canary}\n"),
        format!("cluster: {{name: {canary}}}\nstorage: {{url: \"s3://x\n"),
    ];
    for text in texts {
        let message = Config::parse(&text, ORIGIN).unwrap_err().to_string();
        assert!(!message.contains(canary), "{message}");
    }
    // A secret key pasted where a recipient goes is refused without being repeated.
    let secret = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGP";
    let message = error(&with_base(&format!(
        "encryption:\n  recipients:\n    - {secret}\n"
    )));
    assert!(message.starts_with("lifeboat.yaml:5:7: encryption.recipients[0]: this value is not an age X25519 recipient: it is an age secret key"), "{message}");
    assert!(!message.contains("QYQSZQGP"), "{message}");
}

#[test]
fn age_recipients_are_checked_without_the_age_crate() {
    let good = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let config = Config::parse(
        &with_base(&format!("encryption:\n  recipients: [{good}]\n")),
        ORIGIN,
    )
    .unwrap();
    assert_eq!(config.encryption.recipients[0].as_str(), good);
    assert!(config.encryption.enabled());
    let typo = good.replace("hjy5", "hjy6");
    assert_eq!(
        error(&with_base(&format!(
            "encryption:\n  recipients:\n    - {typo}\n"
        ))),
        format!(
            "lifeboat.yaml:5:7: encryption.recipients[0]: \"{typo}\" is not an age X25519 recipient: its checksum does not match (a character was mistyped or lost); copy the public key (age1...) printed by age-keygen or `age-keygen -y FILE`"
        )
    );
}

#[test]
fn sections_left_empty_take_their_defaults() {
    let text = format!(
        "cluster:\nvolumes:\nencryption:\nschedules:\nserver:\n  leaderElection:\narchive:\n{BASE}"
    );
    assert_eq!(
        Config::parse(&text, ORIGIN).unwrap(),
        Config::parse(BASE, ORIGIN).unwrap()
    );
    assert_eq!(
        error("storage:\n"),
        "lifeboat.yaml:1:1: storage.url: is required but not set; add storage: {url: s3://bucket/prefix} or storage: {url: file:///var/lib/lifeboat}"
    );
}

#[test]
fn anchors_and_merge_keys_work_and_errors_point_at_the_text() {
    let text = with_base(
        "schedules:\n  - &apps\n    name: apps\n    cron: \"@hourly\"\n    includeNamespaces: [shop]\n  - <<: *apps\n    name: apps-nightly\n    cron: \"@daily\"\n",
    );
    let config = Config::parse(&text, ORIGIN).unwrap();
    assert_eq!(
        config.schedules[1].include_namespaces,
        vec!["shop".to_string()]
    );
    let bad = text.replace(
        "includeNamespaces: [shop]",
        "includeNamespaces: [shop]\n    bogus: 1",
    );
    assert_eq!(
        error(&bad),
        "lifeboat.yaml:8:5: schedules[0].bogus: unknown key; expected one of name, cron, timezone, retention, includeNamespaces, excludeNamespaces, includeResources, excludeResources, includeClusterResources, selector, snapshotVolumes"
    );
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that YAML and the config care about, to make mutations meet the interesting paths.
const INTERESTING: &[u8] = b" \n\t:-#&*!|>'\"{}[],?@%`~0123456789.\\/";

fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let mut bytes = text.to_vec();
    for _ in 0..=rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 => bytes[at] = (rng.next() & 0xff) as u8,
            2 => {
                bytes.remove(at);
            }
            3 => bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            4 => {
                // Duplicate a slice: repeated keys, deeper nesting.
                let end = (at + rng.below(40)).min(bytes.len());
                let slice = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, slice);
            }
            _ => {
                // Swap two lines.
                let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                let mut lines: Vec<Vec<u8>> = lines.into_iter().map(<[u8]>::to_vec).collect();
                lines.swap(a, b);
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

/// Whatever the input, the loader returns (no panic), and an error has a problem and a
/// position inside the text.
fn check_never_panics(text: &str) {
    match Config::parse(text, ORIGIN) {
        Ok(config) => config.validate().unwrap(),
        Err(e) => {
            assert!(!e.problem().is_empty(), "{e}");
            if let Some(line) = e.line() {
                assert!(line >= 1 && line <= text.lines().count() + 1, "{e}\n{text}");
            }
            assert!(e.to_string().starts_with(ORIGIN), "{e}");
        }
    }
}

#[test]
fn truncated_and_mutated_examples_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    for file in examples() {
        let original = std::fs::read(&file).unwrap();
        // Every prefix on a character boundary, as a half-written file would be.
        let text = String::from_utf8(original.clone()).unwrap();
        for (cut, _) in text.char_indices().step_by(11) {
            check_never_panics(&text[..cut]);
            runs += 1;
        }
        for _ in 0..1200 {
            let mutated = mutate(&mut rng, &original);
            check_never_panics(&String::from_utf8_lossy(&mutated));
            runs += 1;
        }
    }
    // Hostile shapes: deep nesting, alias bombs, huge scalars, odd characters.
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\nstorage: {url: s3://abc}\n";
    let long = format!("storage:\n  url: s3://{}\n", "a".repeat(200_000));
    for text in [
        deep.as_str(),
        bomb,
        &long,
        "\u{feff}storage: {url: s3://abc}",
        "\0",
        "storage: {url: s3://abc, url: s3://abd}",
        "--- !tag\n...\n",
    ] {
        check_never_panics(text);
        runs += 1;
    }
    assert!(runs > 4000, "{runs}");
}
