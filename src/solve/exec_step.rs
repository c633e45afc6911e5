//! An exec operation (RUN): mounts prepared (their content is part of the cache key), the cache
//! consulted, and on a miss the command run by the [`crate::exec::Executor`] on a new snapshot.

use super::cache::StepKey;
use super::error::BuildError;
use super::progress::StepHandle;
use super::solver::{one_line, Solver};
use super::state::StageState;
use crate::dockerfile::MountType;
use crate::exec::{ExecError, Mount, MountKind, Network, RunSpec};
use crate::plan::lower::{ExecOp, NetworkMode};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// BuildKit's words for a missing entitlement, plus how to grant it.
const NETWORK_HOST_NOT_ALLOWED: &str =
    "network.host is not allowed: RUN --network=host needs --allow network.host";

impl Solver<'_> {
    pub(super) fn exec_step(
        &self,
        st: &mut StageState,
        op: &ExecOp,
        line: usize,
        step: &mut StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        // `host` from the Dockerfile is an entitlement, as in buildx (README "Network modes").
        let network = match op.network {
            NetworkMode::Default => self.opts.network,
            NetworkMode::None => Network::None,
            NetworkMode::Host if self.opts.allow_network_host => Network::Host,
            NetworkMode::Host => return Err(self.step_error(line, NETWORK_HOST_NOT_ALLOWED)),
        };
        self.note_network(line, network);
        // Mounts: prepared before the cache lookup because their content is part of the key.
        let mut mounts = Vec::new();
        let mut views = Vec::new();
        let mut inputs = op.key.clone();
        // Secrets exposed as env vars: added after the cache key so their values never reach it.
        let mut secret_env = Vec::new();
        // Cache mounts: (index in `mounts`, id, mount); their directories are chosen and locked
        // only once the step is known to run.
        let mut caches = Vec::new();
        // SSH agent proxies, alive until the RUN is done; SSH_AUTH_SOCK names the first one.
        let mut ssh_proxies = Vec::new();
        let mut ssh_count = 0;
        for em in &op.mounts {
            let m = &em.mount;
            match m.typ {
                MountType::Ssh => {
                    let mount = self.prepare_ssh(m, ssh_count, line, &mut ssh_proxies)?;
                    ssh_count += 1;
                    if let Some(mount) = mount {
                        if !secret_env
                            .iter()
                            .any(|e: &String| e.starts_with("SSH_AUTH_SOCK="))
                            && !op.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
                        {
                            secret_env.push(format!("SSH_AUTH_SOCK={}", mount.target));
                        }
                        mounts.push(mount);
                    }
                    continue;
                }
                MountType::Secret => {
                    mounts.extend(self.prepare_secret(m, line, &mut secret_env)?);
                    continue;
                }
                MountType::Cache => {
                    let target = m
                        .target
                        .clone()
                        .ok_or_else(|| self.step_error(line, "--mount needs a target"))?;
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    mounts.push(Mount {
                        target,
                        kind: MountKind::Bind {
                            source: PathBuf::new(),
                            readonly: m.readonly,
                        },
                    });
                    caches.push((mounts.len() - 1, id, m));
                    continue;
                }
                _ => {}
            }
            let (mount, input) = self.prepare_mount(em, line, &mut views)?;
            if let Some(i) = input {
                inputs.insert(format!("mount{}", em.index), i);
            }
            mounts.push(mount);
        }
        // Inline script files (a heredoc with a shebang): read-only binds of a scratch copy.
        let mut scripts = Vec::new();
        for (target, content, mode) in &op.files {
            let f = write_script(&self.scratch, content, *mode)
                .map_err(|e| self.step_error(line, format!("heredoc script: {e}")))?;
            mounts.push(Mount {
                target: target.clone(),
                kind: MountKind::Bind {
                    source: f.to_path_buf(),
                    readonly: true,
                },
            });
            scripts.push(f);
        }
        inputs.insert("network".to_string(), format!("{network:?}"));
        if !self.opts.extra_hosts.is_empty() {
            // As in BuildKit, where the hosts are part of the exec op.
            let hosts: Vec<String> = self
                .opts
                .extra_hosts
                .iter()
                .map(|(h, ip)| format!("{h}={ip}"))
                .collect();
            inputs.insert("extra-hosts".to_string(), hosts.join("\n"));
        }
        inputs.insert("layer-format".to_string(), self.layer_format());
        let key = StepKey::new(&st.key, inputs);
        if self.try_cache(st, &key, step, no_cache)? {
            return Ok(true);
        }

        // Locked in id order, so two RUNs locking the same caches never wait on each other crosswise;
        // an id mounted twice in one RUN shares one directory and one lock (unless private).
        caches.sort_by(|a, b| a.1.cmp(&b.1));
        let mut held = Vec::new();
        let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (i, id, m) in &caches {
            let private = m.sharing.as_deref() == Some("private");
            let dir = match dirs.get(id).filter(|_| !private) {
                Some(d) => d.clone(),
                None => {
                    let (dir, lock) = self.cache_dir(id, m)?;
                    held.push(lock);
                    if !private {
                        dirs.insert(id.clone(), dir.clone());
                    }
                    dir
                }
            };
            if let Some(MountKind::Bind { source, .. }) = mounts.get_mut(*i).map(|m| &mut m.kind) {
                *source = dir;
            }
        }
        let mut env = op.env.clone();
        env.extend(secret_env);
        let spec = RunSpec {
            rootfs: PathBuf::new(),
            argv: op.argv.clone(),
            env,
            user: Some(op.user.clone()).filter(|u| !u.is_empty()),
            workdir: op.workdir.clone(),
            hostname: "rbuild".to_string(),
            network,
            mounts,
            extra_hosts: self.opts.extra_hosts.clone(),
        };
        let reporter = self.reporter;
        let step_id = step.id();
        // A root of another architecture (its config says which) runs under QEMU: the same
        // executor behind the emulation check (exec::emulation); steps and keys are unchanged.
        let emulated;
        let executor: &dyn crate::exec::Executor =
            if crate::exec::emulation::runs_natively(&st.config.architecture) {
                self.executor
            } else {
                emulated = crate::exec::EmulatedExecutor {
                    inner: self.executor,
                    arch: st.config.architecture.clone(),
                };
                &emulated
            };
        let layer = self.layer_step(st, step_id, |active| {
            let mut tail: Vec<u8> = Vec::new();
            let outcome = executor
                .run(
                    &active.mounts,
                    &spec,
                    Some(self.cancel.clone()),
                    &mut |_stream, data| {
                        reporter.output(step, data);
                        tail.extend_from_slice(data);
                        if tail.len() > 4096 {
                            tail.drain(..tail.len() - 4096);
                        }
                    },
                )
                .map_err(|e| match e {
                    ExecError::Interrupted => BuildError::Interrupted,
                    e @ ExecError::LimitExceeded(_) => self.step_error(line, e.to_string()),
                    e => self.step_error(line, format!("RUN failed to start: {e}")),
                })?;
            if outcome.exit_code != 0 {
                return Err(self.exit_error(line, &spec.argv, outcome.exit_code, &tail));
            }
            Ok(())
        })?;
        drop(views);
        drop(scripts);
        drop(held);
        self.finish_layer_step(st, key, layer, op.created_by.clone())
    }

    /// A RUN that exited non-zero: the command, the code and the last lines of its output.
    fn exit_error(&self, line: usize, argv: &[String], code: i32, tail: &[u8]) -> BuildError {
        let last: Vec<&str> = std::str::from_utf8(tail)
            .unwrap_or("")
            .lines()
            .rev()
            .take(5)
            .collect();
        let mut msg = format!(
            "RUN {} did not complete successfully: exit code {code}",
            one_line(&argv.join(" ")),
        );
        if !last.is_empty() {
            msg.push_str("\n  last output:");
            for l in last.iter().rev() {
                msg.push_str("\n    ");
                msg.push_str(l);
            }
        }
        match self.step_error(line, msg) {
            BuildError::Step {
                file,
                line,
                text,
                message,
                ..
            } => BuildError::Step {
                file,
                line,
                text,
                message,
                exit_code: Some(code),
            },
            other => other,
        }
    }
}

/// A scratch file holding `content` with `mode`, removed when dropped.
fn write_script(
    dir: &std::path::Path,
    content: &str,
    mode: u32,
) -> std::io::Result<tempfile::TempPath> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::NamedTempFile::new_in(dir)?;
    f.write_all(content.as_bytes())?;
    f.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    // Closed before the run: a file still open for writing cannot be executed (ETXTBSY).
    Ok(f.into_temp_path())
}
