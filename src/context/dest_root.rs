//! Writing into the destination rootfs without ever leaving it.
//!
//! Destination paths are resolved inside the root: symlinks in the image are followed as if the
//! root were `/` (Debian's `/var/run -> /run` works, `/app -> /` stays inside), `..` never climbs
//! out. Below the resolved directory every write is a `*at` call on a directory fd with the final
//! component never followed, so a symlink planted in the image cannot redirect a write
//! (SECURITY C6). Lookups use `pathrs`; creation of missing parents is done component by
//! component here because it must set owners/times on exactly the directories it creates and
//! create the target of a dangling symlink, as BuildKit's `MkdirAll(fs.RootPath(...))` does.

use super::error::ContextError;
use super::path_clean::clean_in_root;
use pathrs::error::ErrorKind;
use pathrs::Root;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Owner, permission bits and mtime to give an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (incl. setuid/setgid/sticky); `None` leaves them as created.
    pub mode: Option<u32>,
    /// Seconds and nanoseconds; `None` leaves the time the kernel set.
    pub mtime: Option<(i64, u32)>,
}

/// The destination rootfs.
pub struct DestRoot {
    root: Root,
}

/// A directory inside the destination root, held open (`O_PATH`).
pub struct DirHandle {
    fd: OwnedFd,
    /// In-root path, for messages and for re-resolving.
    path: String,
}

const MAX_SYMLINKS: usize = 40;

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

impl DestRoot {
    pub fn open(path: &Path) -> Result<DestRoot, ContextError> {
        let root =
            Root::open(path).map_err(|e| ContextError::in_root(path.display().to_string(), e))?;
        Ok(DestRoot { root })
    }

    /// Resolves `path` inside the root, following symlinks (in-root). `None` if it does not exist.
    pub fn stat_follow(&self, path: &str) -> Result<Option<rfs::Stat>, ContextError> {
        let p = clean_in_root(path);
        match self.root.resolve(&p) {
            Ok(h) => rfs::fstat(&h)
                .map(Some)
                .map_err(|e| ContextError::in_root(&p, errno_io(e))),
            Err(e) if is_enoent(&e) => Ok(None),
            Err(e) => Err(ContextError::in_root(&p, e)),
        }
    }

    /// Opens an existing directory, following symlinks inside the root.
    pub fn open_dir(&self, path: &str) -> Result<DirHandle, ContextError> {
        let p = clean_in_root(path);
        let h = self
            .root
            .resolve(&p)
            .map_err(|e| ContextError::in_root(&p, e))?;
        let fd: OwnedFd = h.into();
        let st = rfs::fstat(&fd).map_err(|e| ContextError::in_root(&p, errno_io(e)))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(ContextError::in_root(&p, "not a directory"));
        }
        Ok(DirHandle { fd, path: p })
    }

    /// Creates `path` and any missing parents (mode from `meta`, else 0755; owner/mtime from `meta`), following
    /// existing symlinks inside the root. Returns the directory and the in-root paths created.
    pub fn mkdir_all(
        &self,
        path: &str,
        meta: &Meta,
    ) -> Result<(DirHandle, Vec<String>), ContextError> {
        let mut created = Vec::new();
        let mut target = clean_in_root(path);
        let mut hops = 0;
        'restart: loop {
            let root_h = self
                .root
                .resolve("/")
                .map_err(|e| ContextError::in_root("/", e))?;
            let mut cur = DirHandle {
                fd: root_h.into(),
                path: "/".to_string(),
            };
            let comps: Vec<String> = target
                .split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            for (i, comp) in comps.iter().enumerate() {
                match cur.lstat(comp)? {
                    Some(st) => match FileType::from_raw_mode(st.st_mode) {
                        FileType::Directory => cur = cur.open_subdir(comp)?,
                        FileType::Symlink => {
                            // Substitute the link text and walk again from the root: the root
                            // is `/` for the link, so `..` and absolute targets stay inside.
                            hops += 1;
                            if hops > MAX_SYMLINKS {
                                return Err(ContextError::in_root(&target, "too many symlinks"));
                            }
                            let link = cur.readlink(comp)?;
                            let rest = comps[i + 1..].join("/");
                            let base = if link.starts_with('/') {
                                link
                            } else {
                                format!("{}/{}", cur.path, link)
                            };
                            target = clean_in_root(&format!("{base}/{rest}"));
                            continue 'restart;
                        }
                        _ => {
                            return Err(ContextError::in_root(
                                cur.child_path(comp),
                                "exists and is not a directory",
                            ))
                        }
                    },
                    None => {
                        let dir_meta = Meta {
                            mode: meta.mode.or(Some(0o755)),
                            ..*meta
                        };
                        cur.mkdir(comp)?;
                        cur.apply_dir_meta(comp, &dir_meta)?;
                        created.push(cur.child_path(comp));
                        cur = cur.open_subdir(comp)?;
                    }
                }
            }
            return Ok((cur, created));
        }
    }
}

