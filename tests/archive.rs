//! The archive format end to end: what the writer makes, the real `zstd` and GNU `tar` extract;
//! what is corrupt or hostile, the reader refuses; the async bridge writes the same bytes in
//! bounded memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat::archive::layout::{self, EntryPath};
use lifeboat::archive::reader::{self, ArchiveError, ArchiveReader, Limits};
use lifeboat::archive::writer::{self, ArchiveSummary, ArchiveWriter, CompressionOptions};

/// 2026-11-28T02:00:00Z, the start of a pretend backup.
const MTIME: u64 = 1_795_831_200;

/// One object as the backup hands it to the writer.
#[derive(Debug, Clone)]
struct Object {
    path: String,
    name: String,
    namespace: Option<String>,
    json: Vec<u8>,
}

fn object(
    plural: &str,
    group: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    extra: &str,
) -> Object {
    let mut metadata = serde_json::json!({ "name": name, "uid": format!("{:032x}", fnv(name)) });
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let json = serde_json::json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": metadata,
        "data": { "extra": extra },
    });
    Object {
        path: layout::object_path(&layout::resource_dir(plural, group), namespace, name),
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
        json: serde_json::to_vec(&json).unwrap(),
    }
}

/// A small deterministic hash, to give objects distinct but reproducible content.
fn fnv(s: &str) -> u128 {
    s.bytes()
        .fold(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d_u128, |h, b| {
            (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b)
        })
}

/// A few thousand small objects of several kinds and scopes, plus the names that stress the
/// layout: 253 characters, non-ASCII, and both at once.
fn corpus() -> Vec<Object> {
    let mut objects = Vec::new();
    for ns in 0..20 {
        let ns = format!("tenant-{ns:02}");
        objects.push(object("namespaces", "", "Namespace", None, &ns, ""));
        for i in 0..60 {
            objects.push(object(
                "configmaps",
                "",
                "ConfigMap",
                Some(&ns),
                &format!("settings-{i}"),
                &"x".repeat(i),
            ));
            objects.push(object(
                "secrets",
                "",
                "Secret",
                Some(&ns),
                &format!("token-{i}"),
                "c2VjcmV0",
            ));
        }
        for i in 0..25 {
            objects.push(object(
                "deployments",
                "apps",
                "Deployment",
                Some(&ns),
                &format!("web-{i}"),
                "replicas",
            ));
        }
    }
    for i in 0..200 {
        objects.push(object(
            "clusterroles",
            "rbac.authorization.k8s.io",
            "ClusterRole",
            None,
            &format!("system:role-{i}"),
            "",
        ));
    }
    let long = format!("{}-end", "long".repeat(62));
    assert_eq!(long.len(), 252);
    let long = format!("{long}x");
    objects.push(object(
        "widgets",
        "example.com",
        "Widget",
        None,
        &long,
        "253 characters",
    ));
    objects.push(object(
        "widgets",
        "example.com",
        "Widget",
        Some("tenant-00"),
        &long,
        "namespaced",
    ));
    objects.push(object(
        "configmaps",
        "",
        "ConfigMap",
        Some("tenant-01"),
        "café-ünïcødé-名前",
        "non-ASCII",
    ));
    objects.push(object(
        "configmaps",
        "",
        "ConfigMap",
        Some("tenant-01"),
        &"名".repeat(100),
        "cut multi-byte",
    ));
    objects
}

