//! Line-level reading of a Dockerfile: parser directives, comments, line continuations and
//! heredoc bodies. A port of BuildKit's `parser/parser.go` `Parse`.

use std::path::Path;

use super::error::ParseError;
use super::heredoc::heredocs_from_line;
use super::line_match;
use super::line_parsers::{parse_args, split_command, LineCtx};
use super::node::Node;

/// Parser directives found at the top of the file.
#[derive(Debug, Clone)]
pub(crate) struct Directives {
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Directives {
    fn new() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
            seen: Vec::new(),
            done: false,
        }
    }

    /// Looks at a line while still in the directive block; an error for a repeated or invalid
    /// directive.
    fn possible_directive(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = line_match::directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        let value = value.to_string();
        match key.as_str() {
            "escape" => {
                let c = match value.as_str() {
                    "`" => '`',
                    "\\" => '\\',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ))
                    }
                };
                self.escape = c;
            }
            "syntax" => self.syntax = Some(value),
            _ => self.check = Some(value),
        }
        Ok(())
    }

    /// Removes a trailing continuation token; returns (line, is_end_of_instruction).
    fn trim_continuation(&self, line: &str) -> (String, bool) {
        match line_match::strip_continuation(line, self.escape) {
            Some(joined) => (joined.to_string(), false),
            None => (line.to_string(), true),
        }
    }
}

/// The parsed file, before typing.
pub(crate) struct ParsedFile {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<String>,
}

/// Longest physical line, in bytes (BuildKit's `bufio.Scanner` token limit).
const MAX_LINE: usize = 65535;

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// BuildKit strips a line that is a comment (after optional leading-space removal).
fn process_line(d: &mut Directives, raw: &str, strip_left: bool) -> Result<String, String> {
    let mut token = trim_newline(raw);
    if strip_left {
        token = token.trim_start();
    }
    d.possible_directive(token)?;
    Ok(if token.starts_with('#') {
        String::new()
    } else {
        token.to_string()
    })
}

/// Builds a node from one joined instruction line (also used for ONBUILD's nested one).
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let (cmd, flags, rest) = split_command(line);
    let ctx = LineCtx { escape };
    let sub = |s: &str| node_from_line(s, escape);
    let (args, json) = parse_args(&cmd.to_lowercase(), &rest, ctx, &sub)?;
    Ok(Node {
        value: cmd,
        flags,
        args,
        json,
        original: line.to_string(),
        ..Node::default()
    })
}

/// RUN/COPY/ADD in shell form (also nested in ONBUILD) may carry heredocs.
fn can_contain_heredoc(node: &Node) -> bool {
    let mut n = node;
    if n.keyword() == "onbuild" {
        if let Some(super::node::NodeArg::Sub(child)) = n.args.first() {
            n = child;
        }
    }
    matches!(n.keyword().as_str(), "run" | "copy" | "add") && !n.json
}

pub(crate) fn parse_file(text: &str, path: &Path) -> Result<ParsedFile, ParseError> {
    let text_no_bom = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text_no_bom.split_inclusive('\n').collect();
    let err =
        |start: usize, end: usize, msg: String| ParseError::at(path, text_no_bom, start, end, msg);
    // BuildKit's scanner refuses longer lines (parser_test.go TestParseReturnsScannerErrors).
    if let Some(i) = lines.iter().position(|l| trim_newline(l).len() > MAX_LINE) {
        return Err(err(
            i + 1,
            i + 1,
            format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
        ));
    }

    let mut d = Directives::new();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut idx = 0; // index of the next line to read
    while idx < lines.len() {
        let raw = lines[idx];
        idx += 1;
        let line_no = idx;
        if is_comment(raw) {
            let c = trim_newline(raw).trim_start()[1..].trim().to_string();
            comments.push(c);
        }
        let processed = process_line(&mut d, raw, true).map_err(|m| err(line_no, line_no, m))?;
        let start_line = line_no;
        let (mut line, mut end) = d.trim_continuation(&processed);
        if end && line.is_empty() {
            if !is_comment(raw) {
                comments.clear();
            }
            continue;
        }
        let mut has_empty_continuation = false;
        while !end && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let processed = process_line(&mut d, raw, false).map_err(|m| err(idx, idx, m))?;
            if is_comment(raw) {
                continue;
            }
            if processed.trim_start().is_empty() {
                has_empty_continuation = true;
                continue;
            }
            let (cont, e) = d.trim_continuation(&processed);
            line.push_str(&cont);
            end = e;
        }
        if has_empty_continuation {
            warnings.push(format!(
                "line {start_line}: empty continuation line found in: {line}"
            ));
        }
        let mut node = node_from_line(&line, d.escape).map_err(|m| err(start_line, idx, m))?;
        if can_contain_heredoc(&node) {
            let heredocs = heredocs_from_line(&line).map_err(|m| err(start_line, idx, m))?;
            for mut h in heredocs {
                let mut terminated = false;
                while idx < lines.len() {
                    let raw = lines[idx];
                    idx += 1;
                    let mut candidate = trim_newline(raw);
                    if h.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(raw);
                }
                if !terminated {
                    return Err(err(start_line, idx, "unterminated heredoc".into()));
                }
                node.heredocs.push(h);
            }
        }
        node.start_line = start_line;
        node.end_line = idx;
        node.comments = std::mem::take(&mut comments);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(ParseError::whole_file(path, "file with no instructions"));
    }
    Ok(ParsedFile {
        directives: d,
        nodes,
        warnings,
    })
}
