//! COPY/ADD into a destination rootfs, following BuildKit point by point:
//!
//! * destination: relative to WORKDIR; a trailing `/` (or `.`) means a directory; missing parents
//!   are created 0755 owned by the `--chown` user (BuildKit `MkdirAll(..., chown)`), else 0:0.
//! * a directory source copies its *contents*; the destination directory is created 0755 if
//!   missing, left as is if present; nested directories take the source's metadata.
//! * a file goes to `dest/<name>` if `dest` ends with `/` or is an existing directory, else to
//!   `dest` itself.
//! * owners: 0:0 for context/remote/inline/git sources, kept for `--from`, `--chown` overrides;
//!   modes kept unless `--chmod`; mtimes kept unless `--timestamp`.
//! * symlinks inside copied trees are copied as symlinks; hardlinked files stay hardlinked within
//!   one instruction; empty directories are kept.
//!
//! Deviation: more than one source into a destination that neither ends with `/` nor exists as a
//! directory is an error (classic builder rule); BuildKit silently overwrites one file with the next.

use super::chmod::Chmod;
pub use super::copy_env::{CopyEnv, CopyStats, Extractor};
use super::copy_io::FileIo;
use super::copy_writer::Writer;
use super::dest_root::DestRoot;
use super::error::ContextError;
use super::git::{self, GitRef};
use super::ignore::PatternMatcher;
use super::path_clean::{clean_in_root, rel_in_root};
use super::remote::{self, is_http_source};
pub use super::source::SourceRoot;
use super::source::{contains_wildcards, Entry, Resolved, SourceFs};
use std::collections::HashMap;
use std::path::Path;

/// One COPY or ADD instruction, with build args already expanded.
pub struct CopyRequest<'a> {
    /// Source arguments; may include URLs and git refs for ADD.
    pub sources: Vec<String>,
    /// Heredoc files: (file name, content).
    pub inline: Vec<(String, Vec<u8>)>,
    pub dest: String,
    pub workdir: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// Forces every copied inode's mtime (SOURCE_DATE_EPOCH).
    pub timestamp: Option<i64>,
    pub is_add: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
    /// `--link`: carried for the integrator (which builds the layer independently).
    pub link: bool,
    pub source: SourceRoot<'a>,
    /// Where URL sources are kept and revalidated; `None` downloads them afresh, keyed by URL.
    pub remote: Option<&'a remote::RemoteCache<'a>>,
}

impl<'a> CopyRequest<'a> {
    /// A request with defaults: no flags, WORKDIR `/`.
    pub fn new(source: SourceRoot<'a>, sources: Vec<String>, dest: &str) -> CopyRequest<'a> {
        CopyRequest {
            sources,
            inline: Vec::new(),
            dest: dest.to_string(),
            workdir: "/".to_string(),
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            parents: false,
            timestamp: None,
            is_add: false,
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            link: false,
            source,
            remote: None,
        }
    }

    fn cmd(&self) -> &'static str {
        if self.is_add {
            "ADD"
        } else {
            "COPY"
        }
    }
}

/// A source after resolution, ready to be written.
pub(crate) enum Item {
    Local(Resolved),
    Remote(String),
    Git(GitRef),
    Inline(String, Vec<u8>),
}

/// The destination as BuildKit normalises it: absolute, clean, and whether it names a directory.
pub(crate) fn dest_path(dest: &str, workdir: &str) -> (String, bool) {
    let wd = if workdir.is_empty() { "/" } else { workdir };
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{wd}/{dest}")
    };
    let dir_syntax =
        dest.is_empty() || dest == "." || joined.ends_with('/') || joined.ends_with("/.");
    let clean = clean_in_root(&joined);
    let is_root = clean == "/";
    (clean, dir_syntax || is_root)
}

/// Checks flag combinations BuildKit rejects before touching anything.
pub(crate) fn validate(req: &CopyRequest) -> Result<(), ContextError> {
    let usage = |m: &str| Err(ContextError::Usage(m.to_string()));
    if req.sources.is_empty() && req.inline.is_empty() {
        return usage("no source files were specified");
    }
    if let Some(sum) = &req.checksum {
        if !req.is_add {
            return usage("checksum can't be specified for COPY");
        }
        if req.sources.len() != 1 {
            return usage("checksum can't be specified for multiple sources");
        }
        let src = &req.sources[0];
        if !is_http_source(src) && git::parse_git_ref(src).is_none() {
            return usage("checksum requires HTTP(S) or Git sources");
        }
        if is_http_source(src) {
            remote::parse_checksum(sum)?;
        }
    }
    for src in &req.sources {
        if !req.is_add && git::parse_git_ref(src).is_some() {
            return usage("source can't be a git ref for COPY");
        }
        if !req.is_add && is_http_source(src) {
            return usage("source can't be a URL for COPY");
        }
    }
    Ok(())
}

