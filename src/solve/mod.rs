//! Solving a build: parses the Dockerfile, plans the stages, lowers each stage once its base is
//! resolved (`plan::lower`), and runs the lowered steps through one loop (`solver`) that consults
//! and fills the build cache, executes what missed (`exec::Executor`, `fileop`, on
//! `snapshot::Snapshotter` snapshots), commits layers and images to the store, and writes the
//! requested outputs. docs/ARCHITECTURE.md draws the flow.

mod attest_step;
mod base;
mod cache;
mod error;
mod exec_step;
mod file_step;
mod incremental;
mod layer;
mod link;
pub mod load;
mod mounts;
pub mod options;
mod output;
mod progress;
pub mod pull;
mod record;
pub mod repro;
mod schedule;
mod solver;
mod squash;
mod ssh;
mod state;
mod trace;
mod workdir_step;

pub use error::BuildError;
pub use options::{
    BuildOptions, ContextSource, DockerfileSource, OutputKind, OutputSpec, Progress,
};

use crate::context::Context;
use crate::digest::Digest;
use crate::dockerfile::{self, Dockerfile};
use crate::exec::NamespaceExecutor;
use crate::image::index::{platform_of, Artifact, ImageIndex, IndexEntry};
use crate::plan::{BaseRef, Plan, PlanOptions};
use crate::platform::Platform;
use crate::snapshot::OverlaySnapshotter;
use crate::store::Store;
use progress::Reporter;
use state::{StageResult, StageState};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a finished build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image id: the digest of the config bytes (for several platforms, the image the
    /// tags point at in `repositories.json`: the host's platform, else the first).
    pub image_id: Digest,
    /// Several platforms: the stored index (`Store::get_index`) the tags denote.
    pub index_id: Option<Digest>,
    /// Each target platform with its image.
    pub images: Vec<(Platform, Digest)>,
}

