//! The API semantics over the store: create, read, update, patch, delete, list, and the two
//! controllers a client can observe (namespace deletion and CRD cleanup).
//!
//! Every write takes the state lock for its whole read-modify-write and publishes its watch
//! event before releasing it, so revisions and event order always agree.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast};

use crate::patch::{self, PatchError, managed};
use crate::registry::{ResourceType, TypeId, type_from_crd};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError};
use crate::store::{self, Event, EventType, Key, Obj, Snapshot, State};
use crate::validate;

/// Who is writing and how (query parameters of a write).
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// `fieldManager`, or the User-Agent's program name, or "" (kube-rs sends neither).
    pub manager: String,
    /// `dryRun=All`: validate and answer, persist nothing.
    pub dry_run: bool,
}

/// The body type of a PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// `DeleteOptions` as far as kubesim honours them.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// Query parameters of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// What a request addresses: a type at a version, in a namespace or cluster-wide.
#[derive(Debug, Clone)]
pub struct Target {
    pub ty: Arc<ResourceType>,
    pub version: String,
    /// The namespace from the URL (`None` for cluster-scoped types and all-namespace lists).
    pub ns: Option<String>,
}

impl Target {
    pub fn api_version(&self) -> String {
        self.ty.api_version(&self.version)
    }

    fn key(&self, name: &str) -> Key {
        Key::new(self.ty.id, self.ns.as_deref().unwrap_or(""), name)
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.ty.qualified(), &self.ty.group, &self.ty.plural, name)
    }

    fn typed(&self, obj: &Obj) -> Value {
        obj.typed_value(&self.api_version(), &self.ty.kind)
    }
}

/// The simulated cluster: state plus the channel watchers listen on.
#[derive(Debug)]
pub struct Cluster {
    state: RwLock<State>,
    events: broadcast::Sender<Arc<Event>>,
    /// Woken after every write (the namespace and CRD controllers wait on it).
    pub changed: Notify,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// Namespaces that exist from the start, as on every cluster.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];
const UNDELETABLE_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

impl Cluster {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(65_536);
        let cluster = Cluster {
            state: RwLock::new(State::new()),
            events,
            changed: Notify::new(),
        };
        let ns_type = cluster
            .read()
            .registry
            .find("", "namespaces")
            .cloned()
            .expect("builtin");
        for ns in SYSTEM_NAMESPACES {
            let target = Target {
                ty: ns_type.clone(),
                version: "v1".into(),
                ns: None,
            };
            cluster
                .create(
                    &target,
                    json!({"metadata": {"name": ns}}),
                    &WriteOpts::default(),
                )
                .expect("system namespaces are valid");
        }
        cluster
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to every future event; call with the read lock held to have no gap.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Sends events to watchers. Called with the write lock held, so that watchers (which
    /// subscribe under the read lock) see every revision exactly once and in order.
    fn publish(&self, events: Vec<Arc<Event>>) {
        for e in events {
            // No receiver is fine: nobody is watching.
            let _ = self.events.send(e);
        }
        self.changed.notify_waiters();
    }

    /// Limits the watch history (watches from older revisions get 410 Expired).
    pub fn set_history_limit(&self, events: usize) {
        self.write().history_limit = events.max(1);
    }

    /// Makes every continue token issued so far expire (a real server's compaction).
    pub fn compact(&self) {
        self.write().compact_snapshots();
    }

    // ----------------------------------------------------------------------------- reads

    pub fn get(&self, t: &Target, name: &str) -> Result<Vec<u8>, ApiError> {
        let st = self.read();
        let obj = st.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        Ok(obj.typed_bytes(&t.api_version(), &t.ty.kind))
    }

    pub fn get_value(&self, t: &Target, name: &str) -> Result<Value, ApiError> {
        let st = self.read();
        let obj = st.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        Ok(t.typed(obj))
    }

    /// A list page as JSON bytes (see KUBESIM.md §4.14-17).
    pub fn list(&self, t: &Target, o: &ListOpts) -> Result<Vec<u8>, ApiError> {
        let ns = t.ns.clone();
        let scope = (t.ty.id, ns.clone());
        let mut after: Option<Key> = None;
        let mut served_before = 0usize;
        let mut consistent = true;
        let snap: Snapshot = {
            let mut st = self.write();
            if let Some(token) = &o.continue_token {
                let c = ContinueToken::decode(token)?;
                after = Some(Key::new(t.ty.id, &c.ns, &c.name));
                served_before = c.served;
                if c.rev < 0 {
                    consistent = false;
                    st.take_snapshot()
                } else {
                    match st.snapshot(c.rev.unsigned_abs()) {
                        Some(s) => s,
                        None => return Err(expired(token)),
                    }
                }
            } else if o.resource_version_match.as_deref() == Some("Exact") {
                let rv = parse_rv(o.resource_version.as_deref())?;
                if rv == st.rev {
                    st.take_snapshot()
                } else {
                    st.snapshot(rv).ok_or_else(|| {
                        ApiError::new(
                            410,
                            "Expired",
                            format!("too old resource version: {rv} ({})", st.rev),
                        )
                    })?
                }
            } else {
                st.take_snapshot()
            }
        };
        let filtered = !o.labels.is_empty() || !o.fields.is_empty();
        if !consistent {
            // The old count means nothing at the new revision: count what precedes the cursor.
            let total = store::scan(&snap.objects, t.ty.id, ns.as_deref(), None).count();
            let after_cursor =
                store::scan(&snap.objects, t.ty.id, ns.as_deref(), after.as_ref()).count();
            served_before = total - after_cursor;
        }
        let limit = o.limit.filter(|l| *l > 0);
        let api_version = t.api_version();
        let typed_items = t.ty.list_items_typed();

        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"kind\":");
        serde_json::to_writer(&mut out, &t.ty.list_kind).expect("string");
        out.extend_from_slice(b",\"apiVersion\":");
        serde_json::to_writer(&mut out, &api_version).expect("string");
        out.extend_from_slice(b",\"items\":[");
        let mut count = 0usize;
        let mut last: Option<&Key> = None;
        let mut more = false;
        for (key, obj) in store::scan(&snap.objects, t.ty.id, ns.as_deref(), after.as_ref()) {
            if filtered && !self.selects(o, obj) {
                continue;
            }
            if limit.is_some_and(|l| count >= l) {
                more = true;
                break;
            }
            if count > 0 {
                out.push(b',');
            }
            if typed_items {
                store::write_typed(&mut out, &obj.body, &api_version, &t.ty.kind);
            } else {
                out.extend_from_slice(&obj.body);
            }
            count += 1;
            last = Some(key);
        }
        out.extend_from_slice(b"],\"metadata\":{\"resourceVersion\":\"");
        write!(VecWriter(&mut out), "{}", snap.rev).expect("vec");
        out.push(b'"');
        if more {
            let key = last.expect("a full page has a last key");
            let token = ContinueToken {
                rev: i64::try_from(snap.rev).unwrap_or(i64::MAX),
                ns: key.ns.clone(),
                name: key.name.clone(),
                served: served_before + count,
            };
            out.extend_from_slice(b",\"continue\":");
            serde_json::to_writer(&mut out, &token.encode()).expect("string");
            if !filtered {
                let total = if let Some(total) = snap.total(&scope) {
                    total
                } else {
                    let total = store::scan(&snap.objects, t.ty.id, ns.as_deref(), None).count();
                    self.write().remember_total(snap.rev, scope, total);
                    total
                };
                let remaining = total.saturating_sub(served_before + count);
                write!(VecWriter(&mut out), ",\"remainingItemCount\":{remaining}").expect("vec");
            }
        }
        out.extend_from_slice(b"}}");
        // Move `items` after `metadata` is not needed: clients read by key. Kubernetes writes
        // metadata first; kubesim writes it last so a page streams out in one pass.
        Ok(out)
    }

