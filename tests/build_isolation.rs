//! Issue 16 through whole builds (the real binary, as root): a device node from an ADD archive,
//! traps left in a cache mount, the pids and memory limits, and the RUN cgroups' removal (after
//! each step and, after a `kill -9`, at the next start).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn busybox_ctx(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = context(dir, dockerfile, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    ctx
}

fn build(root: &Path, extra: &[&str], ctx: &Path) -> Run {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = rbuild(root, &args);
    assert_nothing_mounted_under(root);
    r
}

fn cgroup_v2() -> bool {
    Command::new("stat")
        .args(["-fc", "%T", "/sys/fs/cgroup"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "cgroup2fs")
}

/// Directories where rbuild (started by this test, so in this test's cgroups) makes RUN cgroups.
fn cgroup_parents() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut out = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, ctrls, path) = (
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if cgroup_v2() {
            if id == "0" {
                out.push(PathBuf::from(format!("/sys/fs/cgroup{path}")));
                out.push(PathBuf::from("/sys/fs/cgroup/rbuild"));
            }
        } else {
            for c in ctrls.split(',') {
                if ["pids", "devices", "memory"].contains(&c) {
                    out.push(PathBuf::from(format!("/sys/fs/cgroup/{c}{path}")));
                }
            }
        }
    }
    assert!(!out.is_empty(), "no cgroup hierarchy found");
    out
}

/// RUN cgroups named after rbuild process `pid`.
fn leaves_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("rbuild-{pid}-");
    cgroup_parents()
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Runs a build and returns its result with rbuild's pid.
fn build_with_pid(root: &Path, extra: &[&str], ctx: &Path) -> (Run, u32) {
    let child = Command::new(rbuild_bin())
        .arg("--root")
        .arg(root)
        .args(["build", "--progress", "plain"])
        .args(extra)
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, pid)
}

#[test]
fn i10_device_node_shipped_in_an_add_archive_cannot_be_opened() {
    let t = tempfile::tempdir().unwrap();
    // (The markers are split by '' in the command, which the progress output echoes.)
    // A loop device over a scratch file: what a hostile archive's node would point at.
    let disk = t.path().join("disk");
    std::fs::write(&disk, vec![b'D'; 1 << 20]).unwrap();
    let dev = String::from_utf8(
        Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&disk)
            .output()
            .expect("losetup (util-linux) is needed")
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(dev.starts_with("/dev/loop"), "losetup gave {dev:?}");
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _detach = Detach(dev.clone());
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(&dev).unwrap().rdev();
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nADD evil.tar /evil/\n\
         RUN [ -b /evil/disk ] && echo IS-A-BLOCK-''DEVICE; \
         head -c 16 /evil/disk >/dev/null 2>&1 && echo OPENED-''FOR-READ; \
         (echo pwned > /evil/disk) 2>/dev/null && echo OPENED-''FOR-WRITE; true\n",
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Block);
    h.set_device_major(nix::sys::stat::major(rdev) as u32)
        .unwrap();
    h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
        .unwrap();
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    b.append_data(&mut h, "disk", std::io::empty()).unwrap();
    std::fs::write(ctx.join("evil.tar"), b.into_inner().unwrap()).unwrap();
    let r = ok(build(&t.path().join("root"), &[], &ctx));
    assert!(r.stderr.contains("IS-A-BLOCK-DEVICE"), "{}", r.stderr);
    assert!(!r.stderr.contains("OPENED-FOR"), "{}", r.stderr);
    assert_eq!(std::fs::read(&disk).unwrap(), vec![b'D'; 1 << 20]);
}

#[test]
fn i11_setuid_file_left_in_a_cache_mount_is_not_usable_by_other_host_users() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=cache,target=/c cp /bin/busybox /c/suid && chmod 4755 /c/suid \
         && mknod -m 666 /c/null c 1 3 && awk '$5==\"/c\" {print \"OPTS\", $6}' /proc/self/mountinfo\n",
    );
    let r = ok(build(&root, &[], &ctx));
    // Inside: the cache mount is nosuid,nodev.
    let opts = r
        .stderr
        .lines()
        .find_map(|l| l.split("OPTS ").nth(1))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{opts}");
    // On the host: the trap is there, setuid, but behind directories only root may enter.
    let found = sh(Command::new("find")
        .arg(root.join("cache/mounts"))
        .args(["-name", "suid"]));
    let suid = PathBuf::from(found.trim());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&suid).unwrap().permissions().mode() & 0o7777,
        0o4755
    );
    for d in [root.join("cache"), root.join("cache/mounts")] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    for target in [suid.clone(), suid.with_file_name("null")] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg("/bin/busybox")
            .args(["head", "-c", "1"])
            .arg(&target)
            .output()
            .expect("setpriv (util-linux) is needed");
        assert!(!out.status.success(), "nobody read {}", target.display());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&target)
            .arg("true")
            .output()
            .unwrap();
        assert!(!run.status.success(), "nobody ran {}", target.display());
    }
}

