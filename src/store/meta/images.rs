//! Images (`imagedb/`) and tags (`repositories.json`), in Docker's layout and formats.

use crate::digest::{chain_ids, Digest};
use crate::image::{ImageConfig, Reference};
use crate::store::fsutil::list_digest_names;
use crate::store::{fsutil, io_err, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `repositories.json`: `{"Repositories":{"<familiar name>":{"<name:tag|name@digest>":"sha256:<id>"}}}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Repositories {
    #[serde(rename = "Repositories", default)]
    pub repositories: BTreeMap<String, BTreeMap<String, Digest>>,
}

/// An image as listed by `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: Digest,
    /// Familiar `name:tag` references.
    pub repo_tags: Vec<String>,
    /// Familiar `name@sha256:…` manifest references.
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    /// Sum of the uncompressed sizes of the image's layers.
    pub size: u64,
    pub parent: Option<Digest>,
}

impl Store {
    fn image_content_path(&self, id: &Digest) -> std::path::PathBuf {
        self.imagedb_content_dir().join(id.hex())
    }

    fn image_metadata_dir(&self, id: &Digest) -> std::path::PathBuf {
        self.imagedb_metadata_dir().join(id.hex())
    }

    /// Stores an image config (bytes kept exactly; the id is their digest). Every layer of its
    /// `rootfs.diff_ids` must already be recorded (`put_layer`).
    pub fn put_image(
        &self,
        config_bytes: &[u8],
        parent: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let id = Digest::of_bytes(config_bytes);
        let config = ImageConfig::from_bytes(config_bytes)?;
        for chain in chain_ids(&config.rootfs.diff_ids) {
            if self.get_layer(&chain)?.is_none() {
                return Err(StoreError::MissingLayer {
                    image: id,
                    chain_id: chain,
                });
            }
        }
        let content = self.image_content_path(&id);
        if !content.is_file() {
            fsutil::write_atomic(&self.tmp_dir(), &content, config_bytes)?;
        }
        let meta = self.image_metadata_dir(&id);
        std::fs::create_dir_all(&meta).map_err(io_err(&meta))?;
        if let Some(p) = parent {
            fsutil::write_atomic(
                &self.tmp_dir(),
                &meta.join("parent"),
                p.to_string().as_bytes(),
            )?;
        }
        let now = crate::image::config::format_time(jiff::Timestamp::now());
        fsutil::write_atomic(&self.tmp_dir(), &meta.join("lastUpdated"), now.as_bytes())?;
        Ok(id)
    }