fn is_enoent(e: &pathrs::error::Error) -> bool {
    matches!(e.kind(), ErrorKind::OsError(Some(libc::ENOENT)))
}

impl DirHandle {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn child_path(&self, name: &str) -> String {
        if self.path == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.path)
        }
    }

    fn err(&self, name: &str, e: Errno) -> ContextError {
        ContextError::in_root(self.child_path(name), errno_io(e))
    }

    /// `lstat` of a child; `None` if absent.
    pub fn lstat(&self, name: &str) -> Result<Option<rfs::Stat>, ContextError> {
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(name, e)),
        }
    }

    pub fn readlink(&self, name: &str) -> Result<String, ContextError> {
        let target = rfs::readlinkat(&self.fd, name, Vec::new()).map_err(|e| self.err(name, e))?;
        Ok(target.to_string_lossy().into_owned())
    }

    pub fn open_subdir(&self, name: &str) -> Result<DirHandle, ContextError> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(name, e))?;
        Ok(DirHandle {
            fd,
            path: self.child_path(name),
        })
    }

    pub fn mkdir(&self, name: &str) -> Result<(), ContextError> {
        rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)).map_err(|e| self.err(name, e))
    }

    /// Makes `name` a directory for a copied directory: an existing directory (not a symlink to
    /// one) is reused, anything else that is not a directory is an error as in BuildKit.
    /// Returns the handle and whether it was created.
    pub fn ensure_dir(&self, name: &str, src: &str) -> Result<(DirHandle, bool), ContextError> {
        // mkdir first: in a fresh destination that is one syscall instead of two.
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => return Ok((self.open_subdir(name)?, true)),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(self.err(name, e)),
        }
        match self.lstat(name)? {
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Ok((self.open_subdir(name)?, false))
            }
            Some(_) => Err(ContextError::NotADirectory {
                src: src.to_string(),
                dest: self.child_path(name),
            }),
            None => {
                self.mkdir(name)?;
                Ok((self.open_subdir(name)?, true))
            }
        }
    }

    /// Clears the way for a non-directory at `name`: an existing file or symlink is removed (not
    /// followed), an existing directory is an error.
    pub fn clear_for_file(&self, name: &str, src: &str) -> Result<(), ContextError> {
        if let Some(st) = self.lstat(name)? {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(ContextError::DirectoryInTheWay {
                    src: src.to_string(),
                    dest: self.child_path(name),
                });
            }
            rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(|e| self.err(name, e))?;
        }
        Ok(())
    }

    /// Creates a new regular file (never through a symlink).
    pub fn create_file(&self, name: &str) -> Result<File, ContextError> {
        self.open_new(name).map_err(|e| self.err(name, e))
    }

    fn open_new(&self, name: &str) -> Result<File, Errno> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(File::from(fd))
    }

    /// Runs `make` to create `name`; if something is already there, clears it as
    /// [`Self::clear_for_file`] does (a directory in the way is an error) and tries once more.
    /// Trying first saves an `lstat` per entry in the common case of a fresh directory.
    fn replacing<T>(
        &self,
        name: &str,
        src: &str,
        make: impl Fn() -> Result<T, Errno>,
    ) -> Result<T, ContextError> {
        match make() {
            Err(Errno::EXIST) => {
                self.clear_for_file(name, src)?;
                make().map_err(|e| self.err(name, e))
            }
            r => r.map_err(|e| self.err(name, e)),
        }
    }

    /// [`Self::create_file`] over whatever non-directory is at `name` (not followed).
    pub fn replace_file(&self, name: &str, src: &str) -> Result<File, ContextError> {
        self.replacing(name, src, || self.open_new(name))
    }

    /// [`Self::symlink`] over whatever non-directory is at `name`.
    pub fn replace_symlink(&self, name: &str, target: &str, src: &str) -> Result<(), ContextError> {
        self.replacing(name, src, || rfs::symlinkat(target, &self.fd, name))
    }

    /// [`Self::hardlink`] over whatever non-directory is at `name`.
    pub fn replace_hardlink(
        &self,
        name: &str,
        old: &DirHandle,
        old_name: &str,
        src: &str,
    ) -> Result<(), ContextError> {
        self.replacing(name, src, || {
            rfs::linkat(&old.fd, old_name, &self.fd, name, AtFlags::empty())
        })
    }

    /// [`Self::mknod`] over whatever non-directory is at `name`.
    pub fn replace_node(
        &self,
        name: &str,
        ft: FileType,
        dev: u64,
        src: &str,
    ) -> Result<(), ContextError> {
        self.replacing(name, src, || {
            rfs::mknodat(&self.fd, name, ft, Mode::from_raw_mode(0o600), dev)
        })
    }

    pub fn symlink(&self, name: &str, target: &str) -> Result<(), ContextError> {
        rfs::symlinkat(target, &self.fd, name).map_err(|e| self.err(name, e))
    }

    pub fn hardlink(
        &self,
        name: &str,
        old: &DirHandle,
        old_name: &str,
    ) -> Result<(), ContextError> {
        rfs::linkat(&old.fd, old_name, &self.fd, name, AtFlags::empty())
            .map_err(|e| self.err(name, e))
    }

    pub fn mknod(&self, name: &str, ft: FileType, dev: u64) -> Result<(), ContextError> {
        rfs::mknodat(&self.fd, name, ft, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| self.err(name, e))
    }

    /// Owner, mode and mtime of a directory child, through an `O_NOFOLLOW` fd.
    pub fn apply_dir_meta(&self, name: &str, meta: &Meta) -> Result<(), ContextError> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(name, e))?;
        apply_fd_meta(fd.as_fd(), meta).map_err(|e| self.err(name, e))
    }

    /// Owner and mtime of a symlink child (symlinks have no mode of their own on Linux).
    pub fn apply_symlink_meta(&self, name: &str, meta: &Meta) -> Result<(), ContextError> {
        self.apply_meta_at(name, meta, None)
    }

    /// Owner, mode and mtime of a device or fifo child (opening it could block).
    pub fn apply_special_meta(&self, name: &str, meta: &Meta) -> Result<(), ContextError> {
        self.apply_meta_at(name, meta, meta.mode)
    }

    /// chown, then chmod (`mode`; chown clears setuid/setgid bits), then mtime, by name without
    /// following a final symlink.
    fn apply_meta_at(
        &self,
        name: &str,
        meta: &Meta,
        mode: Option<u32>,
    ) -> Result<(), ContextError> {
        rfs::chownat(
            &self.fd,
            name,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(name, e))?;
        if let Some(mode) = mode {
            // Only for children we just created as non-symlinks, so following is harmless.
            rfs::chmodat(&self.fd, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| self.err(name, e))?;
        }
        if let Some(t) = meta.mtime {
            rfs::utimensat(&self.fd, name, &timestamps(t), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err(name, e))?;
        }
        Ok(())
    }
}

