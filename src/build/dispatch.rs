//! Dispatches a stage's instructions: metadata instructions edit the config, RUN/COPY/ADD produce layers on
//! overlay snapshots; every layer step goes through the build cache.

use super::cache::{explain_miss, StepKey};
use super::error::BuildError;
use super::options::BuildOptions;
use super::progress::{BarReader, BarWriter, DownloadBars, Reporter, StepHandle};
use super::state::{StageResult, StageState};
use crate::context::{self, Context, CopyRequest, SourceRoot};
use crate::digest::{chain_id, Digest};
use crate::dockerfile::instruction::{
    AddInst, CommandLine, CopyInst, HealthcheckInst, Instruction, RunInst,
};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, Located};
use crate::exec::{self, Mount, MountKind, Network, RunSpec};
use crate::image::history::{self, HistoryFormat};
use crate::image::{History, ImageConfig};
use crate::layer::{self, Compression, LayerOptions};
use crate::plan::{ArgScope, Plan, PlanOptions};
use crate::snapshot::{Mounted, Snapshotter};
use crate::store::{CacheRecord, LayerRecord, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The default SHELL on Linux.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

pub struct Dispatcher<'a> {
    pub opts: &'a BuildOptions,
    pub epoch: Option<i64>,
    pub store: &'a Store,
    pub snapshots: &'a Snapshotter,
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
}

/// Where a COPY --from / RUN --mount from= reads: a read-only view of another stage or image.
enum SourceView {
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
    fn path(&self) -> &Path {
        match self {
            SourceView::Mounted(m) => m.path(),
            SourceView::Empty(d) => d.path(),
            SourceView::Pinned { path, .. } => path,
        }
    }
}

impl<'a> Dispatcher<'a> {
    fn step_error(&self, line: usize, message: impl Into<String>) -> BuildError {
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

    fn now_created(&self) -> String {
        let t = match self.epoch {
            Some(e) => jiff::Timestamp::from_second(e).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            None => jiff::Timestamp::now(),
        };
        crate::image::config::format_time(t)
    }

    /// Resolves `FROM name` (or `COPY --from=name` naming an image) in the local store.
    pub fn base_image(&self, name: &str, line: usize) -> Result<StageState, BuildError> {
        let id = match self.store.resolve(name).map_err(BuildError::store)? {
            Some(id) => id,
            None => self.pull_base(name, line)?,
        };
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
        Ok(StageState {
            config,
            layers,
            key: Digest::of_bytes(format!("image {id}").as_bytes()),
            parent_image: Some(id),
        })
    }

    /// Pulls an image that is not in the store (`FROM` / `COPY --from=<image>`).
    fn pull_base(&self, name: &str, line: usize) -> Result<Digest, BuildError> {
        if crate::image::Reference::parse(name).is_err() {
            return Err(self.step_error(
                line,
                format!(
                    "base image {name:?} is not in the store at {} and is not a valid reference to pull",
                    self.opts.root.display()
                ),
            ));
        }
        // Stages build in parallel: two that need the same missing image pull it once.
        static PULLING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = lock(&PULLING);
        if let Some(id) = self.store.resolve(name).map_err(BuildError::store)? {
            return Ok(id);
        }
        let step = self.reporter.start(&format!("pulling {name}"));
        let opts = crate::registry::PullOptions {
            platform: self.plan_opts.platform.clone(),
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
                        format!(
                    "base image {name:?} is not in the store at {} and pulling it failed: {e} \
                             (load it with `rbuild load -i FILE` or check the registry)",
                    self.opts.root.display()
                ),
                    )
                })?;
        self.reporter.done(step);
        Ok(pulled.id)
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

    fn stage_label(&self, idx: usize) -> String {
        match &self.plan.stages[idx].name {
            Some(n) => n.clone(),
            None => format!("stage-{idx}"),
        }
    }

    pub fn run_stage(&self, idx: usize, mut st: StageState) -> Result<StageResult, BuildError> {
        let plan = self.plan;
        let stage = &plan.stages[idx];
        let mut args = match &stage.base {
            crate::plan::BaseRef::Stage(i) => {
                match lock(&self.arg_scopes).get(*i).and_then(|a| a.as_ref()) {
                    Some(parent) => ArgScope::inherit(parent),
                    None => ArgScope::new(plan, self.plan_opts, idx),
                }
            }
            _ => ArgScope::new(plan, self.plan_opts, idx),
        };
        let no_cache = self.opts.no_cache
            || self
                .opts
                .no_cache_filter
                .iter()
                .any(|f| stage.name.as_deref() == Some(f.as_str()) || *f == idx.to_string());

        // ONBUILD triggers of the base run first, and are not inherited further.
        let mut instructions: Vec<Located<Instruction>> = Vec::new();
        // (Triggers of an earlier stage of this Dockerfile were already placed by the plan.)
        let triggers = std::mem::take(&mut st.config.config.on_build);
        if matches!(stage.base, crate::plan::BaseRef::Image(_)) && !triggers.is_empty() {
            {
                let parsed = crate::plan::parse_onbuild_triggers(&triggers, &self.df.path)
                    .map_err(BuildError::Parse)?;
                instructions.extend(parsed);
            }
        }
        instructions.extend(stage.instructions.iter().cloned());

        self.reporter.message(&format!(
            "#0 [{}] FROM {}",
            self.stage_label(idx),
            describe_base(&stage.base, plan)
        ));
        let total = instructions.len();
        let mut cmd_set_here = false;
        for (i, inst) in instructions.iter().enumerate() {
            let title = format!(
                "[{} {}/{}] {}",
                self.stage_label(idx),
                i + 1,
                total,
                one_line(&inst.original)
            );
            if self.cancelled() {
                return Err(BuildError::Interrupted);
            }
            let mut step = self.reporter.start(&title);
            match self.dispatch(
                idx,
                &mut st,
                &mut args,
                inst,
                &mut step,
                no_cache,
                &mut cmd_set_here,
            ) {
                Ok(cached) => {
                    if cached {
                        self.reporter.cached(step)
                    } else {
                        self.reporter.done(step)
                    }
                }
                Err(BuildError::Interrupted) => {
                    self.reporter.canceled(step);
                    return Err(BuildError::Interrupted);
                }
                Err(e) => {
                    self.reporter.error(step, "step failed");
                    return Err(e);
                }
            }
        }
        if let Some(slot) = lock(&self.arg_scopes).get_mut(idx) {
            *slot = Some(args);
        }
        Ok(st.into_result())
    }

