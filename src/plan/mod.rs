//! The build plan: stages, ARG scoping, the stage graph and --target pruning.
//!
//! Only the stages the target needs (`Plan::order`) are resolved; a stage nothing needs is
//! never expanded, so a broken unused stage cannot fail planning (its parse errors still do,
//! as in BuildKit, which parses the whole file).

mod args;
pub mod lower;
pub mod named;
mod onbuild;

use std::collections::{BTreeMap, BTreeSet};

pub use crate::platform::Platform;
pub use args::{is_proxy_arg, predefined_args, ArgScope, PROXY_ARGS};
pub use onbuild::parse_onbuild_triggers;

use crate::dockerfile::mount::parse_mount_expanded;
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{error_at, Dockerfile, Instruction, Located, ParseError};

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target` stage name; None builds the last stage.
    pub target: Option<String>,
    pub platform: Platform,
    pub build_platform: Platform,
    /// `--build-context`: [`named::context_key`] -> the image (store name or id) it became.
    pub named_contexts: BTreeMap<String, String>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    Scratch,
    Stage(usize),
    /// An image reference, global ARGs expanded.
    Image(String),
}

/// Where `COPY --from` / `RUN --mount=from=` reads: a stage, or (any other name) an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    Stage(usize),
    Image(String),
}

/// A `--from` reference found in a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromRef {
    /// Index into `Stage::instructions`.
    pub instruction: usize,
    /// The value after expansion.
    pub name: String,
    pub resolved: CopyFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    pub base: BaseRef,
    /// `FROM --platform=` expanded with global args.
    pub platform: Option<String>,
    /// The platform the stage builds for: `platform` parsed, else the build's target platform.
    /// The solver pulls the base for it and a `FROM scratch` config names it.
    pub target_platform: Platform,
    /// The stage's instructions after FROM. When the base is another stage, that stage's
    /// ONBUILD triggers come first (see `onbuild_triggers`).
    pub instructions: Vec<Located<Instruction>>,
    /// How many leading `instructions` are ONBUILD triggers of a base stage.
    pub onbuild_triggers: usize,
    /// Stages this one needs (base stage, COPY --from, RUN --mount from), sorted.
    pub deps: Vec<usize>,
    /// `--from` references with their resolution.
    pub from_refs: Vec<FromRef>,
    pub from_line: usize,
    /// Whether the target needs this stage. Only needed stages are resolved: for the others
    /// `base` holds the unexpanded FROM word and `deps`/`from_refs` are empty.
    pub needed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// Stages needed by the target, dependencies first, target last.
    pub order: Vec<usize>,
    pub target: usize,
    /// `--build-arg` names no needed stage (nor a global ARG) declares, sorted.
    pub unused_build_args: Vec<String>,
    /// ARGs before the first FROM, values resolved (build-arg overrides, defaults expanded).
    pub global_args: Vec<(String, Option<String>)>,
    /// [`PlanOptions::named_contexts`], for the lowering's `--from` values.
    pub named_contexts: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    /// A problem at a Dockerfile line (parse, expansion, stage reference).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Dockerfile(#[from] ParseError),
    #[error("target stage \"{0}\" could not be found")]
    TargetNotFound(String),
}

/// Per-stage simulation state: the ARG/ENV scope at the end of the stage, used to expand
/// `--from` values and inherited by child stages.
#[derive(Clone)]
struct SimScope {
    args: ArgScope,
    env: Vec<(String, String)>,
}

struct Planner<'a> {
    df: &'a Dockerfile,
    opts: &'a PlanOptions,
    lexer: Lexer,
    global_env: Vec<(String, String)>,
    stages: Vec<Stage>,
    /// 0 = not visited, 1 = in progress, 2 = done.
    state: Vec<u8>,
    scopes: Vec<Option<SimScope>>,
    onbuild_of: Vec<Vec<Located<Instruction>>>,
    order: Vec<usize>,
    declared: BTreeSet<String>,
    plan_stub: Plan,
}

impl Plan {
    pub fn new(df: &Dockerfile, opts: &PlanOptions) -> Result<Plan, PlanError> {
        let lexer = Lexer::new(df.escape);
        let mut meta: Vec<Located<Instruction>> = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut onbuild_of: Vec<Vec<Located<Instruction>>> = Vec::new();
        for li in df.instructions()? {
            match &li.inner {
                Instruction::From(f) => {
                    if let Some(n) = &f.name {
                        if stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                            return Err(error_at(
                                df,
                                li.start_line,
                                format!("duplicate stage name \"{n}\""),
                            )
                            .into());
                        }
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: f.name.clone(),
                        base: BaseRef::Image(f.image.clone()),
                        platform: f.platform.clone(),
                        target_platform: opts.platform.clone(),
                        instructions: Vec::new(),
                        onbuild_triggers: 0,
                        deps: Vec::new(),
                        from_refs: Vec::new(),
                        from_line: li.start_line,
                        needed: false,
                    });
                    onbuild_of.push(Vec::new());
                }
                other => match stages.last_mut() {
                    Some(st) => {
                        if let Instruction::Onbuild(o) = other {
                            if let Some(v) = onbuild_of.last_mut() {
                                v.push(Located {
                                    inner: (*o.trigger).clone(),
                                    start_line: li.start_line,
                                    end_line: li.end_line,
                                    original: o.expression.clone(),
                                });
                            }
                        }
                        st.instructions.push(li);
                    }
                    None if matches!(other, Instruction::Arg(_)) => meta.push(li),
                    None => {
                        return Err(error_at(
                            df,
                            li.start_line,
                            "no build stage in current context",
                        )
                        .into())
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(ParseError::whole_file(
                &df.path,
                "dockerfile contains no stages to build (no FROM instruction)",
            )
            .into());
        }

        // Global ARGs: visible to FROM lines only (and as defaults for `ARG X` in a stage).
        let last = stages.last().and_then(|s| s.name.as_deref());
        let mut global_env = predefined_args(opts, last);
        let mut global_args = Vec::new();
        for li in &meta {
            if let Instruction::Arg(a) = &li.inner {
                for (k, default) in &a.args {
                    // A --build-arg wins: the default is not even expanded (BuildKit), so
                    // `ARG X=${X:?msg}` fails only when X is not given.
                    let expanded = match default {
                        Some(d) if !opts.build_args.contains_key(k) => Some(
                            lexer
                                .process_word(d, &global_env)
                                .map_err(|e| error_at(df, li.start_line, e.to_string()))?,
                        ),
                        _ => None,
                    };
                    let value = opts.build_args.get(k).cloned().or(expanded);
                    if let Some(v) = &value {
                        global_env.push((k.clone(), v.clone()));
                    }
                    global_args.push((k.clone(), value));
                }
            }
        }

        let target = match &opts.target {
            Some(t) => {
                let t = t.to_lowercase();
                stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.as_str()))
                    .ok_or(PlanError::TargetNotFound(t))?
            }
            None => stages.len() - 1,
        };
        let n = stages.len();
        let plan_stub = Plan {
            stages: Vec::new(),
            order: Vec::new(),
            target,
            unused_build_args: Vec::new(),
            global_args: global_args.clone(),
            named_contexts: opts.named_contexts.clone(),
        };
        let mut p = Planner {
            df,
            opts,
            lexer,
            global_env,
            stages,
            state: vec![0; n],
            scopes: vec![None; n],
            onbuild_of,
            order: Vec::new(),
            declared: global_args.iter().map(|(k, _)| k.clone()).collect(),
            plan_stub,
        };
        p.resolve(target)?;
        let unused_build_args = opts
            .build_args
            .keys()
            .filter(|k| !p.declared.contains(*k) && !is_proxy_arg(k))
            .cloned()
            .collect();
        Ok(Plan {
            stages: p.stages,
            order: p.order,
            target,
            unused_build_args,
            global_args,
            named_contexts: opts.named_contexts.clone(),
        })
    }

    /// The stage named `name` (case-insensitive).
    pub fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let n = name.to_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(n.as_str()))
    }
}

/// What a `--from` value (COPY, `RUN --mount`) names, seen from stage `current`: a named context
/// (`--build-context`), a stage index, a stage name (case-insensitive), else an image. The one
/// resolver of `--from`: the planner uses it for the stage graph, the lowering for the step.
/// `mount_target` is the target of a `RUN --mount` (None for COPY), for BuildKit's wording of
/// the error when the stage named is the current one or a later one (it must be defined before).
pub fn resolve_stage_ref(
    stages: &[Stage],
    contexts: &BTreeMap<String, String>,
    name: &str,
    current: usize,
    mount_target: Option<&str>,
) -> Result<CopyFrom, String> {
    let label = |i: usize| stages[i].name.clone().unwrap_or_else(|| i.to_string());
    let not_before = |_j: usize| {
        match mount_target {
        None => format!(
            "cannot copy from stage \"{name}\", it needs to be defined before current stage \"{}\"",
            label(current)
        ),
        Some(t) => format!(
            "cannot mount from stage \"{name}\" to \"{t}\", stage needs to be defined before current command"
        ),
    }
    };
    if let Some(r) = named::lookup(contexts, name) {
        return Ok(CopyFrom::Image(r.to_string()));
    }
    if let Ok(idx) = name.parse::<usize>() {
        if idx >= stages.len() {
            return Err(format!("invalid stage index {idx}"));
        }
        if idx >= current {
            return Err(not_before(idx));
        }
        return Ok(CopyFrom::Stage(idx));
    }
    let lower = name.to_lowercase();
    match stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        Some(j) if j >= current => Err(not_before(j)),
        Some(j) => Ok(CopyFrom::Stage(j)),
        None => Ok(CopyFrom::Image(name.to_string())),
    }
}

impl Planner<'_> {
    fn err(&self, line: usize, msg: impl Into<String>) -> PlanError {
        error_at(self.df, line, msg).into()
    }

    fn stage_label(&self, i: usize) -> String {
        self.stages[i].name.clone().unwrap_or_else(|| i.to_string())
    }

    /// A `--from` value: see [`resolve_stage_ref`].
    fn resolve_ref(
        &self,
        name: &str,
        current: usize,
        line: usize,
        mount_target: Option<&str>,
    ) -> Result<CopyFrom, PlanError> {
        let named = &self.opts.named_contexts;
        resolve_stage_ref(&self.stages, named, name, current, mount_target)
            .map_err(|m| self.err(line, m))
    }

    fn resolve(&mut self, i: usize) -> Result<(), PlanError> {
        match self.state[i] {
            2 => return Ok(()),
            1 => {
                let line = self.stages[i].from_line;
                return Err(self.err(
                    line,
                    format!(
                        "circular dependency detected on stage: {}",
                        self.stage_label(i)
                    ),
                ));
            }
            _ => {}
        }
        self.state[i] = 1;
        let from_line = self.stages[i].from_line;

        // FROM, expanded with the global args only. A stage name refers to an earlier stage.
        let (image, platform) = match &self.stages[i].base {
            BaseRef::Image(raw) => (raw.clone(), self.stages[i].platform.clone()),
            _ => (String::new(), None),
        };
        let image = self
            .lexer
            .process_word(&image, &self.global_env)
            .map_err(|e| self.err(from_line, e.to_string()))?;
        if image.is_empty() {
            return Err(self.err(from_line, "base name (FROM) should not be blank"));
        }
        let platform = platform
            .map(|p| self.lexer.process_word(&p, &self.global_env))
            .transpose()
            .map_err(|e| self.err(from_line, e.to_string()))?;
        let target_platform = match &platform {
            Some(p) => Platform::parse(p).map_err(|e| self.err(from_line, e))?,
            None => self.opts.platform.clone(),
        };
        let lower = image.to_lowercase();
        let base = if let Some(r) = named::lookup(&self.opts.named_contexts, &image) {
            BaseRef::Image(r.to_string())
        } else if image == "scratch" {
            BaseRef::Scratch
        } else if let Some(j) = self.stages[..i]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            BaseRef::Stage(j)
        } else {
            BaseRef::Image(image)
        };
        let mut deps = BTreeSet::new();
        let mut scope = SimScope {
            args: ArgScope::new(&self.plan_stub, self.opts, i),
            env: Vec::new(),
        };
        if let BaseRef::Stage(j) = base {
            self.resolve(j)?;
            deps.insert(j);
            if let Some(s) = &self.scopes[j] {
                scope = s.clone();
            }
            // The base stage's ONBUILD triggers run first in this stage.
            let triggers = self.onbuild_of[j].clone();
            let count = triggers.len();
            let st = &mut self.stages[i];
            st.instructions.splice(0..0, triggers);
            st.onbuild_triggers = count;
        }

        // Walk the stage, tracking ARG/ENV to expand `--from` values as BuildKit would.
        let mut from_refs = Vec::new();
        let instructions = self.stages[i].instructions.clone();
        for (idx, li) in instructions.iter().enumerate() {
            let env = scope.args.expansion_env(&scope.env);
            let line = li.start_line;
            match &li.inner {
                Instruction::Arg(a) => {
                    for (k, d) in &a.args {
                        let env = scope.args.expansion_env(&scope.env);
                        let d = d
                            .as_deref()
                            .filter(|_| !scope.args.has_build_arg(k))
                            .map(|d| self.lexer.process_word(d, &env))
                            .transpose()
                            .map_err(|e| self.err(line, e.to_string()))?;
                        scope.args.declare(k, d);
                        self.declared.insert(k.clone());
                    }
                }
                Instruction::Env(_) => match li.inner.expand(&self.lexer, &env) {
                    Ok(Instruction::Env(e)) => scope.env.extend(e.pairs),
                    Ok(_) => {}
                    Err(e) => return Err(self.err(line, e.to_string())),
                },
                Instruction::Copy(c) => {
                    if let Some(f) = &c.from {
                        let name = self
                            .lexer
                            .process_word(f, &env)
                            .map_err(|e| self.err(line, e.to_string()))?;
                        let resolved = self.resolve_ref(&name, i, line, None)?;
                        from_refs.push(FromRef {
                            instruction: idx,
                            name,
                            resolved,
                        });
                    }
                }
                Instruction::Run(r) => {
                    for m in &r.mounts {
                        let m = parse_mount_expanded(m, &self.lexer, &env)
                            .map_err(|e| self.err(line, e.to_string()))?;
                        if let Some(f) = m.from {
                            let resolved = self.resolve_ref(&f, i, line, m.target.as_deref())?;
                            from_refs.push(FromRef {
                                instruction: idx,
                                name: f,
                                resolved,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        for r in &from_refs {
            if let CopyFrom::Stage(j) = r.resolved {
                let line = instructions[r.instruction].start_line;
                if self.state[j] == 1 {
                    return Err(self.err(
                        line,
                        format!(
                            "circular dependency detected on stage: {}",
                            self.stage_label(j)
                        ),
                    ));
                }
                self.resolve(j)?;
                deps.insert(j);
            }
        }
        let st = &mut self.stages[i];
        st.base = base;
        st.platform = platform;
        st.target_platform = target_platform;
        st.deps = deps.into_iter().collect();
        st.from_refs = from_refs;
        st.needed = true;
        self.scopes[i] = Some(scope);
        self.state[i] = 2;
        self.order.push(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{parse, CopyInst, RunInst};
    use std::path::Path;

    #[test]
    fn whole_plan_for_a_two_stage_build() {
        let text = "ARG V=1\nFROM golang:$V AS build\nRUN go build\nFROM scratch\nCOPY --from=build /app /app\n";
        let df = parse(text, Path::new("Dockerfile")).unwrap();
        let opts = PlanOptions {
            build_platform: Platform::parse("linux/amd64").unwrap(),
            named_contexts: Default::default(),
            platform: Platform::parse("linux/amd64").unwrap(),
            ..PlanOptions::default()
        };
        let p = Plan::new(&df, &opts).unwrap();
        let run = Located {
            inner: Instruction::Run(RunInst {
                cmd: crate::dockerfile::CommandLine::Shell("go build".into()),
                heredocs: vec![],
                mounts: vec![],
                network: None,
                security: None,
            }),
            start_line: 3,
            end_line: 3,
            original: "RUN go build".into(),
        };
        let copy = Located {
            inner: Instruction::Copy(CopyInst {
                sources: vec!["/app".into()],
                heredoc_sources: vec![],
                dest: "/app".into(),
                from: Some("build".into()),
                chown: None,
                chmod: None,
                link: false,
                exclude: vec![],
                parents: false,
                timestamp: None,
            }),
            start_line: 5,
            end_line: 5,
            original: "COPY --from=build /app /app".into(),
        };
        let expected = Plan {
            stages: vec![
                Stage {
                    index: 0,
                    name: Some("build".into()),
                    base: BaseRef::Image("golang:1".into()),
                    platform: None,
                    target_platform: Platform::parse("linux/amd64").unwrap(),
                    instructions: vec![run],
                    onbuild_triggers: 0,
                    deps: vec![],
                    from_refs: vec![],
                    from_line: 2,
                    needed: true,
                },
                Stage {
                    index: 1,
                    name: None,
                    base: BaseRef::Scratch,
                    platform: None,
                    target_platform: Platform::parse("linux/amd64").unwrap(),
                    instructions: vec![copy],
                    onbuild_triggers: 0,
                    deps: vec![0],
                    from_refs: vec![FromRef {
                        instruction: 0,
                        name: "build".into(),
                        resolved: CopyFrom::Stage(0),
                    }],
                    from_line: 4,
                    needed: true,
                },
            ],
            order: vec![0, 1],
            target: 1,
            unused_build_args: vec![],
            global_args: vec![("V".into(), Some("1".into()))],
            named_contexts: Default::default(),
        };
        assert_eq!(p, expected);
    }
}
