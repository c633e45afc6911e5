//! The classic builder's content ids for ADD/COPY history (`--history-format classic`):
//! `file:<hex>`, `dir:<hex>` and `multi:<hex>`, computed as Docker does (moby
//! `builder/remotecontext/{filehash,lazycontext}.go`, `builder/dockerfile/copy.go`,
//! `pkg/tarsum` v1 header selection, go-archive `FileInfoHeader`):
//!
//! * a file: `sha256(tarsum-v1 header ++ bytes)`, the header being the concatenation of
//!   `name<path>mode<perm+suid/sgid/sticky, decimal>uid<n>gid<n>size<n>typeflag<c>linkname<t>uname
//!   gname devmajor<n>devminor<n>` (no mtime; empty user/group names as `FileInfoHeaderNoLookups`
//!   leaves them) then each `security.capability` xattr as `key value`. The path is relative to the
//!   context (or image) root, directories end in `/`. Context files count as owned by 0:0 (the
//!   docker CLI sends the context with `ChownOpts{0,0}`); `--from` sources keep their owners.
//! * a directory: `sha256` of the sorted per-path sums (of the directory itself, unless it is the
//!   context root, and of everything below it) joined by `,`.
//! * several sources: `multi:` + `sha256` of the sources' ids joined by `,`.
//!
//! Docker hashes what its daemon sees, so ids match Docker's for the same files, modes and names
//! (Docker ≥ 25 / go-archive; older engines also hashed file-type bits and user names). Sources the
//! classic builder does not know (heredocs, git) get ids of the same shape over rbuild's own input.

