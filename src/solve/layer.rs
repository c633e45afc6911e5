//! Layer steps: prepare a leased snapshot on the stage's top, let an operation change it, write
//! its diff as a layer tar and record the layer. The snapshot is removed on every error path.

use super::error::BuildError;
use super::progress::BarWriter;
use super::solver::Solver;
use super::state::StageState;
use crate::digest::{chain_id, Digest};
use crate::layer::{self, Compression, LayerOptions};
use crate::snapshot::{Active, Snapshotter};
use crate::store::{LayerRecord, Store};

/// Prepares a snapshot on `parent` and leases it before anything else can see it: until its
/// layer record exists, only the lease keeps GC off it (`store::lease`).
pub(crate) fn prepare_leased(
    store: &Store,
    snapshots: &dyn Snapshotter,
    parent: Option<&str>,
) -> Result<Active, BuildError> {
    let _lock = store.lock().map_err(BuildError::store)?;
    let active = snapshots.prepare(parent).map_err(BuildError::snapshot)?;
    if let Err(e) = store.lease_snapshot(&active.key) {
        let _ = snapshots.remove(&active.key);
        return Err(BuildError::store(e));
    }
    Ok(active)
}

impl Solver<'_> {
    /// Output profile and mtime clamp: part of a layer step's cache key, so a build asking for
    /// other tar bytes (another profile or SOURCE_DATE_EPOCH) does not reuse a layer made with the
    /// old ones. The codec is not: layers are stored as tars and compressed per output.
    pub(super) fn layer_format(&self) -> String {
        let mut f = format!("tar profile {}", self.opts.repro_profile.number());
        if let Some(t) = self.clamp_mtime() {
            f.push_str(&format!(" clamp {t}"));
        }
        f
    }

    /// The time every file of a new layer is clamped to, if any (`rewrite-timestamp`).
    fn clamp_mtime(&self) -> Option<i64> {
        if self.opts.rewrite_timestamp {
            self.epoch
        } else {
            None
        }
    }

    /// Prepares a snapshot on top of the stage, lets `f` change it, and commits its diff as a
    /// layer. Returns `None` when nothing changed.
    pub(super) fn layer_step(
        &self,
        st: &StageState,
        step_id: usize,
        f: impl FnOnce(&Active) -> Result<(), BuildError>,
    ) -> Result<Option<LayerRecord>, BuildError> {
        let active = prepare_leased(self.store, self.snapshots, st.top_cache_id())?;
        let guard = SnapshotGuard {
            snapshots: self.snapshots,
            key: Some(active.key.clone()),
        };
        // An error after Ctrl-C is only the symptom of the cancel (a copy or extraction stopped
        // half-way): report the interruption.
        let interrupted = |e: BuildError| {
            if self.cancelled() {
                BuildError::Interrupted
            } else {
                e
            }
        };
        f(&active).map_err(interrupted)?;
        if self.cancelled() {
            return Err(BuildError::Interrupted);
        }
        // Stored as a tar, as Docker's layer store keeps layers: outputs and pushes compress it
        // when they first need it (`store::compressed`), so a build never waits for gzip.
        let opts = LayerOptions {
            compression: Compression::Uncompressed,
            profile: self.opts.repro_profile,
            clamp_mtime: self.clamp_mtime(),
        };
        // The blob writer hashes the tar as it stores it; that one sha256 is the diffID and the
        // digest (the tar writer does not hash it again).
        let writer = self.store.new_blob_writer().map_err(BuildError::store)?;
        let bar = self.reporter.bytes(step_id, "writing layer", None);
        let writer = BarWriter::new(
            crate::cancel::Writer::new(writer, Some(&*self.cancel)),
            bar.clone(),
        );
        let upper = self
            .snapshots
            .upper_dir(&active.key)
            .map_err(BuildError::snapshot)?;
        let (writer, size) = layer::diff::write_layer_tar(&upper, writer, &opts)
            .map_err(|e| interrupted(BuildError::layer(e)))?;
        bar.finish();
        let writer = writer.inner.into_inner();
        let diff_id = writer.digest();
        let info = layer::LayerInfo {
            digest: diff_id.clone(),
            diff_id,
            size,
            uncompressed_size: size,
            media_type: Compression::Uncompressed.media_type().to_string(),
        };
        if info.diff_id == empty_diff_id() {
            // Nothing changed: no layer, as the classic builder records `empty_layer`.
            drop(writer);
            return Ok(None);
        }
        // Commit and record under one lock: a prune in between would take the unreferenced blob.
        let _lock = self.store.lock().map_err(BuildError::store)?;
        let blob = writer
            .commit(Some(&info.digest))
            .map_err(BuildError::store)?;
        let chain = chain_id(st.chain_id(), &info.diff_id);
        // Leased before anything references it (the cache record comes after the lock).
        self.store.lease_layer(&chain).map_err(BuildError::store)?;
        if let Some(existing) = self.store.get_layer(&chain).map_err(BuildError::store)? {
            // Same content already committed (an earlier or concurrent build): reuse it.
            guard.discard();
            return Ok(Some(existing));
        }
        self.snapshots
            .commit(&active.key)
            .map_err(BuildError::snapshot)?;
        let record = LayerRecord {
            chain_id: chain,
            diff_id: info.diff_id.clone(),
            parent: st.chain_id().cloned(),
            size: info.uncompressed_size,
            cache_id: active.key.clone(),
            blob,
            blob_size: info.size,
            media_type: info.media_type.clone(),
        };
        self.store.put_layer(&record).map_err(BuildError::store)?;
        guard.disarm();
        Ok(Some(record))
    }
}

/// The diffID of an empty layer: a tar of only the end-of-archive marker (1024 zero bytes).
fn empty_diff_id() -> Digest {
    Digest::of_bytes(&[0u8; 1024])
}

/// Removes a snapshot unless the step committed it.
struct SnapshotGuard<'a> {
    snapshots: &'a dyn Snapshotter,
    key: Option<String>,
}

impl SnapshotGuard<'_> {
    fn disarm(mut self) {
        self.key = None;
    }

    /// A complete snapshot that turned out to duplicate a committed layer: handed to the
    /// snapshotter's `discard` (overlay2 sets it aside for `prune`), deleted if that fails.
    fn discard(mut self) {
        if let Some(key) = self.key.take() {
            if self.snapshots.discard(&key).is_err() {
                let _ = self.snapshots.remove(&key);
            }
        }
    }
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.snapshots.remove(&key);
        }
    }
}
