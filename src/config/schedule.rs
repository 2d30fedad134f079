//! `schedules`: what the daemon backs up, when, and how long it keeps it.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Checker, ConfigError, Duration, nullable, quoted};

/// Longest schedule name: backups are named `<schedule>-<yyyymmddhhmmss>` (15 more characters)
/// and that name must stay a valid Kubernetes label value (63 characters).
pub const MAX_SCHEDULE_NAME_LEN: usize = 48;

/// One scheduled backup: when it runs, what it covers, how long its backups are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Required. Unique name, also the start of each backup's name
    /// (`<name>-<UTC yyyymmddhhmmss>`): lowercase letters, digits and `-`, starting and ending
    /// with a letter or digit, at most 48 characters.
    pub name: String,
    /// Required. When to run: standard 5-field cron (`minute hour day-of-month month
    /// day-of-week`, e.g. `0 2 * * *`), 6 fields with seconds first (`30 0 2 * * *`), or a
    /// macro: `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`. Quote it in
    /// YAML (`"@daily"`, `"*/15 * * * *"`): `@` and `*` cannot start a plain YAML value.
    pub cron: CronExpr,
    /// IANA time zone the cron expression is read in, e.g. `Europe/Berlin`. Default `UTC`.
    /// Across DST changes a skipped local time runs once at the first valid time after it,
    /// and a repeated local time runs once.
    #[serde(default)]
    pub timezone: Timezone,
    /// How many of this schedule's backups to keep and for how long. Default: keep all.
    #[serde(default, deserialize_with = "nullable")]
    pub retention: Retention,
    /// Namespaces to back up, as shell globs (`*`, `?`, `[a-z]`). Default: all namespaces.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub include_namespaces: Vec<String>,
    /// Namespaces to leave out, as shell globs; wins over `includeNamespaces`. Default: none.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude_namespaces: Vec<String>,
    /// Resource types to back up, by plural (`deployments`), plural.group
    /// (`certificates.cert-manager.io`) or Kind (`Deployment`). Default: all types.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub include_resources: Vec<String>,
    /// Resource types to leave out, written as for `includeResources`. Events are left out
    /// unless named in `includeResources`. Default: none.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude_resources: Vec<String>,
    /// Back up cluster-scoped resources (CRDs, ClusterRoles, PVs, StorageClasses...): `auto`
    /// (yes when no namespace filter narrows the backup), `true` or `false`. Default `auto`.
    #[serde(default)]
    pub include_cluster_resources: IncludeClusterResources,
    /// Kubernetes label selector; only objects matching it are backed up, e.g.
    /// `app.kubernetes.io/part-of=shop,tier!=cache`. Default: every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Snapshot the EBS volumes of this schedule's PersistentVolumes. Default: the value of
    /// `volumes.snapshots`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
}

impl Schedule {
    /// A schedule with defaults for everything but its name and cron expression.
    pub fn new(name: impl Into<String>, cron: CronExpr) -> Schedule {
        Schedule {
            name: name.into(),
            cron,
            timezone: Timezone::default(),
            retention: Retention::default(),
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            include_resources: Vec::new(),
            exclude_resources: Vec::new(),
            include_cluster_resources: IncludeClusterResources::default(),
            selector: None,
            snapshot_volumes: None,
        }
    }

    /// The name of this schedule's backup started at `at`: `<name>-<UTC yyyymmddhhmmss>`.
    pub fn backup_name(&self, at: jiff::Timestamp) -> String {
        format!("{}-{}", self.name, at.strftime("%Y%m%d%H%M%S"))
    }

    /// Whether this schedule snapshots volumes, given `volumes.snapshots`.
    pub fn snapshot_volumes_or(&self, volumes_default: bool) -> bool {
        self.snapshot_volumes.unwrap_or(volumes_default)
    }

