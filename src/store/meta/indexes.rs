//! Image indexes (`image/overlay2/indexdb/`, docs/store-layout.md "Image indexes"): the record of
//! a multi-platform build, and which references denote an index.
//!
//! Docker's classic store has no index: a tag names one image. rbuild keeps that
//! (`repositories.json` maps the tag to the index's default image, the host's platform when it
//! is in the index, else the first), so every single-image command keeps working, and records
//! beside it that the reference denotes the whole index (`indexdb/refs.json`). Moving the tag to
//! another image with [`Store::tag`] forgets that.

use crate::digest::Digest;
use crate::image::index::ImageIndex;
use crate::image::Reference;
use crate::store::fsutil::list_digest_names;
use crate::store::{fsutil, io_err, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `indexdb/refs.json`: familiar reference → index id.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct IndexRefs {
    #[serde(rename = "Refs", default)]
    pub refs: BTreeMap<String, Digest>,
}

impl Store {
    fn indexdb_dir(&self) -> PathBuf {
        self.image_dir().join("indexdb")
    }

    fn index_content_path(&self, id: &Digest) -> PathBuf {
        self.indexdb_dir()
            .join("content")
            .join("sha256")
            .join(id.hex())
    }

    fn index_refs_path(&self) -> PathBuf {
        self.indexdb_dir().join("refs.json")
    }

    pub(crate) fn read_index_refs(&self) -> Result<IndexRefs, StoreError> {
        Ok(fsutil::read_json_opt(&self.index_refs_path())?.unwrap_or_default())
    }

    fn write_index_refs(&self, refs: &IndexRefs) -> Result<(), StoreError> {
        let p = self.index_refs_path();
        let bytes = serde_json::to_vec(refs).map_err(|e| StoreError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        std::fs::create_dir_all(self.indexdb_dir()).map_err(io_err(&self.indexdb_dir()))?;
        fsutil::write_atomic(&self.tmp_dir(), &p, &bytes)
    }

    /// Stores an index record; every image entry must be in the store. The id is the digest
    /// of the record bytes (not of an OCI index: that depends on the export's compression).
    pub fn put_index(&self, index: &ImageIndex) -> Result<Digest, StoreError> {
        for id in index.image_ids() {
            if !self.has_image(id) {
                return Err(StoreError::ImageNotFound(id.to_string()));
            }
        }
        let bytes = index.to_bytes()?;
        let id = Digest::of_bytes(&bytes);
        let p = self.index_content_path(&id);
        if !p.is_file() {
            let dir = p.parent().map(PathBuf::from).unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            fsutil::write_atomic(&self.tmp_dir(), &p, &bytes)?;
        }
        Ok(id)
    }

    /// The index record `id`.
    pub fn get_index(&self, id: &Digest) -> Result<ImageIndex, StoreError> {
        let p = self.index_content_path(id);
        match std::fs::read(&p) {
            Ok(b) => ImageIndex::from_bytes(&b).map_err(|e| StoreError::Corrupt {
                path: p,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::ImageNotFound(id.to_string()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// All index record ids.
    pub fn list_index_ids(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.indexdb_dir().join("content").join("sha256");
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        list_digest_names(&dir)
    }

    /// The image a tag of this index points at in `repositories.json`: the `default` platform's
    /// image when the index has it, else the first image.
    pub fn index_default_image(
        index: &ImageIndex,
        default: (&str, &str, Option<&str>),
    ) -> Option<Digest> {
        index
            .image_for(default.0, default.1, default.2)
            .and_then(|e| e.image_id())
            .or_else(|| index.image_ids().next())
            .cloned()
    }

    /// Points `reference` at index `id`: `repositories.json` gets its default image (see
    /// [`Store::index_default_image`], `default` = os, arch, variant), `indexdb/refs.json` the index.
    pub fn tag_index(
        &self,
        reference: &Reference,
        id: &Digest,
        default: (&str, &str, Option<&str>),
    ) -> Result<(), StoreError> {
        let index = self.get_index(id)?;
        let image = Self::index_default_image(&index, default)
            .ok_or_else(|| StoreError::ImageNotFound(format!("{id} (an index without images)")))?;
        let _lock = self.lock()?;
        self.tag_image_only(reference, &image)?;
        let mut refs = self.read_index_refs()?;
        refs.refs.insert(reference.familiar(), id.clone());
        self.write_index_refs(&refs)
    }

    /// Forgets that `reference` denotes an index (the tag moved or went away).
    pub(crate) fn forget_index_ref(&self, reference: &Reference) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut refs = self.read_index_refs()?;
        if refs.refs.remove(&reference.familiar()).is_some() {
            self.write_index_refs(&refs)?;
        }
        Ok(())
    }

    /// The index `name` denotes: a reference tagged with [`Store::tag_index`] (whose tag still
    /// points at one of its images), or an index id (`sha256:…`, or a unique hex prefix).
    pub fn resolve_index(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        if let Ok(r) = Reference::parse_tagged(name) {
            let refs = self.read_index_refs()?;
            if let Some(id) = refs.refs.get(&r.familiar()) {
                return Ok(Some(id.clone()));
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut found = self
            .list_index_ids()?
            .into_iter()
            .filter(|id| id.hex().starts_with(prefix));
        match (found.next(), found.next()) {
            (Some(id), None) => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// References that denote an index, with the index id (familiar form, sorted).
    pub fn index_refs(&self) -> Result<Vec<(String, Digest)>, StoreError> {
        Ok(self.read_index_refs()?.refs.into_iter().collect())
    }

    /// Images that are members of an index some reference still denotes (GC keeps them even
    /// when no tag names them).
    pub fn indexed_image_ids(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for (_, id) in self.index_refs()? {
            if let Ok(index) = self.get_index(&id) {
                out.extend(index.image_ids().cloned());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Removes index records no reference denotes (`prune`).
    pub(crate) fn prune_indexes(&self) -> Result<usize, StoreError> {
        let live: Vec<Digest> = self.index_refs()?.into_iter().map(|(_, d)| d).collect();
        let mut removed = 0;
        for id in self.list_index_ids()? {
            if !live.contains(&id) {
                let p = self.index_content_path(&id);
                std::fs::remove_file(&p).map_err(io_err(&p))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
