//! Reading archives back, assuming they may be corrupt or hostile.
//!
//! A stored archive has left lifeboat's hands: a bucket can be written by others, and bytes rot.
//! So the reader trusts nothing in it. It never extracts to disk; it hands out entries in memory,
//! one at a time, after checking each path against the layout, refusing anything but regular
//! files, and bounding every size it allocates for (entry data and long names alike). It hashes
//! the compressed bytes as they are read, so that the result can be compared with the manifest
//! without a second pass.
//!
//! The tar stream is parsed here, block by block, with [`tar::Header`] for the fields, rather
//! than with `tar::Archive`: `tar::Archive` reads GNU long names and PAX headers into memory
//! whole, whatever their declared size, which a few hundred compressed bytes can make gigabytes.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layout::{self, EntryPath};
use super::seal::{self, Identities};
use super::writer::MAX_WINDOW_LOG;

/// Longest entry path accepted, Linux's `PATH_MAX`: GNU tar could not extract a longer one, and
/// the writer never makes one.
pub const MAX_PATH_BYTES: u64 = 4096;

const BLOCK: usize = 512;

/// Anything that makes an archive unusable, on the way in or out.
///
/// Every refusal of an archive's content says it is corrupt or hostile, and that nothing was
/// written from it: the reader never extracts, so a refused archive has changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The storage or stream underneath failed, not the archive's content.
    #[error(
        "the archive is encrypted with age: pass --identity-file (or set encryption.identityFile) to the identity of one of its recipients"
    )]
    Encrypted,
    #[error("the archive cannot be decrypted with {}: {source}", identity.display())]
    Decrypt {
        identity: std::path::PathBuf,
        #[source]
        source: seal::OpenError,
    },
    #[error("archive I/O failed: {0}")]
    Io(#[source] io::Error),
    /// zstd or tar cannot make sense of the bytes: truncated, bit rot, or not a lifeboat archive.
    #[error(
        "the archive is corrupt or hostile: {detail}; lifeboat wrote nothing from it (use another backup)"
    )]
    Corrupt { detail: String },
    /// An entry path that could escape an extraction directory, or is outside the layout.
    #[error(
        "archive entry {path:?} is refused ({reason}): the archive is corrupt or hostile; lifeboat wrote nothing from it (use another backup)"
    )]
    UnsafePath { path: String, reason: &'static str },
    /// A symlink, hard link, device, directory or extension header: lifeboat writes only files.
    #[error(
        "archive entry {path:?} is a {kind}, which lifeboat archives never contain: the archive is corrupt or hostile; lifeboat wrote nothing from it (use another backup)"
    )]
    NotRegular { path: String, kind: String },
    /// An entry larger than [`Limits::max_entry_bytes`] (or a long name over [`MAX_PATH_BYTES`]).
    #[error(
        "archive entry {path:?} is {size} bytes, over the limit of {limit}: the archive is corrupt or hostile; lifeboat wrote nothing from it (use another backup)"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    /// More objects than [`Limits::max_entries`].
    #[error(
        "the archive has more than {limit} entries: it is corrupt or hostile; lifeboat wrote nothing from it (use another backup)"
    )]
    TooManyEntries { limit: u64 },
    /// The compressed bytes are not those the manifest recorded.
    #[error(
        "the archive's SHA-256 is {actual}, but its manifest records {expected}: the archive is corrupt or was replaced; lifeboat wrote nothing from it (use another backup)"
    )]
    ChecksumMismatch { expected: String, actual: String },
    /// The archive is not as long as the manifest recorded.
    #[error(
        "the archive is {actual} bytes, but its manifest records {expected}: it is truncated, corrupt or was replaced; lifeboat wrote nothing from it (use another backup)"
    )]
    SizeMismatch { expected: u64, actual: u64 },
    /// Written by a newer lifeboat, in a format whose meaning this build cannot know.
    #[error(
        "the archive is in format {found}, newer than this lifeboat reads ({}); upgrade lifeboat to read it",
        layout::FORMAT_VERSION
    )]
    NewerFormat { found: String },
    /// An object whose name or namespace does not lead to the path it is stored at.
    #[error(
        "the object at {path:?} does not belong there ({detail}): the archive is corrupt or hostile; lifeboat wrote nothing from it (use another backup)"
    )]
    Mismatch { path: String, detail: String },
    /// Returned to senders once the writer thread stopped; [`super::writer::WriterHandle::finish`]
    /// has the reason.
    #[error("the archive writer has stopped; finishing the archive reports why")]
    WriterGone,
    /// The receiver of the compressed chunks was dropped, so the archive could not be finished.
    #[error(
        "the consumer of the archive (its upload) stopped reading, so the archive was not finished; the upload's own error says why"
    )]
    ConsumerGone,
    /// Every entry sink was dropped without [`super::writer::WriterHandle::finish`].
    #[error("the archive was abandoned: every entry sink was dropped before it was finished")]
    Abandoned,
}

