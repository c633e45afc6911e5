//! `rbuild load`: imports a docker-archive or OCI layout into the store and unpacks each new layer into a
//! snapshot once, so later builds use it as a base without extracting it again.

use crate::layer;
use crate::snapshot::Snapshotter;
use crate::store::Store;
use std::path::Path;

/// Unpacks a layer blob into a new snapshot on top of its parent's and checks its diffID; returns the
/// snapshot id (the layer's cache-id). Used by `load`, `pull` and the registry cache import.
pub fn unpack_layer(
    store: &Store,
    snapshots: &dyn Snapshotter,
    rec: &crate::store::LayerRecord,
    blob: &Path,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    // The parent snapshot is the one the store recorded for the parent chainID.
    let parent_cache = match &rec.parent {
        Some(p) => store
            .get_layer(p)
            .map_err(|e| e.to_string())?
            .map(|l| l.cache_id)
            .ok_or_else(|| format!("parent layer {p} of {} is missing", rec.chain_id))?,
        None => String::new(),
    };
    let snap = super::layer::prepare_leased(
        store,
        snapshots,
        if parent_cache.is_empty() {
            None
        } else {
            Some(parent_cache.as_str())
        },
    )?;
    let upper = snapshots.upper_dir(&snap.key)?;
    let res = (|| -> anyhow::Result<()> {
        let f = std::fs::File::open(blob)?;
        let (reader, _) = layer::compress::decompress(std::io::BufReader::new(f))?;
        let mut hashing = crate::digest::HashingReader::new(reader);
        layer::apply::apply(
            &mut hashing,
            &upper,
            &layer::ApplyOptions {
                whiteouts: layer::WhiteoutMode::Overlay,
                max_bytes: None,
                same_owner: true,
            },
        )?;
        // Drain the tar's zero-block padding so the diffID covers the whole stream.
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        let (_, diff_id, _) = hashing.finish();
        if diff_id != rec.diff_id {
            anyhow::bail!(
                "layer {}: its content has diffID {diff_id}, the image config says {}",
                rec.blob,
                rec.diff_id
            );
        }
        Ok(())
    })();
    let res = res.and_then(|()| Ok(snapshots.commit(&snap.key)?));
    if let Err(e) = res {
        let _ = snapshots.remove(&snap.key);
        return Err(e.into());
    }
    Ok(snap.key)
}

/// Loads the images in `input`; returns their names (or ids when untagged).
pub fn load(
    store: &Store,
    snapshots: &dyn Snapshotter,
    input: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut unpack =
        |rec: &crate::store::LayerRecord, blob: &Path| unpack_layer(store, snapshots, rec, blob);
    let loaded = store.load_archive(input, &mut unpack)?;
    Ok(loaded
        .into_iter()
        .flat_map(|l| {
            if l.tags.is_empty() {
                vec![l.id.to_string()]
            } else {
                l.tags
            }
        })
        .collect())
}