/// Runs one build to completion.
pub fn build(opts: &BuildOptions) -> Result<BuildResult, BuildError> {
    let reporter = Reporter::new(opts.progress);
    let store = Store::open(&opts.root).map_err(BuildError::store)?;
    let snapshots =
        OverlaySnapshotter::open(&opts.root.join("overlay2")).map_err(BuildError::snapshot)?;
    // What killed builds left (incomplete snapshots, stale leases) goes before we add ours.
    store.recover(&snapshots).map_err(BuildError::store)?;

    // The context first: a stdin tar is extracted into scratch space under the root.
    // Named "<pid>-build-…" like every temp entry, so other processes' Store::open sees that its
    // owner is alive (a bare "build-" name would be taken for a dead process's and deleted).
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{}build-", crate::store::fsutil::tmp_prefix()))
        .tempdir_in(store.tmp_dir())
        .map_err(|e| BuildError::io(&store.tmp_dir(), e))?;
    let (context, dockerfile_path) = open_context(opts, scratch.path())?;
    let (df_text, df_display) = read_dockerfile(opts, &dockerfile_path, context.as_ref())?;
    let df = dockerfile::parse(&df_text, &df_display).map_err(BuildError::Parse)?;

    let epoch = opts.source_date_epoch.or_else(|| {
        opts.build_args
            .get("SOURCE_DATE_EPOCH")
            .and_then(|s| s.parse::<i64>().ok())
    });
    let cancel = opts.cancel.clone().unwrap_or_default();
    let executor = NamespaceExecutor {
        resources: opts.resources.clone(),
        ..NamespaceExecutor::new(scratch.path().to_path_buf())
    };
    pull::import_cache(opts, &store, &snapshots, &reporter)?;
    let shared = Shared {
        opts,
        epoch,
        store: &store,
        snapshots: &snapshots,
        executor: &executor,
        context: context.as_ref(),
        df: &df,
        reporter: &reporter,
        scratch: scratch.path(),
        cancel: &cancel,
        df_text: &df_text,
        platforms_done: Default::default(),
    };

    let platforms = if opts.platforms.is_empty() {
        vec![Platform::host()]
    } else {
        opts.platforms.clone()
    };
    if platforms.len() == 1 && !opts.force_index {
        // As BuildKit's exporter: index annotations without an index fail (here before building).
        let attested = opts.attest.provenance.is_some() || opts.attest.sbom;
        if !attested && crate::export::annotate::needs_index(&opts.annotations) {
            return Err(BuildError::Usage(
                "--annotation index: / index-descriptor: need an image index (build several \
                 --platform values)"
                    .into(),
            ));
        }
        return build_one(&shared, &platforms[0], true).map(|(r, _, _, _)| r);
    }
    // Several platforms: each is a whole solve; stages that do not depend on the target
    // (`FROM --platform=$BUILDPLATFORM`, no TARGET* args) have the same cache keys for every
    // target, so the second target finds them in the cache (docs/compat.md, "Multi-platform").
    let mut index = ImageIndex::default();
    let mut images = Vec::new();
    let mut attestations = Vec::new();
    let mut used_keys: Vec<Digest> = Vec::new();
    let mut finals: Option<StageResult> = None;
    for p in &platforms {
        let (res, used, final_result, attestation) = build_one(&shared, p, false)?;
        used_keys.extend(
            used.into_iter()
                .filter(|k| !used_keys.contains(k))
                .collect::<Vec<_>>(),
        );
        // mode=min keeps the records whose layers are in any of the final images.
        match &mut finals {
            Some(f) => f.layers.extend(final_result.layers),
            None => finals = Some(final_result),
        }
        let config = crate::image::ImageConfig::from_bytes(
            &store
                .image_config(&res.image_id)
                .map_err(BuildError::store)?,
        )
        .map_err(BuildError::store)?;
        let at = index.push(IndexEntry::image(
            res.image_id.clone(),
            platform_of(&config.os, &config.architecture, config.variant.as_deref()),
        ));
        attestations.extend(attestation.map(|a| (at, a)));
        images.push((p.clone(), res.image_id));
    }
    // As BuildKit: attestation manifests after all the images.
    for (at, a) in attestations {
        index.push(attest_step::index_entry(a, at));
    }
    finish_index(opts, &store, &mut index)?;
    let index_id = store.put_index(&index).map_err(BuildError::store)?;
    let host = Platform::host();
    let default = (
        host.os.as_str(),
        host.architecture.as_str(),
        host.variant.as_deref(),
    );
    for t in &opts.tags {
        let reference = crate::image::Reference::parse(t)
            .map_err(|e| BuildError::Usage(format!("invalid tag {t:?}: {e}")))?;
        store
            .tag_index(&reference, &index_id, default)
            .map_err(BuildError::store)?;
    }
    output::write_index_outputs(opts, &store, &reporter, &index_id)?;
    push_index_outputs(opts, &store, &reporter, &index_id)?;
    if opts
        .cache_to
        .contains(&crate::registry::cache::CacheSpec::Inline)
    {
        reporter
            .warn("--cache-to type=inline: not written into an image index (use type=registry)");
    }
    if let Some(f) = &finals {
        pull::export_cache(opts, &store, &reporter, &used_keys, f)?;
    }
    let image_id = crate::store::Store::index_default_image(&index, default)
        .ok_or_else(|| BuildError::Internal("the index has no image".into()))?;
    reporter.message(&format!("writing image index {index_id} done"));
    for t in &opts.tags {
        reporter.message(&format!("naming to {t} done"));
    }
    Ok(BuildResult {
        image_id,
        index_id: Some(index_id),
        images,
    })
}

/// The index of a multi-platform build before it is stored, tagged, written and pushed: where
/// index annotations are set and other manifests (attestations: `ImageIndex::push` an
/// `EntryContent::Artifact` with platform `unknown/unknown` and a `subject`) are added.
pub(super) fn finish_index(
    opts: &BuildOptions,
    _store: &Store,
    index: &mut ImageIndex,
) -> Result<(), BuildError> {
    index.annotations.extend(
        opts.index_annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Ok(())
}

/// What every platform's solve of one build shares.
struct Shared<'a> {
    opts: &'a BuildOptions,
    epoch: Option<i64>,
    store: &'a Store,
    snapshots: &'a OverlaySnapshotter,
    executor: &'a NamespaceExecutor,
    context: Option<&'a Context>,
    df: &'a Dockerfile,
    reporter: &'a Reporter,
    scratch: &'a Path,
    cancel: &'a std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The Dockerfile as read, for the provenance.
    df_text: &'a str,
    /// Targets solved so far (one-time warnings).
    platforms_done: std::sync::atomic::AtomicUsize,
}