fn write(objects: &[Object], opts: &CompressionOptions) -> (Vec<u8>, ArchiveSummary) {
    let mut w = ArchiveWriter::new(Vec::new(), opts, MTIME).unwrap();
    for o in objects {
        w.append(&o.path, &o.json).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(bytes: &[u8], limits: Limits) -> Result<Vec<reader::Entry>, ArchiveError> {
    let mut r = ArchiveReader::new(bytes, limits)?;
    let mut entries = Vec::new();
    while let Some(entry) = r.next_entry()? {
        entries.push(entry);
    }
    r.finish()?;
    Ok(entries)
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn plain_zstd_and_gnu_tar_extract_every_object() {
    let objects = corpus();
    assert!(objects.len() > 3000);
    for workers in [0, 2] {
        let opts = CompressionOptions {
            workers,
            ..CompressionOptions::default()
        };
        let (bytes, summary) = write(&objects, &opts);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive.tar.zst");
        std::fs::write(&archive, &bytes).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();

        // Exactly what the docs tell a user to type: no `--long`, no `--memory`.
        let mut zstd = Command::new("zstd")
            .arg("-dc")
            .arg(&archive)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the zstd binary is needed (apt-get install zstd)");
        let tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&out)
            .stdin(zstd.stdout.take().unwrap())
            .output()
            .expect("GNU tar is needed");
        assert!(
            zstd.wait().unwrap().success(),
            "zstd -dc failed (workers={workers})"
        );
        assert!(
            tar.status.success(),
            "tar -x failed: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        assert!(
            tar.stderr.is_empty(),
            "tar warned: {}",
            String::from_utf8_lossy(&tar.stderr)
        );

        assert_eq!(
            std::fs::read(out.join(layout::VERSION_ENTRY)).unwrap(),
            b"1"
        );
        for o in &objects {
            let file = out.join(&o.path);
            let content = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", o.path));
            assert_eq!(content, o.json, "{}", o.path);
            // The file name may be cut; the object inside always carries its real name.
            let v: serde_json::Value = serde_json::from_slice(&content).unwrap();
            assert_eq!(v["metadata"]["name"], o.name.as_str());
        }
        assert_eq!(files_under(&out).len(), objects.len() + 1);
        assert_eq!(summary.entries, objects.len() as u64);
        assert_eq!(summary.size, bytes.len() as u64);

        let long = objects.iter().find(|o| o.name.len() == 253).unwrap();
        let file_name = long.path.rsplit('/').next().unwrap();
        assert_eq!(file_name.len(), 255, "{file_name}");
        let wide = objects.iter().find(|o| o.name.starts_with('名')).unwrap();
        assert!(wide.path.rsplit('/').next().unwrap().len() <= 255);
    }
}

#[test]
fn the_reader_returns_every_object_and_the_writers_checksum() {
    let objects = corpus();
    let (bytes, summary) = write(&objects, &CompressionOptions::default());
    let mut r = ArchiveReader::new(bytes.as_slice(), Limits::default()).unwrap();
    let version = r.next_entry().unwrap().unwrap();
    assert_eq!(
        (version.kind, version.data),
        (EntryPath::Version, b"1".to_vec())
    );
    for o in &objects {
        let entry = r.next_entry().unwrap().unwrap();
        assert_eq!(entry.path, o.path);
        assert_eq!(entry.data, o.json);
        let EntryPath::Object {
            namespace,
            file_name,
            ..
        } = entry.kind
        else {
            panic!("{}", entry.path)
        };
        assert_eq!(namespace, o.namespace);
        assert_eq!(file_name, layout::file_name(&o.name));
    }
    assert!(r.next_entry().unwrap().is_none());
    assert_eq!(r.finish().unwrap(), (summary.size, summary.sha256.clone()));

    let report = reader::verify(
        bytes.as_slice(),
        summary.size,
        &summary.sha256,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(report.entries, objects.len() as u64);
    assert_eq!(report.sha256, summary.sha256);
    let mut counts = BTreeMap::new();
    for o in &objects {
        *counts
            .entry(o.path.split('/').nth(1).unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(report.resources, counts);
    assert_eq!(report.resources["deployments.apps"], 500);
}

fn small_archive() -> (Vec<u8>, ArchiveSummary) {
    write(&corpus()[..300], &CompressionOptions::default())
}

fn assert_refused(result: Result<impl std::fmt::Debug, ArchiveError>, what: &str) -> ArchiveError {
    let err = result.expect_err(what);
    let message = err.to_string();
    assert!(
        message.contains("corrupt"),
        "{what}: the message does not say corrupt: {message}"
    );
    assert!(!err.is_retryable(), "{what}: {message}");
    err
}

#[test]
fn a_truncated_archive_is_refused() {
    let (bytes, summary) = small_archive();
    for cut in [1, 100, bytes.len() / 2, bytes.len() - 4, bytes.len() - 1] {
        let short = &bytes[..cut];
        let err = assert_refused(
            reader::verify(short, summary.size, &summary.sha256, Limits::default()),
            "truncated",
        );
        assert!(
            matches!(err, ArchiveError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
        assert_refused(read_all(short, Limits::default()), "truncated");
    }
    assert_refused(read_all(&[], Limits::default()), "empty");
}

#[test]
fn a_corrupted_byte_is_refused() {
    let (bytes, summary) = small_archive();
    // Spread over the frame: header, blocks, and the final checksum.
    for at in (16..bytes.len())
        .step_by(bytes.len() / 25)
        .chain([bytes.len() - 2])
    {
        let mut bad = bytes.clone();
        bad[at] ^= 0x20;
        assert_refused(
            reader::verify(
                bad.as_slice(),
                summary.size,
                &summary.sha256,
                Limits::default(),
            ),
            "flipped byte",
        );
        // Without the manifest's checksum, zstd's frame checksum still catches it.
        assert_refused(read_all(&bad, Limits::default()), "flipped byte");
    }
}

#[test]
fn a_wrong_checksum_or_size_is_refused() {
    let (bytes, summary) = small_archive();
    let wrong = "0".repeat(64);
    let err = assert_refused(
        reader::verify(bytes.as_slice(), summary.size, &wrong, Limits::default()),
        "checksum",
    );
    assert!(
        matches!(err, ArchiveError::ChecksumMismatch { ref actual, .. } if *actual == summary.sha256),
        "{err}"
    );
    let err = assert_refused(
        reader::verify(
            bytes.as_slice(),
            summary.size + 1,
            &summary.sha256,
            Limits::default(),
        ),
        "size",
    );
    assert!(
        matches!(err, ArchiveError::SizeMismatch { actual, .. } if actual == summary.size),
        "{err}"
    );
}

/// A tar entry written with the tar crate, bypassing the checks of `Header::set_path`.
struct Raw {
    name: Vec<u8>,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<&'static str>,
    declared_size: Option<u64>,
}

fn raw(name: &str, data: &[u8]) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: None,
        declared_size: None,
    }
}

fn craft(entries: Vec<Raw>, trailer: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_size(e.declared_size.unwrap_or(e.data.len() as u64));
        if let Some(link) = e.link {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        tar.append(&h, e.data.as_slice()).unwrap();
    }
    let mut stream = tar.into_inner().unwrap();
    stream.extend_from_slice(trailer);
    zstd::encode_all(stream.as_slice(), 3).unwrap()
}

fn version() -> Raw {
    raw("metadata/version", b"1")
}

const CM: &[u8] =
    br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"}}"#;

#[test]
fn parent_and_absolute_paths_are_refused() {
    for path in [
        "resources/../../../etc/cron.d/x.json",
        "../x.json",
        "resources/configmaps/namespaces/../../../../tmp/x.json",
        "/etc/cron.d/x.json",
        "/resources/configmaps/namespaces/default/x.json",
        "resources/configmaps/namespaces/default/./x.json",
        "somewhere/else.json",
    ] {
        let bytes = craft(vec![version(), raw(path, CM)], &[]);
        let err = assert_refused(read_all(&bytes, Limits::default()), path);
        assert!(
            matches!(err, ArchiveError::UnsafePath { path: ref p, .. } if p == path),
            "{path}: {err}"
        );
    }
}

#[test]
fn links_devices_and_directories_are_refused() {
    let path = "resources/configmaps/namespaces/default/x.json";
    for (kind, link, what) in [
        (
            tar::EntryType::Symlink,
            Some("/etc/passwd"),
            "symbolic link",
        ),
        (tar::EntryType::Link, Some("metadata/version"), "hard link"),
        (tar::EntryType::Char, None, "device"),
        (tar::EntryType::Block, None, "device"),
        (tar::EntryType::Directory, None, "directory"),
        (tar::EntryType::Fifo, None, "FIFO"),
    ] {
        let entry = Raw {
            kind,
            link,
            data: Vec::new(),
            ..raw(path, b"")
        };
        let bytes = craft(vec![version(), entry], &[]);
        let err = assert_refused(read_all(&bytes, Limits::default()), what);
        assert!(
            matches!(err, ArchiveError::NotRegular { kind: ref k, .. } if k == what),
            "{what}: {err}"
        );
    }
    // A PAX header could rename the next entry for GNU tar behind the reader's back.
    let pax = Raw {
        kind: tar::EntryType::XHeader,
        ..raw("././@PaxHeader", b"30 path=../../etc/cron.d/x\n")
    };
    let bytes = craft(vec![version(), pax, raw(path, CM)], &[]);
    assert_refused(read_all(&bytes, Limits::default()), "pax");
}

#[test]
fn oversized_entries_are_refused_before_they_are_read() {
    let path = "resources/configmaps/namespaces/default/x.json";
    let bytes = write_one(path, &vec![b' '; 10_000]);
    let limits = Limits {
        max_entry_bytes: 4096,
        ..Limits::default()
    };
    let err = assert_refused(read_all(&bytes, limits), "oversized");
    assert!(
        matches!(
            err,
            ArchiveError::TooLarge {
                size: 10_000,
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );

    // A header that claims 1 TiB is refused from the header alone.
    let liar = Raw {
        declared_size: Some(1 << 40),
        ..raw(path, b"")
    };
    let bytes = craft_without_end(vec![version(), liar]);
    let err = assert_refused(read_all(&bytes, Limits::default()), "declared 1 TiB");
    assert!(
        matches!(
            err,
            ArchiveError::TooLarge {
                size: 1_099_511_627_776,
                ..
            }
        ),
        "{err}"
    );

    // So is a GNU long name of a million bytes (tar::Archive would read it whole).
    let long_name = Raw {
        kind: tar::EntryType::GNULongName,
        ..raw("././@LongLink", &vec![b'a'; 1 << 20])
    };
    let bytes = craft(vec![version(), long_name, raw(path, CM)], &[]);
    let err = assert_refused(read_all(&bytes, Limits::default()), "huge long name");
    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
}

fn write_one(path: &str, data: &[u8]) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), &CompressionOptions::default(), MTIME).unwrap();
    w.append(path, data).unwrap();
    w.finish().unwrap().0
}

/// Headers whose declared sizes the data does not follow.
fn craft_without_end(entries: Vec<Raw>) -> Vec<u8> {
    let mut stream = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
        h.set_entry_type(e.kind);
        h.set_size(e.declared_size.unwrap_or(e.data.len() as u64));
        h.set_cksum();
        stream.extend_from_slice(h.as_bytes());
        stream.extend_from_slice(&e.data);
        stream.resize(stream.len().div_ceil(512) * 512, 0);
    }
    zstd::encode_all(stream.as_slice(), 3).unwrap()
}

#[test]
fn a_newer_or_missing_version_is_refused() {
    let path = "resources/configmaps/namespaces/default/x.json";
    let bytes = craft(vec![raw("metadata/version", b"2"), raw(path, CM)], &[]);
    let err = read_all(&bytes, Limits::default()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::NewerFormat { ref found } if found == "2"),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade lifeboat"), "{err}");

    let bytes = craft(vec![raw(path, CM), version()], &[]);
    assert_refused(
        read_all(&bytes, Limits::default()),
        "object before the version",
    );
    let bytes = craft(vec![version(), raw(path, CM), version()], &[]);
    assert_refused(read_all(&bytes, Limits::default()), "two versions");
    let bytes = craft(vec![], &[]);
    assert_refused(read_all(&bytes, Limits::default()), "no entries");
}

#[test]
fn entries_hidden_after_the_end_marker_are_refused() {
    let path = "resources/configmaps/namespaces/default/x.json";
    // `tar --ignore-zeros` would extract what follows the end-of-archive blocks.
    let hidden = craft(vec![raw(path, CM)], &[]);
    let hidden_tar = zstd::decode_all(hidden.as_slice()).unwrap();
    let bytes = craft(vec![version()], &hidden_tar);
    assert_refused(read_all(&bytes, Limits::default()), "hidden entry");
    // Zeros after the end (GNU tar pads to a 10 KiB record) are fine.
    let bytes = craft(vec![version(), raw(path, CM)], &[0; 9216]);
    assert_eq!(read_all(&bytes, Limits::default()).unwrap().len(), 2);
}

#[test]
fn an_object_filed_under_another_name_is_refused() {
    let bytes = write_one("resources/configmaps/namespaces/default/y.json", CM);
    let summary_size = bytes.len() as u64;
    let sha = hex::encode(sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes),
    ));
    let err = assert_refused(
        reader::verify(bytes.as_slice(), summary_size, &sha, Limits::default()),
        "renamed",
    );
    assert!(matches!(err, ArchiveError::Mismatch { .. }), "{err}");
    let bytes = write_one("resources/configmaps/namespaces/other/x.json", CM);
    let sha = hex::encode(sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes),
    ));
    assert_refused(
        reader::verify(
            bytes.as_slice(),
            bytes.len() as u64,
            &sha,
            Limits::default(),
        ),
        "moved",
    );
}

