//! ARG scoping while a stage is lowered (BuildKit `dispatchArg` semantics).

use std::collections::BTreeMap;

use super::{Plan, PlanOptions};

/// Proxy variables: usable as build args without an ARG, passed to RUN, but kept out of the
/// image history unless declared.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// The predefined platform ARGs (`TARGETPLATFORM`, …, `BUILDVARIANT`) for these options.
pub fn predefined_args(opts: &PlanOptions) -> Vec<(String, String)> {
    let t = &opts.platform;
    let b = &opts.build_platform;
    [
        ("TARGETPLATFORM", t.to_string()),
        ("TARGETOS", t.os.clone()),
        ("TARGETARCH", t.architecture.clone()),
        ("TARGETVARIANT", t.variant.clone().unwrap_or_default()),
        ("BUILDPLATFORM", b.to_string()),
        ("BUILDOS", b.os.clone()),
        ("BUILDARCH", b.architecture.clone()),
        ("BUILDVARIANT", b.variant.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The ARG scope of one stage while it is lowered.
///
/// A stage starts with no ARGs visible; `ARG X` makes X visible with (in priority order) the
/// `--build-arg` value, its own default, or the global (before-first-FROM or predefined)
/// value. For a stage built `FROM` another stage, start from [`ArgScope::inherit`] of the
/// parent's final scope: BuildKit carries ARGs into child stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgScope {
    /// Global args (predefined platform args first, then the ones before the first FROM).
    global: Vec<(String, Option<String>)>,
    build_args: BTreeMap<String, String>,
    /// Declared in this stage, first-declaration order, latest value.
    declared: Vec<(String, Option<String>)>,
}

impl ArgScope {
    /// A fresh scope for `stage` of `plan`.
    pub fn new(plan: &Plan, opts: &PlanOptions, _stage: usize) -> ArgScope {
        let mut global: Vec<(String, Option<String>)> = predefined_args(opts)
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        global.extend(plan.global_args.iter().cloned());
        ArgScope {
            global,
            build_args: opts.build_args.clone(),
            declared: Vec::new(),
        }
    }

    /// A child stage's starting scope: the parent's ARGs stay declared.
    pub fn inherit(parent: &ArgScope) -> ArgScope {
        parent.clone()
    }

    /// Declares `ARG name[=default]` (`default_expanded` already expanded by the caller
    /// against [`ArgScope::expansion_env`]); returns the value now in effect.
    pub fn declare(&mut self, name: &str, default_expanded: Option<String>) -> Option<String> {
        let value = if let Some(v) = self.build_args.get(name) {
            Some(v.clone())
        } else if default_expanded.is_some() {
            default_expanded
        } else {
            self.global
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.clone())
        };
        match self.declared.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.clone(),
            None => self.declared.push((name.to_string(), value.clone())),
        }
        value
    }

    /// Declared ARGs in declaration order (a re-declaration keeps its first position).
    pub fn values(&self) -> &[(String, Option<String>)] {
        &self.declared
    }

    pub fn is_declared(&self, name: &str) -> bool {
        self.declared.iter().any(|(k, _)| k == name)
    }

    /// Variables for expanding an instruction: declared ARGs with a value, overridden by the
    /// stage's ENV (`env`, in order; ENV wins over a same-named ARG).
    pub fn expansion_env(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .declared
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        out.extend(env.iter().cloned());
        out
    }

    /// Build args visible to RUN: declared ARGs with a value, plus proxy variables given as
    /// `--build-arg` even when not declared. The caller lets the stage ENV win over these.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .declared
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for (k, v) in &self.build_args {
            if is_proxy_arg(k) && !self.is_declared(k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// The `K=V` args recorded in RUN history (`|N K=V …`): declared ARGs with a value, in
    /// declaration order; undeclared proxy variables never appear.
    pub fn history_args(&self) -> Vec<(String, String)> {
        self.declared
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }
}
