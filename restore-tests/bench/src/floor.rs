//! The floors: the least work any backup or restore of the same objects through the same API
//! server has to do, measured in process.
//!
//! - Listing: discovery as lifeboat does it (every group at its preferred version, types that
//!   support list, get, create and delete; events left out), then every page (limit 500,
//!   continue tokens) of every type, 4 types at a time (lifeboat's default), bodies fetched as
//!   bytes and dropped. Nothing is decoded: a byte scan finds the continue token and counts the
//!   items, which any client has to do at least.
//! - Creating: one POST per object to its collection, 16 at a time (lifeboat's default restore
//!   concurrency), from bodies serialised before the clock starts; CRDs first, then
//!   namespaces, then everything else at once (no tiers).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use serde::Serialize;
use serde_json::Value;

/// Types listed at once by a lifeboat backup (`backup::Request::new`).
pub const LIST_CONCURRENCY: usize = 4;
/// Page size of a lifeboat backup.
pub const PAGE_SIZE: usize = 500;
/// Objects created at once by a lifeboat restore (`restore::Request::new`).
pub const CREATE_CONCURRENCY: usize = 16;

/// A resource type to list.
#[derive(Debug, Clone)]
pub struct ListType {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ListType {
    pub fn collection(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}/{}", self.version, self.plural)
        } else {
            format!("/apis/{}/{}/{}", self.group, self.version, self.plural)
        }
    }
}

/// Every type a lifeboat backup lists, found the way lifeboat finds them.
pub async fn discover(client: &kube::Client) -> anyhow::Result<Vec<ListType>> {
    let groups = client.list_api_groups().await?;
    let mut lists = vec![client.list_core_api_resources("v1").await?];
    for g in groups.groups {
        let preferred = g
            .preferred_version
            .map(|p| p.group_version)
            .or_else(|| g.versions.first().map(|v| v.group_version.clone()));
        if let Some(gv) = preferred {
            lists.push(client.list_api_group_resources(&gv).await?);
        }
    }
    let mut types = Vec::new();
    for list in lists {
        let (group, version) = match list.group_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), list.group_version.clone()),
        };
        for r in &list.resources {
            let verbs = ["list", "get", "create", "delete"];
            let usable =
                !r.name.contains('/') && verbs.iter().all(|v| r.verbs.iter().any(|x| x == v));
            let event = r.name == "events" && (group.is_empty() || group == "events.k8s.io");
            if usable && !event {
                types.push(ListType {
                    group: group.clone(),
                    version: version.clone(),
                    plural: r.name.clone(),
                });
            }
        }
    }
    Ok(types)
}

/// What listing everything took.
#[derive(Debug, Clone, Serialize)]
pub struct ListFloor {
    pub wall_seconds: f64,
    pub objects: u64,
    /// Response bodies (list JSON, as served).
    pub bytes: u64,
    pub pages: u64,
    pub types: usize,
    /// CPU seconds of the kubesim thread while listing (filled in by the caller).
    pub server_cpu_seconds: f64,
}

