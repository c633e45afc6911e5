//! Hand-written matchers for the three line patterns of BuildKit's parser (`parser.go`:
//! line continuation, parser directive, heredoc opener): compiling them as regexes cost most of
//! a no-op rebuild's CPU (issue 21). The unit tests check each against the regex it replaces.

/// `[ \t]*$` trimmed.
fn trim_blank_end(s: &str) -> &str {
    s.trim_end_matches([' ', '\t'])
}

/// The continuation rule `([^E])E[ \t]*$|^E[ \t]*$` for escape token `E`: when the escape token
/// is the line's last non-blank character and is not itself escaped, the line without it (and
/// without the blanks after it); `None` when the line does not continue.
pub(crate) fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let before = trim_blank_end(line).strip_suffix(escape)?;
    match before.chars().next_back() {
        None => Some(before),
        Some(c) if c != escape => Some(before),
        Some(_) => None,
    }
}

fn is_directive_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// The directive rule `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (`\s` = `[\t\n\f\r ]`):
/// (key, value).
pub(crate) fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line
        .strip_prefix('#')?
        .trim_start_matches(is_directive_space);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let after_eq = rest
        .trim_start_matches(is_directive_space)
        .strip_prefix('=')?;
    let value = after_eq
        .trim_start_matches(is_directive_space)
        .trim_end_matches(is_directive_space);
    // `.+?` needs one character: with only blanks after `=` the regex backtracks and takes the
    // last blank that is not a newline as the value.
    let value = if value.is_empty() {
        let (i, c) = after_eq.char_indices().rev().find(|&(_, c)| c != '\n')?;
        &after_eq[i..i + c.len_utf8()]
    } else {
        value
    };
    // `.` does not match a newline.
    (!value.contains('\n')).then_some((key, value))
}

/// The heredoc opener `^([0-9]*)<<(-?)([^<]*)$`: (file descriptor digits, chomp, rest).
pub(crate) fn heredoc_opener(word: &str) -> Option<(&str, bool, &str)> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd, rest) = word.split_at(digits);
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    (!rest.contains('<')).then_some((fd, chomp, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// Every string up to length `n` over `alphabet`.
    fn strings(alphabet: &[char], n: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..n {
            let next: Vec<String> = frontier
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(next.iter().cloned());
            frontier = next;
        }
        all
    }

    #[test]
    fn continuation_agrees_with_the_regex() {
        for escape in ['\\', '`'] {
            let e = regex::escape(&escape.to_string());
            let re = Regex::new(&format!(r"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")).expect("regex");
            for s in strings(&['a', ' ', '\t', '\\', '`', 'é'], 5) {
                let want = re
                    .is_match(&s)
                    .then(|| re.replace_all(&s, "$1").into_owned());
                let got = strip_continuation(&s, escape).map(str::to_string);
                assert_eq!(got, want, "{s:?} escape {escape:?}");
            }
        }
    }

    #[test]
    fn directive_agrees_with_the_regex() {
        let re = Regex::new(
            r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$",
        )
        .expect("regex");
        let mut inputs: Vec<String> = strings(&['#', 'a', '1', '=', ' ', '\n', 'x'], 6);
        inputs.extend(
            [
                "# escape=`",
                "#syntax = docker/dockerfile:1  ",
                "# check=skip=all;error=true",
                "#\tEscApe\t=\t\\\t",
                "# é=1",
                "# a=é ",
            ]
            .map(String::from),
        );
        for s in inputs {
            let want = re.captures(&s).map(|m| {
                let g = |i| m.get(i).map_or("", |x| x.as_str()).to_string();
                (g(1), g(2))
            });
            let got = directive(&s).map(|(k, v)| (k.to_string(), v.to_string()));
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn heredoc_opener_agrees_with_the_regex() {
        let re = Regex::new(r"^([0-9]*)<<(-?)([^<]*)$").expect("regex");
        for s in strings(&['1', '<', '-', 'E', '"'], 6) {
            let want = re
                .captures(&s)
                .map(|m| (m[1].to_string(), &m[2] == "-", m[3].to_string()));
            let got = heredoc_opener(&s).map(|(a, b, c)| (a.to_string(), b, c.to_string()));
            assert_eq!(got, want, "{s:?}");
        }
    }
}
