//! RUN's seccomp filter refuses blocked syscalls under their x32 numbers too (issue 16): a static
//! probe (testdata/x32probe.c, built here with `gcc -static`) is ADDed into the rootfs and calls
//! `unshare`, `keyctl` and `mount` with `__X32_SYSCALL_BIT` set.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Whether `tool` is there; without it the test is skipped, unless RBUILD_REQUIRE_TOOLS=1.
fn need(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        std::env::var("RBUILD_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{tool} is required (scripts/setup installs it)"
    );
    eprintln!("skipped: {tool} not installed");
    false
}

fn build_probe(dest: &Path) {
    sh(Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dest)
        .arg(repo_dir().join("testdata/x32probe.c")));
}

/// Lines `name rc errno` of the probe's report, as (name, errno-or-OK).
fn results(report: &str) -> Vec<(String, String)> {
    report
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .collect()
}

#[test]
fn x32_numbers_of_blocked_syscalls_are_denied_in_run() {
    if !need("gcc") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nADD x32probe /x32probe\n\
         RUN /x32probe > /x32-report\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    build_probe(&ctx.join("x32probe"));
    // Both answers are fine for the assertion below; the host's is printed for the log.
    let host = sh(Command::new(ctx.join("x32probe")).arg("host"));
    eprintln!("host x32 ABI: {host}");

    let out = t.path().join("out");
    let root = t.path().join("root");
    ok(rbuild(
        &root,
        &[
            "build",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let report = std::fs::read_to_string(out.join("x32-report")).unwrap();
    let got = results(&report);
    let errno_of = |name: &str| {
        got.iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("{name} missing from report:\n{report}"))
    };
    // The x86_64 numbers are refused by the deny list (the filter is on)...
    assert_eq!(errno_of("unshare"), "EPERM", "{report}");
    assert_eq!(errno_of("keyctl"), "EPERM", "{report}");
    // ...and so are their x32 numbers: EPERM comes from the filter, before the kernel's
    // dispatcher could answer ENOSYS (no x32 ABI) or run the call (x32 ABI built in).
    for name in ["x32-unshare", "x32-keyctl", "x32-mount", "x32-getpid"] {
        assert_eq!(errno_of(name), "EPERM", "{name}:\n{report}");
    }
    assert_nothing_mounted_under(&root);
}
