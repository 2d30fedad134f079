//! Paginated listing of one resource type, as raw JSON.
//!
//! Each page is parsed only as far as needed: items stay raw (`RawValue`), only their name and
//! namespace are read, and type meta is spliced in front when the server leaves it out (it
//! does for list items of built-in kinds). Memory is one page, whatever the type's size.

use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cluster::ClusterError;
use crate::cluster::discovery::ResourceType;
use crate::cluster::retry::{self, Policy};
use crate::events::{Event, Observers};

/// One object as it goes into the archive: compact JSON with apiVersion and kind.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub namespace: Option<String>,
    pub name: String,
    pub json: Vec<u8>,
}

/// What to list.
#[derive(Debug, Clone)]
pub struct ListRequest<'a> {
    pub ty: &'a ResourceType,
    /// One namespace, or cluster-wide.
    pub namespace: Option<&'a str>,
    /// A label selector, applied by the server.
    pub selector: Option<&'a str>,
    /// The most objects asked for per page; pages of large objects ask for fewer (see
    /// [`PAGE_BYTES`]).
    pub page_size: u32,
    /// How long one page may take before it counts as a (retryable) timeout.
    pub page_timeout: Duration,
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    #[serde(default)]
    metadata: PageMeta,
}

#[derive(Deserialize, Default)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    metadata: HeadMeta<'a>,
}

#[derive(Deserialize)]
struct HeadMeta<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    namespace: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct StatusBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    details: Option<StatusDetails>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StatusDetails {
    #[serde(default)]
    retry_after_seconds: u64,
}

/// One answered page: its objects and the token of the next one.
struct Fetched {
    objects: Vec<ListedObject>,
    next: Option<String>,
}

enum PageOutcome {
    Page(Fetched),
    /// 410 on a continue token; the server may offer an inconsistent token to carry on with.
    Expired {
        inconsistent: Option<String>,
        message: String,
    },
}

/// About how many bytes of objects one page should bring. A list holds its page twice while
/// it is parsed (the answer and the objects taken from it) and four types are listed at once,
/// so pages of 500 large objects (CRDs, Helm release Secrets, dashboards in ConfigMaps) were
/// what made memory grow with the cluster. After each page the next one asks for about this
/// many bytes' worth of objects at the average size seen so far.
pub const PAGE_BYTES: u64 = 4 << 20;

/// Objects asked for by the first page of a type, before its object size is known.
const FIRST_PAGE: u32 = 20;

/// The limit of the next page: [`PAGE_BYTES`] worth of objects of the average size seen.
fn next_limit(max: u32, objects: u64, bytes: u64) -> u32 {
    if objects == 0 {
        return max.min(FIRST_PAGE);
    }
    let average = (bytes / objects).max(1);
    u32::try_from(PAGE_BYTES / average)
        .unwrap_or(u32::MAX)
        .clamp(1, max.max(1))
}

/// Lists every object of a type page by page, handing each page to `on_page` (which returns
/// `false` to stop early). Returns how many objects were handed over.
pub async fn list_pages<F, Fut>(
    client: &kube::Client,
    req: &ListRequest<'_>,
    policy: &Policy,
    observers: &Observers,
    mut on_page: F,
) -> Result<u64, ClusterError>
where
    F: FnMut(Vec<ListedObject>) -> Fut,
    Fut: Future<Output = bool>,
{
    let resource = req.ty.resource();
    let mut token: Option<String> = None;
    // Where we are, in the apiserver's key order, for a restart without any continue token.
    let mut last_key: Option<String> = None;
    let mut skip_through: Option<String> = None;
    let mut count = 0u64;
    // Objects and bytes seen, for the size of the next page.
    let (mut seen, mut seen_bytes) = (0u64, 0u64);
    loop {
        let limit = next_limit(req.page_size, seen, seen_bytes);
        let what = format!(
            "list {resource}{}",
            req.namespace
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default()
        );
        let outcome = retry::with_retry(policy, &what, observers, || {
            fetch(client, req, limit, token.as_deref(), &what)
        })
        .await?;
        let fetched = match outcome {
            PageOutcome::Page(p) => p,
            PageOutcome::Expired {
                inconsistent: Some(next),
                message,
            } => {
                observers.emit(&Event::ListResumed {
                    resource: resource.clone(),
                    message: format!(
                        "{message}; continuing with the server's inconsistent continue token"
                    ),
                });
                token = Some(next);
                continue;
            }
            PageOutcome::Expired {
                inconsistent: None,
                message,
            } => {
                // No token to carry on with: list again from the start and drop what was
                // already written, which the server's key order makes a single comparison.
                observers.emit(&Event::ListResumed {
                    resource: resource.clone(),
                    message: format!(
                        "{message}; listing again from the start after the last object written"
                    ),
                });
                token = None;
                skip_through.clone_from(&last_key);
                continue;
            }
        };
        let mut objects = fetched.objects;
        seen += objects.len() as u64;
        seen_bytes += objects.iter().map(|o| o.json.len() as u64).sum::<u64>();
        if let Some(bound) = &skip_through {
            objects.retain(|o| etcd_key(o) > *bound);
        }
        if let Some(o) = objects.last() {
            last_key = Some(etcd_key(o));
        }
        count += objects.len() as u64;
        if !objects.is_empty() && !on_page(objects).await {
            return Ok(count);
        }
        match fetched.next {
            Some(next) => token = Some(next),
            None => return Ok(count),
        }
    }
}

