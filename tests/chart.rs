//! The Helm chart (`charts/lifeboat`) as Helm, lifeboat and a cluster see it.
//!
//! The chart is linted and rendered by the real Helm engine: Helm v4's Go SDK, loaded by the
//! Python package `helm-python-sdk` through `tests/support/render_chart.py`. The rendered
//! objects are checked field by field against the EKS production checklist and against what the
//! daemon really serves (its listen port and probe paths come from the crate's constants, not
//! from copies), the rendered config is checked by the `lifeboat config validate` binary, and
//! the objects are created in kubesim with the real `kubectl`.
//!
//! Without Python and helm-python-sdk, or without kubectl, the tests that need them fail under
//! `CI=true` and are skipped otherwise, saying how to install what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kubesim::KubeSim;
use kubesim::kubectl::{self, Kubectl};
use lifeboat::config::defaults::{LEASE_NAME, LISTEN};
use lifeboat::daemon::http::{HEALTHZ_PATH, METRICS_PATH, READY_PATH};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const RELEASE: &str = "lifeboat";
const NAMESPACE: &str = "lifeboat";
/// The placeholder bucket of the default values: valid for lifeboat, named for NOTES.txt.
const PLACEHOLDER_BUCKET: &str = "change-me-lifeboat-backups";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/lifeboat";

const HELM_HINT: &str = "the Helm engine is needed: install Python 3 and run \
     `python3 -m pip install -r scripts/test-requirements.txt` (it brings helm-python-sdk), \
     or set PYTHON=/path/to/python3 to a Python that has it";
/// Exit status of the helper script when helm-python-sdk cannot be imported.
const HELM_MISSING: i32 = 3;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/lifeboat")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `$PYTHON`, else `python3` on `PATH`.
fn find_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PYTHON") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
}

/// The Helm engine, reached through `tests/support/render_chart.py`.
struct Helm {
    python: PathBuf,
}

impl Helm {
    /// The engine, or `None` (after saying how to install it) when it is missing; under
    /// `CI=true` a missing engine fails the test instead, so CI cannot pass by testing nothing.
    #[track_caller]
    fn get() -> Option<Helm> {
        let missing = |why: String| {
            assert!(!in_ci(), "{why}: {HELM_HINT}");
            eprintln!("skipping: {why}: {HELM_HINT}");
            None
        };
        let Some(python) = find_python() else {
            return missing("python3 is not on PATH".to_owned());
        };
        let helm = Helm { python };
        match helm.run(&json!({"op": "version"})) {
            Ok(_) => Some(helm),
            Err(why) => missing(why),
        }
    }

    /// Runs one request; `Err` only when the engine cannot be loaded.
    fn run(&self, request: &Value) -> Result<Value, String> {
        let mut child = Command::new(&self.python)
            .arg(repo().join("tests/support/render_chart.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.python.display()))?;
        serde_json::to_writer(child.stdin.take().expect("piped stdin"), request)
            .expect("write the request");
        let out = child.wait_with_output().expect("the helper runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(HELM_MISSING) {
            return Err(stderr.trim().to_owned());
        }
        assert!(
            out.status.success(),
            "render_chart.py failed ({}) on {request}:\n{stderr}",
            out.status
        );
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "render_chart.py printed no JSON ({e}):\n{}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        }))
    }

    fn call(&self, request: &Value) -> Value {
        self.run(request).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `helm lint --strict` with these values on top of values.yaml.
    fn lint(&self, values: &Value) -> Value {
        let answer = self.call(&json!({"op": "lint", "chart": chart_dir(), "values": values}));
        answer["report"].clone()
    }

    /// What `helm template` would produce, or Helm's error.
    fn try_render(&self, values: &Value) -> Result<Rendered, String> {
        let answer = self.call(&json!({
            "op": "render",
            "chart": chart_dir(),
            "values": values,
            "name": RELEASE,
            "namespace": NAMESPACE,
        }));
        if answer["ok"] != true {
            return Err(answer["error"].as_str().unwrap_or_default().to_owned());
        }
        let manifests: BTreeMap<String, String> =
            serde_json::from_value(answer["manifests"].clone()).expect("manifests by path");
        Ok(Rendered::new(manifests))
    }

    #[track_caller]
    fn render(&self, values: &Value) -> Rendered {
        self.try_render(values)
            .unwrap_or_else(|e| panic!("Helm refused {values}: {e}"))
    }

    /// Helm's error for values it must refuse (at render time, as `helm install` would).
    #[track_caller]
    fn refused(&self, values: &Value) -> String {
        match self.try_render(values) {
            Ok(r) => panic!("Helm rendered {values}:\n{}", r.yaml()),
            Err(e) => e,
        }
    }

    /// values.schema.json on its own.
    fn validate(&self, values: &Value) -> Result<(), String> {
        let answer = self.call(&json!({"op": "validate", "chart": chart_dir(), "values": values}));
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(answer["error"].as_str().unwrap_or_default().to_owned())
        }
    }
}

/// A rendered release: the manifests by template path and the objects in them.
struct Rendered {
    manifests: BTreeMap<String, String>,
    objects: Vec<Value>,
}

impl Rendered {
    fn new(manifests: BTreeMap<String, String>) -> Self {
        let mut objects = Vec::new();
        for (path, text) in &manifests {
            if !is_manifest(path) {
                continue;
            }
            let docs: Vec<Value> = serde_saphyr::from_multiple(text)
                .unwrap_or_else(|e| panic!("{path} is not YAML ({e}):\n{text}"));
            objects.extend(docs.into_iter().filter(|d| !d.is_null()));
        }
        Rendered { manifests, objects }
    }

    /// Every object as one multi-document YAML stream, for `kubectl create -f -`.
    fn yaml(&self) -> String {
        self.manifests
            .iter()
            .filter(|(path, text)| is_manifest(path) && !text.trim().is_empty())
            .fold(String::new(), |mut all, (_, text)| {
                all.push_str("---\n");
                all.push_str(text);
                all.push('\n');
                all
            })
    }

    fn notes(&self) -> &str {
        &self.manifests[&format!("{RELEASE}/templates/NOTES.txt")]
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    #[track_caller]
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.kinds()))
    }

