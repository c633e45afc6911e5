//! Image config, history and manifests.
//!
//! * [`config`]: the Docker/OCI image config model, serialized deterministically.
//! * [`history`]: `created_by` strings in BuildKit and classic-builder style.
//! * [`index`]: the multi-manifest image a multi-platform build makes, as stored.
//! * [`manifest`]: OCI / Docker v2s2 manifests, OCI index, descriptors.
//! * [`reference`]: image reference parsing and normalization (`docker.io/library/x:latest`).
//! * [`layer_desc`]: the description of one stored layer blob.

pub mod config;
mod config_de;
pub mod history;
pub mod index;
pub mod layer_desc;
pub mod lenient;
pub mod manifest;
pub mod reference;
pub mod source_hash;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs, DEFAULT_PATH_ENV};
pub use history::HistoryFormat;
pub use layer_desc::LayerDesc;
pub use manifest::Descriptor;
pub use reference::Reference;

/// Errors of the image model.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A document that does not parse, with the JSON path of the bad field.
    #[error("invalid {0}")]
    Json(#[source] lenient::JsonError),
    /// Writing a document (never fails for rbuild's own types; kept for serde's signature).
    #[error("cannot write {what}: {source}")]
    Write {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("layer media type {0:?} has no Docker v2 schema 2 equivalent")]
    NoDockerMediaType(String),
}
