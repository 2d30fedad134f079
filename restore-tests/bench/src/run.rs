//! Running the lifeboat release binary (backup and restore) and the kubectl script as
//! subprocesses, with the wall time measured around the process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, bail};
use lifeboat_testkit::Cli;
use serde::Serialize;
use serde_json::Value;

/// The lifeboat binary with the testkit's loopback-only environment.
#[derive(Debug)]
pub struct Lifeboat {
    cli: Cli,
    bin: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub wall_seconds: f64,
    pub items: u64,
    /// `archive.size` of the manifest: compressed bytes as stored.
    pub archive_bytes: u64,
    /// `archive.key` of the manifest, relative to the storage root.
    #[serde(skip)]
    pub archive_key: String,
    /// From the `backup finished` log line.
    pub peak_rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// The backup's own `seconds` (from the same line): the run without process start and exit.
    pub reported_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restore {
    pub wall_seconds: f64,
    pub phase: String,
    pub created: u64,
    pub exists: u64,
    pub skipped: u64,
    pub failed: u64,
    /// `(resource, namespace, name)` of every created object.
    #[serde(skip)]
    pub created_items: Vec<(String, Option<String>, String)>,
}

impl Lifeboat {
    pub fn new(bin: &Path) -> Lifeboat {
        Lifeboat {
            cli: Cli::new(bin),
            bin: bin.to_path_buf(),
        }
    }

    /// `lifeboat --version`.
    pub async fn version(&self) -> anyhow::Result<String> {
        let run = self.cli.run(&["--version"]).await;
        if run.code != 0 {
            bail!("{} --version failed: {}", self.bin.display(), run.stderr);
        }
        Ok(run.stdout.trim().to_string())
    }

    /// `lifeboat backup create NAME --output json --log-format json`.
    pub async fn backup(
        &self,
        config: &Path,
        kubeconfig: &Path,
        name: &str,
    ) -> anyhow::Result<Backup> {
        let args = [
            "--config",
            &config.display().to_string(),
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--log-format",
            "json",
            "--output",
            "json",
            "backup",
            "create",
            name,
        ]
        .map(String::from);
        let (wall, code, stdout, stderr) = self.timed(&args).await?;
        if code != 0 {
            bail!(
                "lifeboat backup create {name} exited {code}\nstdout: {}\nstderr: {}",
                tail(&stdout),
                tail(&stderr)
            );
        }
        let manifest: Value = serde_json::from_str(&stdout).with_context(|| {
            format!("backup create printed no JSON manifest: {}", tail(&stdout))
        })?;
        let finished = log_line(&stderr, "backup finished");
        let field = |k: &str| finished.as_ref().and_then(|f| f.get(k).cloned());
        Ok(Backup {
            wall_seconds: wall,
            items: manifest["itemCount"].as_u64().unwrap_or(0),
            archive_bytes: manifest["archive"]["size"]
                .as_u64()
                .context("manifest without archive.size")?,
            archive_key: manifest["archive"]["key"]
                .as_str()
                .context("manifest without archive.key")?
                .to_string(),
            peak_rss_bytes: field("peak_rss_bytes").and_then(|v| v.as_u64()),
            cpu_seconds: field("cpu_seconds").and_then(|v| v.as_f64()),
            reported_seconds: field("seconds").and_then(|v| v.as_f64()),
        })
    }

