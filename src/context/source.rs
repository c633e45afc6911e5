//! Resolving COPY/ADD source arguments to the entries that will be copied.
//!
//! BuildKit semantics (`dockerfile2llb` + `fsutil/copy`): a source is cleaned inside the source
//! root (`../x` is `/x`: nothing outside is reachable), symlinks along it — the last one included —
//! are followed *inside* the root (`FollowSymlinks: true`), wildcards use `filepath.Match` on the
//! first wildcard component and below (a matching directory is not descended), a wildcard matching
//! nothing copies nothing (`AllowEmptyWildcard`). Paths excluded by .dockerignore do not exist.
//! Inside a copied directory nothing is followed: symlinks are copied as symlinks.

use super::build_context::Context;
use super::error::ContextError;
use super::filepath_match;
use super::ignore::PatternMatcher;
use super::path_clean::rel_in_root;
use pathrs::error::ErrorKind;
use pathrs::Root;
use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where COPY/ADD local sources are read from.
#[derive(Clone, Copy)]
pub enum SourceRoot<'a> {
    /// The build context: .dockerignore applies, owners become 0:0 unless `--chown`.
    Context(&'a Context),
    /// `--from=<stage|image>`: another rootfs (read-only mount); owners are kept.
    Rootfs(&'a Path),
}

/// A source root opened for resolution.
pub struct SourceFs<'a> {
    root: PathBuf,
    pr: Root,
    ignore: Option<&'a PatternMatcher>,
    pub keep_owners: bool,
}

/// One file or directory below a copied directory.
#[derive(Debug)]
pub struct Entry {
    /// Relative to the copied directory.
    pub rel: PathBuf,
    pub host: PathBuf,
    pub meta: Metadata,
}

/// One source (a literal path or one wildcard match), resolved.
#[derive(Debug)]
pub struct Resolved {
    /// Name it gets inside a destination directory: the last component of the path as written
    /// (a followed symlink keeps its own name).
    pub name: String,
    /// Path of the resolved inode relative to the source root (`""` for the root itself).
    pub rel: String,
    pub host: PathBuf,
    /// `stat` of the resolved inode (never a symlink).
    pub meta: Metadata,
    /// For a directory: what is below it, pre-order, byte-sorted, after ignore/exclude.
    pub entries: Vec<Entry>,
}

impl Resolved {
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }
}

