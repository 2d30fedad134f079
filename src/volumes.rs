//! EBS volumes: which volume is behind each PersistentVolume, snapshotting them during a
//! backup (recorded in `volumes.json`), and recreating them on restore.

pub mod discover;
pub mod ec2;
pub mod record;
pub mod restore;
pub mod snapshot;
