//! `.dockerignore`: moby `ignorefile.ReadAll` and `patternmatcher` semantics, written with `regex`.
//!
//! No crate implements Docker's rules (`globset`/`ignore` differ on `[!x]`, `dir/`, `**`, and
//! gitignore depth rules), so the moby algorithm is followed here case by case, including its
//! exact/prefix/suffix shortcuts, which are observable (`**file` matches `xfile`).

use super::filepath_match;
use super::path_clean::clean;
use regex::Regex;

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("invalid pattern {pattern:?}: syntax error in pattern")]
    Syntax { pattern: String },
}

/// How one pattern is matched (moby `matchType`).
#[derive(Debug)]
enum Kind {
    Exact,
    /// `dir/**`: everything below `dir/` (stored without the trailing `**`).
    Prefix(String),
    /// `**/foo` / `**foo`: stored without the leading `**`.
    Suffix(String),
    Regexp(Regex),
}

#[derive(Debug)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix
                        .strip_prefix('/')
                        .is_some_and(|rest| !suffix.is_empty() && path == rest)
            }
            Kind::Regexp(re) => re.is_match(path),
        }
    }
}

/// Docker's ordered pattern list; the last matching pattern wins, `!` re-includes.
#[derive(Debug, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compiles `patterns` as moby `patternmatcher.New` does (trim, skip empty, clean, `!`).
    pub fn new(patterns: &[String]) -> Result<PatternMatcher, PatternError> {
        let mut out = PatternMatcher::default();
        for raw in patterns {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut p = clean(trimmed);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(PatternError::LoneExclamation);
                }
                exclusion = true;
                out.exclusions = true;
                p = rest.to_string();
            }
            filepath_match::validate(&p)
                .map_err(|_| PatternError::Syntax { pattern: p.clone() })?;
            let kind = compile(&p).ok_or_else(|| PatternError::Syntax { pattern: p.clone() })?;
            out.patterns.push(Pattern {
                cleaned: p,
                exclusion,
                kind,
            });
        }
        Ok(out)
    }

    /// True when some pattern is an exception (`!`): excluded directories must then still be
    /// walked, because something inside may be re-included.
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// moby `MatchesOrParentMatches`: `path` (slash-separated, clean, relative to the context
    /// root) is excluded if the last pattern matching it or one of its parent directories is not
    /// an exception. The `Result` mirrors moby's API; compiled patterns cannot fail here.
    pub fn matches(&self, path: &str) -> Result<bool, PatternError> {
        let path = clean(path);
        if path == "." {
            // Docker never lets the context root itself be excluded.
            return Ok(false);
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change an already-matched path, nor an exception an unmatched one.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&path);
            if !hit {
                for i in 0..parents.len() {
                    if pattern.matches(&parents[..=i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }
}

/// Translates one cleaned pattern (moby `Pattern.compile`). `None` if the regex is invalid.
fn compile(pattern: &str) -> Option<Kind> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut pos = 0;
    let mut in_class = false;
    let mut i = 0; // iteration count, as moby's `i` (a `**` is one iteration)
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if in_class {
            // Inside [...] Go's Match takes every rune literally (but `\` escapes and `]` ends the
            // class). Rust's regex gives `[`, `&`, `~`, `-` set-operation meanings, so escape them.
            match ch {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' => {
                    re.push('\\');
                    if let Some(&next) = chars.get(pos) {
                        re.push(next);
                        pos += 1;
                    }
                }
                '[' | '&' | '~' | '*' | '?' | '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                    re.push('\\');
                    re.push(ch);
                }
                '-' if chars.get(pos) == Some(&'-') => re.push_str("\\-"),
                other => re.push(other),
            }
            i += 1;
            continue;
        }
        match ch {
            '*' => {
                if chars.get(pos) == Some(&'*') {
                    pos += 1;
                    // Treat `**/` as `**`.
                    if chars.get(pos) == Some(&'/') {
                        pos += 1;
                    }
                    if pos >= chars.len() {
                        // Trailing `**` matches everything below, as in .gitignore.
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            re.push_str(".*");
                            detected = Detected::Regexp;
                        }
                    } else {
                        // Any number of path components, including none.
                        re.push_str("(.*/)?");
                        detected = Detected::Regexp;
                    }
                    if i == 0 {
                        detected = Detected::Suffix;
                    }
                } else {
                    re.push_str("[^/]*");
                    detected = Detected::Regexp;
                }
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regexp;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                if let Some(&next) = chars.get(pos) {
                    pos += 1;
                    re.push('\\');
                    re.push(next);
                    detected = Detected::Regexp;
                } else {
                    re.push_str("\\\\");
                }
            }
            '[' => {
                in_class = true;
                re.push('[');
                detected = Detected::Regexp;
                // A leading `^` is negation in both Go's Match and the regex.
                if chars.get(pos) == Some(&'^') {
                    re.push('^');
                    pos += 1;
                }
            }
            ']' => {
                re.push(']');
                detected = Detected::Regexp;
            }
            other => re.push(other),
        }
        i += 1;
    }
    Some(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        Detected::Suffix => Kind::Suffix(pattern[2..].to_string()),
        Detected::Regexp => {
            re.push('$');
            Kind::Regexp(Regex::new(&re).ok()?)
        }
    })
}