    /// The environment used to expand words: image Env, then build args not shadowed by Env.
    fn expansion_env(st: &StageState, args: &ArgScope) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = st
            .config
            .config
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        for (k, v) in args.values() {
            if let Some(v) = v {
                if !env.iter().any(|(ek, _)| ek == k) {
                    env.push((k.clone(), v.clone()));
                }
            }
        }
        env
    }

    fn add_history(&self, st: &mut StageState, created_by: String, empty_layer: bool) {
        st.config.history.push(History {
            created: Some(self.now_created()),
            created_by,
            author: String::new(),
            comment: self.opts.history_format.comment().to_string(),
            empty_layer,
        });
    }

    /// A metadata instruction: new config, history with `empty_layer`, and a new state key.
    fn metadata(&self, st: &mut StageState, created_by: String) {
        self.add_history(st, created_by.clone(), true);
        let mut inputs = BTreeMap::new();
        inputs.insert("instruction".to_string(), created_by);
        st.key = StepKey::new(&st.key, inputs).key;
    }

    /// Output profile and mtime clamp: part of a layer step's cache key, so a build asking for
    /// other tar bytes (another profile or SOURCE_DATE_EPOCH) does not reuse a layer made with the
    /// old ones. The codec is not: layers are stored as tars and compressed per output.
    fn layer_format(&self) -> String {
        let mut f = format!("tar profile {}", self.opts.repro_profile.number());
        if let Some(t) = self.clamp_mtime() {
            f.push_str(&format!(" clamp {t}"));
        }
        f
    }

    /// The time every file of a new layer is clamped to, if any (`rewrite-timestamp`).
    fn clamp_mtime(&self) -> Option<i64> {
        if self.opts.rewrite_timestamp {
            self.epoch
        } else {
            None
        }
    }

    fn shell(st: &StageState) -> Vec<String> {
        if st.config.config.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            st.config.config.shell.clone()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        stage_idx: usize,
        st: &mut StageState,
        args: &mut ArgScope,
        inst: &Located<Instruction>,
        step: &mut StepHandle,
        no_cache: bool,
        cmd_set_here: &mut bool,
    ) -> Result<bool, BuildError> {
        let line = inst.start_line;
        let lexer = Lexer::new(self.df.escape);
        let env = Self::expansion_env(st, args);
        let expanded = inst
            .inner
            .expand(&lexer, &env)
            .map_err(|e| self.step_error(line, e.to_string()))?;
        let fmt = self.opts.history_format;
        let shell = Self::shell(st);
        match expanded {
            Instruction::Env(e) => {
                let pairs = e.pairs;
                for (k, v) in &pairs {
                    st.config.set_env(k, v);
                }
                self.metadata(st, history::env(fmt, &shell, &pairs));
            }
            Instruction::Label(l) => {
                let pairs = l.pairs;
                for (k, v) in &pairs {
                    st.config.config.labels.insert(k.clone(), v.clone());
                }
                self.metadata(st, history::label(fmt, &shell, &pairs));
            }
            Instruction::Maintainer(m) => {
                let name = m.maintainer;
                st.config.author = Some(name.clone());
                self.metadata(st, history::simple(fmt, &shell, "MAINTAINER", &name));
            }
            Instruction::Expose(e) => {
                let ports = e.ports;
                for p in history::normalize_ports(&ports) {
                    st.config.config.exposed_ports.insert(p, Default::default());
                }
                self.metadata(st, history::expose(fmt, &shell, &ports));
            }
            Instruction::Volume(v) => {
                let vols = v.volumes;
                for v in &vols {
                    st.config
                        .config
                        .volumes
                        .insert(v.clone(), Default::default());
                }
                self.metadata(st, history::volume(fmt, &shell, &vols));
            }
            Instruction::User(u) => {
                let u = u.user;
                st.config.config.user = u.clone();
                self.metadata(st, history::simple(fmt, &shell, "USER", &u));
            }
            Instruction::Workdir(w) => {
                let w = w.path;
                let current = workdir_of(st);
                let joined = join_workdir(&current, &w);
                st.config.config.working_dir = joined.clone();
                self.metadata(st, history::workdir(fmt, &shell, &joined));
            }
            Instruction::Stopsignal(s) => {
                let s = s.signal;
                st.config.config.stop_signal = s.clone();
                self.metadata(st, history::simple(fmt, &shell, "STOPSIGNAL", &s));
            }
            Instruction::Arg(a) => {
                let decls = a.args;
                let mut shown = Vec::new();
                for (name, default) in &decls {
                    let value = args.declare(name, default.clone());
                    // BuildKit records the resolved value; classic the Dockerfile default.
                    let recorded = match fmt {
                        HistoryFormat::Buildkit => value,
                        HistoryFormat::Classic => default.clone(),
                    };
                    shown.push((name.clone(), recorded));
                }
                self.metadata(st, history::arg(fmt, &shell, &shown));
            }
            Instruction::Cmd(c) => {
                let argv = command_argv(&c.cmd, &shell);
                st.config.config.cmd = Some(argv.clone());
                st.config.config.args_escaped = true;
                *cmd_set_here = true;
                self.metadata(st, history::cmd(fmt, &shell, &argv));
            }
            Instruction::Entrypoint(e) => {
                let argv = command_argv(&e.cmd, &shell);
                st.config.config.entrypoint = Some(argv.clone());
                // Docker: ENTRYPOINT resets a CMD inherited from the base, not one set in this stage.
                if !*cmd_set_here {
                    st.config.config.cmd = None;
                }
                self.metadata(st, history::entrypoint(fmt, &shell, &argv));
            }
            Instruction::Shell(sh) => {
                let new_shell = sh.shell;
                st.config.config.shell = new_shell.clone();
                self.metadata(st, history::shell(fmt, &new_shell));
            }
            Instruction::Onbuild(o) => {
                let text = o.expression;
                st.config.config.on_build.push(text.clone());
                // BuildKit records no history entry for ONBUILD; classic does.
                match history::onbuild(fmt, &shell, &text) {
                    Some(h) => self.metadata(st, h),
                    None => {
                        let mut inputs = BTreeMap::new();
                        inputs.insert("instruction".to_string(), format!("ONBUILD {text}"));
                        st.key = StepKey::new(&st.key, inputs).key;
                    }
                }
            }
            Instruction::Healthcheck(hc) => {
                let h = healthcheck_config(&hc, &shell);
                let text = history::healthcheck(fmt, &shell, &h);
                st.config.config.healthcheck = Some(h);
                self.metadata(st, text);
            }
            Instruction::From(_) => {
                return Err(self.step_error(line, "FROM inside a stage"));
            }
            Instruction::Run(run) => {
                return self.run_step(stage_idx, st, args, &run, line, step, no_cache)
            }
            Instruction::Copy(c) => {
                return self.copy_step(st, &CopySpec::from_copy(c), line, step, no_cache)
            }
            Instruction::Add(a) => {
                return self.copy_step(st, &CopySpec::from_add(a), line, step, no_cache)
            }
        }
        Ok(false)
    }

    /// Looks the step up in the cache; on a hit the state moves to the cached result.
    fn try_cache(
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
        let lock = self.store.lock().map_err(BuildError::store)?;
        if let Some(rec) = self.store.cache_get(&key.key).map_err(BuildError::store)? {
            let layer = match &rec.chain_id {
                Some(c) => self.store.get_layer(c).map_err(BuildError::store)?,
                None => None,
            };
            let layer_ok = rec.chain_id.is_none() || layer.is_some();
            if let Some(l) = &layer {
                self.store
                    .lease_layer(&l.chain_id)
                    .map_err(BuildError::store)?;
            }
            if layer_ok {
                st.config = ImageConfig::from_bytes(&rec.config).map_err(BuildError::store)?;
                if let Some(l) = layer {
                    st.layers.push(l);
                }
                st.key = key.key.clone();
                self::lock(&self.used_keys).push(key.key.clone());
                return Ok(true);
            }
        }
        drop(lock);
        if self.opts.explain_cache || self.opts.progress != super::options::Progress::Quiet {
            self.reporter.detail(
                step,
                &format!("cache miss: {}", explain_miss(self.store, key)),
            );
        }
        Ok(false)
    }

    fn finish_layer_step(
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

    /// Creates a snapshot on top of the stage, lets `f` change it, and commits its diff as a layer.
    /// Returns `None` when nothing changed. The snapshot is removed on every error path.
    fn layer_step(
        &self,
        st: &StageState,
        mount: bool,
        step_id: usize,
        f: impl FnOnce(&Path) -> Result<(), BuildError>,
    ) -> Result<Option<LayerRecord>, BuildError> {
        // Leased: until its layer record exists, only the lease keeps GC off this snapshot.
        let snap = self
            .store
            .create_snapshot(self.snapshots, st.top_cache_id())
            .map_err(BuildError::store)?;
        let guard = SnapshotGuard {
            snapshots: self.snapshots,
            id: Some(snap.id.clone()),
        };
        // An error after Ctrl-C is only the symptom of the cancel (a copy or extraction stopped
        // half-way): report the interruption.
        let interrupted = |e: BuildError| {
            if self.cancelled() {
                BuildError::Interrupted
            } else {
                e
            }
        };
        if mount {
            let mounted = self.snapshots.mount(&snap).map_err(BuildError::snapshot)?;
            f(mounted.path()).map_err(interrupted)?;
            drop(mounted);
        } else {
            f(&snap.diff_dir()).map_err(interrupted)?;
        }
        if self.cancelled() {
            return Err(BuildError::Interrupted);
        }
        // Stored as a tar, as Docker's layer store keeps layers: outputs and pushes compress it
        // when they first need it (`store::compressed`), so a build never waits for gzip.
        let opts = LayerOptions {
            compression: Compression::Uncompressed,
            profile: self.opts.repro_profile,
            clamp_mtime: self.clamp_mtime(),
        };
        // The layer writer hashes the tar it writes; the store takes that digest.
        let writer = self
            .store
            .new_trusted_blob_writer()
            .map_err(BuildError::store)?;
        let bar = self.reporter.bytes(step_id, "writing layer", None);
        let writer = BarWriter::new(
            crate::cancel::Writer::new(writer, Some(&*self.cancel)),
            bar.clone(),
        );
        let (writer, info) = layer::diff::write_layer(&snap.diff_dir(), writer, &opts)
            .map_err(|e| interrupted(BuildError::layer(e)))?;
        bar.finish();
        let writer = writer.inner.into_inner();
        if info.diff_id == empty_diff_id() {
            // Nothing changed: no layer, as the classic builder records `empty_layer`.
            drop(writer);
            return Ok(None);
        }
        // Commit and record under one lock: a prune in between would take the unreferenced blob.
        let _lock = self.store.lock().map_err(BuildError::store)?;
        let blob = writer
            .commit(Some(&info.digest))
            .map_err(BuildError::store)?;
        let chain = chain_id(st.chain_id(), &info.diff_id);
        // Leased before anything references it (the cache record comes after the lock).
        self.store.lease_layer(&chain).map_err(BuildError::store)?;
        if let Some(existing) = self.store.get_layer(&chain).map_err(BuildError::store)? {
            // Same content already committed (an earlier or concurrent build): reuse it.
            guard.discard();
            return Ok(Some(existing));
        }
        let record = LayerRecord {
            chain_id: chain,
            diff_id: info.diff_id.clone(),
            parent: st.chain_id().cloned(),
            size: info.uncompressed_size,
            cache_id: snap.id.clone(),
            blob,
            blob_size: info.size,
            media_type: info.media_type.clone(),
        };
        self.store.put_layer(&record).map_err(BuildError::store)?;
        guard.disarm();
        Ok(Some(record))
    }

    /// A read-only view of another stage (by name or index) or, failing that, of an image.
    fn source_view(&self, from: &str, line: usize) -> Result<(SourceView, String), BuildError> {
        let stage_idx = self
            .plan
            .stages
            .iter()
            .position(|s| {
                s.name
                    .as_deref()
                    .map(|n| n.eq_ignore_ascii_case(from))
                    .unwrap_or(false)
            })
            .or_else(|| {
                from.parse::<usize>()
                    .ok()
                    .filter(|i| *i < self.plan.stages.len())
            });
        let state: StageState = match stage_idx {
            Some(i) => {
                let r = self.result(i).ok_or_else(|| {
                    self.step_error(line, format!("stage {from:?} has not been built"))
                })?;
                StageState::from_result(r)
            }
            None => self.base_image(from, line)?,
        };
        let key = state.key.to_string();
        let view = match state.top_cache_id() {
            Some(id) => SourceView::Mounted(
                self.snapshots
                    .mount_readonly(id)
                    .map_err(BuildError::snapshot)?,
            ),
            None => SourceView::Empty(
                tempfile::Builder::new()
                    .prefix("empty-")
                    .tempdir_in(&self.scratch)
                    .map_err(|e| BuildError::io(&self.scratch, e))?,
            ),
        };
        Ok((view, key))
    }

    fn copy_step(
        &self,
        st: &mut StageState,
        c: &CopySpec,
        line: usize,
        step: &mut StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        let workdir = workdir_of(st);
        let (view, from_key) = match &c.from {
            Some(from) => {
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
            workdir: workdir.clone(),
            chown: c.chown.clone(),
            chmod: c.chmod.clone(),
            exclude: c.exclude.clone(),
            parents: c.parents,
            timestamp: match &c.timestamp {
                Some(t) => Some(
                    t.parse::<i64>()
                        .map_err(|_| self.step_error(line, format!("invalid --timestamp {t:?}")))?,
                ),
                None => None,
            },
            is_add: c.is_add,
            checksum: c.checksum.clone(),
            keep_git_dir: c.keep_git_dir,
            unpack: c.unpack,
            link: c.link,
            source,
        };
        let memo = context::MemoPath::in_root(&self.opts.root, "context-hashes.json");
        let content = context::hash_sources(&req, Some(&memo))
            .map_err(|e| self.step_error(line, e.to_string()))?;
        // Classic history names content as Docker's classic builder does (file:/dir:/multi:<tarsum>).
        let source_hash = match self.opts.history_format {
            HistoryFormat::Classic => context::tarsum::classic_source_id(
                &req,
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
            &Self::shell(st),
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
        let mut inputs = BTreeMap::new();
        inputs.insert("instruction".to_string(), created_by.clone());
        inputs.insert("sources".to_string(), content.to_string());
        inputs.insert("workdir".to_string(), workdir);
        if let Some(k) = from_key {
            inputs.insert("from".to_string(), k);
        }
        if c.link {
            inputs.insert("link".to_string(), "true".into());
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
        let extract = |file: &Path, root: &Path, dest: &Path| -> Result<bool, String> {
            let opts = layer::ApplyOptions {
                whiteouts: layer::WhiteoutMode::None,
                max_bytes: None,
                same_owner: true,
            };
            let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let size = f.metadata().map(|m| m.len()).ok();
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let bar = bars.bytes(step_id, &format!("extracting {name}"), size);
            let done = layer::archive::extract_reader_if_archive(
                BarReader::new(
                    crate::cancel::Reader::new(f, Some(self.cancel.clone())),
                    bar.clone(),
                ),
                root,
                dest,
                &opts,
            )
            .map_err(|e| e.to_string())?;
            if done {
                bar.finish();
            }
            Ok(done)
        };
        // --link: the layer is made in an empty root, independent of the layers below it. With no
        // layer below (FROM scratch), or for a COPY to a top-level path no layer below has, the
        // merged view would show only the upper dir anyway: write straight into it.
        let through_overlay =
            !c.link && !st.layers.is_empty() && !self.writes_only_below_a_new_top_dir(st, c, &req);
        let layer = self.layer_step(st, through_overlay, step.id(), |root| {
            let env = context::CopyEnv {
                extract: Some(&extract),
                scratch: Some(&self.scratch),
                cancel: Some(&*self.cancel),
                ..Default::default()
            };
            context::copy(&req, root, &env)
                .map(|_| ())
                .map_err(|e| match e {
                    context::ContextError::Cancelled(_) => BuildError::Interrupted,
                    e => self.step_error(line, e.to_string()),
                })
        })?;
        drop(view);
        let made = layer.clone();
        let cached = self.finish_layer_step(st, key, layer, created_by)?;
        if let (Some(lk), Some(l)) = (&link_key, &made) {
            let config = st.config.to_bytes().map_err(BuildError::store)?;
            super::link::record(self.store, lk, l, config)?;
        }
        Ok(cached)
    }

    /// True when a COPY can write into the new snapshot's upper dir instead of the overlay mount:
    /// its destination's top-level component exists in no layer below (not even as a whiteout),
    /// so everything it writes lands under a directory or file that only the new layer has, and
    /// overlayfs would store exactly the same entries in the upper dir. It saves overlayfs' lookup
    /// in every lower layer per created file, and lets the data go by copy_file_range (the kernel
    /// refuses it across the overlay and ext4 superblocks, so std falls back to sendfile).
    /// ADD (archives can hold symlinks leading elsewhere in the image) and `--chown` (names are
    /// looked up in the image's /etc/passwd) keep the merged view.
    fn writes_only_below_a_new_top_dir(
        &self,
        st: &StageState,
        c: &CopySpec,
        req: &CopyRequest,
    ) -> bool {
        if c.is_add || c.chown.is_some() {
            return false;
        }
        let (dest, _) = context::copy::dest_path(&req.dest, &req.workdir);
        let Some(top) = dest.split('/').find(|s| !s.is_empty()) else {
            return false;
        };
        st.layers.iter().all(|l| {
            self.snapshots.diff_dir(&l.cache_id).is_ok_and(|diff| {
                matches!(
                    std::fs::symlink_metadata(diff.join(top)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound
                )
            })
        })
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
        if self.opts.explain_cache || self.opts.progress != super::options::Progress::Quiet {
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

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        _stage_idx: usize,
        st: &mut StageState,
        args: &ArgScope,
        run: &RunInst,
        line: usize,
        step: &mut StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        let shell = Self::shell(st);
        let argv = match &run.cmd {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(text) => {
                let mut v = shell.clone();
                v.push(run_script(text, run));
                v
            }
        };
        if argv.is_empty() {
            return Err(self.step_error(line, "RUN has no command"));
        }
        // Build args reach RUN's environment, not the image config; Env wins over an ARG of the same name.
        let mut env: Vec<String> = st.config.config.env.clone();
        let env_keys: Vec<String> = env
            .iter()
            .map(|kv| kv.split('=').next().unwrap_or("").to_string())
            .collect();
        let mut history_args = Vec::new();
        for (k, v) in args.run_env() {
            if !env_keys.contains(&k) {
                env.push(format!("{k}={v}"));
            }
        }
        for (k, v) in args.history_args() {
            if !env_keys.contains(&k) {
                history_args.push((k, v));
            }
        }
        let network = match run.network.as_deref() {
            Some("none") => Network::None,
            Some("host") | Some("default") => Network::Host,
            Some(other) => {
                return Err(self.step_error(line, format!("unsupported RUN --network={other}")))
            }
            None if self.opts.network_none => Network::None,
            None => Network::Host,
        };
        let form = match &run.cmd {
            CommandLine::Exec(v) => history::CommandForm::Exec(v.clone()),
            CommandLine::Shell(_) => {
                history::CommandForm::Shell(argv.last().cloned().unwrap_or_default())
            }
        };
        let created_by = history::run(self.opts.history_format, &shell, &history_args, &form);

        // Mounts: prepared before the cache lookup because their content is part of the key.
        let mut mounts = Vec::new();
        let mut views = Vec::new();
        let mut inputs = BTreeMap::new();
        // Secrets exposed as env vars: added after the cache key so their values never reach it.
        let mut secret_env = Vec::new();
        // Cache mounts: (index in `mounts`, id, mount); their directories are chosen and locked
        // only once the step is known to run.
        let mut caches = Vec::new();
        for (mi, raw) in run.mounts.iter().enumerate() {
            let m = crate::dockerfile::parse_mount(raw)
                .map_err(|e| self.step_error(line, e.to_string()))?;
            match m.typ {
                crate::dockerfile::MountType::Secret => {
                    mounts.extend(self.prepare_secret(&m, line, &mut secret_env)?);
                    continue;
                }
                crate::dockerfile::MountType::Cache => {
                    let target = m
                        .target
                        .clone()
                        .ok_or_else(|| self.step_error(line, "--mount needs a target"))?;
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    mounts.push(Mount {
                        target,
                        kind: MountKind::Bind {
                            source: PathBuf::new(),
                            readonly: m.readonly,
                        },
                    });
                    caches.push((mounts.len() - 1, id, m));
                    continue;
                }
                _ => {}
            }
            let (mount, input) = self.prepare_mount(&m, line, &mut views)?;
            if let Some(i) = input {
                inputs.insert(format!("mount{mi}"), i);
            }
            mounts.push(mount);
        }
        inputs.insert("instruction".to_string(), created_by.clone());
        inputs.insert("env".to_string(), env.join("\n"));
        inputs.insert("user".to_string(), st.config.config.user.clone());
        inputs.insert("workdir".to_string(), workdir_of(st));
        inputs.insert("network".to_string(), format!("{network:?}"));
        inputs.insert("layer-format".to_string(), self.layer_format());
        let key = StepKey::new(&st.key, inputs);
        if self.try_cache(st, &key, step, no_cache)? {
            return Ok(true);
        }

        // Locked in id order, so two RUNs locking the same caches never wait on each other crosswise;
        // an id mounted twice in one RUN shares one directory and one lock (unless private).
        caches.sort_by(|a, b| a.1.cmp(&b.1));
        let mut held = Vec::new();
        let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (i, id, m) in &caches {
            let private = m.sharing.as_deref() == Some("private");
            let dir = match dirs.get(id).filter(|_| !private) {
                Some(d) => d.clone(),
                None => {
                    let (dir, lock) = self.cache_dir(id, m)?;
                    held.push(lock);
                    if !private {
                        dirs.insert(id.clone(), dir.clone());
                    }
                    dir
                }
            };
            if let Some(MountKind::Bind { source, .. }) = mounts.get_mut(*i).map(|m| &mut m.kind) {
                *source = dir;
            }
        }
        env.extend(secret_env);
        let spec_base = RunSpec {
            rootfs: PathBuf::new(),
            argv,
            env,
            user: Some(st.config.config.user.clone()).filter(|u| !u.is_empty()),
            workdir: workdir_of(st),
            hostname: "rbuild".to_string(),
            network,
            mounts,
            extra_hosts: Vec::new(),
        };
        let reporter = self.reporter;
        let step_id = step.id();
        let layer = self.layer_step(st, true, step_id, |root| {
            let mut spec = spec_base;
            spec.rootfs = root.to_path_buf();
            let mut tail: Vec<u8> = Vec::new();
            let config = exec::ExecConfig {
                cancel: Some(self.cancel.clone()),
                ..Default::default()
            };
            let outcome = exec::run_with(&spec, &config, &mut |_stream, data| {
                reporter.output(step, data);
                tail.extend_from_slice(data);
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            })
            .map_err(|e| match e {
                exec::ExecError::Interrupted => BuildError::Interrupted,
                e => self.step_error(line, format!("RUN failed to start: {e}")),
            })?;
            if outcome.exit_code != 0 {
                let last: Vec<&str> = std::str::from_utf8(&tail)
                    .unwrap_or("")
                    .lines()
                    .rev()
                    .take(5)
                    .collect();
                let mut msg = format!(
                    "RUN {} did not complete successfully: exit code {}",
                    one_line(&spec.argv.join(" ")),
                    outcome.exit_code
                );
                if !last.is_empty() {
                    msg.push_str("\n  last output:");
                    for l in last.iter().rev() {
                        msg.push_str("\n    ");
                        msg.push_str(l);
                    }
                }
                if let BuildError::Step {
                    file,
                    line,
                    text,
                    message,
                    ..
                } = self.step_error(line, msg)
                {
                    return Err(BuildError::Step {
                        file,
                        line,
                        text,
                        message,
                        exit_code: Some(outcome.exit_code),
                    });
                }
            }
            Ok(())
        })?;
        drop(views);
        drop(held);
        self.finish_layer_step(st, key, layer, created_by)
    }

    /// The directory of cache mount `id` and the lock (`flock`) that its `sharing` mode asks for:
    /// `shared` takes a shared lock, `locked` an exclusive one (waiting for other users), `private` the
    /// first instance (`<id>`, `<id>-1`, ...) nobody else holds. The locks also order parallel stages
    /// and concurrent builds. A new directory gets the mount's mode/uid/gid (0755 root by default).
    fn cache_dir(
        &self,
        id: &str,
        m: &crate::dockerfile::RunMount,
    ) -> Result<(PathBuf, std::fs::File), BuildError> {
        use rustix::fs::FlockOperation as Op;
        let cache = self.opts.root.join("cache");
        let locks = cache.join("mount-locks");
        std::fs::create_dir_all(&locks).map_err(|e| BuildError::io(&locks, e))?;
        let base = Digest::of_bytes(id.as_bytes()).hex().to_string();
        let open_lock = |name: &str| {
            let p = locks.join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&p)
                .map_err(|e| BuildError::io(&p, e))
                .map(|f| (p, f))
        };
        let (name, lock) = match m.sharing.as_deref().unwrap_or("shared") {
            "private" => {
                let mut n = 0usize;
                loop {
                    let name = if n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    };
                    let (p, f) = open_lock(&name)?;
                    match rustix::fs::flock(&f, Op::NonBlockingLockExclusive) {
                        Ok(()) => break (name, f),
                        Err(rustix::io::Errno::WOULDBLOCK) => n += 1,
                        Err(e) => return Err(BuildError::io(&p, e.into())),
                    }
                }
            }
            sharing => {
                let op = if sharing == "locked" {
                    Op::LockExclusive
                } else {
                    Op::LockShared
                };
                let (p, f) = open_lock(&base)?;
                rustix::fs::flock(&f, op).map_err(|e| BuildError::io(&p, e.into()))?;
                (base, f)
            }
        };
        let dir = cache.join("mounts").join(name);
        if !dir.exists() {
            let parent = cache.join("mounts");
            std::fs::create_dir_all(&parent).map_err(|e| BuildError::io(&parent, e))?;
            // Made under a temporary name and renamed: a concurrent build never sees it half set up.
            let tmp = tempfile::Builder::new()
                .prefix(".new-")
                .tempdir_in(&parent)
                .map_err(|e| BuildError::io(&parent, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                tmp.path(),
                std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
            )
            .map_err(|e| BuildError::io(tmp.path(), e))?;
            std::os::unix::fs::chown(
                tmp.path(),
                Some(m.uid.unwrap_or(0)),
                Some(m.gid.unwrap_or(0)),
            )
            .map_err(|e| BuildError::io(tmp.path(), e))?;
            let tmp = tmp.keep();
            let renamed = rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                &dir,
                rustix::fs::RenameFlags::NOREPLACE,
            );
            if renamed.is_err() {
                // Another build created it first: use theirs.
                let _ = std::fs::remove_dir(&tmp);
            }
        }
        Ok((dir, lock))
    }

    /// Turns one `RUN --mount` into an executor mount, and names what it contributes to the cache key.
    fn prepare_mount(
        &self,
        m: &crate::dockerfile::RunMount,
        line: usize,
        views: &mut Vec<SourceView>,
    ) -> Result<(Mount, Option<String>), BuildError> {
        use crate::dockerfile::MountType;
        let target = m
            .target
            .clone()
            .ok_or_else(|| self.step_error(line, "--mount needs a target"))?;
        match m.typ {
            MountType::Bind => {
                let src_rel = m.source.clone().unwrap_or_else(|| "/".into());
                let (root, key) = match &m.from {
                    Some(from) => {
                        let (v, k) = self.source_view(from, line)?;
                        let p = v.path().to_path_buf();
                        views.push(v);
                        (p, k)
                    }
                    None => {
                        let ctx = self.context.ok_or_else(|| {
                            self.step_error(line, "no build context for a bind mount")
                        })?;
                        (ctx.root().to_path_buf(), "context".to_string())
                    }
                };
                let (handle, pinned) =
                    resolve_in(&root, &src_rel).map_err(|e| self.step_error(line, e))?;
                let source = if m.readonly {
                    // The RUN helper has its own mount namespace, where a mount reached through
                    // our fd cannot be bind-mounted (EINVAL); it gets the pinned object's own
                    // path instead: symlink-free, inside a tree nothing writes to during the step.
                    std::fs::read_link(&pinned).map_err(|e| BuildError::io(&pinned, e))?
                } else {
                    // A writable bind gets a throwaway copy: as in BuildKit, RUN's writes to it are
                    // discarded and never reach the context or the source stage (SECURITY E6).
                    self.scratch_copy(&pinned, line)?
                };
                views.push(SourceView::Pinned {
                    _handle: handle,
                    path: pinned,
                });
                let content = if m.from.is_none() {
                    let ctx = self
                        .context
                        .ok_or_else(|| self.step_error(line, "no build context"))?;
                    let req =
                        CopyRequest::new(SourceRoot::Context(ctx), vec![src_rel.clone()], "/");
                    context::hash_sources(&req, None)
                        .map_err(|e| self.step_error(line, e.to_string()))?
                        .to_string()
                } else {
                    key
                };
                Ok((
                    Mount {
                        target,
                        kind: MountKind::Bind {
                            source,
                            readonly: m.readonly,
                        },
                    },
                    Some(format!("bind {src_rel} {content}")),
                ))
            }
            MountType::Tmpfs => Ok((
                Mount {
                    target,
                    kind: MountKind::Tmpfs {
                        size: m.size.map(|s| s.max(0) as u64),
                    },
                },
                None,
            )),
            MountType::Ssh => Err(self.step_error(
                line,
                "RUN --mount=type=ssh is not supported by rbuild (no SSH agent forwarding)",
            )),
            MountType::Secret | MountType::Cache => Err(BuildError::Internal(
                "secret and cache mounts are prepared in run_step".into(),
            )),
        }
    }

    /// `RUN --mount=type=secret`: a file at `target` (default `/run/secrets/<id>`) and/or an env var.
    /// `id` defaults to `source`, then to the target's file name, as in BuildKit. A missing secret that
    /// is not `required` is skipped. Nothing about the value enters the cache key, the layer or history.
    fn prepare_secret(
        &self,
        m: &crate::dockerfile::RunMount,
        line: usize,
        secret_env: &mut Vec<String>,
    ) -> Result<Option<Mount>, BuildError> {
        let id =
            m.id.clone()
                .or_else(|| m.source.clone())
                .or_else(|| {
                    m.target.as_deref().and_then(|t| {
                        Path::new(t)
                            .file_name()
                            .map(|s| s.to_string_lossy().to_string())
                    })
                })
                .unwrap_or_default();
        let Some(path) = self.opts.secrets.get(&id) else {
            if m.required {
                return Err(self.step_error(
                    line,
                    format!("secret {id:?} was not provided (use --secret id={id},src=FILE)"),
                ));
            }
            return Ok(None);
        };
        if let Some(var) = &m.env {
            let value = std::fs::read(path).map_err(|e| BuildError::io(path, e))?;
            let value = String::from_utf8(value).map_err(|_| {
                self.step_error(
                    line,
                    format!("secret {id:?} is not UTF-8 text: cannot be env {var}"),
                )
            })?;
            secret_env.push(format!("{var}={value}"));
            if m.target.is_none() {
                return Ok(None);
            }
        }
        let target = match m.target.as_deref() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => format!("/run/secrets/{id}"),
        };
        Ok(Some(Mount {
            target,
            kind: MountKind::Secret {
                source: path.clone(),
                mode: m.mode.unwrap_or(0o400),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            },
        }))
    }

    /// Copies a bind-mount source into the build's scratch space (cp -a keeps owners, modes, links).
    fn scratch_copy(&self, source: &Path, line: usize) -> Result<PathBuf, BuildError> {
        let dir = tempfile::Builder::new()
            .prefix("bind-")
            .tempdir_in(&self.scratch)
            .map_err(|e| BuildError::io(&self.scratch, e))?
            .keep();
        let dest = dir.join("src");
        // -H: the source is a pinned `/proc/<pid>/fd/N`; follow it, and nothing below it.
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg("-H")
            .arg("--")
            .arg(source)
            .arg(&dest)
            .status()
            .map_err(|e| BuildError::io(source, e))?;
        if !status.success() {
            return Err(self.step_error(
                line,
                format!("copying bind source {} failed", source.display()),
            ));
        }
        Ok(dest)
    }

    /// Stores the final config as an image, tags it, and returns the image id.
    pub fn commit_image(&self, r: &StageResult) -> Result<Digest, BuildError> {
        let mut config = r.config.clone();
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
        for t in &self.opts.tags {
            let reference = crate::image::reference::Reference::parse(t)
                .map_err(|e| BuildError::Usage(format!("invalid tag {t:?}: {e}")))?;
            self.store.tag(&reference, &id).map_err(BuildError::store)?;
        }
        Ok(id)
    }
}

/// Locks a mutex, tolerating poison: a panicking stage thread cannot leave these slots half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The diffID of an empty layer: a tar of only the end-of-archive marker (1024 zero bytes).
fn empty_diff_id() -> Digest {
    Digest::of_bytes(&[0u8; 1024])
}

/// COPY and ADD share one shape for dispatch.
struct CopySpec {
    is_add: bool,
    sources: Vec<String>,
    heredocs: Vec<(String, String)>,
    dest: String,
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<String>,
    link: bool,
    exclude: Vec<String>,
    parents: bool,
    timestamp: Option<String>,
    checksum: Option<String>,
    keep_git_dir: bool,
    unpack: Option<bool>,
}

impl CopySpec {
    fn from_copy(c: CopyInst) -> Self {
        CopySpec {
            is_add: false,
            sources: c.sources,
            heredocs: c
                .heredoc_sources
                .into_iter()
                .map(|h| (h.path, h.content))
                .collect(),
            dest: c.dest,
            from: c.from,
            chown: c.chown,
            chmod: c.chmod,
            link: c.link,
            exclude: c.exclude,
            parents: c.parents,
            timestamp: c.timestamp,
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        }
    }

    fn from_add(a: AddInst) -> Self {
        CopySpec {
            is_add: true,
            sources: a.sources,
            heredocs: a
                .heredoc_sources
                .into_iter()
                .map(|h| (h.path, h.content))
                .collect(),
            dest: a.dest,
            from: None,
            chown: a.chown,
            chmod: a.chmod,
            link: a.link,
            exclude: a.exclude,
            parents: false,
            timestamp: a.timestamp,
            checksum: a.checksum,
            keep_git_dir: a.keep_git_dir.unwrap_or(false),
            unpack: a.unpack,
        }
    }
}

/// HEALTHCHECK as the config records it: durations in nanoseconds, shell form as CMD-SHELL.
fn healthcheck_config(hc: &HealthcheckInst, _shell: &[String]) -> crate::image::Healthcheck {
    match hc {
        HealthcheckInst::None => crate::image::Healthcheck {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        HealthcheckInst::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                CommandLine::Exec(v) => {
                    let mut t = vec!["CMD".to_string()];
                    t.extend(v.iter().cloned());
                    t
                }
                CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            };
            crate::image::Healthcheck {
                test,
                interval: interval.unwrap_or(0),
                timeout: timeout.unwrap_or(0),
                start_period: start_period.unwrap_or(0),
                start_interval: start_interval.unwrap_or(0),
                retries: retries.unwrap_or(0),
            }
        }
    }
}

/// Removes a snapshot unless the step committed it.
struct SnapshotGuard<'a> {
    snapshots: &'a Snapshotter,
    id: Option<String>,
}

impl SnapshotGuard<'_> {
    fn disarm(mut self) {
        self.id = None;
    }

    /// A complete snapshot that turned out to duplicate a committed layer: set aside for
    /// `prune` (`Snapshotter::discard` says why) rather than deleted on the build's clock.
    fn discard(mut self) {
        if let Some(id) = self.id.take() {
            if self.snapshots.discard(&id).is_err() {
                let _ = self.snapshots.remove(&id);
            }
        }
    }
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.snapshots.remove(&id);
        }
    }
}

