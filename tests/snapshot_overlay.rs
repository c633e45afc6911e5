//! Snapshotter on disk and with real overlay mounts (root needed). Mounts happen in the host
//! namespace of the test process and are undone by `Mounted`'s Drop.

use rbuild::snapshot::{OverlaySnapshotter as Snapshotter, SnapshotError};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn is_mounted(p: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

#[test]
fn layout_matches_overlay2() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let base = store.create(None).unwrap();
    let mid = store.create(Some(&base.id)).unwrap();
    let top = store.create(Some(&mid.id)).unwrap();
    let dir = store.dir();

    for s in [&base, &mid, &top] {
        assert_eq!(s.id.len(), 64);
        assert!(s
            .id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        for sub in ["diff", "work", "merged"] {
            assert!(dir.join(&s.id).join(sub).is_dir());
        }
        let link = fs::read_to_string(dir.join(&s.id).join("link")).unwrap();
        assert_eq!(link, s.link);
        assert_eq!(link.len(), 26);
        assert!(link
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_eq!(
            fs::read_link(dir.join("l").join(&link)).unwrap(),
            Path::new(&format!("../{}/diff", s.id))
        );
        assert_eq!(store.diff_dir(&s.id).unwrap(), dir.join(&s.id).join("diff"));
    }
    assert!(!dir.join(&base.id).join("lower").exists());
    assert_eq!(
        fs::read_to_string(dir.join(&mid.id).join("lower")).unwrap(),
        format!("l/{}", base.link)
    );
    assert_eq!(
        fs::read_to_string(dir.join(&top.id).join("lower")).unwrap(),
        format!("l/{}:l/{}", mid.link, base.link)
    );
    assert_eq!(
        store.lower_chain(&top.id).unwrap(),
        vec![mid.id.clone(), base.id.clone()]
    );
    assert!(store.lower_chain(&base.id).unwrap().is_empty());
    assert_eq!(store.get(&top.id).unwrap(), top);
    let mut all = vec![base.id.clone(), mid.id.clone(), top.id.clone()];
    all.sort();
    assert_eq!(store.list().unwrap(), all);
    assert!(matches!(
        store.get("../../etc"),
        Err(SnapshotError::InvalidId(_))
    ));
    assert!(matches!(
        store.get(&"0".repeat(64)),
        Err(SnapshotError::NotFound(_))
    ));
    assert!(matches!(
        store.create(Some(&"0".repeat(64))),
        Err(SnapshotError::NotFound(_))
    ));
}

#[test]
fn read_write_mount_stacks_parents_and_records_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let base = store.create(None).unwrap();
    fs::write(base.diff_dir().join("from-base"), "base").unwrap();
    fs::write(base.diff_dir().join("doomed"), "x").unwrap();
    let child = store.create(Some(&base.id)).unwrap();

    let m = store.mount(&child).unwrap();
    let merged = m.path().to_path_buf();
    assert_eq!(merged, child.merged_dir());
    assert!(is_mounted(&merged));
    assert_eq!(
        fs::read_to_string(merged.join("from-base")).unwrap(),
        "base"
    );
    fs::write(merged.join("new"), "child").unwrap();
    fs::remove_file(merged.join("doomed")).unwrap();
    drop(m);
    assert!(!is_mounted(&merged), "Drop unmounts");

    let diff = child.diff_dir();
    assert_eq!(fs::read_to_string(diff.join("new")).unwrap(), "child");
    let wh = fs::symlink_metadata(diff.join("doomed")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "deletion is a whiteout"
    );
    assert!(!diff.join("from-base").exists());
    assert!(base.diff_dir().join("doomed").exists(), "lower untouched");

    // A parentless snapshot is still an overlay (over `empty`): deletions leave whiteouts too.
    let lone = store.create(None).unwrap();
    fs::write(lone.diff_dir().join("f"), "f").unwrap();
    let m = store.mount(&lone).unwrap();
    assert_eq!(fs::read_to_string(m.path().join("f")).unwrap(), "f");
    fs::write(m.path().join("g"), "g").unwrap();
    m.unmount().unwrap();
    assert!(lone.diff_dir().join("g").exists());
}

#[test]
fn readonly_view_for_copy_from() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let base = store.create(None).unwrap();
    fs::write(base.diff_dir().join("a"), "a").unwrap();
    let child = store.create(Some(&base.id)).unwrap();
    fs::write(child.diff_dir().join("b"), "b").unwrap();

    for (id, expect) in [(&base.id, vec!["a"]), (&child.id, vec!["a", "b"])] {
        let v1 = store.mount_readonly(id).unwrap();
        let v2 = store.mount_readonly(id).unwrap(); // two views at once
        assert_ne!(v1.path(), v2.path());
        let mut names: Vec<String> = fs::read_dir(v1.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, expect);
        let err = fs::write(v1.path().join("x"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        let p = v1.path().to_path_buf();
        drop(v1);
        assert!(!is_mounted(&p));
        assert!(!p.exists(), "the view's mount point is removed");
        drop(v2);
    }
}

#[test]
fn deep_chains_keep_options_under_a_page() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let mut parent: Option<String> = None;
    let mut first = None;
    for i in 0..120 {
        let s = store.create(parent.as_deref()).unwrap();
        fs::write(s.diff_dir().join(format!("f{i}")), i.to_string()).unwrap();
        first.get_or_insert(s.id.clone());
        parent = Some(s.id);
    }
    let top = store.get(parent.as_deref().unwrap()).unwrap();
    assert_eq!(top.lower.len(), 119);
    let m = store.mount(&top).unwrap();
    assert_eq!(fs::read_to_string(m.path().join("f0")).unwrap(), "0");
    assert_eq!(fs::read_to_string(m.path().join("f119")).unwrap(), "119");
    drop(m);
    let ro = store.mount_readonly(&top.id).unwrap();
    assert_eq!(fs::read_dir(ro.path()).unwrap().count(), 120);
}

#[test]
fn remove_refuses_parents_and_cleans_links() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let base = store.create(None).unwrap();
    let child = store.create(Some(&base.id)).unwrap();
    assert!(matches!(
        store.remove(&base.id),
        Err(SnapshotError::InUse { .. })
    ));
    // removal works even while mounted (the stale mount is detached first)
    let m = store.mount(&child).unwrap();
    fs::write(m.path().join("x"), "x").unwrap();
    std::mem::forget(m);
    store.remove(&child.id).unwrap();
    assert!(!store.dir().join(&child.id).exists());
    assert!(fs::symlink_metadata(store.dir().join("l").join(&child.link)).is_err());
    store.remove(&base.id).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(
        store.remove(&base.id),
        Err(SnapshotError::NotFound(_))
    ));
}

