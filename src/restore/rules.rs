//! The restore rules of DESIGN.md "Restore rules", as pure functions over objects as the archive
//! stores them (full JSON, as the source API server returned them): which kinds and objects are
//! never restored, the order of priority tiers, how an object is made creatable in another
//! cluster (sanitising and namespace mapping), how a restored PersistentVolume is pointed at its
//! new EBS volume, and how a backed-up object is compared with a live one.
//!
//! No IO and no Kubernetes client here: the planner and the applier in `restore` call these, and
//! so can the drill and the tests. Velero's restore item actions are the floor; where lifeboat
//! goes further, the doc comment says why.
//!
//! Resources are named `<plural>[.<group>]` as discovery and the archive name them
//! (`configmaps`, `deployments.apps`, `leases.coordination.k8s.io`); a name without a group is a
//! core resource, so `deployments` is not `deployments.apps`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Tiers
// ---------------------------------------------------------------------------------------------

/// Priority tiers, restored in this order (DESIGN.md): CRDs; namespaces; storageclasses,
/// priorityclasses; persistentvolumes, persistentvolumeclaims; clusterroles, roles,
/// serviceaccounts, clusterrolebindings, rolebindings; secrets, configmaps, limitranges,
/// resourcequotas; services; everything else (custom resources included); workloads last
/// (deployments, statefulsets, daemonsets, cronjobs, jobs, pods, replicasets,
/// replicationcontrollers).
///
/// The order is what an object needs to exist before it can be created or work: custom
/// resources need their CRD, namespaced objects their namespace, PVCs their class, pods their
/// claims, accounts, secrets and config. Workloads come last so that their pods start with
/// everything they mount already there, instead of crash-looping through the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Crds,
    Namespaces,
    ClusterConfig,
    Storage,
    Rbac,
    Config,
    Services,
    Other,
    Workloads,
}

impl Tier {
    /// Every tier, in restore order.
    pub const ALL: [Tier; 9] = [
        Tier::Crds,
        Tier::Namespaces,
        Tier::ClusterConfig,
        Tier::Storage,
        Tier::Rbac,
        Tier::Config,
        Tier::Services,
        Tier::Other,
        Tier::Workloads,
    ];

    /// A short name for reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Crds => "crds",
            Tier::Namespaces => "namespaces",
            Tier::ClusterConfig => "cluster-config",
            Tier::Storage => "storage",
            Tier::Rbac => "rbac",
            Tier::Config => "config",
            Tier::Services => "services",
            Tier::Other => "other",
            Tier::Workloads => "workloads",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tier a resource (`<plural>[.<group>]`) is restored in.
///
/// Beyond the brief's lists, the cluster-config tier also holds `volumeattributesclasses` (PVCs
/// name them, like storage classes) and `runtimeclasses` (the API server rejects a pod whose
/// runtime class does not exist).
pub fn tier(resource: &str) -> Tier {
    match resource {
        "customresourcedefinitions.apiextensions.k8s.io" => Tier::Crds,
        "namespaces" => Tier::Namespaces,
        "storageclasses.storage.k8s.io"
        | "volumeattributesclasses.storage.k8s.io"
        | "priorityclasses.scheduling.k8s.io"
        | "runtimeclasses.node.k8s.io" => Tier::ClusterConfig,
        "persistentvolumes" | "persistentvolumeclaims" => Tier::Storage,
        "clusterroles.rbac.authorization.k8s.io"
        | "roles.rbac.authorization.k8s.io"
        | "serviceaccounts"
        | "clusterrolebindings.rbac.authorization.k8s.io"
        | "rolebindings.rbac.authorization.k8s.io" => Tier::Rbac,
        "secrets" | "configmaps" | "limitranges" | "resourcequotas" => Tier::Config,
        "services" => Tier::Services,
        "deployments.apps"
        | "statefulsets.apps"
        | "daemonsets.apps"
        | "replicasets.apps"
        | "cronjobs.batch"
        | "jobs.batch"
        | "pods"
        | "replicationcontrollers" => Tier::Workloads,
        _ => Tier::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// Never restored
// ---------------------------------------------------------------------------------------------

/// What [`never_restored`] needs to know about the rest of the backup.
#[derive(Debug, Clone, Default)]
pub struct SkipContext {
    /// Services that have a selector, as `(namespace, name)` in the archive (before any
    /// namespace mapping): their Endpoints are written by the endpoints controller.
    pub services_with_selector: BTreeSet<(String, String)>,
}

impl SkipContext {
    /// Notes what an archived object tells about the others (call it for every object before
    /// judging Endpoints).
    pub fn observe(&mut self, resource: &str, obj: &Value) {
        if resource == "services"
            && obj
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_some_and(|s| !s.is_empty())
        {
            self.services_with_selector
                .insert((namespace_of(obj).to_string(), name_of(obj).to_string()));
        }
    }
}

/// Kinds that are never restored, whatever the object, and why.
const NEVER_RESTORED_KINDS: &[(&str, &str)] = &[
    (
        "nodes",
        "nodes register themselves when they join the cluster",
    ),
    (
        "events",
        "events are the old cluster's history, not its state",
    ),
    (
        "events.events.k8s.io",
        "events are the old cluster's history, not its state",
    ),
    (
        "csinodes.storage.k8s.io",
        "each node's kubelet writes its own CSINode",
    ),
    (
        "volumeattachments.storage.k8s.io",
        "the attach/detach controller creates volume attachments when a pod using the volume is scheduled",
    ),
    (
        "leases.coordination.k8s.io",
        "leases are heartbeats and leader locks that their holders renew; a restored one would be a stale lock",
    ),
    (
        "leasecandidates.coordination.k8s.io",
        "lease candidates are written by the components that run for leader election",
    ),
    (
        "componentstatuses",
        "component statuses are read-only reports on the old control plane",
    ),
    (
        "csistoragecapacities.storage.k8s.io",
        "CSI drivers publish their storage capacity themselves",
    ),
    (
        "resourceslices.resource.k8s.io",
        "DRA drivers publish the resource slices of their nodes themselves",
    ),
    (
        "certificatesigningrequests.certificates.k8s.io",
        "a certificate signing request is tied to the old cluster's CA and requester; it cannot carry over",
    ),
    (
        "ipaddresses.networking.k8s.io",
        "the API server allocates an IPAddress for each Service's cluster IP; restored Services get new ones",
    ),
    (
        "storageversions.internal.apiserver.k8s.io",
        "each API server records its own storage versions",
    ),
    ("bindings", "a create-only request kind, not stored state"),
    (
        "tokenreviews.authentication.k8s.io",
        "a create-only request kind, not stored state",
    ),
    (
        "selfsubjectreviews.authentication.k8s.io",
        "a create-only request kind, not stored state",
    ),
    (
        "subjectaccessreviews.authorization.k8s.io",
        "a create-only request kind, not stored state",
    ),
    (
        "selfsubjectaccessreviews.authorization.k8s.io",
        "a create-only request kind, not stored state",
    ),
    (
        "selfsubjectrulesreviews.authorization.k8s.io",
        "a create-only request kind, not stored state",
    ),
    (
        "localsubjectaccessreviews.authorization.k8s.io",
        "a create-only request kind, not stored state",
    ),
];

/// Kinds whose controller-owned objects are recreated by their controller.
const RECREATED_BY_OWNER: &[&str] = &[
    "pods",
    "replicasets.apps",
    "jobs.batch",
    "controllerrevisions.apps",
];

/// Label on EndpointSlices naming the controller that writes them.
const SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Label the endpoints controller puts on the Endpoints it writes (Kubernetes 1.33+).
const ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// Annotation of leader-election records kept in ConfigMaps or Endpoints (before Leases).
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Why an object is never restored, or `None`. Called on the object as archived (before
/// [`sanitize`]), so owner references and status are still there.
///
/// Never restored:
/// - kinds that are not state or that their cluster writes itself: nodes, events (core and
///   events.k8s.io), csinodes, volumeattachments, leases, lease candidates, componentstatuses,
///   CSI storage capacities, DRA resource slices, certificate signing requests, Service
///   IPAddresses, storage versions, and the create-only review kinds;
/// - objects a controller recreates: pods, replicasets, jobs and controllerrevisions with a
///   controller owner reference (any owner kind: a Rollout's ReplicaSets or an operator's pods are
///   recreated just as a Deployment's are, and a restored copy would be an orphan beside them);
///   EndpointSlices labelled `endpointslice.kubernetes.io/managed-by` or owned by a Service;
///   Endpoints of a Service with a selector, or labelled by the endpoints controller; static-pod
///   mirrors; leader-election records kept in ConfigMaps or Endpoints;
/// - finished pods (Succeeded, Failed) and finished Jobs (Complete, Failed), as Velero does:
///   restoring them would run them again;
/// - what each cluster publishes about itself: the `kube-root-ca.crt` ConfigMaps,
///   `kube-public/cluster-info`, `kube-system/extension-apiserver-authentication`, the API
///   server's own `default/kubernetes` Service, Endpoints and EndpointSlice, its default
///   `kubernetes` ServiceCIDR, local or auto-registered APIServices, the bootstrap RBAC policy
///   (`kubernetes.io/bootstrapping: rbac-defaults`, unless its auto-update is turned off), and
///   the API priority and fairness objects the API server keeps up to date. Restoring these with
///   the update policy would overwrite the new cluster's own with the old cluster's.
///
/// Namespace objects are always restored, `default` and `kube-*` included: they exist in every
/// cluster, so restoring them is harmless, and their labels and annotations are the user's.
pub fn never_restored(resource: &str, obj: &Value, ctx: &SkipContext) -> Option<String> {
    if let Some((_, why)) = NEVER_RESTORED_KINDS.iter().find(|(r, _)| *r == resource) {
        return Some((*why).to_string());
    }
    if group_of(resource) == "metrics.k8s.io" {
        return Some("metrics are measured live, not stored".to_string());
    }
    let ns = namespace_of(obj);
    let name = name_of(obj);

    // Before the owner rule: a mirror pod's controller owner is its Node.
    if resource == "pods" && annotation(obj, "kubernetes.io/config.mirror").is_some() {
        return Some("a mirror of a static pod; the kubelet of its node recreates it".to_string());
    }
    if RECREATED_BY_OWNER.contains(&resource)
        && let Some(owner) = controller_owner(obj)
    {
        return Some(format!(
            "managed by its owner {} {}, which recreates it",
            owner.kind, owner.name
        ));
    }

    match resource {
        "pods" => {
            if let Some(phase @ ("Succeeded" | "Failed")) = str_at(obj, "/status/phase") {
                return Some(format!(
                    "the pod had finished ({phase}); restoring it would run it again"
                ));
            }
        }
        "jobs.batch" => {
            if let Some(how) = job_finished(obj) {
                return Some(format!(
                    "the job had finished ({how}); restoring it would run it again"
                ));
            }
        }
        "services" if ns == "default" && name == "kubernetes" => {
            return Some(
                "the API server's own Service, which every cluster's API server maintains"
                    .to_string(),
            );
        }
        "endpoints" => {
            if ns == "default" && name == "kubernetes" {
                return Some(
                    "the API server's own endpoints, which every cluster's API server maintains"
                        .to_string(),
                );
            }
            if ctx
                .services_with_selector
                .contains(&(ns.to_string(), name.to_string()))
            {
                return Some(format!(
                    "managed by the endpoints controller for Service {name}, which has a selector; it is recreated from the restored pods"
                ));
            }
            if let Some(by) = label(obj, ENDPOINTS_MANAGED_BY) {
                return Some(format!("managed by {by}, which recreates it"));
            }
            if annotation(obj, LEADER_ANNOTATION).is_some() {
                return Some(
                    "a leader-election record; the elected process rewrites it".to_string(),
                );
            }
        }
        "endpointslices.discovery.k8s.io" => {
            if ns == "default" && label(obj, "kubernetes.io/service-name") == Some("kubernetes") {
                return Some(
                    "the API server's own endpoints, which every cluster's API server maintains"
                        .to_string(),
                );
            }
            if let Some(by) = label(obj, SLICE_MANAGED_BY) {
                return Some(format!("managed by {by}, which recreates it"));
            }
            if let Some(owner) = controller_owner(obj).filter(|o| o.kind == "Service") {
                return Some(format!(
                    "managed by the EndpointSlice controller for Service {}, which recreates it",
                    owner.name
                ));
            }
        }
        "configmaps" => {
            if name == "kube-root-ca.crt" {
                return Some(
                    "every namespace gets its own copy of the cluster's CA certificate from the root CA publisher"
                        .to_string(),
                );
            }
            if ns == "kube-public" && name == "cluster-info" {
                return Some(
                    "published by the bootstrap signer with the cluster's own CA and address"
                        .to_string(),
                );
            }
            if ns == "kube-system" && name == "extension-apiserver-authentication" {
                return Some(
                    "written by the API server with the cluster's own client CA".to_string(),
                );
            }
            if annotation(obj, LEADER_ANNOTATION).is_some() {
                return Some(
                    "a leader-election record; the elected process rewrites it".to_string(),
                );
            }
        }
        "apiservices.apiregistration.k8s.io" => {
            if label(obj, "kube-aggregator.kubernetes.io/automanaged").is_some() {
                return Some(
                    "registered automatically by the API server (for a built-in group or a CRD)"
                        .to_string(),
                );
            }
            if obj.pointer("/spec/service").is_none_or(Value::is_null) {
                return Some(
                    "a local APIService, served by the API server itself and registered by it"
                        .to_string(),
                );
            }
        }
        "clusterroles.rbac.authorization.k8s.io"
        | "clusterrolebindings.rbac.authorization.k8s.io"
        | "roles.rbac.authorization.k8s.io"
        | "rolebindings.rbac.authorization.k8s.io"
            if label(obj, "kubernetes.io/bootstrapping") == Some("rbac-defaults")
                && annotation(obj, "rbac.authorization.kubernetes.io/autoupdate")
                    != Some("false") =>
        {
            return Some(
                "built-in RBAC policy, which every API server creates and reconciles when it starts"
                    .to_string(),
            );
        }
        "flowschemas.flowcontrol.apiserver.k8s.io"
        | "prioritylevelconfigurations.flowcontrol.apiserver.k8s.io"
            if annotation(obj, "apf.kubernetes.io/autoupdate-spec") == Some("true") =>
        {
            return Some(
                "built-in API priority and fairness configuration, which the API server keeps up to date"
                    .to_string(),
            );
        }
        "servicecidrs.networking.k8s.io" if name == "kubernetes" => {
            return Some("the API server's default service CIDR, set by its own flags".to_string());
        }
        _ => {}
    }
    None
}

/// `Complete` or `Failed` when a Job had finished.
fn job_finished(obj: &Value) -> Option<&'static str> {
    let conditions = obj.pointer("/status/conditions").and_then(Value::as_array);
    for c in conditions.into_iter().flatten() {
        if c.get("status").and_then(Value::as_str) == Some("True") {
            match c.get("type").and_then(Value::as_str) {
                Some("Complete") => return Some("Complete"),
                Some("Failed") => return Some("Failed"),
                _ => {}
            }
        }
    }
    obj.pointer("/status/completionTime")
        .is_some_and(|t| !t.is_null())
        .then_some("Complete")
}

// ---------------------------------------------------------------------------------------------
// Owner references
// ---------------------------------------------------------------------------------------------

/// The owner references an object had, for restoring them after their owners exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// The owner's uid in the source cluster: useless in the target, kept to tell owners apart.
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: Option<bool>,
}

impl OwnerRef {
    /// The reference as the API takes it, pointing at the owner's new uid.
    pub fn to_value(&self, new_uid: &str) -> Value {
        let mut r = Map::new();
        r.insert("apiVersion".into(), self.api_version.clone().into());
        r.insert("kind".into(), self.kind.clone().into());
        r.insert("name".into(), self.name.clone().into());
        r.insert("uid".into(), new_uid.into());
        if self.controller {
            r.insert("controller".into(), true.into());
        }
        if let Some(b) = self.block_owner_deletion {
            r.insert("blockOwnerDeletion".into(), b.into());
        }
        Value::Object(r)
    }
}

/// The owner references of an object (call it before [`sanitize`], which removes them).
/// References without a kind or a name are left out: they could not be restored.
pub fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    refs.into_iter()
        .flatten()
        .filter_map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
            if s("kind").is_empty() || s("name").is_empty() {
                return None;
            }
            Some(OwnerRef {
                api_version: s("apiVersion").to_string(),
                kind: s("kind").to_string(),
                name: s("name").to_string(),
                uid: s("uid").to_string(),
                controller: r.get("controller").and_then(Value::as_bool) == Some(true),
                block_owner_deletion: r.get("blockOwnerDeletion").and_then(Value::as_bool),
            })
        })
        .collect()
}

