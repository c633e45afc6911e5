//! RUN executor: real namespaces over a busybox rootfs (needs root).

mod exec_common;

use exec_common::*;
use rbuild::exec::{Mount, MountKind, Network};

#[test]
fn echo_output_is_captured_per_stream() {
    let (_t, root) = busybox_rootfs();
    let c = try_run(&spec(&root, "echo hello; echo oops >&2")).unwrap();
    assert_eq!(c.stdout, "hello\n");
    assert_eq!(c.stderr, "oops\n");
    assert!(c.outcome.success());
}

#[test]
fn exit_codes_are_returned() {
    let (_t, root) = busybox_rootfs();
    let c = try_run(&spec(&root, "exit 3")).unwrap();
    assert_eq!(c.outcome.exit_code, 3);
    assert_eq!(c.outcome.signal, None);
    // A child killed by a signal: the shell reports 128+n.
    let c = try_run(&spec(&root, "sh -c 'kill -TERM $$'; exit $?")).unwrap();
    assert_eq!(c.outcome.exit_code, 143);
}

#[test]
fn command_not_found_is_an_error_naming_it() {
    let (_t, root) = busybox_rootfs();
    let mut s = spec(&root, "");
    s.argv = vec!["no-such-tool".into(), "x".into()];
    let e = try_run(&s).err().expect("must fail");
    assert!(e.to_string().contains("no-such-tool"), "{e}");
    // PATH from the step's env is searched inside the container.
    s.argv = vec!["busybox".into(), "echo".into(), "found".into()];
    assert_eq!(run_ok(&s), "found\n");
}

fn ids(root: &std::path::Path, user: &str) -> String {
    let mut s = spec(root, "echo $(id -u) $(id -g) / $(id -G)");
    s.user = Some(user.into());
    run_ok(&s)
}

#[test]
fn user_app_gets_its_groups() {
    let (_t, root) = busybox_rootfs();
    assert_eq!(ids(&root, "app"), "1000 1000 / 1000 50\n");
    assert_eq!(ids(&root, "1000"), "1000 1000 / 1000 50\n");
}

#[test]
fn user_uid_gid_and_nobody() {
    let (_t, root) = busybox_rootfs();
    assert_eq!(ids(&root, "1000:50"), "1000 50 / 50\n");
    assert_eq!(ids(&root, "app:staff"), "1000 50 / 50\n");
    assert_eq!(ids(&root, "nobody"), "65534 65534 / 65534\n");
    assert_eq!(ids(&root, "4242:4243"), "4242 4243 / 4243\n");
    let mut s = spec(&root, "id");
    assert!(run_ok(&s).starts_with("uid=0(root) gid=0(root)"));
    s.user = Some("ghost".into());
    let e = try_run(&s).err().expect("unknown user must fail");
    assert!(e.to_string().contains("ghost"), "{e}");
}

