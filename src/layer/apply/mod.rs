//! Layer applier: extracts a layer tar into a directory, safely.
//!
//! Safety model (SECURITY.md §1.6-1.9, "contain" for paths, "reject" for malformed input):
//! * names are cleaned lexically; a leading `/` is stripped (as Docker and containerd do), a
//!   name whose `..` components climb above the root is **rejected** (moby/go-archive 2026
//!   behaviour), and a name that cleans to the root itself (`.`, `/`, `""`) is skipped;
//! * every parent directory is resolved *inside* the root with `pathrs` (openat2
//!   `RESOLVE_IN_ROOT`): symlinks, absolute or relative, are followed as if the root were `/`,
//!   so nothing is ever created outside it;
//! * the final component is never followed: creation uses `*at(2)` calls on the resolved
//!   parent fd with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`; anything already at that name is removed
//!   first unless both old and new are directories (image-spec changeset rules);
//! * hardlink targets are resolved inside the root and must already exist; a hardlink never
//!   gets chmod/chown (it shares the target's inode, SECURITY case 34);
//! * malformed whiteouts (`.wh.`, `.wh..`, `.wh...`) are rejected; a whiteout's target is always
//!   a direct child of its (in-root resolved) directory, so it cannot leave the root;
//! * truncated archives are errors, and `max_bytes` caps the decompressed tar bytes read.
//! * `limits` (`layer/limits.rs`) caps what the archive expands to, sparse holes included, and
//!   keeps a free-space margin; each entry is counted before it is created (archive bombs).
//!
//! [`WhiteoutMode::None`] is for `ADD` of an archive: archives are not layers, so `.wh.*` names
//! are extracted as the ordinary files they are (what Docker's classic `ADD`/`Untar` does).

mod data;
mod meta;
mod names;

use crate::layer::error::LayerError;
use crate::layer::limits::{Budget, Limits, ENTRY_COST};
use crate::layer::whiteout::{self, Whiteout, OVERLAY_OPAQUE_XATTR, USER_OPAQUE_XATTR};
use data::{copy_data, COPY_BUF};
use meta::{times, Meta};
use names::{clean, join};
use pathrs::Root;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec};
use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use tar::EntryType;

/// What to do with `.wh.*` entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Applying onto a full tree: `.wh.NAME` deletes NAME, `.wh..wh..opq` empties the dir
    /// (except what this same layer put there).
    #[default]
    Apply,
    /// Applying into an overlay snapshot's diff dir: `.wh.NAME` becomes a char device 0/0 named
    /// NAME, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on the dir (`user.overlay.opaque`
    /// in a user namespace).
    Overlay,
    /// Not a layer (ADD of an archive): `.wh.*` names are plain files.
    None,
}

/// Options of [`apply`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Decompression-bomb cap on the tar bytes read (headers and data).
    pub max_bytes: Option<u64>,
    /// Keep the archive's uid/gid (root applying image layers); otherwise files belong to the
    /// current user.
    pub same_owner: bool,
    /// Expanded-size cap and free-space margin (default: the process-wide `layer::limits`).
    pub limits: Limits,
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries created (files, dirs, links, devices).
    pub entries: u64,
    /// Whiteout and opaque entries handled.
    pub whiteouts: u64,
    /// Tar bytes consumed, including the end-of-archive padding.
    pub bytes_read: u64,
}

/// Extracts the layer tar `reader` into `root`.
pub fn apply<R: Read>(
    reader: R,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let handle = Root::open(root).map_err(|source| LayerError::Resolve {
        name: String::new(),
        op: "open root",
        root: root.to_path_buf(),
        source,
    })?;
    apply_in(reader, &handle, root, opts, None)
}

/// [`apply`] onto an already opened root (used by `extract_if_archive` for a sub-directory).
/// `owner` replaces every entry's uid/gid (`ADD --chown` of an archive).
pub(crate) fn apply_in<R: Read>(
    reader: R,
    root: &Root,
    root_path: &Path,
    opts: &ApplyOptions,
    owner: Option<(u32, u32)>,
) -> Result<ApplyStats, LayerError> {
    let count = Rc::new(Cell::new(0u64));
    let counting = CountingReader {
        inner: reader,
        count: Rc::clone(&count),
        cap: opts.max_bytes,
    };
    let budget =
        Budget::new(opts.limits, root).map_err(|e| LayerError::io(root_path, "statvfs", e))?;
    let mut archive = tar::Archive::new(counting);
    let mut applier = Applier {
        budget,
        root,
        root_path,
        opts,
        owner,
        stats: ApplyStats::default(),
        dir_times: Vec::new(),
        unpacked: HashSet::new(),
        buf: vec![0; COPY_BUF],
    };
    let cap_err = |e: io::Error, count: &Cell<u64>| match opts.max_bytes {
        Some(cap) if count.get() > cap => LayerError::SizeCap { cap },
        _ => LayerError::Read(e),
    };
    {
        let entries = archive.entries().map_err(|e| cap_err(e, &count))?;
        for entry in entries {
            let entry = entry.map_err(|e| cap_err(e, &count))?;
            applier.entry(entry).map_err(|e| match e {
                LayerError::Entry { .. } | LayerError::Read(_) => match opts.max_bytes {
                    Some(cap) if count.get() > cap => LayerError::SizeCap { cap },
                    _ => e,
                },
                other => other,
            })?;
        }
    }
    applier.finish_dir_times()?;
    // Drain the end-of-archive blocks so a hashing reader around us sees the whole stream.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| cap_err(e, &count))?;
    applier.stats.bytes_read = count.get();
    Ok(applier.stats)
}

struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    cap: Option<u64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        if let Some(cap) = self.cap {
            if self.count.get() > cap {
                return Err(io::Error::other(format!("layer exceeds {cap} bytes")));
            }
        }
        Ok(n)
    }
}

struct Applier<'a> {
    /// What the archive expanded to so far, against `opts.limits`.
    budget: Budget,
    root: &'a Root,
    root_path: &'a Path,
    opts: &'a ApplyOptions,
    /// Replaces every entry's owner (and is applied even without `same_owner`).
    owner: Option<(u32, u32)>,
    stats: ApplyStats,
    /// Directory mtimes, set at the end because creating children changes them.
    dir_times: Vec<(Vec<Vec<u8>>, Timespec)>,
    /// Names this layer created: whiteouts only hide lower layers, never these.
    unpacked: HashSet<Vec<u8>>,
    /// File data goes through here ([`copy_data`]).
    buf: Vec<u8>,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let Some(comps) =
            clean(&raw_name).ok_or_else(|| LayerError::Escape { name: name.clone() })?
        else {
            return Ok(()); // the root itself: never replaced or re-moded
        };
        let (base, parent) = comps
            .split_last()
            .ok_or_else(|| LayerError::Escape { name: name.clone() })?;
        // Counted before anything is created: a bomb stops before its big entry is written.
        // For a GNU sparse entry `size()` is the logical size, holes included.
        let data = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => entry.size(),
            _ => 0,
        };
        self.count(&name, ENTRY_COST.saturating_add(data))?;

        if self.opts.whiteouts != WhiteoutMode::None {
            if let Some(w) = whiteout::classify(base) {
                // A whiteout is an empty regular file (image-spec); anything else is malformed.
                let regular = matches!(kind, EntryType::Regular | EntryType::Continuous);
                if !regular || entry.size() != 0 {
                    return Err(LayerError::InvalidWhiteout { name });
                }
                return self.whiteout(&name, parent, w);
            }
        }

        let mut meta = Meta::read(&mut entry, &name)?;
        if let Some((uid, gid)) = self.owner {
            meta.uid = uid;
            meta.gid = gid;
        }
        if let Some(sparse) = meta.sparse_size {
            self.count(&name, sparse.saturating_sub(data))?;
        }
        let dir = self.parent_dir(&name, parent)?;
        // Only dir-over-dir merges; anything else at that name is removed first, so nothing is
        // ever written through what was there (a symlink, a hardlinked file...). Creation is
        // tried first and what is there looked at only on EEXIST (`create_replacing`): in a
        // fresh tree that saves an lstat per entry. A hardlink clears the name before its
        // target is resolved, as the target's path may run through that name.
        if kind == EntryType::Link
            && rustix::fs::statat(&dir, base.as_slice(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
        {
            self.remove_child(&name, parent, base)?;
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = self.create_replacing(&name, parent, base, "create file", || {
                    rustix::fs::openat(
                        &dir,
                        base.as_slice(),
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                })?;
                let mut file = File::from(fd);
                let want = entry.size();
                let got = copy_data(&mut entry, &mut file, &mut self.buf)
                    .map_err(|e| LayerError::entry(&name, "write file", e))?;
                if got != want {
                    return Err(LayerError::Truncated { name, got, want });
                }
                meta.set_on_fd(&name, file.as_fd(), self.chown())?;
                rustix::fs::futimens(&file, &times(meta.mtime))
                    .map_err(|e| LayerError::entry(&name, "set mtime", e))?;
            }
            EntryType::Directory => {
                let mkdir =
                    || rustix::fs::mkdirat(&dir, base.as_slice(), Mode::from_raw_mode(0o700));
                match mkdir() {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {
                        let st =
                            rustix::fs::statat(&dir, base.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                                .map_err(|e| LayerError::entry(&name, "lstat", e))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.remove_child(&name, parent, base)?;
                            mkdir().map_err(|e| LayerError::entry(&name, "mkdir", e))?;
                        }
                    }
                    Err(e) => return Err(LayerError::entry(&name, "mkdir", e)),
                }
                let fd = rustix::fs::openat(
                    &dir,
                    base.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| LayerError::entry(&name, "open dir", e))?;
                meta.set_on_fd(&name, fd.as_fd(), self.chown())?;
                self.dir_times.push((comps.clone(), meta.mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        LayerError::entry(&name, "symlink", io::Error::other("no target"))
                    })?
                    .into_owned();
                // The target is stored verbatim: containment happens when paths are resolved.
                self.create_replacing(&name, parent, base, "symlink", || {
                    rustix::fs::symlinkat(target.as_slice(), &dir, base.as_slice())
                })?;
                meta.set_at(&name, &dir, base, false, self.chown())?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        LayerError::entry(&name, "hardlink", io::Error::other("no target"))
                    })?
                    .into_owned();
                self.hardlink(&name, &dir, base, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = match kind {
                    EntryType::Char | EntryType::Block => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        let ft = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                    _ => (FileType::Fifo, 0),
                };
                self.create_replacing(&name, parent, base, "mknod", || {
                    rustix::fs::mknodat(&dir, base.as_slice(), ft, Mode::from_raw_mode(0o600), dev)
                })?;
                meta.set_at(&name, &dir, base, true, self.chown())?;
            }
            other => {
                return Err(LayerError::Unsupported { name, kind: other });
            }
        }
        self.stats.entries += 1;
        // Ancestors too: they may have been created implicitly for this entry.
        for i in 1..=comps.len() {
            self.unpacked.insert(comps[..i].join(&b'/'));
        }
        Ok(())
    }

    /// Whether entries get their owner set: as the tar says (`same_owner`), or `ADD --chown`'s.
    fn chown(&self) -> bool {
        self.opts.same_owner || self.owner.is_some()
    }

    fn count(&mut self, name: &str, bytes: u64) -> Result<(), LayerError> {
        self.budget.take(bytes).map_err(|why| LayerError::TooLarge {
            entry: name.to_string(),
            why,
        })
    }

    fn hardlink(
        &mut self,
        name: &str,
        dir: &OwnedFd,
        base: &[u8],
        target: &[u8],
    ) -> Result<(), LayerError> {
        let escape = || LayerError::HardlinkEscape {
            name: name.to_string(),
            target: String::from_utf8_lossy(target).into_owned(),
        };
        let comps = clean(target).ok_or_else(escape)?.ok_or_else(escape)?;
        let (tbase, tparent) = comps.split_last().ok_or_else(escape)?;
        let tdir = self
            .root
            .resolve(join(tparent))
            .map_err(|source| self.resolve_err(name, "resolve hardlink target", source))?;
        // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        rustix::fs::linkat(&tdir, tbase.as_slice(), dir, base, AtFlags::empty())
            .map_err(|e| LayerError::entry(name, "hardlink", e))
    }

    fn whiteout(
        &mut self,
        name: &str,
        parent: &[Vec<u8>],
        w: Whiteout<'_>,
    ) -> Result<(), LayerError> {
        self.stats.whiteouts += 1;
        if let Whiteout::Delete(target) = w {
            let mut full = parent.join(&b'/');
            if !full.is_empty() {
                full.push(b'/');
            }
            full.extend_from_slice(target);
            if self.unpacked.contains(&full) {
                return Ok(()); // same-layer file: whiteouts apply to lower layers only
            }
        }
        match (w, self.opts.whiteouts) {
            (Whiteout::Invalid, _) => Err(LayerError::InvalidWhiteout {
                name: name.to_string(),
            }),
            (Whiteout::Opaque, WhiteoutMode::Overlay) => {
                let dir = self.parent_dir(name, parent)?;
                let fd = dir_fd(&dir, name)?;
                let set =
                    |x: &str| rustix::fs::fsetxattr(&fd, x, b"y", rustix::fs::XattrFlags::empty());
                // In a user namespace (rootless) `trusted.*` is out of reach and overlay is
                // mounted with `userxattr`, which reads `user.overlay.*` (so does
                // fuse-overlayfs): docs/rootless.md.
                let res = match set(OVERLAY_OPAQUE_XATTR) {
                    Err(rustix::io::Errno::PERM) => set(USER_OPAQUE_XATTR),
                    other => other,
                };
                res.map_err(|e| LayerError::entry(name, "set opaque xattr", e))
            }
            (Whiteout::Delete(target), WhiteoutMode::Overlay) => {
                let dir = self.parent_dir(name, parent)?;
                if rustix::fs::statat(&dir, target, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    let mut t = parent.to_vec();
                    t.push(target.to_vec());
                    self.remove_path(name, &t)?;
                }
                rustix::fs::mknodat(
                    &dir,
                    target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| LayerError::entry(name, "mknod whiteout", e))
            }
            (Whiteout::Opaque, _) => {
                let Some(dir) = self.existing_dir(name, parent)? else {
                    return Ok(());
                };
                let fd = dir_fd(&dir, name)?;
                let children = rustix::fs::Dir::read_from(&fd)
                    .map_err(|e| LayerError::entry(name, "read dir", e))?;
                let prefix = parent.join(&b'/');
                let mut doomed = Vec::new();
                for child in children {
                    let child = child.map_err(|e| LayerError::entry(name, "read dir", e))?;
                    let child_name = child.file_name().to_bytes();
                    if child_name == b"." || child_name == b".." {
                        continue;
                    }
                    let mut full = prefix.clone();
                    if !full.is_empty() {
                        full.push(b'/');
                    }
                    full.extend_from_slice(child_name);
                    if !self.unpacked.contains(&full) {
                        doomed.push(child_name.to_vec());
                    }
                }
                for child in doomed {
                    let mut t = parent.to_vec();
                    t.push(child);
                    self.remove_path(name, &t)?;
                }
                Ok(())
            }
            (Whiteout::Delete(target), _) => {
                let Some(dir) = self.existing_dir(name, parent)? else {
                    return Ok(());
                };
                if rustix::fs::statat(&dir, target, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    let mut t = parent.to_vec();
                    t.push(target.to_vec());
                    self.remove_path(name, &t)?;
                }
                Ok(())
            }
        }
    }

    /// The parent directory of an entry, created (0755, like Docker) when missing.
    fn parent_dir(&self, name: &str, parent: &[Vec<u8>]) -> Result<OwnedFd, LayerError> {
        match self.existing_dir(name, parent)? {
            Some(fd) => Ok(fd),
            None => {
                let perm = std::os::unix::fs::PermissionsExt::from_mode(0o755);
                let h = self
                    .root
                    .mkdir_all(join(parent), &perm)
                    .map_err(|source| self.resolve_err(name, "create parent dirs", source))?;
                Ok(OwnedFd::from(h))
            }
        }
    }

    /// The parent directory resolved inside the root, `None` if it does not exist.
    fn existing_dir(&self, name: &str, parent: &[Vec<u8>]) -> Result<Option<OwnedFd>, LayerError> {
        match self.root.resolve(join(parent)) {
            Ok(h) => Ok(Some(OwnedFd::from(h))),
            Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(libc::ENOENT)) => Ok(None),
            Err(source) => Err(self.resolve_err(name, "resolve parent", source)),
        }
    }

    /// Runs `create` for `base`; if something is already there, removes it (recursively, not
    /// following it) and runs `create` once more.
    fn create_replacing<T>(
        &self,
        name: &str,
        parent: &[Vec<u8>],
        base: &[u8],
        op: &'static str,
        create: impl Fn() -> rustix::io::Result<T>,
    ) -> Result<T, LayerError> {
        match create() {
            Err(rustix::io::Errno::EXIST) => {
                self.remove_child(name, parent, base)?;
                create().map_err(|e| LayerError::entry(name, op, e))
            }
            r => r.map_err(|e| LayerError::entry(name, op, e)),
        }
    }

    fn remove_child(&self, name: &str, parent: &[Vec<u8>], base: &[u8]) -> Result<(), LayerError> {
        let mut t = parent.to_vec();
        t.push(base.to_vec());
        self.remove_path(name, &t)
    }

    /// Removes a path (recursively, never following its final component) inside the root.
    fn remove_path(&self, name: &str, comps: &[Vec<u8>]) -> Result<(), LayerError> {
        self.root
            .remove_all(join(comps))
            .map_err(|source| self.resolve_err(name, "remove existing", source))
    }

    fn finish_dir_times(&mut self) -> Result<(), LayerError> {
        for (comps, mtime) in self.dir_times.iter().rev() {
            let name = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            let Some((base, parent)) = comps.split_last() else {
                continue;
            };
            // The dir may have been replaced or whited out later in the layer: skip it then.
            let Ok(dir) = self.root.resolve(join(parent)) else {
                continue;
            };
            match rustix::fs::statat(&dir, base.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                _ => continue,
            }
            rustix::fs::utimensat(
                &dir,
                base.as_slice(),
                &times(*mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| LayerError::entry(&name, "set dir mtime", e))?;
        }
        Ok(())
    }

    fn resolve_err(
        &self,
        name: &str,
        op: &'static str,
        source: pathrs::error::Error,
    ) -> LayerError {
        LayerError::Resolve {
            name: name.to_string(),
            op,
            root: self.root_path.to_path_buf(),
            source,
        }
    }
}

/// Reopens an O_PATH directory handle as a real directory fd (needed for xattrs, readdir).
fn dir_fd(dir: &OwnedFd, name: &str) -> Result<OwnedFd, LayerError> {
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::entry(name, "open dir", e))
}