/// Objects big and random enough that the compressed output spans several chunks.
fn incompressible(n: usize, size: usize) -> Vec<Object> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|i| {
            let mut o = object(
                "configmaps",
                "",
                "ConfigMap",
                Some("noise"),
                &format!("blob-{i}"),
                "",
            );
            let noise: String = (0..size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(
                        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
                            [(state % 64) as usize],
                    )
                })
                .collect();
            let mut v: serde_json::Value = serde_json::from_slice(&o.json).unwrap();
            v["data"]["extra"] = noise.into();
            o.json = serde_json::to_vec(&v).unwrap();
            o
        })
        .collect()
}

async fn through_spawn(
    objects: &[Object],
    opts: CompressionOptions,
) -> (Vec<u8>, Vec<usize>, ArchiveSummary) {
    let (sink, mut chunks, handle) = writer::spawn(opts, MTIME, 16, 2);
    let consumer = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            sizes.push(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        (bytes, sizes)
    });
    for o in objects {
        sink.send(o.path.clone(), o.json.clone()).await.unwrap();
    }
    let summary = handle.finish(sink).await.unwrap();
    let (bytes, sizes) = consumer.await.unwrap();
    (bytes, sizes, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_writer_gives_the_same_bytes_as_the_synchronous_one() {
    let mut objects = corpus();
    objects.extend(incompressible(40, 64 << 10));
    for workers in [0, 2] {
        let opts = CompressionOptions {
            workers,
            ..CompressionOptions::default()
        };
        let (expected, expected_summary) = write(&objects, &opts);
        let (bytes, sizes, summary) = through_spawn(&objects, opts).await;
        assert_eq!(summary, expected_summary);
        assert!(
            bytes == expected,
            "workers={workers}: the bridge wrote other bytes"
        );
        assert!(sizes.len() > 1, "{sizes:?}");
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|s| *s == writer::CHUNK_SIZE), "{sizes:?}");
        assert!(*last > 0 && *last <= writer::CHUNK_SIZE);
    }
}

