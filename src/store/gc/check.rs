//! `Store::check`: re-verifies what the store holds (blob and config digests, layer chains),
//! so on-disk corruption is reported with the file involved instead of surfacing later.

use crate::digest::{chain_ids, Digest, HashingWriter};
use crate::image::ImageConfig;
use crate::store::{io_err, Store, StoreError};
use std::fmt;

/// One inconsistency found by [`Store::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    BlobDigest {
        blob: Digest,
        actual: Digest,
    },
    BlobMissing {
        chain_id: Digest,
        blob: Digest,
    },
    ConfigDigest {
        image: Digest,
        actual: Digest,
    },
    ConfigInvalid {
        image: Digest,
        reason: String,
    },
    LayerMissing {
        image: Digest,
        chain_id: Digest,
    },
    LayerUnreadable {
        chain_id: Digest,
        reason: String,
    },
    /// The record's chainID is not sha256(parent + " " + diffID).
    LayerChainId {
        chain_id: Digest,
        expected: Digest,
    },
    LayerParentMissing {
        chain_id: Digest,
        parent: Digest,
    },
    /// The blob decompresses to a tar whose digest is not the layer's diffID.
    BlobDiffId {
        chain_id: Digest,
        blob: Digest,
        actual: Digest,
    },
    SnapshotMissing {
        chain_id: Digest,
        cache_id: String,
    },
    SnapshotContent {
        chain_id: Digest,
        cache_id: String,
        reason: String,
    },
    /// The snapshot does not sit on the parent layer's snapshot.
    SnapshotParent {
        chain_id: Digest,
        cache_id: String,
    },
    /// A complete snapshot that no layer record and no running process owns.
    SnapshotOrphan {
        id: String,
    },
    RepositoriesCorrupt {
        reason: String,
    },
    TagDangling {
        reference: String,
        image: Digest,
    },
    ImageParentMissing {
        image: Digest,
        parent: Digest,
    },
    ImageMetadataOrphan {
        image: Digest,
    },
    CacheUnreadable {
        key: Digest,
        reason: String,
    },
    CacheDangling {
        key: Digest,
        chain_id: Digest,
    },
    /// A recorded compressed form whose blob is missing, corrupt or of another diffID.
    CompressedForm {
        diff_id: Digest,
        form: String,
        blob: Digest,
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BlobDigest { blob, actual } => {
                write!(f, "blob {blob} is corrupt (content hashes to {actual})")
            }
            Problem::BlobMissing { chain_id, blob } => {
                write!(f, "layer {chain_id}: blob {blob} is missing or corrupt")
            }
            Problem::ConfigDigest { image, actual } => {
                write!(f, "image {image}: config hashes to {actual}")
            }
            Problem::ConfigInvalid { image, reason } => {
                write!(f, "image {image}: invalid config: {reason}")
            }
            Problem::LayerMissing { image, chain_id } => {
                write!(f, "image {image}: layer {chain_id} is missing")
            }
            Problem::LayerUnreadable { chain_id, reason } => {
                write!(f, "layer {chain_id}: {reason}")
            }
            Problem::LayerChainId { chain_id, expected } => write!(
                f,
                "layer {chain_id}: chainID of its parent and diffID is {expected}"
            ),
            Problem::LayerParentMissing { chain_id, parent } => {
                write!(f, "layer {chain_id}: parent layer {parent} is missing")
            }
            Problem::BlobDiffId {
                chain_id,
                blob,
                actual,
            } => write!(
                f,
                "layer {chain_id}: blob {blob} decompresses to diffID {actual}"
            ),
            Problem::SnapshotMissing { chain_id, cache_id } => {
                write!(f, "layer {chain_id}: snapshot {cache_id:?} is missing")
            }
            Problem::SnapshotContent {
                chain_id,
                cache_id,
                reason,
            } => write!(f, "layer {chain_id}: snapshot {cache_id}: {reason}"),
            Problem::SnapshotParent { chain_id, cache_id } => write!(
                f,
                "layer {chain_id}: snapshot {cache_id} is not on its parent layer's snapshot"
            ),
            Problem::SnapshotOrphan { id } => {
                write!(f, "snapshot {id} belongs to no layer and no running build")
            }
            Problem::RepositoriesCorrupt { reason } => {
                write!(f, "repositories.json is unreadable: {reason}")
            }
            Problem::TagDangling { reference, image } => {
                write!(f, "tag {reference} points to missing image {image}")
            }
            Problem::ImageParentMissing { image, parent } => {
                write!(f, "image {image}: parent image {parent} is missing")
            }
            Problem::ImageMetadataOrphan { image } => {
                write!(f, "image metadata of {image} has no image config")
            }
            Problem::CacheUnreadable { key, reason } => {
                write!(f, "cache record {key}: {reason}")
            }
            Problem::CompressedForm {
                diff_id,
                form,
                blob,
                reason,
            } => write!(
                f,
                "compressed form {form} of {diff_id}: blob {blob} {reason}"
            ),
            Problem::CacheDangling { key, chain_id } => {
                write!(f, "cache record {key}: layer {chain_id} is missing")
            }
        }
    }
}

impl Store {
    /// Hashes every blob and config and walks every image's layer chain. Empty = healthy.
    pub fn check(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        for blob in self.list_blobs()? {
            let path = self.blob_path(&blob);
            let mut f = std::fs::File::open(&path).map_err(io_err(&path))?;
            let mut w = HashingWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut w).map_err(io_err(&path))?;
            let (_, actual, _) = w.finish();
            if actual != blob {
                problems.push(Problem::BlobDigest { blob, actual });
            }
        }
        for chain_id in self.list_layers()? {
            match self.get_layer(&chain_id) {
                Ok(Some(rec)) if !self.has_blob(&rec.blob) => problems.push(Problem::BlobMissing {
                    chain_id,
                    blob: rec.blob,
                }),
                Ok(_) => {}
                Err(e) => problems.push(Problem::LayerUnreadable {
                    chain_id,
                    reason: e.to_string(),
                }),
            }
        }
        for image in self.list_image_ids()? {
            let bytes = self.image_config(&image)?;
            let actual = Digest::of_bytes(&bytes);
            if actual != image {
                problems.push(Problem::ConfigDigest {
                    image: image.clone(),
                    actual,
                });
            }
            match ImageConfig::from_bytes(&bytes) {
                Ok(cfg) => {
                    for chain_id in chain_ids(&cfg.rootfs.diff_ids) {
                        if !matches!(self.get_layer(&chain_id), Ok(Some(_))) {
                            problems.push(Problem::LayerMissing {
                                image: image.clone(),
                                chain_id,
                            });
                        }
                    }
                }
                Err(e) => problems.push(Problem::ConfigInvalid {
                    image,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(problems)
    }
}
