//! Lowering: the one place that decides what a stage's instructions mean.
//!
//! Pure (no I/O): the solver resolves the stage's base first (image config pulled, or an earlier
//! stage's result) and passes that config in, as BuildKit's dockerfile2llb gets base configs from
//! its metaresolver. Lowering then expands every word against the ARG/ENV scope (the base
//! image's `Env` included), resolves `--from` through [`crate::plan::resolve_stage_ref`], parses
//! `--mount` once (values expanded), injects ONBUILD triggers, and turns each instruction into a
//! typed [`Step`]: a config edit with its history entry, a file operation, or an exec operation.
//! Every step carries the cache-key inputs that lowering knows; the solver adds the ones that
//! need I/O (content hashes, the `--from` state, the layer format). docs/ARCHITECTURE.md shows
//! where this sits in the flow of a COPY and a RUN.

mod exec;
mod file;
mod meta;
#[cfg(test)]
mod tests;

pub use meta::{command_argv, healthcheck_config, join_workdir};

use std::collections::BTreeMap;

use crate::dockerfile::mount::RunMount;
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, Instruction, Located, ParseError};
use crate::image::history::HistoryFormat;
use crate::image::ContainerConfig;
use crate::plan::{ArgScope, BaseRef, CopyFrom, Plan, PlanOptions};

/// The default SHELL on Linux.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Cache-key inputs by name (`instruction`, `env`, `workdir`, ...). Named, so a miss can say
/// which input changed (`solve::cache`).
pub type KeyInputs = BTreeMap<String, String>;

/// What lowering needs to know about one stage.
pub struct LowerInput<'a> {
    pub df: &'a Dockerfile,
    pub plan: &'a Plan,
    pub opts: &'a PlanOptions,
    pub stage: usize,
    /// The base's config as resolved by the solver (its `OnBuild` still in it).
    pub base: &'a ContainerConfig,
    pub base_author: Option<String>,
    /// The final ARG scope of the base stage, for a stage built `FROM` another stage.
    pub parent_args: Option<&'a ArgScope>,
    pub history_format: HistoryFormat,
}

/// A stage, lowered.
#[derive(Debug, Clone, PartialEq)]
pub struct LoweredStage {
    /// The config the stage starts from: the base's, its ONBUILD triggers consumed.
    pub start: ContainerConfig,
    pub steps: Vec<Step>,
    /// The ARG scope at the end of the stage (a stage built FROM this one starts from it).
    pub args: ArgScope,
}

/// One instruction, lowered.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 1-based Dockerfile line (the trigger's position for an image's ONBUILD trigger).
    pub line: usize,
    /// The instruction as written, for progress output.
    pub text: String,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Config(ConfigEdit),
    File(FileOp),
    Exec(ExecOp),
}

/// A metadata instruction: the runtime config after it, and its history entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEdit {
    pub config: ContainerConfig,
    pub author: Option<String>,
    /// `created_by` of the history entry (an empty layer); `None` records none (BuildKit's ONBUILD).
    pub history: Option<String>,
    pub key: KeyInputs,
    /// WORKDIR: the directory to create when missing, owned by the USER in effect; a layer
    /// when it was made (BuildKit's mkdir file op), an empty layer when it existed.
    pub mkdir: Option<Mkdir>,
}

/// A directory WORKDIR makes: `path` (absolute) and its parents, owned by `user`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mkdir {
    pub path: String,
    /// The USER in effect (`name`, `uid`, `name:group`…); empty means root.
    pub user: String,
}

/// COPY or ADD, every word expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOp {
    pub is_add: bool,
    pub sources: Vec<String>,
    /// Heredoc sources: (file name, content).
    pub heredocs: Vec<(String, String)>,
    pub dest: String,
    /// `--from` as written (expanded) and what it names.
    pub from: Option<(String, CopyFrom)>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    pub timestamp: Option<i64>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
    /// The working directory the destination is relative to.
    pub workdir: String,
    /// The SHELL in effect (classic history prefixes it).
    pub shell: Vec<String>,
    /// `workdir`, and `link` when set; the solver adds `instruction` (it needs the classic
    /// content id), `sources`, `from` and `layer-format`.
    pub key: KeyInputs,
}

/// Where RUN's network comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// No `--network` or `--network=default`: the build's mode (`--network` of the build command).
    Default,
    Host,
    None,
}

/// One `RUN --mount`, typed and expanded, with its `from=` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecMount {
    /// Position in the instruction (the key input `mount<N>` uses it).
    pub index: usize,
    pub mount: RunMount,
    pub from: Option<CopyFrom>,
}

/// RUN.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOp {
    pub argv: Vec<String>,
    /// `K=V`: the config's Env, then build args Env does not shadow (secrets are the solver's).
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub network: NetworkMode,
    pub mounts: Vec<ExecMount>,
    /// Files the RUN sees read-only at a path (target, content, mode): a lone heredoc that
    /// starts with `#!` runs as `/dev/pipes/<name>`, as BuildKit does.
    pub files: Vec<(String, String, u32)>,
    pub created_by: String,
    /// `instruction`, `env`, `user`, `workdir`; the solver adds `network`, `mount<N>` and
    /// `layer-format`.
    pub key: KeyInputs,
}

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// A problem with the instruction at `line`.
    #[error("line {line}: {message}")]
    At { line: usize, message: String },
    /// An ONBUILD trigger of the base image does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

