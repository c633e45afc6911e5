//! The local, Docker-shaped image store and build cache (layout: `docs/store-layout.md`).
//!
//! ```text
//! <root>/lock                                   store-wide flock (metadata updates only)
//! <root>/leases/<pid>-…                        what running processes use but nothing references yet
//! <root>/tmp/                                   temp files "<pid>-…" (stale ones removed on open)
//! <root>/blobs/sha256/<hex>                     layer blobs: built ones as tars, pulled ones as shipped
//! <root>/image/overlay2/imagedb/content/sha256/<image id>          config bytes
//! <root>/image/overlay2/imagedb/metadata/sha256/<id>/{parent,lastUpdated}
//! <root>/image/overlay2/layerdb/sha256/<chainID>/{diff,parent,size,cache-id,rbuild-blob.json}
//! <root>/image/overlay2/distribution/{diffid-by-digest,v2metadata-by-diffid}/sha256/<hex>
//! <root>/image/overlay2/distribution/compressed-by-diffid/sha256/<diffID hex>/<form>  (`compressed`)
//! <root>/image/overlay2/repositories.json
//! <root>/image/overlay2/indexdb/{content/sha256/<index id>,refs.json}   image indexes (`indexes`)
//! <root>/cache/sha256/<key hex>                 build cache records (JSON)
//! <root>/cache/by-parent/<parent hex|root>/<key hex>   index for miss explanations
//! <root>/overlay2/                              snapshots (owned by `snapshot::OverlaySnapshotter`)
//! ```
//!
//! Every file is written via temp file + fsync + rename; directories of records are renamed
//! into place whole, so readers never see half a record and the first writer wins.

// Three parts (docs/ARCHITECTURE.md, "store"): `content` (blobs, compressed forms, ingest),
// `meta` (images, layers, repositories, cache records, leases) and `gc` (snapshots, prune, check,
// fsck). `load` imports and exports whole images through both. The old flat paths stay
// re-exported (`store::blob`, `store::images`, …) so callers need not know the split.
pub mod content;
pub mod fsutil;
pub mod gc;
mod index_export;
pub mod load;
pub mod lock;
pub mod meta;

pub use content::{blob, compressed};
pub use gc::{check, fsck};
pub use meta::{cache, distribution, history, images, indexes, layers, lease};

pub use blob::BlobWriter;
pub use cache::CacheRecord;
pub use check::Problem;
pub use compressed::{LayerForm, ShippedBlob};
pub use fsck::{FsckOptions, FsckReport};
pub use gc::prune::{DiskUsage, PruneReport, RmiEvent, SnapshotPrune};
pub use history::HistoryRow;
pub use images::ImageSummary;
pub use layers::LayerRecord;
pub use lease::Leased;
pub use load::LoadedImage;
pub use lock::LockGuard;

use crate::digest::Digest;
use crate::image::ImageError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt store file {path}: {reason} (`rbuild fsck --repair` repairs the store)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("layer {chain_id}: {reason}")]
    BadLayer { chain_id: Digest, reason: String },
    #[error("image {0} not found")]
    ImageNotFound(String),
    #[error("image {image} needs layer {chain_id}, which is not in the store")]
    MissingLayer { image: Digest, chain_id: Digest },
    #[error("conflict: unable to delete {id} ({reason})")]
    Conflict { id: String, reason: String },
    #[error("cannot load {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("layer extraction callback failed for {chain_id}: {message}")]
    Extract { chain_id: Digest, message: String },
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A handle on the store. Cheap to clone; safe to share between threads and processes.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock_state: Arc<lock::LockState>,
    /// This process's lease file, created on first use; removed when the last clone drops.
    lease: Arc<std::sync::Mutex<Option<lease::LeaseFile>>>,
}

impl Store {
    /// Opens (creating the layout if needed) the store at `root`, and removes temp files left by
    /// processes that no longer run.
    pub fn open(root: impl AsRef<Path>) -> Result<Store, StoreError> {
        let root = root.as_ref().to_path_buf();
        let store = Store {
            lock_state: Arc::new(lock::LockState::new(root.join("lock"))),
            lease: Arc::default(),
            root,
        };
        for dir in [
            store.tmp_dir(),
            store.blobs_dir(),
            store.imagedb_content_dir(),
            store.imagedb_metadata_dir(),
            store.layerdb_dir(),
            store
                .distribution_dir()
                .join("diffid-by-digest")
                .join("sha256"),
            store
                .distribution_dir()
                .join("v2metadata-by-diffid")
                .join("sha256"),
            store.cache_dir(),
            store.cache_by_parent_dir(),
            store.leases_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        store.close_cache_dirs()?;
        fsutil::clean_stale_tmp(&store.tmp_dir())?;
        Ok(store)
    }

    /// `<root>/cache` and `<root>/cache/mounts` are 0700: what a RUN leaves in a cache mount (a
    /// setuid binary, a device node) must not be reachable by other users of the host (issue 16).
    /// A reader without the right to chmod (another user opening the store) leaves them as they are.
    fn close_cache_dirs(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let cache = self.root.join("cache");
        for dir in [cache.clone(), cache.join("mounts")] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let mode = std::fs::metadata(&dir)
                .map_err(io_err(&dir))?
                .permissions()
                .mode();
            if mode & 0o777 != 0o700 {
                match std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)) {
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                    r => r.map_err(io_err(&dir))?,
                }
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn image_dir(&self) -> PathBuf {
        self.root.join("image").join("overlay2")
    }

    pub(crate) fn imagedb_content_dir(&self) -> PathBuf {
        self.image_dir()
            .join("imagedb")
            .join("content")
            .join("sha256")
    }

    pub(crate) fn imagedb_metadata_dir(&self) -> PathBuf {
        self.image_dir()
            .join("imagedb")
            .join("metadata")
            .join("sha256")
    }

    pub(crate) fn layerdb_dir(&self) -> PathBuf {
        self.image_dir().join("layerdb").join("sha256")
    }

    pub(crate) fn distribution_dir(&self) -> PathBuf {
        self.image_dir().join("distribution")
    }

    pub(crate) fn repositories_path(&self) -> PathBuf {
        self.image_dir().join("repositories.json")
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("sha256")
    }

    pub(crate) fn cache_by_parent_dir(&self) -> PathBuf {
        self.root.join("cache").join("by-parent")
    }

    /// Where the blob with this digest is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Takes the store-wide metadata lock (reentrant within a thread, exclusive across threads
    /// and processes). Hold it only around metadata updates, never across a build step.
    pub fn lock(&self) -> Result<LockGuard, StoreError> {
        lock::LockGuard::acquire(&self.lock_state)
    }
}