impl ArchiveError {
    /// Whether trying again may help: only a failure of the storage or stream underneath is
    /// temporary; an archive that is corrupt stays corrupt.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ArchiveError::Io(_))
    }
}

fn corrupt(detail: impl Into<String>) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: detail.into(),
    }
}

/// Bounds on what a reader allocates or walks through for one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest entry accepted. The API server refuses objects over about 1.5 MiB (etcd's
    /// request limit), so 64 MiB leaves room for any real object and stops a declared 10 GiB.
    pub max_entry_bytes: u64,
    /// Most object entries accepted. Far above what etcd's 8 GiB ceiling can hold in real
    /// objects, but it stops an archive of endless empty entries.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 64 << 20,
            max_entries: 50_000_000,
        }
    }
}

/// One entry, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path as stored (checked by [`layout::parse_path`]).
    pub path: String,
    /// What the path says the entry is. For an object, its real name is in `data`.
    pub kind: EntryPath,
    /// The version, or one object's compact JSON.
    pub data: Vec<u8>,
}

/// What [`Source`] saw of the stored bytes. Shared, because age's decrypting reader owns the
/// source and does not give it back.
#[derive(Debug)]
struct Tally {
    hasher: Sha256,
    bytes: u64,
    failed: bool,
}

/// Hashes and counts the stored bytes as they are pulled, and remembers whether the source
/// itself failed (a retryable I/O error) rather than the data (corruption).
#[derive(Debug)]
struct Source<R> {
    inner: R,
    tally: Arc<Mutex<Tally>>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        let mut tally = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(n) => {
                tally.hasher.update(&buf[..n]);
                tally.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    tally.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// Counts and hashes bytes as they are read, and remembers whether the source failed (an I/O
/// error, which is no proof of corruption): to compare what was stored with a manifest.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    failed: bool,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            failed: false,
        }
    }

    /// Whether a read of the source failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The bytes read and their hex SHA-256.
    pub fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// The compressed stream: the stored bytes themselves, or what age decrypts from them.
enum Plain<R: Read> {
    Clear(BufReader<Source<R>>),
    Age(age::stream::StreamReader<BufReader<Source<R>>>),
}

impl<R: Read> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Plain::Clear(r) => r.read(buf),
            // age authenticates every 64 KiB chunk: a failure here is tampering or damage.
            Plain::Age(r) => r.read(buf).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "age decryption failed, the encrypted archive was altered or cut ({e})"
                        ),
                    )
                } else {
                    e
                }
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `metadata/version` not read yet.
    Start,
    Objects,
    /// The tar end-of-archive block was read.
    End,
}

/// A streaming archive reader: entries come out one at a time, checked, in memory bounded by
/// [`Limits::max_entry_bytes`] and zstd's window whatever the size of the archive.
pub struct ArchiveReader<R: Read> {
    zstd: zstd::stream::read::Decoder<'static, BufReader<Plain<R>>>,
    tally: Arc<Mutex<Tally>>,
    limits: Limits,
    objects: u64,
    state: State,
}