    fn kinds(&self) -> BTreeSet<(String, String)> {
        self.objects
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap_or_default().to_owned(),
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    fn deployment(&self) -> &Value {
        self.get("Deployment", RELEASE)
    }

    fn container(&self) -> &Value {
        let containers = &self.deployment()["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
        &containers[0]
    }

    /// The lifeboat config the ConfigMap carries, as text.
    fn config_text(&self) -> &str {
        self.get("ConfigMap", RELEASE)["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml in the ConfigMap")
    }

    fn config(&self) -> Value {
        serde_saphyr::from_str(self.config_text()).expect("the config is YAML")
    }

    fn config_checksum(&self) -> &str {
        self.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .expect("checksum/config annotation")
    }

    fn image(&self) -> &str {
        self.container()["image"].as_str().expect("image")
    }
}

fn is_manifest(path: &str) -> bool {
    Path::new(path)
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml")
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

fn defaults() -> Value {
    json!({})
}

/// Runs `lifeboat config validate` on `text`; its exit code and output.
fn config_validate(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, text).expect("write the config");
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["config", "validate"])
        .arg(&file)
        .env_remove("LIFEBOAT_CONFIG")
        .output()
        .expect("lifeboat runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn chart_metadata_names_the_crate_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("Chart.yaml is YAML");
    assert_eq!(chart["apiVersion"], "v2", "{chart}");
    assert_eq!(chart["name"], "lifeboat", "{chart}");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "{chart}");
}

/// The image cannot be built here (no container engine), so its recipe is checked as text: a
/// multi-stage build of the lean binary onto a distroless, non-root runtime.
#[test]
fn dockerfile_builds_a_lean_non_root_image() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let from: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        from,
        [
            "rust:1-bookworm AS build",
            "gcr.io/distroless/cc-debian12:nonroot"
        ],
        "builder on the runtime's Debian release, distroless runtime"
    );
    for expected in [
        "cargo build --release --locked --no-default-features --package lifeboat --bin lifeboat",
        "COPY --from=build /usr/local/bin/lifeboat /lifeboat",
        "USER 65532:65532",
        "ENTRYPOINT [\"/lifeboat\"]",
        "org.opencontainers.image.source=",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
        &format!("ARG VERSION={}", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(text.contains(expected), "the Dockerfile lacks {expected:?}");
    }
    // What --no-default-features leaves out is exactly the embedded cluster.
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("default = [\"embedded\"]"),
        "the default features changed: revisit the Dockerfile's --no-default-features"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(ignored.contains(&"target/"), "{ignored:?}");
    assert!(ignored.contains(&".git"), "{ignored:?}");
}

