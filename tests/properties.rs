//! Property tests for the parsers of what lifeboat reads from outside its own process: the
//! config file, archives and manifests. Whatever the input, none of them may panic; bad input
//! is refused with an error that says what is wrong, and a refused archive changes nothing.
//!
//! Inputs are valid documents with a few mutations rather than plain random bytes: random bytes
//! stop at the first check (a YAML token, zstd's magic number, a JSON brace), mutations of valid
//! documents reach the code behind it. Case counts keep the whole file to a few seconds in a
//! debug build on two cores; `PROPTEST_CASES` raises them for a longer run. Failures are not
//! persisted to files (the repository stays clean): a failing input found here becomes a named
//! regular test instead.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::LazyLock;

use lifeboat::archive::layout::{self, EntryPath};
use lifeboat::archive::manifest::{
    ArchiveInfo, ClusterInfo, FORMAT_VERSION, Filters, Issue, Manifest, ManifestError, Phase,
    VolumesInfo,
};
use lifeboat::archive::reader::{self, ArchiveError, ArchiveReader, Entry, Limits};
use lifeboat::archive::writer::{ArchiveSummary, ArchiveWriter, CompressionOptions};
use lifeboat::config::{Config, ConfigError, ConfigErrorKind};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The runner's settings: `cases` per property (or `PROPTEST_CASES`, for a longer run), and no
/// failure files written into the repository.
fn runner(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Config loader
// ---------------------------------------------------------------------------------------------

const ORIGIN: &str = "lifeboat.yaml";

/// The example configs, as users start from them.
static EXAMPLES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(texts.len() >= 3, "config/*.yaml: {files:?}");
    texts
});

/// What the loader promises for any text: no panic; a config it returns is valid and survives
/// a round trip through YAML; every error (and every further error of the same file) names the
/// file first, says what is wrong, and points at a line inside the text if at any.
fn check_config(text: &str) -> Result<Option<ConfigError>, TestCaseError> {
    match Config::parse(text, ORIGIN) {
        Ok(config) => {
            prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
            let yaml = serde_saphyr::to_string(&config).expect("configs serialise");
            let again = Config::parse(&yaml, "round-trip");
            prop_assert!(
                again.as_ref().is_ok_and(|again| *again == config),
                "round trip of\n{text}\nas\n{yaml}\ngave {again:?}"
            );
            Ok(None)
        }
        Err(error) => {
            let lines = text.lines().count();
            for e in std::iter::once(&error).chain(error.also()) {
                let message = e.to_string();
                prop_assert!(!e.problem().is_empty(), "{message}");
                prop_assert!(message.starts_with(ORIGIN), "{message}");
                prop_assert_ne!(e.kind(), ConfigErrorKind::Io, "{}", message);
                if let Some(line) = e.line() {
                    prop_assert!((1..=lines + 1).contains(&line), "{message}\n{text}");
                }
            }
            Ok(Some(error))
        }
    }
}

/// Problems of the whole document, which have no single place to point at.
fn is_whole_document(e: &ConfigError) -> bool {
    e.kind() == ConfigErrorKind::Syntax
        && (e.problem().contains("more than one YAML document")
            || e.problem().contains("too large, too deeply nested"))
}

/// One edit of a text file, as a careless hand, a bad merge or a cut-off copy makes them.
#[derive(Debug, Clone)]
enum TextEdit {
    Truncate(Index),
    FlipByte(Index, u8),
    InsertByte(Index, u8),
    DuplicateLine(Index),
    DeleteLine(Index),
    SwapLines(Index, Index),
}

/// Bytes that YAML gives a meaning, so that edits meet the parser's interesting paths.
const YAML_BYTES: &[u8] = b" \n\t:-#&*!|>'\"{}[],?@%`~0123456789.\\/";

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        any::<Index>().prop_map(TextEdit::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(i, m)| TextEdit::FlipByte(i, m)),
        (any::<Index>(), select(YAML_BYTES)).prop_map(|(i, b)| TextEdit::InsertByte(i, b)),
        any::<Index>().prop_map(TextEdit::DuplicateLine),
        any::<Index>().prop_map(TextEdit::DeleteLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| TextEdit::SwapLines(a, b)),
    ]
}

impl TextEdit {
    fn apply(&self, text: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        match self {
            TextEdit::Truncate(at) => text.truncate(at.index(text.len())),
            TextEdit::FlipByte(at, mask) => {
                let at = at.index(text.len());
                text[at] ^= mask;
            }
            TextEdit::InsertByte(at, byte) => {
                let at = at.index(text.len());
                text.insert(at, *byte);
            }
            TextEdit::DuplicateLine(at) => {
                let line = lines[at.index(lines.len())].clone();
                lines.insert(at.index(lines.len()), line);
                *text = lines.join(&b'\n');
            }
            TextEdit::DeleteLine(at) => {
                lines.remove(at.index(lines.len()));
                *text = lines.join(&b'\n');
            }
            TextEdit::SwapLines(a, b) => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
                *text = lines.join(&b'\n');
            }
        }
    }
}

/// A YAML document as a tree, rendered in block style like the examples.
#[derive(Debug, Clone)]
enum Yaml {
    Scalar(String),
    Map(Vec<(String, Yaml)>),
    Seq(Vec<Yaml>),
}

impl Yaml {
    fn render(&self) -> String {
        let mut out = String::new();
        match self {
            Yaml::Scalar(s) => {
                out.push_str(s);
                out.push('\n');
            }
            _ => self.render_block(0, &mut out),
        }
        out
    }

    fn render_block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Yaml::Map(entries) => {
                for (key, value) in entries {
                    out.push_str(&pad);
                    out.push_str(key);
                    out.push(':');
                    value.render_after(indent, out);
                }
            }
            Yaml::Seq(items) => {
                for item in items {
                    out.push_str(&pad);
                    out.push('-');
                    item.render_after(indent, out);
                }
            }
            Yaml::Scalar(_) => self.render_after(indent, out),
        }
    }

    /// A value after `key:` or `-`: on the same line if it fits there, else indented below.
    fn render_after(&self, indent: usize, out: &mut String) {
        match self {
            Yaml::Scalar(s) => {
                out.push(' ');
                out.push_str(s);
                out.push('\n');
            }
            Yaml::Map(m) if m.is_empty() => out.push_str(" {}\n"),
            Yaml::Seq(s) if s.is_empty() => out.push_str(" []\n"),
            _ => {
                out.push('\n');
                self.render_block(indent + 2, out);
            }
        }
    }
}