fn controller_owner(obj: &Value) -> Option<OwnerRef> {
    owner_refs(obj).into_iter().find(|o| o.controller)
}

// ---------------------------------------------------------------------------------------------
// Sanitise
// ---------------------------------------------------------------------------------------------

/// How [`sanitize`] treats objects.
#[derive(Debug, Clone, Default)]
pub struct SanitizeOptions {
    /// Keep `status` (except on PersistentVolumes, whose status is the old binding).
    pub include_status: bool,
    /// Source namespace -> target namespace.
    pub namespace_mapping: BTreeMap<String, String>,
}

impl SanitizeOptions {
    /// The target namespace of a source namespace.
    pub fn map_namespace<'a>(&'a self, namespace: &'a str) -> &'a str {
        self.namespace_mapping
            .get(namespace)
            .map_or(namespace, String::as_str)
    }
}

/// Metadata the source API server wrote; the target writes its own.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "ownerReferences",
];

/// Annotations that bind a PVC to a volume and node of the old cluster.
const PVC_BIND_ANNOTATIONS: &[&str] = &[
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Labels the Job controller selects a Job's pods by, made from the Job's uid.
const JOB_UID_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Makes a backed-up object creatable in another cluster (DESIGN.md "Sanitise").
///
/// - Metadata the API server writes goes: uid, resourceVersion, generation, creationTimestamp,
///   deletionTimestamp, deletionGracePeriodSeconds, selfLink, managedFields, and
///   ownerReferences (read them first with [`owner_refs`]; the caller restores them later with
///   the owners' new uids). `status` goes unless `include_status`; a PV's status always goes.
/// - Service: clusterIP and clusterIPs (kept when "None": headless), and nodePorts and
///   healthCheckNodePort unless the user set them. A user-set node port shows in the
///   `kubectl.kubernetes.io/last-applied-configuration` annotation (Velero's rule) or, for
///   server-side apply, Helm and any other client, in a managedFields entry that owns the field
///   (Velero checks that too); auto-assigned ports are in neither, because the API server
///   allocates them after recording field ownership.
/// - Pod: nodeName (the scheduler places it anew); priority and preemptionPolicy (the priority
///   admission plugin computes them from the class and rejects a pod whose values differ, as
///   they do when the target's class has another value); ephemeralContainers (a pod cannot be
///   created with them); the volumes and mounts of legacy `<serviceaccount>-token-*` Secrets,
///   which do not exist in the target (Velero's rule).
/// - PVC: the bind annotations; spec.volumeName stays, so the PVC binds to its restored PV.
/// - PV: claimRef uid and resourceVersion (the PV pre-binds to the claim by name), status.
/// - Secret of type kubernetes.io/service-account-token: `data`, `stringData` and the
///   kubernetes.io/service-account.uid annotation (the token controller refills them for the
///   new ServiceAccount).
/// - Job: the `controller-uid` selector and template labels, unless spec.manualSelector (the
///   API server generates them from the new uid and rejects a Job that carries the old ones;
///   Velero's rule).
/// - Namespace mapping: metadata.namespace; a Namespace's own name and its
///   kubernetes.io/metadata.name label; PV spec.claimRef.namespace; ServiceAccount subjects of
///   RoleBindings and ClusterRoleBindings; and the Service a cluster-level object calls, which
///   moved with its namespace: APIService spec.service, webhook configurations'
///   clientConfig.service, a CRD's conversion webhook.
pub fn sanitize(resource: &str, obj: &mut Value, opts: &SanitizeOptions) {
    // Read what the removals below take away first.
    let explicit_ports = (resource == "services").then(|| ExplicitPorts::of(obj));
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(meta)) = o.get_mut("metadata") {
        for k in SERVER_METADATA {
            meta.remove(*k);
        }
        if let Some(ns) = meta.get_mut("namespace") {
            map_namespace_value(ns, opts);
        }
    }
    if !opts.include_status || resource == "persistentvolumes" {
        o.remove("status");
    }
    match resource {
        "services" => {
            if let Some(explicit) = &explicit_ports {
                sanitize_service(o, explicit);
            }
        }
        "pods" => sanitize_pod(o),
        "persistentvolumeclaims" => {
            if let Some(annotations) = annotations_mut(o) {
                for k in PVC_BIND_ANNOTATIONS {
                    annotations.remove(*k);
                }
            }
        }
        "persistentvolumes" => {
            if let Some(Value::Object(claim)) =
                o.get_mut("spec").and_then(|s| s.get_mut("claimRef"))
            {
                claim.remove("uid");
                claim.remove("resourceVersion");
                if let Some(ns) = claim.get_mut("namespace") {
                    map_namespace_value(ns, opts);
                }
            }
        }
        "secrets"
            if o.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token") =>
        {
            o.remove("data");
            o.remove("stringData");
            if let Some(annotations) = annotations_mut(o) {
                annotations.remove("kubernetes.io/service-account.uid");
            }
        }
        "jobs.batch" => sanitize_job(o),
        "namespaces" => {
            if let Some(Value::Object(meta)) = o.get_mut("metadata") {
                if let Some(name) = meta.get_mut("name") {
                    map_namespace_value(name, opts);
                }
                let name = meta.get("name").cloned();
                if let (Some(name), Some(Value::Object(labels))) = (name, meta.get_mut("labels"))
                    && labels.contains_key("kubernetes.io/metadata.name")
                {
                    labels.insert("kubernetes.io/metadata.name".into(), name);
                }
            }
        }
        "rolebindings.rbac.authorization.k8s.io"
        | "clusterrolebindings.rbac.authorization.k8s.io" => {
            for subject in array_mut(o, "subjects") {
                if subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    && let Some(ns) = subject.get_mut("namespace")
                {
                    map_namespace_value(ns, opts);
                }
            }
        }
        "apiservices.apiregistration.k8s.io" => {
            if let Some(ns) = pointer_mut(o, &["spec", "service", "namespace"]) {
                map_namespace_value(ns, opts);
            }
        }
        "validatingwebhookconfigurations.admissionregistration.k8s.io"
        | "mutatingwebhookconfigurations.admissionregistration.k8s.io" => {
            for hook in array_mut(o, "webhooks") {
                if let Some(ns) = hook.pointer_mut("/clientConfig/service/namespace") {
                    map_namespace_value(ns, opts);
                }
            }
        }
        "customresourcedefinitions.apiextensions.k8s.io" => {
            if let Some(ns) = pointer_mut(
                o,
                &[
                    "spec",
                    "conversion",
                    "webhook",
                    "clientConfig",
                    "service",
                    "namespace",
                ],
            ) {
                map_namespace_value(ns, opts);
            }
        }
        _ => {}
    }
}

