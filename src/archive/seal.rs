//! Client-side encryption of what a backup stores (the archive and the run log) with age.
//!
//! The cluster holds only the recipients' public keys, so the daemon that writes backups
//! cannot read them back, and neither can whoever steals the bucket. The stored bytes are a
//! standard age file (X25519 recipients, binary format), so `age -d -i key.txt archive.tar.zst`
//! gives the plain tar.zst without lifeboat. The manifest's SHA-256 covers the stored
//! (encrypted) bytes: an archive can be checked for integrity without the secret key.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::config::AgeRecipient;

/// Where age files start (`age-encryption.org/v1` and a newline).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Why encryption or decryption could not be set up. Never shows key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("encryption.recipients: {key} is not a usable age X25519 recipient: {why}")]
    Recipient { key: String, why: String },
    #[error(
        "cannot read the age identity file {}: {source}; pass --identity-file (or set encryption.identityFile) to the file age-keygen wrote",
        path.display()
    )]
    IdentityFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the age identity file {} holds no X25519 identity (a line AGE-SECRET-KEY-1...); generate one with age-keygen",
        path.display()
    )]
    NoIdentity { path: PathBuf },
    #[error(
        "the age identity file {} cannot be used: {why}; only native X25519 identities (age-keygen) are supported",
        path.display()
    )]
    UnsupportedIdentity { path: PathBuf, why: String },
    #[error("age encryption failed: {0}")]
    Encrypt(String),
}

/// The public keys new backups are encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
    shown: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients").field(&self.shown).finish()
    }
}

impl Recipients {
    /// The configured recipients, or `None` when encryption is off.
    pub fn from_config(recipients: &[AgeRecipient]) -> Result<Option<Recipients>, SealError> {
        if recipients.is_empty() {
            return Ok(None);
        }
        let keys = recipients
            .iter()
            .map(|r| {
                r.as_str()
                    .parse::<age::x25519::Recipient>()
                    .map_err(|why| SealError::Recipient {
                        key: r.as_str().to_string(),
                        why: why.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Recipients {
            keys,
            shown: recipients.iter().map(|r| r.as_str().to_string()).collect(),
        }))
    }

    /// The public keys (`age1...`), for the manifest.
    pub fn public_keys(&self) -> &[String] {
        &self.shown
    }

    fn encryptor(&self) -> io::Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
            .map_err(|e| io::Error::other(SealError::Encrypt(e.to_string())))
    }

    /// Encrypts a small object (the run log) whole.
    pub fn seal_bytes(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Sealer::new(Vec::with_capacity(plain.len() + 256), Some(self))?;
        out.write_all(plain)?;
        out.finish()
    }
}

/// The secret keys that open encrypted backups, read from an age identity file.
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
    path: PathBuf,
}

/// Shows where the keys came from and how many there are, never a key.
impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Identities {
    /// Reads an identity file as `age-keygen` writes it (comments and `AGE-SECRET-KEY-1...`
    /// lines).
    pub fn load(path: &Path) -> Result<Identities, SealError> {
        let file = std::fs::File::open(path).map_err(|source| SealError::IdentityFile {
            path: path.to_path_buf(),
            source,
        })?;
        Identities::parse(BufReader::new(file), path)
    }

    /// Reads identities from `text`, naming `path` in errors.
    pub fn parse(text: impl BufRead, path: &Path) -> Result<Identities, SealError> {
        let mut keys = Vec::new();
        for line in text.lines() {
            let line = line.map_err(|source| SealError::IdentityFile {
                path: path.to_path_buf(),
                source,
            })?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The parse error would echo nothing secret, but its text is not needed either.
            let key = line.parse::<age::x25519::Identity>().map_err(|_| {
                SealError::UnsupportedIdentity {
                    path: path.to_path_buf(),
                    why: "a line is not an AGE-SECRET-KEY-1 X25519 identity".into(),
                }
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(SealError::NoIdentity {
                path: path.to_path_buf(),
            });
        }
        Ok(Identities {
            keys,
            path: path.to_path_buf(),
        })
    }

    /// The file the keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public keys of these identities (`age1...`).
    pub fn public_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }

    /// Opens an age file: the header is read and a file key unwrapped now, the payload as it
    /// is read.
    pub fn open<R: Read>(&self, stored: R) -> Result<age::stream::StreamReader<R>, OpenError> {
        let decryptor = age::Decryptor::new(stored).map_err(OpenError::from_age)?;
        decryptor
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(OpenError::from_age)
    }

    /// Decrypts a small object (the run log) whole.
    pub fn open_bytes(&self, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        self.open(stored)?
            .read_to_end(&mut out)
            .map_err(|e| OpenError::Corrupt(e.to_string()))?;
        Ok(out)
    }
}

/// Why stored bytes could not be opened with the identities given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "none of the given age identities is a recipient of it; use the identity file that matches one of the recipients in its manifest"
    )]
    NotARecipient,
    #[error("its age encryption is damaged: {0}")]
    Corrupt(String),
    #[error("reading it failed: {0}")]
    Io(String),
}

