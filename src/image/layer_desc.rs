//! The description of one stored layer blob.
//!
//! Same shape as `layer::LayerInfo` (owned by the layer module); the integrator unifies the two.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

/// One layer as it is stored and shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDesc {
    /// sha256 of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the blob as stored (compressed or not).
    pub digest: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    /// OCI layer media type, e.g. `application/vnd.oci.image.layer.v1.tar+gzip`.
    pub media_type: String,
}
