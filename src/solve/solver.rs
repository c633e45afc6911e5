//! The solve loop: takes each stage's lowered steps in order and, for each, consults the build
//! cache, executes what missed (through `solve::layer`, `solve::exec_step`, `solve::file_step`),
//! commits layers and records cache entries, and reports progress. The only part of a build that
//! talks to the store (docs/ARCHITECTURE.md).

use super::cache::{explain_miss, StepKey};
use super::error::BuildError;
use super::options::BuildOptions;
use super::progress::{Reporter, StepHandle};
use super::state::{StageResult, StageState};
use crate::context::Context;
use crate::digest::Digest;
use crate::dockerfile::Dockerfile;
use crate::exec::Executor;
use crate::image::{History, ImageConfig};
use crate::plan::lower::{self, LowerError, LowerInput, Op, Step};
use crate::plan::{ArgScope, BaseRef, Plan, PlanOptions};
use crate::snapshot::Snapshotter;
use crate::store::{CacheRecord, LayerRecord, Store};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Solver<'a> {
    pub opts: &'a BuildOptions,
    pub epoch: Option<i64>,
    pub store: &'a Store,
    pub snapshots: &'a dyn Snapshotter,
    pub executor: &'a dyn Executor,
    pub context: Option<&'a Context>,
    pub df: &'a Dockerfile,
    pub plan: &'a Plan,
    pub plan_opts: &'a PlanOptions,
    /// Finished stages; behind a lock because independent stages build on several threads.
    pub results: Mutex<Vec<Option<StageResult>>>,
    pub reporter: &'a Reporter,
    pub scratch: PathBuf,
    /// Each built stage's final ARG scope: a stage built FROM it starts from that scope.
    pub arg_scopes: Mutex<Vec<Option<ArgScope>>>,
    /// Set by Ctrl-C/SIGTERM or by a failing stage: running containers are killed and every stage
    /// stops at its next step.
    pub cancel: Arc<AtomicBool>,
    /// Cache keys this build hit or recorded (what `--cache-to` exports).
    pub used_keys: Mutex<Vec<Digest>>,
    /// `--pull`: the base names already re-resolved in their registry by this build (each once).
    pub pulled: Mutex<std::collections::BTreeMap<String, Digest>>,
    /// What the provenance records, collected as stages run (`solve::record`).
    pub trace: super::trace::Trace,
    /// When the build started (seconds since the epoch), for the provenance.
    pub started: i64,
}

impl<'a> Solver<'a> {
    pub(super) fn step_error(&self, line: usize, message: impl Into<String>) -> BuildError {
        let text = self
            .df
            .source
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim_end()
            .to_string();
        BuildError::Step {
            file: self.df.path.clone(),
            line,
            text,
            message: message.into(),
            exit_code: None,
        }
    }

    fn lower_error(&self, e: LowerError) -> BuildError {
        match e {
            LowerError::At { line, message } => self.step_error(line, message),
            LowerError::Parse(p) => BuildError::Parse(p),
        }
    }

    pub(super) fn now_created(&self) -> String {
        let t = match self.epoch {
            Some(e) => jiff::Timestamp::from_second(e).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            None => jiff::Timestamp::now(),
        };
        crate::image::config::format_time(t)
    }

    /// A finished stage's result, if it was built.
    pub fn result(&self, idx: usize) -> Option<StageResult> {
        lock(&self.results).get(idx).cloned().flatten()
    }

