//! `docker save` format of Docker 25+ (moby `tarexport/save.go`, ANCHORS §7.2): one tar that is
//! both a Docker archive (`manifest.json`, `repositories`) and an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/`).
//!
//! Layers are written as stored (gzip/zstd/plain), never recompressed; `docker load`
//! (`archive.DecompressStream`) and containers/image decompress them on load and check them
//! against the config's diffIDs.

use crate::digest::Digest;
use crate::export::layout::{
    add_repositories, blob_entries, blob_name, index_descriptors, repositories_entry, Repositories,
    OCI_LAYOUT_DOCKER,
};
use crate::export::tar_writer::{write_tar, Entry, MODE_FILE};
use crate::export::{created_mtime, ExportError, ExportImage};
use crate::image::manifest::{self, Descriptor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;

/// One element of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestItem {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    #[serde(rename = "Parent", default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(
        rename = "LayerSources",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub layer_sources: BTreeMap<Digest, Descriptor>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The `manifest.json` entry for these items.
pub(crate) fn write_manifest_json(items: &[ManifestItem]) -> Result<Entry, ExportError> {
    // Go's json.Encoder ends documents with a newline.
    let mut manifest_json = serde_json::to_vec(items).map_err(|source| ExportError::Json {
        path: "manifest.json".into(),
        source,
    })?;
    manifest_json.push(b'\n');
    Ok(Entry::bytes("manifest.json", MODE_FILE, 0, manifest_json))
}

/// Writes `image` as a Docker 25+ archive to `out` and returns `out`.
pub fn docker_archive<W: Write>(image: &ExportImage, out: W) -> Result<W, ExportError> {
    let (config, refs) = image.validate()?;
    let mtime = created_mtime(&config);
    let config_digest = Digest::of_bytes(&image.config_bytes);
    let built = image.manifest()?;

    let mut entries = blob_entries(image, &config_digest, &built, mtime);
    let mut layer_paths = Vec::new();
    let mut layer_sources = BTreeMap::new();
    for (desc, _) in &image.layers {
        layer_paths.push(blob_name(&desc.digest));
        // Docker 25 writes LayerSources for its (uncompressed) layers; `docker load` registers
        // the descriptor with the layer. A compressed blob's descriptor would then describe
        // bytes Docker never stores, so only identity (uncompressed) layers get one.
        if desc.digest == desc.diff_id {
            layer_sources.insert(
                desc.diff_id.clone(),
                Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size),
            );
        }
    }

    let item = ManifestItem {
        config: blob_name(&config_digest),
        repo_tags: refs.iter().map(|r| r.familiar()).collect(),
        layers: layer_paths,
        parent: None,
        layer_sources,
    };

    let index = manifest::build_index(&index_descriptors(&built.descriptor, &refs))?;

    let mut repositories = Repositories::new();
    if let Some(top) = config.rootfs.diff_ids.last() {
        add_repositories(&mut repositories, &refs, top);
    }
    entries.extend(repositories_entry(&repositories)?);
    entries.push(Entry::bytes("index.json", MODE_FILE, 0, index));
    entries.push(write_manifest_json(&[item])?);
    entries.push(Entry::bytes(
        "oci-layout",
        MODE_FILE,
        0,
        OCI_LAYOUT_DOCKER.as_bytes().to_vec(),
    ));
    write_tar(out, entries)
}
