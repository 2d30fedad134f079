//! Restores: read a backup, plan what to create (filters, dependencies, sanitising, mappings,
//! priority tiers), then apply it, volumes first. Nothing is written until the plan is complete,
//! the archive's checksum verified and every snapshot needed checked.
//!
//! Order of writes: EBS volumes from snapshots (each in its AZ, waited until available), then
//! the tiers of DESIGN.md "Restore rules" one after the other (CRDs first, then a wait until
//! they are Established and a new discovery), objects inside a tier concurrently, and last the
//! owner references, rewritten to the new uids of owners that were restored.

pub mod plan;
pub mod result;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::archive::manifest::{Manifest, Phase};
use crate::catalog::{self, CatalogError};
use crate::cluster::apply::{Created, Writer};
use crate::cluster::discovery::{self, Discovered};
use crate::cluster::retry::Policy;
use crate::cluster::{ClusterError, Connection};
use crate::events::{Event, Observers};
use crate::store::{BlockingReader, Store, StoreError};
use crate::volumes::ec2::Ec2;
use crate::volumes::record::{VolumeRecord, VolumesFile};
use crate::volumes::restore as volrestore;
use plan::{Plan, PlanError, Planned, Selection};
use result::{Action, Item, RestoreResult, RestoredVolume};
use rules::Tier;

/// What to do with objects that already exist in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExistingPolicy {
    /// Leave them alone; report `exists` or `differs` (a warning, with a short diff).
    #[default]
    None,
    /// Server-side apply the backed-up object over them.
    Update,
}

/// A restore to run.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub backup: String,
    pub selection: Selection,
    /// Source AZ -> target AZ for recreated volumes.
    pub zone_mapping: BTreeMap<String, String>,
    pub existing: ExistingPolicy,
    pub restore_volumes: bool,
    pub dry_run: bool,
    /// Objects written at the same time within a tier.
    pub concurrency: usize,
    pub retry: Policy,
    pub volume_concurrency: usize,
    pub volume_wait_timeout: Duration,
    /// How long a restored CRD may take to become Established.
    pub crd_timeout: Duration,
    /// The age identity file that opens an encrypted backup (`--identity-file`,
    /// `encryption.identityFile`); read only when the backup is encrypted.
    pub identity_file: Option<std::path::PathBuf>,
}

impl Request {
    pub fn new(name: &str, backup: &str) -> Self {
        Request {
            name: name.to_string(),
            backup: backup.to_string(),
            selection: Selection::default(),
            zone_mapping: BTreeMap::new(),
            existing: ExistingPolicy::None,
            restore_volumes: true,
            dry_run: false,
            concurrency: 16,
            retry: Policy::default(),
            volume_concurrency: 8,
            volume_wait_timeout: Duration::from_mins(30),
            crd_timeout: Duration::from_mins(1),
            identity_file: None,
        }
    }
}

/// Where restore reports live in the bucket.
pub fn result_key(name: &str) -> String {
    format!("restores/{name}/result.json")
}

/// Why a restore did not start. Nothing was written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot read the target cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("volumes.json of backup {backup:?} is unreadable: {message}")]
    Volumes { backup: String, message: String },
    #[error(
        "restoring volumes needs EC2 access ({count} PersistentVolume(s) have snapshots); configure volumes.region and credentials, or restore with --restore-volumes=false"
    )]
    NeedsEc2 { count: usize },
    #[error("the restore cannot create volumes from this backup, nothing was written:\n- {}", .0.join("\n- "))]
    Snapshots(Vec<String>),
    #[error("invalid restore name {0:?}: use lower-case letters, digits, '-' and '.'")]
    InvalidName(String),
    #[error("reading the archive: {0}")]
    Read(String),
    #[error(
        "backup {backup:?} is encrypted with age (recipients {recipients}): pass --identity-file (or set encryption.identityFile) to the identity of one of them; nothing was written"
    )]
    Encrypted { backup: String, recipients: String },
    #[error("{0}; nothing was written")]
    Identity(#[from] crate::archive::seal::SealError),
}

/// The identities that open `manifest`'s archive: none for a plain backup; for an encrypted
/// one, read from `identity_file`, which is then required.
pub fn identities_for(
    manifest: &Manifest,
    identity_file: Option<&std::path::Path>,
) -> Result<Option<crate::archive::seal::Identities>, RestoreError> {
    let Some(enc) = &manifest.archive.encryption else {
        return Ok(None);
    };
    let Some(path) = identity_file else {
        return Err(RestoreError::Encrypted {
            backup: manifest.name.clone(),
            recipients: enc.recipients.join(", "),
        });
    };
    Ok(Some(crate::archive::seal::Identities::load(path)?))
}

