//! Variable expansion and word splitting: a port of BuildKit's `frontend/dockerfile/shell/lex.go`.
//!
//! Hand-written rather than a crate because no crate implements BuildKit's quoting and
//! `${VAR…}` rules (see CRATES.md §1: `shellexpand` matches 40/228 of BuildKit's cases).

mod env;
mod pattern;

pub use env::Env;
use pattern::{shell_pattern_to_regex, trim_prefix, trim_suffix};

/// An expansion failure; Display is BuildKit's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process \"{source_text}\": {message}")]
pub struct ExpandError {
    /// The word that was being expanded.
    pub source_text: String,
    pub message: String,
}

/// The public lexer: BuildKit's `shell.Lex` with its default options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    pub escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }

    /// Expands variables and removes quotes, keeping the result as one word.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        LexOptions::new(self.escape)
            .process(word, env)
            .map(|(w, _)| w)
    }

    /// Expands variables, then splits into words on unquoted whitespace.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        LexOptions::new(self.escape)
            .process(word, env)
            .map(|(_, ws)| ws)
    }
}

/// BuildKit's lexer knobs (`RawQuotes`, `RawEscapes`, `SkipUnsetEnv`, `SkipProcessQuotes`),
/// used by heredoc detection and heredoc body expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexOptions {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

impl LexOptions {
    pub fn new(escape: char) -> Self {
        LexOptions {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Returns (the expanded word, the expanded word split into words).
    pub fn process(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>), ExpandError> {
        let mut chars: Vec<char> = word.chars().collect();
        // Go's text/scanner skips a leading byte-order mark.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        let mut sw = ShellWord {
            opts: *self,
            chars,
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
        };
        let raw = self.raw_escapes;
        sw.process_stop_on(None, raw)
            .map_err(|message| ExpandError {
                source_text: word.to_string(),
                message,
            })
    }
}

/// Longest word an expansion may produce: far beyond any real Dockerfile value, small enough
/// that doubling `ARG`s or `${x//a/bbbb}` cannot eat the machine (SECURITY H8; BuildKit has no
/// limit, Docker then fails later on its own message or layer size limits).
pub const MAX_EXPANSION: usize = 16 << 20;

/// Deepest `${a:-${b:-...}}` nesting: recursion is bounded so no input overflows the stack.
pub const MAX_NESTING: usize = 100;

struct ShellWord<'a> {
    opts: LexOptions,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    raw_escapes: bool,
    depth: usize,
}

#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

