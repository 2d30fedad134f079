//! The resource types the server knows: the built-in table and the types CRDs add.
//!
//! A type is identified by group and plural; its objects are stored once, whatever version a
//! client asks for (a real server converts between versions; kubesim only rewrites `apiVersion`,
//! which is exactly what a CRD without a conversion webhook does).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::patch::{BuiltinListKeys, ListKeys, SchemaListKeys};

/// Index of a type in the registry; stable for the life of the server, also across a CRD being
/// deleted and created again.
pub type TypeId = u32;

/// Which name syntax the API server enforces for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain, 253 characters (most kinds).
    Subdomain,
    /// DNS-1123 label, 63 characters (Namespaces).
    Label,
    /// DNS-1035 label: starts with a letter, 63 characters (Services).
    Dns1035,
    /// Any path segment: not `.`/`..`, no `/` or `%` (RBAC kinds).
    PathSegment,
}

/// Everything the server needs to know about one resource type.
// The flags are independent properties of a kind, as the apiserver's registry strategies have them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub struct ResourceType {
    pub id: TypeId,
    /// API group; empty for core.
    pub group: String,
    /// Served versions, most preferred first (Kubernetes version priority).
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// `Some(spec replicas path, status replicas path, label selector path)` when `/scale` exists.
    pub scale: Option<ScalePaths>,
    /// Whether `metadata.generation` is maintained (spec-bearing kinds).
    pub generation: bool,
    /// Delete answers with the deleted object rather than a Status.
    pub return_deleted_object: bool,
    pub name_rule: NameRule,
    /// Field selector labels beyond `metadata.name` / `metadata.namespace`.
    pub field_labels: Vec<String>,
    /// Name of the CRD that defines this type, for custom resources.
    pub crd: Option<String>,
    /// How lists merge in patches.
    pub list_keys: Arc<dyn ListKeys>,
}

/// JSON paths (dot-separated) used by the `/scale` subresource.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ResourceType {
    /// `plural` for core types, `plural.group` otherwise: how the apiserver names a resource in
    /// messages (`deployments.apps "web" not found`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `group/version` or `version` for core.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn preferred_version(&self) -> &str {
        &self.versions[0]
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Types whose objects are kept (as opposed to create-only reviews and the like).
    pub fn is_stored(&self) -> bool {
        self.supports("get")
    }

    /// Built-in list items carry no apiVersion/kind on a real server; custom resources do.
    pub fn list_items_typed(&self) -> bool {
        self.crd.is_some()
    }
}

/// The full verb set of an ordinary stored kind.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const GET_LIST: &[&str] = &["get", "list"];

/// All types, indexed by id and by (group, plural).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<Option<Arc<ResourceType>>>,
    by_name: BTreeMap<(String, String), TypeId>,
}

impl Registry {
    /// The registry of a fresh cluster: every built-in type.
    pub fn builtin() -> Self {
        let mut reg = Registry::default();
        for spec in BUILTINS {
            let ty = spec.build();
            reg.insert(ty);
        }
        reg
    }

    fn next_id(&self, group: &str, plural: &str) -> TypeId {
        self.by_name
            .get(&(group.to_string(), plural.to_string()))
            .copied()
            .unwrap_or(self.types.len() as TypeId)
    }

    /// Adds or replaces a type (a CRD created or updated).
    pub fn insert(&mut self, mut ty: ResourceType) -> Arc<ResourceType> {
        let id = self.next_id(&ty.group, &ty.plural);
        ty.id = id;
        let ty = Arc::new(ty);
        if id as usize == self.types.len() {
            self.types.push(Some(ty.clone()));
        } else {
            self.types[id as usize] = Some(ty.clone());
        }
        self.by_name
            .insert((ty.group.clone(), ty.plural.clone()), id);
        ty
    }

    /// Removes a type from serving (its CRD is gone); the id stays reserved for a re-creation.
    pub fn remove(&mut self, id: TypeId) {
        if let Some(slot) = self.types.get_mut(id as usize) {
            *slot = None;
        }
    }

