//! Client-side encryption with age: what is stored is unreadable without an identity, the
//! standard `age` command decrypts it to a plain tar.zst, and restore, download and describe
//! behave as an operator expects with and without the identity.

use std::path::{Path, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret as _;
use kubesim::KubeSim;
use lifeboat_testkit::{Cli, file_config};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");
const CANARY: &str = "canary-5d1e-encrypted-only";

struct Env {
    source: KubeSim,
    dir: tempfile::TempDir,
    recipient: String,
    identity: PathBuf,
}

impl Env {
    async fn new() -> Env {
        let source = KubeSim::start().await.unwrap();
        source
            .seed_yaml(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: shop}}\nstringData: {{password: {CANARY}}}\n---\n\
                 apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web, namespace: shop}}\ndata: {{mode: prod}}\n"
            ))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secret = age::x25519::Identity::generate();
        let recipient = secret.to_public().to_string();
        let identity = dir.path().join("key.txt");
        std::fs::write(
            &identity,
            format!(
                "# public key: {recipient}\n{}\n",
                secret.to_string().expose_secret()
            ),
        )
        .unwrap();
        Env {
            source,
            dir,
            recipient,
            identity,
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn config(&self, encrypted: bool) -> String {
        let extra = if encrypted {
            format!(
                "volumes:\n  snapshots: false\nencryption:\n  recipients:\n    - {}\n",
                self.recipient
            )
        } else {
            "volumes:\n  snapshots: false\n".to_string()
        };
        let path = self.dir.path().join(if encrypted {
            "sealed.yaml"
        } else {
            "plain.yaml"
        });
        std::fs::write(&path, file_config(&self.store(), &extra)).unwrap();
        path.display().to_string()
    }

    async fn lifeboat(&self, kubeconfig: &Path, args: &[&str]) -> lifeboat_testkit::Run {
        let kc = kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kc.as_str()];
        all.extend_from_slice(args);
        Cli::new(BIN).run(&all).await
    }

    fn stored(&self, name: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.store().join("backups").join(name).join(file)).unwrap()
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Whether a plain tar.zst holds the Secret `shop/db` with its data, read with zstd and tar.
fn secret_in(tar_zst: &[u8]) -> bool {
    let tar = zstd::decode_all(tar_zst).unwrap();
    tar::Archive::new(tar.as_slice())
        .entries()
        .unwrap()
        .any(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            name == "resources/secrets/namespaces/shop/db.json"
                && serde_json::from_slice::<Value>(&data).unwrap()["data"]["password"].is_string()
        })
}