/// moby `ignorefile.ReadAll`: the patterns of a `.dockerignore` text.
///
/// A UTF-8 BOM is stripped; lines starting with `#` in column 1 are comments; lines are trimmed;
/// `!` exceptions are kept; each pattern is cleaned and a leading `/` dropped.
pub fn read_ignore_file(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.split('\n') {
        // bufio.ScanLines drops one trailing \r.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        out.push(if invert {
            format!("!{cleaned}")
        } else {
            cleaned
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(patterns: &[&str]) -> PatternMatcher {
        let v: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        PatternMatcher::new(&v).unwrap()
    }

    #[test]
    fn moby_matches_table() {
        // moby/patternmatcher patternmatcher_test.go TestMatches (exact and inexact both match
        // under MatchesOrParentMatches).
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\\\", "a\\", true),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(
                pm(&[pattern]).matches(path).unwrap(),
                *want,
                "pattern={pattern:?} path={path:?}"
            );
        }
    }

    #[test]
    fn moby_multi_pattern_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(
                pm(patterns).matches(path).unwrap(),
                *want,
                "{patterns:?} {path:?}"
            );
        }
    }

    #[test]
    fn moby_simple_cases() {
        assert!(pm(&["*"]).matches("fileutils.go").unwrap());
        assert!(pm(&["*.go"]).matches("fileutils.go").unwrap());
        assert!(pm(&["!fileutils.go", "*.go"])
            .matches("fileutils.go")
            .unwrap());
        assert!(!pm(&["docs", "!docs/README.md"])
            .matches("docs/README.md")
            .unwrap());
        assert!(!pm(&["docs/", "!docs/README.md"])
            .matches("docs/README.md")
            .unwrap());
        assert!(!pm(&["docs/*", "!docs/README.md"])
            .matches("docs/README.md")
            .unwrap());
        assert!(!pm(&["*.go", "!fileutils.go"])
            .matches("fileutils.go")
            .unwrap());
        assert!(!pm(&["*.go"]).matches(".").unwrap());
        assert!(!pm(&[]).matches("/any/path/there").unwrap());
        assert!(pm(&["docs", "  !docs/README.md"]).exclusions());
        assert!(pm(&["docs", "!docs/README.md  "]).exclusions());
        // The documented README example: last matching line wins.
        let m = pm(&["*.md", "!README*.md", "README-secret.md"]);
        assert!(m.matches("README-secret.md").unwrap());
        assert!(!m.matches("README.md").unwrap());
        let m = pm(&["*.md", "README-secret.md", "!README*.md"]);
        assert!(!m.matches("README-secret.md").unwrap());
        // Root-anchored, not at any depth (unlike .gitignore).
        assert!(!pm(&["*.md"]).matches("docs/a.md").unwrap());
        assert!(pm(&["node_modules"])
            .matches("node_modules/x/y.js")
            .unwrap());
        // `[!a]` is a class containing `!` and `a` in Go, not a negation.
        assert!(pm(&["[!a]"]).matches("!").unwrap());
        assert!(!pm(&["[!a]"]).matches("b").unwrap());
        assert!(pm(&["[*]"]).matches("*").unwrap());
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(matches!(
            PatternMatcher::new(&["!".to_string()]),
            Err(PatternError::LoneExclamation)
        ));
        assert!(PatternMatcher::new(&["[".to_string()]).is_err());
        assert!(PatternMatcher::new(&["a[".to_string()]).is_err());
        assert!(PatternMatcher::new(&["[]a]".to_string()]).is_err());
        assert!(PatternMatcher::new(&["\\".to_string()]).is_err());
    }

    #[test]
    fn moby_read_all() {
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        assert_eq!(
            read_ignore_file(content),
            vec![
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "!",
                "!"
            ]
        );
    }

    #[test]
    fn read_all_details() {
        // BOM, CRLF, indented '#' is not a comment, cleaning, `/` alone stays.
        let text = "\u{feff}# c\r\n  #x\r\n./foo/../bar/\r\n/\r\n";
        assert_eq!(read_ignore_file(text), vec!["#x", "bar", "/"]);
    }
}
