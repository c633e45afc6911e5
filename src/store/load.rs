//! `load`: imports a docker-archive (any `docker save` version, skopeo's too) or an OCI layout
//! (directory or tar) into the store, verifying every blob against its digest and every layer
//! against the config's diffIDs; and `export_image`, the reverse direction's input.

use crate::digest::{chain_id, Digest};
use crate::export::docker_archive::ManifestItem;
use crate::export::ExportImage;
use crate::image::config::host_architecture;
use crate::image::manifest::{
    oci_layer_media_type, Descriptor, Index, Manifest, ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD, MEDIA_OCI_MANIFEST,
};
use crate::image::{ImageConfig, LayerDesc, Reference};
use crate::layer::blob_codec::{self, Codec};
use crate::store::LayerForm;
use crate::store::{fsutil, io_err, LayerRecord, Store, StoreError};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Callback that turns a layer blob into a snapshot and returns its cache-id.
pub type ExtractFn<'a> =
    dyn FnMut(&LayerRecord, &Path) -> Result<String, Box<dyn std::error::Error + Send + Sync>> + 'a;

/// An image imported by `load_archive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    /// References tagged (familiar form).
    pub tags: Vec<String>,
}

/// Files of the archive being loaded, addressable by their in-archive name.
enum Source {
    /// An OCI layout directory: only `index.json` and digest-named blobs are ever opened, so
    /// every path is built from a validated digest, never from archive text.
    Dir(PathBuf),
    /// A tar unpacked into numbered files (names never touch the filesystem).
    Staged {
        _dir: tempfile::TempDir,
        files: BTreeMap<String, PathBuf>,
        links: BTreeMap<String, String>,
    },
}

/// Largest manifest, index, config or `manifest.json` read into memory (containerd's
/// `MaxManifestSize` is 4,393,216 bytes; SECURITY F3/F7).
const MAX_DOCUMENT: u64 = 4 << 20;

/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;

/// The entry of a nested index to load: the host's platform, else one without a platform,
/// else the first; never an attestation manifest (BuildKit's provenance/SBOM).
fn host_entry(index: &Index) -> Option<&Descriptor> {
    let host = host_architecture();
    let images = || index.manifests.iter().filter(|d| !d.is_attestation());
    images()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host)
        })
        .or_else(|| images().find(|m| m.platform.is_none()))
        .or_else(|| images().next())
}

/// Most layers an image may have (Docker's overlay2 stops at 128 lower dirs; SECURITY F3).
const MAX_LAYERS: usize = 1000;

/// Reads at most [`MAX_DOCUMENT`] bytes of `path`; a larger file is an error, never a big
/// allocation.
fn read_document(path: &Path, name: &str) -> Result<Vec<u8>, StoreError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > MAX_DOCUMENT {
        return Err(StoreError::Load {
            path: path.to_path_buf(),
            reason: format!("{name} is larger than {MAX_DOCUMENT} bytes"),
        });
    }
    Ok(buf)
}

/// What a document says it is (`mediaType`), when it says so.
fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Head>(bytes).ok()?.media_type
}

/// Lexically normalizes an in-archive name; None if it escapes the archive root.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl Source {
    fn stage_tar(store: &Store, path: &Path) -> Result<Source, StoreError> {
        let dir = fsutil::temp_dir(&store.tmp_dir())?;
        let f = File::open(path).map_err(io_err(path))?;
        let mut ar = tar::Archive::new(f);
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        let bad = |e: io::Error| StoreError::Load {
            path: path.to_path_buf(),
            reason: format!("reading tar: {e}"),
        };
        for (n, entry) in ar.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.to_string_lossy().to_string();
            let Some(name) = normalize(&raw) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let staged = dir.path().join(n.to_string());
                let mut out = File::create(&staged).map_err(io_err(&staged))?;
                io::copy(&mut entry, &mut out).map_err(io_err(&staged))?;
                files.insert(name, staged);
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.to_string_lossy().to_string())
                    .unwrap_or_default();
                let resolved = if kind.is_symlink() {
                    let parent = Path::new(&name)
                        .parent()
                        .map(|p| p.to_string_lossy().to_string())
                        .unwrap_or_default();
                    normalize(&format!("{parent}/{target}"))
                } else {
                    normalize(&target)
                };
                if let Some(t) = resolved {
                    links.insert(name, t);
                }
            }
        }
        Ok(Source::Staged {
            _dir: dir,
            files,
            links,
        })
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        match self {
            Source::Dir(root) => {
                let name = normalize(name)?;
                // Only fixed names and digest-addressed blobs.
                if name == "index.json" || name == "manifest.json" {
                    return Some(root.join(name)).filter(|p| p.is_file());
                }
                let hex = name.strip_prefix("blobs/sha256/")?;
                let d = Digest::from_hex(hex).ok()?;
                Some(root.join("blobs").join("sha256").join(d.hex())).filter(|p| p.is_file())
            }
            Source::Staged { files, links, .. } => {
                let mut name = normalize(name)?;
                for _ in 0..16 {
                    if let Some(p) = files.get(&name) {
                        return Some(p.clone());
                    }
                    name = links.get(&name)?.clone();
                }
                None
            }
        }
    }

    fn blob(&self, d: &Digest) -> Option<PathBuf> {
        self.file(&format!("blobs/sha256/{}", d.hex()))
    }
}

