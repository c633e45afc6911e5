//! RUN: argv in the current SHELL, the environment (Env over build args), typed mounts.

use super::{at, ExecMount, ExecOp, KeyInputs, LowerError, NetworkMode, Scope};
use crate::dockerfile::instruction::{CommandLine, RunInst};
use crate::dockerfile::mount::parse_mount_expanded;
use crate::image::history;

pub(super) fn lower_run(
    s: &Scope<'_>,
    run: &RunInst,
    expansion_env: &[(String, String)],
    line: usize,
) -> Result<ExecOp, LowerError> {
    let shell = s.shell();
    let argv = match &run.cmd {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(text) => {
            let mut v = shell.clone();
            v.push(run_script(text, run));
            v
        }
    };
    if argv.is_empty() {
        return Err(at(line, "RUN has no command"));
    }
    // Build args reach RUN's environment, not the image config; Env wins over an ARG of the same name.
    let mut env: Vec<String> = s.config.env.clone();
    let env_keys: Vec<String> = env
        .iter()
        .map(|kv| kv.split('=').next().unwrap_or("").to_string())
        .collect();
    for (k, v) in s.args.run_env() {
        if !env_keys.contains(&k) {
            env.push(format!("{k}={v}"));
        }
    }
    let history_args: Vec<(String, String)> = s
        .args
        .history_args()
        .into_iter()
        .filter(|(k, _)| !env_keys.contains(k))
        .collect();
    let network = match run.network.as_deref() {
        Some("none") => NetworkMode::None,
        Some("host") | Some("default") => NetworkMode::Host,
        Some(other) => return Err(at(line, format!("unsupported RUN --network={other}"))),
        None => NetworkMode::Default,
    };
    let form = match &run.cmd {
        CommandLine::Exec(v) => history::CommandForm::Exec(v.clone()),
        CommandLine::Shell(_) => {
            history::CommandForm::Shell(argv.last().cloned().unwrap_or_default())
        }
    };
    let created_by = history::run(s.input.history_format, &shell, &history_args, &form);

    // Parsed once, here, with every value expanded as BuildKit does.
    let mut mounts = Vec::with_capacity(run.mounts.len());
    for (index, raw) in run.mounts.iter().enumerate() {
        let mount = parse_mount_expanded(raw, &s.lexer, &expansion_env.to_vec())
            .map_err(|e| at(line, e.to_string()))?;
        let from = match &mount.from {
            Some(f) => Some(s.resolve_from(f, line)?),
            None => None,
        };
        mounts.push(ExecMount { index, mount, from });
    }

    let mut key = KeyInputs::new();
    key.insert("instruction".to_string(), created_by.clone());
    key.insert("env".to_string(), env.join("\n"));
    key.insert("user".to_string(), s.config.user.clone());
    key.insert("workdir".to_string(), s.workdir());
    Ok(ExecOp {
        argv,
        env,
        user: s.config.user.clone(),
        workdir: s.workdir(),
        network,
        mounts,
        created_by,
        key,
    })
}

/// The shell script for a shell-form RUN: a lone heredoc is the script itself; otherwise heredoc bodies
/// follow the command text so the shell reads them as here-documents (as BuildKit does).
fn run_script(text: &str, run: &RunInst) -> String {
    if run.heredocs.is_empty() {
        return text.to_string();
    }
    let trimmed = text.trim();
    if run.heredocs.len() == 1 && trimmed.starts_with("<<") && !trimmed.contains(' ') {
        return run.heredocs[0].content.clone();
    }
    let mut script = text.to_string();
    for h in &run.heredocs {
        script.push('\n');
        script.push_str(&h.content);
        if !h.content.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(&h.name);
    }
    script
}