/// A COPY/ADD's sources resolved once, after `--exclude` and .dockerignore, with the `stat` of
/// every entry as it was then. The cache key (`hash`), the classic history id (`tarsum`) and the
/// copy all consume this one resolution; the copy re-checks each file against the stat recorded
/// here once its bytes are written (`copy_io`), so a file edited after it was hashed is an error,
/// never content stored under the old content's key.
pub struct Resolution {
    pub(crate) items: Vec<Item>,
    /// Whether owners are kept (a `--from` rootfs) rather than reset.
    pub(crate) keep_owners: bool,
    /// The regular files' content digests, in `hash::resolved_files` order, once hashed.
    pub(crate) file_digests: std::sync::OnceLock<Vec<crate::digest::Digest>>,
}

/// Validates `req` and resolves its sources.
pub fn resolve(req: &CopyRequest) -> Result<Resolution, ContextError> {
    validate(req)?;
    let (items, keep_owners) = resolve_sources(req)?;
    Ok(Resolution {
        items,
        keep_owners,
        file_digests: Default::default(),
    })
}

/// The sources of `req` resolved (after `--exclude` and .dockerignore), and whether their
/// owners are kept (a `--from` rootfs) rather than reset.
fn resolve_sources(req: &CopyRequest) -> Result<(Vec<Item>, bool), ContextError> {
    let exclude = if req.exclude.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&req.exclude).map_err(ContextError::ExcludePattern)?)
    };
    let needs_fs = req
        .sources
        .iter()
        .any(|s| !remote::is_http_source(s) && git::parse_git_ref(s).is_none());
    let fs = if needs_fs {
        Some(SourceFs::open(req.source)?)
    } else {
        None
    };
    let keep_owners = fs.as_ref().is_some_and(|f| f.keep_owners);
    let items = resolve_items(req, fs.as_ref(), exclude.as_ref())?;
    Ok((items, keep_owners))
}

/// Resolves the sources of `req` (no writes); local ones against `fs`. Shared with hashing.
pub(crate) fn resolve_items(
    req: &CopyRequest,
    fs: Option<&SourceFs>,
    exclude: Option<&PatternMatcher>,
) -> Result<Vec<Item>, ContextError> {
    let mut items = Vec::new();
    for src in &req.sources {
        if let Some(gitref) = git::parse_git_ref(src) {
            items.push(Item::Git(gitref?));
        } else if is_http_source(src) {
            items.push(Item::Remote(src.clone()));
        } else {
            // Deviation: BuildKit clamps `../x` to `/x`; a relative source that climbs out of the
            // context is an error here, as in the classic builder ("Forbidden path outside ...").
            if matches!(req.source, SourceRoot::Context(_)) && leaves_root(src) {
                return Err(ContextError::OutsideContext(src.clone()));
            }
            let fs = fs.ok_or_else(|| ContextError::NotFound(src.clone()))?;
            if req.parents {
                items.extend(
                    resolve_parents(fs, src, exclude)?
                        .into_iter()
                        .map(Item::Local),
                );
            } else {
                items.extend(fs.resolve(src, exclude)?.into_iter().map(Item::Local));
            }
        }
    }
    for (name, content) in &req.inline {
        items.push(Item::Inline(name.clone(), content.clone()));
    }
    Ok(items)
}

/// Whether a relative path climbs above its root lexically (`../x`, `a/../../x`).
fn leaves_root(src: &str) -> bool {
    !src.starts_with('/') && {
        let c = super::path_clean::clean(src);
        c == ".." || c.starts_with("../")
    }
}

