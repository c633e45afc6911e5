//! The performance contract of issue 21, asserted by counting (never by timing): a fully cached
//! rebuild writes nothing to the store and makes no fsync; a COPY lists each context directory
//! once (cache key and copy share one listing).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every entry under the store root as (inode, size, mtime, ctime), except the per-process
/// scratch (`tmp/`) and lease (`leases/`) directories, whose files live only while a build runs.
fn store_state(root: &Path) -> BTreeMap<PathBuf, (u64, u64, i64, i64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new("tmp") || rel == Path::new("leases") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.insert(
                rel,
                (
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                ),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Runs rbuild under `strace -ff -e trace=<calls> -y`, returning stdout and the trace lines of
/// every thread (one file per thread: no call is split into unfinished/resumed halves).
fn traced(root: &Path, calls: &str, args: &[&str], trace: &Path) -> (String, Vec<String>) {
    let out = Command::new("strace")
        .args(["-ff", "-qq", "-y", "-e"])
        .arg(format!("trace={calls}"))
        .arg("-o")
        .arg(trace)
        .arg(rbuild_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("running strace");
    assert!(
        out.status.success(),
        "traced rbuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = trace.parent().unwrap();
    let prefix = format!("{}.", trace.file_name().unwrap().to_string_lossy());
    let mut lines = Vec::new();
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            files += 1;
            let text = std::fs::read_to_string(e.path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    assert!(files > 0, "strace wrote no trace file");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        lines,
    )
}

fn context_with_tree(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = context(dir, dockerfile, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    for d in 0..5 {
        for f in 0..20 {
            let p = ctx.join(format!("app/d{d}/f{f}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("file {d}/{f}\n").repeat(f + 1)).unwrap();
        }
    }
    ctx
}

#[test]
fn fully_cached_rebuild_writes_nothing_and_makes_no_fsync() {
    if !need("strace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let ctx = context_with_tree(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo hi > /hi\nCOPY app /app\n\
         ENV A=1\nLABEL x=y\nWORKDIR /app\nCMD [\"sh\"]\n",
    );
    let root = t.path().join("root");
    let args = [
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "perf:one",
        "-t",
        "perf:two",
    ];
    let mut all: Vec<&str> = args.to_vec();
    all.push(ctx.to_str().unwrap());
    let first = ok(rbuild(&root, &all)).stdout.trim().to_string();
    let before = store_state(&root);
    let (second, trace) = traced(
        &root,
        "fsync,fdatasync,sync_file_range,syncfs",
        &all,
        &t.path().join("trace"),
    );
    assert_eq!(second, first, "a fully cached rebuild changed the image id");
    let syncs: Vec<&String> = trace.iter().filter(|l| l.contains("sync")).collect();
    assert!(syncs.is_empty(), "fully cached rebuild synced: {syncs:#?}");
    let after = store_state(&root);
    let changed: Vec<_> = before
        .iter()
        .filter(|(p, s)| after.get(*p) != Some(*s))
        .map(|(p, _)| p.clone())
        .chain(after.keys().filter(|p| !before.contains_key(*p)).cloned())
        .collect();
    assert!(
        changed.is_empty(),
        "a fully cached rebuild modified the store: {changed:#?}"
    );
    // The check can fail: a real change (a new tag) does write.
    let mut tagged = all.clone();
    tagged.splice(4..4, ["-t", "perf:three"]);
    ok(rbuild(&root, &tagged));
    assert_ne!(store_state(&root), after, "a new tag wrote nothing?");
    assert_store_consistent(&root);
}

#[test]
fn a_copy_lists_each_context_directory_once() {
    if !need("strace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let ctx = context_with_tree(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nCOPY app /app\n",
    );
    let root = t.path().join("root");
    let (_, trace) = traced(
        &root,
        "getdents64",
        &["build", "-q", "--network", "none", ctx.to_str().unwrap()],
        &t.path().join("trace"),
    );
    // A listing is one or more getdents64 calls on one open directory, ending with one that
    // returns 0; count those ends per context directory.
    let mut listings: BTreeMap<String, usize> = BTreeMap::new();
    let app = format!("{}/app", ctx.display());
    for l in &trace {
        let Some((_, rest)) = l.split_once("getdents64(") else {
            continue;
        };
        let Some(path) = rest
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(p, _)| p.to_string())
        else {
            continue;
        };
        if path.starts_with(&app) && l.trim_end().ends_with("= 0") {
            *listings.entry(path).or_default() += 1;
        }
    }
    assert_eq!(listings.len(), 6, "app and its 5 dirs listed: {listings:?}");
    let twice: Vec<_> = listings.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "context directories listed more than once: {twice:?}"
    );
}