impl<'a> SourceFs<'a> {
    pub fn open(source: SourceRoot<'a>) -> Result<SourceFs<'a>, ContextError> {
        let (dir, ignore, keep_owners) = match source {
            SourceRoot::Context(c) => (c.root(), Some(c.matcher()), false),
            SourceRoot::Rootfs(p) => (p, None, true),
        };
        let root = std::fs::canonicalize(dir).map_err(|e| ContextError::io(dir, e))?;
        let pr =
            Root::open(&root).map_err(|e| ContextError::in_root(root.display().to_string(), e))?;
        Ok(SourceFs {
            root,
            pr,
            ignore: ignore.filter(|m| !m.is_empty()),
            keep_owners,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.is_some_and(|m| m.matches(rel).unwrap_or(false))
    }

    /// Resolves one source argument. `exclude` holds `--exclude` patterns.
    pub fn resolve(
        &self,
        arg: &str,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Vec<Resolved>, ContextError> {
        let path = rel_in_root(arg);
        let (literal, pattern) = split_wildcards(&path);
        if pattern.is_empty() {
            return Ok(vec![self.resolve_one(arg, &path, exclude)?]);
        }
        filepath_match::validate(&pattern)
            .map_err(|_| ContextError::SourcePattern(arg.to_string()))?;
        let base = match self.follow(&literal)? {
            Some((rel, meta)) if meta.is_dir() => rel,
            _ => return Ok(Vec::new()),
        };
        let base_host = self.host(&base);
        let mut matches = Vec::new();
        let mut walk = walkdir::WalkDir::new(&base_host)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            let item = item.map_err(|e| walk_error(&base_host, e))?;
            let rel = rel_string(item.path().strip_prefix(&base_host).unwrap_or(item.path()));
            let is_dir = item.file_type().is_dir();
            let ctx_rel = join(&base, &rel);
            if self.ignored(&ctx_rel) && !(is_dir && self.ignore.is_some_and(|m| m.exclusions())) {
                if is_dir {
                    walk.skip_current_dir();
                }
                continue;
            }
            if filepath_match::matches(&pattern, &rel).unwrap_or(false) {
                if exclude.is_none_or(|m| !m.matches(&rel).unwrap_or(false)) {
                    matches.push(join(&base, &rel));
                }
                if is_dir {
                    walk.skip_current_dir();
                }
            }
        }
        let mut out = Vec::new();
        for m in matches {
            match self.resolve_one(arg, &m, exclude) {
                Ok(r) => out.push(r),
                // An ignored directory walked for `!` exceptions may turn out empty: invisible.
                Err(ContextError::NotFound(_)) if self.ignored(&m) => {}
                // Anything else (e.g. a matched symlink leading out of the root) is an error.
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Resolves a path without wildcards (following symlinks in-root); must exist and be visible.
    fn resolve_one(
        &self,
        arg: &str,
        path: &str,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Resolved, ContextError> {
        let not_found = || ContextError::NotFound(arg.to_string());
        let (rel, meta) = self.follow(path)?.ok_or_else(not_found)?;
        let host = self.host(&rel);
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        let mut entries = Vec::new();
        if meta.is_dir() {
            entries = self.collect(&rel, &host, exclude)?;
            if self.ignored(&rel) && entries.is_empty() {
                return Err(not_found());
            }
        } else if self.ignored(&rel) {
            return Err(not_found());
        }
        Ok(Resolved {
            name,
            rel,
            host,
            meta,
            entries,
        })
    }

    /// Follows `path` inside the root. Returns the resolved relative path and its metadata.
    fn follow(&self, path: &str) -> Result<Option<(String, Metadata)>, ContextError> {
        let handle = match self.pr.resolve(format!("/{path}")) {
            Ok(h) => h,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::OsError(Some(libc::ENOENT | libc::ENOTDIR))
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(ContextError::in_root(path, e)),
        };
        // The kernel's name for the resolved inode; containment was enforced by the resolver.
        let fd_path = format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd());
        let real = std::fs::read_link(&fd_path).map_err(|e| ContextError::io(&fd_path, e))?;
        let rel = match real.strip_prefix(&self.root) {
            Ok(r) => rel_string(r),
            Err(_) => {
                return Err(ContextError::in_root(
                    path,
                    "resolved outside the source root",
                ))
            }
        };
        let meta = std::fs::symlink_metadata(self.host(&rel))
            .map_err(|e| ContextError::io(self.host(&rel), e))?;
        Ok(Some((rel, meta)))
    }

    fn host(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Everything below the directory `rel`, minus ignored and excluded paths. An excluded
    /// directory is still walked when exception patterns could re-include something inside it.
    fn collect(
        &self,
        rel: &str,
        host: &Path,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Vec<Entry>, ContextError> {
        let listings = self.read_tree(rel, host, exclude)?;
        let mut found: Vec<(Entry, bool)> = Vec::new();
        // Pre-order, byte-sorted (what walkdir's sort_by_file_name gave), from the listings.
        let mut stack: Vec<(PathBuf, std::vec::IntoIter<Child>)> = Vec::new();
        let mut listings = listings;
        let top = listings.remove(Path::new("")).unwrap_or_default();
        stack.push((PathBuf::new(), top.into_iter()));
        while let Some((dir, children)) = stack.last_mut() {
            let Some(child) = children.next() else {
                stack.pop();
                continue;
            };
            let sub = dir.join(&child.name);
            let descend = child.descend;
            found.push((
                Entry {
                    host: host.join(&sub),
                    rel: sub.clone(),
                    meta: child.meta,
                },
                child.keep,
            ));
            if descend {
                let below = listings.remove(&sub).unwrap_or_default();
                stack.push((sub, below.into_iter()));
            }
        }
        // Keep hidden directories that contain something kept (pre-order: walk backwards).
        let mut needed: HashSet<PathBuf> = HashSet::new();
        for (entry, keep) in found.iter_mut().rev() {
            if !*keep && entry.meta.is_dir() && needed.contains(&entry.rel) {
                *keep = true;
            }
            if *keep {
                if let Some(parent) = entry.rel.parent() {
                    needed.insert(parent.to_path_buf());
                }
            }
        }
        Ok(found
            .into_iter()
            .filter(|(_, k)| *k)
            .map(|(e, _)| e)
            .collect())
    }
}

/// One directory entry as [`SourceFs::read_tree`] lists it.
struct Child {
    name: std::ffi::OsString,
    meta: Metadata,
    /// Copied (false: a hidden directory walked only for `!` exceptions).
    keep: bool,
    /// A directory whose listing was read.
    descend: bool,
}

/// Directories read at once while listing a tree (the build machines have 2 cores; a third
/// reader mostly waits on the same inode locks).
const TREE_READERS: usize = 2;

impl SourceFs<'_> {
    /// The sorted listing of every directory below `host` that the copy will walk, keyed by its
    /// path relative to `host`, read by [`TREE_READERS`] threads. Each entry is stat'ed relative
    /// to its directory's fd (`DirEntry::metadata`), not by a full path walked from `/`: with
    /// 20,000 files the path walks cost more than the stats.
    fn read_tree(
        &self,
        rel: &str,
        host: &Path,
        exclude: Option<&PatternMatcher>,
    ) -> Result<HashMap<PathBuf, Vec<Child>>, ContextError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let queue: Mutex<Vec<PathBuf>> = Mutex::new(vec![PathBuf::new()]);
        // Directories queued or being read: the readers stop when it reaches 0.
        let pending = AtomicUsize::new(1);
        let listings: Mutex<HashMap<PathBuf, Vec<Child>>> = Mutex::new(HashMap::new());
        let failed: Mutex<Option<ContextError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..TREE_READERS {
                s.spawn(|| loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some(dir) = next else {
                        if pending.load(Ordering::Acquire) == 0 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(50));
                        continue;
                    };
                    let read = self.read_dir_sorted(rel, host, &dir, exclude);
                    match read {
                        Ok(children) => {
                            let subdirs: Vec<PathBuf> = children
                                .iter()
                                .filter(|c| c.descend)
                                .map(|c| dir.join(&c.name))
                                .collect();
                            pending.fetch_add(subdirs.len(), Ordering::AcqRel);
                            if let Ok(mut q) = queue.lock() {
                                q.extend(subdirs);
                            }
                            if let Ok(mut l) = listings.lock() {
                                l.insert(dir, children);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            // Stop everyone: drop the queue and what is pending.
                            if let Ok(mut q) = queue.lock() {
                                let n = q.len();
                                q.clear();
                                pending.fetch_sub(n, Ordering::AcqRel);
                            }
                        }
                    }
                    pending.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(listings.into_inner().unwrap_or_default())
    }

    /// One directory (`sub`, relative to `host`): its entries sorted by name, minus ignored and
    /// excluded ones (hidden directories that `!` exceptions could reach are kept, unkept).
    fn read_dir_sorted(
        &self,
        rel: &str,
        host: &Path,
        sub: &Path,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Vec<Child>, ContextError> {
        let dir = host.join(sub);
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| ContextError::io(&dir, e))? {
            let e = e.map_err(|e| ContextError::io(&dir, e))?;
            let is_dir = e
                .file_type()
                .map_err(|err| ContextError::io(e.path(), err))?
                .is_dir();
            entries.push((e.file_name(), e, is_dir));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(entries.len());
        for (name, e, is_dir) in entries {
            let sub_str = rel_string(&sub.join(&name));
            let ignored = self.ignored(&join(rel, &sub_str));
            let excluded = exclude.is_some_and(|m| m.matches(&sub_str).unwrap_or(false));
            let keep = !(ignored || excluded);
            if !keep {
                let may_reinclude = (!ignored || self.ignore.is_some_and(|m| m.exclusions()))
                    && (!excluded || exclude.is_some_and(|m| m.exclusions()));
                if !(is_dir && may_reinclude) {
                    continue;
                }
            }
            let meta = e
                .metadata()
                .map_err(|err| ContextError::io(e.path(), err))?;
            out.push(Child {
                name,
                descend: meta.is_dir(),
                meta,
                keep,
            });
        }
        Ok(out)
    }
}

/// Identity of a source inode, for hardlink detection and hash memoisation.
pub fn inode_key(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn walk_error(base: &Path, e: walkdir::Error) -> ContextError {
    let path = e.path().unwrap_or(base).to_path_buf();
    let io = e
        .into_io_error()
        .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
    ContextError::io(path, io)
}

fn rel_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// fsutil `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
pub fn contains_wildcards(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// fsutil `splitWildcards`: the components before the first one with a wildcard, and the rest.
pub fn split_wildcards(path: &str) -> (String, String) {
    let mut literal = Vec::new();
    let mut pattern = Vec::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if pattern.is_empty() && !contains_wildcards(comp) {
            literal.push(comp);
        } else {
            pattern.push(comp);
        }
    }
    (literal.join("/"), pattern.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_wildcards_like_fsutil() {
        assert_eq!(split_wildcards("a/b/c"), ("a/b/c".into(), "".into()));
        assert_eq!(split_wildcards("a/*.txt"), ("a".into(), "*.txt".into()));
        assert_eq!(split_wildcards("a/b*/c"), ("a".into(), "b*/c".into()));
        assert_eq!(split_wildcards("x\\*y"), ("x\\*y".into(), "".into()));
        assert_eq!(split_wildcards("[ab]"), ("".into(), "[ab]".into()));
    }
}
