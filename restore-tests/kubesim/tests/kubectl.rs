//! The real kubectl against kubesim: the fidelity list of KUBESIM.md §6.
//!
//! Each test starts its own server, so they run in parallel. Without kubectl the tests fail
//! under `CI=true` and skip (saying how to install it) otherwise.

use std::time::{Duration, Instant};

use kubesim::KubeSim;
use kubesim::kubectl::{self, Kubectl};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

async fn setup() -> Option<(KubeSim, Kubectl)> {
    if !kubectl::available() {
        return None;
    }
    let sim = KubeSim::start().await.expect("kubesim starts");
    let k = Kubectl::new(sim.kubeconfig_path()).expect("kubectl");
    Some((sim, k))
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().filter(|l| !l.is_empty()).collect();
    v.sort_unstable();
    v
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  labels: {app: web, tier: fe}\ndata:\n  a: \"1\"\n  b: \"2\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_discovery() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    let v = json(&k.ok(&["version", "-o", "json"]).await);
    assert!(
        v["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.32"),
        "{v}"
    );
    let versions = k.ok(&["api-versions"]).await;
    for gv in [
        "v1",
        "apps/v1",
        "apiextensions.k8s.io/v1",
        "autoscaling/v2",
        "autoscaling/v1",
        "coordination.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "api-versions lacks {gv}: {versions}"
        );
    }
    let resources = k.ok(&["api-resources", "-o", "name"]).await;
    for r in [
        "configmaps",
        "deployments.apps",
        "customresourcedefinitions.apiextensions.k8s.io",
        "tokenreviews.authentication.k8s.io",
    ] {
        assert!(resources.lines().any(|l| l == r), "api-resources lacks {r}");
    }
    let cluster_list = k
        .ok(&[
            "api-resources",
            "--namespaced=false",
            "--verbs=list",
            "-o",
            "name",
        ])
        .await;
    assert!(cluster_list.lines().any(|l| l == "namespaces"));
    assert!(!cluster_list.lines().any(|l| l == "configmaps"));
    assert!(
        !cluster_list.lines().any(|l| l.starts_with("tokenreviews")),
        "create-only kinds have no list verb"
    );
    let err = k.fails(&["get", "--raw", "/nonexistent"]).await;
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // Seed namespaces exist, with their name label.
    let ns = json(&k.ok(&["get", "ns", "kube-node-lease", "-o", "json"]).await);
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "kube-node-lease"
    );
    assert_eq!(ns["status"]["phase"], "Active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_and_selectors() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    assert_eq!(
        k.with_stdin(&["create", "-f", "-"], CM).await.trim(),
        "configmap/cm1 created"
    );
    let out = k.run(&["create", "-f", "-"], Some(CM)).await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("AlreadyExists")
            && out.stderr.contains("configmaps \"cm1\" already exists"),
        "{}",
        out.stderr
    );
    let meta = k
        .ok(&[
            "get",
            "cm",
            "cm1",
            "-o",
            "jsonpath={.metadata.uid} {.metadata.resourceVersion} {.metadata.creationTimestamp}",
        ])
        .await;
    let parts: Vec<&str> = meta.split(' ').collect();
    assert_eq!(parts.len(), 3, "{meta}");
    assert_eq!(parts[0].len(), 36, "uid is a UUID: {meta}");
    assert!(
        parts[1].parse::<u64>().is_ok() && parts[2].ends_with('Z'),
        "{meta}"
    );

    for (name, labels) in [
        ("cm2", "{app: db, tier: be}"),
        ("cm3", "{app: api}"),
        ("cm4", "{}"),
    ] {
        let m = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {labels}\ndata: {{x: y}}\n"
        );
        k.with_stdin(&["create", "-f", "-"], &m).await;
    }
    let other =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elsewhere, namespace: kube-public}\n";
    k.with_stdin(&["create", "-f", "-"], other).await;
    assert_eq!(
        lines(&k.ok(&["get", "cm", "-o", "name"]).await),
        [
            "configmap/cm1",
            "configmap/cm2",
            "configmap/cm3",
            "configmap/cm4"
        ]
    );
    assert!(
        k.ok(&["get", "cm", "-A", "-o", "name"])
            .await
            .lines()
            .any(|l| l == "configmap/elsewhere")
    );
    assert!(
        k.ok(&["get", "cm", "-o", "yaml"])
            .await
            .contains("kind: List")
    );
    let list = json(&k.ok(&["get", "cm", "-o", "json"]).await);
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["kind"] == "ConfigMap"),
        "kubectl sets kind on items"
    );

    assert_eq!(
        lines(
            &k.ok(&["get", "cm", "-l", "app in (web,db),tier!=be", "-o", "name"])
                .await
        ),
        ["configmap/cm1"]
    );
    assert_eq!(
        lines(
            &k.ok(&["get", "cm", "-l", "app notin (web)", "-o", "name"])
                .await
        ),
        ["configmap/cm2", "configmap/cm3", "configmap/cm4"]
    );
    assert_eq!(
        lines(&k.ok(&["get", "cm", "-l", "tier", "-o", "name"]).await),
        ["configmap/cm1", "configmap/cm2"]
    );
    assert_eq!(
        lines(&k.ok(&["get", "cm", "-l", "!tier", "-o", "name"]).await),
        ["configmap/cm3", "configmap/cm4"]
    );
    assert_eq!(
        lines(
            &k.ok(&[
                "get",
                "cm",
                "--field-selector",
                "metadata.name=cm1",
                "-o",
                "name"
            ])
            .await
        ),
        ["configmap/cm1"]
    );
    let err = k
        .fails(&["get", "cm", "--field-selector", "spec.foo=x"])
        .await;
    assert!(err.contains("field label not supported: spec.foo"), "{err}");
    let chunked = k.ok(&["get", "cm", "--chunk-size=2", "-o", "name"]).await;
    assert_eq!(
        lines(&chunked),
        lines(&k.ok(&["get", "cm", "-o", "name"]).await)
    );

    let raw = json(
        &k.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"])
            .await,
    );
    assert_eq!(raw["kind"], "ConfigMapList");
    assert!(
        raw["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        raw["items"][0].get("kind").is_none(),
        "built-in list items carry no kind"
    );
    let page = json(&k.ok(&["get", "--raw", "/api/v1/configmaps?limit=1"]).await);
    assert!(
        page["metadata"]["continue"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        page["metadata"]["remainingItemCount"]
            .as_u64()
            .is_some_and(|n| n >= 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_annotate_patch_replace() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    k.with_stdin(&["create", "-f", "-"], CM).await;
    k.ok(&["label", "cm", "cm1", "extra=yes"]).await;
    k.ok(&["annotate", "cm", "cm1", "note=hi"]).await;
    let cm = json(&k.ok(&["get", "cm", "cm1", "-o", "json"]).await);
    assert_eq!(cm["metadata"]["labels"]["extra"], "yes");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hi");
    k.ok(&["patch", "cm", "cm1", "-p", r#"{"data":{"z":"9"}}"#])
        .await;
    assert_eq!(
        k.ok(&["get", "cm", "cm1", "-o", "jsonpath={.data.z}"])
            .await,
        "9"
    );
    k.ok(&[
        "patch",
        "cm",
        "cm1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/z"}]"#,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "cm", "cm1", "-o", "jsonpath={.data.z}"])
            .await,
        ""
    );
    let err = k
        .fails(&[
            "patch",
            "cm",
            "cm1",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
        ])
        .await;
    assert!(err.contains("invalid") || err.contains("rejected"), "{err}");
    let replaced = CM.replace("a: \"1\"", "a: \"one\"");
    k.with_stdin(&["replace", "-f", "-"], &replaced).await;
    let cm = json(&k.ok(&["get", "cm", "cm1", "-o", "json"]).await);
    assert_eq!(cm["data"]["a"], "one");
    assert!(
        cm["metadata"]["labels"].get("extra").is_none(),
        "replace drops what the file lacks"
    );
    let err = k
        .fails(&["patch", "cm", "nope", "-p", r#"{"data":{"z":"9"}}"#])
        .await;
    assert!(err.contains("configmaps \"nope\" not found"), "{err}");
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: \"nginx:1.25\"}
      - {name: side, image: \"busybox:1.36\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_uses_strategic_merge() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    assert_eq!(
        k.with_stdin(&["apply", "-f", "-"], DEPLOY).await.trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        k.with_stdin(&["apply", "-f", "-"], DEPLOY).await.trim(),
        "deployment.apps/web unchanged"
    );
    let v2 = DEPLOY
        .replace("replicas: 1", "replicas: 3")
        .replace("nginx:1.25", "nginx:1.26");
    assert_eq!(
        k.with_stdin(&["apply", "-f", "-"], &v2).await.trim(),
        "deployment.apps/web configured"
    );
    let d = json(&k.ok(&["get", "deploy", "web", "-o", "json"]).await);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        2,
        "SMP merges containers by name: {containers:?}"
    );
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(containers[1]["name"], "side");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    // Dropping a container from the file removes it (three-way merge with last-applied).
    let v3 = v2.replace("      - {name: side, image: \"busybox:1.36\"}\n", "");
    k.with_stdin(&["apply", "-f", "-"], &v3).await;
    let d = json(&k.ok(&["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(d["metadata"]["generation"], 3);
    // Scale through the scale subresource.
    k.ok(&["scale", "deploy", "web", "--replicas=5"]).await;
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_ownership_and_conflicts() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    let cm2 =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm2}\ndata: {a: \"1\", b: \"2\"}\n";
    assert_eq!(
        k.with_stdin(&["apply", "--server-side", "-f", "-"], cm2)
            .await
            .trim(),
        "configmap/cm2 serverside-applied"
    );
    let smaller = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm2}\ndata: {a: \"1\"}\n";
    k.with_stdin(&["apply", "--server-side", "-f", "-"], smaller)
        .await;
    let cm = json(
        &k.ok(&["get", "cm", "cm2", "-o", "json", "--show-managed-fields"])
            .await,
    );
    assert!(
        cm["data"].get("b").is_none(),
        "a field the manager stopped applying is removed: {cm}"
    );
    let mf = cm["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        mf.iter()
            .any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply"),
        "{mf:?}"
    );

    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm2}\ndata: {a: \"changed\"}\n";
    let out = k
        .run(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(other),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("conflict") && out.stderr.contains(".data.a"),
        "{}",
        out.stderr
    );
    k.with_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        other,
    )
    .await;
    assert_eq!(
        k.ok(&["get", "cm", "cm2", "-o", "jsonpath={.data.a}"])
            .await,
        "changed"
    );

    // A field set by `kubectl create` (an Update manager) conflicts too.
    let created = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm3}\ndata: {x: \"1\"}\n";
    k.with_stdin(&["create", "-f", "-"], created).await;
    let out = k
        .run(
            &["apply", "--server-side", "-f", "-"],
            Some(&created.replace("\"1\"", "\"2\"")),
        )
        .await;
    assert!(
        !out.success && out.stderr.contains("kubectl-create"),
        "{}",
        out.stderr
    );
}

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: backups.velero.io}
spec:
  group: velero.io
  scope: Namespaced
  names: {plural: backups, singular: backup, kind: Backup, shortNames: [bk]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_lifecycle() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    k.with_stdin(&["apply", "-f", "-"], CRD).await;
    k.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=10s",
        "crd/backups.velero.io",
    ])
    .await;
    assert_eq!(
        k.ok(&["api-resources", "--api-group=velero.io", "-o", "name"])
            .await
            .trim(),
        "backups.velero.io"
    );
    let backup = "apiVersion: velero.io/v1\nkind: Backup\nmetadata: {name: b1}\nspec: {ttl: 720h, includedNamespaces: ['*']}\n";
    assert_eq!(
        k.with_stdin(&["apply", "-f", "-"], backup).await.trim(),
        "backup.velero.io/b1 created"
    );
    assert_eq!(
        k.ok(&["get", "backups", "-A", "-o", "name"]).await.trim(),
        "backup.velero.io/b1"
    );
    let y = k.ok(&["get", "bk", "b1", "-o", "yaml"]).await;
    assert!(y.contains("ttl: 720h") && y.contains("kind: Backup"), "{y}");
    let raw = json(
        &k.ok(&[
            "get",
            "--raw",
            "/apis/velero.io/v1/namespaces/default/backups",
        ])
        .await,
    );
    assert_eq!(
        raw["items"][0]["kind"], "Backup",
        "custom resource list items carry their kind"
    );
    let v2 = backup.replace("720h", "24h");
    assert_eq!(
        k.with_stdin(&["apply", "-f", "-"], &v2).await.trim(),
        "backup.velero.io/b1 configured"
    );
    k.ok(&[
        "patch",
        "bk",
        "b1",
        "--type=merge",
        "-p",
        r#"{"spec":{"ttl":"1h"}}"#,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "bk", "b1", "-o", "jsonpath={.spec.ttl}"])
            .await,
        "1h"
    );
    let err = k
        .fails(&[
            "patch",
            "bk",
            "b1",
            "-p",
            r#"{"spec":{"ttl":"2h"}}"#,
            "--type=strategic",
        ])
        .await;
    assert!(
        err.contains("UnsupportedMediaType")
            || err.contains("unknown format")
            || err.contains("strategic"),
        "{err}"
    );
    k.with_stdin(&["delete", "-f", "-"], backup).await;
    k.ok(&["delete", "crd", "backups.velero.io"]).await;
    let err = k.fails(&["get", "backups"]).await;
    assert!(
        err.contains("the server doesn't have a resource type") || err.contains("could not find"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_deletion_removes_its_custom_resources() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    k.with_stdin(&["create", "-f", "-"], CRD).await;
    k.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=10s",
        "crd/backups.velero.io",
    ])
    .await;
    for n in ["b1", "b2"] {
        k.with_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: velero.io/v1\nkind: Backup\nmetadata: {{name: {n}}}\n"),
        )
        .await;
    }
    k.ok(&["delete", "crd", "backups.velero.io"]).await;
    k.fails(&["get", "crd", "backups.velero.io"]).await;
    // Re-created CRD serves an empty collection: the old objects went with the old CRD.
    k.with_stdin(&["create", "-f", "-"], CRD).await;
    k.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=10s",
        "crd/backups.velero.io",
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "backups", "-A", "-o", "name"]).await.trim(),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    let fin =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fin, finalizers: [example.com/hold]}\n";
    k.with_stdin(&["create", "-f", "-"], fin).await;
    k.ok(&["delete", "cm", "fin", "--wait=false"]).await;
    assert!(
        !k.ok(&[
            "get",
            "cm",
            "fin",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .await
        .is_empty()
    );
    let err = k
        .fails(&[
            "patch",
            "cm",
            "fin",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/new"}]"#,
        ])
        .await;
    assert!(err.contains("no new finalizers"), "{err}");
    k.ok(&[
        "patch",
        "cm",
        "fin",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    k.fails(&["get", "cm", "fin"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_cascades() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    let ns = k
        .ok(&["create", "ns", "other", "--dry-run=client", "-o", "yaml"])
        .await;
    k.with_stdin(&["create", "-f", "-"], &ns).await;
    let cm = k
        .ok(&[
            "create",
            "cm",
            "c2",
            "-n",
            "other",
            "--from-literal=x=y",
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .await;
    k.with_stdin(&["create", "-f", "-"], &cm).await;
    assert_eq!(
        k.ok(&["get", "cm", "-n", "other", "-o", "name"])
            .await
            .trim(),
        "configmap/c2"
    );
    k.ok(&["delete", "ns", "other", "--timeout=20s"]).await;
    assert_eq!(
        k.ok(&["get", "cm", "-n", "other", "-o", "name"])
            .await
            .trim(),
        ""
    );
    k.fails(&["get", "ns", "other"]).await;
    let err = k.fails(&["delete", "ns", "default"]).await;
    assert!(err.contains("this namespace may not be deleted"), "{err}");
    let err = k
        .run(
            &["create", "-f", "-", "-n", "nope"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
        )
        .await
        .err();
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_label_and_all() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    for (n, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        k.with_stdin(
            &["create", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}, labels: {{app: {app}}}}}\n"
            ),
        )
        .await;
    }
    k.ok(&["delete", "cm", "-l", "app=web"]).await;
    assert_eq!(
        lines(&k.ok(&["get", "cm", "-o", "name"]).await),
        ["configmap/c"]
    );
    k.ok(&["delete", "cm", "--all"]).await;
    assert_eq!(k.ok(&["get", "cm", "-o", "name"]).await.trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_new_objects() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    let mut child = k.spawn(&["get", "cm", "-w", "-o", "name"]);
    let stdout = child.stdout.take().unwrap();
    let mut reader = tokio::io::BufReader::new(stdout).lines();
    // The watch is established once kubectl has listed; create until it shows up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    let mut n = 0;
    while Instant::now() < deadline && !seen {
        n += 1;
        k.with_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: w{n}}}\n"),
        )
        .await;
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(2), reader.next_line()).await
        {
            seen = line.starts_with("configmap/w");
        }
    }
    let _ = child.kill().await;
    assert!(seen, "kubectl get -w printed no created object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_string_data_and_describe() {
    let Some((_sim, k)) = setup().await else {
        return;
    };
    let s = "apiVersion: v1\nkind: Secret\nmetadata: {name: s1}\nstringData: {password: hunter2}\n";
    k.with_stdin(&["create", "-f", "-"], s).await;
    let v = json(&k.ok(&["get", "secret", "s1", "-o", "json"]).await);
    assert_eq!(v["data"]["password"], "aHVudGVyMg==");
    assert!(v.get("stringData").is_none());
    assert_eq!(v["type"], "Opaque");
    let d = k.ok(&["describe", "secret", "s1"]).await;
    assert!(d.contains("password:  7 bytes"), "{d}");
}
