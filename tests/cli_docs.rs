//! Shell completions and the man page come from the clap definitions; docs/rbuild.1 is current.

mod common;

use common::*;
use std::process::Command;

fn out(args: &[&str]) -> String {
    let o = Command::new(rbuild_bin()).args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn completions_name_the_subcommands_and_flags() {
    let bash = out(&["completion", "bash"]);
    for word in [
        "build",
        "images",
        "push",
        "completion",
        "--metadata-file",
        "--load",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(out(&["completion", "zsh"]).contains("#compdef rbuild"));
    assert!(out(&["completion", "fish"]).contains("complete -c rbuild"));
}

#[test]
fn man_page_renders_and_is_current() {
    let page = out(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH rbuild 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains("rbuild\\-build"), "per-command sections");
    let committed = std::fs::read_to_string(repo_dir().join("docs/rbuild.1")).unwrap_or_default();
    assert!(
        committed == page,
        "docs/rbuild.1 is stale: run `rbuild man > docs/rbuild.1`"
    );
    if need("groff") {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} man | groff -man -Tutf8",
                rbuild_bin().display()
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains("daemonless"), "{text}");
    }
}
