//! The archive format: a tar stream of one compact JSON document per object, compressed with
//! zstd, plus the manifest that commits a backup. See `docs/archive-format.md`.

pub mod layout;
pub mod manifest;
pub mod reader;
pub mod seal;
pub mod writer;
