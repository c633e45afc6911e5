//! The copying snapshotter's mount step (the last resort of docs/rootless.md "Snapshotters"):
//! a view is a real directory tree made by copying the layers in order, and a read-write view is
//! diffed against its parents when unmounted, the changes written into the upper dir in overlay's
//! form (char 0/0 whiteouts), so the layer differ reads it as it reads an overlay upper dir.
//!
//! A regular file counts as unchanged when its type, mode, owner, size, mtime and xattrs are
//! equal (as rsync's quick check); copies keep nanosecond mtimes, so a rewrite shows.

use crate::snapshot::error::SnapshotError;
use nix::sys::stat::{Mode, SFlag};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Overlay's opaque-directory xattrs (root, user namespace, fuse-overlayfs).
const OPAQUE: [&str; 3] = [
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |e| SnapshotError::io(path, op, e)
}

fn nix_io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(nix::Error) -> SnapshotError + 'a {
    move |e| SnapshotError::io(path, op, e.into())
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    OPAQUE
        .iter()
        .any(|x| matches!(xattr::get(p, x), Ok(Some(v)) if v == b"y"))
}

/// Copies `layers` (oldest first) onto `target`, applying their whiteouts and opaque dirs.
pub(crate) fn merge(layers: &[PathBuf], target: &Path) -> Result<(), SnapshotError> {
    for layer in layers {
        let mut links = HashMap::new();
        merge_dir(layer, target, &mut links)?;
    }
    Ok(())
}

fn merge_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), SnapshotError> {
    for entry in fs::read_dir(src).map_err(io(src, "read dir"))? {
        let entry = entry.map_err(io(src, "read dir"))?;
        let s = entry.path();
        let d = dst.join(entry.file_name());
        let m = fs::symlink_metadata(&s).map_err(io(&s, "stat"))?;
        if is_whiteout(&m) {
            remove_any(&d)?;
            continue;
        }
        if m.is_dir() {
            match fs::symlink_metadata(&d) {
                Ok(dm) if dm.is_dir() => {
                    if is_opaque(&s) {
                        remove_any(&d)?;
                        fs::create_dir(&d).map_err(io(&d, "mkdir"))?;
                    }
                }
                Ok(_) => {
                    remove_any(&d)?;
                    fs::create_dir(&d).map_err(io(&d, "mkdir"))?;
                }
                Err(_) => fs::create_dir(&d).map_err(io(&d, "mkdir"))?,
            }
            merge_dir(&s, &d, links)?;
            copy_meta(&s, &d, &m)?;
        } else {
            remove_any(&d)?;
            copy_entry(&s, &d, &m, links)?;
        }
    }
    Ok(())
}

/// Writes into `upper` what turns `base` into `changed`: new and changed entries, char 0/0
/// whiteouts for deleted ones, and the parent dirs of both. `upper` must be empty.
pub(crate) fn diff(
    base: &Path,
    changed: &Path,
    upper: &Path,
    since: (i64, i64),
    dirs: &HashMap<PathBuf, u64>,
) -> Result<(), SnapshotError> {
    let mut w = Differ {
        links: HashMap::new(),
        since,
        dirs,
    };
    w.dir(base, changed, upper, Path::new("")).map(|_| ())
}

/// A file system timestamp strictly after every change the copy made: entries whose ctime is
/// not before it were touched through the view (overlay would have copied them up, even when
/// their content and attributes ended up equal, as a RUN's mount-point stubs leave `/etc`).
pub(crate) fn fence(dir: &Path) -> Result<(i64, i64), SnapshotError> {
    let probe = dir.join(format!(".fence-{}", std::process::id()));
    let stamp = || -> Result<(i64, i64), SnapshotError> {
        fs::write(&probe, b"").map_err(io(&probe, "write"))?;
        let m = fs::symlink_metadata(&probe).map_err(io(&probe, "stat"));
        let _ = fs::remove_file(&probe);
        let m = m?;
        Ok((m.ctime(), m.ctime_nsec()))
    };
    let first = stamp()?;
    // The kernel's file times tick coarsely (a jiffy); wait for the next tick so nothing the
    // copy wrote shares the fence's timestamp. Bounded: the clock always moves on.
    loop {
        let t = stamp()?;
        if t > first {
            return Ok(t);
        }
        std::thread::yield_now();
    }
}

