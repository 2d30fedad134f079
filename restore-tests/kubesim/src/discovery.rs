//! Discovery documents, legacy and aggregated (KUBESIM.md §2), and `/version`.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// The aggregated discovery flavour a client asked for, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Legacy,
    /// `v2` or `v2beta1`.
    Aggregated(&'static str),
}

impl Flavour {
    /// Content negotiation over the Accept header: the first media range the server can serve
    /// wins; ranges with parameters it does not know (e.g. `profile=nopeer`) are skipped.
    pub fn negotiate(accept: Option<&str>) -> Flavour {
        let Some(accept) = accept else {
            return Flavour::Legacy;
        };
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let (mut g, mut v, mut as_, mut unknown) = (None, None, None, false);
            for p in parts {
                match p.split_once('=') {
                    Some(("g", x)) => g = Some(x),
                    Some(("v", x)) => v = Some(x),
                    Some(("as", x)) => as_ = Some(x),
                    Some(("q", _)) => {}
                    _ => unknown = true,
                }
            }
            if unknown {
                continue;
            }
            let json_like =
                media == "application/json" || media == "*/*" || media == "application/*";
            if !json_like {
                continue;
            }
            match (g, v, as_) {
                (None, None, None) => return Flavour::Legacy,
                (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                    return Flavour::Aggregated("v2");
                }
                (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                    return Flavour::Aggregated("v2beta1");
                }
                _ => {}
            }
        }
        Flavour::Legacy
    }

    /// The Content-Type of the answer; clients decide the flavour by it.
    pub fn content_type(self) -> String {
        match self {
            Flavour::Legacy => "application/json".into(),
            Flavour::Aggregated(v) => {
                format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList")
            }
        }
    }
}

/// `GET /version`: a 1.32 server, which the gcloud kubectl dispatcher needs to pick kubectl 1.32.
pub fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.4", "gitCommit": "59526cd4867447956156ae3a602fcbac10d2c5b4",
           "gitTreeState": "clean", "buildDate": "2025-04-22T16:00:00Z", "goVersion": "go1.23.6", "compiler": "gc",
           "platform": "linux/amd64"})
}

/// `GET /api` (legacy).
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({"name": name, "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
           "preferredVersion": gv(&versions[0])})
}

/// `GET /apis` (legacy).
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(&g, &v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let (_, versions) = reg
        .groups()
        .into_iter()
        .find(|(g, _)| g == name && !g.is_empty())?;
    let mut doc = group_entry(name, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn subresources(ty: &ResourceType) -> Vec<(&'static str, &'static [&'static str])> {
    let mut subs: Vec<(&'static str, &'static [&'static str])> = Vec::new();
    if ty.status_subresource {
        subs.push(("status", &["get", "patch", "update"]));
    }
    if ty.scale.is_some() {
        subs.push(("scale", &["get", "patch", "update"]));
    }
    if ty.group.is_empty() && ty.plural == "namespaces" {
        subs.push(("finalize", &["update"]));
    }
    subs
}

/// `GET /api/v1` or `GET /apis/{g}/{v}` (legacy), or `None` if nothing is served there.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for ty in reg.in_group_version(group, version) {
        let mut r = json!({"name": ty.plural, "singularName": ty.singular, "namespaced": ty.namespaced,
                           "kind": ty.kind, "verbs": ty.verbs});
        if !ty.short_names.is_empty() {
            r["shortNames"] = json!(ty.short_names);
        }
        if !ty.categories.is_empty() {
            r["categories"] = json!(ty.categories);
        }
        resources.push(r);
        for (sub, verbs) in subresources(ty) {
            let mut s = json!({"name": format!("{}/{sub}", ty.plural), "singularName": "", "namespaced": ty.namespaced,
                               "kind": ty.kind, "verbs": verbs});
            if sub == "scale" {
                s["group"] = json!("autoscaling");
                s["version"] = json!("v1");
                s["kind"] = json!("Scale");
            }
            resources.push(s);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Aggregated discovery of the core group (`/api`) or of every other group (`/apis`).
pub fn aggregated(reg: &Registry, core: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (group, versions) in reg.groups() {
        if group.is_empty() != core {
            continue;
        }
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = reg
                    .in_group_version(&group, v)
                    .map(|ty| aggregated_resource(ty, v))
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions}),
        );
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

fn aggregated_resource(ty: &ResourceType, version: &str) -> Value {
    let mut r = json!({
        "resource": ty.plural,
        "responseKind": {"group": ty.group, "version": version, "kind": ty.kind},
        "scope": if ty.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": ty.singular,
        "verbs": ty.verbs,
    });
    if !ty.short_names.is_empty() {
        r["shortNames"] = json!(ty.short_names);
    }
    if !ty.categories.is_empty() {
        r["categories"] = json!(ty.categories);
    }
    let subs: Vec<Value> = subresources(ty)
        .into_iter()
        .map(|(sub, verbs)| {
            let kind = if sub == "scale" {
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            } else {
                json!({"group": ty.group, "version": version, "kind": ty.kind})
            };
            json!({"subresource": sub, "responseKind": kind, "verbs": verbs})
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_accept_order() {
        let k132 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Flavour::negotiate(Some(k132)), Flavour::Aggregated("v2"));
        let k129 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            Flavour::negotiate(Some(k129)),
            Flavour::Aggregated("v2beta1")
        );
        let nopeer = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer,application/json";
        assert_eq!(Flavour::negotiate(Some(nopeer)), Flavour::Legacy);
        assert_eq!(
            Flavour::negotiate(Some("application/json, */*")),
            Flavour::Legacy
        );
        assert_eq!(Flavour::negotiate(None), Flavour::Legacy);
    }

    #[test]
    fn legacy_documents_list_subresources() {
        let reg = Registry::builtin();
        let apps = resource_list(&reg, "apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"deployments")
                && names.contains(&"deployments/status")
                && names.contains(&"deployments/scale")
        );
        let groups = group_list(&reg);
        let hpa = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(hpa["preferredVersion"]["version"], "v2");
        assert!(resource_list(&reg, "apps", "v2").is_none());
    }
}
