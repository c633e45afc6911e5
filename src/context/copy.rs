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
use super::dest_root::{apply_fd_meta, DestRoot, DirHandle, Meta};
use super::error::ContextError;
use super::git::{self, GitRef};
use super::ignore::PatternMatcher;
use super::path_clean::{clean_in_root, rel_in_root};
use super::remote::{self, is_http_source};
pub use super::source::SourceRoot;
use super::source::{contains_wildcards, inode_key, Entry, Resolved, SourceFs};
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Extracts `file` into `dest_in_root` inside `root` if it is a tar (plain or compressed) and
/// returns whether it did; creates `dest_in_root` (in-root) when extracting. Provided by the layer
/// module (`layer::archive::extract_if_archive`), injected by the integrator.
pub type Extractor<'a> =
    &'a (dyn Fn(&Path, &Path, &Path, Option<(u32, u32)>) -> Result<bool, String> + Sync);

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

/// What the environment provides to a copy.
pub struct CopyEnv<'a> {
    pub extract: Option<Extractor<'a>>,
    /// Where downloads and git clones are staged (default: the system temp dir).
    pub scratch: Option<&'a Path>,
    /// Upper bound for one remote download.
    pub max_download: u64,
    /// The build's cancel flag: checked per entry and per block of file data.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

impl Default for CopyEnv<'_> {
    fn default() -> Self {
        CopyEnv {
            extract: None,
            scratch: None,
            max_download: 8 << 30,
            cancel: None,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    pub bytes: u64,
    pub extracted: u64,
}

impl CopyStats {
    fn add(&mut self, o: &CopyStats) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.specials += o.specials;
        self.bytes += o.bytes;
        self.extracted += o.extracted;
    }
}

/// Bytes of one file copied between two looks at the cancel flag.
const COPY_BLOCK: u64 = 8 << 20;

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

