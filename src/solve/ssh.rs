//! `RUN --mount=type=ssh`: the agent socket of `--ssh ID=…` forwarded into the RUN through a
//! proxy socket made for that mount (its own mode and owner, as BuildKit's), bind-mounted at the
//! target (default `/run/buildkit/ssh_agent.N`). A bound socket is an inode, not a network
//! endpoint: it reaches the agent from the RUN's own network and mount namespaces. Nothing of
//! the agent enters the cache key or the layer (the mount point is a stub removed after the RUN).

use super::error::BuildError;
use super::solver::Solver;
use crate::dockerfile::RunMount;
use crate::exec::{Mount, MountKind};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A listening socket forwarding each connection to the agent; stops and goes on drop.
pub(super) struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl AgentProxy {
    /// `uid`/`gid` None: the socket stays rbuild's (root's, or the mapped root's when rootless).
    fn start(
        agent: &Path,
        scratch: &Path,
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ssh-")
            .tempdir_in(scratch)?;
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path)?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(&path, uid, gid)?;
        }
        std::fs::set_permissions(
            &path,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, upstream) = (stop.clone(), agent.to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(agent) = UnixStream::connect(&upstream) else {
                    continue;
                };
                pipe(client, agent);
            }
        });
        Ok(AgentProxy {
            path,
            stop,
            _dir: dir,
        })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
    }
}

/// Copies bytes both ways until either side closes.
fn pipe(a: UnixStream, b: UnixStream) {
    let pair = || Some((a.try_clone().ok()?, b.try_clone().ok()?));
    let Some((mut a2, mut b2)) = pair() else {
        return;
    };
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b, &mut a2);
        let _ = a2.shutdown(std::net::Shutdown::Write);
    });
}

impl Solver<'_> {
    /// The `n`th ssh mount of a RUN: a proxy of the agent `--ssh` gave for its id (`default`
    /// when unset), or nothing when there is none and the mount is not `required`.
    pub(super) fn prepare_ssh(
        &self,
        m: &RunMount,
        n: usize,
        line: usize,
        proxies: &mut Vec<AgentProxy>,
    ) -> Result<Option<Mount>, BuildError> {
        let id = m.id.clone().unwrap_or_else(|| "default".to_string());
        let Some(agent) = self.opts.ssh.get(&id) else {
            if m.required {
                return Err(self.step_error(
                    line,
                    format!("no SSH key {id:?} forwarded from the client (give it with --ssh {id}=SOCKET|KEYFILE, or --ssh default)"),
                ));
            }
            return Ok(None);
        };
        let proxy = AgentProxy::start(agent, &self.scratch, m.mode.unwrap_or(0o600), m.uid, m.gid)
            .map_err(|e| self.step_error(line, format!("ssh agent socket for {id:?}: {e}")))?;
        let target = match m.target.as_deref() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => format!("/run/buildkit/ssh_agent.{n}"),
        };
        let mount = Mount {
            target,
            kind: MountKind::Bind {
                source: proxy.path.clone(),
                readonly: true,
            },
        };
        proxies.push(proxy);
        Ok(Some(mount))
    }
}