/// Runs a restore into `target`. `ec2` recreates volumes from snapshots; without it a backup with
/// snapshots can only be restored with `restore_volumes` off.
pub async fn run<E: Ec2>(
    store: &Store,
    target: &Connection,
    req: &Request,
    ec2: Option<&E>,
    observers: &Observers,
) -> Result<RestoreResult, RestoreError> {
    let (result, _) = run_with_plan(store, target, req, ec2, observers).await?;
    Ok(result)
}

/// Like [`run`], also returning the plan (the drill reads the restored objects back against it).
pub async fn run_with_plan<E: Ec2>(
    store: &Store,
    target: &Connection,
    req: &Request,
    ec2: Option<&E>,
    observers: &Observers,
) -> Result<(RestoreResult, Plan), RestoreError> {
    crate::backup::validate_name(&req.name)
        .map_err(|_| RestoreError::InvalidName(req.name.clone()))?;
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    observers.emit(&Event::RestoreStarted {
        restore: req.name.clone(),
        backup: req.backup.clone(),
        dry_run: req.dry_run,
    });
    let manifest = catalog::manifest(store, &req.backup).await?;
    let volumes = read_volumes(store, &manifest).await?;
    let identities = identities_for(&manifest, req.identity_file.as_deref())?;
    let mut plan = read_plan(store, &manifest, &req.selection, identities).await?;

    let client = &target.client;
    let mut types = discovery::discover(client, observers).await?;
    let writer = Writer::new(client.clone(), req.retry.clone(), observers.clone());

    // Volumes: which planned PVs get a new volume, checked before anything is written.
    let records: HashMap<&str, &VolumeRecord> = volumes
        .volumes
        .iter()
        .map(|r| (r.persistent_volume.as_str(), r))
        .collect();
    let mut jobs = volume_jobs(&plan, &records, req);
    let mut result = RestoreResult {
        name: req.name.clone(),
        backup: req.backup.clone(),
        phase: Phase::Completed,
        dry_run: req.dry_run,
        started_at,
        completed_at: started_at,
        counts: result::Counts::default(),
        items: plan.skipped.clone(),
        volumes: Vec::new(),
    };
    // A PV whose name is taken in the target by another claim's volume gets a new name (a copy
    // into the same cluster under a namespace mapping); a PV that is already there is left
    // alone, and no volume is made for it, so no volume is orphaned.
    let existing_pvs = reconcile_existing_pvs(&mut plan, &mut jobs, &types, &writer).await?;
    jobs.retain(|(i, _)| !existing_pvs.contains_key(i));
    if !jobs.is_empty() && ec2.is_none() {
        return Err(RestoreError::NeedsEc2 { count: jobs.len() });
    }
    if let Some(ec2) = ec2 {
        let needed: Vec<&VolumeRecord> = jobs.iter().map(|(_, j)| &j.record).collect();
        let problems = volrestore::preflight(ec2, &needed).await;
        if !problems.is_empty() {
            return Err(RestoreError::Snapshots(problems));
        }
    }
    observers.emit(&Event::RestorePlanned {
        restore: req.name.clone(),
        objects: plan.items.len() as u64,
        volumes: jobs.len() as u64,
    });

    if req.dry_run {
        dry_run(&plan, &types, &writer, req, &mut result).await;
        for (_, j) in &jobs {
            result.volumes.push(RestoredVolume {
                persistent_volume: j.persistent_volume.clone(),
                snapshot_id: j.record.snapshot_id.clone().unwrap_or_default(),
                old_volume_id: j.record.volume_id.clone(),
                new_volume_id: None,
                availability_zone: j.zone.clone(),
                error: None,
            });
        }
        result.finish();
        emit_finished(observers, &result, clock);
        return Ok((result, plan));
    }

    let mut failed_pvs: HashMap<usize, String> = HashMap::new();
    // PVs whose volume an interrupted earlier run of this restore had created: said on their item.
    let mut reused_pvs: HashMap<usize, String> = HashMap::new();
    if let (Some(ec2), false) = (ec2, jobs.is_empty()) {
        let mut opts = volrestore::Options::new(&req.name);
        opts.concurrency = req.volume_concurrency;
        opts.wait_timeout = req.volume_wait_timeout;
        let index: HashMap<String, usize> = jobs
            .iter()
            .map(|(i, j)| (j.persistent_volume.clone(), *i))
            .collect();
        let outcomes = volrestore::create_all(
            ec2,
            jobs.into_iter().map(|(_, j)| j).collect(),
            &opts,
            observers,
        )
        .await;
        for o in outcomes {
            let i = index[&o.job.persistent_volume];
            let mut rv = RestoredVolume {
                persistent_volume: o.job.persistent_volume.clone(),
                snapshot_id: o.job.record.snapshot_id.clone().unwrap_or_default(),
                old_volume_id: o.job.record.volume_id.clone(),
                new_volume_id: None,
                availability_zone: o.job.zone.clone(),
                error: None,
            };
            match o.volume_id {
                Ok(id) => {
                    let mut pv = plan.object(&plan.items[i]).map_err(PlanError::Spool)?;
                    rules::point_pv_at_volume(
                        &mut pv,
                        &id,
                        o.job.record.availability_zone.as_deref(),
                        &o.job.zone,
                    );
                    plan.replace(i, &pv).map_err(PlanError::Spool)?;
                    if o.reused {
                        reused_pvs.insert(
                            i,
                            format!(
                                "its volume {id} was created by an interrupted run of this restore and is reused"
                            ),
                        );
                    }
                    rv.new_volume_id = Some(id);
                }
                Err(e) => {
                    failed_pvs.insert(
                        i,
                        format!(
                            "its volume could not be created from snapshot {}: {e}",
                            rv.snapshot_id
                        ),
                    );
                    rv.error = Some(e);
                }
            }
            result.volumes.push(rv);
        }
        result
            .volumes
            .sort_by(|a, b| a.persistent_volume.cmp(&b.persistent_volume));
    }

    let mut uids: HashMap<OwnerKey, String> = HashMap::new();
    let mut written: Vec<usize> = Vec::new();
    let tiers: Vec<Tier> = {
        let mut t: Vec<Tier> = plan.items.iter().map(|p| p.tier).collect();
        t.dedup();
        t
    };
    for tier in tiers {
        let indexes: Vec<usize> = (0..plan.items.len())
            .filter(|i| plan.items[*i].tier == tier)
            .collect();
        let outcomes: Vec<(usize, Item, Option<String>)> = futures::stream::iter(indexes)
            .map(|i| {
                let (plan, types, writer, failed_pvs, existing_pvs, reused_pvs) = (&plan, &types, &writer, &failed_pvs, &existing_pvs, &reused_pvs);
                async move {
                    let p = &plan.items[i];
                    if let Some(why) = failed_pvs.get(&i) {
                        return (i, item(p, Action::Failed, Some(why.clone())), None);
                    }
                    if existing_pvs.contains_key(&i) {
                        return (i, item(p, Action::Exists, Some("the PersistentVolume is already there; no volume was created for it".into())), None);
                    }
                    // With a namespace mapping the restore is a copy: existing cluster-scoped
                    // objects belong to the original and are never overwritten.
                    let policy = if p.namespace.is_none() && !req.selection.namespace_mapping.is_empty() { ExistingPolicy::None } else { req.existing };
                    let (mut it, uid) = apply_one(plan, p, types, writer, policy).await;
                    if let Some(note) = reused_pvs.get(&i).filter(|_| matches!(it.action, Action::Created)) {
                        it.message = Some(note.clone());
                    }
                    (i, it, uid)
                }
            })
            .buffer_unordered(req.concurrency.max(1))
            .collect()
            .await;
        for (i, it, uid) in outcomes {
            if let Some(uid) = uid {
                uids.insert(OwnerKey::of(&plan.items[i]), uid);
                if matches!(it.action, Action::Created | Action::Updated) {
                    written.push(i);
                }
            }
            result.items.push(it);
        }
        if tier == Tier::Crds {
            wait_established(&plan, &writer, &types, req.crd_timeout).await;
            // The custom resources of the new CRDs are only served after discovery sees them.
            types = discovery::discover(client, observers).await?;
        }
    }
    restore_owner_references(&plan, &written, &uids, &types, &writer, &mut result).await;
    result.items.sort_by(|a, b| {
        (&a.resource, &a.namespace, &a.name).cmp(&(&b.resource, &b.namespace, &b.name))
    });
    result.finish();
    store
        .put(&result_key(&req.name), Bytes::from(result.to_json()))
        .await?;
    emit_finished(observers, &result, clock);
    Ok((result, plan))
}

