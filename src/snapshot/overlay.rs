//! The overlay2-shaped snapshotter: the [`Snapshotter`] rbuild uses.
//!
//! Layout under `<root>/overlay2` (the same shape as Docker's overlay2 driver):
//!
//! ```text
//! <dir>/<id>/diff/     the snapshot's own changes (overlay upperdir)
//! <dir>/<id>/work/     overlay workdir
//! <dir>/<id>/merged/   mount point of the read-write view
//! <dir>/<id>/link      the 26-char short link id, e.g. ABCD...
//! <dir>/<id>/lower     parents' short links, newest first: "l/AAA:l/BBB" (absent without parent)
//! <dir>/l/<LINKID>     symlink -> ../<id>/diff
//! <dir>/empty/         empty lowerdir for snapshots without a parent (whiteouts stay devices)
//! ```
//!
//! Crash safety: a snapshot is built in `<dir>/.tmp-<id>` (its `l/` link is made first and
//! dangles until then) and renamed to `<dir>/<id>` when complete; removal renames to
//! `<dir>/.rm-<id>` before deleting. So `<dir>/<id>` is always complete, and
//! [`OverlaySnapshotter::cleanup_incomplete`] deletes `.tmp-*`, `.rm-*` and dangling `l/` links.
//! Run it only where no `create` runs concurrently (`Store::recover` and `Store::create_snapshot`
//! both hold the store lock): an in-progress `.tmp-` dir looks exactly like an abandoned one.

use crate::snapshot::api::{Active, MountSpec, Snapshotter};
use crate::snapshot::driver::{self, Driver, USERNS_OVERLAY_FEATURES};
use crate::snapshot::error::SnapshotError;
use crate::snapshot::ids;
use crate::snapshot::mounted::{self, Mounted};
use crate::snapshot::mounted::{COPY_FSTYPE, FUSE_FSTYPE};
use nix::mount::{umount2, MntFlags};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const TMP_PREFIX: &str = ".tmp-";
const RM_PREFIX: &str = ".rm-";
/// Snapshots set aside by [`OverlaySnapshotter::discard`], deleted by [`OverlaySnapshotter::empty_trash`].
const TRASH_PREFIX: &str = ".trash-";
/// Options that keep every change inside the upper dir, which the layer differ relies on:
/// no redirects to lower dirs, no metadata-only copy-ups, no hardlink index.
const OVERLAY_FEATURES: &str = "index=off,redirect_dir=off,metacopy=off";

/// One snapshot: a diff dir on top of a chain of parents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    /// Short link id (`<dir>/l/<link>`).
    pub link: String,
    /// Parents' lowerdir entries, newest first (`l/AAA`, `l/BBB`...).
    pub lower: Vec<String>,
    /// `<dir>/<id>`
    pub path: PathBuf,
}

impl Snapshot {
    pub fn diff_dir(&self) -> PathBuf {
        self.path.join("diff")
    }

    pub fn merged_dir(&self) -> PathBuf {
        self.path.join("merged")
    }
}

/// The snapshot store at `<root>/overlay2`.
#[derive(Clone, Debug)]
pub struct OverlaySnapshotter {
    dir: PathBuf,
    /// How views are mounted (chosen at start: `driver::select`).
    driver: Driver,
}

