//! The JSON and Markdown reports: the machine, every figure (medians of the runs, every run in
//! the JSON), every ratio against its target and, where a target is missed, by how much.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{Compression, CompressionResult, SizeResult};

/// Objects at which the targets are defined.
const TARGET_SIZE: usize = 100_000;
/// The hand-written part of `docs/benchmarks.md` starts after this line and is kept when the
/// benchmark rewrites the file.
pub const KEEP_MARKER: &str = "<!-- Everything below this line is written by hand and kept when the benchmark rewrites this file. -->";

const MIB: f64 = 1_048_576.0;

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: u64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        Machine {
            cpu,
            cores,
            memory_bytes,
            kernel,
        }
    }
}

/// One target: the ratio or figure, its bound, what was measured.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    /// `<=` or `>=`.
    pub op: &'static str,
    pub bound: f64,
    pub unit: &'static str,
    pub measured: Option<f64>,
    /// Where it was measured ("100000 objects", ...).
    pub at: String,
    /// Why it was not measured, or a caveat.
    pub note: Option<String>,
}

impl Target {
    pub fn met(&self) -> Option<bool> {
        let m = self.measured?;
        Some(if self.op == "<=" {
            m <= self.bound
        } else {
            m >= self.bound
        })
    }

    fn fmt_value(&self, v: f64) -> String {
        match self.unit {
            "MiB" => format!("{v:.1} MiB"),
            _ => format!("{v:.3}"),
        }
    }

    /// "met", or by how much it is missed.
    pub fn verdict(&self) -> String {
        let Some(m) = self.measured else {
            return format!(
                "not measured{}",
                self.note
                    .as_ref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            );
        };
        let base = match self.met() {
            Some(true) => "met".to_string(),
            _ if self.op == "<=" => {
                if self.unit == "MiB" {
                    format!(
                        "missed: {:.1} MiB over ({:.0}% over the bound)",
                        m - self.bound,
                        (m / self.bound - 1.0) * 100.0
                    )
                } else {
                    format!(
                        "missed by {:.0}% ({} over {})",
                        (m / self.bound - 1.0) * 100.0,
                        self.fmt_value(m),
                        self.fmt_value(self.bound)
                    )
                }
            }
            _ => format!(
                "missed by {:.0}% ({} under {}; {:.2}x more needed)",
                (1.0 - m / self.bound) * 100.0,
                self.fmt_value(m),
                self.fmt_value(self.bound),
                self.bound / m
            ),
        };
        match &self.note {
            Some(n) => format!("{base} ({n})"),
            None => base,
        }
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name, "op": self.op, "bound": self.bound, "unit": self.unit,
            "measured": self.measured, "at": self.at, "met": self.met(),
            "verdict": self.verdict(),
        })
    }
}

#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub date: String,
    pub lifeboat_version: String,
    pub sizes_asked: Vec<usize>,
    pub sizes: Vec<SizeResult>,
    pub compression: Option<CompressionResult>,
    pub notes: Vec<String>,
    pub total_seconds: f64,
    pub skip_kubectl: bool,
    pub skip_s3: bool,
    /// Objects in the warm-up cluster.
    pub warmup: usize,
}

/// Medians of one size's runs.
struct Medians {
    floor: f64,
    local: f64,
    s3: f64,
    kubectl: f64,
    kubectl_bytes: f64,
    restore: f64,
    restore_created: f64,
    creates: f64,
    creates_created: f64,
    items: f64,
    local_rss: f64,
    s3_rss: f64,
    local_cpu: f64,
    s3_cpu: f64,
    local_archive: f64,
    s3_archive: f64,
    /// Largest peak RSS of any backup run at this size.
    peak_rss: Option<f64>,
}

fn med<T>(v: &[T], f: impl Fn(&T) -> Option<f64>) -> f64 {
    median(&v.iter().filter_map(f).collect::<Vec<_>>())
}

