//! The schema knowledge that strategic merge patch and server-side apply need, and nothing more.
//!
//! A real apiserver consults full OpenAPI schemas. The simulator has none for built-in types, so
//! [`BuiltinListKeys`] is a table of the fields whose merge behaviour differs from the default
//! (lists are atomic and maps granular unless tagged), checked against the `patchStrategy`,
//! `patchMergeKey`, `listType`, `listMapKey` and `structType`/`mapType` markers of k8s.io/api.
//! Custom resources carry their own structural schema, which [`SchemaListKeys`] reads.
//!
//! Paths are the field names from the object root; list positions and keys are left out, so
//! `["spec","template","spec","containers","env"]` names every container's `env`.

use serde_json::Value;

/// How a list field merges, for SMP and SSA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole; owned as one leaf.
    Atomic,
    /// Items are scalars, unioned; each item is owned separately (`v:`).
    Set,
    /// Items are objects identified by these key fields (`k:`).
    Map(Vec<String>),
}

/// Answers the schema questions of SMP and SSA about the field at a path of field names.
pub trait ListKeys: Send + Sync + std::fmt::Debug {
    /// The list type of a list field.
    fn list_type(&self, path: &[&str]) -> ListType;
    /// For SMP only: the patch merge key (patchMergeKey) when SMP merges this list by key;
    /// None means the list is replaced (atomic) in SMP, unless smp_merge_primitives says merge.
    fn smp_merge_key(&self, path: &[&str]) -> Option<String>;
    /// For SMP only: primitive lists with patchStrategy=merge (e.g. metadata.finalizers).
    fn smp_merge_primitives(&self, path: &[&str]) -> bool;

    /// Whether the object at `path` is replaced and owned as a whole by SSA
    /// (`x-kubernetes-map-type: atomic`, `+structType=atomic`, e.g. label selectors).
    fn atomic_map(&self, _path: &[&str]) -> bool {
        false
    }

    /// Whether the last name of `path` is a key of a free-form map (labels, `additionalProperties`,
    /// schemaless data) rather than a declared field. SSA owns such keys themselves even when
    /// their value is an object, which shows as `.` in `fieldsV1`.
    fn is_map_element(&self, _path: &[&str]) -> bool {
        false
    }

    /// The default of a key field of the keyed list at `path`, used to identify items that omit
    /// it (container ports without `protocol` are `k:{"containerPort":80,"protocol":"TCP"}`).
    fn key_default(&self, _path: &[&str], _key: &str) -> Option<Value> {
        None
    }

    /// Whether an empty object of this type already has the field at `path` (a non-pointer Go
    /// struct or a slice without `omitempty`). The real server compares a create against such an
    /// empty object, so these fields never get a `.` in the creator's `fieldsV1`.
    fn present_when_empty(&self, _path: &[&str]) -> bool {
        false
    }
}

/// The built-in Kubernetes types, as a table keyed by field name and, where names are
/// ambiguous, by the parent path.
#[derive(Debug, Default)]
pub struct BuiltinListKeys;

/// Lists whose items are containers; their `env`, `ports`, `volumeMounts` merge by key.
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Lists of container statuses, whose `volumeMounts` merge by mount path.
const CONTAINER_STATUS_LISTS: [&str; 3] = [
    "containerStatuses",
    "initContainerStatuses",
    "ephemeralContainerStatuses",
];

/// Fields of built-in types that exist in an empty object (non-pointer structs, slices without
/// `omitempty`), for the `.` markers of a creator's managedFields entry.
const PRESENT_WHEN_EMPTY: &[&[&str]] = &[
    &["metadata"],
    &["spec"],
    &["status"],
    &["roleRef"],
    &["spec", "containers"],
    &["spec", "names"],
    &["spec", "resources"],
    &["spec", "strategy"],
    &["spec", "updateStrategy"],
    &["spec", "template"],
    &["spec", "template", "metadata"],
    &["spec", "template", "spec"],
    &["spec", "template", "spec", "containers"],
    &["spec", "jobTemplate"],
    &["spec", "jobTemplate", "metadata"],
    &["spec", "jobTemplate", "spec"],
    &["spec", "jobTemplate", "spec", "template"],
    &["spec", "jobTemplate", "spec", "template", "metadata"],
    &["spec", "jobTemplate", "spec", "template", "spec"],
    &[
        "spec",
        "jobTemplate",
        "spec",
        "template",
        "spec",
        "containers",
    ],
];

