//! The object store: one persistent ordered map of every object, one global revision.
//!
//! Objects are kept as compact JSON bytes without `apiVersion`/`kind` (a list of built-ins is
//! served by concatenation, which keeps listing far faster than any client can parse), and the
//! map is persistent (`imbl::OrdMap`), so a consistent snapshot for a paginated list is an O(1)
//! clone rather than a copy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imbl::OrdMap;
use serde_json::Value;

use crate::registry::{Registry, ResourceType, TypeId};

/// Where an object lives: its type, namespace ("" for cluster-scoped) and name. Ordered as
/// etcd orders keys: one type's objects are contiguous, sorted by `namespace/name` as text
/// (so `a-b/x` sorts before `a/x`), which is the order a real API server lists in and which
/// clients may rely on when they resume a list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub ty: TypeId,
    pub ns: String,
    pub name: String,
}

impl Key {
    fn path_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let sep: &[u8] = if self.ns.is_empty() { b"" } else { b"/" };
        self.ns
            .bytes()
            .chain(sep.iter().copied())
            .chain(self.name.bytes())
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ty
            .cmp(&other.ty)
            .then_with(|| self.path_bytes().cmp(other.path_bytes()))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    pub fn new(ty: TypeId, ns: &str, name: &str) -> Self {
        Key {
            ty,
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }
}

/// A stored object.
#[derive(Debug)]
pub struct Obj {
    /// Compact JSON of the object without `apiVersion` and `kind`; always starts with `{`.
    pub body: Bytes,
}

impl Obj {
    pub fn from_value(v: &Value) -> Obj {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.shift_remove("apiVersion");
            m.shift_remove("kind");
        }
        Obj {
            body: Bytes::from(serde_json::to_vec(&v).expect("JSON values always serialise")),
        }
    }

    /// The object as a JSON value, without type meta.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.body).expect("stored bodies are valid JSON")
    }

    /// The object with `apiVersion` and `kind` in front, as JSON bytes.
    pub fn typed_bytes(&self, api_version: &str, kind: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 48);
        write_typed(&mut out, &self.body, api_version, kind);
        out
    }

    /// The object with `apiVersion` and `kind`, as a JSON value.
    pub fn typed_value(&self, api_version: &str, kind: &str) -> Value {
        serde_json::from_slice(&self.typed_bytes(api_version, kind)).expect("valid JSON")
    }
}

/// Writes `{"apiVersion":..,"kind":..,<rest of body>` without re-serialising the body.
pub fn write_typed(out: &mut Vec<u8>, body: &[u8], api_version: &str, kind: &str) {
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut *out, api_version).expect("string");
    out.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut *out, kind).expect("string");
    if body.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&body[1..]);
    } else {
        out.push(b'}');
    }
}

/// What happened to an object, for watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, at one revision.
#[derive(Debug)]
pub struct Event {
    pub rev: u64,
    pub kind: EventType,
    pub key: Key,
    /// The new state (for DELETED: the last state, with the deletion revision).
    pub obj: Arc<Obj>,
    /// The previous state, so a watcher with a selector can turn a change into ADDED/DELETED.
    pub prev: Option<Arc<Obj>>,
}

/// A frozen view of every object at one revision, kept for continue tokens.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub rev: u64,
    pub objects: OrdMap<Key, Arc<Obj>>,
    taken: Instant,
    /// Matching-object totals per (type, namespace) for `remainingItemCount`.
    totals: HashMap<(TypeId, Option<String>), usize>,
}

/// How long a list snapshot lives, like etcd's default compaction interval.
const SNAPSHOT_TTL: Duration = Duration::from_mins(5);
const MAX_SNAPSHOTS: usize = 32;
/// Watch history kept for `resourceVersion=N` watches by default; older revisions get 410.
pub const DEFAULT_HISTORY: usize = 20_000;

