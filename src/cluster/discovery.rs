//! Which resource types a cluster serves. Each group is discovered on its own, at its preferred
//! version: kube-rs's `Discovery::run` gives up on the first failing group, while on real
//! clusters an aggregated API (metrics-server, a custom API server) is down often enough that
//! one must not end a backup.

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;

use crate::cluster::ClusterError;
use crate::cluster::retry::{self, Policy};
use crate::events::Observers;

/// A resource type that can be backed up: listable, and restorable (get, create, delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for core.
    pub group: String,
    /// The group's preferred version.
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `<plural>[.<group>]`: how the archive, the manifest and filters name the type.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The collection URL, cluster-wide or in one namespace.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    /// The URL of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

/// What discovery found, and which groups it could not read.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    pub types: Vec<ResourceType>,
    /// (group/version, why) of every group that failed.
    pub failures: Vec<(String, String)>,
}

impl Discovered {
    /// The type backing `<plural>[.<group>]`, if served.
    pub fn find(&self, resource: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.resource() == resource)
    }
}

/// Verbs a type needs so that a backup of it can be restored.
const NEEDED_VERBS: [&str; 4] = ["list", "get", "create", "delete"];

/// Discovers every group at its preferred version, a few groups at a time.
pub async fn discover(
    client: &kube::Client,
    observers: &Observers,
) -> Result<Discovered, ClusterError> {
    let policy = Policy::default();
    let groups = retry::with_retry(&policy, "GET /apis", observers, || async {
        client
            .list_api_groups()
            .await
            .map_err(|e| retry::classify("GET /apis", &e))
    })
    .await?;
    let mut wanted: Vec<String> = vec!["v1".to_string()];
    for g in groups.groups {
        let preferred = g
            .preferred_version
            .map(|p| p.group_version)
            .or_else(|| g.versions.first().map(|v| v.group_version.clone()));
        if let Some(gv) = preferred {
            wanted.push(gv);
        }
    }
    let results: Vec<(String, Result<APIResourceList, ClusterError>)> =
        futures::stream::iter(wanted)
            .map(|gv| {
                let policy = policy.clone();
                async move {
                    let what = format!("discovery of {gv}");
                    let r = retry::with_retry(&policy, &what, observers, || async {
                        let r = if gv == "v1" {
                            client.list_core_api_resources("v1").await
                        } else {
                            client.list_api_group_resources(&gv).await
                        };
                        r.map_err(|e| retry::classify(&what, &e))
                    })
                    .await;
                    Ok::<_, ClusterError>((gv, r))
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
    let mut out = Discovered::default();
    for (gv, result) in results {
        match result {
            Ok(list) => out.types.extend(usable_types(&list)),
            // The core group is not optional: without it there is nothing to back up.
            Err(e) if gv == "v1" => return Err(e),
            Err(e) => out.failures.push((gv, e.to_string())),
        }
    }
    out.types.sort_by_key(ResourceType::resource);
    out.failures.sort();
    Ok(out)
}

/// The top-level resources of a list that support every verb a backup and restore needs.
pub fn usable_types(list: &APIResourceList) -> Vec<ResourceType> {
    let (group, version) = match list.group_version.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), list.group_version.clone()),
    };
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .filter(|r| NEEDED_VERBS.iter().all(|v| r.verbs.iter().any(|x| x == v)))
        .map(|r| ResourceType {
            group: group.clone(),
            version: version.clone(),
            plural: r.name.clone(),
            kind: r.kind.clone(),
            namespaced: r.namespaced,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_verb_top_level_resources_are_usable() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "apps/v1",
            "resources": [
                {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                {"name": "deployments/status", "singularName": "", "namespaced": true, "kind": "Deployment", "verbs": ["get", "patch", "update"]},
                {"name": "reviews", "singularName": "", "namespaced": false, "kind": "Review", "verbs": ["create"]},
                {"name": "statuses", "singularName": "", "namespaced": false, "kind": "ComponentStatus", "verbs": ["get", "list"]}
            ]}))
        .unwrap();
        let types = usable_types(&list);
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].resource(), "deployments.apps");
        assert_eq!(
            types[0].collection_path(Some("shop")),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        assert_eq!(
            types[0].object_path(None, "web"),
            "/apis/apps/v1/deployments/web"
        );
    }
}
