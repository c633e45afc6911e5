//! Multi-manifest outputs: an image index (one image per platform, plus artifact manifests such
//! as attestations) rendered to OCI index bytes, and written as an OCI layout (tar or directory)
//! or inside a docker-archive.
//!
//! As BuildKit's OCI exporter does, `index.json` holds one descriptor (with the reference
//! annotations) of the image index blob, which lists the platform manifests. A docker-archive
//! also gets a `manifest.json` item per image (only the default one carries `RepoTags`, so a
//! classic `docker load` tags the image the host would run and loads the others untagged).

use crate::digest::Digest;
use crate::export::docker_archive::{write_manifest_json, ManifestItem};
use crate::export::layout::{
    add_repositories, blob_entries, blob_name, index_descriptors, repositories_entry, Repositories,
    OCI_LAYOUT, OCI_LAYOUT_DOCKER,
};
use crate::export::tar_writer::{write_tar, Entry, MODE_BLOB, MODE_FILE};
use crate::export::{created_mtime, ExportError, ExportImage};
use crate::image::index::{Artifact, ANNOTATION_REFERENCE_DIGEST};
use crate::image::manifest::{
    self, BuiltManifest, Descriptor, Index, Manifest, Platform, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::image::{ImageError, Reference};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// An index ready to be written: its entries with their blobs, annotations and tags.
#[derive(Debug, Clone)]
pub struct ExportIndex {
    pub entries: Vec<ExportEntry>,
    /// Annotations of the index itself.
    pub annotations: BTreeMap<String, String>,
    /// `--annotation index-descriptor:`: annotations of the index's descriptor in `index.json`.
    pub descriptor_annotations: BTreeMap<String, String>,
    /// References such as `app:1.0`; they name the index.
    pub tags: Vec<String>,
    /// The image entry a classic `docker load` tags (the host's platform, else the first).
    pub default_entry: usize,
}

/// One manifest of an [`ExportIndex`].
#[derive(Debug, Clone)]
pub struct ExportEntry {
    pub content: ExportContent,
    pub platform: Option<Platform>,
    pub annotations: BTreeMap<String, String>,
    /// The image entry this one describes (`vnd.docker.reference.digest`).
    pub subject: Option<usize>,
}

/// An entry's blobs: a stored image (tags unused) or an inline artifact.
#[derive(Debug, Clone)]
pub enum ExportContent {
    Image(ExportImage),
    Artifact(Artifact),
}

/// The rendered index: its bytes and descriptor, and each entry's manifest.
#[derive(Debug, Clone)]
pub struct RenderedIndex {
    pub index: BuiltManifest,
    /// One manifest per entry, in entry order; descriptors carry platform and annotations.
    pub manifests: Vec<BuiltManifest>,
}

fn artifact_manifest(a: &Artifact) -> Result<BuiltManifest, ImageError> {
    let blob = |b: &crate::image::index::InlineBlob| {
        let mut d = Descriptor::of_bytes(&b.media_type, &b.data);
        d.annotations = b.annotations.clone();
        d
    };
    let m = Manifest {
        schema_version: 2,
        media_type: MEDIA_OCI_MANIFEST.to_string(),
        config: blob(&a.config),
        layers: a.layers.iter().map(blob).collect(),
        annotations: a.annotations.clone(),
    };
    let bytes = serde_json::to_vec(&m).map_err(|source| ImageError::Write {
        what: "artifact manifest",
        source,
    })?;
    Ok(BuiltManifest {
        descriptor: Descriptor::of_bytes(MEDIA_OCI_MANIFEST, &bytes),
        bytes,
    })
}

impl ExportIndex {
    /// Builds every manifest (OCI) and the index. Deterministic: same entries, same bytes.
    pub fn render(&self) -> Result<RenderedIndex, ExportError> {
        let mut manifests = Vec::new();
        for e in &self.entries {
            let mut built = match &e.content {
                ExportContent::Image(img) => {
                    img.validate()?;
                    img.manifest()?
                }
                ExportContent::Artifact(a) => artifact_manifest(a)?,
            };
            built.descriptor.platform = e.platform.clone();
            built.descriptor.annotations.extend(e.annotations.clone());
            manifests.push(built);
        }
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(s) = e.subject {
                let digest = manifests
                    .get(s)
                    .map(|m| m.descriptor.digest.to_string())
                    .ok_or_else(|| {
                        ExportError::Image(ImageError::InvalidReference {
                            reference: format!("index entry {i}"),
                            reason: format!("its subject {s} is not an entry of the index"),
                        })
                    })?;
                manifests[i]
                    .descriptor
                    .annotations
                    .insert(ANNOTATION_REFERENCE_DIGEST.to_string(), digest);
            }
        }
        let idx = Index {
            schema_version: 2,
            media_type: MEDIA_OCI_INDEX.to_string(),
            manifests: manifests.iter().map(|m| m.descriptor.clone()).collect(),
            annotations: self.annotations.clone(),
        };
        let bytes = serde_json::to_vec(&idx).map_err(|source| ImageError::Write {
            what: "index",
            source,
        })?;
        let mut descriptor = Descriptor::of_bytes(MEDIA_OCI_INDEX, &bytes);
        descriptor.annotations = self.descriptor_annotations.clone();
        Ok(RenderedIndex {
            index: BuiltManifest { descriptor, bytes },
            manifests,
        })
    }

    fn refs(&self) -> Result<Vec<Reference>, ExportError> {
        Ok(self
            .tags
            .iter()
            .map(|t| Reference::parse_tagged(t))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Every blob of the index as tar entries: configs, layers, manifests, artifact blobs, the
    /// index blob.
    fn entries_of(&self, rendered: &RenderedIndex) -> Result<Vec<Entry>, ExportError> {
        let mut entries = Vec::new();
        for (e, built) in self.entries.iter().zip(&rendered.manifests) {
            match &e.content {
                ExportContent::Image(img) => {
                    let (config, _) = img.validate()?;
                    let config_digest = Digest::of_bytes(&img.config_bytes);
                    entries.extend(blob_entries(
                        img,
                        &config_digest,
                        built,
                        created_mtime(&config),
                    ));
                }
                ExportContent::Artifact(a) => {
                    for b in std::iter::once(&a.config).chain(&a.layers) {
                        entries.push(Entry::bytes(
                            &blob_name(&Digest::of_bytes(&b.data)),
                            MODE_BLOB,
                            0,
                            b.data.clone(),
                        ));
                    }
                    entries.push(Entry::bytes(
                        &blob_name(&built.descriptor.digest),
                        MODE_BLOB,
                        0,
                        built.bytes.clone(),
                    ));
                }
            }
        }
        entries.push(Entry::bytes(
            &blob_name(&rendered.index.descriptor.digest),
            MODE_BLOB,
            0,
            rendered.index.bytes.clone(),
        ));
        Ok(entries)
    }
}

/// Writes `index` as an OCI layout tar and returns `out`.
pub fn oci_index_tar<W: Write>(index: &ExportIndex, out: W) -> Result<W, ExportError> {
    let rendered = index.render()?;
    let mut entries = index.entries_of(&rendered)?;
    entries.push(Entry::bytes(
        "index.json",
        MODE_FILE,
        0,
        manifest::build_index(&index_descriptors(
            &rendered.index.descriptor,
            &index.refs()?,
        ))?,
    ));
    entries.push(Entry::bytes(
        "oci-layout",
        MODE_BLOB,
        0,
        OCI_LAYOUT.as_bytes().to_vec(),
    ));
    write_tar(out, entries)
}

/// Writes `index` into an OCI layout directory (other images in it are kept; see
/// `oci_layout_dir`).
pub fn oci_index_dir(index: &ExportIndex, dir: &Path) -> Result<(), ExportError> {
    let rendered = index.render()?;
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|source| ExportError::Io {
        path: blobs.clone(),
        source,
    })?;
    for (e, built) in index.entries.iter().zip(&rendered.manifests) {
        match &e.content {
            ExportContent::Image(img) => super::oci_layout::put_image_blobs(img, &blobs, built)?,
            ExportContent::Artifact(a) => {
                for b in std::iter::once(&a.config).chain(&a.layers) {
                    super::oci_layout::write_blob(&blobs, &b.data)?;
                }
                super::oci_layout::write_blob(&blobs, &built.bytes)?;
            }
        }
    }
    super::oci_layout::write_blob(&blobs, &rendered.index.bytes)?;
    super::oci_layout::merge_index_json(
        dir,
        index_descriptors(&rendered.index.descriptor, &index.refs()?),
    )
}

/// Writes `index` as a docker-archive: the OCI layout of [`oci_index_tar`] (Docker 25's
/// `oci-layout` marker) plus a `manifest.json` item per image.
pub fn docker_index_archive<W: Write>(index: &ExportIndex, out: W) -> Result<W, ExportError> {
    let rendered = index.render()?;
    let refs = index.refs()?;
    let mut entries = index.entries_of(&rendered)?;
    let mut items = Vec::new();
    let mut repositories = Repositories::new();
    for (i, e) in index.entries.iter().enumerate() {
        let ExportContent::Image(img) = &e.content else {
            continue;
        };
        let (config, _) = img.validate()?;
        let tagged = i == index.default_entry;
        items.push(ManifestItem {
            config: blob_name(&Digest::of_bytes(&img.config_bytes)),
            repo_tags: if tagged {
                refs.iter().map(|r| r.familiar()).collect()
            } else {
                Vec::new()
            },
            layers: img
                .layers
                .iter()
                .map(|(d, _)| blob_name(&d.digest))
                .collect(),
            parent: None,
            layer_sources: BTreeMap::new(),
        });
        if let (true, Some(top)) = (tagged, config.rootfs.diff_ids.last()) {
            add_repositories(&mut repositories, &refs, top);
        }
    }
    entries.extend(repositories_entry(&repositories)?);
    entries.push(Entry::bytes(
        "index.json",
        MODE_FILE,
        0,
        manifest::build_index(&index_descriptors(&rendered.index.descriptor, &refs))?,
    ));
    entries.push(write_manifest_json(&items)?);
    entries.push(Entry::bytes(
        "oci-layout",
        MODE_FILE,
        0,
        OCI_LAYOUT_DOCKER.as_bytes().to_vec(),
    ));
    write_tar(out, entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::index::{platform_of, InlineBlob};

    fn image(arch: &str) -> ExportImage {
        ExportImage {
            config_bytes: format!(
                r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
            )
            .into_bytes(),
            layers: Vec::new(),
            tags: Vec::new(),
            manifest_annotations: Default::default(),
            descriptor_annotations: Default::default(),
        }
    }

    fn entry(content: ExportContent, platform: Platform) -> ExportEntry {
        ExportEntry {
            content,
            platform: Some(platform),
            annotations: BTreeMap::new(),
            subject: None,
        }
    }

    #[test]
    fn attestation_entry_names_its_subject_manifest() {
        let mut att = entry(
            ExportContent::Artifact(Artifact {
                config: InlineBlob {
                    media_type: "application/vnd.oci.image.config.v1+json".into(),
                    data: b"{}".to_vec(),
                    annotations: BTreeMap::new(),
                },
                layers: vec![InlineBlob {
                    media_type: "application/vnd.in-toto+json".into(),
                    data: b"{\"_type\":\"x\"}".to_vec(),
                    annotations: [("in-toto.io/predicate-type".into(), "p".into())].into(),
                }],
                annotations: BTreeMap::new(),
            }),
            platform_of("unknown", "unknown", None),
        );
        att.subject = Some(1);
        att.annotations.insert(
            "vnd.docker.reference.type".into(),
            "attestation-manifest".into(),
        );
        let idx = ExportIndex {
            entries: vec![
                entry(
                    ExportContent::Image(image("amd64")),
                    platform_of("linux", "amd64", None),
                ),
                entry(
                    ExportContent::Image(image("arm64")),
                    platform_of("linux", "arm64", None),
                ),
                att,
            ],
            descriptor_annotations: BTreeMap::new(),
            annotations: [("org.opencontainers.image.created".into(), "t".into())].into(),
            tags: vec!["x:1".into()],
            default_entry: 0,
        };
        let r = idx.render().unwrap();
        assert_eq!(r.index.bytes, idx.render().unwrap().index.bytes);
        let parsed = Index::from_bytes(&r.index.bytes).unwrap();
        assert_eq!(parsed.manifests.len(), 3);
        assert_eq!(parsed.annotations["org.opencontainers.image.created"], "t");
        assert_eq!(
            parsed.manifests[2].annotations[ANNOTATION_REFERENCE_DIGEST],
            r.manifests[1].descriptor.digest.to_string()
        );
        assert!(parsed.manifests[2].is_attestation());
        let m = Manifest::from_bytes(&r.manifests[2].bytes).unwrap();
        assert_eq!(m.layers[0].annotations["in-toto.io/predicate-type"], "p");
        // A subject out of range is an error, not a dangling annotation.
        let mut bad = idx.clone();
        bad.entries[2].subject = Some(9);
        assert!(bad.render().is_err());
        // Both tar forms carry every blob and the index.
        let tar = oci_index_tar(&idx, Vec::new()).unwrap();
        let names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for m in r
            .manifests
            .iter()
            .map(|m| &m.descriptor)
            .chain([&r.index.descriptor])
        {
            assert!(names.contains(&blob_name(&m.digest)), "{names:?}");
        }
    }

    #[test]
    fn layout_dir_holds_the_index_once_per_name() {
        let idx = ExportIndex {
            entries: vec![
                entry(
                    ExportContent::Image(image("amd64")),
                    platform_of("linux", "amd64", None),
                ),
                entry(
                    ExportContent::Image(image("arm64")),
                    platform_of("linux", "arm64", None),
                ),
            ],
            annotations: BTreeMap::new(),
            descriptor_annotations: BTreeMap::new(),
            tags: vec!["x:1".into()],
            default_entry: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        oci_index_dir(&idx, dir.path()).unwrap();
        oci_index_dir(&idx, dir.path()).unwrap();
        let top =
            Index::from_bytes(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(top.manifests.len(), 1);
        assert_eq!(top.manifests[0].media_type, MEDIA_OCI_INDEX);
        let r = idx.render().unwrap();
        assert_eq!(top.manifests[0].digest, r.index.descriptor.digest);
        for d in r.manifests.iter().map(|m| &m.descriptor.digest) {
            assert!(dir.path().join(blob_name(d)).is_file());
        }
        let stored = std::fs::read(dir.path().join(blob_name(&r.index.descriptor.digest))).unwrap();
        assert_eq!(stored, r.index.bytes);
    }
}