/// Validates `req` and resolves its sources for hashing (the cache key and the classic history
/// ids read the same items); also says whether the source keeps owners.
pub(crate) fn resolve_for_hashing(req: &CopyRequest) -> Result<(Vec<Item>, bool), ContextError> {
    validate(req)?;
    resolve_sources(req)
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
    let (items, keep_owners) = resolve_sources(req)?;
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
    };
    let scratch = env
        .scratch
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    for item in items {
        crate::cancel::check(env.cancel)?;
        match item {
            Item::Local(r) => {
                let unpack = req.is_add && req.unpack != Some(false);
                w.local(&r, &dest, dir_syntax, unpack, env)?;
            }
            Item::Inline(name, content) => {
                w.bytes_file(&dest, dir_syntax, &name, &content, 0o644, None)?;
            }
            Item::Remote(url) => {
                // Kept in the remote cache when the caller gave one, else a one-off download
                // (`_dl` holds its temp file until the copy is done).
                let (_dl, path, file_name, mtime) = match req.remote {
                    Some(cache) => {
                        let f = cache.fetch(&url, req.checksum.as_deref())?;
                        (None, f.path, f.name, f.mtime)
                    }
                    None => {
                        let dl = remote::download(
                            &url,
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
                    git::fetch(&gitref, req.keep_git_dir, req.checksum.as_deref(), &scratch)?;
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

struct Writer<'w> {
    droot: &'w DestRoot,
    dest_root: &'w Path,
    owner: Option<(u32, u32)>,
    keep_owners: bool,
    chmod: Option<Chmod>,
    timestamp: Option<i64>,
    /// Source inode -> in-root path of its first copy, for hardlinks.
    links: HashMap<(u64, u64), String>,
    /// Directories created as parents, to re-stamp once their content is written.
    created: Vec<String>,
    stats: CopyStats,
    cancel: Option<&'w AtomicBool>,
    io: FileIo<'w>,
}

impl Writer<'_> {
    /// Metadata for a created parent or destination directory: 0755, or an octal `--chmod`'s
    /// mode as BuildKit gives the directories a COPY creates (its testCopyChmod).
    fn parent_meta(&self) -> Meta {
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        Meta {
            uid,
            gid,
            mode: Some(match self.chmod {
                Some(Chmod::Octal(m)) => m,
                _ => 0o755,
            }),
            mtime: self.timestamp.map(|t| (t, 0)),
        }
    }

    /// Metadata for a copied inode: owner/chmod/timestamp overrides over the source's own.
    fn meta_for(
        &self,
        src: &Metadata,
        is_dir: bool,
        base_mode: Option<u32>,
        mtime: Option<(i64, u32)>,
    ) -> Meta {
        let (uid, gid) = match (self.owner, self.keep_owners) {
            (Some(o), _) => o,
            (None, true) => (src.uid(), src.gid()),
            (None, false) => (0, 0),
        };
        let src_mode = base_mode.unwrap_or(src.mode() & 0o7777);
        let mode = match &self.chmod {
            Some(c) => c.apply(src_mode, is_dir),
            None => src_mode,
        };
        let own_mtime = mtime.or(Some((src.mtime(), src.mtime_nsec() as u32)));
        Meta {
            uid,
            gid,
            mode: Some(mode),
            mtime: self.timestamp.map(|t| (t, 0)).or(own_mtime),
        }
    }

    fn mkdir_all(&mut self, path: &str) -> Result<DirHandle, ContextError> {
        let meta = self.parent_meta();
        let (dir, created) = self.droot.mkdir_all(path, &meta)?;
        self.stats.dirs += created.len() as u64;
        self.created.extend(created);
        Ok(dir)
    }

    /// Where a single file goes: `dest/<name>` for a directory destination, else `dest`.
    fn file_target(
        &mut self,
        dest: &str,
        dir_syntax: bool,
        name: &str,
    ) -> Result<(DirHandle, String), ContextError> {
        let is_dir = self.droot.stat_follow(dest)?.is_some_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        });
        if dir_syntax || is_dir {
            Ok((self.mkdir_all(dest)?, name.to_string()))
        } else {
            let (parent, base) = dest.rsplit_once('/').unwrap_or(("", dest));
            Ok((self.mkdir_all(parent)?, base.to_string()))
        }
    }

    fn try_extract(
        &mut self,
        ex: Extractor,
        file: &Path,
        dest: &str,
    ) -> Result<bool, ContextError> {
        // `--chown` applies to what the archive holds too (BuildKit's testDockerfileAddChownArchive).
        let done = ex(file, self.dest_root, Path::new(dest), self.owner).map_err(|reason| {
            // The extractor stops on the same flag; its error is then only the symptom.
            match crate::cancel::check(self.cancel) {
                Err(c) => ContextError::Cancelled(c),
                Ok(()) => ContextError::Extract {
                    path: file.to_path_buf(),
                    reason,
                },
            }
        })?;
        if done {
            self.stats.extracted += 1;
        }
        Ok(done)
    }

    fn local(
        &mut self,
        r: &Resolved,
        dest: &str,
        dir_syntax: bool,
        unpack: bool,
        env: &CopyEnv,
    ) -> Result<(), ContextError> {
        if r.is_dir() {
            return self.tree(r, dest, false);
        }
        if unpack && r.meta.is_file() {
            if let Some(ex) = env.extract {
                if self.try_extract(ex, &r.host, dest)? {
                    return Ok(());
                }
            }
        }
        let (dir, name) = self.file_target(dest, dir_syntax, &r.name)?;
        let m = self.meta_for(&r.meta, false, None, None);
        self.write_entry(&dir, &name, &r.host, &r.meta, m)
    }

    /// Copies the contents of a resolved directory into `dest`. `git` normalises modes the way
    /// a git checkout defines them (0644/0755).
    ///
    /// This thread walks the entries in order, creating directories and queueing everything else;
    /// a few workers then write the queue (per file: open, create, copy, chown, chmod, utimens,
    /// xattrs — syscall-bound, so it scales with cores). A directory's metadata is applied only
    /// once everything inside it is written, as its mtime must be set last.
    fn tree(&mut self, r: &Resolved, dest: &str, git: bool) -> Result<(), ContextError> {
        if let Some(st) = self.droot.stat_follow(dest)? {
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
                return Err(ContextError::NotADirectory {
                    src: r.rel.clone(),
                    dest: dest.to_string(),
                });
            }
        }
        let base = self.mkdir_all(dest)?;
        let mut plan = TreePlan {
            dirs: vec![base],
            jobs: Vec::new(),
            links: Vec::new(),
            stamps: Vec::new(),
        };
        self.plan_tree(r, git, &mut plan)
    }

    /// Walks the entries of `r` in order: directories are created here, the rest is queued in
    /// `plan` and written by [`Self::flush`] every [`FLUSH_DIRS`] directories and at the end.
    fn plan_tree<'e>(
        &mut self,
        r: &'e Resolved,
        git: bool,
        plan: &mut TreePlan<'e>,
    ) -> Result<(), ContextError> {
        // Open directories along the current path: (rel, index in plan.dirs, metadata to apply).
        let mut stack: Vec<(&Path, usize, Option<Meta>)> = vec![(Path::new(""), 0, None)];
        for (index, e) in r.entries.iter().enumerate() {
            // A failure here is kept with its entry's index: the writes queued before it still
            // run, so the error reported is the first in walk order, as in a sequential copy.
            let fail = |e: ContextError| Some((index, e));
            if let Err(c) = crate::cancel::check(self.cancel) {
                return self.flush(plan, &mut stack, fail(c.into()));
            }
            let parent = e.rel.parent().unwrap_or(Path::new(""));
            while stack.len() > 1 && stack.last().is_some_and(|(p, _, _)| *p != parent) {
                pop_dir(&mut stack, &mut plan.stamps);
            }
            // Each planned directory holds an open fd: write what is queued and let go of the
            // directories left behind before there are too many.
            if plan.dirs.len() >= stack.len() + FLUSH_DIRS {
                self.flush(plan, &mut stack, None)?;
            }
            let name = e
                .rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mode = if git { Some(git_mode(&e.meta)) } else { None };
            let m = self.meta_for(&e.meta, e.meta.is_dir(), mode, None);
            let Some(&(_, dir, _)) = stack.last() else {
                break;
            };
            if e.meta.is_dir() {
                let (sub, created) =
                    match plan.dirs[dir].ensure_dir(&name, &e.host.to_string_lossy()) {
                        Ok(r) => r,
                        Err(err) => return self.flush(plan, &mut stack, fail(err)),
                    };
                if created {
                    self.stats.dirs += 1;
                }
                plan.dirs.push(sub);
                stack.push((&e.rel, plan.dirs.len() - 1, Some(m)));
                continue;
            }
            if e.meta.is_file() && e.meta.nlink() > 1 {
                let key = inode_key(&e.meta);
                if let Some(first) = self.links.get(&key) {
                    plan.links.push(LinkJob {
                        dir,
                        name,
                        first: first.clone(),
                        src: e.host.to_string_lossy().into_owned(),
                    });
                    continue;
                }
                self.links.insert(key, plan.dirs[dir].child_path(&name));
            }
            plan.jobs.push(Job {
                index,
                dir,
                name,
                entry: e,
                meta: m,
            });
        }
        while stack.len() > 1 {
            pop_dir(&mut stack, &mut plan.stamps);
        }
        self.flush(plan, &mut stack, None)
    }

    /// Writes what `plan` queued (workers), then the hardlinks to earlier copies, then the
    /// metadata of the directories the walk has left (everything inside them is written now);
    /// keeps open only the directories on `stack`. `walk_err` is a failure of the walk itself,
    /// reported unless a queued write before it failed.
    fn flush<'e>(
        &mut self,
        plan: &mut TreePlan<'e>,
        stack: &mut [(&Path, usize, Option<Meta>)],
        walk_err: Option<(usize, ContextError)>,
    ) -> Result<(), ContextError> {
        let (stats, job_err) = run_jobs(&plan.dirs, &plan.jobs, &self.io, copy_workers());
        self.stats.add(&stats);
        plan.jobs.clear();
        let first_err = match (walk_err, job_err) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        if let Some((_, e)) = first_err {
            return Err(e);
        }
        for l in std::mem::take(&mut plan.links) {
            crate::cancel::check(self.cancel)?;
            self.link_to_first(&plan.dirs[l.dir], &l.name, &l.first, &l.src)?;
        }
        for (dir, name, meta) in std::mem::take(&mut plan.stamps) {
            plan.dirs[dir].apply_dir_meta(&name, &meta)?;
        }
        let mut open: Vec<Option<DirHandle>> = plan.dirs.drain(..).map(Some).collect();
        for (_, i, _) in stack.iter_mut() {
            let Some(d) = open.get_mut(*i).and_then(Option::take) else {
                return Err(ContextError::in_root("", "directory handle lost"));
            };
            plan.dirs.push(d);
            *i = plan.dirs.len() - 1;
        }
        Ok(())
    }

    /// Makes `name` in `dir` a hardlink to `first`, the in-root path of an earlier copy.
    fn link_to_first(
        &mut self,
        dir: &DirHandle,
        name: &str,
        first: &str,
        src: &str,
    ) -> Result<(), ContextError> {
        let (p, n) = first.rsplit_once('/').unwrap_or(("", first));
        let old = self.droot.open_dir(p)?;
        dir.replace_hardlink(name, &old, n, src)?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// Writes one non-directory source inode as `name` in `dir`.
    fn write_entry(
        &mut self,
        dir: &DirHandle,
        name: &str,
        host: &Path,
        meta: &Metadata,
        m: Meta,
    ) -> Result<(), ContextError> {
        if meta.is_file() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&inode_key(meta)).cloned() {
                return self.link_to_first(dir, name, &first, &host.to_string_lossy());
            }
            self.links.insert(inode_key(meta), dir.child_path(name));
        }
        write_inode(dir, name, host, meta, &m, &self.io, &mut self.stats)
    }

    /// Copies a regular file's bytes and xattrs, then sets owner, mode and mtime.
    fn write_file(
        &mut self,
        dir: &DirHandle,
        name: &str,
        host: &Path,
        m: Meta,
    ) -> Result<(), ContextError> {
        let n = write_file(dir, name, host, &m, &self.io)?;
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    /// A file from bytes (heredoc): mode `mode`, owner 0:0 or `--chown`.
    fn bytes_file(
        &mut self,
        dest: &str,
        dir_syntax: bool,
        name: &str,
        content: &[u8],
        mode: u32,
        mtime: Option<(i64, u32)>,
    ) -> Result<(), ContextError> {
        let name = rel_in_root(name);
        let name = name.rsplit('/').next().unwrap_or("").to_string();
        let (dir, file_name) = self.file_target(dest, dir_syntax, &name)?;
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        let mode = match &self.chmod {
            Some(c) => c.apply(mode, false),
            None => mode,
        };
        let m = Meta {
            uid,
            gid,
            mode: Some(mode),
            mtime: self.timestamp.map(|t| (t, 0)).or(mtime),
        };
        dir.clear_for_file(&file_name, &name)?;
        let mut out = dir.create_file(&file_name)?;
        std::io::Write::write_all(&mut out, content)
            .map_err(|e| ContextError::in_root(dir.child_path(&file_name), e))?;
        apply_fd_meta(out.as_fd(), &m)
            .map_err(|e| ContextError::in_root(dir.child_path(&file_name), e))?;
        self.stats.files += 1;
        self.stats.bytes += content.len() as u64;
        Ok(())
    }

    /// Re-stamps created parent directories (deepest first) so `--timestamp` holds after writes.
    fn finish(&mut self) -> Result<(), ContextError> {
        if self.timestamp.is_none() {
            return Ok(());
        }
        let meta = self.parent_meta();
        for path in self.created.iter().rev() {
            let (p, n) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            self.droot.open_dir(p)?.apply_dir_meta(n, &meta)?;
        }
        Ok(())
    }
}

