//! Incremental COPY (issue 21): after one file of a big COPY changes, the new snapshot links the
//! unchanged files from the previous one, its layer is the one a cold build makes (same diffID),
//! and a later RUN that changes a linked file leaves the earlier snapshot as it was.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The context: the busybox rootfs and 300 data files under `tree/`, copied to `/` from scratch
/// (no parent: the copy writes straight into the upper dir, and `/` itself is in no layer tar,
/// so the layer does not carry the time a destination directory was made).
fn make_context(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = context(dir, dockerfile, &[]);
    let tree = ctx.join("tree");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    for d in 0..6 {
        for f in 0..50 {
            let p = tree.join(format!("data/d{d}/f{f}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("{d}/{f}\n").repeat(200 + f)).unwrap();
        }
    }
    ctx
}

fn layers(root: &Path, image: &str) -> Vec<String> {
    let r = ok(rbuild(root, &["inspect", image]));
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    serde_json::from_value(v[0]["RootFS"]["Layers"].clone()).unwrap()
}

/// The upper dir holding `rel` among the store's snapshots, by inode: (snapshot dir, inode).
fn snapshots_holding(root: &Path, rel: &str) -> BTreeMap<PathBuf, (u64, String)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(root.join("overlay2")).unwrap().flatten() {
        let p = e.path().join("diff").join(rel);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            out.insert(e.path(), (m.ino(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

#[test]
fn a_changed_file_relinks_the_rest_and_gives_the_cold_layer() {
    let t = tempfile::tempdir().unwrap();
    let ctx = make_context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY tree /\nRUN echo more >> /data/d1/f1 && chmod 600 /data/d2/f2\n",
    );
    let root = t.path().join("root");
    let build = |root: &Path, extra: &[&str]| {
        let mut a = vec!["build", "-q", "--network", "none", "-t", "inc"];
        a.extend_from_slice(extra);
        a.push(ctx.to_str().unwrap());
        ok(rbuild(root, &a));
    };
    build(&root, &[]);
    let first = layers(&root, "inc");
    // COPY snapshots are the ones holding the rootfs too (RUN snapshots hold only what the RUN
    // changed).
    let is_copy = |snap: &Path| snap.join("diff/bin").exists();
    let before_f1 = snapshots_holding(&root, "data/d1/f1");
    assert_eq!(
        before_f1.keys().filter(|p| is_copy(p)).count(),
        1,
        "one COPY snapshot holds f1"
    );

    std::fs::write(ctx.join("tree/data/d3/f3"), "changed\n").unwrap();
    build(&root, &[]);
    let second = layers(&root, "inc");
    assert_ne!(first[0], second[0], "the COPY layer did not change");

    // Same layer as a cold build of the same context.
    let cold = t.path().join("cold");
    build(&cold, &["--no-cache"]);
    assert_eq!(
        layers(&cold, "inc")[0],
        second[0],
        "incremental COPY layer differs from cold"
    );

    let original_f1 = "1/1\n".repeat(201);
    let f1 = snapshots_holding(&root, "data/d1/f1");
    let copies: Vec<_> = f1.iter().filter(|(p, _)| is_copy(p)).collect();
    assert_eq!(copies.len(), 2, "two COPY snapshots hold f1: {f1:?}");
    // Unchanged files share the inode of the earlier snapshot.
    assert_eq!(copies[0].1 .0, copies[1].1 .0, "f1 was copied, not linked");
    // The RUN changed linked files (append, chmod) in its own snapshots only: both COPY
    // snapshots still hold the original bytes and mode.
    for (snap, (_, content)) in &copies {
        assert_eq!(
            content, &original_f1,
            "{snap:?}: f1 written through the link"
        );
        let m = std::fs::metadata(snap.join("diff/data/d2/f2")).unwrap();
        assert_eq!(
            m.mode() & 0o777,
            0o644,
            "{snap:?}: f2's mode changed through the link"
        );
    }
    let runs: Vec<_> = f1.iter().filter(|(p, _)| !is_copy(p)).collect();
    assert_eq!(runs.len(), 2, "each RUN copied f1 up: {f1:?}");
    assert!(runs.iter().all(|(_, (_, s))| s.ends_with("more\n")));
    // The changed file is a new inode with the new bytes.
    let f3 = snapshots_holding(&root, "data/d3/f3");
    let f3: Vec<_> = f3.iter().filter(|(p, _)| is_copy(p)).collect();
    assert_eq!(f3.len(), 2);
    assert_ne!(
        f3[0].1 .0, f3[1].1 .0,
        "changed f3 linked from the old snapshot"
    );
    assert!(f3.iter().any(|(_, (_, s))| s == "changed\n"));
    // Nothing else of the store broke.
    assert_store_consistent(&root);
}
