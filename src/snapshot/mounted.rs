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

/// A mounted overlay. Dropping it unmounts (`MNT_DETACH`), and removes the mount point when it
/// was created just for this mount (read-only views).
#[derive(Debug)]
pub struct Mounted {
    path: PathBuf,
    remove_dir: bool,
    active: bool,
}

impl Mounted {
    /// The merged view.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts now, reporting errors that `Drop` has to ignore.
    pub fn unmount(mut self) -> Result<(), SnapshotError> {
        self.active = false;
        umount2(&self.path, MntFlags::MNT_DETACH)
            .map_err(|e| SnapshotError::io(&self.path, "umount", e.into()))?;
        if self.remove_dir {
            std::fs::remove_dir(&self.path)
                .map_err(|e| SnapshotError::io(&self.path, "remove mount point", e))?;
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.active {
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
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in &spec.options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
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
    })
}
