//! `COPY --link` / `ADD --link` reuse across parents, as BuildKit does it.
//!
//! A --link layer is made in an empty root, so its bytes depend only on the instruction and what it
//! copies, never on the layers below. Besides the usual parent-chained cache record, such a step
//! records its layer under a *content key*: the same inputs chained from a fixed root instead of
//! the parent state. When the parent changes (a new base, an edited RUN above), the parent-chained
//! key misses but the content key still finds the layer made earlier; its stored blob is then
//! unpacked into a fresh snapshot on the new parent and recorded under the new chainID: same
//! diffID, same blob, nothing copied from the context again.

use super::cache::StepKey;
use super::error::BuildError;
use crate::digest::{chain_id, Digest};
use crate::snapshot::Snapshotter;
use crate::store::{CacheRecord, LayerRecord, Store};
use std::collections::BTreeMap;

/// The parent every content key chains from: the same for every parent state.
fn link_root() -> Digest {
    Digest::of_bytes(b"rbuild --link layer v1")
}

/// The parent-independent key of a --link step with these inputs.
pub fn content_key(inputs: &BTreeMap<String, String>) -> StepKey {
    StepKey::new(&link_root(), inputs.clone())
}

/// Records that the layer on top of `layers` is what the step keyed by `key` makes.
/// `config` is the image config after the step (kept so the record has the usual shape).
pub fn record(
    store: &Store,
    key: &StepKey,
    layer: &LayerRecord,
    config: Vec<u8>,
) -> Result<(), BuildError> {
    let rec = CacheRecord {
        config,
        chain_id: Some(layer.chain_id.clone()),
        inputs: key.inputs.clone(),
        parent: Some(key.parent.clone()),
    };
    store.cache_put(&key.key, &rec).map_err(BuildError::store)
}

/// What a successful reuse gives back: the layer stacked on the current parent, and the chainID
/// of the layer it was taken from.
pub struct Relinked {
    pub layer: LayerRecord,
    pub from: Digest,
}

/// Finds the layer made earlier for `key` (on any parent) and stacks it on `parent`: an existing
/// record for the new chainID is reused, otherwise the stored blob is unpacked into a new snapshot
/// on `parent`'s and recorded. `Ok(None)` when there is nothing to reuse (first build, pruned layer).
pub fn relink(
    store: &Store,
    snapshots: &dyn Snapshotter,
    parent: Option<&LayerRecord>,
    key: &StepKey,
) -> Result<Option<Relinked>, BuildError> {
    // Lookup and lease under the lock, so a concurrent prune cannot take the donor's blob between.
    let donor = {
        let _lock = store.lock().map_err(BuildError::store)?;
        let Some(rec) = store.cache_get(&key.key).map_err(BuildError::store)? else {
            return Ok(None);
        };
        let Some(c) = rec.chain_id else {
            return Ok(None);
        };
        let Some(layer) = store.get_layer(&c).map_err(BuildError::store)? else {
            return Ok(None);
        };
        if !store.has_blob(&layer.blob) {
            return Ok(None);
        }
        store.lease_layer(&c).map_err(BuildError::store)?;
        layer
    };
    let parent_chain = parent.map(|p| p.chain_id.clone());
    let chain = chain_id(parent_chain.as_ref(), &donor.diff_id);
    let existing = |store: &Store| -> Result<Option<LayerRecord>, BuildError> {
        let found = store.get_layer(&chain).map_err(BuildError::store)?;
        if found.is_some() {
            store.lease_layer(&chain).map_err(BuildError::store)?;
        }
        Ok(found)
    };
    {
        let _lock = store.lock().map_err(BuildError::store)?;
        if let Some(l) = existing(store)? {
            return Ok(Some(Relinked {
                layer: l,
                from: donor.chain_id,
            }));
        }
    }
    let mut rec = LayerRecord {
        chain_id: chain.clone(),
        diff_id: donor.diff_id.clone(),
        parent: parent_chain,
        size: donor.size,
        cache_id: String::new(),
        blob: donor.blob.clone(),
        blob_size: donor.blob_size,
        media_type: donor.media_type.clone(),
    };
    // Unpacking checks the blob against the diffID, so a damaged blob is refused, not stacked.
    rec.cache_id = super::load::unpack_layer(store, snapshots, &rec, &store.blob_path(&rec.blob))
        .map_err(BuildError::Layer)?;
    let _lock = store.lock().map_err(BuildError::store)?;
    if let Some(l) = existing(store)? {
        // A concurrent build stacked it first: use theirs, drop our snapshot.
        let _ = snapshots.remove(&rec.cache_id);
        return Ok(Some(Relinked {
            layer: l,
            from: donor.chain_id,
        }));
    }
    store.put_layer(&rec).map_err(BuildError::store)?;
    store.lease_layer(&chain).map_err(BuildError::store)?;
    Ok(Some(Relinked {
        layer: rec,
        from: donor.chain_id,
    }))
}
