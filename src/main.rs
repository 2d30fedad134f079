//! The `lifeboat` command: parse, load the configuration, call the library, print.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use lifeboat::archive::manifest::{Filters, Manifest, Phase};
use lifeboat::config::Config;
use lifeboat::events::{LogObserver, Observers};
use lifeboat::{backup, catalog, report, setup};

/// Backup and restore allocate and free millions of small buffers (pages, objects, JSON
/// values) from several threads; glibc's malloc spent a fifth of a restore's CPU on it and
/// kept freed memory in per-thread arenas (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Disaster recovery for Kubernetes on AWS: backups of every API resource and EBS volume to
/// S3, and restores into the same or another availability zone.
#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Configuration file (YAML); see config/ for documented examples.
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Log format on stderr (the daemon logs to stdout).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level: error, warn, info, debug or trace; RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    /// Output format of results on stdout: text for people, json for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, inspect, download and delete backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore a backup into the cluster of the current kubeconfig/context.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// Restore a backup into a staging cluster or an embedded one, read every object back,
    /// compare it with the backup, and report pass or fail with the recovery time measured.
    /// Exit code 0: passed, 1: failed.
    Drill(DrillArgs),
    /// Run the schedules of the config: backups on time, retention, probes and metrics on
    /// server.listen, leader election between replicas. Logs go to stdout. Stops on SIGTERM.
    Daemon,
    /// List schedules or run one now.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Back up a sample application in an embedded cluster into a local directory, then
    /// restore it into a second embedded cluster and check it: no cluster, AWS account or
    /// network needed.
    #[cfg(feature = "embedded")]
    Demo(DemoArgs),
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Back up the cluster now (runs in this process). Exit code 0: Completed,
    /// 2: PartiallyFailed, 1: Failed.
    Create(CreateArgs),
    /// List the backups in storage, newest first.
    List,
    /// Show a backup's manifest: counts by resource, errors, warnings, volumes.
    Describe {
        /// Backup name.
        name: String,
    },
    /// Download a backup's archive (a tar.zst readable with `zstd -dc | tar -x`).
    Download {
        /// Backup name.
        name: String,
        /// File to write.
        #[arg(short = 'o', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// age identity file (or encryption.identityFile): an encrypted backup is then written
        /// decrypted, as a plain tar.zst. Without one it is written as stored, an age file.
        #[arg(long, value_name = "FILE")]
        identity_file: Option<PathBuf>,
    },
    /// Check that a backup can be restored, without restoring it: the archive's size and
    /// SHA-256 against the manifest, every entry read and checked as a restore would, and each
    /// EBS snapshot still there and completed. Writes nothing. Exit code 0: Verified,
    /// 1: Failed (the report says why).
    Verify {
        /// Backup name.
        name: String,
        /// age identity file for encrypted backups (or encryption.identityFile).
        #[arg(long, value_name = "FILE")]
        identity_file: Option<PathBuf>,
    },
    /// Delete a backup for good (manifest first, then its EBS snapshots, archive and log, every
    /// version). Safe to re-run. A backup under S3 Object Lock is refused, and nothing deleted.
    Delete {
        /// Backup name.
        name: String,
    },
    /// Apply every schedule's retention now (beyond keepLast, older than maxAge; the newest
    /// Completed backup of a schedule is always kept, and so is a backup under S3 Object Lock,
    /// which is reported with its lock date).
    Prune {
        /// Show what would be deleted and what stays locked; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// The schedules, their next run times and their last backup.
    List,
    /// Take a backup of a schedule now (named <schedule>-<UTC time>, with its filters), e.g.
    /// before an upgrade. Exit code 0: Completed, 2: PartiallyFailed, 1: Failed.
    Run {
        /// Schedule name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Backup name: lower-case letters, digits, '-' and '.'.
    name: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// Keep the backup at least this long (sets expiresAt), e.g. 720h or 30d.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
}

#[derive(Debug, Args, Default)]
struct FilterArgs {
    /// Namespaces to back up (globs like team-*; comma-separated). Default: all.
    #[arg(long, value_delimiter = ',', value_name = "NS")]
    include_namespaces: Vec<String>,
    /// Namespaces to leave out (globs; comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NS")]
    exclude_namespaces: Vec<String>,
    /// Resource types to back up, by plural, plural.group or Kind (comma-separated). Default: all.
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE")]
    include_resources: Vec<String>,
    /// Resource types to leave out (comma-separated). Events are left out unless included.
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE")]
    exclude_resources: Vec<String>,
    /// Cluster-scoped resources: auto (yes for a whole-cluster backup), true or false.
    #[arg(long, default_value = "auto", value_parser = ["auto", "true", "false"])]
    include_cluster_resources: String,
    /// Only objects with these labels (a label selector, e.g. app=web,tier!=db).
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    selector: Option<String>,
    /// Snapshot the EBS volumes of the PersistentVolumes in scope (default: volumes.snapshots).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    snapshot_volumes: Option<bool>,
}

impl FilterArgs {
    fn to_filters(&self) -> Filters {
        Filters {
            include_namespaces: self.include_namespaces.clone(),
            exclude_namespaces: self.exclude_namespaces.clone(),
            include_resources: self.include_resources.clone(),
            exclude_resources: self.exclude_resources.clone(),
            include_cluster_resources: self.include_cluster_resources.clone(),
            selector: self.selector.clone(),
            snapshot_volumes: false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum RestoreCommand {
    /// Restore a backup (exit code 0: Completed, 2: PartiallyFailed, 1: Failed). Nothing is
    /// written before the archive's checksum and every snapshot needed are checked.
    Create(RestoreArgs),
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The backup to restore.
    #[arg(long, value_name = "BACKUP")]
    from_backup: String,
    /// Name of the restore (its report is stored as restores/NAME/result.json). Default:
    /// <backup>-restore-<UTC time>.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    options: RestoreOptions,
    /// Show what would be created, updated or left alone, and what differs; write nothing
    /// anywhere (no API write, no EC2 volume, no S3 object).
    #[arg(long)]
    dry_run: bool,
}

/// Options shared by `restore create` and `drill`.
#[derive(Debug, Args)]
struct RestoreOptions {
    /// Namespaces to restore (globs; comma-separated). Their Namespace objects, the CRDs of
    /// their custom resources and the PVs of their claims come along.
    #[arg(long, value_delimiter = ',', value_name = "NS")]
    include_namespaces: Vec<String>,
    /// Namespaces to leave out (globs; comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NS")]
    exclude_namespaces: Vec<String>,
    /// Resource types to restore, by plural, plural.group or Kind (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE")]
    include_resources: Vec<String>,
    /// Resource types to leave out (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE")]
    exclude_resources: Vec<String>,
    /// Only objects with these labels (and what they need).
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    selector: Option<String>,
    /// Restore namespaces under other names: old:new,old2:new2.
    #[arg(long, value_delimiter = ',', value_name = "OLD:NEW")]
    namespace_mapping: Vec<String>,
    /// Recreate volumes in other availability zones: from:to,from2:to2.
    #[arg(long, value_delimiter = ',', value_name = "FROM:TO")]
    zone_mapping: Vec<String>,
    /// Objects that already exist: none (leave them; report exists or differs) or update
    /// (server-side apply the backed-up object).
    #[arg(long, default_value = "none", value_parser = ["none", "update"])]
    existing_resource_policy: String,
    /// Recreate EBS volumes from the backup's snapshots (default true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    restore_volumes: bool,
    /// Restore objects' status too (dropped by default: controllers rebuild it).
    #[arg(long)]
    include_status: bool,
    /// age identity file for encrypted backups (or encryption.identityFile).
    #[arg(long, value_name = "FILE")]
    identity_file: Option<PathBuf>,
}

impl RestoreOptions {
    fn request(
        &self,
        cfg: &Config,
        name: &str,
        backup: &str,
    ) -> anyhow::Result<lifeboat::restore::Request> {
        let mut req = setup::restore_request(cfg, name, backup);
        req.selection = lifeboat::restore::plan::Selection {
            include_namespaces: self.include_namespaces.clone(),
            exclude_namespaces: self.exclude_namespaces.clone(),
            include_resources: self.include_resources.clone(),
            exclude_resources: self.exclude_resources.clone(),
            selector: self.selector.clone(),
            namespace_mapping: setup::parse_mapping("--namespace-mapping", &self.namespace_mapping)
                .map_err(anyhow::Error::msg)?,
            include_status: self.include_status,
        };
        req.zone_mapping = setup::parse_mapping("--zone-mapping", &self.zone_mapping)
            .map_err(anyhow::Error::msg)?;
        req.existing = if self.existing_resource_policy == "update" {
            lifeboat::restore::ExistingPolicy::Update
        } else {
            lifeboat::restore::ExistingPolicy::None
        };
        req.restore_volumes = self.restore_volumes;
        req.identity_file = self
            .identity_file
            .clone()
            .or_else(|| cfg.encryption.identity_file.clone());
        Ok(req)
    }
}

#[derive(Debug, Args)]
struct DrillArgs {
    /// The backup to restore.
    #[arg(long, value_name = "BACKUP")]
    from_backup: String,
    /// Restore into the cluster of this kubeconfig (a staging cluster).
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    target_kubeconfig: Option<PathBuf>,
    /// Context of --target-kubeconfig.
    #[arg(long, value_name = "NAME", requires = "target_kubeconfig")]
    target_context: Option<String>,
    /// `embedded`: an in-memory cluster started for the drill (volumes are not recreated).
    #[arg(long, value_name = "embedded", value_parser = ["embedded"])]
    target: Option<String>,
    /// Name of the drill's restore. Default: <backup>-drill-<UTC time>.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    options: RestoreOptions,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file: exits non-zero with the key and line of the first problem.
    Validate {
        /// The file to check.
        file: PathBuf,
    },
}

#[cfg(feature = "embedded")]
#[derive(Debug, Args)]
struct DemoArgs {
    /// Where to keep the demo's backups (default: a new temporary directory, kept).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are answers, not errors; usage errors exit 1 (the contract's
            // code for usage and config errors), not clap's default 2, which means PartiallyFailed.
            let code = u8::from(e.use_stderr());
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("lifeboat={0},kubesim={0},warn", cli.log_level))
    });
    // The daemon's logs are its output (stdout, as containers expect); commands keep stdout
    // for their results.
    let daemon = matches!(cli.command, Command::Daemon);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || -> Box<dyn std::io::Write> {
            if daemon {
                Box::new(std::io::stdout())
            } else {
                Box::new(std::io::stderr())
            }
        })
        .with_target(false)
        // Colour codes only for a person at a terminal: in `kubectl logs`, CloudWatch or a
        // file they are noise. NO_COLOR (no-color.org) turns them off there too.
        .with_ansi({
            let terminal = if daemon {
                std::io::stdout().is_terminal()
            } else {
                std::io::stderr().is_terminal()
            };
            terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        });
    match cli.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.compact().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Config(ConfigCommand::Validate { file }) => {
            let cfg = Config::load(file)?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"file": file, "valid": true, "schedules": cfg.schedules.len()})
                ),
                Output::Text => println!(
                    "{}: valid ({} schedule(s), storage {})",
                    file.display(),
                    cfg.schedules.len(),
                    cfg.storage.url
                ),
            }
            Ok(0)
        }
        Command::Backup(cmd) => backup_command(&cli, cmd).await,
        Command::Restore(RestoreCommand::Create(args)) => restore_command(&cli, args).await,
        Command::Drill(args) => drill_command(&cli, args).await,
        Command::Daemon => {
            let cfg = load_config(&cli)?;
            lifeboat::daemon::run(cfg, cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            Ok(0)
        }
        Command::Schedule(cmd) => schedule_command(&cli, cmd).await,
        #[cfg(feature = "embedded")]
        Command::Demo(args) => demo(&cli, args).await,
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let Some(path) = &cli.config else {
        bail!(
            "no configuration: pass --config FILE or set LIFEBOAT_CONFIG (config/production.yaml is a documented example)"
        );
    };
    let cfg = Config::load(path)?;
    setup::check_encryption(&cfg).map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

fn observers(cli: &Cli) -> Observers {
    let mut o = Observers::default().with(Arc::new(LogObserver));
    if cli.output == Output::Text && std::io::stderr().is_terminal() {
        o = o.with(Arc::new(setup::ProgressBar::new()));
    }
    o
}

async fn backup_command(cli: &Cli, cmd: &BackupCommand) -> anyhow::Result<u8> {
    let cfg = load_config(cli)?;
    let store = setup::open_store(&cfg).await?;
    match cmd {
        BackupCommand::Create(args) => {
            let conn =
                setup::connect(&cfg, cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            let mut req = setup::backup_request(&cfg, &args.name);
            req.filters = args.filters.to_filters();
            if let Some(s) = args.filters.snapshot_volumes {
                req.snapshot_volumes = s;
            }
            req.filters.snapshot_volumes = req.snapshot_volumes;
            let ec2 = setup::open_ec2(&cfg, req.snapshot_volumes).await?;
            if let Some(ttl) = &args.ttl {
                req.ttl = Some(
                    setup::parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl {ttl}: {e}"))?,
                );
            }
            match backup::run(&conn, &store, &req, ec2.as_ref(), &observers(cli)).await {
                Ok(m) => {
                    print_manifest(cli, &m, None);
                    Ok(u8::try_from(m.phase.exit_code()).unwrap_or(1))
                }
                Err(e) => {
                    if cli.output == Output::Json {
                        println!(
                            "{}",
                            serde_json::json!({"name": args.name, "phase": Phase::Failed, "error": e.to_string()})
                        );
                    }
                    Err(anyhow::Error::new(e).context(format!(
                        "backup {} failed; nothing was committed",
                        args.name
                    )))
                }
            }
        }
        BackupCommand::List => {
            let (summaries, incomplete) = catalog::list(&store).await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&summaries)?),
                Output::Text => {
                    let mut t = report::Table::new(&[
                        "NAME", "PHASE", "CREATED", "DURATION", "ITEMS", "SIZE", "EXPIRES",
                    ]);
                    for s in &summaries {
                        t.row(vec![
                            s.name.clone(),
                            s.phase.to_string(),
                            s.started_at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                            report::duration(report::between(s.started_at, s.completed_at)),
                            s.item_count.to_string(),
                            report::bytes(s.archive_size),
                            s.expires_at.map_or_else(
                                || "never".to_string(),
                                |e| e.strftime("%Y-%m-%d").to_string(),
                            ),
                        ]);
                    }
                    print!("{}", t.render());
                    if summaries.is_empty() {
                        println!("(no backups in {})", store.url());
                    }
                    for i in incomplete {
                        println!(
                            "note: backups/{}/ has no manifest (a failed or running backup); it is not a backup",
                            i.name
                        );
                    }
                }
            }
            Ok(0)
        }
        BackupCommand::Describe { name } => {
            let m = catalog::manifest(&store, name).await?;
            let volumes = catalog::volumes(&store, &m).await?;
            print_manifest(cli, &m, volumes.as_ref());
            Ok(0)
        }
        BackupCommand::Download {
            name,
            file,
            identity_file,
        } => {
            let identities = identity_file
                .as_ref()
                .or(cfg.encryption.identity_file.as_ref())
                .map(|p| lifeboat::archive::seal::Identities::load(p))
                .transpose()?;
            let d = catalog::download_plain(&store, name, file, identities).await?;
            let n = d.bytes;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"name": name, "file": file, "bytes": n, "decrypted": d.decrypted})
                ),
                Output::Text => println!(
                    "downloaded {name} to {} ({}{})",
                    file.display(),
                    report::bytes(n),
                    if d.decrypted { ", decrypted" } else { "" }
                ),
            }
            Ok(0)
        }
        BackupCommand::Verify {
            name,
            identity_file,
        } => {
            let target = lifeboat::verify::open(&store, name).await?;
            // EC2 only for a backup with snapshots: verifying the others needs no AWS access.
            let ec2 = setup::open_ec2(&cfg, target.snapshots() > 0).await?;
            let mut req = lifeboat::verify::Request::new(name);
            req.identity_file = identity_file
                .clone()
                .or_else(|| cfg.encryption.identity_file.clone());
            let report =
                lifeboat::verify::check(&store, target, &req, ec2.as_ref(), &observers(cli)).await;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => print!("{}", report.text()),
            }
            Ok(report.phase.exit_code())
        }
        BackupCommand::Prune { dry_run } => {
            let ec2 = if *dry_run {
                None
            } else {
                setup::open_ec2(&cfg, true).await?
            };
            let mut outcomes = serde_json::Map::new();
            let mut t = report::Table::new(&["SCHEDULE", "BACKUP", "ACTION", "REASON"]);
            for s in &cfg.schedules {
                let o = lifeboat::retention::apply(
                    &store,
                    ec2.as_ref(),
                    &s.name,
                    setup::retention_policy(s),
                    jiff::Timestamp::now(),
                    *dry_run,
                )
                .await?;
                let verb = if *dry_run { "would delete" } else { "deleted" };
                for e in &o.deleted {
                    t.row(vec![
                        s.name.clone(),
                        e.name.clone(),
                        verb.into(),
                        e.reason.clone(),
                    ]);
                }
                for e in &o.failed {
                    t.row(vec![
                        s.name.clone(),
                        e.name.clone(),
                        "failed".into(),
                        e.reason.clone(),
                    ]);
                }
                for l in &o.locked {
                    t.row(vec![
                        s.name.clone(),
                        l.name.clone(),
                        "kept".into(),
                        format!("{}; {}", l.lock, l.reason),
                    ]);
                }
                for d in &o.debris {
                    t.row(vec![
                        s.name.clone(),
                        d.clone(),
                        verb.into(),
                        "a run that never finished (no manifest)".into(),
                    ]);
                }
                outcomes.insert(s.name.clone(), serde_json::to_value(&o)?);
            }
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
                Output::Text => print!("{}", t.render()),
            }
            Ok(0)
        }
        BackupCommand::Delete { name } => {
            let ec2 = setup::open_ec2(&cfg, true).await?;
            let deleted = catalog::delete(&store, name, ec2.as_ref()).await?;
            match cli.output {
                Output::Json => {
                    println!(
                        "{}",
                        serde_json::json!({"name": name, "deleted": deleted.objects, "snapshots": deleted.snapshots})
                    );
                }
                Output::Text => println!(
                    "deleted backup {name} ({} objects, {} snapshots)",
                    deleted.objects.len(),
                    deleted.snapshots.len()
                ),
            }
            Ok(0)
        }
    }
}

