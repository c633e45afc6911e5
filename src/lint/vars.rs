//! Variable bookkeeping for the checks (an `Env` that records which names an expansion looked up,
//! the global ARG scope) and UndefinedVar.

use super::{Input, Stage, Warning};
use crate::dockerfile::shell::{Env, Lexer};
use crate::dockerfile::{Instruction, Node};
use std::cell::RefCell;

/// The predefined platform ARGs, with an amd64 host's values whatever `--platform` says: the
/// checks are pure and see no build options beyond build args (FROM lines are expanded with these).
const PREDEFINED: [(&str, &str); 8] = [
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
];

/// An `Env` that remembers the names looked up, and which of them were set (BuildKit's
/// `ProcessWordWithMatches`).
pub(super) struct Recording<'a> {
    inner: &'a dyn Env,
    matched: RefCell<Vec<String>>,
    unmatched: RefCell<Vec<String>>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn Env) -> Self {
        Recording {
            inner,
            matched: RefCell::default(),
            unmatched: RefCell::default(),
        }
    }
    pub fn matched(&self) -> Vec<String> {
        self.matched.borrow().clone()
    }
    pub fn unmatched(&self) -> Vec<String> {
        self.unmatched.borrow().clone()
    }
}

impl Env for Recording<'_> {
    fn get(&self, key: &str) -> Option<String> {
        let v = self.inner.get(key);
        let list = if v.is_some() {
            &self.matched
        } else {
            &self.unmatched
        };
        let mut l = list.borrow_mut();
        if !l.iter().any(|k| k == key) {
            l.push(key.to_string());
        }
        v
    }
    fn keys(&self) -> Vec<String> {
        self.inner.keys()
    }
}

/// The scope FROM lines expand in: predefined platform ARGs, then the global ARGs (with
/// `--build-arg` values when `with_build_args`). Also returns every declared name.
pub(super) fn global_args(
    input: &Input,
    globals: &[Node],
    with_build_args: bool,
) -> (Vec<(String, String)>, Vec<String>) {
    let lexer = Lexer::new(input.dockerfile.escape);
    let mut env: Vec<(String, String)> = PREDEFINED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut declared: Vec<String> = PREDEFINED.iter().map(|(k, _)| k.to_string()).collect();
    for n in globals {
        let Ok(Instruction::Arg(a)) = Instruction::from_node(n) else {
            continue;
        };
        for (k, default) in a.args {
            let given = with_build_args
                .then(|| input.build_args.get(&k).cloned())
                .flatten();
            let value = given.or_else(|| default.and_then(|d| lexer.process_word(&d, &env).ok()));
            if let Some(v) = value {
                env.push((k.clone(), v));
            }
            declared.push(k);
        }
    }
    (env, declared)
}

/// UndefinedVar: a variable used in an instruction BuildKit expands that is neither in the base
/// image's environment nor set by ENV or ARG before it in the stage.
pub(super) fn check(input: &Input, globals: &[Node], stages: &[Stage], out: &mut Vec<Warning>) {
    let lexer = Lexer::new(input.dockerfile.escape);
    let (global_env, _) = global_args(input, globals, true);
    let mut finished: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for st in stages {
        let base = st.from.arg_words().first().cloned().unwrap_or_default();
        let base = lexer.process_word(&base, &global_env).unwrap_or(base);
        // A stage built on another stage starts from that stage's variables.
        let mut env = match finished.iter().find(|(n, _)| *n == base) {
            Some((_, e)) => e.clone(),
            // A stage FROM scratch gets the default PATH, as its image config does.
            None if base == "scratch" => vec![(
                "PATH".to_string(),
                crate::image::DEFAULT_PATH_ENV.to_string(),
            )],
            None => match (input.base_env)(&base) {
                Some(e) => e,
                None => {
                    if let Some(name) = &st.name {
                        finished.push((name.clone(), Vec::new()));
                    }
                    continue;
                }
            },
        };
        let mut declared: Vec<String> = Vec::new();
        for n in st.body {
            let Ok(inst) = Instruction::from_node(n) else {
                continue;
            };
            match &inst {
                Instruction::Env(e) => {
                    for (k, v) in &e.pairs {
                        report(&lexer, n, std::slice::from_ref(v), &env, &declared, out);
                        let v = lexer.process_word(v, &env).unwrap_or_default();
                        env.push((k.clone(), v));
                    }
                }
                Instruction::Arg(a) => {
                    for (k, d) in &a.args {
                        if let Some(d) = d {
                            report(&lexer, n, std::slice::from_ref(d), &env, &declared, out);
                        }
                        declared.push(k.clone());
                        let v =
                            input.build_args.get(k).cloned().or_else(|| {
                                d.as_ref().and_then(|d| lexer.process_word(d, &env).ok())
                            });
                        if let Some(v) = v {
                            env.push((k.clone(), v));
                        }
                    }
                }
                other => report(&lexer, n, &expanded_words(other), &env, &declared, out),
            }
        }
        if let Some(name) = &st.name {
            finished.push((name.clone(), env));
        }
    }
}

fn report(
    lexer: &Lexer,
    n: &Node,
    words: &[String],
    env: &Vec<(String, String)>,
    declared: &[String],
    out: &mut Vec<Warning>,
) {
    for w in words {
        let rec = Recording::new(env);
        let _ = lexer.process_word(w, &rec);
        for var in rec.unmatched() {
            if declared.contains(&var) {
                continue;
            }
            let mut msg = format!("Usage of undefined variable '${var}'");
            if let Some(s) = super::suggest(&var, &env.keys(), true) {
                msg.push_str(&format!(" (did you mean ${s}?)"));
            }
            let w = Warning::at("UndefinedVar", n, msg);
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
}

/// The words of the instructions BuildKit expands (RUN, CMD and ENTRYPOINT are left to the shell).
fn expanded_words(inst: &Instruction) -> Vec<String> {
    match inst {
        Instruction::Copy(c) => {
            let mut w = c.sources.clone();
            w.push(c.dest.clone());
            w.extend(c.chown.clone());
            w.extend(c.chmod.clone());
            w
        }
        Instruction::Add(a) => {
            let mut w = a.sources.clone();
            w.push(a.dest.clone());
            w.extend(a.chown.clone());
            w.extend(a.chmod.clone());
            w
        }
        Instruction::Workdir(w) => vec![w.path.clone()],
        Instruction::User(u) => vec![u.user.clone()],
        Instruction::Expose(e) => e.ports.clone(),
        Instruction::Volume(v) => v.volumes.clone(),
        Instruction::Stopsignal(s) => vec![s.signal.clone()],
        Instruction::Label(l) => l
            .pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        _ => Vec::new(),
    }
}
