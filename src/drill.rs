//! Restore drills: restore a backup into a target (a staging cluster, or an in-memory one
//! started for the drill), read every restored object back, compare it with the archive after
//! sanitising, and report pass or fail with the recovery time measured.

use std::time::Instant;

use futures::StreamExt as _;
use serde::Serialize;

use crate::archive::manifest::Phase;
use crate::cluster::Connection;
use crate::cluster::apply::Writer;
use crate::cluster::discovery;
use crate::events::Observers;
use crate::restore::result::{Action, RestoreResult};
use crate::restore::{self, RestoreError, rules};
use crate::store::Store;
use crate::volumes::ec2::Ec2;

/// One restored object that does not match the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    pub differences: Vec<String>,
}

/// The drill's verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub name: String,
    pub backup: String,
    /// `embedded` or the kubeconfig the drill restored into.
    pub target: String,
    pub passed: bool,
    /// Recovery time: from the start of the restore until every object was written.
    pub rto_seconds: f64,
    /// Time spent reading the restored objects back.
    pub verify_seconds: f64,
    /// Objects read back and compared.
    pub checked: u64,
    pub mismatches: Vec<Mismatch>,
    /// Why it failed, when it did, in one line each.
    pub reasons: Vec<String>,
    pub restore: RestoreResult,
}

/// Restores into `target` and verifies every restored object.
pub async fn run<E: Ec2>(
    store: &Store,
    target: &Connection,
    target_name: &str,
    req: &restore::Request,
    ec2: Option<&E>,
    observers: &Observers,
) -> Result<DrillReport, RestoreError> {
    let clock = Instant::now();
    let (result, plan) = restore::run_with_plan(store, target, req, ec2, observers).await?;
    let rto = clock.elapsed().as_secs_f64();
    let verify_clock = Instant::now();
    let types = discovery::discover(&target.client, observers).await?;
    let writer = Writer::new(target.client.clone(), req.retry.clone(), observers.clone());
    let restored: Vec<&restore::plan::Planned> = plan
        .items
        .iter()
        .filter(|p| {
            result.items.iter().any(|i| {
                i.resource == p.resource
                    && i.namespace == p.namespace
                    && i.name == p.name
                    && matches!(
                        i.action,
                        Action::Created | Action::Updated | Action::Exists | Action::Differs
                    )
            })
        })
        .collect();
    let checked = restored.len() as u64;
    let mismatches: Vec<Mismatch> = futures::stream::iter(restored)
        .map(|p| {
            let (plan, types, writer) = (&plan, &types, &writer);
            async move {
                let mismatch = |differences: Vec<String>| Mismatch {
                    resource: p.resource.clone(),
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    differences,
                };
                let Some(ty) = types.find(&p.resource) else {
                    return Some(mismatch(vec!["its type is not served".into()]));
                };
                let expected = match plan.object(p) {
                    Ok(o) => o,
                    Err(e) => return Some(mismatch(vec![e.to_string()])),
                };
                match writer
                    .get(ty, &p.api_version, p.namespace.as_deref(), &p.name)
                    .await
                {
                    Ok(Some(live)) => {
                        let d = rules::differences(&expected, &live, 5);
                        (!d.is_empty()).then(|| mismatch(d))
                    }
                    Ok(None) => Some(mismatch(vec!["not found after the restore".into()])),
                    Err(e) => Some(mismatch(vec![e.to_string()])),
                }
            }
        })
        .buffer_unordered(req.concurrency.max(1))
        .filter_map(|m| async move { m })
        .collect()
        .await;
    let mut mismatches = mismatches;
    mismatches.sort_by(|a, b| {
        (&a.resource, &a.namespace, &a.name).cmp(&(&b.resource, &b.namespace, &b.name))
    });
    let mut reasons = Vec::new();
    if result.phase != Phase::Completed {
        reasons.push(format!(
            "the restore ended {} ({} object(s) failed)",
            result.phase, result.counts.failed
        ));
    }
    if !mismatches.is_empty() {
        reasons.push(format!(
            "{} restored object(s) differ from the backup",
            mismatches.len()
        ));
    }
    if result.counts.created + result.counts.updated + result.counts.exists == 0 {
        reasons.push("nothing was restored".into());
    }
    Ok(DrillReport {
        name: req.name.clone(),
        backup: req.backup.clone(),
        target: target_name.to_string(),
        passed: reasons.is_empty(),
        rto_seconds: rto,
        verify_seconds: verify_clock.elapsed().as_secs_f64(),
        checked,
        mismatches,
        reasons,
        restore: result,
    })
}