fn map_namespace_value(v: &mut Value, opts: &SanitizeOptions) {
    if let Some(to) = v.as_str().and_then(|ns| opts.namespace_mapping.get(ns)) {
        *v = Value::String(to.clone());
    }
}

/// The node ports a user set on a Service, by the evidence the object carries.
#[derive(Debug, Default)]
struct ExplicitPorts {
    /// Names of ports whose nodePort the last-applied configuration sets.
    named: BTreeSet<String>,
    /// nodePort values the last-applied configuration sets on unnamed ports.
    unnamed: BTreeSet<i64>,
    /// (port, protocol) of ports whose nodePort a managedFields entry owns.
    managed: BTreeSet<(i64, String)>,
    health_check: bool,
}

impl ExplicitPorts {
    fn of(svc: &Value) -> Self {
        let mut e = ExplicitPorts::default();
        if let Some(applied) =
            annotation(svc, LAST_APPLIED).and_then(|a| serde_json::from_str::<Value>(a).ok())
        {
            for p in applied
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(node_port) = p.get("nodePort").and_then(as_port).filter(|n| *n > 0) else {
                    continue;
                };
                match p.get("name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => {
                        e.named.insert(name.to_string());
                    }
                    _ => {
                        e.unnamed.insert(node_port);
                    }
                }
            }
            e.health_check |= applied
                .pointer("/spec/healthCheckNodePort")
                .and_then(as_port)
                .is_some_and(|n| n > 0);
        }
        let entries = svc
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            let Some(spec) = entry.pointer("/fieldsV1/f:spec") else {
                continue;
            };
            e.health_check |= spec.get("f:healthCheckNodePort").is_some();
            let ports = spec.get("f:ports").and_then(Value::as_object);
            for (key, fields) in ports.into_iter().flatten() {
                if fields.get("f:nodePort").is_none() {
                    continue;
                }
                // Keys look like `k:{"port":80,"protocol":"TCP"}`.
                let Some(k) = key
                    .strip_prefix("k:")
                    .and_then(|k| serde_json::from_str::<Value>(k).ok())
                else {
                    continue;
                };
                if let Some(port) = k.get("port").and_then(as_port) {
                    let protocol = k.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    e.managed.insert((port, protocol.to_string()));
                }
            }
        }
        e
    }

    fn keeps(&self, port: &Value) -> bool {
        let name = port
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let by_last_applied = match name {
            Some(n) => self.named.contains(n),
            None => port
                .get("nodePort")
                .and_then(as_port)
                .is_some_and(|n| self.unnamed.contains(&n)),
        };
        let by_managed_fields = port.get("port").and_then(as_port).is_some_and(|p| {
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            self.managed.contains(&(p, protocol.to_string()))
        });
        by_last_applied || by_managed_fields
    }
}

/// A port number given as a number or a string.
fn as_port(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn sanitize_service(o: &mut Map<String, Value>, explicit: &ExplicitPorts) {
    let Some(Value::Object(spec)) = o.get_mut("spec") else {
        return;
    };
    if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports {
            if !explicit.keeps(port)
                && let Value::Object(p) = port
            {
                p.remove("nodePort");
            }
        }
    }
    if !explicit.health_check {
        spec.remove("healthCheckNodePort");
    }
}

fn sanitize_pod(o: &mut Map<String, Value>) {
    let Some(Value::Object(spec)) = o.get_mut("spec") else {
        return;
    };
    for k in [
        "nodeName",
        "priority",
        "preemptionPolicy",
        "ephemeralContainers",
    ] {
        spec.remove(k);
    }
    let account = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|k| {
            spec.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default");
    let prefix = format!("{account}-token-");
    let legacy = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with(&prefix))
    };
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|v| !legacy(v));
    }
    for containers in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(containers) {
            for c in cs {
                if let Some(Value::Array(mounts)) = c.get_mut("volumeMounts") {
                    mounts.retain(|m| !legacy(m));
                }
            }
        }
    }
}

