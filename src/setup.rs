//! Wiring shared by the CLI, the daemon and the demo: configuration onto the adapters (config
//! types never reach the SDKs), the progress bar, and the text rendering of a manifest.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::archive::manifest::Manifest;
use crate::archive::seal::Recipients;
use crate::archive::writer::CompressionOptions;
use crate::cluster::{self, ClusterError, Connection};
use crate::config::{self, Config};
use crate::events::{Event, Observer};
use crate::report;
use crate::store::{self, Store, StoreError};
use crate::volumes::ec2;

/// Checks what the config's checks cannot: that every `encryption.recipients` key is one age
/// can encrypt to. A backup must never go out unencrypted because a key was unusable.
pub fn check_encryption(cfg: &Config) -> Result<(), String> {
    Recipients::from_config(&cfg.encryption.recipients)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Storage settings from the config.
pub fn store_settings(cfg: &Config) -> store::Settings {
    let s = &cfg.storage;
    store::Settings {
        region: s.region.clone(),
        endpoint: s.endpoint.as_ref().map(ToString::to_string),
        force_path_style: s.force_path_style,
        server_side_encryption: s.server_side_encryption.map(|e| match e {
            config::ServerSideEncryption::Aes256 => store::Sse::Aes256,
            config::ServerSideEncryption::AwsKms => store::Sse::AwsKms,
        }),
        kms_key_id: s.kms_key_id.clone(),
        checksum_mode: match s.checksum_mode {
            config::ChecksumMode::WhenSupported => store::ChecksumMode::WhenSupported,
            config::ChecksumMode::WhenRequired => store::ChecksumMode::WhenRequired,
        },
        object_lock: s.object_lock.map(|l| store::ObjectLock {
            mode: match l.mode {
                config::ObjectLockMode::Governance => store::ObjectLockMode::Governance,
                config::ObjectLockMode::Compliance => store::ObjectLockMode::Compliance,
            },
            retain_days: l.retain_days,
        }),
        ..store::Settings::default()
    }
}

pub async fn open_store(cfg: &Config) -> Result<Store, StoreError> {
    Store::open(&cfg.storage.url.to_string(), &store_settings(cfg)).await
}

/// EC2 settings from the config's `volumes` section (region defaults to the storage's).
pub fn ec2_settings(cfg: &Config) -> ec2::Settings {
    ec2::Settings {
        region: cfg.volumes_region().map(String::from),
        endpoint: cfg.volumes.endpoint.as_ref().map(ToString::to_string),
        ..ec2::Settings::default()
    }
}

/// The EC2 client volume snapshots use, when they are on.
pub async fn open_ec2(cfg: &Config, snapshots: bool) -> Result<Option<ec2::AwsEc2>, ec2::Ec2Error> {
    if !snapshots {
        return Ok(None);
    }
    ec2::AwsEc2::new(&ec2_settings(cfg)).await.map(Some)
}

/// A backup request with the config's archive and volume settings.
pub fn backup_request(cfg: &Config, name: &str) -> crate::backup::Request {
    let mut req = crate::backup::Request::new(name);
    req.compression = compression(cfg);
    // check_encryption ran when the config was loaded, and the config's own check already
    // parsed each key: an error here is a broken invariant, and going on would write backups
    // the operator asked to be encrypted in the clear.
    req.recipients = Recipients::from_config(&cfg.encryption.recipients)
        .expect("encryption.recipients were checked when the config was loaded");
    req.snapshot_volumes = cfg.volumes.snapshots;
    req.volume_concurrency = cfg.volumes.concurrency as usize;
    req.volume_wait_timeout = cfg.volumes.wait_timeout.as_std();
    req
}

/// The backup a schedule takes at `tick`: named `<schedule>-<UTC yyyymmddhhmmss>`, with the
/// schedule's filters, snapshot setting and `maxAge` as the manifest's expiry.
pub fn schedule_request(
    cfg: &Config,
    schedule: &config::Schedule,
    tick: jiff::Timestamp,
) -> crate::backup::Request {
    let mut req = backup_request(cfg, &schedule.backup_name(tick));
    req.schedule = Some(schedule.name.clone());
    req.snapshot_volumes = schedule.snapshot_volumes_or(cfg.volumes.snapshots);
    req.ttl = schedule.retention.max_age.map(config::Duration::as_std);
    req.filters = crate::archive::manifest::Filters {
        include_namespaces: schedule.include_namespaces.clone(),
        exclude_namespaces: schedule.exclude_namespaces.clone(),
        include_resources: schedule.include_resources.clone(),
        exclude_resources: schedule.exclude_resources.clone(),
        include_cluster_resources: schedule.include_cluster_resources.to_string(),
        selector: schedule.selector.as_ref().map(ToString::to_string),
        snapshot_volumes: req.snapshot_volumes,
    };
    req
}

/// A schedule's retention policy.
pub fn retention_policy(schedule: &config::Schedule) -> crate::retention::Policy {
    crate::retention::Policy {
        keep_last: schedule.retention.keep_last,
        max_age: schedule.retention.max_age.map(config::Duration::as_std),
    }
}

/// A restore request with the config's volume settings.
pub fn restore_request(cfg: &Config, name: &str, backup: &str) -> crate::restore::Request {
    let mut req = crate::restore::Request::new(name, backup);
    req.volume_concurrency = cfg.volumes.concurrency as usize;
    req.volume_wait_timeout = cfg.volumes.wait_timeout.as_std();
    req
}

/// `old:new,old2:new2` as a map, refusing a pair without both sides or a source given twice.
pub fn parse_mapping(
    flag: &str,
    pairs: &[String],
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut map = std::collections::BTreeMap::new();
    for pair in pairs.iter().filter(|p| !p.is_empty()) {
        let (from, to) = pair
            .split_once(':')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| format!("{flag} {pair:?}: write it as from:to"))?;
        if map.insert(from.to_string(), to.to_string()).is_some() {
            return Err(format!("{flag}: {from:?} is mapped twice"));
        }
    }
    Ok(map)
}

