//! "did you mean X?" hints for misspelt instructions, flags and `--mount` keys, chosen as
//! BuildKit's frontend chooses them: the option nearest by Levenshtein distance, if under 3.

/// The option nearest to `val` (distance < 3), as written in `options`; None when `val` is
/// itself an option (BuildKit's `suggest.Search`).
pub fn nearest<'a>(
    val: &str,
    options: impl IntoIterator<Item = &'a str>,
    case_sensitive: bool,
) -> Option<&'a str> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let v = fold(val);
    let mut best = None;
    let mut min = 3;
    for opt in options {
        let o = fold(opt);
        if o == v {
            return None;
        }
        let d = strsim::levenshtein(&v, &o);
        if d < min {
            min = d;
            best = Some(opt);
        }
    }
    best
}

/// [`nearest`], in the case the user wrote when the match ignores case (upper for an
/// upper-case word, else lower).
pub fn search(val: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let o = nearest(val, options.iter().copied(), case_sensitive)?;
    Some(if case_sensitive {
        o.to_string()
    } else if val == val.to_uppercase() {
        o.to_uppercase()
    } else {
        o.to_lowercase()
    })
}

/// `message`, with ` (did you mean X?)` when an option is near `val`.
pub fn wrap(message: String, val: &str, options: &[&str], case_sensitive: bool) -> String {
    match search(val, options, case_sensitive) {
        Some(m) => format!("{message} (did you mean {m}?)"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_option_under_three_edits() {
        assert_eq!(
            search("FNTRYPOINT", &["ENTRYPOINT", "RUN"], false).as_deref(),
            Some("ENTRYPOINT")
        );
        assert_eq!(
            search("tmp", &["bind", "tmpfs"], true).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(search("zzzzzz", &["bind", "tmpfs"], true), None);
        assert_eq!(search("bind", &["bind", "bine"], true), None);
    }
}
