//! RUN executor against the SECURITY.md D/E cases (needs root).

mod exec_common;

use std::os::unix::fs::symlink;
use std::path::Path;

use exec_common::*;
use rbuild::exec::{ExecError, Mount, MountKind};

fn sha(p: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

#[test]
fn d1_workdir_through_proc_self_fd_is_refused() {
    let (_t, root) = busybox_rootfs();
    for n in [3, 4, 5, 6, 7, 8, 10, 20, 63] {
        let mut s = spec(&root, "ls ../../../etc");
        s.workdir = format!("/proc/self/fd/{n}");
        match try_run(&s) {
            Err(ExecError::Setup(msg)) => assert!(msg.contains("workdir"), "{msg}"),
            other => panic!(
                "WORKDIR /proc/self/fd/{n} must fail, got {:?}",
                other.map(|c| c.stdout)
            ),
        }
    }
    // The same via `cd` inside the step: there is no fd beyond stdio to go through.
    let out = run_ok(&spec(
        &root,
        "for n in 3 4 5 6 7 8 9; do cd /proc/self/fd/$n 2>/dev/null && pwd; done; echo end",
    ));
    assert_eq!(out, "end\n");
}

#[test]
fn d3_proc_self_exe_shebang_cannot_reach_the_host_binary() {
    let (_t, root) = busybox_rootfs();
    let helper = Path::new(env!("CARGO_BIN_EXE_rbuild"));
    let before = sha(helper);
    // The image's /bin/sh is a script whose interpreter is /proc/self/exe: at that exec
    // PID 1 is still the helper, so the interpreter is whatever the helper runs from.
    std::fs::remove_file(root.join("bin/sh")).unwrap();
    std::fs::write(root.join("bin/sh"), "#!/proc/self/exe __rbuild-exec\n").unwrap();
    std::fs::set_permissions(
        root.join("bin/sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    match try_run(&spec(&root, "true")) {
        // The kernel does not find the sealed copy as an interpreter ...
        Err(ExecError::Setup(msg)) => assert!(msg.contains("/bin/sh"), "{msg}"),
        // ... or the re-entered binary finds no status pipe (fds were closed) and refuses.
        Ok(c) => {
            assert_eq!(c.outcome.exit_code, 2, "{}", c.stderr);
            assert!(c.stderr.contains("internal"), "{}", c.stderr);
        }
        Err(e) => panic!("unexpected {e}"),
    }
    // From inside, /proc/1/exe of such a process is the sealed memfd copy: not writable.
    std::fs::write(root.join("bin/sh"), "#!/bin/busybox sh\n").unwrap();
    let mut s = spec(&root, "");
    s.argv = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        "readlink /proc/1/exe; echo x >> /proc/1/exe 2>/dev/null && echo writable; true".into(),
    ];
    assert_eq!(run_ok(&s), "/bin/busybox\n");
    assert_eq!(sha(helper), before, "host binary changed");
}

#[test]
fn d4_dev_symlink_to_host_path_does_not_redirect() {
    let (_t, root) = busybox_rootfs();
    let host = tempfile::tempdir().unwrap();
    let host_dev = host.path().join("hostdev");
    std::fs::create_dir(&host_dev).unwrap();
    std::fs::remove_dir_all(root.join("dev")).unwrap();
    symlink(&host_dev, root.join("dev")).unwrap();
    let out = run_ok(&spec(
        &root,
        "echo x > /dev/null && ls /dev/zero && echo ok",
    ));
    assert_eq!(out, "/dev/zero\nok\n");
    assert_eq!(
        std::fs::read_dir(&host_dev).unwrap().count(),
        0,
        "host dir was written"
    );
    // The in-root stub the symlink pointed at is gone, the symlink itself stays.
    let inside = root.join(host_dev.strip_prefix("/").unwrap());
    assert!(!inside.exists());
    assert!(std::fs::symlink_metadata(root.join("dev"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn d4_image_dev_null_symlink_into_procfs_is_shadowed() {
    let (_t, root) = busybox_rootfs();
    let before = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    symlink("/proc/sys/kernel/core_pattern", root.join("dev/null")).unwrap();
    symlink("/proc/sysrq-trigger", root.join("dev/console")).unwrap();
    let out = run_ok(&spec(&root, "echo '|/tmp/evil' > /dev/null; test -c /dev/null && echo chardev; test -e /dev/console || echo noconsole"));
    assert_eq!(out, "chardev\nnoconsole\n");
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    assert!(std::fs::symlink_metadata(root.join("dev/null"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn d4_etc_hosts_symlink_into_proc_is_not_a_writable_procfs_file() {
    let (_t, root) = busybox_rootfs();
    let before = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    symlink("/proc/sys/kernel/core_pattern", root.join("etc/hosts")).unwrap();
    let c = try_run(&spec(
        &root,
        "echo '|/tmp/evil' > /etc/hosts 2>/dev/null && echo written; true",
    ))
    .unwrap();
    assert_eq!(c.stdout, "");
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    assert!(!root.join("proc/sys").exists(), "stubs left behind");
    assert!(std::fs::symlink_metadata(root.join("etc/hosts"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn d4_proc_symlink_stays_inside_rootfs() {
    let (_t, root) = busybox_rootfs();
    std::fs::remove_dir(root.join("proc")).unwrap();
    symlink("/hostproc", root.join("proc")).unwrap();
    assert_eq!(
        run_ok(&spec(&root, "echo $$; cat /proc/self/comm")),
        "1\ncat\n"
    );
    assert!(!Path::new("/hostproc").exists());
    assert!(!root.join("hostproc").exists());
}

#[test]
fn e1_symlinked_bind_source_is_refused() {
    let (_t, root) = busybox_rootfs();
    let dir = tempfile::tempdir().unwrap();
    symlink("/", dir.path().join("rootdir")).unwrap();
    let mut s = spec(&root, "touch /exploit/BIND_BREAKOUT");
    s.mounts = vec![Mount {
        target: "/exploit".into(),
        kind: MountKind::Bind {
            source: dir.path().join("rootdir"),
            readonly: false,
        },
    }];
    assert!(try_run(&s).is_err());
    assert!(!Path::new("/BIND_BREAKOUT").exists());
}

#[test]
fn e5_mount_target_through_image_symlink_stays_inside() {
    let (_t, root) = busybox_rootfs();
    let host = tempfile::tempdir().unwrap();
    symlink(host.path(), root.join("cache")).unwrap();
    let mut s = spec(&root, "echo x > /cache/f; stat -f -c %T /cache/");
    s.mounts = vec![Mount {
        target: "/cache".into(),
        kind: MountKind::Tmpfs { size: None },
    }];
    assert_eq!(run_ok(&s), "tmpfs\n");
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    assert!(!root.join(host.path().strip_prefix("/").unwrap()).exists());
}

#[test]
fn e03_mount_options_are_an_allow_list() {
    // CVE-2024-9407: option text that would smuggle mount flags is rejected by the parser.
    use rbuild::dockerfile::parse_mount;
    for bad in [
        "type=bind,source=x,target=/t,bind-propagation=shared",
        "type=bind,target=/t,rw,suid",
        "type=bind,target=/t,shared,bind=/",
        "type=bind,target=/t,options=rw,suid",
        "type=cache,target=/t,sharing=shared,dev",
        "type=tmpfs,target=/t,size=1k,exec",
        "type=overlay,target=/t",
    ] {
        assert!(parse_mount(bad).is_err(), "{bad} must be rejected");
    }
    assert!(parse_mount("type=bind,source=x,target=/t,rw").is_ok());
}

#[test]
fn d05_seccomp_blocks_dockers_denied_syscalls_with_eperm() {
    // Docker's default seccomp profile: namespace creation, keyrings, bpf, perf, ... are
    // refused with EPERM; the process is not killed and ordinary commands still work.
    let (_t, root) = busybox_rootfs();
    let out = run_ok(&spec(
        &root,
        "grep -E '^Seccomp:' /proc/self/status; \
         unshare -U true 2>&1 && echo unshare-U-allowed; \
         unshare -n true 2>&1 && echo unshare-n-allowed; \
         unshare -m true 2>&1 && echo unshare-m-allowed; \
         echo still-running; ls / >/dev/null && echo ls-works",
    ));
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(!out.contains("-allowed"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("still-running\nls-works\n"), "{out}");
}