fn at(line: usize, message: impl Into<String>) -> LowerError {
    LowerError::At {
        line,
        message: message.into(),
    }
}

/// The scope while a stage is lowered: config, ARGs and whether CMD was set in this stage.
struct Scope<'a> {
    input: &'a LowerInput<'a>,
    lexer: Lexer,
    config: ContainerConfig,
    author: Option<String>,
    args: ArgScope,
    cmd_set_here: bool,
}

impl Scope<'_> {
    /// The variables words expand against: the config's Env, then ARGs Env does not shadow.
    fn expansion_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .config
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        for (k, v) in self.args.values() {
            if let Some(v) = v {
                if !env.iter().any(|(ek, _)| ek == k) {
                    env.push((k.clone(), v.clone()));
                }
            }
        }
        env
    }

    fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            self.config.shell.clone()
        }
    }

    fn workdir(&self) -> String {
        if self.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            self.config.working_dir.clone()
        }
    }

    /// `--from` (of COPY or a mount): one precedence, the plan's, and only to a stage this one
    /// was scheduled after.
    fn resolve_from(
        &self,
        name: &str,
        line: usize,
        mount_target: Option<&str>,
    ) -> Result<CopyFrom, LowerError> {
        let plan = self.input.plan;
        let r = crate::plan::resolve_stage_ref(
            &plan.stages,
            &plan.named_contexts,
            name,
            self.input.stage,
            mount_target,
        )
        .map_err(|m| at(line, m))?;
        if let CopyFrom::Stage(j) = r {
            if !plan.stages[self.input.stage].deps.contains(&j) {
                return Err(at(
                    line,
                    format!(
                        "--from={name} names stage {j}, which this stage was not planned to \
                         depend on (its value changed once the base image's ENV was known)"
                    ),
                ));
            }
        }
        Ok(r)
    }

    fn lower(&mut self, inst: &Located<Instruction>) -> Result<Op, LowerError> {
        let line = inst.start_line;
        let env = self.expansion_env();
        let expanded = match (inst.inner.expand(&self.lexer, &env), &inst.inner) {
            (Ok(e), _) => e,
            // A default that does not expand (`ARG X=${X:?msg}`) is fine when --build-arg X
            // replaces it: BuildKit never expands such a default.
            (Err(e), Instruction::Arg(a)) => {
                let mut a = a.clone();
                for (k, d) in a.args.iter_mut() {
                    if self.args.has_build_arg(k) {
                        *d = None;
                    }
                }
                Instruction::Arg(a)
                    .expand(&self.lexer, &env)
                    .map_err(|_| at(line, e.to_string()))?
            }
            (Err(e), _) => return Err(at(line, e.to_string())),
        };
        match expanded {
            Instruction::Run(run) => exec::lower_run(self, &run, &env, line).map(Op::Exec),
            Instruction::Copy(c) => file::lower_copy(self, c, line).map(Op::File),
            Instruction::Add(a) => file::lower_add(self, a, line).map(Op::File),
            Instruction::From(_) => Err(at(line, "FROM inside a stage")),
            other => meta::lower_meta(self, other).map(Op::Config),
        }
    }
}

/// Lowers stage `input.stage` of the plan on the base config the solver resolved.
pub fn lower_stage(input: &LowerInput<'_>) -> Result<LoweredStage, LowerError> {
    let plan = input.plan;
    let stage = &plan.stages[input.stage];
    let args = match (&stage.base, input.parent_args) {
        (BaseRef::Stage(_), Some(parent)) => ArgScope::inherit(parent),
        _ => ArgScope::new(plan, input.opts, input.stage),
    };
    // ONBUILD triggers of the base run first and are not inherited further. Those of an
    // earlier stage of this Dockerfile were already placed by the plan.
    let mut start = input.base.clone();
    let triggers = std::mem::take(&mut start.on_build);
    let mut instructions: Vec<Located<Instruction>> = Vec::new();
    if matches!(stage.base, BaseRef::Image(_)) && !triggers.is_empty() {
        instructions.extend(crate::plan::parse_onbuild_triggers(
            &triggers,
            &input.df.path,
        )?);
    }
    instructions.extend(stage.instructions.iter().cloned());

    let mut scope = Scope {
        input,
        lexer: Lexer::new(input.df.escape),
        config: start.clone(),
        author: input.base_author.clone(),
        args,
        cmd_set_here: false,
    };
    let mut steps = Vec::with_capacity(instructions.len());
    for inst in &instructions {
        let op = scope.lower(inst)?;
        steps.push(Step {
            line: inst.start_line,
            text: inst.original.clone(),
            op,
        });
    }
    Ok(LoweredStage {
        start,
        steps,
        args: scope.args,
    })
}
