//! Build attestations: an in-toto Statement v1 carrying a SLSA provenance v1 predicate (what went
//! into a build: `provenance`), the digest of a build context (`context_digest`), the BuildKit
//! attestation-manifest layout that hangs statements on an image index (`layout`), and reading
//! them back from an image (`read`). docs/provenance.md describes the format and `rbuild verify`.
//!
//! Own serde structs rather than a crate: the in-toto crates carry SLSA v0.2 only (no v1
//! predicate) and none writes BuildKit's extension fields in BuildKit's field order, which is what
//! makes the bytes deterministic and readable by tools that read BuildKit attestations.

pub mod context_digest;
pub mod layout;
pub mod provenance;
pub mod read;

pub use context_digest::context_digest;
pub use layout::{attestation_manifest, Attachment};
pub use provenance::{BaseImage, BuildRecord, ContextRecord, GitInfo, Mode};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA provenance v1.
pub const PREDICATE_SLSA_V1: &str = "https://slsa.dev/provenance/v1";
/// `predicateType` of an SPDX document (what BuildKit's SBOM attestations use).
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
/// `buildType` of rbuild's provenance (documented in docs/provenance.md).
pub const BUILD_TYPE: &str = "urn:rbuild:buildtype:dockerfile:v1";
/// `runDetails.builder.id` when `builder-id=` is not given.
pub const DEFAULT_BUILDER_ID: &str = "urn:rbuild:builder:local";
/// Media type of an in-toto attestation layer.
pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";
/// Layer annotation naming the statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Index-descriptor annotations of an attestation manifest (BuildKit's attestation storage).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";

/// Errors of attestation generation and reading.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

impl AttestError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AttestError + '_ {
        move |source| AttestError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `--provenance` and `--sbom` as parsed: what to attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestOptions {
    /// `None` = `--provenance=false`.
    pub provenance: Option<Mode>,
    /// `--provenance=…,builder-id=URI`.
    pub builder_id: Option<String>,
    pub sbom: bool,
}

impl AttestOptions {
    /// Parses a `--provenance` value as buildx does: `true`/`false`, `mode=min|max`, `min`/`max`,
    /// plus `builder-id=URI`; comma separated.
    pub fn parse_provenance(value: &str) -> Result<(Option<Mode>, Option<String>), String> {
        let mut mode = Some(Mode::Min);
        let mut builder = None;
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or(("mode", part));
            match (k, v) {
                ("mode", "min") => mode = Some(Mode::Min),
                ("mode", "max") => mode = Some(Mode::Max),
                ("mode", "true" | "1") | ("disabled", "false") => mode = mode.or(Some(Mode::Min)),
                ("mode", "false" | "0") | ("disabled", "true") => mode = None,
                ("builder-id", id) => builder = Some(id.to_string()),
                _ => {
                    return Err(format!(
                        "invalid --provenance value {part:?}: expected true, false, mode=min, \
                         mode=max or builder-id=URI"
                    ))
                }
            }
        }
        Ok((mode, builder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_values() {
        let p = AttestOptions::parse_provenance;
        assert_eq!(p("true").unwrap(), (Some(Mode::Min), None));
        assert_eq!(p("false").unwrap(), (None, None));
        assert_eq!(p("mode=max").unwrap(), (Some(Mode::Max), None));
        assert_eq!(p("max").unwrap(), (Some(Mode::Max), None));
        assert_eq!(
            p("mode=min,builder-id=https://ci/1").unwrap(),
            (Some(Mode::Min), Some("https://ci/1".into()))
        );
        assert!(p("mode=all").unwrap_err().contains("mode=all"));
    }
}