    pub(super) fn check(&self, c: &Checker<'_>, at: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{at}.{field}");
        if let Err(why) = check_schedule_name(&self.name) {
            return Err(c.invalid(
                &key("name"),
                format!("{} {why}", quoted(&self.name)),
                "use lowercase letters, digits and '-', such as nightly or hourly-apps",
            ));
        }
        if self.retention.keep_last == Some(0) {
            return Err(c.invalid(
                &key("retention.keepLast"),
                "0 would keep no backup",
                "use 1 or more, or remove keepLast to keep any number",
            ));
        }
        if self.retention.max_age.is_some_and(Duration::is_zero) {
            return Err(c.invalid(
                &key("retention.maxAge"),
                "0s would expire every backup at once",
                "use a duration such as 7d or 720h, or remove maxAge to keep backups forever",
            ));
        }
        for (field, list) in [
            ("includeNamespaces", &self.include_namespaces),
            ("excludeNamespaces", &self.exclude_namespaces),
        ] {
            for (i, pattern) in list.iter().enumerate() {
                if let Err(why) = check_namespace_glob(pattern) {
                    return Err(c.invalid(
                        &format!("{at}.{field}[{i}]"),
                        format!("{} {why}", quoted(pattern)),
                        "use a namespace name or a glob such as team-* or app-[ab]",
                    ));
                }
            }
        }
        for (field, list) in [
            ("includeResources", &self.include_resources),
            ("excludeResources", &self.exclude_resources),
        ] {
            for (i, resource) in list.iter().enumerate() {
                if resource.is_empty()
                    || !resource
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*'))
                {
                    return Err(c.invalid(
                        &format!("{at}.{field}[{i}]"),
                        format!("{} is not a resource type", quoted(resource)),
                        "use a plural (deployments), plural.group (certificates.cert-manager.io) or a Kind (Deployment)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// DNS-1123 label, short enough for the timestamp suffix.
fn check_schedule_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_SCHEDULE_NAME_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_SCHEDULE_NAME_LEN} leave room for the -yyyymmddhhmmss of backup names",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("contains {bad:?}"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

fn check_namespace_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    if let Some(bad) = pattern.chars().find(|c| {
        !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '-' | '*' | '?' | '[' | ']' | '!'))
    }) {
        return Err(format!("contains {bad:?}, which no namespace name has"));
    }
    crate::glob::Glob::new(pattern).map_err(|e| e.why.to_string())?;
    Ok(())
}

/// How long a schedule's backups are kept. Both rules apply; the newest Completed backup of
/// a schedule is never deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Retention {
    /// Keep at most this many backups of the schedule (the newest). Default: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Delete backups older than this, e.g. `30d`. Default: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Neither rule is set: every backup is kept.
    pub fn keeps_everything(&self) -> bool {
        self.keep_last.is_none() && self.max_age.is_none()
    }
}

/// Whether cluster-scoped resources are backed up. Written `auto`, `true` or `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IncludeClusterResources {
    /// Yes for a whole-cluster backup (no namespace filter), no otherwise.
    #[default]
    Auto,
    True,
    False,
}

impl IncludeClusterResources {
    pub fn as_str(self) -> &'static str {
        match self {
            IncludeClusterResources::Auto => "auto",
            IncludeClusterResources::True => "true",
            IncludeClusterResources::False => "false",
        }
    }

    /// The decision for a backup that covers the whole cluster or not.
    pub fn resolve(self, whole_cluster: bool) -> bool {
        match self {
            IncludeClusterResources::Auto => whole_cluster,
            IncludeClusterResources::True => true,
            IncludeClusterResources::False => false,
        }
    }
}

impl fmt::Display for IncludeClusterResources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IncludeClusterResources {
    type Err = String;

    fn from_str(text: &str) -> Result<IncludeClusterResources, String> {
        match text {
            "auto" => Ok(IncludeClusterResources::Auto),
            "true" => Ok(IncludeClusterResources::True),
            "false" => Ok(IncludeClusterResources::False),
            other => Err(format!(
                "{} is not a valid value; expected one of auto, true, false",
                quoted(other)
            )),
        }
    }
}

