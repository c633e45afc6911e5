//! `--ssh default|ID[=SOCKET|KEYFILE[,KEYFILE…]]` (buildx's flag): the agent socket each id
//! forwards to `RUN --mount=type=ssh`. `default` (or an id alone) is `$SSH_AUTH_SOCK`; key files
//! are loaded into an `ssh-agent` of rbuild's own, stopped when the build ends.

use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `ssh-agent`s started for key files; killed (and their sockets removed) on drop.
#[derive(Default)]
pub(super) struct Agents {
    children: Vec<Child>,
    dirs: Vec<tempfile::TempDir>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.dirs.clear();
    }
}

/// Parses every `--ssh` value into `id -> agent socket`, starting agents for key files.
pub(super) fn resolve(raw: &[String]) -> Result<(BTreeMap<String, PathBuf>, Agents)> {
    let mut map = BTreeMap::new();
    let mut agents = Agents::default();
    for s in raw {
        let (id, paths) = match s.split_once('=') {
            Some((id, p)) => (id, p.split(',').map(PathBuf::from).collect::<Vec<_>>()),
            None => (s.as_str(), Vec::new()),
        };
        if id.is_empty() {
            bail!("invalid --ssh {s:?}: expected default or ID[=SOCKET|KEYFILE]");
        }
        let socket = if paths.is_empty() {
            let sock = std::env::var_os("SSH_AUTH_SOCK")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| anyhow!("--ssh {id}: SSH_AUTH_SOCK is not set (start an ssh-agent, or give --ssh {id}=KEYFILE)"))?;
            PathBuf::from(sock)
        } else if let [one] = paths.as_slice() {
            if is_socket(one)? {
                one.clone()
            } else {
                start_agent(id, &paths, &mut agents)?
            }
        } else {
            start_agent(id, &paths, &mut agents)?
        };
        map.insert(id.to_string(), socket);
    }
    Ok((map, agents))
}

fn is_socket(p: &Path) -> Result<bool> {
    let m = std::fs::metadata(p).with_context(|| format!("--ssh: {}", p.display()))?;
    Ok(m.file_type().is_socket())
}

/// Starts `ssh-agent -D` on a socket in a temp dir and adds `keys` to it.
fn start_agent(id: &str, keys: &[PathBuf], agents: &mut Agents) -> Result<PathBuf> {
    for k in keys {
        if !k.is_file() {
            bail!(
                "--ssh {id}: {} is neither an agent socket nor a key file",
                k.display()
            );
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("rbuild-ssh-")
        .tempdir()
        .context("creating a directory for the ssh-agent socket")?;
    let sock = dir.path().join("agent.sock");
    let mut child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("--ssh {id}: starting ssh-agent (is openssh-client installed?)")
        })?;
    // `-D` prints the socket line once it listens: reading it is the readiness signal.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    agents.children.push(child);
    agents.dirs.push(dir);
    if !sock.exists() {
        bail!("--ssh {id}: ssh-agent did not start");
    }
    for k in keys {
        let out = Command::new("ssh-add")
            .arg("-q")
            .arg(k)
            .env("SSH_AUTH_SOCK", &sock)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("--ssh {id}: running ssh-add"))?;
        if !out.status.success() {
            bail!(
                "--ssh {id}: ssh-add {}: {}",
                k.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(sock)
}
