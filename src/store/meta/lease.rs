//! Leases: what a running process uses but nothing in the store references yet.
//!
//! A build writes a snapshot, then its layer record, then (later) a cache record or an image
//! that references the layer. Between those steps the snapshot and the layer are garbage in the
//! eyes of `prune`/`fsck`. As containerd does with its leases, the process lists them in its
//! own lease file, `<root>/leases/<pid>-<random>`, and GC keeps everything a live lease names.
//!
//! Liveness is an exclusive `flock` held on the lease file for the life of the process (not a
//! pid check, which a reused pid would fool): a lease file whose lock can be taken belongs to a
//! dead process. Its snapshots that no layer record took over are the incomplete layers of a
//! killed build, and [`Store::recover`] deletes them with the lease.
//!
//! Entries are appended as whole lines (`layer sha256:…`, `blob sha256:…`, `snapshot <id>`) while the caller
//! holds the store lock, and GC reads them under the same lock, so a reader never sees an
//! entry being written.

use crate::digest::Digest;
use crate::store::{fsutil, io_err, Store, StoreError};
use std::collections::BTreeSet;
use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// This process's lease file (created on first use, removed on drop; the flock dies with the
/// process, so a killed process leaves a file that the next start recognises as stale).
#[derive(Debug)]
pub(crate) struct LeaseFile {
    file: File,
    path: PathBuf,
}

impl Drop for LeaseFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What the live leases hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leased {
    pub layers: BTreeSet<Digest>,
    pub blobs: BTreeSet<Digest>,
    pub snapshots: BTreeSet<String>,
}

impl Leased {
    fn parse(&mut self, text: &str) {
        // Only complete lines: a line without its '\n' was cut by a crash.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            match line.trim_end().split_once(' ') {
                Some(("layer", d)) => {
                    if let Ok(d) = Digest::parse(d) {
                        self.layers.insert(d);
                    }
                }
                Some(("blob", d)) => {
                    if let Ok(d) = Digest::parse(d) {
                        self.blobs.insert(d);
                    }
                }
                Some(("snapshot", id)) => {
                    self.snapshots.insert(id.to_string());
                }
                _ => {}
            }
        }
    }
}

impl Store {
    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }

    fn lease_append(&self, line: &str) -> Result<(), StoreError> {
        let mut slot = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.new_lease_file()?);
        }
        if let Some(lease) = slot.as_mut() {
            lease
                .file
                .write_all(format!("{line}\n").as_bytes())
                .map_err(io_err(&lease.path))?;
        }
        Ok(())
    }

    /// Created and locked under `tmp/`, then renamed into `leases/`, so no other process ever
    /// sees it unlocked (it would take it for a dead process's lease and delete it).
    fn new_lease_file(&self) -> Result<LeaseFile, StoreError> {
        let tmp = fsutil::temp_file(&self.tmp_dir())?;
        tmp.as_file().lock().map_err(io_err(tmp.path()))?;
        let name = tmp
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = self.leases_dir().join(name);
        // The returned File is the locked description; only this process writes to it.
        let file = tmp.persist(&path).map_err(|e| io_err(&path)(e.error))?;
        Ok(LeaseFile { file, path })
    }

    /// Keeps `chain_id` (and its parents) from GC while this process runs. Call it with the
    /// store lock held, right after checking or creating the layer record.
    pub fn lease_layer(&self, chain_id: &Digest) -> Result<(), StoreError> {
        self.lease_append(&format!("layer {chain_id}"))
    }

    /// Keeps a blob that no layer record names yet from GC (store lock held).
    pub fn lease_blob(&self, blob: &Digest) -> Result<(), StoreError> {
        self.lease_append(&format!("blob {blob}"))
    }

    /// Keeps snapshot `id` from GC while this process runs (store lock held, see
    /// [`Store::create_snapshot`]).
    pub fn lease_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.lease_append(&format!("snapshot {id}"))
    }

    /// Drops this process's lease now (normally when the last handle on the store goes).
    pub fn release_lease(&self) {
        let mut slot = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        *slot = None;
    }

    /// Reads every lease. Live ones are returned; stale ones (owner dead) are returned
    /// separately, as (file, what it held), for the caller to clean and delete. Call with the
    /// store lock held.
    pub(crate) fn read_leases(&self) -> Result<(Leased, Vec<(PathBuf, Leased)>), StoreError> {
        let dir = self.leases_dir();
        let mut live = Leased::default();
        let mut stale = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((live, stale)),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let (alive, text) = match probe(&path)? {
                Some(x) => x,
                None => continue,
            };
            if alive {
                live.parse(&text);
            } else {
                let mut held = Leased::default();
                held.parse(&text);
                stale.push((path, held));
            }
        }
        Ok((live, stale))
    }
}

/// (owner alive, content) of a lease file; None if it vanished meanwhile.
fn probe(path: &Path) -> Result<Option<(bool, String)>, StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let alive = match f.try_lock() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(e)) => return Err(io_err(path)(e)),
    };
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    Ok(Some((alive, text)))
}
