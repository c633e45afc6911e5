//! The rows of `rbuild history`: an image's history entries with their layer sizes and the
//! stored images they complete, as the engine's image history API gives them (newest first).

use crate::digest::{chain_ids, Digest};
use crate::image::ImageConfig;
use crate::store::{LayerRecord, Store, StoreError};
use std::collections::BTreeSet;

/// One row of `history` (newest first), as the engine's image history API gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image this entry completes: the image itself for the newest row, a stored ancestor
    /// (its base image) for the row its history ends at, else None (`<missing>`).
    pub id: Option<Digest>,
    pub created: Option<String>,
    pub created_by: String,
    /// Uncompressed size of the entry's layer (0 for `empty_layer` entries).
    pub size: u64,
    pub comment: String,
}

/// The history rows of image `name`, newest first.
pub fn history_rows(store: &Store, name: &str) -> Result<Vec<HistoryRow>, StoreError> {
    let id = store
        .resolve(name)?
        .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?;
    let config = ImageConfig::from_bytes(&store.image_config(&id)?)?;
    let layers: Vec<LayerRecord> = match chain_ids(&config.rootfs.diff_ids).pop() {
        Some(top) => store.layer_chain(&top)?,
        None => Vec::new(),
    };
    let mut sizes = layers.iter().map(|l| l.size);
    let mut rows: Vec<HistoryRow> = Vec::new();
    let row = |created, created_by, size, comment| HistoryRow {
        id: None,
        created,
        created_by,
        size,
        comment,
    };
    if config.history.is_empty() {
        for l in &layers {
            rows.push(row(None, String::new(), l.size, String::new()));
        }
    } else {
        for h in &config.history {
            let size = if h.empty_layer {
                0
            } else {
                sizes.next().unwrap_or(0)
            };
            rows.push(row(
                h.created.clone(),
                h.created_by.clone(),
                size,
                h.comment.clone(),
            ));
        }
    }
    // Ancestors in the store name the row their own history ends at (Docker walks the parent
    // chain the same way; matching by history keeps a base image on its own row).
    let mut next = Some(id.clone());
    let mut seen = BTreeSet::new();
    while let Some(img) = next.filter(|i| seen.insert(i.clone())) {
        let cfg = ImageConfig::from_bytes(&store.image_config(&img)?)?;
        let n = if cfg.history.is_empty() {
            cfg.rootfs.diff_ids.len()
        } else {
            cfg.history.len()
        };
        let prefix = config
            .history
            .iter()
            .zip(&cfg.history)
            .all(|(a, b)| a.created_by == b.created_by);
        if n > 0 && n <= rows.len() && prefix && rows[n - 1].id.is_none() {
            rows[n - 1].id = Some(img.clone());
        }
        next = store.image_parent(&img)?;
    }
    rows.reverse();
    Ok(rows)
}
