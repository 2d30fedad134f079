//! Writing archives: tar -> zstd -> (SHA-256 + byte count) -> any `Write`, one object at a time.
//!
//! The writer never holds more than one object and zstd's window, whatever the number of
//! objects, and it computes the archive's size and checksum on the fly so that the manifest can
//! record them without reading the archive back.
//!
//! Every entry gets the same mode, owner and mtime (the backup's start), so the same objects give
//! the same bytes: a re-run can be compared byte for byte, and the tests can pin the format.
//!
//! The async backup uses [`spawn`]: tar and zstd are blocking CPU work, so they run on a dedicated
//! OS thread between two bounded channels, and memory is bounded by the channel capacities.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::layout::{self, EntryPath};
use super::reader::ArchiveError;
use super::seal::{Recipients, Sealer};

/// Size of zstd's multithreading jobs. zstd's own default is four windows (512 MiB with a 2^27
/// window) per worker, which would make memory grow with `workers` far beyond the window.
pub const JOB_SIZE: u32 = 8 << 20;

/// Largest window a plain `zstd -d` (and lifeboat's reader) decompresses without
/// `--long`/`--memory` flags.
pub const MAX_WINDOW_LOG: u32 = 27;

/// The size of the chunks [`spawn`] hands out: large enough to keep the channel cheap, small
/// enough that a few of them in flight cost little. Multipart upload parts are assembled from
/// them by the store.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Most object bytes queued for the writer thread, whatever their number: a queue of 256
/// ConfigMaps near the 1.5 MiB etcd limit would otherwise hold 384 MiB. One object larger than
/// this still goes through, alone.
pub const QUEUE_BYTES: usize = 16 << 20;

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionOptions {
    /// zstd level. 3 is zstd's default and its best speed for the size on API objects.
    pub level: i32,
    /// log2 of the window. Entries are grouped by type, so the objects one chart deploys into
    /// many namespaces sit within a few MiB of each other and 24 (16 MiB) finds them; at most
    /// 27, the largest window `zstd -d` reads without flags.
    pub window_log: u32,
    /// zstd's long-distance matcher: for windows far larger than the distance between
    /// repeats it saves little and costs about as much CPU again as the rest of compression.
    pub long_distance_matching: bool,
    /// zstd worker threads; 0 compresses on the writer's own thread. Output differs between 0
    /// and any non-zero value (but not between non-zero values).
    pub workers: u32,
}

impl Default for CompressionOptions {
    fn default() -> Self {
        CompressionOptions {
            level: 3,
            window_log: 24,
            long_distance_matching: false,
            workers: 0,
        }
    }
}

impl CompressionOptions {
    /// Refuses options that would make archives `zstd -d` cannot read, or that zstd rejects.
    pub fn validate(&self) -> Result<(), String> {
        let levels = zstd::compression_level_range();
        if !levels.contains(&self.level) {
            return Err(format!(
                "zstd level {} is outside {}..={}",
                self.level,
                levels.start(),
                levels.end()
            ));
        }
        if !(10..=MAX_WINDOW_LOG).contains(&self.window_log) {
            return Err(format!(
                "zstd window log {} is outside 10..={MAX_WINDOW_LOG} (a larger window needs `zstd -d --long` to read)",
                self.window_log
            ));
        }
        Ok(())
    }
}

/// What was written, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Compressed bytes written to the output.
    pub size: u64,
    /// Hex SHA-256 of those compressed bytes.
    pub sha256: String,
    /// Objects appended (not counting `metadata/version`): the manifest's `itemCount`.
    pub entries: u64,
    /// Size of the tar stream before compression (what `zstd -l` calls decompressed size).
    pub uncompressed_bytes: u64,
}

/// Hashes and counts what zstd writes, on its way to the output.
#[derive(Debug)]
struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the tar stream on its way into zstd.
#[derive(Debug)]
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// tar writes each entry as three small writes (header, data, padding); zstd pays a fixed cost
/// per call, so they are gathered into zstd-block-sized writes first.
type Compressor<W> =
    Counting<BufWriter<zstd::stream::write::Encoder<'static, Sealer<Digesting<W>>>>>;

/// zstd's largest block (`ZSTD_BLOCKSIZE_MAX`).
const ZSTD_BLOCK: usize = 128 << 10;