/// Sends until the writer refuses, within a time limit; returns the number of objects accepted
/// and the error.
async fn send_until_refused(sink: &writer::EntrySink, objects: &[Object]) -> (usize, ArchiveError) {
    let sending = async {
        for (i, o) in objects.iter().cycle().enumerate() {
            if let Err(e) = sink.send(o.path.clone(), o.json.clone()).await {
                return (i, e);
            }
        }
        unreachable!("cycle() never ends")
    };
    tokio::time::timeout(Duration::from_mins(2), sending)
        .await
        .expect("the writer blocked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_writer_stops_when_its_chunk_receiver_is_dropped() {
    let (sink, mut chunks, handle) = writer::spawn(CompressionOptions::default(), MTIME, 4, 2);
    // The upload takes two parts, then fails, while the writer waits for room for more.
    tokio::spawn(async move {
        for _ in 0..2 {
            chunks.recv().await.unwrap();
        }
    });
    let (_, err) = send_until_refused(&sink, &incompressible(50, 64 << 10)).await;
    assert!(matches!(err, ArchiveError::WriterGone), "{err}");
    let result = tokio::time::timeout(Duration::from_mins(1), handle.finish(sink))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(ArchiveError::ConsumerGone)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_writer_notices_a_dropped_receiver_before_it_has_output() {
    let (sink, chunks, handle) = writer::spawn(CompressionOptions::default(), MTIME, 4, 2);
    drop(chunks);
    // Small, compressible objects: megabytes of them fit in zstd's buffers without any output.
    let (accepted, err) = send_until_refused(&sink, &corpus()).await;
    assert!(matches!(err, ArchiveError::WriterGone), "{err}");
    assert!(
        accepted < 500,
        "{accepted} objects were accepted for a consumer that was gone"
    );
    let result = handle.finish(sink).await;
    assert!(
        matches!(result, Err(ArchiveError::ConsumerGone)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_writer_ends_without_an_archive_when_its_sinks_are_dropped() {
    let (sink, mut chunks, handle) = writer::spawn(CompressionOptions::default(), MTIME, 4, 2);
    let other = sink.clone();
    for o in incompressible(40, 64 << 10) {
        other.send(o.path, o.json).await.unwrap();
    }
    drop((sink, other, handle));
    let mut bytes = Vec::new();
    let drained = async {
        while let Some(chunk) = chunks.recv().await {
            bytes.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(Duration::from_mins(1), drained)
        .await
        .expect("the writer thread lingered");
    // What was sent before the abandonment is no complete archive.
    assert_refused(read_all(&bytes, Limits::default()), "abandoned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_writer_refuses_paths_outside_the_layout_and_goes_on() {
    let objects = corpus()[..10].to_vec();
    let (sink, mut chunks, handle) = writer::spawn(CompressionOptions::default(), MTIME, 4, 2);
    let consumer = tokio::spawn(async move {
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    });
    let err = sink
        .send("../../etc/passwd".into(), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::UnsafePath { .. }), "{err}");
    for o in &objects {
        sink.send(o.path.clone(), o.json.clone()).await.unwrap();
    }
    let summary = handle.finish(sink).await.unwrap();
    assert_eq!(summary.entries, 10);
    assert_eq!(
        read_all(&consumer.await.unwrap(), Limits::default())
            .unwrap()
            .len(),
        11
    );
}

/// The child process of [`streaming_through_spawn_keeps_memory_flat`]: alone in its process, so
/// its resident set is its own.
#[test]
#[ignore = "run as a child process by streaming_through_spawn_keeps_memory_flat"]
fn memory_probe() {
    let Ok(workers) = std::env::var("LIFEBOAT_MEMORY_PROBE") else {
        return;
    };
    let workers: u32 = workers.parse().unwrap();
    let total: usize = std::env::var("LIFEBOAT_MEMORY_PROBE_ENTRIES")
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The test harness may have printed `test memory_probe ... ` without a newline.
        println!("\nprobe start rss_kib={}", vm("VmRSS"));
        let opts = CompressionOptions {
            workers,
            ..CompressionOptions::default()
        };
        let (sink, mut chunks, handle) = writer::spawn(opts, MTIME, 256, 4);
        let consumer = tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(chunk) = chunks.recv().await {
                n += chunk.len() as u64;
            }
            n
        });
        let started = Instant::now();
        let mut tar_bytes = 512u64; // metadata/version
        for i in 0..total {
            let (path, json) = probe_object(i);
            tar_bytes += 512 + (json.len() as u64).div_ceil(512) * 512;
            sink.send(path, json).await.unwrap();
            if (i + 1) % (total / 8) == 0 {
                println!(
                    "probe entries={} tar_bytes={tar_bytes} rss_kib={}",
                    i + 1,
                    vm("VmRSS")
                );
            }
        }
        let summary = handle.finish(sink).await.unwrap();
        let received = consumer.await.unwrap();
        assert_eq!(received, summary.size);
        println!(
            "probe done entries={} tar_bytes={} compressed_bytes={} seconds={:.2} hwm_kib={}",
            summary.entries,
            summary.uncompressed_bytes,
            summary.size,
            started.elapsed().as_secs_f64(),
            vm("VmHWM")
        );
    });
}

/// A ConfigMap of about 700 bytes, like the many small ones of a real cluster: names, labels
/// and data repeat across tenants, uids and versions do not.
fn probe_object(i: usize) -> (String, Vec<u8>) {
    let ns = format!("tenant-{}", i % 97);
    let name = format!("app-{i}-config");
    let uid = format!("{:032x}", fnv(&name));
    let json = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid,
            "resourceVersion": (i * 7 + 1_000_000).to_string(),
            "creationTimestamp": format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60),
            "labels": {
                "app.kubernetes.io/name": format!("app-{}", i % 13),
                "app.kubernetes.io/instance": ns,
                "app.kubernetes.io/managed-by": "Helm",
            },
            "annotations": { "meta.helm.sh/release-name": format!("app-{}", i % 13), "meta.helm.sh/release-namespace": ns },
        },
        "data": {
            "settings.yaml": format!(
                "replicas: {}\nimage: registry.example.com/team/app:1.{}.0\nlogLevel: info\nchecksum: {:016x}\nfeatureFlags:\n  newCheckout: {}\n  darkMode: false\n",
                i % 5,
                i % 31,
                fnv(&uid) as u64,
                i.is_multiple_of(2)
            ),
        },
    });
    (
        layout::object_path("configmaps", Some(&ns), &name),
        serde_json::to_vec(&json).unwrap(),
    )
}