/// The manifest for people, or as JSON (with `volumes` added for describe).
fn print_manifest(cli: &Cli, m: &Manifest, volumes: Option<&serde_json::Value>) {
    if cli.output == Output::Json {
        let mut v = serde_json::to_value(m).expect("manifest serialises");
        if let Some(vols) = volumes {
            v["volumes"] = vols.get("volumes").cloned().unwrap_or_else(|| vols.clone());
        } else if volumes.is_none()
            && matches!(cli.command, Command::Backup(BackupCommand::Describe { .. }))
        {
            v["volumes"] = serde_json::json!([]);
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
        return;
    }
    print!("{}", setup::describe_text(m, volumes));
}

#[cfg(feature = "embedded")]
async fn demo(cli: &Cli, args: &DemoArgs) -> anyhow::Result<u8> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("lifeboat-demo-")
            .tempdir()?
            .keep(),
    };
    let outcome = lifeboat::demo::run(&dir, &observers(cli)).await?;
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"backup": outcome.manifest, "drill": outcome.drill})
            )?
        ),
        Output::Text => print!("{}", outcome.text),
    }
    if !outcome.drill.passed {
        return Ok(1);
    }
    Ok(u8::try_from(outcome.manifest.phase.exit_code()).unwrap_or(1))
}

fn default_name(backup: &str, what: &str) -> String {
    let mut name = format!(
        "{backup}-{what}-{}",
        jiff::Timestamp::now().strftime("%Y%m%d%H%M%S")
    );
    name.truncate(253);
    name
}

