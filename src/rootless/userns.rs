//! Entering the user namespace at start.
//!
//! The process must still be single-threaded. It forks a small child first (the child stays in
//! the host's user namespace, where the set-uid `newuidmap`/`newgidmap` work), then
//! `unshare(CLONE_NEWUSER)`s itself and lets the child write its maps:
//! `0 <uid> 1` (the user is root inside) and `1 <subordinate start> <count>`. No re-exec is
//! needed: `unshare` grants the caller every capability in the new namespace, and once the map
//! is written the caller's ids read as 0 there.

use super::subid::{self, Range};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";

/// Why rootless mode could not start; each one line that names the fix.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("no subordinate {kind} range for user {user} in {file}: add one, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (docs/rootless.md)")]
    NoRange {
        kind: &'static str,
        user: String,
        file: &'static str,
    },
    #[error("{file}: {err}")]
    Read {
        file: &'static str,
        err: std::io::Error,
    },
    #[error("{tool} not found in PATH: install Debian's uidmap package (`apt-get install uidmap`) to run rbuild as an ordinary user")]
    NoTool { tool: &'static str },
    #[error("cannot create a user namespace: {0} (is user.max_user_namespaces 0, or does a container's seccomp/AppArmor profile refuse unshare? docs/rootless.md)")]
    Unshare(nix::Error),
    #[error("{tool} failed: {msg}")]
    Map { tool: &'static str, msg: String },
    #[error("user namespace setup: {0}")]
    Setup(String),
}

/// Who started rbuild, before the namespace made it root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub subuid: Range,
    pub subgid: Range,
}

/// True when this process runs in a user namespace other than the host's (its uid map is not
/// the identity map of all ids). Works in any process, the RUN helper included.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// As root: nothing (`Ok(None)`). Otherwise enters a new user namespace mapped with the user's
/// subordinate ids and returns who the user was. Call while single-threaded.
pub fn enter_if_unprivileged() -> Result<Option<Identity>, RootlessError> {
    let uid = Uid::effective();
    if uid.is_root() {
        return Ok(None);
    }
    let gid = Gid::effective();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let range = |file: &'static str, kind: &'static str| {
        subid::find_in_file(Path::new(file), &user, uid.as_raw())
            .map_err(|err| RootlessError::Read { file, err })?
            .ok_or_else(|| RootlessError::NoRange {
                kind,
                user: user.clone(),
                file,
            })
    };
    let subuid = range(SUBUID, "uid")?;
    let subgid = range(SUBGID, "gid")?;
    let newuidmap = find_tool("newuidmap")?;
    let newgidmap = find_tool("newgidmap")?;
    let me = Identity {
        user,
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        subuid,
        subgid,
    };
    let uid_args = map_args(me.uid, subuid);
    let gid_args = map_args(me.gid, subgid);

    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let parent = Pid::this();
    // SAFETY: the process is single-threaded (checked by the caller's contract: this runs first
    // in `main`), so the child may run ordinary Rust code before it exits.
    match unsafe { fork() }.map_err(|e| RootlessError::Setup(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(go_w);
            drop(err_r);
            let code = map_child(
                go_r,
                err_w,
                parent,
                [
                    (newuidmap, "newuidmap", uid_args),
                    (newgidmap, "newgidmap", gid_args),
                ],
            );
            // SAFETY: leaves the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            drop(err_w);
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            let mut go = std::fs::File::from(go_w);
            if unshared.is_ok() {
                let _ = go.write_all(b"1");
            }
            drop(go);
            let mut msg = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            unshared.map_err(RootlessError::Unshare)?;
            match status {
                Ok(WaitStatus::Exited(_, 0)) => {}
                _ => {
                    let (tool, msg) = msg.split_once('\t').unwrap_or(("newuidmap", &msg));
                    return Err(RootlessError::Map {
                        tool: if tool == "newgidmap" {
                            "newgidmap"
                        } else {
                            "newuidmap"
                        },
                        msg: msg.trim().to_string(),
                    });
                }
            }
        }
    }
    // Root inside now; make every id of ours 0 (saved ones included) for the processes we start.
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| RootlessError::Setup(format!("setresgid: {e}")))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| RootlessError::Setup(format!("setresuid: {e}")))?;
    Ok(Some(me))
}

fn map_args(id: u32, r: Range) -> Vec<String> {
    [0, id, 1, 1, r.start, r.count]
        .iter()
        .map(u32::to_string)
        .collect()
}

/// The forked child: waits until the parent unshared, then writes its maps. Returns the exit code.
fn map_child(
    go: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
    parent: Pid,
    tools: [(PathBuf, &'static str, Vec<String>); 2],
) -> i32 {
    let mut buf = [0u8; 1];
    let mut err = std::fs::File::from(err);
    match std::fs::File::from(go).read(&mut buf) {
        Ok(1) => {}
        // The parent could not unshare; it reports that itself.
        _ => return 0,
    }
    for (path, name, args) in tools {
        let out = std::process::Command::new(&path)
            .arg(parent.as_raw().to_string())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output();
        let msg = match out {
            Ok(o) if o.status.success() => continue,
            Ok(o) => String::from_utf8_lossy(&o.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("exited with an error")
                .to_string(),
            Err(e) => e.to_string(),
        };
        let _ = write!(err, "{name}\t{msg} ({} {})", path.display(), args.join(" "));
        return 1;
    }
    0
}

fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), RootlessError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RootlessError::Setup(format!("pipe: {e}")))
}

fn find_tool(name: &'static str) -> Result<PathBuf, RootlessError> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(RootlessError::NoTool { tool: name })
}
