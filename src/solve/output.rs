//! Writes the requested outputs of a finished build. Every output is written under a temporary name next
//! to its destination and renamed into place only when complete: a failed build leaves no partial file.

use super::error::BuildError;
use super::options::OutputKind;
use super::solver::Solver;
use super::state::StageResult;
use crate::digest::Digest;
use crate::layer::{self, Compression, LayerOptions};
use crate::store::LayerForm;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The image as an output writes it, with its `--annotation`s.
fn annotated(
    ctx: &Solver,
    image_id: &Digest,
    form: LayerForm,
) -> Result<crate::export::ExportImage, BuildError> {
    let mut img = ctx
        .store
        .export_image(image_id, &ctx.opts.tags, form)
        .map_err(BuildError::store)?;
    let platform = ctx.plan_opts.platform.to_string();
    crate::export::annotate::annotate_image(&mut img, &ctx.opts.annotations, &platform);
    Ok(img)
}

pub fn write_outputs(
    ctx: &Solver,
    result: &StageResult,
    image_id: &Digest,
    index_id: Option<&Digest>,
) -> Result<(), BuildError> {
    // Layers are stored as tars; outputs ship them in the build's compression (made once, kept).
    let form = LayerForm::Compress(ctx.opts.compression, ctx.opts.repro_profile);
    for out in &ctx.opts.outputs {
        let step = ctx.reporter.start(&format!(
            "exporting to {} {}",
            kind_name(&out.kind),
            out.dest.display()
        ));
        // The image with its attestations: the image outputs are written from the index.
        if let (Some(index_id), OutputKind::Docker | OutputKind::Oci { .. }) = (index_id, &out.kind)
        {
            write_index_output(ctx.opts, ctx.store, index_id, out)?;
            ctx.reporter.done(step);
            continue;
        }
        match &out.kind {
            OutputKind::Docker => {
                let img = annotated(ctx, image_id, form)?;
                write_file_atomically(&out.dest, |w| {
                    crate::export::docker_archive(&img, w).map_err(BuildError::export)?;
                    Ok(())
                })?;
            }
            OutputKind::Oci { tar: true } => {
                let img = annotated(ctx, image_id, form)?;
                write_file_atomically(&out.dest, |w| {
                    crate::export::oci_layout_tar(&img, w).map_err(BuildError::export)?;
                    Ok(())
                })?;
            }
            OutputKind::Oci { tar: false } => {
                let img = annotated(ctx, image_id, form)?;
                write_dir_atomically(&out.dest, |dir| {
                    crate::export::oci_layout_dir(&img, dir).map_err(BuildError::export)?;
                    Ok(())
                })?;
            }
            OutputKind::Tar => {
                write_file_atomically(&out.dest, |w| flatten_rootfs(ctx, result, w))?;
            }
            OutputKind::Local => {
                write_dir_atomically(&out.dest, |dir| {
                    let tmp = tempfile::tempfile_in(&ctx.scratch)
                        .map_err(|e| BuildError::io(&ctx.scratch, e))?;
                    let mut w = BufWriter::new(tmp);
                    flatten_rootfs(ctx, result, &mut w)?;
                    let mut f = w
                        .into_inner()
                        .map_err(|e| BuildError::io(&ctx.scratch, e.into_error()))?;
                    use std::io::Seek;
                    f.rewind().map_err(|e| BuildError::io(&ctx.scratch, e))?;
                    let opts = layer::ApplyOptions {
                        whiteouts: layer::WhiteoutMode::Apply,
                        max_bytes: None,
                        same_owner: true,
                        limits: layer::Limits::default(),
                    };
                    layer::apply::apply(std::io::BufReader::new(f), dir, &opts)
                        .map_err(BuildError::layer)?;
                    Ok(())
                })?;
            }
        }
        ctx.reporter.done(step);
    }
    Ok(())
}

/// Writes the outputs of a multi-platform build: its index as an OCI layout or inside a
/// docker-archive. Rootfs outputs (`tar`, `local`) take one platform; refused here.
pub fn write_index_outputs(
    opts: &super::BuildOptions,
    store: &crate::store::Store,
    reporter: &super::progress::Reporter,
    index_id: &Digest,
) -> Result<(), BuildError> {
    for out in &opts.outputs {
        let step = reporter.start(&format!(
            "exporting to {} {}",
            kind_name(&out.kind),
            out.dest.display()
        ));
        write_index_output(opts, store, index_id, out)?;
        reporter.done(step);
    }
    Ok(())
}