    pub fn get(&self, id: TypeId) -> Option<&Arc<ResourceType>> {
        self.types.get(id as usize).and_then(Option::as_ref)
    }

    pub fn find(&self, group: &str, plural: &str) -> Option<&Arc<ResourceType>> {
        self.by_name
            .get(&(group.to_string(), plural.to_string()))
            .and_then(|id| self.get(*id))
    }

    /// The type serving `plural` at `group/version`, if any.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceType>> {
        self.find(group, plural).filter(|t| t.serves(version))
    }

    /// The stored type of a kind served at `group/version` (for seeding and apply bodies).
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&Arc<ResourceType>> {
        self.iter()
            .find(|t| t.group == group && t.kind == kind && t.serves(version) && t.is_stored())
            .or_else(|| {
                self.iter()
                    .find(|t| t.group == group && t.kind == kind && t.serves(version))
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.iter().flatten()
    }

    /// Groups with their served versions in priority order; core ("") first, then as the real
    /// server orders them (built-in groups in registration order, then CRD groups by name).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut crd_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ty in self.iter() {
            let bucket = if ty.crd.is_some() {
                crd_groups.entry(ty.group.clone()).or_default()
            } else if let Some((_, v)) = out.iter_mut().find(|(g, _)| *g == ty.group) {
                v
            } else {
                out.push((ty.group.clone(), Vec::new()));
                &mut out.last_mut().expect("just pushed").1
            };
            for v in &ty.versions {
                if !bucket.contains(v) {
                    bucket.push(v.clone());
                }
            }
        }
        out.extend(crd_groups);
        for (_, versions) in &mut out {
            sort_versions(versions);
        }
        out
    }

    /// Types served at one group/version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> + 'a {
        self.iter()
            .filter(move |t| t.group == group && t.serves(version))
    }
}

/// Sorts versions by Kubernetes version priority: GA, then beta, then alpha, higher numbers
/// first; names that are not Kubernetes-style versions last, alphabetically.
pub fn sort_versions(versions: &mut [String]) {
    versions.sort_by_key(|v| version_key(v));
}

fn version_key(v: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String) {
    use std::cmp::Reverse;
    let parsed = v.strip_prefix('v').and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        if major == 0 {
            return None;
        }
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0u8, major, 0u64));
        }
        for (label, class) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(label) {
                let minor: u64 = n.parse().ok()?;
                if minor == 0 {
                    return None;
                }
                return Some((class, major, minor));
            }
        }
        None
    });
    match parsed {
        Some((class, major, minor)) => (class, Reverse(major), Reverse(minor), String::new()),
        None => (3, Reverse(0), Reverse(0), v.to_string()),
    }
}

