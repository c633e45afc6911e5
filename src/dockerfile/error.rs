//! The front end's error: names the Dockerfile, the line (and column when known) and keeps the
//! offending line's text so the CLI can show it.

use std::path::{Path, PathBuf};

/// A Dockerfile error at a location. Display: `Dockerfile:7: unknown instruction: FOO`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.headline())]
pub struct ParseError {
    /// The Dockerfile path as given by the caller.
    pub path: PathBuf,
    /// First line involved, 1-based; 0 when the error concerns the whole file.
    pub line: usize,
    /// Last line involved (== `line` for one-line errors).
    pub end_line: usize,
    /// 1-based column within `line`, when known.
    pub column: Option<usize>,
    pub message: String,
    /// Text of `line` (without its line ending); empty when `line` is 0.
    pub line_text: String,
    /// The whole source and the byte range of the offending lines, for miette.
    snippet: Option<std::sync::Arc<(String, usize, usize)>>,
}

impl ParseError {
    /// `path:line[:column]: message`.
    fn headline(&self) -> String {
        let path = self.path.display();
        match (self.line, self.column) {
            (0, _) => format!("{path}: {}", self.message),
            (l, Some(c)) => format!("{path}:{l}:{c}: {}", self.message),
            (l, None) => format!("{path}:{l}: {}", self.message),
        }
    }
}

impl miette::Diagnostic for ParseError {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.snippet
            .as_ref()
            .map(|a| &a.0 as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let (_, start, len) = self.snippet.as_deref()?;
        Some(Box::new(std::iter::once(miette::LabeledSpan::new(
            Some(self.message.clone()),
            *start,
            *len,
        ))))
    }
}

impl ParseError {
    /// An error at `line..=end_line` (1-based) of `source`.
    pub fn at(
        path: &Path,
        source: &str,
        line: usize,
        end_line: usize,
        message: impl Into<String>,
    ) -> ParseError {
        let message = message.into();
        let end_line = end_line.max(line);
        let mut offset = 0;
        let mut span = None;
        let mut line_text = String::new();
        let mut start_off = 0;
        for (i, l) in source.split_inclusive('\n').enumerate() {
            let n = i + 1;
            if n == line {
                start_off = offset;
                line_text = l.trim_end_matches(['\r', '\n']).to_string();
            }
            offset += l.len();
            if n == end_line && line > 0 {
                let end = offset - (l.len() - l.trim_end_matches(['\r', '\n']).len());
                span = Some((start_off, end.saturating_sub(start_off)));
                break;
            }
        }
        ParseError {
            path: path.to_path_buf(),
            line,
            end_line,
            column: None,
            message,
            line_text,
            snippet: span.map(|(s, l)| std::sync::Arc::new((source.to_string(), s, l))),
        }
    }

    /// An error about the whole file (no line).
    pub fn whole_file(path: &Path, message: impl Into<String>) -> ParseError {
        ParseError {
            path: path.to_path_buf(),
            line: 0,
            end_line: 0,
            column: None,
            message: message.into(),
            line_text: String::new(),
            snippet: None,
        }
    }

    /// Renumbers the error (e.g. to a trigger's position) keeping its text.
    pub fn with_line(mut self, line: usize) -> ParseError {
        self.line = line;
        self.end_line = line;
        self.snippet = None;
        self
    }

    pub fn with_column(mut self, column: usize) -> ParseError {
        self.column = Some(column);
        self
    }

    /// Display plus the offending line, for plain-text output:
    /// `Dockerfile:7: unknown instruction: FOO` / `   7 | FOO bar`.
    pub fn render(&self) -> String {
        if self.line == 0 {
            return self.to_string();
        }
        format!("{self}\n{:>5} | {}", self.line, self.line_text)
    }
}