/// `restore create` for people: the counts, every item that was not simply created, volumes.
pub fn restore_text(r: &crate::restore::result::RestoreResult) -> String {
    use crate::restore::result::Action;
    let mut out = String::new();
    let c = &r.counts;
    let _ = writeln!(
        out,
        "Restore:   {}{}",
        r.name,
        if r.dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "Backup:    {}", r.backup);
    let _ = writeln!(out, "Phase:     {}", r.phase);
    let _ = writeln!(
        out,
        "Duration:  {}",
        report::duration(report::between(r.started_at, r.completed_at))
    );
    let (created, updated) = if r.dry_run {
        ("would create", "would update")
    } else {
        ("created", "updated")
    };
    let _ = writeln!(
        out,
        "Objects:   {} {created}, {} {updated}, {} exist, {} differ, {} skipped, {} failed",
        c.created, c.updated, c.exists, c.differs, c.skipped, c.failed
    );
    let notable: Vec<_> = r
        .items
        .iter()
        .filter(|i| !matches!(i.action, Action::Created | Action::WouldCreate))
        .collect();
    if !notable.is_empty() {
        let mut t = report::Table::new(&["\n  ACTION", "RESOURCE", "NAMESPACE", "NAME", "MESSAGE"]);
        for i in notable {
            t.row(vec![
                format!("  {}", i.action.as_str()),
                i.resource.clone(),
                i.namespace.clone().unwrap_or_default(),
                i.name.clone(),
                i.message.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&t.render());
    }
    if !r.volumes.is_empty() {
        let mut t = report::Table::new(&[
            "\n  PERSISTENTVOLUME",
            "SNAPSHOT",
            "OLD VOLUME",
            "NEW VOLUME",
            "AZ",
            "ERROR",
        ]);
        for v in &r.volumes {
            t.row(vec![
                format!("  {}", v.persistent_volume),
                v.snapshot_id.clone(),
                v.old_volume_id.clone().unwrap_or_default(),
                v.new_volume_id.clone().unwrap_or_else(|| {
                    if r.dry_run {
                        "(dry run)".into()
                    } else {
                        "-".into()
                    }
                }),
                v.availability_zone.clone(),
                v.error.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

/// The drill's verdict for people.
pub fn drill_text(d: &crate::drill::DrillReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Drill:     {} of backup {} into {}",
        d.name, d.backup, d.target
    );
    let _ = writeln!(
        out,
        "Result:    {}",
        if d.passed { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(
        out,
        "RTO:       {} to restore, {} to verify",
        report::duration(Duration::from_secs_f64(d.rto_seconds)),
        report::duration(Duration::from_secs_f64(d.verify_seconds))
    );
    let c = &d.restore.counts;
    let _ = writeln!(
        out,
        "Objects:   {} checked; {} created, {} exist, {} differ, {} skipped, {} failed",
        d.checked, c.created, c.exists, c.differs, c.skipped, c.failed
    );
    for r in &d.reasons {
        let _ = writeln!(out, "Reason:    {r}");
    }
    for m in &d.mismatches {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            m.resource,
            m.namespace
                .as_ref()
                .map_or_else(|| m.name.clone(), |ns| format!("{ns}/{}", m.name)),
            m.differences.join("; ")
        );
    }
    out
}

/// Compression from the config's `archive` section.
pub fn compression(cfg: &Config) -> CompressionOptions {
    CompressionOptions {
        level: cfg.archive.compression_level,
        window_log: cfg.archive.window_log,
        long_distance_matching: cfg.archive.long_distance_matching,
        workers: cfg.archive.compression_workers,
    }
}

/// Connects to the cluster: flags win over the config's `cluster` section.
pub async fn connect(
    cfg: &Config,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Connection, ClusterError> {
    let kubeconfig = kubeconfig.or(cfg.cluster.kubeconfig.as_deref());
    let context = context.or(cfg.cluster.context.as_deref());
    cluster::connect(kubeconfig, context, cfg.cluster.name.as_deref()).await
}

/// A duration flag such as `--ttl 30d`, in the config's syntax.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<config::Duration>()
        .map(config::Duration::as_std)
        .map_err(|e| e.to_string())
}

/// A one-line progress display on a terminal: types done, objects, archive bytes, rate.
#[derive(Debug)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    state: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    types: u64,
    types_done: u64,
    objects: u64,
    bytes: u64,
    started: Option<Instant>,
}

impl ProgressBar {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressBar {
            bar,
            state: Mutex::new(Progress::default()),
        }
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for ProgressBar {
    fn event(&self, e: &Event) {
        let mut p = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = *p.started.get_or_insert_with(Instant::now);
        match e {
            Event::TypesDiscovered { types } => p.types = *types,
            Event::PageListed { objects, .. } => p.objects += objects,
            Event::TypeDone { .. } | Event::TypeFailed { .. } => p.types_done += 1,
            Event::ArchiveBytes { bytes } => p.bytes += bytes,
            Event::BackupFinished { .. } | Event::BackupFailed { .. } => {
                self.bar.finish_and_clear();
                return;
            }
            _ => return,
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "types {}/{}  objects {}  archive {}  {:.0} objects/s",
            p.types_done,
            p.types,
            p.objects,
            report::bytes(p.bytes),
            p.objects as f64 / secs
        ));
    }
}

/// `backup describe` and `backup create` for people.
pub fn describe_text(m: &Manifest, volumes: Option<&serde_json::Value>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name:        {}", m.name);
    let _ = writeln!(out, "Phase:       {}", m.phase);
    let _ = writeln!(
        out,
        "Cluster:     {} ({})",
        m.cluster.name, m.cluster.server_version
    );
    if let Some(s) = &m.schedule {
        let _ = writeln!(out, "Schedule:    {s}");
    }
    let _ = writeln!(
        out,
        "Started:     {}",
        m.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        out,
        "Duration:    {}",
        report::duration(report::between(m.started_at, m.completed_at))
    );
    let _ = writeln!(out, "Items:       {}", m.item_count);
    let _ = writeln!(
        out,
        "Archive:     {} ({}, sha256 {})",
        m.archive.key,
        report::bytes(m.archive.size),
        m.archive.sha256
    );
    if let Some(enc) = &m.archive.encryption {
        let _ = writeln!(
            out,
            "Encryption:  {} for {} recipient(s)",
            enc.scheme,
            enc.recipients.len()
        );
    }
    let _ = writeln!(
        out,
        "Expires:     {}",
        m.expires_at.map_or_else(
            || "never".to_string(),
            |e| e.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
        )
    );
    let f = &m.filters;
    let list = |v: &[String]| {
        if v.is_empty() {
            "*".to_string()
        } else {
            v.join(",")
        }
    };
    let _ = writeln!(
        out,
        "Filters:     namespaces {} (excluding {}), resources {} (excluding {}), cluster resources {}{}",
        list(&f.include_namespaces),
        if f.exclude_namespaces.is_empty() {
            "none".to_string()
        } else {
            f.exclude_namespaces.join(",")
        },
        list(&f.include_resources),
        if f.exclude_resources.is_empty() {
            "none".to_string()
        } else {
            f.exclude_resources.join(",")
        },
        f.include_cluster_resources,
        f.selector
            .as_deref()
            .map(|s| format!(", selector {s}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "\nResources:");
    let mut t = report::Table::new(&["  RESOURCE", "COUNT"]);
    for (r, n) in m.resources.iter().filter(|(_, n)| **n > 0) {
        t.row(vec![format!("  {r}"), n.to_string()]);
    }
    out.push_str(&t.render());
    let empty = m.resources.values().filter(|n| **n == 0).count();
    if empty > 0 {
        let _ = writeln!(
            out,
            "  ({empty} more resource types were listed and had no objects)"
        );
    }
    if let Some(vols) = volumes
        .and_then(|v| v.get("volumes"))
        .and_then(serde_json::Value::as_array)
        .filter(|v| !v.is_empty())
    {
        let _ = writeln!(out, "\nVolumes:");
        let mut t = report::Table::new(&[
            "  PERSISTENTVOLUME",
            "CLAIM",
            "VOLUME",
            "SNAPSHOT",
            "AZ",
            "TYPE",
            "SIZE",
            "STATE",
        ]);
        for v in vols {
            let s = |k: &str| {
                v.get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            let claim = v.get("claim").map_or_else(
                || "-".into(),
                |c| {
                    format!(
                        "{}/{}",
                        c["namespace"].as_str().unwrap_or("-"),
                        c["name"].as_str().unwrap_or("-")
                    )
                },
            );
            let size = v
                .get("sizeGiB")
                .and_then(serde_json::Value::as_u64)
                .map_or_else(|| "-".to_string(), |g| format!("{g}Gi"));
            t.row(vec![
                format!("  {}", s("persistentVolume")),
                claim,
                s("volumeId"),
                s("snapshotId"),
                s("availabilityZone"),
                s("volumeType"),
                size,
                s("state"),
            ]);
        }
        out.push_str(&t.render());
    }
    for (title, issues) in [("Errors", &m.errors), ("Warnings", &m.warnings)] {
        if issues.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for i in issues {
            let what = match (&i.namespace, &i.name) {
                (Some(ns), Some(n)) => format!("{} {ns}/{n}", i.resource),
                (None, Some(n)) => format!("{} {n}", i.resource),
                (Some(ns), None) => format!("{} in {ns}", i.resource),
                (None, None) => i.resource.clone(),
            };
            let _ = writeln!(out, "  {what}: {}", i.message);
        }
    }
    out
}