/// All mutable server state, behind one lock.
#[derive(Debug)]
pub struct State {
    pub rev: u64,
    pub objects: OrdMap<Key, Arc<Obj>>,
    pub registry: Registry,
    /// Bumped whenever the set of served types changes (OpenAPI hashes, discovery caches).
    pub types_generation: u64,
    snapshots: VecDeque<Snapshot>,
    history: VecDeque<Arc<Event>>,
    /// Lowest revision a watch can still start after.
    compacted: u64,
    /// How many events the watch history keeps.
    pub history_limit: usize,
    /// Service IPs and node ports in use (a real server's allocators).
    pub cluster_ips: HashSet<String>,
    pub node_ports: HashSet<u16>,
    pub next_ip: u32,
}

impl State {
    pub fn new() -> Self {
        State {
            rev: 1,
            objects: OrdMap::new(),
            registry: Registry::builtin(),
            types_generation: 1,
            snapshots: VecDeque::new(),
            history: VecDeque::new(),
            compacted: 1,
            history_limit: DEFAULT_HISTORY,
            cluster_ips: HashSet::new(),
            node_ports: HashSet::new(),
            next_ip: 1,
        }
    }

    pub fn get(&self, key: &Key) -> Option<&Arc<Obj>> {
        self.objects.get(key)
    }

    /// Stores `obj` at the revision last handed out by [`State::next_rev`] (which the caller has
    /// written into the object's `resourceVersion`) and returns the event to publish.
    pub fn put(&mut self, key: Key, obj: Arc<Obj>, kind: EventType) -> Arc<Event> {
        let prev = self.objects.insert(key.clone(), obj.clone());
        self.record(Event {
            rev: self.rev,
            kind,
            key,
            obj,
            prev,
        })
    }

    /// Removes an object at a new revision. `last` is its final state carrying that revision.
    pub fn remove(&mut self, key: &Key, last: Arc<Obj>) -> Arc<Event> {
        let prev = self.objects.remove(key);
        self.record(Event {
            rev: self.rev,
            kind: EventType::Deleted,
            key: key.clone(),
            obj: last,
            prev,
        })
    }

