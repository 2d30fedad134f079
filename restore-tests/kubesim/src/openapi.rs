//! The minimal OpenAPI v3 that lets `kubectl create/apply` use server-side field validation
//! (KUBESIM.md §3.4). No schemas: `kubectl explain` is out of scope.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use crate::registry::Registry;

/// The `paths` key of a group/version: `api/v1` or `apis/{g}/{v}`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3/{api/v1 | apis/g/v}`, or `None` if that group/version is not served.
pub fn group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let prefix = format!("/{}", gv_path(group, version));
    for ty in reg
        .in_group_version(group, version)
        .filter(|t| t.supports("patch"))
    {
        let path = if ty.group.is_empty() && ty.plural == "namespaces" {
            format!("{prefix}/namespaces/{{name}}")
        } else if ty.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", ty.plural)
        } else {
            format!("{prefix}/{}/{{name}}", ty.plural)
        };
        let param =
            |name: &str, t: &str| json!({"name": name, "in": "query", "schema": {"type": t}});
        let op = json!({"patch": {
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": ty.group, "version": version, "kind": ty.kind},
            "parameters": [param("fieldValidation", "string"), param("fieldManager", "string"),
                           param("dryRun", "string"), param("force", "boolean")],
            "requestBody": {"content": {
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "OK"}}}});
        paths.insert(path, op);
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
                "components": {"schemas": {}}, "paths": paths}),
    )
}

/// `GET /openapi/v3`: every served group/version with a content hash, so that a new CRD
/// changes the root and kubectl refetches.
pub fn root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in reg.groups() {
        for v in versions {
            if let Some(doc) = group_version(reg, &group, &v) {
                let mut h = DefaultHasher::new();
                doc.to_string().hash(&mut h);
                let key = gv_path(&group, &v);
                let url = format!("/openapi/v3/{key}?hash={:016X}", h.finish());
                paths.insert(key, json!({"serverRelativeURL": url}));
            }
        }
    }
    json!({"paths": paths})
}

/// `GET /openapi/v2`: an empty Swagger document. kubectl falls back to it to validate kinds the
/// v3 documents do not list (`kind: List`, `ConfigMapList`, ...) and treats kinds it has no
/// schema for as valid; without it, `kubectl create -f` of such a file fails.
pub fn v2(accept: Option<&str>) -> (&'static str, Vec<u8>) {
    let wants_protobuf = accept.is_some_and(|a| a.contains("protobuf"));
    if wants_protobuf {
        // gnostic openapi_v2.Document{swagger: "2.0", info: {title: "Kubernetes", version: "v1.32.4"}}
        let mut info = vec![0x0a, 10];
        info.extend_from_slice(b"Kubernetes");
        info.extend_from_slice(&[0x12, 7]);
        info.extend_from_slice(b"v1.32.4");
        let mut doc = vec![0x0a, 3];
        doc.extend_from_slice(b"2.0");
        doc.push(0x12);
        doc.push(info.len() as u8);
        doc.extend_from_slice(&info);
        (
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            doc,
        )
    } else {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.4"}, "paths": {}, "definitions": {}});
        ("application/json", doc.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let reg = Registry::builtin();
        let doc = group_version(&reg, "", "v1").unwrap();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(doc["paths"].get("/api/v1/namespaces/{name}").is_some());
        let root = root(&reg);
        assert!(
            root["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
    }
}
