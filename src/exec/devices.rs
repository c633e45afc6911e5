//! The container's `/dev`: a fresh tmpfs (the image's own /dev content, including any
//! planted symlinks such as `/dev/null -> /proc/sys/kernel/core_pattern`, is hidden
//! under it; SECURITY D4) with Docker's standard nodes, devpts, /dev/shm and the
//! /proc/self/fd symlinks.
//!
//! Devices (issue 16, README.md "Devices"): that tmpfs is `nodev`, like the rootfs and every
//! `RUN --mount`, so a node the RUN makes with mknod (it keeps CAP_MKNOD; the node still goes
//! into the layer) or finds in an archive, a base layer or a cache cannot be opened. The
//! standard nodes are bind-mounted from a small staging tmpfs that is mounted without `nodev`,
//! filled, made read-only and detached; nothing can be added to it. On cgroup v1 and hybrid
//! hosts the v1 devices controller enforces the same allowlist as a second layer (`cgroup`).

use std::fs::File;
use std::os::fd::AsFd;

use nix::mount::{MntFlags, MsFlags};
use pathrs::flags::OpenFlags;
use pathrs::Root;
use rustix::fs::{makedev, AtFlags, FileType, Mode, OFlags};

use super::error::ExecError;
use super::fdmount::{fd_path, mount_on, mount_point};
use super::stubs::StubKind;

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Staging directory for the standard nodes, gone before the command runs.
const STAGING: &str = ".rbuild-nodes";

/// (name, major, minor): Docker's default device set.
const NODES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const SYMLINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// Mounts and fills `/dev` (`/dev/shm` gets `shm_size` bytes); returns its directory fd
/// (our tmpfs, verified).
pub(crate) fn mount_dev(root: &Root, shm_size: u64) -> Result<File, ExecError> {
    let target = mount_point(root, "/dev", StubKind::Dir)?;
    mount_on(
        "/dev",
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    drop(target);
    let dev = root
        .open_subpath(
            "/dev",
            OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC,
        )
        .map_err(|e| ExecError::Setup(format!("open /dev: {e}")))?;
    let fs = rustix::fs::fstatfs(&dev).map_err(|e| ExecError::io("statfs /dev", e))?;
    if fs.f_type as i64 != TMPFS_MAGIC {
        return Err(ExecError::Setup(
            "/dev is not the tmpfs just mounted".into(),
        ));
    }
    let io = |what: &str, e: rustix::io::Errno| ExecError::io(format!("/dev/{what}"), e);
    standard_nodes(&dev)?;
    for (name, target) in SYMLINKS {
        rustix::fs::symlinkat(target, &dev, name).map_err(|e| io(name, e))?;
    }
    rustix::fs::mkdirat(&dev, "pts", Mode::from_raw_mode(0o755)).map_err(|e| io("pts", e))?;
    rustix::fs::mkdirat(&dev, "shm", Mode::from_raw_mode(0o1777)).map_err(|e| io("shm", e))?;
    rustix::fs::mkdirat(&dev, "mqueue", Mode::from_raw_mode(0o755)).map_err(|e| io("mqueue", e))?;

    let sub = |name: &str| {
        rustix::fs::openat(
            &dev,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(name, e))
    };
    mount_on(
        "/dev/pts",
        Some("devpts"),
        sub("pts")?,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_on(
        "/dev/shm",
        Some("shm"),
        sub("shm")?,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(&format!("mode=1777,size={shm_size}")),
    )?;
    mount_on(
        "/dev/mqueue",
        Some("mqueue"),
        sub("mqueue")?,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    Ok(dev)
}

/// Makes Docker's standard nodes in a staging tmpfs (without nodev), seals it read-only and
/// bind-mounts each node onto a file in `/dev`; then detaches the staging mount.
fn standard_nodes(dev: &File) -> Result<(), ExecError> {
    let io = |what: &str, e: rustix::io::Errno| ExecError::io(format!("/dev/{what}"), e);
    let open_dir = |dir: &File, name: &str| {
        rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(name, e))
    };
    if crate::rootless::in_user_namespace() {
        return host_nodes(dev);
    }
    rustix::fs::mkdirat(dev, STAGING, Mode::from_raw_mode(0o700)).map_err(|e| io(STAGING, e))?;
    let mount_point = open_dir(dev, STAGING)?;
    mount_on(
        "/dev staging",
        Some("tmpfs"),
        &mount_point,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=700,size=4k,nr_inodes=16"),
    )?;
    drop(mount_point);
    // Opened after the mount: this fd is the staging tmpfs's root, not the directory below.
    let staging = File::from(open_dir(dev, STAGING)?);
    for (name, major, minor) in NODES {
        rustix::fs::mknodat(
            &staging,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            makedev(major, minor),
        )
        .map_err(|e| io(name, e))?;
    }
    mount_on(
        "/dev staging (read-only)",
        None,
        &staging,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        None,
    )?;
    for (name, _, _) in NODES {
        let node = rustix::fs::openat(
            &staging,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(name, e))?;
        let stub = rustix::fs::openat(
            dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| io(name, e))?;
        let src = fd_path(node.as_fd());
        mount_on(
            &format!("/dev/{name}"),
            Some(&src),
            &stub,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    let path = fd_path(staging.as_fd());
    nix::mount::umount2(path.as_str(), MntFlags::MNT_DETACH)
        .map_err(|e| ExecError::io("detach /dev staging", e))?;
    drop(staging);
    rustix::fs::unlinkat(dev, STAGING, AtFlags::REMOVEDIR).map_err(|e| io(STAGING, e))
}

/// In a user namespace mknod of a device is refused: the standard nodes are bind-mounted from
/// the host's `/dev` instead (each checked to be the device it names), as rootless runc does.
fn host_nodes(dev: &File) -> Result<(), ExecError> {
    let io = |what: &str, e: rustix::io::Errno| ExecError::io(format!("/dev/{what}"), e);
    for (name, major, minor) in NODES {
        let host = format!("/dev/{name}");
        let node = rustix::fs::open(
            host.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ExecError::io(&host, e))?;
        let st = rustix::fs::fstat(&node).map_err(|e| ExecError::io(&host, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
            || st.st_rdev != makedev(major, minor)
        {
            return Err(ExecError::Setup(format!(
                "{host} is not the {major}:{minor} device"
            )));
        }
        let stub = rustix::fs::openat(
            dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| io(name, e))?;
        mount_on(
            &host,
            Some(&fd_path(node.as_fd())),
            &stub,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    Ok(())
}

/// An O_PATH fd of our `/dev/null` (for masking files), checked to be the 1:3 device.
pub(crate) fn dev_null(dev: &File) -> Result<std::os::fd::OwnedFd, ExecError> {
    let fd = rustix::fs::openat(
        dev,
        "null",
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ExecError::io("open /dev/null", e))?;
    let st = rustix::fs::fstat(fd.as_fd()).map_err(|e| ExecError::io("stat /dev/null", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
        || st.st_rdev != makedev(1, 3)
    {
        return Err(ExecError::Setup("/dev/null is not the null device".into()));
    }
    Ok(fd)
}
