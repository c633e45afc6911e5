//! Mounting by file descriptor: mount targets are resolved inside the rootfs with
//! `pathrs` into O_PATH handles, and `mount(2)` is given `/proc/self/fd/N` for them, so
//! an image-supplied symlink can never redirect a mount outside the rootfs (SECURITY D4,
//! runc's fd-based mount targets for CVE-2025-52881 / CVE-2021-30465).

use std::os::fd::{AsFd, AsRawFd};

use nix::mount::MsFlags;
use pathrs::{Handle, Root};
use rustix::fs::FileType;

use super::error::ExecError;
use super::stubs::StubKind;

/// `/proc/self/fd/N` for `fd` (the helper still sees the host's /proc).
pub(crate) fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// Resolves `path` inside `root` (symlinks followed, but only inside it) and checks
/// that it is the expected kind of mount point.
pub(crate) fn mount_point(root: &Root, path: &str, kind: StubKind) -> Result<Handle, ExecError> {
    let handle = root
        .resolve(path)
        .map_err(|e| ExecError::Setup(format!("mount point {path}: {e}")))?;
    let st =
        rustix::fs::fstat(handle.as_fd()).map_err(|e| ExecError::io(format!("stat {path}"), e))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    let ok = match kind {
        StubKind::Dir => ft == FileType::Directory,
        // Any non-directory can be bind-mounted over; a directory cannot take a file.
        StubKind::File => ft != FileType::Directory,
    };
    if !ok {
        let want = if kind == StubKind::Dir {
            "a directory"
        } else {
            "a file"
        };
        return Err(ExecError::Setup(format!(
            "mount point {path} is not {want}"
        )));
    }
    Ok(handle)
}

/// `mount(2)` onto the object behind `target`.
pub(crate) fn mount_on(
    what: &str,
    source: Option<&str>,
    target: impl AsFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ExecError> {
    // Borrowed, so `target` stays open until mount(2) has resolved the path.
    let path = fd_path(target.as_fd());
    nix::mount::mount(source, path.as_str(), fstype, flags, data)
        .map_err(|e| ExecError::io(format!("mount {what}"), e))
}

/// Bind-mounts `source` onto `path` (resolved in `root`), read-only if asked.
pub(crate) fn bind(
    root: &Root,
    source: impl AsFd,
    path: &str,
    kind: StubKind,
    readonly: bool,
    extra_flags: MsFlags,
) -> Result<(), ExecError> {
    let target = mount_point(root, path, kind)?;
    let src = fd_path(source.as_fd());
    mount_on(
        path,
        Some(&src),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    if readonly || !extra_flags.is_empty() {
        remount_bind(root, path, readonly, extra_flags)?;
    }
    Ok(())
}

/// Changes the flags of the bind mount now at `path`.
fn remount_bind(
    root: &Root,
    path: &str,
    readonly: bool,
    extra_flags: MsFlags,
) -> Result<(), ExecError> {
    // Re-resolved: the earlier handle points below the new mount, not at it.
    let top = root
        .resolve(path)
        .map_err(|e| ExecError::Setup(format!("mount point {path}: {e}")))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra_flags;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    mount_on(path, None, &top, None, flags, None)
}
