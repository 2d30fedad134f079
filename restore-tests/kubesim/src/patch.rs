//! Patch and field-ownership semantics of the Kubernetes API server, over `serde_json::Value`.
//!
//! Pure functions: no IO, no store. The server calls them with the live object and the request
//! body. See the module docs of each submodule.

mod fieldpath;
mod keys;
pub mod managed;
pub mod strategic;

pub use keys::{BuiltinListKeys, ListKeys, ListType, SchemaListKeys};

use serde_json::{Map, Value};

/// Why a patch could not be applied, mapped by the server onto a `Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (HTTP 400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but cannot be applied to this object (HTTP 422).
    #[error("{0}")]
    Unprocessable(String),
    /// Server-side apply conflicts with other field managers (HTTP 409). Displays as the
    /// apiserver's Status message, which kubectl prints verbatim.
    #[error("{}", managed::conflict_message(.0))]
    Conflicts(Vec<FieldConflict>),
}

/// One field that a server-side apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The manager that owns the field now.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The owning entry's `apiVersion` (printed for Update managers: `"kubectl-create" using v1`).
    pub api_version: String,
    /// The field in kubectl's notation, e.g. `.spec.ttl` or `.spec.containers[name="nginx"].image`.
    pub field: String,
}

/// RFC 7386 JSON merge patch (`application/merge-patch+json`).
///
/// Implemented here rather than with `json_patch::merge` so that deleting a key keeps the order
/// of the remaining ones: objects are stored order-preserving and clients diff them.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (name, value) in patch {
            if value.is_null() {
                target.shift_remove(name);
            } else {
                merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// RFC 6902 JSON patch (`application/json-patch+json`); every op including `test`.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadRequest(format!("json patch is invalid: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::Unprocessable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386_and_keeps_key_order() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "f": 4});
        merge_patch(
            &mut target,
            &json!({"a": null, "b": {"c": null, "x": {"y": null, "z": 1}}, "e": {"k": 1}, "g": null}),
        );
        assert_eq!(
            serde_json::to_string(&target).unwrap(),
            r#"{"b":{"d":3,"x":{"z":1}},"e":{"k":1},"f":4}"#
        );
        merge_patch(&mut target, &json!([1, 2]));
        assert_eq!(target, json!([1, 2]));
        let mut scalar = json!("x");
        merge_patch(&mut scalar, &json!({"a": {"b": null}}));
        assert_eq!(scalar, json!({"a": {}}));
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let mut target = json!({"metadata": {"resourceVersion": "5"}, "data": {"a": "1"}});
        json_patch(
            &mut target,
            &json!([
                {"op": "test", "path": "/data/a", "value": "1"},
                {"op": "replace", "path": "/metadata/resourceVersion", "value": "5"},
                {"op": "add", "path": "/data/b", "value": "2"},
                {"op": "remove", "path": "/data/a"}
            ]),
        )
        .unwrap();
        assert_eq!(
            target,
            json!({"metadata": {"resourceVersion": "5"}, "data": {"b": "2"}})
        );
        let failed = json_patch(
            &mut target,
            &json!([{"op": "test", "path": "/data/b", "value": "x"}]),
        );
        assert!(matches!(failed, Err(PatchError::Unprocessable(_))));
        let malformed = json_patch(&mut target, &json!({"op": "add"}));
        assert!(matches!(malformed, Err(PatchError::BadRequest(_))));
    }

    #[test]
    fn conflicts_display_as_the_apiserver_message() {
        let error = PatchError::Conflicts(vec![FieldConflict {
            manager: "kubectl".into(),
            operation: "Apply".into(),
            api_version: "v1".into(),
            field: ".spec.ttl".into(),
        }]);
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.ttl"#
        );
    }
}
