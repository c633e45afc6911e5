//! Ctrl-C during a long COPY: the copy stops at the next entry instead of finishing first.
//!
//! Deterministic, not timed: fanotify permission events hold each of rbuild's opens of a context file
//! until the test allows it, so the test sends SIGINT at a known point of the copy (after K files)
//! and then counts how many more files rbuild opened.

mod common;

use common::*;
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 300;
const STOP_AFTER: usize = 40;

/// Whether `pid` still has SIGINT pending (not yet handled).
fn sigint_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        (l.starts_with("ShdPnd:") || l.starts_with("SigPnd:"))
            && u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(0)
                & (1 << 1)
                != 0
    })
}

#[test]
fn sigint_stops_a_long_copy_between_files() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(&t.path().join("ctx"), "FROM scratch\nCOPY big /big\n", &[]);
    let big = ctx.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..FILES {
        std::fs::write(big.join(format!("f{i:04}")), vec![b'x'; 4096]).unwrap();
    }
    let root = t.path().join("root");

    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY,
    )
    .expect("fanotify_init (needs root)");
    fan.mark(
        MarkFlags::FAN_MARK_ADD,
        MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_EVENT_ON_CHILD,
        std::fs::File::open(&big).unwrap(),
        None::<&str>,
    )
    .unwrap();

    use std::os::unix::process::CommandExt;
    let mut child = Command::new(rbuild_bin())
        .arg("--root")
        .arg(&root)
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    // Opens of each file: the content hash reads each file once, the copy once more.
    let mut opens: HashMap<String, usize> = HashMap::new();
    let mut copied = 0usize;
    let mut signalled = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        assert!(Instant::now() < deadline, "rbuild did not finish");
        let events = match fan.read_events() {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EAGAIN) => Vec::new(),
            Err(e) => panic!("fanotify read: {e}"),
        };
        for ev in &events {
            let Some(fd) = ev.fd() else { continue };
            use std::os::fd::AsRawFd;
            let path =
                std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
            if path.parent() == Some(big.as_path()) {
                let n = opens
                    .entry(path.to_string_lossy().into_owned())
                    .or_default();
                *n += 1;
                if *n == 2 {
                    copied += 1;
                    if copied == STOP_AFTER && !signalled {
                        // Ctrl-C while this open waits; allowed only once rbuild handled it.
                        nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGINT,
                        )
                        .unwrap();
                        signalled = true;
                        while sigint_pending(pid) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            }
            fan.write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW))
                .unwrap();
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if events.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    drop(fan);
    assert!(signalled, "the copy never reached file {STOP_AFTER}");
    assert_eq!(status.code(), Some(130));
    // The file being opened at the signal may still be written; nothing after it.
    assert!(
        copied <= STOP_AFTER + 1,
        "rbuild copied {copied} of {FILES} files after Ctrl-C at file {STOP_AFTER}"
    );
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);

    // The next build copies everything.
    let out = t.path().join("out");
    ok(rbuild(
        &root,
        &[
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_dir(out.join("big")).unwrap().count(), FILES);
    assert_store_consistent(&root);
}
