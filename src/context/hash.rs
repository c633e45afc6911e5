//! Content hash of what a COPY/ADD would copy, for the build cache key.
//!
//! Covers names, types, modes, owners (only where they are copied: `--from` sources), link
//! targets, hardlink structure, device numbers and file bytes of exactly the entries `copy` would
//! write (after .dockerignore and `--exclude`), plus the flags that shape the result. mtimes are
//! never hashed, so `touch` changes nothing while any real edit does. Remote sources hash as the
//! digest of their content when the request has a remote cache (fetched or revalidated first), else
//! as their URL and checksum; git sources as URL and ref.
//!
//! File digests are memoised on disk keyed by (path, dev, inode, size, mtime, ctime), so a no-op
//! rebuild costs a stat per file; misses are hashed on two threads (the build machine's cores).

use super::copy::{dest_path, resolve, CopyRequest, Item, Resolution};
use super::error::ContextError;
use super::memo::{MemoPath, StatKey};
use super::source::inode_key;
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// 2: entries hold a `stat` object (`memo::StatKey`); older memos are dropped, they are only a cache.
const MEMO_VERSION: u32 = 2;
const WORKERS: usize = 2;

#[derive(Serialize, Deserialize, Default)]
struct MemoFile {
    version: u32,
    /// host path -> stat key and digest
    entries: BTreeMap<String, MemoEntry>,
}

/// A file's content digest and the stat data it is valid for (the key the classic tarsum memo
/// uses too).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
struct MemoEntry {
    stat: StatKey,
    digest: Digest,
}

/// The cache-key digest of `req`'s sources. `memo` is a cache file (created if missing).
pub fn hash_sources(req: &CopyRequest, memo: Option<&MemoPath>) -> Result<Digest, ContextError> {
    hash_resolved(req, &resolve(req)?, memo)
}

/// [`hash_sources`] of a resolution the copy will consume too ([`super::copy::copy_resolved`]).
pub fn hash_resolved(
    req: &CopyRequest,
    resolution: &Resolution,
    memo: Option<&MemoPath>,
) -> Result<Digest, ContextError> {
    let (items, keep_owners) = (&resolution.items, resolution.keep_owners);

    let files = resolved_files(items);
    // Kept on the resolution: an incremental COPY compares them with the last copy's
    // (`reuse`, [`resolved_digests`]).
    if resolution.file_digests.get().is_none() {
        let d = file_digests(&files, memo)?;
        let _ = resolution.file_digests.set(d);
    }
    let mut digests = resolution.file_digests.get().into_iter().flatten();

    let mut h = Sha256::new();
    let (dest, dir_syntax) = dest_path(&req.dest, &req.workdir);
    field(&mut h, b"rbuild-copy-v1");
    field(&mut h, if req.is_add { b"ADD" } else { b"COPY" });
    field(&mut h, dest.as_bytes());
    field(
        &mut h,
        &[dir_syntax as u8, req.parents as u8, req.keep_git_dir as u8],
    );
    field(&mut h, format!("{:?}", req.unpack).as_bytes());
    field(&mut h, req.chown.as_deref().unwrap_or("").as_bytes());
    field(&mut h, req.chmod.as_deref().unwrap_or("").as_bytes());
    field(&mut h, format!("{:?}", req.timestamp).as_bytes());
    field(&mut h, req.checksum.as_deref().unwrap_or("").as_bytes());
    field(&mut h, req.exclude.join("\n").as_bytes());
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut entry = |h: &mut Sha256, path: &str, host: &Path, meta: &Metadata| {
        let ft = meta.file_type();
        field(h, path.as_bytes());
        field(h, &(meta.mode() & 0o7777).to_le_bytes());
        if keep_owners {
            field(h, &meta.uid().to_le_bytes());
            field(h, &meta.gid().to_le_bytes());
        }
        if ft.is_dir() {
            field(h, b"d");
        } else if ft.is_symlink() {
            field(h, b"l");
            let target = std::fs::read_link(host).unwrap_or_default();
            field(h, target.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            let digest = digests.next();
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&inode_key(meta)) {
                    field(h, b"h");
                    field(h, first.as_bytes());
                    return;
                }
                links.insert(inode_key(meta), path.to_string());
            }
            field(h, b"f");
            if let Some(d) = digest {
                field(h, d.hex().as_bytes());
            }
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            field(h, b"c");
            field(h, &meta.rdev().to_le_bytes());
        } else {
            field(h, b"s");
        }
    };
    for item in items {
        match item {
            Item::Local(r) => {
                field(&mut h, b"L");
                entry(&mut h, &r.name, &r.host, &r.meta);
                for e in &r.entries {
                    entry(&mut h, &e.rel.to_string_lossy(), &e.host, &e.meta);
                }
            }
            Item::Remote(url) => match req.remote {
                // BuildKit keys an HTTP source by the digest of its content, and what the copy
                // writes from it (file name, Last-Modified mtime).
                Some(cache) => {
                    let f = cache.fetch(url, req.checksum.as_deref())?;
                    field(&mut h, b"RC");
                    field(&mut h, f.digest.hex().as_bytes());
                    field(&mut h, f.name.as_bytes());
                    field(&mut h, format!("{:?}", f.mtime).as_bytes());
                }
                None => {
                    field(&mut h, b"R");
                    field(&mut h, url.as_bytes());
                }
            },
            Item::Git(g) => {
                field(&mut h, b"G");
                field(&mut h, format!("{g:?}").as_bytes());
            }
            Item::Inline(name, content) => {
                field(&mut h, b"I");
                field(&mut h, name.as_bytes());
                field(&mut h, Digest::of_bytes(content).hex().as_bytes());
            }
        }
    }
    Ok(Digest::from_sha256(h))
}

