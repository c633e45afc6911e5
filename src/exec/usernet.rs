//! The user-mode network stack behind `Network::Default`: slirp4netns (preferred) or pasta
//! (Debian package `passt`), started by the RUN helper for each RUN and stopped by its pid.
//!
//! The helper unshares a fresh network namespace, then starts the stack *in the host's network
//! namespace* (it `setns`es back in the child before `exec`) pointed at the new one. Both are
//! configured the same way (README "Network modes"): the RUN sees `tap0` = 10.0.2.100/24,
//! gateway 10.0.2.2, DNS 10.0.2.3; the host's loopback is not reachable through the gateway
//! (slirp4netns `--disable-host-loopback`, pasta `--no-map-gw` and no port forwarding), and the
//! host's abstract unix sockets are out of reach because they belong to the host's namespace.
//!
//! Lifetime: the helper kills the stack by pid when the RUN ends (also on error or cancel, via
//! `Drop`). If the helper itself dies (kill -9 of rbuild), slirp4netns exits on its `--exit-fd`
//! and both get SIGKILL from `PR_SET_PDEATHSIG`.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ExecError;

/// Environment override: `slirp4netns`, `pasta`, or a path to either binary (its file name
/// says which). Without it, `PATH` is searched for slirp4netns, then pasta.
pub const USERNET_ENV: &str = "RBUILD_USERNET";

/// Gives up on a stack that does not report ready (a hung helper must not hang the build).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The address plan shared by both stacks (slirp4netns' defaults).
pub(crate) const GUEST_ADDR: &str = "10.0.2.100";
pub(crate) const GATEWAY_ADDR: &str = "10.0.2.2";
pub(crate) const DNS_ADDR: &str = "10.0.2.3";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserNetKind {
    Slirp4netns,
    Pasta,
}

/// Which stack to run, resolved by rbuild (the helper runs with an empty environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNet {
    pub kind: UserNetKind,
    pub path: PathBuf,
}

impl UserNetKind {
    fn from_name(name: &str) -> Option<Self> {
        if name.starts_with("slirp4netns") {
            Some(UserNetKind::Slirp4netns)
        } else if name.starts_with("pasta") {
            Some(UserNetKind::Pasta)
        } else {
            None
        }
    }

    fn binary(self) -> &'static str {
        match self {
            UserNetKind::Slirp4netns => "slirp4netns",
            UserNetKind::Pasta => "pasta",
        }
    }
}

/// Finds the stack from `RBUILD_USERNET` and `PATH` of this process.
pub fn find_usernet() -> Result<UserNet, ExecError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let forced = std::env::var(USERNET_ENV).ok().filter(|v| !v.is_empty());
    find_in(forced.as_deref(), &path)
}

fn find_in(forced: Option<&str>, path: &std::ffi::OsStr) -> Result<UserNet, ExecError> {
    let search = |name: &str| {
        std::env::split_paths(path)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    };
    if let Some(f) = forced {
        let file_name = Path::new(f)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let kind = UserNetKind::from_name(file_name).ok_or_else(|| {
            ExecError::InvalidSpec(format!(
                "{USERNET_ENV}={f}: expected slirp4netns, pasta or a path to one of them"
            ))
        })?;
        let found = if f.contains('/') {
            Some(PathBuf::from(f)).filter(|p| is_executable(p))
        } else {
            search(kind.binary())
        };
        return found
            .map(|path| UserNet { kind, path })
            .ok_or(ExecError::NoUserNet);
    }
    [UserNetKind::Slirp4netns, UserNetKind::Pasta]
        .into_iter()
        .find_map(|kind| search(kind.binary()).map(|path| UserNet { kind, path }))
        .ok_or(ExecError::NoUserNet)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A running stack; killed when dropped.
pub(crate) struct Running {
    pid: libc::pid_t,
    stderr: Option<std::fs::File>,
    /// slirp4netns watches the other end (`--exit-fd`); kept open for the stack's lifetime.
    _exit_w: Option<OwnedFd>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signals our own child by pid.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        // Not reaped: its exit tears the tap device down, which takes the kernel tens of
        // milliseconds (RCU grace periods); the helper exits right after this and init reaps.
    }
}