/// Leaves the innermost open directory, recording the metadata it gets once the writes are done.
fn pop_dir(stack: &mut Vec<(&Path, usize, Option<Meta>)>, stamps: &mut Vec<(usize, String, Meta)>) {
    if let Some((rel, _, meta)) = stack.pop() {
        if let (Some(meta), Some(&(_, parent, _))) = (meta, stack.last()) {
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            stamps.push((parent, name, meta));
        }
    }
}

/// A directory tree's writes: the directories (created while planning), then the queued
/// entries, the hardlinks to earlier copies, and the directory metadata to apply, deepest first.
struct TreePlan<'e> {
    dirs: Vec<DirHandle>,
    jobs: Vec<Job<'e>>,
    links: Vec<LinkJob>,
    stamps: Vec<(usize, String, Meta)>,
}

/// One non-directory entry of a tree, for any worker to write.
struct Job<'e> {
    /// Position in the walk, to report the first failure in walk order.
    index: usize,
    /// Index of the destination directory in [`TreePlan::dirs`].
    dir: usize,
    name: String,
    entry: &'e Entry,
    meta: Meta,
}

/// A hardlink to the copy of the same source inode made earlier in this instruction; made after
/// the parallel writes, so that copy exists.
struct LinkJob {
    dir: usize,
    name: String,
    first: String,
    src: String,
}

