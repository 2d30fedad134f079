//! Planning a restore from an archive, before anything is written anywhere.
//!
//! The archive is read once, on a blocking thread, while its SHA-256 is computed; a mismatch
//! with the manifest stops the restore before its first write. Each object is classified
//! (never restored, in the filters, or a dependency that may be needed), sanitised, mapped to
//! its target namespace and spooled to a temporary file, so memory holds only a small entry per
//! object whatever the size of the backup. Dependencies (the Namespaces, CRDs and
//! PersistentVolumes the selected objects need) are resolved once every object has been seen.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write as _};
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::archive::layout::EntryPath;
use crate::archive::manifest::{Filters, Manifest};
use crate::archive::reader::{ArchiveError, ArchiveReader, Limits};
use crate::cluster::discovery::ResourceType;
use crate::cluster::scope::Scope;
use crate::cluster::selector::Selector;
use crate::restore::result::{Action, Item};
use crate::restore::rules::{self, OwnerRef, SanitizeOptions, SkipContext, Tier};

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    pub include_resources: Vec<String>,
    pub exclude_resources: Vec<String>,
    pub selector: Option<String>,
    /// Source namespace -> target namespace.
    pub namespace_mapping: BTreeMap<String, String>,
    pub include_status: bool,
}

/// One object to restore; its sanitised JSON is in the spool.
#[derive(Debug, Clone)]
pub struct Planned {
    pub tier: Tier,
    /// `<plural>[.<group>]`.
    pub resource: String,
    pub api_version: String,
    pub kind: String,
    /// Namespace in the target (after mapping).
    pub namespace: Option<String>,
    pub name: String,
    /// The owners it had, restored once they exist.
    pub owners: Vec<OwnerRef>,
    offset: u64,
    len: usize,
}

impl Planned {
    /// The plural and group of the resource.
    pub fn plural_group(&self) -> (&str, &str) {
        self.resource
            .split_once('.')
            .unwrap_or((&self.resource, ""))
    }
}

/// The complete plan: objects by tier, what is skipped and why, and the spool.
#[derive(Debug)]
pub struct Plan {
    pub items: Vec<Planned>,
    pub skipped: Vec<Item>,
    spool: Arc<File>,
    /// Bytes the archive had, and objects read.
    pub archive_bytes: u64,
    pub objects_read: u64,
}

impl Plan {
    /// The sanitised object of a planned item.
    pub fn object(&self, p: &Planned) -> std::io::Result<Value> {
        let mut buf = vec![0; p.len];
        self.spool.read_exact_at(&mut buf, p.offset)?;
        serde_json::from_slice(&buf).map_err(std::io::Error::other)
    }

    /// Replaces a planned object (a PV pointed at its new volume, a PVC following a renamed PV).
    pub fn replace(&mut self, index: usize, obj: &Value) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(obj).map_err(std::io::Error::other)?;
        let offset = self.spool.metadata()?.len();
        self.spool.write_all_at(&bytes, offset)?;
        let p = &mut self.items[index];
        p.offset = offset;
        p.len = bytes.len();
        if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
            p.name = name.to_string();
        }
        Ok(())
    }

    /// The target namespaces the planned objects live in.
    pub fn target_namespaces(&self) -> BTreeSet<String> {
        self.items
            .iter()
            .filter_map(|p| p.namespace.clone())
            .collect()
    }
}

/// Why a plan could not be made. Nothing has been written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the archive of backup {backup:?} is corrupt or was tampered with: {source}; nothing was restored. Check it with `lifeboat backup verify {backup}` and restore from another backup"
    )]
    Archive {
        backup: String,
        #[source]
        source: ArchiveError,
    },
    #[error(
        "the archive of backup {backup:?} does not match its manifest ({detail}): it is corrupt or was tampered with; nothing was restored"
    )]
    Mismatch { backup: String, detail: String },
    #[error("{0}")]
    Filter(String),
    #[error("spooling the plan to a temporary file: {0}")]
    Spool(#[from] std::io::Error),
}

/// How a read object relates to the selection.
enum Class {
    /// Selected by the filters.
    Selected,
    /// Not selected, but restored if a selected object needs it (Namespace, CRD, PV).
    Dependency,
}

struct Candidate {
    class: Class,
    planned: Planned,
    /// For dependencies: the key a selected object refers to them by.
    /// Namespaces: source name; CRDs: `plural.group` they define; PVs: their name.
    dependency_key: Option<String>,
    /// For PVCs: the PV they are bound to.
    volume_name: Option<String>,
    source_namespace: Option<String>,
}

