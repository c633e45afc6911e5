//! Size caps a hostile build cannot get past (issue 16): a secret read into an env var, and
//! archive bombs given to ADD. Each runs the real binary.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A context holding the busybox rootfs as `rootfs.tar` and a Dockerfile starting from it.
fn busybox_ctx(dir: &Path, rest: &str) -> PathBuf {
    let ctx = context(dir, &format!("FROM scratch\nADD rootfs.tar /\n{rest}"), &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    ctx
}

#[test]
fn secret_read_into_env_has_the_file_secrets_size_cap() {
    let t = tempfile::tempdir().unwrap();
    let big = t.path().join("big-secret");
    // One byte over exec::MAX_SECRET (32 MiB).
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(32 * 1024 * 1024 + 1).unwrap();
    let small = t.path().join("small-secret");
    std::fs::write(&small, "fine").unwrap();
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        "RUN --mount=type=secret,id=small,env=SMALL test \"$SMALL\" = fine\n\
         RUN --mount=type=secret,id=big,env=BIG echo ran\n",
    );
    let root = t.path().join("root");
    let r = rbuild(
        &root,
        &[
            "build",
            "--secret",
            &format!("id=big,src={}", big.display()),
            "--secret",
            &format!("id=small,src={}", small.display()),
            ctx.to_str().unwrap(),
        ],
    );
    assert_ne!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("secret larger than 33554432 bytes"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("big-secret"),
        "names the file: {}",
        r.stderr
    );
    assert!(r.stderr.contains(":4"), "names the line: {}", r.stderr);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}
