//! The image index a build produces, as rbuild stores it (`docs/store-layout.md`, "Image
//! indexes"): entries that are built images (by image id, with their platform) or small artifact
//! manifests carried inline (attestations: platform `unknown/unknown`, annotations), plus
//! index-level annotations.
//!
//! Images are named by id, not by manifest digest: a manifest's digest depends on the layer
//! compression chosen when it is exported or pushed, so the OCI index bytes are made then
//! (`export::index`, `registry::push_index`). An artifact can name the image entry it describes
//! (`subject`); its descriptor gets that image's manifest digest as `vnd.docker.reference.digest`
//! when the index is rendered, as BuildKit's attestation manifests carry it.

use crate::digest::Digest;
use crate::image::manifest::Platform;
use crate::image::ImageError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Annotation naming the manifest an attestation manifest describes (BuildKit).
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// A stored multi-manifest image: what one tag denotes after a multi-platform build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// Entries in index order: the platform images first, then what other modules added.
    pub manifests: Vec<IndexEntry>,
    /// Annotations of the index itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One manifest of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub content: EntryContent,
    /// The descriptor's `platform` (`unknown/unknown` for attestations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The descriptor's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Position of the image entry this one describes: its manifest digest becomes the
    /// `vnd.docker.reference.digest` annotation of this entry's descriptor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<usize>,
}

/// What an index entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryContent {
    /// An image of the store, by id (the digest of its config).
    Image(Digest),
    /// A manifest whose config and layers are small documents kept inline.
    Artifact(Artifact),
}

/// An artifact manifest: config and layer blobs carried as bytes (base64 in the stored record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub config: InlineBlob,
    pub layers: Vec<InlineBlob>,
    /// The manifest's own annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A blob carried inline, with its descriptor's media type and annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineBlob {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

impl IndexEntry {
    /// An image entry for `platform`.
    pub fn image(id: Digest, platform: Platform) -> Self {
        IndexEntry {
            content: EntryContent::Image(id),
            platform: Some(platform),
            annotations: BTreeMap::new(),
            subject: None,
        }
    }

    pub fn image_id(&self) -> Option<&Digest> {
        match &self.content {
            EntryContent::Image(id) => Some(id),
            EntryContent::Artifact(_) => None,
        }
    }
}

impl ImageIndex {
    /// The record bytes as stored (deterministic: struct order, sorted maps).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        serde_json::to_vec(self).map_err(|source| ImageError::Write {
            what: "image index record",
            source,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ImageError::Json(crate::image::lenient::JsonError {
                document: "image index record",
                path: String::new(),
                message: e.to_string(),
            })
        })
    }

    /// The image ids of the index, in order.
    pub fn image_ids(&self) -> impl Iterator<Item = &Digest> {
        self.manifests.iter().filter_map(IndexEntry::image_id)
    }

    /// The entry for `platform` (os and architecture equal; variant equal when both name one).
    pub fn image_for(&self, os: &str, arch: &str, variant: Option<&str>) -> Option<&IndexEntry> {
        self.manifests.iter().find(|e| {
            e.image_id().is_some()
                && e.platform.as_ref().is_some_and(|p| {
                    p.os == os
                        && p.architecture == arch
                        && match (variant, p.variant.as_deref()) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        }
                })
        })
    }

    /// Adds an entry (an attestation, …) and returns its position.
    pub fn push(&mut self, entry: IndexEntry) -> usize {
        self.manifests.push(entry);
        self.manifests.len() - 1
    }
}

/// The descriptor platform of an image config: its `os`, `architecture`, `variant`.
pub fn platform_of(os: &str, arch: &str, variant: Option<&str>) -> Platform {
    Platform {
        architecture: arch.to_string(),
        os: os.to_string(),
        os_version: None,
        variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_with_inline_artifact() {
        let mut idx = ImageIndex::default();
        let a = idx.push(IndexEntry::image(
            Digest::of_bytes(b"cfg-amd64"),
            platform_of("linux", "amd64", None),
        ));
        idx.push(IndexEntry::image(
            Digest::of_bytes(b"cfg-arm64"),
            platform_of("linux", "arm64", Some("v8")),
        ));
        idx.push(IndexEntry {
            content: EntryContent::Artifact(Artifact {
                config: InlineBlob {
                    media_type: "application/vnd.oci.image.config.v1+json".into(),
                    data: b"{}".to_vec(),
                    annotations: BTreeMap::new(),
                },
                layers: vec![InlineBlob {
                    media_type: "application/vnd.in-toto+json".into(),
                    data: vec![0, 1, 2, 255],
                    annotations: BTreeMap::new(),
                }],
                annotations: BTreeMap::new(),
            }),
            platform: Some(platform_of("unknown", "unknown", None)),
            annotations: BTreeMap::new(),
            subject: Some(a),
        });
        idx.annotations.insert("k".into(), "v".into());
        let bytes = idx.to_bytes().unwrap();
        let back = ImageIndex::from_bytes(&bytes).unwrap();
        assert_eq!(back, idx);
        assert_eq!(back.to_bytes().unwrap(), bytes);
        assert_eq!(back.image_ids().count(), 2);
        assert_eq!(
            back.image_for("linux", "arm64", None)
                .and_then(|e| e.image_id()),
            Some(&Digest::of_bytes(b"cfg-arm64"))
        );
        assert!(back.image_for("linux", "arm", None).is_none());
    }
}