/// Where the stack starts from.
pub(crate) enum Launch<'a> {
    /// The helper is in the RUN's namespace already; the stack `setns`es into the host's
    /// (`host_net`) before `exec`. Needs privilege over the host's namespace: root.
    FromHost(&'a OwnedFd),
    /// In a user namespace (rootless) the host's network namespace cannot be re-entered: the
    /// stack's process is forked while the helper is still in it, and `enter` (the helper's
    /// unshare) runs before the forked process may `exec` the stack.
    Outside(&'a dyn Fn() -> Result<(), ExecError>),
}

/// Starts `net` for the network namespace the calling (single-threaded) helper is in now;
/// `host_net` is the host's namespace, where the stack itself must run. Returns once the
/// namespace is configured.
pub(crate) fn start(net: &UserNet, launch: Launch<'_>) -> Result<Running, ExecError> {
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| ExecError::io("create pipe for the network helper", e))
    };
    let (ready_r, ready_w) = pipe()?;
    let mut cmd = Command::new(&net.path);
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (err_r, err_w) = pipe()?;
    if matches!(launch, Launch::Outside(_)) {
        cmd.stderr(Stdio::from(
            err_w.try_clone().map_err(|e| ExecError::io("dup", e))?,
        ));
    }
    drop(err_w);
    let me = std::process::id();
    // Inherited fds get fixed numbers in the child: 3 = ready, 4 = exit-fd or netns.
    let (second, exit_w) = match net.kind {
        UserNetKind::Slirp4netns => {
            let (exit_r, exit_w) = pipe()?;
            cmd.args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                // "--enable-sandbox",
                // "--enable-seccomp",
                "--ready-fd=3",
                "--exit-fd=4",
            ])
            .arg(me.to_string())
            .arg("tap0");
            (exit_r, Some(exit_w))
        }
        UserNetKind::Pasta => {
            // Outside: the namespace does not exist yet; `/proc/<pid>` is only read at `exec`.
            let netns = match launch {
                Launch::FromHost(_) => std::fs::File::open("/proc/self/ns/net"),
                Launch::Outside(_) => std::fs::File::open("/dev/null"),
            }
            .map_err(|e| ExecError::io("open the RUN's network namespace", e))?;
            let netns_arg = match launch {
                Launch::FromHost(_) => "/proc/self/fd/4".to_string(),
                Launch::Outside(_) => format!("/proc/{me}/ns/net"),
            };
            cmd.args([
                "--config-net",
                "--quiet",
                "--foreground",
                "--ipv4-only",
                // Staying root keeps PR_SET_PDEATHSIG (a uid change clears it).
                "--runas",
                "0:0",
                "--tcp-ports",
                "none",
                "--udp-ports",
                "none",
                "--tcp-ns",
                "none",
                "--udp-ns",
                "none",
                "--no-map-gw",
                "--address",
                GUEST_ADDR,
                "--netmask",
                "24",
                "--gateway",
                GATEWAY_ADDR,
                "--dns-forward",
                DNS_ADDR,
                "--ns-ifname",
                "tap0",
                "--pid",
                "/proc/self/fd/3",
                "--netns",
                netns_arg.as_str(),
                "--no-netns-quit",
            ]);
            (OwnedFd::from(netns), None)
        }
    };
    let host_raw = match launch {
        Launch::FromHost(h) => Some(h.as_raw_fd()),
        Launch::Outside(_) => None,
    };
    let ready_raw = ready_w.as_raw_fd();
    let second_raw = second.as_raw_fd();
    // SAFETY: runs between fork and exec of a single-threaded process and makes only
    // async-signal-safe syscalls on fds this process owns.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(r)
                }
            };
            if let Some(h) = host_raw {
                check(libc::setns(h, libc::CLONE_NEWNET))?;
            }
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            // The helper blocks the signals it supervises; the stack must not inherit that.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::sigprocmask(
                libc::SIG_SETMASK,
                &empty,
                std::ptr::null_mut(),
            ))?;
            let a = check(libc::fcntl(ready_raw, libc::F_DUPFD, 10))?;
            let b = check(libc::fcntl(second_raw, libc::F_DUPFD, 10))?;
            check(libc::dup2(a, 3))?;
            check(libc::dup2(b, 4))?;
            // Nothing else of the helper (status pipe, container output) may be held open.
            check(libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32) as libc::c_int)?;
            Ok(())
        });
    }
    let (pid, stderr) = match launch {
        Launch::FromHost(_) => {
            let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
                exe: net.path.clone(),
                source,
            })?;
            let stderr = child
                .stderr
                .take()
                .map(|e| std::fs::File::from(OwnedFd::from(e)));
            (child.id() as libc::pid_t, stderr)
        }
        Launch::Outside(enter) => (
            spawn_outside(&mut cmd, enter)?,
            Some(std::fs::File::from(err_r)),
        ),
    };
    // The command holds a copy of the stderr pipe's write end: reading to EOF needs it gone.
    drop(cmd);
    drop(ready_w);
    drop(second);
    let mut running = Running {
        pid,
        stderr,
        _exit_w: exit_w,
    };
    match wait_ready(ready_r) {
        Ok(true) => Ok(running),
        Ok(false) => {
            // SAFETY: signals and reaps our own child by pid.
            unsafe {
                libc::kill(running.pid, libc::SIGKILL);
                libc::waitpid(running.pid, std::ptr::null_mut(), 0);
            }
            let mut msg = String::new();
            if let Some(mut e) = running.stderr.take() {
                let _ = e.read_to_string(&mut msg);
            }
            Err(ExecError::UserNet(format!(
                "{} exited before the network was ready: {}",
                net.path.display(),
                last_line(&msg)
            )))
        }
        Err(e) => Err(e),
    }
}