fn emit_finished(observers: &Observers, r: &RestoreResult, clock: Instant) {
    observers.emit(&Event::RestoreFinished {
        restore: r.name.clone(),
        phase: r.phase,
        created: r.counts.created,
        failed: r.counts.failed,
        seconds: clock.elapsed().as_secs_f64(),
    });
}

fn item(p: &Planned, action: Action, message: Option<String>) -> Item {
    Item {
        resource: p.resource.clone(),
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        action,
        message,
    }
}

async fn read_volumes(store: &Store, manifest: &Manifest) -> Result<VolumesFile, RestoreError> {
    let Some(v) = catalog::volumes(store, manifest).await? else {
        return Ok(VolumesFile::new(Vec::new()));
    };
    let file: VolumesFile = serde_json::from_value(v).map_err(|e| RestoreError::Volumes {
        backup: manifest.name.clone(),
        message: e.to_string(),
    })?;
    // A newer format may change what a record means: better no restore than a wrong volume.
    if file.format_version > crate::volumes::record::FORMAT_VERSION {
        return Err(RestoreError::Volumes {
            backup: manifest.name.clone(),
            message: format!(
                "it is in format {}, newer than this lifeboat understands ({}); upgrade lifeboat to restore it",
                file.format_version,
                crate::volumes::record::FORMAT_VERSION
            ),
        });
    }
    Ok(file)
}

