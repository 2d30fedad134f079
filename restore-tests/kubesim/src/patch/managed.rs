//! Server-side apply and the `metadata.managedFields` bookkeeping of every write.
//!
//! Ownership decides what a re-apply removes and which applies conflict, and backups carry
//! managedFields that clients later send back, so this follows the apiserver's
//! structured-merge-diff closely: an Apply entry owns exactly what its last applied configuration
//! set; an Update entry owns what its writes changed; applying takes fields away from other
//! managers only when they change (and only with force); fields a manager stops applying are
//! pruned unless another entry still owns them.
//!
//! Knowing deviations, all outside what kubectl and kube-rs exercise: no schema validation of the
//! applied object (a wrongly typed field is merged, not rejected); `null` in an applied
//! configuration removes the field from the object (the real server stores the null and lets
//! typed decoding drop it) while still recording ownership; conflict messages never mention a
//! conflicting manager's subresource because [`FieldConflict`] does not carry it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::fieldpath::{PathElement, Set, go_quote, render_path};
use super::{FieldConflict, ListKeys, ListType, PatchError};

mod create;

/// Context of one write.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// The field manager: the `fieldManager` query parameter or the User-Agent prefix; empty
    /// for clients that send neither (kube-rs), as on a real server.
    pub manager: &'a str,
    /// The apiVersion of the request, recorded in the entry.
    pub api_version: &'a str,
    /// RFC3339 with seconds, e.g. `2026-01-02T03:04:05Z`.
    pub now: &'a str,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<&'a str>,
    /// The main resource of a type with a status subresource: its writes never own `status`.
    pub ignore_status: bool,
    /// How the type's lists and maps merge ([`super::BuiltinListKeys`] or the CRD's schema).
    pub keys: &'a dyn ListKeys,
}

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// metadata the server sets; an applied configuration cannot change it.
const SERVER_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// metadata that identifies or is set by the server, so nobody owns it (the apiserver strips
/// these from every entry).
const UNOWNED_METADATA: [&str; 2] = ["name", "namespace"];

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_owned())
}

/// The fields stripped from every entry: owning `apiVersion` or a name would make every manager
/// of an object conflict with every other.
fn unowned_fields() -> Set {
    let mut set = Set::default();
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[field(top)]);
    }
    for name in UNOWNED_METADATA.iter().chain(&SERVER_METADATA) {
        set.insert(&[field("metadata"), field(name)]);
    }
    set
}

/// Restricts a set to what a write of this kind may own: status writes own only `status`, main
/// resource writes of types with a status subresource never own it.
fn scope(set: &mut Set, ctx: &Ctx) {
    // Every write scopes three sets; the unowned set is the same for all of them.
    static UNOWNED: LazyLock<Set> = LazyLock::new(unowned_fields);
    set.difference(&UNOWNED);
    let status = field("status");
    if ctx.subresource == Some("status") {
        set.children.retain(|element, _| *element == status);
    } else if ctx.ignore_status {
        set.children.remove(&status);
    }
}

/// What pruning may do at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    /// Outside what this write touches.
    Skip,
    /// Never removed itself (apiVersion, metadata, name, ...) but its children may be.
    Descend,
    Allowed,
}

fn prune_scope(path: &[PathElement], ctx: &Ctx) -> Prune {
    let Some(PathElement::Field(top)) = path.first() else {
        return Prune::Allowed;
    };
    let status_write = ctx.subresource == Some("status");
    if top == "status" {
        return if !status_write && ctx.ignore_status {
            Prune::Skip
        } else {
            Prune::Allowed
        };
    }
    if status_write {
        return Prune::Skip;
    }
    match path {
        [_] if ["apiVersion", "kind", "metadata"].contains(&top.as_str()) => Prune::Descend,
        [_, PathElement::Field(name)]
            if top == "metadata"
                && UNOWNED_METADATA
                    .iter()
                    .chain(&SERVER_METADATA)
                    .any(|unowned| unowned == name) =>
        {
            Prune::Descend
        }
        _ => Prune::Allowed,
    }
}

/// Walks a value with the type knowledge at the current position.
struct Walker<'k> {
    keys: &'k dyn ListKeys,
    /// Field names from the root (what [`ListKeys`] is asked with).
    names: Vec<String>,
    /// The full path including list items (what sets are made of).
    path: Vec<PathElement>,
}

impl<'k> Walker<'k> {
    fn new(keys: &'k dyn ListKeys) -> Self {
        Walker {
            keys,
            names: Vec::new(),
            path: Vec::new(),
        }
    }

    /// Calls `f` with the field names as [`ListKeys`] takes them. Every node of every write asks
    /// about its type, so the common shallow paths are borrowed into a stack buffer rather
    /// than collected into a fresh `Vec`.
    fn with_names<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        const INLINE: usize = 16;
        if self.names.len() > INLINE {
            let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
            return f(&names);
        }
        let mut buffer = [""; INLINE];
        for (slot, name) in buffer.iter_mut().zip(&self.names) {
            *slot = name;
        }
        f(&buffer[..self.names.len()])
    }

    fn enter(&mut self, name: &str) {
        self.names.push(name.to_owned());
        self.path.push(field(name));
    }

    fn leave(&mut self) {
        self.names.pop();
        self.path.pop();
    }

    fn list_type(&self) -> ListType {
        self.with_names(|names| self.keys.list_type(names))
    }

    fn atomic_map(&self) -> bool {
        !self.names.is_empty() && self.with_names(|names| self.keys.atomic_map(names))
    }

    fn is_map_element(&self) -> bool {
        self.with_names(|names| self.keys.is_map_element(names))
    }

    fn present_when_empty(&self) -> bool {
        self.with_names(|names| self.keys.present_when_empty(names))
    }

    /// The path elements of the items of the list at the current position. `strict` is for
    /// applied configurations, which the real server rejects when items cannot be identified;
    /// live objects are merely treated as atomic lists then.
    fn elements(
        &self,
        items: &[Value],
        list_type: &ListType,
        strict: bool,
    ) -> Result<Vec<PathElement>, String> {
        self.with_names(|names| list_elements(self.keys, names, items, list_type, strict))
            .map_err(|error| error.message(&render_path(&self.path)))
    }
}

/// Why the items of a list cannot be identified. The message needs the rendered path, which
/// only failures should pay for.
#[derive(Debug)]
enum ElementsError {
    Atomic,
    NotScalar(usize),
    NotMap(usize),
    MissingKey(usize, String),
    NoKeys(usize),
    Duplicate(PathElement),
}

impl ElementsError {
    fn message(&self, here: &str) -> String {
        match self {
            ElementsError::Atomic => format!("{here}: atomic list"),
            ElementsError::NotScalar(index) => format!(
                "{here}: element {index}: associative list without keys has an element that's a map or list type"
            ),
            ElementsError::NotMap(index) => format!(
                "{here}: element {index}: associative list with keys may not have non-map elements"
            ),
            ElementsError::MissingKey(index, key) => format!(
                "{here}: element {index}: associative list with keys has an element that omits key field {} (and doesn't have default value)",
                go_quote(key)
            ),
            ElementsError::NoKeys(index) => format!(
                "{here}: element {index}: associative list with keys has an element that omits all key fields"
            ),
            ElementsError::Duplicate(element) => {
                format!("{here}: duplicate entries for key {}", element.render())
            }
        }
    }
}

