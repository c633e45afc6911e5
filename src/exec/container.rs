//! The container's PID 1 before `execve`: filesystem, fds, working directory,
//! privileges, then the command itself. Any failure is reported on the status pipe.

use std::convert::Infallible;
use std::os::fd::AsRawFd;

use nix::sys::prctl;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use rustix::fs::Mode;

use super::cgroup_limits::Ulimit;
use super::error::ExecError;
use super::launch;
use super::privileges;
use super::protocol::{HelperRequest, Status, StatusPipe, STATUS_FD};
use super::rootfs;
use super::seccomp;

pub(crate) fn init(req: &HelperRequest, status: &StatusPipe) -> ! {
    // A panic here must not look like the command's own exit status (101).
    let err = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| start(req))) {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => e,
        Err(_) => ExecError::Setup("container init panicked".into()),
    };
    status.send(&Status::SetupError(err.to_string()));
    std::process::exit(127)
}

fn start(req: &HelperRequest) -> Result<Infallible, ExecError> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| ExecError::io("set PDEATHSIG", e))?;
    // Modes of everything we create are exact; the command gets the usual 022 back.
    rustix::process::umask(Mode::empty());
    rootfs::setup(req)?;
    // Only stdio and the status pipe survive; no fd of rbuild can reach the command
    // (SECURITY D2, and D1: no fd left for a `/proc/self/fd/N` workdir to escape through).
    close_fds_from(STATUS_FD as u32 + 1, 0)?;
    stdin_from_dev_null()?;
    enter_workdir(&req.spec.workdir)?;
    let filters = seccomp::programs()?;
    // While CAP_SYS_RESOURCE is still held: a --ulimit may raise a hard limit.
    set_ulimits(&req.resources.ulimits)?;
    privileges::drop_to(req.uid, req.gid, &req.groups)?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ExecError::io("unblock signals", e))?;
    rustix::process::umask(Mode::from_raw_mode(0o022));
    // Last, after no_new_privs (drop_to) and before exec: Docker's default profile (D5).
    seccomp::install(&filters)?;
    // The status pipe stays open until execve succeeds, so a failed exec is reported.
    close_fds_from(STATUS_FD as u32, libc::CLOSE_RANGE_CLOEXEC)?;
    launch::exec(&req.spec.argv, &req.spec.env)
}

fn set_ulimits(ulimits: &[Ulimit]) -> Result<(), ExecError> {
    for u in ulimits {
        let Some(resource) = Ulimit::resource_of(&u.name) else {
            return Err(ExecError::InvalidSpec(format!(
                "unknown ulimit {:?}",
                u.name
            )));
        };
        let limit = libc::rlimit {
            rlim_cur: u.soft,
            rlim_max: u.hard,
        };
        // SAFETY: setrlimit on this process with a valid resource number and a filled rlimit;
        // nix's Resource enum cannot be built from a number, hence libc.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(ExecError::io(
                format!("--ulimit {}={}:{}", u.name, u.soft, u.hard),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn close_fds_from(first: u32, flags: libc::c_uint) -> Result<(), ExecError> {
    // SAFETY: close_range on fds this process does not use any more (or only marks them
    // close-on-exec); not wrapped by nix/rustix.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) };
    if r < 0 {
        return Err(ExecError::io(
            "close_range",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn stdin_from_dev_null() -> Result<(), ExecError> {
    let null = std::fs::File::open("/dev/null").map_err(|e| ExecError::io("open /dev/null", e))?;
    if null.as_raw_fd() != 0 {
        // SAFETY: dup2 onto fd 0, which we own as this process's stdin.
        if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
            return Err(ExecError::io(
                "stdin from /dev/null",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Enters the workdir (created by `rootfs::setup`); then checks the cwd is reachable
/// from `/` (runc's verifyCwd for CVE-2024-21626).
fn enter_workdir(workdir: &str) -> Result<(), ExecError> {
    nix::unistd::chdir(workdir).map_err(|e| ExecError::io(format!("chdir {workdir}"), e))?;
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.is_absolute() => Ok(()),
        _ => Err(ExecError::Setup(format!(
            "workdir {workdir} is outside the container (possible breakout)"
        ))),
    }
}
