//! `ADD <git URL>`: BuildKit's git source detection (`dfgitutil.ParseGitRef`) and a checkout made
//! with the `git` command (no Rust git implementation matches git's transport/auth behaviour).
//!
//! Recognised: `git://`, `ssh://`, scp-like `user@host:path`, and `http(s)://` URLs whose path
//! ends in `.git`; fragment `#ref:subdir`; query `ref=`, `tag=`, `branch=`, `subdir=`,
//! `checksum=`/`commit=`, `keep-git-dir=`. The `.git` directory is dropped unless kept.

use super::error::ContextError;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    pub remote: String,
    /// Branch, tag, `refs/...` or commit; `None` for the remote's HEAD.
    pub git_ref: Option<String>,
    /// Directory inside the repository to copy (`""` for all).
    pub subdir: String,
    pub keep_git_dir: Option<bool>,
    pub checksum: Option<String>,
}

/// `None` if `src` is not a git source; `Some(Err)` if it is one but malformed.
pub fn parse_git_ref(src: &str) -> Option<Result<GitRef, ContextError>> {
    let (main, fragment) = match src.split_once('#') {
        Some((m, f)) => (m, Some(f)),
        None => (src, None),
    };
    let (remote, query) = match main.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (main, None),
    };
    let is_git = if remote.starts_with("git://") || remote.starts_with("ssh://") {
        true
    } else if remote.starts_with("http://") || remote.starts_with("https://") {
        remote.ends_with(".git")
    } else {
        is_scp_like(remote)
    };
    if !is_git {
        return None;
    }
    Some(build_ref(src, remote, fragment, query))
}

/// `user@host:path` (but not a URL and not a local path).
fn is_scp_like(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else {
        return false;
    };
    let Some((host, _path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && !host.is_empty()
        && !user.contains('/')
        && !host.contains('/')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn build_ref(
    src: &str,
    remote: &str,
    fragment: Option<&str>,
    query: Option<&str>,
) -> Result<GitRef, ContextError> {
    let bad = |reason: String| ContextError::Git {
        remote: src.to_string(),
        reason,
    };
    let mut r = GitRef {
        remote: remote.to_string(),
        git_ref: None,
        subdir: String::new(),
        keep_git_dir: None,
        checksum: None,
    };
    if let Some(f) = fragment {
        let (git_ref, subdir) = f.split_once(':').unwrap_or((f, ""));
        if !git_ref.is_empty() {
            r.git_ref = Some(git_ref.to_string());
        }
        r.subdir = subdir.to_string();
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = |v: &str| match v {
            "" | "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            other => Err(bad(format!("invalid {k} value {other:?}"))),
        };
        match k {
            "ref" => r.git_ref = Some(v.to_string()),
            "tag" => r.git_ref = Some(format!("refs/tags/{}", v.trim_start_matches("refs/tags/"))),
            "branch" => {
                r.git_ref = Some(format!(
                    "refs/heads/{}",
                    v.trim_start_matches("refs/heads/")
                ))
            }
            "subdir" => r.subdir = v.to_string(),
            "checksum" | "commit" => r.checksum = Some(v.to_string()),
            "keep-git-dir" => r.keep_git_dir = Some(flag(v)?),
            "submodules" => {}
            other => return Err(bad(format!("unexpected query {other:?}"))),
        }
    }
    if r.git_ref.is_none() {
        r.git_ref = r.checksum.clone();
    }
    Ok(r)
}

/// A checked-out repository in a temp dir.
pub struct Checkout {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pub commit: String,
}

impl Checkout {
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn git(remote: &str, dir: &Path, args: &[&str]) -> Result<String, ContextError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| ContextError::Git {
            remote: remote.to_string(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "the git command is not installed".to_string()
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(ContextError::Git {
            remote: remote.to_string(),
            reason: format!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fetches `r` (shallow where possible) and checks it out. `checksum` (or the URL's own) must be
/// a prefix of the checked-out commit.
pub fn fetch(
    r: &GitRef,
    keep_git_dir: bool,
    checksum: Option<&str>,
    scratch: &Path,
) -> Result<Checkout, ContextError> {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-git-")
        .tempdir_in(scratch)
        .map_err(|e| ContextError::io(scratch, e))?;
    let root = dir.path().join("repo");
    std::fs::create_dir(&root).map_err(|e| ContextError::io(&root, e))?;
    let remote = r.remote.as_str();
    git(remote, &root, &["init", "-q"])?;
    let want = r.git_ref.clone().unwrap_or_else(|| "HEAD".to_string());
    if git(
        remote,
        &root,
        &["fetch", "-q", "--depth", "1", "--", remote, &want],
    )
    .is_err()
    {
        // Servers may refuse shallow fetches of a bare commit id: fetch everything instead.
        git(
            remote,
            &root,
            &[
                "fetch",
                "-q",
                "--tags",
                "--",
                remote,
                "+refs/heads/*:refs/remotes/origin/*",
            ],
        )?;
        git(remote, &root, &["checkout", "-q", "--detach", &want])?;
    } else {
        git(remote, &root, &["checkout", "-q", "--detach", "FETCH_HEAD"])?;
    }
    let commit = git(remote, &root, &["rev-parse", "HEAD"])?;
    if let Some(sum) = checksum.or(r.checksum.as_deref()) {
        if sum.is_empty() || !commit.starts_with(sum) {
            return Err(ContextError::ChecksumMismatch {
                url: r.remote.clone(),
                expected: sum.to_string(),
                actual: commit,
            });
        }
    }
    if root.join(".gitmodules").exists() {
        git(
            remote,
            &root,
            &[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth",
                "1",
            ],
        )?;
    }
    if !(keep_git_dir || r.keep_git_dir == Some(true)) {
        let dotgit = root.join(".git");
        std::fs::remove_dir_all(&dotgit).map_err(|e| ContextError::io(&dotgit, e))?;
    }
    Ok(Checkout {
        _dir: dir,
        root,
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_matches_buildkit() {
        assert!(parse_git_ref("https://github.com/moby/buildkit.git").is_some());
        assert!(parse_git_ref("git@github.com:moby/buildkit.git").is_some());
        assert!(parse_git_ref("git://example.com/r").is_some());
        assert!(parse_git_ref("ssh://git@example.com/r").is_some());
        assert!(parse_git_ref("https://example.com/file.tar.gz").is_none());
        assert!(parse_git_ref("github.com/moby/buildkit").is_none());
        assert!(parse_git_ref("./dir").is_none());
        assert!(parse_git_ref("a@b").is_none());
    }

    #[test]
    fn fragment_and_query() {
        let r = parse_git_ref("https://h/r.git#v1.0:sub/dir")
            .unwrap()
            .unwrap();
        assert_eq!(r.remote, "https://h/r.git");
        assert_eq!(r.git_ref.as_deref(), Some("v1.0"));
        assert_eq!(r.subdir, "sub/dir");
        let r = parse_git_ref("https://h/r.git?tag=v2&subdir=x&keep-git-dir=1")
            .unwrap()
            .unwrap();
        assert_eq!(r.git_ref.as_deref(), Some("refs/tags/v2"));
        assert_eq!(r.subdir, "x");
        assert_eq!(r.keep_git_dir, Some(true));
        assert!(parse_git_ref("https://h/r.git?bogus=1").unwrap().is_err());
    }
}
