//! Archive names as the applier reads them: lexically cleaned into components, never above
//! the root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Lexically cleans an archive name into components: `""`/`.` dropped, `..` pops, a leading
/// `/` ignored. `None` if `..` climbs above the root; `Some(None)` if it is the root itself.
#[allow(clippy::option_option)]
pub(super) fn clean(name: &[u8]) -> Option<Option<Vec<Vec<u8>>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for comp in name.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(if out.is_empty() { None } else { Some(out) })
}

/// Components -> a relative path for pathrs (`.` for the root).
pub(super) fn join(comps: &[Vec<u8>]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    PathBuf::from(OsStr::from_bytes(&comps.join(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        let c = |s: &str| clean(s.as_bytes());
        let v = |parts: &[&str]| Some(Some(parts.iter().map(|p| p.as_bytes().to_vec()).collect()));
        assert_eq!(c("a/b"), v(&["a", "b"]));
        assert_eq!(c("/etc/passwd"), v(&["etc", "passwd"]));
        assert_eq!(c("./a/./b/"), v(&["a", "b"]));
        assert_eq!(c("a/../b"), v(&["b"]));
        assert_eq!(c("../x"), None);
        assert_eq!(c("a/../../x"), None);
        assert_eq!(c("."), Some(None));
        assert_eq!(c("/"), Some(None));
        assert_eq!(c(""), Some(None));
    }
}