impl<R: Read> std::fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("limits", &self.limits)
            .field("objects", &self.objects)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<R: Read> ArchiveReader<R> {
    /// Prepares to read the compressed archive `inner`, reading only its first bytes (an
    /// encrypted archive is refused here with [`ArchiveError::Encrypted`]; see
    /// [`ArchiveReader::open`]).
    pub fn new(inner: R, limits: Limits) -> Result<Self, ArchiveError> {
        ArchiveReader::open(inner, limits, None)
    }

    /// [`ArchiveReader::new`] for stored bytes that may be encrypted: an age file is opened
    /// with `identities` (its header is read now), and refused with
    /// [`ArchiveError::Encrypted`] when there are none.
    pub fn open(
        inner: R,
        limits: Limits,
        identities: Option<&Identities>,
    ) -> Result<Self, ArchiveError> {
        let tally = Arc::new(Mutex::new(Tally {
            hasher: Sha256::new(),
            bytes: 0,
            failed: false,
        }));
        let mut source = BufReader::new(Source {
            inner,
            tally: Arc::clone(&tally),
        });
        let encrypted = seal::is_age(source.fill_buf().map_err(ArchiveError::Io)?);
        let plain = match (encrypted, identities) {
            (false, _) => Plain::Clear(source),
            (true, None) => return Err(ArchiveError::Encrypted),
            (true, Some(ids)) => {
                Plain::Age(ids.open(source).map_err(|source| ArchiveError::Decrypt {
                    identity: ids.path().to_path_buf(),
                    source,
                })?)
            }
        };
        let mut zstd = zstd::stream::read::Decoder::new(plain).map_err(ArchiveError::Io)?;
        // zstd's own default, stated: a frame asking for a larger window (more memory) is refused.
        zstd.window_log_max(MAX_WINDOW_LOG)
            .map_err(ArchiveError::Io)?;
        Ok(ArchiveReader {
            zstd,
            tally,
            limits,
            objects: 0,
            state: State::Start,
        })
    }

    /// The next entry, `metadata/version` first, or `None` at the end of the archive.
    ///
    /// The version entry is checked (and a newer format refused) before anything else is read.
    /// An error is final: the stream is then somewhere inside an entry, and the reader is of no
    /// further use.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ArchiveError> {
        if self.state == State::End {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut block = [0u8; BLOCK];
        let header = loop {
            if !self.read_block(&mut block)? {
                return Err(corrupt(
                    "it ends without tar's end-of-archive marker (truncated)",
                ));
            }
            if block.iter().all(|b| *b == 0) {
                if long_name.is_some() {
                    return Err(corrupt("a GNU long name is followed by no entry"));
                }
                if self.state == State::Start {
                    return Err(corrupt("it has no metadata/version entry"));
                }
                self.state = State::End;
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block).clone();
            check_header_checksum(&header)?;
            if header.entry_type().is_gnu_longname() {
                if long_name.is_some() {
                    return Err(corrupt("two GNU long names for one entry"));
                }
                let size = entry_size(&header)?;
                // + 1: the name's terminating NUL.
                if size > MAX_PATH_BYTES + 1 {
                    return Err(ArchiveError::TooLarge {
                        path: "(GNU long name)".into(),
                        size,
                        limit: MAX_PATH_BYTES + 1,
                    });
                }
                let mut name = self.read_data(size)?;
                while name.last() == Some(&0) {
                    name.pop();
                }
                long_name = Some(name);
                continue;
            }
            break header;
        };

        let raw_path = match long_name {
            Some(name) => name,
            None => header.path_bytes().into_owned(),
        };
        let path = String::from_utf8(raw_path).map_err(|e| ArchiveError::UnsafePath {
            path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            reason: "not UTF-8",
        })?;
        let kind = layout::parse_path(&path).map_err(|e| ArchiveError::UnsafePath {
            path: e.path,
            reason: e.reason,
        })?;
        let entry_type = header.entry_type();
        if entry_type != tar::EntryType::Regular {
            return Err(ArchiveError::NotRegular {
                path,
                kind: describe(entry_type),
            });
        }
        let size = entry_size(&header)?;
        match (&kind, self.state) {
            (EntryPath::Version, State::Start) => {
                // A version is a few digits; anything longer is not one.
                if size > 64 {
                    return Err(ArchiveError::TooLarge {
                        path,
                        size,
                        limit: 64,
                    });
                }
                let data = self.read_data(size)?;
                if let Err(e) = check_version(&data) {
                    // A flipped bit can turn "1" into "3": only a stream whose zstd checksum
                    // holds is really of a newer format. Reading it to its end tells which.
                    if matches!(e, ArchiveError::NewerFormat { .. }) {
                        self.drain_frame()?;
                    }
                    return Err(e);
                }
                self.state = State::Objects;
                Ok(Some(Entry { path, kind, data }))
            }
            (_, State::Start) => Err(corrupt(format!(
                "its first entry is {path:?}, not metadata/version (this is not a lifeboat archive)"
            ))),
            (EntryPath::Version, _) => Err(corrupt("it has a second metadata/version entry")),
            (EntryPath::Object { .. }, _) => {
                if size > self.limits.max_entry_bytes {
                    return Err(ArchiveError::TooLarge {
                        path,
                        size,
                        limit: self.limits.max_entry_bytes,
                    });
                }
                self.objects += 1;
                if self.objects > self.limits.max_entries {
                    return Err(ArchiveError::TooManyEntries {
                        limit: self.limits.max_entries,
                    });
                }
                let data = self.read_data(size)?;
                Ok(Some(Entry { path, kind, data }))
            }
        }
    }

    /// Reads (and checks) whatever is left, then returns the compressed size and the hex SHA-256
    /// of the whole input, to compare with the manifest.
    ///
    /// Only after this returns is the archive known to be complete: zstd's frame checksum is
    /// checked at the end of the frame, and nothing may follow tar's end-of-archive marker
    /// (GNU tar's `--ignore-zeros` would extract entries hidden there).
    pub fn finish(mut self) -> Result<(u64, String), ArchiveError> {
        while self.next_entry()?.is_some() {}
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|b| *b != 0) {
                return Err(corrupt("data follows tar's end-of-archive marker"));
            }
        }
        let mut rest = self.zstd.into_inner();
        // zstd stopped at the end of its input; anything still unread would be unhashed (and
        // age checks its last chunk only at the end).
        let copied = io::copy(&mut rest, &mut io::sink());
        drop(rest);
        let tally = Arc::try_unwrap(self.tally)
            .map_err(|_| corrupt("the archive source is still in use"))?
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match copied {
            Ok(_) => Ok((tally.bytes, hex::encode(tally.hasher.finalize()))),
            Err(e) if tally.failed => Err(ArchiveError::Io(e)),
            Err(e) => Err(corrupt(e.to_string())),
        }
    }

    /// Reads the rest of the decompressed stream, for zstd to check its frame checksum.
    fn drain_frame(&mut self) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; 64 << 10];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    /// Reads from the decompressed stream, telling failures of the source from corruption.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        loop {
            match self.zstd.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.classify(e)),
            }
        }
    }

    fn classify(&self, e: io::Error) -> ArchiveError {
        if self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .failed
        {
            ArchiveError::Io(e)
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            corrupt(format!("it is truncated (zstd: {e})"))
        } else {
            corrupt(format!("zstd cannot decompress it: {e}"))
        }
    }

    /// Fills `buf`; `false` at a clean end of the stream before its first byte.
    fn read_block(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool, ArchiveError> {
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.read(&mut buf[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(corrupt("it ends inside a tar header (truncated)"));
            }
            filled += n;
        }
        Ok(true)
    }

    /// Reads an entry's `size` bytes (already bounded by the caller) and the padding after them.
    fn read_data(&mut self, size: u64) -> Result<Vec<u8>, ArchiveError> {
        let size =
            usize::try_from(size).map_err(|_| corrupt("an entry size does not fit in memory"))?;
        let padded = size.div_ceil(BLOCK) * BLOCK;
        // Grown as bytes arrive, so a truncated archive cannot make the reader allocate the
        // whole declared size up front.
        let mut data = Vec::with_capacity(size.min(1 << 20));
        let mut buf = [0u8; 8192];
        let mut left = padded;
        while left > 0 {
            let want = left.min(buf.len());
            let n = self.read(&mut buf[..want])?;
            if n == 0 {
                return Err(corrupt("it ends inside an entry (truncated)"));
            }
            let keep = (size - data.len()).min(n);
            data.extend_from_slice(&buf[..keep]);
            left -= n;
        }
        Ok(data)
    }
}

