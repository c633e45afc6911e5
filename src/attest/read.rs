//! Reading attestations back from an image: walks an index (and nested indexes) for the image
//! manifests and the attestation manifests that point at them, and returns the statements.
//! Blobs come from a callback, so the same walk serves an OCI layout and a registry.

use super::layout::attests;
use super::{AttestError, ANNOTATION_PREDICATE_TYPE};
use crate::digest::Digest;
use crate::image::manifest::{is_index_type, Descriptor, Index, Manifest};
use std::path::Path;

/// One attested image: its manifest and the statements attached to it.
#[derive(Debug, Clone)]
pub struct Attested {
    pub manifest: Descriptor,
    /// (predicate type, statement bytes), in the attestation manifest's order.
    pub statements: Vec<(String, Vec<u8>)>,
}

impl Attested {
    /// The first statement with `predicate_type`, parsed.
    pub fn statement(&self, predicate_type: &str) -> Option<serde_json::Value> {
        self.statements
            .iter()
            .find(|(t, _)| t == predicate_type)
            .and_then(|(_, b)| serde_json::from_slice(b).ok())
    }
}

/// Every image manifest reachable from `index` with the statements attached to it.
pub fn find(
    index: &Index,
    fetch: &dyn Fn(&Digest) -> Result<Vec<u8>, AttestError>,
) -> Result<Vec<Attested>, AttestError> {
    let mut all = Vec::new();
    collect(index, fetch, &mut all, 0)?;
    let (atts, images): (Vec<Descriptor>, Vec<Descriptor>) =
        all.into_iter().partition(|d| d.is_attestation());
    let mut out = Vec::new();
    for image in images {
        let mut statements = Vec::new();
        for a in atts.iter().filter(|a| attests(a, &image.digest)) {
            let m = Manifest::from_bytes(&fetch(&a.digest)?)?;
            for layer in &m.layers {
                let ptype = layer
                    .annotations
                    .get(ANNOTATION_PREDICATE_TYPE)
                    .cloned()
                    .unwrap_or_default();
                let bytes = fetch(&layer.digest)?;
                if Digest::of_bytes(&bytes) != layer.digest {
                    return Err(AttestError::Format(format!(
                        "attestation blob {} does not match its digest",
                        layer.digest
                    )));
                }
                statements.push((ptype, bytes));
            }
        }
        out.push(Attested {
            manifest: image,
            statements,
        });
    }
    Ok(out)
}

fn collect(
    index: &Index,
    fetch: &dyn Fn(&Digest) -> Result<Vec<u8>, AttestError>,
    out: &mut Vec<Descriptor>,
    depth: usize,
) -> Result<(), AttestError> {
    if depth > 4 {
        return Err(AttestError::Format(
            "indexes nested more than 4 deep".into(),
        ));
    }
    for d in &index.manifests {
        if is_index_type(&d.media_type) {
            let nested = Index::from_bytes(&fetch(&d.digest)?)?;
            collect(&nested, fetch, out, depth + 1)?;
        } else {
            out.push(d.clone());
        }
    }
    Ok(())
}

/// The attested images of an OCI layout directory (also a docker-archive from `rbuild build`,
/// which is an OCI layout too).
pub fn from_layout_dir(dir: &Path) -> Result<Vec<Attested>, AttestError> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(AttestError::io(&index_path))?;
    let index = Index::from_bytes(&bytes)?;
    let fetch = |d: &Digest| -> Result<Vec<u8>, AttestError> {
        let p = dir.join("blobs").join("sha256").join(d.hex());
        std::fs::read(&p).map_err(AttestError::io(&p))
    };
    find(&index, &fetch)
}
