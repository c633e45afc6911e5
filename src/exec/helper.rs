//! The helper process: the rbuild binary re-executed with `__rbuild-exec`. It is
//! single-threaded (nothing else has run in it), so it may fork and keep running Rust in
//! the child. It creates the namespaces, forks the container's PID 1, and supervises it:
//! SIGINT/SIGTERM/SIGHUP to the helper kill the container; the helper itself dies with
//! rbuild (PDEATHSIG) and PID 1 dies with the helper.

use std::ffi::OsStr;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::container;
use super::error::ExecError;
use super::netns::loopback_up;
use super::protocol::{HelperRequest, Status, StatusPipe, HELPER_ARG, STATUS_FD};
use super::spec::{Network, RunOutcome};
use super::usernet;

/// Signals the helper handles itself (blocked, then taken with `sigwait`).
const SUPERVISED: [Signal; 5] = [
    Signal::SIGCHLD,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Call first thing in `main()`: when this process was started as the RUN helper
/// (argv[1] == `__rbuild-exec`), runs the RUN step and exits; otherwise returns at once.
pub fn helper_main_if_requested() {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new(HELPER_ARG)) {
        return;
    }
    // fd 3 is the status pipe by protocol; refuse to run without it rather than writing
    // status lines into some unrelated file.
    if nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(STATUS_FD) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_err()
    {
        eprintln!("rbuild: {HELPER_ARG} is internal (started by rbuild's RUN executor)");
        std::process::exit(2);
    }
    // SAFETY: fd 3 is open (checked above) and nothing else in this process owns it.
    let status = StatusPipe::new(unsafe { OwnedFd::from_raw_fd(STATUS_FD) });
    let code = match supervise(&status) {
        Ok(s) => {
            status.send(&s);
            0
        }
        Err(e) => {
            status.send(&Status::HelperError(e.to_string()));
            1
        }
    };
    std::process::exit(code);
}

fn supervise(status: &StatusPipe) -> Result<Status, ExecError> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| ExecError::io("set PDEATHSIG", e))?;
    // Nothing of ours is reachable from the container, but keep this process out of
    // ptrace and /proc/<pid> access by others all the same.
    prctl::set_dumpable(false).map_err(|e| ExecError::io("set non-dumpable", e))?;
    let request: HelperRequest = serde_json::from_reader(std::io::stdin().lock())
        .map_err(|e| ExecError::Helper(format!("decode request: {e}")))?;

    let mut supervised = SigSet::empty();
    for s in SUPERVISED {
        supervised.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&supervised), None)
        .map_err(|e| ExecError::io("block signals", e))?;

    // Kept until the container is gone: dropping it kills the network stack.
    let _usernet = enter_network(&request)?;
    // After the network stack started (it stays in rbuild's cgroup: it needs /dev/net/tun, which
    // the RUN's device filter refuses, and is not the RUN's to pay for), before the fork: the
    // container and everything it starts inherit the cgroups.
    super::cgroup::join(&request.cgroups)?;
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(|e| ExecError::io("unshare namespaces", e))?;
    let hostname = if request.spec.hostname.is_empty() {
        "buildkitsandbox"
    } else {
        request.spec.hostname.as_str()
    };
    nix::unistd::sethostname(hostname).map_err(|e| ExecError::io("sethostname", e))?;
    // No mount made for the container may propagate back to rbuild or the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| ExecError::io("make / rprivate", e))?;

    // SAFETY: this process is single-threaded (a fresh exec that started no threads).
    match unsafe { fork() }.map_err(|e| ExecError::io("fork container init", e))? {
        ForkResult::Child => container::init(&request, status),
        ForkResult::Parent { child } => wait_for(child, &supervised),
    }
}

/// Puts this process into the RUN's network namespace: the host's, an empty one with `lo`,
/// or one served by slirp4netns/pasta (started before the new PID namespace exists, so the
/// stack never becomes part of the container's process tree).
fn enter_network(request: &HelperRequest) -> Result<Option<usernet::Running>, ExecError> {
    if request.spec.network == Network::Host {
        return Ok(None);
    }
    if let (true, Network::Default, Some(net)) = (
        crate::rootless::in_user_namespace(),
        &request.spec.network,
        &request.usernet,
    ) {
        let enter = || {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ExecError::io("unshare network", e))?;
            loopback_up()
        };
        return usernet::start(net, usernet::Launch::Outside(&enter)).map(Some);
    }
    let host_net = OwnedFd::from(
        std::fs::File::open("/proc/self/ns/net")
            .map_err(|e| ExecError::io("open the host network namespace", e))?,
    );
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ExecError::io("unshare network", e))?;
    loopback_up()?;
    match (&request.spec.network, &request.usernet) {
        (Network::Default, Some(net)) => {
            usernet::start(net, usernet::Launch::FromHost(&host_net)).map(Some)
        }
        (Network::Default, None) => Err(ExecError::NoUserNet),
        _ => Ok(None),
    }
}

fn wait_for(child: nix::unistd::Pid, supervised: &SigSet) -> Result<Status, ExecError> {
    loop {
        let sig = supervised
            .wait()
            .map_err(|e| ExecError::io("wait for signals", e))?;
        if sig != Signal::SIGCHLD {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Ok(Status::Interrupted);
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Ok(Status::Exited(RunOutcome {
                    exit_code: code,
                    signal: None,
                }))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(Status::Exited(RunOutcome {
                    exit_code: 128 + sig as i32,
                    signal: Some(sig as i32),
                }))
            }
            Ok(_) => continue,
            Err(e) => return Err(ExecError::io("waitpid container init", e)),
        }
    }
}
