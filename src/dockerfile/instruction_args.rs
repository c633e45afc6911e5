//! The argument helpers BuildKit's `instructions/parse.go` shares between instructions: error
//! shapes, flags, JSON/shell form, key-value triples, COPY/ADD sources and heredocs, durations.

use super::duration::parse_go_duration;
use super::flags::{FlagKind, Flags};
use super::heredoc::{chomp_heredoc_content, parse_heredoc};
use super::instruction_types::{CommandLine, HeredocSource, IResult, InstructionError};
use super::node::Node;

pub(super) fn invalid<T>(m: impl Into<String>) -> IResult<T> {
    Err(InstructionError::Invalid(m.into()))
}

pub(super) fn at_least_one(cmd: &str) -> InstructionError {
    InstructionError::Invalid(format!("{cmd} requires at least one argument"))
}

pub(super) fn exactly_one(cmd: &str) -> InstructionError {
    InstructionError::Invalid(format!("{cmd} requires exactly one argument"))
}

pub(super) fn flags(node: &Node, spec: &[(&'static str, FlagKind)]) -> IResult<Flags> {
    Flags::new(spec)
        .parse(&node.flags)
        .map_err(InstructionError::Invalid)
}

/// BuildKit's `handleJSONArgs`.
pub(super) fn command_line(node: &Node, args: &[String]) -> CommandLine {
    if node.json {
        CommandLine::Exec(args.to_vec())
    } else {
        CommandLine::Shell(args.join(" "))
    }
}

pub(super) fn kv_triples(args: &[String], cmd: &str) -> IResult<Vec<(String, String)>> {
    if args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if !args.len().is_multiple_of(3) {
        return invalid(format!("Bad input to {cmd}, too many arguments"));
    }
    let mut out = Vec::new();
    for t in args.chunks(3) {
        if t[0].is_empty() {
            return invalid(format!("{cmd} names can not be blank"));
        }
        out.push((t[0].clone(), t[1].clone()));
    }
    Ok(out)
}

/// Splits COPY/ADD words into file sources, heredoc sources and the destination.
pub(super) fn sources_and_dest(
    node: &Node,
    args: &[String],
    cmd: &str,
) -> IResult<(Vec<String>, Vec<HeredocSource>, String)> {
    if args.len() < 2 {
        return invalid(format!(
            "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let (srcs, dest) = args.split_at(args.len() - 1);
    let dest = dest[0].clone();
    let mut paths = Vec::new();
    let mut docs = Vec::new();
    if !node.json && matches!(parse_heredoc(&dest), Ok(Some(_))) {
        return invalid(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    for s in srcs {
        let doc = if node.json {
            None
        } else {
            parse_heredoc(s).map_err(InstructionError::Invalid)?
        };
        match doc {
            Some(h) => {
                let body = node
                    .heredocs
                    .iter()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                let content = if h.chomp {
                    chomp_heredoc_content(&body)
                } else {
                    body
                };
                docs.push(HeredocSource {
                    path: h.name,
                    content,
                    expand: h.expand,
                });
            }
            None => paths.push(s.clone()),
        }
    }
    Ok((paths, docs, dest))
}

pub(super) fn parse_duration_flag(f: &Flags, name: &str) -> IResult<Option<i64>> {
    let Some(v) = f.string(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let d = parse_go_duration(&v).map_err(InstructionError::Invalid)?;
    // Docker's minimum is 1ms; 0 means "inherit the default".
    if d != 0 && d < 1_000_000 {
        return invalid(format!("Interval \"{name}\" cannot be less than 1ms"));
    }
    Ok(Some(d))
}