    /// The config bytes of an image.
    pub fn image_config(&self, id: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.image_content_path(id);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::ImageNotFound(id.to_string()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    pub fn has_image(&self, id: &Digest) -> bool {
        self.image_content_path(id).is_file()
    }

    /// When a tag last moved to the image (`metadata/<id>/lastUpdated`, RFC 3339), if ever.
    pub fn image_last_updated(&self, id: &Digest) -> Result<Option<String>, StoreError> {
        let p = self.image_metadata_dir(id).join("lastUpdated");
        Ok(fsutil::read_opt(&p)?.map(|s| s.trim().to_string()))
    }

    /// The parent image recorded by `put_image`.
    pub fn image_parent(&self, id: &Digest) -> Result<Option<Digest>, StoreError> {
        let p = self.image_metadata_dir(id).join("parent");
        fsutil::read_opt(&p)?
            .map(|s| {
                Digest::parse(s.trim()).map_err(|e| StoreError::Corrupt {
                    path: p.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// All image ids.
    pub fn list_image_ids(&self) -> Result<Vec<Digest>, StoreError> {
        list_digest_names(&self.imagedb_content_dir())
    }

    pub(crate) fn read_repositories(&self) -> Result<Repositories, StoreError> {
        let p = self.repositories_path();
        match fsutil::read_opt(&p)? {
            Some(s) => serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
                path: p,
                reason: e.to_string(),
            }),
            None => Ok(Repositories::default()),
        }
    }

    pub(crate) fn write_repositories(&self, repos: &Repositories) -> Result<(), StoreError> {
        let p = self.repositories_path();
        let bytes = serde_json::to_vec(repos).map_err(|e| StoreError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&self.tmp_dir(), &p, &bytes)
    }

    /// Points `reference` (a tag, or `name@digest` repo digest) at image `id`. A reference that
    /// denoted an index (`Store::tag_index`) now denotes this image only.
    pub fn tag(&self, reference: &Reference, id: &Digest) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        self.tag_image_only(reference, id)?;
        self.forget_index_ref(reference)
    }

    /// `tag` without touching index references.
    pub(crate) fn tag_image_only(
        &self,
        reference: &Reference,
        id: &Digest,
    ) -> Result<(), StoreError> {
        if !self.has_image(id) {
            return Err(StoreError::ImageNotFound(id.to_string()));
        }
        let _lock = self.lock()?;
        let mut repos = self.read_repositories()?;
        repos
            .repositories
            .entry(reference.familiar_name())
            .or_default()
            .insert(reference.familiar(), id.clone());
        self.write_repositories(&repos)?;
        let meta = self.image_metadata_dir(id);
        std::fs::create_dir_all(&meta).map_err(io_err(&meta))?;
        let now = crate::image::config::format_time(jiff::Timestamp::now());
        fsutil::write_atomic(&self.tmp_dir(), &meta.join("lastUpdated"), now.as_bytes())
    }

    /// Removes a tag; returns the image it pointed to.
    pub fn untag(&self, reference: &Reference) -> Result<Option<Digest>, StoreError> {
        let _lock = self.lock()?;
        self.forget_index_ref(reference)?;
        let mut repos = self.read_repositories()?;
        let name = reference.familiar_name();
        let Some(tags) = repos.repositories.get_mut(&name) else {
            return Ok(None);
        };
        let removed = tags.remove(&reference.familiar());
        if tags.is_empty() {
            repos.repositories.remove(&name);
        }
        if removed.is_some() {
            self.write_repositories(&repos)?;
        }
        Ok(removed)
    }

    /// References (familiar form) that point at `id`: (tags, repo digests).
    pub fn references_of(&self, id: &Digest) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let repos = self.read_repositories()?;
        let mut tags = Vec::new();
        let mut digests = Vec::new();
        for refs in repos.repositories.values() {
            for (r, target) in refs {
                if target == id {
                    if r.contains('@') {
                        digests.push(r.clone());
                    } else {
                        tags.push(r.clone());
                    }
                }
            }
        }
        Ok((tags, digests))
    }

    /// Finds an image by tag (`x`, `x:t`, `docker.io/library/x:t`), `name@digest`, full id
    /// (`sha256:…`) or a unique id prefix (`3f2a`).
    pub fn resolve(&self, name_or_id: &str) -> Result<Option<Digest>, StoreError> {
        if let Ok(d) = Digest::parse(name_or_id) {
            return Ok(self.has_image(&d).then_some(d));
        }
        if let Ok(r) = Reference::parse_tagged(name_or_id) {
            let repos = self.read_repositories()?;
            if let Some(id) = repos
                .repositories
                .get(&r.familiar_name())
                .and_then(|m| m.get(&r.familiar()))
            {
                return Ok(Some(id.clone()));
            }
            if let Some(d) = r.digest() {
                if self.has_image(d) {
                    return Ok(Some(d.clone()));
                }
            }
        }
        let prefix = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if prefix.is_empty()
            || prefix.len() > 64
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Ok(None);
        }
        let mut found = self
            .list_image_ids()?
            .into_iter()
            .filter(|id| id.hex().starts_with(prefix));
        match (found.next(), found.next()) {
            (Some(id), None) => Ok(Some(id)),
            _ => Ok(None), // none, or ambiguous
        }
    }

    /// Ids of images recorded with `id` as parent.
    pub fn children(&self, id: &Digest) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for other in self.list_image_ids()? {
            if self.image_parent(&other)?.as_ref() == Some(id) {
                out.push(other);
            }
        }
        Ok(out)
    }

    /// The top chainID of an image (None for an image without layers).
    pub fn image_top_layer(&self, id: &Digest) -> Result<Option<Digest>, StoreError> {
        let config = ImageConfig::from_bytes(&self.image_config(id)?)?;
        Ok(chain_ids(&config.rootfs.diff_ids).pop())
    }

    /// Summary of one image.
    pub fn image_summary(&self, id: &Digest) -> Result<ImageSummary, StoreError> {
        let config = ImageConfig::from_bytes(&self.image_config(id)?)?;
        let mut size = 0;
        for chain in chain_ids(&config.rootfs.diff_ids) {
            if let Some(l) = self.get_layer(&chain)? {
                size += l.size;
            }
        }
        let (repo_tags, repo_digests) = self.references_of(id)?;
        Ok(ImageSummary {
            id: id.clone(),
            repo_tags,
            repo_digests,
            created: config.created,
            size,
            parent: self.image_parent(id)?,
        })
    }

    /// All images, newest first (by `created`, then id).
    pub fn list_images(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let mut out = Vec::new();
        for id in self.list_image_ids()? {
            out.push(self.image_summary(&id)?);
        }
        out.sort_by(|a, b| {
            let ta = a
                .created
                .as_deref()
                .and_then(|c| c.parse::<jiff::Timestamp>().ok());
            let tb = b
                .created
                .as_deref()
                .and_then(|c| c.parse::<jiff::Timestamp>().ok());
            tb.cmp(&ta).then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Deletes an image's config and metadata and every reference to it. Layers stay until
    /// they are released (see `Store::remove_image` / `Store::prune`). Returns the removed references.
    pub fn delete_image(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        let _lock = self.lock()?;
        let mut repos = self.read_repositories()?;
        let mut removed = Vec::new();
        repos.repositories.retain(|_, refs| {
            refs.retain(|r, target| {
                let hit = target == id;
                if hit {
                    removed.push(r.clone());
                }
                !hit
            });
            !refs.is_empty()
        });
        if !removed.is_empty() {
            self.write_repositories(&repos)?;
        }
        for r in &removed {
            if let Ok(r) = Reference::parse(r) {
                self.forget_index_ref(&r)?;
            }
        }
        let content = self.image_content_path(id);
        match std::fs::remove_file(&content) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::ImageNotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(&content)(e)),
        }
        let meta = self.image_metadata_dir(id);
        match std::fs::remove_dir_all(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&meta)(e)),
        }
        Ok(removed)
    }
}
