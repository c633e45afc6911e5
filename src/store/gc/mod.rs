//! Garbage collection and verification: snapshot ownership and recovery, `rmi`/`prune`/`df`,
//! `check` and `fsck`. The only part of the store that deletes what others reference.

pub mod check;
pub mod fsck;
pub mod prune;
mod repair;
pub mod snapshots;

pub(crate) use snapshots::remove_snapshots;