impl Serialize for IncludeClusterResources {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Accepts the YAML booleans `true`/`false` as well as the strings `auto`, `true`, `false`.
impl<'de> Deserialize<'de> for IncludeClusterResources {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = IncludeClusterResources;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("auto, true or false")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
                Ok(if value {
                    IncludeClusterResources::True
                } else {
                    IncludeClusterResources::False
                })
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

/// A validated cron expression, kept as written (for display) and parsed (for scheduling).
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

/// Why a text is not a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text} is not a valid cron expression: {why}; use 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", 6 with seconds first, or a macro such as @daily"
)]
pub struct CronExprError {
    text: String,
    why: String,
}

const CRON_FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

impl CronExpr {
    /// The expression as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed expression, for computing run times (POSIX semantics: when both
    /// day-of-month and day-of-week are restricted, either one matching is enough).
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }

    fn parser() -> croner::parser::CronParser {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
    }

    /// Names the field at fault: each field is parsed alone, the others set to `*`.
    fn explain(fields: &[&str]) -> String {
        let names = &CRON_FIELDS[6 - fields.len()..];
        for (i, (field, (name, min, max))) in fields.iter().zip(names).enumerate() {
            let mut probe = vec!["*"; fields.len()];
            probe[i] = field;
            let Err(error) = Self::parser().parse(&probe.join(" ")) else {
                continue;
            };
            // A number out of range is the common mistake: say which, and the range.
            let numbers = field
                .split([',', '-', '/', '#'])
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            for number in numbers {
                match number.parse::<u32>() {
                    Ok(n) if n >= *min && n <= *max => {}
                    _ if field.contains(&format!("/{number}")) => {}
                    _ => return format!("{name} {number} out of range ({min}-{max})"),
                }
            }
            let detail = match error {
                croner::errors::CronError::IllegalCharacters(_) => {
                    "contains a character not allowed there".to_string()
                }
                other => other.to_string().to_lowercase(),
            };
            return format!("{name} field {field:?} {detail}");
        }
        "the fields do not combine into a valid expression".to_string()
    }
}

impl FromStr for CronExpr {
    type Err = CronExprError;

    fn from_str(text: &str) -> Result<CronExpr, CronExprError> {
        let fail = |why: String| CronExprError {
            text: quoted(text),
            why,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail("it is empty".into()));
        }
        let pattern = if let Some(name) = trimmed.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" | "monthly" | "weekly" | "daily" | "hourly" => {
                    trimmed.to_ascii_lowercase()
                }
                "midnight" => "@daily".to_string(),
                _ => {
                    return Err(fail(format!(
                        "unknown macro @{name} (known: @hourly, @daily, @midnight, @weekly, @monthly, @yearly)"
                    )));
                }
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if !(5..=6).contains(&fields.len()) {
                return Err(fail(format!("it has {} fields", fields.len())));
            }
            if let Err(_error) = Self::parser().parse(trimmed) {
                return Err(fail(Self::explain(&fields)));
            }
            trimmed.to_string()
        };
        let cron = Self::parser()
            .parse(&pattern)
            .map_err(|e| fail(e.to_string().to_lowercase()))?;
        // Something like "0 0 30 2 *" parses but never comes.
        let start = jiff::civil::date(2000, 1, 1).at(0, 0, 0, 0);
        if cron.find_next_occurrence(&start, false).is_err() {
            return Err(fail("it never matches a real date".into()));
        }
        Ok(CronExpr {
            text: trimmed.to_string(),
            cron,
        })
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &CronExpr) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for CronExpr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CronExpr, D::Error> {
        super::from_str_value(deserializer)
    }
}

/// An IANA time zone (`Europe/Berlin`, `UTC`), looked up in the system's time zone database.
#[derive(Debug, Clone)]
pub struct Timezone {
    name: String,
    zone: jiff::tz::TimeZone,
}

/// Why a text is not a known time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text} is not a known IANA time zone; {hint}")]
pub struct TimezoneError {
    text: String,
    hint: &'static str,
}

impl Timezone {
    /// Coordinated Universal Time, the default.
    pub fn utc() -> Timezone {
        Timezone {
            name: "UTC".to_string(),
            zone: jiff::tz::TimeZone::UTC,
        }
    }