/// Worker threads for the writes of a tree: `RBUILD_COPY_JOBS` when set (tests and benchmarks pin
/// it), else one per core.
fn copy_workers() -> usize {
    std::env::var("RBUILD_COPY_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Below this many queued entries the writes stay on the calling thread: threads cost more.
const PARALLEL_MIN: usize = 64;

/// Directories planned (each an open fd) before the queued writes are flushed: keeps a tree of
/// any size well inside the usual 1024-descriptor limit.
const FLUSH_DIRS: usize = 256;

/// Writes `jobs` with up to `workers` threads (the calling one included), each taking the next
/// job in walk order. On failure the others stop taking jobs; as every job before a failed one
/// was already taken, the lowest-index error among the finished jobs is the first in walk order.
fn run_jobs(
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
fn write_inode(
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
        stats.bytes += write_file(dir, name, host, m, io)?;
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
    } else if ft.is_socket() {
        // BuildKit's context transfer turns a socket into an empty regular file
        // (docs/compat.md, "COPY of a socket").
        let out = dir.replace_file(name, &src_desc)?;
        apply_fd_meta(out.as_fd(), m)
            .map_err(|e| ContextError::in_root(dir.child_path(name), e))?;
        stats.files += 1;
    }
    Ok(())
}

/// Copies a regular file's bytes and xattrs, then sets owner, mode and mtime. Returns the bytes.
fn write_file(
    dir: &DirHandle,
    name: &str,
    host: &Path,
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
    apply_fd_meta(out.as_fd(), m).map_err(|e| ContextError::in_root(dir.child_path(name), e))?;
    copy_xattrs(&src, &out);
    Ok(n)
}

/// What the file writers of one COPY share: the cancel flag, and whether `copy_file_range`
/// still looks usable (it is not from a context into an overlay mount: EXDEV, every file).
struct FileIo<'a> {
    cancel: Option<&'a AtomicBool>,
    try_range: AtomicBool,
}

impl<'a> FileIo<'a> {
    fn new(cancel: Option<&'a AtomicBool>) -> FileIo<'a> {
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
fn copy_data(src: &File, out: &File, host: &Path, io: &FileIo) -> Result<u64, ContextError> {
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
fn git_mode(meta: &Metadata) -> u32 {
    if meta.is_dir() || meta.mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Copies extended attributes; failures are ignored as BuildKit's handler does (the target
/// filesystem may not support a namespace).
fn copy_xattrs(src: &File, dst: &File) {
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
    fn copy_between(from: &Path, to: &Path, len: usize, io: &FileIo) -> Result<u64, ContextError> {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let (src, dst) = (from.join("src"), to.join("dst"));
        std::fs::write(&src, &data).unwrap();
        let out = File::create(&dst).unwrap();
        let n = copy_data(&File::open(&src).unwrap(), &out, &src, io)?;
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        Ok(n)
    }

    #[test]
    fn copy_data_in_kernel_on_one_filesystem_and_across() {
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
    fn copy_data_stops_when_cancelled() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let flag = AtomicBool::new(true);
        let err = copy_between(a.path(), b.path(), 10, &FileIo::new(Some(&flag)));
        assert!(matches!(err, Err(ContextError::Cancelled(_))));
    }
}