    /// Whether an object passes a list's selectors (parses the object: selectors are rare).
    pub fn selects(&self, o: &ListOpts, obj: &Obj) -> bool {
        let v = obj.value();
        o.labels.matches(v.pointer("/metadata/labels")) && o.fields.matches(&v)
    }

    // ----------------------------------------------------------------------------- writes

    /// POST to a collection.
    pub fn create(&self, t: &Target, body: Value, o: &WriteOpts) -> Result<Value, ApiError> {
        let ty = &t.ty;
        let mut obj = check_body(t, body)?;
        if !ty.is_stored() {
            // Reviews and bindings: answered, never stored.
            return Ok(obj);
        }
        let mut st = self.write();
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("check_body made metadata");
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::new(
                500,
                "",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(n) => n.to_string(),
            None => match meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                Some(prefix) => generate_name(prefix),
                None => {
                    return Err(ApiError::invalid(
                        &ty.kind,
                        &ty.group,
                        "",
                        &[(
                            "FieldValueRequired",
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            },
        };
        meta.insert("name".into(), json!(name));
        if let Err(cause) = validate::name(ty.name_rule, &name) {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                &name,
                &[("FieldValueInvalid", "metadata.name".into(), cause)],
            ));
        }
        Self::check_namespace(&st, t, &name)?;
        let key = t.key(&name);
        if st.get(&key).is_some() {
            return Err(ApiError::already_exists(
                &ty.qualified(),
                &ty.group,
                &ty.plural,
                &name,
            ));
        }
        let now = now();
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now));
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.shift_remove(k);
        }
        if ty.generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.shift_remove("generation");
        }
        if ty.status_subresource {
            obj.as_object_mut().expect("object").shift_remove("status");
        }
        Self::on_create(&mut st, t, &mut obj)?;
        check_limits(ty, &name, &obj)?;
        let ctx_api = t.api_version();
        managed::record_update(
            None,
            &mut obj,
            &Self::ctx(&o.manager, &ctx_api, &now, None, ty),
        );
        normalize(&mut obj);
        if o.dry_run {
            return Ok(obj);
        }
        let events = Self::store(&mut st, t, key, &mut obj, EventType::Added);
        self.publish(events);
        drop(st);
        Ok(obj)
    }

    /// PUT of an object or its `status` subresource.
    pub fn replace(
        &self,
        t: &Target,
        name: &str,
        body: Value,
        o: &WriteOpts,
        sub: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut body = check_body(t, body)?;
        let body_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        body["metadata"]["name"] = json!(name);
        let mut st = self.write();
        let key = t.key(name);
        let live = st.get(&key).cloned().ok_or_else(|| t.not_found(name))?;
        let live_v = t.typed(&live);
        check_precondition(t, name, &body, &live_v)?;
        let new = match sub {
            Some("status") => with_status_of(&live_v, &body),
            _ => body,
        };
        let (obj, events) = Self::update(&mut st, t, &key, &live_v, new, o, sub, false)?;
        self.publish(events);
        drop(st);
        Ok(obj)
    }

    /// PATCH of an object or its `status` subresource. Returns the object and whether an apply
    /// created it (201).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        t: &Target,
        name: &str,
        ptype: PatchType,
        body: &Value,
        o: &WriteOpts,
        sub: Option<&str>,
        force: bool,
    ) -> Result<(Value, bool), ApiError> {
        let ty = &t.ty;
        if ptype == PatchType::Strategic && ty.crd.is_some() {
            return Err(ApiError::unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        if ptype == PatchType::Apply && o.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut st = self.write();
        let key = t.key(name);
        let Some(live) = st.get(&key).cloned() else {
            if ptype != PatchType::Apply || sub.is_some() {
                return Err(t.not_found(name));
            }
            drop(st);
            let applied = check_body(t, body.clone())?;
            let now = now();
            let api = t.api_version();
            let ctx = Self::ctx(&o.manager, &api, &now, sub, ty);
            let obj =
                managed::apply(None, &applied, &ctx, force).map_err(|e| patch_error(t, name, e))?;
            let mut obj = obj;
            obj["metadata"]["name"] = json!(name);
            // Create with the Apply entry already in managedFields; the create path keeps it.
            let created = self.create_applied(t, obj, o)?;
            return Ok((created, true));
        };
        let live_v = t.typed(&live);
        let now = now();
        let api = t.api_version();
        let mut patched = live_v.clone();
        let mut managed_done = false;
        match ptype {
            PatchType::Merge => {
                check_patch_object(body)?;
                patch::merge_patch(&mut patched, body);
            }
            PatchType::Json => {
                patch::json_patch(&mut patched, body).map_err(|e| patch_error(t, name, e))?;
            }
            PatchType::Strategic => {
                check_patch_object(body)?;
                patch::strategic::apply(&mut patched, body, ty.list_keys.as_ref())
                    .map_err(|e| patch_error(t, name, e))?;
            }
            PatchType::Apply => {
                let applied = check_body(t, body.clone())?;
                let applied_name = applied
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(name);
                if applied_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                    )));
                }
                let ctx = Self::ctx(&o.manager, &api, &now, sub, ty);
                patched = managed::apply(Some(&live_v), &applied, &ctx, force)
                    .map_err(|e| patch_error(t, name, e))?;
                managed_done = true;
            }
        }
        if !patched.is_object() {
            return Err(ApiError::bad_request(
                "the patch produced something that is not an object",
            ));
        }
        check_precondition(t, name, &patched, &live_v)?;
        for (field, want) in [("name", name), ("namespace", t.ns.as_deref().unwrap_or(""))] {
            let got = patched
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if got != want && !(field == "namespace" && got.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "metadata.{field}: Invalid value: \"{got}\": field is immutable"
                )));
            }
        }
        let new = match sub {
            Some("status") => with_status_of(&live_v, &patched),
            _ => patched,
        };
        let (obj, events) = Self::update(&mut st, t, &key, &live_v, new, o, sub, managed_done)?;
        self.publish(events);
        drop(st);
        Ok((obj, false))
    }

    fn create_applied(&self, t: &Target, obj: Value, o: &WriteOpts) -> Result<Value, ApiError> {
        // The create path records an Update entry for the manager; an apply-create must show
        // only the Apply entry, so keep the entries computed by `managed::apply`.
        let entries = obj.pointer("/metadata/managedFields").cloned();
        let mut created_opts = o.clone();
        created_opts.dry_run = true;
        let mut preview = self.create(t, obj, &created_opts)?;
        if let Some(e) = entries {
            preview["metadata"]["managedFields"] = e;
        }
        if o.dry_run {
            return Ok(preview);
        }
        let mut st = self.write();
        let name = preview
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = t.key(&name);
        if st.get(&key).is_some() {
            return Err(ApiError::already_exists(
                &t.ty.qualified(),
                &t.ty.group,
                &t.ty.plural,
                &name,
            ));
        }
        Self::check_namespace(&st, t, &name)?;
        Self::register_side_effects(&mut st, t, &preview)?;
        let events = Self::store(&mut st, t, key, &mut preview, EventType::Added);
        self.publish(events);
        drop(st);
        Ok(preview)
    }

    /// DELETE of one object.
    pub fn delete(
        self: &Arc<Self>,
        t: &Target,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let ty = &t.ty;
        let mut st = self.write();
        let key = t.key(name);
        let live = st.get(&key).cloned().ok_or_else(|| t.not_found(name))?;
        let mut v = t.typed(&live);
        let meta = &v["metadata"];
        if opts
            .precondition_uid
            .as_deref()
            .is_some_and(|u| meta["uid"].as_str() != Some(u))
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    ty.qualified(),
                    opts.precondition_uid.as_deref().unwrap_or_default(),
                    meta["uid"].as_str().unwrap_or_default()
                ),
            )
            .details(status::details(name, &ty.group, &ty.plural)));
        }
        if opts
            .precondition_rv
            .as_deref()
            .is_some_and(|r| meta["resourceVersion"].as_str() != Some(r))
        {
            return Err(ApiError::conflict(
                &ty.qualified(),
                &ty.group,
                &ty.plural,
                name,
            ));
        }
        let is_namespace = ty.group.is_empty() && ty.plural == "namespaces";
        let is_crd = ty.crd.is_none() && ty.plural == "customresourcedefinitions";
        if is_namespace && UNDELETABLE_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(
                &ty.qualified(),
                &ty.group,
                &ty.plural,
                name,
                "this namespace may not be deleted",
            ));
        }
        let terminating = v.pointer("/metadata/deletionTimestamp").is_some();
        let has_finalizers = v
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if terminating {
            return Ok(v);
        }
        if is_namespace || is_crd || has_finalizers {
            let m = v["metadata"].as_object_mut().expect("metadata");
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if ty.generation {
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(1);
                m.insert("generation".into(), json!(g + 1));
            }
            if is_namespace {
                v["status"]["phase"] = json!("Terminating");
            }
            if is_crd {
                add_finalizer(&mut v, CRD_CLEANUP_FINALIZER);
                set_condition(
                    &mut v,
                    "Terminating",
                    "True",
                    "InstanceDeletionPending",
                    "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
                );
            }
            if opts.dry_run {
                return Ok(v);
            }
            let events = Self::store(&mut st, t, key, &mut v, EventType::Modified);
            self.publish(events);
            drop(st);
            if is_namespace {
                self.spawn_namespace_cleanup(name.to_string());
            }
            if is_crd {
                self.spawn_crd_cleanup(name.to_string());
            }
            return Ok(v);
        }
        if opts.dry_run {
            return Ok(v);
        }
        let events = Self::remove(&mut st, t, &key, &mut v);
        self.publish(events);
        drop(st);
        if ty.return_deleted_object {
            Ok(v)
        } else {
            let uid = v
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(status::success(name, &ty.group, &ty.plural, uid))
        }
    }

    /// DELETE of a collection: the affected objects as a list.
    pub fn delete_collection(
        self: &Arc<Self>,
        t: &Target,
        lo: &ListOpts,
        o: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let names: Vec<String> = {
            let st = self.read();
            store::scan(&st.objects, t.ty.id, t.ns.as_deref(), None)
                .filter(|(_, obj)| self.selects(lo, obj))
                .map(|(k, _)| k.name.clone())
                .collect()
        };
        let mut items = Vec::new();
        for name in names {
            let Ok(before) = self.get_value(t, &name) else {
                continue;
            };
            match self.delete(t, &name, o) {
                Ok(v) if v.get("kind").and_then(Value::as_str) == Some("Status") => {
                    items.push(strip_type(before));
                }
                Ok(v) => items.push(strip_type(v)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let rev = self.read().rev;
        Ok(
            json!({"kind": t.ty.list_kind, "apiVersion": t.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
        )
    }

    /// GET of the `scale` subresource.
    pub fn get_scale(&self, t: &Target, name: &str) -> Result<Value, ApiError> {
        let v = self.get_value(t, name)?;
        Ok(scale_of(t, &v))
    }

    /// PUT or merge PATCH of the `scale` subresource: only `spec.replicas` is written back.
    pub fn set_scale(
        &self,
        t: &Target,
        name: &str,
        replicas: i64,
        o: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let paths = t.ty.scale.clone().ok_or_else(ApiError::route_not_found)?;
        let mut st = self.write();
        let key = t.key(name);
        let live = st.get(&key).cloned().ok_or_else(|| t.not_found(name))?;
        let live_v = t.typed(&live);
        let mut new = live_v.clone();
        set_path(&mut new, &paths.spec_replicas, json!(replicas));
        let (obj, events) = Self::update(&mut st, t, &key, &live_v, new, o, Some("scale"), false)?;
        self.publish(events);
        drop(st);
        Ok(scale_of(t, &obj))
    }

    /// PUT `/api/v1/namespaces/{name}/finalize`: replaces `spec.finalizers`.
    pub fn finalize_namespace(
        self: &Arc<Self>,
        t: &Target,
        name: &str,
        body: &Value,
        o: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let mut st = self.write();
        let key = t.key(name);
        let live = st.get(&key).cloned().ok_or_else(|| t.not_found(name))?;
        let live_v = t.typed(&live);
        let mut new = live_v.clone();
        new["spec"]["finalizers"] = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let (obj, events) =
            Self::update(&mut st, t, &key, &live_v, new, o, Some("finalize"), false)?;
        self.publish(events);
        drop(st);
        Ok(obj)
    }

    // ----------------------------------------------------------------------------- internals

    fn ctx<'a>(
        manager: &'a str,
        api: &'a str,
        now: &'a str,
        sub: Option<&'a str>,
        ty: &'a ResourceType,
    ) -> managed::Ctx<'a> {
        managed::Ctx {
            manager,
            api_version: api,
            now,
            subresource: sub,
            ignore_status: ty.status_subresource && sub != Some("status"),
            keys: ty.list_keys.as_ref(),
        }
    }

    fn check_namespace(st: &State, t: &Target, name: &str) -> Result<(), ApiError> {
        let Some(ns) = t.ns.as_deref() else {
            return Ok(());
        };
        let ns_ty = st.registry.find("", "namespaces").expect("builtin");
        let Some(nsobj) = st.get(&Key::new(ns_ty.id, "", ns)) else {
            return Err(ApiError::not_found("namespaces", "", "namespaces", ns));
        };
        if nsobj
            .value()
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            return Err(ApiError::forbidden(
                &t.ty.qualified(),
                &t.ty.group,
                &t.ty.plural,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// Kind-specific behaviour of a create (what a real server's registry strategies do).
    fn on_create(st: &mut State, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
        let ty = &t.ty;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (ty.group.as_str(), ty.plural.as_str()) {
            ("", "namespaces") => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "secrets") => secret_string_data(obj),
            ("", "persistentvolumes" | "persistentvolumeclaims" | "pods") => {
                obj["status"] = json!({"phase": "Pending"});
            }
            ("", "services") => service_defaults(st, obj, None)
                .map_err(|c| ApiError::invalid(&ty.kind, "", &name, &[c]))?,
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let new_ty = crd_type(obj, &name)?;
                if let Some(existing) = st.registry.find(&new_ty.group, &new_ty.plural)
                    && existing.crd.is_none()
                {
                    {
                        return Err(ApiError::invalid(
                            &ty.kind,
                            &ty.group,
                            &name,
                            &[(
                                "FieldValueInvalid",
                                "spec.names.plural".into(),
                                format!(
                                    "Invalid value: \"{}\": is already served by a built-in type",
                                    new_ty.plural
                                ),
                            )],
                        ));
                    }
                }
                crd_status(obj, &new_ty);
            }
            _ => {}
        }
        Ok(())
    }

    /// Registers what a stored object adds to the server (CRD types, service IPs).
    fn register_side_effects(st: &mut State, t: &Target, obj: &Value) -> Result<(), ApiError> {
        match (t.ty.group.as_str(), t.ty.plural.as_str()) {
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                let new_ty = crd_type(obj, name)?;
                st.registry.insert(new_ty);
                st.types_generation += 1;
            }
            ("", "services") => {
                for ip in service_ips(obj) {
                    st.cluster_ips.insert(ip);
                }
                for p in service_node_ports(obj) {
                    st.node_ports.insert(p);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn release_side_effects(st: &mut State, t: &Target, obj: &Value) {
        match (t.ty.group.as_str(), t.ty.plural.as_str()) {
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                if let Ok(ty) = type_from_crd(obj)
                    && let Some(id) = st
                        .registry
                        .find(&ty.group, &ty.plural)
                        .filter(|t| t.crd.is_some())
                        .map(|t| t.id)
                {
                    st.registry.remove(id);
                    st.types_generation += 1;
                }
            }
            ("", "services") => {
                for ip in service_ips(obj) {
                    st.cluster_ips.remove(&ip);
                }
                for p in service_node_ports(obj) {
                    st.node_ports.remove(&p);
                }
            }
            _ => {}
        }
    }

    /// Stamps a new revision, stores, and returns the event.
    fn store(
        st: &mut State,
        t: &Target,
        key: Key,
        obj: &mut Value,
        kind: EventType,
    ) -> Vec<Arc<Event>> {
        if kind == EventType::Added {
            // Validated already by on_create / create_applied.
            let _ = Self::register_side_effects(st, t, obj);
        }
        let rev = st.next_rev();
        obj["metadata"]["resourceVersion"] = json!(rev.to_string());
        let stored = Arc::new(Obj::from_value(obj));
        vec![st.put(key, stored, kind)]
    }

    fn remove(st: &mut State, t: &Target, key: &Key, obj: &mut Value) -> Vec<Arc<Event>> {
        let rev = st.next_rev();
        obj["metadata"]["resourceVersion"] = json!(rev.to_string());
        Self::release_side_effects(st, t, obj);
        let last = Arc::new(Obj::from_value(obj));
        vec![st.remove(key, last)]
    }

    /// The shared tail of PUT, PATCH and subresource writes.
    #[allow(clippy::too_many_arguments)]
    fn update(
        st: &mut State,
        t: &Target,
        key: &Key,
        live: &Value,
        mut new: Value,
        o: &WriteOpts,
        sub: Option<&str>,
        managed_fields_done: bool,
    ) -> Result<(Value, Vec<Arc<Event>>), ApiError> {
        let ty = &t.ty;
        let name = key.name.as_str();
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(ty.kind);
        // Immutable and server-owned metadata comes from the live object.
        {
            let lm = live["metadata"].as_object().cloned().unwrap_or_default();
            let m = new["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match lm.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.shift_remove(k);
                    }
                }
            }
            m.insert("name".into(), json!(name));
            if let Some(ns) = lm.get("namespace") {
                m.insert("namespace".into(), ns.clone());
            }
            m.shift_remove("selfLink");
        }
        if live.pointer("/metadata/deletionTimestamp").is_some() {
            let old: BTreeSet<&str> = finalizers(live).collect();
            let added: Vec<&str> = finalizers(&new).filter(|f| !old.contains(f)).collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &ty.kind,
                    &ty.group,
                    name,
                    &[(
                        "FieldValueForbidden",
                        "metadata.finalizers".into(),
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                            added
                                .iter()
                                .map(|f| format!("\"{f}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )],
                ));
            }
        }
        // Writes to the main resource never change status when a status subresource exists.
        if ty.status_subresource && sub.is_none() {
            match live.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().expect("object").shift_remove("status");
                }
            }
        }
        match (ty.group.as_str(), ty.plural.as_str()) {
            ("", "secrets") => secret_string_data(&mut new),
            ("", "services") if sub.is_none() => {
                service_defaults(st, &mut new, Some(live))
                    .map_err(|c| ApiError::invalid(&ty.kind, "", name, &[c]))?;
            }
            ("", "namespaces") if sub.is_none() => {
                new["spec"] = live.get("spec").cloned().unwrap_or_else(|| json!({}));
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") if sub.is_none() => {
                let new_ty = crd_type(&new, name)?;
                let old_ty = type_from_crd(live).ok();
                if old_ty
                    .as_ref()
                    .is_some_and(|o| o.group != new_ty.group || o.plural != new_ty.plural)
                {
                    return Err(ApiError::invalid(
                        &ty.kind,
                        &ty.group,
                        name,
                        &[(
                            "FieldValueInvalid",
                            "spec.group".into(),
                            "Invalid value: field is immutable".into(),
                        )],
                    ));
                }
                crd_status(&mut new, &new_ty);
                // Keep the Terminating condition of a CRD being deleted.
                if live.pointer("/metadata/deletionTimestamp").is_some() {
                    set_condition(
                        &mut new,
                        "Terminating",
                        "True",
                        "InstanceDeletionInProgress",
                        "CustomResource deletion is in progress",
                    );
                }
            }
            _ => {}
        }
        if ty.generation && spec_changed(live, &new, ty.status_subresource) {
            let g = live
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        check_limits(ty, name, &new)?;
        if !managed_fields_done {
            let now = now();
            let api = t.api_version();
            let ctx = Self::ctx(&o.manager, &api, &now, sub, ty);
            managed::record_update(Some(live), &mut new, &ctx);
        }
        normalize(&mut new);
        if same_ignoring_times(live, &new) {
            return Ok((live.clone(), Vec::new()));
        }
        let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new).next().is_none();
        let namespace_done = ty.group.is_empty()
            && ty.plural == "namespaces"
            && new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            && finalizers(&new).next().is_none();
        if o.dry_run {
            return Ok((new, Vec::new()));
        }
        if ty.plural == "customresourcedefinitions" && ty.crd.is_none() && sub.is_none() {
            let new_ty = crd_type(&new, name)?;
            st.registry.insert(new_ty);
            st.types_generation += 1;
        }
        if ty.plural == "services" && ty.group.is_empty() {
            Self::release_side_effects(st, t, live);
            let _ = Self::register_side_effects(st, t, &new);
        }
        let events = if finalized && (ty.plural != "namespaces" || namespace_done) {
            Self::remove(st, t, key, &mut new)
        } else {
            Self::store(st, t, key.clone(), &mut new, EventType::Modified)
        };
        Ok((new, events))
    }

    /// Deletes every object of a namespace (respecting their finalizers), then the namespace:
    /// what the namespace controller does after a DELETE.
    fn spawn_namespace_cleanup(self: &Arc<Self>, ns: String) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let notified = this.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if this.namespace_cleanup_step(&ns) {
                    return;
                }
                notified.await;
            }
        });
    }

    /// One pass; true when the namespace is gone.
    fn namespace_cleanup_step(self: &Arc<Self>, ns: &str) -> bool {
        let (targets, ns_ty) = {
            let st = self.read();
            let ns_ty = st
                .registry
                .find("", "namespaces")
                .cloned()
                .expect("builtin");
            let mut targets = Vec::new();
            for ty in st.registry.iter().filter(|t| t.namespaced && t.is_stored()) {
                let names: Vec<String> = store::scan(&st.objects, ty.id, Some(ns), None)
                    .map(|(k, _)| k.name.clone())
                    .collect();
                if !names.is_empty() {
                    targets.push((ty.clone(), names));
                }
            }
            (targets, ns_ty)
        };
        let ns_target = Target {
            ty: ns_ty,
            version: "v1".into(),
            ns: None,
        };
        if targets.is_empty() {
            // Content gone: drop the `kubernetes` finalizer, which removes the namespace.
            let Ok(live) = self.get_value(&ns_target, ns) else {
                return true;
            };
            if live.pointer("/metadata/deletionTimestamp").is_none() {
                return true;
            }
            let body = json!({"spec": {"finalizers": []}});
            let _ = self.finalize_namespace(
                &ns_target,
                ns,
                &body,
                &WriteOpts {
                    manager: "namespace-controller".into(),
                    dry_run: false,
                },
            );
            return self.get_value(&ns_target, ns).is_err();
        }
        for (ty, names) in targets {
            let t = Target {
                version: ty.preferred_version().to_string(),
                ty,
                ns: Some(ns.to_string()),
            };
            for name in names {
                let _ = self.delete(&t, &name, &DeleteOpts::default());
            }
        }
        false
    }

    /// Deletes every custom resource of a CRD being deleted, then lets the CRD go.
    fn spawn_crd_cleanup(self: &Arc<Self>, crd_name: String) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let notified = this.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if this.crd_cleanup_step(&crd_name) {
                    return;
                }
                notified.await;
            }
        });
    }

    fn crd_cleanup_step(self: &Arc<Self>, crd_name: &str) -> bool {
        let (crd_t, cr_ty, remaining) = {
            let st = self.read();
            let crd_ty = st
                .registry
                .find("apiextensions.k8s.io", "customresourcedefinitions")
                .cloned()
                .expect("builtin");
            let crd_t = Target {
                ty: crd_ty,
                version: "v1".into(),
                ns: None,
            };
            let custom_ty = st
                .registry
                .iter()
                .find(|t| t.crd.as_deref() == Some(crd_name))
                .cloned();
            let remaining: Vec<(String, String)> = custom_ty
                .as_ref()
                .map(|ty| {
                    store::scan(&st.objects, ty.id, None, None)
                        .map(|(k, _)| (k.ns.clone(), k.name.clone()))
                        .collect()
                })
                .unwrap_or_default();
            (crd_t, custom_ty, remaining)
        };
        if remaining.is_empty() {
            let Ok(mut live) = self.get_value(&crd_t, crd_name) else {
                return true;
            };
            if let Some(f) = live["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x.as_str() != Some(CRD_CLEANUP_FINALIZER));
            }
            let _ = self.replace(
                &crd_t,
                crd_name,
                live,
                &WriteOpts {
                    manager: "apiextensions-apiserver".into(),
                    dry_run: false,
                },
                None,
            );
            return self.get_value(&crd_t, crd_name).is_err();
        }
        if let Some(ty) = cr_ty {
            for (ns, name) in remaining {
                let t = Target {
                    version: ty.preferred_version().to_string(),
                    ty: ty.clone(),
                    ns: (!ns.is_empty()).then_some(ns),
                };
                let _ = self.delete(&t, &name, &DeleteOpts::default());
            }
        }
        false
    }

    /// The type id of a type by group and plural, if served.
    pub fn type_id(&self, group: &str, plural: &str) -> Option<TypeId> {
        self.read().registry.find(group, plural).map(|t| t.id)
    }
}

