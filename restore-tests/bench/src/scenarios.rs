//! The real-world scenarios (`$LIFEBOAT_FIXTURES`): one copy each, or the same applications in
//! many namespaces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::sim::Sim;

/// The scenario directories, in name order.
pub fn scenarios(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Every object of a scenario's manifests, in file order, `List`s unpacked.
pub fn documents(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for file in kubesim::seed::manifest_files(dir)? {
        let text = std::fs::read_to_string(&file)?;
        let docs = kubesim::yaml::documents(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", file.display()))?;
        for doc in docs {
            let is_list = doc["kind"].as_str().is_some_and(|k| k.ends_with("List"))
                && doc["items"].is_array();
            if is_list {
                out.extend(doc["items"].as_array().cloned().unwrap_or_default());
            } else {
                out.push(doc);
            }
        }
    }
    Ok(out)
}

/// What seeding the copies did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Seeding {
    pub copies: usize,
    pub seeded: u64,
    /// Objects that could not be created (a fixed cluster IP or node port taken by the first
    /// copy, ...), skipped.
    pub failed: u64,
    /// The first few reasons.
    pub failures: Vec<String>,
}

/// Seeds every scenario's objects `copies` times: each namespaced object (and each Namespace)
/// once per copy `i`, in namespace `<ns>-<i>` (created when missing); cluster-scoped objects
/// once. Namespaces go first, then the objects in file order.
pub fn seed_copies(sim: &Sim, dirs: &[PathBuf], copies: usize) -> anyhow::Result<Seeding> {
    let mut report = Seeding {
        copies,
        ..Seeding::default()
    };
    let mut namespaces: BTreeSet<String> = sim
        .cluster()
        .read()
        .objects
        .values()
        .filter_map(|o| {
            let v: Value = serde_json::from_slice(&o.body).ok()?;
            (v["kind"] == "Namespace")
                .then(|| v["metadata"]["name"].as_str().map(String::from))
                .flatten()
        })
        .collect();
    let mut docs = Vec::new();
    for dir in dirs {
        docs.extend(documents(dir)?);
    }
    let (ns_docs, others): (Vec<Value>, Vec<Value>) = docs
        .into_iter()
        .partition(|d| d["kind"] == "Namespace" && d["apiVersion"] == "v1");
    let seed = |obj: Value, report: &mut Seeding| match sim.seed(obj) {
        Ok(_) => report.seeded += 1,
        Err(e) => {
            report.failed += 1;
            if report.failures.len() < 8 {
                report.failures.push(e.to_string());
            }
        }
    };
    for doc in ns_docs {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        for i in 0..copies {
            let copy_name = copy_namespace(&name, i);
            if namespaces.insert(copy_name.clone()) {
                let mut copy = doc.clone();
                copy["metadata"]["name"] = json!(copy_name);
                seed(copy, &mut report);
            }
        }
    }
    for doc in others {
        if namespaced(sim, &doc) == Some(false) {
            seed(doc, &mut report);
            continue;
        }
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        for i in 0..copies {
            let copy_ns = copy_namespace(&ns, i);
            if namespaces.insert(copy_ns.clone()) {
                seed(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": copy_ns}}),
                    &mut report,
                );
            }
            let mut copy = doc.clone();
            copy["metadata"]["namespace"] = json!(copy_ns);
            if copy["kind"] == "Service" {
                // A fixed cluster IP or node port can be taken once per cluster, not per copy:
                // the copies get theirs allocated, as a chart installed twice would.
                if let Some(spec) = copy["spec"].as_object_mut() {
                    if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                        spec.remove("clusterIP");
                        spec.remove("clusterIPs");
                    }
                    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                        for port in ports {
                            if let Some(port) = port.as_object_mut() {
                                port.remove("nodePort");
                            }
                        }
                    }
                }
            }
            seed(copy, &mut report);
        }
    }
    Ok(report)
}

/// `<ns>-<i>`, with `ns` shortened so that the name stays within the 63 characters a
/// namespace name may have.
fn copy_namespace(ns: &str, i: usize) -> String {
    let suffix = format!("-{i}");
    let keep = ns.len().min(63 - suffix.len());
    format!("{}{suffix}", ns[..keep].trim_end_matches('-'))
}

/// Whether the object's kind is namespaced, if the server knows it (a custom resource's CRD
/// may not exist: it then fails to seed and is counted).
fn namespaced(sim: &Sim, obj: &Value) -> Option<bool> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    sim.cluster()
        .read()
        .registry
        .by_kind(group, version, kind)
        .map(|t| t.namespaced)
}