use super::copy::{resolve, CopyRequest, Item, Resolution};
use super::error::ContextError;
use super::memo::{MemoPath, StatKey};
use crate::digest::Digest;
use crate::image::history::{
    source_hash_dir, source_hash_file, source_hash_multi, tarsum_file, TarsumHeader,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Version of the tarsum memo's format; another version reads as an empty memo.
const MEMO_VERSION: u32 = 1;

/// Per-path tarsums by host path, valid while the stat data, the name and the owner rule match.
#[derive(Serialize, Deserialize, Default)]
struct TarsumMemo {
    version: u32,
    entries: BTreeMap<String, TarsumEntry>,
}

#[derive(Serialize, Deserialize, Clone)]
struct TarsumEntry {
    /// The name the sum was made for (it is part of the tarsum header).
    name: String,
    /// Whether owners were hashed as they are (`--from`) or as 0:0 (context).
    owners: bool,
    stat: StatKey,
    sum: String,
}

/// The classic builder's id of what `req` copies: `file:<hex>`, `dir:<hex>` or `multi:<hex>`.
/// With `memo`, per-path sums are kept on disk keyed by stat data (as the content hashes of
/// [`super::hash_sources`]), so a rebuild only re-reads files that changed.
pub fn classic_source_id(
    req: &CopyRequest,
    memo: Option<&MemoPath>,
) -> Result<String, ContextError> {
    classic_source_id_resolved(req, &resolve(req)?, memo)
}

/// [`classic_source_id`] of a resolution shared with the cache key and the copy.
pub fn classic_source_id_resolved(
    req: &CopyRequest,
    resolution: &Resolution,
    memo: Option<&MemoPath>,
) -> Result<String, ContextError> {
    let (items, keep_owners) = (&resolution.items, resolution.keep_owners);
    let mut memo_data = memo
        .map(|m| m.load::<TarsumMemo>())
        .filter(|m| m.version == MEMO_VERSION)
        .unwrap_or(TarsumMemo {
            version: MEMO_VERSION,
            entries: BTreeMap::new(),
        });
    let mut dirty = false;
    let mut path_sum = |name: &str,
                        host: &Path,
                        meta: &Metadata,
                        keep_owners: bool|
     -> Result<String, ContextError> {
        let key = host.to_string_lossy();
        let stat = StatKey::of(meta);
        if let Some(e) = memo_data.entries.get(key.as_ref()) {
            if e.name == name && e.owners == keep_owners && e.stat == stat {
                return Ok(e.sum.clone());
            }
        }
        let sum = path_sum(name, host, meta, keep_owners)?;
        let entry = TarsumEntry {
            name: name.to_string(),
            owners: keep_owners,
            stat,
            sum: sum.clone(),
        };
        memo_data.entries.insert(key.into_owned(), entry);
        dirty = true;
        Ok(sum)
    };
    let mut ids = Vec::new();
    for item in items {
        ids.push(match item {
            Item::Local(r) if r.is_dir() => {
                let mut sums = Vec::new();
                if !r.rel.is_empty() {
                    sums.push(path_sum(&r.rel, &r.host, &r.meta, keep_owners)?);
                }
                for e in &r.entries {
                    let rel = e.rel.to_string_lossy();
                    let name = if r.rel.is_empty() {
                        rel.into_owned()
                    } else {
                        format!("{}/{rel}", r.rel)
                    };
                    sums.push(path_sum(&name, &e.host, &e.meta, keep_owners)?);
                }
                source_hash_dir(&sums)
            }
            Item::Local(r) => source_hash_file(&path_sum(&r.rel, &r.host, &r.meta, keep_owners)?),
            Item::Remote(url) => match req.remote {
                // Docker hashes the downloaded temp file under its URL-derived name, mode 0600.
                Some(cache) => {
                    let f = cache.fetch(url, req.checksum.as_deref())?;
                    let file =
                        std::fs::File::open(&f.path).map_err(|e| ContextError::io(&f.path, e))?;
                    let sum = tarsum_file(
                        &TarsumHeader {
                            name: f.name.clone(),
                            mode: 0o600,
                            size: f.size,
                            typeflag: b'0',
                            ..Default::default()
                        },
                        file,
                    )
                    .map_err(|e| ContextError::io(&f.path, e))?;
                    source_hash_file(&sum)
                }
                None => format!("file:{}", hex_sha256(url.as_bytes())),
            },
            Item::Inline(name, content) => source_hash_file(&plain_file_sum(
                name,
                0o644,
                content.as_slice(),
                content.len() as u64,
            )),
            Item::Git(g) => format!("dir:{}", hex_sha256(format!("{g:?}").as_bytes())),
        });
    }
    // A no-op rebuild (all hits) does not rewrite the memo.
    if let (Some(m), true) = (memo, dirty) {
        m.save(&memo_data)?;
    }
    Ok(source_hash_multi(&ids))
}

fn hex_sha256(b: &[u8]) -> String {
    Digest::of_bytes(b).hex().to_string()
}

/// The per-path tarsum (hex) of one inode at `name` (relative to its root).
fn path_sum(
    name: &str,
    host: &Path,
    meta: &Metadata,
    keep_owners: bool,
) -> Result<String, ContextError> {
    let ft = meta.file_type();
    let (uid, gid) = if keep_owners {
        (meta.uid(), meta.gid())
    } else {
        (0, 0)
    };
    let mut h = TarsumHeader {
        name: name.to_string(),
        mode: (meta.mode() & 0o7777) as i64,
        uid: uid as u64,
        gid: gid as u64,
        ..Default::default()
    };
    if ft.is_file() {
        h.typeflag = b'0';
        h.size = meta.len();
    } else if ft.is_dir() {
        h.typeflag = b'5';
        if !h.name.ends_with('/') {
            h.name.push('/');
        }
    } else if ft.is_symlink() {
        h.typeflag = b'2';
        h.linkname = std::fs::read_link(host)
            .map_err(|e| ContextError::io(host, e))?
            .to_string_lossy()
            .into_owned();
    } else if ft.is_char_device() || ft.is_block_device() {
        h.typeflag = if ft.is_char_device() { b'3' } else { b'4' };
        h.devmajor = libc::major(meta.rdev()) as i64;
        h.devminor = libc::minor(meta.rdev()) as i64;
    } else {
        h.typeflag = b'6';
    }
    if let Some(cap) = security_capability(host) {
        h.xattrs.insert("security.capability".to_string(), cap);
    }
    let sum = if ft.is_file() && h.size > 0 {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
            .map_err(|e| ContextError::io(host, e))?;
        tarsum_file(&h, f)
    } else {
        tarsum_file(&h, std::io::empty())
    };
    sum.map_err(|e| ContextError::io(host, e))
}

/// `security.capability`, converted from v3 to v2 as go-archive does when it reads it.
fn security_capability(path: &Path) -> Option<Vec<u8>> {
    let mut cap = xattr::get(path, "security.capability").ok().flatten()?;
    if cap.len() > 3 && cap[3] == 3 {
        cap[3] = 2;
        cap.truncate(20);
    }
    Some(cap)
}

/// A file from bytes or a download, owned 0:0 (inline heredocs, URL sources).
fn plain_file_sum(name: &str, mode: i64, content: impl std::io::Read, size: u64) -> String {
    let h = TarsumHeader {
        name: name.to_string(),
        mode,
        size,
        typeflag: b'0',
        ..Default::default()
    };
    tarsum_file(&h, content).unwrap_or_default()
}