/// Inode numbers of the view's directories right after it was copied (`dir_inodes`): a
/// directory with another inode later was deleted and made anew, which overlay records as an
/// opaque directory, and so does this differ.
pub(crate) fn dir_inodes(root: &Path) -> HashMap<PathBuf, u64> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                if let (Ok(m), Ok(rel)) = (fs::symlink_metadata(&p), p.strip_prefix(root)) {
                    out.insert(rel.to_path_buf(), m.ino());
                }
                stack.push(p);
            }
        }
    }
    out
}

struct Differ<'a> {
    links: HashMap<(u64, u64), PathBuf>,
    since: (i64, i64),
    dirs: &'a HashMap<PathBuf, u64>,
}

impl Differ<'_> {
    /// Whether the view's dir at `c` (relative `rel`) is not the one the copy made.
    /// A freed inode number may be handed out again at once, so a birth time after the fence
    /// (where the file system records one) counts too.
    fn recreated(&self, rel: &Path, path: &Path, c: &fs::Metadata) -> bool {
        if self.dirs.get(rel).is_some_and(|ino| *ino != c.ino()) {
            return true;
        }
        rustix::fs::statx(
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::BTIME,
        )
        .ok()
        .filter(|x| x.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0)
        .is_some_and(|x| (x.stx_btime.tv_sec, i64::from(x.stx_btime.tv_nsec)) >= self.since)
    }

    fn touched(&self, m: &fs::Metadata) -> bool {
        (m.ctime(), m.ctime_nsec()) >= self.since
    }

    /// Returns whether anything below differed (so the caller keeps `upper`).
    fn dir(
        &mut self,
        base: &Path,
        changed: &Path,
        upper: &Path,
        rel: &Path,
    ) -> Result<bool, SnapshotError> {
        let mut any = false;
        for entry in fs::read_dir(changed).map_err(io(changed, "read dir"))? {
            let entry = entry.map_err(io(changed, "read dir"))?;
            let c = entry.path();
            let r = rel.join(entry.file_name());
            let b = base.join(entry.file_name());
            let u = upper.join(entry.file_name());
            let cm = fs::symlink_metadata(&c).map_err(io(&c, "stat"))?;
            let bm = fs::symlink_metadata(&b).ok();
            if cm.is_dir() && bm.is_some() && self.recreated(&r, &c, &cm) {
                // Deleted and made anew: opaque, with all of its new content.
                fs::create_dir(&u).map_err(io(&u, "mkdir"))?;
                merge_dir(&c, &u, &mut self.links)?;
                set_opaque(&u)?;
                copy_meta(&c, &u, &cm)?;
                any = true;
                continue;
            }
            if cm.is_dir() && bm.as_ref().is_some_and(|m| m.is_dir()) {
                let meta_same =
                    !self.touched(&cm) && bm.as_ref().is_some_and(|bm| same(&b, bm, &c, &cm));
                fs::create_dir(&u).map_err(io(&u, "mkdir"))?;
                let below = self.dir(&b, &c, &u, &r)?;
                if below || !meta_same {
                    copy_meta(&c, &u, &cm)?;
                    any = true;
                } else {
                    fs::remove_dir(&u).map_err(io(&u, "rmdir"))?;
                }
                continue;
            }
            if !self.touched(&cm) && bm.as_ref().is_some_and(|bm| same(&b, bm, &c, &cm)) {
                continue;
            }
            any = true;
            if cm.is_dir() {
                // New, or replacing a non-directory: the whole tree is new.
                fs::create_dir(&u).map_err(io(&u, "mkdir"))?;
                merge_dir(&c, &u, &mut self.links)?;
                copy_meta(&c, &u, &cm)?;
            } else {
                copy_entry(&c, &u, &cm, &mut self.links)?;
            }
        }
        if base.is_dir() {
            for entry in fs::read_dir(base).map_err(io(base, "read dir"))? {
                let entry = entry.map_err(io(base, "read dir"))?;
                let name = entry.file_name();
                if fs::symlink_metadata(changed.join(&name)).is_err() {
                    whiteout(&upper.join(&name))?;
                    any = true;
                }
            }
        }
        Ok(any)
    }
}

fn whiteout(p: &Path) -> Result<(), SnapshotError> {
    nix::sys::stat::mknod(p, SFlag::S_IFCHR, Mode::empty(), 0).map_err(nix_io(p, "mknod whiteout"))
}