/// Every key of the config format (from the library, so it cannot drift), plus a merge key
/// and near misses.
fn config_keys() -> Vec<&'static str> {
    let mut keys = lifeboat::config::key_names();
    keys.extend(["<<", "keep_last", "Storage"]);
    keys
}

/// Values of every kind the config takes, valid and not, quoted and not.
const SCALARS: &[&str] = &[
    // URLs and endpoints
    "s3://acme-backups/prod",
    "file:///var/lib/lifeboat",
    "s3://",
    "s3://UP/x",
    "http://x",
    "https://s3.example.com",
    "\"http://127.0.0.1:5000\"",
    "not a url",
    "s3://b/../x",
    // booleans, nulls
    "true",
    "false",
    "yes",
    "True",
    "~",
    "null",
    "\"\"",
    "''",
    // numbers in and out of every range
    "0",
    "1",
    "3",
    "8",
    "19",
    "20",
    "27",
    "28",
    "64",
    "65",
    "256",
    "257",
    "-1",
    "4294967296",
    "99999999999999999999999",
    "1e3",
    "0x10",
    "1.5",
    ".inf",
    "-0",
    // durations
    "30s",
    "15m",
    "2h",
    "7d",
    "0s",
    "-1m",
    "1y",
    "99999999999999d",
    "1.5h",
    "m",
    // cron, quoted as the docs say and not
    "\"0 2 * * *\"",
    "\"@daily\"",
    "\"* * * * * *\"",
    "\"61 * * * *\"",
    "\"0 0 31 2 *\"",
    "\"@reboot\"",
    "*/5 * * * *",
    "@hourly",
    "\"0 2 * * * * *\"",
    // zones, regions, names, selectors, enums, paths, addresses, recipients
    "UTC",
    "Europe/Berlin",
    "Mars/Olympus",
    "+01:00",
    "eu-west-1",
    "EU-WEST-1",
    "nightly",
    "Nightly",
    "-x",
    "\"app=web\"",
    "\"app in (\"",
    "\"backup.acme.io/skip notin (true)\"",
    "auto",
    "maybe",
    "AES256",
    "aws:kms",
    "GOVERNANCE",
    "governance",
    "whenSupported",
    "/etc/lifeboat/key.txt",
    "~/key",
    "0.0.0.0:8000",
    ":8000",
    "[::1]:9000",
    "0.0.0.0:99999",
    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    "age1xyz",
    // YAML's own syntax
    "&a x",
    "*a",
    "!!str x",
    "!!binary aGk=",
    "[a, b]",
    "{a: 1}",
    "|\n  text",
    ">-",
    "'it''s'",
    "\"\\u0000\"",
    "\"\\xff\"",
    "#",
    "- x",
    "? x",
    "%TAG",
    "---",
    "...",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(SCALARS).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        // Any text, quoted as JSON (a valid YAML double-quoted scalar).
        1 => "\\PC{0,16}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        // Plain text of the characters that make YAML tokens.
        1 => "[a-z0-9 :/*@&!#|>'\"{}\\[\\],.%-]{0,12}",
    ]
}

fn config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => select(config_keys()).prop_map(str::to_string),
        1 => "[a-zA-Z_][a-zA-Z0-9_]{0,10}",
    ]
}

/// Any tree of maps, lists and scalars, with the config's key names.
fn yaml() -> impl Strategy<Value = Yaml> {
    scalar()
        .prop_map(Yaml::Scalar)
        .prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec((config_key(), inner.clone()), 0..6).prop_map(Yaml::Map),
                proptest::collection::vec(inner, 0..4).prop_map(Yaml::Seq),
            ]
        })
}

/// The shape of the config format, with valid values for each key, to generate documents that
/// get past the first check and reach the ranges and the rules between keys.
enum Shape {
    Value(&'static [&'static str]),
    Map(&'static [(&'static str, Shape)]),
    List(&'static Shape),
}

const BOOL: Shape = Shape::Value(&["true", "false"]);
const DURATION: Shape = Shape::Value(&["2s", "30s", "15m", "2h", "7d"]);
const REGION: Shape = Shape::Value(&["eu-west-1", "us-east-1"]);
const ENDPOINT: Shape = Shape::Value(&["http://127.0.0.1:5000", "https://s3.example.com"]);
const NAME: Shape = Shape::Value(&["prod", "lifeboat", "kube-system"]);
const NAMES: Shape = Shape::List(&Shape::Value(&[
    "\"*\"",
    "shop",
    "scratch-*",
    "replicasets.apps",
]));

const SCHEDULE: Shape = Shape::Map(&[
    ("name", Shape::Value(&["nightly", "hourly-apps", "n1"])),
    (
        "cron",
        Shape::Value(&[
            "\"0 2 * * *\"",
            "\"@daily\"",
            "\"*/15 * * * *\"",
            "\"0 0 2 * * *\"",
        ]),
    ),
    (
        "timezone",
        Shape::Value(&["UTC", "Europe/Berlin", "America/New_York"]),
    ),
    (
        "retention",
        Shape::Map(&[
            ("keepLast", Shape::Value(&["1", "30", "168"])),
            ("maxAge", DURATION),
        ]),
    ),
    ("includeNamespaces", NAMES),
    ("excludeNamespaces", NAMES),
    ("includeResources", NAMES),
    ("excludeResources", NAMES),
    (
        "includeClusterResources",
        Shape::Value(&["auto", "true", "false"]),
    ),
    (
        "selector",
        Shape::Value(&["\"app=web\"", "\"tier in (db, cache)\""]),
    ),
    ("snapshotVolumes", BOOL),
]);