/// Solves the build for one target platform. `alone`: the only platform, so the image is tagged,
/// written to the outputs and pushed here (else the caller makes an index of the images).
/// Returns the result, the cache keys used, the final stage's result and, when not `alone`, the
/// image's attestation manifest for the caller's index.
fn build_one(
    sh: &Shared<'_>,
    platform: &Platform,
    alone: bool,
) -> Result<(BuildResult, Vec<Digest>, StageResult, Option<Artifact>), BuildError> {
    let (opts, store, reporter) = (sh.opts, sh.store, sh.reporter);
    let plan_opts = PlanOptions {
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        platform: platform.clone(),
        build_platform: Platform::host(),
        named_contexts: opts.named_contexts.clone(),
    };
    let plan = Plan::new(sh.df, &plan_opts).map_err(BuildError::Plan)?;
    // Every target plans the same args: warn once.
    let first = sh
        .platforms_done
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        == 0;
    for unused in plan.unused_build_args.iter().filter(|_| first) {
        reporter.warn(&format!(
            "build arg {unused:?} was not consumed by any stage"
        ));
    }
    let cancel = sh.cancel.clone();
    let ctx = solver::Solver {
        opts,
        epoch: sh.epoch,
        store,
        snapshots: sh.snapshots,
        executor: sh.executor,
        context: sh.context,
        df: sh.df,
        plan: &plan,
        plan_opts: &plan_opts,
        results: std::sync::Mutex::new(vec![None; plan.stages.len()]),
        reporter,
        scratch: sh.scratch.to_path_buf(),
        arg_scopes: std::sync::Mutex::new(vec![None; plan.stages.len()]),
        cancel: cancel.clone(),
        used_keys: Default::default(),
        pulled: Default::default(),
        trace: Default::default(),
        started: jiff::Timestamp::now().as_second(),
    };

    // Independent stages build in parallel, each as soon as the stages it needs are done; stages the
    // target does not need are not in `plan.order` and never build.
    let build_stage = |idx: usize| -> Result<(), BuildError> {
        let stage = &plan.stages[idx];
        let base = match &stage.base {
            BaseRef::Scratch => StageState::scratch(&stage.target_platform),
            BaseRef::Stage(i) => {
                let r = ctx.result(*i).ok_or_else(|| {
                    BuildError::Internal(format!("stage {i} was not built before stage {idx}"))
                })?;
                StageState::from_result(r)
            }
            BaseRef::Image(name) => {
                ctx.base_image(name, stage.from_line, &stage.target_platform)?
            }
        };
        let result = ctx.run_stage(idx, base)?;
        ctx.set_result(idx, result);
        Ok(())
    };
    schedule::run(
        &plan.order,
        &|i| plan.stages[i].deps.clone(),
        opts.jobs.unwrap_or_else(schedule::default_jobs),
        &cancel,
        &|| BuildError::Interrupted,
        &build_stage,
    )?;
    if ctx.cancelled() {
        return Err(BuildError::Interrupted);
    }

    let final_result: StageResult = ctx
        .result(plan.target)
        .ok_or_else(|| BuildError::Internal("target stage produced no result".into()))?;
    let mut image_id = ctx.commit_image(&final_result, alone)?;
    if opts.squash {
        image_id = ctx.squash(&final_result, &image_id, alone)?;
    }
    let attestation = attest_step::artifact(&ctx, &final_result, &image_id, sh.df_text)?;
    let used = ctx.used_keys.lock().map(|k| k.clone()).unwrap_or_default();
    if !alone {
        let res = BuildResult {
            image_id,
            index_id: None,
            images: Vec::new(),
        };
        return Ok((res, used, final_result, attestation));
    }
    // Attestations make even one image an index (the image, then its attestation manifest).
    let index_id = match attestation {
        Some(a) => Some(attest_step::single_index(&ctx, &image_id, a)?),
        None => None,
    };
    output::write_outputs(&ctx, &final_result, &image_id, index_id.as_ref())?;
    let inline = pull::inline_cache(opts, store, reporter, &used, &final_result)?;
    match &index_id {
        Some(index_id) => push_index_outputs(opts, store, reporter, index_id)?,
        None => push_outputs(
            opts,
            store,
            reporter,
            &image_id,
            inline,
            &platform.to_string(),
        )?,
    }
    pull::export_cache(opts, store, reporter, &used, &final_result)?;
    reporter.message(&format!("writing image {image_id} done"));
    for t in &opts.tags {
        reporter.message(&format!("naming to {t} done"));
    }
    let res = BuildResult {
        image_id: image_id.clone(),
        index_id,
        images: vec![(platform.clone(), image_id)],
    };
    Ok((res, used, final_result, None))
}

/// Tags and pushes the index to every `--push` / `-o type=registry` name.
fn push_index_outputs(
    opts: &BuildOptions,
    store: &Store,
    reporter: &Reporter,
    index_id: &Digest,
) -> Result<(), BuildError> {
    let host = Platform::host();
    let default = (
        host.os.as_str(),
        host.architecture.as_str(),
        host.variant.as_deref(),
    );
    for name in &opts.push {
        let step = reporter.start(&format!("pushing {name}"));
        let reference = crate::image::Reference::parse_tagged(name)
            .map_err(|e| BuildError::Usage(format!("invalid push name {name:?}: {e}")))?;
        store
            .tag_index(&reference, index_id, default)
            .map_err(BuildError::store)?;
        let push_opts = crate::registry::PushOptions {
            quiet: reporter.quiet(),
            form: crate::store::LayerForm::Compress(opts.compression, opts.repro_profile),
            ..Default::default()
        };
        pull::push_index(
            store,
            &opts.registry,
            index_id,
            &reference,
            &push_opts,
            &opts.annotations,
        )
        .map_err(|e| BuildError::Export(Box::new(e)))?;
        reporter.done(step);
    }
    Ok(())
}