async fn restore_command(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<u8> {
    let cfg = load_config(cli)?;
    let store = setup::open_store(&cfg).await?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.from_backup, "restore"));
    let mut req = args.options.request(&cfg, &name, &args.from_backup)?;
    req.dry_run = args.dry_run;
    let target = setup::connect(&cfg, cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
    let ec2 = setup::open_ec2(&cfg, req.restore_volumes).await?;
    let result = lifeboat::restore::run(&store, &target, &req, ec2.as_ref(), &observers(cli))
        .await
        .map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "restore {name} of backup {} failed",
                args.from_backup
            ))
        })?;
    match cli.output {
        Output::Json => println!("{}", result.to_json()),
        Output::Text => print!("{}", setup::restore_text(&result)),
    }
    Ok(u8::try_from(result.phase.exit_code()).unwrap_or(1))
}

async fn drill_command(cli: &Cli, args: &DrillArgs) -> anyhow::Result<u8> {
    let cfg = load_config(cli)?;
    let store = setup::open_store(&cfg).await?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.from_backup, "drill"));
    let mut req = args.options.request(&cfg, &name, &args.from_backup)?;
    let report = if let Some(path) = &args.target_kubeconfig {
        let target =
            lifeboat::cluster::connect(Some(path), args.target_context.as_deref(), None).await?;
        let ec2 = setup::open_ec2(&cfg, req.restore_volumes).await?;
        lifeboat::drill::run(
            &store,
            &target,
            &path.display().to_string(),
            &req,
            ec2.as_ref(),
            &observers(cli),
        )
        .await?
    } else if args.target.as_deref() == Some("embedded") {
        embedded_drill(&store, &mut req, cli).await?
    } else {
        bail!(
            "drill needs a target: --target-kubeconfig FILE (a staging cluster) or --target embedded"
        );
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", setup::drill_text(&report)),
    }
    Ok(u8::from(!report.passed))
}