#[test]
fn lint_strict_reports_nothing_above_info() {
    let Some(helm) = Helm::get() else { return };
    for values in [
        defaults(),
        json!({"replicaCount": 1}),
        json!({"rbac": {"restore": true}, "serviceMonitor": {"enabled": true}}),
        json!({"image": {"digest": DIGEST}, "serviceAccount": {"roleArn": ROLE_ARN}}),
        json!({"networkPolicy": {"enabled": false}, "podDisruptionBudget": {"enabled": false}}),
    ] {
        let report = helm.lint(&values);
        let serious: Vec<&Value> = report["messages"]
            .as_array()
            .expect("lint messages")
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            serious.is_empty(),
            "lint --strict with {values}: {serious:?}"
        );
        assert_eq!(report["errors"], json!([]), "lint errors with {values}");
        assert_eq!(report["total_charts_linted"], 1, "{report}");
    }
}

#[test]
fn default_values_render_the_documented_objects() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    assert_eq!(
        r.kinds(),
        pairs(&[
            ("ClusterRole", "lifeboat-backup"),
            ("ClusterRoleBinding", "lifeboat-backup"),
            ("ConfigMap", RELEASE),
            ("Deployment", RELEASE),
            ("NetworkPolicy", RELEASE),
            ("PodDisruptionBudget", RELEASE),
            ("Role", "lifeboat-leader-election"),
            ("RoleBinding", "lifeboat-leader-election"),
            ("Service", RELEASE),
            ("ServiceAccount", RELEASE),
        ])
    );
    let cluster_scoped = ["ClusterRole", "ClusterRoleBinding"];
    for o in &r.objects {
        let kind = o["kind"].as_str().unwrap();
        if cluster_scoped.contains(&kind) {
            assert!(o["metadata"]["namespace"].is_null(), "{o}");
        } else {
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{o}");
        }
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/name"],
            "lifeboat"
        );
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/instance"],
            RELEASE
        );
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION")
        );
    }
}

#[test]
fn deployment_follows_the_production_checklist() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let d = r.deployment();
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["spec"]["replicas"], 2);
    let selector = &d["spec"]["selector"]["matchLabels"];
    let template = &d["spec"]["template"];
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(&template["metadata"]["labels"][k], v, "pod labels match");
    }
    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["securityContext"],
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    for absent in [
        "priorityClassName",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "imagePullSecrets",
        "hostNetwork",
    ] {
        assert!(pod[absent].is_null(), "{absent}: {pod}");
    }

    let c = r.container();
    assert_eq!(c["name"], "lifeboat");
    assert_eq!(
        c["image"],
        format!("ghcr.io/lifeboat-dr/lifeboat:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert!(c["command"].is_null(), "the image's ENTRYPOINT runs");
    assert_eq!(
        strings(&c["args"]),
        [
            "--config",
            "/etc/lifeboat/config.yaml",
            "--log-format",
            "json",
            "--log-level",
            "info",
            "daemon"
        ]
    );

    // The port and probes are what the daemon serves, read from the crate, not copied.
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": LISTEN.port(), "protocol": "TCP"}])
    );
    let probe = |name: &str, path: &str, period: u64, failures: u64| {
        assert_eq!(
            c[name],
            json!({
                "httpGet": {"path": path, "port": "http"},
                "periodSeconds": period,
                "failureThreshold": failures,
            }),
            "{name}"
        );
    };
    probe("readinessProbe", READY_PATH, 5, 2);
    probe("livenessProbe", HEALTHZ_PATH, 30, 5);
    probe("startupProbe", HEALTHZ_PATH, 5, 30);

    let resources = &c["resources"];
    assert!(resources["requests"]["cpu"].is_string(), "{resources}");
    assert!(resources["requests"]["memory"].is_string(), "{resources}");
    assert!(resources["limits"]["memory"].is_string(), "{resources}");
    assert_eq!(
        resources["limits"]
            .as_object()
            .map(|l| l.keys().map(String::as_str).collect::<Vec<_>>()),
        Some(vec!["memory"]),
        "no CPU limit: {resources}"
    );

    assert_eq!(
        c["securityContext"],
        json!({
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );

    assert_eq!(
        c["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "LIFEBOAT_CONFIG", "value": "/etc/lifeboat/config.yaml"},
        ])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([
            {"name": "config", "mountPath": "/etc/lifeboat", "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
        ])
    );
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "config", "configMap": {"name": RELEASE}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ])
    );
}

