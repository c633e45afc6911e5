//! Docker's `distribution/v2metadata-by-diffid` entries with their source repositories: where a
//! layer blob was pulled from or pushed to, so a push can cross-repo mount it instead of uploading.

use crate::digest::Digest;
use crate::store::{fsutil, Store, StoreError};
use serde::{Deserialize, Serialize};

/// One `v2metadata-by-diffid` entry (Docker's `metadata.V2Metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Metadata {
    #[serde(rename = "Digest")]
    pub digest: Digest,
    /// `host/path` of the repository (`docker.io/library/busybox`), empty when unknown.
    #[serde(rename = "SourceRepository", default)]
    pub source_repository: String,
    #[serde(rename = "HMAC", default)]
    pub hmac: String,
}

impl Store {
    fn v2metadata_path(&self, diff_id: &Digest) -> std::path::PathBuf {
        self.distribution_dir()
            .join("v2metadata-by-diffid")
            .join("sha256")
            .join(diff_id.hex())
    }

    /// The entries recorded for a diffID (unreadable entries count as none: it is only a hint).
    pub fn v2_metadata(&self, diff_id: &Digest) -> Vec<V2Metadata> {
        fsutil::read_opt(&self.v2metadata_path(diff_id))
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Records that blob `digest` of layer `diff_id` is in `source_repository`.
    pub fn add_v2_metadata(
        &self,
        diff_id: &Digest,
        digest: &Digest,
        source_repository: &str,
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut entries = self.v2_metadata(diff_id);
        // Drop the anonymous entry `put_layer` writes once a named one exists.
        entries.retain(|e| !(e.digest == *digest && e.source_repository.is_empty()));
        if entries
            .iter()
            .any(|e| e.digest == *digest && e.source_repository == source_repository)
        {
            return Ok(());
        }
        entries.push(V2Metadata {
            digest: digest.clone(),
            source_repository: source_repository.to_string(),
            hmac: String::new(),
        });
        let path = self.v2metadata_path(diff_id);
        let bytes = serde_json::to_vec(&entries).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&self.tmp_dir(), &path, &bytes)
    }
}