/// chown first: it clears setuid/setgid bits, which the chmod then sets again.
pub fn apply_fd_meta(fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), Errno> {
    rfs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
    )?;
    if let Some(mode) = meta.mode {
        rfs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?;
    }
    if let Some(t) = meta.mtime {
        rfs::futimens(fd, &timestamps(t))?;
    }
    Ok(())
}

fn timestamps((sec, nsec): (i64, u32)) -> Timestamps {
    let ts = Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn meta() -> Meta {
        Meta {
            uid: 1234,
            gid: 5678,
            mode: None,
            mtime: Some((1_000_000, 0)),
        }
    }

    #[test]
    fn mkdir_all_follows_symlinks_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("evil")).unwrap();
        let d = DestRoot::open(root).unwrap();
        let (h, created) = d.mkdir_all("/var/run/app", &meta()).unwrap();
        assert_eq!(h.path(), "/run/app");
        assert_eq!(created, vec!["/run/app".to_string()]);
        let md = std::fs::metadata(root.join("run/app")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
        // `evil -> ../../..` is clamped to the root.
        let (h, _) = d.mkdir_all("/evil/etc/x", &meta()).unwrap();
        assert_eq!(h.path(), "/etc/x");
        assert!(root.join("etc/x").is_dir());
    }

    #[test]
    fn mkdir_all_creates_target_of_dangling_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::os::unix::fs::symlink("/nonexistent/deep", root.join("app")).unwrap();
        let d = DestRoot::open(root).unwrap();
        let (h, _) = d.mkdir_all("/app/sub", &meta()).unwrap();
        assert_eq!(h.path(), "/nonexistent/deep/sub");
        assert!(root.join("nonexistent/deep/sub").is_dir());
    }

    #[test]
    fn mkdir_all_rejects_file_component() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        let d = DestRoot::open(tmp.path()).unwrap();
        let err = d.mkdir_all("/f/sub", &meta()).err().unwrap();
        assert!(err.to_string().contains("/f"), "{err}");
    }

    #[test]
    fn create_file_never_follows_final_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"host").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("link")).unwrap();
        let d = DestRoot::open(tmp.path()).unwrap();
        let dir = d.open_dir("/").unwrap();
        assert!(dir.create_file("link").is_err());
        dir.clear_for_file("link", "src").unwrap();
        use std::io::Write;
        dir.create_file("link").unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"host");
        assert_eq!(std::fs::read(tmp.path().join("link")).unwrap(), b"new");
    }
}