fn sanitize_job(o: &mut Map<String, Value>) {
    let Some(Value::Object(spec)) = o.get_mut("spec") else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(Value::Object(labels)) = pointer_mut(spec, &["selector", "matchLabels"]) {
        for k in JOB_UID_LABELS {
            labels.remove(*k);
        }
    }
    if let Some(Value::Object(labels)) = pointer_mut(spec, &["template", "metadata", "labels"]) {
        for k in JOB_UID_LABELS {
            labels.remove(*k);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PersistentVolumes
// ---------------------------------------------------------------------------------------------

/// Keys whose values are an EBS volume's availability zone.
const ZONE_KEYS: &[&str] = &[
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.ebs.csi.aws.com/zone",
];

/// Points a restored PV at its new EBS volume: `spec.csi.volumeHandle` = id, or in-tree
/// `spec.awsElasticBlockStore.volumeID` = `aws://<zone>/<id>`; zone values rewritten in place
/// (same keys and operators) in the topology labels (topology.kubernetes.io/zone,
/// failure-domain.beta.kubernetes.io/zone, topology.ebs.csi.aws.com/zone) and in
/// spec.nodeAffinity.required.nodeSelectorTerms[].matchExpressions with those keys (replace the
/// value that equals `old_zone`, or all values when old_zone is None); region labels untouched.
///
/// Only `In` expressions are rewritten: `NotIn`, `Exists` and `DoesNotExist` say nothing about
/// where the volume is, and turning `NotIn [old]` into `NotIn [new]` would make the PV
/// unschedulable in its own zone. Values that become equal are merged (`In [new]`, not
/// `In [new, new]`).
///
/// Returns false when the PV has neither a CSI nor an in-tree EBS source (nothing was pointed).
pub fn point_pv_at_volume(
    pv: &mut Value,
    volume_id: &str,
    old_zone: Option<&str>,
    new_zone: &str,
) -> bool {
    let rewrite = |v: &str| old_zone.is_none_or(|old| v == old);
    let mut pointed = false;
    if let Some(Value::Object(csi)) = pv.pointer_mut("/spec/csi") {
        csi.insert("volumeHandle".into(), volume_id.into());
        pointed = true;
    }
    if let Some(Value::Object(ebs)) = pv.pointer_mut("/spec/awsElasticBlockStore") {
        ebs.insert(
            "volumeID".into(),
            format!("aws://{new_zone}/{volume_id}").into(),
        );
        pointed = true;
    }
    if let Some(Value::Object(labels)) = pv.pointer_mut("/metadata/labels") {
        for key in ZONE_KEYS {
            if let Some(v) = labels.get_mut(*key)
                && v.as_str().is_some_and(rewrite)
            {
                *v = new_zone.into();
            }
        }
    }
    let terms = pv
        .pointer_mut("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array_mut);
    for term in terms.into_iter().flatten() {
        let exprs = term
            .get_mut("matchExpressions")
            .and_then(Value::as_array_mut);
        for expr in exprs.into_iter().flatten() {
            let zone_key = expr
                .get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| ZONE_KEYS.contains(&k));
            if !zone_key || expr.get("operator").and_then(Value::as_str) != Some("In") {
                continue;
            }
            let Some(Value::Array(values)) = expr.get_mut("values") else {
                continue;
            };
            let mut out: Vec<Value> = Vec::with_capacity(values.len());
            for v in values.drain(..) {
                let v = if v.as_str().is_some_and(rewrite) {
                    Value::String(new_zone.to_string())
                } else {
                    v
                };
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            *values = out;
        }
    }
    pointed
}

/// Renames an object (a PV restored into a cluster that already has one of that name) and
/// returns its previous name; callers also set the PVC's spec.volumeName to the new one.
pub fn rename(obj: &mut Value, new_name: &str) -> Option<String> {
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        return None;
    };
    meta.insert("name".into(), new_name.into())
        .and_then(|old| old.as_str().map(String::from))
}

/// A new name for a PV whose name is taken in the target: `<name>-<suffix>` (the suffix is, for
/// example, the claim's target namespace or the restore's name), cut to the 253 characters a
/// PV name may have without ending in `-` or `.`.
pub fn renamed_pv_name(name: &str, suffix: &str) -> String {
    const MAX: usize = 253;
    let suffix: String = suffix.chars().take(MAX / 2).collect();
    let room = MAX - suffix.len() - 1;
    let mut base: String = name.chars().take(room).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    format!("{base}-{suffix}")
}

// ---------------------------------------------------------------------------------------------
// ServiceAccounts
// ---------------------------------------------------------------------------------------------

/// What a backed-up ServiceAccount adds to the live one of the same name, as a JSON merge patch,
/// or `None` when it adds nothing.
///
/// Every namespace gets a `default` ServiceAccount from the moment it exists, so restoring one
/// always finds it there; with the `none` policy its imagePullSecrets (how pods pull from a
/// private registry) would be lost and the pods fail to start. Velero merges them; so does this:
/// the image pull secrets the live account lacks (appended, the live ones kept),
/// automountServiceAccountToken when the live account does not set it, and labels and
/// annotations the live account lacks. The `secrets` list is not merged: it names the old
/// cluster's token Secrets.
pub fn service_account_merge(backup: &Value, live: &Value) -> Option<Value> {
    let mut patch = Map::new();
    let live_pulls: Vec<Value> = live
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut pulls = live_pulls.clone();
    for p in backup
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !pulls.iter().any(|l| l.get("name") == p.get("name")) {
            pulls.push(p.clone());
        }
    }
    if pulls.len() > live_pulls.len() {
        patch.insert("imagePullSecrets".into(), Value::Array(pulls));
    }
    if let Some(auto) = backup
        .get("automountServiceAccountToken")
        .filter(|v| v.is_boolean())
        && live
            .get("automountServiceAccountToken")
            .is_none_or(Value::is_null)
    {
        patch.insert("automountServiceAccountToken".into(), auto.clone());
    }
    let mut meta = Map::new();
    for field in ["labels", "annotations"] {
        let had = live.pointer(&format!("/metadata/{field}"));
        let missing: Map<String, Value> = backup
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| had.and_then(|h| h.get(k.as_str())).is_none())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !missing.is_empty() {
            meta.insert(field.into(), Value::Object(missing));
        }
    }
    if !meta.is_empty() {
        patch.insert("metadata".into(), Value::Object(meta));
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

// ---------------------------------------------------------------------------------------------
// Differences
// ---------------------------------------------------------------------------------------------

/// How long a printed value may be.
const VALUE_WIDTH: usize = 60;

/// Differences between what a backup says and what is live, for `differs` and for drill checks:
/// every field set in `expected` must be equal in `live` (fields the server adds are fine:
/// defaults, uid, status when not restored). Lists are compared element by element with the
/// same subset rule; a list of different length differs. Returns JSON paths like
/// `.spec.replicas: 3 != 2` (values shortened to ~60 chars; keys that are not identifiers as
/// `.metadata.labels["app.kubernetes.io/name"]`), at most `max` of them. Secret
/// `data`/`stringData` values are never printed, nor a Secret's last-applied-configuration
/// annotation (kubectl copies the data into it): the path only (`.data.password: differs`).
///
/// An expected field that is null, empty (`""`, `{}`, `[]`), `false` or `0` equals a missing one:
/// Go's `omitempty` drops those on the way out of the API server. Numbers compare by value
/// (`1` equals `1.0`).
pub fn differences(expected: &Value, live: &Value, max: usize) -> Vec<String> {
    let is_secret = |v: &Value| {
        v.get("kind").and_then(Value::as_str) == Some("Secret")
            && v.get("apiVersion").and_then(Value::as_str) == Some("v1")
    };
    let mut d = Differ {
        secret: is_secret(expected) || is_secret(live),
        max,
        out: Vec::new(),
    };
    let mut path = Vec::new();
    d.walk(expected, Some(live), &mut path);
    d.out
}

struct Differ {
    secret: bool,
    max: usize,
    out: Vec<String>,
}

impl Differ {
    fn full(&self) -> bool {
        self.out.len() >= self.max
    }

    /// Whether values under `path` must not be printed.
    fn redacted(&self, path: &[Seg<'_>]) -> bool {
        self.secret
            && match path {
                [Seg::Key("data" | "stringData"), ..] => true,
                [
                    Seg::Key("metadata"),
                    Seg::Key("annotations"),
                    Seg::Key(k),
                    ..,
                ] => *k == LAST_APPLIED,
                _ => false,
            }
    }

    fn report(&mut self, path: &[Seg<'_>], what: &str) {
        if !self.full() {
            self.out.push(format!("{}: {what}", render_path(path)));
        }
    }

    fn walk<'a>(&mut self, expected: &'a Value, live: Option<&'a Value>, path: &mut Vec<Seg<'a>>) {
        if self.full() {
            return;
        }
        match (expected, live) {
            (Value::Object(e), Some(Value::Object(l))) => {
                for (k, v) in e {
                    path.push(Seg::Key(k));
                    self.walk(v, l.get(k), path);
                    path.pop();
                }
            }
            // A whole object is missing: say which of its fields are, one by one.
            (Value::Object(e), None) => {
                for (k, v) in e {
                    path.push(Seg::Key(k));
                    self.walk(v, None, path);
                    path.pop();
                }
            }
            (Value::Array(e), Some(Value::Array(l))) if e.len() == l.len() => {
                for (i, (ev, lv)) in e.iter().zip(l).enumerate() {
                    path.push(Seg::Index(i));
                    self.walk(ev, Some(lv), path);
                    path.pop();
                }
            }
            (Value::Array(e), Some(Value::Array(l))) => {
                let what = if self.redacted(path) {
                    "differs".to_string()
                } else {
                    format!("{} != {}", items(e.len()), items(l.len()))
                };
                self.report(path, &what);
            }
            (e, None) if is_empty_value(e) => {}
            (e, l) if l.is_some_and(|l| same_scalar(e, l)) => {}
            (e, l) => {
                let what = if self.redacted(path) {
                    "differs".to_string()
                } else {
                    let live = l.map_or_else(|| "(absent)".to_string(), short);
                    format!("{} != {live}", short(e))
                };
                self.report(path, &what);
            }
        }
    }
}

fn items(n: usize) -> String {
    if n == 1 {
        "1 item".to_string()
    } else {
        format!("{n} items")
    }
}

/// A step in a JSON path.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn render_path(path: &[Seg<'_>]) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
            Seg::Key(k) if is_identifier(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => {
                s.push('[');
                s.push_str(&Value::String((*k).to_string()).to_string());
                s.push(']');
            }
        }
    }
    s
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Equal scalars (numbers by value); containers only when equal as a whole.
fn same_scalar(expected: &Value, live: &Value) -> bool {
    match (expected, live) {
        (Value::Number(e), Value::Number(l)) => {
            e == l
                || match (e.as_i64(), l.as_i64()) {
                    (Some(ei), Some(li)) => ei == li,
                    _ => e.as_f64().is_some() && e.as_f64() == l.as_f64(),
                }
        }
        _ => expected == live,
    }
}

/// A value as compact JSON, cut to about [`VALUE_WIDTH`] characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= VALUE_WIDTH {
        return s;
    }
    let mut cut: String = s.chars().take(VALUE_WIDTH - 3).collect();
    cut.push_str("...");
    cut
}

// ---------------------------------------------------------------------------------------------
// Small accessors
// ---------------------------------------------------------------------------------------------

/// The group of `<plural>[.<group>]`, empty for core.
fn group_of(resource: &str) -> &str {
    resource.split_once('.').map_or("", |(_, g)| g)
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

fn name_of(obj: &Value) -> &str {
    str_at(obj, "/metadata/name").unwrap_or_default()
}

fn namespace_of(obj: &Value) -> &str {
    str_at(obj, "/metadata/namespace").unwrap_or_default()
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn annotations_mut(o: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    match pointer_mut(o, &["metadata", "annotations"]) {
        Some(Value::Object(a)) => Some(a),
        _ => None,
    }
}

/// The value at a path of keys (keys may contain `/`, unlike JSON pointers).
fn pointer_mut<'a>(o: &'a mut Map<String, Value>, keys: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = keys.split_first()?;
    let mut v = o.get_mut(*first)?;
    for k in rest {
        v = v.get_mut(*k)?;
    }
    Some(v)
}

/// The elements of an array field, or none.
fn array_mut<'a>(o: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Value> {
    o.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> SkipContext {
        SkipContext::default()
    }

    fn opts() -> SanitizeOptions {
        SanitizeOptions::default()
    }

    fn mapped(pairs: &[(&str, &str)]) -> SanitizeOptions {
        SanitizeOptions {
            include_status: false,
            namespace_mapping: pairs
                .iter()
                .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
                .collect(),
        }
    }

    /// Metadata as a source API server returns it.
    fn server_meta(ns: Option<&str>, name: &str) -> Value {
        let mut m = json!({
            "name": name,
            "uid": "0b8f0c5e-1111-2222-3333-444455556666",
            "resourceVersion": "184321",
            "generation": 4,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "deletionTimestamp": "2024-05-02T10:00:00Z",
            "deletionGracePeriodSeconds": 30,
            "selfLink": "/api/v1/whatever",
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {}}],
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "u"}],
            "labels": {"app": "web"},
        });
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    }

    // --- tiers ----------------------------------------------------------------------------

    #[test]
    fn every_tier() {
        let table = [
            ("customresourcedefinitions.apiextensions.k8s.io", Tier::Crds),
            ("namespaces", Tier::Namespaces),
            ("storageclasses.storage.k8s.io", Tier::ClusterConfig),
            (
                "volumeattributesclasses.storage.k8s.io",
                Tier::ClusterConfig,
            ),
            ("priorityclasses.scheduling.k8s.io", Tier::ClusterConfig),
            ("runtimeclasses.node.k8s.io", Tier::ClusterConfig),
            ("persistentvolumes", Tier::Storage),
            ("persistentvolumeclaims", Tier::Storage),
            ("clusterroles.rbac.authorization.k8s.io", Tier::Rbac),
            ("roles.rbac.authorization.k8s.io", Tier::Rbac),
            ("serviceaccounts", Tier::Rbac),
            ("clusterrolebindings.rbac.authorization.k8s.io", Tier::Rbac),
            ("rolebindings.rbac.authorization.k8s.io", Tier::Rbac),
            ("secrets", Tier::Config),
            ("configmaps", Tier::Config),
            ("limitranges", Tier::Config),
            ("resourcequotas", Tier::Config),
            ("services", Tier::Services),
            ("ingresses.networking.k8s.io", Tier::Other),
            ("gadgets.example.com", Tier::Other),
            ("certificates.cert-manager.io", Tier::Other),
            ("poddisruptionbudgets.policy", Tier::Other),
            ("deployments.apps", Tier::Workloads),
            ("statefulsets.apps", Tier::Workloads),
            ("daemonsets.apps", Tier::Workloads),
            ("replicasets.apps", Tier::Workloads),
            ("cronjobs.batch", Tier::Workloads),
            ("jobs.batch", Tier::Workloads),
            ("pods", Tier::Workloads),
            ("replicationcontrollers", Tier::Workloads),
            // A core-looking name without its group is not the built-in kind.
            ("deployments", Tier::Other),
            ("deployments.example.com", Tier::Other),
        ];
        for (resource, want) in table {
            assert_eq!(tier(resource), want, "{resource}");
        }
        let mut sorted = Tier::ALL;
        sorted.sort();
        assert_eq!(sorted, Tier::ALL, "ALL is in restore order");
        assert!(Tier::Crds < Tier::Namespaces && Tier::Other < Tier::Workloads);
        assert_eq!(Tier::ClusterConfig.to_string(), "cluster-config");
    }

    // --- never restored -------------------------------------------------------------------

    fn owned_by(kind: &str, api_version: &str, name: &str, controller: bool) -> Value {
        json!([{ "apiVersion": api_version, "kind": kind, "name": name, "uid": "x",
                 "controller": controller, "blockOwnerDeletion": true }])
    }

    #[test]
    fn never_restored_kinds() {
        let obj = json!({"metadata": {"name": "x"}});
        for resource in [
            "nodes",
            "events",
            "events.events.k8s.io",
            "csinodes.storage.k8s.io",
            "volumeattachments.storage.k8s.io",
            "leases.coordination.k8s.io",
            "componentstatuses",
            "tokenreviews.authentication.k8s.io",
            "selfsubjectaccessreviews.authorization.k8s.io",
            "bindings",
            "csistoragecapacities.storage.k8s.io",
            "certificatesigningrequests.certificates.k8s.io",
            "ipaddresses.networking.k8s.io",
            "pods.metrics.k8s.io",
            "nodes.metrics.k8s.io",
        ] {
            let why = never_restored(resource, &obj, &ctx());
            assert!(
                why.as_deref().is_some_and(|w| w.len() > 20),
                "{resource}: {why:?}"
            );
        }
        // Same plural, other group: a custom resource that happens to be called so.
        for resource in [
            "leases.example.com",
            "events.example.com",
            "nodes.example.com",
        ] {
            assert_eq!(never_restored(resource, &obj, &ctx()), None, "{resource}");
        }
    }

    #[test]
    fn never_restored_objects() {
        let mut c = ctx();
        c.observe(
            "services",
            &json!({"metadata": {"namespace": "shop", "name": "web"}, "spec": {"selector": {"app": "web"}}}),
        );
        c.observe(
            "services",
            &json!({"metadata": {"namespace": "shop", "name": "external-db"}, "spec": {"ports": []}}),
        );
        assert!(
            c.services_with_selector
                .contains(&("shop".into(), "web".into()))
        );
        assert_eq!(c.services_with_selector.len(), 1);

        let rs_owner = owned_by("ReplicaSet", "apps/v1", "web-7f9c", true);
        let table: Vec<(&str, Value, &str)> = vec![
            (
                "pods",
                json!({"metadata": {"namespace": "shop", "name": "web-7f9c-abcde", "ownerReferences": rs_owner}}),
                "managed by its owner ReplicaSet web-7f9c, which recreates it",
            ),
            (
                "pods",
                json!({"metadata": {"namespace": "shop", "name": "db-0",
                    "ownerReferences": owned_by("StatefulSet", "apps/v1", "db", true)}}),
                "managed by its owner StatefulSet db, which recreates it",
            ),
            (
                "pods",
                json!({"metadata": {"namespace": "shop", "name": "pg-1",
                    "ownerReferences": owned_by("Cluster", "postgresql.cnpg.io/v1", "pg", true)}}),
                "managed by its owner Cluster pg, which recreates it",
            ),
            (
                "replicasets.apps",
                json!({"metadata": {"namespace": "shop", "name": "web-7f9c",
                    "ownerReferences": owned_by("Deployment", "apps/v1", "web", true)}}),
                "managed by its owner Deployment web, which recreates it",
            ),
            (
                "jobs.batch",
                json!({"metadata": {"namespace": "shop", "name": "nightly-290",
                    "ownerReferences": owned_by("CronJob", "batch/v1", "nightly", true)}}),
                "managed by its owner CronJob nightly, which recreates it",
            ),
            (
                "controllerrevisions.apps",
                json!({"metadata": {"namespace": "shop", "name": "db-5d8",
                    "ownerReferences": owned_by("StatefulSet", "apps/v1", "db", true)}}),
                "managed by its owner StatefulSet db, which recreates it",
            ),
            (
                "pods",
                json!({"metadata": {"namespace": "kube-system", "name": "etcd-node1",
                    "annotations": {"kubernetes.io/config.mirror": "abc"},
                    "ownerReferences": owned_by("Node", "v1", "node1", true)}}),
                "a mirror of a static pod; the kubelet of its node recreates it",
            ),
            (
                "pods",
                json!({"metadata": {"namespace": "shop", "name": "once"}, "status": {"phase": "Succeeded"}}),
                "the pod had finished (Succeeded); restoring it would run it again",
            ),
            (
                "jobs.batch",
                json!({"metadata": {"namespace": "shop", "name": "migrate"},
                    "status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
                "the job had finished (Complete); restoring it would run it again",
            ),
            (
                "jobs.batch",
                json!({"metadata": {"namespace": "shop", "name": "migrate"},
                    "status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
                "the job had finished (Failed); restoring it would run it again",
            ),
            (
                "endpoints",
                json!({"metadata": {"namespace": "shop", "name": "web"}}),
                "managed by the endpoints controller for Service web, which has a selector; it is recreated from the restored pods",
            ),
            (
                "endpoints",
                json!({"metadata": {"namespace": "shop", "name": "other",
                    "labels": {"endpoints.kubernetes.io/managed-by": "endpoint-controller"}}}),
                "managed by endpoint-controller, which recreates it",
            ),
            (
                "endpoints",
                json!({"metadata": {"namespace": "default", "name": "kubernetes"}}),
                "the API server's own endpoints, which every cluster's API server maintains",
            ),
            (
                "endpointslices.discovery.k8s.io",
                json!({"metadata": {"namespace": "shop", "name": "web-x8k2p",
                    "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}}}),
                "managed by endpointslice-controller.k8s.io, which recreates it",
            ),
            (
                "endpointslices.discovery.k8s.io",
                json!({"metadata": {"namespace": "shop", "name": "web-x8k2p",
                    "ownerReferences": owned_by("Service", "v1", "web", true)}}),
                "managed by the EndpointSlice controller for Service web, which recreates it",
            ),
            (
                "services",
                json!({"metadata": {"namespace": "default", "name": "kubernetes"}}),
                "the API server's own Service, which every cluster's API server maintains",
            ),
            (
                "configmaps",
                json!({"metadata": {"namespace": "shop", "name": "kube-root-ca.crt"}}),
                "every namespace gets its own copy of the cluster's CA certificate from the root CA publisher",
            ),
            (
                "configmaps",
                json!({"metadata": {"namespace": "kube-public", "name": "cluster-info"}}),
                "published by the bootstrap signer with the cluster's own CA and address",
            ),
            (
                "configmaps",
                json!({"metadata": {"namespace": "kube-system", "name": "ingress-controller-leader",
                    "annotations": {"control-plane.alpha.kubernetes.io/leader": "{}"}}}),
                "a leader-election record; the elected process rewrites it",
            ),
            (
                "apiservices.apiregistration.k8s.io",
                json!({"metadata": {"name": "v1.apps",
                    "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                    "spec": {"group": "apps", "version": "v1", "service": null}}),
                "registered automatically by the API server (for a built-in group or a CRD)",
            ),
            (
                "apiservices.apiregistration.k8s.io",
                json!({"metadata": {"name": "v1.example.com"}, "spec": {"group": "example.com"}}),
                "a local APIService, served by the API server itself and registered by it",
            ),
            (
                "clusterroles.rbac.authorization.k8s.io",
                json!({"metadata": {"name": "cluster-admin",
                    "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}}),
                "built-in RBAC policy, which every API server creates and reconciles when it starts",
            ),
            (
                "flowschemas.flowcontrol.apiserver.k8s.io",
                json!({"metadata": {"name": "exempt",
                    "annotations": {"apf.kubernetes.io/autoupdate-spec": "true"}}}),
                "built-in API priority and fairness configuration, which the API server keeps up to date",
            ),
        ];
        for (resource, obj, want) in table {
            assert_eq!(
                never_restored(resource, &obj, &c).as_deref(),
                Some(want),
                "{resource} {obj}"
            );
        }
    }

    #[test]
    fn ordinary_objects_are_restored() {
        let mut c = ctx();
        c.observe(
            "services",
            &json!({"metadata": {"namespace": "shop", "name": "web"}, "spec": {"selector": {"app": "web"}}}),
        );
        let table: Vec<(&str, Value)> = vec![
            (
                "configmaps",
                json!({"metadata": {"namespace": "shop", "name": "settings"}}),
            ),
            (
                "secrets",
                json!({"metadata": {"namespace": "shop", "name": "db"}, "type": "Opaque"}),
            ),
            (
                "deployments.apps",
                json!({"metadata": {"namespace": "shop", "name": "web"}}),
            ),
            (
                "services",
                json!({"metadata": {"namespace": "shop", "name": "web"}, "spec": {"selector": {"app": "web"}}}),
            ),
            (
                "persistentvolumeclaims",
                json!({"metadata": {"namespace": "shop", "name": "data-db-0",
                "ownerReferences": owned_by("StatefulSet", "apps/v1", "db", true)}}),
            ),
            (
                "gadgets.example.com",
                json!({"metadata": {"namespace": "shop", "name": "g",
                "ownerReferences": owned_by("Widget", "example.com/v1", "w", true)}}),
            ),
            // Built-in namespaces are restored: harmless, and their labels are the user's.
            ("namespaces", json!({"metadata": {"name": "default"}})),
            ("namespaces", json!({"metadata": {"name": "kube-system"}})),
            (
                "namespaces",
                json!({"metadata": {"name": "shop"}, "status": {"phase": "Active"}}),
            ),
            // A standalone, running pod and a running job.
            (
                "pods",
                json!({"metadata": {"namespace": "shop", "name": "debug"}, "status": {"phase": "Running"}}),
            ),
            (
                "jobs.batch",
                json!({"metadata": {"namespace": "shop", "name": "backfill"},
                "status": {"active": 1, "conditions": [{"type": "Suspended", "status": "False"}]}}),
            ),
            // A pod whose owner is not its controller.
            (
                "pods",
                json!({"metadata": {"namespace": "shop", "name": "p",
                "ownerReferences": owned_by("ReplicaSet", "apps/v1", "rs", false)}}),
            ),
            // Endpoints of a selector-less Service are the user's.
            (
                "endpoints",
                json!({"metadata": {"namespace": "shop", "name": "external-db"}}),
            ),
            // EndpointSlices written by hand, without the managed-by label or a Service owner.
            (
                "endpointslices.discovery.k8s.io",
                json!({"metadata": {"namespace": "shop", "name": "external-db-1",
                "labels": {"kubernetes.io/service-name": "external-db"}}}),
            ),
            (
                "apiservices.apiregistration.k8s.io",
                json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {"service": {"name": "prometheus-adapter", "namespace": "monitoring"}}}),
            ),
            // Built-in RBAC that the user took over (auto-update off), and ordinary RBAC.
            (
                "clusterroles.rbac.authorization.k8s.io",
                json!({"metadata": {"name": "edit",
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}}}),
            ),
            (
                "clusterroles.rbac.authorization.k8s.io",
                json!({"metadata": {"name": "prometheus-k8s"}}),
            ),
            (
                "flowschemas.flowcontrol.apiserver.k8s.io",
                json!({"metadata": {"name": "mine"}}),
            ),
            (
                "customresourcedefinitions.apiextensions.k8s.io",
                json!({"metadata": {"name": "gadgets.example.com"}}),
            ),
        ];
        for (resource, obj) in table {
            assert_eq!(never_restored(resource, &obj, &c), None, "{resource} {obj}");
        }
    }

    // --- sanitise ---------------------------------------------------------------------------

    #[test]
    fn removes_server_metadata_and_status() {
        let mut cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": server_meta(Some("shop"), "settings"),
            "data": {"a": "1"},
            "status": {"x": 1},
        });
        sanitize("configmaps", &mut cm, &opts());
        assert_eq!(
            cm,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "shop", "labels": {"app": "web"}},
                "data": {"a": "1"}})
        );
    }

    #[test]
    fn status_kept_with_include_status_but_never_on_a_pv() {
        let keep = SanitizeOptions {
            include_status: true,
            namespace_mapping: BTreeMap::new(),
        };
        let mut gadget = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
            "metadata": server_meta(Some("shop"), "g"), "status": {"ready": true}});
        sanitize("gadgets.example.com", &mut gadget, &keep);
        assert_eq!(gadget["status"], json!({"ready": true}));
        assert!(gadget["metadata"].get("uid").is_none());

        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": server_meta(None, "pv-1"), "spec": {}, "status": {"phase": "Bound"}});
        sanitize("persistentvolumes", &mut pv, &keep);
        assert!(pv.get("status").is_none());
    }

    fn service(spec: &Value, annotations: Option<&Value>, managed: Option<&Value>) -> Value {
        let mut meta = json!({"name": "web", "namespace": "shop"});
        if let Some(a) = annotations {
            meta["annotations"] = a.clone();
        }
        if let Some(m) = managed {
            meta["managedFields"] = m.clone();
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
            "status": {"loadBalancer": {}}})
    }

    #[test]
    fn service_cluster_ip() {
        let mut s = service(
            &json!({"type": "ClusterIP", "clusterIP": "10.100.1.2", "clusterIPs": ["10.100.1.2"],
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
            None,
            None,
        );
        sanitize("services", &mut s, &opts());
        assert_eq!(
            s["spec"],
            json!({"type": "ClusterIP",
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]})
        );
        assert!(s.get("status").is_none());
    }

    #[test]
    fn headless_service_keeps_none() {
        let mut s = service(
            &json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 9042}]}),
            None,
            None,
        );
        sanitize("services", &mut s, &opts());
        assert_eq!(s["spec"]["clusterIP"], "None");
        assert_eq!(s["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn node_ports_auto_assigned_go_explicit_ones_stay() {
        let spec = json!({"type": "NodePort", "clusterIP": "10.0.0.9",
        "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "nodePort": 31234},
        ]});
        // No evidence: both auto-assigned.
        let mut auto = service(&spec, None, None);
        sanitize("services", &mut auto, &opts());
        for p in auto["spec"]["ports"].as_array().unwrap() {
            assert!(p.get("nodePort").is_none(), "{p}");
        }

        // kubectl apply set http's nodePort: it stays, metrics' goes.
        let applied = json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"type": "NodePort", "ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "metrics", "port": 9090}]}});
        let mut explicit = service(
            &spec,
            Some(&json!({LAST_APPLIED: applied.to_string()})),
            None,
        );
        sanitize("services", &mut explicit, &opts());
        assert_eq!(explicit["spec"]["ports"][0]["nodePort"], 30080);
        assert!(explicit["spec"]["ports"][1].get("nodePort").is_none());
        // The annotation itself is the user's and stays.
        assert!(explicit["metadata"]["annotations"][LAST_APPLIED].is_string());
        assert!(explicit["metadata"].get("managedFields").is_none());

        // An unnamed port matched by value, the nodePort given as a string.
        let unnamed = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]});
        let applied = json!({"spec": {"ports": [{"port": 80, "nodePort": "30080"}]}});
        let mut s = service(
            &unnamed,
            Some(&json!({LAST_APPLIED: applied.to_string()})),
            None,
        );
        sanitize("services", &mut s, &opts());
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30080);

        // Server-side apply (or Helm): the field is owned in managedFields.
        let managed = json!([
            {"manager": "kube-controller-manager", "operation": "Update",
             "fieldsV1": {"f:status": {}}},
            {"manager": "helm", "operation": "Apply", "fieldsV1": {"f:spec": {"f:ports": {
                "k:{\"port\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:nodePort": {}, "f:port": {}},
                "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}}}
        ]);
        let mut s = service(&spec, None, Some(&managed));
        sanitize("services", &mut s, &opts());
        assert!(s["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 31234);
        assert!(s["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn health_check_node_port() {
        let spec = json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 32000, "clusterIP": "10.0.0.1",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30443}]});
        let mut auto = service(&spec, None, None);
        sanitize("services", &mut auto, &opts());
        assert!(auto["spec"].get("healthCheckNodePort").is_none());
        assert!(auto["spec"]["ports"][0].get("nodePort").is_none());

        let applied = json!({"spec": {"healthCheckNodePort": 32000}});
        let mut explicit = service(
            &spec,
            Some(&json!({LAST_APPLIED: applied.to_string()})),
            None,
        );
        sanitize("services", &mut explicit, &opts());
        assert_eq!(explicit["spec"]["healthCheckNodePort"], 32000);

        let managed = json!([{"manager": "terraform", "operation": "Update",
            "fieldsV1": {"f:spec": {"f:healthCheckNodePort": {}}}}]);
        let mut owned = service(&spec, None, Some(&managed));
        sanitize("services", &mut owned, &opts());
        assert_eq!(owned["spec"]["healthCheckNodePort"], 32000);
    }

    #[test]
    fn external_name_and_garbage_last_applied() {
        let mut s = service(
            &json!({"type": "ExternalName", "externalName": "db.example.com"}),
            Some(&json!({LAST_APPLIED: "{not json"})),
            None,
        );
        sanitize("services", &mut s, &opts());
        assert_eq!(
            s["spec"],
            json!({"type": "ExternalName", "externalName": "db.example.com"})
        );
    }

    #[test]
    fn pod() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": server_meta(Some("shop"), "debug"),
            "spec": {
                "nodeName": "ip-10-0-1-2.eu-west-1.compute.internal",
                "priorityClassName": "high", "priority": 1000, "preemptionPolicy": "PreemptLowerPriority",
                "serviceAccountName": "web",
                "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
                "containers": [{"name": "app", "image": "nginx", "volumeMounts": [
                    {"name": "web-token-x7k2q", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                    {"name": "data", "mountPath": "/data"}]}],
                "initContainers": [{"name": "init", "image": "busybox", "volumeMounts": [
                    {"name": "web-token-x7k2q", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                "volumes": [
                    {"name": "web-token-x7k2q", "secret": {"secretName": "web-token-x7k2q"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "kube-api-access-9zx8c", "projected": {"sources": []}}]},
            "status": {"phase": "Running", "podIP": "10.0.1.9"}});
        sanitize("pods", &mut pod, &opts());
        assert_eq!(
            pod["spec"],
            json!({
                "priorityClassName": "high",
                "serviceAccountName": "web",
                "containers": [{"name": "app", "image": "nginx", "volumeMounts": [
                    {"name": "data", "mountPath": "/data"}]}],
                "initContainers": [{"name": "init", "image": "busybox", "volumeMounts": []}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "kube-api-access-9zx8c", "projected": {"sources": []}}]})
        );
        assert!(pod.get("status").is_none());
        assert!(pod["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn pvc() {
        let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-db-0", "namespace": "shop", "uid": "u",
                "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                    "volume.beta.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
                    "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
                    "volume.kubernetes.io/selected-node": "ip-10-0-1-2",
                    "team": "db"},
                "finalizers": ["kubernetes.io/pvc-protection"]},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pvc-1df77afa",
                "resources": {"requests": {"storage": "30Gi"}}, "storageClassName": "gp3"},
            "status": {"phase": "Bound"}});
        sanitize(
            "persistentvolumeclaims",
            &mut pvc,
            &mapped(&[("shop", "shop-drill")]),
        );
        assert_eq!(
            pvc,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data-db-0", "namespace": "shop-drill",
                    "annotations": {"team": "db"},
                    "finalizers": ["kubernetes.io/pvc-protection"]},
                "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pvc-1df77afa",
                    "resources": {"requests": {"storage": "30Gi"}}, "storageClassName": "gp3"}})
        );
    }

    #[test]
    fn pv_claim_ref() {
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": server_meta(None, "pvc-1df77afa"),
            "spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "name": "data-db-0", "namespace": "shop", "resourceVersion": "1843377",
                "uid": "1df77afa-10c8-4296-aa3e-cf2aabd93365"},
                "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0a1b"}},
            "status": {"phase": "Bound"}});
        sanitize(
            "persistentvolumes",
            &mut pv,
            &mapped(&[("shop", "shop-drill")]),
        );
        assert_eq!(
            pv["spec"]["claimRef"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "name": "data-db-0", "namespace": "shop-drill"})
        );
        assert!(pv.get("status").is_none());
        assert!(pv["metadata"].get("namespace").is_none());
    }

    #[test]
    fn service_account_token_secret() {
        let mut token = json!({"apiVersion": "v1", "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "build-robot-token", "namespace": "ci",
                "annotations": {"kubernetes.io/service-account.name": "build-robot",
                    "kubernetes.io/service-account.uid": "3b2c"}},
            "data": {"token": "ZXlK", "ca.crt": "LS0t", "namespace": "Y2k="}});
        sanitize("secrets", &mut token, &opts());
        assert_eq!(
            token,
            json!({"apiVersion": "v1", "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {"name": "build-robot-token", "namespace": "ci",
                    "annotations": {"kubernetes.io/service-account.name": "build-robot"}}})
        );

        let mut opaque = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "ci"}, "data": {"password": "aHVudGVyMg=="}});
        let before = opaque.clone();
        sanitize("secrets", &mut opaque, &opts());
        assert_eq!(opaque, before);
    }

    #[test]
    fn job_controller_uid_labels() {
        let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "backfill", "namespace": "shop", "labels": {"controller-uid": "u1"}},
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1", "controller-uid": "u1"}},
                "template": {"metadata": {"labels": {
                    "batch.kubernetes.io/controller-uid": "u1", "controller-uid": "u1",
                    "batch.kubernetes.io/job-name": "backfill", "job-name": "backfill"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        sanitize("jobs.batch", &mut job, &opts());
        assert_eq!(job["spec"]["selector"]["matchLabels"], json!({}));
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"batch.kubernetes.io/job-name": "backfill", "job-name": "backfill"})
        );

        let mut manual = json!({"spec": {"manualSelector": true,
            "selector": {"matchLabels": {"controller-uid": "mine"}},
            "template": {"metadata": {"labels": {"controller-uid": "mine"}}}}});
        let before = manual.clone();
        sanitize("jobs.batch", &mut manual, &opts());
        assert_eq!(manual, before);
    }

    #[test]
    fn role_binding_subjects_mapped() {
        let m = mapped(&[("shop", "shop-drill")]);
        let subjects = json!([
            {"kind": "ServiceAccount", "name": "web", "namespace": "shop"},
            {"kind": "ServiceAccount", "name": "prom", "namespace": "monitoring"},
            {"kind": "User", "name": "shop", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "system:serviceaccounts:shop", "apiGroup": "rbac.authorization.k8s.io"}
        ]);
        let want = json!([
            {"kind": "ServiceAccount", "name": "web", "namespace": "shop-drill"},
            {"kind": "ServiceAccount", "name": "prom", "namespace": "monitoring"},
            {"kind": "User", "name": "shop", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "system:serviceaccounts:shop", "apiGroup": "rbac.authorization.k8s.io"}
        ]);
        let mut rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "web", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web"},
            "subjects": subjects});
        let mut crb = rb.clone();
        crb["kind"] = json!("ClusterRoleBinding");
        crb["metadata"] = json!({"name": "web"});
        sanitize("rolebindings.rbac.authorization.k8s.io", &mut rb, &m);
        sanitize(
            "clusterrolebindings.rbac.authorization.k8s.io",
            &mut crb,
            &m,
        );
        assert_eq!(rb["metadata"]["namespace"], "shop-drill");
        assert_eq!(rb["subjects"], want);
        assert_eq!(crb["subjects"], want);
        assert!(crb["metadata"].get("namespace").is_none());
    }

    #[test]
    fn namespace_mapped() {
        let m = mapped(&[("shop", "shop-drill")]);
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "uid": "u",
                "labels": {"kubernetes.io/metadata.name": "shop", "team": "a"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        sanitize("namespaces", &mut ns, &m);
        assert_eq!(
            ns,
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "shop-drill",
                    "labels": {"kubernetes.io/metadata.name": "shop-drill", "team": "a"}},
                "spec": {"finalizers": ["kubernetes"]}})
        );
        let mut other = json!({"metadata": {"name": "billing"}});
        sanitize("namespaces", &mut other, &m);
        assert_eq!(other, json!({"metadata": {"name": "billing"}}));
    }

    #[test]
    fn service_references_of_cluster_objects_follow_the_namespace() {
        let m = mapped(&[("monitoring", "monitoring-drill")]);
        let mut api = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"service": {"name": "prometheus-adapter", "namespace": "monitoring"}}});
        sanitize("apiservices.apiregistration.k8s.io", &mut api, &m);
        assert_eq!(api["spec"]["service"]["namespace"], "monitoring-drill");

        let mut hooks = json!({"metadata": {"name": "x"}, "webhooks": [
            {"name": "a", "clientConfig": {"service": {"name": "op", "namespace": "monitoring"}}},
            {"name": "b", "clientConfig": {"url": "https://example.com"}}]});
        sanitize(
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            &mut hooks,
            &m,
        );
        assert_eq!(
            hooks["webhooks"][0]["clientConfig"]["service"]["namespace"],
            "monitoring-drill"
        );
        assert_eq!(
            hooks["webhooks"][1]["clientConfig"],
            json!({"url": "https://example.com"})
        );

        let mut crd = json!({"metadata": {"name": "gadgets.example.com"}, "spec": {"conversion": {
            "strategy": "Webhook", "webhook": {"clientConfig": {"service": {"name": "conv", "namespace": "monitoring"}}}}}});
        sanitize(
            "customresourcedefinitions.apiextensions.k8s.io",
            &mut crd,
            &m,
        );
        assert_eq!(
            crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["namespace"],
            "monitoring-drill"
        );
    }

    #[test]
    fn sanitize_tolerates_odd_shapes() {
        for mut v in [
            json!(null),
            json!("x"),
            json!([]),
            json!({}),
            json!({"metadata": "x", "spec": 3}),
            json!({"metadata": {"annotations": null}, "spec": {"ports": "x", "volumes": {}}}),
        ] {
            for r in [
                "services",
                "pods",
                "persistentvolumeclaims",
                "persistentvolumes",
                "secrets",
                "jobs.batch",
                "namespaces",
                "rolebindings.rbac.authorization.k8s.io",
                "apiservices.apiregistration.k8s.io",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                "customresourcedefinitions.apiextensions.k8s.io",
            ] {
                sanitize(r, &mut v, &mapped(&[("a", "b")]));
                let _ = never_restored(r, &v, &ctx());
            }
        }
    }

    #[test]
    fn map_namespace_helper() {
        let m = mapped(&[("shop", "shop-drill")]);
        assert_eq!(m.map_namespace("shop"), "shop-drill");
        assert_eq!(m.map_namespace("other"), "other");
    }

    // --- owner references -------------------------------------------------------------------

    #[test]
    fn owner_refs_read_and_rewritten() {
        let pod = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c", "uid": "old-1",
             "controller": true, "blockOwnerDeletion": true},
            {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "old-2"},
            {"apiVersion": "v1", "kind": "", "name": "broken", "uid": "old-3"}
        ]}});
        let refs = owner_refs(&pod);
        assert_eq!(
            refs,
            vec![
                OwnerRef {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web-7f9c".into(),
                    uid: "old-1".into(),
                    controller: true,
                    block_owner_deletion: Some(true),
                },
                OwnerRef {
                    api_version: "example.com/v1".into(),
                    kind: "Widget".into(),
                    name: "w".into(),
                    uid: "old-2".into(),
                    controller: false,
                    block_owner_deletion: None,
                },
            ]
        );
        assert_eq!(
            refs[0].to_value("new-1"),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c",
                "uid": "new-1", "controller": true, "blockOwnerDeletion": true})
        );
        assert_eq!(
            refs[1].to_value("new-2"),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "new-2"})
        );
        assert!(owner_refs(&json!({"metadata": {}})).is_empty());
        assert!(owner_refs(&json!({"metadata": {"ownerReferences": "x"}})).is_empty());
    }

    // --- PersistentVolumes --------------------------------------------------------------------

    #[test]
    fn csi_pv_with_zone_only_in_node_affinity() {
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pvc-6c3e", "labels": {"team": "db"}},
            "spec": {"csi": {"driver": "ebs.csi.aws.com", "fsType": "ext4", "volumeHandle": "vol-0123456789abcdef0"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["eu-west-1b"]}]}]}}}});
        assert!(point_pv_at_volume(
            &mut pv,
            "vol-0newnewnew",
            Some("eu-west-1b"),
            "eu-west-1c"
        ));
        assert_eq!(pv["spec"]["csi"]["volumeHandle"], "vol-0newnewnew");
        assert_eq!(
            pv["spec"]["nodeAffinity"],
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["eu-west-1c"]}]}]}})
        );
        assert_eq!(pv["metadata"]["labels"], json!({"team": "db"}));
    }

    #[test]
    fn in_tree_pv_with_beta_labels() {
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pvc-legacy", "labels": {
                "failure-domain.beta.kubernetes.io/region": "eu-west-1",
                "failure-domain.beta.kubernetes.io/zone": "eu-west-1a"}},
            "spec": {"awsElasticBlockStore": {"fsType": "ext4", "volumeID": "aws://eu-west-1a/vol-0old"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "failure-domain.beta.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]},
                    {"key": "failure-domain.beta.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]}]}}}});
        assert!(point_pv_at_volume(&mut pv, "vol-0new", None, "eu-west-1b"));
        assert_eq!(
            pv["spec"]["awsElasticBlockStore"],
            json!({"fsType": "ext4", "volumeID": "aws://eu-west-1b/vol-0new"})
        );
        assert_eq!(
            pv["metadata"]["labels"],
            json!({"failure-domain.beta.kubernetes.io/region": "eu-west-1",
                "failure-domain.beta.kubernetes.io/zone": "eu-west-1b"})
        );
        let exprs =
            &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"];
        assert_eq!(exprs[0]["values"], json!(["eu-west-1b"]));
        assert_eq!(exprs[1]["values"], json!(["eu-west-1"]), "region untouched");
    }

    #[test]
    fn multiple_terms_and_keys() {
        let mut pv = json!({"metadata": {"name": "p", "labels": {"topology.kubernetes.io/zone": "eu-west-1c"}},
            "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-old"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["eu-west-1c"]},
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1c"]}]},
                    {"matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a", "eu-west-1c"]},
                        {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["eu-west-1c"]},
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["eu-west-1c"]}]}]}}}});
        assert!(point_pv_at_volume(
            &mut pv,
            "vol-new",
            Some("eu-west-1c"),
            "eu-west-1a"
        ));
        assert_eq!(
            pv["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "eu-west-1a"
        );
        let terms = &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"];
        assert_eq!(
            terms[0]["matchExpressions"][0]["values"],
            json!(["eu-west-1a"])
        );
        assert_eq!(
            terms[0]["matchExpressions"][1]["values"],
            json!(["eu-west-1a"])
        );
        // The old zone became the new one, already listed: merged.
        assert_eq!(
            terms[1]["matchExpressions"][0]["values"],
            json!(["eu-west-1a"])
        );
        assert_eq!(
            terms[1]["matchExpressions"][1]["values"],
            json!(["eu-west-1c"]),
            "NotIn untouched"
        );
        assert_eq!(
            terms[1]["matchExpressions"][2]["values"],
            json!(["eu-west-1c"]),
            "other keys untouched"
        );

        // With an old zone given, other zones' values stay.
        let mut pv2 = json!({"spec": {"csi": {"volumeHandle": "v"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a", "eu-west-1b"]}]}]}}}});
        point_pv_at_volume(&mut pv2, "v2", Some("eu-west-1b"), "eu-west-1c");
        assert_eq!(
            pv2["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"],
            json!(["eu-west-1a", "eu-west-1c"])
        );
    }

    #[test]
    fn pv_without_ebs_source() {
        let mut nfs = json!({"spec": {"nfs": {"server": "x", "path": "/"}}});
        assert!(!point_pv_at_volume(&mut nfs, "vol-1", None, "eu-west-1a"));
        assert_eq!(nfs, json!({"spec": {"nfs": {"server": "x", "path": "/"}}}));
        let mut odd = json!("x");
        assert!(!point_pv_at_volume(&mut odd, "vol-1", None, "eu-west-1a"));
    }

    #[test]
    fn rename_pv() {
        let mut pv = json!({"metadata": {"name": "pvc-1df77afa"}});
        assert_eq!(
            rename(&mut pv, "pvc-1df77afa-shop-drill").as_deref(),
            Some("pvc-1df77afa")
        );
        assert_eq!(pv["metadata"]["name"], "pvc-1df77afa-shop-drill");
        assert_eq!(rename(&mut json!({}), "x"), None);

        assert_eq!(renamed_pv_name("pvc-1", "shop-drill"), "pvc-1-shop-drill");
        let long = format!("{}-{}", "a".repeat(200), "b".repeat(60));
        let renamed = renamed_pv_name(&long, "shop-drill");
        assert!(renamed.len() <= 253, "{}", renamed.len());
        assert!(renamed.ends_with("-shop-drill"));
        let cut_at_dash = format!("{}-xyz", "a".repeat(241));
        assert_eq!(
            renamed_pv_name(&cut_at_dash, "shop-drill"),
            format!("{}-shop-drill", "a".repeat(241))
        );
    }

    // --- ServiceAccounts ----------------------------------------------------------------------

    #[test]
    fn service_account_merge_adds_what_the_live_one_lacks() {
        let backup = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "shop",
                "labels": {"team": "shop"}, "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/shop"}},
            "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
            "secrets": [{"name": "default-token-abcde"}],
            "automountServiceAccountToken": false});
        let live = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "shop", "uid": "u",
                "labels": {"team": "other"}},
            "imagePullSecrets": [{"name": "mirror"}]});
        assert_eq!(
            service_account_merge(&backup, &live),
            Some(json!({
                "imagePullSecrets": [{"name": "mirror"}, {"name": "regcred"}],
                "automountServiceAccountToken": false,
                "metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/shop"}}}))
        );
        // Nothing to add.
        let fresh = json!({"metadata": {"name": "default", "namespace": "shop"}});
        assert_eq!(service_account_merge(&fresh, &live), None);
        assert_eq!(service_account_merge(&backup, &backup), None);
    }

    // --- differences --------------------------------------------------------------------------

    fn deployment(replicas: u64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop",
                "labels": {"app.kubernetes.io/name": "web"}, "annotations": {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn server_added_fields_are_no_difference() {
        let expected = deployment(3);
        let mut live = deployment(3);
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["resourceVersion"] = json!("9");
        live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        live["status"] = json!({"replicas": 3});
        assert_eq!(differences(&expected, &live, 10), Vec::<String>::new());

        // Empty and zero values the server leaves out are no difference either.
        let expected =
            json!({"spec": {"a": null, "b": {}, "c": [], "d": false, "e": 0, "f": ""}, "n": 1.0});
        assert!(differences(&expected, &json!({"spec": {}, "n": 1}), 10).is_empty());
    }

    #[test]
    fn changed_scalars_and_lists() {
        let mut live = deployment(2);
        live["metadata"]["labels"]["app.kubernetes.io/name"] = json!("shop");
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        assert_eq!(
            differences(&deployment(3), &live, 10),
            vec![
                r#".metadata.labels["app.kubernetes.io/name"]: "web" != "shop""#.to_string(),
                ".spec.replicas: 3 != 2".to_string(),
                r#".spec.template.spec.containers[0].image: "nginx:1.27" != "nginx:1.25""#
                    .to_string(),
            ]
        );
        assert_eq!(differences(&deployment(3), &live, 1).len(), 1);
        assert!(differences(&deployment(3), &live, 0).is_empty());

        let mut two = deployment(3);
        two["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80}, {"containerPort": 443}]);
        assert_eq!(
            differences(&deployment(3), &two, 10),
            vec![".spec.template.spec.containers[0].ports: 1 item != 2 items".to_string()]
        );

        let mut missing = deployment(3);
        missing["spec"].as_object_mut().unwrap().remove("replicas");
        missing["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        assert_eq!(
            differences(&deployment(3), &missing, 10),
            vec![
                r#".metadata.labels["app.kubernetes.io/name"]: "web" != (absent)"#.to_string(),
                ".spec.replicas: 3 != (absent)".to_string(),
            ]
        );
        assert_eq!(
            differences(&json!({"a": {"b": 1}}), &json!({"a": "x"}), 10),
            vec![r#".a: {"b":1} != "x""#.to_string()]
        );
        assert_eq!(
            differences(&json!(1), &json!(2), 10),
            vec![".: 1 != 2".to_string()]
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(500);
        let d = differences(
            &json!({"data": {"big": long}}),
            &json!({"data": {"big": "y"}}),
            5,
        );
        assert_eq!(d.len(), 1);
        assert!(d[0].len() < 100, "{}", d[0]);
        assert!(d[0].contains("..."), "{}", d[0]);
    }

    #[test]
    fn secret_values_are_never_printed() {
        let applied = r#"{"apiVersion":"v1","data":{"password":"aHVudGVyMg=="},"kind":"Secret"}"#;
        let expected = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "shop",
                "annotations": {LAST_APPLIED: applied}, "labels": {"tier": "db"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4=", "gone": "c2VjcmV0"},
            "stringData": {"token": "plain-text-secret"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "shop",
                "annotations": {LAST_APPLIED: "{}"}, "labels": {"tier": "cache"}},
            "data": {"password": "b3RoZXI=", "user": "YWRtaW4="}});
        let d = differences(&expected, &live, 20);
        assert_eq!(
            d,
            vec![
                r#".metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]: differs"#
                    .to_string(),
                r#".metadata.labels.tier: "db" != "cache""#.to_string(),
                ".data.password: differs".to_string(),
                ".data.gone: differs".to_string(),
                ".stringData.token: differs".to_string(),
            ]
        );
        for line in &d {
            for secret in ["aHVudGVyMg", "b3RoZXI", "c2VjcmV0", "plain-text", "YWRtaW4"] {
                assert!(!line.contains(secret), "{line}");
            }
        }
        // A whole data map of another type.
        let d = differences(
            &expected,
            &json!({"apiVersion": "v1", "kind": "Secret", "data": "x"}),
            20,
        );
        assert!(d.contains(&".data: differs".to_string()), "{d:?}");
        assert!(d.iter().all(|l| !l.contains("aHVudGVyMg")), "{d:?}");
        // A list under data (not valid for a Secret, but never printed either).
        let d = differences(
            &json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": ["s3cr3t"]}}),
            &json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": ["a", "b"]}}),
            5,
        );
        assert_eq!(d, vec![".data.k: differs".to_string()]);

        // A ConfigMap's data is not secret.
        let d = differences(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v1"}}),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v2"}}),
            5,
        );
        assert_eq!(d, vec![r#".data.k: "v1" != "v2""#.to_string()]);
    }

    #[test]
    fn sanitized_object_matches_what_a_server_returns() {
        // The drill's check: the archive object, sanitised, against a live copy that the target
        // server filled in again.
        let mut archived = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": server_meta(Some("shop"), "web"),
            "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
            "status": {"loadBalancer": {}}});
        sanitize("services", &mut archived, &opts());
        let live = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "new", "resourceVersion": "1",
                "creationTimestamp": "2025-01-01T00:00:00Z", "labels": {"app": "web"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.4.4", "clusterIPs": ["10.96.4.4"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
            "status": {"loadBalancer": {}}});
        assert!(differences(&archived, &live, 10).is_empty());
    }

    // --- the real-world corpus ----------------------------------------------------------------

    /// `<plural>[.<group>]` for the kinds of the corpus (a test helper, not discovery).
    fn resource_of(obj: &Value) -> String {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let lower = kind.to_ascii_lowercase();
        let plural = if lower == "endpoints" {
            lower
        } else if lower.ends_with("ss") || lower.ends_with('x') || lower.ends_with("ch") {
            format!("{lower}es")
        } else if let Some(stem) = lower
            .strip_suffix('y')
            .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
        {
            format!("{stem}ies")
        } else {
            format!("{lower}s")
        };
        if group.is_empty() {
            plural
        } else {
            format!("{plural}.{group}")
        }
    }

    #[test]
    fn resource_of_helper() {
        for (api_version, kind, want) in [
            ("v1", "ConfigMap", "configmaps"),
            (
                "networking.k8s.io/v1",
                "Ingress",
                "ingresses.networking.k8s.io",
            ),
            (
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "networkpolicies.networking.k8s.io",
            ),
            (
                "storage.k8s.io/v1",
                "StorageClass",
                "storageclasses.storage.k8s.io",
            ),
            ("apps/v1", "Deployment", "deployments.apps"),
            ("v1", "Endpoints", "endpoints"),
            (
                "policy/v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets.policy",
            ),
        ] {
            assert_eq!(
                resource_of(&json!({"apiVersion": api_version, "kind": kind})),
                want
            );
        }
    }

    #[test]
    fn real_world_corpus() {
        let Some(root) = std::env::var_os("LIFEBOAT_FIXTURES").map(std::path::PathBuf::from) else {
            eprintln!(
                "LIFEBOAT_FIXTURES is not set: skipping the restore rules over the real-world corpus (set it to ../shared/fixtures/real-world)"
            );
            return;
        };
        let mut files = Vec::new();
        for scenario in std::fs::read_dir(&root).unwrap() {
            let scenario = scenario.unwrap().path();
            if !scenario.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&scenario).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "yaml") {
                    files.push(f);
                }
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no YAML under {}", root.display());

        let mapping = |o: &Value| -> SanitizeOptions {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("default");
            mapped(&[(ns, "drill"), ("monitoring", "monitoring-drill")])
        };
        let mut objects = 0;
        let mut ctx = SkipContext::default();
        let mut all = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for doc in docs.into_iter().filter(|d| !d.is_null()) {
                let items = match doc.get("items").and_then(Value::as_array) {
                    Some(items) if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                        items.clone()
                    }
                    _ => vec![doc],
                };
                for obj in items {
                    ctx.observe(&resource_of(&obj), &obj);
                    all.push((f.clone(), obj));
                }
            }
        }
        for (f, obj) in all {
            let resource = resource_of(&obj);
            let _ = tier(&resource);
            let _ = never_restored(&resource, &obj, &ctx);
            let _ = owner_refs(&obj);
            for include_status in [false, true] {
                let mut opts = mapping(&obj);
                opts.include_status = include_status;
                let mut s = obj.clone();
                sanitize(&resource, &mut s, &opts);
                let what = format!("{} {resource} {}", f.display(), obj["metadata"]["name"]);
                assert_eq!(s["apiVersion"], obj["apiVersion"], "{what}");
                assert_eq!(s["kind"], obj["kind"], "{what}");
                if resource == "namespaces" {
                    assert!(s["metadata"]["name"].is_string(), "{what}");
                } else {
                    assert_eq!(s["metadata"]["name"], obj["metadata"]["name"], "{what}");
                }
                // Without a mapping, what sanitising leaves is a subset of the original.
                let mut unmapped = obj.clone();
                sanitize(
                    &resource,
                    &mut unmapped,
                    &SanitizeOptions {
                        include_status,
                        namespace_mapping: BTreeMap::new(),
                    },
                );
                let d = differences(&unmapped, &obj, 5);
                assert!(d.is_empty(), "{what}: {d:?}");
            }
            if resource == "persistentvolumes" {
                let mut pv = obj.clone();
                point_pv_at_volume(&mut pv, "vol-0restored", None, "eu-west-1b");
                assert_eq!(pv["metadata"]["name"], obj["metadata"]["name"]);
            }
            // Every object equals itself.
            assert!(differences(&obj, &obj, 5).is_empty());
            objects += 1;
        }
        assert!(
            objects > 250,
            "only {objects} objects read from {}",
            root.display()
        );
    }
}
