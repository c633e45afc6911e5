//! A file operation (COPY/ADD): sources hashed for the cache key, the cache consulted, `--link`
//! layers reused, and on a miss the copy applied to a new snapshot (`fileop`).

use super::cache::StepKey;
use super::error::BuildError;
use super::progress::{BarReader, DownloadBars, StepHandle};
use super::solver::Solver;
use super::state::StageState;
use crate::context::{self, CopyRequest, SourceRoot};
use crate::fileop::{self, FileOpError, Target};
use crate::image::history::{self, HistoryFormat};
use crate::layer;
use crate::plan::lower::FileOp;
use crate::store::LayerRecord;
use std::path::Path;

impl Solver<'_> {
    pub(super) fn file_step(
        &self,
        st: &mut StageState,
        c: &FileOp,
        line: usize,
        step: &mut StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        let (view, from_key) = match &c.from {
            Some((_, from)) => {
                let (v, k) = self.source_view(from, line)?;
                (Some(v), Some(k))
            }
            None => (None, None),
        };
        let source = match (&view, self.context) {
            (Some(v), _) => SourceRoot::Rootfs(v.path()),
            (None, Some(ctx)) => SourceRoot::Context(ctx),
            (None, None) => return Err(self.step_error(line, "no build context")),
        };
        let downloads = DownloadBars {
            bars: self.reporter.bar_factory(),
            step_id: step.id(),
        };
        let remote = context::remote::RemoteCache::new(
            &self.opts.root.join("cache").join("http"),
            context::CopyEnv::default().max_download,
        )
        .with_progress(&downloads);
        let req = CopyRequest {
            remote: Some(&remote),
            sources: c.sources.clone(),
            inline: c
                .heredocs
                .iter()
                .map(|(n, content)| (n.clone(), content.clone().into_bytes()))
                .collect(),
            dest: c.dest.clone(),
            workdir: c.workdir.clone(),
            chown: c.chown.clone(),
            chmod: c.chmod.clone(),
            exclude: c.exclude.clone(),
            parents: c.parents,
            timestamp: c.timestamp,
            is_add: c.is_add,
            checksum: c.checksum.clone(),
            keep_git_dir: c.keep_git_dir,
            unpack: c.unpack,
            link: c.link,
            source,
        };
        let memo = context::MemoPath::in_root(&self.opts.root, "context-hashes.json");
        // Resolved once: the key is computed from, and the copy writes, this one resolution.
        let resolution =
            context::resolve(&req).map_err(|e| self.step_error(line, e.to_string()))?;
        let content = context::hash_resolved(&req, &resolution, Some(&memo))
            .map_err(|e| self.step_error(line, e.to_string()))?;
        // Classic history names content as Docker's classic builder does (file:/dir:/multi:<tarsum>).
        let source_hash = match self.opts.history_format {
            HistoryFormat::Classic => context::tarsum::classic_source_id_resolved(
                &req,
                &resolution,
                Some(&context::MemoPath::in_root(
                    &self.opts.root,
                    "classic-tarsums.json",
                )),
            )
            .map_err(|e| self.step_error(line, e.to_string()))?,
            HistoryFormat::Buildkit => String::new(),
        };
        let mut shown_sources: Vec<String> =
            c.heredocs.iter().map(|(n, _)| format!("<<{n}")).collect();
        shown_sources.extend(c.sources.iter().cloned());
        let created_by = history::copy(
            self.opts.history_format,
            &c.shell,
            &history::CopyHistory {
                instruction: if c.is_add { "ADD" } else { "COPY" },
                chown: c.chown.as_deref(),
                chmod: c.chmod.as_deref(),
                parents: c.parents,
                sources: &shown_sources,
                dest: &c.dest,
                source_hash: &source_hash,
            },
        );
        let mut inputs = c.key.clone();
        inputs.insert("instruction".to_string(), created_by.clone());
        inputs.insert("sources".to_string(), content.to_string());
        if let Some(k) = from_key {
            inputs.insert("from".to_string(), k);
        }
        inputs.insert("layer-format".to_string(), self.layer_format());
        let key = StepKey::new(&st.key, inputs);
        if self.try_cache(st, &key, step, no_cache)? {
            return Ok(true);
        }
        let link_key = c.link.then(|| super::link::content_key(&key.inputs));
        if let (Some(lk), false) = (&link_key, no_cache) {
            if let Some(layer) = self.relink_step(st, lk, step)? {
                return self
                    .finish_layer_step(st, key, Some(layer), created_by)
                    .map(|_| true);
            }
        }
        let bars = self.reporter.bar_factory();
        let step_id = step.id();
        let extract = |file: &Path,
                       root: &Path,
                       dest: &Path,
                       owner: Option<(u32, u32)>|
         -> Result<bool, String> {
            let opts = layer::ApplyOptions {
                whiteouts: layer::WhiteoutMode::None,
                max_bytes: None,
                same_owner: true,
                limits: layer::Limits::default(),
            };
            let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let size = f.metadata().map(|m| m.len()).ok();
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let bar = bars.bytes(step_id, &format!("extracting {name}"), size);
            let done = layer::archive::extract_reader_if_archive_as(
                BarReader::new(
                    crate::cancel::Reader::new(f, Some(self.cancel.clone())),
                    bar.clone(),
                ),
                root,
                dest,
                &opts,
                owner,
            )
            .map_err(|e| e.to_string())?;
            if done {
                bar.finish();
            }
            Ok(done)
        };
        // --link: the layer is made in an empty root, independent of the layers below it, so it
        // is written straight into the upper dir; `fileop::choose_target` says when a plain COPY
        // may do the same.
        let parents: Vec<&str> = st.layers.iter().map(|l| l.cache_id.as_str()).collect();
        let target = if c.link {
            Target::Upper
        } else {
            fileop::choose_target(
                self.snapshots,
                &parents,
                &req,
                c.is_add || c.chown.is_some(),
            )
        };
        // Incremental COPY: only into an upper dir (links cannot cross into a mounted view).
        // --no-cache copies afresh, but still records what it wrote for the next build.
        let reuse = match target {
            Target::Upper => Some(self.copy_reuse(&key.inputs, &resolution, !no_cache)?),
            Target::Mounted => None,
        };
        let layer = self.layer_step(st, step.id(), |active| {
            let env = context::CopyEnv {
                extract: Some(&extract),
                scratch: Some(&self.scratch),
                cancel: Some(&*self.cancel),
                reuse: reuse.as_ref().map(|(r, _)| r),
                ..Default::default()
            };
            fileop::apply_copy(
                self.snapshots,
                active,
                target,
                &self.scratch,
                (&req, &resolution),
                &env,
            )
            .map(|_| ())
            .map_err(|e| match e {
                FileOpError::Copy(context::ContextError::Cancelled(_)) => BuildError::Interrupted,
                FileOpError::Copy(e) => self.step_error(line, e.to_string()),
                FileOpError::Snapshot(e) => BuildError::snapshot(e),
            })
        })?;
        drop(view);
        if let (Some((r, memo)), Some(l)) = (&reuse, &layer) {
            self.save_lineage(memo, r, l);
        }
        let made = layer.clone();
        let cached = self.finish_layer_step(st, key, layer, created_by)?;
        if let (Some(lk), Some(l)) = (&link_key, &made) {
            let config = st.config.to_bytes().map_err(BuildError::store)?;
            super::link::record(self.store, lk, l, config)?;
        }
        Ok(cached)
    }

    /// `--link` after a cache miss: the layer made earlier for the same content (on any parent),
    /// stacked on this stage as a new layer record of the same blob.
    fn relink_step(
        &self,
        st: &StageState,
        lk: &StepKey,
        step: &StepHandle,
    ) -> Result<Option<LayerRecord>, BuildError> {
        let relinked = match super::link::relink(self.store, self.snapshots, st.layers.last(), lk) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            // The earlier layer cannot be used (e.g. its blob is damaged): copy afresh.
            Err(e) => {
                self.reporter
                    .detail(step, &format!("--link layer not reused: {e}"));
                return Ok(None);
            }
        };
        if self.explain() {
            self.reporter.detail(
                step,
                &format!(
                    "reused layer {} via --link (content unchanged; taken from layer {}, \
                     stacked on the new parent without copying)",
                    relinked.layer.diff_id,
                    relinked.from.short()
                ),
            );
        }
        Ok(Some(relinked.layer))
    }
}