/// One row of the built-in table: the SSA list type, the SMP merge key, and whether SMP merges
/// the list as a set of primitives.
struct Rule {
    ssa: ListType,
    smp_key: Option<&'static str>,
    smp_primitives: bool,
}

impl Rule {
    fn atomic() -> Self {
        Rule {
            ssa: ListType::Atomic,
            smp_key: None,
            smp_primitives: false,
        }
    }

    fn map(keys: &[&str], smp_key: Option<&'static str>) -> Self {
        Rule {
            ssa: ListType::Map(keys.iter().map(|key| (*key).to_owned()).collect()),
            smp_key,
            smp_primitives: false,
        }
    }

    fn set() -> Self {
        Rule {
            ssa: ListType::Set,
            smp_key: None,
            smp_primitives: true,
        }
    }
}

/// Where a CRD's `openAPIV3Schema` starts within `path`: inside it, field names are schema
/// keywords and property names, so the built-in table must not match them.
fn schema_root(path: &[&str]) -> Option<usize> {
    match path {
        ["spec", "versions", "schema", "openAPIV3Schema", ..] => Some(3),
        ["spec", "validation", "openAPIV3Schema", ..] => Some(2),
        _ => None,
    }
}

/// What a name inside a CRD schema denotes: schema keywords alternate with property names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaNode {
    /// A JSONSchemaProps object.
    Schema,
    /// A map from property names to schemas (`properties`, `definitions`, ...).
    SchemaMap,
    /// Free JSON (`default`, `example`, `enum`): untyped, so deduced by the real server.
    Untyped,
    /// Any other keyword's value.
    Other,
}

fn schema_node(relative: &[&str]) -> SchemaNode {
    relative
        .iter()
        .fold(SchemaNode::Schema, |node, name| match node {
            SchemaNode::Schema => match *name {
                "properties" | "patternProperties" | "definitions" | "dependencies" => {
                    SchemaNode::SchemaMap
                }
                "items"
                | "additionalProperties"
                | "additionalItems"
                | "not"
                | "allOf"
                | "anyOf"
                | "oneOf" => SchemaNode::Schema,
                "default" | "example" | "enum" => SchemaNode::Untyped,
                _ => SchemaNode::Other,
            },
            SchemaNode::SchemaMap => SchemaNode::Schema,
            SchemaNode::Untyped => SchemaNode::Untyped,
            SchemaNode::Other => SchemaNode::Other,
        })
}

