//! kube-rs 5 against kubesim: discovery, dynamic CRUD, patches, watcher, the request log and
//! fault injection.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::runtime::watcher;
use kubesim::{Fault, FaultAction, KubeSim};
use serde_json::json;

fn configmaps() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps")
}

fn cm(name: &str, labels: &serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": name}}))
    .unwrap()
}

#[tokio::test]
async fn discovery_run_sees_builtins_and_crds() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_yaml(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.edge.example.com}\nspec:\n  group: edge.example.com\n  scope: Cluster\n  names: {plural: widgets, kind: Widget}\n  versions:\n  - {name: v1alpha1, served: true, storage: false}\n  - {name: v1, served: true, storage: true}\n",
    )
    .unwrap();
    let discovery = Discovery::new(sim.client())
        .run()
        .await
        .expect("Discovery::run succeeds");
    let groups: BTreeSet<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "apps",
        "batch",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "edge.example.com",
        "apiregistration.k8s.io",
    ] {
        assert!(groups.contains(g), "missing group {g:?}: {groups:?}");
    }
    let edge = discovery.get("edge.example.com").unwrap();
    assert_eq!(
        edge.preferred_version_or_latest(),
        "v1",
        "GA wins over alpha regardless of CRD order"
    );
    let (ar, caps) = edge.recommended_kind("Widget").unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Cluster);
    let apps = discovery.get("apps").unwrap();
    let (_, caps) = apps.recommended_kind("Deployment").unwrap();
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );
    let aggregated = Discovery::new(sim.client())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    assert!(aggregated.groups().any(|g| g.name() == "edge.example.com"));
}

#[tokio::test]
async fn dynamic_crud_pagination_and_patches() {
    let sim = KubeSim::start().await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &configmaps());
    for i in 0..7 {
        let app = if i % 2 == 0 { "web" } else { "db" };
        api.create(
            &PostParams::default(),
            &cm(&format!("cm{i}"), &json!({"app": app})),
        )
        .await
        .unwrap();
    }
    // Pages of 2 until no continue token; the same set as one list, each name once.
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut rvs = BTreeSet::new();
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 2);
        rvs.insert(page.metadata.resource_version.clone().unwrap());
        names.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = ListParams::default().limit(2).continue_token(&c),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("cm{i}")).collect::<Vec<_>>());
    assert_eq!(
        rvs.len(),
        1,
        "every page reports the snapshot's resourceVersion"
    );
    let web = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 4);
    // As on a real server, built-in list items come without apiVersion/kind: a client must
    // set them from the resource it listed.
    assert!(
        web.items.iter().all(|o| o.types.is_none()),
        "built-in list items carry no TypeMeta"
    );

    let got = api.get("cm1").await.unwrap();
    assert_eq!(got.data["data"]["k"], "cm1");

    let merged = api
        .patch(
            "cm1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["data"]["m"], "1");
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "j"}]))
            .unwrap();
    let patched = api
        .patch("cm1", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.data["data"]["k"], "j");
    let applied = api
        .patch("applied", &PatchParams::apply("krs").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    assert_eq!(applied.data["data"]["a"], "1");
    let mf = applied.metadata.managed_fields.unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("krs"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Optimistic concurrency: a stale resourceVersion is refused with 409.
    let mut stale = got.clone();
    stale.data["data"]["k"] = json!("stale");
    let err = api
        .replace("cm1", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    let deleted = api.delete("cm0", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "ConfigMap deletes answer with a Status");
    let err = api.get("cm0").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"));
    let gone = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=db"),
        )
        .await
        .unwrap();
    assert_eq!(gone.left().unwrap().items.len(), 3);
    let rest = api.list(&ListParams::default()).await.unwrap();
    let rest: Vec<String> = rest
        .items
        .into_iter()
        .map(|o| o.metadata.name.unwrap())
        .collect();
    assert_eq!(rest, ["applied", "cm2", "cm4", "cm6"]);
}

#[tokio::test]
async fn watcher_sees_creates_updates_and_deletes() {
    let sim = KubeSim::start().await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &configmaps());
    api.create(&PostParams::default(), &cm("before", &json!({})))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let writer = {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm("new", &json!({})))
                .await
                .unwrap();
            api.patch(
                "new",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"x": "y"}})),
            )
            .await
            .unwrap();
            api.delete("new", &DeleteParams::default()).await.unwrap();
        }
    };
    let mut writer = Some(Box::pin(writer));
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitApply(o) => {
                    seen.push(format!("init {}", o.metadata.name.unwrap()));
                }
                watcher::Event::InitDone => {
                    if let Some(w) = writer.take() {
                        tokio::spawn(w);
                    }
                }
                watcher::Event::Apply(o) => seen.push(format!(
                    "apply {} {}",
                    o.metadata.name.unwrap(),
                    o.data["data"]["x"].as_str().unwrap_or("-")
                )),
                watcher::Event::Delete(o) => {
                    seen.push(format!("delete {}", o.metadata.name.unwrap()));
                    break;
                }
                watcher::Event::Init => {}
            }
        }
    })
    .await;
    assert!(result.is_ok(), "watcher timed out; saw {seen:?}");
    assert_eq!(
        seen,
        ["init before", "apply new -", "apply new y", "delete new"]
    );

    // Streaming lists end their initial events with the initial-events-end bookmark.
    let mut streaming = watcher(api, watcher::Config::default().streaming_lists()).boxed();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = streaming.try_next().await.unwrap() {
            if matches!(ev, watcher::Event::InitDone) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(done.ok(), Some(true), "streaming list reaches InitDone");
}