type LexResult<T> = Result<T, String>;

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> LexResult<(String, Vec<String>)> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "variable expansion nested deeper than {MAX_NESTING} levels"
            ));
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let r = self.process_stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let special =
                ch == '$' || (!self.opts.skip_process_quotes && (ch == '\'' || ch == '"'));
            if special {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                if result.len() + tmp.len() > MAX_EXPANSION {
                    return Err(format!("variable expansion exceeds {MAX_EXPANSION} bytes"));
                }
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            self.next();
            if ch == self.opts.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(c) => {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                }
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.next();
        if self.opts.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.opts.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.next();
        if self.opts.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.opts.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.opts.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name)
    }

    fn process_dollar(&mut self) -> LexResult<String> {
        self.next(); // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.opts.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{') | Some('}') | Some(':') => {
                return Err("syntax error: bad substitution".into())
            }
            _ => {}
        }
        let name = self.process_name();
        let first = self.next();
        // Go renders the scanner's EOF rune as U+FFFD in messages.
        let mut chs: String = first.map_or('\u{fffd}'.to_string(), |c| c.to_string());
        let mut null_is_unset = false;
        let mut modifier = first;
        match first {
            Some('}') => {
                return Ok(match self.lookup(&name) {
                    Some(v) => v,
                    None if self.opts.skip_unset_env => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            Some(':') => {
                null_is_unset = true;
                modifier = self.next();
                chs.push(modifier.unwrap_or('\u{fffd}'));
            }
            Some('/') => return self.process_replace(&name),
            Some('+') | Some('-') | Some('?') | Some('#') | Some('%') => {}
            _ => return Err(format!("unsupported modifier ({chs}) in substitution")),
        }
        let raw = matches!(modifier, Some('#') | Some('%'));
        if null_is_unset && raw {
            return Err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = self.lookup(&name);
        if self.opts.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let set = value.is_some();
        let value = value.unwrap_or_default();
        match modifier {
            Some('-') => Ok(if !set || (null_is_unset && value.is_empty()) {
                word
            } else {
                value
            }),
            Some('+') => Ok(if !set || (null_is_unset && value.is_empty()) {
                String::new()
            } else {
                word
            }),
            Some('?') => {
                if !set {
                    let m = if word.is_empty() {
                        "is not allowed to be unset".to_string()
                    } else {
                        word
                    };
                    return Err(format!("{name}: {m}"));
                }
                if null_is_unset && value.is_empty() {
                    let m = if word.is_empty() {
                        "is not allowed to be empty".to_string()
                    } else {
                        word
                    };
                    return Err(format!("{name}: {m}"));
                }
                Ok(value)
            }
            Some(c @ ('%' | '#')) => {
                let (pattern, greedy) = match word.strip_prefix(c) {
                    Some(rest) => (rest.to_string(), true),
                    None => (word, false),
                };
                if c == '%' {
                    trim_suffix(&pattern, &value, greedy)
                } else {
                    trim_prefix(&pattern, &value, greedy)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_replace(&mut self, name: &str) -> LexResult<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '/' in ${}".into());
                }
                return Err(e);
            }
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = match self.lookup(name) {
            Some(v) => v,
            None if self.opts.skip_unset_env => {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            None => String::new(),
        };
        let re = shell_pattern_to_regex(&pattern, true, false)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        if all {
            // Bound the result before building it: every match adds at most the replacement.
            let matches = re.find_iter(&value).count();
            if value.len() + matches.saturating_mul(replacement.len()) > MAX_EXPANSION {
                return Err(format!("variable expansion exceeds {MAX_EXPANSION} bytes"));
            }
            Ok(re
                .replace_all(&value, regex::NoExpand(&replacement))
                .into_owned())
        } else {
            Ok(match re.find(&value) {
                Some(m) => format!(
                    "{}{}{}",
                    &value[..m.start()],
                    replacement,
                    &value[m.end()..]
                ),
                None => value,
            })
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(c) = self.peek() {
                    if !c.is_numeric() {
                        break;
                    }
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !ch.is_numeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("PWD".into(), "/home".into()),
            ("FILE".into(), "archive.tar.gz".into()),
            ("EMPTY".into(), String::new()),
        ]
    }

    fn w(s: &str) -> Result<String, ExpandError> {
        Lexer::default().process_word(s, &env())
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${FILE%.*}").unwrap(), "archive.tar");
        assert_eq!(w("${FILE%%.*}").unwrap(), "archive");
        assert_eq!(w("${FILE#*.}").unwrap(), "tar.gz");
        assert_eq!(w("${FILE##*.}").unwrap(), "gz");
        assert_eq!(w("${FILE/a/A}").unwrap(), "Archive.tar.gz");
        assert_eq!(w("${FILE//a/A}").unwrap(), "Archive.tAr.gz");
        assert_eq!(w("${EMPTY-x}").unwrap(), "");
        assert_eq!(w("${EMPTY:-x}").unwrap(), "x");
        assert_eq!(w("${EMPTY+x}").unwrap(), "x");
        assert_eq!(w("${EMPTY:+x}").unwrap(), "");
        assert_eq!(
            w("${NOPE?}").unwrap_err().message,
            "NOPE: is not allowed to be unset"
        );
        assert_eq!(w("${EMPTY:?boom}").unwrap_err().message, "EMPTY: boom");
        assert!(w("${FILE:#x}").is_err());
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut o = LexOptions::new('\\');
        o.skip_unset_env = true;
        let (r, _) = o.process("$A ${B} ${C:-x} ${PWD}", &env()).unwrap();
        assert_eq!(r, "$A ${B} ${C:-x} /home");
    }

    #[test]
    fn raw_quotes_and_escapes() {
        let mut o = LexOptions::new('\\');
        o.raw_quotes = true;
        o.raw_escapes = true;
        let (r, words) = o.process(r#"a "b c" \d 'e'"#, &env()).unwrap();
        assert_eq!(r, r#"a "b c" \d 'e'"#);
        assert_eq!(words, vec!["a", "\"b c\"", "\\d", "'e'"]);
    }

    #[test]
    fn backtick_escape() {
        let l = Lexer::new('`');
        assert_eq!(l.process_word("a`$PWD b\\c", &env()).unwrap(), "a$PWD b\\c");
    }
}
