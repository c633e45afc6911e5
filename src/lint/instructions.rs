//! Rules about single instructions: JSONArgsRecommended, WorkdirRelativePath,
//! MaintainerDeprecated, LegacyKeyValueFormat, SecretsUsedInArgOrEnv, ExposeProtoCasing,
//! ExposeInvalidFormat, MultipleInstructionsDisallowed and CopyIgnoredFile.

use super::{Input, Stage, Warning};
use crate::dockerfile::{CommandLine, Instruction, Node, NodeArg};

pub(super) fn check(input: &Input, globals: &[Node], stages: &[Stage], out: &mut Vec<Warning>) {
    for n in globals {
        maintainer(n, out);
        if n.keyword() == "env" || n.keyword() == "label" {
            legacy_key_value(n, out);
        }
        secrets(n, out);
    }
    // Stages whose SHELL was set explicitly, so their children inherit it.
    let mut shell_stages: Vec<String> = Vec::new();
    for st in stages {
        let base = st.from.arg_words().first().cloned().unwrap_or_default();
        let mut shell_set = shell_stages.contains(&base.to_lowercase());
        let mut workdir_set = false;
        let mut last: [Option<&Node>; 3] = [None; 3];
        for n in st.body {
            let kw = n.keyword();
            maintainer(n, out);
            if kw == "env" || kw == "label" {
                legacy_key_value(n, out);
            }
            secrets(n, out);
            if let Some(slot) = ["cmd", "entrypoint", "healthcheck"]
                .iter()
                .position(|k| *k == kw)
            {
                // The earlier one is reported: it is the one that has no effect.
                if let Some(prev) = last[slot] {
                    out.push(Warning::at(
                        "MultipleInstructionsDisallowed",
                        prev,
                        format!("Multiple {} instructions should not be used in the same stage because only the last one will be used", kw.to_uppercase()),
                    ));
                }
                last[slot] = Some(n);
            }
            let Ok(inst) = Instruction::from_node(n) else {
                continue;
            };
            match &inst {
                Instruction::Shell(_) => shell_set = true,
                Instruction::Cmd(c) if !shell_set => json_args(n, &c.cmd, out),
                Instruction::Entrypoint(c) if !shell_set => json_args(n, &c.cmd, out),
                Instruction::Workdir(w) => {
                    if !workdir_set && !w.path.starts_with('/') && !w.path.starts_with('$') {
                        out.push(Warning::at(
                            "WorkdirRelativePath",
                            n,
                            format!("Relative workdir {:?} can have unexpected results if the base image changes", w.path),
                        ));
                    }
                    workdir_set = true;
                }
                Instruction::Expose(e) => {
                    for p in &e.ports {
                        expose(n, p, out);
                    }
                }
                Instruction::Copy(c) if c.from.is_none() => {
                    ignored(input, n, "Copy", &c.sources, out)
                }
                Instruction::Add(a) => {
                    let local: Vec<String> = a
                        .sources
                        .iter()
                        .filter(|s| !s.contains("://") && !s.starts_with("git@"))
                        .cloned()
                        .collect();
                    ignored(input, n, "Add", &local, out)
                }
                _ => {}
            }
        }
        if shell_set {
            if let Some(name) = &st.name {
                shell_stages.push(name.clone());
            }
        }
    }
}

fn maintainer(n: &Node, out: &mut Vec<Warning>) {
    if n.keyword() == "maintainer" {
        out.push(Warning::at(
            "MaintainerDeprecated",
            n,
            "Maintainer instruction is deprecated in favor of using label".into(),
        ));
    }
}

fn json_args(n: &Node, cmd: &CommandLine, out: &mut Vec<Warning>) {
    if let CommandLine::Shell(_) = cmd {
        out.push(Warning::at(
            "JSONArgsRecommended",
            n,
            format!(
                "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                n.keyword().to_uppercase()
            ),
        ));
    }
}