/// Checks and normalises a request body: an object whose apiVersion/kind (when given) match the
/// URL, with `metadata` an object and the URL's namespace.
fn check_body(t: &Target, body: Value) -> Result<Value, ApiError> {
    let Value::Object(mut m) = body else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    if let Some(av) = m.get("apiVersion").and_then(Value::as_str) {
        let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
        if g != t.ty.group || !t.ty.serves(v) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                t.api_version()
            )));
        }
    }
    if let Some(kind) = m.get("kind").and_then(Value::as_str)
        && kind != t.ty.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.ty.kind
        )));
    }
    m.shift_remove("apiVersion");
    m.shift_remove("kind");
    let mut meta = match m.shift_remove("metadata") {
        Some(Value::Object(meta)) => meta,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
    };
    match (&t.ns, meta.get("namespace").and_then(Value::as_str)) {
        (Some(url), Some(body)) if !body.is_empty() && body != url => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (Some(url), _) => {
            meta.insert("namespace".into(), json!(url));
        }
        (None, _) => {
            meta.shift_remove("namespace");
        }
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(t.api_version()));
    out.insert("kind".into(), json!(t.ty.kind));
    out.insert("metadata".into(), Value::Object(meta));
    out.extend(m);
    Ok(Value::Object(out))
}