/// Discovers, then fetches every page of every type, [`LIST_CONCURRENCY`] types at a time.
pub async fn list(client: &kube::Client) -> anyhow::Result<ListFloor> {
    let concurrency = LIST_CONCURRENCY;
    let started = Instant::now();
    let types = discover(client).await?;
    let objects = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let pages = AtomicU64::new(0);
    futures::stream::iter(types.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(concurrency, |t| {
            let (objects, bytes, pages) = (&objects, &bytes, &pages);
            async move {
                let mut token: Option<String> = None;
                loop {
                    let mut uri = format!("{}?limit={PAGE_SIZE}", t.collection());
                    if let Some(c) = &token {
                        uri.push_str("&continue=");
                        uri.push_str(&percent_encode(c));
                    }
                    let body = get_bytes(client, &uri).await?;
                    let scan = scan_list(&body);
                    objects.fetch_add(scan.items as u64, Ordering::Relaxed);
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    pages.fetch_add(1, Ordering::Relaxed);
                    match scan.continue_token {
                        Some(c) if !c.is_empty() => token = Some(c),
                        _ => break,
                    }
                }
                Ok(())
            }
        })
        .await?;
    Ok(ListFloor {
        wall_seconds: started.elapsed().as_secs_f64(),
        objects: objects.into_inner(),
        bytes: bytes.into_inner(),
        pages: pages.into_inner(),
        types: types.len(),
        server_cpu_seconds: 0.0,
    })
}

async fn get_bytes(client: &kube::Client, uri: &str) -> anyhow::Result<bytes::Bytes> {
    let request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(kube::client::Body::empty())?;
    let response = client
        .send(request)
        .await
        .with_context(|| format!("GET {uri}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("GET {uri}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// Percent-encodes a query value (continue tokens are base64, with `+`, `/` and `=`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What a byte scan of a list response finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageScan {
    /// Elements of the top-level `items` array.
    pub items: usize,
    /// `metadata.continue` of the list.
    pub continue_token: Option<String>,
}

/// Scans a list response without decoding it: structure outside strings, strings skipped with
/// memchr. Counts the objects of the top-level `items` and reads the top-level
/// `metadata.continue`; keys of the same name deeper down are not mistaken for them.
pub fn scan_list(body: &[u8]) -> PageScan {
    let mut scan = PageScan {
        items: 0,
        continue_token: None,
    };
    let mut depth = 0usize;
    // The current key at depth 1 (in the list object) and at depth 2 (in its metadata).
    let mut top_key: &[u8] = b"";
    let mut meta_key: &[u8] = b"";
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i + 1;
                let mut end = start;
                loop {
                    match memchr::memchr2(b'"', b'\\', &body[end..]) {
                        Some(off) if body[end + off] == b'\\' => end += off + 2,
                        Some(off) => {
                            end += off;
                            break;
                        }
                        None => return scan,
                    }
                }
                let s = &body[start..end.min(body.len())];
                i = end + 1;
                let mut j = i;
                while j < body.len() && body[j].is_ascii_whitespace() {
                    j += 1;
                }
                let is_key = body.get(j) == Some(&b':');
                if is_key && depth == 1 {
                    top_key = s;
                } else if is_key && depth == 2 && top_key == b"metadata" {
                    meta_key = s;
                } else if !is_key && depth == 2 && top_key == b"metadata" && meta_key == b"continue"
                {
                    scan.continue_token = Some(String::from_utf8_lossy(s).into_owned());
                }
                continue;
            }
            b'{' => {
                if depth == 2 && top_key == b"items" {
                    scan.items += 1;
                }
                depth += 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    scan
}

/// One object to create: where, and its body.
#[derive(Debug, Clone)]
pub struct Create {
    /// 0: CRDs, 1: namespaces, 2: everything else.
    pub phase: u8,
    pub uri: String,
    pub body: Vec<u8>,
}

/// What creating everything took.
#[derive(Debug, Clone, Serialize)]
pub struct CreateFloor {
    pub wall_seconds: f64,
    pub objects_per_second: f64,
    /// CPU seconds of the kubesim thread while creating (filled in by the caller).
    pub server_cpu_seconds: f64,
    pub created: u64,
    /// 409: already in the cluster (its system namespaces).
    pub exists: u64,
    pub failed: u64,
    /// The first few failures.
    pub failures: Vec<String>,
}

impl Create {
    /// The POST that recreates an archived object, sanitised as a restore must (server-set
    /// metadata, status and allocated Service IPs removed). The caller picks the objects (those
    /// lifeboat's restore created), so kinds never restored do not come here.
    pub fn from_archived(resource: &str, mut object: Value) -> anyhow::Result<Create> {
        let plural = resource.split('.').next().unwrap_or(resource);
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{resource} object without apiVersion"))?
            .to_string();
        let base = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let uri = match &namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
            None => format!("{base}/{plural}"),
        };
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "managedFields",
            ] {
                meta.shift_remove(field);
            }
        }
        if let Some(o) = object.as_object_mut() {
            o.shift_remove("status");
        }
        if resource == "services"
            && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
            && spec.get("clusterIP").and_then(Value::as_str) != Some("None")
        {
            spec.shift_remove("clusterIP");
            spec.shift_remove("clusterIPs");
        }
        let phase = match resource {
            "customresourcedefinitions.apiextensions.k8s.io" => 0,
            "namespaces" => 1,
            _ => 2,
        };
        Ok(Create {
            phase,
            uri,
            body: serde_json::to_vec(&object)?,
        })
    }
}