#[test]
fn pod_scheduling_values_are_passed_through() {
    let Some(helm) = Helm::get() else { return };
    let spread = json!([{
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "lifeboat"}},
    }]);
    let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
        ]}]
    }}});
    let tolerations = json!([{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}]);
    let r = helm.render(&json!({
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": tolerations,
        "affinity": affinity,
        "topologySpreadConstraints": spread,
        "imagePullSecrets": [{"name": "regcred"}],
        "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
        "podAnnotations": {"example.com/team": "platform"},
        "logLevel": "debug",
    }));
    let pod = &r.deployment()["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"], tolerations);
    assert_eq!(pod["affinity"], affinity);
    assert_eq!(pod["topologySpreadConstraints"], spread);
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    let c = r.container();
    assert_eq!(
        c["env"][3],
        json!({"name": "AWS_REGION", "value": "eu-west-1"})
    );
    assert_eq!(c["env"][0]["name"], "POD_NAME");
    assert!(
        strings(&c["args"])
            .windows(2)
            .any(|w| w == ["--log-level", "debug"])
    );
    let annotations = &r.deployment()["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["example.com/team"], "platform");
    assert!(annotations["checksum/config"].is_string());

    // Scratch space without a size limit is still an emptyDir.
    let r = helm.render(&json!({"scratch": {"sizeLimit": null}}));
    assert_eq!(
        r.deployment()["spec"]["template"]["spec"]["volumes"][1],
        json!({"name": "tmp", "emptyDir": {}})
    );
}

#[test]
fn config_map_holds_a_config_lifeboat_accepts() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let text = r.config_text();
    let (code, out) = config_validate(text);
    assert_eq!(
        code, 0,
        "lifeboat config validate refused the default config:\n{out}\n{text}"
    );

    let config = r.config();
    assert_eq!(
        config["storage"]["url"],
        format!("s3://{PLACEHOLDER_BUCKET}/lifeboat")
    );
    let listen: std::net::SocketAddr = config["server"]["listen"]
        .as_str()
        .expect("server.listen")
        .parse()
        .expect("server.listen is IP:PORT");
    assert_eq!(
        listen, LISTEN,
        "the chart's default is the daemon's default"
    );
    assert_eq!(config["server"]["leaderElection"]["enabled"], true);
    assert_eq!(config["server"]["leaderElection"]["leaseName"], LEASE_NAME);
    assert_eq!(config["schedules"][0]["name"], "nightly");

    // The checksum is the rendered ConfigMap's, so any change of the config rolls the pods.
    let configmap = &r.manifests[&format!("{RELEASE}/templates/configmap.yaml")];
    assert_eq!(
        r.config_checksum(),
        hex::encode(Sha256::digest(configmap.as_bytes())),
        "checksum/config is the SHA-256 of the rendered ConfigMap"
    );
}

#[test]
fn a_documented_example_config_goes_through_the_chart_unchanged() {
    let Some(helm) = Helm::get() else { return };
    let path = repo().join("config/production.yaml");
    let example: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("config/production.yaml"))
            .expect("the example is YAML");
    let r = helm.render(&json!({"config": example}));
    let (code, out) = config_validate(r.config_text());
    assert_eq!(code, 0, "{out}\n{}", r.config_text());
    let rendered = r.config();
    for key in [
        "cluster",
        "storage",
        "volumes",
        "schedules",
        "server",
        "archive",
    ] {
        assert_eq!(rendered[key], example[key], "config.{key}");
    }
    // The example puts the Lease in namespace `lifeboat`; the Lease Role follows it.
    let role = r.get("Role", "lifeboat-leader-election");
    assert_eq!(
        role["metadata"]["namespace"],
        example["server"]["leaderElection"]["namespace"]
    );
}

#[test]
fn a_config_change_rolls_the_pods() {
    let Some(helm) = Helm::get() else { return };
    let before = helm.render(&defaults());
    let changed = helm.render(&json!({"config": {"schedules": [
        {"name": "hourly", "cron": "@hourly", "retention": {"keepLast": 24}}
    ]}}));
    assert_ne!(before.config_checksum(), changed.config_checksum());
    let (code, out) = config_validate(changed.config_text());
    assert_eq!(code, 0, "{out}\n{}", changed.config_text());
    // Values outside the config leave the pods alone.
    let scaled = helm.render(&json!({"service": {"port": 9100}}));
    assert_eq!(before.config_checksum(), scaled.config_checksum());
}