fn check_patch_object(body: &Value) -> Result<(), ApiError> {
    if body.is_object() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ))
    }
}

/// A body carrying `metadata.resourceVersion` is an optimistic-lock precondition.
fn check_precondition(t: &Target, name: &str, body: &Value, live: &Value) -> Result<(), ApiError> {
    let want = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let have = live
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    match want {
        Some(w) if Some(w) != have => Err(ApiError::conflict(
            &t.ty.qualified(),
            &t.ty.group,
            &t.ty.plural,
            name,
        )),
        _ => Ok(()),
    }
}

fn patch_error(t: &Target, name: &str, e: PatchError) -> ApiError {
    match e {
        PatchError::BadRequest(m) => ApiError::bad_request(m),
        // What the apiserver's NewGenericServerResponse builds for a patch that cannot apply.
        PatchError::Unprocessable(m) => ApiError::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        )
        .details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": m}]})),
        PatchError::Conflicts(c) => {
            let causes: Vec<Value> = c
                .iter()
                .map(|c| {
                    let who = if c.operation == "Update" {
                        format!("conflict with \"{}\" using {}", c.manager, c.api_version)
                    } else {
                        format!("conflict with \"{}\"", c.manager)
                    };
                    json!({"reason": "FieldManagerConflict", "message": who, "field": c.field})
                })
                .collect();
            let mut d = status::details(name, &t.ty.group, &t.ty.plural);
            d["causes"] = json!(causes);
            ApiError::new(409, "Conflict", managed::conflict_message(&c)).details(d)
        }
    }
}

