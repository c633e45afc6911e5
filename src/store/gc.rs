//! Snapshots as the store sees them: created under the lease, recovered after a crash, collected
//! when no layer record or live lease names them.

use crate::digest::Digest;
use crate::snapshot::{OverlaySnapshotter, Snapshot};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

impl Store {
    /// Creates a snapshot on `parent` and leases it, under the store lock: GC (which lists
    /// snapshots and reads leases under the same lock) never sees it unleased, and crash
    /// recovery never mistakes its `.tmp-` directory for a dead process's.
    pub fn create_snapshot(
        &self,
        snapshots: &OverlaySnapshotter,
        parent: Option<&str>,
    ) -> Result<Snapshot, StoreError> {
        let _lock = self.lock()?;
        let snap = snapshots.create(parent)?;
        if let Err(e) = self.lease_snapshot(&snap.id) {
            let _ = snapshots.remove(&snap.id);
            return Err(e);
        }
        Ok(snap)
    }

    /// Cleans what killed processes left behind, under the store lock: half-created and
    /// half-removed snapshot directories, dangling `l/` links, and stale leases together with
    /// the snapshots they held that no layer record took over (the incomplete layers of a build
    /// killed between snapshot and layer record). Returns one line per action.
    pub fn recover(&self, snapshots: &OverlaySnapshotter) -> Result<Vec<String>, StoreError> {
        let _lock = self.lock()?;
        let mut actions = Vec::new();
        let n = snapshots.cleanup_incomplete()?;
        if n > 0 {
            actions.push(format!(
                "removed {n} incomplete snapshot directories or dangling links"
            ));
        }
        let (live, stale) = self.read_leases()?;
        if stale.is_empty() {
            return Ok(actions);
        }
        let owned = self.snapshot_owners()?;
        let mut doomed = Vec::new();
        for (_, held) in &stale {
            for id in &held.snapshots {
                if !owned.contains_key(id) && !live.snapshots.contains(id) {
                    doomed.push(id.clone());
                }
            }
        }
        for id in remove_snapshots(snapshots, doomed) {
            actions.push(format!("removed incomplete snapshot {id}"));
        }
        for (path, _) in stale {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::store::io_err(&path)(e)),
            }
            actions.push(format!("removed stale lease {}", path.display()));
        }
        Ok(actions)
    }

    /// Snapshot id (cache-id) → the layer record that owns it. Unreadable records are skipped
    /// (fsck reports them).
    pub(crate) fn snapshot_owners(&self) -> Result<BTreeMap<String, Digest>, StoreError> {
        let mut owners = BTreeMap::new();
        for chain in self.list_layers()? {
            if let Ok(Some(rec)) = self.get_layer(&chain) {
                owners.insert(rec.cache_id, chain);
            }
        }
        Ok(owners)
    }

    /// Snapshots that no layer record and no live lease names. Call with the lock held.
    pub(crate) fn orphan_snapshots(
        &self,
        snapshots: &OverlaySnapshotter,
    ) -> Result<Vec<String>, StoreError> {
        let listed = snapshots.list()?;
        // Leases are read after listing: a snapshot created after the listing is not in it,
        // and one created before has its lease entry written already (both under the lock).
        let (live, _) = self.read_leases()?;
        let owned = self.snapshot_owners()?;
        Ok(listed
            .into_iter()
            .filter(|id| !owned.contains_key(id) && !live.snapshots.contains(id))
            .collect())
    }
}

/// Removes snapshots, children before parents (a snapshot with children refuses removal).
/// Returns the ids removed; the others are still in use by a snapshot outside `ids`.
pub(crate) fn remove_snapshots(snapshots: &OverlaySnapshotter, ids: Vec<String>) -> Vec<String> {
    let mut left: BTreeSet<String> = ids.into_iter().collect();
    let mut removed = Vec::new();
    loop {
        let before = left.len();
        left.retain(|id| match snapshots.remove(id) {
            Ok(()) => {
                removed.push(id.clone());
                false
            }
            Err(_) => true,
        });
        if left.is_empty() || left.len() == before {
            break;
        }
    }
    removed
}
