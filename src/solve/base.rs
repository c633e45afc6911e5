//! What a stage starts from and what `--from` reads: images in the store (pulled when missing)
//! and earlier stages' results, the latter as read-only views mounted through the snapshotter.

use super::error::BuildError;
use super::solver::{lock, Solver};
use super::state::StageState;
use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::plan::CopyFrom;
use crate::platform::Platform;
use crate::snapshot::Mounted;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a COPY --from / RUN --mount from= reads: a read-only view of another stage or image.
pub(super) enum SourceView {
    Mounted(Mounted),
    Empty(tempfile::TempDir),
    /// A bind source resolved inside its root, held open by an O_PATH handle; the path is the
    /// handle's `/proc/<pid>/fd/N`, so nothing resolves the source by name again.
    Pinned {
        _handle: pathrs::Handle,
        path: PathBuf,
    },
}

impl SourceView {
    pub(super) fn path(&self) -> &Path {
        match self {
            SourceView::Mounted(m) => m.path(),
            SourceView::Empty(d) => d.path(),
            SourceView::Pinned { path, .. } => path,
        }
    }
}

impl Solver<'_> {
    /// Resolves `FROM name` (or `COPY --from=name` naming an image) in the local store, pulling
    /// it for `platform` when it is not there.
    pub fn base_image(
        &self,
        name: &str,
        line: usize,
        platform: &Platform,
    ) -> Result<StageState, BuildError> {
        let id = match self.local_base(name, platform)? {
            // `--pull`: the registry's newest digest wins over the stored tag (once per build).
            // An image id (a named context's image) has no registry to ask.
            _ if self.opts.pull
                && Digest::parse(name).is_err()
                && crate::image::Reference::parse(name).is_ok() =>
            {
                self.repull_base(name, line, platform)?
            }
            Some(id) => id,
            None => self.pull_base(name, line, platform)?,
        };
        self.note_base(name, platform, &id);
        let bytes = self.store.image_config(&id).map_err(BuildError::store)?;
        // Docker's container fields of the base are not carried into the new image.
        let config = ImageConfig::from_bytes(&bytes)
            .map_err(BuildError::store)?
            .into_base();
        let mut layers = Vec::new();
        // Under the lock, with the top layer leased at once: a concurrent prune or rmi then
        // keeps the base layers (and their snapshots) for the rest of this build.
        let _lock = self.store.lock().map_err(BuildError::store)?;
        for c in crate::digest::chain_ids(&config.rootfs.diff_ids) {
            let rec = self
                .store
                .get_layer(&c)
                .map_err(BuildError::store)?
                .ok_or_else(|| {
                    self.step_error(
                        line,
                        format!("layer {c} of image {name} is missing from the store"),
                    )
                })?;
            layers.push(rec);
        }
        if let Some(top) = layers.last() {
            self.store
                .lease_layer(&top.chain_id)
                .map_err(BuildError::store)?;
        }
        let key = base_key(&config, layers.last().map(|l| &l.chain_id));
        Ok(StageState {
            config,
            layers,
            key,
            parent_image: Some(id),
        })
    }

    /// `--pull`: pulls `name` again (its manifest re-resolved; layers already stored are not
    /// fetched), once per build however many stages name it.
    fn repull_base(
        &self,
        name: &str,
        line: usize,
        platform: &Platform,
    ) -> Result<Digest, BuildError> {
        let mut pulled = lock(&self.pulled);
        if let Some(id) = pulled.get(name) {
            return Ok(id.clone());
        }
        let id = self.fetch_base(name, line, platform)?;
        pulled.insert(name.to_string(), id.clone());
        Ok(id)
    }

    /// Pulls an image that is not in the store (`FROM` / `COPY --from=<image>`).
    fn pull_base(
        &self,
        name: &str,
        line: usize,
        platform: &Platform,
    ) -> Result<Digest, BuildError> {
        // Stages build in parallel: two that need the same missing image pull it once.
        static PULLING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = lock(&PULLING);
        if let Some(id) = self.local_base(name, platform)? {
            return Ok(id);
        }
        self.fetch_base(name, line, platform)
    }

    /// Pulls `name` from its registry into the store.
    fn fetch_base(
        &self,
        name: &str,
        line: usize,
        platform: &Platform,
    ) -> Result<Digest, BuildError> {
        if crate::image::Reference::parse(name).is_err() {
            return Err(self.step_error(
                line,
                format!(
                    "base image {name:?} is not in the store at {} and is not a valid reference to pull",
                    self.opts.root.display()
                ),
            ));
        }
        let step = self.reporter.start(&format!("pulling {name}"));
        let opts = crate::registry::PullOptions {
            platform: platform.clone(),
            quiet: self.reporter.quiet(),
            ..Default::default()
        };
        let pulled =
            super::pull::pull(self.store, self.snapshots, &self.opts.registry, name, &opts)
                .map_err(|e| {
                    // Say both what failed and the offline way in: a user without a registry
                    // most likely meant an image they can `rbuild load`.
                    self.step_error(
                        line,
                        if self.opts.pull {
                            format!("pulling base image {name:?} (--pull) failed: {e}")
                        } else {
                            format!(
                                "base image {name:?} is not in the store at {} and pulling it \
                                 failed: {e} (load it with `rbuild load -i FILE` or check the \
                                 registry)",
                                self.opts.root.display()
                            )
                        },
                    )
                })?;
        self.reporter.done(step);
        Ok(pulled.id)
    }

    /// The local image `name` means for `platform`: the matching member of a multi-platform
    /// name (docs/store-layout.md "Image indexes"), or the image a tag names when it is for that
    /// platform. An id or digest is taken as given.
    fn local_base(&self, name: &str, platform: &Platform) -> Result<Option<Digest>, BuildError> {
        let st = |e| BuildError::store(e);
        if let Some(index) = self.store.resolve_index(name).map_err(st)? {
            for id in self.store.get_index(&index).map_err(st)?.image_ids() {
                if self.image_is_for(id, platform)? {
                    return Ok(Some(id.clone()));
                }
            }
            return Ok(None);
        }
        let Some(id) = self.store.resolve(name).map_err(st)? else {
            return Ok(None);
        };
        let by_id = name.starts_with("sha256:") || name.contains('@');
        // No `--platform` and a stage for the host: the tagged image is used whatever its
        // config says, as before multi-platform builds (and as Docker's builder does).
        let unasked = self.opts.platforms.is_empty() && *platform == Platform::host();
        Ok((by_id || unasked || self.image_is_for(&id, platform)?).then_some(id))
    }

    fn image_is_for(&self, id: &Digest, platform: &Platform) -> Result<bool, BuildError> {
        let c = ImageConfig::from_bytes(&self.store.image_config(id).map_err(BuildError::store)?)
            .map_err(BuildError::store)?;
        // An image that names no architecture is taken for any platform; a variant only
        // excludes when both name one (a local image is not re-pulled for a missing variant).
        let have = Platform {
            os: c.os,
            architecture: c.architecture,
            variant: c.variant.filter(|v| !v.is_empty()),
        }
        .normalize();
        let want = platform.clone().normalize();
        Ok(have.architecture.is_empty()
            || (have.os == want.os
                && have.architecture == want.architecture
                && (have.variant.is_none()
                    || want.variant.is_none()
                    || have.variant == want.variant)))
    }

    /// A read-only view of what a `--from` names (as the lowering resolved it), and the cache
    /// key of that state.
    pub(super) fn source_view(
        &self,
        from: &CopyFrom,
        line: usize,
    ) -> Result<(SourceView, String), BuildError> {
        let state: StageState = match from {
            CopyFrom::Stage(i) => {
                let r = self.result(*i).ok_or_else(|| {
                    self.step_error(line, format!("stage {i} has not been built"))
                })?;
                StageState::from_result(r)
            }
            CopyFrom::Image(name) => self.base_image(name, line, &self.plan_opts.platform)?,
        };
        let key = state.key.to_string();
        let view = match state.top_cache_id() {
            Some(id) => {
                let specs = self.snapshots.view(id).map_err(BuildError::snapshot)?;
                SourceView::Mounted(
                    crate::snapshot::mount_fresh(&specs, &self.scratch)
                        .map_err(BuildError::snapshot)?,
                )
            }
            None => SourceView::Empty(
                tempfile::Builder::new()
                    .prefix("empty-")
                    .tempdir_in(&self.scratch)
                    .map_err(|e| BuildError::io(&self.scratch, e))?,
            ),
        };
        Ok((view, key))
    }
}

/// The cache key of an image used as a base: its content (the chainID of its layers) and the
/// config fields that change how later steps run, as BuildKit keys an image source by its
/// chainID. Not its id: that covers `created`, history and labels, so two stores that built the
/// same base at different times would miss each other's `--cache-from` records.
pub(super) fn base_key(config: &ImageConfig, chain_id: Option<&Digest>) -> Digest {
    let c = &config.config;
    let body = serde_json::json!({
        "chain_id": chain_id.map(|d| d.to_string()),
        "env": c.env,
        "user": c.user,
        "working_dir": c.working_dir,
        "shell": c.shell,
        "on_build": c.on_build,
    });
    Digest::of_bytes(format!("image {body}").as_bytes())
}