const CONFIG: Shape = Shape::Map(&[
    (
        "cluster",
        Shape::Map(&[
            ("name", Shape::Value(&["prod-eu-west-1"])),
            ("kubeconfig", Shape::Value(&["/etc/lifeboat/kubeconfig"])),
            ("context", Shape::Value(&["prod"])),
        ]),
    ),
    (
        "storage",
        Shape::Map(&[
            (
                "url",
                Shape::Value(&["s3://acme-backups/prod", "file:///var/lib/lifeboat"]),
            ),
            ("region", REGION),
            ("endpoint", ENDPOINT),
            ("forcePathStyle", BOOL),
            ("serverSideEncryption", Shape::Value(&["AES256", "aws:kms"])),
            ("kmsKeyId", Shape::Value(&["alias/lifeboat"])),
            (
                "checksumMode",
                Shape::Value(&["whenSupported", "whenRequired"]),
            ),
            (
                "objectLock",
                Shape::Map(&[
                    ("mode", Shape::Value(&["GOVERNANCE", "COMPLIANCE"])),
                    ("retainDays", Shape::Value(&["1", "7", "3650"])),
                ]),
            ),
        ]),
    ),
    (
        "volumes",
        Shape::Map(&[
            ("snapshots", BOOL),
            ("region", REGION),
            ("endpoint", ENDPOINT),
            ("concurrency", Shape::Value(&["1", "8", "64"])),
            ("waitTimeout", DURATION),
        ]),
    ),
    (
        "encryption",
        Shape::Map(&[
            (
                "recipients",
                Shape::List(&Shape::Value(&[
                    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                ])),
            ),
            ("identityFile", Shape::Value(&["/etc/lifeboat/age.key"])),
        ]),
    ),
    ("schedules", Shape::List(&SCHEDULE)),
    (
        "server",
        Shape::Map(&[
            ("listen", Shape::Value(&["0.0.0.0:8000", "\"[::1]:9000\""])),
            ("shutdownGracePeriod", DURATION),
            ("verifyAfterBackup", BOOL),
            (
                "leaderElection",
                Shape::Map(&[
                    ("enabled", BOOL),
                    ("namespace", NAME),
                    ("leaseName", NAME),
                    ("leaseDuration", DURATION),
                    ("renewDeadline", DURATION),
                    ("retryPeriod", DURATION),
                ]),
            ),
        ]),
    ),
    (
        "archive",
        Shape::Map(&[
            ("compressionLevel", Shape::Value(&["1", "3", "19"])),
            ("compressionWorkers", Shape::Value(&["0", "2", "256"])),
            ("windowLog", Shape::Value(&["10", "24", "27"])),
            ("longDistanceMatching", BOOL),
        ]),
    ),
]);

/// The sections and keys that have no default.
const REQUIRED: &[&str] = &["storage", "url", "name", "cron", "mode", "retainDays"];

/// Keys that conflict with most settings of others (a KMS key without `aws:kms`, object lock
/// on a file URL) or in numbers (one valid recipient, repeated).
const DEPENDENT: &[&str] = &["kmsKeyId", "objectLock", "recipients"];

/// A document of the config's shape: each key present or not, each value usually valid for
/// its key, now and then any value or any tree (a list where a map goes, ...) or an extra key,
/// about once a document, so that about a third of the documents load.
fn shaped(shape: &'static Shape) -> BoxedStrategy<Yaml> {
    match shape {
        Shape::Value(valid) => prop_oneof![
            24 => select(*valid).prop_map(|v| Yaml::Scalar(v.to_string())),
            1 => scalar().prop_map(Yaml::Scalar),
        ]
        .boxed(),
        Shape::Map(fields) => {
            let fields: Vec<_> = fields
                .iter()
                .map(|(key, shape)| {
                    // Keys without a default are there almost always, to get past them; keys
                    // that only go with some values of others, now and then.
                    let present = if REQUIRED.contains(key) {
                        0.97
                    } else if DEPENDENT.contains(key) {
                        0.15
                    } else {
                        0.5
                    };
                    proptest::option::weighted(present, shaped(shape))
                        .prop_map(move |v| v.map(|v| ((*key).to_string(), v)))
                })
                .collect();
            let right = (
                fields,
                proptest::option::weighted(0.02, (config_key(), yaml())),
            )
                .prop_map(|(fields, extra)| {
                    Yaml::Map(fields.into_iter().flatten().chain(extra).collect())
                });
            prop_oneof![49 => right, 1 => yaml()].boxed()
        }
        Shape::List(item) => prop_oneof![
            49 => proptest::collection::vec(shaped(item), 0..3).prop_map(Yaml::Seq),
            1 => yaml(),
        ]
        .boxed(),
    }
}