/// ENV and LABEL nodes hold (key, value, separator) triples; an empty separator is the legacy
/// `KEY value` form.
fn legacy_key_value(n: &Node, out: &mut Vec<Warning>) {
    let words: Vec<&str> = n
        .args
        .iter()
        .filter_map(|a| match a {
            NodeArg::Word(w) => Some(w.as_str()),
            NodeArg::Sub(_) => None,
        })
        .collect();
    if words.chunks(3).any(|t| t.len() == 3 && t[2].is_empty()) {
        let name = n.keyword().to_uppercase();
        out.push(Warning::at(
            "LegacyKeyValueFormat",
            n,
            format!(
                "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
            ),
        ));
    }
}

const SECRET_WORDS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const ALLOW_WORDS: [&str; 3] = ["public", "file", "version"];

/// BuildKit's test: the first or last `_`-separated word (or the whole name) is a secret word,
/// and neither end is an allowed word.
fn looks_secret(key: &str) -> bool {
    let k = key.to_lowercase();
    let parts: Vec<&str> = k.split('_').collect();
    let ends = |words: &[&str]| {
        words.contains(&k.as_str())
            || parts.first().is_some_and(|p| words.contains(p))
            || parts.last().is_some_and(|p| words.contains(p))
    };
    // Any `_word_` in the middle counts too: the pattern is `(_|^)word(_|$)`.
    let anywhere = |words: &[&str]| parts.iter().any(|p| words.contains(p)) || ends(words);
    anywhere(&SECRET_WORDS) && !anywhere(&ALLOW_WORDS)
}

fn secrets(n: &Node, out: &mut Vec<Warning>) {
    let (name, keys) = match Instruction::from_node(n) {
        Ok(Instruction::Arg(a)) => ("ARG", a.args.into_iter().map(|(k, _)| k).collect()),
        Ok(Instruction::Env(e)) => ("ENV", e.pairs.into_iter().map(|(k, _)| k).collect()),
        _ => ("", Vec::new()),
    };
    for k in keys {
        if looks_secret(&k) {
            out.push(Warning::at(
                "SecretsUsedInArgOrEnv",
                n,
                format!("Do not use ARG or ENV instructions for sensitive data ({name} {k:?})"),
            ));
        }
    }
}

/// `[ip:][hostPort:]containerPort[/proto]`.
fn expose(n: &Node, raw: &str, out: &mut Vec<Warning>) {
    let (rest, proto) = raw.rsplit_once('/').unwrap_or((raw, ""));
    if proto != proto.to_lowercase() {
        out.push(Warning::at(
            "ExposeProtoCasing",
            n,
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
        ));
    }
    if rest.contains(':') {
        out.push(Warning::at(
            "ExposeInvalidFormat",
            n,
            format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
        ));
    }
}

fn ignored(input: &Input, n: &Node, cmd: &str, sources: &[String], out: &mut Vec<Warning>) {
    let Some(is_ignored) = input.ignored else {
        return;
    };
    for s in sources {
        let clean = clean_path(s);
        if clean == "." {
            continue;
        }
        let mut p = std::path::Path::new(&clean);
        let hit = loop {
            if is_ignored(&p.to_string_lossy()) {
                break true;
            }
            match p.parent() {
                Some(q) if !q.as_os_str().is_empty() => p = q,
                _ => break false,
            }
        };
        if hit {
            out.push(Warning::at(
                "CopyIgnoredFile",
                n,
                format!("Attempting to {cmd} file {clean:?} that is excluded by .dockerignore"),
            ));
        }
    }
}

/// Go's `filepath.Clean` relative to the context root, without the leading slash.
fn clean_path(s: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names_as_buildkit() {
        for k in [
            "api_key",
            "DATABASE_PASSWORD",
            "GITHUB_TOKEN",
            "secret_MESSAGE",
            "AUTH",
        ] {
            assert!(super::looks_secret(k), "{k}");
        }
        for k in [
            "PUBLIC_KEY",
            "PASSWORD_FILE",
            "TOKEN_VERSION",
            "KEYBOARD",
            "MONKEY",
        ] {
            assert!(!super::looks_secret(k), "{k}");
        }
    }
}