/// The `age` command (Debian package `age`), which scripts/test.sh installs. Without it the
/// check against the standard tool is skipped with a message, except under `CI=true`, where a
/// missing tool must not pass for a tested one.
fn age_cli() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("age"))
            .find(|p| p.is_file())
    });
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        found.is_some() || !in_ci,
        "the age command is not installed: `apt-get install age` (scripts/test.sh does it)"
    );
    if found.is_none() {
        eprintln!("skipping the check with the age command: `apt-get install age` to run it");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backups_round_trip_and_decrypt_with_the_age_command() {
    let env = Env::new().await;
    let sealed = env.config(true);
    let kc = env.source.kubeconfig_path().to_path_buf();

    let run = env
        .lifeboat(
            &kc,
            &[
                "--config", &sealed, "backup", "create", "b1", "--output", "json",
            ],
        )
        .await;
    run.expect_code(0);
    assert!(!run.stdout.contains(CANARY) && !run.stderr.contains(CANARY));
    let manifest: Value = serde_json::from_slice(&env.stored("b1", "manifest.json")).unwrap();
    assert_eq!(manifest["archive"]["encryption"]["scheme"], "age");
    assert_eq!(
        manifest["archive"]["encryption"]["recipients"],
        serde_json::json!([env.recipient])
    );
    assert!(!contains(
        &env.stored("b1", "manifest.json"),
        "AGE-SECRET-KEY"
    ));

    // What is stored is age, nothing readable: the archive and the run log.
    let archive = env.stored("b1", "archive.tar.zst");
    assert!(archive.starts_with(b"age-encryption.org/v1\n"));
    assert!(!contains(&archive, "shop/db"), "entry names leak");
    let log = env.stored("b1", "log.jsonl.zst");
    assert!(log.starts_with(b"age-encryption.org/v1\n"));

    // verify: the checksum needs no key, the entries do.
    let without = env
        .lifeboat(
            &kc,
            &[
                "--config", &sealed, "backup", "verify", "b1", "--output", "json",
            ],
        )
        .await;
    assert_eq!(without.code, 1, "{}", without.stderr);
    let report = without.json();
    assert_eq!(
        report["archive"]["actualSha256"],
        report["archive"]["expectedSha256"]
    );
    assert_eq!(report["problems"][0]["what"], "encryption", "{report}");
    let with = env
        .lifeboat(
            &kc,
            &[
                "--config",
                &sealed,
                "backup",
                "verify",
                "b1",
                "--identity-file",
                env.identity.to_str().unwrap(),
                "--output",
                "json",
            ],
        )
        .await;
    with.expect_code(0);
    assert_eq!(with.json()["phase"], "Verified");
    assert_eq!(with.json()["archive"]["objects"], manifest["itemCount"]);

    // Restore without the identity: refused with the way out, nothing written.
    let target = KubeSim::start().await.unwrap();
    let tk = target.kubeconfig_path().to_path_buf();
    let before = target.requests().len();
    let refused = env
        .lifeboat(
            &tk,
            &[
                "--config",
                &sealed,
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r1",
            ],
        )
        .await;
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--identity-file") && refused.stderr.contains(&env.recipient),
        "{}",
        refused.stderr
    );
    assert!(
        target.requests()[before..].iter().all(|r| !r.is_mutating()),
        "a refused restore wrote to the cluster"
    );

    // A wrong identity: refused too, saying it is not a recipient.
    let stranger = env.dir.path().join("stranger.txt");
    std::fs::write(
        &stranger,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    let wrong = env
        .lifeboat(
            &tk,
            &[
                "--config",
                &sealed,
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r2",
                "--identity-file",
                stranger.to_str().unwrap(),
            ],
        )
        .await;
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("recipient"), "{}", wrong.stderr);
    assert!(target.requests().iter().all(|r| !r.is_mutating()));

    // With the identity: the Secret comes back.
    let ok = env
        .lifeboat(
            &tk,
            &[
                "--config",
                &sealed,
                "restore",
                "create",
                "--from-backup",
                "b1",
                "--name",
                "r3",
                "--identity-file",
                env.identity.to_str().unwrap(),
                "--output",
                "json",
            ],
        )
        .await;
    ok.expect_code(0);
    let result = ok.json();
    let created = result["items"].as_array().unwrap().iter().any(|i| {
        i["resource"] == "secrets"
            && i["namespace"] == "shop"
            && i["name"] == "db"
            && i["action"] == "created"
    });
    assert!(created, "the Secret was restored: {result}");
    assert!(!ok.stdout.contains(CANARY) && !ok.stderr.contains(CANARY));

    // Download: as stored without the identity, a plain tar.zst with it.
    let raw = env.dir.path().join("raw.age");
    env.lifeboat(
        &kc,
        &[
            "--config",
            &sealed,
            "backup",
            "download",
            "b1",
            "-o",
            raw.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(0);
    assert_eq!(std::fs::read(&raw).unwrap(), archive);
    let plain_file = env.dir.path().join("plain.tar.zst");
    env.lifeboat(
        &kc,
        &[
            "--config",
            &sealed,
            "backup",
            "download",
            "b1",
            "-o",
            plain_file.to_str().unwrap(),
            "--identity-file",
            env.identity.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(0);
    let plain = std::fs::read(&plain_file).unwrap();
    assert!(secret_in(&plain), "the Secret is in the decrypted archive");

    // The standard age command gives the same plain tar.zst, without lifeboat.
    if let Some(age) = age_cli() {
        let sealed_path = env.store().join("backups/b1/archive.tar.zst");
        let out = Command::new(age)
            .arg("-d")
            .arg("-i")
            .arg(&env.identity)
            .arg(&sealed_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plain);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_config_still_reads_encrypted_backups_with_an_identity() {
    let env = Env::new().await;
    let kc = env.source.kubeconfig_path().to_path_buf();
    env.lifeboat(
        &kc,
        &["--config", &env.config(true), "backup", "create", "b2"],
    )
    .await
    .expect_code(0);
    // The operator's laptop config has no recipients, only the identity on the command line.
    let plain = env.config(false);
    let describe = env
        .lifeboat(
            &kc,
            &[
                "--config", &plain, "backup", "describe", "b2", "--output", "json",
            ],
        )
        .await;
    describe.expect_code(0);
    assert!(!describe.stdout.contains(CANARY));
    let target = KubeSim::start().await.unwrap();
    env.lifeboat(
        target.kubeconfig_path(),
        &[
            "--config",
            &plain,
            "restore",
            "create",
            "--from-backup",
            "b2",
            "--name",
            "r1",
            "--identity-file",
            env.identity.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(0);
}