#[tokio::test]
async fn request_log_records_method_path_query_status() {
    let sim = KubeSim::start().await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &configmaps());
    api.create(&PostParams::default(), &cm("a", &json!({})))
        .await
        .unwrap();
    sim.clear_requests();
    api.list(&ListParams::default().limit(10)).await.unwrap();
    let _ = api.get("missing").await;
    let log = sim.requests();
    assert!(log.iter().all(|r| !r.is_mutating()), "{log:?}");
    assert!(log.iter().any(|r| r.method == "GET"
        && r.path == "/api/v1/namespaces/default/configmaps"
        && r.query.contains("limit=10")
        && r.status == 200));
    assert!(
        log.iter()
            .any(|r| r.path.ends_with("/configmaps/missing") && r.status == 404)
    );
}

#[tokio::test]
async fn faults_status_retry_after_latency_and_drop() {
    let sim = KubeSim::start().await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &configmaps());
    let id =
        sim.add_fault(Fault::status("/api/v1/namespaces/default/configmaps", 500).method("GET"));
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500),
        "{err:?}"
    );
    sim.remove_fault(id);

    sim.add_fault(
        Fault::new(
            "/api/v1/namespaces/default/configmaps",
            FaultAction::Status {
                code: 429,
                retry_after: Some(2),
            },
        )
        .times(1),
    );
    let resp = reqwest_like_get(&sim, "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(resp.0, 429);
    assert_eq!(resp.1.as_deref(), Some("2"), "Retry-After header");
    assert_eq!(
        reqwest_like_get(&sim, "/api/v1/namespaces/default/configmaps")
            .await
            .0,
        200,
        "times(1) fires once"
    );

    sim.add_fault(
        Fault::new(
            "/api/v1/namespaces/default/secrets",
            FaultAction::Latency(Duration::from_millis(300)),
        )
        .times(1),
    );
    let started = std::time::Instant::now();
    assert_eq!(
        reqwest_like_get(&sim, "/api/v1/namespaces/default/secrets")
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.add_fault(
        Fault::new(
            "/api/v1/namespaces/default/pods",
            FaultAction::DropConnection,
        )
        .times(1),
    );
    let pods: Api<DynamicObject> = Api::namespaced_with(
        sim.client(),
        "default",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods"),
    );
    assert!(
        pods.list(&ListParams::default()).await.is_err(),
        "a dropped connection is an error to the client"
    );
    assert!(
        pods.list(&ListParams::default()).await.is_ok(),
        "and the next request works"
    );
}

/// A raw GET returning status and Retry-After, to see headers kube-rs does not expose.
async fn reqwest_like_get(sim: &KubeSim, path: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let retry = buf
        .lines()
        .find_map(|l| {
            l.strip_prefix("retry-after: ")
                .or_else(|| l.strip_prefix("Retry-After: "))
        })
        .map(|s| s.trim().to_string());
    (status, retry)
}

#[tokio::test]
async fn expired_continue_token_resumes_without_duplicates() {
    let sim = KubeSim::start().await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &configmaps());
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), &json!({})))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    // A change between pages, then compaction: the next page gets 410 with a usable token.
    api.create(&PostParams::default(), &cm("c9", &json!({})))
        .await
        .unwrap();
    sim.compact();
    let err = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected 410")
    };
    assert_eq!(status.code, 410);
    assert_eq!(status.reason, "Expired");
    let raw: serde_json::Value = {
        let (code, body) = raw_get(
            &sim,
            &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"),
        )
        .await;
        assert_eq!(code, 410);
        serde_json::from_str(&body).unwrap()
    };
    let mut next = raw["metadata"]["continue"]
        .as_str()
        .expect("410 carries an inconsistent continue token")
        .to_string();
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    loop {
        let page = api
            .list(&ListParams::default().limit(2).continue_token(&next))
            .await
            .unwrap();
        names.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => next = c,
            None => break,
        }
    }
    assert_eq!(
        names,
        ["c0", "c1", "c2", "c3", "c4", "c5", "c9"],
        "no object twice, the new one included"
    );

    // The ExpireContinue fault does the same on demand.
    sim.add_fault(
        Fault::new(
            "/api/v1/namespaces/default/configmaps",
            FaultAction::ExpireContinue,
        )
        .times(1),
    );
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    let err = api
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 410));
}

async fn raw_get(sim: &KubeSim, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn watch_from_compacted_revision_gets_expired_event() {
    let sim = KubeSim::builder().watch_history(10).start().await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &configmaps());
    let first = api
        .create(&PostParams::default(), &cm("x", &json!({})))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    for i in 0..20 {
        api.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let (code, body) = raw_get(
        &sim,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=2"
        ),
    )
    .await;
    assert_eq!(
        code, 200,
        "a too-old watch is an ERROR event, not an HTTP error"
    );
    assert!(
        body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":410"),
        "{body}"
    );
    // A watch from a recent revision replays exactly the changes after it.
    let recent = api
        .get("x")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"i": "last"}})),
    )
    .await
    .unwrap();
    let (_, body) = raw_get(&sim, &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={recent}&timeoutSeconds=1")).await;
    assert_eq!(body.matches("\"type\":\"MODIFIED\"").count(), 1, "{body}");
    assert!(body.contains("\"i\":\"last\""));
}
