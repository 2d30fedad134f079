//! Writing objects to a cluster: create, read back, server-side apply, merge patch. Raw JSON
//! in and out, so an object is restored with every field it was backed up with, whatever its
//! kind. Transient errors are retried like every other Kubernetes call.

use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::cluster::ClusterError;
use crate::cluster::discovery::ResourceType;
use crate::cluster::retry::{self, Policy};
use crate::events::Observers;

/// The field manager lifeboat's writes are recorded under.
pub const FIELD_MANAGER: &str = "lifeboat";

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created(Value),
    /// An object of that name is already there (409 AlreadyExists); nothing was changed.
    AlreadyExists,
}

/// A cluster objects are written to.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    policy: Policy,
    observers: Observers,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// The version to address an object at: its own when the target serves that group (the object
/// is stored at that version), else the target's preferred one.
fn version_of<'a>(ty: &'a ResourceType, obj_api_version: &'a str) -> &'a str {
    match obj_api_version.rsplit_once('/') {
        Some((g, v)) if g == ty.group => v,
        None if ty.group.is_empty() => obj_api_version,
        _ => &ty.version,
    }
}

fn collection(ty: &ResourceType, version: &str, ns: Option<&str>) -> String {
    let base = if ty.group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{}/{version}", ty.group)
    };
    match ns {
        Some(ns) if ty.namespaced => format!("{base}/namespaces/{ns}/{}", ty.plural),
        _ => format!("{base}/{}", ty.plural),
    }
}

impl Writer {
    pub fn new(client: kube::Client, policy: Policy, observers: Observers) -> Self {
        Writer {
            client,
            policy,
            observers,
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// POSTs `obj`; an existing object of that name is [`Created::AlreadyExists`], not an error.
    pub async fn create(&self, ty: &ResourceType, obj: &Value) -> Result<Created, ClusterError> {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = version_of(ty, obj["apiVersion"].as_str().unwrap_or_default());
        let what = format!("create {} {}", ty.resource(), display(ns, name));
        let path = format!(
            "{}?fieldManager={FIELD_MANAGER}",
            collection(ty, version, ns)
        );
        match self
            .send(&what, http::Method::POST, &path, "application/json", obj)
            .await
        {
            Ok((_, v)) => Ok(Created::Created(v)),
            Err(ClusterError::Api {
                code: 409,
                ref message,
                ..
            }) if message.contains("already exists") => Ok(Created::AlreadyExists),
            Err(e) => Err(e),
        }
    }

    /// The live object, or `None`.
    pub async fn get(
        &self,
        ty: &ResourceType,
        api_version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let what = format!("get {} {}", ty.resource(), display(ns, name));
        let path = format!("{}/{name}", collection(ty, version_of(ty, api_version), ns));
        match self
            .send(
                &what,
                http::Method::GET,
                &path,
                "application/json",
                &Value::Null,
            )
            .await
        {
            Ok((_, v)) => Ok(Some(v)),
            Err(ClusterError::Api { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Server-side applies `obj` as lifeboat, taking ownership of its fields (force): the backup
    /// wins over whatever changed since. Returns the object and whether it was created.
    pub async fn apply(
        &self,
        ty: &ResourceType,
        obj: &Value,
    ) -> Result<(Value, bool), ClusterError> {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = version_of(ty, obj["apiVersion"].as_str().unwrap_or_default());
        let what = format!("apply {} {}", ty.resource(), display(ns, name));
        let path = format!(
            "{}/{name}?fieldManager={FIELD_MANAGER}&force=true",
            collection(ty, version, ns)
        );
        let (code, v) = self
            .send(
                &what,
                http::Method::PATCH,
                &path,
                "application/apply-patch+yaml",
                obj,
            )
            .await?;
        Ok((v, code == 201))
    }

    /// A JSON merge patch (used to put ownerReferences back once the owners exist).
    pub async fn merge_patch(
        &self,
        ty: &ResourceType,
        api_version: &str,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ClusterError> {
        let what = format!("patch {} {}", ty.resource(), display(ns, name));
        let url = format!(
            "{}/{name}?fieldManager={FIELD_MANAGER}",
            collection(ty, version_of(ty, api_version), ns)
        );
        self.send(
            &what,
            http::Method::PATCH,
            &url,
            "application/merge-patch+json",
            patch,
        )
        .await
        .map(|(_, v)| v)
    }

    async fn send(
        &self,
        what: &str,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<(u16, Value), ClusterError> {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).expect("JSON values serialise")
        };
        retry::with_retry(&self.policy, what, &self.observers, || {
            let request = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::CONTENT_TYPE, content_type)
                .body(kube::client::Body::from(bytes.clone()));
            async move {
                let request = request.map_err(|e| ClusterError::Protocol {
                    what: what.to_string(),
                    message: e.to_string(),
                })?;
                let response = self
                    .client
                    .send(request)
                    .await
                    .map_err(|e| retry::classify(what, &e))?;
                let (parts, body) = response.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| ClusterError::Api {
                        what: what.to_string(),
                        code: 0,
                        message: format!("connection lost: {e}"),
                        retryable: true,
                        retry_after: None,
                    })?
                    .to_bytes();
                let code = parts.status.as_u16();
                let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if parts.status.is_success() {
                    return Ok((code, value));
                }
                let message = value
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| parts.status.to_string(), String::from);
                let after = parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(std::time::Duration::from_secs);
                Err(retry::from_status(what, code, &message, after))
            }
        })
        .await
    }
}

fn display(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(group: &str, version: &str, plural: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: String::new(),
            namespaced,
        }
    }

    #[test]
    fn objects_are_addressed_at_their_own_version() {
        let hpa = ty("autoscaling", "v2", "horizontalpodautoscalers", true);
        assert_eq!(
            collection(&hpa, version_of(&hpa, "autoscaling/v1"), Some("a")),
            "/apis/autoscaling/v1/namespaces/a/horizontalpodautoscalers"
        );
        let cm = ty("", "v1", "configmaps", true);
        assert_eq!(
            collection(&cm, version_of(&cm, "v1"), Some("a")),
            "/api/v1/namespaces/a/configmaps"
        );
        let crd = ty(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            false,
        );
        assert_eq!(
            collection(&crd, version_of(&crd, "apiextensions.k8s.io/v1"), None),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        );
    }
}
