//! Building the container's filesystem view in the helper's private mount namespace and
//! switching into it: self-bind of the rootfs, /dev, the /etc files, /proc (with Docker's
//! masked and read-only paths), read-only /sys, the `RUN --mount`s, then `pivot_root`.
//!
//! Every target is resolved inside the rootfs (see `fdmount`). The image cannot race us:
//! none of its code runs until all of this is done.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use pathrs::error::ErrorKind;
use pathrs::Root;
use rustix::fs::{FileType, Mode, OFlags};

use super::cgroup_limits::DEFAULT_TMPFS_SIZE;
use super::devices::{dev_null, mount_dev};
use super::error::ExecError;
use super::etc_files;
use super::fdmount::{bind, mount_on};
use super::protocol::HelperRequest;
use super::secret::read_secret;
use super::spec::{Mount, MountKind};
use super::stubs::StubKind;

/// Docker's default read-only /proc paths.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default masked paths (hidden under /dev/null or an empty read-only tmpfs).
const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Sets everything up and pivots into the rootfs; afterwards cwd is the new `/`.
pub(crate) fn setup(req: &HelperRequest) -> Result<(), ExecError> {
    let spec = &req.spec;
    let rootfs = spec.rootfs.as_path();
    // A self-bind makes the rootfs a mount point of its own, which pivot_root requires.
    nix::mount::mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| ExecError::io(format!("bind {} onto itself", rootfs.display()), e))?;
    // nodev: a device node in the image, an ADD archive or made by mknod in the RUN stays
    // unopenable (it still goes into the layer). Not nosuid: setuid programs of the image work.
    nix::mount::mount(
        None::<&str>,
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| ExecError::io(format!("remount {} nodev", rootfs.display()), e))?;
    let root = Root::open(rootfs).map_err(|e| ExecError::path(rootfs, e))?;

    let dev = mount_dev(&root, req.resources.shm_size)?;
    let hostname = if spec.hostname.is_empty() {
        "buildkitsandbox"
    } else {
        &spec.hostname
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").ok();
    let etc = [
        ("/etc/hosts", etc_files::hosts(hostname, &spec.extra_hosts)),
        (
            "/etc/resolv.conf",
            etc_files::resolv_conf(spec.network, host_resolv.as_deref()),
        ),
        ("/etc/hostname", etc_files::hostname_file(hostname)),
    ];
    // Before /proc exists: a symlinked /etc/hosts cannot be pointed into procfs.
    for (i, (path, content)) in etc.iter().enumerate() {
        let scratch = ScratchFile::create(&dev, &format!(".rbuild-etc-{i}"), 0o644, 0, 0)?;
        scratch.fill(content.as_bytes())?;
        bind(
            &root,
            &scratch.fd,
            path,
            StubKind::File,
            false,
            MsFlags::empty(),
        )?;
        scratch.remove()?;
    }

    mount_proc(&root, &dev)?;
    mount_sys(&root, &dev)?;
    for m in &spec.mounts {
        mount_one(&root, &dev, m)?;
    }
    // Here, not after pivot_root: pathrs needs the host's /proc, and with procfs mounted
    // a `/proc/self/fd/N` workdir hits a magic link, which pathrs refuses (D1).
    root.mkdir_all(
        &spec.workdir,
        &std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| ExecError::Setup(format!("create workdir {}: {e}", spec.workdir)))?;
    pivot(&root)
}

