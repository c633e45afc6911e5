//! The attestations of a build (`--provenance`, `--sbom`): in-toto statements about the final
//! image's manifest, as attached to OCI/docker outputs and pushes (docs/provenance.md).

use super::error::BuildError;
use super::solver::Solver;
use super::state::StageResult;
use crate::attest::provenance::{provenance_statement, statement_bytes, subjects};
use crate::attest::{PREDICATE_SLSA_V1, PREDICATE_SPDX};
use crate::digest::Digest;
use crate::image::manifest::{self, Descriptor, ManifestKind};
use crate::store::LayerForm;

/// In-toto statements: (predicate type, statement bytes).
type Statements = Vec<(String, Vec<u8>)>;

/// The statements (predicate type, bytes) for the image `image_id` and the manifest descriptor
/// they name, or `None` when no attestation is asked for.
pub(super) fn statements(
    ctx: &Solver,
    result: &StageResult,
    image_id: &Digest,
    dockerfile_text: &str,
) -> Result<Option<(Descriptor, Statements)>, BuildError> {
    let att = &ctx.opts.attest;
    if att.provenance.is_none() && !att.sbom {
        return Ok(None);
    }
    // The manifest the outputs and pushes write: OCI, layers in the build's compression.
    let form = LayerForm::Compress(ctx.opts.compression, ctx.opts.repro_profile);
    let img = ctx
        .store
        .export_image(image_id, &[], form)
        .map_err(BuildError::store)?;
    let built = manifest::build(ManifestKind::Oci, &img.config_bytes, &img.layer_descs())
        .map_err(BuildError::store)?;
    let platform = ctx.plan_opts.platform.to_string();
    let mut out = Vec::new();
    if let Some(mode) = att.provenance {
        let record = ctx.build_record(dockerfile_text)?;
        let bytes = provenance_statement(
            &record,
            mode,
            att.builder_id.as_deref(),
            &ctx.opts.tags,
            &built.descriptor.digest,
        )
        .map_err(attest_err)?;
        out.push((PREDICATE_SLSA_V1.to_string(), bytes));
    }
    if att.sbom {
        let doc = sbom_document(ctx, result)?;
        let subj = subjects(&ctx.opts.tags, &platform, &built.descriptor.digest);
        let bytes = statement_bytes(PREDICATE_SPDX, &subj, doc).map_err(attest_err)?;
        out.push((PREDICATE_SPDX.to_string(), bytes));
    }
    Ok(Some((built.descriptor, out)))
}

fn attest_err(e: crate::attest::AttestError) -> BuildError {
    BuildError::Usage(format!("attestation: {e}"))
}

/// The SPDX document of the final root filesystem, read through a read-only view of it.
fn sbom_document(_ctx: &Solver, _result: &StageResult) -> Result<serde_json::Value, BuildError> {
    Err(BuildError::Usage(
        "--sbom: the SBOM generator is not part of this build of rbuild yet".into(),
    ))
}

/// The attestation manifest of a build and the image manifest it describes.
pub struct Attached {
    pub image: Descriptor,
    pub platform: crate::image::manifest::Platform,
    pub attachment: crate::attest::Attachment,
}

impl Attached {
    pub(super) fn attach_to_dir(&self, dir: &std::path::Path) -> Result<(), BuildError> {
        crate::attest::layout::attach_to_layout_dir(
            dir,
            &self.image.digest,
            &self.platform,
            &self.attachment,
        )
        .map_err(attest_err)
    }
}

/// `statements()` laid out as an attestation manifest.
pub(super) fn attachment(
    ctx: &Solver,
    result: &StageResult,
    image_id: &Digest,
    dockerfile_text: &str,
) -> Result<Option<Attached>, BuildError> {
    let Some((image, st)) = statements(ctx, result, image_id, dockerfile_text)? else {
        return Ok(None);
    };
    let attachment = crate::attest::attestation_manifest(&image, &st).map_err(attest_err)?;
    let p = &ctx.plan_opts.platform;
    Ok(Some(Attached {
        image,
        platform: crate::image::manifest::Platform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            os_version: None,
            variant: p.variant.clone(),
        },
        attachment,
    }))
}
