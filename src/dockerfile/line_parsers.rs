//! Per-instruction argument parsers: a port of BuildKit's `parser/line_parsers.go` and
//! `split_command.go`. They shape the arguments only; meaning is given by `instruction.rs`.

use super::node::{Node, NodeArg};

/// Parser state that the line parsers need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineCtx {
    pub escape: char,
}

/// A line parser's output: argument list and whether it was JSON.
pub(crate) type Parsed = (Vec<NodeArg>, bool);

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// BuildKit's `reWhitespace` class `[\t\v\f\r ]`.
fn is_ws_class(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, like `reWhitespace.Split(s, n)`.
pub(crate) fn split_ws(s: &str, n: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if n.is_some_and(|n| out.len() + 1 == n) {
            out.push(rest.to_string());
            return out;
        }
        match rest.find(is_ws_class) {
            Some(i) => {
                out.push(rest[..i].to_string());
                let after = &rest[i..];
                let skip = after.len() - after.trim_start_matches(is_ws_class).len();
                rest = &after[skip..];
            }
            None => {
                out.push(rest.to_string());
                return out;
            }
        }
    }
}

/// Splits a joined instruction line into (keyword, flags, rest-of-line).
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let parts = split_ws(line.trim(), Some(2));
    let cmd = parts.first().cloned().unwrap_or_default();
    let (args, flags) = match parts.get(1) {
        Some(rest) => extract_builder_flags(rest),
        None => (String::new(), Vec::new()),
    };
    (cmd, flags, args.trim().to_string())
}

/// Takes the leading `--flag[=value]` words off a line; `--` ends the flags.
/// Quotes and `\` are processed inside flag words (always `\`, as BuildKit does).
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let (pos, ch) = if at_end { (line.len(), '\0') } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_is_dash = chars.get(i + 1).is_some_and(|&(_, c)| c == '-');
            if ch != '-' || !next_is_dash {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[pos..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            if ch == '\\' {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                i += 1;
                word.push(chars[i].1);
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // in quotes
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        if ch == '\\' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            word.push(chars[i].1);
            i += 1;
            continue;
        }
        word.push(ch);
        i += 1;
    }
    (String::new(), words)
}

/// Dispatches on the lower-cased keyword. Unknown keywords parse (as BuildKit's
/// `parseIgnore`, one empty argument) and are rejected by the instruction layer.
pub(crate) fn parse_args(
    cmd: &str,
    rest: &str,
    ctx: LineCtx,
    sub: &dyn Fn(&str) -> Result<Node, String>,
) -> Result<Parsed, String> {
    match cmd {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(rest),
        "arg" => Ok((words_of(parse_words(rest, ctx.escape)), false)),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(rest),
        "env" => parse_name_val(rest, "ENV", ctx),
        "label" => parse_name_val(rest, "LABEL", ctx),
        "expose" | "from" => Ok((parse_strings_ws(rest), false)),
        "healthcheck" => parse_health_config(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" => Ok((parse_string(rest), false)),
        "onbuild" => {
            if rest.is_empty() {
                return Ok((Vec::new(), false));
            }
            let child = sub(rest)?;
            Ok((vec![NodeArg::Sub(Box::new(child))], false))
        }
        _ => Ok((vec![NodeArg::Word(String::new())], false)),
    }
}

fn words_of(v: Vec<String>) -> Vec<NodeArg> {
    v.into_iter().map(NodeArg::Word).collect()
}

/// Splits into words on whitespace, keeping quotes and escapes (they are processed later by
/// the expansion lexer).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let mut ch = if at_end { '\0' } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            // Also inside an unterminated quote: the partial word is kept.
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// ENV/LABEL: `key value` (legacy, one pair) or `k=v k2=v2`; emits (key, value, separator)
/// triples where the separator is `=` or empty for the legacy form.
fn parse_name_val(rest: &str, key: &str, ctx: LineCtx) -> Result<Parsed, String> {
    let words = parse_words(rest, ctx.escape);
    if words.is_empty() {
        return Ok((Vec::new(), false));
    }
    if !words[0].contains('=') {
        let parts = split_ws(rest, Some(2));
        if parts.len() < 2 {
            return Err(format!("{key} must have two arguments"));
        }
        return Ok((
            words_of(vec![parts[0].clone(), parts[1].clone(), String::new()]),
            false,
        ));
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                super::node::go_quote(&w)
            ));
        };
        out.push(NodeArg::Word(k.to_string()));
        out.push(NodeArg::Word(v.to_string()));
        out.push(NodeArg::Word("=".to_string()));
    }
    Ok((out, false))
}

fn parse_strings_ws(rest: &str) -> Vec<NodeArg> {
    if rest.is_empty() {
        return Vec::new();
    }
    words_of(split_ws(rest, None))
}

fn parse_string(rest: &str) -> Vec<NodeArg> {
    if rest.is_empty() {
        return Vec::new();
    }
    vec![NodeArg::Word(rest.to_string())]
}

enum JsonErr {
    NotArray,
    NotStrings,
}

fn parse_json(rest: &str) -> Result<Vec<String>, JsonErr> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonErr::NotArray);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| JsonErr::NotArray)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(JsonErr::NotStrings),
        })
        .collect()
}

fn parse_maybe_json(rest: &str) -> Result<Parsed, String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest) {
        Ok(v) => Ok((words_of(v), true)),
        Err(JsonErr::NotStrings) => Err(NOT_STRING_ARRAY.into()),
        Err(JsonErr::NotArray) => Ok((vec![NodeArg::Word(rest.to_string())], false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Result<Parsed, String> {
    match parse_json(rest) {
        Ok(v) => Ok((words_of(v), true)),
        Err(JsonErr::NotStrings) => Err(NOT_STRING_ARRAY.into()),
        Err(JsonErr::NotArray) => Ok((parse_strings_ws(rest), false)),
    }
}

/// HEALTHCHECK: a type word (CMD/NONE/…) then a command like RUN's.
fn parse_health_config(rest: &str) -> Result<Parsed, String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let after = rest[sep..].trim_start();
    let (mut cmd, json) = parse_maybe_json(after)?;
    let mut out = vec![NodeArg::Word(typ.to_string())];
    out.append(&mut cmd);
    Ok((out, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_split() {
        let (c, f, a) = split_command("COPY --from=a --chown=\"x y\" -- src dst");
        assert_eq!(c, "COPY");
        assert_eq!(f, vec!["--from=a", "--chown=x y"]);
        assert_eq!(a, "src dst");
        let (_, f, a) = split_command("RUN -x");
        assert!(f.is_empty());
        assert_eq!(a, "-x");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e"#, '\\'),
            vec![r#"a="b c""#, r"d\ e"]
        );
    }
}