/// A field of /proc/self/status, in KiB.
fn vm(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Streams 200,000 objects (about 300 MB of tar, more than twice zstd's window) through
/// [`writer::spawn`] in a child process, and checks that resident memory stops growing once
/// the window is full: memory follows the window and the channel capacities, not the objects.
#[test]
fn streaming_through_spawn_keeps_memory_flat() {
    const ENTRIES: usize = 200_000;
    const WINDOW_KIB: u64 = 128 * 1024;
    for workers in [0, 2] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory_probe",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LIFEBOAT_MEMORY_PROBE", workers.to_string())
            .env("LIFEBOAT_MEMORY_PROBE_ENTRIES", ENTRIES.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        let probes: Vec<&str> = out.lines().filter(|l| l.starts_with("probe ")).collect();
        println!("workers={workers}\n{}", probes.join("\n"));
        assert!(
            probes.len() == 10 && probes[9].starts_with("probe done"),
            "the probe failed:\n{out}"
        );
        let field = |line: &str, key: &str| -> u64 {
            let prefix = format!("{key}=");
            let value = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix))
                .unwrap();
            value.parse::<u64>().unwrap()
        };
        let start = field(probes[0], "rss_kib");
        let done = probes[9];
        assert!(
            field(done, "tar_bytes") > 2 * WINDOW_KIB * 1024,
            "the stream must outgrow the window"
        );
        // Once 1.25 windows have gone through, the window is full; from there on nothing grows.
        let checkpoints: Vec<(u64, u64)> = probes[1..9]
            .iter()
            .map(|l| (field(l, "tar_bytes"), field(l, "rss_kib")))
            .filter(|(tar, _)| *tar >= WINDOW_KIB * 1024 * 5 / 4)
            .collect();
        assert!(checkpoints.len() >= 2, "{checkpoints:?}");
        let (_, settled) = checkpoints[0];
        let (_, last) = *checkpoints.last().unwrap();
        assert!(
            last <= settled + 8 * 1024,
            "workers={workers}: resident memory grew from {settled} KiB to {last} KiB"
        );
        // And the peak is about the window: 128 MiB plus zstd's tables, its workers' buffers
        // and the channels.
        let peak = field(done, "hwm_kib");
        assert!(
            peak <= start + WINDOW_KIB + 96 * 1024,
            "workers={workers}: peak {peak} KiB from a start of {start} KiB"
        );
    }
}
