//! Where each object lives inside an archive, and which entry paths a reader accepts.
//!
//! The layout is Velero's, so that people who know Velero feel at home:
//!
//! ```text
//! metadata/version
//! resources/<plural>[.<group>]/cluster/<name>.json
//! resources/<plural>[.<group>]/namespaces/<namespace>/<name>.json
//! ```
//!
//! A user with only `zstd` and `tar` must be able to extract every entry on an ordinary Linux
//! filesystem, where a path component is at most 255 bytes. Kubernetes allows 253-character
//! names, so `<name>.json` can be too long: such a component is cut on a character boundary and
//! suffixed with a hash of the whole name, which keeps it unique. The object inside always
//! carries its real name, so readers take names from objects, never from paths.
//!
//! [`parse_path`] is the gate for archives read back: a stored archive may be corrupt or
//! hostile, and nothing outside this layout (absolute paths, `..`, empty segments) gets through.

use sha2::{Digest, Sha256};

/// The first entry of every archive; its content is [`FORMAT_VERSION`].
pub const VERSION_ENTRY: &str = "metadata/version";

/// The archive format this build writes. Readers refuse a newer one, because a newer format may
/// change what a path or an object means.
pub const FORMAT_VERSION: &str = "1";

/// Longest path component (file or directory name) Linux filesystems accept (`NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Every object entry sits under this directory.
const RESOURCES: &str = "resources";
/// Marks the objects of cluster-scoped resources, in place of a namespace.
const CLUSTER: &str = "cluster";
/// Parent of one directory per namespace.
const NAMESPACES: &str = "namespaces";
/// Suffix of every object file: one compact JSON document each.
const JSON: &str = ".json";
/// Hex digits of SHA-256 kept in a cut component: 32 bits tell apart the handful of over-long
/// names that can share a 241-byte prefix within one directory.
const HASH_HEX: usize = 8;

/// The directory of one resource type: `configmaps`, `deployments.apps`.
///
/// The same key counts objects in the manifest's `resources`. A CRD's name is
/// `<plural>.<group>` and at most 253 characters, so this never needs cutting in practice; it
/// is cut like a file name all the same, so that no API server can produce an archive GNU tar
/// cannot extract.
pub fn resource_dir(plural: &str, group: &str) -> String {
    let dir = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    fit_component(&dir, "")
}

/// The file name of an object, `<name>.json`, cut to 255 bytes when the name is too long.
///
/// Cut names end in `-<8 hex digits of SHA-256 of the whole name>.json`, so two long names
/// with the same beginning still get two files.
pub fn file_name(name: &str) -> String {
    fit_component(name, JSON)
}

/// The entry path of an object of the resource type in `resource_dir` (from [`resource_dir`]),
/// in `namespace` or cluster-scoped.
pub fn object_path(resource_dir: &str, namespace: Option<&str>, name: &str) -> String {
    let file = file_name(name);
    match namespace {
        Some(ns) => format!("{RESOURCES}/{resource_dir}/{NAMESPACES}/{ns}/{file}"),
        None => format!("{RESOURCES}/{resource_dir}/{CLUSTER}/{file}"),
    }
}

/// `stem` + `suffix` if that fits in one path component, otherwise `stem` cut on a character
/// boundary + `-` + a short hash of the whole `stem` + `suffix`.
fn fit_component(stem: &str, suffix: &str) -> String {
    if stem.len() + suffix.len() <= MAX_COMPONENT_BYTES {
        return format!("{stem}{suffix}");
    }
    let budget = MAX_COMPONENT_BYTES - suffix.len() - 1 - HASH_HEX;
    let mut cut = budget;
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex::encode(Sha256::digest(stem.as_bytes()));
    format!("{}-{}{suffix}", &stem[..cut], &digest[..HASH_HEX])
}

/// What an entry path is, once it is known to be safe and inside the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPath {
    /// `metadata/version`.
    Version,
    /// One object. `file_name` may be cut (see [`file_name`]): the object's own
    /// `metadata.name` is the truth.
    Object {
        /// `<plural>[.<group>]`, as from [`resource_dir`].
        resource: String,
        /// `None` for cluster-scoped objects.
        namespace: Option<String>,
        /// `<name>.json`, possibly cut.
        file_name: String,
    },
}

