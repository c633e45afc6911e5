//! Subordinate id ranges from `/etc/subuid` and `/etc/subgid` (shadow-utils' format:
//! `name_or_uid:start:count` per line).

use std::path::Path;

/// One `start:count` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The first range of `name` (or of numeric `id`) in `text`, as newuidmap reads it.
pub fn find(text: &str, name: &str, id: u32) -> Option<Range> {
    let id = id.to_string();
    text.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let mut parts = line.split(':');
        let owner = parts.next()?;
        let start = parts.next()?.trim().parse().ok()?;
        let count = parts.next()?.trim().parse().ok()?;
        ((owner == name || owner == id) && count > 0).then_some(Range { start, count })
    })
}

/// [`find`] in the file at `path`; a missing file has no ranges.
pub fn find_in_file(path: &Path, name: &str, id: u32) -> std::io::Result<Option<Range>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(find(&text, name, id)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_or_uid() {
        let text = "# comment\nalice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(
            find(text, "alice", 1000),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            find(text, "carol", 1001),
            Some(Range {
                start: 200000,
                count: 1000
            })
        );
        // A zero-sized range is no range.
        assert_eq!(find(text, "bob", 1002), None);
        assert_eq!(find("garbage\n", "x", 1), None);
    }
}
