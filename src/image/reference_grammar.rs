//! The reference grammar of Docker's `distribution/reference` (`regexp.go`) as hand-written
//! matchers: compiling the equivalent regexes cost most of a no-op rebuild's CPU (issue 21).
//! The unit tests check each matcher against the regex it replaces.

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`.
fn path_component(c: &[u8]) -> bool {
    let mut i = 0;
    loop {
        let start = i;
        while i < c.len() && is_lower_alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == c.len() {
            return true;
        }
        let sep = i;
        while i < c.len() && !is_lower_alnum(c[i]) {
            i += 1;
        }
        match &c[sep..i] {
            b"." | b"_" | b"__" => {}
            s if s.iter().all(|&b| b == b'-') => {}
            _ => return false,
        }
    }
}

/// A repository path: components separated by `/`.
pub(crate) fn is_path(s: &str) -> bool {
    s.as_bytes().split(|&b| b == b'/').all(path_component)
}

/// One domain component: `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn domain_component(c: &[u8]) -> bool {
    match (c.first(), c.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && c.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// A registry domain: dotted host components or a bracketed IPv6 address, then `:port`.
pub(crate) fn is_domain(s: &str) -> bool {
    let b = s.as_bytes();
    let (host_ok, rest) = if let Some(inner) = b.strip_prefix(b"[") {
        match inner.iter().position(|&c| c == b']') {
            Some(end) => (
                end > 0
                    && inner[..end]
                        .iter()
                        .all(|c| c.is_ascii_hexdigit() || *c == b':'),
                &inner[end + 1..],
            ),
            None => return false,
        }
    } else {
        let end = b.iter().position(|&c| c == b':').unwrap_or(b.len());
        (
            b[..end].split(|&c| c == b'.').all(domain_component),
            &b[end..],
        )
    };
    host_ok
        && match rest.strip_prefix(b":") {
            None => rest.is_empty(),
            Some(port) => !port.is_empty() && port.iter().all(u8::is_ascii_digit),
        }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A tag: `[\w][\w.-]{0,127}` with Go's (ASCII) `\w`.
pub(crate) fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            is_word(*first)
                && rest.len() <= 127
                && rest.iter().all(|&c| is_word(c) || c == b'.' || c == b'-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn regexes() -> (Regex, Regex, Regex) {
        let comp = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let path = Regex::new(&format!("^{comp}(?:/{comp})*$")).expect("regex");
        let dcomp = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = Regex::new(&format!(
            r"^(?:{dcomp}(?:\.{dcomp})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
        ))
        .expect("regex");
        let tag = Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("regex");
        (path, domain, tag)
    }

    /// Every string up to length 4 over an alphabet that exercises each rule, plus samples.
    fn inputs() -> Vec<String> {
        let alphabet = ['a', 'Z', '0', '.', '_', '-', '/', ':', '[', ']', 'f', 'é'];
        let mut all = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for c in alphabet {
                    next.push(format!("{s}{c}"));
                }
            }
            all.extend(next.iter().cloned());
            frontier = next;
        }
        all.extend(
            [
                "library/alpine",
                "a__b/c---d",
                "a___b",
                "localhost:5000",
                "[::1]:5000",
                "[]:1",
                "my-registry.example.com:443",
                "-a.b",
                "a-.b",
                "a..b",
                "v1.2.3-rc_1",
                ".tag",
            ]
            .map(String::from),
        );
        all.push("t".repeat(128));
        all.push("t".repeat(129));
        all
    }

    #[test]
    fn matchers_agree_with_the_regexes_they_replace() {
        let (path, domain, tag) = regexes();
        for s in inputs() {
            assert_eq!(is_path(&s), path.is_match(&s), "path {s:?}");
            assert_eq!(is_domain(&s), domain.is_match(&s), "domain {s:?}");
            assert_eq!(is_tag(&s), tag.is_match(&s), "tag {s:?}");
        }
    }
}