/// Regular files whose bytes are needed, in the order the hash meets them: their digests come
/// back in that order (no path-keyed map: hashing 20,000 paths costs more than the lookups it
/// would serve).
fn resolved_files(items: &[Item]) -> Vec<(&Path, &Metadata)> {
    let mut files: Vec<(&Path, &Metadata)> = Vec::new();
    for item in items {
        if let Item::Local(r) = item {
            if r.meta.is_file() {
                files.push((&r.host, &r.meta));
            }
            for e in &r.entries {
                if e.meta.is_file() {
                    files.push((&e.host, &e.meta));
                }
            }
        }
    }
    files
}

/// The content digest of every regular source file of a resolution [`hash_resolved`] has
/// hashed, by host path (empty before).
pub fn resolved_digests(resolution: &Resolution) -> HashMap<PathBuf, Digest> {
    let files = resolved_files(&resolution.items);
    match resolution.file_digests.get() {
        Some(d) => files
            .into_iter()
            .zip(d)
            .map(|((p, _), d)| (p.to_path_buf(), d.clone()))
            .collect(),
        None => HashMap::new(),
    }
}

/// Length-prefixed, so no two field sequences hash alike.
fn field(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s);
}

/// Digests of regular files, in `files`' order: from the memo when the stat key matches, else by
/// reading them.
fn file_digests(
    files: &[(&Path, &Metadata)],
    memo: Option<&MemoPath>,
) -> Result<Vec<Digest>, ContextError> {
    let mut memo_file = match memo {
        Some(p) => load_memo(p),
        None => MemoFile::default(),
    };
    let mut out: Vec<Option<Digest>> = Vec::with_capacity(files.len());
    let mut misses = Vec::new();
    for (i, (path, meta)) in files.iter().enumerate() {
        let key = path.to_string_lossy();
        match memo_file.entries.get(key.as_ref()) {
            Some(e) if e.stat == StatKey::of(meta) => out.push(Some(e.digest.clone())),
            _ => {
                out.push(None);
                misses.push((i, *path, *meta));
            }
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Digest)>> = Mutex::new(Vec::new());
    let first_err: Mutex<Option<ContextError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..WORKERS.min(misses.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((at, path, meta)) = misses.get(i) else {
                    break;
                };
                match digest_file(path, meta) {
                    Ok(d) => {
                        if let Ok(mut r) = results.lock() {
                            r.push((*at, d));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut slot) = first_err.lock() {
                            slot.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().ok().flatten() {
        return Err(e);
    }
    for (at, d) in results.into_inner().unwrap_or_default() {
        let (path, meta) = files[at];
        memo_file.entries.insert(
            path.to_string_lossy().into_owned(),
            MemoEntry {
                stat: StatKey::of(meta),
                digest: d.clone(),
            },
        );
        out[at] = Some(d);
    }
    // A no-op rebuild (all hits) does not rewrite the memo.
    if let (Some(p), false) = (memo, misses.is_empty()) {
        p.save(&memo_file)?;
    }
    // Every slot holds a hit or a worker's digest; a hole would shift every later digest onto
    // the wrong file, so it is an error, never skipped.
    out.into_iter()
        .zip(files)
        .map(|(d, (path, _))| {
            d.ok_or_else(|| ContextError::io(path, std::io::Error::other("file was not hashed")))
        })
        .collect()
}

/// The sha256 of a file's bytes; an error if the file is not what the resolution saw any more
/// (its bytes would not be the ones the stat-keyed memo and the copy expect).
fn digest_file(path: &Path, resolved: &Metadata) -> Result<Digest, ContextError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ContextError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| ContextError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let after = f.metadata().map_err(|e| ContextError::io(path, e))?;
    if !super::copy_io::same_file_state(resolved, &after) {
        return Err(ContextError::SourceChanged(path.to_path_buf()));
    }
    Ok(Digest::from_sha256(h))
}

/// A missing, unreadable or other-version memo is an empty memo: it is only a cache.
fn load_memo(path: &MemoPath) -> MemoFile {
    Some(path.load::<MemoFile>())
        .filter(|m| m.version == MEMO_VERSION)
        .unwrap_or(MemoFile {
            version: MEMO_VERSION,
            entries: BTreeMap::new(),
        })
}
