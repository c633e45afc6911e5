//! Build checks: BuildKit's Dockerfile lint rules (same names, same messages), run over the parsed
//! node tree without building anything. Rule groups live in their own files; `config` reads the
//! `# check=` directive and `outline` answers `--call outline|targets`. See docs/compat.md
//! ("Build checks") for what differs from BuildKit.

mod casing;
mod config;
mod instructions;
pub mod outline;
mod stages;
mod vars;

use crate::dockerfile::{Dockerfile, Node};
use std::collections::BTreeMap;

pub use config::{CheckConfig, ConfigError};

/// One finding: the rule, BuildKit's message and the instruction's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub rule: &'static str,
    pub message: String,
    /// 1-based first and last line of the instruction.
    pub line: usize,
    pub end_line: usize,
}

impl Warning {
    fn at(rule: &'static str, node: &Node, message: String) -> Warning {
        Warning {
            rule,
            message,
            line: node.start_line,
            end_line: node.end_line,
        }
    }

    /// BuildKit's progress line: `RuleName: message (line N)`.
    pub fn short(&self) -> String {
        format!("{}: {} (line {})", self.rule, self.message, self.line)
    }

    /// The rule's page in Docker's documentation, as buildx prints it.
    pub fn url(&self) -> String {
        let mut kebab = String::new();
        let chars: Vec<char> = self.rule.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            // "JSONArgs" -> "json-args": a new word starts at an upper-case letter that follows
            // a lower-case one, or that precedes one inside an upper-case run.
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if c.is_ascii_uppercase() && i > 0 && (prev_lower || (prev_upper && next_lower)) {
                kebab.push('-');
            }
            kebab.push(c.to_ascii_lowercase());
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{kebab}/")
    }
}

/// Every rule this module knows, in BuildKit's order; experimental rules run only when the
/// `# check=experimental=` directive names them.
pub const RULES: &[&str] = &[
    "StageNameCasing",
    "FromAsCasing",
    "ConsistentInstructionCasing",
    "DuplicateStageName",
    "ReservedStageName",
    "JSONArgsRecommended",
    "MaintainerDeprecated",
    "UndefinedArgInFrom",
    "WorkdirRelativePath",
    "UndefinedVar",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "RedundantTargetPlatform",
    "SecretsUsedInArgOrEnv",
    "InvalidDefaultArgInFrom",
    "FromPlatformFlagConstDisallowed",
    "CopyIgnoredFile",
    "InvalidDefinitionDescription",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
];

/// Rules BuildKit marks experimental.
pub const EXPERIMENTAL: &[&str] = &["InvalidDefinitionDescription"];

/// Looks up a base image's environment (`KEY`, `value` pairs) by its FROM name.
pub type BaseEnv<'a> = dyn Fn(&str) -> Option<Vec<(String, String)>> + 'a;

/// What the checks may know besides the Dockerfile.
pub struct Input<'a> {
    pub dockerfile: &'a Dockerfile,
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// The environment of a base image (`FROM` name after expansion), when known; a stage whose
    /// base is unknown is not checked for UndefinedVar (its image may define anything).
    pub base_env: &'a BaseEnv<'a>,
    /// `.dockerignore` matcher for COPY/ADD sources, when the file exists and has no `!`
    /// exclusions (BuildKit checks nothing otherwise).
    pub ignored: Option<&'a dyn Fn(&str) -> bool>,
}

/// One stage as the rules see it: its FROM node and the nodes after it.
pub(crate) struct Stage<'a> {
    pub from: &'a Node,
    pub name: Option<String>,
    pub body: &'a [Node],
}

/// Splits the nodes into global ARGs (before the first FROM) and stages.
pub(crate) fn split_stages(nodes: &[Node]) -> (&[Node], Vec<Stage<'_>>) {
    let first = nodes
        .iter()
        .position(|n| n.keyword() == "from")
        .unwrap_or(nodes.len());
    let mut stages = Vec::new();
    let mut i = first;
    while i < nodes.len() {
        let end = nodes[i + 1..]
            .iter()
            .position(|n| n.keyword() == "from")
            .map_or(nodes.len(), |p| i + 1 + p);
        let words = nodes[i].arg_words();
        let name = (words.len() == 3 && words[1].eq_ignore_ascii_case("as"))
            .then(|| words[2].to_lowercase());
        stages.push(Stage {
            from: &nodes[i],
            name,
            body: &nodes[i + 1..end],
        });
        i = end;
    }
    (&nodes[..first], stages)
}

/// Runs every rule and returns the findings `config` lets through, sorted by line.
pub fn check(input: &Input, config: &CheckConfig) -> Vec<Warning> {
    let df = input.dockerfile;
    let (globals, stages) = split_stages(&df.nodes);
    let mut out = Vec::new();
    casing::check(&stages, &mut out);
    stages::check(input, globals, &stages, &mut out);
    instructions::check(input, globals, &stages, &mut out);
    vars::check(input, globals, &stages, &mut out);
    out.retain(|w| config.enabled(w.rule));
    out.sort_by_key(|w| w.line);
    out
}

/// BuildKit's `suggest.Search`: the closest option within Levenshtein distance 2, none when an
/// option matches exactly.
pub(crate) fn suggest(val: &str, options: &[String], case_sensitive: bool) -> Option<String> {
    crate::dockerfile::suggest::nearest(val, options.iter().map(String::as_str), case_sensitive)
        .map(str::to_string)
}

#[cfg(test)]
mod tests;