proptest! {
    #![proptest_config(runner(500))]

    #[test]
    fn config_any_text_is_refused_or_loaded_without_panic(text in "\\PC{0,200}") {
        check_config(&text)?;
    }

    #[test]
    fn config_any_yaml_tree_is_refused_or_loaded_without_panic(doc in yaml()) {
        check_config(&doc.render())?;
    }

    #[test]
    fn config_shaped_documents_are_refused_or_loaded_without_panic(doc in shaped(&CONFIG)) {
        let text = doc.render();
        if let Some(error) = check_config(&text)? {
            // A document of lines and keys: every problem says where it is.
            for e in std::iter::once(&error).chain(error.also()) {
                prop_assert!(e.line().is_some() || !e.key().is_empty() || is_whole_document(e),
                    "{e}\n{text}");
            }
        }
    }

    #[test]
    fn config_edited_examples_are_refused_with_a_place_or_loaded(
        example in any::<Index>(),
        edits in proptest::collection::vec(text_edit(), 1..4),
    ) {
        let mut bytes = EXAMPLES[example.index(EXAMPLES.len())].clone().into_bytes();
        for edit in &edits {
            edit.apply(&mut bytes);
        }
        // `Config::load` refuses non-UTF-8 files before parsing; what `parse` sees is text.
        let text = String::from_utf8_lossy(&bytes);
        if let Some(error) = check_config(&text)? {
            for e in std::iter::once(&error).chain(error.also()) {
                prop_assert!(e.line().is_some() || !e.key().is_empty() || is_whole_document(e),
                    "{e}\n{text}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Archive reader
// ---------------------------------------------------------------------------------------------

/// 2026-11-28T02:00:00Z, the start of a pretend backup.
const MTIME: u64 = 1_795_831_200;

/// A valid archive, what the reader makes of it, and its tar stream before compression.
struct Valid {
    bytes: Vec<u8>,
    summary: ArchiveSummary,
    entries: Vec<Entry>,
    tar: Vec<u8>,
    /// Offsets of every header block in `tar`, the end-of-archive marker's last.
    headers: Vec<usize>,
}

fn object(plural: &str, namespace: Option<&str>, name: &str) -> (String, Vec<u8>) {
    let mut metadata = serde_json::json!({ "name": name });
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    let json = serde_json::json!({ "apiVersion": "v1", "kind": "Thing", "metadata": metadata });
    (
        layout::object_path(plural, namespace, name),
        serde_json::to_vec(&json).unwrap(),
    )
}

/// Small, so that each case is cheap, but with every kind of entry the writer makes: a
/// cluster-scoped and a namespaced object, a non-ASCII name, and a 253-character name stored
/// behind a GNU long-name entry.
static VALID: LazyLock<Valid> = LazyLock::new(|| {
    let objects = [
        object("namespaces", None, "shop"),
        object("configmaps", Some("shop"), "settings"),
        object("configmaps", Some("shop"), "café-名前"),
        object("widgets.example.com", Some("shop"), &"w".repeat(253)),
    ];
    let mut w = ArchiveWriter::new(Vec::new(), &CompressionOptions::default(), MTIME).unwrap();
    for (path, data) in &objects {
        w.append(path, data).unwrap();
    }
    let (bytes, summary) = w.finish().unwrap();
    let entries = read_all(&bytes, Limits::default()).unwrap();
    assert_eq!(entries.len(), objects.len() + 1);
    let tar = zstd::decode_all(bytes.as_slice()).unwrap();
    let mut headers = Vec::new();
    let mut at = 0;
    loop {
        headers.push(at);
        let block = &tar[at..at + 512];
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let size = tar::Header::from_byte_slice(block).entry_size().unwrap();
        at += 512 + usize::try_from(size).unwrap().div_ceil(512) * 512;
    }
    // Version, one long name, four objects, the end marker.
    assert_eq!(headers.len(), 7);
    Valid {
        bytes,
        summary,
        entries,
        tar,
        headers,
    }
});

fn read_all(bytes: &[u8], limits: Limits) -> Result<Vec<Entry>, ArchiveError> {
    let mut r = ArchiveReader::new(bytes, limits)?;
    let mut entries = Vec::new();
    while let Some(entry) = r.next_entry()? {
        entries.push(entry);
    }
    r.finish()?;
    Ok(entries)
}

/// What the issue asks of every refusal: a message that says the archive is bad and that
/// nothing was written from it (or, for a newer format, to upgrade), and no retry (the
/// bytes come from memory, so no error here is the source's).
fn check_refusal(e: &ArchiveError) -> Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert!(!e.is_retryable(), "{message}");
    match e {
        ArchiveError::NewerFormat { .. } => {
            prop_assert!(message.contains("upgrade lifeboat"), "{message}");
        }
        _ => prop_assert!(
            message.contains("corrupt") && message.contains("lifeboat wrote nothing from it"),
            "{message}"
        ),
    }
    Ok(())
}

/// A change of the stored (compressed) bytes, as bit rot, a cut-off upload or an edit makes.
#[derive(Debug, Clone)]
enum StoredEdit {
    Truncate(Index),
    Flip(Index, u8),
    Splice {
        at: Index,
        remove: usize,
        insert: Vec<u8>,
    },
    Append(Vec<u8>),
}

fn stored_edit() -> impl Strategy<Value = StoredEdit> {
    prop_oneof![
        any::<Index>().prop_map(StoredEdit::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| StoredEdit::Flip(at, mask)),
        (
            any::<Index>(),
            0..16usize,
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(at, remove, insert)| StoredEdit::Splice { at, remove, insert }),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..64),
            // A skippable zstd frame, which decoders pass over.
            Just(vec![0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7]),
            // A second archive after the first.
            Just(VALID.bytes.clone()),
        ]
        .prop_map(StoredEdit::Append),
    ]
}

impl StoredEdit {
    fn apply(&self, original: &[u8]) -> Vec<u8> {
        let mut bytes = original.to_vec();
        match self {
            StoredEdit::Truncate(at) => bytes.truncate(at.index(bytes.len())),
            StoredEdit::Flip(at, mask) => bytes[at.index(original.len())] ^= mask,
            StoredEdit::Splice { at, remove, insert } => {
                let at = at.index(bytes.len());
                let end = (at + remove).min(bytes.len());
                bytes.splice(at..end, insert.iter().copied());
            }
            StoredEdit::Append(more) => bytes.extend_from_slice(more),
        }
        bytes
    }
}

/// The fields of a tar header: offset and length.
const FIELDS: &[(usize, usize)] = &[
    (0, 100),   // name
    (100, 8),   // mode
    (108, 8),   // uid
    (116, 8),   // gid
    (124, 12),  // size
    (136, 12),  // mtime
    (148, 8),   // checksum
    (156, 1),   // type flag
    (157, 100), // link name
    (257, 6),   // magic
    (263, 2),   // version
    (345, 155), // ustar prefix (GNU: times, sparse map)
];

/// Paths a hostile archive would try, and the pieces of lifeboat's layout to build others from.
const HOSTILE_PATHS: &[&str] = &[
    "../x.json",
    "/etc/cron.d/x.json",
    "resources/../../../etc/cron.d/x.json",
    "resources/configmaps/namespaces/../../../../tmp/x.json",
    "resources/configmaps/namespaces/shop/./x.json",
    "resources//configmaps/cluster/x.json",
    "resources/configmaps/cluster/x.json/",
    "resources/configmaps/cluster/x.yaml",
    "resources/configmaps/cluster/.json",
    "resources/configmaps/cluster/x.json",
    "resources/configmaps/namespaces/shop/x.json",
    "metadata/version",
    "metadata/version/x",
    "C:\\windows\\x.json",
    "././@LongLink",
    "",
];

const PATH_PIECES: &[&str] = &[
    "resources",
    "configmaps",
    "cluster",
    "namespaces",
    "shop",
    "metadata",
    "version",
    "x.json",
    "..",
    ".",
    "",
    "é",
];

fn entry_path() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        select(HOSTILE_PATHS).prop_map(|p| p.as_bytes().to_vec()),
        proptest::collection::vec(select(PATH_PIECES), 1..7).prop_map(|p| p.join("/").into_bytes()),
        // Over 100 bytes (a GNU long name) and over 255 in one component.
        (0..300usize).prop_map(
            |n| format!("resources/configmaps/cluster/{}.json", "n".repeat(n)).into_bytes()
        ),
        proptest::collection::vec(any::<u8>(), 0..120),
    ]
}

/// A declared entry size: near the limits, huge, or anything.
fn entry_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..2048u64,
        Just(4096),
        Just(4097),
        Just(64 << 20),
        Just((64 << 20) + 1),
        Just(1 << 40),
        Just(8u64.pow(11) - 1),
        Just(8u64.pow(11)),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

