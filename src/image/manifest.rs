//! Image manifests (OCI and Docker v2 schema 2), OCI index and descriptors.
//!
//! Own serde types with `BTreeMap` annotations: `oci-spec` uses `HashMap`s, whose output order
//! changes between runs (CRATES.md §2). Field order follows the Go structs, so the bytes match what
//! containerd/BuildKit write for the same content.

use crate::digest::Digest;
use crate::image::{lenient, ImageError, LayerDesc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Non-standard but understood by containerd and Docker.
pub const MEDIA_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MEDIA_DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker's zstd layer type (containerd's name; not in the v2s2 spec).
pub const MEDIA_DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker schema 1 (signed or not): refused with a message naming it.
pub const MEDIA_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const MEDIA_DOCKER_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Annotation BuildKit puts on attestation manifests in an index (with platform `unknown/unknown`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// Whether `media_type` is a foreign (Docker) or non-distributable (OCI, deprecated) layer: one
/// whose blob a registry need not hold, fetched from the descriptor's `urls` by Windows hosts.
pub fn is_foreign_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.image.rootfs.foreign.")
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

/// Whether `media_type` names an index (OCI index or Docker manifest list).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_MANIFEST_LIST
}

/// Whether `media_type` names an image manifest (OCI or Docker v2 schema 2).
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == MEDIA_OCI_MANIFEST || media_type == MEDIA_DOCKER_MANIFEST
}

/// Annotation: the tag (BuildKit/containerd convention: tag only).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation: the full normalized reference (`docker.io/library/x:tag`).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Target platform of a manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default, deserialize_with = "lenient::string")]
    pub architecture: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub variant: Option<String>,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(
        default,
        deserialize_with = "lenient::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }

    /// Descriptor of a byte blob.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Self {
        Self::new(media_type, Digest::of_bytes(bytes), bytes.len() as u64)
    }
}

/// An OCI image manifest (also parses Docker v2s2 manifests, which have the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, deserialize_with = "lenient::string")]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "lenient::list")]
    pub layers: Vec<Descriptor>,
    #[serde(
        default,
        deserialize_with = "lenient::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// Docker's descriptor field order (`mediaType`, `size`, `digest`).
#[derive(Serialize)]
struct DockerDescriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: &'a Digest,
}

#[derive(Serialize)]
struct DockerManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: DockerDescriptor<'a>,
    layers: Vec<DockerDescriptor<'a>>,
}

/// An OCI image index (`index.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, deserialize_with = "lenient::string")]
    pub media_type: String,
    /// Required (it is what makes a document an index); `null` reads as empty.
    #[serde(deserialize_with = "lenient::list")]
    pub manifests: Vec<Descriptor>,
    #[serde(
        default,
        deserialize_with = "lenient::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// Which manifest schema to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestKind {
    #[default]
    Oci,
    /// Docker v2 schema 2 (no zstd, no annotations).
    DockerV2S2,
}

/// Manifest bytes plus the descriptor that points at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltManifest {
    pub bytes: Vec<u8>,
    pub descriptor: Descriptor,
}

/// The Docker v2s2 media type for an OCI layer media type.
pub fn docker_layer_media_type(oci: &str) -> Result<&'static str, ImageError> {
    match oci {
        MEDIA_OCI_LAYER_GZIP | MEDIA_DOCKER_LAYER_GZIP => Ok(MEDIA_DOCKER_LAYER_GZIP),
        MEDIA_OCI_LAYER | MEDIA_DOCKER_LAYER_TAR => Ok(MEDIA_DOCKER_LAYER_TAR),
        MEDIA_DOCKER_FOREIGN_LAYER_GZIP => Ok(MEDIA_DOCKER_FOREIGN_LAYER_GZIP),
        other => Err(ImageError::NoDockerMediaType(other.to_string())),
    }
}

/// The OCI media type for a (possibly Docker) layer media type; unknown types are kept.
pub fn oci_layer_media_type(media_type: &str) -> String {
    match media_type {
        MEDIA_DOCKER_LAYER_GZIP => MEDIA_OCI_LAYER_GZIP.to_string(),
        MEDIA_DOCKER_LAYER_TAR => MEDIA_OCI_LAYER.to_string(),
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => MEDIA_OCI_LAYER_ZSTD.to_string(),
        other => other.to_string(),
    }
}

