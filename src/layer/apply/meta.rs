//! An entry's metadata as the applier sets it: mode, owner, mtime and xattrs from the header and
//! its PAX records, and the logical size a PAX sparse map declares.

use crate::layer::error::LayerError;
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Header fields that PAX records may override.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The logical size a PAX sparse map declares (`GNU.sparse.realsize`, or `GNU.sparse.size`
    /// in format 0.x), counted against the expansion cap even though the data is not expanded.
    pub(super) sparse_size: Option<u64>,
}

impl Meta {
    /// Mode, uid/gid, mtime (PAX-aware) and `SCHILY.xattr.*` records of an entry.
    pub(super) fn read<R: Read>(
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<Meta, LayerError> {
        let h = entry.header();
        let mode = h
            .mode()
            .map_err(|e| LayerError::entry(name, "mode field", e))?
            & 0o7777;
        let mut uid = h
            .uid()
            .map_err(|e| LayerError::entry(name, "uid field", e))?;
        let mut gid = h
            .gid()
            .map_err(|e| LayerError::entry(name, "gid field", e))?;
        let mut mtime = Timespec {
            tv_sec: h
                .mtime()
                .map_err(|e| LayerError::entry(name, "mtime field", e))? as i64,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        let mut sparse_size = None;
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| LayerError::entry(name, "PAX header", e))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| LayerError::entry(name, "PAX record", e))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    "GNU.sparse.realsize" | "GNU.sparse.size" => {
                        // Unparsable counts as huge: such an entry is refused, not trusted.
                        sparse_size = Some(text.parse().unwrap_or(u64::MAX));
                    }
                    "uid" => uid = text.parse().unwrap_or(uid),
                    "gid" => gid = text.parse().unwrap_or(gid),
                    "mtime" => {
                        if let Some(ts) = parse_pax_time(text) {
                            mtime = ts;
                        }
                    }
                    _ => {
                        if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                            // Overlay bookkeeping from an untrusted tar could redirect lookups.
                            if !x.starts_with("trusted.overlay.") && !x.starts_with("user.overlay.")
                            {
                                xattrs.push((x.as_bytes().to_vec(), value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid: u32::try_from(uid).unwrap_or(0),
            gid: u32::try_from(gid).unwrap_or(0),
            mtime,
            xattrs,
            sparse_size,
        })
    }

    /// Owner, then mode (chown clears setuid), then xattrs, on an open file or directory.
    pub(super) fn set_on_fd(
        &self,
        name: &str,
        fd: BorrowedFd<'_>,
        same_owner: bool,
    ) -> Result<(), LayerError> {
        let meta = self;
        if same_owner {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            )
            .map_err(|e| LayerError::entry(name, "chown", e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| LayerError::entry(name, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            let res =
                rustix::fs::fsetxattr(fd, key.as_slice(), value, rustix::fs::XattrFlags::empty());
            ignore_unsupported_xattr(res).map_err(|e| LayerError::entry(name, "setxattr", e))?;
        }
        Ok(())
    }

    /// Attributes of a symlink/device/fifo just created as `base` in `dir`.
    pub(super) fn set_at(
        &self,
        name: &str,
        dir: &OwnedFd,
        base: &[u8],
        chmod: bool,
        same_owner: bool,
    ) -> Result<(), LayerError> {
        let meta = self;
        if same_owner {
            rustix::fs::chownat(
                dir,
                base,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| LayerError::entry(name, "lchown", e))?;
        }
        if chmod {
            // Not a symlink (we just mknod'ed it), so following is moot here.
            rustix::fs::chmodat(dir, base, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| LayerError::entry(name, "chmod", e))?;
        }
        if !meta.xattrs.is_empty() {
            // l*xattr through the parent fd's /proc path: the final component is not followed.
            let mut path =
                format!("/proc/self/fd/{}/", std::os::fd::AsRawFd::as_raw_fd(dir)).into_bytes();
            path.extend_from_slice(base);
            let path = Path::new(OsStr::from_bytes(&path));
            for (key, value) in &meta.xattrs {
                let res = rustix::fs::lsetxattr(
                    path,
                    key.as_slice(),
                    value,
                    rustix::fs::XattrFlags::empty(),
                );
                ignore_unsupported_xattr(res)
                    .map_err(|e| LayerError::entry(name, "lsetxattr", e))?;
            }
        }
        rustix::fs::utimensat(dir, base, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::entry(name, "set mtime", e))
    }
}

fn ignore_unsupported_xattr(res: rustix::io::Result<()>) -> rustix::io::Result<()> {
    match res {
        // Filesystems without xattrs, or user.* on special files: Docker skips these too.
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::PERM => Ok(()),
        other => other,
    }
}

pub(super) fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// PAX `mtime` is decimal seconds with an optional fraction.
fn parse_pax_time(text: &str) -> Option<Timespec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        let n: i64 = digits.parse().ok()?;
        n * 10i64.pow(9 - digits.len() as u32)
    };
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = parse_pax_time("1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1700000000, 500_000_000));
        let t = parse_pax_time("12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        assert!(parse_pax_time("x").is_none());
    }
}