/// A tar entry of any type, path and size, to insert between the valid ones.
#[derive(Debug, Clone)]
struct RawEntry {
    path: Vec<u8>,
    type_flag: u8,
    declared: Option<u64>,
    data: Vec<u8>,
}

fn raw_entry() -> impl Strategy<Value = RawEntry> {
    (
        entry_path(),
        prop_oneof![
            3 => Just(b'0'),
            1 => select(b"\x0012345679LKxgDMNSV".as_slice()),
            1 => any::<u8>(),
        ],
        proptest::option::weighted(0.3, entry_size()),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(path, type_flag, declared, data)| RawEntry {
            path,
            type_flag,
            declared,
            data,
        })
}

/// A change of the tar stream under the compression: what a hostile writer would make (which
/// then compresses fine and reaches the tar parser).
#[derive(Debug, Clone)]
enum TarEdit {
    /// Write `bytes` into one field of one header, padded with NULs; `fix` recomputes the
    /// header checksum so that the change gets past it.
    Field {
        header: Index,
        field: Index,
        bytes: Vec<u8>,
        fix: bool,
    },
    /// Declare another size, in octal or GNU base-256 as it fits.
    Size {
        header: Index,
        size: u64,
        fix: bool,
    },
    /// Flip bits anywhere, headers and data alike.
    Flip {
        at: Index,
        mask: u8,
        fix: bool,
    },
    Truncate(Index),
    Trailer(Vec<u8>),
    Insert {
        before: Index,
        entry: RawEntry,
    },
}

fn tar_edit() -> impl Strategy<Value = TarEdit> {
    prop_oneof![
        (
            any::<Index>(),
            any::<Index>(),
            prop_oneof![
                entry_path(),
                "[0-7 ]{0,12}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..12),
            ],
            proptest::bool::weighted(0.8)
        )
            .prop_map(|(header, field, bytes, fix)| TarEdit::Field {
                header,
                field,
                bytes,
                fix
            }),
        (any::<Index>(), entry_size(), proptest::bool::weighted(0.9))
            .prop_map(|(header, size, fix)| TarEdit::Size { header, size, fix }),
        (any::<Index>(), 1..=255u8, any::<bool>()).prop_map(|(at, mask, fix)| TarEdit::Flip {
            at,
            mask,
            fix
        }),
        any::<Index>().prop_map(TarEdit::Truncate),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..1100),
            Just(vec![0; 9216]),
            Just(VALID.tar.clone()),
        ]
        .prop_map(TarEdit::Trailer),
        (any::<Index>(), raw_entry()).prop_map(|(before, entry)| TarEdit::Insert { before, entry }),
    ]
}

/// Recomputes the checksum of the header block at `at`, as a writer that means it would.
fn fix_checksum(tar: &mut [u8], at: usize) {
    if at + 512 > tar.len() {
        return;
    }
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&tar[at..at + 512]);
    header.set_cksum();
    tar[at..at + 512].copy_from_slice(header.as_bytes());
}

fn set_size(block: &mut [u8], size: u64) {
    let field = &mut block[124..136];
    if size < 8u64.pow(11) {
        field.copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        field[0] = 0x80;
        field[1..4].fill(0);
        field[4..].copy_from_slice(&size.to_be_bytes());
    }
}

impl RawEntry {
    fn to_blocks(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut name = self.path.clone();
        if name.len() > 100 {
            // As GNU tar and the writer store a long name: an `L` entry holding it.
            out.extend(
                RawEntry {
                    path: b"././@LongLink".to_vec(),
                    type_flag: b'L',
                    declared: None,
                    data: [name.as_slice(), b"\0"].concat(),
                }
                .to_blocks(),
            );
            name.truncate(100);
        }
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(&name);
        header[100..108].copy_from_slice(b"0000644\0");
        header[136..148].copy_from_slice(format!("{MTIME:011o}\0").as_bytes());
        header[156] = self.type_flag;
        header[257..265].copy_from_slice(b"ustar  \0");
        set_size(&mut header, self.declared.unwrap_or(self.data.len() as u64));
        out.extend_from_slice(&header);
        let at = out.len() - 512;
        fix_checksum(&mut out, at);
        out.extend_from_slice(&self.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }
}

impl TarEdit {
    /// Edits `tar`, finding headers at the offsets they have in the valid archive.
    fn apply(&self, tar: &mut Vec<u8>, headers: &[usize]) {
        let header = |i: &Index| headers[i.index(headers.len())];
        // An earlier edit may have cut the stream short of where this one goes.
        let fits = |tar: &[u8], at: usize| at + 512 <= tar.len();
        match self {
            _ if tar.is_empty() => {}
            TarEdit::Field {
                header: h,
                field,
                bytes,
                fix,
            } => {
                let at = header(h);
                if !fits(tar, at) {
                    return;
                }
                let (offset, len) = FIELDS[field.index(FIELDS.len())];
                let field = &mut tar[at + offset..at + offset + len];
                field.fill(0);
                let n = bytes.len().min(len);
                field[..n].copy_from_slice(&bytes[..n]);
                if *fix {
                    fix_checksum(tar, at);
                }
            }
            TarEdit::Size {
                header: h,
                size,
                fix,
            } => {
                let at = header(h);
                if !fits(tar, at) {
                    return;
                }
                set_size(&mut tar[at..at + 512], *size);
                if *fix {
                    fix_checksum(tar, at);
                }
            }
            TarEdit::Flip { at, mask, fix } => {
                let at = at.index(tar.len());
                tar[at] ^= mask;
                let block = at / 512 * 512;
                if *fix && headers.contains(&block) {
                    fix_checksum(tar, block);
                }
            }
            TarEdit::Truncate(at) => tar.truncate(at.index(tar.len())),
            TarEdit::Trailer(more) => tar.extend_from_slice(more),
            TarEdit::Insert { before, entry } => {
                let at = header(before).min(tar.len());
                tar.splice(at..at, entry.to_blocks());
            }
        }
    }
}

/// Path, type and data of one tar entry.
type TarFile = (Vec<u8>, tar::EntryType, Vec<u8>);

/// What an independent tar reader finds in a stream, as GNU tar would extract it: path, type
/// and data of each entry, long names applied.
///
/// The `tar` crate applies a GNU long name (`L`) only from a header with a GNU or ustar magic
/// and otherwise returns it as an entry of its own; GNU tar 1.34 applies it whatever the magic
/// (checked with `tar tvf`), and so does lifeboat's reader. The difference is made up here.
fn reference_entries(tar: &[u8]) -> std::io::Result<Vec<TarFile>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    let mut long_name: Option<Vec<u8>> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let mut path = entry.path_bytes().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        if kind.is_gnu_longname() {
            long_name = Some(data);
            continue;
        }
        if let Some(name) = long_name.take() {
            path = name;
        }
        // Names are C strings to GNU tar: trailing NULs are no part of them.
        while path.last() == Some(&0) {
            path.pop();
        }
        out.push((path, kind, data));
    }
    Ok(out)
}

