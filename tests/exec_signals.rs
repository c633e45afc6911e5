//! Interrupting a RUN: the container is killed, `run` returns an error quickly and no
//! process is left behind (needs root).

mod exec_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exec_common::*;
use rbuild::exec::{run_with, ExecError, Stream};

/// Host pids whose command line is exactly `sleep <marker>`.
fn sleepers(marker: &str) -> Vec<i32> {
    let want = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

fn wait_for_sleeper(marker: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = sleepers(marker).first() {
            return *pid;
        }
        assert!(Instant::now() < deadline, "sleep {marker} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ppid(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn cancel_flag_kills_the_container() {
    let (_t, root) = busybox_rootfs();
    let marker = "4711";
    let mut s = spec(&root, "");
    s.argv = vec!["sleep".into(), marker.into()];
    let cancel = Arc::new(AtomicBool::new(false));
    let mut cfg = config();
    cfg.cancel = Some(cancel.clone());
    let handle = std::thread::spawn(move || run_with(&s, &cfg, &mut |_: Stream, _: &[u8]| {}));
    wait_for_sleeper(marker);
    let t0 = Instant::now();
    cancel.store(true, Ordering::SeqCst);
    let result = handle.join().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert!(matches!(result, Err(ExecError::Interrupted)), "{result:?}");
    assert!(sleepers(marker).is_empty(), "container process left behind");
    assert!(
        !root.join("etc/hosts").exists(),
        "stubs must be cleaned after interrupt"
    );
}

#[test]
fn sigint_to_the_helper_kills_the_container() {
    let (_t, root) = busybox_rootfs();
    let marker = "4712";
    let mut s = spec(&root, "");
    // A background child too: it must die with PID 1.
    s.argv = vec![
        "sh".into(),
        "-c".into(),
        format!("sleep {marker} & exec sleep {marker}"),
    ];
    let handle = std::thread::spawn(move || run_with(&s, &config(), &mut |_: Stream, _: &[u8]| {}));
    let sleeper = wait_for_sleeper(marker);
    // Ctrl-C reaches the whole foreground process group, the helper included.
    let mut helper = sleeper;
    while ppid(helper) != std::process::id() as i32 {
        helper = ppid(helper);
        assert!(helper > 1, "helper not found");
    }
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let result = handle.join().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert!(matches!(result, Err(ExecError::Interrupted)), "{result:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sleepers(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sleepers(marker).is_empty(),
        "container processes left behind"
    );
}

#[test]
fn helper_killed_outright_takes_the_container_with_it() {
    let (_t, root) = busybox_rootfs();
    let marker = "4713";
    let mut s = spec(&root, "");
    s.argv = vec!["sleep".into(), marker.into()];
    let handle = std::thread::spawn(move || run_with(&s, &config(), &mut |_: Stream, _: &[u8]| {}));
    let sleeper = wait_for_sleeper(marker);
    let helper = ppid(sleeper);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let result = handle.join().unwrap();
    assert!(matches!(result, Err(ExecError::Helper(_))), "{result:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sleepers(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sleepers(marker).is_empty(), "PDEATHSIG did not kill PID 1");
}