/// Writes one output of the index `index_id`.
fn write_index_output(
    opts: &super::BuildOptions,
    store: &crate::store::Store,
    index_id: &Digest,
    out: &super::options::OutputSpec,
) -> Result<(), BuildError> {
    let form = LayerForm::Compress(opts.compression, opts.repro_profile);
    let host = crate::platform::Platform::host();
    let default = (
        host.os.as_str(),
        host.architecture.as_str(),
        host.variant.as_deref(),
    );
    {
        let index = || {
            let mut idx = store
                .export_index(index_id, &opts.tags, form, default)
                .map_err(BuildError::store)?;
            crate::export::annotate::annotate_index(&mut idx, &opts.annotations);
            Ok::<_, BuildError>(idx)
        };
        match &out.kind {
            OutputKind::Docker => {
                let idx = index()?;
                write_file_atomically(&out.dest, |w| {
                    crate::export::docker_index_archive(&idx, w).map_err(BuildError::export)?;
                    Ok(())
                })?;
            }
            OutputKind::Oci { tar: true } => {
                let idx = index()?;
                write_file_atomically(&out.dest, |w| {
                    crate::export::oci_index_tar(&idx, w).map_err(BuildError::export)?;
                    Ok(())
                })?;
            }
            OutputKind::Oci { tar: false } => {
                let idx = index()?;
                write_dir_atomically(&out.dest, |dir| {
                    crate::export::oci_index_dir(&idx, dir).map_err(BuildError::export)?;
                    Ok(())
                })?;
            }
            OutputKind::Tar | OutputKind::Local => {
                return Err(BuildError::Usage(format!(
                    "-o type={} writes one root filesystem: build one --platform for it",
                    if out.kind == OutputKind::Tar {
                        "tar"
                    } else {
                        "local"
                    }
                )))
            }
        }
    }
    Ok(())
}

fn kind_name(k: &OutputKind) -> &'static str {
    match k {
        OutputKind::Docker => "docker-archive",
        OutputKind::Oci { tar: true } => "oci-archive",
        OutputKind::Oci { tar: false } => "oci layout",
        OutputKind::Tar => "rootfs tar",
        OutputKind::Local => "local dir",
    }
}

/// The final rootfs as one uncompressed tar: the diff writer run over a read-only merged view, which shows
/// no whiteouts, so the tar is the flattened filesystem.
/// Runs `f` on a read-only view of a stage's whole root filesystem (an empty dir for a stage
/// with no layers); the view is unmounted when `f` returns.
pub(super) fn with_rootfs<T>(
    ctx: &Solver,
    result: &StageResult,
    f: impl FnOnce(&Path) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    match result.layers.last() {
        Some(top) => {
            let specs = ctx
                .snapshots
                .view(&top.cache_id)
                .map_err(BuildError::snapshot)?;
            let view =
                crate::snapshot::mount_fresh(&specs, &ctx.scratch).map_err(BuildError::snapshot)?;
            f(view.path())
        }
        None => {
            let empty =
                tempfile::tempdir_in(&ctx.scratch).map_err(|e| BuildError::io(&ctx.scratch, e))?;
            f(empty.path())
        }
    }
}

fn flatten_rootfs(ctx: &Solver, result: &StageResult, w: &mut dyn Write) -> Result<(), BuildError> {
    let opts = LayerOptions {
        compression: Compression::Uncompressed,
        clamp_mtime: None,
        profile: ctx.opts.repro_profile,
    };
    with_rootfs(ctx, result, |root| {
        layer::diff::write_layer(root, w, &opts)
            .map(|_| ())
            .map_err(BuildError::layer)
    })
}

fn partial_name(dest: &Path) -> Result<PathBuf, BuildError> {
    let name = dest.file_name().ok_or_else(|| {
        BuildError::Usage(format!(
            "output destination {} has no file name",
            dest.display()
        ))
    })?;
    let mut partial = name.to_os_string();
    partial.push(format!(".rbuild-partial-{}", std::process::id()));
    Ok(dest.with_file_name(partial))
}

fn write_file_atomically(
    dest: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let tmp = partial_name(dest)?;
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| BuildError::io(dest, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        f(&mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| BuildError::io(dest, e.into_error()))?;
        file.sync_all().map_err(|e| BuildError::io(dest, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| BuildError::io(dest, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_dir_atomically(
    dest: &Path,
    f: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let tmp = partial_name(dest)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| BuildError::io(dest, e))?;
        f(&tmp)?;
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(|e| BuildError::io(dest, e))?;
        }
        std::fs::rename(&tmp, dest).map_err(|e| BuildError::io(dest, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