/// What the reader promises for a tar stream it accepted: the version first and objects after,
/// each a plain file inside the layout and within the limits, and exactly the files a real tar
/// would extract (so nothing hides from the checks behind a different reading of the stream).
fn check_accepted(tar: &[u8], entries: &[Entry], limits: Limits) -> Result<(), TestCaseError> {
    prop_assert!(!entries.is_empty());
    prop_assert_eq!(&entries[0].kind, &EntryPath::Version);
    for e in &entries[1..] {
        prop_assert!(matches!(e.kind, EntryPath::Object { .. }), "{e:?}");
        let parsed = layout::parse_path(&e.path);
        prop_assert_eq!(parsed.as_ref(), Ok(&e.kind));
        prop_assert!(e.data.len() as u64 <= limits.max_entry_bytes);
    }
    prop_assert!(entries.len() as u64 - 1 <= limits.max_entries);
    let reference = reference_entries(tar);
    prop_assert!(reference.is_ok(), "tar cannot read it: {reference:?}");
    let reference = reference.unwrap();
    prop_assert_eq!(reference.len(), entries.len());
    for (e, (path, kind, data)) in entries.iter().zip(&reference) {
        prop_assert_eq!(e.path.as_bytes(), path.as_slice());
        prop_assert_eq!(*kind, tar::EntryType::Regular);
        prop_assert_eq!(&e.data, data);
    }
    Ok(())
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::default()),
        1 => (0..2048u64, 0..6u64).prop_map(|(max_entry_bytes, max_entries)| Limits {
            max_entry_bytes,
            max_entries,
        }),
    ]
}

