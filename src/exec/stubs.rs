//! Mount-point stubs: paths a RUN step mounts over but the image lacks (`/proc`,
//! `/etc/hosts`, `--mount` targets ...) are created in the rootfs before the run and removed
//! after it, so they never end up in the layer (the caller diffs the upper dir afterwards).
//!
//! Everything is resolved inside the rootfs with `pathrs`. Removal re-resolves each path
//! and only removes what still looks like our stub: an empty regular file, or an empty
//! directory (SECURITY E5: a stub replaced by a symlink, or given content, is left alone).
//! The parent directory's timestamps are restored so the stub leaves no trace.

use std::fs::Permissions;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::{InodeType, Root};
use rustix::fs::{Stat, Timespec, Timestamps};

use super::error::ExecError;

/// What a mount needs at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StubKind {
    Dir,
    File,
}

/// Symlink hops followed when a mount point is a dangling symlink.
const MAX_SYMLINK_HOPS: usize = 16;

struct Created {
    path: PathBuf,
    kind: StubKind,
    /// The parent's (atime, mtime) before we created this entry, when the parent was
    /// not itself a stub.
    parent_times: Option<(Timespec, Timespec)>,
}

/// The stubs created for one run, removed by `remove`.
pub struct MountStubs {
    root: Root,
    rootfs: PathBuf,
    created: Vec<Created>,
}

impl MountStubs {
    pub fn new(rootfs: &Path) -> Result<Self, ExecError> {
        let root = Root::open(rootfs).map_err(|e| ExecError::path(rootfs, e))?;
        Ok(MountStubs {
            root,
            rootfs: rootfs.to_path_buf(),
            created: Vec::new(),
        })
    }