/// Streams the archive from storage into the planner, which runs on a blocking thread.
async fn read_plan(
    store: &Store,
    manifest: &Manifest,
    selection: &Selection,
    identities: Option<crate::archive::seal::Identities>,
) -> Result<Plan, RestoreError> {
    let stream = store.get_stream(&manifest.archive.key).await?;
    let (reader, feeding) = BlockingReader::new(stream);
    let manifest = manifest.clone();
    let selection = selection.clone();
    let planned = tokio::task::spawn_blocking(move || {
        plan::build(reader, &manifest, &selection, identities.as_ref())
    })
    .await
    .map_err(|e| RestoreError::Read(e.to_string()))?;
    drop(feeding);
    Ok(planned?)
}

/// Planned PVs that get a new volume: index in the plan and the job.
fn volume_jobs(
    plan: &Plan,
    records: &HashMap<&str, &VolumeRecord>,
    req: &Request,
) -> Vec<(usize, volrestore::Job)> {
    if !req.restore_volumes {
        return Vec::new();
    }
    plan.items
        .iter()
        .enumerate()
        .filter(|(_, p)| p.resource == "persistentvolumes")
        .filter_map(|(i, p)| {
            let r = records.get(p.name.as_str())?;
            if !volrestore::restorable(r) {
                return None;
            }
            let zone = r.availability_zone.clone()?;
            let zone = req.zone_mapping.get(&zone).cloned().unwrap_or(zone);
            Some((
                i,
                volrestore::Job {
                    persistent_volume: p.name.clone(),
                    record: (*r).clone(),
                    zone,
                },
            ))
        })
        .collect()
}

/// Finds planned PVs whose names are taken in the target. Returns the ones to leave alone (the
/// same claim's PV is already there); renames the ones another claim's PV holds, and points
/// their PVCs at the new name.
async fn reconcile_existing_pvs(
    plan: &mut Plan,
    jobs: &mut [(usize, volrestore::Job)],
    types: &Discovered,
    writer: &Writer,
) -> Result<HashMap<usize, Value>, RestoreError> {
    let mut existing = HashMap::new();
    let Some(pv_type) = types.find("persistentvolumes").cloned() else {
        return Ok(existing);
    };
    let pvs: Vec<usize> = (0..plan.items.len())
        .filter(|i| plan.items[*i].resource == "persistentvolumes")
        .collect();
    for i in pvs {
        let pv = plan.object(&plan.items[i]).map_err(PlanError::Spool)?;
        let name = plan.items[i].name.clone();
        let Some(live) = writer.get(&pv_type, "v1", None, &name).await? else {
            continue;
        };
        let claim = |v: &Value| {
            (
                v.pointer("/spec/claimRef/namespace").cloned(),
                v.pointer("/spec/claimRef/name").cloned(),
            )
        };
        if claim(&live) == claim(&pv) || pv.pointer("/spec/claimRef").is_none() {
            existing.insert(i, live);
            continue;
        }
        let ns = pv
            .pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str)
            .unwrap_or("copy");
        let new_name = rules::renamed_pv_name(&name, ns);
        let mut renamed = pv.clone();
        rules::rename(&mut renamed, &new_name);
        plan.replace(i, &renamed).map_err(PlanError::Spool)?;
        for (j, job) in jobs.iter_mut() {
            if *j == i {
                job.persistent_volume.clone_from(&new_name);
            }
        }
        let claims: Vec<usize> = (0..plan.items.len())
            .filter(|k| {
                plan.items[*k].resource == "persistentvolumeclaims"
                    && plan.items[*k].namespace.as_deref() == Some(ns)
            })
            .collect();
        for k in claims {
            let mut pvc = plan.object(&plan.items[k]).map_err(PlanError::Spool)?;
            if pvc.pointer("/spec/volumeName").and_then(Value::as_str) == Some(name.as_str()) {
                pvc["spec"]["volumeName"] = json!(new_name);
                plan.replace(k, &pvc).map_err(PlanError::Spool)?;
            }
        }
        // A rerun of a restore that renamed this PV (interrupted, or run again) finds its
        // renamed PV: it is left alone like any PV already there. Creating a volume for it
        // would orphan that volume, since the PV pointing at it could not be created.
        if let Some(live) = writer.get(&pv_type, "v1", None, &new_name).await? {
            existing.insert(i, live);
        }
    }
    Ok(existing)
}