/// The live object with only `status` taken from `body` (writes to `/status`).
fn with_status_of(live: &Value, body: &Value) -> Value {
    let mut out = live.clone();
    match body.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            out.as_object_mut().expect("object").shift_remove("status");
        }
    }
    if let Some(mf) = body.pointer("/metadata/managedFields") {
        out["metadata"]["managedFields"] = mf.clone();
    }
    out
}

fn spec_changed(old: &Value, new: &Value, status_sub: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.shift_remove("metadata");
            m.shift_remove("apiVersion");
            m.shift_remove("kind");
            if status_sub {
                m.shift_remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// Equal apart from managedFields timestamps: such a write is a no-op (no revision, no event).
fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(mf) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in mf {
                if let Some(m) = e.as_object_mut() {
                    m.shift_remove("time");
                }
            }
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.shift_remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

fn finalizers(v: &Value) -> impl Iterator<Item = &str> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn add_finalizer(v: &mut Value, f: &str) {
    if finalizers(v).any(|x| x == f) {
        return;
    }
    match v["metadata"]["finalizers"].as_array_mut() {
        Some(a) => a.push(json!(f)),
        None => v["metadata"]["finalizers"] = json!([f]),
    }
}

fn set_condition(v: &mut Value, ctype: &str, status: &str, reason: &str, message: &str) {
    let cond = json!({"type": ctype, "status": status, "lastTransitionTime": now(), "reason": reason, "message": message});
    if !v["status"].is_object() {
        v["status"] = json!({});
    }
    let conds = &mut v["status"]["conditions"];
    if !conds.is_array() {
        *conds = json!([]);
    }
    let arr = conds.as_array_mut().expect("array");
    match arr.iter_mut().find(|c| c["type"] == ctype) {
        Some(c) => {
            if c["status"] != status {
                *c = cond;
            }
        }
        None => arr.push(cond),
    }
}

/// Keeps `metadata` right after type meta, as the real server's encoding does.
fn normalize(v: &mut Value) {
    if let Some(m) = v.as_object_mut()
        && let Some(meta) = m.shift_remove("metadata")
    {
        {
            let rest = std::mem::take(m);
            for k in ["apiVersion", "kind"] {
                if let Some(x) = rest.get(k) {
                    m.insert(k.into(), x.clone());
                }
            }
            m.insert("metadata".into(), meta);
            for (k, x) in rest {
                if k != "apiVersion" && k != "kind" {
                    m.insert(k, x);
                }
            }
        }
    }
}

fn strip_type(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.shift_remove("apiVersion");
        m.shift_remove("kind");
    }
    v
}

/// Secret `stringData` is write-only: merged into `data` as base64, never stored.
fn secret_string_data(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if let Some(Value::Object(sd)) = m.shift_remove("stringData") {
        if !m.get("data").is_some_and(Value::is_object) {
            m.insert("data".into(), json!({}));
        }
        let data = m
            .get_mut("data")
            .and_then(Value::as_object_mut)
            .expect("object");
        for (k, v) in sd {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
    if !m.contains_key("type") {
        m.insert("type".into(), json!("Opaque"));
    }
}

/// Service defaults and the cluster IP and node port allocators.
fn service_defaults(
    st: &mut State,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), (&'static str, String, String)> {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = obj["spec"].as_object_mut().expect("object");
    let stype = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    spec.insert("type".into(), json!(stype));
    spec.entry("sessionAffinity").or_insert(json!("None"));
    if stype == "ExternalName" {
        return Ok(());
    }
    // An update that omits allocated values keeps them, like the real service REST.
    if let Some(old) = old {
        for k in ["clusterIP", "clusterIPs"] {
            if !spec.contains_key(k)
                && let Some(v) = old.pointer(&format!("/spec/{k}"))
            {
                spec.insert(k.into(), v.clone());
            }
        }
    }
    let old_ips: Vec<String> = old.map(service_ips).unwrap_or_default();
    let ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = if ip.is_empty() {
        spec.get("clusterIPs")
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        ip
    };
    let ip = if ip.is_empty() {
        loop {
            let n = st.next_ip;
            st.next_ip += 1;
            let candidate = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
            if !st.cluster_ips.contains(&candidate) && n & 0xff != 0 {
                break candidate;
            }
        }
    } else {
        if ip != "None" && st.cluster_ips.contains(&ip) && !old_ips.contains(&ip) {
            return Err((
                "FieldValueInvalid",
                "spec.clusterIPs".into(),
                format!(
                    "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
                ),
            ));
        }
        ip
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
    spec.entry("internalTrafficPolicy")
        .or_insert(json!("Cluster"));
    let wants_node_ports = stype == "NodePort" || stype == "LoadBalancer";
    let old_ports: Vec<u16> = old.map(service_node_ports).unwrap_or_default();
    let mut taken: Vec<u16> = Vec::new();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(p) = p.as_object_mut() else { continue };
            p.entry("protocol").or_insert(json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                p.entry("targetPort").or_insert(port);
            }
            if !wants_node_ports {
                continue;
            }
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                let np = u16::try_from(np).unwrap_or(0);
                if st.node_ports.contains(&np) && !old_ports.contains(&np) {
                    return Err((
                        "FieldValueInvalid",
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {np}: provided port is already allocated"),
                    ));
                }
            } else {
                // Allocation is recorded when the Service is stored, so a dry run takes nothing.
                let np = (30000u16..=32767)
                    .find(|n| !st.node_ports.contains(n) && !taken.contains(n))
                    .unwrap_or(30000);
                taken.push(np);
                p.insert("nodePort".into(), json!(np));
            }
        }
    }
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({"loadBalancer": {}});
    }
    Ok(())
}