/// Builds the manifest for a config blob and its layers (bottom first).
pub fn build(
    kind: ManifestKind,
    config_bytes: &[u8],
    layers: &[LayerDesc],
) -> Result<BuiltManifest, ImageError> {
    build_with(kind, config_bytes, layers, &BTreeMap::new())
}

/// An OCI manifest with `annotations` (`--annotation manifest:`).
pub fn build_annotated(
    config_bytes: &[u8],
    layers: &[LayerDesc],
    annotations: &BTreeMap<String, String>,
) -> Result<BuiltManifest, ImageError> {
    build_with(ManifestKind::Oci, config_bytes, layers, annotations)
}

fn build_with(
    kind: ManifestKind,
    config_bytes: &[u8],
    layers: &[LayerDesc],
    annotations: &BTreeMap<String, String>,
) -> Result<BuiltManifest, ImageError> {
    let config_digest = Digest::of_bytes(config_bytes);
    let bytes = match kind {
        ManifestKind::Oci => {
            let m = Manifest {
                schema_version: 2,
                media_type: MEDIA_OCI_MANIFEST.to_string(),
                config: Descriptor::new(MEDIA_OCI_CONFIG, config_digest, config_bytes.len() as u64),
                layers: layers
                    .iter()
                    .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
                    .collect(),
                annotations: annotations.clone(),
            };
            serde_json::to_vec(&m).map_err(|source| ImageError::Write {
                what: "manifest",
                source,
            })?
        }
        ManifestKind::DockerV2S2 => {
            let layer_types: Vec<&'static str> = layers
                .iter()
                .map(|l| docker_layer_media_type(&l.media_type))
                .collect::<Result<_, _>>()?;
            let m = DockerManifest {
                schema_version: 2,
                media_type: MEDIA_DOCKER_MANIFEST,
                config: DockerDescriptor {
                    media_type: MEDIA_DOCKER_CONFIG,
                    size: config_bytes.len() as u64,
                    digest: &config_digest,
                },
                layers: layers
                    .iter()
                    .zip(layer_types)
                    .map(|(l, media_type)| DockerDescriptor {
                        media_type,
                        size: l.size,
                        digest: &l.digest,
                    })
                    .collect(),
            };
            serde_json::to_vec(&m).map_err(|source| ImageError::Write {
                what: "manifest",
                source,
            })?
        }
    };
    let media_type = match kind {
        ManifestKind::Oci => MEDIA_OCI_MANIFEST,
        ManifestKind::DockerV2S2 => MEDIA_DOCKER_MANIFEST,
    };
    let descriptor = Descriptor::of_bytes(media_type, &bytes);
    Ok(BuiltManifest { bytes, descriptor })
}

/// `index.json` bytes for these manifest descriptors.
pub fn build_index(manifests: &[Descriptor]) -> Result<Vec<u8>, ImageError> {
    let idx = Index {
        schema_version: 2,
        media_type: MEDIA_OCI_INDEX.to_string(),
        manifests: manifests.to_vec(),
        annotations: BTreeMap::new(),
    };
    serde_json::to_vec(&idx).map_err(|source| ImageError::Write {
        what: "index",
        source,
    })
}

fn doc_error(document: &'static str, message: impl Into<String>) -> ImageError {
    ImageError::Json(lenient::JsonError {
        document,
        path: String::new(),
        message: message.into(),
    })
}

/// Parses `bytes` as `T` after refusing schema 1 and a document that is both a manifest and an
/// index (`manifests` beside `layers`/`config`): such a document means different things to
/// different readers (CVE-2021-41190, containerd's `validateMediaType`; SECURITY F2).
fn unambiguous<T: serde::de::DeserializeOwned>(
    document: &'static str,
    bytes: &[u8],
) -> Result<T, ImageError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| doc_error(document, e.to_string()))?;
    if let Some(o) = v.as_object() {
        if let Some(why) = schema1(o) {
            return Err(doc_error(document, why));
        }
        if o.contains_key("manifests") && (o.contains_key("layers") || o.contains_key("config")) {
            return Err(doc_error(
                document,
                "ambiguous document: it has both `manifests` and `layers`/`config`",
            ));
        }
    } else {
        return Err(doc_error(document, "expected an object"));
    }
    lenient::from_value(document, v).map_err(ImageError::Json)
}