    /// The zone's name, e.g. `Europe/Berlin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone, for computing local times.
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }
}

impl Default for Timezone {
    fn default() -> Timezone {
        Timezone::utc()
    }
}

impl FromStr for Timezone {
    type Err = TimezoneError;

    fn from_str(text: &str) -> Result<Timezone, TimezoneError> {
        let name = text.trim();
        // Fixed offsets and POSIX TZ strings would silently ignore DST: only IANA names.
        let looks_like_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        let zone = if looks_like_name {
            jiff::tz::TimeZone::get(name).ok()
        } else {
            None
        };
        match zone {
            Some(zone) => Ok(Timezone {
                name: zone.iana_name().unwrap_or(name).to_string(),
                zone,
            }),
            None => Err(TimezoneError {
                text: quoted(text),
                hint: if jiff::tz::db().is_definitively_empty() {
                    "no time zone database was found on this system (install the tzdata package or set TZDIR), so only UTC is known"
                } else {
                    "use a name such as UTC, Europe/Berlin or America/New_York"
                },
            }),
        }
    }
}

impl PartialEq for Timezone {
    fn eq(&self, other: &Timezone) -> bool {
        self.name == other.name
    }
}

impl Eq for Timezone {}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for Timezone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timezone, D::Error> {
        super::from_str_value(deserializer)
    }
}

/// A Kubernetes label selector in its string form (`app=web,tier in (a,b),!canary`), checked
/// for syntax; the API server evaluates it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSelector(String);

/// Why a text is not a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text} is not a valid label selector: {why}; write requirements such as app=web, tier!=cache, env in (prod,staging) or !canary, separated by commas"
)]
pub struct LabelSelectorError {
    text: String,
    why: String,
}

impl LabelSelector {
    /// The selector as the API server takes it (`labelSelector=`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LabelSelector {
    type Err = LabelSelectorError;

    fn from_str(text: &str) -> Result<LabelSelector, LabelSelectorError> {
        let fail = |why: String| LabelSelectorError {
            text: quoted(text),
            why,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail(
                "it is empty (remove the key to select everything)".into(),
            ));
        }
        let mut depth = 0usize;
        let mut start = 0;
        let mut requirements = Vec::new();
        for (i, c) in trimmed.char_indices() {
            match c {
                '(' if depth == 0 => depth = 1,
                '(' => return Err(fail("nested parentheses".into())),
                ')' if depth == 1 => depth = 0,
                ')' => return Err(fail("a ')' without its '('".into())),
                ',' if depth == 0 => {
                    requirements.push(&trimmed[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(fail("a '(' is not closed".into()));
        }
        requirements.push(&trimmed[start..]);
        for requirement in requirements {
            check_requirement(requirement.trim()).map_err(&fail)?;
        }
        Ok(LabelSelector(trimmed.to_string()))
    }
}

fn check_requirement(req: &str) -> Result<(), String> {
    if req.is_empty() {
        return Err("an empty requirement (a stray comma?)".into());
    }
    if let Some(key) = req.strip_prefix('!') {
        return check_label_key(key.trim());
    }
    for op in ["!=", "==", "="] {
        if let Some((key, value)) = req.split_once(op) {
            check_label_key(key.trim())?;
            return check_label_value(value.trim());
        }
    }
    if let Some((head, rest)) = req.split_once('(') {
        let mut words = head.split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "{} should read KEY in (V1,V2) or KEY notin (V1,V2)",
                quoted(req)
            ));
        };
        check_label_key(key)?;
        if op != "in" && op != "notin" {
            return Err(format!("unknown operator {op:?} (use in or notin)"));
        }
        let Some(values) = rest.trim_end().strip_suffix(')') else {
            return Err(format!("{} has text after ')'", quoted(req)));
        };
        if values.trim().is_empty() {
            return Err(format!("{} lists no values", quoted(req)));
        }
        return values
            .split(',')
            .try_for_each(|v| check_label_value(v.trim()));
    }
    if req.contains(char::is_whitespace) {
        return Err(format!("{} is not a requirement", quoted(req)));
    }
    check_label_key(req)
}

