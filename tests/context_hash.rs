//! Cache-key hashing: exactly what COPY would copy, insensitive to `touch`, sensitive to any real
//! change, memoised on disk.

mod common;

use common::fanotify::FileEvents;
use nix::sys::fanotify::MaskFlags;
use rbuild::context::{hash_sources, Context, CopyRequest, SourceRoot};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn hash(dir: &Path, srcs: &[&str], memo: Option<&Path>) -> rbuild::digest::Digest {
    let ctx = Context::open(dir, &dir.join("Dockerfile")).unwrap();
    let req = CopyRequest::new(
        SourceRoot::Context(&ctx),
        srcs.iter().map(|s| s.to_string()).collect(),
        "/app/",
    );
    let memo = memo.map(rbuild::context::MemoPath::beside);
    hash_sources(&req, memo.as_ref()).unwrap()
}

fn touch(p: &Path) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(100))
        .unwrap();
}

#[test]
fn touch_does_not_change_hash_but_edits_do() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::create_dir_all(d.join("src/sub")).unwrap();
    fs::write(d.join("src/a"), "a").unwrap();
    fs::write(d.join("src/sub/b"), "b").unwrap();
    std::os::unix::fs::symlink("a", d.join("src/l")).unwrap();
    let h0 = hash(d, &["src"], None);
    touch(&d.join("src/a"));
    assert_eq!(hash(d, &["src"], None), h0);
    fs::write(d.join("src/a"), "A").unwrap();
    let h1 = hash(d, &["src"], None);
    assert_ne!(h1, h0);
    fs::set_permissions(d.join("src/sub/b"), fs::Permissions::from_mode(0o600)).unwrap();
    let h2 = hash(d, &["src"], None);
    assert_ne!(h2, h1);
    fs::remove_file(d.join("src/l")).unwrap();
    std::os::unix::fs::symlink("sub/b", d.join("src/l")).unwrap();
    let h3 = hash(d, &["src"], None);
    assert_ne!(h3, h2);
    fs::rename(d.join("src/sub/b"), d.join("src/sub/c")).unwrap();
    let h4 = hash(d, &["src"], None);
    assert_ne!(h4, h3);
    fs::create_dir(d.join("src/empty")).unwrap();
    assert_ne!(hash(d, &["src"], None), h4);
}

#[test]
fn ignored_and_unrelated_files_do_not_count() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::write(d.join(".dockerignore"), "*.log\n").unwrap();
    fs::write(d.join("a.txt"), "a").unwrap();
    fs::write(d.join("x.log"), "1").unwrap();
    fs::write(d.join("other"), "o").unwrap();
    let h0 = hash(d, &["."], None);
    let f0 = hash(d, &["a.txt"], None);
    fs::write(d.join("x.log"), "2").unwrap();
    assert_eq!(hash(d, &["."], None), h0);
    fs::write(d.join("other"), "changed").unwrap();
    assert_eq!(hash(d, &["a.txt"], None), f0);
    assert_ne!(hash(d, &["."], None), h0);
}

#[test]
fn memo_is_used_when_stat_matches() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::create_dir(d.join("ctx")).unwrap();
    fs::write(d.join("ctx/f"), "content").unwrap();
    let memo = d.join("memo.json");
    let ctx = d.join("ctx");
    let plain = hash(&ctx, &["f"], None);
    assert_eq!(hash(&ctx, &["f"], Some(&memo)), plain);
    // Poison the memo's digest for the unchanged file: the memo is trusted, proving it is used.
    let text = fs::read_to_string(&memo).unwrap();
    let real = rbuild::digest::Digest::of_bytes(b"content")
        .hex()
        .to_string();
    assert!(text.contains(&real));
    fs::write(&memo, text.replace(&real, &"0".repeat(64))).unwrap();
    assert_ne!(hash(&ctx, &["f"], Some(&memo)), plain);
    // A real change (size/mtime/ctime) invalidates the entry.
    fs::write(ctx.join("f"), "content2").unwrap();
    let fresh = hash(&ctx, &["f"], None);
    assert_eq!(hash(&ctx, &["f"], Some(&memo)), fresh);
    // A garbage memo is ignored and rewritten.
    fs::write(&memo, "not json").unwrap();
    assert_eq!(hash(&ctx, &["f"], Some(&memo)), fresh);
}

#[test]
fn many_files_hash_in_parallel_and_memo_makes_rehash_cheap() {
    if !common::need_cores(2) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("ctx");
    for i in 0..2000 {
        let p = d.join(format!("d{}/f{i}", i % 50));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{i}")).unwrap();
    }
    let memo = t.path().join("memo.json");
    // Counted by the kernel: which threads open the context's files.
    let dirs: Vec<_> = (0..50).map(|i| d.join(format!("d{i}"))).collect();
    let opens = FileEvents::watch_dirs(&dirs, MaskFlags::FAN_OPEN);
    let a = hash(&d, &["."], Some(&memo));
    let (threads, n) = opens.threads_under(&d);
    assert!(n >= 2000, "the first hash opened {n} of 2000 files");
    assert!(
        threads.len() >= 2,
        "the first hash ran on {} thread(s), not in parallel",
        threads.len()
    );
    // Cheap: with the memo, no file is opened again (stat only).
    let b = hash(&d, &["."], Some(&memo));
    assert_eq!(a, b);
    let (_, n) = opens.threads_under(&d);
    assert_eq!(n, 0, "the memoised rehash opened {n} files");
    // One edited file: exactly that one is read again.
    fs::write(d.join("d7/f7"), "changed").unwrap();
    let (_, n) = opens.threads_under(&d);
    assert_eq!(n, 1, "the test's own write");
    let c = hash(&d, &["."], Some(&memo));
    assert_ne!(c, a);
    let (_, n) = opens.threads_under(&d);
    assert_eq!(n, 1, "the rehash after one edit opened {n} files");
    assert_eq!(hash(&d, &["."], None), c);
}