/// `--parents`: the part after an optional `/./` pivot keeps its directories in the destination
/// (BuildKit turns it into an include pattern over the pivot directory).
fn resolve_parents(
    fs: &SourceFs,
    src: &str,
    exclude: Option<&PatternMatcher>,
) -> Result<Vec<Resolved>, ContextError> {
    let (pivot, pattern) = match src.split_once("/./") {
        Some((p, rest)) => (p.to_string(), rest.to_string()),
        None => ("/".to_string(), src.to_string()),
    };
    let pattern = rel_in_root(&pattern);
    let include = PatternMatcher::new(std::slice::from_ref(&pattern))
        .map_err(|_| ContextError::SourcePattern(src.to_string()))?;
    // A pivot with wildcards (`/a/b*/./c`) names several directories: each contributes.
    let roots: Vec<Resolved> = fs
        .resolve(&pivot, exclude)?
        .into_iter()
        .filter(|r| r.is_dir())
        .collect();
    if roots.is_empty() {
        return Err(ContextError::NotFound(src.to_string()));
    }
    let mut out = Vec::new();
    for mut root in roots {
        let entries = std::mem::take(&mut root.entries);
        let keep: Vec<bool> = entries
            .iter()
            .map(|e| include.matches(&e.rel.to_string_lossy()).unwrap_or(false))
            .collect();
        root.entries = keep_with_ancestors(entries, keep);
        out.push(root);
    }
    if !contains_wildcards(&pattern)
        && !out
            .iter()
            .any(|r| r.entries.iter().any(|e| e.rel == Path::new(&pattern)))
    {
        return Err(ContextError::NotFound(src.to_string()));
    }
    Ok(out)
}

/// Filters pre-order `entries` by `keep`, also keeping the directories above kept entries.
fn keep_with_ancestors(entries: Vec<Entry>, mut keep: Vec<bool>) -> Vec<Entry> {
    let mut needed = std::collections::HashSet::new();
    for (i, e) in entries.iter().enumerate().rev() {
        if !keep[i] && e.meta.is_dir() && needed.contains(&e.rel) {
            keep[i] = true;
        }
        if keep[i] {
            if let Some(p) = e.rel.parent() {
                needed.insert(p.to_path_buf());
            }
        }
    }
    entries
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(e, _)| e)
        .collect()
}

/// `--chown` against the destination image's own /etc/passwd and /etc/group (the same user
/// database code as RUN's USER, with BuildKit's --chown rules).
fn resolve_chown(dest_root: &Path, spec: &str) -> Result<(u32, u32), ContextError> {
    use crate::exec::ExecError;
    crate::exec::resolve_chown(dest_root, spec).map_err(|e| ContextError::Chown {
        spec: spec.to_string(),
        reason: match e {
            ExecError::UserNotFound { user, .. } => {
                format!("no user {user:?} in the image's /etc/passwd")
            }
            ExecError::GroupNotFound { group, .. } => {
                format!("no group {group:?} in the image's /etc/group")
            }
            other => other.to_string(),
        },
    })
}

/// Executes a COPY/ADD into the rootfs at `dest_root` (a writable, merged directory).
pub fn copy(req: &CopyRequest, dest_root: &Path, env: &CopyEnv) -> Result<CopyStats, ContextError> {
    copy_inner(req, None, dest_root, env)
}

/// [`copy`] of sources already resolved by [`resolve`] (the resolution the cache key was
/// computed from).
pub fn copy_resolved(
    req: &CopyRequest,
    resolution: &Resolution,
    dest_root: &Path,
    env: &CopyEnv,
) -> Result<CopyStats, ContextError> {
    copy_inner(req, Some(resolution), dest_root, env)
}

