//! The pieces both tar outputs share (`docker_archive` and `oci_layout`): blob paths, the
//! `oci-layout` marker, `index.json` descriptors and the `blobs/sha256/` entries.

use crate::digest::Digest;
use crate::export::tar_writer::{Entry, MODE_BLOB, MODE_FILE};
use crate::export::ExportError;
use crate::export::ExportImage;
use crate::image::manifest::{self, Descriptor, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use crate::image::Reference;
use std::collections::BTreeMap;

/// A docker-archive's `repositories` file: `{"<familiar name>":{"<tag>":"<top layer diffID hex>"}}`,
/// read by legacy consumers only.
pub(crate) type Repositories = BTreeMap<String, BTreeMap<String, String>>;

/// Records each tagged reference of an image whose top layer is `top`.
pub(crate) fn add_repositories(repositories: &mut Repositories, refs: &[Reference], top: &Digest) {
    for r in refs {
        if let Some(tag) = r.tag() {
            repositories
                .entry(r.familiar_name())
                .or_default()
                .insert(tag.to_string(), top.hex().to_string());
        }
    }
}

/// The `repositories` entry, when any reference is tagged.
pub(crate) fn repositories_entry(
    repositories: &Repositories,
) -> Result<Option<Entry>, ExportError> {
    if repositories.is_empty() {
        return Ok(None);
    }
    let mut json = serde_json::to_vec(repositories).map_err(|source| ExportError::Json {
        path: "repositories".into(),
        source,
    })?;
    json.push(b'\n');
    Ok(Some(Entry::bytes("repositories", MODE_FILE, 0, json)))
}

/// `oci-layout` as BuildKit/containerd write it.
pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// `oci-layout` as `docker save` (Go struct with indenting-free encoder + space) writes it.
pub const OCI_LAYOUT_DOCKER: &str = r#"{"imageLayoutVersion": "1.0.0"}"#;

/// Path of a blob inside an archive/layout.
pub fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// One index descriptor per reference (same manifest); a single bare descriptor when untagged.
pub(crate) fn index_descriptors(manifest: &Descriptor, refs: &[Reference]) -> Vec<Descriptor> {
    if refs.is_empty() {
        return vec![manifest.clone()];
    }
    refs.iter()
        .map(|r| {
            let mut d = manifest.clone();
            d.annotations
                .insert(ANNOTATION_CONTAINERD_NAME.to_string(), r.normalized());
            // Tag only (containerd convention); digest references get the full name.
            let ref_name = r.tag().map_or_else(|| r.normalized(), str::to_string);
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_string(), ref_name);
            d
        })
        .collect()
}

/// The `blobs/sha256/` part of both tar outputs (OCI layout and docker-archive): the directories,
/// the config, the manifest and every layer blob as stored.
pub(crate) fn blob_entries(
    image: &ExportImage,
    config_digest: &Digest,
    built: &manifest::BuiltManifest,
    mtime: u64,
) -> Vec<Entry> {
    let mut entries = vec![
        Entry::dir("blobs/"),
        Entry::dir("blobs/sha256/"),
        Entry::bytes(
            &blob_name(config_digest),
            MODE_BLOB,
            mtime,
            image.config_bytes.clone(),
        ),
        Entry::bytes(
            &blob_name(&built.descriptor.digest),
            MODE_BLOB,
            0,
            built.bytes.clone(),
        ),
    ];
    for (desc, path) in &image.layers {
        entries.push(Entry::blob(
            &blob_name(&desc.digest),
            mtime,
            path.clone(),
            desc.digest.clone(),
            desc.size,
        ));
    }
    entries
}
