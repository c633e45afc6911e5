//! The command line interface: docker-compatible commands and flags (clap), error rendering.
//!
//! `rbuild -t name .` is accepted as `rbuild build -t name .`, as with `docker build`.

mod args;
mod attest;
mod build;
mod check;
mod commands;
mod contexts;
mod docs;
mod engine;
mod info;
mod metadata;
mod network;
mod options;
mod proxies;
mod registry;
pub mod render;
mod ssh;
mod verify;

use std::ffi::OsString;

pub use args::{Cli, Command};

/// Names of subcommands; anything else after the global options means `build`.
const SUBCOMMANDS: &[&str] = &[
    "build",
    "images",
    "inspect",
    "history",
    "tag",
    "rmi",
    "save",
    "load",
    "prune",
    "df",
    "diff",
    "verify",
    "fsck",
    "help",
    "pull",
    "push",
    "login",
    "logout",
    "completion",
    "man",
    "info",
];

/// Inserts `build` when the first non-global argument is not a subcommand (`rbuild -t x .`).
fn with_default_subcommand(args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--root" || a == "--log-level" || a == "--insecure-registry" {
            i += 2;
        } else if a.starts_with("--root=")
            || a.starts_with("--log-level=")
            || a.starts_with("--insecure-registry=")
        {
            i += 1;
        } else {
            break;
        }
    }
    if i >= args.len() {
        return args;
    }
    let first = args[i].to_string_lossy().to_string();
    let is_top_level_flag = matches!(first.as_str(), "-h" | "--help" | "-V" | "--version");
    if SUBCOMMANDS.contains(&first.as_str()) || is_top_level_flag || looks_like_typo(&first) {
        return args;
    }
    let mut out = args;
    out.insert(i, OsString::from("build"));
    out
}

/// A word close to a subcommand (`buildd`, `imgaes`) that is not a path: left for clap, which
/// then names the nearest subcommand instead of taking the word for a build context.
fn looks_like_typo(word: &str) -> bool {
    !word.starts_with('-')
        && !std::path::Path::new(word).exists()
        && SUBCOMMANDS
            .iter()
            .any(|s| strsim::levenshtein(s, word) <= 2 || strsim::jaro(s, word) > 0.8)
}

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    let args = with_default_subcommand(std::env::args_os().collect());
    let cli = match <Cli as clap::Parser>::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            1
        }
    }
}

/// Prints an error chain on one line per cause, prefixed with `rbuild: error:`.
fn report(e: &anyhow::Error) {
    eprintln!("rbuild: error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        with_default_subcommand(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|s| s.to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn build_is_the_default_subcommand() {
        assert_eq!(
            v(&["rbuild", "-t", "x", "."]),
            ["rbuild", "build", "-t", "x", "."]
        );
        assert_eq!(
            v(&["rbuild", "--root", "/r", "-t", "x", "."]),
            ["rbuild", "--root", "/r", "build", "-t", "x", "."]
        );
        assert_eq!(v(&["rbuild", "images"]), ["rbuild", "images"]);
        assert_eq!(v(&["rbuild", "--help"]), ["rbuild", "--help"]);
        assert_eq!(v(&["rbuild", "."]), ["rbuild", "build", "."]);
        assert_eq!(v(&["rbuild", "buildd", "."]), ["rbuild", "buildd", "."]);
    }
}
