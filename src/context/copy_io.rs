//! File data and inode writes of a COPY: the worker pool, `copy_file_range`/`sendfile` copies,
//! xattrs, and the check that a source did not change after it was resolved.

use super::copy::CopyStats;
use super::dest_root::{apply_fd_meta, DirHandle, Meta};
use super::error::ContextError;
use super::source::Entry;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of one file copied between two looks at the cancel flag.
pub(super) const COPY_BLOCK: u64 = 8 << 20;

/// One non-directory entry of a tree, for any worker to write.
pub(super) struct Job<'e> {
    /// Position in the walk, to report the first failure in walk order.
    pub(super) index: usize,
    /// Index of the destination directory in [`TreePlan::dirs`].
    pub(super) dir: usize,
    pub(super) name: String,
    pub(super) entry: &'e Entry,
    pub(super) meta: Meta,
}

/// Worker threads for the writes of a tree: `RBUILD_COPY_JOBS` when set (tests and benchmarks pin
/// it), else one per core.
pub(super) fn copy_workers() -> usize {
    std::env::var("RBUILD_COPY_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Below this many queued entries the writes stay on the calling thread: threads cost more.
pub(super) const PARALLEL_MIN: usize = 64;

/// Directories planned (each an open fd) before the queued writes are flushed: keeps a tree of
/// any size well inside the usual 1024-descriptor limit.
pub(super) const FLUSH_DIRS: usize = 256;

/// Writes `jobs` with up to `workers` threads (the calling one included), each taking the next
/// job in walk order. On failure the others stop taking jobs; as every job before a failed one
/// was already taken, the lowest-index error among the finished jobs is the first in walk order.
pub(super) fn run_jobs(
    dirs: &[DirHandle],
    jobs: &[Job],
    io: &FileIo,
    workers: usize,
) -> (CopyStats, Option<(usize, ContextError)>) {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let work = || {
        let mut stats = CopyStats::default();
        while !stop.load(Ordering::Relaxed) {
            let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let e = job.entry;
            let res = crate::cancel::check(io.cancel)
                .map_err(ContextError::from)
                .and_then(|()| {
                    write_inode(
                        &dirs[job.dir],
                        &job.name,
                        &e.host,
                        &e.meta,
                        &job.meta,
                        io,
                        &mut stats,
                    )
                });
            if let Err(err) = res {
                stop.store(true, Ordering::Relaxed);
                return (stats, Some((job.index, err)));
            }
        }
        (stats, None)
    };
    let results = if workers <= 1 || jobs.len() < PARALLEL_MIN {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..workers)
                .filter_map(|_| {
                    // A thread that cannot be spawned only means less parallelism.
                    std::thread::Builder::new()
                        .name("rbuild-copy".into())
                        .spawn_scoped(s, work)
                        .ok()
                })
                .collect();
            let mut results = vec![work()];
            for h in helpers {
                results.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            results
        })
    };
    let mut total = CopyStats::default();
    let mut first: Option<(usize, ContextError)> = None;
    for (stats, err) in results {
        total.add(&stats);
        if let Some((i, e)) = err {
            if first.as_ref().is_none_or(|(j, _)| i < *j) {
                first = Some((i, e));
            }
        }
    }
    (total, first)
}

/// Writes one non-directory source inode as `name` in `dir` (no hardlink bookkeeping).
pub(super) fn write_inode(
    dir: &DirHandle,
    name: &str,
    host: &Path,
    meta: &Metadata,
    m: &Meta,
    io: &FileIo,
    stats: &mut CopyStats,
) -> Result<(), ContextError> {
    let src_desc = host.to_string_lossy();
    let ft = meta.file_type();
    if ft.is_file() {
        stats.bytes += write_file(dir, name, host, Some(meta), m, io)?;
        stats.files += 1;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(host).map_err(|e| ContextError::io(host, e))?;
        dir.replace_symlink(name, &target.to_string_lossy(), &src_desc)?;
        dir.apply_symlink_meta(name, m)?;
        stats.symlinks += 1;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else {
            rustix::fs::FileType::Fifo
        };
        dir.replace_node(name, kind, meta.rdev(), &src_desc)?;
        dir.apply_special_meta(name, m)?;
        stats.specials += 1;
    }
    // Sockets cannot be copied (BuildKit skips them too).
    Ok(())
}

/// Copies a regular file's bytes and xattrs, then sets owner, mode and mtime. Returns the bytes.
/// With `resolved` (the stat the resolution recorded, which the cache key was computed from), the
/// source is re-checked after its bytes are written: a file edited since is an error.
pub(super) fn write_file(
    dir: &DirHandle,
    name: &str,
    host: &Path,
    resolved: Option<&Metadata>,
    m: &Meta,
    io: &FileIo,
) -> Result<u64, ContextError> {
    // O_NOFOLLOW: the walk saw a regular file here; a symlink swapped in is refused.
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(host)
        .map_err(|e| ContextError::io(host, e))?;
    let out = dir.replace_file(name, &host.to_string_lossy())?;
    let n = copy_data(&src, &out, host, io)?;
    if let Some(before) = resolved {
        let after = src.metadata().map_err(|e| ContextError::io(host, e))?;
        if !same_file_state(before, &after) {
            return Err(ContextError::SourceChanged(host.to_path_buf()));
        }
    }
    apply_fd_meta(out.as_fd(), m).map_err(|e| ContextError::in_root(dir.child_path(name), e))?;
    copy_xattrs(&src, &out);
    Ok(n)
}

