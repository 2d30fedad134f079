//! lifeboat: disaster recovery for Kubernetes clusters on AWS.
//!
//! The crate reads top-down: [`backup`] orchestrates one run and calls the adapters, one per
//! outside world: [`cluster`] (the Kubernetes API), [`archive`] (the tar+zstd format and the
//! manifest), [`store`] (object storage: S3 or a local directory). [`config`] is the one
//! configuration model that the file, the CLI and the daemon share. Adapters never call the
//! orchestration.

pub mod archive;
mod aws;
pub mod backup;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod daemon;
#[cfg(feature = "embedded")]
pub mod demo;
pub mod drill;
pub mod events;
pub mod glob;
pub mod report;
pub mod restore;
pub mod retention;
pub mod setup;
pub mod store;
pub mod verify;
pub mod volumes;