fn service_ips(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| *s != "None")
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn service_node_ports(obj: &Value) -> Vec<u16> {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .map(|n| n as u16)
                .collect()
        })
        .unwrap_or_default()
}

fn crd_type(obj: &Value, name: &str) -> Result<ResourceType, ApiError> {
    let invalid = |field: &str, msg: String| {
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            name,
            &[("FieldValueInvalid", field.into(), msg)],
        )
    };
    let ty = type_from_crd(obj).map_err(|m| {
        let (field, msg) = m.split_once(": ").unwrap_or(("spec", m.as_str()));
        invalid(field, msg.to_string())
    })?;
    let want = format!("{}.{}", ty.plural, ty.group);
    if want != name {
        return Err(invalid(
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    Ok(ty)
}

/// What the apiextensions controllers write into a CRD's status right after it is accepted.
fn crd_status(obj: &mut Value, ty: &ResourceType) {
    let mut names = obj["spec"]["names"].clone();
    names["singular"] = json!(ty.singular);
    names["listKind"] = json!(ty.list_kind);
    let storage: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let mut stored = obj
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let conditions = obj.pointer("/status/conditions").cloned();
    obj["status"] = json!({"acceptedNames": names, "storedVersions": stored});
    if let Some(c) = conditions {
        obj["status"]["conditions"] = c;
    }
    set_condition(
        obj,
        "NamesAccepted",
        "True",
        "NoConflicts",
        "no conflicts found",
    );
    set_condition(
        obj,
        "Established",
        "True",
        "InitialNamesAccepted",
        "the initial names have been accepted",
    );
}

/// The 1 MiB data limit of ConfigMaps and Secrets and the 256 KiB annotation limit.
fn check_limits(ty: &ResourceType, name: &str, obj: &Value) -> Result<(), ApiError> {
    let annotations: usize = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map_or(0, |a| {
            a.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        });
    if annotations > 262_144 {
        return Err(ApiError::invalid(
            &ty.kind,
            &ty.group,
            name,
            &[(
                "FieldValueTooLong",
                "metadata.annotations".into(),
                "Too long: must have at most 262144 bytes".into(),
            )],
        ));
    }
    if ty.group.is_empty() && (ty.plural == "configmaps" || ty.plural == "secrets") {
        let size: usize = ["data", "binaryData"]
            .iter()
            .filter_map(|k| obj.get(*k).and_then(Value::as_object))
            .flat_map(|m| m.iter())
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > 1_048_576 {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                name,
                &[(
                    "FieldValueTooLong",
                    "[]".into(),
                    "Too long: must have at most 1048576 bytes".into(),
                )],
            ));
        }
    }
    Ok(())
}

