//! Read-only access to a rootfs directory that may be hostile (docs/sbom.md, "Safety").
//!
//! Known paths (`/var/lib/dpkg/status`, `/etc/os-release`) are opened through `pathrs`, which
//! resolves symlinks as if the rootfs were `/` (an absolute or `..` link never leaves it). The
//! tree walk is fd-based: each directory is opened with `openat(parent, name, O_NOFOLLOW)`, so a
//! symlinked directory is listed as a symlink and never entered. Reads are capped in size.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pathrs::flags::OpenFlags;
use pathrs::Root;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use super::SbomError;

/// Top-level directories that hold no installed software (kernel file systems, mount points
/// of the build) and are not walked.
const SKIP_TOP: &[&str] = &["proc", "sys", "dev"];

/// One entry the walk found: a regular file or a directory (symlinks and special files are not
/// kept: scanners never follow them).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Path relative to the rootfs, without a leading `/` (`usr/bin/ls`).
    pub path: PathBuf,
    pub is_dir: bool,
    pub mode: u32,
    pub size: u64,
}

/// An open rootfs.
pub(crate) struct RootFs {
    root: Root,
    dir: PathBuf,
}

impl RootFs {
    pub fn open(dir: &Path) -> Result<Self, SbomError> {
        let root = Root::open(dir).map_err(|e| SbomError::open(dir, e))?;
        Ok(RootFs {
            root,
            dir: dir.to_path_buf(),
        })
    }

    /// The host path of `rel`, for error messages only (never opened by joining).
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.dir.join(rel)
    }

    /// Opens a regular file inside the root (symlinks resolved inside the root). `Ok(None)` when
    /// it does not exist or is not a regular file.
    pub fn open_file(&self, rel: &Path) -> Result<Option<File>, SbomError> {
        let file = match self
            .root
            .open_subpath(rel, OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC)
        {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(SbomError::open(&self.display(rel), e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| SbomError::read(&self.display(rel), e))?;
        Ok(meta.is_file().then_some(file))
    }

    /// Reads a regular file of at most `limit` bytes; `Ok(None)` when it is missing, and
    /// [`SbomError::TooLarge`] when it is bigger (a database that big is not a real one).
    pub fn read(&self, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>, SbomError> {
        let Some(file) = self.open_file(rel)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| SbomError::read(&self.display(rel), e))?;
        if buf.len() as u64 > limit {
            return Err(SbomError::TooLarge {
                path: self.display(rel),
                limit,
            });
        }
        Ok(Some(buf))
    }

    /// [`read`](Self::read) as text (invalid UTF-8 replaced: package databases are text).
    pub fn read_text(&self, rel: &Path, limit: u64) -> Result<Option<String>, SbomError> {
        Ok(self
            .read(rel, limit)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Names in a directory inside the root, sorted; empty when it does not exist.
    pub fn list(&self, rel: &Path) -> Result<Vec<String>, SbomError> {
        let dir = match self.root.open_subpath(
            rel,
            OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC,
        ) {
            Ok(d) => d,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(SbomError::open(&self.display(rel), e)),
        };
        let mut names: Vec<String> = read_dir(dir.as_fd(), &self.display(rel))?
            .into_iter()
            .filter_map(|(n, _)| n.to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Walks the whole rootfs (fd-based, never through a symlink), returning its directories and
    /// regular files sorted by path. Stops with [`SbomError::TooManyEntries`] past `max_entries`.
    pub fn walk(&self, max_entries: usize) -> Result<Vec<Entry>, SbomError> {
        let top = self
            .root
            .open_subpath(
                ".",
                OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC,
            )
            .map_err(|e| SbomError::open(&self.dir, e))?;
        let mut out = Vec::new();
        let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(OwnedFd::from(top), PathBuf::new())];
        let mut seen = 0usize;
        while let Some((fd, rel)) = stack.pop() {
            let names = read_dir(fd.as_fd(), &self.display(&rel))?;
            for (name, _) in names {
                seen += 1;
                if seen > max_entries {
                    return Err(SbomError::TooManyEntries {
                        path: self.dir.clone(),
                        limit: max_entries,
                    });
                }
                let child = rel.join(&name);
                if rel.as_os_str().is_empty() && SKIP_TOP.iter().any(|s| OsStr::new(s) == name) {
                    continue;
                }
                let st = match rustix::fs::statat(&fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                {
                    Ok(st) => st,
                    // Gone since it was listed: nothing to describe.
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(SbomError::read(&self.display(&child), e.into())),
                };
                let ty = FileType::from_raw_mode(st.st_mode);
                let entry = Entry {
                    path: child.clone(),
                    is_dir: ty == FileType::Directory,
                    mode: st.st_mode,
                    size: u64::try_from(st.st_size).unwrap_or(0),
                };
                match ty {
                    FileType::Directory => {
                        let sub = rustix::fs::openat(
                            &fd,
                            name.as_os_str(),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        );
                        match sub {
                            Ok(sub) => stack.push((sub, child)),
                            // Unreadable or replaced: its contents are not described.
                            Err(rustix::io::Errno::NOENT | rustix::io::Errno::ACCESS) => {}
                            Err(e) => return Err(SbomError::read(&self.display(&child), e.into())),
                        }
                        out.push(entry);
                    }
                    FileType::RegularFile => out.push(entry),
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

/// Entries of an open directory, without `.` and `..`.
fn read_dir(
    fd: std::os::fd::BorrowedFd<'_>,
    what: &Path,
) -> Result<Vec<(std::ffi::OsString, FileType)>, SbomError> {
    let dir = Dir::read_from(fd).map_err(|e| SbomError::read(what, e.into()))?;
    let mut out = Vec::new();
    for ent in dir {
        let ent = ent.map_err(|e| SbomError::read(what, e.into()))?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(name).to_owned(), ent.file_type()));
    }
    Ok(out)
}

fn is_missing(e: &pathrs::error::Error) -> bool {
    matches!(
        e.kind(),
        pathrs::error::ErrorKind::OsError(Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP))
    )
}
