//! Runs the real `kubectl` against a server with its own `HOME` and cache directory, so that
//! tests never share kubectl's discovery cache (which is keyed by host:port and would go stale
//! across servers reusing a port).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

/// A kubectl bound to one kubeconfig, with a private HOME and KUBECACHEDIR.
#[derive(Debug)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

/// What a kubectl run printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The stdout of a successful run; panics with both streams otherwise (for tests).
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(
            self.success,
            "kubectl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// The stderr of a failed run; panics if it succeeded (for tests).
    #[track_caller]
    pub fn err(self) -> String {
        assert!(
            !self.success,
            "kubectl unexpectedly succeeded:\nstdout: {}",
            self.stdout
        );
        self.stderr
    }
}

/// How to get kubectl, for the message of a test that cannot run.
pub const INSTALL_HINT: &str = "kubectl v1.32 is needed: install it from https://kubernetes.io/docs/tasks/tools/ \
     (or the Debian package `kubectl` from pkgs.k8s.io) and put it on PATH, or set KUBECTL=/path/to/kubectl";

/// The kubectl to use: `$KUBECTL`, else `kubectl` on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

/// Whether a test that needs kubectl can run. Without kubectl it fails under `CI=true` (a CI
/// run must not pass by skipping) and otherwise prints how to install it and skips.
#[track_caller]
pub fn available() -> bool {
    if find().is_some() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{INSTALL_HINT}");
    eprintln!("skipping: {INSTALL_HINT}");
    false
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> std::io::Result<Self> {
        let program = find()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, INSTALL_HINT))?;
        Ok(Kubectl {
            program,
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir()?,
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs `kubectl ARGS`, optionally with text on stdin.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl starts");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(text.as_bytes())
                .await
                .expect("write kubectl stdin");
            drop(pipe);
        }
        let out = child.wait_with_output().await.expect("kubectl runs");
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `kubectl ARGS` and returns stdout, panicking on failure (for tests).
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(
            out.success,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs `kubectl ARGS`, expecting failure, and returns stderr (for tests).
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(
            !out.success,
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            out.stdout
        );
        out.stderr
    }

    /// `kubectl ARGS -f -` with `manifest` on stdin; returns stdout, panicking on failure.
    pub async fn with_stdin(&self, args: &[&str], manifest: &str) -> String {
        let out = self.run(args, Some(manifest)).await;
        assert!(
            out.success,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Spawns a long-running kubectl (e.g. `get -w`) with stdout piped.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(&self.program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl starts")
    }
}