fn copy_inner(
    req: &CopyRequest,
    resolution: Option<&Resolution>,
    dest_root: &Path,
    env: &CopyEnv,
) -> Result<CopyStats, ContextError> {
    validate(req)?;
    let chmod = match &req.chmod {
        Some(spec) => Some(Chmod::parse(spec).map_err(|reason| ContextError::Chmod {
            spec: spec.clone(),
            reason,
        })?),
        None => None,
    };
    let owner = match &req.chown {
        Some(spec) => Some(resolve_chown(dest_root, spec)?),
        None => None,
    };
    let resolved_here;
    let resolution = match resolution {
        Some(r) => r,
        None => {
            let (items, keep_owners) = resolve_sources(req)?;
            resolved_here = Resolution {
                items,
                keep_owners,
                file_digests: Default::default(),
            };
            &resolved_here
        }
    };
    let (items, keep_owners) = (&resolution.items, resolution.keep_owners);
    let droot = DestRoot::open(dest_root)?;
    let (dest, mut dir_syntax) = dest_path(&req.dest, &req.workdir);
    let dest_is_dir = droot.stat_follow(&dest)?.is_some_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
    });
    // `ADD *.tar /dest`: archives unpack into a directory, so several sources make `dest` one
    // (BuildKit's testDockerfileAddArchiveWildcard). COPY keeps the classic error (docs/compat.md).
    if items.len() > 1 && !dir_syntax && !dest_is_dir && req.is_add && req.unpack != Some(false) {
        dir_syntax = true;
    }
    if items.len() > 1 && !dir_syntax && !dest_is_dir {
        return Err(ContextError::MultipleSourcesNeedDir {
            cmd: req.cmd(),
            dest: req.dest.clone(),
            count: items.len(),
        });
    }
    let mut w = Writer {
        droot: &droot,
        dest_root,
        owner,
        keep_owners,
        chmod,
        timestamp: req.timestamp,
        links: HashMap::new(),
        created: Vec::new(),
        stats: CopyStats::default(),
        cancel: env.cancel,
        io: FileIo::new(env.cancel),
        reuse: None,
    };
    // Only a copy of one directory records (and reuses) its files: its records then describe
    // every file it writes (`reuse`).
    if let Some(r) = env.reuse {
        match items.as_slice() {
            [Item::Local(one)] if one.is_dir() => w.reuse = Some(r),
            _ => r.note_unrecorded(),
        }
    }
    let scratch = env
        .scratch
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    for item in items {
        crate::cancel::check(env.cancel)?;
        match item {
            Item::Local(r) => {
                let unpack = req.is_add && req.unpack != Some(false);
                w.local(r, &dest, dir_syntax, unpack, env)?;
            }
            Item::Inline(name, content) => {
                w.bytes_file(&dest, dir_syntax, name, content, 0o644, None)?;
            }
            Item::Remote(url) => {
                // Kept in the remote cache when the caller gave one, else a one-off download
                // (`_dl` holds its temp file until the copy is done).
                let (_dl, path, file_name, mtime) = match req.remote {
                    Some(cache) => {
                        let f = cache.fetch(url, req.checksum.as_deref())?;
                        (None, f.path, f.name, f.mtime)
                    }
                    None => {
                        let dl = remote::download(
                            url,
                            req.checksum.as_deref(),
                            &scratch,
                            env.max_download,
                            env.cancel,
                        )?;
                        let path = dl.path().to_path_buf();
                        let (name, mtime) = (dl.name.clone(), dl.mtime);
                        (Some(dl), path, name, mtime)
                    }
                };
                if req.unpack == Some(true) {
                    if let Some(ex) = env.extract {
                        if w.try_extract(ex, &path, &dest)? {
                            continue;
                        }
                    }
                }
                let mtime = mtime.map(|t| (t, 0));
                let meta = std::fs::metadata(&path).map_err(|e| ContextError::io(&path, e))?;
                let (dir, name) = w.file_target(&dest, dir_syntax, &file_name)?;
                let m = w.meta_for(&meta, false, Some(0o600), mtime);
                w.write_file(&dir, &name, &path, m)?;
            }
            Item::Git(gitref) => {
                let checkout =
                    git::fetch(gitref, req.keep_git_dir, req.checksum.as_deref(), &scratch)?;
                let gfs = SourceFs::open(SourceRoot::Rootfs(checkout.root()))?;
                let sub = gfs.resolve(&gitref.subdir, None)?;
                let saved = std::mem::replace(&mut w.keep_owners, false);
                for r in sub {
                    // SECURITY C3: a subdir reached through a symlink is refused, not followed.
                    if r.rel != rel_in_root(&gitref.subdir) {
                        return Err(ContextError::Git {
                            remote: gitref.remote.clone(),
                            reason: format!("subdir {:?} leads through a symlink", gitref.subdir),
                        });
                    }
                    if !r.is_dir() {
                        return Err(ContextError::Git {
                            remote: gitref.remote.clone(),
                            reason: format!("subdir {:?} is not a directory", gitref.subdir),
                        });
                    }
                    w.tree(&r, &dest, true)?;
                }
                w.keep_owners = saved;
            }
        }
    }
    w.finish()?;
    Ok(w.stats)
}