fn same(bp: &Path, b: &fs::Metadata, cp: &Path, c: &fs::Metadata) -> bool {
    if b.mode() != c.mode() || b.uid() != c.uid() || b.gid() != c.gid() {
        return false;
    }
    if !b.is_dir()
        && (b.size() != c.size() || b.mtime() != c.mtime() || b.mtime_nsec() != c.mtime_nsec())
    {
        return false;
    }
    if b.file_type().is_symlink() && fs::read_link(bp).ok() != fs::read_link(cp).ok() {
        return false;
    }
    if (b.file_type().is_char_device() || b.file_type().is_block_device()) && b.rdev() != c.rdev() {
        return false;
    }
    xattrs(bp) == xattrs(cp)
}

fn xattrs(p: &Path) -> Vec<(std::ffi::OsString, Option<Vec<u8>>)> {
    let mut v: Vec<_> = xattr::list(p)
        .map(|names| {
            names
                .filter(|n| !skip(n))
                .map(|n| {
                    let val = xattr::get(p, &n).ok().flatten();
                    (n, val)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn skip(name: &OsStr) -> bool {
    let n = name.to_string_lossy();
    n.starts_with("trusted.overlay.")
        || n.starts_with("user.overlay.")
        || n.starts_with("user.fuseoverlayfs.")
}

/// Copies one non-directory (hard links within one copy pass stay hard links).
fn copy_entry(
    s: &Path,
    d: &Path,
    m: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), SnapshotError> {
    let ft = m.file_type();
    if m.nlink() > 1 && !ft.is_dir() {
        if let Some(first) = links.get(&(m.dev(), m.ino())) {
            return fs::hard_link(first, d).map_err(io(d, "link"));
        }
        links.insert((m.dev(), m.ino()), d.to_path_buf());
    }
    if ft.is_symlink() {
        let t = fs::read_link(s).map_err(io(s, "readlink"))?;
        std::os::unix::fs::symlink(&t, d).map_err(io(d, "symlink"))?;
    } else if ft.is_file() {
        fs::copy(s, d).map_err(io(d, "copy"))?;
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            SFlag::S_IFSOCK
        };
        nix::sys::stat::mknod(d, kind, Mode::from_bits_truncate(0o600), m.rdev())
            .map_err(nix_io(d, "mknod"))?;
    }
    copy_meta(s, d, m)
}

/// Owner, mode, xattrs and times of `s` onto `d` (not following symlinks).
fn copy_meta(s: &Path, d: &Path, m: &fs::Metadata) -> Result<(), SnapshotError> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        d,
        Some(nix::unistd::Uid::from_raw(m.uid())),
        Some(nix::unistd::Gid::from_raw(m.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(nix_io(d, "chown"))?;
    if !m.file_type().is_symlink() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io(d, "chmod"))?;
        for (name, value) in xattrs(s) {
            if let Some(v) = value {
                xattr::set(d, &name, &v).map_err(io(d, "setxattr"))?;
            }
        }
    }
    let ts = |sec: i64, nsec: i64| nix::sys::time::TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        d,
        &ts(m.atime(), m.atime_nsec()),
        &ts(m.mtime(), m.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_io(d, "utimensat"))
}

/// fuse-overlayfs marks every directory it creates opaque and leaves a whiteout for every
/// removed entry, even where nothing below shows through; kernel overlay does neither. Both
/// mean nothing there, so they are dropped, and the layer has the bytes kernel overlay gives.
pub(crate) fn normalize_fuse_upper(lowers: &[PathBuf], upper: &Path) -> Result<(), SnapshotError> {
    normalize_dir(lowers, upper, Path::new(""))
}

fn normalize_dir(lowers: &[PathBuf], upper: &Path, rel: &Path) -> Result<(), SnapshotError> {
    let dir = upper.join(rel);
    for entry in fs::read_dir(&dir).map_err(io(&dir, "read dir"))? {
        let entry = entry.map_err(io(&dir, "read dir"))?;
        let r = rel.join(entry.file_name());
        let p = entry.path();
        let m = fs::symlink_metadata(&p).map_err(io(&p, "stat"))?;
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if m.is_file() && name.starts_with(b".wh.") {
            // fuse-overlayfs' file forms of opaque dirs and whiteouts: made overlay's forms.
            fs::remove_file(&p).map_err(io(&p, "remove"))?;
            if name == b".wh..wh..opq" {
                if lower_has(lowers, rel) {
                    set_opaque(&dir)?;
                }
            } else {
                let target = rel.join(OsStr::from_bytes(&name[4..]));
                if lower_has(lowers, &target) && !upper.join(&target).exists() {
                    whiteout(&upper.join(&target))?;
                }
            }
            continue;
        }
        if is_whiteout(&m) && !lower_has(lowers, &r) {
            fs::remove_file(&p).map_err(io(&p, "remove whiteout"))?;
        } else if m.is_dir() {
            if is_opaque(&p) && !lower_has(lowers, &r) {
                for x in OPAQUE {
                    let _ = xattr::remove(&p, x);
                }
            }
            let mtime = (m.atime(), m.atime_nsec(), m.mtime(), m.mtime_nsec());
            normalize_dir(lowers, upper, &r)?;
            // Removing a whiteout changed the dir's mtime; the RUN's is what counts.
            let ts = |sec: i64, nsec: i64| nix::sys::time::TimeSpec::new(sec, nsec);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &ts(mtime.0, mtime.1),
                &ts(mtime.2, mtime.3),
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(nix_io(&p, "utimensat"))?;
        }
    }
    Ok(())
}

/// Marks `dir` opaque the way the kernel's overlay reads it here (`trusted.*` as root,
/// `user.*` in a user namespace, where `trusted.*` is refused).
fn set_opaque(dir: &Path) -> Result<(), SnapshotError> {
    match xattr::set(dir, OPAQUE[0], b"y") {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            xattr::set(dir, OPAQUE[1], b"y").map_err(io(dir, "setxattr"))
        }
        other => other.map_err(io(dir, "setxattr")),
    }
}

/// Whether `rel` exists in the parents (newest first), honouring their whiteouts and opaque dirs.
fn lower_has(lowers: &[PathBuf], rel: &Path) -> bool {
    for l in lowers {
        match fs::symlink_metadata(l.join(rel)) {
            Ok(m) => return !is_whiteout(&m),
            Err(_) => {
                // Lower layers show through only if no ancestor here hides them.
                let mut hidden = false;
                for a in rel.ancestors().skip(1) {
                    if a.as_os_str().is_empty() {
                        break;
                    }
                    if let Ok(m) = fs::symlink_metadata(l.join(a)) {
                        if is_whiteout(&m) || !m.is_dir() || is_opaque(&l.join(a)) {
                            hidden = true;
                            break;
                        }
                    }
                }
                if hidden {
                    return false;
                }
            }
        }
    }
    false
}

/// Removes whatever is at `p` (nothing there is fine).
pub(crate) fn remove_any(p: &Path) -> Result<(), SnapshotError> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(io(p, "remove")),
        Ok(_) => fs::remove_file(p).map_err(io(p, "remove")),
        Err(_) => Ok(()),
    }
}

