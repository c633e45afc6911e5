//! The mount step: turns a snapshotter's [`MountSpec`]s into mounts, and their RAII guard.

use crate::snapshot::api::MountSpec;
use crate::snapshot::error::SnapshotError;
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The kernel copies mount data into one page.
const PAGE_LIMIT: usize = 4096;
/// `MountSpec::fstype` of a fuse-overlayfs view (the mount step runs the binary).
pub const FUSE_FSTYPE: &str = "fuse.fuse-overlayfs";
/// `MountSpec::fstype` of a copied view (`copy`): no mount at all, a directory tree.
pub const COPY_FSTYPE: &str = "rbuild.copy";

/// A mounted overlay. Dropping it unmounts (`MNT_DETACH`), and removes the mount point when it
/// was created just for this mount (read-only views).
#[derive(Debug)]
pub struct Mounted {
    path: PathBuf,
    remove_dir: bool,
    active: bool,
    /// A copied view: no mount to undo, but a tree to diff back (read-write) and delete.
    copied: Option<Copied>,
    /// A read-write fuse-overlayfs view: (parents newest first, upper dir), normalized after
    /// unmounting (`copy::normalize_fuse_upper`).
    fuse: Option<(Vec<PathBuf>, PathBuf)>,
}

/// What unmounting a copied view does.
#[derive(Debug)]
struct Copied {
    /// Parents, oldest first: what the diff compares with.
    lowers: Vec<PathBuf>,
    /// The upper dir the changes go to; `None` for a read-only view.
    upper: Option<PathBuf>,
    /// `copy::fence` taken once the view was copied.
    since: (i64, i64),
    /// `copy::dir_inodes` of the fresh view.
    dirs: std::collections::HashMap<PathBuf, u64>,
}

impl Mounted {
    /// The merged view.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts now, reporting errors that `Drop` has to ignore.
    pub fn unmount(mut self) -> Result<(), SnapshotError> {
        self.active = false;
        if let Some(c) = self.copied.take() {
            return finish_copy(&self.path, &c, self.remove_dir);
        }
        umount2(&self.path, MntFlags::MNT_DETACH)
            .map_err(|e| SnapshotError::io(&self.path, "umount", e.into()))?;
        if let Some((lowers, upper)) = self.fuse.take() {
            crate::snapshot::copy::normalize_fuse_upper(&lowers, &upper)?;
        }
        if self.remove_dir {
            std::fs::remove_dir(&self.path)
                .map_err(|e| SnapshotError::io(&self.path, "remove mount point", e))?;
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.active && self.copied.is_some() {
            // Dropped without `unmount` (an error path): the changes are not wanted.
            let _ = crate::snapshot::copy::clear_dir(&self.path);
            if self.remove_dir {
                let _ = std::fs::remove_dir(&self.path);
            }
        } else if self.active {
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
            if self.remove_dir {
                let _ = std::fs::remove_dir(&self.path);
            }
        }
    }
}

/// Mounts `specs` on `target` (an existing directory).
pub fn mount(specs: &[MountSpec], target: &Path) -> Result<Mounted, SnapshotError> {
    mount_all(specs, target, false)
}

/// Mounts `specs` on a fresh directory made under `parent`, removed again with the mount.
pub fn mount_fresh(specs: &[MountSpec], parent: &Path) -> Result<Mounted, SnapshotError> {
    let rand = crate::snapshot::ids::link_id()
        .map_err(|e| SnapshotError::io("/dev/urandom", "read", e))?;
    let target = parent.join(format!("mnt-{}", rand.to_ascii_lowercase()));
    std::fs::create_dir(&target).map_err(|e| SnapshotError::io(&target, "mkdir", e))?;
    mount_all(specs, &target, true).inspect_err(|_| {
        let _ = std::fs::remove_dir(&target);
    })
}

fn mount_all(
    specs: &[MountSpec],
    target: &Path,
    remove_dir: bool,
) -> Result<Mounted, SnapshotError> {
    // A view is one mount today (overlay, or a bind of a plain dir); stacked specs would need a
    // guard that unmounts each of them.
    let [spec] = specs else {
        return Err(SnapshotError::Mount {
            target: target.to_path_buf(),
            options: format!("{} mount specs", specs.len()),
            source: io::Error::new(io::ErrorKind::InvalidInput, "expected exactly one mount"),
        });
    };
    let mut m = mount_one(spec, target)?;
    m.remove_dir = remove_dir;
    Ok(m)
}

/// One mount. Relative option paths are resolved against `spec.base`: `chdir` is process-wide,
/// so it happens in a short-lived forked child; the child shares our mount namespace, so its
/// mount is ours, and no other thread of this process ever sees a changed working directory.
fn mount_one(spec: &MountSpec, target: &Path) -> Result<Mounted, SnapshotError> {
    match spec.fstype.as_str() {
        COPY_FSTYPE => return mount_copy(spec, target),
        FUSE_FSTYPE => return mount_fuse(spec, target),
        _ => {}
    }
    // nodev always: a device node from a layer, an archive or a RUN's mknod is data here,
    // never a way to a host device (issue 16; README.md "Devices"). Read-only views are
    // also nosuid: nothing runs from them but a RUN's bind mount, which is nosuid as well.
    // (A plain bind ignores these flags; the RUN's rootfs is remounted nodev in `exec::rootfs`.)
    let mut flags = MsFlags::MS_NODEV;
    let mut data = Vec::new();
    for o in &spec.options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    let options = data.join(",");
    let err = |source: io::Error| SnapshotError::Mount {
        target: target.to_path_buf(),
        options: options.clone(),
        source,
    };
    if options.len() >= PAGE_LIMIT {
        return Err(SnapshotError::OptionsTooLong {
            target: target.to_path_buf(),
            len: options.len(),
        });
    }
    let cstr =
        |b: &[u8]| CString::new(b).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)));
    let c_base = spec
        .base
        .as_ref()
        .map(|b| cstr(b.as_os_str().as_bytes()))
        .transpose()?;
    let c_target = cstr(target.as_os_str().as_bytes())?;
    let c_opts = cstr(options.as_bytes())?;
    let c_type = cstr(spec.fstype.as_bytes())?;
    let c_source = cstr(spec.source.as_bytes())?;
    let flags = flags.bits();

    // SAFETY: the child only calls async-signal-safe functions (chdir, mount, _exit) on data
    // prepared before the fork, so it is sound even if other threads exist.
    match unsafe { fork() }.map_err(|e| err(e.into()))? {
        ForkResult::Child => unsafe {
            if let Some(b) = &c_base {
                if libc::chdir(b.as_ptr()) != 0 {
                    libc::_exit(*libc::__errno_location() & 0xff);
                }
            }
            let rc = libc::mount(
                c_source.as_ptr(),
                c_target.as_ptr(),
                c_type.as_ptr(),
                flags,
                c_opts.as_ptr().cast(),
            );
            libc::_exit(if rc == 0 {
                0
            } else {
                *libc::__errno_location() & 0xff
            });
        },
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => break,
                Ok(WaitStatus::Exited(_, code)) => {
                    return Err(err(io::Error::from_raw_os_error(code)))
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Err(err(io::Error::other(format!(
                        "mount helper killed by {sig}"
                    ))))
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(err(e.into())),
            }
        },
    }
    Ok(Mounted {
        path: target.to_path_buf(),
        remove_dir: false,
        active: true,
        copied: None,
        fuse: None,
    })
}