/// A streaming archive writer: objects go in one at a time, compressed bytes come out of `W`.
///
/// Dropping it without [`ArchiveWriter::finish`] leaves an incomplete zstd frame, which every
/// reader refuses: an interrupted backup can never pass for a complete archive.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Compressor<W>>,
    mtime: u64,
    entries: u64,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("mtime", &self.mtime)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive on `out` and writes `metadata/version`. `mtime` (seconds since the
    /// epoch; the backup's start) stamps every entry.
    pub fn new(out: W, opts: &CompressionOptions, mtime: u64) -> io::Result<Self> {
        ArchiveWriter::sealed(out, opts, None, mtime)
    }

    /// [`ArchiveWriter::new`], encrypting the compressed stream to `recipients` when given
    /// (an age file around the tar.zst; the summary's size and SHA-256 are then those of the
    /// encrypted bytes, which is what is stored).
    pub fn sealed(
        out: W,
        opts: &CompressionOptions,
        recipients: Option<&Recipients>,
        mtime: u64,
    ) -> io::Result<Self> {
        opts.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let digesting = Digesting {
            inner: out,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let sealer = Sealer::new(digesting, recipients)?;
        let mut zstd = zstd::stream::write::Encoder::new(sealer, opts.level)?;
        if opts.workers > 0 {
            zstd.multithread(opts.workers)?;
            zstd.set_parameter(zstd::zstd_safe::CParameter::JobSize(JOB_SIZE))?;
        }
        zstd.window_log(opts.window_log)?;
        zstd.long_distance_matching(opts.long_distance_matching)?;
        // What `zstd` itself does by default: a reader detects corruption even without the
        // manifest's checksum at hand.
        zstd.include_checksum(true)?;
        let mut tar = tar::Builder::new(Counting {
            inner: BufWriter::with_capacity(ZSTD_BLOCK, zstd),
            bytes: 0,
        });
        tar.append_data(
            &mut header(mtime, layout::FORMAT_VERSION.len()),
            layout::VERSION_ENTRY,
            layout::FORMAT_VERSION.as_bytes(),
        )?;
        Ok(ArchiveWriter {
            tar,
            mtime,
            entries: 0,
        })
    }

    /// Appends one object as the file `path` (from [`layout::object_path`]).
    ///
    /// A path outside the layout is refused rather than written, so that every archive this
    /// writer finishes is one that lifeboat's reader accepts.
    pub fn append(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        check_object_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.tar
            .append_data(&mut header(self.mtime, data.len()), path, data)?;
        self.entries += 1;
        Ok(())
    }

    /// Ends the tar stream and the zstd frame, and returns the output with what was written.
    pub fn finish(self) -> io::Result<(W, ArchiveSummary)> {
        let counting = self.tar.into_inner()?;
        let uncompressed_bytes = counting.bytes;
        let zstd = counting
            .inner
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let mut digesting = zstd.finish()?.finish()?;
        digesting.flush()?;
        let summary = ArchiveSummary {
            size: digesting.bytes,
            sha256: hex::encode(digesting.hasher.finalize()),
            entries: self.entries,
            uncompressed_bytes,
        };
        Ok((digesting.inner, summary))
    }
}

fn check_object_path(path: &str) -> Result<(), ArchiveError> {
    match layout::parse_path(path) {
        Ok(EntryPath::Object { .. }) => Ok(()),
        Ok(EntryPath::Version) => Err(ArchiveError::UnsafePath {
            path: path.to_string(),
            reason: "metadata/version is written by the archive writer itself",
        }),
        Err(e) => Err(ArchiveError::UnsafePath {
            path: e.path,
            reason: e.reason,
        }),
    }
}

/// The header of every entry: a plain file, `0644`, owned by root, stamped with the backup's
/// start, so that extraction gives ordinary files and identical input gives identical bytes.
fn header(mtime: u64, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size as u64);
    header
}

/// Collects compressed output into [`CHUNK_SIZE`] pieces for the async side.
#[derive(Debug)]
struct ChunkWriter {
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
}

/// Marks the I/O error of a dropped chunk receiver, to tell it apart from other failures.
#[derive(Debug, thiserror::Error)]
#[error("the consumer of the archive stopped reading")]
struct ConsumerGone;

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        // Fails (instead of waiting forever) once the receiver is dropped.
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, ConsumerGone))?;
        self.buf.reserve(CHUNK_SIZE);
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    /// Chunks are only sent full (or at the end): zstd flushes carry no meaning for the upload.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What travels from the sinks to the writer thread.
enum Message {
    Entry {
        path: String,
        data: Vec<u8>,
        /// This object's share of [`QUEUE_BYTES`], given back once it is written.
        _queued: OwnedSemaphorePermit,
    },
    /// Sent by [`WriterHandle::finish`]: complete the archive once every sink is gone.
    Finish,
}

/// Without the data: a channel's debug output should not dump objects (Secrets among them).
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Entry { path, data, .. } => {
                write!(f, "Entry({path}, {} bytes)", data.len())
            }
            Message::Finish => f.write_str("Finish"),
        }
    }
}

