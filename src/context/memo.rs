//! On-disk memo files of per-file results (content digests, classic tarsums), keyed by stat data so
//! a no-op rebuild costs one stat per file. A memo is only a cache: a missing, unreadable or
//! other-version file reads as empty. Writes go through a `<pid>-` temp file in the store's
//! `<root>/tmp` and a rename, so a crash never leaves a torn memo and the next process cleans the
//! temp file of a killed one.

use super::error::ContextError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A memo file and the directory its temp files are made in (same filesystem, for the rename).
#[derive(Debug, Clone)]
pub struct MemoPath {
    pub file: PathBuf,
    pub tmp_dir: PathBuf,
}

impl MemoPath {
    /// `<root>/cache/<name>`, with temp files in `<root>/tmp`.
    pub fn in_root(root: &Path, name: &str) -> MemoPath {
        MemoPath {
            file: root.join("cache").join(name),
            tmp_dir: root.join("tmp"),
        }
    }

    /// A memo whose temp files go next to it (tests, tools without a store).
    pub fn beside(file: &Path) -> MemoPath {
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        MemoPath {
            file: file.to_path_buf(),
            tmp_dir: dir.to_path_buf(),
        }
    }

    /// The memo's content, or `T::default()` when it is missing, unreadable or not `T`.
    pub(crate) fn load<T: DeserializeOwned + Default>(&self) -> T {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice::<T>(&b).ok())
            .unwrap_or_default()
    }

    /// Replaces the memo atomically.
    pub(crate) fn save<T: Serialize>(&self, value: &T) -> Result<(), ContextError> {
        let fail = |reason: String| ContextError::HashCache {
            path: self.file.clone(),
            reason,
        };
        for dir in [Some(self.tmp_dir.as_path()), self.file.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(&crate::store::fsutil::tmp_prefix())
            .tempfile_in(&self.tmp_dir)
            .map_err(|e| fail(e.to_string()))?;
        let bytes = serde_json::to_vec(value).map_err(|e| fail(e.to_string()))?;
        tmp.write_all(&bytes).map_err(|e| fail(e.to_string()))?;
        // Synced before the rename: after a power loss the memo is the old or the new one, never torn.
        tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
        tmp.persist(&self.file)
            .map_err(|e| fail(e.error.to_string()))?;
        Ok(())
    }
}

/// The stat data a memo entry is valid for: any write, chmod, chown, xattr change or replacement
/// of the file changes one of these (ctime covers metadata changes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl StatKey {
    pub fn of(meta: &Metadata) -> StatKey {
        StatKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}
