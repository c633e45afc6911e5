//! `${VAR#pattern}` / `${VAR%pattern}`: shell wildcard patterns and prefix/suffix removal, as
//! BuildKit's lexer does them.

/// Converts a shell wildcard pattern (`*`, `?`, `\` escapes; no bracket expressions) to a regex,
/// as BuildKit's `convertShellPatternToRegex`.
pub(super) fn shell_pattern_to_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let tok = chars[i];
        i += 1;
        match tok {
            '*' => {
                out.push_str(star);
                continue;
            }
            '?' => {
                out.push('.');
                continue;
            }
            '\\' => {
                // `}` and `/` are escaped inside ${}, but the escape is not part of the pattern.
                if matches!(chars.get(i), Some('}') | Some('/')) {
                    continue;
                }
                out.push('\\');
                match chars.get(i) {
                    Some(&c @ ('*' | '?' | '\\')) => {
                        i += 1;
                        out.push(c);
                    }
                    Some(&c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape '\\\u{fffd}'".into()),
                }
                continue;
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => out.push('\\'),
            _ => {}
        }
        out.push(tok);
    }
    regex::Regex::new(&out).map_err(|e| e.to_string())
}

pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = shell_pattern_to_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern without reversing its escapes (`a\*c` -> `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; p.len()];
    let last = p.len().saturating_sub(1);
    let mut i = 0;
    while i < p.len() {
        let out_idx = last - i;
        if p[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = p[i + 1];
            i += 2;
        } else {
            out[out_idx] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// Shortest/longest suffix removal: regexes find leftmost matches, so both the pattern and
/// the value are reversed to turn the suffix search into a prefix search (as BuildKit does).
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&rp, &rv, greedy)?;
    Ok(trimmed.chars().rev().collect())
}