/// An entry path that is unsafe to extract or outside the layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe or unexpected archive path {path:?}: {reason}")]
pub struct UnsafePath {
    /// The path as found (non-UTF-8 bytes replaced).
    pub path: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

/// Classifies an entry path, refusing anything a careless extractor could be tricked with
/// (absolute paths, `..`, `.`, empty segments, NUL, over-long components) and anything a
/// lifeboat writer never produces.
pub fn parse_path(path: &str) -> Result<EntryPath, UnsafePath> {
    let refuse = |reason| {
        Err(UnsafePath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return refuse("empty path");
    }
    if path.contains('\0') {
        return refuse("contains a NUL byte");
    }
    if path.starts_with('/') {
        return refuse("absolute path");
    }
    let segments: Vec<&str> = path.split('/').collect();
    for segment in &segments {
        match *segment {
            "" => return refuse("empty path segment"),
            "." => return refuse("`.` path segment"),
            ".." => return refuse("`..` path segment"),
            s if s.len() > MAX_COMPONENT_BYTES => {
                return refuse("path segment longer than 255 bytes");
            }
            _ => {}
        }
    }
    if path == VERSION_ENTRY {
        return Ok(EntryPath::Version);
    }
    let (resource, namespace, file) = match segments.as_slice() {
        [RESOURCES, resource, CLUSTER, file] => (resource, None, file),
        [RESOURCES, resource, NAMESPACES, ns, file] => (resource, Some(ns), file),
        _ => return refuse("outside the lifeboat archive layout"),
    };
    if file.len() <= JSON.len() || !file.ends_with(JSON) {
        return refuse("object file name is not <name>.json");
    }
    Ok(EntryPath::Object {
        resource: (*resource).to_string(),
        namespace: namespace.map(|ns| (*ns).to_string()),
        file_name: (*file).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_dir_joins_plural_and_group() {
        assert_eq!(resource_dir("configmaps", ""), "configmaps");
        assert_eq!(resource_dir("deployments", "apps"), "deployments.apps");
        assert_eq!(
            resource_dir("certificates", "cert-manager.io"),
            "certificates.cert-manager.io"
        );
    }

    #[test]
    fn object_path_places_cluster_and_namespaced_objects() {
        assert_eq!(
            object_path("namespaces", None, "default"),
            "resources/namespaces/cluster/default.json"
        );
        assert_eq!(
            object_path("deployments.apps", Some("shop"), "web"),
            "resources/deployments.apps/namespaces/shop/web.json"
        );
    }

    #[test]
    fn names_that_fit_are_kept_whole() {
        let name = "a".repeat(250); // 250 + ".json" = 255 bytes exactly
        assert_eq!(file_name(&name), format!("{name}.json"));
    }

    #[test]
    fn a_253_character_name_is_cut_and_hashed_within_255_bytes() {
        let name = "n".repeat(253);
        let file = file_name(&name);
        assert_eq!(file.len(), MAX_COMPONENT_BYTES);
        let hash = &hex::encode(Sha256::digest(name.as_bytes()))[..8];
        assert!(file.ends_with(&format!("-{hash}.json")), "{file}");
        assert!(file.starts_with(&"n".repeat(241)));
        // Deterministic, and two long names with a common prefix stay apart.
        assert_eq!(file_name(&name), file);
        let other = format!("{}m", "n".repeat(252));
        assert_ne!(file_name(&other), file);
        assert_eq!(file_name(&other).len(), MAX_COMPONENT_BYTES);
    }

    #[test]
    fn multi_byte_names_are_cut_on_a_character_boundary() {
        // 2-, 3- and 4-byte characters, none of which lines up with the 241-byte budget.
        for ch in ["é", "名", "🦀"] {
            let name = ch.repeat(200);
            let file = file_name(&name);
            assert!(file.len() <= MAX_COMPONENT_BYTES, "{ch}: {}", file.len());
            let stem = file.strip_suffix(".json").unwrap();
            let (cut, hash) = stem.rsplit_once('-').unwrap();
            assert_eq!(hash.len(), 8);
            assert!(cut.chars().all(|c| c.to_string() == ch), "{ch}: {cut}");
            assert!(
                cut.len() > 241 - ch.len(),
                "{ch}: cut too short ({})",
                cut.len()
            );
        }
        // A short non-ASCII name is left alone.
        assert_eq!(file_name("café-名前"), "café-名前.json");
    }

    #[test]
    fn object_paths_parse_back() {
        let long = "x".repeat(253);
        for (dir, ns, name) in [
            ("configmaps", Some("kube-system"), "coredns"),
            (
                "clusterroles.rbac.authorization.k8s.io",
                None,
                "system:aggregate-to-admin",
            ),
            ("widgets.example.com", Some("café"), long.as_str()),
        ] {
            let path = object_path(dir, ns, name);
            assert_eq!(
                parse_path(&path),
                Ok(EntryPath::Object {
                    resource: dir.to_string(),
                    namespace: ns.map(str::to_string),
                    file_name: file_name(name),
                }),
                "{path}"
            );
        }
        assert_eq!(parse_path(VERSION_ENTRY), Ok(EntryPath::Version));
    }

    #[test]
    fn unsafe_and_foreign_paths_are_refused() {
        let long = format!("resources/configmaps/cluster/{}.json", "x".repeat(251));
        for path in [
            "",
            "/etc/passwd",
            "/resources/configmaps/cluster/a.json",
            "resources/../../etc/cron.d/x.json",
            "resources/configmaps/cluster/../a.json",
            "resources/configmaps/namespaces/../cluster/a.json",
            "resources/./configmaps/cluster/a.json",
            "resources//configmaps/cluster/a.json",
            "resources/configmaps/cluster/a.json/",
            "resources/configmaps/cluster/a\0.json",
            "resources/configmaps/cluster/a.yaml",
            "resources/configmaps/cluster/.json",
            "resources/configmaps/cluster",
            "resources/configmaps/namespaces/default/sub/a.json",
            "resources/configmaps/elsewhere/a.json",
            "metadata/version/x",
            "metadata",
            "README",
            long.as_str(),
        ] {
            let err = parse_path(path).expect_err(path);
            assert_eq!(err.path, path);
        }
    }
}