/// Builds the type a CRD defines, or an error message naming the invalid field.
pub fn type_from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = str_at(spec, &["group"]).ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = str_at(names, &["plural"]).ok_or("spec.names.plural: Required value")?;
    let kind = str_at(names, &["kind"]).ok_or("spec.names.kind: Required value")?;
    let singular = str_at(names, &["singular"]).map_or_else(|| kind.to_lowercase(), String::from);
    let list_kind =
        str_at(names, &["listKind"]).map_or_else(|| format!("{kind}List"), String::from);
    let namespaced = match str_at(spec, &["scope"]) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into()),
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or(
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        )?;
    let mut served = Vec::new();
    let mut status_subresource = false;
    let mut scale = None;
    let mut schema = None;
    let mut field_labels = Vec::new();
    for v in versions {
        let name = str_at(v, &["name"]).ok_or("spec.versions[].name: Required value")?;
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        served.push(name.to_string());
        // Subresources and schema of the storage version win; kubesim has one storage per type.
        let storage = v.get("storage").and_then(Value::as_bool) == Some(true);
        if let Some(sub) = v.get("subresources") {
            status_subresource |= sub.get("status").is_some();
            if let Some(sc) = sub.get("scale") {
                scale = Some(ScalePaths {
                    spec_replicas: json_path(sc, "specReplicasPath", ".spec.replicas"),
                    status_replicas: json_path(sc, "statusReplicasPath", ".status.replicas"),
                    label_selector: str_at(sc, &["labelSelectorPath"])
                        .map(|p| p.trim_start_matches('.').to_string()),
                });
            }
        }
        if storage || schema.is_none() {
            schema = v.pointer("/schema/openAPIV3Schema").cloned();
        }
        if let Some(fields) = v.get("selectableFields").and_then(Value::as_array) {
            for f in fields {
                if let Some(p) = f.get("jsonPath").and_then(Value::as_str) {
                    field_labels.push(p.trim_start_matches('.').to_string());
                }
            }
        }
    }
    if served.is_empty() {
        return Err("spec.versions: Invalid value: no version is served".into());
    }
    sort_versions(&mut served);
    let list = |key: &str| -> Vec<String> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ResourceType {
        id: 0,
        group: group.to_string(),
        versions: served,
        plural: plural.to_string(),
        singular,
        kind: kind.to_string(),
        list_kind,
        namespaced,
        verbs: CRUD,
        short_names: list("shortNames"),
        categories: list("categories"),
        status_subresource,
        scale,
        generation: true,
        return_deleted_object: false,
        name_rule: NameRule::Subdomain,
        field_labels,
        crd: Some(format!("{plural}.{group}")),
        list_keys: Arc::new(SchemaListKeys::new(schema)),
    })
}

fn json_path(v: &Value, key: &str, default: &str) -> String {
    str_at(v, &[key])
        .unwrap_or(default)
        .trim_start_matches('.')
        .to_string()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// One row of the built-in table; compact so the table reads like `kubectl api-resources`.
struct Builtin {
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    short: &'static [&'static str],
    flags: u16,
    fields: &'static [&'static str],
}

const STATUS: u16 = 1;
const SCALE: u16 = 1 << 1;
const GENERATION: u16 = 1 << 2;
const RETURN_DELETED: u16 = 1 << 3;
const ALL: u16 = 1 << 4;
const NAME_LABEL: u16 = 1 << 5;
const NAME_DNS1035: u16 = 1 << 6;
const NAME_SEGMENT: u16 = 1 << 7;
const SCALE_NO_SELECTOR: u16 = 1 << 8;

impl Builtin {
    fn build(&self) -> ResourceType {
        let singular = self.kind.to_lowercase();
        let has = |f: u16| self.flags & f != 0;
        let name_rule = if has(NAME_LABEL) {
            NameRule::Label
        } else if has(NAME_DNS1035) {
            NameRule::Dns1035
        } else if has(NAME_SEGMENT) {
            NameRule::PathSegment
        } else {
            NameRule::Subdomain
        };
        ResourceType {
            id: 0,
            group: self.group.to_string(),
            versions: self.versions.iter().map(|v| (*v).to_string()).collect(),
            plural: self.plural.to_string(),
            singular,
            kind: self.kind.to_string(),
            list_kind: format!("{}List", self.kind),
            namespaced: self.namespaced,
            verbs: self.verbs,
            short_names: self.short.iter().map(|s| (*s).to_string()).collect(),
            categories: if has(ALL) {
                vec!["all".into()]
            } else {
                Vec::new()
            },
            status_subresource: has(STATUS),
            scale: has(SCALE).then(|| ScalePaths {
                spec_replicas: "spec.replicas".into(),
                status_replicas: "status.replicas".into(),
                label_selector: (!has(SCALE_NO_SELECTOR)).then(|| "spec.selector".into()),
            }),
            generation: has(GENERATION),
            return_deleted_object: has(RETURN_DELETED),
            name_rule,
            field_labels: self.fields.iter().map(|s| (*s).to_string()).collect(),
            crd: None,
            list_keys: Arc::new(BuiltinListKeys),
        }
    }
}

