//! End-to-end checks of the build flags that choose where a build's inputs come from (issue 20):
//! `--pull`, `--build-context`, `--cache-from IMAGE`.

mod common;

use common::registry::Registry;
use common::*;
use std::path::Path;

/// Builds `ctx` into `root` with a fixed epoch and `extra` flags; returns the image id.
fn build(root: &Path, ctx: &Path, extra: &[&str]) -> (Run, String) {
    let mut args = vec![
        "build",
        "--progress",
        "plain",
        "--source-date-epoch",
        "1700000000",
    ];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = ok(rbuild(root, &args));
    let id = r.stdout.trim().to_string();
    (r, id)
}

/// Pushes a one-file image (`/v` holding `value`) as `image`, built in its own store.
fn push_value(dir: &Path, image: &str, value: &str) {
    let ctx = context(
        &dir.join(format!("ctx-{value}")),
        "FROM scratch\nCOPY v /v\n",
        &[("v", value)],
    );
    build(&dir.join("publisher"), &ctx, &["--push", "-t", image]);
}

#[test]
fn pull_picks_up_a_tag_that_moved() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let base = format!("{}/cli/base:t", reg.addr());
    push_value(t.path(), &base, "A");
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("app"),
        &format!("FROM {base}\nCOPY w /w\n"),
        &[("w", "app")],
    );
    let out = |n: &str| t.path().join(n);
    let dest = |n: &str| format!("type=local,dest={}", out(n).display());
    let read_v = |n: &str| std::fs::read_to_string(out(n).join("v")).unwrap();

    let (_, first) = build(&root, &ctx, &["-o", &dest("first")]);
    assert_eq!(read_v("first"), "A");
    push_value(t.path(), &base, "B");
    // Without --pull the stored tag is used: same base, every step cached, same image.
    let (r, again) = build(&root, &ctx, &["-o", &dest("again")]);
    assert_eq!(read_v("again"), "A");
    assert_eq!(first, again);
    assert!(!r.stderr.contains("pulling"), "{}", r.stderr);
    // With --pull the registry's newest digest wins, and the COPY's cache key follows it.
    let (r, pulled) = build(&root, &ctx, &["--pull", "-o", &dest("pulled")]);
    assert_eq!(read_v("pulled"), "B");
    assert!(
        r.stderr.contains(&format!("pulling {base}")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_ne!(first, pulled);
    // The store's tag now names the new base: a later build without --pull uses it too.
    let (_, after) = build(&root, &ctx, &["-o", &dest("after")]);
    assert_eq!(read_v("after"), "B");
    assert_eq!(after, pulled);
}