fn check_header_checksum(header: &tar::Header) -> Result<(), ArchiveError> {
    let bytes = header.as_bytes();
    // The checksum field itself counts as eight spaces.
    let sum = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * 32;
    match header.cksum() {
        Ok(stored) if stored == sum => Ok(()),
        _ => Err(corrupt("a tar header checksum does not match")),
    }
}

fn entry_size(header: &tar::Header) -> Result<u64, ArchiveError> {
    header
        .entry_size()
        .map_err(|e| corrupt(format!("a tar header has an unreadable size: {e}")))
}

fn check_version(data: &[u8]) -> Result<(), ArchiveError> {
    let text = std::str::from_utf8(data).unwrap_or("").trim();
    let found: u64 = text
        .parse()
        .map_err(|_| corrupt(format!("metadata/version holds {text:?}, not a version")))?;
    let current: u64 = layout::FORMAT_VERSION
        .parse()
        .expect("FORMAT_VERSION is a number");
    if found > current {
        return Err(ArchiveError::NewerFormat {
            found: text.to_string(),
        });
    }
    if found == 0 {
        return Err(corrupt("metadata/version is 0"));
    }
    Ok(())
}

fn describe(entry_type: tar::EntryType) -> String {
    let what = match entry_type {
        t if t.is_symlink() => "symbolic link",
        t if t.is_hard_link() => "hard link",
        t if t.is_character_special() || t.is_block_special() => "device",
        t if t.is_dir() => "directory",
        t if t.is_fifo() => "FIFO",
        t if t.is_contiguous() => "contiguous file",
        t if t.is_gnu_sparse() => "GNU sparse file",
        t if t.is_gnu_longlink() => "GNU long link name",
        t if t.is_pax_local_extensions() || t.is_pax_global_extensions() => "PAX extended header",
        t => return format!("tar entry of type {:?}", char::from(t.as_byte())),
    };
    what.to_string()
}

