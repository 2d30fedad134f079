//! Creating objects from manifests, the way `kubectl create -f` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::cluster::{Cluster, Target, WriteOpts};
use crate::status::ApiError;

/// Why a manifest could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {what}: {source}")]
    Yaml {
        what: String,
        source: Box<serde_saphyr::Error>,
    },
    #[error("{what}: no kind {kind:?} is served at {api_version:?}")]
    UnknownKind {
        what: String,
        api_version: String,
        kind: String,
    },
    #[error("{what}: object without apiVersion or kind")]
    NoType { what: String },
    #[error("{what}: creating {kind} {name:?}: {message}")]
    Create {
        what: String,
        kind: String,
        name: String,
        message: String,
        code: u16,
    },
}

/// Creates every object of a multi-document YAML text (`List` kinds are unpacked); `what`
/// names the source in errors. Returns the created objects.
pub fn yaml(cluster: &Cluster, text: &str, what: &str) -> Result<Vec<Value>, SeedError> {
    let docs = crate::yaml::documents(text).map_err(|source| SeedError::Yaml {
        what: what.into(),
        source: Box::new(source),
    })?;
    let mut created = Vec::new();
    for doc in docs {
        let is_list = doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && doc.get("items").is_some_and(Value::is_array);
        if is_list {
            for item in doc["items"].as_array().cloned().unwrap_or_default() {
                created.push(object(cluster, item, what)?);
            }
        } else {
            created.push(object(cluster, doc, what)?);
        }
    }
    Ok(created)
}

/// Creates one object as `kubectl create` would: namespaced objects without a namespace go
/// to `default`, the field manager is `kubectl-create`.
pub fn object(cluster: &Cluster, obj: Value, what: &str) -> Result<Value, SeedError> {
    let (Some(api_version), Some(kind)) = (
        obj.get("apiVersion")
            .and_then(Value::as_str)
            .map(String::from),
        obj.get("kind").and_then(Value::as_str).map(String::from),
    ) else {
        return Err(SeedError::NoType { what: what.into() });
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let ty = cluster
        .read()
        .registry
        .by_kind(group, version, &kind)
        .cloned()
        .ok_or_else(|| SeedError::UnknownKind {
            what: what.into(),
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let ns = ty.namespaced.then(|| {
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string()
    });
    let t = Target {
        ty,
        version: version.to_string(),
        ns,
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let opts = WriteOpts {
        manager: "kubectl-create".into(),
        dry_run: false,
    };
    cluster
        .create(&t, obj, &opts)
        .map_err(|e: ApiError| SeedError::Create {
            what: what.into(),
            kind,
            name,
            message: e.message().to_string(),
            code: e.code,
        })
}

/// The `*.yaml` / `*.yml` files of a directory in file-name order.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, SeedError> {
    let read = |source| SeedError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Seeds every manifest of a directory in file-name order. CRDs are established as soon as
/// they are created, so later files can hold their custom resources.
pub fn dir(cluster: &Arc<Cluster>, dir: &Path) -> Result<Vec<Value>, SeedError> {
    let mut created = Vec::new();
    for path in manifest_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|source| SeedError::Read {
            path: path.clone(),
            source,
        })?;
        created.extend(yaml(cluster, &text, &path.display().to_string())?);
    }
    Ok(created)
}
