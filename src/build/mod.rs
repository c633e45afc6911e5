//! Build orchestration: parses the Dockerfile, plans the stages, dispatches each instruction on overlay
//! snapshots, consults and fills the build cache, commits layers and images to the store, and writes the
//! requested outputs.

mod cache;
mod dispatch;
mod error;
pub mod load;
pub mod options;
mod output;
mod progress;
pub mod repro;
mod state;

pub use error::BuildError;
pub use options::{
    BuildOptions, ContextSource, DockerfileSource, OutputKind, OutputSpec, Progress,
};

use crate::context::Context;
use crate::digest::Digest;
use crate::dockerfile::{self, Dockerfile};
use crate::plan::{BaseRef, Plan, PlanOptions, Platform};
use crate::snapshot::Snapshotter;
use crate::store::Store;
use progress::Reporter;
use state::{StageResult, StageState};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a finished build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image id: the digest of the config bytes.
    pub image_id: Digest,
    /// The digest of the image's OCI manifest (what a registry would call the image).
    pub manifest_digest: Digest,
}

/// Runs one build to completion.
pub fn build(opts: &BuildOptions) -> Result<BuildResult, BuildError> {
    let reporter = Reporter::new(opts.progress);
    let store = Store::open(&opts.root).map_err(BuildError::store)?;
    let snapshots = Snapshotter::open(&opts.root.join("overlay2")).map_err(BuildError::snapshot)?;

    // The context first: a stdin tar is extracted into scratch space under the root.
    let scratch = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(store.tmp_dir())
        .map_err(|e| BuildError::io(&store.tmp_dir(), e))?;
    let (context, dockerfile_path) = open_context(opts, scratch.path())?;
    let (df_text, df_display) = read_dockerfile(opts, &dockerfile_path, context.as_ref())?;
    let df = dockerfile::parse(&df_text, &df_display).map_err(BuildError::Parse)?;

    let plan_opts = PlanOptions {
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        platform: Platform::host(),
        build_platform: Platform::host(),
    };
    let plan = Plan::new(&df, &plan_opts).map_err(BuildError::Plan)?;
    for unused in &plan.unused_build_args {
        reporter.warn(&format!(
            "build arg {unused:?} was not consumed by any stage"
        ));
    }

    let epoch = opts.source_date_epoch.or_else(|| {
        opts.build_args
            .get("SOURCE_DATE_EPOCH")
            .and_then(|s| s.parse::<i64>().ok())
    });
    let mut ctx = dispatch::Dispatcher {
        opts,
        epoch,
        store: &store,
        snapshots: &snapshots,
        context: context.as_ref(),
        df: &df,
        plan: &plan,
        plan_opts: &plan_opts,
        results: vec![None; plan.stages.len()],
        reporter: &reporter,
        scratch: scratch.path().to_path_buf(),
        arg_scopes: vec![None; plan.stages.len()],
    };

    for &idx in &plan.order {
        let stage = &plan.stages[idx];
        let base = match &stage.base {
            BaseRef::Scratch => StageState::scratch(&plan_opts.platform),
            BaseRef::Stage(i) => {
                let r = ctx.results[*i].clone().ok_or_else(|| {
                    BuildError::Internal(format!("stage {i} was not built before stage {idx}"))
                })?;
                StageState::from_result(r)
            }
            BaseRef::Image(name) => ctx.base_image(name, stage.from_line)?,
        };
        let result = ctx.run_stage(idx, base)?;
        ctx.results[idx] = Some(result);
    }

    let final_result: StageResult = ctx.results[plan.target]
        .clone()
        .ok_or_else(|| BuildError::Internal("target stage produced no result".into()))?;
    let (image_id, manifest_digest) = ctx.commit_image(&final_result)?;
    output::write_outputs(&ctx, &final_result, &image_id)?;
    reporter.message(&format!("writing image {image_id} done"));
    for t in &opts.tags {
        reporter.message(&format!("naming to {t} done"));
    }
    Ok(BuildResult {
        image_id,
        manifest_digest,
    })
}

/// Opens the build context; returns it and the Dockerfile path the user meant.
fn open_context(
    opts: &BuildOptions,
    scratch: &Path,
) -> Result<(Option<Context>, Option<PathBuf>), BuildError> {
    match &opts.context {
        ContextSource::Dir(dir) => {
            let meta = std::fs::metadata(dir).map_err(|e| BuildError::io(dir, e))?;
            if !meta.is_dir() {
                return Err(BuildError::Usage(format!(
                    "context {} is not a directory",
                    dir.display()
                )));
            }
            let df = match &opts.dockerfile {
                DockerfileSource::Default => Some(dir.join("Dockerfile")),
                DockerfileSource::Path(p) => Some(p.clone()),
                DockerfileSource::Stdin => None,
            };
            let ctx = Context::open(dir, df.as_deref().unwrap_or(&dir.join("Dockerfile")))
                .map_err(BuildError::context)?;
            Ok((Some(ctx), df))
        }
        ContextSource::StdinTar => {
            if matches!(opts.dockerfile, DockerfileSource::Stdin) {
                return Err(BuildError::Usage(
                    "the context and the Dockerfile cannot both come from stdin".into(),
                ));
            }
            let ctx = Context::from_tar(std::io::stdin().lock(), &scratch.join("context"))
                .map_err(BuildError::context)?;
            let df = match &opts.dockerfile {
                DockerfileSource::Path(p) => Some(p.clone()),
                _ => Some(ctx.root().join("Dockerfile")),
            };
            Ok((Some(ctx), df))
        }
    }
}

/// Reads the Dockerfile text. The default `Dockerfile` is a file of the context, so it is read
/// inside the context: a symlink in it is followed as if the context were `/`, never to a host
/// file (SECURITY C2). A `-f PATH` named by the user is read where it is.
fn read_dockerfile(
    opts: &BuildOptions,
    path: &Option<PathBuf>,
    ctx: Option<&Context>,
) -> Result<(String, PathBuf), BuildError> {
    match path {
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| BuildError::io(Path::new("-"), e))?;
            Ok((s, PathBuf::from("Dockerfile")))
        }
        Some(p) => {
            let bytes = match (&opts.dockerfile, ctx) {
                (DockerfileSource::Default, Some(ctx)) => {
                    let in_ctx = |e: pathrs::error::Error| {
                        BuildError::io(p, std::io::Error::other(e.to_string()))
                    };
                    let root = pathrs::Root::open(ctx.root()).map_err(in_ctx)?;
                    let mut f = root
                        .open_subpath("Dockerfile", pathrs::flags::OpenFlags::O_RDONLY)
                        .map_err(in_ctx)?;
                    let mut bytes = Vec::new();
                    f.read_to_end(&mut bytes)
                        .map_err(|e| BuildError::io(p, e))?;
                    bytes
                }
                _ => std::fs::read(p).map_err(|e| BuildError::io(p, e))?,
            };
            let text = String::from_utf8(bytes).map_err(|_| {
                BuildError::Usage(format!(
                    "{}: the Dockerfile is not valid UTF-8",
                    p.display()
                ))
            })?;
            // Errors name the Dockerfile as the user gave it.
            let shown = match &opts.dockerfile {
                DockerfileSource::Path(given) => given.clone(),
                _ => PathBuf::from("Dockerfile"),
            };
            Ok((text, shown))
        }
    }
}

/// Convenience for tests and the CLI: the default Dockerfile of a directory.
pub fn parse_dockerfile_file(path: &Path) -> Result<Dockerfile, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|e| BuildError::io(path, e))?;
    dockerfile::parse(&text, path).map_err(BuildError::Parse)
}
