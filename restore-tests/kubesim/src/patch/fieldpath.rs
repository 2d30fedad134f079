//! The field sets of structured-merge-diff, the library behind server-side apply.
//!
//! managedFields must round-trip through clients that read, store and send them back (kubectl
//! migrates ownership by writing them), so the encoding follows the real `FieldsV1` byte for byte
//! where clients can see it: `f:` struct fields, `k:{...}` keyed list items with the key fields
//! sorted, `v:` set items, `.` for "this node itself is owned as well as some children", and the
//! ordering structured-merge-diff emits (`.` first, then fields, keys, values, indices).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Debug, Clone)]
pub(crate) enum PathElement {
    /// A field of a map, `f:<name>`.
    Field(String),
    /// An item of a list merged by key, `k:{"name":"nginx"}`; pairs sorted by field name.
    Key(Vec<(String, Value)>),
    /// An item of a set, `v:"value"`.
    Value(Value),
    /// An item of a list by position, `i:3` (only ever read from client-written managedFields).
    Index(usize),
}

impl PathElement {
    /// A keyed item; the pairs are sorted because the real server sorts them and compares
    /// `k:` elements by their sorted form.
    pub(crate) fn key(mut pairs: Vec<(String, Value)>) -> Self {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(pairs)
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `FieldsV1` key of this element.
    pub(crate) fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(pairs) => {
                let object: Map<String, Value> = pairs.iter().cloned().collect();
                format!("k:{}", Value::Object(object))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Reads a `FieldsV1` key; `None` for anything the real encoding never produces.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if let Some(name) = text.strip_prefix("f:") {
            return Some(PathElement::Field(name.to_owned()));
        }
        if let Some(json) = text.strip_prefix("k:") {
            let Ok(Value::Object(object)) = serde_json::from_str::<Value>(json) else {
                return None;
            };
            return Some(PathElement::key(object.into_iter().collect()));
        }
        if let Some(json) = text.strip_prefix("v:") {
            return serde_json::from_str::<Value>(json)
                .ok()
                .map(PathElement::Value);
        }
        if let Some(index) = text.strip_prefix("i:") {
            return index.parse().ok().map(PathElement::Index);
        }
        None
    }

    /// kubectl's notation, as the apiserver prints conflicting fields:
    /// `.spec`, `[name="nginx"]`, `[="value"]`, `[3]`.
    pub(crate) fn render(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(pairs) => {
                let parts: Vec<String> = pairs
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value_to_string(value)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(value) => format!("[={}]", value_to_string(value)),
            PathElement::Index(index) => format!("[{index}]"),
        }
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    /// The order structured-merge-diff serializes children in.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let by_field = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if by_field != Ordering::Equal {
                        return by_field;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// A total order over JSON values, as structured-merge-diff's `value.Compare`: numbers (compared
/// numerically, so `80` and `80.0` are one key), strings, booleans, lists, maps, null.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let integer = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            if let (Some(x), Some(y)) = (integer(x), integer(y)) {
                return x.cmp(&y);
            }
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (xi, yi) in x.iter().zip(y) {
                let item = compare_values(xi, yi);
                if item != Ordering::Equal {
                    return item;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(&ys) {
                let entry = xk.cmp(yk).then_with(|| compare_values(xv, yv));
                if entry != Ordering::Equal {
                    return entry;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// structured-merge-diff's `value.ToString`, used inside rendered paths.
fn value_to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(text) => go_quote(text),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(object) => object.iter().fold(String::new(), |mut out, (name, value)| {
            let _ = write!(out, "{name}={}", value_to_string(value));
            out
        }),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
    }
}

/// Go's `%q`; JSON string escaping matches it for everything a field name or key value holds.
pub(crate) fn go_quote(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A path in kubectl's notation, e.g. `.spec.containers[name="nginx"].image`.
pub(crate) fn render_path(path: &[PathElement]) -> String {
    path.iter().map(PathElement::render).collect()
}

/// A set of paths, stored as a tree. A node is a *member* when the path leading to it is itself
/// in the set; it may also have member descendants (then `FieldsV1` shows `.`).
///
/// Invariant kept by every operation: no child node is empty, so "a child exists" means
/// "something at or below it is in the set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Set {
    pub(crate) member: bool,
    pub(crate) children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// Adds a path. The root itself is never a member: an object is never owned as a whole.
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let child = self.children.entry(first.clone()).or_default();
        if rest.is_empty() {
            child.member = true;
        } else {
            child.insert(rest);
        }
    }

    pub(crate) fn child(&self, element: &PathElement) -> Option<&Set> {
        self.children.get(element)
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Whether this node or anything below it is a member.
    pub(crate) fn has_any(&self) -> bool {
        self.member || self.children.values().any(Set::has_any)
    }

    pub(crate) fn union(&mut self, other: &Set) {
        self.member |= other.member;
        for (element, theirs) in &other.children {
            if theirs.is_empty() {
                continue;
            }
            self.children
                .entry(element.clone())
                .or_default()
                .union(theirs);
        }
    }

    /// Removes exactly the members of `other`; descendants of a removed member stay.
    pub(crate) fn difference(&mut self, other: &Set) {
        if other.member {
            self.member = false;
        }
        for (element, theirs) in &other.children {
            if let Some(ours) = self.children.get_mut(element) {
                ours.difference(theirs);
                if ours.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, ours) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = ours.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Every member path, in structured-merge-diff's iteration order (the members of a level
    /// first, then the levels below), which is the order the apiserver lists conflicts in.
    pub(crate) fn paths(&self) -> Vec<Vec<PathElement>> {
        fn walk(set: &Set, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
            for (element, child) in &set.children {
                if child.member {
                    prefix.push(element.clone());
                    out.push(prefix.clone());
                    prefix.pop();
                }
            }
            for (element, child) in &set.children {
                if !child.children.is_empty() {
                    prefix.push(element.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// The `fieldsV1` object of a managedFields entry.
    pub(crate) fn to_fields_v1(&self) -> Value {
        Value::Object(self.encode_children())
    }

    fn encode_children(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for (element, child) in &self.children {
            let mut node = Map::new();
            if child.member && !child.children.is_empty() {
                node.insert(".".to_owned(), Value::Object(Map::new()));
            }
            node.extend(child.encode_children());
            out.insert(element.encode(), Value::Object(node));
        }
        out
    }

    /// Reads a `fieldsV1` object; keys that are not valid path elements are skipped, so a
    /// hand-written entry can lose precision but never fails the write.
    pub(crate) fn from_fields_v1(value: &Value) -> Set {
        fn node(object: &Map<String, Value>) -> Set {
            let mut set = Set::default();
            for (text, child) in object {
                if text == "." {
                    set.member = true;
                    continue;
                }
                let Some(element) = PathElement::parse(text) else {
                    continue;
                };
                let mut parsed = child.as_object().map(node).unwrap_or_default();
                if parsed.children.is_empty() {
                    parsed.member = true;
                }
                set.children.entry(element).or_default().union(&parsed);
            }
            set
        }
        let mut set = value.as_object().map(node).unwrap_or_default();
        set.member = false;
        set
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    #[test]
    fn fields_v1_round_trip_keeps_the_real_encoding() {
        let text = json!({
            "f:data": {".": {}, "f:a": {}},
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        });
        let set = Set::from_fields_v1(&text);
        assert_eq!(set.to_fields_v1(), text);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            serde_json::to_string(&text).unwrap()
        );
    }

    #[test]
    fn dot_comes_first_and_elements_are_ordered_like_the_real_server() {
        let mut set = Set::default();
        set.insert(&[field("finalizers"), PathElement::Value(json!("b"))]);
        set.insert(&[field("finalizers"), PathElement::Value(json!("a"))]);
        set.insert(&[field("finalizers")]);
        let encoded = serde_json::to_string(&set.to_fields_v1()).unwrap();
        assert_eq!(
            encoded,
            r#"{"f:finalizers":{".":{},"v:\"a\"":{},"v:\"b\"":{}}}"#
        );
    }

    #[test]
    fn keys_are_sorted_and_compared_numerically() {
        let a = PathElement::key(vec![
            ("protocol".into(), json!("TCP")),
            ("containerPort".into(), json!(80)),
        ]);
        assert_eq!(a.encode(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(a.render(), r#"[containerPort=80,protocol="TCP"]"#);
        let b = PathElement::parse(r#"k:{"protocol":"TCP","containerPort":80.0}"#).unwrap();
        assert_eq!(a, b);
        let c = PathElement::key(vec![("containerPort".into(), json!(443))]);
        assert!(c > a);
        assert!(field("z") < a);
        assert!(a < PathElement::Value(json!("x")));
    }

    #[test]
    fn parse_rejects_garbage_without_panicking() {
        for text in ["", "f", "k:", "k:[1]", "v:{", "i:x", "x:y", "é", "k:{"] {
            let _ = PathElement::parse(text);
        }
        assert_eq!(PathElement::parse("i:3"), Some(PathElement::Index(3)));
        let set = Set::from_fields_v1(&json!({"bogus": {}, "f:a": "not an object", ".": {}}));
        assert!(!set.member);
        assert!(set.child(&field("a")).unwrap().member);
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::default();
        a.insert(&[field("data"), field("x")]);
        a.insert(&[field("data"), field("y")]);
        a.insert(&[field("data")]);
        let mut b = Set::default();
        b.insert(&[field("data"), field("x")]);
        let both = a.intersection(&b);
        assert_eq!(both, b);

        let mut exact = a.clone();
        let mut only_data = Set::default();
        only_data.insert(&[field("data")]);
        exact.difference(&only_data);
        assert!(!exact.child(&field("data")).unwrap().member);
        assert_eq!(exact.paths().len(), 2);

        let mut rest = a.clone();
        rest.difference(&b);
        assert_eq!(
            rest.paths(),
            vec![vec![field("data")], vec![field("data"), field("y")]]
        );
        rest.union(&b);
        assert_eq!(rest, a);
    }

    #[test]
    fn paths_list_members_of_a_level_before_deeper_ones() {
        let mut set = Set::default();
        set.insert(&[field("b"), field("c")]);
        set.insert(&[field("a")]);
        set.insert(&[field("d")]);
        let rendered: Vec<String> = set.paths().iter().map(|p| render_path(p)).collect();
        assert_eq!(rendered, [".a", ".d", ".b.c"]);
    }

    #[test]
    fn value_order_matches_structured_merge_diff() {
        let ordered = [
            json!(1),
            json!(2.5),
            json!("a"),
            json!(false),
            json!([1]),
            json!({"a": 1}),
            Value::Null,
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare_values(&pair[0], &pair[1]),
                Ordering::Less,
                "{pair:?}"
            );
        }
        assert_eq!(compare_values(&json!(80), &json!(80.0)), Ordering::Equal);
    }
}