fn builtin_rule(path: &[&str]) -> Rule {
    let Some((&last, parents)) = path.split_last() else {
        return Rule::atomic();
    };
    if let Some(root) = schema_root(path) {
        let parent = parents
            .get(root + 1..)
            .map_or(SchemaNode::Other, schema_node);
        return if last == "x-kubernetes-validations" && parent == SchemaNode::Schema {
            Rule::map(&["rule"], Some("rule"))
        } else {
            Rule::atomic()
        };
    }
    let parent = parents.last().copied();
    let in_container = parent.is_some_and(|p| CONTAINER_LISTS.contains(&p));
    let in_status = parent == Some("status");
    let in_spec = parent == Some("spec");
    match last {
        "env" if in_container => Rule::map(&["name"], Some("name")),
        "ports" if in_container => Rule::map(&["containerPort", "protocol"], Some("containerPort")),
        "ports" if path == ["spec", "ports"] => Rule::map(&["port", "protocol"], Some("port")),
        "volumeMounts"
            if in_container || parent.is_some_and(|p| CONTAINER_STATUS_LISTS.contains(&p)) =>
        {
            Rule::map(&["mountPath"], Some("mountPath"))
        }
        "volumeDevices" if in_container => Rule::map(&["devicePath"], Some("devicePath")),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
            if in_spec =>
        {
            Rule::map(&["name"], Some("name"))
        }
        "hostAliases" if in_spec => Rule::map(&["ip"], Some("ip")),
        "topologySpreadConstraints" if in_spec => {
            Rule::map(&["topologyKey", "whenUnsatisfiable"], Some("topologyKey"))
        }
        "claims" if parent == Some("resources") => Rule::map(&["name"], None),
        "conditions" if in_status => Rule::map(&["type"], Some("type")),
        "podIPs" | "hostIPs" if in_status => Rule::map(&["ip"], Some("ip")),
        "addresses" if path == ["status", "addresses"] => Rule::map(&["type"], Some("type")),
        "ownerReferences" if parent == Some("metadata") => Rule::map(&["uid"], Some("uid")),
        "finalizers" if parent == Some("metadata") => Rule::set(),
        "podCIDRs" if path == ["spec", "podCIDRs"] => Rule::set(),
        "secrets" | "webhooks" if path.len() == 1 => Rule::map(&["name"], Some("name")),
        "matchConditions" if parent == Some("webhooks") || path == ["spec", "matchConditions"] => {
            Rule::map(&["name"], Some("name"))
        }
        _ => Rule::atomic(),
    }
}

impl ListKeys for BuiltinListKeys {
    fn list_type(&self, path: &[&str]) -> ListType {
        builtin_rule(path).ssa
    }

    fn smp_merge_key(&self, path: &[&str]) -> Option<String> {
        builtin_rule(path).smp_key.map(str::to_owned)
    }

    fn smp_merge_primitives(&self, path: &[&str]) -> bool {
        builtin_rule(path).smp_primitives
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        if schema_root(path).is_some() {
            return false;
        }
        let Some((&last, parents)) = path.split_last() else {
            return false;
        };
        let parent = parents.last().copied();
        match last {
            // LabelSelector (+structType=atomic), Service/ReplicationController selectors and
            // nodeSelector (+mapType=atomic), the items of imagePullSecrets
            // (LocalObjectReference) and the atomic selector and reference structs.
            "selector" | "podSelector" | "namespaceSelector" | "labelSelector" | "nodeSelector"
            | "imagePullSecrets" | "secretKeyRef" | "configMapKeyRef" | "fieldRef"
            | "resourceFieldRef" | "claimRef" | "dataSource" => true,
            // Its items are OwnerReferences (+structType=atomic).
            "ownerReferences" => parent == Some("metadata"),
            "requiredDuringSchedulingIgnoredDuringExecution" => parent == Some("nodeAffinity"),
            _ => false,
        }
    }

    fn is_map_element(&self, path: &[&str]) -> bool {
        let Some(root) = schema_root(path) else {
            return false;
        };
        let Some((_, parents)) = path.split_last() else {
            return false;
        };
        let Some(relative) = parents.get(root + 1..) else {
            return false;
        };
        matches!(
            schema_node(relative),
            SchemaNode::SchemaMap | SchemaNode::Untyped
        )
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        let ports = path.last() == Some(&"ports");
        (ports && key == "protocol" && matches!(self.list_type(path), ListType::Map(_)))
            .then(|| Value::String("TCP".to_owned()))
    }

    fn present_when_empty(&self, path: &[&str]) -> bool {
        PRESENT_WHEN_EMPTY.contains(&path)
    }
}

/// A CRD's structural schema (the version's `schema.openAPIV3Schema`): lists are atomic unless
/// the schema says `x-kubernetes-list-type: map|set`; `metadata` follows the built-in rules
/// because the real server types it as ObjectMeta whatever the CRD says.
#[derive(Debug)]
pub struct SchemaListKeys {
    schema: Option<Value>,
}

