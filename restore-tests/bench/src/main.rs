//! lifeboat's benchmark: for synthetic clusters of the sizes asked, in one run on one machine,
//! lifeboat's backup (to a local directory and to moto S3) against the floor of a client that
//! only fetches every list page, against the `kubectl get -o json | tar | zstd` script, and
//! against Velero's archive format; lifeboat's restore against raw concurrent creates; and the
//! archive's size on the real-world scenarios, once and in 40 namespaces.
//!
//! ```sh
//! cargo build --release
//! cargo run --release -p lifeboat-bench -- --sizes 1000,10000,100000 \
//!     [--lifeboat target/release/lifeboat] [--report docs/benchmarks.json] \
//!     [--markdown docs/benchmarks.md] [--skip-kubectl] [--skip-s3]
//! ```
//!
//! Every figure is measured (a wall time around a process or a client, sizes of the bytes
//! written), none is derived from another; only ratios are computed. Each tool is run once on
//! a small cluster before anything is measured (warm caches, not counted). See
//! `docs/benchmarks.md` for the figures and what each one is.

mod floor;
mod formats;
mod report;
mod run;
mod scenarios;
mod sim;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use serde::Serialize;

use crate::floor::{Create, CreateFloor, ListFloor};
use crate::formats::Velero;
use crate::run::{Backup, KubectlScript, Lifeboat, Restore};
use crate::sim::Sim;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "lifeboat's benchmark (see docs/benchmarks.md)"
)]
struct Args {
    /// Synthetic cluster sizes, in objects (plus one namespace per 200 and the CRD).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// The lifeboat binary to measure (a release build).
    #[arg(long, default_value = "target/release/lifeboat")]
    lifeboat: PathBuf,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Leave out the kubectl script.
    #[arg(long)]
    skip_kubectl: bool,
    /// Leave out the backups to moto S3.
    #[arg(long)]
    skip_s3: bool,
    /// Runs per size of each timed figure (the median is reported). Default: 3 below 100k
    /// objects, 1 from 100k.
    #[arg(long)]
    runs: Option<usize>,
    /// The real-world scenarios (default: $LIFEBOAT_FIXTURES, else ../shared/fixtures/real-world
    /// next to the workspace).
    #[arg(long, env = "LIFEBOAT_FIXTURES")]
    fixtures: Option<PathBuf>,
    /// Namespaces the applications are copied into for the redundancy target.
    #[arg(long, default_value_t = 40)]
    copies: usize,
    /// Objects in the warm-up cluster (not measured).
    #[arg(long, default_value_t = 1000)]
    warmup: usize,
}

/// Where the workspace is (for relative default paths when run from elsewhere).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn resolve(p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        workspace().join(p)
    }
}

/// Progress on stderr, with the time since the start.
macro_rules! say {
    ($t0:expr, $($arg:tt)*) => {
        eprintln!("[{:>7.1}s] {}", $t0.elapsed().as_secs_f64(), format!($($arg)*))
    };
}

/// Shared state of one run.
struct Bench {
    t0: Instant,
    lifeboat: Lifeboat,
    kubectl: Option<PathBuf>,
    moto: Option<lifeboat_testkit::Moto>,
    dir: tempfile::TempDir,
}

/// Everything measured for one synthetic size.
#[derive(Debug, Serialize)]
pub struct SizeResult {
    pub objects: usize,
    pub namespaces: usize,
    pub seed_seconds: f64,
    /// Objects kubesim stores (system namespaces, the CRD and namespaces included).
    pub stored_objects: u64,
    pub stored_json_bytes: u64,
    /// Bytes of object JSON in lifeboat's archive (each object once, as listed): the base of
    /// the MB/s figures.
    pub archived_json_bytes: u64,
    pub archived_objects: u64,
    pub runs: usize,
    pub list_floor: Vec<ListFloor>,
    pub backup_local: Vec<Backup>,
    pub backup_s3: Vec<Backup>,
    pub kubectl: Vec<KubectlScript>,
    pub velero: Velero,
    pub restore: Vec<Restore>,
    pub create_floor: Vec<CreateFloor>,
}