#[test]
fn the_listen_port_drives_every_port() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&json!({"config": {"server": {"listen": "0.0.0.0:9090"}}}));
    assert_eq!(r.container()["ports"][0]["containerPort"], 9090);
    assert_eq!(r.container()["ports"][0]["name"], "http");
    assert_eq!(
        r.get("NetworkPolicy", RELEASE)["spec"]["ingress"][0]["ports"],
        json!([{"port": 9090, "protocol": "TCP"}])
    );
    assert_eq!(
        r.get("Service", RELEASE)["spec"]["ports"][0]["targetPort"],
        "http"
    );
    assert_eq!(r.config()["server"]["listen"], "0.0.0.0:9090");
    let (code, out) = config_validate(r.config_text());
    assert_eq!(code, 0, "{out}");

    let v6 = helm.render(&json!({"config": {"server": {"listen": "[::]:8080"}}}));
    assert_eq!(v6.container()["ports"][0]["containerPort"], 8080);

    for listen in ["127.0.0.1:8000", "localhost:8000", "0.0.0.0"] {
        let e = helm.refused(&json!({"config": {"server": {"listen": listen}}}));
        assert!(e.contains("listen"), "{listen}: {e}");
    }
}

#[test]
fn service_and_service_monitor_expose_the_metrics() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    assert!(r.find("ServiceMonitor", RELEASE).is_none());
    let svc = r.get("Service", RELEASE);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": LISTEN.port(), "targetPort": "http", "protocol": "TCP"}])
    );
    let pod_labels = &r.deployment()["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[k], v, "the Service selects the pods");
    }

    let r = helm.render(&json!({"serviceMonitor": {
        "enabled": true, "labels": {"release": "kube-prometheus-stack"}
    }}));
    let sm = r.get("ServiceMonitor", RELEASE);
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "http", "path": METRICS_PATH, "interval": "30s", "scrapeTimeout": "10s"}])
    );
    assert_eq!(
        sm["spec"]["namespaceSelector"],
        json!({"matchNames": [NAMESPACE]})
    );
    let svc_labels = &r.get("Service", RELEASE)["metadata"]["labels"];
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&svc_labels[k], v, "the ServiceMonitor selects the Service");
    }
}

#[test]
fn backup_rbac_is_read_only_and_the_lease_role_is_namespaced() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let backup = r.get("ClusterRole", "lifeboat-backup");
    assert_eq!(
        backup["rules"],
        json!([
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
            {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version"], "verbs": ["get"]},
        ])
    );
    let binding = r.get("ClusterRoleBinding", "lifeboat-backup");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lifeboat-backup"})
    );
    let subject = json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]);
    assert_eq!(binding["subjects"], subject);

    let lease = r.get("Role", "lifeboat-leader-election");
    assert_eq!(lease["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        lease["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [LEASE_NAME], "verbs": ["get", "update"]},
        ])
    );
    let lease_binding = r.get("RoleBinding", "lifeboat-leader-election");
    assert_eq!(lease_binding["metadata"]["namespace"], NAMESPACE);
    assert_eq!(lease_binding["roleRef"]["name"], "lifeboat-leader-election");
    assert_eq!(lease_binding["subjects"], subject);

    // Nothing in the default release can write outside its Lease.
    for o in &r.objects {
        for rule in o["rules"].as_array().into_iter().flatten() {
            let writes: Vec<&str> = strings(&rule["verbs"])
                .into_iter()
                .filter(|v| !["get", "list", "watch"].contains(v))
                .collect();
            if !writes.is_empty() {
                assert_eq!(o["kind"], "Role", "{o}");
                assert_eq!(rule["resources"], json!(["leases"]), "{o}");
            }
        }
    }

    // A Lease with another name gets a Role for that name; no election, no Role.
    let named = helm
        .render(&json!({"config": {"server": {"leaderElection": {"leaseName": "lifeboat-prod"}}}}));
    assert_eq!(
        named.get("Role", "lifeboat-leader-election")["rules"][1]["resourceNames"],
        json!(["lifeboat-prod"])
    );
    let single = helm.render(
        &json!({"replicaCount": 1, "config": {"server": {"leaderElection": {"enabled": false}}}}),
    );
    assert!(single.find("Role", "lifeboat-leader-election").is_none());
    let (code, out) = config_validate(single.config_text());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn restore_role_is_opt_in() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    assert!(r.find("ClusterRole", "lifeboat-restore").is_none());
    assert!(r.find("ClusterRoleBinding", "lifeboat-restore").is_none());
    assert!(!r.notes().contains("rbac.restore"));

    let r = helm.render(&json!({"rbac": {"restore": true}}));
    let role = r.get("ClusterRole", "lifeboat-restore");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["*"], "resources": ["*"],
             "verbs": ["get", "list", "watch", "create", "update", "patch"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "clusterroles"],
             "verbs": ["escalate", "bind"]},
        ])
    );
    let binding = r.get("ClusterRoleBinding", "lifeboat-restore");
    assert_eq!(binding["roleRef"]["name"], "lifeboat-restore");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    // The backup role stays read-only beside it.
    assert_eq!(
        r.get("ClusterRole", "lifeboat-backup")["rules"][0]["verbs"],
        json!(["get", "list", "watch"])
    );
    assert!(r.notes().contains("rbac.restore is on"), "{}", r.notes());
}

