//! Outputs (one image, or an image index: `index`): docker-archive (Docker 25+ layout, also a valid OCI layout) and OCI image layout
//! (directory or tar). All writers produce deterministic bytes and never recompress: layer blobs
//! are streamed from their files and verified against their digests on the way.

pub mod docker_archive;
pub mod index;
pub mod layout;
pub mod oci_layout;
pub mod tar_writer;

pub use docker_archive::docker_archive;
pub use index::{
    docker_index_archive, oci_index_dir, oci_index_tar, ExportContent, ExportEntry, ExportIndex,
};
pub use layout::{blob_name, OCI_LAYOUT, OCI_LAYOUT_DOCKER};
pub use oci_layout::{oci_layout_dir, oci_layout_tar};

use crate::digest::Digest;
use crate::image::{ImageConfig, ImageError, LayerDesc, Reference};
use std::path::PathBuf;

/// An image ready to be written: config bytes exactly as hashed, layer blobs on disk, tags.
#[derive(Debug, Clone)]
pub struct ExportImage {
    pub config_bytes: Vec<u8>,
    /// Layers bottom first, each with the file holding its blob (as described, never recompressed).
    pub layers: Vec<(LayerDesc, PathBuf)>,
    /// References such as `app:1.0` or `docker.io/library/app:latest`.
    pub tags: Vec<String>,
}

/// Errors of the exporters.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(#[source] std::io::Error),
    #[error("blob {path} does not match its descriptor: expected {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes)")]
    BlobMismatch {
        path: PathBuf,
        expected: Digest,
        expected_size: u64,
        actual: Digest,
        actual_size: u64,
    },
    #[error("image has {layers} layer blobs but its config lists {diff_ids} diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("layer {index}: descriptor diffID {desc} differs from config diff_ids entry {config}")]
    DiffIdMismatch {
        index: usize,
        desc: Digest,
        config: Digest,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ExportImage {
    /// Checks that layers and config agree, and returns the parsed config and tag references.
    pub(crate) fn validate(&self) -> Result<(ImageConfig, Vec<Reference>), ExportError> {
        let config = ImageConfig::from_bytes(&self.config_bytes)?;
        if config.rootfs.diff_ids.len() != self.layers.len() {
            return Err(ExportError::LayerCount {
                layers: self.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        for (index, ((desc, _), config_diff)) in
            self.layers.iter().zip(&config.rootfs.diff_ids).enumerate()
        {
            if &desc.diff_id != config_diff {
                return Err(ExportError::DiffIdMismatch {
                    index,
                    desc: desc.diff_id.clone(),
                    config: config_diff.clone(),
                });
            }
        }
        let refs = self
            .tags
            .iter()
            .map(|t| Reference::parse_tagged(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((config, refs))
    }

    pub(crate) fn layer_descs(&self) -> Vec<LayerDesc> {
        self.layers.iter().map(|(d, _)| d.clone()).collect()
    }
}

/// Seconds since the epoch of the config's `created`, the mtime Docker gives config and layer
/// entries; 0 when absent or unparsable.
pub(crate) fn created_mtime(config: &ImageConfig) -> u64 {
    config
        .created
        .as_deref()
        .and_then(|c| c.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_second().max(0) as u64)
}
