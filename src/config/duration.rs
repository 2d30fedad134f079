//! Durations as people write them in the config: `30s`, `15m`, `2h`, `7d`, `1h30m`.
//!
//! Units go from the largest to the smallest, each at most once, so every value has exactly
//! one spelling and `Display` gives it back. No fractions (`1.5h` is `1h30m`), no bare numbers
//! (is `30` seconds or minutes?), nothing negative.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A length of time written as `30s`, `15m`, `2h`, `7d` or a combination such as `1h30m`.
///
/// Units: `d` (24 hours), `h`, `m`, `s` and `ms`. `Display` prints the compact form, so a
/// value read from the config prints back as it was written (normalised: `90m` prints `1h30m`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a text is not a duration. `Display` says what is wrong and how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text} is not a valid duration: {why}; write it like 30s, 15m, 2h, 7d or 1h30m")]
pub struct DurationError {
    text: String,
    why: String,
}

const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

impl Duration {
    /// Zero seconds.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A whole number of seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A whole number of minutes.
    pub const fn from_mins(mins: u64) -> Duration {
        Duration(std::time::Duration::from_secs(mins * 60))
    }

    /// A whole number of hours.
    pub const fn from_hours(hours: u64) -> Duration {
        Duration(std::time::Duration::from_secs(hours * 3600))
    }

    /// A whole number of days (of 24 hours).
    pub const fn from_days(days: u64) -> Duration {
        Duration(std::time::Duration::from_secs(days * 86_400))
    }

    /// The standard library value, for timers and arithmetic.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Duration {
        Duration(value)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(value: Duration) -> std::time::Duration {
        value.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let fail = |why: &str| DurationError {
            text: super::quoted(text),
            why: why.to_string(),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(fail("it is empty"));
        }
        if s.starts_with('-') {
            return Err(fail("a duration cannot be negative"));
        }
        let bytes = s.as_bytes();
        let mut total: u128 = 0;
        let mut i = 0;
        // Index into UNITS of the last unit seen, to enforce largest-to-smallest order.
        let mut last_unit: Option<usize> = None;
        while i < bytes.len() {
            let digits_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == digits_start {
                return Err(fail(if bytes[i].is_ascii_whitespace() {
                    "spaces are not allowed (write 1h30m)"
                } else {
                    "expected a number before each unit"
                }));
            }
            let number = &s[digits_start..i];
            if i < bytes.len() && (bytes[i] == b'.' || bytes[i] == b',') {
                return Err(fail(
                    "fractions are not supported (write 1h30m rather than 1.5h)",
                ));
            }
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[unit_start..i];
            if unit.is_empty() {
                if i < bytes.len() {
                    return Err(fail(&format!(
                        "unexpected character {:?}",
                        s[i..].chars().next().unwrap_or(' ')
                    )));
                }
                return Err(fail(&format!(
                    "{number} has no unit (add one of d, h, m, s or ms, e.g. {number}s)"
                )));
            }
            let Some(position) = UNITS.iter().position(|(name, _)| *name == unit) else {
                return Err(fail(&format!(
                    "unknown unit {unit:?} (use d, h, m, s or ms)"
                )));
            };
            if last_unit.is_some_and(|last| position <= last) {
                return Err(fail(
                    "units must go from the largest to the smallest, each once (as in 1d12h or 1h30m)",
                ));
            }
            last_unit = Some(position);
            let value: u128 = number
                .parse()
                .map_err(|_| fail("the number is too large"))?;
            total = value
                .checked_mul(UNITS[position].1)
                .and_then(|nanos| total.checked_add(nanos))
                .ok_or_else(|| fail("the number is too large"))?;
        }
        let secs =
            u64::try_from(total / 1_000_000_000).map_err(|_| fail("the number is too large"))?;
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

/// The compact form: `1h30m`, `7d`, `0s`. Parts below a millisecond are not shown.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_nanos();
        if rest < 1_000_000 {
            return f.write_str("0s");
        }
        for (name, size) in UNITS {
            let count = rest / size;
            if count > 0 {
                write!(f, "{count}{name}")?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        super::from_str_value(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::Duration;

    fn parse(text: &str) -> Result<Duration, String> {
        text.parse::<Duration>().map_err(|e| e.to_string())
    }

    #[test]
    fn parses_single_and_combined_units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("15m"), Ok(Duration::from_mins(15)));
        assert_eq!(parse("2h"), Ok(Duration::from_hours(2)));
        assert_eq!(parse("7d"), Ok(Duration::from_days(7)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(
            parse("1d2h3m4s5ms").unwrap().as_std().as_millis(),
            93_784_005
        );
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn displays_the_compact_form() {
        for (text, shown) in [
            ("30s", "30s"),
            ("90m", "1h30m"),
            ("7d", "7d"),
            ("0s", "0s"),
            ("1500ms", "1s500ms"),
            ("48h", "2d"),
        ] {
            assert_eq!(parse(text).unwrap().to_string(), shown, "{text}");
            assert_eq!(parse(shown).unwrap(), parse(text).unwrap());
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for (text, why) in [
            ("", "it is empty"),
            ("-5s", "cannot be negative"),
            ("30", "30 has no unit"),
            ("1.5h", "fractions are not supported"),
            ("5y", "unknown unit \"y\""),
            ("5S", "unknown unit \"S\""),
            ("30m1h", "from the largest to the smallest"),
            ("1h1h", "from the largest to the smallest"),
            ("h", "expected a number"),
            ("5s ", ""),
            ("1h 30m", "spaces are not allowed"),
            ("5!", "unexpected character"),
            ("99999999999999999999999999999999999999999d", "too large"),
        ] {
            let result = parse(text);
            if why.is_empty() {
                assert!(result.is_ok(), "{text}: {result:?}");
            } else {
                let message = result.expect_err(text);
                assert!(message.contains(why), "{text}: {message}");
                assert!(message.contains("write it like 30s"), "{message}");
            }
        }
    }
}