/// The path elements of the items of the list at `names`; see [`Walker::elements`].
fn list_elements(
    keys: &dyn ListKeys,
    names: &[&str],
    items: &[Value],
    list_type: &ListType,
    strict: bool,
) -> Result<Vec<PathElement>, ElementsError> {
    let mut out: Vec<PathElement> = Vec::with_capacity(items.len());
    let mut failure = None;
    for (index, item) in items.iter().enumerate() {
        match item_element(keys, names, index, item, list_type, strict) {
            Ok(element) => out.push(element),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    // A duplicate before the failing item is what a sequential check would report first.
    if let Some(index) = first_duplicate(&out) {
        return Err(ElementsError::Duplicate(out.swap_remove(index)));
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(out),
    }
}

fn item_element(
    keys: &dyn ListKeys,
    names: &[&str],
    index: usize,
    item: &Value,
    list_type: &ListType,
    strict: bool,
) -> Result<PathElement, ElementsError> {
    match list_type {
        ListType::Atomic => Err(ElementsError::Atomic),
        ListType::Set => match item {
            Value::Object(_) | Value::Array(_) => Err(ElementsError::NotScalar(index)),
            _ => Ok(PathElement::Value(item.clone())),
        },
        ListType::Map(key_names) => {
            let Value::Object(object) = item else {
                return Err(ElementsError::NotMap(index));
            };
            let mut pairs = Vec::with_capacity(key_names.len());
            for key in key_names {
                let value = object
                    .get(key)
                    .filter(|value| !value.is_null())
                    .cloned()
                    .or_else(|| keys.key_default(names, key));
                match value {
                    Some(value) => pairs.push((key.clone(), value)),
                    None if strict => return Err(ElementsError::MissingKey(index, key.clone())),
                    None => {}
                }
            }
            if pairs.is_empty() {
                return Err(ElementsError::NoKeys(index));
            }
            Ok(PathElement::key(pairs))
        }
    }
}

/// The index of the first element equal to an earlier one.
fn first_duplicate(elements: &[PathElement]) -> Option<usize> {
    // Most lists are a handful of items, where a scan beats building a tree.
    const SCAN: usize = 32;
    if elements.len() <= SCAN {
        return (1..elements.len()).find(|&index| elements[..index].contains(&elements[index]));
    }
    let mut seen = BTreeSet::new();
    elements.iter().position(|element| !seen.insert(element))
}

/// The fields an applied configuration sets, as structured-merge-diff's `ToFieldSet`: leaves,
/// list items (so keyed items show `.`), empty maps and nulls, and the keys of free-form maps.
fn applied_fields(walker: &mut Walker, value: &Value, out: &mut Set) -> Result<(), String> {
    match value {
        Value::Object(object) => {
            if walker.atomic_map() {
                out.insert(&walker.path);
                return Ok(());
            }
            for (name, child) in object {
                walker.enter(name);
                let result = applied_fields(walker, child, out);
                let owned_itself = child.is_null()
                    || child.as_object().is_some_and(Map::is_empty)
                    || walker.is_map_element();
                if owned_itself {
                    out.insert(&walker.path);
                }
                walker.leave();
                result?;
            }
        }
        Value::Array(items) => {
            let list_type = walker.list_type();
            if list_type == ListType::Atomic {
                out.insert(&walker.path);
                return Ok(());
            }
            let elements = walker.elements(items, &list_type, true)?;
            for (element, item) in elements.into_iter().zip(items) {
                walker.path.push(element);
                let result = applied_fields(walker, item, out);
                out.insert(&walker.path);
                walker.path.pop();
                result?;
            }
        }
        _ => out.insert(&walker.path),
    }
    Ok(())
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(_, child)| !child.is_null())
                .map(|(name, child)| (name.clone(), without_nulls(child)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        _ => value.clone(),
    }
}

/// Merges an applied configuration into the live object: maps recursively, lists per their
/// type, everything else replaced.
fn merge(walker: &mut Walker, live: &Value, applied: &Value) -> Value {
    match (live, applied) {
        (Value::Object(live_object), Value::Object(applied_object)) if !walker.atomic_map() => {
            let mut out = live_object.clone();
            for (name, value) in applied_object {
                if value.is_null() {
                    out.shift_remove(name);
                    continue;
                }
                walker.enter(name);
                let merged = match live_object.get(name) {
                    Some(current) => merge(walker, current, value),
                    None => without_nulls(value),
                };
                walker.leave();
                out.insert(name.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(live_items), Value::Array(applied_items)) => {
            let list_type = walker.list_type();
            if list_type == ListType::Atomic {
                return without_nulls(applied);
            }
            let live_elements = walker.elements(live_items, &list_type, false);
            let applied_elements = walker.elements(applied_items, &list_type, false);
            match (live_elements, applied_elements) {
                (Ok(live_elements), Ok(applied_elements)) => Value::Array(merge_lists(
                    walker,
                    (live_items, &live_elements),
                    (applied_items, &applied_elements),
                )),
                _ => without_nulls(applied),
            }
        }
        _ => without_nulls(applied),
    }
}

/// structured-merge-diff's list merge: live-only items stay where they are, items in both follow
/// the applied order, new items are inserted at their applied position.
fn merge_lists(
    walker: &mut Walker,
    (live, live_elements): (&[Value], &[PathElement]),
    (applied, applied_elements): (&[Value], &[PathElement]),
) -> Vec<Value> {
    let live_index: BTreeMap<&PathElement, usize> = live_elements
        .iter()
        .enumerate()
        .map(|(index, element)| (element, index))
        .collect();
    let in_applied: BTreeSet<&PathElement> = applied_elements.iter().collect();
    let mut shared = applied_elements
        .iter()
        .filter(|element| live_index.contains_key(element));
    let mut next_shared = shared.next();
    let mut merged: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let (mut l, mut a) = (0, 0);
    while l < live.len() || a < applied.len() {
        let before = (l, a);
        if let (Some(live_element), Some(applied_element)) =
            (live_elements.get(l), applied_elements.get(a))
        {
            if live_element == applied_element {
                merged.insert(applied_element);
                if let (Some(current), Some(value)) = (live.get(l), applied.get(a)) {
                    out.push(merge(walker, current, value));
                }
                l += 1;
                a += 1;
                next_shared = shared.next();
                continue;
            }
            if in_applied.contains(live_element)
                && next_shared.is_some_and(|next| next != live_element)
            {
                l += 1;
                continue;
            }
        }
        if let Some(live_element) = live_elements.get(l) {
            if !in_applied.contains(live_element) {
                out.extend(live.get(l).cloned());
                l += 1;
                continue;
            }
            if merged.contains(live_element) {
                l += 1;
                continue;
            }
        }
        if let (Some(applied_element), Some(value)) = (applied_elements.get(a), applied.get(a)) {
            merged.insert(applied_element);
            let current = live_index
                .get(applied_element)
                .and_then(|&index| live.get(index));
            out.push(match current {
                Some(current) => merge(walker, current, value),
                None => without_nulls(value),
            });
            a += 1;
            if next_shared == Some(applied_element) {
                next_shared = shared.next();
            }
        }
        if (l, a) == before {
            // Unreachable with distinct elements; guards against looping on anything else.
            break;
        }
    }
    out
}

/// The difference between two versions of an object, as paths.
#[derive(Debug, Default)]
struct Comparison {
    added: Set,
    modified: Set,
    removed: Set,
}

impl Comparison {
    fn scope(&mut self, ctx: &Ctx) {
        scope(&mut self.added, ctx);
        scope(&mut self.modified, ctx);
        scope(&mut self.removed, ctx);
    }

    /// What a write takes ownership of.
    fn changed(&self) -> Set {
        let mut changed = self.modified.clone();
        changed.union(&self.added);
        changed
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

/// structured-merge-diff's `Compare`, including its habit of recording a map field or list item
/// itself as added or removed when it appears or disappears (the `.` of Update entries).
fn compare(walker: &mut Walker, old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
    let empty_object = Value::Object(Map::new());
    let empty_list = Value::Array(Vec::new());
    // Go's typed objects hold nil slices and maps where JSON has null: an empty container.
    let as_empty = |side: Option<&Value>, other: Option<&Value>| match (side, other) {
        (Some(Value::Null), Some(Value::Object(_))) => Some(&empty_object),
        (Some(Value::Null), Some(Value::Array(_))) => Some(&empty_list),
        _ => None,
    };
    let old = as_empty(old, new).or(old);
    let new = as_empty(new, old).or(new);
    match (old, new) {
        (None, None) => {}
        (None | Some(Value::Object(_)), None | Some(Value::Object(_))) => {
            compare_maps(walker, old, new, out);
        }
        (None | Some(Value::Array(_)), None | Some(Value::Array(_))) => {
            compare_lists(walker, old, new, out);
        }
        (Some(before), Some(after)) if is_container(before) || is_container(after) => {
            out.modified.insert(&walker.path);
            if is_container(before) {
                compare(walker, Some(before), None, out);
            }
            if is_container(after) {
                compare(walker, None, Some(after), out);
            }
        }
        _ => leaf(walker, old, new, out),
    }
}

fn leaf(walker: &Walker, old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => out.added.insert(&walker.path),
        (Some(_), None) => out.removed.insert(&walker.path),
        (Some(before), Some(after)) if before != after => out.modified.insert(&walker.path),
        _ => {}
    }
}

fn compare_maps(
    walker: &mut Walker,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Comparison,
) {
    let old_object = old.and_then(Value::as_object);
    let new_object = new.and_then(Value::as_object);
    let empty = |object: Option<&Map<String, Value>>| object.is_none_or(Map::is_empty);
    if walker.atomic_map() || (empty(old_object) && empty(new_object)) {
        leaf(walker, old, new, out);
        return;
    }
    let mut names: Vec<&String> = old_object.map(|o| o.keys().collect()).unwrap_or_default();
    if let Some(new_object) = new_object {
        names.extend(
            new_object
                .keys()
                .filter(|name| !old_object.is_some_and(|o| o.contains_key(*name))),
        );
    }
    for name in names {
        let before = old_object.and_then(|o| o.get(name));
        let after = new_object.and_then(|o| o.get(name));
        walker.enter(name);
        compare(walker, before, after, out);
        if before.is_none() {
            out.added.insert(&walker.path);
        } else if after.is_none() {
            out.removed.insert(&walker.path);
        }
        walker.leave();
    }
}

fn compare_lists(
    walker: &mut Walker,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Comparison,
) {
    let old_items = old.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let new_items = new.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let list_type = walker.list_type();
    if list_type == ListType::Atomic || (old_items.is_empty() && new_items.is_empty()) {
        leaf(walker, old, new, out);
        return;
    }
    let (Ok(old_elements), Ok(new_elements)) = (
        walker.elements(old_items, &list_type, false),
        walker.elements(new_items, &list_type, false),
    ) else {
        leaf(walker, old, new, out);
        return;
    };
    let mut pairs: BTreeMap<PathElement, (Option<&Value>, Option<&Value>)> = BTreeMap::new();
    for (element, item) in old_elements.into_iter().zip(old_items) {
        pairs.entry(element).or_default().0 = Some(item);
    }
    for (element, item) in new_elements.into_iter().zip(new_items) {
        pairs.entry(element).or_default().1 = Some(item);
    }
    for (element, (before, after)) in pairs {
        walker.path.push(element);
        compare(walker, before, after, out);
        if before.is_none() {
            out.added.insert(&walker.path);
        } else if after.is_none() {
            out.removed.insert(&walker.path);
        }
        walker.path.pop();
    }
}

/// Removes what the applying manager owned last time (`last`) and no longer owns, unless another
/// entry (`owners`, which include the manager's new set) still owns it. A declared field counts
/// as owned when anything below it is; list items and free-form map keys only when they are
/// owned themselves, which is how structured-merge-diff decides.
fn prune(walker: &mut Walker, value: &mut Value, last: &Set, owners: &[&Set], ctx: &Ctx) {
    match value {
        Value::Object(object) => {
            if walker.atomic_map() {
                return;
            }
            let names: Vec<String> = object.keys().cloned().collect();
            for name in names {
                let element = field(&name);
                let Some(last_child) = last.child(&element) else {
                    continue;
                };
                walker.enter(&name);
                let allowed = prune_scope(&walker.path, ctx);
                if allowed != Prune::Skip {
                    let declared = !walker.is_map_element();
                    let child_owners: Vec<&Set> = owners
                        .iter()
                        .filter_map(|owner| owner.child(&element))
                        .collect();
                    let was_owned =
                        last_child.member || (declared && !last_child.children.is_empty());
                    let still_owned = child_owners
                        .iter()
                        .any(|owner| owner.member || (declared && owner.has_any()));
                    if allowed == Prune::Allowed && was_owned && !still_owned {
                        object.shift_remove(&name);
                    } else if let Some(child) = object.get_mut(&name) {
                        prune(walker, child, last_child, &child_owners, ctx);
                    }
                }
                walker.leave();
            }
        }
        Value::Array(items) => {
            let list_type = walker.list_type();
            if list_type == ListType::Atomic {
                return;
            }
            let Ok(elements) = walker.elements(items, &list_type, false) else {
                return;
            };
            let mut keep = Vec::with_capacity(items.len());
            for (element, item) in elements.into_iter().zip(items.iter_mut()) {
                let Some(last_child) = last.child(&element) else {
                    keep.push(true);
                    continue;
                };
                let child_owners: Vec<&Set> = owners
                    .iter()
                    .filter_map(|owner| owner.child(&element))
                    .collect();
                if last_child.member && !child_owners.iter().any(|owner| owner.member) {
                    keep.push(false);
                    continue;
                }
                keep.push(true);
                walker.path.push(element);
                prune(walker, item, last_child, &child_owners, ctx);
                walker.path.pop();
            }
            let mut keep = keep.into_iter();
            items.retain(|_| keep.next().unwrap_or(true));
        }
        _ => {}
    }
}

/// The object an empty Go struct of the type serializes to, restricted to what `value` has:
/// the real server diffs a create against it.
fn skeleton(walker: &mut Walker, value: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(object) = value {
        for (name, child) in object {
            walker.enter(name);
            if walker.present_when_empty() {
                match child {
                    Value::Object(_) => {
                        let inner = skeleton(walker, child);
                        out.insert(name.clone(), inner);
                    }
                    Value::Array(_) => {
                        out.insert(name.clone(), Value::Null);
                    }
                    _ => {}
                }
            }
            walker.leave();
        }
    }
    Value::Object(out)
}

/// One managedFields entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    fields: Set,
}

/// The apiserver's manager identifier: the entry without time and fields, as JSON, and without
/// apiVersion for appliers. Conflict messages group and sort managers by it.
fn identifier(manager: &str, operation: &str, api_version: &str) -> String {
    let mut object = Map::new();
    if !manager.is_empty() {
        object.insert("manager".into(), manager.into());
    }
    if !operation.is_empty() {
        object.insert("operation".into(), operation.into());
    }
    if operation != APPLY && !api_version.is_empty() {
        object.insert("apiVersion".into(), api_version.into());
    }
    Value::Object(object).to_string()
}

impl Entry {
    fn new(ctx: &Ctx, operation: &str, fields: Set) -> Self {
        Entry {
            manager: ctx.manager.to_owned(),
            operation: operation.to_owned(),
            api_version: ctx.api_version.to_owned(),
            time: Some(ctx.now.to_owned()),
            subresource: ctx.subresource.unwrap_or_default().to_owned(),
            fields,
        }
    }

    /// Whether this entry belongs to the given manager; appliers are one manager across
    /// apiVersions, updaters one per apiVersion.
    fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == APPLY || self.api_version == api_version)
    }

    fn identifier(&self) -> String {
        identifier(&self.manager, &self.operation, &self.api_version)
    }

    fn parse(value: &Value) -> Option<Entry> {
        let object = value.as_object()?;
        let text = |name: &str| match object.get(name) {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => None,
        };
        let fields = match object.get("fieldsV1") {
            None | Some(Value::Null) => Set::default(),
            Some(fields @ Value::Object(_)) => Set::from_fields_v1(fields),
            Some(_) => return None,
        };
        let time = text("time")?;
        Some(Entry {
            manager: text("manager")?,
            operation: text("operation")?,
            api_version: text("apiVersion")?,
            time: (!time.is_empty()).then_some(time),
            subresource: text("subresource")?,
            fields,
        })
    }

    fn to_value(&self) -> Value {
        entry_value(
            &self.manager,
            &self.operation,
            &self.api_version,
            self.time.as_deref(),
            self.fields.to_fields_v1(),
            &self.subresource,
        )
    }
}

/// An entry as the apiserver serializes it (Go field order, empty strings omitted).
fn entry_value(
    manager: &str,
    operation: &str,
    api_version: &str,
    time: Option<&str>,
    fields_v1: Value,
    subresource: &str,
) -> Value {
    let mut object = Map::new();
    if !manager.is_empty() {
        object.insert("manager".into(), manager.into());
    }
    object.insert("operation".into(), operation.into());
    if !api_version.is_empty() {
        object.insert("apiVersion".into(), api_version.into());
    }
    if let Some(time) = time {
        object.insert("time".into(), time.into());
    }
    object.insert("fieldsType".into(), "FieldsV1".into());
    object.insert("fieldsV1".into(), fields_v1);
    if !subresource.is_empty() {
        object.insert("subresource".into(), subresource.into());
    }
    Value::Object(object)
}

/// Entries of a managedFields list, or None when it is not one the apiserver would decode
/// (then the live object's entries stay, as on a real server). Repeated managers are merged.
fn parse_entries(value: Option<&Value>) -> Option<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for item in value?.as_array()? {
        let entry = Entry::parse(item)?;
        let same = entries.iter_mut().find(|existing| {
            existing.is(
                &entry.manager,
                &entry.operation,
                &entry.api_version,
                &entry.subresource,
            )
        });
        match same {
            Some(existing) => existing.fields.union(&entry.fields),
            None => entries.push(entry),
        }
    }
    Some(entries)
}

/// `[{}]`: the real server's documented way to strip all managedFields.
fn is_cleared(value: &Value) -> bool {
    value.as_array().is_some_and(|items| {
        !items.is_empty()
            && items
                .iter()
                .all(|item| item.as_object().is_some_and(Map::is_empty))
    })
}

fn take_managed_fields(object: &mut Value) -> Option<Value> {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|metadata| metadata.shift_remove("managedFields"))
}

