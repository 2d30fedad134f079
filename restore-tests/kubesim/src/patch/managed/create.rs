//! The creator's `fieldsV1` without the general diff.
//!
//! On a create (or a `managedFields: []` reset) the general path builds the empty-object
//! skeleton, diffs the object against it into path sets, scopes the sets and encodes them: a
//! dozen allocations per field and most of the time it takes to seed a cluster. The outcome is
//! simple enough to write down directly, in one walk over the object:
//!
//! - a field that the skeleton lacks is new, so owned itself; its map fields and identifiable
//!   list items are new too (hence the `.` of new maps and keyed items);
//! - a field the skeleton has (a map or list that an empty Go object already holds) is not new:
//!   only what is new below it is owned, unless it is a leaf that differs from its skeleton;
//! - atomic maps and lists, and lists whose items cannot be identified, are leaves;
//! - the unowned fields lose their own membership but keep their descendants, and status
//!   scoping keeps or drops the top-level `status`, exactly as [`super::scope`] does.
//!
//! Children are emitted in structured-merge-diff's order, and nodes that end up owning nothing
//! are left out, as the set encoder does. The tests prove the result identical to the general
//! path's.

use std::ops::Range;

use serde_json::{Map, Value};

use super::{Ctx, SERVER_METADATA, UNOWNED_METADATA, list_elements};
use crate::patch::fieldpath::PathElement;
use crate::patch::{ListKeys, ListType};