/// What [`verify`] found in a sound archive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Compressed bytes read.
    pub size: u64,
    /// Hex SHA-256 of the compressed bytes.
    pub sha256: String,
    /// Objects read (not counting `metadata/version`), to compare with the manifest's
    /// `itemCount`.
    pub entries: u64,
    /// Objects per `<plural>[.<group>]`, to compare with the manifest's `resources`.
    pub resources: BTreeMap<String, u64>,
    /// Bytes of JSON read.
    pub data_bytes: u64,
}

/// Reads a whole archive and checks everything a restore will rely on: every entry as
/// [`ArchiveReader`] does, every object is JSON whose `metadata.name` and `metadata.namespace`
/// lead to its path (modulo the long-name rule), and the compressed bytes match the manifest's
/// size and SHA-256.
pub fn verify(
    inner: impl Read,
    expected_size: u64,
    expected_sha256: &str,
    limits: Limits,
) -> Result<VerifyReport, ArchiveError> {
    let mut reader = ArchiveReader::new(inner, limits)?;
    let mut report = VerifyReport::default();
    check_objects(&mut reader, |resource, entry| {
        *report.resources.entry(resource.to_string()).or_default() += 1;
        report.entries += 1;
        report.data_bytes += entry.data.len() as u64;
    })?;
    let (size, sha256) = reader.finish()?;
    if size != expected_size {
        return Err(ArchiveError::SizeMismatch {
            expected: expected_size,
            actual: size,
        });
    }
    if !sha256.eq_ignore_ascii_case(expected_sha256) {
        return Err(ArchiveError::ChecksumMismatch {
            expected: expected_sha256.to_string(),
            actual: sha256,
        });
    }
    report.size = size;
    report.sha256 = sha256;
    Ok(report)
}

/// Reads every entry left in `reader`, checks each object against its path
/// ([`check_object`]) and hands it to `each` with its resource (`<plural>[.<group>]`). Returns
/// the entries read, `metadata/version` included.
pub fn check_objects<R: Read>(
    reader: &mut ArchiveReader<R>,
    mut each: impl FnMut(&str, &Entry),
) -> Result<u64, ArchiveError> {
    let mut entries = 0;
    while let Some(entry) = reader.next_entry()? {
        entries += 1;
        if let EntryPath::Object {
            resource,
            namespace,
            file_name,
        } = &entry.kind
        {
            check_object(&entry.path, namespace.as_deref(), file_name, &entry.data)?;
            each(resource, &entry);
        }
    }
    Ok(entries)
}

