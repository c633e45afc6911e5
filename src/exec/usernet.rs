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
use std::process::{Child, Command, Stdio};
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

/// A running stack; killed and reaped when dropped.
pub(crate) struct Running {
    child: Child,
    /// slirp4netns watches the other end (`--exit-fd`); kept open for the stack's lifetime.
    _exit_w: Option<OwnedFd>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // Not reaped: its exit tears the tap device down, which takes the kernel tens of
        // milliseconds (RCU grace periods); the helper exits right after this and init reaps.
    }
}

/// Starts `net` for the network namespace the calling (single-threaded) helper is in now;
/// `host_net` is the host's namespace, where the stack itself must run. Returns once the
/// namespace is configured.
pub(crate) fn start(net: &UserNet, host_net: &OwnedFd) -> Result<Running, ExecError> {
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
            .arg(std::process::id().to_string())
            .arg("tap0");
            (exit_r, Some(exit_w))
        }
        UserNetKind::Pasta => {
            let netns = std::fs::File::open("/proc/self/ns/net")
                .map_err(|e| ExecError::io("open the RUN's network namespace", e))?;
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
                "/proc/self/fd/4",
                "--no-netns-quit",
            ]);
            (OwnedFd::from(netns), None)
        }
    };
    let host_raw = host_net.as_raw_fd();
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
            check(libc::setns(host_raw, libc::CLONE_NEWNET))?;
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
    let child = cmd.spawn().map_err(|source| ExecError::Spawn {
        exe: net.path.clone(),
        source,
    })?;
    drop(ready_w);
    drop(second);
    let mut running = Running {
        child,
        _exit_w: exit_w,
    };
    match wait_ready(ready_r) {
        Ok(true) => Ok(running),
        Ok(false) => {
            let _ = running.child.kill();
            let _ = running.child.wait();
            let mut msg = String::new();
            if let Some(mut e) = running.child.stderr.take() {
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

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("WARNING"))
        .unwrap_or("no message")
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
