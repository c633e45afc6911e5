//! Network modes of RUN (README "Network modes"): `default` (own namespace, outbound through
//! slirp4netns or pasta), `none`, `host` (CLI opt-in; `RUN --network=host` also needs
//! `--allow network.host`), the per-mode /etc files, `--add-host`, and the missing-helper error.
//! Real builds with the real binary over a busybox-static rootfs (and a debootstrap'd Debian one
//! for apt).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "host-loopback-secret-7c1e";

fn busybox_context(dir: &Path, rest: &str) -> PathBuf {
    let ctx = context(dir, &format!("FROM scratch\nADD rootfs.tar /\n{rest}"), &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    ctx
}

/// Skips (returns false) when a prerequisite is missing, unless RBUILD_REQUIRE_TOOLS=1 (CI).
fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("RBUILD_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "RBUILD_REQUIRE_TOOLS=1 but {what}"
        );
        eprintln!("skipping: {what}");
    }
    ok
}

/// A TCP service on the host's 127.0.0.1 that sends TOKEN to whoever connects.
fn loopback_service() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(TOKEN.as_bytes());
        }
    });
    port
}

/// Builds `ctx` with `args` into a local dir and returns the file `name` from it.
fn build_and_read(root: &Path, out: &Path, args: &[&str], ctx: &Path, name: &str) -> String {
    let _ = std::fs::remove_dir_all(out);
    let dest = format!("type=local,dest={}", out.display());
    let mut all: Vec<&str> = vec!["build", "--no-cache", "-o", &dest];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    ok(rbuild(root, &all));
    std::fs::read_to_string(out.join(name)).unwrap()
}