#[test]
fn pod_disruption_budget_only_with_several_replicas() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let pdb = r.get("PodDisruptionBudget", RELEASE);
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        r.deployment()["spec"]["selector"]["matchLabels"]
    );

    let single = helm.render(&json!({"replicaCount": 1}));
    assert!(single.find("PodDisruptionBudget", RELEASE).is_none());
    assert_eq!(single.deployment()["spec"]["replicas"], 1);
    // One replica still elects (lifeboat's default), so its Lease Role stays.
    assert!(single.find("Role", "lifeboat-leader-election").is_some());

    let three = helm.render(&json!({"replicaCount": 3}));
    assert!(three.find("PodDisruptionBudget", RELEASE).is_some());
}

#[test]
fn network_policy_admits_only_the_named_peers() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let np = r.get("NetworkPolicy", RELEASE);
    let spec = &np["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"],
        r.deployment()["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        spec["ingress"],
        json!([{
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }],
            "ports": [{"port": LISTEN.port(), "protocol": "TCP"}],
        }])
    );
    assert_eq!(
        spec["egress"],
        json!([
            {
                "to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            },
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
            },
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"port": 443, "protocol": "TCP"}],
            },
        ])
    );

    // Peers and addresses come from the values; no peer means no ingress at all.
    let r = helm.render(&json!({"networkPolicy": {
        "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}],
        "apiServer": {"cidrs": ["10.0.0.0/16"], "ports": [443]},
        "aws": {"cidrs": ["10.0.128.0/20"]},
        "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": 9000, "protocol": "TCP"}]}],
    }}));
    let spec = &r.get("NetworkPolicy", RELEASE)["spec"];
    assert_eq!(
        spec["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "observability"
    );
    assert_eq!(
        spec["egress"][1]["to"],
        json!([{"ipBlock": {"cidr": "10.0.0.0/16"}}])
    );
    assert_eq!(
        spec["egress"][2]["to"],
        json!([{"ipBlock": {"cidr": "10.0.128.0/20"}}])
    );
    assert_eq!(spec["egress"][3]["ports"][0]["port"], 9000);
    let closed = helm.render(&json!({"networkPolicy": {"ingressFrom": []}}));
    assert_eq!(
        closed.get("NetworkPolicy", RELEASE)["spec"]["ingress"],
        json!([])
    );
    let off = helm.render(&json!({"networkPolicy": {"enabled": false}}));
    assert!(off.find("NetworkPolicy", RELEASE).is_none());
}

#[test]
fn irsa_role_annotates_the_service_account() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let sa = r.get("ServiceAccount", RELEASE);
    assert!(sa["metadata"]["annotations"].is_null(), "{sa}");
    assert!(
        r.notes().contains("serviceAccount.roleArn"),
        "{}",
        r.notes()
    );

    for values in [
        json!({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}}}),
        json!({"serviceAccount": {"roleArn": ROLE_ARN}}),
    ] {
        let r = helm.render(&values);
        let sa = r.get("ServiceAccount", RELEASE);
        assert_eq!(
            sa["metadata"]["annotations"],
            json!({"eks.amazonaws.com/role-arn": ROLE_ARN}),
            "{values}"
        );
        assert!(!r.notes().contains("No IAM role"), "{}", r.notes());
    }

    // An existing ServiceAccount: none is created, and every binding names it.
    let r = helm.render(&json!({"serviceAccount": {"create": false, "name": "backup-operator"}}));
    assert!(r.find("ServiceAccount", "backup-operator").is_none());
    assert_eq!(
        r.deployment()["spec"]["template"]["spec"]["serviceAccountName"],
        "backup-operator"
    );
    assert_eq!(
        r.get("ClusterRoleBinding", "lifeboat-backup")["subjects"][0]["name"],
        "backup-operator"
    );
    let e = helm.refused(&json!({"serviceAccount": {"create": false}}));
    assert!(e.contains("serviceAccount.name"), "{e}");
}

