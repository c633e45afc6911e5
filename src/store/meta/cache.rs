//! Build cache records: what a build step produced, keyed by the step's cache key.
//!
//! `cache/sha256/<key hex>` holds the record as JSON; `cache/by-parent/<parent hex | root>/<key hex>`
//! (empty files) index records by their parent key, so a miss can be explained by listing the
//! records that followed the same parent and diffing their `inputs`.

use crate::digest::Digest;
use crate::store::fsutil::list_digest_names;
use crate::store::{fsutil, io_err, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The outcome of one cached build step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Image config bytes after the step (kept exactly; stored as a JSON string).
    #[serde(with = "config_text")]
    pub config: Vec<u8>,
    /// Top layer after the step (None: no layers yet, e.g. `FROM scratch` + metadata).
    pub chain_id: Option<Digest>,
    /// Human-readable inputs of the key (instruction, file hashes, args) for miss explanations.
    pub inputs: BTreeMap<String, String>,
    /// Cache key of the previous step.
    pub parent: Option<Digest>,
}

/// Config bytes are JSON text; store them as a string so the record stays readable.
mod config_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        s.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

impl Store {
    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.cache_dir().join(key.hex())
    }

    fn cache_parent_dir(&self, parent: Option<&Digest>) -> PathBuf {
        self.cache_by_parent_dir()
            .join(parent.map_or("root", |p| p.hex()))
    }

    /// The record stored under `key`, if any.
    pub fn cache_get(&self, key: &Digest) -> Result<Option<CacheRecord>, StoreError> {
        fsutil::read_json_opt(&self.cache_path(key))
    }

    /// Stores (or replaces) the record for `key`.
    pub fn cache_put(&self, key: &Digest, rec: &CacheRecord) -> Result<(), StoreError> {
        let p = self.cache_path(key);
        let bytes = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        let idx = self.cache_parent_dir(rec.parent.as_ref());
        std::fs::create_dir_all(&idx).map_err(io_err(&idx))?;
        fsutil::write_atomic(&self.tmp_dir(), &idx.join(key.hex()), b"")?;
        fsutil::write_atomic(&self.tmp_dir(), &p, &bytes)
    }

    /// Records whose parent key is `parent` (None: first steps), to explain a cache miss.
    pub fn cache_candidates(
        &self,
        parent: Option<&Digest>,
    ) -> Result<Vec<(Digest, CacheRecord)>, StoreError> {
        let idx = self.cache_parent_dir(parent);
        if !idx.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for key in list_digest_names(&idx)? {
            // The index may be stale after a prune: only records that exist count.
            if let Some(rec) = self.cache_get(&key)? {
                if rec.parent.as_ref() == parent {
                    out.push((key, rec));
                }
            }
        }
        Ok(out)
    }

    /// All cache keys.
    pub fn cache_keys(&self) -> Result<Vec<Digest>, StoreError> {
        list_digest_names(&self.cache_dir())
    }

    /// Deletes a cache record and its index entry.
    pub fn cache_delete(&self, key: &Digest) -> Result<(), StoreError> {
        if let Some(rec) = self.cache_get(key)? {
            let idx = self.cache_parent_dir(rec.parent.as_ref()).join(key.hex());
            match std::fs::remove_file(&idx) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&idx)(e)),
            }
        }
        let p = self.cache_path(key);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }
}