impl SchemaListKeys {
    pub fn new(schema: Option<Value>) -> Self {
        SchemaListKeys { schema }
    }

    /// The schema node of the field at `path`, or None where the schema does not describe it
    /// (then the real server deduces the type: maps granular, lists atomic).
    fn node(&self, path: &[&str]) -> Option<&Value> {
        let mut node = self.schema.as_ref()?;
        for name in path {
            let object = element_schema(node);
            node = object
                .get("properties")
                .and_then(|properties| properties.get(*name))
                .or_else(|| {
                    object
                        .get("additionalProperties")
                        .filter(|schema| schema.is_object())
                })?;
        }
        Some(node)
    }
}

/// The schema of the items of a list (nested lists too), or the node itself: paths skip list
/// positions, so a name after a list names a field of its items.
fn element_schema(mut node: &Value) -> &Value {
    for _ in 0..32 {
        let is_array = node.get("type").and_then(Value::as_str) == Some("array");
        match node.get("items") {
            Some(items) if is_array && items.is_object() => node = items,
            _ => break,
        }
    }
    node
}

fn in_metadata(path: &[&str]) -> bool {
    path.first() == Some(&"metadata")
}

impl ListKeys for SchemaListKeys {
    fn list_type(&self, path: &[&str]) -> ListType {
        if in_metadata(path) {
            return BuiltinListKeys.list_type(path);
        }
        let Some(node) = self.node(path) else {
            return ListType::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys: Vec<String> = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map(keys)
                }
            }
            _ => ListType::Atomic,
        }
    }

    fn smp_merge_key(&self, path: &[&str]) -> Option<String> {
        if in_metadata(path) {
            BuiltinListKeys.smp_merge_key(path)
        } else {
            None
        }
    }

    fn smp_merge_primitives(&self, path: &[&str]) -> bool {
        in_metadata(path) && BuiltinListKeys.smp_merge_primitives(path)
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        if in_metadata(path) {
            return BuiltinListKeys.atomic_map(path);
        }
        self.node(path)
            .and_then(|node| node.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }

    fn is_map_element(&self, path: &[&str]) -> bool {
        let Some((&last, parents)) = path.split_last() else {
            return false;
        };
        if in_metadata(path) {
            return BuiltinListKeys.is_map_element(path);
        }
        if parents.is_empty() && ["apiVersion", "kind", "metadata"].contains(&last) {
            return false;
        }
        match self.node(parents) {
            None => true,
            Some(parent) => element_schema(parent)
                .get("properties")
                .and_then(|properties| properties.get(last))
                .is_none(),
        }
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        if in_metadata(path) {
            return BuiltinListKeys.key_default(path, key);
        }
        element_schema(self.node(path)?)
            .get("properties")?
            .get(key)?
            .get("default")
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(keys: &[&str]) -> ListType {
        ListType::Map(keys.iter().map(|key| (*key).to_owned()).collect())
    }

    #[test]
    fn builtin_keyed_lists() {
        let keys = BuiltinListKeys;
        let pod = ["spec", "containers"];
        let template = ["spec", "template", "spec", "containers"];
        assert_eq!(keys.list_type(&pod), map(&["name"]));
        assert_eq!(keys.list_type(&template), map(&["name"]));
        assert_eq!(
            keys.list_type(&[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "initContainers"
            ]),
            map(&["name"])
        );
        assert_eq!(
            keys.list_type(&["spec", "template", "spec", "containers", "ports"]),
            map(&["containerPort", "protocol"])
        );
        assert_eq!(
            keys.smp_merge_key(&["spec", "template", "spec", "containers", "ports"]),
            Some("containerPort".into())
        );
        assert_eq!(
            keys.list_type(&["spec", "ports"]),
            map(&["port", "protocol"])
        );
        assert_eq!(keys.smp_merge_key(&["spec", "ports"]), Some("port".into()));
        assert_eq!(
            keys.smp_merge_key(&["spec", "containers", "volumeMounts"]),
            Some("mountPath".into())
        );
        assert_eq!(
            keys.smp_merge_key(&["spec", "containers", "volumeDevices"]),
            Some("devicePath".into())
        );
        assert_eq!(
            keys.smp_merge_key(&["spec", "volumes"]),
            Some("name".into())
        );
        assert_eq!(
            keys.smp_merge_key(&["spec", "imagePullSecrets"]),
            Some("name".into())
        );
        assert_eq!(
            keys.smp_merge_key(&["spec", "hostAliases"]),
            Some("ip".into())
        );
        assert_eq!(
            keys.list_type(&["spec", "topologySpreadConstraints"]),
            map(&["topologyKey", "whenUnsatisfiable"])
        );
        assert_eq!(
            keys.smp_merge_key(&["status", "conditions"]),
            Some("type".into())
        );
        assert_eq!(
            keys.list_type(&["metadata", "ownerReferences"]),
            map(&["uid"])
        );
        assert_eq!(
            keys.smp_merge_key(&["spec", "template", "metadata", "ownerReferences"]),
            Some("uid".into())
        );
        assert_eq!(keys.list_type(&["webhooks"]), map(&["name"]));
    }

    #[test]
    fn builtin_sets_and_atomic_lists() {
        let keys = BuiltinListKeys;
        assert_eq!(keys.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert!(keys.smp_merge_primitives(&["metadata", "finalizers"]));
        assert_eq!(keys.smp_merge_key(&["metadata", "finalizers"]), None);
        // Namespace spec.finalizers is atomic, unlike metadata.finalizers.
        assert_eq!(keys.list_type(&["spec", "finalizers"]), ListType::Atomic);
        for atomic in [
            &["spec", "containers", "envFrom"][..],
            &["spec", "containers", "args"],
            &["spec", "containers", "command"],
            &["spec", "tolerations"],
            &["spec", "rules"],
            &["rules"],
            &["subjects"],
            &["spec", "accessModes"],
            &[
                "spec",
                "affinity",
                "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
                "nodeSelectorTerms",
            ],
            &["imagePullSecrets"],
            &["spec", "ingress", "ports"],
            &["ports"],
        ] {
            assert_eq!(keys.list_type(atomic), ListType::Atomic, "{atomic:?}");
            assert_eq!(keys.smp_merge_key(atomic), None, "{atomic:?}");
            assert!(!keys.smp_merge_primitives(atomic), "{atomic:?}");
        }
        assert_eq!(keys.list_type(&[]), ListType::Atomic);
    }

    #[test]
    fn builtin_maps_and_defaults() {
        let keys = BuiltinListKeys;
        assert!(keys.atomic_map(&["spec", "selector"]));
        assert!(keys.atomic_map(&["metadata", "ownerReferences"]));
        assert!(!keys.atomic_map(&["roleRef"]));
        assert!(!keys.atomic_map(&["spec", "template"]));
        assert_eq!(
            keys.key_default(&["spec", "containers", "ports"], "protocol"),
            Some(json!("TCP"))
        );
        assert_eq!(
            keys.key_default(&["spec", "containers", "ports"], "name"),
            None
        );
        assert!(keys.present_when_empty(&["spec", "template", "spec"]));
        assert!(!keys.present_when_empty(&["data"]));
    }

    #[test]
    fn crd_schemas_are_not_matched_by_the_builtin_table() {
        let keys = BuiltinListKeys;
        let base = [
            "spec",
            "versions",
            "schema",
            "openAPIV3Schema",
            "properties",
        ];
        let selector: Vec<&str> = base.iter().copied().chain(["selector"]).collect();
        assert!(!keys.atomic_map(&selector));
        assert!(keys.is_map_element(&selector));
        let containers: Vec<&str> = base
            .iter()
            .copied()
            .chain(["spec", "properties", "containers"])
            .collect();
        assert!(keys.is_map_element(&containers));
        assert_eq!(keys.list_type(&containers), ListType::Atomic);
        // A property that happens to be called "properties" is a schema, not a schema map.
        let nested: Vec<&str> = base.iter().copied().chain(["properties", "type"]).collect();
        assert!(!keys.is_map_element(&nested));
        let validations: Vec<&str> = base
            .iter()
            .copied()
            .chain(["spec", "x-kubernetes-validations"])
            .collect();
        assert_eq!(keys.list_type(&validations), map(&["rule"]));
    }

    fn backup_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "ttl": {"type": "string"},
                        "hooks": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "port": {"type": "integer", "default": 80},
                                    "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                             "items": {"type": "string"}}
                                }
                            }
                        },
                        "includedNamespaces": {"type": "array", "items": {"type": "string"}},
                        "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                        "labels": {"type": "object",
                                   "additionalProperties": {"type": "object",
                                       "properties": {"x": {"type": "array",
                                           "x-kubernetes-list-type": "set"}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn schema_list_types() {
        let keys = SchemaListKeys::new(Some(backup_schema()));
        assert_eq!(keys.list_type(&["spec", "hooks"]), map(&["name"]));
        assert_eq!(keys.list_type(&["spec", "hooks", "tags"]), ListType::Set);
        assert_eq!(
            keys.list_type(&["spec", "includedNamespaces"]),
            ListType::Atomic
        );
        assert_eq!(
            keys.list_type(&["spec", "labels", "anything", "x"]),
            ListType::Set
        );
        assert_eq!(keys.list_type(&["spec", "free", "list"]), ListType::Atomic);
        assert_eq!(keys.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            keys.list_type(&["metadata", "ownerReferences"]),
            map(&["uid"])
        );
        assert_eq!(keys.smp_merge_key(&["spec", "hooks"]), None);
        assert!(keys.smp_merge_primitives(&["metadata", "finalizers"]));
        assert!(!keys.smp_merge_primitives(&["spec", "includedNamespaces"]));
        assert_eq!(
            keys.key_default(&["spec", "hooks"], "port"),
            Some(json!(80))
        );
        assert!(keys.atomic_map(&["spec", "selector"]));
        assert!(!keys.atomic_map(&["spec", "labels"]));
    }

    #[test]
    fn schema_map_elements() {
        let keys = SchemaListKeys::new(Some(backup_schema()));
        assert!(!keys.is_map_element(&["spec"]));
        assert!(!keys.is_map_element(&["spec", "ttl"]));
        assert!(!keys.is_map_element(&["spec", "hooks", "name"]));
        assert!(keys.is_map_element(&["spec", "labels", "anything"]));
        assert!(keys.is_map_element(&["spec", "free", "anything"]));
        assert!(!keys.is_map_element(&["metadata", "labels"]));
        assert!(!keys.is_map_element(&["apiVersion"]));

        let schemaless = SchemaListKeys::new(None);
        assert!(schemaless.is_map_element(&["spec"]));
        assert!(schemaless.is_map_element(&["spec", "a", "b"]));
        assert!(!schemaless.is_map_element(&["kind"]));
        assert_eq!(schemaless.list_type(&["spec", "items"]), ListType::Atomic);
        assert!(!schemaless.is_map_element(&[]));
    }

    #[test]
    fn malformed_schemas_do_not_panic() {
        for schema in [
            json!(null),
            json!([]),
            json!("x"),
            json!({"properties": []}),
            json!({"properties": {"spec": {"x-kubernetes-list-type": "map",
                                            "x-kubernetes-list-map-keys": "name"}}}),
            json!({"type": "array", "items": {"type": "array", "items": 3}}),
        ] {
            let keys = SchemaListKeys::new(Some(schema));
            let _ = keys.list_type(&["spec"]);
            let _ = keys.list_type(&["spec", "x", "y"]);
            let _ = keys.atomic_map(&["spec"]);
            let _ = keys.is_map_element(&["spec", "x"]);
            let _ = keys.key_default(&["spec"], "name");
        }
    }
}
