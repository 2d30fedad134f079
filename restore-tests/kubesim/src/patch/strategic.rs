//! Strategic merge patch (`application/strategic-merge-patch+json`), the patch kubectl sends for
//! every client-side `apply` and `patch` of a built-in type.
//!
//! It follows the apiserver's `strategicpatch.StrategicMergeMapPatch`: JSON merge patch plus
//! per-field list strategies and the `$`-directives kubectl generates. The element ordering in
//! particular mirrors the real algorithm (patch items, then the live items interleaved by their
//! live order), because kubectl's three-way patches rely on it to keep containers and env vars
//! where the user put them.
//!
//! Deliberate differences, all on input kubectl never sends: new subtrees are cleaned of every
//! directive (the real server leaves `$setElementOrder`/`$retainKeys` keys inside brand-new maps),
//! `$patch: merge` is accepted as a no-op instead of an error, unknown `$`-keys are dropped, and
//! live items that lack the merge key are treated as unmatched instead of failing the patch.

use serde_json::{Map, Value};

use super::{ListKeys, PatchError};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Apply a strategic merge patch (application/strategic-merge-patch+json) to `target` in place.
/// Merge-patch semantics (null deletes a key, maps merge recursively) plus: lists with a merge key
/// merged by key (patch items update/insert; order: patch items and live items interleaved as the
/// real server does, unless `$setElementOrder/<field>` gives the order), primitive lists with
/// merge strategy unioned, other lists replaced; directives `$patch: delete|replace|merge` (in map
/// items, list items and as a list element `{"$patch":"replace"}`), `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`. Directive keys never end up in
/// the result. `target` is left untouched when the patch fails.
pub fn apply(target: &mut Value, patch: &Value, keys: &dyn ListKeys) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(bad(format!(
            "strategic merge patch must be a JSON object, got {}",
            kind(patch)
        )));
    };
    let original = target.as_object().cloned().unwrap_or_default();
    let mut smp = Merger {
        keys,
        path: Vec::new(),
    };
    *target = Value::Object(smp.merge_map(original, patch)?);
    Ok(())
}

fn bad(message: impl Into<String>) -> PatchError {
    PatchError::BadRequest(message.into())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn no_merge_key(item: &Map<String, Value>, key: &str) -> PatchError {
    bad(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(item.clone())
    ))
}

fn unknown_directive(directive: &Value, item: &Map<String, Value>) -> PatchError {
    bad(format!(
        "unknown patch type: {directive} in map: {}",
        Value::Object(item.clone())
    ))
}

fn directive_of(item: &Value) -> Option<&Value> {
    item.as_object().and_then(|object| object.get(DIRECTIVE))
}

/// What identifies an item when ordering: its merge key value, or the item itself for primitives.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.as_object().and_then(|object| object.get(key)),
        None => Some(item),
    }
}

fn position(ids: &[Option<&Value>], id: Option<&Value>) -> Option<usize> {
    let id = id?;
    ids.iter().position(|candidate| *candidate == Some(id))
}

/// Splits `items` into those whose identity appears in `by` and the rest, keeping their order.
fn partition(
    items: Vec<Value>,
    by: &[Option<&Value>],
    key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    items
        .into_iter()
        .partition(|item| position(by, identity(item, key)).is_some())
}

/// The real server's `normalizeElementOrder`: patch items sorted by the patch (or
/// `$setElementOrder`) order, live-only items by their live order, then the live-only items are
/// slotted in front of the first patch item that comes after them in the live list.
fn normalize_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Option<&Value>],
    server_order: &[Option<&Value>],
    key: Option<&str>,
) -> Vec<Value> {
    let rank = |order: &[Option<&Value>], item: &Value| {
        position(order, identity(item, key)).unwrap_or(usize::MAX)
    };
    patch_items.sort_by_key(|item| rank(patch_order, item));
    server_only.sort_by_key(|item| rank(server_order, item));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                let l = position(server_order, identity(l, key));
                let r = position(server_order, identity(r, key));
                matches!((l, r), (Some(l), Some(r)) if l < r)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

struct Merger<'k> {
    keys: &'k dyn ListKeys,
    /// Field names from the object root to the value being merged.
    path: Vec<String>,
}

