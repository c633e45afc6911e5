//! Layer records in `image/overlay2/layerdb/sha256/<chainID>/`, in Docker's file format
//! (`diff`, `parent`, `size`, `cache-id`) plus `rbuild-blob.json` for the compressed blob we keep.

use crate::digest::{chain_id, Digest};
use crate::store::fsutil::list_digest_names;
use crate::store::{fsutil, io_err, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One layer of the store, keyed by chainID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Uncompressed tar size.
    pub size: u64,
    /// Snapshot id (`<root>/overlay2/<cache-id>`), owned by the snapshotter.
    pub cache_id: String,
    /// Digest of the blob as shipped (compressed).
    pub blob: Digest,
    pub blob_size: u64,
    pub media_type: String,
}

/// `rbuild-blob.json`.
#[derive(Serialize, Deserialize)]
struct BlobInfo {
    digest: Digest,
    size: u64,
    #[serde(rename = "mediaType")]
    media_type: String,
}

/// Docker's `v2metadata-by-diffid` entry.
#[derive(Serialize)]
struct V2Metadata<'a> {
    #[serde(rename = "Digest")]
    digest: &'a Digest,
    #[serde(rename = "SourceRepository")]
    source_repository: &'a str,
    #[serde(rename = "HMAC")]
    hmac: &'a str,
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> Result<(), StoreError> {
    let p = dir.join(name);
    std::fs::write(&p, content).map_err(io_err(&p))?;
    std::fs::File::open(&p)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&p))
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Store {
    /// Records a layer. Checks that the chainID matches parent + diffID, that the parent is
    /// recorded and that the blob is stored. Idempotent: an existing record is kept.
    pub fn put_layer(&self, rec: &LayerRecord) -> Result<(), StoreError> {
        let bad = |reason: String| StoreError::BadLayer {
            chain_id: rec.chain_id.clone(),
            reason,
        };
        let expect = chain_id(rec.parent.as_ref(), &rec.diff_id);
        if expect != rec.chain_id {
            return Err(bad(format!(
                "chainID does not match parent + diffID (expected {expect})"
            )));
        }
        if let Some(p) = &rec.parent {
            if self.get_layer(p)?.is_none() {
                return Err(bad(format!("parent layer {p} is not recorded")));
            }
        }
        if !self.has_blob(&rec.blob) {
            return Err(bad(format!("blob {} is not stored", rec.blob)));
        }
        if self.layer_dir(&rec.chain_id).is_dir() {
            return Ok(());
        }
        let tmp = fsutil::temp_dir(&self.tmp_dir())?;
        let d = tmp.path();
        write_file(d, "diff", rec.diff_id.to_string().as_bytes())?;
        if let Some(p) = &rec.parent {
            write_file(d, "parent", p.to_string().as_bytes())?;
        }
        write_file(d, "size", rec.size.to_string().as_bytes())?;
        write_file(d, "cache-id", rec.cache_id.as_bytes())?;
        let info = BlobInfo {
            digest: rec.blob.clone(),
            size: rec.blob_size,
            media_type: rec.media_type.clone(),
        };
        let info = serde_json::to_vec(&info).map_err(|e| corrupt(d, e.to_string()))?;
        write_file(d, "rbuild-blob.json", &info)?;
        fsutil::sync_dir(d)?;
        let tmp_path = tmp.keep();
        if !fsutil::rename_dir_into_place(&tmp_path, &self.layer_dir(&rec.chain_id))? {
            let _ = std::fs::remove_dir_all(&tmp_path);
        }
        self.write_distribution(rec)
    }

    /// Docker's distribution metadata: blob digest → diffID and diffID → blob digest.
    fn write_distribution(&self, rec: &LayerRecord) -> Result<(), StoreError> {
        let dist = self.distribution_dir();
        self.write_digest_to_diff(&rec.blob, &rec.diff_id)?;
        let by_diff = dist
            .join("v2metadata-by-diffid")
            .join("sha256")
            .join(rec.diff_id.hex());
        let meta = [V2Metadata {
            digest: &rec.blob,
            source_repository: "",
            hmac: "",
        }];
        let bytes = serde_json::to_vec(&meta).map_err(|e| corrupt(&by_diff, e.to_string()))?;
        fsutil::write_atomic(&self.tmp_dir(), &by_diff, &bytes)
    }

    /// Docker's `diffid-by-digest` entry: which diffID a blob decompresses to.
    pub(crate) fn write_digest_to_diff(
        &self,
        blob: &Digest,
        diff_id: &Digest,
    ) -> Result<(), StoreError> {
        let by_digest = self
            .distribution_dir()
            .join("diffid-by-digest")
            .join("sha256")
            .join(blob.hex());
        fsutil::write_atomic(&self.tmp_dir(), &by_digest, diff_id.to_string().as_bytes())
    }

    pub(crate) fn layer_dir(&self, chain_id: &Digest) -> std::path::PathBuf {
        self.layerdb_dir().join(chain_id.hex())
    }

    /// The layer with this chainID, if recorded.
    pub fn get_layer(&self, chain_id: &Digest) -> Result<Option<LayerRecord>, StoreError> {
        let dir = self.layer_dir(chain_id);
        let Some(diff) = fsutil::read_opt(&dir.join("diff"))? else {
            return Ok(None);
        };
        let parse = |name: &str, s: &str| {
            Digest::parse(s.trim()).map_err(|e| corrupt(&dir.join(name), e.to_string()))
        };
        let diff_id = parse("diff", &diff)?;
        let parent = fsutil::read_opt(&dir.join("parent"))?
            .map(|p| parse("parent", &p))
            .transpose()?;
        let size_path = dir.join("size");
        let size = fsutil::read_opt(&size_path)?
            .unwrap_or_default()
            .trim()
            .parse::<u64>()
            .map_err(|e| corrupt(&size_path, e.to_string()))?;
        let cache_id = fsutil::read_opt(&dir.join("cache-id"))?
            .unwrap_or_default()
            .trim()
            .to_string();
        let info_path = dir.join("rbuild-blob.json");
        let info: BlobInfo = match fsutil::read_opt(&info_path)? {
            Some(s) => serde_json::from_str(&s).map_err(|e| corrupt(&info_path, e.to_string()))?,
            None => return Err(corrupt(&info_path, "missing")),
        };
        Ok(Some(LayerRecord {
            chain_id: chain_id.clone(),
            diff_id,
            parent,
            size,
            cache_id,
            blob: info.digest,
            blob_size: info.size,
            media_type: info.media_type,
        }))
    }

    /// All recorded chainIDs.
    pub fn list_layers(&self) -> Result<Vec<Digest>, StoreError> {
        list_digest_names(&self.layerdb_dir())
    }

    /// The layers of a chain, bottom first (each chainID of `diff_ids`' prefixes).
    pub fn layer_chain(&self, top: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        let mut chain = Vec::new();
        let mut next = Some(top.clone());
        while let Some(id) = next {
            let rec = self
                .get_layer(&id)?
                .ok_or_else(|| corrupt(&self.layer_dir(&id), "layer record missing"))?;
            next = rec.parent.clone();
            chain.push(rec);
        }
        chain.reverse();
        Ok(chain)
    }

    /// Removes a layer record (not its blob, distribution metadata or snapshot).
    pub(crate) fn remove_layer(&self, rec: &LayerRecord) -> Result<(), StoreError> {
        let dir = self.layer_dir(&rec.chain_id);
        // Rename first so a concurrent reader never sees a half-deleted record.
        let doomed = fsutil::temp_dir(&self.tmp_dir())?.keep();
        let target = doomed.join("layer");
        match std::fs::rename(&dir, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        std::fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        Ok(())
    }

    /// Removes distribution metadata of a blob digest and/or a diffID no layer uses any more.
    pub(crate) fn remove_distribution(
        &self,
        blob: Option<&Digest>,
        diff_id: Option<&Digest>,
    ) -> Result<(), StoreError> {
        let dist = self.distribution_dir();
        let paths = [
            blob.map(|b| dist.join("diffid-by-digest").join("sha256").join(b.hex())),
            diff_id.map(|d| {
                dist.join("v2metadata-by-diffid")
                    .join("sha256")
                    .join(d.hex())
            }),
        ];
        for p in paths.into_iter().flatten() {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        Ok(())
    }
}