/// Stores the entries in the apiserver's order: Apply before Update, then oldest first.
fn write_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|entry| !entry.fields.is_empty());
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    store_entries(object, entries.iter().map(Entry::to_value).collect());
}

/// Stores serialized entries as metadata.managedFields, or removes it when there are none.
fn store_entries(object: &mut Value, entries: Vec<Value>) {
    let Value::Object(root) = object else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
            metadata.shift_remove("managedFields");
        }
        return;
    }
    let list = Value::Array(entries);
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    if let Value::Object(metadata) = metadata {
        metadata.insert("managedFields".into(), list);
    }
}

fn conflicts(entries: &[Entry], taken: &[(usize, Set)]) -> Vec<FieldConflict> {
    let mut ordered: Vec<(String, &Entry, &Set)> = taken
        .iter()
        .filter_map(|(index, set)| {
            entries
                .get(*index)
                .map(|entry| (entry.identifier(), entry, set))
        })
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (_, entry, set) in ordered {
        for path in set.paths() {
            out.push(FieldConflict {
                manager: entry.manager.clone(),
                operation: entry.operation.clone(),
                api_version: entry.api_version.clone(),
                field: render_path(&path),
            });
        }
    }
    out
}

/// Server-side apply of `applied` (the request body as JSON, with apiVersion/kind/metadata.name)
/// by field manager `ctx.manager`. `live` is the current object (with its metadata.managedFields)
/// or None when the object does not exist yet (then the result is `applied` plus one Apply entry).
/// Returns the new object (including updated metadata.managedFields) or PatchError::Conflicts
/// when !force and `applied` changes a field owned by another manager (Apply or Update entry);
/// with force, ownership moves. Fields that the manager's previous Apply entry owned and
/// `applied` now omits are removed from the object unless another manager still owns them.
/// apiVersion, kind and the server-managed metadata are never owned, removed or conflicting;
/// neither is `status` when `ctx.ignore_status`, nor anything but `status` for status writes.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    ctx: &Ctx,
    force: bool,
) -> Result<Value, PatchError> {
    let Value::Object(applied_object) = applied else {
        return Err(PatchError::BadRequest(
            "the applied configuration must be a JSON object".into(),
        ));
    };
    let sent_managed_fields = applied
        .get("metadata")
        .and_then(|metadata| metadata.get("managedFields"))
        .is_some_and(|fields| !fields.is_null());
    if sent_managed_fields {
        return Err(PatchError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let mut config = applied_object.clone();
    if let Some(Value::Object(metadata)) = config.get_mut("metadata") {
        for name in SERVER_METADATA {
            metadata.shift_remove(name);
        }
    }
    if ctx.subresource == Some("status") {
        config.retain(|name, _| name == "status");
    } else if ctx.ignore_status {
        config.shift_remove("status");
    }
    let config = Value::Object(config);

    let mut walker = Walker::new(ctx.keys);
    let mut owned = Set::default();
    applied_fields(&mut walker, &config, &mut owned).map_err(|error| {
        PatchError::BadRequest(format!("failed to create typed patch object: {error}"))
    })?;
    scope(&mut owned, ctx);

    let Some(mut live_object) = live.filter(|live| live.is_object()).cloned() else {
        let mut created = merge(&mut walker, &Value::Object(Map::new()), &config);
        write_entries(&mut created, vec![Entry::new(ctx, APPLY, owned)]);
        return Ok(created);
    };
    let live_fields = take_managed_fields(&mut live_object);
    let mut entries = parse_entries(live_fields.as_ref()).unwrap_or_default();
    if entries.is_empty() {
        // The real server first records an unmanaged object's fields as written by
        // "before-first-apply", so that an apply cannot silently overwrite them.
        let mut seeded = live_object.clone();
        let before = Ctx {
            manager: BEFORE_FIRST_APPLY,
            ..ctx.clone()
        };
        record_update(None, &mut seeded, &before);
        entries = parse_entries(take_managed_fields(&mut seeded).as_ref()).unwrap_or_default();
    }
    let mut merged = merge(&mut walker, &live_object, &config);

    let subresource = ctx.subresource.unwrap_or_default();
    let previous = entries
        .iter()
        .position(|entry| entry.is(ctx.manager, APPLY, "", subresource))
        .map(|index| entries.remove(index));
    if let Some(previous) = &previous {
        let owners: Vec<&Set> = std::iter::once(&owned)
            .chain(entries.iter().map(|entry| &entry.fields))
            .collect();
        prune(&mut walker, &mut merged, &previous.fields, &owners, ctx);
    }

    let mut diff = Comparison::default();
    compare(&mut walker, Some(&live_object), Some(&merged), &mut diff);
    diff.scope(ctx);
    // A null in the configuration takes a field away just like a new value does.
    let mut contested = diff.changed();
    contested.union(&diff.removed.intersection(&owned));
    let taken: Vec<(usize, Set)> = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| (index, entry.fields.intersection(&contested)))
        .filter(|(_, set)| !set.is_empty())
        .collect();
    if !force && !taken.is_empty() {
        return Err(PatchError::Conflicts(conflicts(&entries, &taken)));
    }
    for (index, lost) in &taken {
        if let Some(entry) = entries.get_mut(*index) {
            entry.fields.difference(lost);
        }
    }
    for entry in &mut entries {
        entry.fields.difference(&diff.removed);
    }

    let mut mine = Entry::new(ctx, APPLY, owned);
    if let Some(previous) = previous
        && merged == live_object
    {
        // Like the real server, a no-op apply does not touch the entry's time.
        mine.time = previous.time;
    }
    entries.push(mine);
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Record a non-apply write (create, update/PUT, merge/json/strategic patch) by `ctx.manager`:
/// fields that are new or changed compared with `old` become owned by this manager's Update
/// entry (for this apiVersion and subresource) and are removed from other entries; fields that
/// disappeared are removed from every entry; empty entries are dropped. managedFields written by
/// the client: if `new` carries metadata.managedFields that differ from old's, a non-empty list
/// replaces them as given (kubectl apply --server-side migrates ownership this way), `[]` resets
/// (then this write owns everything as on create), the real server's `[{}]` clears them (then
/// this write owns only what it changed); absent keeps old's. Status writes never take
/// managedFields from the client, as on a real server.
pub fn record_update(old: Option<&Value>, new: &mut Value, ctx: &Ctx) {
    record(old, new, ctx, true);
}

/// [`record_update`]; `fast` allows the shortcut for writes diffed against the empty object with
/// no entries to adjust (creates and resets), which the tests turn off to prove it equal to the
/// general path.
fn record(old: Option<&Value>, new: &mut Value, ctx: &Ctx, fast: bool) {
    if !new.is_object() {
        return;
    }
    let mut old_object = old.filter(|old| old.is_object()).cloned();
    let old_fields = old_object.as_mut().and_then(take_managed_fields);
    let old_entries = parse_entries(old_fields.as_ref()).unwrap_or_default();
    let written = take_managed_fields(new);
    let mut reset = false;
    let mut entries = match written {
        Some(written) if ctx.subresource.is_none() && Some(&written) != old_fields.as_ref() => {
            if written.as_array().is_some_and(Vec::is_empty) {
                reset = true;
                Vec::new()
            } else if is_cleared(&written) {
                Vec::new()
            } else {
                parse_entries(Some(&written)).unwrap_or(old_entries)
            }
        }
        _ => old_entries,
    };

    if fast && entries.is_empty() && (reset || old_object.is_none()) {
        // Seeding a cluster is one create after another, and the general diff made these most
        // of its cost.
        let Value::Object(object) = &*new else {
            return;
        };
        let fields = create::created_fields(object, ctx);
        let mut created = Vec::new();
        if !fields.is_empty() {
            created.push(entry_value(
                ctx.manager,
                UPDATE,
                ctx.api_version,
                Some(ctx.now),
                Value::Object(fields),
                ctx.subresource.unwrap_or_default(),
            ));
        }
        store_entries(new, created);
        return;
    }

    let mut walker = Walker::new(ctx.keys);
    let baseline = match old_object {
        Some(old_object) if !reset => old_object,
        _ => skeleton(&mut walker, new),
    };
    let mut diff = Comparison::default();
    compare(&mut walker, Some(&baseline), Some(new), &mut diff);
    diff.scope(ctx);
    let changed = diff.changed();
    for entry in &mut entries {
        entry.fields.difference(&changed);
        entry.fields.difference(&diff.removed);
    }
    if !changed.is_empty() {
        let subresource = ctx.subresource.unwrap_or_default();
        let mine = entries
            .iter_mut()
            .find(|entry| entry.is(ctx.manager, UPDATE, ctx.api_version, subresource));
        match mine {
            Some(entry) => {
                entry.fields.union(&changed);
                entry.time = Some(ctx.now.to_owned());
            }
            None => entries.push(Entry::new(ctx, UPDATE, changed)),
        }
    }
    write_entries(new, entries);
}

/// The message the apiserver puts into the 409 Status for apply conflicts, which kubectl prints
/// verbatim: `Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.a`,
/// or for several, grouped by manager in the apiserver's order:
/// `Apply failed with 2 conflicts: conflicts with "m":\n- .a\n- .b`.
pub fn conflict_message(conflicts: &[FieldConflict]) -> String {
    let manager = print_manager;
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            manager(only),
            only.field
        );
    }
    let mut groups: Vec<(String, String, Vec<&str>)> = Vec::new();
    for conflict in conflicts {
        let id = identifier(
            &conflict.manager,
            &conflict.operation,
            &conflict.api_version,
        );
        match groups.iter_mut().find(|group| group.0 == id) {
            Some(group) => group.2.push(&conflict.field),
            None => groups.push((id, manager(conflict), vec![&conflict.field])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (_, manager, fields) in &groups {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.iter().map(|field| format!("- {field}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The message of one conflict as the apiserver puts it into `details.causes[].message`
/// (reason `FieldManagerConflict`, field [`FieldConflict::field`]).
pub fn conflict_cause(conflict: &FieldConflict) -> String {
    format!("conflict with {}", print_manager(conflict))
}

/// The apiserver's `printManager`: Update managers are named with the apiVersion they wrote.
fn print_manager(conflict: &FieldConflict) -> String {
    let quoted = go_quote(&conflict.manager);
    if conflict.operation == UPDATE {
        format!("{quoted} using {}", conflict.api_version)
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::patch::{BuiltinListKeys, SchemaListKeys};

    const NOW: &str = "2026-01-02T03:04:05Z";
    const LATER: &str = "2026-01-02T03:05:00Z";
    const LATEST: &str = "2026-01-02T04:00:00Z";

    fn ctx<'a>(manager: &'a str, now: &'a str) -> Ctx<'a> {
        Ctx {
            manager,
            api_version: "v1",
            now,
            subresource: None,
            ignore_status: false,
            keys: &BuiltinListKeys,
        }
    }

    fn config_map(data: Value) -> Value {
        let mut object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm1", "namespace": "default"}
        });
        object["data"] = data;
        object
    }

    fn deployment(containers: Value) -> Value {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"spec": {}}}
        });
        object["spec"]["template"]["spec"]["containers"] = containers;
        object
    }

    /// What `kubectl create` leaves behind.
    fn created(mut object: Value, manager: &str, now: &str) -> Value {
        record_update(None, &mut object, &ctx(manager, now));
        object
    }

    fn managed(object: &Value) -> Vec<Value> {
        object["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn fields_of(object: &Value, manager: &str, operation: &str) -> Value {
        managed(object)
            .into_iter()
            .find(|entry| {
                entry.get("manager").and_then(Value::as_str).unwrap_or("") == manager
                    && entry["operation"] == operation
            })
            .map_or(Value::Null, |entry| entry["fieldsV1"].clone())
    }

    fn without_managed_fields(mut object: Value) -> Value {
        take_managed_fields(&mut object);
        object
    }

    fn conflict(manager: &str, operation: &str, field: &str) -> FieldConflict {
        FieldConflict {
            manager: manager.into(),
            operation: operation.into(),
            api_version: "v1".into(),
            field: field.into(),
        }
    }

    #[test]
    fn apply_creates_the_object_with_one_apply_entry() {
        let applied = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm1", "labels": {"app": "web"}},
            "data": {"a": "1"}
        });
        let out = apply(None, &applied, &ctx("kubectl", NOW), false).unwrap();
        assert_eq!(without_managed_fields(out.clone()), applied);
        assert_eq!(
            serde_json::to_string(&out["metadata"]["managedFields"]).unwrap(),
            r#"[{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2026-01-02T03:04:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{}},"f:metadata":{"f:labels":{"f:app":{}}}}}]"#
        );
        // A bare object owns nothing, so it gets no entry at all.
        let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}});
        let out = apply(None, &bare, &ctx("kubectl", NOW), false).unwrap();
        assert_eq!(out, bare);
        // An explicit null is owned (and, unlike the real server, not stored).
        let null = apply(None, &config_map(json!(null)), &ctx("kubectl", NOW), false).unwrap();
        assert!(null.get("data").is_none());
        assert_eq!(fields_of(&null, "kubectl", "Apply"), json!({"f:data": {}}));
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let c = ctx("kubectl", NOW);
        let first = apply(None, &config_map(json!({"a": "1", "b": "2"})), &c, false).unwrap();
        let second = apply(Some(&first), &config_map(json!({"a": "1"})), &c, false).unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
        assert_eq!(
            fields_of(&second, "kubectl", "Apply"),
            json!({"f:data": {"f:a": {}}})
        );
        let mut bare = config_map(json!(null));
        bare.as_object_mut().unwrap().shift_remove("data");
        let third = apply(Some(&second), &bare, &c, false).unwrap();
        assert!(third.get("data").is_none(), "{third}");
        assert!(third["metadata"].get("managedFields").is_none());
        assert_eq!(third["metadata"]["name"], "cm1");
    }

    #[test]
    fn a_field_another_manager_owns_is_not_removed() {
        let live = created(
            config_map(json!({"a": "1", "b": "2"})),
            "kubectl-create",
            NOW,
        );
        let c = ctx("kubectl", LATER);
        let shared = apply(
            Some(&live),
            &config_map(json!({"a": "1", "b": "2"})),
            &c,
            false,
        )
        .expect("same values do not conflict");
        let dropped = apply(Some(&shared), &config_map(json!({"a": "1"})), &c, false).unwrap();
        assert_eq!(dropped["data"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            fields_of(&dropped, "kubectl-create", "Update"),
            json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}})
        );
        assert_eq!(
            fields_of(&dropped, "kubectl", "Apply"),
            json!({"f:data": {"f:a": {}}})
        );
    }

    #[test]
    fn conflict_with_an_update_manager_unless_forced() {
        let live = created(config_map(json!({"a": "1"})), "kubectl-create", NOW);
        let c = ctx("kubectl", LATER);
        let applied = config_map(json!({"a": "2"}));
        let error = apply(Some(&live), &applied, &c, false).unwrap_err();
        assert_eq!(
            error,
            PatchError::Conflicts(vec![conflict("kubectl-create", "Update", ".data.a")])
        );
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.a"#
        );

        let forced = apply(Some(&live), &applied, &c, true).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        assert_eq!(
            fields_of(&forced, "kubectl-create", "Update"),
            json!({"f:data": {}})
        );
        assert_eq!(
            fields_of(&forced, "kubectl", "Apply"),
            json!({"f:data": {"f:a": {}}})
        );
        // The forced owner can now change it freely.
        let again = apply(Some(&forced), &config_map(json!({"a": "3"})), &c, false).unwrap();
        assert_eq!(again["data"]["a"], "3");
    }

    #[test]
    fn same_value_is_no_conflict_and_ownership_is_shared() {
        let live = created(config_map(json!({"a": "1"})), "kubectl-create", NOW);
        let out = apply(
            Some(&live),
            &config_map(json!({"a": "1"})),
            &ctx("other", LATER),
            false,
        )
        .unwrap();
        assert_eq!(
            fields_of(&out, "kubectl-create", "Update"),
            json!({"f:data": {".": {}, "f:a": {}}})
        );
        assert_eq!(
            fields_of(&out, "other", "Apply"),
            json!({"f:data": {"f:a": {}}})
        );
    }

    #[test]
    fn conflicts_between_appliers_list_every_field() {
        let c = ctx("kubectl", NOW);
        let live = apply(None, &config_map(json!({"a": "1", "b": "1"})), &c, false).unwrap();
        let error = apply(
            Some(&live),
            &config_map(json!({"a": "2", "b": "2"})),
            &ctx("other", LATER),
            false,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .data.a\n- .data.b"
        );
        // A null takes the field away just like a new value.
        let error = apply(
            Some(&live),
            &config_map(json!({"a": null})),
            &ctx("other", LATER),
            false,
        )
        .unwrap_err();
        assert_eq!(
            error,
            PatchError::Conflicts(vec![conflict("kubectl", "Apply", ".data.a")])
        );
        let forced = apply(
            Some(&live),
            &config_map(json!({"a": null})),
            &ctx("other", LATER),
            true,
        )
        .unwrap();
        assert_eq!(forced["data"], json!({"b": "1"}));
        assert_eq!(
            fields_of(&forced, "other", "Apply"),
            json!({"f:data": {"f:a": {}}})
        );
    }

    #[test]
    fn conflict_messages_match_the_apiserver() {
        assert_eq!(
            conflict_message(&[conflict("kubectl", "Apply", ".spec.ttl")]),
            r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.ttl"#
        );
        let several = [
            conflict("kubectl-create", "Update", ".data.a"),
            conflict("alpha", "Apply", ".data.b"),
            conflict("kubectl-create", "Update", ".data.c"),
        ];
        assert_eq!(
            conflict_message(&several),
            "Apply failed with 3 conflicts: conflicts with \"alpha\":\n- .data.b\n\
             conflicts with \"kubectl-create\" using v1:\n- .data.a\n- .data.c"
        );
        assert_eq!(
            conflict_cause(&several[0]),
            r#"conflict with "kubectl-create" using v1"#
        );
        assert_eq!(conflict_cause(&several[1]), r#"conflict with "alpha""#);
    }

    #[test]
    fn keyed_list_items_merge_by_name() {
        let a = ctx("a", NOW);
        let b = ctx("b", LATER);
        let live = apply(
            None,
            &deployment(json!([{"name": "nginx", "image": "nginx:1.25"}])),
            &a,
            false,
        )
        .unwrap();
        let live = apply(
            Some(&live),
            &deployment(json!([{"name": "side", "image": "busybox"}])),
            &b,
            false,
        )
        .unwrap();
        let live = apply(
            Some(&live),
            &deployment(json!([{"name": "nginx", "image": "nginx:1.26"}])),
            &a,
            false,
        )
        .unwrap();
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "nginx", "image": "nginx:1.26"},
                {"name": "side", "image": "busybox"}
            ])
        );
        assert_eq!(
            serde_json::to_string(&fields_of(&live, "a", "Apply")).unwrap(),
            r#"{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#
        );
        // "b" takes over an item field only by force, and the path names the item.
        let error = apply(
            Some(&live),
            &deployment(json!([{"name": "nginx", "image": "evil"}])),
            &b,
            false,
        )
        .unwrap_err();
        assert_eq!(
            error,
            PatchError::Conflicts(vec![conflict(
                "a",
                "Apply",
                r#".spec.template.spec.containers[name="nginx"].image"#
            )])
        );
        // Dropping an item removes it when nobody else owns it.
        let dropped = apply(Some(&live), &deployment(json!([])), &a, false).unwrap();
        assert_eq!(
            dropped["spec"]["template"]["spec"]["containers"],
            json!([{"name": "side", "image": "busybox"}])
        );
    }

    #[test]
    fn atomic_lists_are_replaced_and_owned_whole() {
        let a = ctx("a", NOW);
        let with_args = |args: Value| deployment(json!([{"name": "app", "args": args}]));
        let live = apply(None, &with_args(json!(["x", "y"])), &a, false).unwrap();
        let live = apply(Some(&live), &with_args(json!(["z"])), &a, false).unwrap();
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["z"])
        );
        assert_eq!(
            fields_of(&live, "a", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
                ["f:args"],
            json!({})
        );
        let error = apply(
            Some(&live),
            &with_args(json!(["w"])),
            &ctx("b", LATER),
            false,
        )
        .unwrap_err();
        assert_eq!(
            error,
            PatchError::Conflicts(vec![conflict(
                "a",
                "Apply",
                r#".spec.template.spec.containers[name="app"].args"#
            )])
        );
    }

    #[test]
    fn set_lists_union_their_items() {
        let with_finalizers = |finalizers: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm1", "finalizers": finalizers}})
        };
        let live = apply(None, &with_finalizers(json!(["x"])), &ctx("a", NOW), false).unwrap();
        let live = apply(
            Some(&live),
            &with_finalizers(json!(["y"])),
            &ctx("b", LATER),
            false,
        )
        .unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(
            serde_json::to_string(&fields_of(&live, "a", "Apply")).unwrap(),
            r#"{"f:metadata":{"f:finalizers":{"v:\"x\"":{}}}}"#
        );
        let mut bare = with_finalizers(json!(null));
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("finalizers");
        let live = apply(Some(&live), &bare, &ctx("a", LATEST), false).unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn status_is_ignored_on_the_main_resource() {
        let mut c = ctx("kubectl", NOW);
        c.ignore_status = true;
        let body = |phase: &str| {
            json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "b1"},
                   "spec": {"ttl": "1h"}, "status": {"phase": phase}})
        };
        let created = apply(None, &body("New"), &c, false).unwrap();
        assert!(created.get("status").is_none());
        assert_eq!(
            fields_of(&created, "kubectl", "Apply"),
            json!({"f:spec": {"f:ttl": {}}})
        );

        let mut live = created.clone();
        live["status"] = json!({"phase": "Completed"});
        let out = apply(Some(&live), &body("Failed"), &c, false).unwrap();
        assert_eq!(out["status"], json!({"phase": "Completed"}));
        assert_eq!(
            fields_of(&out, "kubectl", "Apply"),
            json!({"f:spec": {"f:ttl": {}}})
        );
    }

    #[test]
    fn status_writes_own_only_status() {
        let main = {
            let mut c = ctx("kubectl", NOW);
            c.ignore_status = true;
            apply(
                None,
                &json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"a": 1}}),
                &c,
                false,
            )
            .unwrap()
        };
        let mut c = ctx("controller", LATER);
        c.ignore_status = true;
        c.subresource = Some("status");
        let out = apply(
            Some(&main),
            &json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"},
                    "spec": {"a": 2}, "status": {"ready": true}}),
            &c,
            false,
        )
        .unwrap();
        assert_eq!(out["spec"], json!({"a": 1}));
        assert_eq!(out["status"], json!({"ready": true}));
        let entry = managed(&out)
            .into_iter()
            .find(|entry| entry["manager"] == "controller")
            .unwrap();
        assert_eq!(entry["subresource"], "status");
        assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:ready": {}}}));

        // Update through the status subresource: same scoping, and client managedFields ignored.
        let mut updated = out.clone();
        updated["status"]["ready"] = json!(false);
        updated["spec"]["a"] = json!(9);
        updated["metadata"]["managedFields"] = json!([]);
        let mut u = ctx("kubelet", LATEST);
        u.subresource = Some("status");
        record_update(Some(&out), &mut updated, &u);
        let kubelet = managed(&updated)
            .into_iter()
            .find(|entry| entry["manager"] == "kubelet")
            .unwrap();
        assert_eq!(kubelet["subresource"], "status");
        assert_eq!(kubelet["fieldsV1"], json!({"f:status": {"f:ready": {}}}));
        assert_eq!(fields_of(&updated, "controller", "Apply"), Value::Null);
        assert_eq!(
            fields_of(&updated, "kubectl", "Apply"),
            json!({"f:spec": {"f:a": {}}})
        );
    }

    #[test]
    fn record_update_moves_ownership() {
        let mut object = config_map(json!({"a": "1", "b": "2"}));
        object["metadata"]["labels"] = json!({"app": "web"});
        let live = created(object, "kubectl-create", NOW);
        assert_eq!(
            serde_json::to_string(&live["metadata"]["managedFields"]).unwrap(),
            r#"[{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":"2026-01-02T03:04:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:a":{},"f:b":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}}}}]"#
        );

        let mut edited = live.clone();
        edited["data"] = json!({"a": "changed", "c": "3"});
        record_update(Some(&live), &mut edited, &ctx("kubectl-edit", LATER));
        let entries = managed(&edited);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["manager"], "kubectl-create");
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
        );
        assert_eq!(entries[1]["manager"], "kubectl-edit");
        assert_eq!(entries[1]["time"], LATER);
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:data": {"f:a": {}, "f:c": {}}})
        );

        // A write that changes nothing leaves every entry (and its time) alone.
        let mut same = edited.clone();
        record_update(Some(&edited), &mut same, &ctx("kubectl-edit", LATEST));
        assert_eq!(same, edited);

        // Removing a field removes it from every entry; empty entries disappear.
        let mut emptied = edited.clone();
        emptied.as_object_mut().unwrap().shift_remove("data");
        emptied["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("labels");
        record_update(Some(&edited), &mut emptied, &ctx("someone", LATEST));
        assert!(
            emptied["metadata"].get("managedFields").is_none(),
            "{emptied}"
        );
    }

    #[test]
    fn create_entry_marks_only_new_maps_like_the_real_server() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}
                }
            }
        });
        let mut c = ctx("", NOW);
        c.api_version = "apps/v1";
        let mut object = deployment.clone();
        record_update(None, &mut object, &c);
        let entries = managed(&object);
        assert_eq!(entries.len(), 1);
        // kube-rs sends no field manager; Go omits the empty manager.
        assert!(entries[0].get("manager").is_none());
        assert_eq!(entries[0]["apiVersion"], "apps/v1");
        assert_eq!(
            serde_json::to_string(&entries[0]["fieldsV1"]).unwrap(),
            concat!(
                r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"#,
                r#""f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"#,
                r#""f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"#,
                r#""f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
            )
        );
        assert_eq!(without_managed_fields(object), deployment);
    }

    #[test]
    fn client_written_managed_fields() {
        let live = created(
            config_map(json!({"a": "1"})),
            "kubectl-client-side-apply",
            NOW,
        );

        // Absent: kept.
        let mut kept = without_managed_fields(live.clone());
        record_update(Some(&live), &mut kept, &ctx("kubectl", LATER));
        assert_eq!(kept, live);

        // kubectl apply --server-side migrating ownership with a JSON patch.
        let migrated_entries = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
            "time": NOW, "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]);
        let mut migrated = live.clone();
        migrated["metadata"]["managedFields"] = migrated_entries.clone();
        record_update(Some(&live), &mut migrated, &ctx("kubectl", LATER));
        assert_eq!(migrated["metadata"]["managedFields"], migrated_entries);
        // ... after which the field is the applier's to drop.
        let pruned = apply(
            Some(&migrated),
            &config_map(json!({})),
            &ctx("kubectl", LATEST),
            false,
        )
        .unwrap();
        assert_eq!(pruned["data"], json!({}));

        // `[]` resets: the writer owns everything, as on create.
        let mut object = live.clone();
        object["metadata"]["managedFields"] = json!([]);
        record_update(Some(&live), &mut object, &ctx("restorer", LATER));
        let entries = managed(&object);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "restorer");
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:a": {}}})
        );

        // `[{}]` clears: only what this write changes is owned.
        let mut object = live.clone();
        object["metadata"]["managedFields"] = json!([{}]);
        record_update(Some(&live), &mut object, &ctx("x", LATER));
        assert!(
            object["metadata"].get("managedFields").is_none(),
            "{object}"
        );
        let mut object = live.clone();
        object["metadata"]["managedFields"] = json!([{}]);
        object["data"]["b"] = json!("2");
        record_update(Some(&live), &mut object, &ctx("x", LATER));
        assert_eq!(
            fields_of(&object, "x", "Update"),
            json!({"f:data": {"f:b": {}}})
        );

        // Garbage: the live entries stay.
        for garbage in [json!("x"), json!([1]), json!([{"fieldsV1": 3}]), json!({})] {
            let mut object = live.clone();
            object["metadata"]["managedFields"] = garbage;
            record_update(Some(&live), &mut object, &ctx("x", LATER));
            assert_eq!(object, live);
        }
    }

    #[test]
    fn managed_fields_on_create_are_overridden_by_the_creator() {
        let mut restored = config_map(json!({"a": "1"}));
        restored["metadata"]["managedFields"] = json!([{"manager": "old", "operation": "Apply",
            "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]);
        record_update(None, &mut restored, &ctx("restorer", NOW));
        let entries = managed(&restored);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "restorer");
    }

    #[test]
    fn applying_to_an_unmanaged_object_conflicts_with_before_first_apply() {
        let live = config_map(json!({"a": "1", "b": "2"}));
        let c = ctx("kubectl", NOW);
        let error = apply(Some(&live), &config_map(json!({"a": "9"})), &c, false).unwrap_err();
        assert_eq!(
            error,
            PatchError::Conflicts(vec![conflict("before-first-apply", "Update", ".data.a")])
        );
        let out = apply(Some(&live), &config_map(json!({"a": "1"})), &c, false).unwrap();
        assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            fields_of(&out, "before-first-apply", "Update"),
            json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}})
        );
    }

    #[test]
    fn entries_are_ordered_apply_first_then_by_time() {
        let live = created(config_map(json!({"a": "1"})), "kubectl-create", NOW);
        let out = apply(
            Some(&live),
            &config_map(json!({"b": "2"})),
            &ctx("zz-kubectl", LATER),
            false,
        )
        .unwrap();
        let order: Vec<(String, String)> = managed(&out)
            .iter()
            .map(|e| (e["manager"].to_string(), e["operation"].to_string()))
            .collect();
        assert_eq!(
            order,
            [
                (r#""zz-kubectl""#.to_owned(), r#""Apply""#.to_owned()),
                (r#""kubectl-create""#.to_owned(), r#""Update""#.to_owned())
            ]
        );
    }

    #[test]
    fn a_noop_apply_changes_nothing() {
        let c = ctx("kubectl", NOW);
        let applied = deployment(json!([{"name": "a", "image": "x"}]));
        let first = apply(None, &applied, &c, false).unwrap();
        let second = apply(Some(&first), &applied, &ctx("kubectl", LATER), false).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn applied_server_metadata_is_ignored() {
        let live = apply(
            None,
            &config_map(json!({"a": "1"})),
            &ctx("kubectl", NOW),
            false,
        )
        .unwrap();
        let mut live = live;
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("7");
        let mut applied = config_map(json!({"a": "1"}));
        applied["metadata"]["uid"] = json!("u-2");
        applied["metadata"]["resourceVersion"] = json!("3");
        let out = apply(Some(&live), &applied, &ctx("kubectl", LATER), false).unwrap();
        assert_eq!(out["metadata"]["uid"], "u-1");
        assert_eq!(out["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn apply_rejects_bad_input() {
        let c = ctx("kubectl", NOW);
        let mut with_fields = config_map(json!({}));
        with_fields["metadata"]["managedFields"] = json!([]);
        for (applied, expected) in [
            (json!([1]), "must be a JSON object"),
            (with_fields, "metadata.managedFields must be nil"),
            (
                deployment(json!([{"name": "a"}, {"name": "a"}])),
                r#".spec.template.spec.containers: duplicate entries for key [name="a"]"#,
            ),
            (
                deployment(json!([{"image": "x"}])),
                "omits key field \"name\"",
            ),
            (deployment(json!(["x"])), "may not have non-map elements"),
        ] {
            match apply(None, &applied, &c, false) {
                Err(PatchError::BadRequest(message)) => {
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{applied}: {other:?}"),
            }
        }
    }

    #[test]
    fn custom_resources_follow_their_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "hooks": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}, "cmd": {"type": "string"}}}},
            "namespaces": {"type": "array", "items": {"type": "string"}}
        }}}});
        let keys = SchemaListKeys::new(Some(schema));
        let c = |manager| Ctx {
            keys: &keys,
            ..ctx(manager, NOW)
        };
        let backup = |spec: Value| json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "b1"}, "spec": spec});
        let live = apply(
            None,
            &backup(json!({"hooks": [{"name": "a", "cmd": "x"}], "namespaces": ["n1"]})),
            &c("one"),
            false,
        )
        .unwrap();
        let live = apply(
            Some(&live),
            &backup(json!({"hooks": [{"name": "b", "cmd": "y"}]})),
            &c("two"),
            false,
        )
        .unwrap();
        assert_eq!(
            live["spec"]["hooks"],
            json!([{"name": "a", "cmd": "x"}, {"name": "b", "cmd": "y"}])
        );
        let error = apply(
            Some(&live),
            &backup(json!({"namespaces": ["n2"]})),
            &c("two"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            error,
            PatchError::Conflicts(vec![conflict("one", "Apply", ".spec.namespaces")])
        );

        // Without a schema every object is a free-form map, owned itself (`.`).
        let schemaless = SchemaListKeys::new(None);
        let loose = Ctx {
            keys: &schemaless,
            ..ctx("one", NOW)
        };
        let out = apply(None, &backup(json!({"a": {"b": 1}})), &loose, false).unwrap();
        assert_eq!(
            fields_of(&out, "one", "Apply"),
            json!({"f:spec": {".": {}, "f:a": {".": {}, "f:b": {}}}})
        );
    }

    #[test]
    fn arbitrary_inputs_never_panic() {
        let values = [
            json!(null),
            json!(1),
            json!([]),
            json!({}),
            json!({"metadata": "x"}),
            json!({"metadata": {"managedFields": "x"}}),
            json!({"metadata": {"managedFields": [{"fieldsV1": {"k:{": {}, "f:a": 1}}]}}),
            json!({"metadata": {"managedFields": [{"manager": 1}]}, "spec": [1]}),
            json!({"metadata": {"finalizers": [{"a": 1}, [1], "x", "x"]}}),
            json!({"spec": {"containers": [1, {"name": null}, {"name": "a"}, {"name": "a"}]}}),
            json!({"spec": {"containers": {"name": "a"}, "ports": [{"port": "x"}]}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{}]}]}}}}),
            json!({"status": {"conditions": [{"type": "A"}, {"type": "A"}]}}),
            json!({"spec": {"selector": [1], "template": null}}),
        ];
        let schemaless = SchemaListKeys::new(None);
        for keys in [&BuiltinListKeys as &dyn ListKeys, &schemaless] {
            for ignore_status in [false, true] {
                for subresource in [None, Some("status")] {
                    let c = Ctx {
                        subresource,
                        ignore_status,
                        keys,
                        ..ctx("m", NOW)
                    };
                    for live in &values {
                        for body in &values {
                            let _ = apply(Some(live), body, &c, false);
                            let _ = apply(Some(live), body, &c, true);
                            let _ = apply(None, body, &c, false);
                            let mut new = body.clone();
                            record_update(Some(live), &mut new, &c);
                            let mut new = body.clone();
                            record_update(None, &mut new, &c);
                        }
                    }
                }
            }
        }
    }
}
