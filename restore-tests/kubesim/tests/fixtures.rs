//! Every real-world scenario created with `kubectl create -f`, file by file in name order, then
//! read back with `kubectl get -A -o json`: every object is there, data intact.
//!
//! The corpus path comes from `LIFEBOAT_FIXTURES` (set by `.ci/run`); without it these tests say
//! so and do nothing.

use std::path::PathBuf;

use kubesim::KubeSim;
use kubesim::kubectl::{self, Kubectl};
use serde_json::Value;

fn scenario_dir(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("LIFEBOAT_FIXTURES");
    if root.is_none() {
        eprintln!(
            "LIFEBOAT_FIXTURES is not set: skipping the real-world scenario {name:?} (set it to ../shared/fixtures/real-world)"
        );
    }
    root.map(|r| PathBuf::from(r).join(name))
}

/// The objects of a scenario as the files state them (List items unpacked).
fn expected_objects(dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    for file in kubesim::seed::manifest_files(dir).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in kubesim::yaml::documents(&text).unwrap() {
            if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) && doc["items"].is_array()
            {
                out.extend(doc["items"].as_array().unwrap().iter().cloned());
            } else {
                out.push(doc);
            }
        }
    }
    out
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

async fn roundtrip(name: &str) {
    if !kubectl::available() {
        return;
    }
    let Some(dir) = scenario_dir(name) else {
        return;
    };
    assert!(
        dir.is_dir(),
        "{} is not a directory: is LIFEBOAT_FIXTURES right?",
        dir.display()
    );
    let sim = KubeSim::start().await.unwrap();
    let k = Kubectl::new(sim.kubeconfig_path()).unwrap();
    for file in kubesim::seed::manifest_files(&dir).unwrap() {
        let path = file.to_str().unwrap();
        let out = k.run(&["create", "-f", path], None).await;
        assert!(out.success, "kubectl create -f {path}: {}", out.stderr);
    }
    let types = k.ok(&["api-resources", "--verbs=list", "-o", "name"]).await;
    let types: Vec<&str> = types.lines().filter(|t| !t.is_empty()).collect();
    let all = k.ok(&["get", &types.join(","), "-A", "-o", "json"]).await;
    let live: Value = serde_json::from_str(&all).unwrap();
    let live = live["items"].as_array().unwrap();

    let expected = expected_objects(&dir);
    assert!(!expected.is_empty());
    for want in &expected {
        let kind = want["kind"].as_str().unwrap();
        let group = group_of(want["apiVersion"].as_str().unwrap());
        let obj_name = want["metadata"]["name"].as_str().unwrap();
        let namespaced = live.iter().any(|o| {
            o["kind"] == kind
                && group_of(o["apiVersion"].as_str().unwrap()) == group
                && o["metadata"].get("namespace").is_some()
        });
        let ns = want["metadata"]["namespace"]
            .as_str()
            .unwrap_or(if namespaced { "default" } else { "" });
        let got = live.iter().find(|o| {
            o["kind"] == kind
                && group_of(o["apiVersion"].as_str().unwrap()) == group
                && o["metadata"]["name"] == obj_name
                && o["metadata"]["namespace"].as_str().unwrap_or("") == ns
        });
        let Some(got) = got else {
            panic!("{name}: {kind} {ns}/{obj_name} missing from kubectl get -A -o json")
        };
        match kind {
            "ConfigMap" => {
                assert_eq!(got.get("data"), want.get("data"), "{ns}/{obj_name} data");
                assert_eq!(
                    got.get("binaryData"),
                    want.get("binaryData"),
                    "{ns}/{obj_name} binaryData"
                );
            }
            "Secret" if want.get("stringData").is_none() => {
                assert_eq!(got.get("data"), want.get("data"), "{ns}/{obj_name} data");
            }
            "Secret" => {
                for (key, value) in want["stringData"].as_object().unwrap() {
                    use base64::Engine as _;
                    let encoded =
                        base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap());
                    assert_eq!(
                        got["data"][key], encoded,
                        "{ns}/{obj_name} stringData {key}"
                    );
                }
            }
            _ if want.get("spec").is_some()
                && got["apiVersion"] == want["apiVersion"]
                && !["Service", "CustomResourceDefinition"].contains(&kind) =>
            {
                assert_eq!(
                    got.get("spec"),
                    want.get("spec"),
                    "{kind} {ns}/{obj_name} spec"
                );
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_apps() {
    roundtrip("apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_autoscaling() {
    roundtrip("autoscaling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_certs() {
    roundtrip("certs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_edge_cases() {
    roundtrip("edge-cases").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_monitoring() {
    roundtrip("monitoring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_storage_ebs() {
    roundtrip("storage-ebs").await;
}

/// kubesim reads YAML as kubectl does; PyYAML (which the corpus was checked with) agrees on
/// every document.
#[test]
fn yaml_reader_agrees_with_pyyaml_on_the_corpus() {
    let Some(root) = std::env::var_os("LIFEBOAT_FIXTURES").map(PathBuf::from) else {
        eprintln!("LIFEBOAT_FIXTURES is not set: skipping the YAML comparison");
        return;
    };
    let script = "import json,sys,yaml\nfor p in sys.argv[1:]:\n    docs=[d for d in yaml.safe_load_all(open(p,encoding='utf-8')) if d is not None]\n    print(json.dumps(docs,default=str))\n";
    let mut files = Vec::new();
    for scenario in std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
    {
        files.extend(kubesim::seed::manifest_files(&scenario).unwrap());
    }
    files.sort();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&files)
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("python3 with PyYAML is not available: skipping the YAML comparison");
        return;
    };
    let stdout = String::from_utf8(out.stdout).unwrap();
    for (file, line) in files.iter().zip(stdout.lines()) {
        let theirs: Value = serde_json::from_str(line).unwrap();
        let ours = Value::Array(
            kubesim::yaml::documents(&std::fs::read_to_string(file).unwrap()).unwrap(),
        );
        assert!(
            json_eq(&ours, &theirs),
            "{} reads differently from PyYAML",
            file.display()
        );
    }
}

/// Equality that treats 1 and 1.0 alike (Python's json has one number type per value).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}