#[test]
fn i12_fork_bomb_fails_the_build_naming_the_pids_limit_and_leaves_no_cgroup() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN while :; do sleep 1000 & done\n",
    );
    let (r, pid) = build_with_pid(&root, &["--pids-limit", "64"], &ctx);
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("process limit (--pids-limit 64)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    assert_nothing_mounted_under(&root);
    assert!(leaves_of(pid).is_empty(), "{:?}", leaves_of(pid));
    // The host (and the store) keep working.
    let ctx2 = busybox_ctx(
        &t.path().join("ctx2"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo still-fine\n",
    );
    let (r2, pid2) = build_with_pid(&root, &[], &ctx2);
    assert_eq!(r2.status, 0, "{}", r2.stderr);
    assert!(r2.stderr.contains("still-fine"));
    assert!(leaves_of(pid2).is_empty(), "{:?}", leaves_of(pid2));
    assert_store_consistent(&root);
}

#[test]
fn i13_memory_hog_fails_the_build_naming_the_memory_limit() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN awk 'BEGIN { s = \"x\"; while (1) s = s s }'\n",
    );
    let r = build(&t.path().join("root"), &["--memory", "64m"], &ctx);
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("memory limit (--memory 64 MiB)"),
        "{}",
        r.stderr
    );
}

#[test]
fn i14_cgroups_of_a_killed_rbuild_are_removed_at_the_next_start() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // A parent of its own: the other tests' builds sweep only theirs.
    let parent = format!("rbuild-test-i14-{}", std::process::id());
    let parents: Vec<PathBuf> = if cgroup_v2() {
        vec![PathBuf::from(format!("/sys/fs/cgroup/{parent}"))]
    } else {
        ["pids", "devices"]
            .iter()
            .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/{parent}")))
            .collect()
    };
    let leaves = |pid: u32| -> Vec<PathBuf> {
        let prefix = format!("rbuild-{pid}-");
        parents
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flat_map(|d| d.flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN sleep 1000\n",
    );
    let mut child = Command::new(rbuild_bin())
        .arg("--root")
        .arg(&root)
        .args(["build", "--progress", "plain", "--cgroup-parent", &parent])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait (by count) until the RUN's processes sit in its cgroup.
    let populated = |leaves: &[PathBuf]| {
        leaves.iter().any(|l| {
            std::fs::read_to_string(l.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        })
    };
    let mut seen = false;
    for _ in 0..3000 {
        if populated(&leaves(pid)) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "the RUN never showed up in a cgroup of rbuild {pid}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let stale = leaves(pid);
    assert!(!stale.is_empty(), "kill -9 left nothing to clean up");
    // The next build removes them at its start, even with no RUN of its own.
    let ctx2 = busybox_ctx(&t.path().join("ctx2"), "FROM scratch\nADD rootfs.tar /\n");
    let r = build(&root, &["--cgroup-parent", &parent], &ctx2);
    let left: Vec<_> = stale.iter().filter(|p| p.exists()).collect();
    for p in &parents {
        let _ = std::fs::remove_dir(p);
    }
    ok(r);
    assert!(left.is_empty(), "stale cgroups kept: {left:?}");
}

#[test]
fn i15_bad_limit_flags_are_refused_with_the_flag_named() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_ctx(&t.path().join("ctx"), "FROM scratch\nADD rootfs.tar /\n");
    for (args, want) in [
        (vec!["--memory", "1k"], "--memory"),
        (vec!["--memory", "lots"], "--memory"),
        (vec!["--memory-swap", "-1"], "--memory-swap needs --memory"),
        (vec!["--ulimit", "nofile=9:1"], "--ulimit"),
        (vec!["--cgroup-parent", "../x"], "--cgroup-parent"),
    ] {
        let r = build(&t.path().join("root"), &args, &ctx);
        assert_ne!(r.status, 0, "{args:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
}
