//! The digest of a build context: what `rbuild verify` compares a given context against.
//!
//! It covers every entry the build could read (the `.dockerignore`d ones and a top-level `.git`
//! left out): its path, type, permission bits, and content (a file's sha256, a symlink's target).
//! Not mtimes, owners or xattrs: a fresh checkout or copy of the same sources has the same digest
//! (docs/provenance.md "Context digest").

use super::AttestError;
use crate::context::Context;
use crate::digest::{Digest, HashingWriter};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

/// `sha256:` of the sorted listing of the context's entries.
pub fn context_digest(ctx: &Context) -> Result<Digest, AttestError> {
    let root = ctx.root();
    let mut listing = HashingWriter::new(std::io::sink());
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            AttestError::Io {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk")),
            }
        })?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|_| AttestError::Format(format!("{} is outside the context", path.display())))?
            .to_string_lossy()
            .to_string();
        // `.git` is the checkout's bookkeeping (index stat data, packs, logs), different in every
        // clone of the same commit; as BuildKit drops it from git contexts, it is not counted.
        if ctx.is_ignored(&rel) || rel == ".git" || rel.starts_with(".git/") {
            continue;
        }
        let meta = entry.metadata().map_err(|e| AttestError::Io {
            path: path.to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("stat")),
        })?;
        let ft = meta.file_type();
        let perm = meta.permissions().mode() & 0o7777;
        let (kind, content) = if ft.is_file() {
            let mut f = std::fs::File::open(path).map_err(AttestError::io(path))?;
            let mut h = HashingWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut h).map_err(AttestError::io(path))?;
            ("file", h.digest().to_string())
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            let t = std::fs::read_link(path).map_err(AttestError::io(path))?;
            ("symlink", t.to_string_lossy().to_string())
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else {
            ("other", String::new())
        };
        // One line per entry; the path is JSON-quoted so no name can forge a line break.
        let line = format!(
            "{kind} {perm:o} {} {content}\n",
            serde_json::Value::String(rel)
        );
        listing
            .write_all(line.as_bytes())
            .map_err(AttestError::io(root))?;
    }
    Ok(listing.digest())
}

/// The git commit and `origin` remote of `dir` when it is a git checkout (via the `git` binary;
/// none when git is missing or `dir` is not a checkout).
pub fn git_info(dir: &std::path::Path) -> Option<super::GitInfo> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only when `dir` is the top of the checkout: a subdirectory's commit says little about it.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let same = std::fs::canonicalize(&top).ok()? == std::fs::canonicalize(dir).ok()?;
    if !same {
        return None;
    }
    let commit = git(&["rev-parse", "HEAD"])?;
    let remote = git(&["remote", "get-url", "origin"]).filter(|r| !r.is_empty());
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(super::GitInfo {
        commit,
        remote,
        dirty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(dir: &std::path::Path) -> Digest {
        let ctx = Context::open(dir, &dir.join("Dockerfile")).unwrap();
        context_digest(&ctx).unwrap()
    }

    #[test]
    fn same_content_other_mtimes_same_digest_and_edits_change_it() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(a.path().join("d")).unwrap();
        std::fs::write(a.path().join("d/f"), "x").unwrap();
        std::fs::write(a.path().join(".dockerignore"), "junk\n").unwrap();
        let d1 = digest_of(a.path());
        let f = std::fs::File::options()
            .write(true)
            .open(a.path().join("d/f"))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH).unwrap();
        std::fs::write(a.path().join("junk"), "ignored").unwrap();
        std::fs::create_dir(a.path().join(".git")).unwrap();
        std::fs::write(a.path().join(".git/index"), "stat data").unwrap();
        assert_eq!(
            digest_of(a.path()),
            d1,
            "mtimes and ignored files do not count"
        );
        std::fs::write(a.path().join("d/f"), "y").unwrap();
        assert_ne!(digest_of(a.path()), d1, "content counts");
        std::fs::write(a.path().join("d/f"), "x").unwrap();
        std::fs::set_permissions(a.path().join("d/f"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_ne!(digest_of(a.path()), d1, "modes count");
    }
}