/// Looks at what would happen, reading only: nothing is written anywhere.
async fn dry_run(
    plan: &Plan,
    types: &Discovered,
    writer: &Writer,
    req: &Request,
    result: &mut RestoreResult,
) {
    let outcomes: Vec<Item> = futures::stream::iter(&plan.items)
        .map(|p| async move {
            let Some(ty) = types.find(&p.resource) else {
                let created_here = plan
                    .items
                    .iter()
                    .any(|c| c.tier == Tier::Crds && c.name == p.resource);
                return if created_here {
                    item(
                        p,
                        Action::WouldCreate,
                        Some("its CRD is created by this restore".into()),
                    )
                } else {
                    item(p, Action::Failed, Some(not_served(&p.resource)))
                };
            };
            let obj = match plan.object(p) {
                Ok(o) => o,
                Err(e) => return item(p, Action::Failed, Some(e.to_string())),
            };
            match writer
                .get(ty, &p.api_version, p.namespace.as_deref(), &p.name)
                .await
            {
                Ok(None) => item(p, Action::WouldCreate, None),
                Ok(Some(live)) => compare(p, &obj, &live, req.existing, true),
                Err(e) => item(p, Action::Failed, Some(e.to_string())),
            }
        })
        .buffer_unordered(req.concurrency.max(1))
        .collect()
        .await;
    result.items.extend(outcomes);
    result.items.sort_by(|a, b| {
        (&a.resource, &a.namespace, &a.name).cmp(&(&b.resource, &b.namespace, &b.name))
    });
}

fn not_served(resource: &str) -> String {
    format!(
        "the target cluster does not serve {resource}; install its CRD or operator first, or leave it out with --exclude-resources"
    )
}

/// `exists`, `differs` (with the first differences), or for the update policy `would-update`.
fn compare(p: &Planned, obj: &Value, live: &Value, policy: ExistingPolicy, dry_run: bool) -> Item {
    let diffs = rules::differences(obj, live, 3);
    match (diffs.is_empty(), policy, dry_run) {
        (true, _, _) => item(p, Action::Exists, None),
        (false, ExistingPolicy::Update, true) => {
            item(p, Action::WouldUpdate, Some(diffs.join("; ")))
        }
        (false, _, _) => item(p, Action::Differs, Some(diffs.join("; "))),
    }
}

