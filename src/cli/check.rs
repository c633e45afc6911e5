//! Build checks from the CLI: the warnings printed before a build, `--call check` / `--check`,
//! `--call outline` and `--call targets` (src/lint/ does the analysis; this file reads the
//! Dockerfile, base image environments from the store, and prints as buildx does).

use super::args::{BuildArgs, CallArg};
use crate::dockerfile::Dockerfile;
use crate::lint::{self, CheckConfig, Warning};
use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The Dockerfile a build reads, when it is a file (not stdin).
fn dockerfile_path(a: &BuildArgs) -> Option<PathBuf> {
    match a.file.as_deref() {
        // With a tar context on stdin, a relative -f names a file inside the tar.
        _ if a.context == "-" => None,
        Some("-") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(Path::new(&a.context).join("Dockerfile")),
    }
}

/// Parsed Dockerfile and its findings (after the `# check=` directive's filter).
pub(super) struct Checked {
    pub dockerfile: Dockerfile,
    pub config: CheckConfig,
    pub warnings: Vec<Warning>,
}

/// Runs the checks; None when the Dockerfile comes from stdin (the build reads it then).
pub(super) fn run_checks(
    a: &BuildArgs,
    root: &Path,
    build_args: &BTreeMap<String, String>,
    strict: bool,
) -> Result<Option<Checked>> {
    let Some(path) = dockerfile_path(a) else {
        return Ok(None);
    };
    // The default Dockerfile is read by the build inside the context (symlinks resolved there);
    // a symlinked one is left to the build rather than followed here.
    if a.file.is_none()
        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
    {
        return Ok(None);
    }
    // Before a build, a Dockerfile that cannot be read is left for the build to report.
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if !strict => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("unable to read Dockerfile {}", path.display()))
        }
    };
    let shown = match &a.file {
        Some(f) => PathBuf::from(f),
        None => PathBuf::from("Dockerfile"),
    };
    // Before a build, a Dockerfile that does not parse is left for the build to report.
    let df = match crate::dockerfile::parse(&text, &shown) {
        Ok(df) => df,
        Err(e) if strict => return Err(anyhow!("{e}")),
        Err(_) => return Ok(None),
    };
    let config = match &df.check {
        Some(v) => {
            CheckConfig::parse(v).map_err(|e| anyhow!("{}: # check=: {e}", shown.display()))?
        }
        None => CheckConfig::default(),
    };
    let store = crate::store::Store::open(root).ok();
    let base_env = |name: &str| -> Option<Vec<(String, String)>> {
        let store = store.as_ref()?;
        let id = store.resolve(name).ok()??;
        let bytes = store.image_config(&id).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let env = v.get("config")?.get("Env");
        Some(
            env.and_then(|e| e.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str()?.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    };
    let ctx = (a.context != "-")
        .then(|| crate::context::Context::open(Path::new(&a.context), &path).ok())
        .flatten()
        .filter(|c| c.ignore_file().is_some() && !c.matcher().exclusions());
    let ignored = |p: &str| ctx.as_ref().is_some_and(|c| c.is_ignored(p));
    let input = lint::Input {
        dockerfile: &df,
        build_args,
        base_env: &base_env,
        ignored: ctx.is_some().then_some(&ignored as &dyn Fn(&str) -> bool),
    };
    let warnings = lint::check(&input, &config);
    Ok(Some(Checked {
        dockerfile: df,
        config,
        warnings,
    }))
}

/// Before a build: one `WARN:` line per finding, and the error `error=true` asks for.
/// With `--progress rawjson` each is a `SolveStatus` warning object instead.
pub(super) fn warn_before_build(c: &Checked, rawjson: bool) -> Result<()> {
    for w in &c.warnings {
        if rawjson {
            use base64::Engine;
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let v = serde_json::json!({"warnings": [{
                "level": 1,
                "short": b64(&format!("{}: {}", w.rule, w.message)),
                "url": w.url(),
                "range": [{"start": {"line": w.line}, "end": {"line": w.end_line}}],
            }]});
            eprintln!("{v}");
        } else {
            eprintln!("WARN: {}", w.short());
        }
    }
    fail_on_error(c)
}

fn fail_on_error(c: &Checked) -> Result<()> {
    if c.config.error && !c.warnings.is_empty() {
        let mut rules: Vec<&str> = c.warnings.iter().map(|w| w.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        bail!("lint violation found for rules: {}", rules.join(", "));
    }
    Ok(())
}

/// `--call check|outline|targets`: prints the answer; returns the exit code.
pub(super) fn call(a: &BuildArgs, c: Option<Checked>, call: CallArg) -> Result<i32> {
    let c = c.ok_or_else(|| anyhow!("--call needs the Dockerfile in a file (not stdin)"))?;
    let mut out = std::io::stdout().lock();
    match call {
        CallArg::Check => {
            let n = c.warnings.len();
            if n > 0 {
                let s = if n == 1 {
                    "1 warning has been found!".to_string()
                } else {
                    format!("{n} warnings have been found!")
                };
                writeln!(out, "Check complete, {s}")?;
            }
            for w in &c.warnings {
                writeln!(out, "\nWARNING: {} - {}\n{}", w.rule, w.url(), w.message)?;
                writeln!(
                    out,
                    "{}:{}\n--------------------",
                    c.dockerfile.path.display(),
                    w.line
                )?;
                for (i, l) in c.dockerfile.source.lines().enumerate() {
                    let n = i + 1;
                    if n + 2 >= w.line && n <= w.end_line + 2 {
                        let mark = if n >= w.line && n <= w.end_line {
                            ">>>"
                        } else {
                            "   "
                        };
                        writeln!(out, " {n:>3} | {mark} {l}")?;
                    }
                }
                writeln!(out, "--------------------")?;
            }
            if n == 0 {
                writeln!(out, "Check complete, no warnings found.")?;
            }
            out.flush()?;
            fail_on_error(&c)?;
            Ok(if n > 0 { 1 } else { 0 })
        }
        CallArg::Outline => {
            let o =
                lint::outline::outline(&c.dockerfile, a.target.as_deref()).ok_or_else(|| {
                    anyhow!(
                        "target stage {:?} could not be found",
                        a.target.clone().unwrap_or_default()
                    )
                })?;
            if !o.target.is_empty() {
                writeln!(out, "TARGET:\t{}", o.target)?;
            }
            if !o.description.is_empty() {
                writeln!(out, "DESCRIPTION:\t{}", o.description)?;
            }
            if !o.args.is_empty() {
                writeln!(out, "\nBUILD ARG\tVALUE\tDESCRIPTION")?;
                for arg in &o.args {
                    let v = a_value(&arg.default);
                    writeln!(out, "{}\t{}\t{}", arg.name, v, arg.description)?;
                }
            }
            if !o.secrets.is_empty() {
                writeln!(out, "\nSECRET\tREQUIRED")?;
                for s in &o.secrets {
                    writeln!(out, "{}\t{}", s.id, if s.required { "true" } else { "" })?;
                }
            }
            Ok(0)
        }
        CallArg::Targets => {
            writeln!(out, "TARGET\tDESCRIPTION")?;
            for t in lint::outline::targets(&c.dockerfile) {
                let name = if t.default {
                    format!("{} (default)", t.name)
                } else {
                    t.name
                };
                writeln!(out, "{name}\t{}", t.description)?;
            }
            Ok(0)
        }
        CallArg::Build => Ok(0),
    }
}

fn a_value(v: &Option<String>) -> String {
    match v {
        Some(s) if s.is_empty() => "\"\"".into(),
        Some(s) => s.clone(),
        None => "<null>".into(),
    }
}