/// Forks the stack's process in the current (host) network namespace; it waits until `enter`
/// (the helper's unshare) has run, then `exec`s. The helper is single-threaded, so the fork may
/// run ordinary code.
fn spawn_outside(
    cmd: &mut Command,
    enter: &dyn Fn() -> Result<(), ExecError>,
) -> Result<libc::pid_t, ExecError> {
    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ExecError::io("create pipe for the network helper", e))?;
    // SAFETY: the RUN helper is a fresh single-threaded exec (see helper.rs).
    match unsafe { nix::unistd::fork() }.map_err(|e| ExecError::io("fork network helper", e))? {
        nix::unistd::ForkResult::Child => {
            drop(go_w);
            let mut b = [0u8; 1];
            if std::fs::File::from(go_r).read(&mut b).ok() == Some(1) {
                let _ = cmd.exec();
            }
            // SAFETY: leaves the forked child without running the helper's exit handlers.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_r);
            let entered = enter();
            if entered.is_ok() {
                let _ = rustix::io::write(&go_w, b"1");
            }
            drop(go_w);
            entered.map(|()| child.as_raw())
        }
    }
}

/// True once the stack wrote its ready token (slirp4netns: "1"; pasta: its pid), false on EOF.
fn wait_ready(ready: OwnedFd) -> Result<bool, ExecError> {
    let mut file = std::fs::File::from(ready);
    let mut fds = [libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: poll on one fd we own, with a correctly sized array.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            1,
            READY_TIMEOUT.as_millis() as libc::c_int,
        )
    };
    if n < 0 {
        return Err(ExecError::io(
            "wait for the network helper",
            std::io::Error::last_os_error(),
        ));
    }
    if n == 0 {
        return Err(ExecError::UserNet(format!(
            "the network helper was not ready within {}s",
            READY_TIMEOUT.as_secs()
        )));
    }
    let mut buf = [0u8; 32];
    let got = file
        .read(&mut buf)
        .map_err(|e| ExecError::io("read the network helper's ready signal", e))?;
    Ok(got > 0)
}

/// The stack's message: its lines but warnings and slirp4netns' closing `child failed(N)`, on
/// one line (the cause, e.g. `open("/dev/net/tun"): Permission denied`, comes first).
fn last_line(s: &str) -> String {
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("WARNING") && !l.starts_with("child failed"))
        .collect();
    if lines.is_empty() {
        s.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message")
            .to_string()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_bin(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn prefers_slirp4netns_then_pasta_and_honours_the_override() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let pasta = fake_bin(a.path(), "pasta");
        let slirp = fake_bin(b.path(), "slirp4netns");
        let both = std::env::join_paths([a.path(), b.path()]).unwrap();
        let found = find_in(None, &both).unwrap();
        assert_eq!((found.kind, found.path), (UserNetKind::Slirp4netns, slirp));
        let found = find_in(Some("pasta"), &both).unwrap();
        assert_eq!((found.kind, &found.path), (UserNetKind::Pasta, &pasta));
        let only_pasta = std::env::join_paths([a.path()]).unwrap();
        assert_eq!(find_in(None, &only_pasta).unwrap().kind, UserNetKind::Pasta);
        let explicit = find_in(Some(pasta.to_str().unwrap()), "".as_ref()).unwrap();
        assert_eq!(explicit.path, pasta);
        assert!(matches!(
            find_in(Some("curl"), &both),
            Err(ExecError::InvalidSpec(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        let none = std::env::join_paths([empty.path()]).unwrap();
        let err = find_in(None, &none).unwrap_err();
        assert!(matches!(err, ExecError::NoUserNet));
        let msg = err.to_string();
        assert!(
            msg.contains("slirp4netns") && msg.contains("passt") && !msg.contains('\n'),
            "{msg}"
        );
    }
}
