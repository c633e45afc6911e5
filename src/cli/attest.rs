//! Where attestations are read from for `rbuild inspect --provenance/--sbom` and `rbuild verify`:
//! an OCI layout (directory or tar, which a docker-archive from rbuild also is) or a registry
//! reference. docs/provenance.md.

use crate::attest::provenance::ProvenanceStatement;
use crate::attest::read::{find, from_layout_dir, Attested};
use crate::attest::AttestError;
use crate::digest::Digest;
use crate::registry::resolve::{fetch_manifest, Doc};
use crate::registry::{Client, RegistryConfig};
use anyhow::{anyhow, bail, Context as _, Result};
use std::io::Write as _;
use std::path::Path;

/// An opened image with its attestations; keeps an extracted archive alive.
pub struct Opened {
    pub images: Vec<Attested>,
    /// The OCI layout directory, when the image is a file (not a registry reference).
    pub layout: Option<std::path::PathBuf>,
    /// When the image is an index of the store at `root`: (manifest digest, image id) of each
    /// image entry.
    pub store_images: Vec<(Digest, Digest)>,
    _scratch: Option<tempfile::TempDir>,
}

/// Opens `spec`: a directory, an archive file, an image index in the store at `root`, else a
/// registry reference.
pub fn open(spec: &str, registry: &RegistryConfig, root: &Path) -> Result<Opened> {
    let p = Path::new(spec);
    if p.is_dir() {
        return Ok(Opened {
            images: from_layout_dir(p)?,
            layout: Some(p.to_path_buf()),
            store_images: Vec::new(),
            _scratch: None,
        });
    }
    if !p.exists() && root.join("image").is_dir() {
        let store = crate::store::Store::open(root)?;
        if let Some(id) = store.resolve_index(spec)? {
            return from_store(&store, &id);
        }
    }
    if p.is_file() {
        let scratch = tempfile::tempdir()?;
        let f = std::fs::File::open(p).with_context(|| format!("opening {spec}"))?;
        // unpack() refuses `..` and absolute names.
        tar::Archive::new(std::io::BufReader::new(f))
            .unpack(scratch.path())
            .with_context(|| format!("{spec}: not a tar archive"))?;
        return Ok(Opened {
            images: from_layout_dir(scratch.path())?,
            layout: Some(scratch.path().to_path_buf()),
            store_images: Vec::new(),
            _scratch: Some(scratch),
        });
    }
    let reference = crate::image::Reference::parse(spec)
        .map_err(|e| anyhow!("{spec}: not a file, directory or registry reference: {e}"))?;
    let client = Client::new(reference.domain(), registry)?;
    let repo = reference.path();
    let tag = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let top = fetch_manifest(&client, repo, &tag, None, spec)?;
    let index = match top.doc {
        Doc::Index(i) => i,
        Doc::Manifest(_) => bail!("{spec} is a single manifest: it has no attestations"),
    };
    let fetch = |d: &Digest| -> Result<Vec<u8>, AttestError> {
        let url = client.url(&format!("{repo}/blobs/{d}"));
        // Manifests and statements are both small: manifests through the manifest endpoint,
        // blobs through the blob one; whichever knows the digest answers.
        if let Ok(m) = fetch_manifest(&client, repo, &d.to_string(), Some(d), spec) {
            return Ok(m.bytes);
        }
        crate::registry::pull::fetch_blob_unsized(&client, repo, d, 64 << 20)
            .map_err(|e| AttestError::Format(format!("{url}: {e}")))
    };
    let images = find(&index, &fetch)?;
    Ok(Opened {
        images,
        layout: None,
        store_images: Vec::new(),
        _scratch: None,
    })
}

/// A stored image index, rendered as an export would write it (gzip layers, the default).
fn from_store(store: &crate::store::Store, id: &Digest) -> Result<Opened> {
    use crate::export::ExportContent;
    let host = crate::platform::Platform::host();
    let default = (
        host.os.as_str(),
        host.architecture.as_str(),
        host.variant.as_deref(),
    );
    let form = crate::store::LayerForm::Compress(
        crate::layer::Compression::default(),
        crate::layer::Profile::LATEST,
    );
    let exp = store.export_index(id, &[], form, default)?;
    let rendered = exp.render()?;
    let mut blobs = std::collections::BTreeMap::new();
    let mut store_images = Vec::new();
    for (e, m) in exp.entries.iter().zip(&rendered.manifests) {
        blobs.insert(m.descriptor.digest.clone(), m.bytes.clone());
        match &e.content {
            ExportContent::Artifact(a) => {
                for b in std::iter::once(&a.config).chain(&a.layers) {
                    blobs.insert(Digest::of_bytes(&b.data), b.data.clone());
                }
            }
            ExportContent::Image(img) => store_images.push((
                m.descriptor.digest.clone(),
                Digest::of_bytes(&img.config_bytes),
            )),
        }
    }
    let index = crate::image::manifest::Index::from_bytes(&rendered.index.bytes)?;
    let fetch = |d: &Digest| -> Result<Vec<u8>, AttestError> {
        blobs
            .get(d)
            .cloned()
            .ok_or_else(|| AttestError::Format(format!("blob {d} is not in the stored index")))
    };
    Ok(Opened {
        images: find(&index, &fetch)?,
        layout: None,
        store_images,
        _scratch: None,
    })
}

/// `rbuild inspect --provenance|--sbom IMAGE`: prints each attested image's statement.
pub fn inspect(
    spec: &str,
    predicate_type: &str,
    registry: &RegistryConfig,
    root: &Path,
    platform: Option<&crate::platform::Platform>,
) -> Result<i32> {
    let opened = open(spec, registry, root)?;
    let mut found = 0;
    let wanted = |img: &&Attested| {
        let Some(want) = platform else { return true };
        img.manifest.platform.as_ref().is_some_and(|p| {
            p.os == want.os
                && p.architecture == want.architecture
                && (want.variant.is_none() || p.variant == want.variant)
        })
    };
    for img in opened.images.iter().filter(wanted) {
        let Some((_, bytes)) = img.statements.iter().find(|(t, _)| t == predicate_type) else {
            continue;
        };
        // Provenance through its own types, so the fields print in the order written.
        let text = match serde_json::from_slice::<ProvenanceStatement>(bytes) {
            Ok(st) if predicate_type == crate::attest::PREDICATE_SLSA_V1 => {
                serde_json::to_string_pretty(&st)?
            }
            _ => {
                serde_json::to_string_pretty(&serde_json::from_slice::<serde_json::Value>(bytes)?)?
            }
        };
        // A closed pipe (`| head`) ends the output quietly.
        let _ = writeln!(std::io::stdout().lock(), "{text}");
        found += 1;
    }
    if found == 0 {
        bail!("{spec}: no {predicate_type} attestation");
    }
    Ok(0)
}
