//! RUN over a real overlay mount: the upper dir afterwards holds the command's changes
//! and nothing of the executor's mount points (needs root).

mod exec_common;

use std::path::Path;

use exec_common::*;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

fn tree(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn upper_dir_holds_only_the_commands_changes() {
    // This test thread gets its own mount namespace, so the overlay never shows on the
    // host and is gone when the thread ends.
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).unwrap();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();

    let (t, lower) = busybox_rootfs();
    for d in ["proc", "sys", "dev"] {
        std::fs::remove_dir(lower.join(d)).unwrap();
    }
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    let merged = t.path().join("merged");
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .unwrap();

    let mut s = spec(
        &merged,
        "echo hi > /made; rm /etc/motd; cat /etc/hosts > /dev/null",
    );
    s.workdir = "/app".into();
    run_ok(&s);
    nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
    // /etc is copied up (a file in it was deleted), /app is the created WORKDIR.
    assert_eq!(tree(&upper), ["app", "etc", "etc/motd", "made"]);
    let motd = std::fs::symlink_metadata(upper.join("etc/motd")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&motd.file_type()),
        "whiteout expected"
    );
}
