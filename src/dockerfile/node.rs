//! The low-level syntax tree, shaped like BuildKit's `parser.Node`: one node per instruction
//! with its flags, its argument words (or a nested node for ONBUILD) and its heredocs.

/// One argument of a node: a word, or (ONBUILD only) the nested instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeArg {
    Word(String),
    Sub(Box<Node>),
}

/// A heredoc attached to a RUN/COPY/ADD line, as read by the parser (content not yet
/// tab-stripped; `chomp` says whether it must be).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeHeredoc {
    pub name: String,
    pub file_descriptor: u32,
    /// False when any part of the delimiter was quoted: the body is taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines and the terminator.
    pub chomp: bool,
    /// Body lines with their original line endings.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The instruction keyword as written (case kept).
    pub value: String,
    /// `--flag[=value]` words before the arguments, as written.
    pub flags: Vec<String>,
    pub args: Vec<NodeArg>,
    /// The arguments came from a JSON array (exec form).
    pub json: bool,
    /// The instruction text with continuations joined (heredoc bodies excluded).
    pub original: String,
    pub heredocs: Vec<NodeHeredoc>,
    /// 1-based first and last line of the instruction in the Dockerfile (heredoc bodies included).
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// Lower-cased keyword.
    pub fn keyword(&self) -> String {
        self.value.to_lowercase()
    }

    /// Argument words, with ONBUILD's nested instruction flattened as BuildKit's `nodeArgs`.
    pub fn arg_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.args {
            match a {
                NodeArg::Word(w) => out.push(w.clone()),
                NodeArg::Sub(n) => {
                    out.push(n.value.clone());
                    out.extend(n.arg_words());
                }
            }
        }
        out
    }

    /// BuildKit's `Node.Dump()` for one instruction, e.g. `(copy ["--from=a"] "x" "/y")`
    /// without the enclosing parentheses.
    pub fn dump(&self) -> String {
        let mut s = self.keyword();
        if !self.flags.is_empty() {
            s.push_str(" [");
            let q: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&q.join(" "));
            s.push(']');
        }
        for a in &self.args {
            s.push(' ');
            match a {
                NodeArg::Word(w) => s.push_str(&go_quote(w)),
                NodeArg::Sub(n) => {
                    s.push('(');
                    s.push_str(&n.dump());
                    s.push(')');
                }
            }
        }
        s.trim().to_string()
    }
}

/// Go's `strconv.Quote`: double-quoted, with Go escapes for non-printable characters.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if !go_is_print(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `strconv.IsPrint` (letters, marks, numbers, punctuation, symbols and the
/// ASCII space): std has no Unicode category tables, so control, non-ASCII space and the
/// common format characters are treated as non-printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfffe | 0xffff | 0xf0000..=0x10ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{8}\n"), r#""\x00\b\n""#);
        assert_eq!(go_quote("♥ \u{a0}"), "\"♥ \\u00a0\"");
    }
}
