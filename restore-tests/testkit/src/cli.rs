//! Runs the `lifeboat` binary the way an operator would, with an environment that can only
//! reach loopback stand-ins: dummy AWS credentials, no instance metadata, AWS endpoints on
//! loopback, no shared AWS or kube files from the developer's home.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A `lifeboat` binary and the environment it runs in.
#[derive(Debug)]
pub struct Cli {
    bin: PathBuf,
    env: Vec<(String, String)>,
    home: tempfile::TempDir,
}

/// What one run printed and how it ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON; panics with both streams if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Cli {
    /// `bin` is the binary under test (`env!("CARGO_BIN_EXE_lifeboat")` in lifeboat's tests).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let home = tempfile::tempdir().expect("temp home");
        let h = home.path().display().to_string();
        let env = [
            ("HOME", h.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            // Every AWS service the config does not point elsewhere goes to a closed loopback
            // port: an unintended AWS call fails here instead of leaving the machine.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("NO_COLOR", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Cli {
            bin: bin.into(),
            env,
            home,
        }
    }

    /// Adds or replaces an environment variable.
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs `lifeboat ARGS` to completion.
    pub async fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("lifeboat starts");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A command for `lifeboat ARGS` with this environment, for tests that manage the process
    /// themselves (a daemon, a kill mid-run).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env_remove("LIFEBOAT_CONFIG")
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// A config file for storage in moto (or a proxy in front of it).
pub fn s3_config(endpoint: &str, bucket: &str, prefix: &str, extra: &str) -> String {
    format!(
        "cluster:\n  name: test\nstorage:\n  url: s3://{bucket}/{prefix}\n  region: us-east-1\n  endpoint: {endpoint}\n  forcePathStyle: true\n{extra}"
    )
}

/// A config file for storage in a local directory.
pub fn file_config(dir: &Path, extra: &str) -> String {
    format!(
        "cluster:\n  name: test\nstorage:\n  url: file://{}\n{extra}",
        dir.display()
    )
}
