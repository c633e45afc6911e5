//! A sealed in-memory copy of the helper executable (SECURITY D3, CVE-2019-5736).
//!
//! The helper and the container's PID 1 (until its `execve`) run the rbuild binary. If a
//! container process could reach that as `/proc/<pid>/exe` it could try to overwrite the
//! host binary. Executing a sealed memfd copy instead means `/proc/<pid>/exe` is an
//! anonymous, write-sealed file: there is nothing on the host to write to. The copy is made
//! once per process and per helper path.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{MemfdFlags, SealFlags};

use super::error::ExecError;

static SEALED: OnceLock<Mutex<HashMap<PathBuf, OwnedFd>>> = OnceLock::new();

/// Returns a `/proc/self/fd/N` path to execute instead of `exe`.
pub fn sealed_path(exe: &Path) -> Result<PathBuf, ExecError> {
    let map = SEALED.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map
        .lock()
        .map_err(|_| ExecError::Helper("sealed executable cache poisoned".into()))?;
    if let Some(fd) = map.get(exe) {
        return Ok(fd_path(fd));
    }
    let fd = seal_copy(exe)?;
    let path = fd_path(&fd);
    map.insert(exe.to_path_buf(), fd);
    Ok(path)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn seal_copy(exe: &Path) -> Result<OwnedFd, ExecError> {
    let what = |op: &str| format!("{op} sealed copy of {}", exe.display());
    let mut src = File::open(exe).map_err(|e| ExecError::io(what("open source for"), e))?;
    let memfd = rustix::fs::memfd_create(
        "rbuild-helper",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| ExecError::io(what("create"), e))?;
    let mut dst = File::from(memfd);
    std::io::copy(&mut src, &mut dst).map_err(|e| ExecError::io(what("write"), e))?;
    let memfd = OwnedFd::from(dst);
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )
    .map_err(|e| ExecError::io(what("seal"), e))?;
    Ok(memfd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn d3_sealed_copy_is_identical_and_unwritable() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("exe");
        std::fs::write(&exe, b"\x7fELF pretend binary").unwrap();
        let p = sealed_path(&exe).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"\x7fELF pretend binary");
        // Reopening the memfd for writing succeeds but every write is refused by the seal.
        let mut w = std::fs::OpenOptions::new().write(true).open(&p);
        if let Ok(w) = w.as_mut() {
            assert!(w.write_all(b"evil").is_err());
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"\x7fELF pretend binary");
        // Cached: the same fd is reused.
        assert_eq!(sealed_path(&exe).unwrap(), p);
        let target = std::fs::read_link(&p).unwrap();
        assert!(
            target.to_string_lossy().starts_with("/memfd:rbuild-helper"),
            "{target:?}"
        );
    }
}
