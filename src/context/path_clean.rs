//! Go's `path.Clean` (Unix flavour), which Docker and BuildKit apply to .dockerignore patterns and
//! COPY/ADD paths. Rust's `Path::components` does not collapse `..`, so this is written out here.

/// Lexically cleans `p` exactly as Go's `path.Clean`: collapses `//`, drops `.`, resolves `..`
/// against the preceding element (never above `/` for rooted paths), and returns `.` for empty.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|last| *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Cleans `p` as a path inside a root: `..` can never climb above the root, so `../x` is `/x`.
/// This is how BuildKit normalises COPY sources (`system.NormalizePath("/", src)`).
pub fn clean_in_root(p: &str) -> String {
    clean(&format!("/{p}"))
}

/// The relative form of [`clean_in_root`]: `""` for the root itself, `a/b` otherwise.
pub fn rel_in_root(p: &str) -> String {
    clean_in_root(p).trim_start_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_path_clean_table() {
        // Cases from Go's path/path_test.go cleantests.
        let cases = [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn in_root_clamps_dotdot() {
        assert_eq!(clean_in_root("../x"), "/x");
        assert_eq!(clean_in_root("../../a/../b/"), "/b");
        assert_eq!(rel_in_root("."), "");
        assert_eq!(rel_in_root("./a//b/"), "a/b");
    }
}