/// Creates every object, phase by phase, [`CREATE_CONCURRENCY`] requests at a time.
pub async fn create(
    client: &kube::Client,
    mut creates: Vec<Create>,
) -> anyhow::Result<CreateFloor> {
    let concurrency = CREATE_CONCURRENCY;
    creates.sort_by_key(|c| c.phase);
    let ok = AtomicU64::new(0);
    let exists = AtomicU64::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    for phase in 0..=2u8 {
        let batch = creates.iter().filter(|c| c.phase == phase);
        futures::stream::iter(batch)
            .for_each_concurrent(concurrency, |c| {
                let (ok, exists, failures) = (&ok, &exists, &failures);
                async move {
                    match post(client, &c.uri, c.body.clone()).await {
                        Ok(201 | 200) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(409) => {
                            exists.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(status) => failures
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(format!("POST {}: {status}", c.uri)),
                        Err(e) => failures
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(format!("POST {}: {e:#}", c.uri)),
                    }
                }
            })
            .await;
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let mut failures = failures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let failed = failures.len() as u64;
    failures.truncate(5);
    let made = ok.into_inner();
    Ok(CreateFloor {
        wall_seconds,
        objects_per_second: made as f64 / wall_seconds,
        server_cpu_seconds: 0.0,
        created: made,
        exists: exists.into_inner(),
        failed,
        failures,
    })
}

async fn post(client: &kube::Client, uri: &str, body: Vec<u8>) -> anyhow::Result<u16> {
    let request = http::Request::post(uri)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(body))?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    // Read the answer whole, as any client must before reusing the connection.
    response.into_body().collect().await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_scan_counts_items_and_finds_the_list_continue_token() {
        let page = json!({"kind": "ConfigMapList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "12", "continue": "eyJ2IjoxfQ==", "remainingItemCount": 3},
        "items": [
            {"metadata": {"name": "a", "continue": "not-this-one"}, "data": {"x": "}{]["}},
            {"metadata": {"name": "b\"}{"}, "data": {"items": [{"a": 1}, {"b": 2}]}},
            {"metadata": {"name": "c"}, "data": {"k": "with \\\" escaped quote and \\\\"}}
        ]});
        let compact = serde_json::to_vec(&page).unwrap();
        let pretty = serde_json::to_vec_pretty(&page).unwrap();
        for body in [compact, pretty] {
            assert_eq!(
                scan_list(&body),
                PageScan {
                    items: 3,
                    continue_token: Some("eyJ2IjoxfQ==".into())
                }
            );
        }
        let last = br#"{"kind":"List","metadata":{"resourceVersion":"5"},"items":[]}"#;
        assert_eq!(
            scan_list(last),
            PageScan {
                items: 0,
                continue_token: None
            }
        );
    }

    #[test]
    fn created_objects_lose_server_fields_and_allocated_ips() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "3",
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": []},
            "spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "ports": []},
            "status": {"loadBalancer": {}}});
        let c = Create::from_archived("services", svc).unwrap();
        assert_eq!(c.uri, "/api/v1/namespaces/shop/services");
        assert_eq!(c.phase, 2);
        let body: Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(
            body,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop"}, "spec": {"ports": []}})
        );
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.bench.example.com"}});
        let c =
            Create::from_archived("customresourcedefinitions.apiextensions.k8s.io", crd).unwrap();
        assert_eq!(
            (c.phase, c.uri.as_str()),
            (0, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        );
        assert_eq!(percent_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
