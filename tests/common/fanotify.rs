//! Which threads touched which files, seen by the kernel (fanotify, root): lets a test count
//! that work ran on several threads, or that a step opened no file at all, instead of timing it.

use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A fanotify group watching one whole filesystem.
pub struct FileEvents {
    fan: Fanotify,
}

/// One event: the thread (not process) id that caused it and the file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    pub tid: i32,
    pub path: PathBuf,
}

fn group() -> Fanotify {
    Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_REPORT_TID
            | InitFlags::FAN_UNLIMITED_QUEUE,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE,
    )
    .expect("fanotify_init (the tests run as root)")
}

impl FileEvents {
    /// Watches the whole filesystem holding `path` for `mask` (e.g. `FAN_CLOSE_WRITE`), in every
    /// mount namespace (rbuild runs in its own): for files that do not exist yet.
    pub fn watch(path: &Path, mask: MaskFlags) -> FileEvents {
        let fan = group();
        fan.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            mask,
            std::fs::File::open(path).expect("watched path"),
            None::<&Path>,
        )
        .expect("fanotify_mark FAN_MARK_FILESYSTEM");
        FileEvents { fan }
    }

    /// Watches the files directly in each of `dirs` for `mask` (e.g. `FAN_OPEN`).
    pub fn watch_dirs(dirs: &[PathBuf], mask: MaskFlags) -> FileEvents {
        let fan = group();
        for d in dirs {
            fan.mark(
                MarkFlags::FAN_MARK_ADD,
                mask | MaskFlags::FAN_EVENT_ON_CHILD,
                std::fs::File::open(d).expect("watched dir"),
                None::<&Path>,
            )
            .expect("fanotify_mark");
        }
        FileEvents { fan }
    }

    /// The events queued so far (each read once), regular files and directories alike.
    pub fn drain(&self) -> Vec<FileEvent> {
        let mut out = Vec::new();
        loop {
            let events = match self.fan.read_events() {
                Ok(e) if !e.is_empty() => e,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => return out,
                Err(e) => panic!("reading fanotify events: {e}"),
            };
            for e in events {
                let Some(fd) = e.fd() else { continue };
                let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
                if let Ok(path) = std::fs::read_link(&link) {
                    out.push(FileEvent { tid: e.pid(), path });
                }
            }
        }
    }

    /// Drains, keeps the events on regular files under `dir`, and returns the distinct thread
    /// ids and the number of events.
    pub fn threads_under(&self, dir: &Path) -> (std::collections::BTreeSet<i32>, usize) {
        let mut tids = std::collections::BTreeSet::new();
        let mut n = 0;
        for e in self.drain() {
            if e.path.starts_with(dir) && e.path.is_file() {
                tids.insert(e.tid);
                n += 1;
            }
        }
        (tids, n)
    }
}
