//! The one error of config loading, and the translation of serde-saphyr's errors into it.
//!
//! Every message has the same shape, `<origin>:<line>:<column>: <key>: <problem>; <what to
//! do>`, so that a user (or an editor) can jump to the place and knows the fix. The text shows
//! at most the offending value, never more of the file.

use std::fmt;
use std::sync::Arc;

use serde_saphyr::Error as YamlError;

use super::locate::{Node, NodeKind, PathIndex, Pos};
use super::quoted;

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML (or not a single document).
    Syntax,
    /// A key the section does not have.
    UnknownKey,
    /// A required key is not set.
    MissingKey,
    /// A key given twice in one mapping, or a name used twice.
    Duplicate,
    /// A value of the wrong type (a list where a string goes, ...).
    WrongType,
    /// A value of the right type that is not acceptable (bad URL, cron, duration, range...).
    InvalidValue,
    /// Values that are fine alone but not together.
    Conflict,
}

/// A config file that cannot be used, with where and why.
///
/// `Display`: `<origin>:<line>:<column>: <key>: <problem>; <what to do>`, e.g.
/// `lifeboat.yaml:4:3: storage.bogusKey: unknown key; expected one of url, region, ...`.
/// Parts that are unknown are left out (no line for [`crate::config::Config::validate`] on a
/// config built in code, no key for an unreadable file).
#[derive(Debug, Clone)]
pub struct ConfigError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    origin: String,
    at: Option<Pos>,
    key: String,
    kind: ConfigErrorKind,
    problem: String,
    hint: Option<String>,
    source: Option<Arc<std::io::Error>>,
    /// Further problems of the same file, in document order, so one run shows them all.
    also: Vec<ConfigError>,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        key: &str,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        ConfigError(Box::new(Inner {
            origin: String::new(),
            at: None,
            key: key.to_string(),
            kind,
            problem: problem.into(),
            hint,
            source: None,
            also: Vec::new(),
        }))
    }

    /// Several problems as one error: the first in document order leads, the rest follow.
    pub(crate) fn many(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        errors.sort_by_key(|e| e.0.at.map(|p| (p.line, p.column)));
        let mut iter = errors.into_iter();
        let mut first = iter.next()?;
        first.0.also.extend(iter);
        Some(first)
    }

    /// The problems after the first, when a file has several.
    pub fn also(&self) -> &[ConfigError] {
        &self.0.also
    }

    pub(crate) fn io(
        origin: &str,
        problem: String,
        hint: &str,
        source: Option<std::io::Error>,
    ) -> ConfigError {
        let mut error = ConfigError::new(ConfigErrorKind::Io, "", problem, Some(hint.to_string()));
        origin.clone_into(&mut error.0.origin);
        error.0.source = source.map(Arc::new);
        error
    }

    pub(crate) fn with_origin(mut self, origin: &str) -> ConfigError {
        origin.clone_into(&mut self.0.origin);
        self
    }

    pub(crate) fn with_pos(mut self, at: Option<Pos>) -> ConfigError {
        self.0.at = at;
        self
    }

    /// The file (or other origin) the config came from; empty when unknown.
    pub fn origin(&self) -> &str {
        &self.0.origin
    }

    /// Line of the offending key or value, from 1.
    pub fn line(&self) -> Option<usize> {
        self.0.at.map(|p| p.line)
    }

    /// Column of the offending key or value, from 1, in characters.
    pub fn column(&self) -> Option<usize> {
        self.0.at.map(|p| p.column)
    }

    /// Dotted key path with list indices, e.g. `schedules[0].cron`; empty for the whole file.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    pub fn kind(&self) -> ConfigErrorKind {
        self.0.kind
    }

    /// What is wrong, without the location and the hint.
    pub fn problem(&self) -> &str {
        &self.0.problem
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        if !e.origin.is_empty() {
            f.write_str(&e.origin)?;
            if let Some(at) = e.at {
                write!(f, ":{}:{}", at.line, at.column)?;
            }
            f.write_str(": ")?;
        } else if let Some(at) = e.at {
            write!(f, "{}:{}: ", at.line, at.column)?;
        }
        if !e.key.is_empty() {
            write!(f, "{}: ", e.key)?;
        }
        f.write_str(&e.problem)?;
        if let Some(hint) = &e.hint {
            write!(f, "; {hint}")?;
        }
        for other in &e.also {
            write!(f, "\n{other}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Splits a message of our own `Deserialize` impls, `problem; hint`, at its last `; ` (values
/// quoted in the problem may contain one; hints never do).
fn split_message(message: &str) -> (String, Option<String>) {
    match message.rsplit_once("; ") {
        Some((problem, hint)) => (problem.to_string(), Some(hint.to_string())),
        None => (message.to_string(), None),
    }
}

/// What kind of value a node is, in words.
fn found(node: Option<&Node>) -> &'static str {
    match node.map(|n| (n.kind, n.scalar.as_deref())) {
        Some((NodeKind::Mapping, _)) => "a mapping",
        Some((NodeKind::Sequence, _)) => "a list",
        Some((NodeKind::Alias, _)) => "an alias",
        Some((NodeKind::Scalar, Some("" | "~"))) => "nothing",
        Some((NodeKind::Scalar, _)) => "a single value",
        None => "something else",
    }
}

/// `schedules[3].cron` -> `schedules[].cron`, for looking up what a key expects.
fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// What each key takes, in words, for type errors.
fn expected(path: &str) -> &'static str {
    let p = pattern(path);
    let leaf = p.rsplit('.').next().unwrap_or("");
    match (p.as_str(), leaf) {
        ("", _) => {
            "a mapping of sections (cluster, storage, volumes, encryption, schedules, server, archive)"
        }
        (
            "cluster"
            | "storage"
            | "volumes"
            | "encryption"
            | "server"
            | "archive"
            | "storage.objectLock"
            | "server.leaderElection"
            | "schedules[].retention"
            | "schedules[]",
            _,
        ) => "a mapping of keys",
        ("schedules", _) => "a list of schedules (- name: ...)",
        ("storage.url", _) => "a URL such as s3://bucket/prefix or file:///var/lib/lifeboat",
        ("storage.endpoint" | "volumes.endpoint", _) => "a URL such as https://s3.example.com",
        ("encryption.recipients", _) => "a list of age recipients (- age1...)",
        ("encryption.recipients[]", _) => "an age recipient (age1...)",
        ("server.listen", _) => "an address such as 0.0.0.0:8000",
        ("schedules[].cron", _) => "a cron expression such as \"0 2 * * *\"",
        ("schedules[].timezone", _) => "a time zone name such as Europe/Berlin",
        ("schedules[].selector", _) => "a label selector such as app=web",
        ("schedules[].includeClusterResources", _) => "auto, true or false",
        (
            _,
            "includeNamespaces" | "excludeNamespaces" | "includeResources" | "excludeResources",
        ) => "a list of names (- name, or [a, b])",
        (
            _,
            "forcePathStyle" | "snapshots" | "verifyAfterBackup" | "enabled" | "snapshotVolumes",
        ) => "true or false",
        (
            _,
            "waitTimeout"
            | "shutdownGracePeriod"
            | "leaseDuration"
            | "renewDeadline"
            | "retryPeriod"
            | "maxAge",
        ) => "a duration such as 30s, 15m, 2h or 7d",
        (
            _,
            "concurrency" | "keepLast" | "retainDays" | "compressionLevel" | "compressionWorkers"
            | "windowLog",
        ) => "a whole number",
        _ => "a single value",
    }
}

/// Why a scalar did not convert to the numeric type `ty` (`u32`, `i32`...).
fn why_not_a_number(ty: &str, value: &str) -> String {
    let unsigned = ty.starts_with('u');
    if !unsigned && !ty.starts_with('i') {
        return format!("is not a valid {ty}");
    }
    let digits = value.trim_start_matches(['-', '+']);
    if unsigned && value.starts_with('-') {
        "cannot be negative".to_string()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        "is too large".to_string()
    } else {
        "is not a whole number".to_string()
    }
}

/// Keys without a default.
fn is_required(path: &str) -> bool {
    matches!(
        pattern(path).as_str(),
        "storage.url"
            | "schedules[].name"
            | "schedules[].cron"
            | "storage.objectLock.mode"
            | "storage.objectLock.retainDays"
    )
}

/// Extra advice for a key that is required.
pub(crate) fn missing_hint(path: &str) -> String {
    match pattern(path).as_str() {
        "storage.url" => {
            "add storage: {url: s3://bucket/prefix} or storage: {url: file:///var/lib/lifeboat}"
                .into()
        }
        "schedules[].name" => "give each schedule a unique name, such as nightly".into(),
        "schedules[].cron" => "say when it runs, such as cron: \"0 2 * * *\"".into(),
        "storage.objectLock.mode" => "set mode: GOVERNANCE or mode: COMPLIANCE".into(),
        "storage.objectLock.retainDays" => {
            "set retainDays to the number of days each object stays locked".into()
        }
        _ => "add it".into(),
    }
}

/// Every key of the document that the format does not have, given the known key patterns
/// (`schedules[].cron`). Only the topmost unknown key of a subtree is reported. Serde stops at
/// the first error in document order, so without this an unknown key after a bad value would
/// go unreported until the value is fixed.
pub(crate) fn unknown_keys(index: &PathIndex, known: &[String], origin: &str) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for node in index.nodes() {
        let Some(at) = node.key else { continue };
        let p = pattern(&node.path);
        let parent = crate::config::locate::parent(&p).to_string();
        // Only under a known mapping: below an unknown key or a value of the wrong type (a
        // mapping where a list goes) the parser's own error says more.
        let prefix = format!("{parent}.");
        let parent_is_mapping = parent.is_empty() || known.iter().any(|k| k.starts_with(&prefix));
        if known.contains(&p)
            || !parent_is_mapping
            || !(parent.is_empty() || known.contains(&parent))
        {
            continue;
        }
        let field = p.rsplit('.').next().unwrap_or(&p);
        let prefix = if parent.is_empty() {
            String::new()
        } else {
            format!("{parent}.")
        };
        let siblings: Vec<&str> = known
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('.') && !rest.contains('['))
            .collect();
        let list = siblings.join(", ");
        let hint = match closest(field, &siblings) {
            Some(best) => format!("did you mean {best}? expected one of {list}"),
            None if siblings.is_empty() => "this section takes no keys".to_string(),
            None => format!("expected one of {list}"),
        };
        out.push(
            ConfigError::new(
                ConfigErrorKind::UnknownKey,
                &node.path,
                "unknown key",
                Some(hint),
            )
            .with_origin(origin)
            .with_pos(Some(at)),
        );
    }
    out
}