/// Reads the archive from `source` and plans the restore. Blocking: run it off the async runtime.
pub fn build(
    source: impl Read,
    manifest: &Manifest,
    sel: &Selection,
    identities: Option<&crate::archive::seal::Identities>,
) -> Result<Plan, PlanError> {
    let filters = Filters {
        include_namespaces: sel.include_namespaces.clone(),
        exclude_namespaces: sel.exclude_namespaces.clone(),
        include_resources: sel.include_resources.clone(),
        exclude_resources: sel.exclude_resources.clone(),
        include_cluster_resources: "auto".into(),
        selector: None,
        snapshot_volumes: false,
    };
    let scope = Scope::new(&filters).map_err(|e| PlanError::Filter(e.to_string()))?;
    let selector = sel
        .selector
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(|e| PlanError::Filter(e.to_string()))?;
    let sanitize = SanitizeOptions {
        include_status: sel.include_status,
        namespace_mapping: sel.namespace_mapping.clone(),
    };
    let archive_err = |source| PlanError::Archive {
        backup: manifest.name.clone(),
        source,
    };
    let mut reader =
        ArchiveReader::open(source, Limits::default(), identities).map_err(archive_err)?;
    let mut spool = tempfile::tempfile()?;
    let mut offset = 0u64;
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let mut skip_ctx = SkipContext {
        services_with_selector: BTreeSet::new(),
    };
    // Endpoints are judged once every Service has been seen (a Service's controller owns them).
    let mut endpoints: Vec<(String, Value)> = Vec::new();
    let mut objects_read = 0u64;
    while let Some(entry) = reader.next_entry().map_err(archive_err)? {
        let EntryPath::Object {
            resource,
            namespace,
            file_name,
        } = entry.kind
        else {
            continue;
        };
        objects_read += 1;
        // Restore takes names from objects: one filed under another name means tampering.
        crate::archive::reader::check_object(
            &entry.path,
            namespace.as_deref(),
            &file_name,
            &entry.data,
        )
        .map_err(archive_err)?;
        let obj: Value = serde_json::from_slice(&entry.data).map_err(|e| PlanError::Mismatch {
            backup: manifest.name.clone(),
            detail: format!("{} is not JSON: {e}", entry.path),
        })?;
        if resource == "services"
            && obj
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_some_and(|s| !s.is_empty())
            && let (Some(ns), Some(name)) = (
                str_at(&obj, "/metadata/namespace"),
                str_at(&obj, "/metadata/name"),
            )
        {
            skip_ctx
                .services_with_selector
                .insert((ns.to_string(), name.to_string()));
        }
        if resource == "endpoints" {
            endpoints.push((resource, obj));
            continue;
        }
        if let Some(c) = classify(
            &resource,
            obj,
            &scope,
            selector.as_ref(),
            &sanitize,
            &skip_ctx,
            &mut skipped,
            &mut spool,
            &mut offset,
        )? {
            candidates.push(c);
        }
    }
    for (resource, obj) in endpoints {
        if let Some(c) = classify(
            &resource,
            obj,
            &scope,
            selector.as_ref(),
            &sanitize,
            &skip_ctx,
            &mut skipped,
            &mut spool,
            &mut offset,
        )? {
            candidates.push(c);
        }
    }
    let (size, sha256) = reader.finish().map_err(archive_err)?;
    if size != manifest.archive.size || sha256 != manifest.archive.sha256 {
        return Err(PlanError::Mismatch {
            backup: manifest.name.clone(),
            detail: format!(
                "read {size} bytes with SHA-256 {sha256}, the manifest says {} bytes with {}",
                manifest.archive.size, manifest.archive.sha256
            ),
        });
    }
    let mut items = resolve(candidates, &sel.namespace_mapping);
    ensure_namespaces(&mut items, &mut spool, &mut offset)?;
    items.sort_by(|a, b| {
        (a.tier, &a.resource, &a.namespace, &a.name).cmp(&(
            b.tier,
            &b.resource,
            &b.namespace,
            &b.name,
        ))
    });
    skipped.sort_by(|a, b| {
        (&a.resource, &a.namespace, &a.name).cmp(&(&b.resource, &b.namespace, &b.name))
    });
    Ok(Plan {
        items,
        skipped,
        spool: Arc::new(spool),
        archive_bytes: size,
        objects_read,
    })
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

#[allow(clippy::too_many_arguments)]
fn classify(
    resource: &str,
    mut obj: Value,
    scope: &Scope,
    selector: Option<&Selector>,
    sanitize: &SanitizeOptions,
    ctx: &SkipContext,
    skipped: &mut Vec<Item>,
    spool: &mut File,
    offset: &mut u64,
) -> Result<Option<Candidate>, PlanError> {
    let name = str_at(&obj, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    let source_namespace = str_at(&obj, "/metadata/namespace").map(String::from);
    let target_ns = |ns: &Option<String>| {
        ns.as_ref().map(|n| {
            sanitize
                .namespace_mapping
                .get(n)
                .cloned()
                .unwrap_or_else(|| n.clone())
        })
    };
    let ty = pseudo_type(resource, &obj, source_namespace.is_some());
    let namespace_ok = match &source_namespace {
        Some(ns) => scope.namespace_included(ns),
        None if resource == "namespaces" => scope.namespace_included(&name),
        None => true,
    };
    let selected = namespace_ok
        && scope.type_included(&ty)
        && (source_namespace.is_some() || resource == "namespaces" || scope.whole_cluster())
        && selector.is_none_or(|s| s.matches(&obj));
    let dependency_key = matches!(
        resource,
        "namespaces" | "customresourcedefinitions.apiextensions.k8s.io" | "persistentvolumes"
    )
    .then(|| name.clone());
    let class = match (selected, &dependency_key) {
        (true, _) => Class::Selected,
        (false, Some(_)) => Class::Dependency,
        (false, None) => return Ok(None),
    };
    if let Some(why) = rules::never_restored(resource, &obj, ctx) {
        if matches!(class, Class::Selected) {
            skipped.push(Item {
                resource: resource.to_string(),
                namespace: target_ns(&source_namespace),
                name,
                action: Action::Skipped,
                message: Some(why),
            });
        }
        return Ok(None);
    }
    let owners = rules::owner_refs(&obj);
    let volume_name = (resource == "persistentvolumeclaims")
        .then(|| str_at(&obj, "/spec/volumeName").map(String::from))
        .flatten();
    rules::sanitize(resource, &mut obj, sanitize);
    let bytes = serde_json::to_vec(&obj).map_err(std::io::Error::other)?;
    spool.write_all(&bytes)?;
    let planned = Planned {
        tier: rules::tier(resource),
        resource: resource.to_string(),
        api_version: str_at(&obj, "/apiVersion").unwrap_or_default().to_string(),
        kind: ty.kind,
        namespace: str_at(&obj, "/metadata/namespace").map(String::from),
        name: str_at(&obj, "/metadata/name")
            .unwrap_or_default()
            .to_string(),
        owners,
        offset: *offset,
        len: bytes.len(),
    };
    *offset += bytes.len() as u64;
    Ok(Some(Candidate {
        class,
        planned,
        dependency_key,
        volume_name,
        source_namespace,
    }))
}

/// A resource type built from an archived object, for the filters.
fn pseudo_type(resource: &str, obj: &Value, namespaced: bool) -> ResourceType {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    ResourceType {
        group: group.to_string(),
        version: String::new(),
        plural: plural.to_string(),
        kind: str_at(obj, "/kind").unwrap_or_default().to_string(),
        namespaced,
    }
}

/// Keeps the selected objects and the dependencies they need.
fn resolve(candidates: Vec<Candidate>, mapping: &BTreeMap<String, String>) -> Vec<Planned> {
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for c in candidates
        .iter()
        .filter(|c| matches!(c.class, Class::Selected))
    {
        if let Some(ns) = &c.source_namespace {
            needed.insert(ns.clone());
        }
        if c.planned.tier != Tier::Crds && c.planned.resource.contains('.') {
            // A custom resource needs its CRD, named `plural.group` like the resource.
            needed.insert(c.planned.resource.clone());
        }
        if let Some(pv) = &c.volume_name {
            needed.insert(pv.clone());
        }
    }
    let _ = mapping;
    candidates
        .into_iter()
        .filter(|c| {
            matches!(c.class, Class::Selected)
                || c.dependency_key
                    .as_ref()
                    .is_some_and(|k| needed.contains(k))
        })
        .map(|c| c.planned)
        .collect()
}

/// Adds a Namespace object for every target namespace the plan uses but does not create.
fn ensure_namespaces(
    items: &mut Vec<Planned>,
    spool: &mut File,
    offset: &mut u64,
) -> std::io::Result<()> {
    let planned: BTreeSet<String> = items
        .iter()
        .filter(|p| p.resource == "namespaces")
        .map(|p| p.name.clone())
        .collect();
    let used: BTreeSet<String> = items.iter().filter_map(|p| p.namespace.clone()).collect();
    for ns in used.difference(&planned) {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let bytes = serde_json::to_vec(&obj).map_err(std::io::Error::other)?;
        spool.write_all(&bytes)?;
        items.push(Planned {
            tier: Tier::Namespaces,
            resource: "namespaces".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: ns.clone(),
            owners: Vec::new(),
            offset: *offset,
            len: bytes.len(),
        });
        *offset += bytes.len() as u64;
    }
    Ok(())
}