/// Checks that the object in `data` is the one its path says: restore takes names from objects,
/// so an object filed under another name or namespace means the archive was tampered with.
pub fn check_object(
    path: &str,
    namespace: Option<&str>,
    file_name: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    #[derive(Deserialize)]
    struct Object {
        metadata: Metadata,
    }
    #[derive(Deserialize)]
    struct Metadata {
        name: String,
        #[serde(default)]
        namespace: Option<String>,
    }
    let mismatch = |detail: String| ArchiveError::Mismatch {
        path: path.to_string(),
        detail,
    };
    let object: Object = serde_json::from_slice(data)
        .map_err(|e| mismatch(format!("not a JSON object with metadata.name: {e}")))?;
    let meta = object.metadata;
    if layout::file_name(&meta.name) != file_name {
        return Err(mismatch(format!("its metadata.name is {:?}", meta.name)));
    }
    let found = meta.namespace.as_deref().filter(|ns| !ns.is_empty());
    if found != namespace {
        return Err(mismatch(match found {
            Some(ns) => format!("its metadata.namespace is {ns:?}"),
            None => "it has no metadata.namespace".to_string(),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::writer::{ArchiveWriter, CompressionOptions};

    fn archive(objects: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), &CompressionOptions::default(), 0).unwrap();
        for (path, data) in objects {
            w.append(path, data).unwrap();
        }
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8], limits: Limits) -> Result<Vec<Entry>, ArchiveError> {
        let mut r = ArchiveReader::new(bytes, limits)?;
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        r.finish()?;
        Ok(out)
    }

    const CM: &[u8] =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}}"#;

    #[test]
    fn version_comes_first_then_objects() {
        let bytes = archive(&[("resources/configmaps/namespaces/ns/a.json", CM)]);
        let entries = read_all(&bytes, Limits::default()).unwrap();
        assert_eq!(entries[0].kind, EntryPath::Version);
        assert_eq!(entries[0].data, b"1");
        assert_eq!(entries[1].path, "resources/configmaps/namespaces/ns/a.json");
        assert_eq!(entries[1].data, CM);
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn entries_over_the_size_limit_are_refused() {
        let big = vec![b' '; 5000];
        let bytes = archive(&[("resources/configmaps/cluster/big.json", &big)]);
        let limits = Limits {
            max_entry_bytes: 4096,
            ..Limits::default()
        };
        match read_all(&bytes, limits) {
            Err(ArchiveError::TooLarge {
                path,
                size: 5000,
                limit: 4096,
            }) => {
                assert_eq!(path, "resources/configmaps/cluster/big.json");
            }
            other => panic!("{other:?}"),
        }
        read_all(
            &bytes,
            Limits {
                max_entry_bytes: 5000,
                ..Limits::default()
            },
        )
        .unwrap();
    }

    #[test]
    fn archives_over_the_entry_count_limit_are_refused() {
        let objects: Vec<(String, &[u8])> = (0..4)
            .map(|i| (format!("resources/configmaps/cluster/c{i}.json"), CM))
            .collect();
        let refs: Vec<(&str, &[u8])> = objects.iter().map(|(p, d)| (p.as_str(), *d)).collect();
        let bytes = archive(&refs);
        let err = read_all(
            &bytes,
            Limits {
                max_entries: 3,
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, ArchiveError::TooManyEntries { limit: 3 }),
            "{err}"
        );
        assert_eq!(
            read_all(
                &bytes,
                Limits {
                    max_entries: 4,
                    ..Limits::default()
                }
            )
            .unwrap()
            .len(),
            5
        );
    }

    #[test]
    fn objects_must_match_their_paths() {
        check_object("p", Some("ns"), "a.json", CM).unwrap();
        let long = "l".repeat(253);
        let doc = format!(r#"{{"metadata":{{"name":"{long}"}}}}"#);
        check_object("p", None, &layout::file_name(&long), doc.as_bytes()).unwrap();
        for (ns, file, data) in [
            (Some("ns"), "b.json", CM),
            (Some("other"), "a.json", CM),
            (None, "a.json", CM),
            (
                Some("ns"),
                "a.json",
                br#"{"metadata":{"name":"a"}}"#.as_slice(),
            ),
            (Some("ns"), "a.json", b"not json".as_slice()),
        ] {
            let err = check_object("p", ns, file, data).unwrap_err();
            assert!(matches!(err, ArchiveError::Mismatch { .. }), "{err}");
        }
    }

    #[test]
    fn versions_are_checked() {
        check_version(b"1").unwrap();
        check_version(b"1\n").unwrap();
        assert!(
            matches!(check_version(b"2"), Err(ArchiveError::NewerFormat { found }) if found == "2")
        );
        assert!(matches!(
            check_version(b"one"),
            Err(ArchiveError::Corrupt { .. })
        ));
        assert!(matches!(
            check_version(b"0"),
            Err(ArchiveError::Corrupt { .. })
        ));
    }

    #[test]
    fn source_failures_are_io_errors_not_corruption() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        // The first bytes are read when the reader is made (to tell an age file from a plain
        // one), so the failure may come from either call.
        fn first<R: Read>(inner: R) -> Result<(), ArchiveError> {
            ArchiveReader::new(inner, Limits::default())?.next_entry()?;
            Ok(())
        }
        let err = first(Failing).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let err = first(&b""[..]).unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    }
}
