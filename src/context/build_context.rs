//! The build context: a directory (or a tar from stdin extracted into one) plus its ignore rules.
//!
//! Ignore file selection follows BuildKit (`frontend/dockerui/config.go`): `<Dockerfile>.dockerignore`
//! next to the Dockerfile wins over `<context>/.dockerignore`. Ignored paths are invisible to
//! COPY/ADD (as if never sent), though the Dockerfile and ignore file themselves are read anyway.

use super::error::ContextError;
use super::ignore::{read_ignore_file, PatternMatcher};
use super::path_clean::rel_in_root;
use pathrs::flags::OpenFlags;
use pathrs::Root;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Ignore files are small text; a cap keeps a hostile context from exhausting memory.
const MAX_IGNORE_FILE: u64 = 16 << 20;

pub struct Context {
    root: PathBuf,
    ignore: PatternMatcher,
    /// Which ignore file was used, if any (for messages and cache keys).
    ignore_file: Option<PathBuf>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("root", &self.root)
            .field("ignore_file", &self.ignore_file)
            .finish()
    }
}

impl Context {
    /// Opens the context directory `dir`; `dockerfile` is the Dockerfile's path (its
    /// `<name>.dockerignore` sibling takes precedence over `<dir>/.dockerignore`).
    pub fn open(dir: &Path, dockerfile: &Path) -> Result<Context, ContextError> {
        let root = std::fs::canonicalize(dir).map_err(|e| ContextError::io(dir, e))?;
        if !root.is_dir() {
            return Err(ContextError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "build context is not a directory",
                ),
            ));
        }
        let mut specific = dockerfile.as_os_str().to_owned();
        specific.push(".dockerignore");
        let specific = PathBuf::from(specific);
        let (text, file) = if specific.is_file() {
            let text = read_capped(std::fs::File::open(&specific), &specific)?;
            (Some(text), Some(specific))
        } else {
            // Read inside the context so a `.dockerignore` symlink cannot pull in a host file.
            let r = Root::open(&root)
                .map_err(|e| ContextError::in_root(root.display().to_string(), e))?;
            match r.open_subpath(".dockerignore", OpenFlags::O_RDONLY) {
                Ok(f) => {
                    let p = root.join(".dockerignore");
                    (Some(read_capped(Ok(f), &p)?), Some(p))
                }
                Err(_) => (None, None),
            }
        };
        let patterns = text.as_deref().map(read_ignore_file).unwrap_or_default();
        let ignore =
            PatternMatcher::new(&patterns).map_err(|source| ContextError::IgnorePattern {
                file: file.clone().unwrap_or_default(),
                source,
            })?;
        Ok(Context {
            root,
            ignore,
            ignore_file: file,
        })
    }

    /// Builds a context from a tar stream (`docker build -`): plain or gzip/bzip2/xz/zstd
    /// compressed, extracted safely into `scratch` (which must exist). Uses `scratch/Dockerfile`
    /// for the Dockerfile-specific ignore file.
    pub fn from_tar(reader: impl Read, scratch: &Path) -> Result<Context, ContextError> {
        std::fs::create_dir_all(scratch).map_err(|e| ContextError::io(scratch, e))?;
        super::stdin_tar::extract_context_tar(reader, scratch)?;
        Context::open(scratch, &scratch.join("Dockerfile"))
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    pub fn matcher(&self) -> &PatternMatcher {
        &self.ignore
    }

    /// Whether `rel` (relative to the context root) is excluded by the ignore file. A directory
    /// reported as ignored may still contain re-included (`!`) entries.
    pub fn is_ignored(&self, rel: &str) -> bool {
        let rel = rel_in_root(rel);
        !rel.is_empty() && self.ignore.matches(&rel).unwrap_or(false)
    }
}

fn read_capped(file: std::io::Result<std::fs::File>, path: &Path) -> Result<String, ContextError> {
    let mut text = String::new();
    file.and_then(|f| f.take(MAX_IGNORE_FILE).read_to_string(&mut text))
        .map_err(|e| ContextError::io(path, e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::create_dir(t.path().join("docker")).unwrap();
        let df = t.path().join("docker/build.Dockerfile");
        std::fs::write(&df, "FROM scratch\n").unwrap();
        let c = Context::open(t.path(), &t.path().join("Dockerfile")).unwrap();
        assert!(c.is_ignored("a"));
        assert!(!c.is_ignored("b"));
        std::fs::write(t.path().join("docker/build.Dockerfile.dockerignore"), "b\n").unwrap();
        let c = Context::open(t.path(), &df).unwrap();
        assert!(!c.is_ignored("a"));
        assert!(c.is_ignored("b/c"));
        assert!(!c.is_ignored("."));
    }

    #[test]
    fn ignore_symlink_to_host_is_not_followed_out() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("ign"), "secret\n").unwrap();
        std::os::unix::fs::symlink(host.path().join("ign"), t.path().join(".dockerignore"))
            .unwrap();
        let c = Context::open(t.path(), &t.path().join("Dockerfile")).unwrap();
        assert!(!c.is_ignored("secret"));
    }

    #[test]
    fn bad_pattern_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(".dockerignore"), "[\n").unwrap();
        let e = Context::open(t.path(), &t.path().join("Dockerfile")).unwrap_err();
        assert!(e.to_string().contains(".dockerignore"), "{e}");
    }
}