/// The `fieldsV1` of the entry the creator of `object` gets; empty when it owns nothing.
pub(super) fn created_fields(object: &Map<String, Value>, ctx: &Ctx) -> Map<String, Value> {
    let status_write = ctx.subresource == Some("status");
    let mut walk = Walk {
        keys: ctx.keys,
        names: Vec::with_capacity(8),
        fields: Vec::with_capacity(32),
    };
    let mut out = Map::with_capacity(object.len());
    let fields = walk.sorted(object);
    for index in fields.clone() {
        let (name, child) = walk.fields[index];
        let status = name == "status";
        if (status_write && !status) || (!status_write && ctx.ignore_status && status) {
            continue;
        }
        let unowned = ["apiVersion", "kind", "metadata"].contains(&name);
        walk.field(name, child, false, unowned, name == "metadata", &mut out);
    }
    out
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

struct Walk<'v, 'k> {
    keys: &'k dyn ListKeys,
    /// Field names from the root, borrowed from the object being walked.
    names: Vec<&'v str>,
    /// The sorted fields of the maps being walked, innermost last: one buffer for the whole
    /// walk instead of one per map.
    fields: Vec<(&'v str, &'v Value)>,
}

impl<'v> Walk<'v, '_> {
    /// Pushes the fields of a map onto [`Walk::fields`] in `FieldsV1` order (names compare
    /// bytewise) and returns where they are; the caller truncates them away when done.
    fn sorted(&mut self, object: &'v Map<String, Value>) -> Range<usize> {
        let start = self.fields.len();
        self.fields
            .extend(object.iter().map(|(name, value)| (name.as_str(), value)));
        let fields = &mut self.fields[start..];
        if !fields.is_sorted_by(|a, b| a.0 <= b.0) {
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        start..self.fields.len()
    }

    /// Encodes the field `name` of a map into `out`. `fresh`: the map itself is not in the
    /// skeleton, so neither is the field.
    fn field(
        &mut self,
        name: &'v str,
        value: &'v Value,
        fresh: bool,
        unowned: bool,
        metadata: bool,
        out: &mut Map<String, Value>,
    ) {
        self.names.push(name);
        let in_skeleton =
            !fresh && is_container(value) && self.keys.present_when_empty(&self.names);
        if let Some(node) = self.node(value, !in_skeleton, unowned, metadata) {
            let mut key = String::with_capacity(name.len() + 2);
            key.push_str("f:");
            key.push_str(name);
            out.insert(key, Value::Object(node));
        }
        self.names.pop();
    }

    /// The encoding of the value at the current position, or None when nothing at or below it
    /// is owned. `fresh`: it is new rather than part of the skeleton. `unowned`: the server's
    /// field, which nobody owns itself. `metadata`: the top-level `metadata`, whose server
    /// fields are unowned.
    fn node(
        &mut self,
        value: &'v Value,
        fresh: bool,
        unowned: bool,
        metadata: bool,
    ) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        let member = match value {
            Value::Object(object) => {
                if object.is_empty() || self.keys.atomic_map(&self.names) {
                    // A leaf: owned when new or when it differs from its skeleton.
                    (fresh || !self.is_skeleton(object)) && !unowned
                } else {
                    let member = fresh && !unowned;
                    out = Map::with_capacity(object.len() + usize::from(member));
                    if member {
                        out.insert(".".to_owned(), Value::Object(Map::new()));
                    }
                    let fields = self.sorted(object);
                    for index in fields.clone() {
                        let (name, child) = self.fields[index];
                        let unowned = metadata
                            && UNOWNED_METADATA
                                .iter()
                                .chain(&SERVER_METADATA)
                                .any(|server| *server == name);
                        self.field(name, child, fresh, unowned, false, &mut out);
                    }
                    self.fields.truncate(fields.start);
                    member
                }
            }
            Value::Array(items) => {
                let list_type = if items.is_empty() {
                    ListType::Atomic
                } else {
                    self.keys.list_type(&self.names)
                };
                let elements = match list_type {
                    ListType::Atomic => None,
                    _ => list_elements(self.keys, &self.names, items, &list_type, false).ok(),
                };
                match elements {
                    Some(elements) => {
                        let member = fresh && !unowned;
                        out = Map::with_capacity(items.len() + usize::from(member));
                        if member {
                            out.insert(".".to_owned(), Value::Object(Map::new()));
                        }
                        let mut items: Vec<(PathElement, &Value)> =
                            elements.into_iter().zip(items).collect();
                        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        for (element, item) in items {
                            let node = self.node(item, true, false, false).unwrap_or_default();
                            out.insert(element.encode(), Value::Object(node));
                        }
                        member
                    }
                    // An empty list in the skeleton is equal to it; any other list is a leaf
                    // that differs from its skeleton.
                    None => (fresh || !items.is_empty()) && !unowned,
                }
            }
            // Scalars and nulls are never in the skeleton.
            _ => !unowned,
        };
        // A `.` never stands alone: empty containers are leaves, and the children of a new node
        // are new, so owned and emitted.
        (member || !out.is_empty()).then_some(out)
    }

    /// Whether `object` equals its skeleton: nothing but maps that an empty object holds,
    /// recursively.
    fn is_skeleton(&mut self, object: &'v Map<String, Value>) -> bool {
        for (name, child) in object {
            let Value::Object(inner) = child else {
                return false;
            };
            self.names.push(name);
            let same = self.keys.present_when_empty(&self.names) && self.is_skeleton(inner);
            self.names.pop();
            if !same {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};
    use serde_json::json;

    use super::super::record;
    use super::*;
    use crate::patch::{BuiltinListKeys, SchemaListKeys};

    const NOW: &str = "2026-01-02T03:04:05Z";

    /// A CRD schema exercising every list and map type a custom resource can declare.
    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {
            "kind": {"type": "array", "x-kubernetes-list-type": "set"},
            "spec": {"type": "object", "properties": {
                "hooks": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "phase"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "phase": {"type": "string", "default": "pre"},
                        "cmd": {"type": "array", "items": {"type": "string"}}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "steps": {"type": "array", "items": {"type": "object"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "params": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                    "value": {"type": "string"}}}},
                "size": {"type": "integer"}
            }},
            "status": {"type": "object", "properties": {
                "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"]}}}
        }})
    }

    /// Every kind of type knowledge, each with every status scoping a write can have.
    fn contexts<'a>(keys: &'a [Box<dyn ListKeys>], managers: &[&'a str]) -> Vec<Ctx<'a>> {
        let mut out = Vec::new();
        for keys in keys {
            for (subresource, ignore_status) in [
                (None, false),
                (None, true),
                (Some("status"), false),
                (Some("scale"), true),
            ] {
                for &manager in managers {
                    out.push(Ctx {
                        manager,
                        api_version: "v1",
                        now: NOW,
                        subresource,
                        ignore_status,
                        keys: keys.as_ref(),
                    });
                }
            }
        }
        out
    }

    /// Built-in types whose skeleton maps are atomic, which no real type has but the general path
    /// handles (a changed atomic map is owned as a whole even where an empty object has it).
    #[derive(Debug)]
    struct AtomicSkeletons;

    impl ListKeys for AtomicSkeletons {
        fn list_type(&self, path: &[&str]) -> ListType {
            BuiltinListKeys.list_type(path)
        }
        fn smp_merge_key(&self, _path: &[&str]) -> Option<String> {
            None
        }
        fn smp_merge_primitives(&self, _path: &[&str]) -> bool {
            false
        }
        fn atomic_map(&self, path: &[&str]) -> bool {
            matches!(path, ["spec" | "roleRef"] | ["spec", "template"])
        }
        fn present_when_empty(&self, path: &[&str]) -> bool {
            BuiltinListKeys.present_when_empty(path)
        }
    }

    fn all_keys() -> Vec<Box<dyn ListKeys>> {
        vec![
            Box::new(BuiltinListKeys),
            Box::new(AtomicSkeletons),
            Box::new(SchemaListKeys::new(None)),
            Box::new(preserve_unknown_fields()),
            Box::new(SchemaListKeys::new(Some(widget_schema()))),
        ]
    }

    /// What the server has added by the time it records a create.
    fn as_stored(mut object: Value) -> Value {
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            metadata.insert("uid".into(), json!("0f7a2c1e-8d7b-4c55-9e43-3a1f0c6b2d11"));
            metadata.insert("creationTimestamp".into(), json!(NOW));
            metadata.insert("generation".into(), json!(1));
        }
        object
    }

    /// Asserts that the fast path records exactly what the general path does, byte for byte.
    fn assert_same(old: Option<&Value>, new: &Value, ctx: &Ctx) {
        let mut fast = new.clone();
        record(old, &mut fast, ctx, true);
        let mut general = new.clone();
        record(old, &mut general, ctx, false);
        assert_eq!(
            serde_json::to_string(&fast).unwrap(),
            serde_json::to_string(&general).unwrap(),
            "object {new}\nold {old:?}\nsubresource {:?}, ignore_status {}, keys {:?}",
            ctx.subresource,
            ctx.ignore_status,
            ctx.keys
        );
    }

    fn hand_written() -> Vec<Value> {
        vec![
            json!({}),
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}}),
            json!({"apiVersion": {"group": "x"}, "kind": ["a"], "metadata": "x", "data": null}),
            json!({"metadata": {"name": {"nested": 1}, "uid": [1, 2], "labels": {}, "annotations": {"a": "b"}},
                   "data": {"b": "2", "a": "1", "B": "3", "a.b": "4", "a-b": "5", "é": "6"}}),
            // Keyed lists (with a defaulted key), sets, atomic lists and atomic maps.
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                    "finalizers": ["b", "a", "c"],
                    "ownerReferences": [{"uid": "u1", "name": "o"}, {"uid": "u0"}]},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {}, "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [
                            {"name": "z", "image": "x", "args": ["a", "b"],
                             "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"},
                                       {"containerPort": 8080.0, "protocol": "TCP"}],
                             "env": [{"name": "B", "value": "1"}, {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                             "resources": {"limits": {"cpu": "1"}}},
                            {"name": "a", "ports": [], "env": [{"name": "X"}, {"name": "X"}]}],
                        "volumes": [{"name": "v", "emptyDir": {}}],
                        "nodeSelector": {}, "imagePullSecrets": []}}},
                "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing"}]}}),
            // Items that cannot be identified make the list a leaf.
            json!({"metadata": {"finalizers": ["a", "a"], "ownerReferences": [{"name": "no uid"}]},
                "spec": {"containers": [{"name": "a"}, "x"], "ports": [{"port": 1}, {"port": 1, "protocol": "TCP"}],
                    "podCIDRs": [{"a": 1}], "template": {"spec": {"containers": []}}},
                "status": {"conditions": [{"type": "A"}, {"status": "no type"}]}}),
            // Maps that an empty object already has, empty, nested and of every shape.
            json!({"spec": {"template": {}, "containers": [], "names": {"kind": "K"}, "resources": {},
                "jobTemplate": {"spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "c"}]}}}}},
                "roleRef": {"name": "r"}, "status": {}}),
            json!({"spec": {"template": {"metadata": {}, "spec": {}}}, "roleRef": {}}),
            json!({"spec": null, "status": null, "roleRef": [1], "metadata": {"labels": null}}),
            json!({"spec": {"template": {"metadata": {"labels": {}}, "spec": {"containers": null}}}}),
            json!({"spec": {"selector": {}, "template": {"spec": {"nodeSelector": {"a": "b"}}}}}),
            json!({"status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "hostIPs": [{"ip": 1}, {"ip": 1.0}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "protocol": "TCP"}],
                "selector": {"app": "a"}, "podCIDRs": ["b", "a", 3, true, null, 2.5]}}),
            // Custom resources: keyed lists with defaults, sets, atomic maps, free-form maps.
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"hooks": [{"name": "b", "cmd": ["x"]}, {"name": "a", "phase": "post"}, {"name": "a"}],
                    "tags": ["z", "y", "z"], "steps": [{"a": 1}], "selector": {"a": {"b": 1}},
                    "params": {"p": {"value": "1", "extra": {"deep": true}}, "q": {}}, "size": 3,
                    "unknown": {"free": {"form": [1, {"x": 1}]}}},
                "status": {"conditions": [{"type": "Ready"}], "phase": "Running"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "schema": {"openAPIV3Schema": widget_schema()}}]}}),
        ]
    }

    /// The context the server records a create of `object` with, as for a seeded cluster.
    fn server_ctx<'a>(object: &Value, builtin: &'a dyn ListKeys, crd: &'a dyn ListKeys) -> Ctx<'a> {
        let kind = object["kind"].as_str().unwrap_or_default();
        Ctx {
            manager: "synth",
            api_version: if kind == "Deployment" {
                "apps/v1"
            } else {
                "v1"
            },
            now: NOW,
            subresource: None,
            ignore_status: matches!(kind, "Deployment" | "Service" | "Widget"),
            keys: if kind == "Widget" { crd } else { builtin },
        }
    }

    fn preserve_unknown_fields() -> SchemaListKeys {
        SchemaListKeys::new(Some(
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        ))
    }

    #[test]
    fn creates_match_the_general_path_for_synthetic_objects() {
        let crd = preserve_unknown_fields();
        let schemaless = SchemaListKeys::new(None);
        for object in crate::synth::objects(2000, 1).map(as_stored) {
            let ctx = server_ctx(&object, &BuiltinListKeys, &crd);
            assert_same(None, &object, &ctx);
            // The other type knowledge and scoping, which these objects are not created with.
            let other = Ctx {
                keys: if object["kind"] == "Widget" {
                    &BuiltinListKeys
                } else {
                    &schemaless
                },
                ignore_status: !ctx.ignore_status,
                ..ctx.clone()
            };
            assert_same(None, &object, &other);
        }
    }

    #[test]
    fn creates_match_the_general_path_for_hand_written_objects() {
        let keys = all_keys();
        let contexts = contexts(&keys, &["", "kubectl-create"]);
        for object in hand_written() {
            for object in [object.clone(), as_stored(object)] {
                for ctx in &contexts {
                    assert_same(None, &object, ctx);
                    // A live object that is not one, a reset and a clear take the same shortcut.
                    assert_same(Some(&json!("not an object")), &object, ctx);
                    if object.get("metadata").is_some_and(Value::is_object) {
                        let written = |fields: Value| {
                            let mut written = object.clone();
                            written["metadata"]["managedFields"] = fields;
                            written
                        };
                        assert_same(Some(&object), &written(json!([])), ctx);
                        assert_same(None, &written(json!([{}])), ctx);
                        let entry = json!([{"manager": "x", "operation": "Update",
                            "fieldsV1": {"f:data": {}, "f:spec": {"f:a": {}}}}]);
                        assert_same(None, &written(entry), ctx);
                    }
                }
            }
        }
    }

    /// Random objects over the names the type tables know, so that every rule meets every
    /// shape of value.
    fn random_value(rng: &mut StdRng, depth: usize) -> Value {
        const NAMES: &[&str] = &[
            "metadata",
            "spec",
            "status",
            "template",
            "containers",
            "ports",
            "env",
            "name",
            "containerPort",
            "protocol",
            "finalizers",
            "labels",
            "selector",
            "conditions",
            "type",
            "uid",
            "ownerReferences",
            "volumes",
            "jobTemplate",
            "hooks",
            "tags",
            "phase",
            "params",
            "roleRef",
            "namespace",
            "podCIDRs",
            "a",
            "b",
            "port",
            "managedFields",
        ];
        let scalar = |rng: &mut StdRng| match rng.random_range(0..6) {
            0 => Value::Null,
            1 => json!(rng.random_range(0..3)),
            2 => json!(f64::from(rng.random_range(0..3))),
            3 => json!(rng.random_bool(0.5)),
            _ => json!(NAMES[rng.random_range(0..4)]),
        };
        if depth == 0 {
            return scalar(rng);
        }
        match rng.random_range(0..10) {
            0..=4 => {
                let mut object = Map::new();
                for _ in 0..rng.random_range(0..5) {
                    let name = NAMES[rng.random_range(0..NAMES.len())];
                    object.insert(name.to_owned(), random_value(rng, depth - 1));
                }
                Value::Object(object)
            }
            5..=7 => Value::Array(
                (0..rng.random_range(0..4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => scalar(rng),
        }
    }

    #[test]
    fn creates_match_the_general_path_for_random_objects() {
        let keys = all_keys();
        let contexts = contexts(&keys, &["m"]);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let mut object = random_value(&mut rng, 6);
            if !object.is_object() {
                object = json!({"spec": object});
            }
            for ctx in &contexts {
                assert_same(None, &object, ctx);
            }
        }
    }

    /// `cargo test --release -p kubesim --lib record_update_speed -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark, not a test"]
    fn record_update_speed() {
        let crd = preserve_unknown_fields();
        let objects: Vec<Value> = crate::synth::objects(2000, 1).map(as_stored).collect();
        let ctx_for = |object: &Value| server_ctx(object, &BuiltinListKeys, &crd);
        let rounds = 20;
        let calls = f64::from(rounds) * objects.len() as f64;
        for fast in [false, true] {
            // Only the calls are timed: cloning and dropping the objects stay off the clock.
            let mut create = Duration::ZERO;
            let mut created = Vec::new();
            for _ in 0..rounds {
                let mut batch = objects.clone();
                for (new, object) in batch.iter_mut().zip(&objects) {
                    let ctx = ctx_for(object);
                    let started = Instant::now();
                    record(None, new, &ctx, fast);
                    create += started.elapsed();
                }
                created = batch;
            }
            // Updates: one label changed on each created object.
            let mut update = Duration::ZERO;
            for _ in 0..rounds {
                let mut batch = created.clone();
                for ((new, live), object) in batch.iter_mut().zip(&created).zip(&objects) {
                    new["metadata"]["labels"]["tier"] = json!("changed");
                    let ctx = ctx_for(object);
                    let started = Instant::now();
                    record(Some(live), new, &ctx, fast);
                    update += started.elapsed();
                }
            }
            println!(
                "{}: {:.2} µs per create, {:.2} µs per update",
                if fast { "fast path" } else { "general path" },
                create.as_secs_f64() * 1e6 / calls,
                update.as_secs_f64() * 1e6 / calls,
            );
        }
    }
}