/// `lowerdir=` (newest first, as overlay lists them) and `upperdir=` of a spec, resolved
/// against its base; `ro` specs have no upper dir.
fn spec_dirs(spec: &MountSpec) -> (Vec<PathBuf>, Option<PathBuf>) {
    let base = spec.base.clone().unwrap_or_default();
    let mut lowers = Vec::new();
    let mut upper = None;
    for o in spec.options.iter().flat_map(|o| o.split(',')) {
        if let Some(l) = o.strip_prefix("lowerdir=") {
            lowers.extend(l.split(':').map(|p| base.join(p)));
        } else if let Some(u) = o.strip_prefix("upperdir=") {
            upper = Some(base.join(u));
        }
    }
    (lowers, upper)
}

/// A copied view: parents oldest first, then the upper dir, copied onto `target`.
fn mount_copy(spec: &MountSpec, target: &Path) -> Result<Mounted, SnapshotError> {
    let (mut lowers, upper) = spec_dirs(spec);
    lowers.reverse();
    let mut all = lowers.clone();
    all.extend(upper.clone());
    let mut m = Mounted {
        path: target.to_path_buf(),
        remove_dir: false,
        active: true,
        copied: Some(Copied {
            lowers,
            upper,
            since: (0, 0),
            dirs: Default::default(),
        }),
        fuse: None,
    };
    crate::snapshot::copy::merge(&all, target)?;
    let since = crate::snapshot::copy::fence(target.parent().unwrap_or(target))?;
    let dirs = crate::snapshot::copy::dir_inodes(target);
    if let Some(c) = m.copied.as_mut() {
        c.since = since;
        c.dirs = dirs;
    }
    Ok(m)
}

/// Unmounting a copied view: the changes against the parents replace the upper dir's content.
fn finish_copy(path: &Path, c: &Copied, remove_dir: bool) -> Result<(), SnapshotError> {
    use crate::snapshot::copy;
    if let Some(upper) = &c.upper {
        let base = path.with_extension("base");
        copy::remove_any(&base)?;
        std::fs::create_dir(&base).map_err(|e| SnapshotError::io(&base, "mkdir", e))?;
        let res = copy::merge(&c.lowers, &base).and_then(|()| {
            copy::clear_dir(upper)?;
            copy::diff(&base, path, upper, c.since, &c.dirs)
        });
        copy::remove_any(&base)?;
        res?;
    }
    copy::clear_dir(path)?;
    if remove_dir {
        std::fs::remove_dir(path).map_err(|e| SnapshotError::io(path, "remove mount point", e))?;
    }
    Ok(())
}

/// Runs fuse-overlayfs (it returns once the mount is up and serves it from the background);
/// unmounting is the same `umount2` as for a kernel overlay, which ends the daemon.
fn mount_fuse(spec: &MountSpec, target: &Path) -> Result<Mounted, SnapshotError> {
    let bin = crate::snapshot::driver::fuse_binary()?;
    let options: Vec<&str> = spec
        .options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "ro")
        .collect();
    let mut cmd = std::process::Command::new(&bin);
    if let Some(b) = &spec.base {
        cmd.current_dir(b);
    }
    let out = cmd
        .arg("-o")
        .arg(options.join(","))
        .arg(target)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| SnapshotError::io(&bin, "run", e))?;
    if !out.status.success() {
        return Err(SnapshotError::Mount {
            target: target.to_path_buf(),
            options: options.join(","),
            source: io::Error::other(format!(
                "fuse-overlayfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        });
    }
    let (lowers, upper) = spec_dirs(spec);
    Ok(Mounted {
        path: target.to_path_buf(),
        remove_dir: false,
        active: true,
        copied: None,
        fuse: upper.map(|u| (lowers, u)),
    })
}
