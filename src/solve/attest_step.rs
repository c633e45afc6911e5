//! The attestations of a build (`--provenance`, `--sbom`): in-toto statements about the final
//! image's manifest, laid out as BuildKit's attestation manifest (`attest::layout`) and carried
//! as an artifact entry of the image index the outputs and pushes write (docs/provenance.md).

use super::error::BuildError;
use super::solver::Solver;
use super::state::StageResult;
use crate::attest::provenance::{provenance_statement, statement_bytes, subjects};
use crate::attest::{
    ANNOTATION_REFERENCE_TYPE, PREDICATE_SLSA_V1, PREDICATE_SPDX, REFERENCE_TYPE_ATTESTATION,
};
use crate::digest::Digest;
use crate::image::index::{platform_of, Artifact, ImageIndex, IndexEntry, InlineBlob};
use crate::image::manifest::{self, ManifestKind, Platform, MEDIA_OCI_CONFIG};
use crate::store::LayerForm;
use std::collections::BTreeMap;

/// The attestation manifest of the image `image_id` as an index artifact, or `None` when no
/// attestation is asked for.
pub(super) fn artifact(
    ctx: &Solver,
    result: &StageResult,
    image_id: &Digest,
    dockerfile_text: &str,
) -> Result<Option<Artifact>, BuildError> {
    let att = &ctx.opts.attest;
    if att.provenance.is_none() && !att.sbom {
        return Ok(None);
    }
    // The manifest the outputs and pushes write (`export::index`): OCI, layers in the build's
    // compression. The statements name it as their subject.
    let form = LayerForm::Compress(ctx.opts.compression, ctx.opts.repro_profile);
    let img = ctx
        .store
        .export_image(image_id, &[], form)
        .map_err(BuildError::store)?;
    let built = manifest::build(ManifestKind::Oci, &img.config_bytes, &img.layer_descs())
        .map_err(BuildError::store)?;
    let platform = ctx.plan_opts.platform.to_string();
    let mut statements = Vec::new();
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
        statements.push((PREDICATE_SLSA_V1.to_string(), bytes));
    }
    if att.sbom {
        let doc = sbom_document(ctx, result)?;
        let subj = subjects(&ctx.opts.tags, &platform, &built.descriptor.digest);
        let bytes = statement_bytes(PREDICATE_SPDX, &subj, doc).map_err(attest_err)?;
        statements.push((PREDICATE_SPDX.to_string(), bytes));
    }
    let a =
        crate::attest::attestation_manifest(&built.descriptor, &statements).map_err(attest_err)?;
    let inline = |d: &crate::image::manifest::Descriptor, data: &[u8]| InlineBlob {
        media_type: d.media_type.clone(),
        data: data.to_vec(),
        annotations: d.annotations.clone(),
    };
    Ok(Some(Artifact {
        config: InlineBlob {
            media_type: MEDIA_OCI_CONFIG.to_string(),
            data: a.config.clone(),
            annotations: BTreeMap::new(),
        },
        layers: a.layers.iter().map(|(d, b)| inline(d, b)).collect(),
        annotations: BTreeMap::new(),
    }))
}

/// The index entry of an attestation manifest for the image entry at `subject`: platform
/// `unknown/unknown`, `vnd.docker.reference.type` (the index adds `vnd.docker.reference.digest`).
pub(super) fn index_entry(a: Artifact, subject: usize) -> IndexEntry {
    IndexEntry {
        content: crate::image::index::EntryContent::Artifact(a),
        platform: Some(Platform {
            architecture: "unknown".into(),
            os: "unknown".into(),
            os_version: None,
            variant: None,
        }),
        annotations: BTreeMap::from([(
            ANNOTATION_REFERENCE_TYPE.to_string(),
            REFERENCE_TYPE_ATTESTATION.to_string(),
        )]),
        subject: Some(subject),
    }
}

/// One image and its attestation manifest as a stored index, tagged with the build's tags.
pub(super) fn single_index(
    ctx: &Solver,
    image_id: &Digest,
    a: Artifact,
) -> Result<Digest, BuildError> {
    let config = crate::image::ImageConfig::from_bytes(
        &ctx.store
            .image_config(image_id)
            .map_err(BuildError::store)?,
    )
    .map_err(BuildError::store)?;
    let mut index = ImageIndex::default();
    let at = index.push(IndexEntry::image(
        image_id.clone(),
        platform_of(&config.os, &config.architecture, config.variant.as_deref()),
    ));
    index.push(index_entry(a, at));
    super::finish_index(ctx.opts, ctx.store, &mut index)?;
    let index_id = ctx.store.put_index(&index).map_err(BuildError::store)?;
    let default = (
        config.os.as_str(),
        config.architecture.as_str(),
        config.variant.as_deref(),
    );
    for t in &ctx.opts.tags {
        let reference = crate::image::Reference::parse(t)
            .map_err(|e| BuildError::Usage(format!("invalid tag {t:?}: {e}")))?;
        ctx.store
            .tag_index(&reference, &index_id, default)
            .map_err(BuildError::store)?;
    }
    Ok(index_id)
}

fn attest_err(e: crate::attest::AttestError) -> BuildError {
    BuildError::Usage(format!("attestation: {e}"))
}

/// The SPDX document of the final root filesystem, read through a read-only view of it.
fn sbom_document(ctx: &Solver, result: &StageResult) -> Result<serde_json::Value, BuildError> {
    let opts = crate::sbom::SbomOptions {
        name: ctx
            .opts
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| "rootfs".into()),
        created: ctx.epoch,
        ..Default::default()
    };
    super::output::with_rootfs(ctx, result, |root| {
        crate::sbom::generate(root, &opts).map_err(|e| BuildError::Usage(format!("--sbom: {e}")))
    })
}