/// The async side's handle for feeding objects to a [`spawn`]ed writer. Clone it to feed from
/// several tasks.
#[derive(Debug, Clone)]
pub struct EntrySink {
    tx: mpsc::Sender<Message>,
    queued_bytes: Arc<Semaphore>,
}

impl EntrySink {
    /// Queues one object; waits while the writer is `entry_capacity` objects or
    /// [`QUEUE_BYTES`] behind.
    ///
    /// Fails with [`ArchiveError::UnsafePath`] for a path outside the layout (the writer is
    /// unaffected), and with [`ArchiveError::WriterGone`] once the writer has stopped:
    /// [`WriterHandle::finish`] then says why.
    pub async fn send(&self, path: String, data: Vec<u8>) -> Result<(), ArchiveError> {
        check_object_path(&path)?;
        let share = u32::try_from(data.len().clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX);
        let queued = Arc::clone(&self.queued_bytes)
            .acquire_many_owned(share)
            .await
            .map_err(|_| ArchiveError::WriterGone)?;
        self.tx
            .send(Message::Entry {
                path,
                data,
                _queued: queued,
            })
            .await
            .map_err(|_| ArchiveError::WriterGone)
    }
}

/// The outcome of a [`spawn`]ed writer.
#[derive(Debug)]
pub struct WriterHandle {
    result: oneshot::Receiver<Result<ArchiveSummary, ArchiveError>>,
}

impl WriterHandle {
    /// Ends the archive after every object sent through any clone of the sink, and returns the
    /// summary once the last chunk has been queued.
    ///
    /// Waits until all clones of the sink are dropped, and needs the chunk receiver to be read
    /// concurrently (the writer waits for room for its last chunks).
    pub async fn finish(self, sink: EntrySink) -> Result<ArchiveSummary, ArchiveError> {
        // A failed send means the writer already stopped; its result says why.
        let _ = sink.tx.send(Message::Finish).await;
        drop(sink);
        self.result.await.unwrap_or(Err(ArchiveError::WriterGone))
    }
}

/// Starts an archive writer on a dedicated OS thread.
///
/// Objects go in through the [`EntrySink`] (at most `entry_capacity` objects and
/// [`QUEUE_BYTES`] queued); compressed bytes
/// come out of the receiver as [`CHUNK_SIZE`] chunks (at most `chunk_capacity` queued), the last
/// one shorter. Memory is bounded by those capacities (plus the [`RECV_BATCH`] objects the
/// writer takes at once) and zstd's window, never by the number of objects.
///
/// The end of the chunk stream does not mean success: the archive is complete only when
/// [`WriterHandle::finish`] returns `Ok`, so the upload must be committed after that, never just
/// because the stream ended. If the chunk receiver is dropped (the upload failed), the writer
/// stops with [`ArchiveError::ConsumerGone`] instead of blocking; if every sink is dropped without
/// [`WriterHandle::finish`] (the backup failed), the thread ends without completing the archive.
pub fn spawn(
    opts: CompressionOptions,
    mtime: u64,
    entry_capacity: usize,
    chunk_capacity: usize,
) -> (EntrySink, mpsc::Receiver<Bytes>, WriterHandle) {
    spawn_sealed(opts, None, mtime, entry_capacity, chunk_capacity)
}

