//! `encryption`: client-side encryption of archives and logs with age X25519 recipients.
//!
//! Recipients are checked here without the age crate: an X25519 recipient is the Bech32
//! (BIP-173) encoding of a 32-byte key with the human-readable part `age`, so checking the
//! checksum and the length catches typos and truncated copies at load time.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Checker, ConfigError};

/// Client-side encryption: archives and logs are encrypted to these public keys before they
/// leave the process, so whoever can write backups (the cluster) need not be able to read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// age X25519 public keys (`age1...`, as printed by `age-keygen`). Backups are encrypted
    /// to every one of them; any one matching identity decrypts. Default: empty, no
    /// encryption.
    #[serde(
        deserialize_with = "super::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub recipients: Vec<AgeRecipient>,
    /// Path to an age identity file (the secret key), used by restore, drill, verify and
    /// download to decrypt; `--identity-file` overrides it. The file is read only when
    /// needed, never by the daemon that writes backups. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
}

impl EncryptionConfig {
    /// Whether new backups are encrypted.
    pub fn enabled(&self) -> bool {
        !self.recipients.is_empty()
    }

    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        for (i, recipient) in self.recipients.iter().enumerate() {
            if let Some(j) = self.recipients[..i].iter().position(|r| r == recipient) {
                return Err(c.invalid(
                    &format!("encryption.recipients[{i}]"),
                    format!("is the same key as recipients[{j}]"),
                    "list each recipient once",
                ));
            }
        }
        if let Some(path) = &self.identity_file {
            c.path("encryption.identityFile", path, "an age identity file")?;
        }
        Ok(())
    }
}

/// An age X25519 recipient (public key): `age1` followed by 58 Bech32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgeRecipient(String);

/// Why a text is not an age X25519 recipient. Never shows a secret key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown} is not an age X25519 recipient: {why}")]
pub struct AgeRecipientError {
    shown: String,
    why: String,
}

impl AgeRecipient {
    /// The recipient as age writes it (`age1...`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// 32 bytes in 5-bit groups (52) plus the 6-character checksum.
const DATA_CHARS: usize = 58;

impl FromStr for AgeRecipient {
    type Err = AgeRecipientError;

    fn from_str(text: &str) -> Result<AgeRecipient, AgeRecipientError> {
        let text = text.trim();
        let hint = "copy the public key (age1...) printed by age-keygen or `age-keygen -y FILE`";
        if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
            // A secret key pasted by mistake: say so without repeating it anywhere.
            return Err(AgeRecipientError {
                shown: "this value".into(),
                why: format!(
                    "it is an age secret key (an identity), which must never be in the config; delete it, treat it as leaked, and {hint}"
                ),
            });
        }
        let shown = super::quoted(text);
        let fail = |why: &str| AgeRecipientError {
            shown: shown.clone(),
            why: why.to_string(),
        };
        if text.starts_with("ssh-") {
            return Err(fail(&format!("SSH recipients are not supported; {hint}")));
        }
        if text.starts_with("AGE1") && text == text.to_ascii_uppercase() {
            return Err(fail("write it in lowercase, as age-keygen prints it"));
        }
        let Some(data) = text.strip_prefix("age1") else {
            return Err(fail(&format!("it does not start with age1; {hint}")));
        };
        if data.contains('1') && text.rfind('1') != Some(3) {
            return Err(fail(
                "plugin recipients (age1NAME1...) are not supported; use an X25519 recipient",
            ));
        }
        let mut values = Vec::with_capacity(data.len());
        for c in data.bytes() {
            match CHARSET.iter().position(|&d| d == c) {
                Some(v) => values.push(v as u8),
                None => {
                    return Err(fail(&format!(
                        "{:?} is not a Bech32 character; {hint}",
                        char::from(c)
                    )));
                }
            }
        }
        if values.len() != DATA_CHARS {
            return Err(fail(&format!(
                "it has {} characters after age1, not {DATA_CHARS} (truncated or padded?); {hint}",
                values.len()
            )));
        }
        if bech32_polymod(b"age", &values) != 1 {
            return Err(fail(&format!(
                "its checksum does not match (a character was mistyped or lost); {hint}"
            )));
        }
        // 52 groups of 5 bits carry 260 bits: the last 4 must be zero padding.
        if values[51] & 0x0f != 0 {
            return Err(fail(&format!("its padding bits are not zero; {hint}")));
        }
        Ok(AgeRecipient(text.to_string()))
    }
}

/// BIP-173 checksum over the expanded human-readable part and the data (checksum included);
/// a valid Bech32 string gives 1.
fn bech32_polymod(hrp: &[u8], data: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let expanded = hrp
        .iter()
        .map(|c| c >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.iter().map(|c| c & 31))
        .chain(data.iter().copied());
    let mut chk: u32 = 1;
    for v in expanded {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

impl fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AgeRecipient {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgeRecipient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AgeRecipient, D::Error> {
        super::from_str_value(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::AgeRecipient;

    // Generated with age-keygen; the example key from age's own documentation.
    const VALID: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn parse(text: &str) -> Result<AgeRecipient, String> {
        text.parse::<AgeRecipient>().map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_a_real_recipient() {
        assert_eq!(parse(VALID).unwrap().as_str(), VALID);
    }

    #[test]
    fn rejects_typos_truncation_and_other_kinds_of_keys() {
        let typo = VALID.replace("ql3z", "ql4z");
        let truncated = &VALID[..VALID.len() - 1];
        for (text, why) in [
            (typo.as_str(), "checksum does not match"),
            (truncated, "57 characters after age1"),
            (
                "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8q",
                "checksum",
            ),
            ("age1yubikey1qwerty", "plugin recipients"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "SSH recipients"),
            (
                "AGE1QL3Z7HJY54PW3HYWW5AYYFG7ZQGVC7W3J2ELW8ZMRJ2KG5SFN9AQMCAC8P",
                "lowercase",
            ),
            ("age1qb3z", "not a Bech32 character"),
            ("npub1xyz", "does not start with age1"),
        ] {
            let message = parse(text).expect_err(text);
            assert!(message.contains(why), "{text}: {message}");
        }
    }

    #[test]
    fn never_echoes_a_secret_key() {
        let secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
        let message = parse(secret).unwrap_err();
        assert!(message.contains("secret key"), "{message}");
        assert!(!message.contains("GFPYYSJZ"), "{message}");
    }
}