#[test]
fn workdir_is_created_and_entered() {
    let (_t, root) = busybox_rootfs();
    let mut s = spec(&root, "pwd; touch here");
    s.workdir = "/work/dir".into();
    assert_eq!(run_ok(&s), "/work/dir\n");
    let meta = std::fs::metadata(root.join("work/dir")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert!(root.join("work/dir/here").exists());
}

#[test]
fn d6_env_is_exactly_the_spec_env() {
    std::env::set_var("RBUILD_TEST_HOST_SECRET", "leaked");
    let (_t, root) = busybox_rootfs();
    let mut s = spec(&root, "env");
    s.env = vec!["PATH=/bin".into(), "FOO=bar baz".into()];
    let out = run_ok(&s);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    // sh itself adds PWD and SHLVL.
    assert_eq!(
        lines,
        vec!["FOO=bar baz", "PATH=/bin", "PWD=/", "SHLVL=1"],
        "{out}"
    );
}

#[test]
fn hostname_and_etc_files() {
    let (_t, root) = busybox_rootfs();
    let mut s = spec(&root, "hostname; cat /etc/hostname; cat /etc/hosts");
    s.extra_hosts = vec![("db.local".into(), "10.1.2.3".into())];
    let out = run_ok(&s);
    assert!(
        out.starts_with("rbuild-test\nrbuild-test\n127.0.0.1\tlocalhost rbuild-test\n"),
        "{out}"
    );
    assert!(out.contains("10.1.2.3\tdb.local\n"), "{out}");
}

#[test]
fn command_is_pid_1() {
    let (_t, root) = busybox_rootfs();
    assert_eq!(run_ok(&spec(&root, "echo $$")), "1\n");
    // Nothing of the host's process tree is visible.
    // (a shell glob: no extra process is started to look)
    assert_eq!(run_ok(&spec(&root, "echo /proc/[0-9]*")), "/proc/1\n");
}

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    let mut v: Vec<String> = proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn network_none_has_only_lo_up() {
    let (_t, root) = busybox_rootfs();
    let mut s = spec(&root, "cat /proc/net/dev");
    s.network = Network::None;
    assert_eq!(interfaces(&run_ok(&s)), vec!["lo"]);
    s.argv[2] = "ip link show lo".into();
    let out = run_ok(&s);
    assert!(out.contains("UP"), "{out}");
    s.argv[2] = "cat /etc/resolv.conf".into();
    assert_eq!(run_ok(&s), "nameserver 127.0.0.1\n");
}

#[test]
fn network_host_sees_host_interfaces() {
    let (_t, root) = busybox_rootfs();
    let host = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    assert!(host.len() > 1, "host has only {host:?}");
    assert_eq!(interfaces(&run_ok(&spec(&root, "cat /proc/net/dev"))), host);
}

#[test]
fn d2_only_stdio_fds_reach_the_command() {
    let (_t, root) = busybox_rootfs();
    // Keep a few extra fds open in this process (non-CLOEXEC) to prove none leak.
    let f = std::fs::File::open("/etc/passwd").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
    let dup = unsafe { libc::dup(raw) };
    assert!(dup > 2);
    // ls opens fd 3 for the directory it lists.
    let out = run_ok(&spec(&root, "ls /proc/self/fd"));
    unsafe { libc::close(dup) };
    assert_eq!(out, "0\n1\n2\n3\n");
    // stdin is /dev/null: cat ends at once.
    assert_eq!(
        run_ok(&spec(&root, "cat; readlink /proc/self/fd/0")),
        "/dev/null\n"
    );
}

fn cap_lines(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn d5_capabilities_are_dockers_default_and_no_new_privs() {
    let (_t, root) = busybox_rootfs();
    let mut s = spec(&root, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status");
    assert_eq!(
        cap_lines(&run_ok(&s)),
        [
            "CapInh: 0000000000000000",
            "CapPrm: 00000000a80425fb",
            "CapEff: 00000000a80425fb",
            "CapBnd: 00000000a80425fb",
            "CapAmb: 0000000000000000",
            "NoNewPrivs: 1",
        ]
    );
    s.user = Some("app".into());
    assert_eq!(
        cap_lines(&run_ok(&s)),
        [
            "CapInh: 0000000000000000",
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
            "CapBnd: 00000000a80425fb",
            "CapAmb: 0000000000000000",
            "NoNewPrivs: 1",
        ]
    );
}

#[test]
fn host_paths_are_unreachable_and_proc_is_protected() {
    let (_t, root) = busybox_rootfs();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("host-only"), "x").unwrap();
    let hp = host.path().join("host-only");
    let script = format!(
        "test -e {p} && echo visible; echo data > /written; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable; \
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo procsys-writable; \
         cat /proc/kcore | wc -c; echo done",
        p = hp.display()
    );
    assert_eq!(run_ok(&spec(&root, &script)), "0\ndone\n");
    assert_eq!(
        std::fs::read_to_string(root.join("written")).unwrap(),
        "data\n"
    );
    assert!(!std::path::Path::new("/written").exists());
}

#[test]
fn mount_stubs_are_removed_after_the_run() {
    let (_t, root) = busybox_rootfs();
    // An image without /etc, /proc, /sys, /dev at all.
    for d in ["etc", "proc", "sys", "dev"] {
        std::fs::remove_dir_all(root.join(d)).unwrap();
    }
    let out = run_ok(&spec(
        &root,
        "cat /etc/hosts >/dev/null && ls -d /proc/1 /sys/kernel /dev/null",
    ));
    assert_eq!(out, "/dev/null\n/proc/1\n/sys/kernel\n");
    for d in ["etc", "proc", "sys", "dev"] {
        assert!(!root.join(d).exists(), "{d} leaked into the rootfs");
    }
}

#[test]
fn etc_stubs_removed_but_existing_files_kept() {
    let (_t, root) = busybox_rootfs();
    std::fs::write(root.join("etc/hostname"), "image-hostname\n").unwrap();
    let out = run_ok(&spec(
        &root,
        "cat /etc/hostname; echo changed > /etc/hosts; echo new > /etc/added",
    ));
    assert_eq!(out, "rbuild-test\n");
    assert!(!root.join("etc/hosts").exists());
    assert!(!root.join("etc/resolv.conf").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "image-hostname\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/added")).unwrap(),
        "new\n"
    );
}