    /// `lifeboat restore create --from-backup BACKUP --name NAME --restore-volumes=false --output json`.
    pub async fn restore(
        &self,
        config: &Path,
        kubeconfig: &Path,
        backup: &str,
        name: &str,
    ) -> anyhow::Result<Restore> {
        let args = [
            "--config",
            &config.display().to_string(),
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--log-format",
            "json",
            "--output",
            "json",
            "restore",
            "create",
            "--from-backup",
            backup,
            "--name",
            name,
            "--restore-volumes=false",
        ]
        .map(String::from);
        let (wall, code, stdout, stderr) = self.timed(&args).await?;
        let result: Value = serde_json::from_str(&stdout).with_context(|| {
            format!(
                "restore create exited {code} without a JSON result\nstdout: {}\nstderr: {}",
                tail(&stdout),
                tail(&stderr)
            )
        })?;
        let count = |k: &str| result["counts"][k].as_u64().unwrap_or(0);
        let created_items = result["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i["action"] == "created")
                    .map(|i| {
                        (
                            i["resource"].as_str().unwrap_or_default().to_string(),
                            i["namespace"].as_str().map(String::from),
                            i["name"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Restore {
            wall_seconds: wall,
            phase: result["phase"].as_str().unwrap_or_default().to_string(),
            created: count("created"),
            exists: count("exists"),
            skipped: count("skipped"),
            failed: count("failed"),
            created_items,
        })
    }

    /// Runs lifeboat; (wall seconds around the process, exit code, stdout, stderr).
    async fn timed(&self, args: &[String]) -> anyhow::Result<(f64, i32, String, String)> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.cli.command(&args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = cmd
            .output()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        let wall = started.elapsed().as_secs_f64();
        Ok((
            wall,
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// The fields of the JSON log line with this message (top-level or under `fields`).
fn log_line(stderr: &str, message: &str) -> Option<serde_json::Map<String, Value>> {
    stderr.lines().rev().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        let fields = v.get("fields").filter(|f| f.is_object()).unwrap_or(&v);
        (fields.get("message").and_then(Value::as_str) == Some(message))
            .then(|| fields.as_object().cloned())
            .flatten()
    })
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

#[derive(Debug, Clone, Serialize)]
pub struct KubectlScript {
    pub wall_seconds: f64,
    /// Size of `dump.tar.zst`.
    pub bytes: u64,
    pub types: usize,
    /// Bytes of JSON kubectl printed (the files before tar and zstd).
    pub json_bytes: u64,
}

/// The script people write instead of a backup tool: `kubectl get <type> -A -o json` for every
/// listable type into files, then `tar | zstd -3`. Run by `sh`, timed as a whole, with a
/// private HOME and an empty kubectl cache.
pub const KUBECTL_SCRIPT: &str = r#"set -eu
out="$1"
mkdir -p "$out/dump"
for t in $(kubectl api-resources --verbs=list,get,create,delete -o name); do
  case "$t" in events|events.events.k8s.io) continue ;; esac
  kubectl get "$t" -A -o json > "$out/dump/$t.json"
done
tar -cf - -C "$out" dump | zstd -3 -q -c > "$out/dump.tar.zst"
"#;

pub async fn kubectl_script(kubeconfig: &Path, kubectl: &Path) -> anyhow::Result<KubectlScript> {
    let home = tempfile::tempdir()?;
    let out = tempfile::tempdir()?;
    let path = match (kubectl.parent(), std::env::var_os("PATH")) {
        (Some(dir), Some(p)) => {
            let mut dirs = vec![dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs)?
        }
        (_, p) => p.unwrap_or_default(),
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(KUBECTL_SCRIPT)
        .arg("kubectl-script")
        .arg(out.path())
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home.path())
        .env("KUBECACHEDIR", home.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let run = cmd.output().await.context("running the kubectl script")?;
    let wall_seconds = started.elapsed().as_secs_f64();
    if !run.status.success() {
        bail!(
            "the kubectl script failed ({}): {}",
            run.status,
            tail(&String::from_utf8_lossy(&run.stderr))
        );
    }
    let bytes = std::fs::metadata(out.path().join("dump.tar.zst"))?.len();
    let (mut types, mut json_bytes) = (0, 0);
    for e in std::fs::read_dir(out.path().join("dump"))? {
        types += 1;
        json_bytes += e?.metadata()?.len();
    }
    Ok(KubectlScript {
        wall_seconds,
        bytes,
        types,
        json_bytes,
    })
}