#[cfg(feature = "embedded")]
async fn embedded_drill(
    store: &lifeboat::store::Store,
    req: &mut lifeboat::restore::Request,
    cli: &Cli,
) -> anyhow::Result<lifeboat::drill::DrillReport> {
    // An in-memory cluster has no EBS: its drill checks the resources only.
    req.restore_volumes = false;
    let sim = kubesim::KubeSim::start().await?;
    let target = lifeboat::cluster::Connection {
        client: sim.client(),
        name: "embedded".into(),
    };
    Ok(lifeboat::drill::run(
        store,
        &target,
        "embedded",
        req,
        None::<&lifeboat::volumes::ec2::AwsEc2>,
        &observers(cli),
    )
    .await?)
}

#[cfg(not(feature = "embedded"))]
async fn embedded_drill(
    _: &lifeboat::store::Store,
    _: &mut lifeboat::restore::Request,
    _: &Cli,
) -> anyhow::Result<lifeboat::drill::DrillReport> {
    bail!(
        "this build has no embedded cluster (built without the `embedded` feature); use --target-kubeconfig"
    )
}

async fn schedule_command(cli: &Cli, cmd: &ScheduleCommand) -> anyhow::Result<u8> {
    let cfg = load_config(cli)?;
    let store = setup::open_store(&cfg).await?;
    match cmd {
        ScheduleCommand::List => {
            let (backups, _) = catalog::list(&store).await?;
            let next = lifeboat::daemon::next_runs(&cfg, 3);
            let mut rows = Vec::new();
            for (s, (_, runs)) in cfg.schedules.iter().zip(next) {
                let last = backups
                    .iter()
                    .find(|b| b.schedule.as_deref() == Some(s.name.as_str()));
                rows.push(serde_json::json!({
                    "name": s.name, "cron": s.cron.to_string(), "timezone": s.timezone.to_string(),
                    "nextRuns": runs, "lastBackup": last,
                    "retention": {"keepLast": s.retention.keep_last, "maxAge": s.retention.max_age.map(|d| d.to_string())},
                }));
            }
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => {
                    let mut t = report::Table::new(&[
                        "SCHEDULE",
                        "CRON",
                        "TIMEZONE",
                        "NEXT RUN",
                        "LAST BACKUP",
                        "PHASE",
                    ]);
                    for (s, r) in cfg.schedules.iter().zip(&rows) {
                        let next = r["nextRuns"][0].as_str().unwrap_or("-").to_string();
                        let last = cfg_last(r);
                        t.row(vec![
                            s.name.clone(),
                            s.cron.to_string(),
                            s.timezone.to_string(),
                            next,
                            last.0,
                            last.1,
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
            Ok(0)
        }
        ScheduleCommand::Run { name } => {
            let Some(s) = cfg.schedule(name) else {
                let names: Vec<&str> = cfg.schedules.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "no schedule {name:?} in the config; schedules: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                );
            };
            let req = setup::schedule_request(&cfg, s, jiff::Timestamp::now());
            let conn =
                setup::connect(&cfg, cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            let ec2 = setup::open_ec2(&cfg, req.snapshot_volumes).await?;
            match backup::run(&conn, &store, &req, ec2.as_ref(), &observers(cli)).await {
                Ok(m) => {
                    print_manifest(cli, &m, None);
                    Ok(u8::try_from(m.phase.exit_code()).unwrap_or(1))
                }
                Err(e) => Err(anyhow::Error::new(e).context(format!(
                    "backup {} of schedule {name} failed; nothing was committed",
                    req.name
                ))),
            }
        }
    }
}

/// The last backup's name and phase for the schedule table.
fn cfg_last(row: &serde_json::Value) -> (String, String) {
    let last = &row["lastBackup"];
    (
        last["name"].as_str().unwrap_or("-").to_string(),
        last["phase"].as_str().unwrap_or("-").to_string(),
    )
}