fn scale_of(t: &Target, v: &Value) -> Value {
    let paths =
        t.ty.scale
            .clone()
            .unwrap_or_else(|| crate::registry::ScalePaths {
                spec_replicas: "spec.replicas".into(),
                status_replicas: "status.replicas".into(),
                label_selector: None,
            });
    let get = |p: &str| {
        let mut cur = v;
        for seg in p.split('.') {
            cur = match cur.get(seg) {
                Some(x) => x,
                None => return Value::Null,
            };
        }
        cur.clone()
    };
    let selector = paths.label_selector.as_deref().map(get).map(|s| match s {
        Value::Object(o) => o
            .get("matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        Value::String(s) => s,
        _ => String::new(),
    });
    let meta = &v["metadata"];
    let mut out = json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": get(&paths.spec_replicas).as_i64().unwrap_or(0)},
        "status": {"replicas": get(&paths.status_replicas).as_i64().unwrap_or(0)},
    });
    if let Some(ns) = meta.get("namespace") {
        out["metadata"]["namespace"] = ns.clone();
    }
    if let Some(s) = selector {
        out["status"]["selector"] = json!(s);
    }
    out
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let segs: Vec<&str> = path.split('.').collect();
    for seg in &segs[..segs.len() - 1] {
        if !cur[*seg].is_object() {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
    cur[segs[segs.len() - 1]] = value;
}

fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let prefix: String = prefix.chars().take(58).collect();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// RFC 3339 UTC with seconds, as metav1.Time serialises.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_rv(rv: Option<&str>) -> Result<u64, ApiError> {
    rv.unwrap_or("0").parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid resource version: {}",
            rv.unwrap_or_default()
        ))
    })
}

