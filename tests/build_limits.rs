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

/// `bomb` (`size` zero bytes) in a gzip tar: a few KiB on disk.
fn gzip_bomb(path: &Path, size: u64) {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::best(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(
        &mut h,
        "bomb",
        std::io::Read::take(std::io::repeat(0), size),
    )
    .unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

/// A GNU-format tar of one sparse file `hole` of `logical` bytes, made by GNU tar.
fn sparse_bomb(dir: &Path, out: &Path, logical: u64) {
    let src = dir.join("sparse-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::File::create(src.join("hole"))
        .unwrap()
        .set_len(logical)
        .unwrap();
    sh(std::process::Command::new("tar")
        .args(["--format=gnu", "--sparse", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(out)
        .arg("hole"));
}

/// Builds `ctx` into `-o type=local` under a 16 MiB expansion cap (set by env, as CI would).
fn build_capped(t: &Path, ctx: &Path) -> (Run, PathBuf, PathBuf) {
    let root = t.join("root");
    let out = t.join("out");
    let r = rbuild_env(
        &root,
        &[
            "build",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
        &[("RBUILD_MAX_EXPANDED_SIZE", "16m")],
    );
    (r, root, out)
}

/// The capped build fails naming `archive` and the cap, writes no output, leaves nothing mounted
/// and the store consistent.
fn assert_refused_and_clean(dir: &Path, ctx: &Path, archive: &str) {
    let (r, root, out) = build_capped(dir, ctx);
    assert_ne!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(archive), "{}", r.stderr);
    assert!(
        r.stderr.contains("expands to more than 16777216 bytes"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "no output for a failed build");
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}

#[test]
fn add_of_a_gzip_bomb_fails_naming_the_archive_and_keeps_nothing() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_ctx(&t.path().join("ctx"), "ADD bomb.tar.gz /\n");
    gzip_bomb(&ctx.join("bomb.tar.gz"), 64 << 20);
    assert_refused_and_clean(t.path(), &ctx, "bomb.tar.gz");
}

#[test]
fn add_of_a_sparse_bomb_fails_naming_the_archive_and_keeps_nothing() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_ctx(&t.path().join("ctx"), "ADD sparse.tar /\n");
    // 256 MiB of holes in a 10 KiB tar.
    sparse_bomb(t.path(), &ctx.join("sparse.tar"), 256 << 20);
    assert_refused_and_clean(t.path(), &ctx, "sparse.tar");
}

#[test]
fn load_of_an_image_with_a_bomb_layer_fails_and_keeps_no_layer() {
    let t = tempfile::tempdir().unwrap();
    // A docker-archive whose one layer is a sparse bomb (uncompressed: diffID = blob digest).
    let dir = t.path().join("archive");
    std::fs::create_dir_all(&dir).unwrap();
    sparse_bomb(t.path(), &dir.join("layer.tar"), 256 << 20);
    let layer = std::fs::read(dir.join("layer.tar")).unwrap();
    let diff = rbuild::digest::Digest::of_bytes(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    );
    std::fs::write(dir.join("config.json"), &config).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        r#"[{"Config":"config.json","RepoTags":["bomb:1"],"Layers":["layer.tar"]}]"#,
    )
    .unwrap();
    let archive = t.path().join("bomb-image.tar");
    sh(std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&archive)
        .args(["manifest.json", "config.json", "layer.tar"]));
    let root = t.path().join("root");
    let r = rbuild_env(
        &root,
        &["load", "-i", archive.to_str().unwrap()],
        &[("RBUILD_MAX_EXPANDED_SIZE", "16m")],
    );
    assert_ne!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&diff.to_string()),
        "names the layer: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("expands to more than 16777216 bytes"),
        "{}",
        r.stderr
    );
    let images = ok(rbuild(&root, &["images", "-q"]));
    assert!(images.stdout.trim().is_empty(), "{}", images.stdout);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}
