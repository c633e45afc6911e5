//! `push` of an image index: each entry's blobs and manifest (by digest), then the index under
//! the tag (an OCI index, `application/vnd.oci.image.index.v1+json`).

use super::client::Client;
use super::push::{push_blob, push_manifest, upload_image, BlobSource, PushOptions};
use super::RegistryError;
use crate::digest::Digest;
use crate::export::{ExportContent, ExportIndex};
use crate::image::manifest::{MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST};
use crate::image::Reference;
use crate::store::Store;

/// Pushes `index` (from `Store::export_index`) as `target`; returns the index digest.
pub fn push_index(
    client: &Client,
    store: &Store,
    index: &ExportIndex,
    target: &Reference,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    let repo = target.path();
    if !opts.quiet {
        eprintln!("The push refers to repository [{}]", target.name());
    }
    let rendered = index
        .render()
        .map_err(|e| RegistryError::Other(e.to_string()))?;
    for (entry, built) in index.entries.iter().zip(&rendered.manifests) {
        match &entry.content {
            ExportContent::Image(img) => {
                upload_image(client, store, img, repo, &target.name(), opts)?
            }
            ExportContent::Artifact(a) => {
                for b in std::iter::once(&a.config).chain(&a.layers) {
                    push_blob(
                        client,
                        repo,
                        &Digest::of_bytes(&b.data),
                        b.data.len() as u64,
                        BlobSource::Bytes(&b.data),
                        &[],
                        opts,
                    )?;
                }
            }
        }
        let digest = built.descriptor.digest.to_string();
        push_manifest(client, repo, &digest, &built.bytes, MEDIA_OCI_MANIFEST)?;
    }
    let tag = match (target.tag(), target.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    let digest = push_manifest(client, repo, &tag, &rendered.index.bytes, MEDIA_OCI_INDEX)?;
    if !opts.quiet {
        eprintln!(
            "{tag}: digest: {digest} size: {} (index of {} manifests)",
            rendered.index.bytes.len(),
            rendered.manifests.len()
        );
    }
    Ok(digest)
}