/// Whether two stats of one file show the same inode with the same content state: any write
/// moves ctime (and usually mtime and size), so a file edited in between compares unequal.
pub(super) fn same_file_state(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev()
        && a.ino() == b.ino()
        && a.size() == b.size()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && a.ctime() == b.ctime()
        && a.ctime_nsec() == b.ctime_nsec()
}

/// What the file writers of one COPY share: the cancel flag, and whether `copy_file_range`
/// still looks usable (it is not from a context into an overlay mount: EXDEV, every file).
pub(super) struct FileIo<'a> {
    pub(super) cancel: Option<&'a AtomicBool>,
    pub(super) try_range: AtomicBool,
}

impl<'a> FileIo<'a> {
    pub(super) fn new(cancel: Option<&'a AtomicBool>) -> FileIo<'a> {
        FileIo {
            cancel,
            try_range: AtomicBool::new(true),
        }
    }
}

/// Copies `src` to its end into `out`, at most `COPY_BLOCK` bytes per call so a cancelled build
/// stops inside a large file. Hand-rolled rather than `std::io::copy` because std probes both
/// files with `statx` on every call (two syscalls per file, on 20,000-file contexts).
/// `copy_file_range` first; `sendfile` where that cannot work (e.g. into an overlay mount, which
/// is another filesystem); a plain read/write loop where neither does. Both copy in the kernel.
pub(super) fn copy_data(
    src: &File,
    out: &File,
    host: &Path,
    io: &FileIo,
) -> Result<u64, ContextError> {
    use rustix::io::Errno;
    let block = COPY_BLOCK as usize;
    let fail =
        |e: Errno| ContextError::io(host, std::io::Error::from_raw_os_error(e.raw_os_error()));
    // Errors that mean "not this way" (before any byte moved), not "the copy failed".
    let unsupported = |e: Errno| {
        matches!(
            e,
            Errno::NOSYS
                | Errno::XDEV
                | Errno::INVAL
                | Errno::OPNOTSUPP
                | Errno::PERM
                | Errno::BADF
        )
    };
    let mut n = 0u64;
    let mut how = if io.try_range.load(Ordering::Relaxed) {
        0
    } else {
        1
    };
    while how < 2 {
        crate::cancel::check(io.cancel)?;
        let res = if how == 0 {
            rustix::fs::copy_file_range(src, None, out, None, block)
        } else {
            rustix::fs::sendfile(out, src, None, block)
        };
        match res {
            Ok(0) => return Ok(n),
            Ok(got) => n += got as u64,
            Err(Errno::INTR) => {}
            Err(e) if n == 0 && unsupported(e) => {
                if how == 0 {
                    io.try_range.store(false, Ordering::Relaxed);
                }
                how += 1;
            }
            Err(e) => return Err(fail(e)),
        }
    }
    let mut buf = vec![0u8; 128 << 10];
    loop {
        crate::cancel::check(io.cancel)?;
        let got = match (&mut &*src).read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ContextError::io(host, e)),
        };
        std::io::Write::write_all(&mut &*out, &buf[..got])
            .map_err(|e| ContextError::io(host, e))?;
        n += got as u64;
    }
}

/// Git checkouts only know 0644, 0755 and directories 0755.
pub(super) fn git_mode(meta: &Metadata) -> u32 {
    if meta.is_dir() || meta.mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Copies extended attributes; failures are ignored as BuildKit's handler does (the target
/// filesystem may not support a namespace).
pub(super) fn copy_xattrs(src: &File, dst: &File) {
    use xattr::FileExt;
    if let Ok(names) = src.list_xattr() {
        for name in names {
            if let Ok(Some(value)) = src.get_xattr(&name) {
                let _ = dst.set_xattr(&name, &value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies `len` bytes from a file in `from` to a file in `to` with [`copy_data`].
    pub(super) fn copy_between(
        from: &Path,
        to: &Path,
        len: usize,
        io: &FileIo,
    ) -> Result<u64, ContextError> {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let (src, dst) = (from.join("src"), to.join("dst"));
        std::fs::write(&src, &data).unwrap();
        let out = File::create(&dst).unwrap();
        let n = copy_data(&File::open(&src).unwrap(), &out, &src, io)?;
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        Ok(n)
    }

    #[test]
    pub(super) fn copy_data_in_kernel_on_one_filesystem_and_across() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let io = FileIo::new(None);
        // Several COPY_BLOCK calls, then an empty file.
        let len = 2 * COPY_BLOCK as usize + 12_345;
        assert_eq!(
            copy_between(a.path(), b.path(), len, &io).unwrap(),
            len as u64
        );
        assert_eq!(copy_between(a.path(), b.path(), 0, &io).unwrap(), 0);
        // tmpfs to the temp dir's filesystem: copy_file_range says EXDEV, sendfile copies, and
        // later files go straight to sendfile.
        let shm = Path::new("/dev/shm");
        let same_fs =
            |p: &Path| std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap());
        if shm.is_dir() && same_fs(shm) != same_fs(a.path()) {
            let c = tempfile::tempdir_in(shm).unwrap();
            assert_eq!(
                copy_between(c.path(), a.path(), len, &io).unwrap(),
                len as u64
            );
            assert!(!io.try_range.load(Ordering::Relaxed));
            assert_eq!(copy_between(a.path(), b.path(), 777, &io).unwrap(), 777);
        }
    }

    #[test]
    pub(super) fn copy_data_stops_when_cancelled() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let flag = AtomicBool::new(true);
        let err = copy_between(a.path(), b.path(), 10, &FileIo::new(Some(&flag)));
        assert!(matches!(err, Err(ContextError::Cancelled(_))));
    }
}
