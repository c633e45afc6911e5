//! Atomic file writes, temp-file hygiene and `sha256/` directory listings for the store.

use crate::digest::Digest;
use crate::store::{io_err, StoreError};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Prefix of every temp file/dir this process creates in `<root>/tmp`, so that `Store::open`
/// can tell which ones belong to dead processes.
pub fn tmp_prefix() -> String {
    format!("{}-", std::process::id())
}

/// A new temp file in `tmp_dir` (same filesystem as the store, so renames are atomic).
pub(crate) fn temp_file(tmp_dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
    tempfile::Builder::new()
        .prefix(&tmp_prefix())
        .tempfile_in(tmp_dir)
        .map_err(io_err(tmp_dir))
}

/// A new temp directory in `tmp_dir`.
pub(crate) fn temp_dir(tmp_dir: &Path) -> Result<tempfile::TempDir, StoreError> {
    tempfile::Builder::new()
        .prefix(&tmp_prefix())
        .tempdir_in(tmp_dir)
        .map_err(io_err(tmp_dir))
}

/// fsync a directory so a rename into it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `target`: temp file in `tmp_dir`, fsync, rename, fsync the parent.
pub(crate) fn write_atomic(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = temp_file(tmp_dir)?;
    tmp.write_all(bytes).map_err(io_err(target))?;
    tmp.as_file().sync_all().map_err(io_err(target))?;
    tmp.persist(target).map_err(|e| io_err(target)(e.error))?;
    if let Some(parent) = target.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Renames a fully written temp directory to `target`. Returns false if `target` already exists
/// (another writer won; its content is equivalent by construction).
pub(crate) fn rename_dir_into_place(src: &Path, target: &Path) -> Result<bool, StoreError> {
    match fs::rename(src, target) {
        Ok(()) => {
            if let Some(parent) = target.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        // rename(2) onto a non-empty directory fails with ENOTEMPTY/EEXIST.
        Err(e)
            if target.is_dir()
                && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_err(target)(e)),
    }
}

/// Reads a small text file, `None` if it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, StoreError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes temp entries whose owning process (pid prefix) is gone.
pub(crate) fn clean_stale_tmp(tmp_dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(tmp_dir).map_err(io_err(tmp_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err(tmp_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if alive {
            continue;
        }
        let path = entry.path();
        let res = if entry.file_type().map_err(io_err(&path))?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(())
}

/// The JSON document at `path`, if the file exists; unparsable content is `Corrupt`.
pub(crate) fn read_json_opt<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, StoreError> {
    match read_opt(path)? {
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        None => Ok(None),
    }
}

/// Entries of a `sha256/` directory whose names are valid hex digests (others ignored).
pub(crate) fn list_digest_names(dir: &Path) -> Result<Vec<Digest>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(d) = entry
            .file_name()
            .to_str()
            .and_then(|n| Digest::from_hex(n).ok())
        {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}
