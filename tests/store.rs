//! The storage layer against real protocols: S3 as moto_server speaks it (started per test,
//! behind a fault-injecting proxy where a test needs failures), and a local temp directory.
//! Tests skip with a hint when moto_server is not installed, and fail under `CI=true`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt as _;
use lifeboat::store::{
    ObjectLock, ObjectLockMode, Settings, Sse, StaticCredentials, Store, StoreErrorKind,
};
use lifeboat_testkit::{FaultProxy, Moto, Rule};

const MIB: usize = 1024 * 1024;

fn s3_settings(endpoint: &str) -> Settings {
    Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: true,
        credentials: Some(StaticCredentials::new("testing", "testing")),
        // Real S3 wants the SDK's 1 s; tests exercise the same retries, faster.
        retry_initial_backoff: Duration::from_millis(5),
        ..Settings::default()
    }
}

fn multipart_settings(endpoint: &str) -> Settings {
    Settings {
        part_size: 5 * MIB,
        upload_concurrency: 2,
        ..s3_settings(endpoint)
    }
}

/// Deterministic bytes that do not repeat with the part size, so a misplaced part shows.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// Writes `body` in uneven chunks, as the archive writer does.
async fn upload_in_chunks(
    store: &Store,
    key: &str,
    body: &[u8],
) -> Result<u64, lifeboat::store::StoreError> {
    let mut upload = store.upload(key).await?;
    for chunk in body.chunks(MIB + 4099) {
        upload.write(Bytes::copy_from_slice(chunk)).await?;
    }
    assert_eq!(upload.written(), body.len() as u64);
    upload.finish().await
}

async fn read_stream(store: &Store, key: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .get_stream(key)
        .await
        .expect("get_stream")
        .try_collect()
        .await
        .expect("stream the object");
    chunks.concat()
}