fn mount_proc(root: &Root, dev: &File) -> Result<(), ExecError> {
    let target = super::fdmount::mount_point(root, "/proc", StubKind::Dir)?;
    mount_on(
        "/proc",
        Some("proc"),
        &target,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    for path in READONLY_PATHS {
        if !exists(root, path)? {
            continue;
        }
        let kind = kind_of(root, path)?;
        let here = root
            .resolve(path)
            .map_err(|e| ExecError::Setup(format!("{path}: {e}")))?;
        bind(
            root,
            &here,
            path,
            kind,
            true,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    mask(root, dev, &MASKED_PATHS[..10])
}

fn mount_sys(root: &Root, dev: &File) -> Result<(), ExecError> {
    let target = super::fdmount::mount_point(root, "/sys", StubKind::Dir)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if mount_on("/sys", Some("sysfs"), &target, Some("sysfs"), flags, None).is_err() {
        // sysfs cannot always be mounted (e.g. host network namespace owned elsewhere):
        // fall back to a read-only bind of the host's.
        let host_sys = rustix::fs::open(
            "/sys",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ExecError::io("open host /sys", e))?;
        bind(
            root,
            &host_sys,
            "/sys",
            StubKind::Dir,
            true,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    mask(root, dev, &MASKED_PATHS[10..])
}

fn mask(root: &Root, dev: &File, paths: &[&str]) -> Result<(), ExecError> {
    let null = dev_null(dev)?;
    for &path in paths {
        if !exists(root, path)? {
            continue;
        }
        match kind_of(root, path)? {
            StubKind::Dir => {
                let target = super::fdmount::mount_point(root, path, StubKind::Dir)?;
                mount_on(
                    path,
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=0"),
                )?;
            }
            StubKind::File => bind(root, &null, path, StubKind::File, false, MsFlags::empty())?,
        }
    }
    Ok(())
}

fn mount_one(root: &Root, dev: &File, m: &Mount) -> Result<(), ExecError> {
    let target = m.target.as_str();
    match &m.kind {
        MountKind::Bind { source, readonly } => {
            // The caller confined the source already; a final symlink is refused rather
            // than followed on the host.
            let src = rustix::fs::open(
                source.as_path(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ExecError::io(format!("open bind source {}", source.display()), e))?;
            let st = rustix::fs::fstat(&src)
                .map_err(|e| ExecError::io(format!("stat {}", source.display()), e))?;
            let kind = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => StubKind::Dir,
                FileType::Symlink => {
                    return Err(ExecError::Setup(format!(
                        "bind source {} is a symlink",
                        source.display()
                    )))
                }
                _ => StubKind::File,
            };
            reveal_target(root, target, kind)?;
            // Cache mounts and read-write binds too: nothing the RUN leaves there (a setuid
            // binary, a device node) works in a later RUN either.
            bind(
                root,
                &src,
                target,
                kind,
                *readonly,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            )
        }
        MountKind::Tmpfs { size } => {
            reveal_target(root, target, StubKind::Dir)?;
            let t = super::fdmount::mount_point(root, target, StubKind::Dir)?;
            let data = format!("mode=1777,size={}", size.unwrap_or(DEFAULT_TMPFS_SIZE));
            mount_on(
                target,
                Some("tmpfs"),
                &t,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&data),
            )
        }
        MountKind::Secret {
            source,
            mode,
            uid,
            gid,
        } => {
            reveal_target(root, target, StubKind::File)?;
            let content = read_secret(source)?;
            let scratch = ScratchFile::create(dev, ".rbuild-secret", *mode, *uid, *gid)?;
            scratch.fill(&content)?;
            bind(
                root,
                &scratch.fd,
                target,
                StubKind::File,
                true,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            )?;
            scratch.remove()
        }
    }
}

/// A `--mount` target hidden by an earlier mount of the same RUN (`/foo/bar`, then
/// `/foo/bar/baz`: the stub made before the run lies under the first mount) is created inside
/// that mount, as runc does; the stubs in the rootfs itself were made before the run.
fn reveal_target(root: &Root, target: &str, kind: StubKind) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    if exists(root, target)? {
        return Ok(());
    }
    let fail = |e: pathrs::error::Error| ExecError::Setup(format!("mount point {target}: {e}"));
    match kind {
        StubKind::Dir => root
            .mkdir_all(target, &std::fs::Permissions::from_mode(0o755))
            .map(drop)
            .map_err(fail),
        StubKind::File => {
            let parent = Path::new(target).parent().unwrap_or(Path::new("/"));
            root.mkdir_all(parent, &std::fs::Permissions::from_mode(0o755))
                .map_err(fail)?;
            root.create(
                target,
                &pathrs::InodeType::File(std::fs::Permissions::from_mode(0o644)),
            )
            .map_err(fail)
        }
    }
}

fn exists(root: &Root, path: &str) -> Result<bool, ExecError> {
    match root.resolve(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::OsError(Some(libc::ENOENT)) => Ok(false),
        Err(e) => Err(ExecError::Setup(format!("{path}: {e}"))),
    }
}

fn kind_of(root: &Root, path: &str) -> Result<StubKind, ExecError> {
    let h = root
        .resolve(path)
        .map_err(|e| ExecError::Setup(format!("{path}: {e}")))?;
    let st = rustix::fs::fstat(h.as_fd()).map_err(|e| ExecError::io(format!("stat {path}"), e))?;
    Ok(
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            StubKind::Dir
        } else {
            StubKind::File
        },
    )
}

/// A file in our /dev tmpfs used as a bind source and unlinked right after binding (the
/// mount keeps the inode), so nothing of it is visible under /dev in the container.
struct ScratchFile<'a> {
    dev: &'a File,
    name: String,
    fd: OwnedFd,
}

impl<'a> ScratchFile<'a> {
    fn create(dev: &'a File, name: &str, mode: u32, uid: u32, gid: u32) -> Result<Self, ExecError> {
        let io = |what: &str, e| ExecError::io(format!("{what} /dev/{name}"), e);
        let fd = rustix::fs::openat(
            dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("create", e))?;
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| io("chown", e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).map_err(|e| io("chmod", e))?;
        Ok(ScratchFile {
            dev,
            name: name.to_string(),
            fd,
        })
    }

    fn fill(&self, content: &[u8]) -> Result<(), ExecError> {
        (&File::from(
            self.fd
                .try_clone()
                .map_err(|e| ExecError::io("dup scratch fd", e))?,
        ))
            .write_all(content)
            .map_err(|e| ExecError::io(format!("write /dev/{}", self.name), e))
    }

    fn remove(self) -> Result<(), ExecError> {
        rustix::fs::unlinkat(self.dev, self.name.as_str(), rustix::fs::AtFlags::empty())
            .map_err(|e| ExecError::io(format!("unlink /dev/{}", self.name), e))
    }
}

fn pivot(root: &Root) -> Result<(), ExecError> {
    nix::unistd::fchdir(root).map_err(|e| ExecError::io("chdir into rootfs", e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // only the container's tree (the runc idiom, no put_old directory needed).
    nix::unistd::pivot_root(".", ".").map_err(|e| ExecError::io("pivot_root", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| ExecError::io("detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| ExecError::io("chdir /", e))
}