/// Why a document is a Docker schema 1 manifest, if it is one (`schemaVersion` 1, or its
/// media type). Docker dropped schema 1 in 2023 (v24); rbuild never read it.
fn schema1(o: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let media = o.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    let version = o.get("schemaVersion").and_then(|s| s.as_u64());
    (version == Some(1) || media == MEDIA_DOCKER_SCHEMA1 || media == MEDIA_DOCKER_SCHEMA1_SIGNED)
        .then(|| {
            "this is a Docker image manifest schema 1 (application/vnd.docker.distribution.\
             manifest.v1+json), deprecated since Docker 1.10 and not supported: re-push the \
             image with a current Docker, or convert it with `skopeo copy --format v2s2`"
                .to_string()
        })
}

impl Manifest {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ImageError> {
        let m: Manifest = unambiguous("manifest", bytes)?;
        if m.schema_version != 2 {
            return Err(doc_error(
                "manifest",
                format!("schemaVersion: unsupported value {}", m.schema_version),
            ));
        }
        Ok(m)
    }
}

impl Index {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ImageError> {
        unambiguous("index", bytes)
    }
}

impl Descriptor {
    /// Whether this index entry is an attestation (BuildKit provenance/SBOM) rather than an
    /// image for a platform; skipped when choosing a platform.
    pub fn is_attestation(&self) -> bool {
        self.annotations
            .get(ANNOTATION_REFERENCE_TYPE)
            .is_some_and(|t| t == "attestation-manifest")
            || self
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> LayerDesc {
        LayerDesc {
            diff_id: Digest::of_bytes(b"tar"),
            digest: Digest::of_bytes(b"gz"),
            size: 2,
            uncompressed_size: 3,
            media_type: MEDIA_OCI_LAYER_GZIP.to_string(),
        }
    }

    #[test]
    fn oci_manifest_exact_json() {
        let cfg = br#"{"architecture":"amd64"}"#;
        let m = build(ManifestKind::Oci, cfg, &[layer()]).unwrap();
        let s = String::from_utf8(m.bytes.clone()).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":2}}]}}"#,
                Digest::of_bytes(cfg),
                cfg.len(),
                Digest::of_bytes(b"gz")
            )
        );
        assert_eq!(m.descriptor.digest, Digest::of_bytes(&m.bytes));
        assert_eq!(m.descriptor.size, m.bytes.len() as u64);
        let back = Manifest::from_bytes(&m.bytes).unwrap();
        assert_eq!(back.layers[0].digest, Digest::of_bytes(b"gz"));
    }

    #[test]
    fn docker_manifest_types_and_order() {
        let cfg = b"{}";
        let m = build(ManifestKind::DockerV2S2, cfg, &[layer()]).unwrap();
        let s = String::from_utf8(m.bytes.clone()).unwrap();
        assert!(s.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:"#), "{s}");
        assert!(s.contains(
            r#""mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2"#
        ));
        assert_eq!(m.descriptor.media_type, MEDIA_DOCKER_MANIFEST);
        let mut z = layer();
        z.media_type = MEDIA_OCI_LAYER_ZSTD.into();
        assert!(build(ManifestKind::DockerV2S2, cfg, &[z]).is_err());
    }

    #[test]
    fn index_with_sorted_annotations() {
        let mut d = Descriptor::of_bytes(MEDIA_OCI_MANIFEST, b"m");
        d.annotations
            .insert(ANNOTATION_REF_NAME.into(), "latest".into());
        d.annotations.insert(
            ANNOTATION_CONTAINERD_NAME.into(),
            "docker.io/library/x:latest".into(),
        );
        let s = String::from_utf8(build_index(&[d]).unwrap()).unwrap();
        assert!(s.contains(r#""annotations":{"io.containerd.image.name":"docker.io/library/x:latest","org.opencontainers.image.ref.name":"latest"}"#), "{s}");
        let idx = Index::from_bytes(s.as_bytes()).unwrap();
        assert_eq!(idx.manifests.len(), 1);
    }
}