impl Merger<'_> {
    fn names(&self) -> Vec<&str> {
        self.path.iter().map(String::as_str).collect()
    }

    fn merge_key(&self) -> Option<String> {
        self.keys.smp_merge_key(&self.names())
    }

    fn within<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(name.to_owned());
        let result = f(self);
        self.path.pop();
        result
    }

    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            match directive.as_str() {
                Some("replace") => {
                    let mut replacement = patch.clone();
                    replacement.shift_remove(DIRECTIVE);
                    return self.merge_map(Map::new(), &replacement);
                }
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => return Err(unknown_directive(directive, patch)),
            }
        }

        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let Value::Array(retain) = retain else {
                return Err(bad("invalid patch format of retainKeys"));
            };
            let retained = |name: &str| retain.iter().any(|key| key.as_str() == Some(name));
            for (name, value) in patch {
                let directive = name.starts_with('$');
                if !value.is_null() && !directive && !retained(name) {
                    return Err(bad("invalid patch format of retainKeys"));
                }
            }
            original.retain(|name, _| retained(name));
        }

        // Lists with an explicit order are merged first and then left alone by the main loop.
        let mut ordered: Vec<&str> = Vec::new();
        for (name, order) in patch {
            let Some(field) = name.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(bad("invalid patch format of setElementOrder list"));
            };
            let merged = self.within(field, |merger| {
                merger.set_element_order(original.get(field), patch.get(field), order)
            })?;
            if let Some(merged) = merged {
                original.insert(field.to_owned(), Value::Array(merged));
            }
            ordered.push(field);
        }

        let mut deletions = Vec::new();
        for (name, value) in patch {
            if let Some(field) = name.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                deletions.push((field, value));
                continue;
            }
            if name.starts_with('$') || ordered.contains(&name.as_str()) {
                continue;
            }
            if value.is_null() {
                original.shift_remove(name);
                continue;
            }
            let current = original.get_mut(name).map(std::mem::take);
            let merged = self.within(name, |merger| match (current, value) {
                (Some(Value::Object(current)), Value::Object(value)) => merger
                    .merge_map(current, value)
                    .map(|m| Some(Value::Object(m))),
                (Some(Value::Array(current)), Value::Array(value)) => merger
                    .merge_list(current, value)
                    .map(|l| Some(Value::Array(l))),
                _ => merger.clean(value),
            })?;
            match merged {
                Some(merged) => {
                    original.insert(name.clone(), merged);
                }
                None => {
                    original.shift_remove(name);
                }
            }
        }

        for (field, value) in deletions {
            match value {
                // The real server deletes the list itself when the deletion list is null.
                Value::Null => {
                    original.shift_remove(field);
                }
                Value::Array(delete) => {
                    if let Some(Value::Array(items)) = original.get_mut(field) {
                        items.retain(|item| !delete.contains(item));
                    }
                }
                _ => return Err(bad("invalid patch format of primitive list")),
            }
        }
        Ok(original)
    }

    /// `$setElementOrder/<field>`: merge the field's patch list as usual, then order the result:
    /// items named in the order list as it says, the others by their live position.
    fn set_element_order(
        &mut self,
        original: Option<&Value>,
        patch: Option<&Value>,
        order: &[Value],
    ) -> Result<Option<Vec<Value>>, PatchError> {
        let not_a_list = || bad("invalid patch format of setElementOrder list");
        let original = match original {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => return Err(not_a_list()),
        };
        let patch = match patch {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => return Err(not_a_list()),
        };
        let key = self.merge_key();
        if let Some(patch) = patch {
            validate_order(patch, order, key.as_deref())?;
        }
        let merged = match (original, patch) {
            (None, None) => return Ok(None),
            (Some(original), None) => original.clone(),
            (None, Some(patch)) => self.clean_list(patch)?,
            (Some(original), Some(patch)) => self.merge_list(original.clone(), patch)?,
        };
        let key = key.as_deref();
        let order_ids: Vec<Option<&Value>> = order.iter().map(|item| identity(item, key)).collect();
        let server_ids: Vec<Option<&Value>> = original
            .map(|items| items.iter().map(|item| identity(item, key)).collect())
            .unwrap_or_default();
        let (in_order, server_only) = partition(merged, &order_ids, key);
        Ok(Some(normalize_order(
            in_order,
            server_only,
            &order_ids,
            &server_ids,
            key,
        )))
    }

    fn merge_list(
        &mut self,
        original: Vec<Value>,
        patch: &[Value],
    ) -> Result<Vec<Value>, PatchError> {
        // `{"$patch": "replace"}` as an element replaces the list with the other elements.
        if patch
            .iter()
            .any(|item| directive_of(item).and_then(Value::as_str) == Some("replace"))
        {
            let plain: Vec<Value> = patch
                .iter()
                .filter(|item| directive_of(item).is_none())
                .cloned()
                .collect();
            return self.clean_list(&plain);
        }
        if let Some(key) = self.merge_key() {
            return self.merge_keyed(original, patch, &key);
        }
        if self.keys.smp_merge_primitives(&self.names()) {
            return Ok(merge_primitives(original, patch));
        }
        self.clean_list(patch)
    }

    fn merge_keyed(
        &mut self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
    ) -> Result<Vec<Value>, PatchError> {
        let mut plain: Vec<&Map<String, Value>> = Vec::new();
        for item in patch {
            let Value::Object(object) = item else {
                return Err(bad(format!(
                    "expected a map, but received a {}",
                    kind(item)
                )));
            };
            let Some(directive) = object.get(DIRECTIVE) else {
                plain.push(object);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let Some(value) = object.get(key) else {
                        return Err(no_merge_key(object, key));
                    };
                    original.retain(|item| identity(item, Some(key)) != Some(value));
                }
                Some("merge") if object.contains_key(key) => plain.push(object),
                Some("merge" | "replace") => {}
                _ => return Err(unknown_directive(directive, object)),
            }
        }
        let server_order: Vec<Value> = original
            .iter()
            .map(|item| identity(item, Some(key)).cloned().unwrap_or(Value::Null))
            .collect();

        for item in &plain {
            let Some(value) = item.get(key) else {
                return Err(no_merge_key(item, key));
            };
            let found = original
                .iter()
                .position(|candidate| identity(candidate, Some(key)) == Some(value));
            match found.and_then(|index| original.get_mut(index)) {
                Some(slot) => {
                    let current = match std::mem::take(slot) {
                        Value::Object(current) => current,
                        _ => Map::new(),
                    };
                    *slot = Value::Object(self.merge_map(current, item)?);
                }
                None => {
                    if let Some(cleaned) = self.clean(&Value::Object((*item).clone()))? {
                        original.push(cleaned);
                    }
                }
            }
        }

        let patch_ids: Vec<Option<&Value>> = plain.iter().map(|item| item.get(key)).collect();
        let server_ids: Vec<Option<&Value>> = server_order
            .iter()
            .map(|id| (!id.is_null()).then_some(id))
            .collect();
        let (patch_items, server_only) = partition(original, &patch_ids, Some(key));
        Ok(normalize_order(
            patch_items,
            server_only,
            &patch_ids,
            &server_ids,
            Some(key),
        ))
    }

    /// A patch value that lands where nothing mergeable exists: nulls and directives are dropped
    /// (`None` means the value itself was a deletion).
    fn clean(&mut self, value: &Value) -> Result<Option<Value>, PatchError> {
        match value {
            Value::Object(object) => {
                if directive_of(value).and_then(Value::as_str) == Some("delete") {
                    return Ok(None);
                }
                Ok(Some(Value::Object(self.merge_map(Map::new(), object)?)))
            }
            Value::Array(items) => Ok(Some(Value::Array(self.clean_list(items)?))),
            _ => Ok(Some(value.clone())),
        }
    }

    fn clean_list(&mut self, items: &[Value]) -> Result<Vec<Value>, PatchError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let (Some(directive), Some(object)) = (directive_of(item), item.as_object()) {
                match directive.as_str() {
                    Some("delete" | "replace") => continue,
                    Some("merge") => {}
                    _ => return Err(unknown_directive(directive, object)),
                }
            }
            out.extend(self.clean(item)?);
        }
        Ok(out)
    }
}

