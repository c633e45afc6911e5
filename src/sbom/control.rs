//! deb822-style paragraphs ("Field: value", continuation lines start with a space or tab,
//! paragraphs separated by blank lines): dpkg's status database, DEP-5 copyright files, and the
//! email-header part of Python's METADATA/PKG-INFO.

/// One paragraph: its fields in order (names as written) and the 1-based line it starts on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Paragraph {
    pub line: usize,
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The first value of `name` (field names compare case-insensitively, as dpkg does).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order (METADATA repeats `Classifier:`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is neither a field, a continuation nor blank.
#[derive(Debug)]
pub(crate) struct BadLine {
    pub line: usize,
    pub text: String,
}

/// Parses every paragraph of `text`. Comment lines (`#`) are skipped, as dpkg does.
pub(crate) fn parse(text: &str) -> Result<Vec<Paragraph>, BadLine> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = cur.fields.last_mut() else {
                return Err(BadLine {
                    line: lineno,
                    text: line.to_owned(),
                });
            };
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(BadLine {
                line: lineno,
                text: line.to_owned(),
            });
        };
        if cur.fields.is_empty() {
            cur.line = lineno;
        }
        cur.fields
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// The header block of an email-style file (METADATA, PKG-INFO): the fields up to the first
/// blank line (the body after it is the long description). Lenient: a line that is not a field
/// ends the headers.
pub(crate) fn parse_headers(text: &str) -> Paragraph {
    let mut cur = Paragraph {
        line: 1,
        fields: Vec::new(),
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = cur.fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            break;
        };
        cur.fields
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let t = "Package: a\nDescription: one\n two\n .\n\n\n# c\nPackage: b\nVersion: 1\n";
        let p = parse(t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("package"), Some("a"));
        assert_eq!(p[0].get("Description"), Some("one\ntwo\n."));
        assert_eq!(p[1].line, 8);
        assert_eq!(p[1].get("Version"), Some("1"));
    }

    #[test]
    fn a_line_without_colon_is_an_error_with_its_number() {
        let e = parse("Package: a\nbroken\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.text, "broken");
        assert_eq!(parse(" leading\n").unwrap_err().line, 1);
    }

    #[test]
    fn headers_stop_at_the_body() {
        let h = parse_headers("Name: x\nClassifier: a\nClassifier: b\n\nName: body\n");
        assert_eq!(h.get("name"), Some("x"));
        assert_eq!(h.all("Classifier").collect::<Vec<_>>(), ["a", "b"]);
    }
}
