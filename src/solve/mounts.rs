//! What a RUN mounts besides its root: bind sources (context or another stage, resolved inside
//! their root and pinned), cache directories with their `sharing` locks, secrets, tmpfs.

use super::base::SourceView;
use super::error::BuildError;
use super::solver::Solver;
use crate::context::{self, CopyRequest, SourceRoot};
use crate::digest::Digest;
use crate::dockerfile::{MountType, RunMount};
use crate::exec::{Mount, MountKind};
use crate::plan::lower::ExecMount;
use std::path::{Path, PathBuf};

impl Solver<'_> {
    /// The directory of cache mount `id` and the lock (`flock`) that its `sharing` mode asks for:
    /// `shared` takes a shared lock, `locked` an exclusive one (waiting for other users), `private` the
    /// first instance (`<id>`, `<id>-1`, ...) nobody else holds. The locks also order parallel stages
    /// and concurrent builds. A new directory gets the mount's mode/uid/gid (0755 root by default).
    pub(super) fn cache_dir(
        &self,
        id: &str,
        m: &RunMount,
    ) -> Result<(PathBuf, std::fs::File), BuildError> {
        use rustix::fs::FlockOperation as Op;
        let cache = self.opts.root.join("cache");
        let locks = cache.join("mount-locks");
        std::fs::create_dir_all(&locks).map_err(|e| BuildError::io(&locks, e))?;
        let base = Digest::of_bytes(id.as_bytes()).hex().to_string();
        let open_lock = |name: &str| {
            let p = locks.join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&p)
                .map_err(|e| BuildError::io(&p, e))
                .map(|f| (p, f))
        };
        let (name, lock) = match m.sharing.as_deref().unwrap_or("shared") {
            "private" => {
                let mut n = 0usize;
                loop {
                    let name = if n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    };
                    let (p, f) = open_lock(&name)?;
                    match rustix::fs::flock(&f, Op::NonBlockingLockExclusive) {
                        Ok(()) => break (name, f),
                        Err(rustix::io::Errno::WOULDBLOCK) => n += 1,
                        Err(e) => return Err(BuildError::io(&p, e.into())),
                    }
                }
            }
            sharing => {
                let op = if sharing == "locked" {
                    Op::LockExclusive
                } else {
                    Op::LockShared
                };
                let (p, f) = open_lock(&base)?;
                rustix::fs::flock(&f, op).map_err(|e| BuildError::io(&p, e.into()))?;
                (base, f)
            }
        };
        let dir = cache.join("mounts").join(name);
        if !dir.exists() {
            let parent = cache.join("mounts");
            std::fs::create_dir_all(&parent).map_err(|e| BuildError::io(&parent, e))?;
            // Made under a temporary name and renamed: a concurrent build never sees it half set up.
            let tmp = tempfile::Builder::new()
                .prefix(".new-")
                .tempdir_in(&parent)
                .map_err(|e| BuildError::io(&parent, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                tmp.path(),
                std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
            )
            .map_err(|e| BuildError::io(tmp.path(), e))?;
            std::os::unix::fs::chown(
                tmp.path(),
                Some(m.uid.unwrap_or(0)),
                Some(m.gid.unwrap_or(0)),
            )
            .map_err(|e| BuildError::io(tmp.path(), e))?;
            let tmp = tmp.keep();
            let renamed = rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                &dir,
                rustix::fs::RenameFlags::NOREPLACE,
            );
            if renamed.is_err() {
                // Another build created it first: use theirs.
                let _ = std::fs::remove_dir(&tmp);
            }
        }
        Ok((dir, lock))
    }

    /// Turns one `RUN --mount` into an executor mount, and names what it contributes to the cache key.
    pub(super) fn prepare_mount(
        &self,
        em: &ExecMount,
        line: usize,
        views: &mut Vec<SourceView>,
    ) -> Result<(Mount, Option<String>), BuildError> {
        let m = &em.mount;
        let target = m
            .target
            .clone()
            .ok_or_else(|| self.step_error(line, "--mount needs a target"))?;
        match m.typ {
            MountType::Bind => {
                let src_rel = m.source.clone().unwrap_or_else(|| "/".into());
                let (root, key) = match &em.from {
                    Some(from) => {
                        let (v, k) = self.source_view(from, line)?;
                        let p = v.path().to_path_buf();
                        views.push(v);
                        (p, k)
                    }
                    None => {
                        let ctx = self.context.ok_or_else(|| {
                            self.step_error(line, "no build context for a bind mount")
                        })?;
                        (ctx.root().to_path_buf(), "context".to_string())
                    }
                };
                let (handle, pinned) =
                    resolve_in(&root, &src_rel).map_err(|e| self.step_error(line, e))?;
                let source = if m.readonly {
                    // The RUN helper has its own mount namespace, where a mount reached through
                    // our fd cannot be bind-mounted (EINVAL); it gets the pinned object's own
                    // path instead: symlink-free, inside a tree nothing writes to during the step.
                    std::fs::read_link(&pinned).map_err(|e| BuildError::io(&pinned, e))?
                } else {
                    // A writable bind gets a throwaway copy: as in BuildKit, RUN's writes to it are
                    // discarded and never reach the context or the source stage (SECURITY E6).
                    self.scratch_copy(&pinned, line)?
                };
                views.push(SourceView::Pinned {
                    _handle: handle,
                    path: pinned,
                });
                let content = if m.from.is_none() {
                    let ctx = self
                        .context
                        .ok_or_else(|| self.step_error(line, "no build context"))?;
                    let req =
                        CopyRequest::new(SourceRoot::Context(ctx), vec![src_rel.clone()], "/");
                    context::hash_sources(&req, None)
                        .map_err(|e| self.step_error(line, e.to_string()))?
                        .to_string()
                } else {
                    key
                };
                Ok((
                    Mount {
                        target,
                        kind: MountKind::Bind {
                            source,
                            readonly: m.readonly,
                        },
                    },
                    Some(format!("bind {src_rel} {content}")),
                ))
            }
            MountType::Tmpfs => Ok((
                Mount {
                    target,
                    kind: MountKind::Tmpfs {
                        size: m.size.map(|s| s.max(0) as u64),
                    },
                },
                None,
            )),
            MountType::Secret | MountType::Cache | MountType::Ssh => Err(BuildError::Internal(
                "secret, cache and ssh mounts are prepared in exec_step".into(),
            )),
        }
    }

    /// `RUN --mount=type=secret`: a file at `target` (default `/run/secrets/<id>`) and/or an env var.
    /// `id` defaults to `source`, then to the target's file name, as in BuildKit. A missing secret that
    /// is not `required` is skipped. Nothing about the value enters the cache key, the layer or history.
    pub(super) fn prepare_secret(
        &self,
        m: &RunMount,
        line: usize,
        secret_env: &mut Vec<String>,
    ) -> Result<Option<Mount>, BuildError> {
        let id =
            m.id.clone()
                .or_else(|| m.source.clone())
                .or_else(|| {
                    m.target.as_deref().and_then(|t| {
                        Path::new(t)
                            .file_name()
                            .map(|s| s.to_string_lossy().to_string())
                    })
                })
                .unwrap_or_default();
        let Some(path) = self.opts.secrets.get(&id) else {
            if m.required {
                return Err(self.step_error(
                    line,
                    // BuildKit's wording, and how to give one.
                    format!("secret {id}: not found (give {id:?} with --secret id={id},src=FILE)"),
                ));
            }
            return Ok(None);
        };
        if let Some(var) = &m.env {
            // The file mount's size cap holds for env too (exec::MAX_SECRET).
            let value =
                crate::exec::read_secret(path).map_err(|e| self.step_error(line, e.to_string()))?;
            let value = String::from_utf8(value).map_err(|_| {
                self.step_error(
                    line,
                    format!("secret {id:?} is not UTF-8 text: cannot be env {var}"),
                )
            })?;
            secret_env.push(format!("{var}={value}"));
            if m.target.is_none() {
                return Ok(None);
            }
        }
        let target = match m.target.as_deref() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => format!("/run/secrets/{id}"),
        };
        Ok(Some(Mount {
            target,
            kind: MountKind::Secret {
                source: path.clone(),
                mode: m.mode.unwrap_or(0o400),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            },
        }))
    }

    /// Copies a bind-mount source into the build's scratch space (cp -a keeps owners, modes, links).
    fn scratch_copy(&self, source: &Path, line: usize) -> Result<PathBuf, BuildError> {
        let dir = tempfile::Builder::new()
            .prefix("bind-")
            .tempdir_in(&self.scratch)
            .map_err(|e| BuildError::io(&self.scratch, e))?
            .keep();
        let dest = dir.join("src");
        // -H: the source is a pinned `/proc/<pid>/fd/N`; follow it, and nothing below it.
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg("-H")
            .arg("--")
            .arg(source)
            .arg(&dest)
            .status()
            .map_err(|e| BuildError::io(source, e))?;
        if !status.success() {
            return Err(self.step_error(
                line,
                format!("copying bind source {} failed", source.display()),
            ));
        }
        Ok(dest)
    }
}

/// Resolves `rel` inside `root` for a bind mount source: symlinks (absolute or `..`) are
/// followed as if `root` were `/` (pathrs, openat2 `RESOLVE_IN_ROOT`), never on the host, and
/// the result is held by an O_PATH handle; its `/proc/<pid>/fd/N` is what gets copied, and its
/// symlink-free path what gets mounted (buildah CVE-2024-1753, BuildKit CVE-2024-23651).
fn resolve_in(root: &Path, rel: &str) -> Result<(pathrs::Handle, PathBuf), String> {
    use std::os::fd::{AsFd, AsRawFd};
    let r = pathrs::Root::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let h = r
        .resolve(rel)
        .map_err(|e| format!("mount source {rel:?}: {e}"))?;
    let path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        h.as_fd().as_raw_fd()
    ));
    Ok((h, path))
}