/// Tags and pushes the image to every `--push` / `-o type=registry` name.
fn push_outputs(
    opts: &BuildOptions,
    store: &Store,
    reporter: &Reporter,
    image_id: &Digest,
    inline_cache: Option<Vec<u8>>,
    platform: &str,
) -> Result<(), BuildError> {
    use crate::export::annotate::{select, AnnotationKind};
    for name in &opts.push {
        let step = reporter.start(&format!("pushing {name}"));
        let reference = crate::image::Reference::parse_tagged(name)
            .map_err(|e| BuildError::Usage(format!("invalid push name {name:?}: {e}")))?;
        store.tag(&reference, image_id).map_err(BuildError::store)?;
        let push_opts = crate::registry::PushOptions {
            quiet: reporter.quiet(),
            inline_cache: inline_cache.clone(),
            form: crate::store::LayerForm::Compress(opts.compression, opts.repro_profile),
            manifest_annotations: select(
                &opts.annotations,
                AnnotationKind::Manifest,
                Some(platform),
            ),
            ..Default::default()
        };
        pull::push(
            store,
            &opts.registry,
            &image_id.to_string(),
            Some(name),
            &push_opts,
        )
        .map_err(|e| BuildError::Export(Box::new(e)))?;
        reporter.done(step);
    }
    Ok(())
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
            let dir = scratch.join("context");
            let mut stdin = std::io::stdin().lock();
            let mut head = Vec::with_capacity(512);
            (&mut stdin)
                .take(512)
                .read_to_end(&mut head)
                .map_err(|e| BuildError::io(Path::new("-"), e))?;
            let compressed = matches!(
                head.as_slice(),
                [0x1f, 0x8b, ..]
                    | [b'B', b'Z', b'h', ..]
                    | [0xfd, b'7', b'z', b'X', b'Z', 0, ..]
                    | [0x28, 0xb5, 0x2f, 0xfd, ..]
            );
            let ctx = if compressed || crate::layer::is_tar(&head) {
                Context::from_tar(std::io::Cursor::new(head).chain(stdin), &dir)
                    .map_err(BuildError::context)?
            } else {
                // `docker build - < Dockerfile`: stdin is the Dockerfile itself and, as the docker
                // CLI does, the context holds only that Dockerfile.
                let mut text = head;
                stdin
                    .read_to_end(&mut text)
                    .map_err(|e| BuildError::io(Path::new("-"), e))?;
                std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                let df = dir.join("Dockerfile");
                std::fs::write(&df, text).map_err(|e| BuildError::io(&df, e))?;
                Context::open(&dir, &df).map_err(BuildError::context)?
            };
            // As `docker build -f F -`: a relative F names a file inside the context tar.
            let df = match &opts.dockerfile {
                DockerfileSource::Path(p) if p.is_relative() => Some(ctx.root().join(p)),
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
            // A Dockerfile of the context (the default one, or any inside a context that came
            // as a tar) is read inside that context: a symlink in it can never make rbuild read
            // (and echo in errors) a host file (SECURITY C2).
            let inside = match (&opts.context, &opts.dockerfile, ctx) {
                (ContextSource::StdinTar, _, Some(c)) if p.starts_with(c.root()) => {
                    Some((c, p.strip_prefix(c.root()).unwrap_or(p).to_path_buf()))
                }
                (_, DockerfileSource::Default, Some(c)) => Some((c, PathBuf::from("Dockerfile"))),
                _ => None,
            };
            let bytes = match inside {
                Some((c, rel)) => {
                    let root = pathrs::Root::open(c.root())
                        .map_err(|e| BuildError::io(c.root(), std::io::Error::other(e)))?;
                    let mut f = root
                        .open_subpath(&rel, pathrs::flags::OpenFlags::O_RDONLY)
                        .map_err(|e| {
                            BuildError::Usage(format!(
                                "{}: cannot open it inside the build context \
                                 (symlinks are resolved inside the context): {e}",
                                rel.display()
                            ))
                        })?;
                    let mut b = Vec::new();
                    f.read_to_end(&mut b).map_err(|e| BuildError::io(&rel, e))?;
                    b
                }
                None => std::fs::read(p).map_err(|e| BuildError::io(p, e))?,
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