/// The apiserver's continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"key\u0000"}`.
/// `rv` -1 marks an inconsistent continuation (after a 410). kubesim adds `n`, the number of
/// items served so far, to answer `remainingItemCount` without counting; clients treat tokens
/// as opaque.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinueToken {
    pub rev: i64,
    pub ns: String,
    pub name: String,
    pub served: usize,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let start = if self.ns.is_empty() {
            format!("{}\u{0}", self.name)
        } else {
            format!("{}/{}\u{0}", self.ns, self.name)
        };
        let doc = json!({"v": "meta.k8s.io/v1", "rv": self.rev, "start": start, "n": self.served});
        base64::engine::general_purpose::STANDARD.encode(doc.to_string())
    }

    pub fn decode(token: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token))
            .map_err(|_| bad())?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if doc["v"] != "meta.k8s.io/v1" {
            return Err(bad());
        }
        let rev = doc["rv"].as_i64().ok_or_else(bad)?;
        let start = doc["start"]
            .as_str()
            .ok_or_else(bad)?
            .trim_end_matches('\u{0}');
        let (ns, name) = start.split_once('/').unwrap_or(("", start));
        Ok(ContinueToken {
            rev,
            ns: ns.to_string(),
            name: name.to_string(),
            served: doc["n"].as_u64().unwrap_or(0) as usize,
        })
    }
}

/// 410 Expired for a continue token, carrying the inconsistent token that resumes after the
/// same key at the newest revision.
pub fn expired(token: &str) -> ApiError {
    let next = ContinueToken::decode(token).ok().map(|mut c| {
        c.rev = -1;
        c.encode()
    });
    ApiError::expired_continue(next)
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