#[test]
fn host_loopback_service_is_reachable_only_with_the_host_network_opt_in() {
    let t = tempfile::tempdir().unwrap();
    let port = loopback_service();
    // Through the loopback inside the RUN and through slirp's/pasta's gateway (10.0.2.2), which
    // would map to the host's loopback without --disable-host-loopback / --no-map-gw.
    let probe = format!(
        "(nc -w 3 127.0.0.1 {port} </dev/null; nc -w 3 10.0.2.2 {port} </dev/null) > /probe 2>&1; echo ran >> /probe"
    );
    let ctx = busybox_context(&t.path().join("ctx"), &format!("RUN {probe}\n"));
    let root = t.path().join("root");
    let out = t.path().join("out");
    for mode in ["default", "none"] {
        let got = build_and_read(&root, &out, &["--network", mode], &ctx, "probe");
        assert!(got.contains("ran"), "{mode}: {got}");
        assert!(
            !got.contains(TOKEN),
            "--network {mode} reached the host loopback: {got}"
        );
    }
    // Without flags the mode is `default`.
    let got = build_and_read(&root, &out, &[], &ctx, "probe");
    assert!(got.contains("ran") && !got.contains(TOKEN), "{got}");
    let got = build_and_read(&root, &out, &["--network", "host"], &ctx, "probe");
    assert!(got.contains(TOKEN), "--network host: {got}");

    // The Dockerfile asking for the host network needs the entitlement.
    let ctx_host = busybox_context(
        &t.path().join("ctx-host"),
        &format!("RUN --network=host {probe}\n"),
    );
    let r = rbuild(&root, &["build", "--no-cache", ctx_host.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("network.host is not allowed") && r.stderr.contains("Dockerfile:3"),
        "{}",
        r.stderr
    );
    let got = build_and_read(
        &root,
        &out,
        &["--allow", "network.host"],
        &ctx_host,
        "probe",
    );
    assert!(
        got.contains(TOKEN),
        "RUN --network=host with --allow: {got}"
    );
    // And `RUN --network=none` wins over `--network host` for its own step.
    let ctx_none = busybox_context(
        &t.path().join("ctx-none"),
        &format!("RUN --network=none {probe}\n"),
    );
    let got = build_and_read(&root, &out, &["--network", "host"], &ctx_none, "probe");
    assert!(got.contains("ran") && !got.contains(TOKEN), "{got}");
    assert_nothing_mounted_under(&root);
}

#[test]
fn host_abstract_unix_socket_is_out_of_reach_under_default() {
    let t = tempfile::tempdir().unwrap();
    let name = format!("rbuild-test-abstract-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = UnixListener::bind_addr(&addr).unwrap();
    // Abstract sockets belong to a network namespace; /proc/net/unix lists the reader's own.
    let ctx = busybox_context(
        &t.path().join("ctx"),
        &format!("RUN (grep -c '@{name}' /proc/net/unix || true) > /seen\n"),
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    let seen = build_and_read(&root, &out, &[], &ctx, "seen");
    assert_eq!(
        seen.trim(),
        "0",
        "default network sees the host's abstract socket"
    );
    let seen = build_and_read(&root, &out, &["--network", "host"], &ctx, "seen");
    assert_eq!(seen.trim(), "1", "control: the host network sees it");
}

#[test]
fn resolv_conf_and_hosts_per_mode_with_add_host() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_context(
        &t.path().join("ctx"),
        "RUN cat /etc/resolv.conf > /resolv && cat /etc/hosts > /hosts\n",
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    let hosts_args = ["--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway"];
    let mut args = vec!["--network", "default"];
    args.extend(hosts_args);
    let resolv = build_and_read(&root, &out, &args, &ctx, "resolv");
    assert!(resolv.starts_with("nameserver 10.0.2.3\n"), "{resolv}");
    assert_eq!(resolv.matches("nameserver").count(), 1, "{resolv}");
    let hosts = std::fs::read_to_string(out.join("hosts")).unwrap();
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(hosts.contains("10.1.2.3\tdb\n"), "{hosts}");
    let gw_line = hosts.lines().find(|l| l.ends_with("\tgw")).expect(&hosts);
    let gw: std::net::IpAddr = gw_line.split('\t').next().unwrap().parse().unwrap();
    assert!(!gw.is_loopback() && !gw.is_unspecified(), "{gw_line}");

    let resolv = build_and_read(&root, &out, &["--network", "none"], &ctx, "resolv");
    assert_eq!(resolv, "nameserver 127.0.0.1\n");
    let hosts = std::fs::read_to_string(out.join("hosts")).unwrap();
    assert!(
        hosts.contains("127.0.0.1\tlocalhost") && !hosts.contains("db"),
        "{hosts}"
    );

    let resolv = build_and_read(&root, &out, &["--network", "host"], &ctx, "resolv");
    let host_ns: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .map(str::to_string)
        .collect();
    let run_ns: Vec<String> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .map(str::to_string)
        .collect();
    if !host_ns.is_empty() {
        assert_eq!(run_ns, host_ns);
    }

    let r = rbuild(
        &root,
        &["build", "--add-host", "db:not-an-ip", ctx.to_str().unwrap()],
    );
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("invalid IP address"), "{}", r.stderr);
}

#[test]
fn missing_network_helper_fails_with_one_line_and_never_uses_the_host_network() {
    let t = tempfile::tempdir().unwrap();
    let port = loopback_service();
    let ctx = busybox_context(
        &t.path().join("ctx"),
        &format!("RUN nc -w 3 127.0.0.1 {port} </dev/null > /probe 2>&1; echo ran >> /probe\n"),
    );
    let root = t.path().join("root");
    let empty = t.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let args = ["build", "--no-cache", ctx_s];
    for env in [
        vec![("PATH", empty.to_str().unwrap())],
        vec![("RBUILD_USERNET", "/nonexistent/slirp4netns")],
    ] {
        let r = rbuild_env(&root, &args, &env);
        assert_ne!(r.status, 0, "built without a network helper ({env:?})");
        let line = r
            .stderr
            .lines()
            .find(|l| l.contains("slirp4netns"))
            .unwrap_or_else(|| panic!("{}", r.stderr));
        assert!(
            line.contains("passt") && line.contains("--network none"),
            "{line}"
        );
    }
    // The same build with no network needs no helper.
    let out = t.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    ok(rbuild_env(
        &root,
        &[
            "build",
            "--no-cache",
            "--network",
            "none",
            "-o",
            &dest,
            ctx_s,
        ],
        &[("PATH", empty.to_str().unwrap())],
    ));
    let probe = std::fs::read_to_string(out.join("probe")).unwrap();
    assert!(probe.contains("ran") && !probe.contains(TOKEN), "{probe}");
}

/// deb.debian.org:80 answers from the host (CI machines reach it).
fn mirror_reachable() -> bool {
    ("deb.debian.org", 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).ok())
        .is_some()
}

#[test]
fn default_network_reaches_outside_by_name_with_each_stack() {
    if !require(mirror_reachable(), "deb.debian.org:80 is not reachable") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // DNS through 10.0.2.3, then a real HTTP exchange with Debian's mirror.
    let ctx = busybox_context(
        &t.path().join("ctx"),
        "RUN nslookup deb.debian.org > /dns && \
         wget -q -O /release http://deb.debian.org/debian/dists/bookworm/Release\n",
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    for stack in ["slirp4netns", "pasta"] {
        if !require(have(stack), &format!("{stack} is not installed")) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&out);
        let dest = format!("type=local,dest={}", out.display());
        ok(rbuild_env(
            &root,
            &["build", "--no-cache", "-o", &dest, ctx.to_str().unwrap()],
            &[("RBUILD_USERNET", stack)],
        ));
        let dns = std::fs::read_to_string(out.join("dns")).unwrap();
        assert!(dns.contains("10.0.2.3"), "{stack}: {dns}");
        let release = std::fs::read_to_string(out.join("release")).unwrap();
        assert!(release.contains("Codename: bookworm"), "{stack}: {release}");
    }
}

#[test]
fn apt_get_install_works_in_the_default_network() {
    let debian_ok = have("debootstrap") && mirror_reachable();
    if !require(debian_ok, "debootstrap or deb.debian.org is missing") {
        return;
    }
    let out = Command::new(repo_dir().join("testdata/debian-rootfs-tar.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debootstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tar = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    context(
        &ctx,
        "FROM scratch\nADD debian.tar /\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello && hello > /greeting\n",
        &[],
    );
    std::fs::copy(&tar, ctx.join("debian.tar")).unwrap();
    let root = t.path().join("root");
    let dest = t.path().join("out");
    ok(rbuild(
        &root,
        &[
            "build",
            "-o",
            &format!("type=local,dest={}", dest.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let mut greeting = String::new();
    std::fs::File::open(dest.join("greeting"))
        .unwrap()
        .read_to_string(&mut greeting)
        .unwrap();
    assert_eq!(greeting, "Hello, world!\n");
    assert_nothing_mounted_under(&root);
}

/// Pids of `stack` processes started by a RUN helper of rbuild process `rbuild`.
fn stacks_of(rbuild: u32, stack: &str) -> Vec<u32> {
    let ppid = |pid: u32| -> Option<u32> {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        st.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                argv0.ends_with(stack.as_bytes())
            }) && ppid(pid).and_then(ppid) == Some(rbuild)
        })
        .collect()
}

/// Gone or a zombie waiting for its reaper: either way it no longer serves the namespace.
fn stopped(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

#[test]
fn network_stack_is_stopped_when_the_build_is_cancelled_or_killed() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_context(&t.path().join("ctx"), "RUN sleep 60\n");
    let root = t.path().join("root");
    let signals = [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGKILL,
    ];
    for (stack, signal) in ["slirp4netns", "pasta"]
        .into_iter()
        .flat_map(|s| signals.map(|g| (s, g)))
    {
        if !require(have(stack), &format!("{stack} is not installed")) {
            continue;
        }
        let mut child = Command::new(rbuild_bin())
            .arg("--root")
            .arg(&root)
            .args(["build", "--no-cache", "--progress", "plain"])
            .arg(&ctx)
            .env("RBUILD_USERNET", stack)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stacks = Vec::new();
        for _ in 0..600 {
            stacks = stacks_of(child.id(), stack);
            if !stacks.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(stacks.len(), 1, "no {stack} seen for the RUN");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait().unwrap();
        let mut gone = false;
        for _ in 0..300 {
            if stopped(stacks[0]) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(gone, "{stack} {} still runs after {signal:?}", stacks[0]);
    }
    assert_nothing_mounted_under(&root);
}