proptest! {
    #![proptest_config(runner(1000))]

    #[test]
    fn archive_stored_bytes_changed_are_refused_or_read_unchanged(edit in stored_edit()) {
        let valid = &*VALID;
        let bytes = edit.apply(&valid.bytes);
        match read_all(&bytes, Limits::default()) {
            // zstd's frame checksum covers the content: what still reads is the original
            // (a skippable frame appended, a flip in an unused header bit).
            Ok(entries) => prop_assert_eq!(&entries, &valid.entries),
            Err(e) => check_refusal(&e)?,
        }
        if let StoredEdit::Truncate(_) = edit {
            prop_assert!(read_all(&bytes, Limits::default()).is_err(), "a cut archive was read");
        }
        // With the manifest's record of the stored bytes, any change at all is refused.
        if bytes != valid.bytes {
            let verified =
                reader::verify(bytes.as_slice(), valid.summary.size, &valid.summary.sha256,
                    Limits::default());
            prop_assert!(verified.is_err(), "{edit:?} passed verification");
            check_refusal(&verified.unwrap_err())?;
        }
    }

    #[test]
    fn archive_tar_edits_are_refused_or_read_as_tar_reads_them(
        edits in proptest::collection::vec(tar_edit(), 1..3),
        limits in limits(),
    ) {
        let valid = &*VALID;
        let mut tar = valid.tar.clone();
        for edit in &edits {
            // Each edit is placed by the valid archive's header offsets; a later edit may land
            // in the middle of an earlier one's change, which is only more hostile.
            edit.apply(&mut tar, &valid.headers);
        }
        let bytes = zstd::encode_all(tar.as_slice(), 1).unwrap();
        match read_all(&bytes, limits) {
            Ok(entries) => {
                check_accepted(&tar, &entries, limits)?;
                if tar == valid.tar {
                    prop_assert_eq!(&entries, &valid.entries);
                }
            }
            Err(e) => check_refusal(&e)?,
        }
        // The whole check a restore relies on (objects match their paths) is as robust.
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Err(e) = reader::verify(bytes.as_slice(), bytes.len() as u64, &sha256, limits) {
            check_refusal(&e)?;
        }
    }

    #[test]
    fn archive_any_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // Random bytes are never a zstd frame holding a lifeboat tar.
        let e = read_all(&bytes, Limits::default()).unwrap_err();
        check_refusal(&e)?;
    }

    #[test]
    fn archive_any_tar_bytes_are_refused_or_read_as_tar_reads_them(
        blocks in proptest::collection::vec(
            prop_oneof![
                raw_entry().prop_map(|e| e.to_blocks()),
                proptest::collection::vec(any::<u8>(), 0..1024),
                Just(vec![0; 1024]),
            ],
            0..5,
        ),
    ) {
        let tar = blocks.concat();
        let bytes = zstd::encode_all(tar.as_slice(), 1).unwrap();
        match read_all(&bytes, Limits::default()) {
            Ok(entries) => check_accepted(&tar, &entries, Limits::default())?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn archive_format_versions_after_this_one_are_refused_as_newer(
        version in prop_oneof![0..4u64, any::<u64>()],
        padding in select(&["", " ", "\n", "0"][..]),
    ) {
        // `0` pads on the left (`02` is 2 to the reader), spaces on the right.
        let text = if padding == "0" {
            format!("0{version}")
        } else {
            format!("{version}{padding}")
        };
        let mut tar = RawEntry {
            path: b"metadata/version".to_vec(),
            type_flag: b'0',
            declared: None,
            data: text.clone().into_bytes(),
        }
        .to_blocks();
        tar.extend_from_slice(&VALID.tar[VALID.headers[1]..]);
        let bytes = zstd::encode_all(tar.as_slice(), 1).unwrap();
        match read_all(&bytes, Limits::default()) {
            Ok(entries) => {
                prop_assert_eq!(version, 1);
                prop_assert_eq!(&entries[1..], &VALID.entries[1..]);
            }
            Err(ArchiveError::NewerFormat { found }) => {
                prop_assert!(version > 1);
                prop_assert_eq!(found, text.trim());
            }
            Err(e) => {
                prop_assert_eq!(version, 0, "{}", e);
                check_refusal(&e)?;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest parser
// ---------------------------------------------------------------------------------------------

/// The backup name the parser is told; every error must name it.
const BACKUP: &str = "nightly-20261128020000";

fn sample_manifest() -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        name: BACKUP.into(),
        schedule: Some("nightly".into()),
        cluster: ClusterInfo {
            name: "prod-eu-west-1".into(),
            server_version: "v1.32.4-eks-1234".into(),
        },
        started_at: "2026-11-28T02:00:00Z".parse().unwrap(),
        completed_at: "2026-11-28T02:03:10.5Z".parse().unwrap(),
        phase: Phase::PartiallyFailed,
        filters: Filters {
            include_namespaces: vec!["*".into()],
            exclude_namespaces: vec!["kube-node-lease".into()],
            include_cluster_resources: "auto".into(),
            selector: Some("app=web".into()),
            snapshot_volumes: true,
            ..Filters::default()
        },
        item_count: 3,
        resources: [("configmaps".to_string(), 2), ("namespaces".to_string(), 1)].into(),
        archive: ArchiveInfo {
            key: format!("backups/{BACKUP}/archive.tar.zst"),
            size: VALID.summary.size,
            sha256: VALID.summary.sha256.clone(),
            compression: "zstd".into(),
            encryption: None,
        },
        volumes: VolumesInfo {
            count: 1,
            key: Some(format!("backups/{BACKUP}/volumes.json")),
        },
        errors: vec![Issue {
            resource: "secrets".into(),
            namespace: Some("shop".into()),
            name: Some("token".into()),
            message: "forbidden".into(),
        }],
        warnings: Vec::new(),
        expires_at: Some("2026-12-28T02:00:00Z".parse().unwrap()),
        lifeboat_version: "0.1.0".into(),
    }
}

static SAMPLE: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(&sample_manifest().to_json()).unwrap());

/// Every JSON pointer into the sample manifest, the root's children first.
static SAMPLE_PATHS: LazyLock<Vec<String>> = LazyLock::new(|| {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        let children: Vec<(String, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, c)| (i.to_string(), c))
                .collect(),
            _ => Vec::new(),
        };
        for (key, child) in children {
            let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
            out.push(path.clone());
            walk(child, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&SAMPLE, "", &mut out);
    out
});

/// The keys a manifest has, and some it does not.
const MANIFEST_KEYS: &[&str] = &[
    "formatVersion",
    "name",
    "schedule",
    "cluster",
    "serverVersion",
    "startedAt",
    "completedAt",
    "phase",
    "filters",
    "includeNamespaces",
    "itemCount",
    "resources",
    "archive",
    "key",
    "size",
    "sha256",
    "compression",
    "encryption",
    "scheme",
    "recipients",
    "volumes",
    "count",
    "errors",
    "warnings",
    "resource",
    "namespace",
    "message",
    "expiresAt",
    "lifeboatVersion",
    "format_version",
];

/// Strings a manifest holds: timestamps (valid, odd, broken), phases, versions.
const MANIFEST_STRINGS: &[&str] = &[
    "2026-11-28T02:00:00Z",
    "2026-11-28T02:00:00.123456789Z",
    "2026-11-28T02:00:00+01:00",
    "2026-11-28T02:00:00",
    "2026-11-28",
    "9999-12-31T23:59:59Z",
    "-009999-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-28T24:00:00Z",
    "2026-11-28T02:00:60Z",
    "1970-01-01T00:00:00Z",
    "Completed",
    "PartiallyFailed",
    "Failed",
    "completed",
    "zstd",
    "age",
    "",
    "1",
    "2",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(MANIFEST_STRINGS).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        4 => select(MANIFEST_KEYS).prop_map(str::to_string),
                        1 => "\\PC{0,8}",
                    ],
                    inner,
                ),
                0..8,
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// One change of a stored manifest's JSON.
#[derive(Debug, Clone)]
enum ManifestEdit {
    Remove(Index),
    /// Another value, usually of another type.
    Replace(Index, Value),
    FormatVersion(Value),
}

fn manifest_edit() -> impl Strategy<Value = ManifestEdit> {
    prop_oneof![
        any::<Index>().prop_map(ManifestEdit::Remove),
        (any::<Index>(), json()).prop_map(|(at, v)| ManifestEdit::Replace(at, v)),
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            (0..4u64).prop_map(Value::from),
            json_leaf(),
            // Past u64, and u64 written as a float.
            Just(serde_json::from_str("18446744073709551616").unwrap()),
            Just(Value::from(2.0)),
        ]
        .prop_map(ManifestEdit::FormatVersion),
    ]
}

impl ManifestEdit {
    fn apply(&self, doc: &mut Value) {
        let path = |at: &Index| &SAMPLE_PATHS[at.index(SAMPLE_PATHS.len())];
        match self {
            ManifestEdit::Remove(at) => {
                let path = path(at);
                let (parent, key) = path.rsplit_once('/').unwrap();
                match doc.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.shift_remove(&key.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = key.parse::<usize>()
                            && i < a.len()
                        {
                            a.remove(i);
                        }
                    }
                    // Already gone with an earlier edit.
                    _ => {}
                }
            }
            ManifestEdit::Replace(at, value) => {
                if let Some(v) = doc.pointer_mut(path(at)) {
                    *v = value.clone();
                }
            }
            ManifestEdit::FormatVersion(value) => {
                if let Value::Object(m) = doc {
                    m.insert("formatVersion".into(), value.clone());
                }
            }
        }
    }
}