/// The order the apiserver lists in: by `namespace/name` as a string.
fn etcd_key(o: &ListedObject) -> String {
    match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    }
}

async fn fetch(
    client: &kube::Client,
    req: &ListRequest<'_>,
    limit: u32,
    token: Option<&str>,
    what: &str,
) -> Result<PageOutcome, ClusterError> {
    // Built in a block: the serializer is not Send and must not live across an await.
    let query = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("limit", &limit.to_string());
        if let Some(t) = token {
            q.append_pair("continue", t);
        }
        if let Some(s) = req.selector {
            q.append_pair("labelSelector", s);
        }
        q.finish()
    };
    let uri = format!("{}?{query}", req.ty.collection_path(req.namespace));
    let request = http::Request::get(&uri)
        .header(http::header::ACCEPT, "application/json")
        .body(kube::client::Body::empty())
        .map_err(|e| ClusterError::Protocol {
            what: what.to_string(),
            message: e.to_string(),
        })?;
    let exchange = async {
        let response = client
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
                message: format!("connection lost while reading the answer: {e}"),
                retryable: true,
                retry_after: None,
            })?
            .to_bytes();
        Ok::<_, ClusterError>((parts, bytes))
    };
    let (parts, bytes) = tokio::time::timeout(req.page_timeout, exchange)
        .await
        .map_err(|_| ClusterError::Api {
            what: what.to_string(),
            code: 0,
            message: format!("no answer within {}s", req.page_timeout.as_secs()),
            retryable: true,
            retry_after: None,
        })??;
    if parts.status.is_success() {
        return parse_page(&bytes, req.ty)
            .map(PageOutcome::Page)
            .map_err(|message| ClusterError::Protocol {
                what: what.to_string(),
                message,
            });
    }
    let status: StatusBody = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = parts.status.as_u16();
    if code == 410 && token.is_some() {
        let message = if status.message.is_empty() {
            "continue token expired".to_string()
        } else {
            status.message
        };
        return Ok(PageOutcome::Expired {
            inconsistent: status.metadata.cont.filter(|c| !c.is_empty()),
            message,
        });
    }
    let header_after = parts
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let after = header_after
        .or(status
            .details
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0))
        .map(Duration::from_secs);
    let message = match (status.message.is_empty(), status.reason.is_empty()) {
        (false, _) => status.message,
        (true, false) => status.reason,
        (true, true) => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string(),
    };
    Err(retry::from_status(what, code, &message, after))
}

fn parse_page(bytes: &[u8], ty: &ResourceType) -> Result<Fetched, String> {
    let page: Page = serde_json::from_slice(bytes).map_err(|e| format!("list page: {e}"))?;
    let api_version = ty.api_version();
    let mut objects = Vec::with_capacity(page.items.len());
    for raw in page.items {
        let head: Head = serde_json::from_str(raw.get()).map_err(|e| format!("list item: {e}"))?;
        let json = match (&head.api_version, &head.kind) {
            (Some(_), Some(_)) => minify(raw.get()),
            (None, None) => splice_type_meta(&minify(raw.get()), &api_version, &ty.kind),
            // One of the two: rare enough to afford a full parse.
            _ => {
                let mut v: serde_json::Value =
                    serde_json::from_str(raw.get()).map_err(|e| format!("list item: {e}"))?;
                v["apiVersion"] = api_version.clone().into();
                v["kind"] = ty.kind.clone().into();
                serde_json::to_vec(&v).map_err(|e| e.to_string())?
            }
        };
        objects.push(ListedObject {
            namespace: head.metadata.namespace.map(std::borrow::Cow::into_owned),
            name: head.metadata.name.into_owned(),
            json,
        });
    }
    Ok(Fetched {
        objects,
        next: page.metadata.cont.filter(|c| !c.is_empty()),
    })
}