/// One row of the compression comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Compression {
    pub name: String,
    pub objects: u64,
    pub json_bytes: u64,
    pub lifeboat_archive_bytes: u64,
    pub velero_tar_gz_bytes: u64,
    /// `zstd -3` / `zstd -3 --long=27` of lifeboat's tar (the archive decompressed).
    pub lifeboat_tar_zstd3_bytes: u64,
    pub lifeboat_tar_zstd3_long27_bytes: u64,
    /// The same for Velero's tar (uncompressed).
    pub velero_tar_zstd3_bytes: u64,
    pub velero_tar_zstd3_long27_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct CompressionResult {
    pub scenarios: Vec<Compression>,
    pub one_copy: Option<Compression>,
    pub copies: Option<Compression>,
    pub copies_seeding: Option<scenarios::Seeding>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t0 = Instant::now();
    let bin = resolve(&args.lifeboat);
    if !bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release`",
            bin.display()
        );
    }
    let mut notes = Vec::new();
    if let Some(n) = stale_binary(&bin) {
        say!(t0, "warning: {n}");
        notes.push(n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let lifeboat = Lifeboat::new(&bin);
    let version = rt.block_on(lifeboat.version())?;
    let kubectl = if args.skip_kubectl {
        None
    } else {
        Some(kubesim::kubectl::find().context(kubesim::kubectl::INSTALL_HINT)?)
    };
    let moto = if args.skip_s3 {
        None
    } else {
        let m = lifeboat_testkit::Moto::start().context(lifeboat_testkit::INSTALL_HINT)?;
        rt.block_on(m.create_bucket("bench"));
        Some(m)
    };
    let bench = Bench {
        t0,
        lifeboat,
        kubectl,
        moto,
        dir: tempfile::tempdir()?,
    };
    say!(t0, "{version} ({}), sizes {:?}", bin.display(), args.sizes);

    if args.warmup > 0 {
        say!(t0, "warm-up on {} objects (not measured)", args.warmup);
        rt.block_on(measure_size(&bench, args.warmup, 1, "warmup"))?;
    }
    let mut sizes = Vec::new();
    for &n in &args.sizes {
        let runs = args.runs.unwrap_or(if n < 100_000 { 3 } else { 1 }).max(1);
        let r = rt.block_on(measure_size(&bench, n, runs, "size"))?;
        print_size(&r);
        sizes.push(r);
    }

    let fixtures = args.fixtures.clone().or_else(|| {
        let p = workspace().join("../shared/fixtures/real-world");
        p.is_dir().then_some(p)
    });
    let compression = if let Some(root) = &fixtures {
        Some(rt.block_on(compression(&bench, root, args.copies))?)
    } else {
        let n = "LIFEBOAT_FIXTURES is not set and ../shared/fixtures/real-world is missing: \
                 the compression targets were not measured"
            .to_string();
        say!(t0, "warning: {n}");
        notes.push(n);
        None
    };
    let total_seconds = t0.elapsed().as_secs_f64();
    say!(t0, "done");

    let report = report::Report {
        machine: report::Machine::read(),
        date: report::Report::now(),
        lifeboat_version: version,
        sizes_asked: args.sizes.clone(),
        sizes,
        compression,
        notes,
        total_seconds,
        skip_kubectl: args.skip_kubectl,
        skip_s3: args.skip_s3,
        warmup: args.warmup,
    };
    println!("{}", report.summary());
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&report.json())? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        say!(t0, "JSON report written to {}", p.display());
    }
    if let Some(p) = &args.markdown {
        let kept = std::fs::read_to_string(p).ok();
        std::fs::write(p, report.markdown(kept.as_deref()))
            .with_context(|| format!("writing {}", p.display()))?;
        say!(t0, "Markdown report written to {}", p.display());
    }
    Ok(())
}

/// A warning when the binary is older than a source file of lifeboat's.
fn stale_binary(bin: &Path) -> Option<String> {
    let built = std::fs::metadata(bin).ok()?.modified().ok()?;
    let mut newest = None;
    let mut stack = vec![workspace().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).ok()?.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(t, _)| m > *t)
            {
                newest = Some((m, p));
            }
        }
    }
    let (t, p) = newest?;
    (t > built).then(|| {
        format!(
            "{} is older than {} (rebuild with `cargo build --release`)",
            bin.display(),
            p.display()
        )
    })
}

fn local_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let store = dir.join("store");
    let path = dir.join("local.yaml");
    std::fs::write(
        &path,
        lifeboat_testkit::file_config(&store, "volumes:\n  snapshots: false\n"),
    )?;
    Ok(path)
}

fn s3_config(dir: &Path, endpoint: &str, prefix: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("s3.yaml");
    std::fs::write(
        &path,
        lifeboat_testkit::s3_config(endpoint, "bench", prefix, "volumes:\n  snapshots: false\n"),
    )?;
    Ok(path)
}

/// Seeds a synthetic cluster of `n` objects and measures everything on it, `runs` times.
async fn measure_size(b: &Bench, n: usize, runs: usize, tag: &str) -> anyhow::Result<SizeResult> {
    let t0 = b.t0;
    let dir = b.dir.path().join(format!("{tag}-{n}"));
    std::fs::create_dir_all(&dir)?;
    let source = Sim::start()?;
    let seed_seconds = sim::seed_synthetic(&source, n)?;
    say!(
        t0,
        "{n} objects seeded in {seed_seconds:.2} s ({} stored, {:.1} MB of JSON)",
        source.stored_objects(),
        source.stored_json_bytes() as f64 / 1e6
    );
    let client = kubesim::client_for(source.kubeconfig()).await?;
    let local = local_config(&dir)?;
    let s3 = match &b.moto {
        Some(m) => Some(s3_config(&dir, &m.endpoint(), &format!("{tag}-{n}"))?),
        None => None,
    };
    let mut list_floor = Vec::new();
    let mut backup_local = Vec::new();
    let mut backup_s3 = Vec::new();
    let mut kubectl = Vec::new();
    for i in 0..runs {
        let cpu = source.cpu_seconds();
        let mut f = floor::list(&client).await?;
        f.server_cpu_seconds = source.cpu_seconds() - cpu;
        say!(
            t0,
            "{n} run {i}: list floor {:.3} s ({} types, {} pages, {:.1} MB)",
            f.wall_seconds,
            f.types,
            f.pages,
            f.bytes as f64 / 1e6
        );
        list_floor.push(f);

        let bl = b
            .lifeboat
            .backup(&local, source.kubeconfig(), &format!("b-{n}-{i}"))
            .await?;
        say!(
            t0,
            "{n} run {i}: backup to a directory {:.3} s, {} items, {} archive bytes, peak RSS {:.1} MiB",
            bl.wall_seconds,
            bl.items,
            bl.archive_bytes,
            bl.peak_rss_bytes.unwrap_or(0) as f64 / 1_048_576.0
        );
        backup_local.push(bl);

        if let Some(s3) = &s3 {
            let bs = b
                .lifeboat
                .backup(s3, source.kubeconfig(), &format!("b-{n}-{i}"))
                .await?;
            say!(
                t0,
                "{n} run {i}: backup to S3 {:.3} s, peak RSS {:.1} MiB",
                bs.wall_seconds,
                bs.peak_rss_bytes.unwrap_or(0) as f64 / 1_048_576.0
            );
            backup_s3.push(bs);
        }

        if let Some(k) = &b.kubectl {
            let ks = run::kubectl_script(source.kubeconfig(), k).await?;
            say!(
                t0,
                "{n} run {i}: kubectl script {:.3} s, {} bytes",
                ks.wall_seconds,
                ks.bytes
            );
            kubectl.push(ks);
        }
    }

    // Velero's format of the same objects, from the archive of the first local backup.
    let archive = dir.join("store").join(&backup_local[0].archive_key);
    let velero = formats::velero(&archive, None)?;
    say!(
        t0,
        "{n}: Velero format {} bytes ({} objects)",
        velero.tar_gz_bytes,
        velero.objects
    );

    // Restore into empty clusters: lifeboat, then the raw-create floor of what it created.
    let mut restore = Vec::new();
    let mut create_floor = Vec::new();
    for i in 0..runs {
        let target = Sim::start()?;
        let cpu = target.cpu_seconds();
        let r = b
            .lifeboat
            .restore(
                &local,
                target.kubeconfig(),
                &format!("b-{n}-0"),
                &format!("r-{n}-{i}"),
            )
            .await?;
        let server_cpu = target.cpu_seconds() - cpu;
        drop(target);
        say!(
            t0,
            "{n} run {i}: restore {:.3} s, {} created, {} exist, {} skipped, {} failed ({:.0} objects/s; server CPU {server_cpu:.2} s)",
            r.wall_seconds,
            r.created,
            r.exists,
            r.skipped,
            r.failed,
            r.created as f64 / r.wall_seconds
        );

        // The same objects, sanitised, built before the clock starts.
        let wanted: std::collections::HashSet<(String, Option<String>, String)> =
            r.created_items.iter().cloned().collect();
        let mut creates = Vec::with_capacity(wanted.len());
        formats::for_each_object(&archive, |resource, ns, json| {
            let obj: serde_json::Value = serde_json::from_slice(json)?;
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if wanted.contains(&(resource.to_string(), ns.map(String::from), name)) {
                creates.push(Create::from_archived(resource, obj)?);
            }
            Ok(())
        })?;
        restore.push(r);
        let target = Sim::start()?;
        let client = kubesim::client_for(target.kubeconfig()).await?;
        let cpu = target.cpu_seconds();
        let mut f = floor::create(&client, creates).await?;
        f.server_cpu_seconds = target.cpu_seconds() - cpu;
        drop(client);
        drop(target);
        say!(
            t0,
            "{n} run {i}: raw creates {:.3} s, {} created, {} failed ({:.0} objects/s)",
            f.wall_seconds,
            f.created,
            f.failed,
            f.objects_per_second
        );
        create_floor.push(f);
    }

    Ok(SizeResult {
        objects: n,
        namespaces: n.div_ceil(kubesim::synth::PER_NAMESPACE),
        seed_seconds,
        stored_objects: source.stored_objects(),
        stored_json_bytes: source.stored_json_bytes(),
        archived_json_bytes: velero.json_bytes,
        archived_objects: velero.objects,
        runs,
        list_floor,
        backup_local,
        backup_s3,
        kubectl,
        velero,
        restore,
        create_floor,
    })
}

fn print_size(r: &SizeResult) {
    let m = |v: Vec<f64>| report::median(&v);
    eprintln!(
        "  {} objects: list floor {:.3} s, backup {:.3} s (local), kubectl {:.3} s, restore {:.3} s, raw creates {:.3} s",
        r.objects,
        m(r.list_floor.iter().map(|f| f.wall_seconds).collect()),
        m(r.backup_local.iter().map(|f| f.wall_seconds).collect()),
        m(r.kubectl.iter().map(|f| f.wall_seconds).collect()),
        m(r.restore.iter().map(|f| f.wall_seconds).collect()),
        m(r.create_floor.iter().map(|f| f.wall_seconds).collect()),
    );
}

/// Backs up a seeded cluster to a local directory and sizes its archive against Velero's
/// format and plain zstd of the same tars.
async fn compare(b: &Bench, sim: &Sim, name: &str) -> anyhow::Result<Compression> {
    let dir = b.dir.path().join(format!("compression-{name}"));
    std::fs::create_dir_all(&dir)?;
    let config = local_config(&dir)?;
    let backup = b.lifeboat.backup(&config, sim.kubeconfig(), name).await?;
    let archive = dir.join("store").join(&backup.archive_key);
    let velero_tar = dir.join("velero.tar");
    let velero = formats::velero(&archive, Some(&velero_tar))?;
    let c = Compression {
        name: name.to_string(),
        objects: velero.objects,
        json_bytes: velero.json_bytes,
        lifeboat_archive_bytes: backup.archive_bytes,
        velero_tar_gz_bytes: velero.tar_gz_bytes,
        lifeboat_tar_zstd3_bytes: formats::zstd_size(&archive, true, &["-3"])?,
        lifeboat_tar_zstd3_long27_bytes: formats::zstd_size(&archive, true, &["-3", "--long=27"])?,
        velero_tar_zstd3_bytes: formats::zstd_size(&velero_tar, false, &["-3"])?,
        velero_tar_zstd3_long27_bytes: formats::zstd_size(
            &velero_tar,
            false,
            &["-3", "--long=27"],
        )?,
    };
    std::fs::remove_dir_all(&dir)?;
    say!(
        b.t0,
        "compression {name}: {} objects, lifeboat {} bytes, Velero format {} bytes ({:.3}x)",
        c.objects,
        c.lifeboat_archive_bytes,
        c.velero_tar_gz_bytes,
        c.lifeboat_archive_bytes as f64 / c.velero_tar_gz_bytes as f64
    );
    Ok(c)
}

/// The real-world scenarios: one kubesim each, then all of them in `copies` namespaces.
async fn compression(b: &Bench, root: &Path, copies: usize) -> anyhow::Result<CompressionResult> {
    let dirs = scenarios::scenarios(root)?;
    let mut rows = Vec::new();
    for d in &dirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sim = Sim::start()?;
        kubesim::seed::dir(sim.cluster(), d)
            .with_context(|| format!("seeding the scenario {name}"))?;
        rows.push(compare(b, &sim, &name).await?);
    }
    let sum = |name: &str, rows: &[Compression]| Compression {
        name: name.to_string(),
        objects: rows.iter().map(|r| r.objects).sum(),
        json_bytes: rows.iter().map(|r| r.json_bytes).sum(),
        lifeboat_archive_bytes: rows.iter().map(|r| r.lifeboat_archive_bytes).sum(),
        velero_tar_gz_bytes: rows.iter().map(|r| r.velero_tar_gz_bytes).sum(),
        lifeboat_tar_zstd3_bytes: rows.iter().map(|r| r.lifeboat_tar_zstd3_bytes).sum(),
        lifeboat_tar_zstd3_long27_bytes: rows
            .iter()
            .map(|r| r.lifeboat_tar_zstd3_long27_bytes)
            .sum(),
        velero_tar_zstd3_bytes: rows.iter().map(|r| r.velero_tar_zstd3_bytes).sum(),
        velero_tar_zstd3_long27_bytes: rows.iter().map(|r| r.velero_tar_zstd3_long27_bytes).sum(),
    };
    let one_copy = (!rows.is_empty()).then(|| sum("real-world, one copy each", &rows));

    let sim = Sim::start()?;
    let seeding = scenarios::seed_copies(&sim, &dirs, copies)?;
    say!(
        b.t0,
        "{copies} copies seeded: {} objects, {} skipped (failed to seed)",
        seeding.seeded,
        seeding.failed
    );
    let copies_row = compare(b, &sim, &format!("copies-{copies}")).await?;
    Ok(CompressionResult {
        scenarios: rows,
        one_copy,
        copies: Some(copies_row),
        copies_seeding: Some(seeding),
    })
}
