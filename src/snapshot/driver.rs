//! How snapshots are mounted, chosen once at start (docs/rootless.md "Snapshotters"):
//! kernel overlayfs (with `userxattr` inside a user namespace), else fuse-overlayfs, else
//! copying. All three keep the same overlay2 dirs and the same upper-dir form (whiteouts as
//! char 0/0 devices, opaque dirs by xattr), so layers, the store and `prune` do not care.

use crate::snapshot::error::SnapshotError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Overlay options inside a user namespace: `userxattr` conflicts with `redirect_dir=off`
/// (which still follows redirects); `nofollow` neither makes nor follows them, which is what
/// the layer differ needs (docs/rootless.md).
pub(crate) const USERNS_OVERLAY_FEATURES: &str =
    "index=off,redirect_dir=nofollow,metacopy=off,userxattr";

/// Environment override of the choice: `overlay`, `fuse-overlayfs` or `copy`.
pub const SNAPSHOTTER_ENV: &str = "RBUILD_SNAPSHOTTER";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Kernel overlayfs; `userxattr` when mounted inside a user namespace (kernel 5.11+), which
    /// makes overlay keep its bookkeeping in `user.overlay.*` instead of `trusted.overlay.*`.
    Overlay { userxattr: bool },
    /// The fuse-overlayfs binary (Debian package `fuse-overlayfs`; needs `/dev/fuse`).
    FuseOverlayfs,
    /// Read-write views are copies of the layers, diffed back into the upper dir on unmount.
    Copy,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay { userxattr: false } => "overlayfs",
            Driver::Overlay { userxattr: true } => "overlayfs (userxattr)",
            Driver::FuseOverlayfs => "fuse-overlayfs",
            Driver::Copy => "copy",
        }
    }
}

static CURRENT: OnceLock<Driver> = OnceLock::new();

/// The driver chosen at start ([`select`]); kernel overlay when nothing was chosen (root, tests
/// that open a snapshotter directly).
pub fn current() -> Driver {
    *CURRENT
        .get()
        .unwrap_or(&Driver::Overlay { userxattr: false })
}

/// Chooses the driver for this process: `RBUILD_SNAPSHOTTER` if set (an error when it cannot
/// work here), else kernel overlay, fuse-overlayfs, copy, the first that mounts a probe under
/// `scratch`. `in_userns` asks for `userxattr`.
pub fn select(scratch: &Path, in_userns: bool) -> Result<Driver, SnapshotError> {
    let forced = std::env::var(SNAPSHOTTER_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let kernel = Driver::Overlay {
        userxattr: in_userns,
    };
    let driver = match forced.as_deref() {
        Some("overlay") | Some("overlayfs") => {
            probe_kernel(scratch, in_userns)?;
            kernel
        }
        Some("fuse-overlayfs") => {
            probe_fuse()?;
            Driver::FuseOverlayfs
        }
        Some("copy") => Driver::Copy,
        Some(other) => {
            return Err(SnapshotError::Unsupported(format!(
                "{SNAPSHOTTER_ENV}={other}: expected overlay, fuse-overlayfs or copy"
            )))
        }
        None if !in_userns => kernel,
        None => {
            if probe_kernel(scratch, true).is_ok() {
                kernel
            } else if probe_fuse().is_ok() {
                Driver::FuseOverlayfs
            } else {
                Driver::Copy
            }
        }
    };
    let _ = CURRENT.set(driver);
    Ok(current())
}

/// Mounts a one-file overlay under `scratch` and unmounts it again.
fn probe_kernel(scratch: &Path, userxattr: bool) -> Result<(), SnapshotError> {
    let dir = scratch.join(format!(".probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let res = (|| {
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(|e| SnapshotError::io(dir.join(d), "mkdir", e))?;
        }
        let mut opts = format!(
            "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
            dir.display()
        );
        if userxattr {
            opts.push(',');
            opts.push_str(USERNS_OVERLAY_FEATURES);
        }
        nix::mount::mount(
            Some("overlay"),
            &dir.join("merged"),
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| {
            SnapshotError::Unsupported(format!(
                "the kernel refuses overlayfs{} here ({e}); rbuild falls back to fuse-overlayfs or copying (set {SNAPSHOTTER_ENV}=fuse-overlayfs or copy; docs/rootless.md)",
                if userxattr { " in a user namespace" } else { "" }
            ))
        })?;
        let _ = nix::mount::umount2(&dir.join("merged"), nix::mount::MntFlags::MNT_DETACH);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    res
}

/// The fuse-overlayfs binary and an openable `/dev/fuse`.
fn probe_fuse() -> Result<(), SnapshotError> {
    fuse_binary()?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| {
            SnapshotError::Unsupported(format!(
                "/dev/fuse: {e}: fuse-overlayfs needs it (in a container: `--device /dev/fuse`; docs/rootless.md)"
            ))
        })?;
    Ok(())
}

/// `fuse-overlayfs` from PATH.
pub(crate) fn fuse_binary() -> Result<PathBuf, SnapshotError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("fuse-overlayfs"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            SnapshotError::Unsupported(
                "fuse-overlayfs not found in PATH: install Debian's fuse-overlayfs package".into(),
            )
        })
}