/// Removes insignificant whitespace from JSON text (servers send compact JSON; proxies and
/// test servers may not), leaving strings untouched.
///
/// Most of an object's bytes are inside strings, which are copied whole: memchr finds their
/// ends, so the byte-at-a-time loop only runs over the short runs of structure between them.
/// This was the largest cost of a backup after compression (docs/benchmarks.md).
pub fn minify(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let quote = memchr::memchr(b'"', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        out.extend(
            bytes[at..quote]
                .iter()
                .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')),
        );
        if quote == bytes.len() {
            break;
        }
        let end = string_end(bytes, quote + 1);
        out.extend_from_slice(&bytes[quote..end]);
        at = end;
    }
    out
}

/// The index just past the closing quote of the string whose contents start at `from` (the
/// end of the text if it is unterminated).
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while let Some(i) = memchr::memchr2(b'"', b'\\', &bytes[from.min(bytes.len())..]) {
        let at = from + i;
        if bytes[at] == b'"' {
            return at + 1;
        }
        from = at + 2;
    }
    bytes.len()
}

/// `{"apiVersion":..,"kind":..,` + the rest of a compact object.
fn splice_type_meta(compact: &[u8], api_version: &str, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() + api_version.len() + kind.len() + 32);
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut out, api_version).expect("string");
    out.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut out, kind).expect("string");
    if compact.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&compact[1..]);
    } else {
        out.push(b'}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm_type() -> ResourceType {
        ResourceType {
            group: String::new(),
            version: "v1".into(),
            plural: "configmaps".into(),
            kind: "ConfigMap".into(),
            namespaced: true,
        }
    }

    #[test]
    fn minify_keeps_strings_intact() {
        let text = "{ \"a\" : [ 1, 2 ],\n \"b\": \"x  y\\\" z \\\\\" ,\"c\":\"\\n\" }";
        assert_eq!(
            String::from_utf8(minify(text)).unwrap(),
            r#"{"a":[1,2],"b":"x  y\" z \\","c":"\n"}"#
        );
    }

    #[test]
    fn minify_matches_a_json_serializer_on_pretty_printed_objects() {
        let objects = [
            serde_json::json!({"a": {"b": [1, 2.5, null, true]}, "s": "sp ace\ttab\nnl \"q\" \\"}),
            serde_json::json!({"": "", "e": {}, "l": [], "u": "\u{e9}\u{1f600}", "k": "\\\\\""}),
            serde_json::json!(["x", {"y": "a\\\"b"}, -0.0, 1e30]),
        ];
        for v in objects {
            let compact = serde_json::to_string(&v).unwrap();
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            assert_eq!(String::from_utf8(minify(&pretty)).unwrap(), compact);
            assert_eq!(String::from_utf8(minify(&compact)).unwrap(), compact);
        }
        // Truncated input ends without a panic, keeping what there was.
        assert_eq!(minify("{\"a\" : \"b\\"), b"{\"a\":\"b\\");
    }

    #[test]
    fn pages_get_type_meta_and_keep_every_field() {
        let page = br#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"tok"},
            "items":[{"metadata":{"name":"a","namespace":"ns","uid":"u"},"data":{"k":"v \u00e9"}},
                     {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b\"q","namespace":"ns"}}]}"#;
        let fetched = parse_page(page, &cm_type()).unwrap();
        assert_eq!(fetched.next.as_deref(), Some("tok"));
        let a: serde_json::Value = serde_json::from_slice(&fetched.objects[0].json).unwrap();
        assert_eq!(a["apiVersion"], "v1");
        assert_eq!(a["kind"], "ConfigMap");
        assert_eq!(a["metadata"]["uid"], "u");
        assert_eq!(a["data"]["k"], "v é");
        assert_eq!(fetched.objects[1].name, "b\"q");
        assert_eq!(fetched.objects[1].namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn pages_of_large_objects_ask_for_fewer() {
        assert_eq!(next_limit(500, 0, 0), 20, "first page");
        assert_eq!(next_limit(10, 0, 0), 10, "a smaller configured size wins");
        assert_eq!(
            next_limit(500, 100, 100 * 1024),
            500,
            "1 KiB objects: full pages"
        );
        assert_eq!(next_limit(500, 100, 100 * 64 * 1024), 64, "64 KiB objects");
        assert_eq!(
            next_limit(500, 10, 10 * (6 << 20)),
            1,
            "never below one object"
        );
        assert_eq!(next_limit(0, 10, 10), 1, "never zero, which means no limit");
    }

    #[test]
    fn etcd_order_sorts_namespace_slash_name_as_text() {
        let o = |ns: &str, n: &str| ListedObject {
            namespace: Some(ns.into()),
            name: n.into(),
            json: vec![],
        };
        assert!(
            etcd_key(&o("a-b", "x")) < etcd_key(&o("a", "x")),
            "'-' sorts before '/'"
        );
    }
}
