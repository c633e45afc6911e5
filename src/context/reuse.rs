//! Incremental COPY (issue 21): when a COPY misses the cache but the same instruction was copied
//! before, the files whose content digest, mode, owner, mtime and size are unchanged are
//! hardlinked from the previous (committed, so never written again) snapshot instead of copied.
//!
//! A *lineage* file (`<root>/cache/copy-lineage/<key>.json`, a [`MemoPath`]) records, for the last
//! snapshot the instruction made, what each regular file in it is: [`FileRecord`]. It is written
//! only by a copy that recorded every file it wrote (one directory source, nothing else), so a
//! record always describes the file at that path. Nothing ever writes through a linked inode: the
//! copy creates files `O_EXCL` and replaces by unlinking (`dest_root`), and a later RUN writes
//! through overlayfs, which copies a lower file up before changing it.

use super::dest_root::{DestRoot, DirHandle, Meta};
use super::memo::MemoPath;
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const LINEAGE_VERSION: u32 = 1;

/// What a copied regular file is: what the copy would write, minus the bytes (their digest).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub digest: Digest,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub size: u64,
}

impl FileRecord {
    fn of(digest: &Digest, src: &Metadata, m: &Meta) -> FileRecord {
        FileRecord {
            digest: digest.clone(),
            mode: m.mode.unwrap_or(src.mode() & 0o7777),
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime.unwrap_or((src.mtime(), src.mtime_nsec() as u32)),
            size: src.size(),
        }
    }
}

/// The lineage file: the snapshot a COPY made last and its regular files by in-root path.
#[derive(Serialize, Deserialize, Default)]
pub struct Lineage {
    version: u32,
    /// The snapshot's key (its layer record's cache id).
    pub snapshot: String,
    /// The layer record's chain id, to check the snapshot is still committed.
    pub chain_id: Option<Digest>,
    files: BTreeMap<String, FileRecord>,
}

impl Lineage {
    /// The lineage in `memo`, if any (a missing or other-version file is none: it is a cache).
    pub fn load(memo: &MemoPath) -> Option<Lineage> {
        Some(memo.load::<Lineage>())
            .filter(|l| l.version == LINEAGE_VERSION && !l.snapshot.is_empty())
    }
}

/// What one copy may reuse and what it records. Built by the caller (who knows which snapshot
/// came before and that it is committed); the copy fills it through [`super::CopyEnv::reuse`].
pub struct Reuse {
    prev: Option<(DestRoot, BTreeMap<String, FileRecord>)>,
    /// Content digests of the source files, by host path (from the cache-key hashing).
    digests: HashMap<PathBuf, Digest>,
    recorded: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    files: Vec<(String, FileRecord)>,
    /// Something was written that is not recorded (several sources, a non-tree source): the
    /// records of this copy would not describe its snapshot, so none are kept.
    incomplete: bool,
    linked: u64,
}

impl Reuse {
    /// `prev`: the previous snapshot's upper dir and its lineage; `digests`: the source digests
    /// ([`super::hash::resolved_digests`]).
    pub fn new(prev: Option<(&Path, &Lineage)>, digests: HashMap<PathBuf, Digest>) -> Reuse {
        let prev = prev.and_then(|(dir, l)| DestRoot::open(dir).ok().map(|r| (r, l.files.clone())));
        Reuse {
            prev,
            digests,
            recorded: Mutex::new(Recorded::default()),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called for a regular file the copy writes at in-root `path`: records it and says whether
    /// the previous snapshot holds the same file there (then the copy links it).
    pub(super) fn note_file(&self, path: &str, host: &Path, src: &Metadata, m: &Meta) -> bool {
        let Some(digest) = self.digests.get(host) else {
            self.note_unrecorded();
            return false;
        };
        let rec = FileRecord::of(digest, src, m);
        let same = self
            .prev
            .as_ref()
            .is_some_and(|(_, files)| files.get(path) == Some(&rec));
        self.recorded().files.push((path.to_string(), rec));
        same
    }

    /// Something was written that the records do not describe.
    pub(super) fn note_unrecorded(&self) {
        self.recorded().incomplete = true;
    }

    /// Links `path` of the previous snapshot as `name` in `dir`; false when it cannot (the
    /// caller then copies the file).
    pub(super) fn link(
        &self,
        path: &str,
        dir: &DirHandle,
        name: &str,
        cache: &mut PrevDirs,
    ) -> bool {
        let Some((root, _)) = &self.prev else {
            return false;
        };
        let (parent, file) = path.rsplit_once('/').unwrap_or(("", path));
        if cache.path.as_deref() != Some(parent) {
            cache.dir = root.open_dir(parent).ok();
            cache.path = Some(parent.to_string());
        }
        let Some(prev) = &cache.dir else {
            return false;
        };
        let ok = dir.replace_hardlink(name, prev, file, path).is_ok();
        if ok {
            self.recorded().linked += 1;
        }
        ok
    }

    /// Files linked from the previous snapshot.
    pub fn linked(&self) -> u64 {
        self.recorded().linked
    }

    /// The lineage to save for `snapshot` once it is committed; `None` when this copy's records
    /// are incomplete.
    pub fn lineage(&self, snapshot: &str, chain_id: &Digest) -> Option<Lineage> {
        let rec = self.recorded();
        if rec.incomplete {
            return None;
        }
        Some(Lineage {
            version: LINEAGE_VERSION,
            snapshot: snapshot.to_string(),
            chain_id: Some(chain_id.clone()),
            // Later writes of one path win, as they do on disk.
            files: rec.files.iter().cloned().collect(),
        })
    }
}

/// The previous snapshot's directory last opened by [`Reuse::link`] (files come grouped by
/// directory, so one open serves a whole directory).
#[derive(Default)]
pub(super) struct PrevDirs {
    path: Option<String>,
    dir: Option<DirHandle>,
}
