//! Issue 16 at the executor level: devices (nodev mounts, the v1 device cgroup), mount options,
//! and each RUN's cgroup with its limits (needs root, cgroups, and `losetup` for the loop device).

mod exec_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use exec_common::*;
use rbuild::exec::{ExecConfig, ExecError, Mount, MountKind, Resources, Ulimit};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device attached to a scratch file; detached on drop.
struct Loop {
    dev: String,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn attach() -> Loop {
        if !have("losetup") {
            panic!("losetup (util-linux) is needed for the device tests");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk");
        std::fs::write(&file, vec![b'D'; 1 << 20]).unwrap();
        let dev = sh(Command::new("losetup").args(["-f", "--show"]).arg(&file))
            .trim()
            .to_string();
        assert!(dev.starts_with("/dev/loop"), "{dev}");
        Loop {
            dev,
            file,
            _dir: dir,
        }
    }

    fn major_minor(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&self.dev).unwrap().rdev();
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
    }

    fn untouched(&self) -> bool {
        std::fs::read(&self.file).unwrap() == vec![b'D'; 1 << 20]
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn rw_bind(target: &str, source: &Path) -> Mount {
    Mount {
        target: target.into(),
        kind: MountKind::Bind {
            source: source.into(),
            readonly: false,
        },
    }
}

/// Shell lines that report, for each path, whether it is a block device and whether it opened.
fn probe(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "[ -b {p} ] && echo BLOCK {p}; \
                 head -c 16 {p} >/dev/null 2>&1 && echo READ {p}; \
                 (echo pwned > {p}) 2>/dev/null && echo WROTE {p}; "
            )
        })
        .chain(["true".to_string()])
        .collect()
}

#[test]
fn i01_mknod_of_a_loop_device_cannot_be_opened_anywhere() {
    let lo = Loop::attach();
    let (maj, min) = lo.major_minor();
    let (_t, root) = busybox_rootfs();
    let bind = tempfile::tempdir().unwrap();
    let places = ["/dev/evil", "/tmp/evil", "/t/evil", "/b/evil"];
    let mut script = String::new();
    for p in places {
        script += &format!("mknod {p} b {maj} {min} || echo MKNOD-FAILED {p}; ");
    }
    script += &probe(&places);
    let mut s = spec(&root, &script);
    s.mounts = vec![
        Mount {
            target: "/t".into(),
            kind: MountKind::Tmpfs { size: None },
        },
        rw_bind("/b", bind.path()),
    ];
    let out = run_ok(&s);
    for p in places {
        // The node is made (it may go into the layer, as with Docker) but never opens.
        assert!(out.contains(&format!("BLOCK {p}")), "{out}");
        assert!(!out.contains(&format!("READ {p}")), "{out}");
        assert!(!out.contains(&format!("WROTE {p}")), "{out}");
    }
    assert!(!out.contains("MKNOD-FAILED"), "{out}");
    assert!(lo.untouched(), "the loop device's backing file was written");
    use std::os::unix::fs::FileTypeExt;
    let left = std::fs::symlink_metadata(root.join("tmp/evil")).unwrap();
    assert!(
        left.file_type().is_block_device(),
        "node stays in the rootfs"
    );
}