fn describe_base(base: &crate::plan::BaseRef, plan: &Plan) -> String {
    match base {
        crate::plan::BaseRef::Scratch => "scratch".into(),
        crate::plan::BaseRef::Stage(i) => plan.stages[*i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}")),
        crate::plan::BaseRef::Image(n) => n.clone(),
    }
}

fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if s.lines().nth(1).is_some() {
        format!("{first} ...")
    } else {
        first.to_string()
    }
}

/// `WORKDIR` semantics: absolute replaces, relative joins the current one; the result is cleaned.
pub fn join_workdir(current: &str, w: &str) -> String {
    let joined = if w.starts_with('/') {
        w.to_string()
    } else {
        format!("{}/{}", current.trim_end_matches('/'), w)
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// CMD/ENTRYPOINT argv: exec form as written, shell form wrapped in the current SHELL.
fn command_argv(c: &CommandLine, shell: &[String]) -> Vec<String> {
    match c {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// The shell script for a shell-form RUN: a lone heredoc is the script itself; otherwise heredoc bodies
/// follow the command text so the shell reads them as here-documents (as BuildKit does).
fn run_script(text: &str, run: &RunInst) -> String {
    if run.heredocs.is_empty() {
        return text.to_string();
    }
    let trimmed = text.trim();
    if run.heredocs.len() == 1 && trimmed.starts_with("<<") && !trimmed.contains(' ') {
        return run.heredocs[0].content.clone();
    }
    let mut script = text.to_string();
    for h in &run.heredocs {
        script.push('\n');
        script.push_str(&h.content);
        if !h.content.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(&h.name);
    }
    script
}

/// The stage's working directory (`/` when unset).
fn workdir_of(st: &StageState) -> String {
    if st.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        st.config.config.working_dir.clone()
    }
}

/// Resolves `rel` inside `root` for a bind mount source: symlinks (absolute or `..`) are
/// followed as if `root` were `/` (pathrs, openat2 `RESOLVE_IN_ROOT`), never on the host, and
/// the result is held by an O_PATH handle; its `/proc/<pid>/fd/N` is what gets copied, and its
/// symlink-free path what gets mounted (buildah CVE-2024-1753, BuildKit CVE-2024-23651).
fn resolve_in(root: &Path, rel: &str) -> Result<(pathrs::Handle, PathBuf), String> {
    use std::os::fd::{AsFd, AsRawFd};
    let r = pathrs::Root::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let h = r
        .resolve(rel)
        .map_err(|e| format!("mount source {rel:?}: {e}"))?;
    let path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        h.as_fd().as_raw_fd()
    ));
    Ok((h, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_joins_and_cleans() {
        assert_eq!(join_workdir("/", "app"), "/app");
        assert_eq!(join_workdir("/a", "b/../c"), "/a/c");
        assert_eq!(join_workdir("/a", "/x"), "/x");
        assert_eq!(join_workdir("/a/b", ".."), "/a");
    }
}