/// Creates (or applies) one object. Returns its item and, when it exists now, its uid.
async fn apply_one(
    plan: &Plan,
    p: &Planned,
    types: &Discovered,
    writer: &Writer,
    policy: ExistingPolicy,
) -> (Item, Option<String>) {
    let Some(ty) = types.find(&p.resource) else {
        return (item(p, Action::Failed, Some(not_served(&p.resource))), None);
    };
    let obj = match plan.object(p) {
        Ok(o) => o,
        Err(e) => return (item(p, Action::Failed, Some(e.to_string())), None),
    };
    let uid = |v: &Value| {
        v.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(String::from)
    };
    match policy {
        ExistingPolicy::Update => match writer.apply(ty, &obj).await {
            Ok((v, true)) => (item(p, Action::Created, None), uid(&v)),
            Ok((v, false)) => (
                item(
                    p,
                    Action::Updated,
                    Some("server-side applied over the existing object".into()),
                ),
                uid(&v),
            ),
            Err(e) => (item(p, Action::Failed, Some(e.to_string())), None),
        },
        ExistingPolicy::None => match writer.create(ty, &obj).await {
            Ok(Created::Created(v)) => (item(p, Action::Created, None), uid(&v)),
            Ok(Created::AlreadyExists) => match writer
                .get(ty, &p.api_version, p.namespace.as_deref(), &p.name)
                .await
            {
                // Every namespace has its `default` ServiceAccount already: without its
                // imagePullSecrets from the backup, pods could not pull their images.
                Ok(Some(live))
                    if p.resource == "serviceaccounts"
                        && rules::service_account_merge(&obj, &live).is_some() =>
                {
                    let patch = rules::service_account_merge(&obj, &live).unwrap_or_default();
                    match writer.merge_patch(ty, &p.api_version, p.namespace.as_deref(), &p.name, &patch).await {
                        Ok(v) => (item(p, Action::Updated, Some("added the backed-up imagePullSecrets to the existing ServiceAccount".into())), uid(&v)),
                        Err(e) => (item(p, Action::Failed, Some(e.to_string())), uid(&live)),
                    }
                }
                Ok(Some(live)) => (compare(p, &obj, &live, policy, false), uid(&live)),
                Ok(None) => (
                    item(
                        p,
                        Action::Failed,
                        Some("it existed, then disappeared while being restored".into()),
                    ),
                    None,
                ),
                Err(e) => (item(p, Action::Failed, Some(e.to_string())), None),
            },
            Err(e) => (item(p, Action::Failed, Some(e.to_string())), None),
        },
    }
}

/// Waits until the restored CRDs are Established (their custom resources can be created then).
async fn wait_established(plan: &Plan, writer: &Writer, types: &Discovered, timeout: Duration) {
    let Some(ty) = types.find("customresourcedefinitions.apiextensions.k8s.io") else {
        return;
    };
    let deadline = Instant::now() + timeout;
    for p in plan.items.iter().filter(|p| p.tier == Tier::Crds) {
        let mut pause = Duration::from_millis(100);
        while Instant::now() < deadline {
            let established = writer
                .get(ty, &p.api_version, None, &p.name)
                .await
                .ok()
                .flatten()
                .is_some_and(|crd| {
                    crd.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Established" && c["status"] == "True")
                        })
                });
            if established {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Identifies an owner: group, kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnerKey(String, String, Option<String>, String);

impl OwnerKey {
    fn of(p: &Planned) -> Self {
        let group = p
            .api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_string();
        OwnerKey(group, p.kind.clone(), p.namespace.clone(), p.name.clone())
    }
}

/// Puts owner references back on the objects this restore wrote, pointing at the new uids of
/// their restored owners (a reference to an owner that was not restored is left out: the
/// garbage collector would delete the object otherwise).
async fn restore_owner_references(
    plan: &Plan,
    written: &[usize],
    uids: &HashMap<OwnerKey, String>,
    types: &Discovered,
    writer: &Writer,
    result: &mut RestoreResult,
) {
    for &i in written {
        let p = &plan.items[i];
        if p.owners.is_empty() {
            continue;
        }
        let refs: Vec<Value> = p
            .owners
            .iter()
            .filter_map(|o| {
                let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g).to_string();
                let uid = uids
                    .get(&OwnerKey(group.clone(), o.kind.clone(), p.namespace.clone(), o.name.clone()))
                    .or_else(|| uids.get(&OwnerKey(group, o.kind.clone(), None, o.name.clone())))?;
                let mut r = json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": uid});
                if o.controller {
                    r["controller"] = json!(true);
                }
                if let Some(b) = o.block_owner_deletion {
                    r["blockOwnerDeletion"] = json!(b);
                }
                Some(r)
            })
            .collect();
        if refs.is_empty() {
            continue;
        }
        let Some(ty) = types.find(&p.resource) else {
            continue;
        };
        let patch = json!({"metadata": {"ownerReferences": refs}});
        if let Err(e) = writer
            .merge_patch(ty, &p.api_version, p.namespace.as_deref(), &p.name, &patch)
            .await
            && let Some(it) = result.items.iter_mut().find(|it| {
                it.resource == p.resource && it.namespace == p.namespace && it.name == p.name
            })
        {
            it.action = Action::Failed;
            it.message = Some(format!(
                "created, but its owner references could not be restored: {e}"
            ));
        }
    }
}

/// Reads the restore report of a past restore.
pub async fn result_of(store: &Store, name: &str) -> Result<Option<RestoreResult>, StoreError> {
    match store.get(&result_key(name)).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}