#[test]
fn bind_mounts_ro_and_rw() {
    let (_t, root) = busybox_rootfs();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), "from host\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let mut s = spec(
        &root,
        "cat /mnt/ro/f; touch /mnt/ro/x 2>/dev/null && echo ro-writable; touch /mnt/rw/y; echo ok",
    );
    s.mounts = vec![
        Mount {
            target: "/mnt/ro".into(),
            kind: MountKind::Bind {
                source: src.path().into(),
                readonly: true,
            },
        },
        Mount {
            target: "/mnt/rw".into(),
            kind: MountKind::Bind {
                source: rw.path().into(),
                readonly: false,
            },
        },
    ];
    assert_eq!(run_ok(&s), "from host\nok\n");
    assert!(!src.path().join("x").exists());
    assert!(rw.path().join("y").exists());
    assert!(!root.join("mnt").exists(), "mount stubs must be removed");
}

#[test]
fn tmpfs_mount_works_and_leaves_nothing() {
    let (_t, root) = busybox_rootfs();
    let mut s = spec(
        &root,
        "echo x > /cache/a/../f && stat -f -c %T /cache && cat /cache/f",
    );
    s.mounts = vec![Mount {
        target: "/cache".into(),
        kind: MountKind::Tmpfs {
            size: Some(1 << 20),
        },
    }];
    s.argv[2] = "mkdir /cache/a && echo x > /cache/f && stat -f -c %T /cache && cat /cache/f && df -k /cache | tail -1".into();
    let out = run_ok(&s);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("tmpfs"));
    assert_eq!(lines.next(), Some("x"));
    assert!(lines.next().unwrap().contains(" 1024 "), "{out}");
    assert!(!root.join("cache").exists());
}

#[test]
fn secret_is_readable_with_its_mode_and_absent_afterwards() {
    let (_t, root) = busybox_rootfs();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let mut s = spec(&root, "cat /run/secrets/token; echo; stat -c '%a %u %g' /run/secrets/token; ls -a /dev | grep -c rbuild; echo x > /run/secrets/token 2>/dev/null && echo writable; true");
    s.user = Some("app".into());
    s.mounts = vec![Mount {
        target: "/run/secrets/token".into(),
        kind: MountKind::Secret {
            source: secret.clone(),
            mode: 0o400,
            uid: 1000,
            gid: 1000,
        },
    }];
    assert_eq!(run_ok(&s), "s3cr3t\n400 1000 1000\n0\n");
    assert!(!root.join("run").exists());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cr3t");
}