/// The same observable behaviour from both backends.
async fn round_trip(store: &Store) {
    store.check().await.expect("check");
    let objects = [
        ("backups/b1/manifest.json", &b"{\"name\":\"b1\"}"[..]),
        ("backups/b1/archive.tar.zst", &b"archive-one"[..]),
        ("backups/b2/manifest.json", &b"{\"name\":\"b2\"}"[..]),
        ("backups/b10/manifest.json", &b"{}"[..]),
        ("restores/r1/result.json", &b"{}"[..]),
        ("top.json", &b""[..]),
    ];
    for (key, body) in objects {
        store.put(key, Bytes::from_static(body)).await.expect(key);
    }

    assert_eq!(
        store.get("backups/b1/manifest.json").await.unwrap(),
        &b"{\"name\":\"b1\"}"[..]
    );
    assert_eq!(
        read_stream(store, "backups/b1/archive.tar.zst").await,
        b"archive-one"
    );
    assert_eq!(store.get("top.json").await.unwrap().len(), 0);
    assert_eq!(
        store.head("backups/b1/archive.tar.zst").await.unwrap(),
        Some(11)
    );
    assert_eq!(store.head("top.json").await.unwrap(), Some(0));
    assert_eq!(store.head("backups/b3/manifest.json").await.unwrap(), None);
    assert_eq!(
        store.head("backups/b1").await.unwrap(),
        None,
        "a directory is not an object"
    );

    let missing = store.get("backups/b3/manifest.json").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(missing.kind(), StoreErrorKind::NotFound);
    assert!(
        missing.to_string().contains("backups/b3/manifest.json"),
        "{missing}"
    );
    let through_file = store.get("top.json/inner").await.unwrap_err();
    assert!(through_file.is_not_found(), "{through_file}");
    assert_eq!(store.head("top.json/inner").await.unwrap(), None);
    let missing = store
        .get_stream("nope")
        .await
        .err()
        .expect("missing stream");
    assert!(missing.is_not_found(), "{missing}");

    let listed = store.list("backups/").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "backups/b1/archive.tar.zst",
            "backups/b1/manifest.json",
            "backups/b10/manifest.json",
            "backups/b2/manifest.json",
        ]
    );
    assert_eq!(listed[0].size, 11);
    assert!(listed.iter().all(|o| o.last_modified.is_some()));
    let partial: Vec<String> = store
        .list("backups/b1")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        partial,
        [
            "backups/b1/archive.tar.zst",
            "backups/b1/manifest.json",
            "backups/b10/manifest.json"
        ],
        "a prefix matches part of a name, as on S3"
    );
    assert_eq!(store.list("").await.unwrap().len(), objects.len());
    assert!(store.list("nothing/").await.unwrap().is_empty());

    assert_eq!(
        store.list_dirs("backups/").await.unwrap(),
        ["b1", "b10", "b2"]
    );
    assert_eq!(
        store.list_dirs("backups").await.unwrap(),
        ["b1", "b10", "b2"]
    );
    assert_eq!(store.list_dirs("").await.unwrap(), ["backups", "restores"]);
    assert!(store.list_dirs("top.json/").await.unwrap().is_empty());

    store.delete("backups/b1/manifest.json").await.unwrap();
    store
        .delete("backups/b1/manifest.json")
        .await
        .expect("deleting a missing object is fine");
    assert_eq!(store.head("backups/b1/manifest.json").await.unwrap(), None);
    store.delete("backups/b2/manifest.json").await.unwrap();
    assert_eq!(store.list_dirs("backups/").await.unwrap(), ["b1", "b10"]);

    store
        .put(
            "backups/b1/archive.tar.zst",
            Bytes::from_static(b"replaced"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("backups/b1/archive.tar.zst").await.unwrap(),
        &b"replaced"[..]
    );

    for bad in ["../escape", "/abs", "a//b", "dir/"] {
        let err = store.put(bad, Bytes::new()).await.unwrap_err();
        assert!(err.to_string().contains("the key"), "{bad}: {err}");
    }
    assert!(store.open_uploads("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_under_a_prefix() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("roundtrip").await;
    let store = Store::open(
        "s3://roundtrip/clusters/prod/",
        &s3_settings(&moto.endpoint()),
    )
    .await
    .unwrap();
    assert_eq!(store.url(), "s3://roundtrip/clusters/prod");
    round_trip(&store).await;

    // Keys are relative to the URL's prefix; in the bucket they live under it.
    let head = moto
        .s3_client()
        .head_object()
        .bucket("roundtrip")
        .key("clusters/prod/backups/b10/manifest.json")
        .send()
        .await
        .expect("the object is stored under the prefix");
    assert_eq!(head.content_length(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&format!("file://{}", root.display()), &Settings::default())
        .await
        .unwrap();
    assert_eq!(store.url(), format!("file://{}", root.display()));
    round_trip(&store).await;

    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path().strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "backups/b1/archive.tar.zst",
            "backups/b10/manifest.json",
            "restores/r1/result.json",
            "top.json"
        ]
    );
    assert!(
        !root.join("backups/b2").exists(),
        "deleting the last object of a directory removes the directory, as on S3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_left_by_a_killed_run_are_aborted_by_key() {
    // Local: what a killed process leaves is its partial file; S3: an open multipart upload.
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(
        &format!("file://{}", dir.path().display()),
        &Settings::default(),
    )
    .await
    .unwrap();
    let b1 = dir.path().join("backups/b1");
    std::fs::create_dir_all(&b1).unwrap();
    std::fs::write(b1.join("archive.tar.zst.0123456789abcdef.partial"), b"cut").unwrap();
    std::fs::write(b1.join("log.jsonl.zst.0123456789abcdef.partial"), b"other").unwrap();
    assert_eq!(
        local
            .abort_uploads("backups/b1/archive.tar.zst")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        local.open_uploads("backups/").await.unwrap(),
        ["backups/b1/log.jsonl.zst"],
        "only the key asked for"
    );
    assert_eq!(
        local
            .abort_uploads("backups/b2/archive.tar.zst")
            .await
            .unwrap(),
        0
    );

    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("bkt").await;
    let s3 = Store::open("s3://bkt/p", &multipart_settings(&moto.endpoint()))
        .await
        .unwrap();
    let client = moto.s3_client();
    for key in [
        "p/backups/b1/archive.tar.zst",
        "p/backups/b1/archive.tar.zst.x",
    ] {
        client
            .create_multipart_upload()
            .bucket("bkt")
            .key(key)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        s3.abort_uploads("backups/b1/archive.tar.zst")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s3.open_uploads("backups/").await.unwrap(),
        ["backups/b1/archive.tar.zst.x"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_upload_is_invisible_until_finished() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &format!("file://{}", dir.path().display()),
        &Settings::default(),
    )
    .await
    .unwrap();
    let mut upload = store.upload("backups/b1/archive.tar.zst").await.unwrap();
    upload.write(Bytes::from(data(3 * MIB, 7))).await.unwrap();
    upload.write(Bytes::from_static(b"tail")).await.unwrap();
    assert!(
        store.list("").await.unwrap().is_empty(),
        "nothing visible before finish"
    );
    assert_eq!(
        store.head("backups/b1/archive.tar.zst").await.unwrap(),
        None
    );
    assert_eq!(
        store.open_uploads("backups/").await.unwrap(),
        ["backups/b1/archive.tar.zst"]
    );
    assert_eq!(upload.finish().await.unwrap(), 3 * MIB as u64 + 4);
    assert!(store.open_uploads("").await.unwrap().is_empty());
    let mut expected = data(3 * MIB, 7);
    expected.extend_from_slice(b"tail");
    assert_eq!(
        read_stream(&store, "backups/b1/archive.tar.zst").await,
        expected
    );

    let mut dropped = store.upload("backups/b2/archive.tar.zst").await.unwrap();
    dropped.write(Bytes::from_static(b"half")).await.unwrap();
    assert_eq!(store.open_uploads("").await.unwrap().len(), 1);
    drop(dropped);
    assert!(
        store.open_uploads("").await.unwrap().is_empty(),
        "a dropped upload leaves nothing"
    );

    let aborted = store.upload("backups/b3/archive.tar.zst").await.unwrap();
    aborted.abort().await;
    assert!(store.open_uploads("").await.unwrap().is_empty());
    assert_eq!(store.list("").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_of_20_mib_reads_back_identical() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("big").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    // Parts overlap long enough for the proxy to see how many are in flight.
    proxy.add(
        Rule::latency(Duration::from_millis(300))
            .method("PUT")
            .query_contains("partNumber="),
    );
    let store = Store::open("s3://big/p", &multipart_settings(&proxy.endpoint()))
        .await
        .unwrap();
    let body = data(20 * MIB + 123, 42);
    let size = upload_in_chunks(&store, "archive.tar.zst", &body)
        .await
        .unwrap();
    assert_eq!(size, body.len() as u64);

    let parts: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber="))
        .collect();
    assert_eq!(
        parts.len(),
        5,
        "four 5 MiB parts and a 123-byte tail: {parts:?}"
    );
    assert!(parts.iter().all(|r| r.status == 200), "{parts:?}");
    assert_eq!(
        proxy.max_concurrent(),
        2,
        "parts go out two at a time (upload_concurrency), never more"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| !(r.method == "PUT" && r.query.is_empty())),
        "a multipart upload sends no PutObject"
    );

    assert_eq!(
        store.head("archive.tar.zst").await.unwrap(),
        Some(body.len() as u64)
    );
    assert!(
        read_stream(&store, "archive.tar.zst").await == body,
        "streamed bytes differ"
    );
    assert!(
        store.get("archive.tar.zst").await.unwrap() == body,
        "read bytes differ"
    );
    assert!(store.open_uploads("").await.unwrap().is_empty());
    assert!(moto.open_multipart_uploads("big").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_upload_is_a_single_put() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("small").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let store = Store::open("s3://small", &multipart_settings(&proxy.endpoint()))
        .await
        .unwrap();
    let body = data(MIB, 3);
    assert_eq!(
        upload_in_chunks(&store, "m.json", &body).await.unwrap(),
        MIB as u64
    );
    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        (writes[0].method.as_str(), writes[0].path.as_str()),
        ("PUT", "/small/m.json")
    );
    assert!(store.get("m.json").await.unwrap() == body);

    let empty = store.upload("empty").await.unwrap();
    assert_eq!(empty.finish().await.unwrap(), 0);
    assert_eq!(store.head("empty").await.unwrap(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_whose_third_part_always_fails_is_aborted() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("faulty").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let rule = proxy.add(
        Rule::internal_error()
            .method("PUT")
            .query_param("partNumber", "3"),
    );
    let store = Store::open("s3://faulty/prod", &multipart_settings(&proxy.endpoint()))
        .await
        .unwrap();
    let err = upload_in_chunks(&store, "backups/b1/archive.tar.zst", &data(20 * MIB, 9))
        .await
        .expect_err("the upload must fail");

    assert_eq!(err.kind(), StoreErrorKind::Transient, "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.op(), "UploadPart");
    assert_eq!(err.location(), "faulty");
    assert_eq!(err.key(), Some("prod/backups/b1/archive.tar.zst"));
    let text = err.to_string();
    assert!(text.contains("part 3"), "{text}");
    assert!(text.contains("InternalError"), "{text}");
    assert!(text.contains("5 attempts"), "{text}");
    assert_eq!(
        proxy.fired(rule),
        u64::from(lifeboat::store::MAX_ATTEMPTS),
        "the SDK retried the part"
    );

    let aborts = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.query.contains("uploadId="))
        .count();
    assert_eq!(aborts, 1, "one AbortMultipartUpload");
    assert!(store.open_uploads("").await.unwrap().is_empty());
    assert!(moto.open_multipart_uploads("faulty").await.is_empty());
    assert_eq!(
        store.head("backups/b1/archive.tar.zst").await.unwrap(),
        None
    );
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_failing_once_are_retried() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("flaky").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let error = proxy.add(
        Rule::internal_error()
            .method("PUT")
            .query_param("partNumber", "2")
            .times(1),
    );
    let reset = proxy.add(
        Rule::reset()
            .method("PUT")
            .query_param("partNumber", "3")
            .times(1),
    );
    let slow = proxy.add(
        Rule::slow_down()
            .method("POST")
            .query_contains("uploadId=")
            .times(1),
    );
    let store = Store::open("s3://flaky", &multipart_settings(&proxy.endpoint()))
        .await
        .unwrap();
    let body = data(16 * MIB, 5);
    assert_eq!(
        upload_in_chunks(&store, "a.tar.zst", &body).await.unwrap(),
        body.len() as u64
    );
    assert_eq!(proxy.fired(error), 1);
    assert_eq!(proxy.fired(reset), 1);
    assert_eq!(
        proxy.fired(slow),
        1,
        "CompleteMultipartUpload was throttled once"
    );
    let part2: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.query.split('&').any(|p| p == "partNumber=2"))
        .map(|r| r.status)
        .collect();
    assert_eq!(part2, [500, 200]);
    assert!(store.get("a.tar.zst").await.unwrap() == body);
    assert!(moto.open_multipart_uploads("flaky").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_no_such_bucket_naming_it() {
    let Some(moto) = Moto::start() else { return };
    let store = Store::open("s3://not-there/x", &multipart_settings(&moto.endpoint()))
        .await
        .unwrap();

    let err = store
        .put("manifest.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NoSuchBucket, "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with("S3 PutObject on bucket \"not-there\" (key \"x/manifest.json\") failed: the bucket does not exist; create it or fix storage.url"),
        "{text}"
    );

    let err = store.check().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NoSuchBucket, "{err}");
    assert!(
        err.to_string()
            .contains("HeadBucket on bucket \"not-there\""),
        "{err}"
    );

    let err = store.list("backups/").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NoSuchBucket, "{err}");
    let err = store.list_dirs("backups/").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NoSuchBucket, "{err}");
    let err = store.get("manifest.json").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NoSuchBucket, "{err}");

    let err = upload_in_chunks(&store, "archive", &data(6 * MIB, 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NoSuchBucket, "{err}");
    assert_eq!(err.op(), "CreateMultipartUpload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failures_are_classified_with_advice() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("guarded").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let store = Store::open("s3://guarded/team-a", &s3_settings(&proxy.endpoint()))
        .await
        .unwrap();

    let denied = proxy.add(Rule::status(403, "AccessDenied", "Access Denied").method("PUT"));
    let err = store
        .put("m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AccessDenied, "{err}");
    assert!(
        err.to_string().contains(
            "access denied; the IAM role lifeboat runs as needs s3:PutObject on arn:aws:s3:::guarded/team-a/* (see docs/iam-policy.json)"
        ),
        "{err}"
    );
    assert_eq!(proxy.fired(denied), 1, "access denied is not retried");
    proxy.clear_rules();

    proxy.add(Rule::status(403, "AccessDenied", "Access Denied").method("GET"));
    let err = store.list("").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("s3:ListBucket on arn:aws:s3:::guarded "),
        "{err}"
    );
    proxy.clear_rules();

    let throttle = proxy.add(Rule::slow_down());
    let err = store.get("m.json").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Throttled, "{err}");
    assert!(err.is_retryable());
    assert_eq!(
        proxy.fired(throttle),
        u64::from(lifeboat::store::MAX_ATTEMPTS)
    );
    proxy.clear_rules();

    proxy.add(Rule::status(
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    ));
    let err = store.head("m.json").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AccessDenied, "{err}");
    proxy.clear_rules();

    let unreachable = Store::open("s3://guarded", &s3_settings("http://127.0.0.1:9"))
        .await
        .unwrap();
    let err = unreachable.check().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Transient, "{err}");
    assert!(
        err.to_string()
            .contains("could not reach S3 at http://127.0.0.1:9"),
        "{err}"
    );

    store
        .put("m.json", Bytes::from_static(b"{}"))
        .await
        .expect("works once the faults are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_aes256_is_set_on_every_write() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("sealed").await;
    let settings = Settings {
        server_side_encryption: Some(Sse::Aes256),
        ..multipart_settings(&moto.endpoint())
    };
    let store = Store::open("s3://sealed/p", &settings).await.unwrap();
    store
        .put("small.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    upload_in_chunks(&store, "big.tar.zst", &data(11 * MIB, 2))
        .await
        .unwrap();

    let client = moto.s3_client();
    for key in ["p/small.json", "p/big.tar.zst"] {
        let head = client
            .head_object()
            .bucket("sealed")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256),
            "{key}"
        );
    }
    let plain = Store::open("s3://sealed/q", &multipart_settings(&moto.endpoint()))
        .await
        .unwrap();
    plain
        .put("plain.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let head = client
        .head_object()
        .bucket("sealed")
        .key("q/plain.json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        None,
        "the check can tell the difference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_unfinished_upload_aborts_it() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("dropped").await;
    let store = Store::open("s3://dropped", &multipart_settings(&moto.endpoint()))
        .await
        .unwrap();
    let mut upload = store.upload("backups/b1/archive.tar.zst").await.unwrap();
    upload.write(Bytes::from(data(6 * MIB, 11))).await.unwrap();
    assert_eq!(
        store.open_uploads("backups/").await.unwrap(),
        ["backups/b1/archive.tar.zst"],
        "a full part started a multipart upload"
    );
    drop(upload);

    let deadline = Instant::now() + Duration::from_secs(30);
    while !moto.open_multipart_uploads("dropped").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.open_uploads("").await.unwrap().is_empty());
    assert_eq!(
        store.head("backups/b1/archive.tar.zst").await.unwrap(),
        None
    );

    // An explicit abort does the same, at once.
    let mut upload = store.upload("x").await.unwrap();
    upload.write(Bytes::from(data(5 * MIB, 12))).await.unwrap();
    assert_eq!(store.open_uploads("").await.unwrap(), ["x"]);
    upload.abort().await;
    assert!(store.open_uploads("").await.unwrap().is_empty());
}

#[tokio::test]
async fn open_refuses_bad_settings_before_any_request() {
    let settings = Settings {
        part_size: MIB,
        ..s3_settings("http://127.0.0.1:9")
    };
    let err = Store::open("s3://bucket", &settings).await.unwrap_err();
    assert!(err.to_string().contains("5 MiB"), "{err}");
    let settings = Settings {
        kms_key_id: Some("k".into()),
        ..s3_settings("http://127.0.0.1:9")
    };
    let err = Store::open("s3://bucket", &settings).await.unwrap_err();
    assert!(err.to_string().contains("aws:kms"), "{err}");
    let settings = Settings {
        endpoint: Some("localhost:9000".into()),
        ..s3_settings("http://x")
    };
    let err = Store::open("s3://bucket", &settings).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidLocation, "{err}");
    let err = Store::open("file://relative/dir", &Settings::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("file:///"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_is_set_on_every_write() {
    let Some(moto) = Moto::start() else { return };
    let client = moto.s3_client();
    client
        .create_bucket()
        .bucket("locked")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let proxy = FaultProxy::start(&moto.endpoint());
    let settings = Settings {
        object_lock: Some(ObjectLock {
            mode: ObjectLockMode::Governance,
            retain_days: 7,
        }),
        ..multipart_settings(&proxy.endpoint())
    };
    let store = Store::open("s3://locked", &settings).await.unwrap();
    let now = jiff::Timestamp::now().as_second();
    store
        .put("manifest.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    upload_in_chunks(&store, "archive.tar.zst", &data(6 * MIB, 4))
        .await
        .unwrap();

    let head = client
        .head_object()
        .bucket("locked")
        .key("manifest.json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode(),
        Some(&aws_sdk_s3::types::ObjectLockMode::Governance)
    );
    let until = head
        .object_lock_retain_until_date()
        .expect("retain-until date");
    let days = (until.secs() - now) / 86_400;
    assert!((6..=7).contains(&days), "locked for {days} days");

    // moto keeps no lock on multipart uploads, so check the request that starts one.
    let requests = proxy.requests();
    let create = requests
        .iter()
        .find(|r| r.method == "POST" && r.query.starts_with("uploads"))
        .expect("a CreateMultipartUpload request");
    assert_eq!(create.header("x-amz-object-lock-mode"), Some("GOVERNANCE"));
    assert!(
        create
            .header("x-amz-object-lock-retain-until-date")
            .is_some(),
        "{create:?}"
    );

    let err = Store::open(
        "file:///tmp/lifeboat-never-created",
        &Settings {
            object_lock: settings.object_lock,
            ..Settings::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Object Lock needs S3"), "{err}");
}

/// For S3-compatible stores that reject the checksum headers AWS S3 accepts by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mode_when_required_sends_no_checksums() {
    fn checksummed(r: &lifeboat_testkit::RequestRecord) -> bool {
        r.headers.iter().any(|(n, v)| {
            n.starts_with("x-amz-checksum-")
                || n == "x-amz-sdk-checksum-algorithm"
                || (n == "x-amz-trailer" && v.contains("checksum"))
        })
    }
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("sums").await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let body = data(7 * MIB, 8);

    let default = Store::open("s3://sums/a", &multipart_settings(&proxy.endpoint()))
        .await
        .unwrap();
    default
        .put("m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    upload_in_chunks(&default, "big", &body).await.unwrap();
    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes.iter().all(checksummed), "{writes:?}");

    proxy.clear_requests();
    let settings = Settings {
        checksum_mode: lifeboat::store::ChecksumMode::WhenRequired,
        ..multipart_settings(&proxy.endpoint())
    };
    let plain = Store::open("s3://sums/b", &settings).await.unwrap();
    plain
        .put("m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    upload_in_chunks(&plain, "big", &body).await.unwrap();
    assert!(plain.get("big").await.unwrap() == body);
    let requests = proxy.requests();
    assert!(requests.len() >= 5, "{requests:?}");
    assert!(!requests.iter().any(checksummed), "{requests:?}");
}
