//! The writer of one COPY/ADD: turns resolved sources into entries under the destination root
//! (parents, directories, files, links, archives), queueing a tree's file writes for the
//! workers of `copy_io`.

use super::chmod::Chmod;
use super::copy_env::{CopyEnv, CopyStats, Extractor};
use super::copy_io::*;
use super::dest_root::{apply_fd_meta, DestRoot, DirHandle, Meta};
use super::error::ContextError;
use super::path_clean::rel_in_root;
use super::source::{inode_key, Resolved};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;

pub(super) struct Writer<'w> {
    pub(super) droot: &'w DestRoot,
    pub(super) dest_root: &'w Path,
    pub(super) owner: Option<(u32, u32)>,
    pub(super) keep_owners: bool,
    pub(super) chmod: Option<Chmod>,
    pub(super) timestamp: Option<i64>,
    /// Source inode -> in-root path of its first copy, for hardlinks.
    pub(super) links: HashMap<(u64, u64), String>,
    /// Directories created as parents, to re-stamp once their content is written.
    pub(super) created: Vec<String>,
    pub(super) stats: CopyStats,
    pub(super) cancel: Option<&'w AtomicBool>,
    pub(super) io: FileIo<'w>,
    /// Incremental COPY (`reuse`), for a copy of one directory into an upper dir.
    pub(super) reuse: Option<&'w super::reuse::Reuse>,
}

impl Writer<'_> {
    /// Metadata for a created parent or destination directory.
    /// 0755, or an octal `--chmod`'s mode, as BuildKit gives the directories a COPY creates
    /// (its testCopyChmod).
    pub(super) fn parent_meta(&self) -> Meta {
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
    pub(super) fn meta_for(
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

    pub(super) fn mkdir_all(&mut self, path: &str) -> Result<DirHandle, ContextError> {
        let meta = self.parent_meta();
        let (dir, created) = self.droot.mkdir_all(path, &meta)?;
        self.stats.dirs += created.len() as u64;
        self.created.extend(created);
        Ok(dir)
    }

    /// Where a single file goes: `dest/<name>` for a directory destination, else `dest`.
    pub(super) fn file_target(
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

    pub(super) fn try_extract(
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

    pub(super) fn local(
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
    pub(super) fn tree(&mut self, r: &Resolved, dest: &str, git: bool) -> Result<(), ContextError> {
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
            reused: Vec::new(),
            links: Vec::new(),
            stamps: Vec::new(),
        };
        self.plan_tree(r, git, &mut plan)
    }

    /// Walks the entries of `r` in order: directories are created here, the rest is queued in
    /// `plan` and written by [`Self::flush`] every [`FLUSH_DIRS`] directories and at the end.
    pub(super) fn plan_tree<'e>(
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
            let same = e.meta.is_file()
                && self.reuse.is_some_and(|r| {
                    r.note_file(&plan.dirs[dir].child_path(&name), &e.host, &e.meta, &m)
                });
            let job = Job {
                index,
                dir,
                name,
                entry: e,
                meta: m,
            };
            if same {
                plan.reused.push(job);
            } else {
                plan.jobs.push(job);
            }
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
    pub(super) fn flush<'e>(
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
        // Before the hardlinks: one may point at a file linked here.
        self.link_reused(plan)?;
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

    /// Links the files `plan` found unchanged from the previous snapshot (`reuse`); a file that
    /// cannot be linked (that snapshot went away) is copied.
    fn link_reused(&mut self, plan: &mut TreePlan) -> Result<(), ContextError> {
        let Some(reuse) = self.reuse else {
            return Ok(());
        };
        let mut prev_dirs = super::reuse::PrevDirs::default();
        for job in std::mem::take(&mut plan.reused) {
            crate::cancel::check(self.cancel)?;
            let dir = &plan.dirs[job.dir];
            if reuse.link(&dir.child_path(&job.name), dir, &job.name, &mut prev_dirs) {
                self.stats.files += 1;
            } else {
                let e = job.entry;
                write_inode(
                    dir,
                    &job.name,
                    &e.host,
                    &e.meta,
                    &job.meta,
                    &self.io,
                    &mut self.stats,
                )?;
            }
        }
        Ok(())
    }

    /// Makes `name` in `dir` a hardlink to `first`, the in-root path of an earlier copy.
    pub(super) fn link_to_first(
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
    pub(super) fn write_entry(
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
    pub(super) fn write_file(
        &mut self,
        dir: &DirHandle,
        name: &str,
        host: &Path,
        m: Meta,
    ) -> Result<(), ContextError> {
        let n = write_file(dir, name, host, None, &m, &self.io)?;
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    /// A file from bytes (heredoc): mode `mode`, owner 0:0 or `--chown`.
    pub(super) fn bytes_file(
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
    pub(super) fn finish(&mut self) -> Result<(), ContextError> {
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
pub(super) fn pop_dir(
    stack: &mut Vec<(&Path, usize, Option<Meta>)>,
    stamps: &mut Vec<(usize, String, Meta)>,
) {
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
pub(super) struct TreePlan<'e> {
    pub(super) dirs: Vec<DirHandle>,
    pub(super) jobs: Vec<Job<'e>>,
    /// Regular files unchanged since the previous snapshot: linked from it, not copied.
    pub(super) reused: Vec<Job<'e>>,
    pub(super) links: Vec<LinkJob>,
    pub(super) stamps: Vec<(usize, String, Meta)>,
}

/// A hardlink to the copy of the same source inode made earlier in this instruction; made after
/// the parallel writes, so that copy exists.
pub(super) struct LinkJob {
    pub(super) dir: usize,
    pub(super) name: String,
    pub(super) first: String,
    pub(super) src: String,
}