#[test]
fn image_is_pinned_by_tag_or_digest() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&json!({"image": {"tag": "0.2.0"}}));
    assert_eq!(r.image(), "ghcr.io/lifeboat-dr/lifeboat:0.2.0");
    let r = helm.render(&json!({"image": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lifeboat", "digest": DIGEST}}));
    assert_eq!(
        r.image(),
        format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/lifeboat@{DIGEST}")
    );
    // The digest wins over a tag.
    let r = helm.render(&json!({"image": {"tag": "0.2.0", "digest": DIGEST}}));
    assert_eq!(r.image(), format!("ghcr.io/lifeboat-dr/lifeboat@{DIGEST}"));
}

#[test]
fn schema_refuses_wrong_types_and_latest() {
    let Some(helm) = Helm::get() else { return };
    assert_eq!(helm.validate(&defaults()), Ok(()));
    for (values, names) in [
        (json!({"replicaCount": "many"}), "/replicaCount"),
        (json!({"replicaCount": 0}), "/replicaCount"),
        (json!({"image": {"tag": "latest"}}), "/image/tag"),
        (json!({"image": {"tag": "LATEST"}}), "/image/tag"),
        (json!({"image": {"digest": "sha256:abc"}}), "/image/digest"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"logLevel": "verbose"}), "/logLevel"),
        (json!({"rbac": {"restore": "yes"}}), "/rbac/restore"),
        (json!({"service": {"type": "Ingress"}}), "/service/type"),
        (
            json!({"config": {"storage": {"url": "https://bucket"}}}),
            "/config/storage/url",
        ),
        (
            json!({"config": {"server": {"listen": 8000}}}),
            "/config/server/listen",
        ),
        (
            json!({"serviceAccount": {"roleArn": "lifeboat"}}),
            "/serviceAccount/roleArn",
        ),
        (
            json!({"networkPolicy": {"aws": {"cidrs": ["everywhere"]}}}),
            "/networkPolicy/aws/cidrs",
        ),
        (json!({"replicas": 2}), "replicas"),
    ] {
        let e = helm
            .validate(&values)
            .expect_err(&format!("the schema accepted {values}"));
        assert!(e.contains(names), "{values}: {e}");
        // `helm install` and `helm template` refuse them too.
        let e = helm.refused(&values);
        assert!(e.contains(names), "{values}: {e}");
    }
}

#[test]
fn leader_election_stays_on_with_several_replicas() {
    let Some(helm) = Helm::get() else { return };
    let e = helm.refused(&json!({"config": {"server": {"leaderElection": {"enabled": false}}}}));
    assert!(e.contains("leaderElection"), "{e}");
}

#[test]
fn notes_tell_the_operator_what_to_do() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let notes = r.notes();
    for expected in [
        "ACTION NEEDED",
        PLACEHOLDER_BUCKET,
        "--set config.storage.url=",
        "kubectl -n lifeboat rollout status deployment/lifeboat",
        "get lease lifeboat",
        "exec deployment/lifeboat -- /lifeboat backup list",
        READY_PATH,
        METRICS_PATH,
    ] {
        assert!(
            notes.contains(expected),
            "NOTES.txt lacks {expected:?}:\n{notes}"
        );
    }
    let r = helm.render(&json!({
        "config": {"storage": {"url": "s3://acme-cluster-backups/prod"}},
        "serviceAccount": {"roleArn": ROLE_ARN},
    }));
    assert!(!r.notes().contains("ACTION NEEDED"), "{}", r.notes());
    assert!(!r.notes().contains(PLACEHOLDER_BUCKET), "{}", r.notes());
}

/// The key paths of a values tree, descending into maps only (lists and scalars are leaves).
fn value_paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.push(path.clone());
            value_paths(&path, v, out);
        }
    }
}

/// The line of each key of values.yaml by path, and whether a comment sits right above it.
fn commented_keys(text: &str) -> BTreeMap<String, bool> {
    let mut keys = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut previous = "";
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let key = trimmed
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()));
        if let Some(key) = key.filter(|_| !trimmed.starts_with('#')) {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            let path = stack
                .iter()
                .map(|(_, k)| k.as_str())
                .chain([key])
                .collect::<Vec<_>>()
                .join(".");
            keys.insert(path.clone(), previous.trim_start().starts_with('#'));
            stack.push((indent, key.to_owned()));
        }
        previous = line;
    }
    keys
}