    fn record(&mut self, event: Event) -> Arc<Event> {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rev;
            }
        }
        event
    }

    /// Hands out the next revision; callers stamp the object with it before `put` or `remove`.
    pub fn next_rev(&mut self) -> u64 {
        self.rev += 1;
        self.rev
    }

    /// Events after `rev` (exclusive), or `None` if that history is compacted.
    pub fn history_after(&self, rev: u64) -> Option<Vec<Arc<Event>>> {
        if rev < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|e| e.rev <= rev);
        Some(self.history.range(start..).cloned().collect())
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Keeps the current objects as the snapshot of the current revision.
    pub fn take_snapshot(&mut self) -> Snapshot {
        self.expire_snapshots();
        if let Some(s) = self.snapshots.iter().find(|s| s.rev == self.rev) {
            return s.clone();
        }
        let snap = Snapshot {
            rev: self.rev,
            objects: self.objects.clone(),
            taken: Instant::now(),
            totals: HashMap::new(),
        };
        self.snapshots.push_back(snap.clone());
        while self.snapshots.len() > MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
        snap
    }

    /// The snapshot of `rev` if it is still kept.
    pub fn snapshot(&mut self, rev: u64) -> Option<Snapshot> {
        self.expire_snapshots();
        self.snapshots.iter().find(|s| s.rev == rev).cloned()
    }

    /// Remembers how many objects of a type a snapshot holds (computed once per list).
    pub fn remember_total(&mut self, rev: u64, scope: (TypeId, Option<String>), total: usize) {
        if let Some(s) = self.snapshots.iter_mut().find(|s| s.rev == rev) {
            s.totals.insert(scope, total);
        }
    }

    /// Drops every kept snapshot: continue tokens issued so far will get 410 Expired.
    pub fn compact_snapshots(&mut self) {
        self.snapshots.clear();
    }

    fn expire_snapshots(&mut self) {
        while self
            .snapshots
            .front()
            .is_some_and(|s| s.taken.elapsed() > SNAPSHOT_TTL)
        {
            self.snapshots.pop_front();
        }
    }

    pub fn ty(&self, id: TypeId) -> Option<Arc<ResourceType>> {
        self.registry.get(id).cloned()
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl Snapshot {
    pub fn total(&self, scope: &(TypeId, Option<String>)) -> Option<usize> {
        self.totals.get(scope).copied()
    }
}

/// Iterates one type's objects in key order, optionally in one namespace and after a key.
pub fn scan<'a>(
    objects: &'a OrdMap<Key, Arc<Obj>>,
    ty: TypeId,
    ns: Option<&str>,
    after: Option<&Key>,
) -> impl Iterator<Item = (&'a Key, &'a Arc<Obj>)> + 'a {
    // A namespace's keys are the paths with prefix `ns/`; the first path past them is `ns0`
    // ('0' follows '/'), and `ns0/` is the first key at or above it.
    let (lo, hi) = match ns {
        Some(ns) => (
            Key::new(ty, ns, ""),
            Bound::Excluded(Key::new(ty, &format!("{ns}0"), "")),
        ),
        None => (
            Key::new(ty, "", ""),
            Bound::Excluded(Key::new(ty + 1, "", "")),
        ),
    };
    let lo = match after {
        Some(k) if *k >= lo => Bound::Excluded(k.clone()),
        _ => Bound::Included(lo),
    };
    objects.range((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_bytes_splices_type_meta() {
        let obj = Obj::from_value(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
        );
        assert_eq!(&obj.body[..], br#"{"metadata":{"name":"a"}}"#);
        let typed: Value = serde_json::from_slice(&obj.typed_bytes("v1", "ConfigMap")).unwrap();
        assert_eq!(
            typed,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        );
    }

    #[test]
    fn scan_is_scoped_to_type_namespace_and_cursor() {
        let mut s = State::new();
        for (ty, ns, name) in [(1, "a", "x"), (1, "a", "y"), (1, "ab", "z"), (2, "a", "x")] {
            let o = Arc::new(Obj::from_value(&json!({"metadata": {"name": name}})));
            s.next_rev();
            s.put(Key::new(ty, ns, name), o, EventType::Added);
        }
        let names = |it: Vec<(&Key, &Arc<Obj>)>| {
            it.into_iter()
                .map(|(k, _)| format!("{}/{}", k.ns, k.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(scan(&s.objects, 1, None, None).collect()),
            ["a/x", "a/y", "ab/z"]
        );
        assert_eq!(
            names(scan(&s.objects, 1, Some("a"), None).collect()),
            ["a/x", "a/y"]
        );
        assert_eq!(
            names(scan(&s.objects, 1, None, Some(&Key::new(1, "a", "y"))).collect()),
            ["ab/z"]
        );
        // etcd order: "a-b/..." < "a/..." < "a0/..." < "ab/..." as text.
        for (ns, name) in [("a-b", "q"), ("a0", "q")] {
            let o = Arc::new(Obj::from_value(&json!({"metadata": {"name": name}})));
            s.next_rev();
            s.put(Key::new(1, ns, name), o, EventType::Added);
        }
        assert_eq!(
            names(scan(&s.objects, 1, None, None).collect()),
            ["a-b/q", "a/x", "a/y", "a0/q", "ab/z"]
        );
        assert_eq!(
            names(scan(&s.objects, 1, Some("a"), None).collect()),
            ["a/x", "a/y"]
        );
    }

    #[test]
    fn history_reports_compaction() {
        let mut s = State::new();
        s.history_limit = 100;
        let o = Arc::new(Obj::from_value(&json!({"metadata": {"name": "a"}})));
        for _ in 0..110 {
            s.next_rev();
            s.put(Key::new(1, "", "a"), o.clone(), EventType::Modified);
        }
        assert!(s.history_after(2).is_none());
        let recent = s.history_after(s.rev - 3).unwrap();
        assert_eq!(recent.len(), 3);
    }
}