impl OverlaySnapshotter {
    /// Opens (creating if needed) the store at `dir`.
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o710);
        b.create(dir)
            .map_err(|e| SnapshotError::io(dir, "create", e))?;
        // Absolute, so merged paths handed out stay valid whatever the cwd.
        let dir = fs::canonicalize(dir).map_err(|e| SnapshotError::io(dir, "canonicalize", e))?;
        for sub in ["l", "empty"] {
            b.mode(0o700);
            b.create(dir.join(sub))
                .map_err(|e| SnapshotError::io(dir.join(sub), "create", e))?;
        }
        Ok(OverlaySnapshotter {
            dir,
            driver: driver::current(),
        })
    }

    /// The same store, mounted with `driver` instead of the process-wide choice.
    pub fn with_driver(mut self, driver: Driver) -> Self {
        self.driver = driver;
        self
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates an empty snapshot on top of `parent` (or of nothing).
    pub fn create(&self, parent: Option<&str>) -> Result<Snapshot, SnapshotError> {
        let lower = match parent {
            Some(p) => {
                let p = self.get(p)?;
                let mut lower = vec![format!("l/{}", p.link)];
                lower.extend(p.lower);
                lower
            }
            None => Vec::new(),
        };
        let id = ids::snapshot_id().map_err(|e| SnapshotError::io("/dev/urandom", "read", e))?;
        let link = ids::link_id().map_err(|e| SnapshotError::io("/dev/urandom", "read", e))?;
        let tmp = self.dir.join(format!("{TMP_PREFIX}{id}"));
        let mut b = fs::DirBuilder::new();
        b.mode(0o710);
        b.create(&tmp)
            .map_err(|e| SnapshotError::io(&tmp, "mkdir", e))?;
        for (sub, mode) in [("diff", 0o755), ("work", 0o700), ("merged", 0o700)] {
            b.mode(mode);
            b.create(tmp.join(sub))
                .map_err(|e| SnapshotError::io(tmp.join(sub), "mkdir", e))?;
        }
        write_file(&tmp.join("link"), &link)?;
        if !lower.is_empty() {
            write_file(&tmp.join("lower"), &lower.join(":"))?;
        }
        let link_path = self.dir.join("l").join(&link);
        std::os::unix::fs::symlink(format!("../{id}/diff"), &link_path)
            .map_err(|e| SnapshotError::io(&link_path, "symlink", e))?;
        let path = self.dir.join(&id);
        fs::rename(&tmp, &path).map_err(|e| SnapshotError::io(&tmp, "rename into place", e))?;
        Ok(Snapshot {
            id,
            link,
            lower,
            path,
        })
    }

    /// Reads a snapshot's metadata.
    pub fn get(&self, id: &str) -> Result<Snapshot, SnapshotError> {
        let path = self.snapshot_path(id)?;
        if !path.is_dir() {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        let link_file = path.join("link");
        let link = fs::read_to_string(&link_file)
            .map_err(|e| SnapshotError::io(&link_file, "read", e))?
            .trim()
            .to_string();
        if !ids::is_link_id(&link) {
            return Err(SnapshotError::Corrupt {
                path: link_file,
                reason: format!("bad link id {link:?}"),
            });
        }
        let lower_file = path.join("lower");
        let lower = match fs::read_to_string(&lower_file) {
            Ok(s) => s
                .trim()
                .split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(SnapshotError::io(&lower_file, "read", e)),
        };
        for l in &lower {
            if !l.strip_prefix("l/").is_some_and(ids::is_link_id) {
                return Err(SnapshotError::Corrupt {
                    path: lower_file,
                    reason: format!("bad lower entry {l:?}"),
                });
            }
        }
        Ok(Snapshot {
            id: id.to_string(),
            link,
            lower,
            path,
        })
    }

    /// Ids of every complete snapshot.
    pub fn list(&self) -> Result<Vec<String>, SnapshotError> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.dir).map_err(|e| SnapshotError::io(&self.dir, "read dir", e))?
        {
            let entry = entry.map_err(|e| SnapshotError::io(&self.dir, "read dir", e))?;
            if let Some(name) = entry.file_name().to_str() {
                if ids::is_snapshot_id(name) {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The snapshot's own diff dir (where layers are applied and RUN writes land).
    pub fn diff_dir(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.snapshot_path(id)?.join("diff"))
    }

    /// Ids of the snapshot's parents, newest first.
    pub fn lower_chain(&self, id: &str) -> Result<Vec<String>, SnapshotError> {
        let snap = self.get(id)?;
        snap.lower
            .iter()
            .map(|l| {
                let link = self.dir.join(l);
                let target =
                    fs::read_link(&link).map_err(|e| SnapshotError::io(&link, "readlink", e))?;
                let parent = target
                    .strip_prefix("..")
                    .ok()
                    .and_then(|p| p.parent())
                    .and_then(|p| p.to_str())
                    .filter(|p| ids::is_snapshot_id(p))
                    .ok_or_else(|| SnapshotError::Corrupt {
                        path: link.clone(),
                        reason: format!("unexpected link target {}", target.display()),
                    })?;
                Ok(parent.to_string())
            })
            .collect()
    }

    /// The spec of the read-write view: the diff dir over the parents.
    pub fn rw_spec(&self, snap: &Snapshot) -> MountSpec {
        let lower = if snap.lower.is_empty() {
            "empty".to_string()
        } else {
            snap.lower.join(":")
        };
        self.overlay_spec(format!(
            "lowerdir={lower},upperdir={id}/diff,workdir={id}/work",
            id = snap.id
        ))
    }

    /// The spec of a read-only view of the snapshot and its parents (no upper dir).
    pub fn ro_spec(&self, snap: &Snapshot) -> MountSpec {
        let mut lower = vec![format!("l/{}", snap.link)];
        lower.extend(snap.lower.iter().cloned());
        // Overlay needs two lower layers when there is no upper dir.
        if lower.len() == 1 {
            lower.push("empty".to_string());
        }
        let mut spec = self.overlay_spec(format!("lowerdir={}", lower.join(":")));
        spec.options.insert(0, "ro".to_string());
        spec
    }

    fn overlay_spec(&self, dirs: String) -> MountSpec {
        let mut options = vec![dirs];
        let (fstype, source) = match self.driver {
            Driver::Overlay { userxattr } => {
                // `userxattr` conflicts with `redirect_dir=off` (which still follows redirects);
                // `nofollow` neither makes nor follows them, the same for the layer differ.
                let features = if userxattr {
                    USERNS_OVERLAY_FEATURES
                } else {
                    OVERLAY_FEATURES
                };
                options.extend(features.split(',').map(str::to_string));
                ("overlay", "overlay")
            }
            Driver::FuseOverlayfs => (FUSE_FSTYPE, "fuse-overlayfs"),
            Driver::Copy => (COPY_FSTYPE, "copy"),
        };
        MountSpec {
            fstype: fstype.to_string(),
            source: source.to_string(),
            options,
            // The option paths are relative to the snapshotter dir (short `l/` links).
            base: Some(self.dir.clone()),
        }
    }

    /// Mounts the read-write view (`<id>/merged`): diff over the parents.
    pub fn mount(&self, snap: &Snapshot) -> Result<Mounted, SnapshotError> {
        mounted::mount(&[self.rw_spec(snap)], &snap.merged_dir())
    }

    /// Mounts a read-only view of the snapshot and its parents (no upper dir) on a fresh
    /// mount point under `<dir>/<id>/`, removed again when the view is dropped.
    pub fn mount_readonly(&self, id: &str) -> Result<Mounted, SnapshotError> {
        let snap = self.get(id)?;
        mounted::mount_fresh(&[self.ro_spec(&snap)], &snap.path)
    }

    /// Deletes a snapshot that no other snapshot builds on.
    pub fn remove(&self, id: &str) -> Result<(), SnapshotError> {
        let snap = self.get(id)?;
        let me = format!("l/{}", snap.link);
        for other in self.list()? {
            if other == id {
                continue;
            }
            let child = match self.get(&other) {
                Ok(c) => c,
                // Removed by another process since `list`: it is no child of ours any more.
                Err(SnapshotError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if child.lower.contains(&me) {
                return Err(SnapshotError::InUse {
                    id: id.to_string(),
                    child: other,
                });
            }
        }
        let doomed = self.set_aside(&snap, RM_PREFIX)?;
        fs::remove_dir_all(&doomed).map_err(|e| SnapshotError::io(&doomed, "remove", e))
    }

    /// Takes a snapshot out of use: detaches a leftover mount (it would make a delete fail
    /// halfway), unlinks its `l/` name and renames it to `<prefix><id>`. Returns the new path.
    fn set_aside(&self, snap: &Snapshot, prefix: &str) -> Result<PathBuf, SnapshotError> {
        let _ = umount2(&snap.merged_dir(), MntFlags::MNT_DETACH);
        let link = self.dir.join("l").join(&snap.link);
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SnapshotError::io(&link, "remove link", e)),
        }
        let aside = self.dir.join(format!("{prefix}{}", snap.id));
        fs::rename(&snap.path, &aside).map_err(|e| SnapshotError::io(&snap.path, "rename", e))?;
        Ok(aside)
    }

    /// Sets a snapshot nothing uses aside instead of deleting it now: unlinks its `l/` name and
    /// renames it to `.trash-<id>`, which `list` does not show and `empty_trash` (run by
    /// `prune`) deletes. For the duplicate a build makes when its layer already exists: deleting
    /// thousands of files and creating as many right after makes ext4's inode allocator skip every
    /// recently freed inode under its group lock (`recently_deleted`), which cost back-to-back
    /// builds seconds of system time; build cache waits for prune in Docker and BuildKit too.
    pub fn discard(&self, id: &str) -> Result<(), SnapshotError> {
        let snap = self.get(id)?;
        self.set_aside(&snap, TRASH_PREFIX).map(|_| ())
    }

    /// Deletes every discarded snapshot; returns how many there were.
    pub fn empty_trash(&self) -> Result<usize, SnapshotError> {
        let mut removed = 0;
        for entry in
            fs::read_dir(&self.dir).map_err(|e| SnapshotError::io(&self.dir, "read dir", e))?
        {
            let entry = entry.map_err(|e| SnapshotError::io(&self.dir, "read dir", e))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(TRASH_PREFIX)
            {
                let p = entry.path();
                match fs::remove_dir_all(&p) {
                    Ok(()) => removed += 1,
                    // Another prune emptied it first.
                    Err(_) if !p.exists() => {}
                    Err(e) => return Err(SnapshotError::io(&p, "remove", e)),
                }
            }
        }
        Ok(removed)
    }

    /// Deletes what an interrupted create/remove left behind: `.tmp-*` and `.rm-*` dirs and
    /// `l/` links that point nowhere. Returns how many items were removed.
    pub fn cleanup_incomplete(&self) -> Result<usize, SnapshotError> {
        let mut removed = 0;
        for entry in
            fs::read_dir(&self.dir).map_err(|e| SnapshotError::io(&self.dir, "read dir", e))?
        {
            let entry = entry.map_err(|e| SnapshotError::io(&self.dir, "read dir", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) || name.starts_with(RM_PREFIX) {
                let p = entry.path();
                let _ = umount2(&p.join("merged"), MntFlags::MNT_DETACH);
                match fs::remove_dir_all(&p) {
                    Ok(()) => removed += 1,
                    // A concurrent `remove` finishing the same `.rm-` dir: it is gone either way.
                    Err(_) if !p.exists() => {}
                    Err(e) => return Err(SnapshotError::io(&p, "remove", e)),
                }
            }
        }
        let links = self.dir.join("l");
        for entry in fs::read_dir(&links).map_err(|e| SnapshotError::io(&links, "read dir", e))? {
            let entry = entry.map_err(|e| SnapshotError::io(&links, "read dir", e))?;
            let p = entry.path();
            // metadata() follows the link: NotFound means it dangles.
            if let Err(e) = fs::metadata(&p) {
                if e.kind() == io::ErrorKind::NotFound {
                    fs::remove_file(&p).map_err(|e| SnapshotError::io(&p, "remove link", e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn snapshot_path(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        if !ids::is_snapshot_id(id) {
            return Err(SnapshotError::InvalidId(id.to_string()));
        }
        Ok(self.dir.join(id))
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, parent: Option<&str>) -> Result<Active, SnapshotError> {
        let snap = self.create(parent)?;
        Ok(Active {
            mounts: vec![self.rw_spec(&snap)],
            key: snap.id,
        })
    }

    fn view(&self, key: &str) -> Result<Vec<MountSpec>, SnapshotError> {
        Ok(vec![self.ro_spec(&self.get(key)?)])
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        self.diff_dir(key)
    }

    /// Nothing to do: a snapshot dir is complete from `create` on (built aside and renamed),
    /// and what makes it a layer is the layer record the store writes.
    fn commit(&self, key: &str) -> Result<(), SnapshotError> {
        self.get(key).map(|_| ())
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        OverlaySnapshotter::remove(self, key)
    }

    fn discard(&self, key: &str) -> Result<(), SnapshotError> {
        OverlaySnapshotter::discard(self, key)
    }
}

fn write_file(path: &Path, content: &str) -> Result<(), SnapshotError> {
    fs::write(path, content).map_err(|e| SnapshotError::io(path, "write", e))
}
