//! Metadata instructions: each edits the runtime config and records an empty-layer history entry.

use super::{ConfigEdit, KeyInputs, LowerError, Scope};
use crate::dockerfile::instruction::{CommandLine, HealthcheckInst};
use crate::dockerfile::Instruction;
use crate::image::history::{self, HistoryFormat};
use crate::image::Healthcheck;

/// Lowers one expanded metadata instruction (everything but FROM, RUN, COPY and ADD).
pub(super) fn lower_meta(s: &mut Scope<'_>, inst: Instruction) -> Result<ConfigEdit, LowerError> {
    let fmt = s.input.history_format;
    let shell = s.shell();
    let history = match inst {
        Instruction::Env(e) => {
            for (k, v) in &e.pairs {
                set_env(&mut s.config.env, k, v);
            }
            Some(history::env(fmt, &shell, &e.pairs))
        }
        Instruction::Label(l) => {
            for (k, v) in &l.pairs {
                s.config.labels.insert(k.clone(), v.clone());
            }
            Some(history::label(fmt, &shell, &l.pairs))
        }
        Instruction::Maintainer(m) => {
            s.author = Some(m.maintainer.clone());
            Some(history::simple(fmt, &shell, "MAINTAINER", &m.maintainer))
        }
        Instruction::Expose(e) => {
            for p in history::normalize_ports(&e.ports) {
                s.config.exposed_ports.insert(p, Default::default());
            }
            Some(history::expose(fmt, &shell, &e.ports))
        }
        Instruction::Volume(v) => {
            for path in &v.volumes {
                s.config.volumes.insert(path.clone(), Default::default());
            }
            Some(history::volume(fmt, &shell, &v.volumes))
        }
        Instruction::User(u) => {
            s.config.user = u.user.clone();
            Some(history::simple(fmt, &shell, "USER", &u.user))
        }
        Instruction::Workdir(w) => {
            let joined = join_workdir(&s.workdir(), &w.path);
            s.config.working_dir = joined.clone();
            Some(history::workdir(fmt, &shell, &joined))
        }
        Instruction::Stopsignal(sig) => {
            s.config.stop_signal = sig.signal.clone();
            Some(history::simple(fmt, &shell, "STOPSIGNAL", &sig.signal))
        }
        Instruction::Arg(a) => {
            let mut shown = Vec::new();
            for (name, default) in &a.args {
                let value = s.args.declare(name, default.clone());
                // BuildKit records the resolved value; classic the Dockerfile default.
                let recorded = match fmt {
                    HistoryFormat::Buildkit => value,
                    HistoryFormat::Classic => default.clone(),
                };
                shown.push((name.clone(), recorded));
            }
            Some(history::arg(fmt, &shell, &shown))
        }
        Instruction::Cmd(c) => {
            let argv = command_argv(&c.cmd, &shell);
            s.config.cmd = Some(argv.clone());
            s.config.args_escaped = true;
            s.cmd_set_here = true;
            Some(history::cmd(fmt, &shell, &argv))
        }
        Instruction::Entrypoint(e) => {
            let argv = command_argv(&e.cmd, &shell);
            s.config.entrypoint = Some(argv.clone());
            // Docker: ENTRYPOINT resets a CMD inherited from the base, not one set in this stage.
            if !s.cmd_set_here {
                s.config.cmd = None;
            }
            Some(history::entrypoint(fmt, &shell, &argv))
        }
        Instruction::Shell(sh) => {
            s.config.shell = sh.shell.clone();
            Some(history::shell(fmt, &sh.shell))
        }
        Instruction::Onbuild(o) => {
            s.config.on_build.push(o.expression.clone());
            // BuildKit records no history entry for ONBUILD; classic does.
            let h = history::onbuild(fmt, &shell, &o.expression);
            if h.is_none() {
                let mut key = KeyInputs::new();
                key.insert(
                    "instruction".to_string(),
                    format!("ONBUILD {}", o.expression),
                );
                return Ok(edit(s, None, key));
            }
            h
        }
        Instruction::Healthcheck(hc) => {
            let h = healthcheck_config(&hc);
            let text = history::healthcheck(fmt, &shell, &h);
            s.config.healthcheck = Some(h);
            Some(text)
        }
        Instruction::From(_) | Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
            return Err(super::at(0, "not a metadata instruction"))
        }
    };
    let mut key = KeyInputs::new();
    if let Some(h) = &history {
        key.insert("instruction".to_string(), h.clone());
    }
    Ok(edit(s, history, key))
}

fn edit(s: &Scope<'_>, history: Option<String>, key: KeyInputs) -> ConfigEdit {
    ConfigEdit {
        config: s.config.clone(),
        author: s.author.clone(),
        history,
        key,
    }
}

/// Sets `K=V` in an Env list, replacing an existing `K`.
fn set_env(env: &mut Vec<String>, k: &str, v: &str) {
    let entry = format!("{k}={v}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) == k)
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// HEALTHCHECK as the config records it: durations in nanoseconds, shell form as CMD-SHELL.
pub fn healthcheck_config(hc: &HealthcheckInst) -> Healthcheck {
    match hc {
        HealthcheckInst::None => Healthcheck {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        HealthcheckInst::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                CommandLine::Exec(v) => {
                    let mut t = vec!["CMD".to_string()];
                    t.extend(v.iter().cloned());
                    t
                }
                CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            };
            Healthcheck {
                test,
                interval: interval.unwrap_or(0),
                timeout: timeout.unwrap_or(0),
                start_period: start_period.unwrap_or(0),
                start_interval: start_interval.unwrap_or(0),
                retries: retries.unwrap_or(0),
            }
        }
    }
}

/// `WORKDIR` semantics: absolute replaces, relative joins the current one; the result is cleaned.
pub fn join_workdir(current: &str, w: &str) -> String {
    let joined = if w.starts_with('/') {
        w.to_string()
    } else {
        format!("{}/{}", current.trim_end_matches('/'), w)
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// CMD/ENTRYPOINT argv: exec form as written, shell form wrapped in the current SHELL.
pub fn command_argv(c: &CommandLine, shell: &[String]) -> Vec<String> {
    match c {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}