/// One image found in the archive, before import.
struct Candidate {
    config: Vec<u8>,
    /// Layer file and, when known, its descriptor.
    layers: Vec<(PathBuf, Option<Descriptor>)>,
    tags: Vec<Reference>,
    manifest_digest: Option<Digest>,
}

impl Store {
    /// Imports every image of a docker-archive or OCI layout (directory or tar). For each new
    /// layer the blob is stored, then `extract` makes the snapshot and returns its cache-id.
    pub fn load_archive(
        &self,
        path: &Path,
        extract: &mut ExtractFn<'_>,
    ) -> Result<Vec<LoadedImage>, StoreError> {
        let src = if path.is_dir() {
            Source::Dir(path.to_path_buf())
        } else {
            Source::stage_tar(self, path)?
        };
        let load_err = |reason: String| StoreError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let read = |name: &str| -> Result<Vec<u8>, StoreError> {
            let p = src
                .file(name)
                .ok_or_else(|| load_err(format!("{name} is missing")))?;
            read_document(&p, name)
        };
        let candidates = if src.file("manifest.json").is_some() {
            self.docker_candidates(&src, &read("manifest.json")?, &load_err)?
        } else if src.file("index.json").is_some() {
            self.oci_candidates(&src, &read("index.json")?, &load_err)?
        } else {
            return Err(load_err(
                "neither manifest.json nor index.json found".into(),
            ));
        };
        let mut loaded = Vec::new();
        for c in candidates {
            loaded.push(self.import(c, extract, &load_err)?);
        }
        Ok(loaded)
    }

