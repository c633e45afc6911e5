//! Dockerfile parsing: directives, continuations, heredocs, JSON/shell form, flags, variable
//! expansion. Reads a Dockerfile exactly as BuildKit's Dockerfile frontend does.
//!
//! Two layers, as in BuildKit: [`parse`] gives the low-level [`Node`] tree (its [`Node::dump`]
//! is BuildKit's `Node.Dump()`), and [`Dockerfile::instructions`] types each node into an
//! [`Instruction`] holding unexpanded words; [`Instruction::expand`] applies variables.

mod duration;
mod error;
mod flags;
pub mod heredoc;
pub mod instruction;
mod instruction_args;
pub mod instruction_types;
mod line_match;
mod line_parsers;
pub mod mount;
mod node;
mod parser;
pub mod shell;
pub mod suggest;

use std::path::{Path, PathBuf};

pub use duration::parse_go_duration;
pub use error::ParseError;
pub use instruction::*;
pub use mount::{parse_mount, MountError, MountType, RunMount};
pub use node::{go_quote, Node, NodeArg, NodeHeredoc};

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The path as given (used in error messages).
    pub path: PathBuf,
    /// The full text (BOM removed).
    pub source: String,
    /// The escape character (`\` or, with `# escape=\``, a backtick).
    pub escape: char,
    /// `# syntax=` value, recorded but not acted on.
    pub syntax: Option<String>,
    /// `# check=` value, recorded but not acted on.
    pub check: Option<String>,
    pub nodes: Vec<Node>,
    /// Non-fatal findings (empty continuation lines).
    pub warnings: Vec<String>,
}

/// A value with the Dockerfile lines it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub inner: T,
    /// 1-based first and last line (heredoc bodies included).
    pub start_line: usize,
    pub end_line: usize,
    /// The instruction text as written, continuations joined.
    pub original: String,
}

/// Parses Dockerfile text. `path` is only used to name the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Dockerfile, ParseError> {
    let source = text.strip_prefix('\u{feff}').unwrap_or(text).to_string();
    let parsed = parser::parse_file(&source, path)?;
    Ok(Dockerfile {
        path: path.to_path_buf(),
        source,
        escape: parsed.directives.escape,
        syntax: parsed.directives.syntax,
        check: parsed.directives.check,
        nodes: parsed.nodes,
        warnings: parsed.warnings,
    })
}

/// An error at `line` of `df`, for failures found after parsing (e.g. while building).
pub fn error_at(df: &Dockerfile, line: usize, msg: impl Into<String>) -> ParseError {
    ParseError::at(&df.path, &df.source, line, line, msg)
}

impl Dockerfile {
    /// BuildKit's dump of the whole tree: one `(instruction …)` line per node.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push('(');
            s.push_str(&n.dump());
            s.push_str(")\n");
        }
        s
    }

    /// An error spanning a node's lines.
    pub fn error_for(&self, node: &Node, msg: impl Into<String>) -> ParseError {
        ParseError::at(
            &self.path,
            &self.source,
            node.start_line,
            node.end_line,
            msg,
        )
    }

    /// Types every node; the first invalid instruction (unknown keyword, unknown flag, wrong
    /// arguments) is an error naming its line.
    pub fn instructions(&self) -> Result<Vec<Located<Instruction>>, ParseError> {
        self.nodes
            .iter()
            .map(|n| {
                let inner = Instruction::from_node(n).map_err(|e| {
                    let mut err = self.error_for(n, e.to_string());
                    if let InstructionError::UnknownInstruction(..) = e {
                        let t = &err.line_text;
                        let col = t.len() - t.trim_start().len() + 1;
                        err = err.with_column(col);
                    }
                    err
                })?;
                Ok(Located {
                    inner,
                    start_line: n.start_line,
                    end_line: n.end_line,
                    original: n.original.clone(),
                })
            })
            .collect()
    }
}
