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
    let mut argv = match &run.cmd {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(text) => {
            let mut v = shell.clone();
            v.push(run_script(text, run));
            v
        }
    };
    // A lone heredoc with a shebang is a script file run by the shell (BuildKit mounts it at
    // /dev/pipes/<name>, 0755); the history still shows its text.
    let mut files = Vec::new();
    let mut script_key = None;
    if let (CommandLine::Shell(text), [h]) = (&run.cmd, run.heredocs.as_slice()) {
        if is_lone_heredoc(text, run) && h.content.starts_with("#!") {
            let target = format!("/dev/pipes/{}", h.name);
            files.push((target.clone(), h.content.clone(), 0o755));
            script_key = Some(h.content.clone());
            if let Some(last) = argv.last_mut() {
                *last = target;
            }
        }
    }
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
    // Proxy variables run too, but are no part of the key (a new proxy keeps the cache).
    let key_env = env.join("\n");
    for (k, v) in s.args.proxy_env() {
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
    // `default` is the build's own mode (BuildKit's "unset"), not the host's network.
    let network = match run.network.as_deref() {
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some("default") | None => NetworkMode::Default,
        Some(other) => return Err(at(line, format!("unsupported RUN --network={other}"))),
    };
    let form = match &run.cmd {
        CommandLine::Exec(v) => history::CommandForm::Exec(v.clone()),
        CommandLine::Shell(text) => history::CommandForm::Shell(run_script(text, run)),
    };
    let created_by = history::run(s.input.history_format, &shell, &history_args, &form);

    // Parsed once, here, with every value expanded as BuildKit does.
    let mut mounts = Vec::with_capacity(run.mounts.len());
    for (index, raw) in run.mounts.iter().enumerate() {
        let mount = parse_mount_expanded(raw, &s.lexer, &expansion_env.to_vec())
            .map_err(|e| at(line, e.to_string()))?;
        let from = match &mount.from {
            Some(f) => Some(s.resolve_from(f, line, mount.target.as_deref())?),
            None => None,
        };
        mounts.push(ExecMount { index, mount, from });
    }

    let mut key = KeyInputs::new();
    key.insert("instruction".to_string(), created_by.clone());
    key.insert("env".to_string(), key_env);
    key.insert("user".to_string(), s.config.user.clone());
    key.insert("workdir".to_string(), s.workdir());
    if let Some(script) = script_key {
        key.insert("script".to_string(), script);
    }
    Ok(ExecOp {
        argv,
        env,
        user: s.config.user.clone(),
        workdir: s.workdir(),
        network,
        mounts,
        files,
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
    if is_lone_heredoc(text, run) {
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

/// `RUN <<EOF` alone: the heredoc is the whole command.
fn is_lone_heredoc(text: &str, run: &RunInst) -> bool {
    let trimmed = text.trim();
    run.heredocs.len() == 1 && trimmed.starts_with("<<") && !trimmed.contains(' ')
}