fn check_name_part(part: &str, what: &str) -> Result<(), String> {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if part.len() > 63
        || !ok_end(part.chars().next())
        || !ok_end(part.chars().last())
        || !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{what} {} must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            quoted(part)
        ));
    }
    Ok(())
}

fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a requirement has no label key".into());
    }
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let valid_prefix = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !valid_prefix {
                return Err(format!(
                    "label key prefix {} is not a DNS subdomain",
                    quoted(prefix)
                ));
            }
            name
        }
        None => key,
    };
    check_name_part(name, "label key")
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value, "label value")
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for LabelSelector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LabelSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LabelSelector, D::Error> {
        super::from_str_value(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(text: &str) -> Result<CronExpr, String> {
        text.parse::<CronExpr>().map_err(|e| e.to_string())
    }

    #[test]
    fn cron_accepts_five_and_six_fields_and_macros() {
        for text in [
            "0 2 * * *",
            "*/15 * * * *",
            "0 3 * * 1-5",
            "0 0 1 jan,jul *",
            "0 4 * * SUN",
            "30 0 2 * * *",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "0 0 29 2 *",
        ] {
            let parsed = cron(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.as_str(), text);
        }
    }

    #[test]
    fn cron_names_the_field_at_fault() {
        for (text, why) in [
            ("61 * * * *", "minute 61 out of range (0-59)"),
            ("0 24 * * *", "hour 24 out of range (0-23)"),
            ("0 0 0 * *", "day-of-month 0 out of range (1-31)"),
            ("0 0 * 13 *", "month 13 out of range (1-12)"),
            ("0 0 * * 8", "day-of-week 8 out of range (0-7)"),
            ("60 0 0 * * *", "second 60 out of range (0-59)"),
            ("0 0-99 * * *", "hour 99 out of range"),
            ("x * * * *", "minute field \"x\""),
            ("* * *", "it has 3 fields"),
            ("0 0 0 1 1 * 2030", "it has 7 fields"),
            ("@reboot", "unknown macro @reboot"),
            ("", "it is empty"),
            ("0 0 30 2 *", "never matches"),
        ] {
            let message = cron(text).expect_err(text);
            assert!(message.contains(why), "{text}: {message}");
        }
    }

    #[test]
    fn timezones_are_iana_names() {
        assert_eq!(
            "Europe/Berlin".parse::<Timezone>().unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!("UTC".parse::<Timezone>().unwrap(), Timezone::utc());
        for text in ["Europe/Berln", "+02:00", "CEST-2", ""] {
            let message = text.parse::<Timezone>().unwrap_err().to_string();
            assert!(
                message.contains("is not a known IANA time zone"),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn label_selectors_are_checked_for_syntax() {
        for text in [
            "app=web",
            "app==web,tier!=cache",
            "app.kubernetes.io/part-of=shop",
            "env in (prod, staging),!canary",
            "env notin (dev)",
            "tier",
            "empty=",
        ] {
            assert!(text.parse::<LabelSelector>().is_ok(), "{text}");
        }
        for (text, why) in [
            ("", "empty"),
            ("app=web,", "stray comma"),
            ("app=we b", "label value"),
            ("env in (prod", "not closed"),
            ("env within (a)", "unknown operator"),
            ("-app=web", "label key"),
            ("Bad_Prefix/x=y", "DNS subdomain"),
        ] {
            let message = text.parse::<LabelSelector>().unwrap_err().to_string();
            assert!(message.contains(why), "{text}: {message}");
        }
    }

    #[test]
    fn backup_names_carry_the_utc_time() {
        let schedule = Schedule::new("nightly", cron("0 2 * * *").unwrap());
        let at: jiff::Timestamp = "2026-11-28T02:00:05Z".parse().unwrap();
        assert_eq!(schedule.backup_name(at), "nightly-20261128020005");
    }
}