/// [`spawn`], encrypting the archive to `recipients` when given.
pub fn spawn_sealed(
    opts: CompressionOptions,
    recipients: Option<Recipients>,
    mtime: u64,
    entry_capacity: usize,
    chunk_capacity: usize,
) -> (EntrySink, mpsc::Receiver<Bytes>, WriterHandle) {
    let (entry_tx, entry_rx) = mpsc::channel(entry_capacity.max(1));
    let (chunk_tx, chunk_rx) = mpsc::channel(chunk_capacity.max(1));
    let (result_tx, result_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("archive-writer".into())
        .spawn(move || {
            let result = run(&opts, recipients.as_ref(), mtime, entry_rx, chunk_tx);
            let _ = result_tx.send(result);
        });
    if let Err(e) = thread {
        // The closure (and with it the result sender) is gone, so `finish` will report
        // WriterGone; say why here, where it is known.
        tracing::error!(error = %e, "cannot start the archive writer thread");
    }
    (
        EntrySink {
            tx: entry_tx,
            queued_bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
        },
        chunk_rx,
        WriterHandle { result: result_rx },
    )
}

/// Most messages the writer thread takes from the channel at once.
pub const RECV_BATCH: usize = 64;

/// The writer thread: appends until every sink is gone, then finishes if asked to.
fn run(
    opts: &CompressionOptions,
    recipients: Option<&Recipients>,
    mtime: u64,
    mut entries: mpsc::Receiver<Message>,
    chunks: mpsc::Sender<Bytes>,
) -> Result<ArchiveSummary, ArchiveError> {
    // zstd hands out output only every block or job, which highly compressible objects can take
    // long to fill: a consumer that went away is noticed per batch instead.
    let consumer = chunks.clone();
    let out = ChunkWriter {
        buf: BytesMut::with_capacity(CHUNK_SIZE),
        tx: chunks,
    };
    let mut writer = ArchiveWriter::sealed(out, opts, recipients, mtime).map_err(write_error)?;
    let mut finish = false;
    // Until every sink is gone: entries sent by other clones after `Finish` still arrive, so
    // nothing that a `send` accepted is lost. Taken in batches, to wake the senders once per
    // batch rather than once per object.
    let mut batch = Vec::with_capacity(RECV_BATCH);
    while entries.blocking_recv_many(&mut batch, RECV_BATCH) > 0 {
        if consumer.is_closed() {
            return Err(ArchiveError::ConsumerGone);
        }
        for message in batch.drain(..) {
            match message {
                Message::Entry { path, data, .. } => {
                    writer.append(&path, &data).map_err(write_error)?;
                }
                Message::Finish => finish = true,
            }
        }
    }
    if !finish {
        return Err(ArchiveError::Abandoned);
    }
    let (mut out, summary) = writer.finish().map_err(write_error)?;
    out.send().map_err(write_error)?;
    Ok(summary)
}

fn write_error(e: io::Error) -> ArchiveError {
    if matches!(e.get_ref(), Some(inner) if inner.is::<ConsumerGone>()) {
        ArchiveError::ConsumerGone
    } else {
        ArchiveError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(
        opts: &CompressionOptions,
        objects: &[(String, Vec<u8>)],
    ) -> (Vec<u8>, ArchiveSummary) {
        let mut w = ArchiveWriter::new(Vec::new(), opts, 1_790_000_000).unwrap();
        for (path, data) in objects {
            w.append(path, data).unwrap();
        }
        w.finish().unwrap()
    }

    fn objects(n: usize) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let ns = format!("tenant-{}", i % 7);
                let name = format!("cm-{i}");
                let json = format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{ns}"}},"data":{{"i":"{i}"}}}}"#
                );
                (layout::object_path("configmaps", Some(&ns), &name), json.into_bytes())
            })
            .collect()
    }

    #[test]
    fn same_input_gives_the_same_bytes() {
        let objs = objects(500);
        for workers in [0, 2] {
            let opts = CompressionOptions {
                workers,
                ..CompressionOptions::default()
            };
            let (a, sa) = write(&opts, &objs);
            let (b, sb) = write(&opts, &objs);
            assert_eq!(a, b, "workers={workers}");
            assert_eq!(sa, sb);
            assert_eq!(sa.size, a.len() as u64);
            assert_eq!(sa.sha256, hex::encode(Sha256::digest(&a)));
            assert_eq!(sa.entries, 500);
        }
    }

    #[test]
    fn entries_are_plain_root_owned_files_stamped_with_the_backup_start() {
        let long = layout::object_path("configmaps", Some("default"), &"l".repeat(253));
        let mut objs = objects(3);
        objs.push((long.clone(), b"{}".to_vec()));
        let (bytes, summary) = write(&CompressionOptions::default(), &objs);
        let tar_bytes = zstd::decode_all(bytes.as_slice()).unwrap();
        assert_eq!(summary.uncompressed_bytes, tar_bytes.len() as u64);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut paths = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.entry_type(), tar::EntryType::Regular);
            assert_eq!(h.mode().unwrap(), 0o644);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_790_000_000);
            paths.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(paths[0], layout::VERSION_ENTRY);
        assert_eq!(paths.len(), 5);
        // Over 100 bytes: stored with a GNU long-name entry, read back whole.
        assert_eq!(paths[4], long);
    }

    #[test]
    fn paths_outside_the_layout_are_refused() {
        let mut w = ArchiveWriter::new(Vec::new(), &CompressionOptions::default(), 0).unwrap();
        for path in [
            "../x.json",
            "/etc/passwd",
            "metadata/version",
            "resources/a/cluster/b/c.json",
        ] {
            let err = w.append(path, b"{}").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{path}");
        }
        let (_, summary) = w.finish().unwrap();
        assert_eq!(summary.entries, 0);
    }

    #[test]
    fn options_that_plain_zstd_cannot_read_are_refused() {
        for opts in [
            CompressionOptions {
                window_log: 28,
                ..CompressionOptions::default()
            },
            CompressionOptions {
                level: 99,
                ..CompressionOptions::default()
            },
        ] {
            assert!(opts.validate().is_err(), "{opts:?}");
            assert!(ArchiveWriter::new(Vec::new(), &opts, 0).is_err());
        }
        CompressionOptions::default().validate().unwrap();
    }
}