/// What the parser promises for any bytes: no panic; a manifest it returns is of a format this
/// build reads and survives a round trip; a document whose `formatVersion` is a number above
/// this build's is refused as newer, whatever else it holds; every error names the backup.
fn check_manifest(bytes: &[u8]) -> Result<(), TestCaseError> {
    let result = Manifest::parse(BACKUP, bytes);
    let declared = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("formatVersion").and_then(Value::as_u64));
    if let Some(version) = declared.filter(|v| *v > u64::from(FORMAT_VERSION)) {
        match &result {
            Err(e @ ManifestError::NewerFormat { name, found }) => {
                prop_assert_eq!(name, BACKUP);
                prop_assert_eq!(*found, version);
                let message = e.to_string();
                prop_assert!(
                    message.contains(&format!(
                        "was written in manifest format {version}, newer than this lifeboat understands"
                    )) && message.contains("upgrade lifeboat"),
                    "{message}"
                );
            }
            other => prop_assert!(false, "formatVersion {version} gave {other:?}"),
        }
    }
    match result {
        Ok(manifest) => {
            prop_assert!((1..=FORMAT_VERSION).contains(&manifest.format_version));
            let again = Manifest::parse(BACKUP, manifest.to_json().as_bytes());
            prop_assert!(again.as_ref().is_ok_and(|m| *m == manifest), "{again:?}");
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.contains(&format!("{BACKUP:?}")), "{message}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(runner(1000))]

    #[test]
    fn manifest_any_bytes_are_refused_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        check_manifest(&bytes)?;
    }

    #[test]
    fn manifest_any_json_is_refused_or_read_without_panic(doc in json()) {
        check_manifest(&serde_json::to_vec(&doc).unwrap())?;
    }

    #[test]
    fn manifest_edited_json_is_refused_or_read_without_panic(
        edits in proptest::collection::vec(manifest_edit(), 1..4),
    ) {
        let mut doc = SAMPLE.clone();
        for edit in &edits {
            edit.apply(&mut doc);
        }
        check_manifest(&serde_json::to_vec(&doc).unwrap())?;
    }

    #[test]
    fn manifest_edited_text_is_refused_or_read_without_panic(
        edits in proptest::collection::vec(text_edit(), 1..4),
    ) {
        let mut bytes = sample_manifest().to_json().into_bytes();
        for edit in &edits {
            edit.apply(&mut bytes);
        }
        check_manifest(&bytes)?;
    }

    #[test]
    fn manifest_of_any_format_version_is_read_or_refused_as_newer(
        version in prop_oneof![0..4u64, any::<u64>()],
        drop_fields in any::<bool>(),
    ) {
        let mut doc = SAMPLE.clone();
        doc["formatVersion"] = version.into();
        if drop_fields {
            // The version is checked before the fields: a newer format may have other ones.
            doc = serde_json::json!({ "formatVersion": version, "name": 7 });
        }
        let result = Manifest::parse(BACKUP, &serde_json::to_vec(&doc).unwrap());
        match result {
            Ok(m) => {
                prop_assert!(!drop_fields && version == 1);
                prop_assert_eq!(u64::from(m.format_version), version);
            }
            Err(ManifestError::Invalid { .. }) => prop_assert_eq!(version, 0),
            Err(ManifestError::NewerFormat { found, .. }) => {
                prop_assert!(version > 1);
                prop_assert_eq!(found, version);
            }
            Err(e @ ManifestError::Parse { .. }) => {
                prop_assert!(drop_fields && version == 1, "{}", e);
            }
        }
    }

    #[test]
    fn manifest_timestamps_of_any_text_are_refused_or_read_without_panic(
        text in prop_oneof![
            "[0-9T:.Z+-]{0,40}",
            "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}T[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:?[0-9]{2}|\\[[A-Za-z/_]{1,20}\\])?",
            "\\PC{0,30}",
        ],
        key in select(&["startedAt", "completedAt", "expiresAt"][..]),
    ) {
        let mut doc = SAMPLE.clone();
        doc[key] = text.into();
        check_manifest(&serde_json::to_vec(&doc).unwrap())?;
    }
}

// ---------------------------------------------------------------------------------------------
// Pinned cases: the random runs above may or may not meet these; they are what each property
// exists for, and what the runs taught.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_config_cut_off_mid_value_is_refused_at_its_line() {
    let e = Config::parse(
        "storage:\n  url: s3://acme-backups\nschedules:\n  - name: \"x",
        ORIGIN,
    )
    .unwrap_err();
    assert!(e.line().is_some(), "{e}");
    check_config("storage:\n  url: s3://acme-backups\nschedules:\n  - name: \"x").unwrap();
}

#[test]
fn a_config_of_two_documents_is_refused_as_a_whole() {
    let e = Config::parse(
        "storage: {url: s3://acme}\n---\nstorage: {url: s3://acme}\n",
        ORIGIN,
    )
    .unwrap_err();
    assert!(is_whole_document(&e), "{e}");
}

#[test]
fn a_skippable_frame_appended_to_an_archive_fails_only_verification() {
    // zstd passes over skippable frames, so the reader alone sees the original entries; the
    // manifest's size and checksum are what catch it.
    let valid = &*VALID;
    let padded = StoredEdit::Append(vec![0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]).apply(&valid.bytes);
    assert_eq!(read_all(&padded, Limits::default()).unwrap(), valid.entries);
    let e = reader::verify(
        padded.as_slice(),
        valid.summary.size,
        &valid.summary.sha256,
        Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ArchiveError::SizeMismatch { .. }), "{e}");
}

#[test]
fn a_long_name_header_without_a_tar_magic_names_the_next_entry_as_in_gnu_tar() {
    // Found by the tar-edit property: the `tar` crate ignores an `L` header whose magic is
    // neither GNU nor ustar, GNU tar 1.34 (`tar tvf`) and lifeboat's reader apply it. The
    // reference reader makes up the difference; this keeps the reader on GNU tar's side.
    let valid = &*VALID;
    let long_name = valid.headers[4];
    let mut tar = valid.tar.clone();
    assert_eq!(tar[long_name + 156], b'L');
    tar[long_name + 257..long_name + 265].copy_from_slice(b"../x.js\0");
    fix_checksum(&mut tar, long_name);
    let bytes = zstd::encode_all(tar.as_slice(), 1).unwrap();
    let entries = read_all(&bytes, Limits::default()).unwrap();
    assert_eq!(entries, valid.entries);
    check_accepted(&tar, &entries, Limits::default()).unwrap();
}

#[test]
fn a_newer_manifest_is_refused_before_its_unknown_fields_are_read() {
    let e = Manifest::parse(BACKUP, br#"{"formatVersion": 2, "shards": []}"#).unwrap_err();
    assert!(
        matches!(e, ManifestError::NewerFormat { found: 2, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("newer than this lifeboat understands"),
        "{e}"
    );
    // The edits above reach every key of the contract.
    let keys: BTreeSet<&str> = SAMPLE
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.contains("formatVersion") && keys.len() == 16,
        "{keys:?}"
    );
}