#[test]
fn cleanup_incomplete_removes_only_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let keep = store.create(None).unwrap();
    let dir = store.dir();
    // an interrupted create: temp dir plus its already-made (dangling) link
    let half = format!(".tmp-{}", "ab".repeat(32));
    fs::create_dir_all(dir.join(&half).join("diff")).unwrap();
    std::os::unix::fs::symlink(
        format!("../{}/diff", "ab".repeat(32)),
        dir.join("l/AAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    // an interrupted remove
    fs::create_dir_all(
        dir.join(format!(".rm-{}", "cd".repeat(32)))
            .join("work/work"),
    )
    .unwrap();
    assert_eq!(store.cleanup_incomplete().unwrap(), 3);
    assert!(!dir.join(&half).exists());
    assert!(fs::symlink_metadata(dir.join("l/AAAAAAAAAAAAAAAAAAAAAAAAAA")).is_err());
    assert_eq!(store.list().unwrap(), vec![keep.id.clone()]);
    assert!(dir.join("l").join(&keep.link).exists());
    assert_eq!(store.cleanup_incomplete().unwrap(), 0);
    // reopening an existing store is fine
    let again = Snapshotter::open(dir).unwrap();
    assert_eq!(again.get(&keep.id).unwrap(), keep);
}

#[test]
fn private_mount_namespace_in_a_forked_child() {
    // unshare(CLONE_NEWNS) needs a single-threaded process: do it in a forked child.
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let snap = store.create(None).unwrap();
    let merged = snap.merged_dir();
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let ok = rbuild::snapshot::enter_private_mount_namespace().is_ok()
                && store.mount(&snap).map(std::mem::forget).is_ok()
                && is_mounted(&merged);
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            // The child's mount lived and died with its namespace.
            assert!(!is_mounted(&merged));
        }
    }
}
