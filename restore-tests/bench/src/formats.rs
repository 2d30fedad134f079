//! Reading lifeboat's archive back, and writing the same objects in Velero's format.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use lifeboat::archive::layout::EntryPath;
use lifeboat::archive::reader::{ArchiveReader, Limits};
use serde::Serialize;

/// Calls `f(resource, namespace, json)` for every object of a lifeboat archive, in archive
/// order. Returns (objects, bytes of object JSON).
pub fn for_each_object(
    archive: &Path,
    mut f: impl FnMut(&str, Option<&str>, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, u64)> {
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut reader = ArchiveReader::new(io::BufReader::new(file), Limits::default())?;
    let (mut objects, mut bytes) = (0u64, 0u64);
    while let Some(entry) = reader.next_entry()? {
        if let EntryPath::Object {
            resource,
            namespace,
            ..
        } = &entry.kind
        {
            objects += 1;
            bytes += entry.data.len() as u64;
            f(resource, namespace.as_deref(), &entry.data)?;
        }
    }
    Ok((objects, bytes))
}

/// A writer that only counts.
#[derive(Debug, Default)]
pub struct Counter(pub u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes to two writers.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Velero {
    /// The tar.gz, gzip at its default level (6), as Velero writes it.
    pub tar_gz_bytes: u64,
    pub objects: u64,
    /// Bytes of object JSON (each object once): what lifeboat wrote into its archive.
    pub json_bytes: u64,
}

/// Velero 1.18's layout for the objects of a lifeboat archive: each object twice, at
/// `resources/<resource>/{namespaces/<ns>|cluster}/<name>.json` and under
/// `resources/<resource>/<version>-preferredversion/...`, compact JSON, in a tar.gz with
/// Velero's `metadata/version` first. The tar is also written uncompressed to `tar_out` when
/// given (for the plain zstd figures).
pub fn velero(archive: &Path, tar_out: Option<&Path>) -> anyhow::Result<Velero> {
    let gz = flate2::write::GzEncoder::new(Counter::default(), flate2::Compression::default());
    let plain: Box<dyn Write> = match tar_out {
        Some(p) => Box::new(io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(io::sink()),
    };
    let mut tar = tar::Builder::new(Tee(gz, plain));
    let mtime = jiff::Timestamp::now().as_second().max(0).cast_unsigned();
    let append = |tar: &mut tar::Builder<_>, path: &str, data: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data)
    };
    append(&mut tar, "metadata/version", b"1.1.0\n")?;
    let (objects, json_bytes) = for_each_object(archive, |resource, ns, json| {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "apiVersion", borrow)]
            api_version: &'a str,
            #[serde(borrow)]
            metadata: Meta<'a>,
        }
        #[derive(serde::Deserialize)]
        struct Meta<'a> {
            #[serde(borrow)]
            name: std::borrow::Cow<'a, str>,
        }
        let head: Head = serde_json::from_slice(json).context("archived object")?;
        let version = head
            .api_version
            .rsplit_once('/')
            .map_or(head.api_version, |(_, v)| v);
        let place = match ns {
            Some(ns) => format!("namespaces/{ns}/{}.json", head.metadata.name),
            None => format!("cluster/{}.json", head.metadata.name),
        };
        append(&mut tar, &format!("resources/{resource}/{place}"), json)?;
        append(
            &mut tar,
            &format!("resources/{resource}/{version}-preferredversion/{place}"),
            json,
        )?;
        Ok(())
    })?;
    let Tee(gz, mut plain) = tar.into_inner()?;
    plain.flush()?;
    let tar_gz_bytes = gz.finish()?.0;
    Ok(Velero {
        tar_gz_bytes,
        objects,
        json_bytes,
    })
}

/// Bytes of `zstd ARGS` over `input` (a file, or the output of `zstd -dc input` when
/// `decompress_first`), by the zstd command.
pub fn zstd_size(input: &Path, decompress_first: bool, args: &[&str]) -> anyhow::Result<u64> {
    let feed = if decompress_first {
        Command::new("zstd")
            .args(["-dc", "-q"])
            .arg(input)
            .stdout(Stdio::piped())
            .spawn()
            .context("running zstd")?
    } else {
        Command::new("cat")
            .arg(input)
            .stdout(Stdio::piped())
            .spawn()
            .context("running cat")?
    };
    let mut feed = feed;
    let stdin = feed.stdout.take().context("pipe")?;
    let mut z = Command::new("zstd")
        .args(args)
        .args(["-q", "-c"])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .context("running zstd")?;
    let mut out = z.stdout.take().context("pipe")?;
    let mut counter = Counter::default();
    io::copy(&mut out, &mut counter)?;
    if !z.wait()?.success() || !feed.wait()?.success() {
        bail!("zstd {args:?} over {} failed", input.display());
    }
    Ok(counter.0)
}