/// The closest expected key, for `did you mean`.
fn closest<'a>(field: &str, expected: &[&'a str]) -> Option<&'a str> {
    let fold = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let folded = fold(field);
    if let Some(same) = expected.iter().find(|e| fold(e) == folded) {
        return Some(same);
    }
    expected
        .iter()
        .map(|e| (levenshtein(&folded, &fold(e)), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// Translates a serde-saphyr error into a [`ConfigError`] naming the key.
pub(crate) fn from_yaml(
    error: &YamlError,
    text: &str,
    index: &PathIndex,
    origin: &str,
) -> ConfigError {
    use ConfigErrorKind as K;
    // Errors inside an anchor used by an alias: point at the anchor's text, where the fix is.
    let mut error = error;
    while let YamlError::AliasError { error: inner, .. }
    | YamlError::WithSnippet { error: inner, .. } = error
    {
        error = inner;
    }
    let at = error.location().filter(|l| l.line() > 0).map(|l| Pos {
        line: usize::try_from(l.line()).unwrap_or(usize::MAX),
        column: usize::try_from(l.column()).unwrap_or(usize::MAX),
    });
    // serde-saphyr points at the key for serde's own type errors, at the value otherwise.
    let node_at = at.and_then(|p| match error {
        YamlError::SerdeInvalidType { .. } | YamlError::SerdeInvalidValue { .. } => index.at(p),
        _ => index.value_at(p),
    });
    let path_at = node_at.map_or("", |n| n.path.as_str()).to_string();
    let value_at = || node_at.and_then(|n| n.scalar.clone());
    let (kind, key, problem, hint) = match error {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let key = at
                .and_then(|p| index.key_at(p))
                .map_or_else(|| field.clone(), |n| n.path.clone());
            let hint = if expected.is_empty() {
                "this section takes no keys".to_string()
            } else {
                let list = expected.join(", ");
                match closest(field, expected) {
                    Some(best) => format!("did you mean {best}? expected one of {list}"),
                    None => format!("expected one of {list}"),
                }
            };
            (K::UnknownKey, key, "unknown key".to_string(), Some(hint))
        }
        YamlError::SerdeMissingField { field, .. } => {
            let container = at
                .and_then(|p| index.container_at(p))
                .map_or("", |n| n.path.as_str());
            let key = match (container, *field) {
                // No storage section, or an empty one: name what is really required.
                (_, "storage") => "storage.url".to_string(),
                (parent, field) => join_key(parent, field),
            };
            let hint = missing_hint(&key);
            (
                K::MissingKey,
                key,
                "is required but not set".to_string(),
                Some(hint),
            )
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            K::InvalidValue,
            path_at,
            format!("{} is not a valid value", quoted(variant)),
            Some(format!("expected one of {}", expected.join(", "))),
        ),
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | YamlError::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            K::WrongType,
            path_at,
            format!("expected {expected}, found {unexpected}"),
            None,
        ),
        YamlError::Unexpected { .. }
        | YamlError::UnexpectedValueForUnit { .. }
        | YamlError::ExpectedEmptyMappingForUnitStruct { .. } => {
            let problem = format!("expected {}, found {}", expected(&path_at), found(node_at));
            (K::WrongType, path_at, problem, None)
        }
        YamlError::NullIntoString { .. } => {
            let hint = if is_required(&path_at) {
                format!("give it {}", expected(&path_at))
            } else {
                format!(
                    "give it {}, or remove the key to use the default",
                    expected(&path_at)
                )
            };
            (
                K::WrongType,
                path_at,
                "has no value".to_string(),
                Some(hint),
            )
        }
        YamlError::InvalidBooleanStrict { .. } => (
            K::WrongType,
            path_at,
            format!(
                "{} is not a boolean",
                quoted(&value_at().unwrap_or_default())
            ),
            Some("write true or false".to_string()),
        ),
        YamlError::InvalidScalar { ty, .. } => {
            let value = value_at().unwrap_or_default();
            let problem = format!("{} {}", quoted(&value), why_not_a_number(ty, value.trim()));
            let hint = format!("write {}, without quotes or units", expected(&path_at));
            (K::WrongType, path_at, problem, Some(hint))
        }
        YamlError::DuplicateMappingKey { key, .. } => {
            let path = at.and_then(|p| index.key_at(p)).map_or_else(
                || match key {
                    Some(k) => join_key(&path_at, k),
                    None => path_at.clone(),
                },
                |n| n.path.clone(),
            );
            let problem = "is given twice in the same mapping".to_string();
            (K::Duplicate, path, problem, Some("keep one of them".into()))
        }
        YamlError::Message { msg, .. } => {
            let (problem, hint) = split_message(msg);
            (K::InvalidValue, path_at, problem, hint)
        }
        YamlError::MultipleDocuments { .. } => (
            K::Syntax,
            String::new(),
            "the file holds more than one YAML document".into(),
            Some("keep one (remove the --- separator and what follows)".into()),
        ),
        YamlError::Budget { .. } => (
            K::Syntax,
            String::new(),
            "the document is too large, too deeply nested or expands too many aliases".into(),
            Some("check that this is a lifeboat config: a small mapping of sections".into()),
        ),
        YamlError::Eof { .. } => (
            K::Syntax,
            path_at,
            "the file ends in the middle of a value".into(),
            Some("complete or remove the last entry".into()),
        ),
        YamlError::InvalidUtf8Input => (
            K::Syntax,
            String::new(),
            "the file is not UTF-8 text".into(),
            Some("save it as UTF-8".into()),
        ),
        other => {
            let message = plain_message(other);
            let hint = syntax_hint(text, at, &path_at);
            (
                K::Syntax,
                path_at,
                format!("invalid YAML: {message}"),
                Some(hint),
            )
        }
    };
    ConfigError::new(kind, &key, problem, hint)
        .with_origin(origin)
        .with_pos(at)
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Advice for a syntax error. The common one in a config is an unquoted cron expression or
/// macro: `*` and `@` cannot start a plain YAML value.
fn syntax_hint(text: &str, at: Option<Pos>, path: &str) -> String {
    let first = at.and_then(|at| {
        let line = text.lines().nth(at.line.checked_sub(1)?)?;
        line.chars().nth(at.column.checked_sub(1)?)
    });
    match first {
        Some(c @ ('*' | '@' | '&' | '!' | '`' | '%' | '|' | '>'))
            if pattern(path).ends_with("cron") =>
        {
            format!(
                "a value cannot start with {c} in YAML: quote it, as in cron: \"*/15 * * * *\" or cron: \"@daily\""
            )
        }
        Some(c @ ('*' | '@' | '&' | '!' | '`' | '%')) => {
            format!("a value cannot start with {c} in YAML: quote it")
        }
        Some('\t') => "indent with spaces, not tabs".to_string(),
        _ => "fix the YAML syntax at this position".to_string(),
    }
}

/// The plain message of an error, without location, through serde-saphyr's user formatter.
fn plain_message(error: &YamlError) -> String {
    use serde_saphyr::MessageFormatter;
    serde_saphyr::UserMessageFormatter
        .format_message(error)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_origin_position_key_problem_and_hint() {
        let error = ConfigError::new(
            ConfigErrorKind::UnknownKey,
            "storage.bogusKey",
            "unknown key",
            Some("expected one of url".into()),
        )
        .with_origin("lifeboat.yaml")
        .with_pos(Some(Pos { line: 4, column: 3 }));
        assert_eq!(
            error.to_string(),
            "lifeboat.yaml:4:3: storage.bogusKey: unknown key; expected one of url"
        );
        let bare = ConfigError::new(
            ConfigErrorKind::Conflict,
            "storage.kmsKeyId",
            "is only used with aws:kms",
            None,
        );
        assert_eq!(
            bare.to_string(),
            "storage.kmsKeyId: is only used with aws:kms"
        );
    }

    #[test]
    fn suggests_the_closest_key() {
        let keys = ["url", "region", "forcePathStyle", "kmsKeyId"];
        assert_eq!(closest("force_path_style", &keys), Some("forcePathStyle"));
        assert_eq!(closest("regoin", &keys), Some("region"));
        assert_eq!(closest("kmsKeyID", &keys), Some("kmsKeyId"));
        assert_eq!(closest("bucket", &keys), None);
    }

    #[test]
    fn patterns_drop_indices() {
        assert_eq!(
            pattern("schedules[12].retention.keepLast"),
            "schedules[].retention.keepLast"
        );
        assert_eq!(
            expected("schedules[0].cron"),
            "a cron expression such as \"0 2 * * *\""
        );
    }
}