impl Medians {
    fn of(r: &SizeResult) -> Medians {
        Medians {
            floor: med(&r.list_floor, |f| Some(f.wall_seconds)),
            local: med(&r.backup_local, |b| Some(b.wall_seconds)),
            s3: med(&r.backup_s3, |b| Some(b.wall_seconds)),
            kubectl: med(&r.kubectl, |k| Some(k.wall_seconds)),
            kubectl_bytes: med(&r.kubectl, |k| Some(k.bytes as f64)),
            restore: med(&r.restore, |x| Some(x.wall_seconds)),
            restore_created: med(&r.restore, |x| Some(x.created as f64)),
            creates: med(&r.create_floor, |x| Some(x.wall_seconds)),
            creates_created: med(&r.create_floor, |x| Some(x.created as f64)),
            items: med(&r.backup_local, |b| Some(b.items as f64)),
            local_rss: med(&r.backup_local, |b| b.peak_rss_bytes.map(|x| x as f64)),
            s3_rss: med(&r.backup_s3, |b| b.peak_rss_bytes.map(|x| x as f64)),
            local_cpu: med(&r.backup_local, |b| b.cpu_seconds),
            s3_cpu: med(&r.backup_s3, |b| b.cpu_seconds),
            local_archive: med(&r.backup_local, |b| Some(b.archive_bytes as f64)),
            s3_archive: med(&r.backup_s3, |b| Some(b.archive_bytes as f64)),
            peak_rss: r
                .backup_local
                .iter()
                .chain(&r.backup_s3)
                .filter_map(|b| b.peak_rss_bytes)
                .max()
                .map(|b| b as f64),
        }
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

impl Report {
    /// Now, for the report's date.
    pub fn now() -> String {
        jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string()
    }

    /// The size the scale targets are read at: 100k, else the largest measured.
    fn target_size(&self) -> Option<&SizeResult> {
        self.sizes
            .iter()
            .find(|s| s.objects == TARGET_SIZE)
            .or_else(|| self.sizes.iter().max_by_key(|s| s.objects))
    }

    pub fn targets(&self) -> Vec<Target> {
        let at_size = self.target_size();
        let at = at_size.map_or_else(
            || "no size measured".into(),
            |s| format!("{} objects", s.objects),
        );
        let caveat = at_size.and_then(|s| {
            (s.objects != TARGET_SIZE).then(|| {
                format!(
                    "measured at {} objects; the target is set at 100000",
                    s.objects
                )
            })
        });
        let m = at_size.map(Medians::of);
        let ratio = |f: &dyn Fn(&Medians) -> f64| m.as_ref().and_then(|m| finite(f(m)));
        let by_size = |n: usize| self.sizes.iter().find(|s| s.objects == n).map(Medians::of);
        let growth = match (by_size(10_000), by_size(TARGET_SIZE)) {
            (Some(a), Some(b)) => match (a.peak_rss, b.peak_rss) {
                (Some(a), Some(b)) => Some((b - a) / MIB),
                _ => None,
            },
            _ => None,
        };
        let comp = self.compression.as_ref();
        let comp_ratio = |c: Option<&Compression>| {
            c.map(|c| c.lifeboat_archive_bytes as f64 / c.velero_tar_gz_bytes as f64)
        };
        let no_fixtures = comp
            .is_none()
            .then(|| "LIFEBOAT_FIXTURES not available".to_string());
        vec![
            Target {
                name: "backup wall time / list floor",
                op: "<=",
                bound: 1.3,
                unit: "x",
                measured: ratio(&|m| m.local / m.floor),
                at: at.clone(),
                note: caveat.clone(),
            },
            Target {
                name: "kubectl + tar + zstd script / backup wall time",
                op: ">=",
                bound: 5.0,
                unit: "x",
                measured: if self.skip_kubectl {
                    None
                } else {
                    ratio(&|m| m.kubectl / m.local)
                },
                at: at.clone(),
                note: if self.skip_kubectl {
                    Some("--skip-kubectl".into())
                } else {
                    caveat.clone()
                },
            },
            Target {
                name: "backup peak RSS",
                op: "<=",
                bound: 100.0,
                unit: "MiB",
                measured: m.as_ref().and_then(|m| m.peak_rss).map(|b| b / MIB),
                at: at.clone(),
                note: caveat.clone(),
            },
            Target {
                name: "backup peak RSS growth, 10k -> 100k objects",
                op: "<=",
                bound: 20.0,
                unit: "MiB",
                measured: growth,
                at: "10000 and 100000 objects".into(),
                note: growth
                    .is_none()
                    .then(|| "needs --sizes with 10000 and 100000".to_string()),
            },
            Target {
                name: "archive / Velero-format tar.gz, real-world scenarios (one copy each)",
                op: "<=",
                bound: 0.4,
                unit: "x",
                measured: comp_ratio(comp.and_then(|c| c.one_copy.as_ref())),
                at: "real-world scenarios".into(),
                note: no_fixtures.clone(),
            },
            Target {
                name: "archive / Velero-format tar.gz, the same applications in 40 namespaces",
                op: "<=",
                bound: 0.05,
                unit: "x",
                measured: comp_ratio(comp.and_then(|c| c.copies.as_ref())),
                at: comp
                    .and_then(|c| c.copies_seeding.as_ref())
                    .map_or_else(|| "copies".into(), |s| format!("{} namespaces", s.copies)),
                note: no_fixtures,
            },
            Target {
                name: "raw-create floor objects/s / restore objects/s",
                op: "<=",
                bound: 2.0,
                unit: "x",
                measured: ratio(&|m| {
                    (m.creates_created / m.creates) / (m.restore_created / m.restore)
                }),
                at,
                note: caveat,
            },
        ]
    }

    fn size_json(r: &SizeResult) -> Value {
        let m = Medians::of(r);
        let mb = r.archived_json_bytes as f64 / 1e6;
        json!({
            "objects": r.objects,
            "namespaces": r.namespaces,
            "seed_seconds": r.seed_seconds,
            "stored_objects": r.stored_objects,
            "stored_json_bytes": r.stored_json_bytes,
            "archived_objects": r.archived_objects,
            "archived_json_bytes": r.archived_json_bytes,
            "runs": r.runs,
            "median": {
                "list_floor_seconds": finite(m.floor),
                "backup_local_seconds": finite(m.local),
                "backup_local_objects_per_second": finite(m.items / m.local),
                "backup_local_mb_per_second": finite(mb / m.local),
                "backup_local_peak_rss_bytes": finite(m.local_rss),
                "backup_local_cpu_seconds": finite(m.local_cpu),
                "backup_local_archive_bytes": finite(m.local_archive),
                "backup_s3_seconds": finite(m.s3),
                "backup_s3_objects_per_second": finite(m.items / m.s3),
                "backup_s3_mb_per_second": finite(mb / m.s3),
                "backup_s3_peak_rss_bytes": finite(m.s3_rss),
                "backup_s3_cpu_seconds": finite(m.s3_cpu),
                "backup_s3_archive_bytes": finite(m.s3_archive),
                "kubectl_script_seconds": finite(m.kubectl),
                "kubectl_script_bytes": finite(m.kubectl_bytes),
                "velero_tar_gz_bytes": r.velero.tar_gz_bytes,
                "restore_seconds": finite(m.restore),
                "restore_objects_per_second": finite(m.restore_created / m.restore),
                "raw_create_seconds": finite(m.creates),
                "raw_create_objects_per_second": finite(m.creates_created / m.creates),
            },
            "ratios": {
                "backup_local_over_list_floor": finite(m.local / m.floor),
                "backup_s3_over_list_floor": finite(m.s3 / m.floor),
                "kubectl_script_over_backup_local": finite(m.kubectl / m.local),
                "archive_over_velero": finite(m.local_archive / r.velero.tar_gz_bytes as f64),
                "kubectl_bytes_over_archive": finite(m.kubectl_bytes / m.local_archive),
                "raw_create_rate_over_restore_rate": finite(
                    (m.creates_created / m.creates) / (m.restore_created / m.restore)
                ),
            },
            "runs_detail": {
                "list_floor": r.list_floor,
                "backup_local": r.backup_local,
                "backup_s3": r.backup_s3,
                "kubectl_script": r.kubectl,
                "velero": r.velero,
                "restore": r.restore,
                "raw_create": r.create_floor,
            },
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "machine": {
                "cpu": self.machine.cpu,
                "cores": self.machine.cores,
                "memory_bytes": self.machine.memory_bytes,
                "kernel": self.machine.kernel,
            },
            "date": self.date,
            "lifeboat_version": self.lifeboat_version,
            "sizes": self.sizes_asked,
            "run_seconds": self.total_seconds,
            "skipped": {"kubectl": self.skip_kubectl, "s3": self.skip_s3},
            "targets": self.targets().iter().map(Target::json).collect::<Vec<_>>(),
            "results": self.sizes.iter().map(Self::size_json).collect::<Vec<_>>(),
            "compression": self.compression.as_ref().map(|c| json!({
                "scenarios": c.scenarios,
                "one_copy": c.one_copy,
                "copies": c.copies,
                "copies_seeding": c.copies_seeding,
            })),
            "notes": self.notes,
        })
    }

    /// The targets as text, for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::from("targets:\n");
        for t in self.targets() {
            let _ = writeln!(
                s,
                "  {:<72} {} {:<6} measured {:<10} {}",
                t.name,
                t.op,
                t.fmt_value(t.bound),
                t.measured.map_or_else(|| "-".into(), |m| t.fmt_value(m)),
                t.verdict()
            );
        }
        s
    }

    pub fn markdown(&self, previous: Option<&str>) -> String {
        let mut s = String::new();
        let mb = |b: f64| format!("{:.2} MB", b / 1e6);
        let secs = |x: f64| {
            if x.is_finite() {
                format!("{x:.3} s")
            } else {
                "-".into()
            }
        };
        let num = |x: f64, d: usize| {
            if x.is_finite() {
                format!("{x:.d$}")
            } else {
                "-".into()
            }
        };
        let _ = writeln!(s, "# Benchmarks\n");
        let _ = writeln!(
            s,
            "Written by `cargo run --release -p lifeboat-bench -- --sizes {} --report docs/benchmarks.json --markdown docs/benchmarks.md`{}{} \
             (source: `restore-tests/bench/`). Every figure below was measured in that one run, on one machine; \
             ratios are what count, absolute times vary by machine.\n",
            self.sizes_asked
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            if self.skip_kubectl {
                " --skip-kubectl"
            } else {
                ""
            },
            if self.skip_s3 { " --skip-s3" } else { "" },
        );
        let _ = writeln!(s, "| | |\n| --- | --- |");
        let _ = writeln!(
            s,
            "| machine | {}, {} cores, {:.1} GiB memory, Linux {} |",
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory_bytes as f64 / (1024.0 * MIB),
            self.machine.kernel
        );
        let _ = writeln!(s, "| date | {} |", self.date);
        let _ = writeln!(
            s,
            "| lifeboat | {} (release build) |",
            self.lifeboat_version
        );
        let _ = writeln!(
            s,
            "| runs per size | {} (medians shown; every run is in `benchmarks.json`) |",
            self.sizes
                .iter()
                .map(|r| format!("{}: {}", r.objects, r.runs))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "| whole run | {:.0} s, warm-up included |\n",
            self.total_seconds
        );

        let _ = writeln!(s, "## Targets\n");
        let _ = writeln!(s, "| target | bound | measured | at | verdict |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
        for t in self.targets() {
            let _ = writeln!(
                s,
                "| {} | {} {} | {} | {} | {} |",
                t.name,
                t.op.replace('<', "&lt;").replace('>', "&gt;"),
                t.fmt_value(t.bound),
                t.measured.map_or_else(|| "-".into(), |m| t.fmt_value(m)),
                t.at,
                t.verdict()
            );
        }
        let _ = writeln!(s);

        if !self.sizes.is_empty() {
            let _ = writeln!(s, "## Backup and restore by cluster size\n");
            let head: Vec<String> = self
                .sizes
                .iter()
                .map(|r| format!("{} objects", r.objects))
                .collect();
            let _ = writeln!(s, "| figure | {} |", head.join(" | "));
            let _ = writeln!(s, "| --- |{}", " ---: |".repeat(self.sizes.len()));
            let ms: Vec<Medians> = self.sizes.iter().map(Medians::of).collect();
            let row = |s: &mut String, name: &str, f: &dyn Fn(&SizeResult, &Medians) -> String| {
                let cells: Vec<String> = self.sizes.iter().zip(&ms).map(|(r, m)| f(r, m)).collect();
                let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
            };
            row(
                &mut s,
                "objects backed up (namespaces, CRD, system objects included)",
                &|_, m| num(m.items, 0),
            );
            row(&mut s, "JSON backed up (sum of object sizes)", &|r, _| {
                mb(r.archived_json_bytes as f64)
            });
            row(
                &mut s,
                "seeding kubesim (not a lifeboat figure)",
                &|r, _| secs(r.seed_seconds),
            );
            row(
                &mut s,
                "**list floor**: every page of every type, 4 types at a time, wall",
                &|_, m| secs(m.floor),
            );
            row(&mut s, "**backup to a directory**: wall", &|_, m| {
                secs(m.local)
            });
            row(&mut s, "  objects/s", &|_, m| num(m.items / m.local, 0));
            row(&mut s, "  MB/s of JSON", &|r, m| {
                num(r.archived_json_bytes as f64 / 1e6 / m.local, 1)
            });
            row(&mut s, "  peak RSS", &|_, m| {
                format!("{} MiB", num(m.local_rss / MIB, 1))
            });
            row(&mut s, "  CPU time (user + system)", &|_, m| {
                secs(m.local_cpu)
            });
            row(&mut s, "  archive", &|_, m| mb(m.local_archive));
            row(&mut s, "  backup / list floor", &|_, m| {
                format!("{}x", num(m.local / m.floor, 2))
            });
            if !self.skip_s3 {
                row(&mut s, "**backup to S3 (moto)**: wall", &|_, m| secs(m.s3));
                row(&mut s, "  objects/s", &|_, m| num(m.items / m.s3, 0));
                row(&mut s, "  MB/s of JSON", &|r, m| {
                    num(r.archived_json_bytes as f64 / 1e6 / m.s3, 1)
                });
                row(&mut s, "  peak RSS", &|_, m| {
                    format!("{} MiB", num(m.s3_rss / MIB, 1))
                });
                row(&mut s, "  CPU time (user + system)", &|_, m| secs(m.s3_cpu));
                row(&mut s, "  archive", &|_, m| mb(m.s3_archive));
                row(&mut s, "  backup / list floor", &|_, m| {
                    format!("{}x", num(m.s3 / m.floor, 2))
                });
            }
            if !self.skip_kubectl {
                row(
                    &mut s,
                    "**kubectl get -A -o json per type, tar, zstd -3**: wall",
                    &|_, m| secs(m.kubectl),
                );
                row(&mut s, "  bytes", &|_, m| mb(m.kubectl_bytes));
                row(&mut s, "  script / backup", &|_, m| {
                    format!("{}x", num(m.kubectl / m.local, 2))
                });
            }
            row(
                &mut s,
                "**Velero format** (each object twice, tar.gz)",
                &|r, _| mb(r.velero.tar_gz_bytes as f64),
            );
            row(&mut s, "  lifeboat archive / Velero format", &|r, m| {
                format!(
                    "{}x",
                    num(m.local_archive / r.velero.tar_gz_bytes as f64, 3)
                )
            });
            row(
                &mut s,
                "**restore into an empty kubesim**: wall",
                &|_, m| secs(m.restore),
            );
            row(&mut s, "  objects created", &|_, m| {
                num(m.restore_created, 0)
            });
            row(&mut s, "  objects/s", &|_, m| {
                num(m.restore_created / m.restore, 0)
            });
            row(&mut s, "**raw creates, 16 at a time**: wall", &|_, m| {
                secs(m.creates)
            });
            row(&mut s, "  objects/s", &|_, m| {
                num(m.creates_created / m.creates, 0)
            });
            row(&mut s, "  raw-create rate / restore rate", &|_, m| {
                format!(
                    "{}x",
                    num(
                        (m.creates_created / m.creates) / (m.restore_created / m.restore),
                        2
                    )
                )
            });
            let _ = writeln!(s);
        }

        if let Some(c) = &self.compression {
            let _ = writeln!(s, "## Archive size against Velero's format\n");
            let _ = writeln!(
                s,
                "| cluster | objects | JSON | lifeboat archive | Velero tar.gz | archive / Velero | zstd -3 of lifeboat's tar | zstd -3 --long=27 of it | zstd -3 of Velero's tar | zstd -3 --long=27 of it |"
            );
            let _ = writeln!(
                s,
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            let rows = c
                .scenarios
                .iter()
                .chain(c.one_copy.iter())
                .chain(c.copies.iter());
            for r in rows {
                let bold = r.name.starts_with("real-world") || r.name.starts_with("copies");
                let name = if bold {
                    format!("**{}**", r.name)
                } else {
                    r.name.clone()
                };
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} | {:.3}x | {} | {} | {} | {} |",
                    r.objects,
                    mb(r.json_bytes as f64),
                    mb(r.lifeboat_archive_bytes as f64),
                    mb(r.velero_tar_gz_bytes as f64),
                    r.lifeboat_archive_bytes as f64 / r.velero_tar_gz_bytes as f64,
                    mb(r.lifeboat_tar_zstd3_bytes as f64),
                    mb(r.lifeboat_tar_zstd3_long27_bytes as f64),
                    mb(r.velero_tar_zstd3_bytes as f64),
                    mb(r.velero_tar_zstd3_long27_bytes as f64),
                );
            }
            if let Some(seed) = &c.copies_seeding {
                let _ = writeln!(
                    s,
                    "\n`copies-{}`: every scenario's namespaced objects seeded {} times, each copy in `<namespace>-<i>`; cluster-scoped objects once. {} objects seeded, {} skipped because kubesim refused them{}.",
                    seed.copies,
                    seed.copies,
                    seed.seeded,
                    seed.failed,
                    if seed.failures.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (e.g. {})",
                            seed.failures
                                .iter()
                                .take(3)
                                .map(|f| format!("`{}`", f.replace('|', "\\|")))
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    }
                );
            }
            let _ = writeln!(s);
        }

        let _ = writeln!(s, "## How each figure is measured\n");
        let _ = writeln!(
            s,
            "- **Clusters**: `kubesim::synth` (ConfigMaps 40%, Secrets 20%, Deployments 20%, Services 10%, Widgets (a CRD) 10%; 0.5-2 KiB each; one namespace per 200 objects), \
             seeded in process; each kubesim serves from a thread of its own. The real-world scenarios are `$LIFEBOAT_FIXTURES`, one kubesim per scenario.\n\
             - **Warm-up**: every tool runs once on a {}-object cluster before anything is measured; that run is not reported.\n\
             - **List floor**: a kube-rs client in the benchmark process discovers the types lifeboat backs up (list, get, create and delete; events excluded; discovery is in the time) \
             and fetches every page (`limit=500`), 4 types at a time, reading only the continue token and discarding the bodies.\n\
             - **Backup**: `lifeboat backup create --output json --log-format json` (the release binary as a subprocess; wall time around the process, start and exit included), \
             to a `file://` directory and to a moto S3 bucket started by the benchmark; volume snapshots off. Objects/s is the manifest's item count over the wall time; MB/s is the \
             sum of the archived objects' JSON sizes over the wall time; peak RSS and CPU time are the `peak_rss_bytes` and `cpu_seconds` of its `backup finished` log line; the archive \
             size is the manifest's `archive.size`.\n\
             - **kubectl script**: `sh` runs `kubectl api-resources --verbs=list,get,create,delete -o name`, then `kubectl get <type> -A -o json > <type>.json` for each type but events, \
             then `tar -cf - dir | zstd -3`; timed as a whole, real kubectl with a private HOME and an empty KUBECACHEDIR.\n\
             - **Velero format**: the objects of lifeboat's archive (read with `lifeboat::archive::reader`), each written twice as Velero 1.18 does \
             (`resources/<resource>/{{namespaces/<ns>|cluster}}/<name>.json` and `resources/<resource>/<version>-preferredversion/...`), compact JSON as the API server returned it, \
             after Velero's `metadata/version`, in a tar gzipped at gzip's default level.\n\
             - **Restore**: `lifeboat restore create --from-backup <the directory backup> --restore-volumes=false --output json` into an empty kubesim; objects/s is the objects it reports \
             created over the wall time around the process.\n\
             - **Raw creates**: the objects that restore created, taken from the same archive and sanitised as a restore does (metadata uid, resourceVersion, creationTimestamp, managedFields, \
             generation; status; a Service's clusterIP and clusterIPs), POSTed into another empty kubesim 16 at a time (CRDs, then Namespaces, then the rest); bodies are built before the clock starts.\n\
             - **Compression**: lifeboat's archive of each scenario (manifest `archive.size`) against the Velero format of the same objects; the zstd columns run the `zstd` command on \
             lifeboat's tar (the archive decompressed) and on the Velero tar before gzip.",
            self.warmup
        );
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Warnings from this run\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        let _ = writeln!(s, "\n{KEEP_MARKER}\n");
        match previous.and_then(|p| p.split_once(KEEP_MARKER)) {
            Some((_, kept)) => s.push_str(kept.trim_start_matches('\n')),
            None => s.push_str(
                "## Why a target is missed, and what would close it\n\n(Written by lifeboat's owner from these figures.)\n",
            ),
        }
        s
    }
}