impl OpenError {
    fn from_age(e: age::DecryptError) -> OpenError {
        match e {
            age::DecryptError::NoMatchingKeys => OpenError::NotARecipient,
            age::DecryptError::Io(e) => OpenError::Io(e.to_string()),
            other => OpenError::Corrupt(other.to_string()),
        }
    }
}

/// Whether stored bytes begin like an age file.
pub fn is_age(prefix: &[u8]) -> bool {
    prefix.starts_with(AGE_MAGIC)
}

/// The writing side: plain bytes through, or encrypted to the recipients. It must be
/// [`Sealer::finish`]ed: an age file without its last chunk does not decrypt, so a backup cut
/// short can never be mistaken for a whole one.
pub enum Sealer<W: Write> {
    Clear(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> fmt::Debug for Sealer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sealer::Clear(_) => "Sealer::Clear",
            Sealer::Age(_) => "Sealer::Age",
        })
    }
}

impl<W: Write> Sealer<W> {
    /// Starts writing to `out`, encrypted when `recipients` is given (the age header is
    /// written now).
    pub fn new(out: W, recipients: Option<&Recipients>) -> io::Result<Sealer<W>> {
        Ok(match recipients {
            None => Sealer::Clear(out),
            Some(r) => Sealer::Age(r.encryptor()?.wrap_output(out)?),
        })
    }

    /// Writes age's last chunk, if any, and returns the output.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealer::Clear(w) => Ok(w),
            Sealer::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealer::Clear(w) => w.write(buf),
            Sealer::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealer::Clear(w) => w.flush(),
            Sealer::Age(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Recipients, Identities) {
        let secret = age::x25519::Identity::generate();
        let public: AgeRecipient = secret.to_public().to_string().parse().unwrap();
        let recipients = Recipients::from_config(&[public]).unwrap().unwrap();
        let text = format!(
            "# created: now\n# public key: x\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(&secret.to_string())
        );
        let identities = Identities::parse(text.as_bytes(), Path::new("key.txt")).unwrap();
        (recipients, identities)
    }

    #[test]
    fn sealed_bytes_open_with_the_identity_only() {
        let (recipients, identities) = pair();
        let sealed = recipients.seal_bytes(b"secret canary").unwrap();
        assert!(is_age(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert_eq!(identities.open_bytes(&sealed).unwrap(), b"secret canary");
        assert_eq!(identities.public_keys(), recipients.public_keys());

        let (_, stranger) = pair();
        assert_eq!(
            stranger.open_bytes(&sealed).unwrap_err(),
            OpenError::NotARecipient
        );
        let mut cut = sealed.clone();
        cut.truncate(sealed.len() - 1);
        assert!(matches!(
            identities.open_bytes(&cut),
            Err(OpenError::Corrupt(_))
        ));
    }

    #[test]
    fn identity_files_are_checked_and_never_echoed() {
        let e = Identities::parse("# only a comment\n".as_bytes(), Path::new("k.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.txt") && e.contains("age-keygen"), "{e}");
        let e = Identities::parse(
            "AGE-SECRET-KEY-1NOTAKEYBUTLOOKSLIKEONE\n".as_bytes(),
            Path::new("k.txt"),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("NOTAKEY"), "{e}");
        let (_, identities) = pair();
        assert!(!format!("{identities:?}").contains("AGE-SECRET-KEY"));
    }
}