/// Empties directory `p`.
pub(crate) fn clear_dir(p: &Path) -> Result<(), SnapshotError> {
    for entry in fs::read_dir(p).map_err(io(p, "read dir"))? {
        let entry = entry.map_err(io(p, "read dir"))?;
        remove_any(&entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_then_diff_gives_the_changes_and_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, view, base, upper) = (
            t.path().join("l1"),
            t.path().join("l2"),
            t.path().join("view"),
            t.path().join("base"),
            t.path().join("upper"),
        );
        for d in [&l1, &l2, &view, &base, &upper] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir(l1.join("etc")).unwrap();
        fs::write(l1.join("etc/a"), "a").unwrap();
        fs::write(l1.join("etc/b"), "b").unwrap();
        fs::write(l1.join("gone"), "x").unwrap();
        whiteout(&l2.join("gone")).unwrap();
        merge(&[l1.clone(), l2.clone()], &view).unwrap();
        merge(&[l1, l2], &base).unwrap();
        assert!(!view.join("gone").exists());
        assert_eq!(fs::read_to_string(view.join("etc/a")).unwrap(), "a");
        fs::remove_file(view.join("etc/b")).unwrap();
        fs::write(view.join("new"), "n").unwrap();
        let since = fence(t.path()).unwrap();
        fs::write(view.join("etc/a"), "changed").unwrap();
        diff(&base, &view, &upper, since, &dir_inodes(&view)).unwrap();
        assert_eq!(fs::read_to_string(upper.join("etc/a")).unwrap(), "changed");
        assert!(is_whiteout(
            &fs::symlink_metadata(upper.join("etc/b")).unwrap()
        ));
        assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "n");
        let mut names: Vec<_> = fs::read_dir(&upper)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["etc", "new"]);
    }
}