macro_rules! t {
    ($group:expr, [$($v:expr),+], $plural:expr, $kind:expr, $ns:expr, $verbs:expr, [$($s:expr),*], $flags:expr, [$($f:expr),*]) => {
        Builtin { group: $group, versions: &[$($v),+], plural: $plural, kind: $kind, namespaced: $ns,
                  verbs: $verbs, short: &[$($s),*], flags: $flags, fields: &[$($f),*] }
    };
}

const NS: bool = true;
const CL: bool = false;
const WORKLOAD: u16 = STATUS | SCALE | GENERATION | ALL;

/// The types of a Kubernetes 1.32 API server as EKS serves them.
static BUILTINS: &[Builtin] = &[
    // core/v1
    t!(
        "",
        ["v1"],
        "bindings",
        "Binding",
        NS,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "",
        ["v1"],
        "componentstatuses",
        "ComponentStatus",
        CL,
        GET_LIST,
        ["cs"],
        0,
        []
    ),
    t!(
        "",
        ["v1"],
        "configmaps",
        "ConfigMap",
        NS,
        CRUD,
        ["cm"],
        0,
        []
    ),
    t!(
        "",
        ["v1"],
        "endpoints",
        "Endpoints",
        NS,
        CRUD,
        ["ep"],
        0,
        []
    ),
    t!(
        "",
        ["v1"],
        "events",
        "Event",
        NS,
        CRUD,
        ["ev"],
        0,
        [
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type"
        ]
    ),
    t!(
        "",
        ["v1"],
        "limitranges",
        "LimitRange",
        NS,
        CRUD,
        ["limits"],
        0,
        []
    ),
    t!(
        "",
        ["v1"],
        "namespaces",
        "Namespace",
        CL,
        CRUD,
        ["ns"],
        STATUS | RETURN_DELETED | NAME_LABEL,
        ["status.phase"]
    ),
    t!(
        "",
        ["v1"],
        "nodes",
        "Node",
        CL,
        CRUD,
        ["no"],
        STATUS | RETURN_DELETED,
        ["spec.unschedulable"]
    ),
    t!(
        "",
        ["v1"],
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        NS,
        CRUD,
        ["pvc"],
        STATUS | RETURN_DELETED,
        []
    ),
    t!(
        "",
        ["v1"],
        "persistentvolumes",
        "PersistentVolume",
        CL,
        CRUD,
        ["pv"],
        STATUS | RETURN_DELETED,
        []
    ),
    t!(
        "",
        ["v1"],
        "pods",
        "Pod",
        NS,
        CRUD,
        ["po"],
        STATUS | RETURN_DELETED | ALL,
        [
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName"
        ]
    ),
    t!(
        "",
        ["v1"],
        "podtemplates",
        "PodTemplate",
        NS,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "",
        ["v1"],
        "replicationcontrollers",
        "ReplicationController",
        NS,
        CRUD,
        ["rc"],
        WORKLOAD | SCALE_NO_SELECTOR,
        ["status.replicas"]
    ),
    t!(
        "",
        ["v1"],
        "resourcequotas",
        "ResourceQuota",
        NS,
        CRUD,
        ["quota"],
        STATUS,
        []
    ),
    t!("", ["v1"], "secrets", "Secret", NS, CRUD, [], 0, ["type"]),
    t!(
        "",
        ["v1"],
        "serviceaccounts",
        "ServiceAccount",
        NS,
        CRUD,
        ["sa"],
        RETURN_DELETED,
        []
    ),
    t!(
        "",
        ["v1"],
        "services",
        "Service",
        NS,
        CRUD,
        ["svc"],
        STATUS | RETURN_DELETED | ALL | NAME_DNS1035,
        ["spec.clusterIP", "spec.type"]
    ),
    // apis
    t!(
        "apiregistration.k8s.io",
        ["v1"],
        "apiservices",
        "APIService",
        CL,
        CRUD,
        [],
        STATUS,
        []
    ),
    t!(
        "apps",
        ["v1"],
        "controllerrevisions",
        "ControllerRevision",
        NS,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "apps",
        ["v1"],
        "daemonsets",
        "DaemonSet",
        NS,
        CRUD,
        ["ds"],
        STATUS | GENERATION | ALL,
        []
    ),
    t!(
        "apps",
        ["v1"],
        "deployments",
        "Deployment",
        NS,
        CRUD,
        ["deploy"],
        WORKLOAD,
        []
    ),
    t!(
        "apps",
        ["v1"],
        "replicasets",
        "ReplicaSet",
        NS,
        CRUD,
        ["rs"],
        WORKLOAD,
        ["status.replicas"]
    ),
    t!(
        "apps",
        ["v1"],
        "statefulsets",
        "StatefulSet",
        NS,
        CRUD,
        ["sts"],
        WORKLOAD,
        []
    ),
    t!(
        "events.k8s.io",
        ["v1"],
        "events",
        "Event",
        NS,
        CRUD,
        ["ev"],
        0,
        []
    ),
    t!(
        "authentication.k8s.io",
        ["v1"],
        "selfsubjectreviews",
        "SelfSubjectReview",
        CL,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "authentication.k8s.io",
        ["v1"],
        "tokenreviews",
        "TokenReview",
        CL,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "authorization.k8s.io",
        ["v1"],
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        NS,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "authorization.k8s.io",
        ["v1"],
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        CL,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "authorization.k8s.io",
        ["v1"],
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        CL,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "authorization.k8s.io",
        ["v1"],
        "subjectaccessreviews",
        "SubjectAccessReview",
        CL,
        CREATE_ONLY,
        [],
        0,
        []
    ),
    t!(
        "autoscaling",
        ["v2", "v1"],
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        NS,
        CRUD,
        ["hpa"],
        STATUS | ALL,
        []
    ),
    t!(
        "batch",
        ["v1"],
        "cronjobs",
        "CronJob",
        NS,
        CRUD,
        ["cj"],
        STATUS | GENERATION | ALL,
        []
    ),
    t!(
        "batch",
        ["v1"],
        "jobs",
        "Job",
        NS,
        CRUD,
        [],
        STATUS | GENERATION | ALL,
        ["status.successful"]
    ),
    t!(
        "certificates.k8s.io",
        ["v1"],
        "certificatesigningrequests",
        "CertificateSigningRequest",
        CL,
        CRUD,
        ["csr"],
        STATUS,
        ["spec.signerName"]
    ),
    t!(
        "networking.k8s.io",
        ["v1"],
        "ingressclasses",
        "IngressClass",
        CL,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "networking.k8s.io",
        ["v1"],
        "ingresses",
        "Ingress",
        NS,
        CRUD,
        ["ing"],
        STATUS | GENERATION,
        []
    ),
    t!(
        "networking.k8s.io",
        ["v1"],
        "networkpolicies",
        "NetworkPolicy",
        NS,
        CRUD,
        ["netpol"],
        GENERATION,
        []
    ),
    t!(
        "policy",
        ["v1"],
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        NS,
        CRUD,
        ["pdb"],
        STATUS | GENERATION,
        []
    ),
    t!(
        "rbac.authorization.k8s.io",
        ["v1"],
        "clusterrolebindings",
        "ClusterRoleBinding",
        CL,
        CRUD,
        [],
        NAME_SEGMENT,
        []
    ),
    t!(
        "rbac.authorization.k8s.io",
        ["v1"],
        "clusterroles",
        "ClusterRole",
        CL,
        CRUD,
        [],
        NAME_SEGMENT,
        []
    ),
    t!(
        "rbac.authorization.k8s.io",
        ["v1"],
        "rolebindings",
        "RoleBinding",
        NS,
        CRUD,
        [],
        NAME_SEGMENT,
        []
    ),
    t!(
        "rbac.authorization.k8s.io",
        ["v1"],
        "roles",
        "Role",
        NS,
        CRUD,
        [],
        NAME_SEGMENT,
        []
    ),
    t!(
        "storage.k8s.io",
        ["v1"],
        "csidrivers",
        "CSIDriver",
        CL,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "storage.k8s.io",
        ["v1"],
        "csinodes",
        "CSINode",
        CL,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "storage.k8s.io",
        ["v1"],
        "csistoragecapacities",
        "CSIStorageCapacity",
        NS,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "storage.k8s.io",
        ["v1"],
        "storageclasses",
        "StorageClass",
        CL,
        CRUD,
        ["sc"],
        RETURN_DELETED,
        []
    ),
    t!(
        "storage.k8s.io",
        ["v1"],
        "volumeattachments",
        "VolumeAttachment",
        CL,
        CRUD,
        [],
        STATUS,
        []
    ),
    t!(
        "admissionregistration.k8s.io",
        ["v1"],
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        CL,
        CRUD,
        [],
        GENERATION,
        []
    ),
    t!(
        "admissionregistration.k8s.io",
        ["v1"],
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        CL,
        CRUD,
        [],
        STATUS | GENERATION,
        []
    ),
    t!(
        "admissionregistration.k8s.io",
        ["v1"],
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        CL,
        CRUD,
        [],
        GENERATION,
        []
    ),
    t!(
        "admissionregistration.k8s.io",
        ["v1"],
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        CL,
        CRUD,
        [],
        GENERATION,
        []
    ),
    t!(
        "apiextensions.k8s.io",
        ["v1"],
        "customresourcedefinitions",
        "CustomResourceDefinition",
        CL,
        CRUD,
        ["crd", "crds"],
        STATUS | GENERATION,
        []
    ),
    t!(
        "scheduling.k8s.io",
        ["v1"],
        "priorityclasses",
        "PriorityClass",
        CL,
        CRUD,
        ["pc"],
        0,
        []
    ),
    t!(
        "coordination.k8s.io",
        ["v1"],
        "leases",
        "Lease",
        NS,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "node.k8s.io",
        ["v1"],
        "runtimeclasses",
        "RuntimeClass",
        CL,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "discovery.k8s.io",
        ["v1"],
        "endpointslices",
        "EndpointSlice",
        NS,
        CRUD,
        [],
        0,
        []
    ),
    t!(
        "flowcontrol.apiserver.k8s.io",
        ["v1"],
        "flowschemas",
        "FlowSchema",
        CL,
        CRUD,
        [],
        STATUS | GENERATION,
        []
    ),
    t!(
        "flowcontrol.apiserver.k8s.io",
        ["v1"],
        "prioritylevelconfigurations",
        "PriorityLevelConfiguration",
        CL,
        CRUD,
        [],
        STATUS | GENERATION,
        []
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut v: Vec<String> = [
            "v1alpha1",
            "foo",
            "v1beta1",
            "v2",
            "v1",
            "v1beta2",
            "v10",
            "bar",
            "v11alpha2",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        sort_versions(&mut v);
        assert_eq!(
            v,
            [
                "v10",
                "v2",
                "v1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "bar",
                "foo"
            ]
        );
    }

    #[test]
    fn builtin_registry_serves_hpa_at_v2_first() {
        let reg = Registry::builtin();
        let hpa = reg.find("autoscaling", "horizontalpodautoscalers").unwrap();
        assert_eq!(hpa.preferred_version(), "v2");
        assert!(
            reg.lookup("autoscaling", "v1", "horizontalpodautoscalers")
                .is_some()
        );
        assert!(reg.lookup("apps", "v1beta1", "deployments").is_none());
    }

    #[test]
    fn crd_type_takes_names_scope_and_served_versions() {
        let crd = serde_json::json!({"spec": {"group": "edge.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": false},
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                {"name": "v2", "served": false, "storage": false}]}});
        let ty = type_from_crd(&crd).unwrap();
        assert_eq!(ty.versions, ["v1", "v1alpha1"]);
        assert_eq!(ty.list_kind, "WidgetList");
        assert!(ty.status_subresource && ty.scale.is_some() && ty.namespaced);
        assert_eq!(ty.qualified(), "widgets.edge.example.com");
    }
}
