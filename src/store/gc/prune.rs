//! `rmi`, `prune` and `df` as data: what was untagged, deleted and freed. `cli::render` prints
//! them as the docker CLI does; the caller removes the snapshots of freed layers.

use crate::digest::Digest;
use crate::image::Reference;
use crate::snapshot::OverlaySnapshotter;
use crate::store::{ImageSummary, LayerRecord, Store, StoreError};
use std::collections::BTreeSet;

/// One line of `rmi`'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RmiEvent {
    /// A reference removed (`Untagged: app:1`).
    Untagged(String),
    /// An image id or a layer chainID deleted (`Deleted: sha256:…`).
    Deleted(Digest),
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted_images: Vec<Digest>,
    /// Removed layers (their chainIDs), in removal order.
    pub deleted_layers: Vec<Digest>,
    pub deleted_blobs: usize,
    pub deleted_cache_records: usize,
    /// Bytes freed (layer sizes plus blob sizes).
    pub freed_bytes: u64,
    /// Cache-ids of removed layers: the caller removes those snapshots.
    pub freed_snapshots: Vec<String>,
}

/// What `prune_snapshots` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotPrune {
    /// Snapshots no layer record and no running process owned.
    pub removed: Vec<String>,
    /// Duplicate snapshots builds had set aside.
    pub trash: usize,
}

/// `df`'s numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub images: usize,
    /// Images with a tag or digest reference.
    pub active_images: usize,
    pub images_size: u64,
    /// Size of the layers only untagged images use.
    pub reclaimable: u64,
    pub cache_records: usize,
    /// Size of the layers only cache records use.
    pub cache_size: u64,
}

/// Chains (layer ids) referenced by images and, unless `ignore_cache`, cache records.
fn referenced_layers(store: &Store, ignore_cache: bool) -> Result<BTreeSet<Digest>, StoreError> {
    let mut tops = Vec::new();
    for id in store.list_image_ids()? {
        if let Some(t) = store.image_top_layer(&id)? {
            tops.push(t);
        }
    }
    if !ignore_cache {
        for key in store.cache_keys()? {
            if let Some(c) = store.cache_get(&key)?.and_then(|r| r.chain_id) {
                tops.push(c);
            }
        }
    }
    let mut set = BTreeSet::new();
    for t in tops {
        let mut next = Some(t);
        while let Some(id) = next {
            if !set.insert(id.clone()) {
                break;
            }
            next = store.get_layer(&id)?.and_then(|l| l.parent);
        }
    }
    Ok(set)
}

/// Removes layers not in `keep` among `candidates` and blobs no remaining layer uses.
/// Returns (removed layers, removed blob count, freed bytes).
fn collect_garbage(
    store: &Store,
    candidates: &[Digest],
    keep: &BTreeSet<Digest>,
) -> Result<(Vec<LayerRecord>, usize, u64), StoreError> {
    // Layers that running builds and loads hold (leases) stay, with their parents.
    let (leased, _) = store.read_leases()?;
    let leased_blobs = leased.blobs;
    let mut keep = keep.clone();
    for l in leased.layers {
        let mut next = Some(l);
        while let Some(id) = next {
            if !keep.insert(id.clone()) {
                break;
            }
            next = store.get_layer(&id)?.and_then(|l| l.parent);
        }
    }
    let mut removed = Vec::new();
    let mut freed = 0;
    for c in candidates {
        if keep.contains(c) {
            continue;
        }
        if let Some(rec) = store.get_layer(c)? {
            store.remove_layer(&rec)?;
            freed += rec.size;
            removed.push(rec);
        }
    }
    let mut live_blobs = BTreeSet::new();
    let mut live_diffs = BTreeSet::new();
    for l in store.list_layers()? {
        if let Some(rec) = store.get_layer(&l)? {
            live_blobs.insert(rec.blob);
            live_diffs.insert(rec.diff_id);
        }
    }
    // Compressed forms live while a layer with their diffID does.
    live_blobs.extend(store.gc_compressed_forms(&live_diffs)?);
    let mut blobs = 0;
    for b in store.list_blobs()? {
        if !live_blobs.contains(&b) && !leased_blobs.contains(&b) {
            freed += std::fs::metadata(store.blob_path(&b)).map_or(0, |m| m.len());
            store.remove_blob(&b)?;
            store.remove_distribution(Some(&b), None)?;
            blobs += 1;
        }
    }
    for rec in &removed {
        if !live_diffs.contains(&rec.diff_id) {
            store.remove_distribution(None, Some(&rec.diff_id))?;
        }
    }
    Ok((removed, blobs, freed))
}

