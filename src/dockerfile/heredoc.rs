//! Heredoc recognition (`<<EOF`, `<<-EOF`, `<<'EOF'`, `3<<EOF`), anywhere on a RUN/COPY/ADD
//! line, as BuildKit's `heredocsFromLine` / `ParseHeredoc`.

use super::node::NodeHeredoc;
use super::shell::LexOptions;

/// Parses one word as a heredoc opener. `Ok(None)`: not a heredoc; `Err`: a malformed one
/// (unbalanced quotes in the delimiter).
pub fn parse_heredoc(word: &str) -> Result<Option<NodeHeredoc>, String> {
    let Some((fd, chomp, rest)) = super::line_match::heredoc_opener(word) else {
        return Ok(None);
    };
    let fd = fd.parse::<u32>().unwrap_or(0);
    if rest.is_empty() {
        return Ok(None);
    }
    let empty: Vec<(String, String)> = Vec::new();
    let mut lex = LexOptions::new('\\');
    lex.skip_unset_env = true;
    // Lex the delimiter with and without quote removal: if the quote counts differ, part of
    // it was quoted and the body must not be expanded.
    let (_, words) = lex.process(rest, &empty).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let (_, raw_words) = lex.process(rest, &empty).map_err(|e| e.to_string())?;
    if raw_words.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let count = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words[0].clone();
    let expand = count(&name) == count(&raw_words[0]);
    Ok(Some(NodeHeredoc {
        name,
        file_descriptor: fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// All heredoc openers of a joined instruction line, in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<NodeHeredoc>, String> {
    let mut lex = LexOptions::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let empty: Vec<(String, String)> = Vec::new();
    // A line that does not lex has no heredocs (BuildKit ignores the error here).
    let words = lex
        .process(line, &empty)
        .map(|(_, w)| w)
        .unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Removes leading tabs from every line (`<<-`).
pub fn chomp_heredoc_content(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_like_buildkit() {
        for s in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
        ] {
            assert_eq!(parse_heredoc(s).unwrap().unwrap().name, "EOF", "{s}");
        }
        for s in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(s).is_err(), "{s}");
        }
        for s in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF"] {
            assert_eq!(parse_heredoc(s).unwrap(), None, "{s}");
        }
        assert!(!parse_heredoc("<<'EOF'").unwrap().unwrap().expand);
        assert!(!parse_heredoc("<<E\"O\"F").unwrap().unwrap().expand);
        assert_eq!(parse_heredoc("3<<EOF").unwrap().unwrap().file_descriptor, 3);
    }

    #[test]
    fn from_line() {
        let names = |l: &str| -> Vec<String> {
            heredocs_from_line(l)
                .unwrap()
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF <<EOF2"), vec!["EOF", "EOF2"]);
        assert_eq!(names("RUN cat <<EOF > /f"), vec!["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert_eq!(
            chomp_heredoc_content("\thello\n\t\tworld\n"),
            "hello\nworld\n"
        );
    }
}