#[test]
fn i02_device_nodes_from_the_image_or_a_bind_mount_cannot_be_opened() {
    let lo = Loop::attach();
    let (maj, min) = lo.major_minor();
    let (_t, root) = busybox_rootfs();
    let bind = tempfile::tempdir().unwrap();
    let mk = |p: &Path| {
        let st = Command::new("mknod")
            .arg(p)
            .args(["b", &maj.to_string(), &min.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    std::fs::create_dir(root.join("shipped")).unwrap();
    mk(&root.join("shipped/loop"));
    mk(&bind.path().join("loop"));
    let places = ["/shipped/loop", "/b/loop"];
    let mut s = spec(&root, &probe(&places));
    s.mounts = vec![rw_bind("/b", bind.path())];
    let out = run_ok(&s);
    for p in places {
        assert!(out.contains(&format!("BLOCK {p}")), "{out}");
        assert!(!out.contains(&format!("READ {p}")), "{out}");
        assert!(!out.contains(&format!("WROTE {p}")), "{out}");
    }
    assert!(lo.untouched());
}

#[test]
fn i03_the_standard_devices_still_work() {
    let (_t, root) = busybox_rootfs();
    let s = spec(
        &root,
        "echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 6 /dev/urandom | wc -c \
         && head -c 7 /dev/random | wc -c && (echo x > /dev/full) 2>&1 | grep -c 'No space' \
         && [ -c /dev/tty ] && [ -c /dev/pts/ptmx ] && df -k /dev/shm | tail -1 | awk '{print $2}' \
         && ls -a /dev | grep -c rbuild",
    );
    // The last count is 0 (grep then fails): the staging directory is gone.
    let c = try_run(&s).unwrap();
    assert_eq!(c.stdout, "5\n6\n7\n1\n65536\n0\n", "{}", c.stderr);
}

#[test]
fn i04_run_mounts_are_nosuid_nodev_and_tmpfs_is_bounded() {
    let (_t, root) = busybox_rootfs();
    let bind = tempfile::tempdir().unwrap();
    let mut s = spec(
        &root,
        "for m in / /b /t /dev; do awk -v m=$m '$5==m {print m, $6}' /proc/self/mountinfo | tail -1; done; \
         df -k /t | tail -1 | awk '{print $2}'; df -k /dev/shm | tail -1 | awk '{print $2}'",
    );
    s.mounts = vec![
        rw_bind("/b", bind.path()),
        Mount {
            target: "/t".into(),
            kind: MountKind::Tmpfs { size: None },
        },
    ];
    let config = ExecConfig {
        resources: Resources {
            shm_size: 1 << 20,
            ..Resources::default()
        },
        ..config()
    };
    let c = try_run_with(&s, &config).unwrap();
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}\n{}", c.stdout, c.stderr);
    let opts = |m: &str| {
        lines
            .iter()
            .find(|l| l.split(' ').next() == Some(m))
            .map(|l| {
                l.split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .split(',')
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(opts("/").contains(&"nodev"), "{lines:?}");
    assert!(
        !opts("/").contains(&"nosuid"),
        "setuid programs of the image must work"
    );
    for m in ["/b", "/t", "/dev"] {
        assert!(opts(m).contains(&"nodev"), "{m}: {lines:?}");
        assert!(opts(m).contains(&"nosuid"), "{m}: {lines:?}");
    }
    assert_eq!(lines[4], "524288", "tmpfs default size (512 MiB)");
    assert_eq!(lines[5], "1024", "--shm-size 1m");
}

fn cgroup_v2() -> bool {
    sh(Command::new("stat").args(["-fc", "%T", "/sys/fs/cgroup"])).trim() == "cgroup2fs"
}

/// The host directory of the RUN's pids cgroup (v1) or its one cgroup (v2), from the
/// `/proc/self/cgroup` the RUN wrote.
fn leaf_of(proc_self_cgroup: &str) -> PathBuf {
    let line = proc_self_cgroup
        .lines()
        .find(|l| {
            if cgroup_v2() {
                l.starts_with("0::")
            } else {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == "pids"))
            }
        })
        .unwrap_or_else(|| panic!("no cgroup line in {proc_self_cgroup}"));
    let path = line.splitn(3, ':').nth(2).unwrap();
    let base = if cgroup_v2() {
        "/sys/fs/cgroup".to_string()
    } else {
        "/sys/fs/cgroup/pids".to_string()
    };
    let leaf = PathBuf::from(format!("{base}{path}"));
    let name = leaf.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("rbuild-"),
        "RUN is not in its own cgroup: {line}"
    );
    leaf
}

#[test]
fn i05_a_fork_bomb_is_stopped_by_the_pids_limit_and_its_cgroup_removed() {
    let (_t, root) = busybox_rootfs();
    let out = tempfile::tempdir().unwrap();
    let mut s = spec(
        &root,
        "cat /proc/self/cgroup > /out/cg; while :; do sleep 1000 & done",
    );
    s.mounts = vec![rw_bind("/out", out.path())];
    let config = ExecConfig {
        resources: Resources {
            pids_limit: Some(32),
            ..Resources::default()
        },
        ..config()
    };
    match try_run_with(&s, &config) {
        Err(ExecError::LimitExceeded(msg)) => {
            assert!(msg.contains("--pids-limit 32"), "{msg}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(c) => panic!("bomb not stopped: {:?} {}", c.outcome, c.stderr),
    }
    let leaf = leaf_of(&std::fs::read_to_string(out.path().join("cg")).unwrap());
    assert!(!leaf.exists(), "{} left behind", leaf.display());
    // The host and later RUNs are fine.
    assert_eq!(run_ok(&spec(&root, "echo fine")), "fine\n");
}

#[test]
fn i06_a_memory_hog_is_stopped_by_the_memory_limit() {
    let (_t, root) = busybox_rootfs();
    let out = tempfile::tempdir().unwrap();
    let mut s = spec(
        &root,
        "cat /proc/self/cgroup > /out/cg; awk 'BEGIN { s = \"x\"; while (1) s = s s }'",
    );
    s.mounts = vec![rw_bind("/out", out.path())];
    let config = ExecConfig {
        resources: Resources {
            memory: Some(64 << 20),
            ..Resources::default()
        },
        ..config()
    };
    match try_run_with(&s, &config) {
        Err(ExecError::LimitExceeded(msg)) => {
            assert!(msg.contains("memory limit (--memory 64 MiB)"), "{msg}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(c) => panic!("hog not stopped: {:?} {}", c.outcome, c.stderr),
    }
    let leaf = leaf_of(&std::fs::read_to_string(out.path().join("cg")).unwrap());
    assert!(!leaf.exists(), "{} left behind", leaf.display());
}

#[test]
fn i07_cgroup_files_and_ulimits_hold_the_requested_limits() {
    let (_t, root) = busybox_rootfs();
    let v2 = cgroup_v2();
    let script = if v2 {
        "p=$(sed -n 's/^0:://p' /proc/self/cgroup); d=/cg$p; \
         cat $d/pids.max $d/memory.max $d/cpu.max $d/cpuset.cpus $d/cpu.weight"
    } else {
        "l() { sed -n \"s/^[0-9]*:\\([^:]*,\\)*$1\\(,[^:]*\\)*:/\\/cg\\/$1/p\" /proc/self/cgroup; }; \
         cat $(l pids)/pids.max $(l memory)/memory.limit_in_bytes $(l cpu)/cpu.cfs_quota_us \
         $(l cpu)/cpu.cfs_period_us $(l cpu)/cpu.shares $(l cpuset)/cpuset.cpus; \
         grep -c 'c 1:3 rwm' $(l devices)/devices.list; grep -c 'a \\*:\\* rwm' $(l devices)/devices.list"
    };
    let script = format!(
        "{script}; grep Cpus_allowed_list /proc/self/status | awk '{{print $2}}'; ulimit -n; ulimit -Hn"
    );
    let mut s = spec(&root, &script);
    s.mounts = vec![Mount {
        target: "/cg".into(),
        kind: MountKind::Bind {
            source: "/sys/fs/cgroup".into(),
            readonly: true,
        },
    }];
    let config = ExecConfig {
        resources: Resources {
            memory: Some(64 << 20),
            cpu_shares: Some(512),
            cpu_period: Some(50_000),
            cpu_quota: Some(25_000),
            cpuset_cpus: Some("0".into()),
            ulimits: vec![Ulimit::parse("nofile=100:200").unwrap()],
            ..Resources::default()
        },
        ..config()
    };
    let c = try_run_with(&s, &config).unwrap();
    // The default pids limit is 2048 for the RUN, plus its supervising helper.
    let expected = if v2 {
        "2049\n67108864\n25000 50000\n0\n20\n0\n100\n200\n"
    } else {
        "2049\n67108864\n25000\n50000\n512\n0\n1\n0\n0\n100\n200\n"
    };
    assert_eq!(c.stdout, expected, "{}", c.stderr);
}

#[test]
fn i08_a_cancelled_run_leaves_no_cgroup() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_t, root) = busybox_rootfs();
    let out = tempfile::tempdir().unwrap();
    let mut s = spec(
        &root,
        "cat /proc/self/cgroup > /out/cg.tmp; mv /out/cg.tmp /out/cg; sleep 1000",
    );
    s.mounts = vec![rw_bind("/out", out.path())];
    let cancel = Arc::new(AtomicBool::new(false));
    let config = ExecConfig {
        cancel: Some(cancel.clone()),
        ..config()
    };
    let marker = out.path().join("cg");
    let watcher = {
        let marker = marker.clone();
        std::thread::spawn(move || {
            // Counted, not timed: wait for the RUN to report its cgroup, then cancel.
            for _ in 0..3000 {
                if marker.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            cancel.store(true, Ordering::SeqCst);
        })
    };
    let r = try_run_with(&s, &config);
    watcher.join().unwrap();
    assert!(matches!(r, Err(ExecError::Interrupted)), "{:?}", r.err());
    let leaf = leaf_of(&std::fs::read_to_string(&marker).unwrap());
    assert!(!leaf.exists(), "{} left behind", leaf.display());
}