    pub fn set_result(&self, idx: usize, r: StageResult) {
        if let Some(slot) = lock(&self.results).get_mut(idx) {
            *slot = Some(r);
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Whether progress should say why a step missed the cache.
    pub(super) fn explain(&self) -> bool {
        self.opts.explain_cache || self.opts.progress != super::options::Progress::Quiet
    }

    fn stage_label(&self, idx: usize) -> String {
        match &self.plan.stages[idx].name {
            Some(n) => n.clone(),
            None => format!("stage-{idx}"),
        }
    }

    /// Lowers stage `idx` on its resolved base `st`, then solves its steps in order.
    pub fn run_stage(&self, idx: usize, mut st: StageState) -> Result<StageResult, BuildError> {
        let plan = self.plan;
        let stage = &plan.stages[idx];
        let parent_args = match &stage.base {
            BaseRef::Stage(i) => lock(&self.arg_scopes).get(*i).cloned().flatten(),
            _ => None,
        };
        let no_cache = self.opts.no_cache
            || self
                .opts
                .no_cache_filter
                .iter()
                .any(|f| stage.name.as_deref() == Some(f.as_str()) || *f == idx.to_string());
        self.reporter.message(&format!(
            "#0 [{}] FROM {}",
            self.stage_label(idx),
            describe_base(&stage.base, plan)
        ));
        let lowered = lower::lower_stage(&LowerInput {
            df: self.df,
            plan,
            opts: self.plan_opts,
            stage: idx,
            base: &st.config.config,
            base_author: st.config.author.clone(),
            parent_args: parent_args.as_ref(),
            history_format: self.opts.history_format,
        })
        .map_err(|e| self.lower_error(e))?;
        st.config.config = lowered.start;

        let total = lowered.steps.len();
        for (i, step) in lowered.steps.iter().enumerate() {
            let title = format!(
                "[{} {}/{}] {}",
                self.stage_label(idx),
                i + 1,
                total,
                one_line(&step.text)
            );
            if self.cancelled() {
                return Err(BuildError::Interrupted);
            }
            let mut handle = self.reporter.start(&title);
            match self.solve_step(&mut st, step, &mut handle, no_cache) {
                Ok(true) => self.reporter.cached(handle),
                Ok(false) => self.reporter.done(handle),
                Err(BuildError::Interrupted) => {
                    self.reporter.canceled(handle);
                    return Err(BuildError::Interrupted);
                }
                Err(e) => {
                    self.reporter.error(handle, "step failed");
                    return Err(e);
                }
            }
        }
        if let Some(slot) = lock(&self.arg_scopes).get_mut(idx) {
            *slot = Some(lowered.args);
        }
        Ok(st.into_result())
    }

    /// One step; returns whether it came from the cache.
    fn solve_step(
        &self,
        st: &mut StageState,
        step: &Step,
        handle: &mut StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        match &step.op {
            Op::Config(edit) => {
                st.config.config = edit.config.clone();
                st.config.author = edit.author.clone();
                if let (Some(m), Some(h)) = (&edit.mkdir, &edit.history) {
                    return self.workdir_step(st, m, h, &edit.key, step.line, handle, no_cache);
                }
                let key = StepKey::new(&st.key, edit.key.clone());
                if let Some(h) = &edit.history {
                    self.add_history(st, h.clone(), true);
                    self.keep_metadata_time(st, &key)?;
                }
                st.key = key.key;
                Ok(false)
            }
            Op::File(op) => self.file_step(st, op, step.line, handle, no_cache),
            Op::Exec(op) => self.exec_step(st, op, step.line, handle, no_cache),
        }
    }

    pub(super) fn add_history(&self, st: &mut StageState, created_by: String, empty_layer: bool) {
        st.config.history.push(History {
            created: Some(self.now_created()),
            created_by,
            author: String::new(),
            comment: self.opts.history_format.comment().to_string(),
            empty_layer,
        });
    }

    /// A metadata step's history time comes from its cache record when one exists (else the
    /// record is made now): a rebuild in which every step hits the cache then writes the same
    /// config, so the same image id, as BuildKit does (docs/compat.md).
    fn keep_metadata_time(&self, st: &mut StageState, key: &StepKey) -> Result<(), BuildError> {
        let _guard = self.store.lock().map_err(BuildError::store)?;
        let cached = self.store.cache_get(&key.key).map_err(BuildError::store)?;
        let created = cached
            .and_then(|rec| ImageConfig::from_bytes(&rec.config).ok())
            .and_then(|c| c.history.last().and_then(|h| h.created.clone()));
        match created {
            Some(t) => {
                if let Some(h) = st.config.history.last_mut() {
                    h.created = Some(t);
                }
            }
            None => {
                let record = CacheRecord {
                    config: st.config.to_bytes().map_err(BuildError::store)?,
                    chain_id: None,
                    inputs: key.inputs.clone(),
                    parent: Some(key.parent.clone()),
                };
                self.store
                    .cache_put(&key.key, &record)
                    .map_err(BuildError::store)?;
            }
        }
        Ok(())
    }

    /// Looks the step up in the cache; on a hit the state moves to the cached result.
    pub(super) fn try_cache(
        &self,
        st: &mut StageState,
        key: &StepKey,
        step: &StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        if no_cache {
            return Ok(false);
        }
        // Lookup and lease under the lock, so a concurrent prune cannot take the layer between.
        let guard = self.store.lock().map_err(BuildError::store)?;
        if let Some(rec) = self.store.cache_get(&key.key).map_err(BuildError::store)? {
            // The record's layer must sit on this state's top layer. A key names the inputs,
            // not the bytes below: two builds racing on one key can each commit a different
            // parent (a RUN's files differ by their times), and the other's child layer does not
            // fit on ours; re-running the step is then the only consistent result.
            let layer = match &rec.chain_id {
                Some(c) => self
                    .store
                    .get_layer(c)
                    .map_err(BuildError::store)?
                    .filter(|l| l.parent.as_ref() == st.chain_id()),
                None => None,
            };
            let layer_ok = rec.chain_id.is_none() || layer.is_some();
            if let Some(l) = &layer {
                self.store
                    .lease_layer(&l.chain_id)
                    .map_err(BuildError::store)?;
            }
            if layer_ok {
                // The step's own effect only: its layer and its history entry (time included,
                // so a cached rebuild keeps the image id). The rest of the config is this
                // build's: the key leaves out what does not change execution (Cmd, Labels,
                // `created`…), so the record may come from a base that differs there.
                let rec_config = ImageConfig::from_bytes(&rec.config).map_err(BuildError::store)?;
                if let Some(h) = rec_config.history.last() {
                    st.config.history.push(h.clone());
                }
                if let Some(l) = layer {
                    st.config.rootfs.diff_ids.push(l.diff_id.clone());
                    st.layers.push(l);
                }
                st.key = key.key.clone();
                lock(&self.used_keys).push(key.key.clone());
                return Ok(true);
            }
        }
        drop(guard);
        if self.explain() {
            self.reporter.detail(
                step,
                &format!("cache miss: {}", explain_miss(self.store, key)),
            );
        }
        Ok(false)
    }

    /// Records a layer step that ran: the layer (if anything changed), its history, and the
    /// cache record for `key`.
    pub(super) fn finish_layer_step(
        &self,
        st: &mut StageState,
        key: StepKey,
        layer: Option<LayerRecord>,
        created_by: String,
    ) -> Result<bool, BuildError> {
        let empty = layer.is_none();
        if let Some(l) = layer {
            st.config.rootfs.diff_ids.push(l.diff_id.clone());
            st.layers.push(l);
        }
        self.add_history(st, created_by, empty);
        let record = CacheRecord {
            config: st.config.to_bytes().map_err(BuildError::store)?,
            chain_id: if empty { None } else { st.chain_id().cloned() },
            inputs: key.inputs.clone(),
            parent: Some(key.parent.clone()),
        };
        self.store
            .cache_put(&key.key, &record)
            .map_err(BuildError::store)?;
        lock(&self.used_keys).push(key.key.clone());
        st.key = key.key;
        Ok(false)
    }

    /// Stores the final config as an image, tags it, and returns the image id.
    /// Stores the final image; `tag`: points the build's tags at it (not for one platform of several).
    pub fn commit_image(&self, r: &StageResult, tag: bool) -> Result<Digest, BuildError> {
        let mut config = r.config.clone();
        // `--label K=V` overrides the Dockerfile's LABELs, on the final image only (as BuildKit).
        config.config.labels.extend(self.opts.labels.clone());
        config.created = match self.epoch {
            Some(_) => Some(self.now_created()),
            // The newest history entry: a fully cached rebuild then gives the same image id.
            None => config
                .history
                .iter()
                .rev()
                .find_map(|h| h.created.clone())
                .or_else(|| Some(self.now_created())),
        };
        let bytes = config.to_bytes().map_err(BuildError::store)?;
        let _lock = self.store.lock().map_err(BuildError::store)?;
        let id = self
            .store
            .put_image(&bytes, r.parent_image.as_ref())
            .map_err(BuildError::store)?;
        for t in self.opts.tags.iter().filter(|_| tag) {
            let reference = crate::image::reference::Reference::parse(t)
                .map_err(|e| BuildError::Usage(format!("invalid tag {t:?}: {e}")))?;
            self.store.tag(&reference, &id).map_err(BuildError::store)?;
        }
        Ok(id)
    }
}

/// Locks a mutex, tolerating poison: a panicking stage thread cannot leave these slots half-written.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn describe_base(base: &BaseRef, plan: &Plan) -> String {
    match base {
        BaseRef::Scratch => "scratch".into(),
        BaseRef::Stage(i) => plan.stages[*i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}")),
        BaseRef::Image(n) => n.clone(),
    }
}

pub(super) fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if s.lines().nth(1).is_some() {
        format!("{first} ...")
    } else {
        first.to_string()
    }
}
