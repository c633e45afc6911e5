//! BuildKit's attestation storage: one OCI manifest per attested image whose layers are in-toto
//! statements (`application/vnd.in-toto+json`, annotated with their predicate type), whose config
//! is a placeholder `unknown/unknown` image config, and whose index descriptor says which image
//! it attests (`vnd.docker.reference.*`) with platform `unknown/unknown` so no runtime runs it.

use super::{
    AttestError, ANNOTATION_PREDICATE_TYPE, ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REFERENCE_TYPE,
    MEDIA_IN_TOTO, REFERENCE_TYPE_ATTESTATION,
};
use crate::digest::Digest;
use crate::image::manifest::{
    Descriptor, Manifest, Platform, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST,
};
use std::collections::BTreeMap;

/// An attestation manifest ready to be written beside its image: the index entry and every blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The descriptor to put in the image index, after the image's own.
    pub descriptor: Descriptor,
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// The statements, in the order given, with their layer descriptors.
    pub layers: Vec<(Descriptor, Vec<u8>)>,
}

impl Attachment {
    /// Every blob (layers, config, manifest) with its descriptor, manifest last.
    pub fn blobs(&self) -> Vec<(Descriptor, &[u8])> {
        let mut out: Vec<(Descriptor, &[u8])> = self
            .layers
            .iter()
            .map(|(d, b)| (d.clone(), b.as_slice()))
            .collect();
        out.push((
            Descriptor::of_bytes(MEDIA_OCI_CONFIG, &self.config),
            &self.config,
        ));
        out.push((self.descriptor.clone(), &self.manifest));
        out
    }
}

/// The attestation manifest for the image manifest `image`, holding `statements`
/// (predicate type, in-toto statement bytes).
pub fn attestation_manifest(
    image: &Descriptor,
    statements: &[(String, Vec<u8>)],
) -> Result<Attachment, AttestError> {
    let layers: Vec<(Descriptor, Vec<u8>)> = statements
        .iter()
        .map(|(ptype, bytes)| {
            let mut d = Descriptor::of_bytes(MEDIA_IN_TOTO, bytes);
            d.annotations
                .insert(ANNOTATION_PREDICATE_TYPE.to_string(), ptype.clone());
            (d, bytes.clone())
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.digest.to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .map_err(|source| AttestError::Json {
        what: "attestation config",
        source,
    })?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_OCI_MANIFEST.to_string(),
        config: Descriptor::of_bytes(MEDIA_OCI_CONFIG, &config),
        layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| AttestError::Json {
        what: "attestation manifest",
        source,
    })?;
    let mut descriptor = Descriptor::of_bytes(MEDIA_OCI_MANIFEST, &manifest_bytes);
    descriptor.annotations.insert(
        ANNOTATION_REFERENCE_DIGEST.to_string(),
        image.digest.to_string(),
    );
    descriptor.annotations.insert(
        ANNOTATION_REFERENCE_TYPE.to_string(),
        REFERENCE_TYPE_ATTESTATION.to_string(),
    );
    descriptor.platform = Some(Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        os_version: None,
        variant: None,
    });
    Ok(Attachment {
        descriptor,
        manifest: manifest_bytes,
        config,
        layers,
    })
}

/// Whether `d` (an index entry) is an attestation manifest for `image`.
pub fn attests(d: &Descriptor, image: &Digest) -> bool {
    d.annotations
        .get(ANNOTATION_REFERENCE_TYPE)
        .map(String::as_str)
        == Some(REFERENCE_TYPE_ATTESTATION)
        && d.annotations.get(ANNOTATION_REFERENCE_DIGEST) == Some(&image.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_shape() {
        let image = Descriptor::of_bytes(MEDIA_OCI_MANIFEST, b"image");
        let st = br#"{"_type":"https://in-toto.io/Statement/v1"}"#.to_vec();
        let a = attestation_manifest(
            &image,
            &[(super::super::PREDICATE_SLSA_V1.into(), st.clone())],
        )
        .unwrap();
        let s = String::from_utf8(a.manifest.clone()).unwrap();
        assert!(
            s.contains(r#""mediaType":"application/vnd.in-toto+json""#),
            "{s}"
        );
        assert!(
            s.contains(
                r#""annotations":{"in-toto.io/predicate-type":"https://slsa.dev/provenance/v1"}"#
            ),
            "{s}"
        );
        let d = serde_json::to_string(&a.descriptor).unwrap();
        assert!(
            d.contains(&format!(
                r#""vnd.docker.reference.digest":"{}""#,
                image.digest
            )),
            "{d}"
        );
        assert!(
            d.contains(r#""vnd.docker.reference.type":"attestation-manifest""#),
            "{d}"
        );
        assert!(
            d.contains(r#""platform":{"architecture":"unknown","os":"unknown"}"#),
            "{d}"
        );
        assert!(a.descriptor.is_attestation());
        assert!(attests(&a.descriptor, &image.digest));
        assert_eq!(a.descriptor.digest, Digest::of_bytes(&a.manifest));
        let cfg: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(
            cfg["rootfs"]["diff_ids"][0],
            Digest::of_bytes(&st).to_string()
        );
        assert_eq!(a.blobs().len(), 3);
    }
}
