//! `rbuild fsck --repair`: fixes one [`Problem`] found by the scan in `fsck`, or removes what
//! cannot be fixed together with everything that depends on it (see `fsck`'s module comment).

use super::fsck::{apply_blob, Memo};
use crate::digest::Digest;
use crate::layer::{self, Compression, LayerOptions};
use crate::snapshot::OverlaySnapshotter;
use crate::store::check::Problem;
use crate::store::{fsutil, io_err, LayerRecord, Store, StoreError};
use std::io;
use std::path::Path;

impl Store {
    /// Fixes one problem; returns the actions taken (empty: nothing to do or not repairable).
    pub(super) fn repair(
        &self,
        snapshots: &OverlaySnapshotter,
        problem: &Problem,
        memo: &mut Memo,
    ) -> Result<Vec<String>, StoreError> {
        let mut actions = Vec::new();
        match problem {
            Problem::BlobDigest { blob, .. } => {
                self.remove_blob(blob)?;
                self.remove_distribution(Some(blob), None)?;
                memo.blob_hash.remove(blob);
                memo.blob_diff.remove(blob);
                actions.push(format!("removed corrupt blob {blob}"));
            }
            Problem::CompressedForm { diff_id, form, .. } => {
                self.remove_compressed_form(diff_id, form)?;
                actions.push(format!("dropped compressed form {form} of {diff_id}"));
            }
            Problem::BlobMissing { chain_id, blob } => {
                let Some(rec) = self.get_layer(chain_id).ok().flatten() else {
                    return Ok(actions);
                };
                if self.regenerate_blob(snapshots, &rec)? {
                    memo.blob_hash.insert(blob.clone(), blob.clone());
                    actions.push(format!(
                        "regenerated blob {blob} of layer {chain_id} from its snapshot"
                    ));
                } else {
                    actions.extend(self.drop_layer(snapshots, chain_id, memo)?);
                }
            }
            Problem::SnapshotContent {
                chain_id, cache_id, ..
            } => {
                let rec = self.get_layer(chain_id).ok().flatten();
                let reapplied = match &rec {
                    Some(rec) if self.has_blob(&rec.blob) => {
                        let diff = snapshots.diff_dir(cache_id)?;
                        empty_dir(&diff)?;
                        apply_blob(&self.blob_path(&rec.blob), &diff).is_ok()
                    }
                    _ => false,
                };
                memo.snapshot.remove(cache_id);
                if reapplied {
                    actions.push(format!(
                        "re-extracted snapshot {cache_id} of layer {chain_id} from its blob"
                    ));
                } else {
                    actions.extend(self.drop_layer(snapshots, chain_id, memo)?);
                }
            }
            Problem::LayerUnreadable { chain_id, .. }
            | Problem::LayerChainId { chain_id, .. }
            | Problem::LayerParentMissing { chain_id, .. }
            | Problem::BlobDiffId { chain_id, .. }
            | Problem::SnapshotMissing { chain_id, .. }
            | Problem::SnapshotParent { chain_id, .. } => {
                actions.extend(self.drop_layer(snapshots, chain_id, memo)?);
            }
            Problem::ConfigDigest { image, .. }
            | Problem::ConfigInvalid { image, .. }
            | Problem::LayerMissing { image, .. } => {
                for r in self.delete_image(image)? {
                    actions.push(format!("untagged {r}"));
                }
                actions.push(format!("removed broken image {image}"));
            }
            Problem::ImageParentMissing { image, .. } => {
                let p = self.imagedb_metadata_dir().join(image.hex()).join("parent");
                remove_file_opt(&p)?;
                actions.push(format!("removed the dangling parent of image {image}"));
            }
            Problem::ImageMetadataOrphan { image } => {
                let p = self.imagedb_metadata_dir().join(image.hex());
                match std::fs::remove_dir_all(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&p)(e)),
                }
                actions.push(format!("removed metadata of missing image {image}"));
            }
            Problem::RepositoriesCorrupt { .. } => {
                // Tags are not derivable from content: keep the bad file for the user and
                // start from an empty one, so every other command works again.
                let p = self.repositories_path();
                let aside = p.with_extension(format!(
                    "json.corrupt-{}",
                    jiff::Timestamp::now().as_second()
                ));
                std::fs::rename(&p, &aside).map_err(io_err(&p))?;
                fsutil::write_atomic(&self.tmp_dir(), &p, br#"{"Repositories":{}}"#)?;
                actions.push(format!(
                    "moved unreadable repositories.json to {} (its tags are lost) and started an empty one",
                    aside.display()
                ));
            }
            Problem::TagDangling { reference, image } => {
                self.remove_reference(reference)?;
                actions.push(format!(
                    "untagged {reference} (its image {image} is missing)"
                ));
            }
            Problem::CacheUnreadable { key, .. } => {
                let p = self.cache_dir().join(key.hex());
                remove_file_opt(&p)?;
                actions.push(format!("removed unreadable cache record {key}"));
            }
            Problem::CacheDangling { key, .. } => {
                self.cache_delete(key)?;
                actions.push(format!("removed cache record {key} (its layer is gone)"));
            }
            Problem::SnapshotOrphan { .. } => {}
        }
        Ok(actions)
    }

    /// Removes a layer record and its snapshot (children go in later passes, as their parent
    /// is now missing).
    fn drop_layer(
        &self,
        snapshots: &OverlaySnapshotter,
        chain: &Digest,
        memo: &mut Memo,
    ) -> Result<Vec<String>, StoreError> {
        let mut actions = Vec::new();
        let dir = self.layer_dir(chain);
        if !dir.exists() {
            return Ok(actions);
        }
        let cache_id = fsutil::read_opt(&dir.join("cache-id"))
            .ok()
            .flatten()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let doomed = fsutil::temp_dir(&self.tmp_dir())?.keep();
        let target = doomed.join("layer");
        std::fs::rename(&dir, &target).map_err(io_err(&dir))?;
        std::fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        actions.push(format!("removed broken layer {chain}"));
        if !cache_id.is_empty() && snapshots.get(&cache_id).is_ok() {
            memo.snapshot.remove(&cache_id);
            // If children's snapshots still sit on it, it goes after them, as an orphan.
            if snapshots.remove(&cache_id).is_ok() {
                actions.push(format!("removed its snapshot {cache_id}"));
            }
        }
        Ok(actions)
    }

    /// Rebuilds a missing blob by re-tarring the snapshot, when that reproduces the recorded
    /// digest exactly (layers rbuild wrote itself, default compression, no clamped mtimes).
    fn regenerate_blob(
        &self,
        snapshots: &OverlaySnapshotter,
        rec: &LayerRecord,
    ) -> Result<bool, StoreError> {
        let Ok(diff) = snapshots.diff_dir(&rec.cache_id) else {
            return Ok(false);
        };
        if !diff.is_dir() {
            return Ok(false);
        }
        let compression = if rec.media_type.ends_with("gzip") {
            Compression::default()
        } else if rec.media_type.ends_with("zstd") {
            Compression::Zstd { level: 3 }
        } else {
            Compression::Uncompressed
        };
        let opts = LayerOptions {
            compression,
            clamp_mtime: None,
            ..Default::default()
        };
        let writer = self.new_blob_writer()?;
        let Ok((writer, info)) = layer::write_layer(&diff, writer, &opts) else {
            return Ok(false);
        };
        if info.diff_id != rec.diff_id {
            return Ok(false);
        }
        Ok(writer.commit(Some(&rec.blob)).is_ok())
    }

    /// Removes one `name:tag` / `name@digest` entry from repositories.json.
    fn remove_reference(&self, reference: &str) -> Result<(), StoreError> {
        let mut repos = self.read_repositories()?;
        for refs in repos.repositories.values_mut() {
            refs.remove(reference);
        }
        repos.repositories.retain(|_, refs| !refs.is_empty());
        self.write_repositories(&repos)
    }
}

fn empty_dir(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = entry.map_err(io_err(dir))?.path();
        let res = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        res.map_err(io_err(&p))?;
    }
    Ok(())
}

fn remove_file_opt(p: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(p)(e)),
    }
}