    fn docker_candidates(
        &self,
        src: &Source,
        manifest_json: &[u8],
        load_err: &dyn Fn(String) -> StoreError,
    ) -> Result<Vec<Candidate>, StoreError> {
        let items: Vec<ManifestItem> = serde_json::from_slice(manifest_json)
            .map_err(|e| load_err(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for item in items {
            let cfg_path = src
                .file(&item.config)
                .ok_or_else(|| load_err(format!("config {} is missing", item.config)))?;
            let config = read_document(&cfg_path, &item.config)?;
            let parsed = ImageConfig::from_bytes(&config)
                .map_err(|e| load_err(format!("{}: {e}", item.config)))?;
            if item.layers.len() > MAX_LAYERS {
                return Err(load_err(format!(
                    "{} has {} layers, more than {MAX_LAYERS}",
                    item.config,
                    item.layers.len()
                )));
            }
            let mut layers = Vec::new();
            for (i, name) in item.layers.iter().enumerate() {
                let file = src
                    .file(name)
                    .ok_or_else(|| load_err(format!("layer {name} is missing")))?;
                let desc = parsed
                    .rootfs
                    .diff_ids
                    .get(i)
                    .and_then(|d| item.layer_sources.get(d))
                    .cloned();
                layers.push((file, desc));
            }
            let tags = item
                .repo_tags
                .iter()
                .map(|t| Reference::parse_tagged(t))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Candidate {
                config,
                layers,
                tags,
                manifest_digest: None,
            });
        }
        Ok(out)
    }

    fn oci_candidates(
        &self,
        src: &Source,
        index_json: &[u8],
        load_err: &dyn Fn(String) -> StoreError,
    ) -> Result<Vec<Candidate>, StoreError> {
        let read_blob = |d: &Descriptor| -> Result<Vec<u8>, StoreError> {
            let p = src
                .blob(&d.digest)
                .ok_or_else(|| load_err(format!("blob {} is missing", d.digest)))?;
            // Size first (SECURITY F5): never read more than the descriptor promises.
            let len = std::fs::metadata(&p).map_err(io_err(&p))?.len();
            if len != d.size {
                return Err(load_err(format!(
                    "size mismatch: blob {} has {len} bytes, its descriptor says {}",
                    d.digest, d.size
                )));
            }
            let bytes = read_document(&p, &d.digest.to_string())?;
            let actual = Digest::of_bytes(&bytes);
            if actual != d.digest {
                return Err(StoreError::DigestMismatch {
                    expected: d.digest.clone(),
                    actual,
                });
            }
            // The document must be what the descriptor pointing at it says (SECURITY F2).
            if let Some(declared) = declared_media_type(&bytes) {
                if declared != d.media_type {
                    return Err(load_err(format!(
                        "blob {} declares media type {declared:?}, its descriptor says {:?}",
                        d.digest, d.media_type
                    )));
                }
            }
            Ok(bytes)
        };
        let is_index = |t: &str| t == MEDIA_OCI_INDEX || t == MEDIA_DOCKER_MANIFEST_LIST;
        let is_manifest = |t: &str| t == MEDIA_OCI_MANIFEST || t == MEDIA_DOCKER_MANIFEST;
        let index =
            Index::from_bytes(index_json).map_err(|e| load_err(format!("index.json: {e}")))?;
        // Images by manifest digest, merging the tags of descriptors that share a manifest.
        let mut by_manifest: BTreeMap<Digest, Candidate> = BTreeMap::new();
        let mut order = Vec::new();
        let mut unsupported = None;
        for top in index.manifests.iter().filter(|d| !d.is_attestation()) {
            let mut desc = top.clone();
            if !is_index(&desc.media_type) && !is_manifest(&desc.media_type) {
                // Artifacts, schema 1, anything else: not an image we can load (SECURITY F6).
                unsupported = Some(desc.media_type.clone());
                continue;
            }
            // Nested indexes (a multi-platform image in a layout): the host's manifest.
            let mut depth = 0;
            while is_index(&desc.media_type) {
                depth += 1;
                if depth > MAX_INDEX_DEPTH {
                    return Err(load_err(format!(
                        "index {} nests indexes deeper than {MAX_INDEX_DEPTH} levels",
                        top.digest
                    )));
                }
                let nested = Index::from_bytes(&read_blob(&desc)?)
                    .map_err(|e| load_err(format!("blob {}: {e}", desc.digest)))?;
                desc = host_entry(&nested)
                    .ok_or_else(|| {
                        load_err(format!("index {} has no image manifests", desc.digest))
                    })?
                    .clone();
            }
            if !is_manifest(&desc.media_type) {
                return Err(load_err(format!(
                    "index {} leads to {:?}, not an image manifest",
                    top.digest, desc.media_type
                )));
            }
            let tag = top
                .annotations
                .get(ANNOTATION_CONTAINERD_NAME)
                .and_then(|n| Reference::parse_tagged(n).ok())
                .or_else(|| {
                    // containers/image writes `name:tag` into ref.name; a bare tag names no repo.
                    top.annotations
                        .get(ANNOTATION_REF_NAME)
                        .filter(|r| r.contains(':') || r.contains('/'))
                        .and_then(|r| Reference::parse_tagged(r).ok())
                });
            if let Some(c) = by_manifest.get_mut(&desc.digest) {
                c.tags.extend(tag);
                continue;
            }
            let manifest = Manifest::from_bytes(&read_blob(&desc)?)
                .map_err(|e| load_err(format!("blob {}: {e}", desc.digest)))?;
            if manifest.layers.len() > MAX_LAYERS {
                return Err(load_err(format!(
                    "manifest {} has {} layers, more than {MAX_LAYERS}",
                    desc.digest,
                    manifest.layers.len()
                )));
            }
            let config = read_blob(&manifest.config)?;
            let mut layers = Vec::new();
            for l in &manifest.layers {
                let file = src
                    .blob(&l.digest)
                    .ok_or_else(|| load_err(format!("layer blob {} is missing", l.digest)))?;
                let len = std::fs::metadata(&file).map_err(io_err(&file))?.len();
                if len != l.size {
                    return Err(load_err(format!(
                        "size mismatch: layer blob {} has {len} bytes, its descriptor says {}",
                        l.digest, l.size
                    )));
                }
                layers.push((file, Some(l.clone())));
            }
            order.push(desc.digest.clone());
            by_manifest.insert(
                desc.digest.clone(),
                Candidate {
                    config,
                    layers,
                    tags: tag.into_iter().collect(),
                    manifest_digest: Some(desc.digest.clone()),
                },
            );
        }
        if order.is_empty() {
            if let Some(t) = unsupported {
                return Err(load_err(format!(
                    "index.json lists no image manifest (unsupported media type {t:?})"
                )));
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|d| by_manifest.remove(&d))
            .collect())
    }

    fn import(
        &self,
        c: Candidate,
        extract: &mut ExtractFn<'_>,
        load_err: &dyn Fn(String) -> StoreError,
    ) -> Result<LoadedImage, StoreError> {
        let config = ImageConfig::from_bytes(&c.config)
            .map_err(|e| load_err(format!("config {}: {e}", Digest::of_bytes(&c.config))))?;
        if config.rootfs.diff_ids.len() != c.layers.len() {
            return Err(load_err(format!(
                "config lists {} diff_ids but the archive has {} layers",
                config.rootfs.diff_ids.len(),
                c.layers.len()
            )));
        }
        let mut parent: Option<Digest> = None;
        for ((file, desc), want_diff) in c.layers.iter().zip(&config.rootfs.diff_ids) {
            let chain = chain_id(parent.as_ref(), want_diff);
            {
                // Check and lease together: a concurrent prune must not take it in between.
                let _lock = self.lock()?;
                if self.get_layer(&chain)?.is_some() {
                    self.lease_layer(&chain)?;
                    parent = Some(chain);
                    continue;
                }
            }
            let comp = blob_codec::sniff(file).map_err(io_err(file))?;
            let h = blob_codec::hash(file, comp).map_err(io_err(file))?;
            let (blob, blob_size, diff_id, tar_size) = (h.digest, h.size, h.diff_id, h.tar_size);
            if let Some(d) = desc {
                if d.digest != blob {
                    return Err(StoreError::DigestMismatch {
                        expected: d.digest.clone(),
                        actual: blob,
                    });
                }
            }
            if &diff_id != want_diff {
                return Err(load_err(format!(
                    "layer {} has diffID {diff_id}, config says {want_diff}",
                    file.display()
                )));
            }
            let media_type = match (desc, comp) {
                (Some(d), _) => oci_layer_media_type(&d.media_type),
                (None, Codec::Gzip) => MEDIA_OCI_LAYER_GZIP.to_string(),
                (None, Codec::Zstd) => MEDIA_OCI_LAYER_ZSTD.to_string(),
                (None, Codec::None) => MEDIA_OCI_LAYER.to_string(),
            };
            {
                // The blob is unreferenced until put_layer below: lease it against prune.
                let _lock = self.lock()?;
                self.put_blob_file(file, Some(&blob))?;
                self.lease_blob(&blob)?;
            }
            let mut rec = LayerRecord {
                chain_id: chain.clone(),
                diff_id,
                parent: parent.clone(),
                size: tar_size,
                cache_id: String::new(),
                blob: blob.clone(),
                blob_size,
                media_type,
            };
            rec.cache_id =
                extract(&rec, &self.blob_path(&blob)).map_err(|e| StoreError::Extract {
                    chain_id: chain.clone(),
                    message: e.to_string(),
                })?;
            {
                let _lock = self.lock()?;
                self.put_layer(&rec)?;
                self.lease_layer(&chain)?;
            }
            parent = Some(chain);
        }
        let _lock = self.lock()?;
        let id = self.put_image(&c.config, None)?;
        let mut tags = Vec::new();
        for r in &c.tags {
            self.tag(r, &id)?;
            tags.push(r.familiar());
            if let Some(md) = &c.manifest_digest {
                let digested = Reference::parse(&format!("{}@{md}", r.name()))?;
                self.tag(&digested, &id)?;
            }
        }
        Ok(LoadedImage { id, tags })
    }

    /// The image `id` ready for `export::docker_archive` / `oci_layout_*`, with `tags`.
    /// Layers ship in `form` (compressed ones are made once and kept, see `store::compressed`).
    pub fn export_image(
        &self,
        id: &Digest,
        tags: &[String],
        form: LayerForm,
    ) -> Result<ExportImage, StoreError> {
        let config_bytes = self.image_config(id)?;
        let mut layers = Vec::new();
        if let Some(top) = self.image_top_layer(id)? {
            for rec in self.layer_chain(&top)? {
                if !self.has_blob(&rec.blob) {
                    return Err(StoreError::MissingLayer {
                        image: id.clone(),
                        chain_id: rec.chain_id,
                    });
                }
                let b = self.shipped_blob(&rec, form)?;
                layers.push((
                    LayerDesc {
                        diff_id: rec.diff_id,
                        digest: b.digest,
                        size: b.size,
                        uncompressed_size: rec.size,
                        media_type: b.media_type,
                    },
                    b.path,
                ));
            }
        }
        Ok(ExportImage {
            config_bytes,
            layers,
            tags: tags.to_vec(),
            manifest_annotations: Default::default(),
            descriptor_annotations: Default::default(),
        })
    }
}