#[test]
fn every_value_is_commented_and_in_the_readme_table() {
    let values_text = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values");
    let values: Value = serde_saphyr::from_str(&values_text).expect("values.yaml is YAML");
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("README.md");
    let table: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(path, _)| path.to_owned()))
        .collect();
    assert!(table.len() > 40, "the README's values table: {table:?}");

    let mut paths = Vec::new();
    value_paths("", &values, &mut paths);
    // Every value is in the table itself or under a row that documents it whole (a row with
    // no row below it, such as podSecurityContext).
    for path in &paths {
        let covered = table.contains(path)
            || table.iter().any(|row| {
                let under = format!("{row}.");
                path.starts_with(&under) && !table.iter().any(|other| other.starts_with(&under))
            });
        assert!(covered, "values.yaml's {path} is not in the README's table");
    }
    // Every row is a real value, commented in values.yaml.
    let comments = commented_keys(&values_text);
    for row in &table {
        assert!(
            paths.contains(row),
            "the README documents {row}, which values.yaml lacks"
        );
        assert_eq!(
            comments.get(row),
            Some(&true),
            "{row} has no comment right above it in values.yaml"
        );
    }
}

// ---- The rendered objects in a cluster: kubesim, with the real kubectl ----

async fn cluster() -> Option<(KubeSim, Kubectl)> {
    if !kubectl::available() {
        return None;
    }
    let sim = KubeSim::start().await.expect("kubesim starts");
    let k = Kubectl::new(sim.kubeconfig_path()).expect("kubectl");
    let ns = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n");
    k.with_stdin(&["create", "-f", "-"], &ns).await;
    Some((sim, k))
}

/// `kubectl create -f -` of the whole release, then every object read back.
async fn create_release(k: &Kubectl, r: &Rendered) {
    let out = k.with_stdin(&["create", "-f", "-"], &r.yaml()).await;
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        r.objects.len(),
        "kubectl created:\n{out}"
    );
    for o in &r.objects {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = o["metadata"]["namespace"].as_str() {
            args.extend(["-n", ns]);
        }
        let live: Value = serde_json::from_str(&k.ok(&args).await).expect("JSON");
        assert_eq!(
            live["metadata"]["labels"], o["metadata"]["labels"],
            "{kind} {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_are_created_with_kubectl() {
    let Some(helm) = Helm::get() else { return };
    let r = helm.render(&defaults());
    let Some((_sim, k)) = cluster().await else {
        return;
    };
    create_release(&k, &r).await;

    let d: Value = serde_json::from_str(
        &k.ok(&["get", "deployment", RELEASE, "-n", NAMESPACE, "-o", "json"])
            .await,
    )
    .expect("JSON");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], LISTEN.port());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], READY_PATH);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], HEALTHZ_PATH);
    let cm: Value = serde_json::from_str(
        &k.ok(&["get", "configmap", RELEASE, "-n", NAMESPACE, "-o", "json"])
            .await,
    )
    .expect("JSON");
    assert_eq!(cm["data"]["config.yaml"], r.config_text());
    let names = k.ok(&["get", "clusterroles", "-o", "name"]).await;
    assert!(
        names
            .lines()
            .any(|l| l == "clusterrole.rbac.authorization.k8s.io/lifeboat-backup"),
        "{names}"
    );

    // The opt-in objects, in a second release beside the first.
    let extra = helm.render(&json!({
        "fullnameOverride": "lifeboat-restore-drill",
        "rbac": {"restore": true},
        "replicaCount": 1,
        "image": {"digest": DIGEST},
        "serviceAccount": {"roleArn": ROLE_ARN},
    }));
    assert!(
        extra
            .find("ClusterRole", "lifeboat-restore-drill-restore")
            .is_some()
    );
    create_release(&k, &extra).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_monitor_is_created_once_its_crd_exists() {
    let Some(helm) = Helm::get() else { return };
    let Some(fixtures) = std::env::var_os("LIFEBOAT_FIXTURES") else {
        eprintln!(
            "skipping: LIFEBOAT_FIXTURES is not set; it names ../shared/fixtures/real-world, whose \
             monitoring/ holds the ServiceMonitor CRD (scripts/test.sh sets it)"
        );
        return;
    };
    let crd = Path::new(&fixtures)
        .join("monitoring/01-setup-0servicemonitorCustomResourceDefinition.yaml");
    let crd = std::fs::read_to_string(&crd).unwrap_or_else(|e| panic!("{}: {e}", crd.display()));
    let r = helm.render(&json!({"serviceMonitor": {"enabled": true}}));
    let Some((_sim, k)) = cluster().await else {
        return;
    };
    k.with_stdin(&["create", "-f", "-"], &crd).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=30s",
    ])
    .await;
    create_release(&k, &r).await;
    let sm: Value = serde_json::from_str(
        &k.ok(&[
            "get",
            "servicemonitor",
            RELEASE,
            "-n",
            NAMESPACE,
            "-o",
            "json",
        ])
        .await,
    )
    .expect("JSON");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], METRICS_PATH);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
}
