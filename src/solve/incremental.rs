//! Incremental COPY (issue 21, `context::reuse`): a COPY that misses the cache links the files
//! it would copy unchanged from the snapshot the same instruction made last, if that snapshot is
//! still committed, and records what its own snapshot holds for the next one.

use super::error::BuildError;
use super::solver::Solver;
use crate::context::reuse::{Lineage, Reuse};
use crate::context::{MemoPath, Resolution};
use crate::digest::Digest;
use crate::store::LayerRecord;
use std::collections::BTreeMap;

impl Solver<'_> {
    /// The reuse state of a COPY step whose cache key inputs are `inputs`: its lineage is keyed
    /// by the instruction without its content (`sources`) or its `--from` stage's key, so an
    /// edit of the copied files finds the last snapshot. `link`: false under --no-cache (the
    /// copy only records).
    pub(super) fn copy_reuse(
        &self,
        inputs: &BTreeMap<String, String>,
        resolution: &Resolution,
        link: bool,
    ) -> Result<(Reuse, MemoPath), BuildError> {
        let mut lineage_inputs = inputs.clone();
        lineage_inputs.remove("sources");
        lineage_inputs.remove("from");
        let body = serde_json::to_vec(&lineage_inputs).unwrap_or_default();
        let key = Digest::of_bytes(&body);
        let memo = MemoPath::in_root(&self.opts.root, &format!("copy-lineage/{}.json", key.hex()));
        let prev = match Lineage::load(&memo).filter(|_| link) {
            Some(l) => self.committed_upper(&l)?.map(|dir| (dir, l)),
            None => None,
        };
        let digests = crate::context::resolved_digests(resolution);
        let reuse = Reuse::new(prev.as_ref().map(|(d, l)| (d.as_path(), l)), digests);
        Ok((reuse, memo))
    }

    /// The upper dir of the lineage's snapshot when its layer record still names it, leased
    /// for this build (so no prune takes it while files are linked from it).
    fn committed_upper(&self, l: &Lineage) -> Result<Option<std::path::PathBuf>, BuildError> {
        let Some(chain) = &l.chain_id else {
            return Ok(None);
        };
        let _lock = self.store.lock().map_err(BuildError::store)?;
        match self.store.get_layer(chain) {
            Ok(Some(rec)) if rec.cache_id == l.snapshot => {}
            _ => return Ok(None),
        }
        self.store.lease_layer(chain).map_err(BuildError::store)?;
        Ok(self
            .snapshots
            .upper_dir(&l.snapshot)
            .ok()
            .filter(|d| d.is_dir()))
    }

    /// Records the files of the layer a COPY committed, for its next run. A lineage is only a
    /// cache: failing to write it costs the next run its links, not its correctness.
    pub(super) fn save_lineage(&self, memo: &MemoPath, reuse: &Reuse, layer: &LayerRecord) {
        if let Some(l) = reuse.lineage(&layer.cache_id, &layer.chain_id) {
            let _ = memo.save(&l);
        }
    }
}
