//! `--cache-to` / `--cache-from`: a build on an empty root reuses the steps another root built,
//! through a real `docker-registry` or a local directory.

mod common;

use common::registry::Registry;
use common::*;
use std::path::Path;

const DOCKERFILE: &str = "FROM scratch\nADD rootfs.tar /\n\
    RUN --mount=type=cache,id=counter,target=/count echo ran >> /count/runs; sleep 1; echo built > /built\n\
    CMD [\"sh\"]\n";

/// How many times the RUN ran in `root` (it appends a line to a file in its cache mount).
fn runs(root: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(root.join("cache/mounts")) else {
        return 0;
    };
    dir.flatten()
        .map(|e| {
            std::fs::read_to_string(e.path().join("runs"))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        })
        .sum()
}

fn build(root: &Path, ctx: &Path, extra: &[&str]) -> (Run, String) {
    // A fixed epoch: the two roots' images can then be compared by id.
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

#[test]
fn registry_cache_lets_a_fresh_root_skip_the_run() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let ctx = context(&t.path().join("ctx"), DOCKERFILE, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    let cache = format!("type=registry,ref={}/cache/app:main,mode=max", reg.addr());
    let root1 = t.path().join("root1");
    let (_, id1) = build(&root1, &ctx, &["--cache-to", &cache]);
    assert_eq!(runs(&root1), 1);

    // A fresh root with the cache: the RUN does not run, and the image is the same.
    let root2 = t.path().join("root2");
    let from = format!("type=registry,ref={}/cache/app:main", reg.addr());
    let out = t.path().join("out");
    let (r, id2) = build(
        &root2,
        &ctx,
        &[
            "--cache-from",
            &from,
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_eq!(runs(&root2), 0, "the RUN ran again:\n{}", r.stderr);
    assert_eq!(id1, id2);
    assert_eq!(
        std::fs::read_to_string(out.join("built")).unwrap(),
        "built\n"
    );
    // Without the cache a third root does run it (the assertion above can fail).
    let root3 = t.path().join("root3");
    build(&root3, &ctx, &[]);
    assert_eq!(runs(&root3), 1);
    // A cache ref that does not exist yet is not an error (first build of a branch).
    let root4 = t.path().join("root4");
    let missing = format!("type=registry,ref={}/cache/app:nope", reg.addr());
    build(&root4, &ctx, &["--cache-from", &missing]);
    assert_eq!(runs(&root4), 1);
    assert_nothing_mounted_under(&root2);
}

#[test]
fn local_cache_dir_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(&t.path().join("ctx"), DOCKERFILE, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    let dir = t.path().join("cachedir");
    let root1 = t.path().join("root1");
    let (_, id1) = build(
        &root1,
        &ctx,
        &["--cache-to", &format!("type=local,dest={}", dir.display())],
    );
    assert!(dir.join("index.json").is_file());
    // The directory is an OCI layout that umoci/skopeo can read.
    let root2 = t.path().join("root2");
    let (r, id2) = build(
        &root2,
        &ctx,
        &["--cache-from", &format!("type=local,src={}", dir.display())],
    );
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_eq!(runs(&root2), 0);
    assert_eq!(id1, id2);
}

#[test]
fn inline_cache_in_the_pushed_image() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let ctx = context(&t.path().join("ctx"), DOCKERFILE, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    let image = format!("{}/app/inline:1", reg.addr());
    let root1 = t.path().join("root1");
    let (_, id1) = build(
        &root1,
        &ctx,
        &["--push", "-t", &image, "--cache-to", "type=inline"],
    );
    assert_eq!(runs(&root1), 1);
    // The manifest names the cache config; the image itself is unchanged (same config).
    let raw = sh(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    assert!(raw.contains("io.rbuild.cache.config"), "{raw}");
    assert!(raw.contains(id1.as_str()), "{raw}");
    let root2 = t.path().join("root2");
    let (r, id2) = build(&root2, &ctx, &["--cache-from", &image]);
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_eq!(runs(&root2), 0, "{}", r.stderr);
    assert_eq!(id1, id2);
}