/// Lists of primitives with `patchStrategy: merge`: the union, deduplicated, then ordered like
/// keyed lists with the values as their own keys.
fn merge_primitives(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let server_order = original.clone();
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.into_iter().chain(patch.iter().cloned()) {
        if !merged.contains(&item) {
            merged.push(item);
        }
    }
    let patch_ids: Vec<Option<&Value>> = patch.iter().map(Some).collect();
    let server_ids: Vec<Option<&Value>> = server_order.iter().map(Some).collect();
    let (patch_items, server_only) = partition(merged, &patch_ids, None);
    normalize_order(patch_items, server_only, &patch_ids, &server_ids, None)
}

/// The real server rejects a `$setElementOrder` list that contradicts the order of the patch list.
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    // Deletions name items that will be gone, so they take no place in the order.
    let mut items = Vec::with_capacity(patch.len());
    for item in patch {
        if key.is_some() {
            let Value::Object(object) = item else {
                return Err(bad(format!(
                    "expected a map, but received a {}",
                    kind(item)
                )));
            };
            if object.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        items.push(item);
    }
    let same = |a: &Value, b: &Value| -> Result<bool, PatchError> {
        let Some(key) = key else {
            return Ok(a == b);
        };
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            return Err(bad("expected a map in the $setElementOrder list"));
        };
        let left = a.get(key).ok_or_else(|| no_merge_key(a, key))?;
        let right = b.get(key).ok_or_else(|| no_merge_key(b, key))?;
        Ok(left == right)
    };
    let (mut item_index, mut order_index) = (0, 0);
    while let (Some(item), Some(ordered)) = (items.get(item_index), order.get(order_index)) {
        if directive_of(item).is_some() {
            item_index += 1;
            continue;
        }
        if same(item, ordered)? {
            item_index += 1;
        }
        order_index += 1;
    }
    if item_index < items.len() {
        return Err(bad(format!(
            "the order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::patch::BuiltinListKeys;

    #[allow(
        clippy::needless_pass_by_value,
        reason = "tests read better with json! literals"
    )]
    fn smp(target: Value, patch: Value) -> Result<Value, PatchError> {
        let mut target = target;
        apply(&mut target, &patch, &BuiltinListKeys)?;
        Ok(target)
    }

    fn ok(target: Value, patch: Value) -> Value {
        smp(target, patch).expect("patch applies")
    }

    fn deployment(containers: Value) -> Value {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "template": {"spec": {}}}
        });
        object["spec"]["template"]["spec"]["containers"] = containers;
        object
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap_or(""))
            .collect()
    }

    #[test]
    fn observed_kubectl_apply_keeps_the_side_container() {
        let live = deployment(json!([
            {"name": "nginx", "image": "nginx:1.25"},
            {"name": "side", "image": "busybox"}
        ]));
        let patch = json!({"spec":{"replicas":3,"template":{"spec":{
            "$setElementOrder/containers":[{"name":"nginx"},{"name":"side"}],
            "containers":[{"image":"nginx:1.26","name":"nginx"}]}}}});
        let out = ok(live, patch);
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "nginx", "image": "nginx:1.26"},
                {"name": "side", "image": "busybox"}
            ])
        );
        assert!(!out.to_string().contains('$'));
    }

    #[test]
    fn null_deletes_and_maps_merge() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let out = ok(
            live,
            json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": null, "new": {"k": null, "v": 1}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "new": {"v": 1}})
        );
    }

    #[test]
    fn keyed_items_merge_and_new_items_go_first_like_the_real_server() {
        let live = deployment(json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]));
        let out = ok(
            live,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "3"}, {"name": "b", "image": "2b"}
            ]}}}}),
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        // Real strategicpatch: patch items keep their patch order; a live-only item goes in
        // front of the first patch item that follows it in the live list, and a new item
        // (not in the live list) is never "after" anything, so it comes first.
        assert_eq!(names(containers), ["c", "a", "b"]);
        assert_eq!(containers[2]["image"], "2b");
    }

    #[test]
    fn preserves_patch_order_like_the_upstream_tests() {
        let keys = BuiltinListKeys;
        let mut live = json!({"spec": {"volumes": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]}});
        apply(
            &mut live,
            &json!({"spec": {"volumes": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}}),
            &keys,
        )
        .unwrap();
        assert_eq!(names(&live["spec"]["volumes"]), ["2", "3", "1"]);
    }

    #[test]
    fn patch_delete_removes_a_list_item() {
        let live = deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "a"}]));
        let out = ok(
            live,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b"}])
        );
    }

    #[test]
    fn patch_delete_and_replace_on_maps() {
        let live = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1, "y": 2}});
        let out = ok(
            live,
            json!({"metadata": {"labels": {"$patch": "delete"}}, "spec": {"$patch": "replace", "z": 3}}),
        );
        assert_eq!(out, json!({"metadata": {"labels": {}}, "spec": {"z": 3}}));
        let whole = ok(json!({"a": 1}), json!({"$patch": "replace", "b": 2}));
        assert_eq!(whole, json!({"b": 2}));
        let merged = ok(json!({"a": 1}), json!({"$patch": "merge", "b": 2}));
        assert_eq!(merged, json!({"a": 1, "b": 2}));
    }

    #[test]
    fn patch_replace_element_replaces_the_list() {
        let live = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let out = ok(
            live,
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "x": null}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c"}])
        );
        let emptied = ok(
            json!({"spec": {"volumes": [{"name": "a"}]}}),
            json!({"spec": {"volumes": [{"$patch": "replace"}]}}),
        );
        assert_eq!(emptied, json!({"spec": {"volumes": []}}));
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = ok(
            live,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let err = smp(
            json!({"spec": {}}),
            json!({"spec": {"$retainKeys": ["type"], "other": 1}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::BadRequest(_)));
        assert!(smp(json!({}), json!({"$retainKeys": "type"})).is_err());
    }

    #[test]
    fn delete_from_primitive_list_finalizers() {
        let live = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let out = ok(
            live.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}}),
        );
        assert_eq!(out, json!({"metadata": {"finalizers": ["a", "c"]}}));
        // kubectl's three-way form: keep order, add one, delete one.
        let out = ok(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "$setElementOrder/finalizers": ["a", "c"],
                "finalizers": ["c"]}}),
        );
        assert_eq!(out, json!({"metadata": {"finalizers": ["a", "c"]}}));
        // Nothing to delete from: the list is not created.
        let out = ok(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        );
        assert_eq!(out, json!({"metadata": {}}));
        assert!(
            smp(
                live,
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "b"}})
            )
            .is_err()
        );
    }

    #[test]
    fn primitive_merge_lists_union_and_atomic_lists_replace() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]},
                          "spec": {"containers": [{"name": "c", "args": ["x", "y"]}]}});
        let out = ok(
            live,
            json!({"metadata": {"finalizers": ["b", "c"]},
                   "spec": {"containers": [{"name": "c", "args": ["z"]}]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
        let tolerations = ok(
            json!({"spec": {"tolerations": [{"key": "a"}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}]}}),
        );
        assert_eq!(tolerations["spec"]["tolerations"], json!([{"key": "b"}]));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let live = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443}
        ]}});
        let out = ok(
            live,
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}, {"port": 9090}],
                            "ports": [{"port": 80, "targetPort": 9000}, {"port": 9090, "name": "metrics"}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9000},
                {"name": "https", "port": 443},
                {"port": 9090, "name": "metrics"}
            ])
        );
    }

    #[test]
    fn container_ports_env_and_mounts_merge_by_their_keys() {
        let live = deployment(json!([{
            "name": "app",
            "ports": [{"containerPort": 80}],
            "env": [{"name": "A", "value": "1"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}]
        }]));
        let out = ok(
            live,
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "ports": [{"containerPort": 443}],
                "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
            }]}}}}),
        );
        let app = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(app["ports"].as_array().unwrap().len(), 2);
        assert_eq!(
            app["env"],
            json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
        );
        assert_eq!(
            app["volumeMounts"],
            json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
        );
    }

    #[test]
    fn set_element_order_reorders_and_validates() {
        let live = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let out = ok(
            live.clone(),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}}),
        );
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["b", "a"]
        );
        let err = smp(
            live,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "x": 1}, {"name": "a", "x": 2}]}}}}),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::BadRequest(message) if message.contains("doesn't match"))
        );
    }

    #[test]
    fn directives_never_leak_into_new_subtrees() {
        let out = ok(
            json!({}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}],
                "$retainKeys": ["containers"]}}},
                   "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "$unknown": 1}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": []}]}}}, "metadata": {}})
        );
    }

    #[test]
    fn missing_merge_key_and_bad_shapes_are_bad_requests() {
        let live = deployment(json!([{"name": "a"}]));
        for patch in [
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["a"]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "explode"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
            json!({"spec": {"$patch": "nonsense"}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "a"}}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": 1}}}}),
        ] {
            let err = smp(live.clone(), patch.clone()).unwrap_err();
            assert!(matches!(err, PatchError::BadRequest(_)), "{patch}");
        }
        for patch in [json!([1]), json!("x"), json!(null), json!(3)] {
            assert!(smp(live.clone(), patch).is_err());
        }
    }

    #[test]
    fn failed_patch_leaves_the_target_untouched() {
        let live = deployment(json!([{"name": "a"}]));
        let mut target = live.clone();
        let patch = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(apply(&mut target, &patch, &BuiltinListKeys).is_err());
        assert_eq!(target, live);
    }

    #[test]
    fn type_changes_replace_and_non_object_targets_start_empty() {
        let out = ok(
            json!({"a": [1], "b": {"c": 1}, "d": 1}),
            json!({"a": {"x": 1}, "b": [1], "d": {"e": null}}),
        );
        assert_eq!(out, json!({"a": {"x": 1}, "b": [1], "d": {}}));
        let out = ok(json!("not an object"), json!({"a": 1}));
        assert_eq!(out, json!({"a": 1}));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let live = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
        let out = ok(
            live,
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "controller": true}]}}),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a", "controller": true}])
        );
    }

    #[test]
    fn arbitrary_inputs_never_panic() {
        let values = [
            json!(null),
            json!({}),
            json!([]),
            json!({"spec": {"containers": [1, "x", null, {"name": null}]}}),
            json!({"spec": {"containers": {"name": "a"}}}),
            json!({"metadata": {"finalizers": [{"a": 1}, [1]]}}),
            json!({"$patch": "delete"}),
            json!({"spec": {"$setElementOrder/containers": [1, null], "containers": [{"name": 1}]}}),
            json!({"spec": {"$setElementOrder/": [], "$deleteFromPrimitiveList/": null}}),
            json!({"metadata": {"$setElementOrder/finalizers": [{"x": 1}], "finalizers": [[1]]}}),
            json!({"spec": {"volumes": [{"$patch": "merge"}, {"name": "v", "$patch": "merge"}]}}),
        ];
        for target in &values {
            for patch in &values {
                let mut t = target.clone();
                let _ = apply(&mut t, patch, &BuiltinListKeys);
            }
        }
    }
}