impl Store {
    /// `rmi NAME`: untags, deletes the image and its layers no other image or cache record uses.
    /// Refuses an image used by several repositories (unless `force`) or by child images.
    /// Returns the output lines and the cache-ids of freed layers (the caller removes those
    /// snapshots).
    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
    ) -> Result<(Vec<RmiEvent>, Vec<String>), StoreError> {
        let _lock = self.lock()?;
        let mut events = Vec::new();
        let mut freed = Vec::new();
        let id = self
            .resolve(name)?
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?;
        let (tags, digests) = self.references_of(&id)?;
        let by_ref = Reference::parse_tagged(name)
            .ok()
            .filter(|r| tags.contains(&r.familiar()) || digests.contains(&r.familiar()));
        if let Some(r) = &by_ref {
            if tags.len() + digests.len() > 1 && !force {
                // Other names still point at the image: only this one goes.
                self.untag(r)?;
                events.push(RmiEvent::Untagged(r.familiar()));
                return Ok((events, freed));
            }
        } else if tags.len() > 1 && !force {
            return Err(StoreError::Conflict {
                id: id.short().to_string(),
                reason: "must be forced - image is referenced in multiple repositories".into(),
            });
        }
        // A member of a multi-platform name: removing it by id would break that name's index.
        if by_ref.is_none() && self.indexed_image_ids()?.contains(&id) {
            let names: Vec<String> = self
                .index_refs()?
                .into_iter()
                .filter(|(_, ix)| {
                    self.get_index(ix)
                        .is_ok_and(|i| i.image_ids().any(|m| m == &id))
                })
                .map(|(n, _)| n)
                .collect();
            if !force {
                return Err(StoreError::Conflict {
                    id: id.short().to_string(),
                    reason: format!(
                        "image is a platform of the multi-platform image {}",
                        names.join(", ")
                    ),
                });
            }
            for n in names {
                if let Ok(r) = Reference::parse(&n) {
                    self.forget_index_ref(&r)?;
                }
            }
        }
        if !self.children(&id)?.is_empty() {
            return Err(StoreError::Conflict {
                id: id.short().to_string(),
                reason: "cannot be forced - image has dependent child images".into(),
            });
        }
        let top = self.image_top_layer(&id)?;
        for r in self.delete_image(&id)? {
            events.push(RmiEvent::Untagged(r));
        }
        events.push(RmiEvent::Deleted(id.clone()));
        if let Some(top) = top {
            let chain: Vec<Digest> = self
                .layer_chain(&top)?
                .into_iter()
                .rev()
                .map(|l| l.chain_id)
                .collect();
            let keep = referenced_layers(self, false)?;
            let (removed, _, _) = collect_garbage(self, &chain, &keep)?;
            for rec in removed {
                events.push(RmiEvent::Deleted(rec.chain_id));
                freed.push(rec.cache_id);
            }
        }
        Ok((events, freed))
    }

    /// `df`: space used by images and build cache.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let images = self.list_images()?;
        let tagged: Vec<&ImageSummary> = images
            .iter()
            .filter(|i| !i.repo_tags.is_empty() || !i.repo_digests.is_empty())
            .collect();
        let layers_of = |ids: &[&Digest]| -> Result<BTreeSet<Digest>, StoreError> {
            let mut set = BTreeSet::new();
            for id in ids {
                if let Some(top) = self.image_top_layer(id)? {
                    for l in self.layer_chain(&top)? {
                        set.insert(l.chain_id);
                    }
                }
            }
            Ok(set)
        };
        let size_of = |set: &BTreeSet<Digest>| -> Result<u64, StoreError> {
            let mut total = 0;
            for c in set {
                total += self.get_layer(c)?.map_or(0, |l| l.size);
            }
            Ok(total)
        };
        let all_ids: Vec<&Digest> = images.iter().map(|i| &i.id).collect();
        let tagged_ids: Vec<&Digest> = tagged.iter().map(|i| &i.id).collect();
        let image_layers = layers_of(&all_ids)?;
        let active_layers = layers_of(&tagged_ids)?;
        let with_cache = referenced_layers(self, false)?;
        let cache_only: BTreeSet<Digest> = with_cache.difference(&image_layers).cloned().collect();
        Ok(DiskUsage {
            images: images.len(),
            active_images: tagged.len(),
            images_size: size_of(&image_layers)?,
            reclaimable: size_of(&image_layers.difference(&active_layers).cloned().collect())?,
            cache_records: self.cache_keys()?.len(),
            cache_size: size_of(&cache_only)?,
        })
    }

    /// `prune`: deletes cache records whose layers are gone (all of them if `all`, plus untagged
    /// childless images), then every layer and blob nothing references.
    ///
    /// Layers a running build or load has written (or uses) but not yet referenced are in its
    /// lease (`store::lease`) and survive; [`Store::prune_snapshots`] then removes unowned
    /// snapshots.
    pub fn prune(&self, all: bool) -> Result<PruneReport, StoreError> {
        let _lock = self.lock()?;
        let mut report = PruneReport::default();
        if all {
            // Members of a tagged index are named through it.
            let indexed = self.indexed_image_ids()?;
            for img in self.list_images()? {
                let named = !img.repo_tags.is_empty()
                    || !img.repo_digests.is_empty()
                    || indexed.contains(&img.id);
                if !named && self.children(&img.id)?.is_empty() {
                    self.delete_image(&img.id)?;
                    report.deleted_images.push(img.id);
                }
            }
        }
        self.prune_indexes()?;
        for key in self.cache_keys()? {
            let stale = match self.cache_get(&key)? {
                Some(rec) => match &rec.chain_id {
                    Some(c) => self.get_layer(c)?.is_none(),
                    None => false,
                },
                None => true,
            };
            if all || stale {
                self.cache_delete(&key)?;
                report.deleted_cache_records += 1;
            }
        }
        let keep = referenced_layers(self, false)?;
        let candidates = self.list_layers()?;
        let (removed, blobs, freed) = collect_garbage(self, &candidates, &keep)?;
        report.deleted_blobs = blobs;
        report.freed_bytes = freed;
        for rec in removed {
            report.deleted_layers.push(rec.chain_id);
            report.freed_snapshots.push(rec.cache_id);
        }
        Ok(report)
    }

    /// After [`Store::prune`]/[`Store::remove_image`]: removes every snapshot that no layer
    /// record and no running process owns (what those freed, and what killed builds left).
    pub fn prune_snapshots(
        &self,
        snapshots: &OverlaySnapshotter,
    ) -> Result<SnapshotPrune, StoreError> {
        let _lock = self.lock()?;
        let orphans = self.orphan_snapshots(snapshots)?;
        let removed = super::snapshots::remove_snapshots(snapshots, orphans);
        let trash = snapshots.empty_trash()?;
        Ok(SnapshotPrune { removed, trash })
    }
}