    /// Makes sure `path` (absolute, inside the rootfs) exists, creating what is missing.
    /// A dangling symlink on the way is followed inside the rootfs, as the mount will be.
    pub fn ensure(&mut self, path: &str, kind: StubKind) -> Result<(), ExecError> {
        let mut target = clean_abs(Path::new(path));
        'hops: for _ in 0..MAX_SYMLINK_HOPS {
            let comps: Vec<PathBuf> = prefixes(&target);
            for (i, prefix) in comps.iter().enumerate() {
                let last = i + 1 == comps.len();
                match self.root.resolve(prefix) {
                    Ok(_) => continue,
                    Err(e) if is_enoent(&e) => {}
                    Err(e) => return Err(self.err(prefix, e)),
                }
                // Missing after following symlinks: a dangling symlink or really absent.
                if let Ok(link) = self.root.readlink(prefix) {
                    let base = prefix.parent().unwrap_or(Path::new("/"));
                    let rest = target.strip_prefix(prefix).unwrap_or(Path::new(""));
                    target = clean_abs(&base.join(link).join(rest));
                    continue 'hops;
                }
                let stub_kind = if last { kind } else { StubKind::Dir };
                self.create(prefix, stub_kind)?;
            }
            return Ok(());
        }
        Err(ExecError::BadFile {
            path: self.shown(Path::new(path)),
            reason: "too many levels of symbolic links".into(),
        })
    }

    fn create(&mut self, path: &Path, kind: StubKind) -> Result<(), ExecError> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let parent_is_stub = self.created.iter().any(|c| c.path == parent);
        let parent_times = if parent_is_stub {
            None
        } else {
            let handle = self.root.resolve(parent).map_err(|e| self.err(parent, e))?;
            let st = rustix::fs::fstat(handle.as_fd())
                .map_err(|e| ExecError::io(format!("stat {}", self.shown(parent).display()), e))?;
            Some(times_of(&st))
        };
        let made = match kind {
            StubKind::Dir => self
                .root
                .create(path, &InodeType::Directory(Permissions::from_mode(0o755))),
            StubKind::File => self
                .root
                .create(path, &InodeType::File(Permissions::from_mode(0o644))),
        };
        made.map_err(|e| self.err(path, e))?;
        self.created.push(Created {
            path: path.to_path_buf(),
            kind,
            parent_times,
        });
        Ok(())
    }

    /// Removes the stubs (deepest first). Returns the first error; tries all of them.
    pub fn remove(mut self) -> Result<(), ExecError> {
        let mut first_err = None;
        while let Some(c) = self.created.pop() {
            if let Err(e) = self.remove_one(&c) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn remove_one(&self, c: &Created) -> Result<(), ExecError> {
        let handle = match self.root.resolve_nofollow(&c.path) {
            Ok(h) => h,
            Err(e) if is_enoent(&e) => return Ok(()),
            Err(e) => return Err(self.err(&c.path, e)),
        };
        let st = rustix::fs::fstat(handle.as_fd())
            .map_err(|e| ExecError::io(format!("stat {}", self.shown(&c.path).display()), e))?;
        drop(handle);
        let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let removed = match c.kind {
            StubKind::File if file_type == rustix::fs::FileType::RegularFile && st.st_size == 0 => {
                self.root.remove_file(&c.path)
            }
            StubKind::Dir if file_type == rustix::fs::FileType::Directory => {
                match self.root.remove_dir(&c.path) {
                    Err(e) if e.kind() == ErrorKind::OsError(Some(libc::ENOTEMPTY)) => {
                        return Ok(())
                    }
                    other => other,
                }
            }
            // Replaced or given content during the run: not ours to delete any more.
            _ => return Ok(()),
        };
        removed.map_err(|e| self.err(&c.path, e))?;
        if let Some((atime, mtime)) = c.parent_times {
            let parent = c.path.parent().unwrap_or(Path::new("/"));
            let dir = self
                .root
                .open_subpath(
                    parent,
                    OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC,
                )
                .map_err(|e| self.err(parent, e))?;
            rustix::fs::futimens(
                &dir,
                &Timestamps {
                    last_access: atime,
                    last_modification: mtime,
                },
            )
            .map_err(|e| {
                ExecError::io(
                    format!("restore times of {}", self.shown(parent).display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    fn shown(&self, p: &Path) -> PathBuf {
        self.rootfs.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn err(&self, p: &Path, e: pathrs::error::Error) -> ExecError {
        ExecError::path(self.shown(p), e)
    }
}

fn times_of(st: &Stat) -> (Timespec, Timespec) {
    (
        Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    )
}

fn is_enoent(e: &pathrs::error::Error) -> bool {
    e.kind() == ErrorKind::OsError(Some(libc::ENOENT))
}

/// Lexically cleans an in-root path: absolute, no `.`/`..` (`..` stops at `/`), as
/// RESOLVE_IN_ROOT would treat it.
pub(crate) fn clean_abs(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `/a/b/c` -> [`/a`, `/a/b`, `/a/b/c`].
fn prefixes(p: &Path) -> Vec<PathBuf> {
    let mut acc = PathBuf::from("/");
    let mut out = Vec::new();
    for c in p.components() {
        if let Component::Normal(n) = c {
            acc.push(n);
            out.push(acc.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_abs_clamps_dotdot() {
        assert_eq!(
            clean_abs(Path::new("/a/../../b/./c")),
            PathBuf::from("/b/c")
        );
        assert_eq!(clean_abs(Path::new("x/y")), PathBuf::from("/x/y"));
    }

    #[test]
    fn creates_missing_and_removes_only_its_own() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("proc")).unwrap();
        let mut s = MountStubs::new(r.path()).unwrap();
        s.ensure("/proc", StubKind::Dir).unwrap();
        s.ensure("/etc/hosts", StubKind::File).unwrap();
        s.ensure("/a/b/c", StubKind::Dir).unwrap();
        s.ensure("/a/keep", StubKind::Dir).unwrap();
        assert!(r.path().join("etc/hosts").is_file());
        assert!(r.path().join("a/b/c").is_dir());
        // User content written into a stub dir during the run keeps that dir.
        fs::write(r.path().join("a/keep/data"), "x").unwrap();
        s.remove().unwrap();
        assert!(r.path().join("proc").is_dir(), "pre-existing dir must stay");
        assert!(!r.path().join("etc").exists());
        assert!(!r.path().join("a/b").exists());
        assert!(r.path().join("a/keep/data").exists());
    }

    #[test]
    fn parent_mtime_is_restored() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs::File::open(r.path().join("etc"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let mut s = MountStubs::new(r.path()).unwrap();
        s.ensure("/etc/resolv.conf", StubKind::File).unwrap();
        s.remove().unwrap();
        assert_eq!(
            fs::metadata(r.path().join("etc"))
                .unwrap()
                .modified()
                .unwrap(),
            t
        );
    }

    #[test]
    fn e5_stub_replaced_by_symlink_is_not_followed_on_cleanup() {
        let host = tempfile::tempdir().unwrap();
        fs::create_dir(host.path().join("b")).unwrap();
        fs::write(host.path().join("b/c"), "").unwrap();
        let r = tempfile::tempdir().unwrap();
        let mut s = MountStubs::new(r.path()).unwrap();
        s.ensure("/a/b/c", StubKind::File).unwrap();
        // During the run /a is swapped for a symlink to a host-like path.
        fs::remove_dir_all(r.path().join("a")).unwrap();
        symlink(host.path(), r.path().join("a")).unwrap();
        s.remove().unwrap();
        assert!(
            host.path().join("b/c").exists(),
            "host file must not be deleted"
        );
        assert!(fs::symlink_metadata(r.path().join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn dangling_symlink_is_followed_inside_root() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            r.path().join("etc/resolv.conf"),
        )
        .unwrap();
        let mut s = MountStubs::new(r.path()).unwrap();
        s.ensure("/etc/resolv.conf", StubKind::File).unwrap();
        assert!(r
            .path()
            .join("run/systemd/resolve/stub-resolv.conf")
            .is_file());
        s.remove().unwrap();
        assert!(!r.path().join("run").exists());
        assert!(fs::symlink_metadata(r.path().join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn absolute_symlink_to_host_path_creates_inside_root() {
        let host = tempfile::tempdir().unwrap();
        let r = tempfile::tempdir().unwrap();
        let host_target = host.path().join("devdir");
        symlink(&host_target, r.path().join("dev")).unwrap();
        let mut s = MountStubs::new(r.path()).unwrap();
        s.ensure("/dev", StubKind::Dir).unwrap();
        assert!(!host_target.exists(), "must not create on the host");
        let inside = r.path().join(host_target.strip_prefix("/").unwrap());
        assert!(inside.is_dir());
        s.remove().unwrap();
        assert!(!inside.exists());
    }
}
