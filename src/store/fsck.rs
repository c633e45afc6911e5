//! `rbuild fsck`: verifies everything the store holds and, with `--repair`, fixes or removes
//! what is broken, one printed action per fix.
//!
//! What is verified (each failure is a [`Problem`]):
//! * every blob hashes to its name; every layer's blob decompresses to the layer's diffID;
//! * every layer record is readable, its chainID is sha256(parent chainID + " " + diffID), its
//!   parent is recorded, its blob is stored, and its snapshot exists, sits on the parent layer's
//!   snapshot and holds the layer's content: the diff dir is re-tarred with the layer writer and
//!   must give the diffID; when it does not (a loaded layer: its tar was not written by rbuild,
//!   or a layer with clamped mtimes) the blob is applied into scratch space and both trees are
//!   re-tarred with all mtimes clamped to 0, which must agree;
//! * no dangling references: repositories.json → imagedb → layerdb → blobs/snapshots, image
//!   parents, cache records → layers; no snapshot that no layer record or live lease owns.
//!
//! Repairs: a corrupt blob is deleted, then regenerated from the snapshot when the layer writer
//! reproduces it bit for bit; a snapshot with wrong content is emptied and the blob re-applied;
//! a layer that cannot be repaired is removed with its snapshot, and then so is everything that
//! depends on it (child layers, images, tags, cache records), each printed. The whole run holds
//! the store lock: builds keep running and wait for it only at their next metadata update.

use crate::digest::{chain_id, chain_ids, Digest, HashingReader, HashingWriter};
use crate::image::ImageConfig;
use crate::layer::{self, Compression, LayerOptions, WhiteoutMode};
use crate::snapshot::OverlaySnapshotter;
use crate::store::check::Problem;
use crate::store::{fsutil, gc, io_err, LayerRecord, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::path::Path;

/// Options of [`Store::fsck`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsckOptions {
    /// Fix or remove what is broken (otherwise only report).
    pub repair: bool,
}

/// What [`Store::fsck`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FsckReport {
    /// Problems of the first pass.
    pub found: Vec<Problem>,
    /// One line per repair made.
    pub actions: Vec<String>,
    /// Problems still there at the end (empty = the store verifies).
    pub remaining: Vec<Problem>,
    pub blobs: usize,
    pub layers: usize,
    pub images: usize,
    pub snapshots: usize,
    pub cache_records: usize,
}

/// Results of the expensive checks, kept across the passes of one run.
#[derive(Default)]
struct Memo {
    /// blob → what its content hashes to.
    blob_hash: HashMap<Digest, Digest>,
    /// blob → diffID of its decompressed content (Err: unreadable).
    blob_diff: HashMap<Digest, Result<Digest, String>>,
    /// cache-id → None if the snapshot verified, else why not.
    snapshot: HashMap<String, Option<String>>,
}

/// Counts of one scan.
#[derive(Default)]
struct Counts {
    blobs: usize,
    layers: usize,
    images: usize,
    snapshots: usize,
    cache_records: usize,
}

fn out_err(e: io::Error) -> StoreError {
    StoreError::Output(e)
}

impl Store {
    /// Verifies the store (and repairs it with `opts.repair`), printing problems and actions
    /// to `out` as they happen.
    pub fn fsck(
        &self,
        snapshots: &OverlaySnapshotter,
        opts: &FsckOptions,
        out: &mut dyn Write,
    ) -> Result<FsckReport, StoreError> {
        let _lock = self.lock()?;
        let mut report = FsckReport::default();
        if opts.repair {
            for a in self.recover(snapshots)? {
                writeln!(out, "repair: {a}").map_err(out_err)?;
                report.actions.push(a);
            }
        }
        let mut memo = Memo::default();
        let (mut problems, counts) = self.scan(snapshots, &mut memo)?;
        report.blobs = counts.blobs;
        report.layers = counts.layers;
        report.images = counts.images;
        report.snapshots = counts.snapshots;
        report.cache_records = counts.cache_records;
        for p in &problems {
            writeln!(out, "problem: {p}").map_err(out_err)?;
        }
        report.found = problems.clone();
        // Removing one thing can break what depends on it: repeat until nothing changes.
        let mut passes = 0;
        while opts.repair && !problems.is_empty() && passes < 8 {
            passes += 1;
            let mut acted = false;
            let mut orphans = Vec::new();
            // Tags first: removing a broken image rewrites repositories.json.
            problems.sort_by_key(|p| !matches!(p, Problem::RepositoriesCorrupt { .. }));
            for p in &problems {
                if let Problem::SnapshotOrphan { id } = p {
                    orphans.push(id.clone());
                    continue;
                }
                match self.repair(snapshots, p, &mut memo) {
                    Ok(actions) => {
                        for a in actions {
                            writeln!(out, "repair: {a}").map_err(out_err)?;
                            report.actions.push(a);
                            acted = true;
                        }
                    }
                    // One failed repair does not stop the others; the problem stays reported.
                    Err(e) => writeln!(out, "repair failed: {p}: {e}").map_err(out_err)?,
                }
            }
            for id in gc::remove_snapshots(snapshots, orphans) {
                let a = format!("removed orphaned snapshot {id}");
                writeln!(out, "repair: {a}").map_err(out_err)?;
                report.actions.push(a);
                acted = true;
            }
            problems = self.scan(snapshots, &mut memo)?.0;
            if !acted {
                break;
            }
        }
        for p in &problems {
            if opts.repair {
                writeln!(out, "unrepaired: {p}").map_err(out_err)?;
            }
        }
        report.remaining = problems;
        writeln!(
            out,
            "checked {} blobs, {} layers, {} snapshots, {} images, {} cache records: {} problems found, {} repairs, {} remaining",
            report.blobs,
            report.layers,
            report.snapshots,
            report.images,
            report.cache_records,
            report.found.len(),
            report.actions.len(),
            report.remaining.len()
        )
        .map_err(out_err)?;
        Ok(report)
    }

    /// One full verification pass (no changes).
    fn scan(
        &self,
        snapshots: &OverlaySnapshotter,
        memo: &mut Memo,
    ) -> Result<(Vec<Problem>, Counts), StoreError> {
        let mut problems = Vec::new();
        let mut counts = Counts::default();

        // Blobs.
        let blobs = self.list_blobs()?;
        counts.blobs = blobs.len();
        for blob in &blobs {
            let actual = match memo.blob_hash.get(blob) {
                Some(a) => a.clone(),
                None => {
                    let a = hash_file(&self.blob_path(blob))?;
                    memo.blob_hash.insert(blob.clone(), a.clone());
                    a
                }
            };
            if &actual != blob {
                problems.push(Problem::BlobDigest {
                    blob: blob.clone(),
                    actual,
                });
            }
        }
        let good_blob = |b: &Digest, memo: &Memo| {
            self.has_blob(b) && memo.blob_hash.get(b).is_none_or(|a| a == b)
        };

        // Layers.
        let chains = self.list_layers()?;
        counts.layers = chains.len();
        let mut records = BTreeMap::new();
        for c in &chains {
            match self.get_layer(c) {
                Ok(Some(rec)) => {
                    records.insert(c.clone(), rec);
                }
                Ok(None) => problems.push(Problem::LayerUnreadable {
                    chain_id: c.clone(),
                    reason: "the diff file is missing".into(),
                }),
                Err(e) => problems.push(Problem::LayerUnreadable {
                    chain_id: c.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        let listed: BTreeSet<String> = snapshots.list()?.into_iter().collect();
        counts.snapshots = listed.len();
        for rec in records.values() {
            let c = &rec.chain_id;
            let expected = chain_id(rec.parent.as_ref(), &rec.diff_id);
            if &expected != c {
                problems.push(Problem::LayerChainId {
                    chain_id: c.clone(),
                    expected,
                });
                continue;
            }
            if let Some(p) = &rec.parent {
                if !records.contains_key(p) {
                    problems.push(Problem::LayerParentMissing {
                        chain_id: c.clone(),
                        parent: p.clone(),
                    });
                    continue;
                }
            }
            let blob_ok = good_blob(&rec.blob, memo);
            if !blob_ok {
                problems.push(Problem::BlobMissing {
                    chain_id: c.clone(),
                    blob: rec.blob.clone(),
                });
            } else {
                let diff = match memo.blob_diff.get(&rec.blob) {
                    Some(d) => d.clone(),
                    None => {
                        let d = blob_diff_id(&self.blob_path(&rec.blob));
                        memo.blob_diff.insert(rec.blob.clone(), d.clone());
                        d
                    }
                };
                match diff {
                    Ok(d) if d == rec.diff_id => {}
                    Ok(actual) => problems.push(Problem::BlobDiffId {
                        chain_id: c.clone(),
                        blob: rec.blob.clone(),
                        actual,
                    }),
                    Err(reason) => problems.push(Problem::LayerUnreadable {
                        chain_id: c.clone(),
                        reason: format!("blob {}: {reason}", rec.blob),
                    }),
                }
            }
            if rec.cache_id.is_empty() || !listed.contains(&rec.cache_id) {
                problems.push(Problem::SnapshotMissing {
                    chain_id: c.clone(),
                    cache_id: rec.cache_id.clone(),
                });
                continue;
            }
            if !self.snapshot_on_parent(snapshots, rec, &records)? {
                problems.push(Problem::SnapshotParent {
                    chain_id: c.clone(),
                    cache_id: rec.cache_id.clone(),
                });
                continue;
            }
            let verdict = match memo.snapshot.get(&rec.cache_id) {
                Some(v) => v.clone(),
                None => {
                    let v = self.verify_snapshot(snapshots, rec, blob_ok)?;
                    memo.snapshot.insert(rec.cache_id.clone(), v.clone());
                    v
                }
            };
            if let Some(reason) = verdict {
                problems.push(Problem::SnapshotContent {
                    chain_id: c.clone(),
                    cache_id: rec.cache_id.clone(),
                    reason,
                });
            }
        }

        // Compressed forms (a cache: repair drops the record, the next export remakes it).
        for (diff_id, form, f) in self.list_compressed_forms()? {
            let reason = if !good_blob(&f.digest, memo) {
                Some("is missing or corrupt".to_string())
            } else {
                let d = memo
                    .blob_diff
                    .entry(f.digest.clone())
                    .or_insert_with(|| blob_diff_id(&self.blob_path(&f.digest)))
                    .clone();
                match d {
                    Ok(d) if d == diff_id => None,
                    Ok(d) => Some(format!("decompresses to {d}")),
                    Err(e) => Some(e),
                }
            };
            if let Some(reason) = reason {
                problems.push(Problem::CompressedForm {
                    diff_id,
                    form,
                    blob: f.digest,
                    reason,
                });
            }
        }

        // Snapshots nobody owns (leased ones belong to running builds).
        for id in self.orphan_snapshots(snapshots)? {
            problems.push(Problem::SnapshotOrphan { id });
        }

        // Images.
        let images = self.list_image_ids()?;
        counts.images = images.len();
        let image_set: BTreeSet<&Digest> = images.iter().collect();
        for image in &images {
            let bytes = self.image_config(image)?;
            let actual = Digest::of_bytes(&bytes);
            if &actual != image {
                problems.push(Problem::ConfigDigest {
                    image: image.clone(),
                    actual,
                });
                continue;
            }
            match ImageConfig::from_bytes(&bytes) {
                Ok(cfg) => {
                    if let Some(missing) = chain_ids(&cfg.rootfs.diff_ids)
                        .into_iter()
                        .find(|c| !records.contains_key(c))
                    {
                        problems.push(Problem::LayerMissing {
                            image: image.clone(),
                            chain_id: missing,
                        });
                    }
                }
                Err(e) => problems.push(Problem::ConfigInvalid {
                    image: image.clone(),
                    reason: e.to_string(),
                }),
            }
            match self.image_parent(image) {
                Ok(Some(p)) if !image_set.contains(&p) => {
                    problems.push(Problem::ImageParentMissing {
                        image: image.clone(),
                        parent: p,
                    })
                }
                Ok(_) => {}
                Err(_) => problems.push(Problem::ImageParentMissing {
                    image: image.clone(),
                    parent: Digest::of_bytes(b""),
                }),
            }
        }
        for meta in crate::store::blob::list_digest_names(&self.imagedb_metadata_dir())? {
            if !image_set.contains(&meta) {
                problems.push(Problem::ImageMetadataOrphan { image: meta });
            }
        }
        match self.read_repositories() {
            Ok(repos) => {
                for refs in repos.repositories.values() {
                    for (r, id) in refs {
                        if !image_set.contains(id) {
                            problems.push(Problem::TagDangling {
                                reference: r.clone(),
                                image: id.clone(),
                            });
                        }
                    }
                }
            }
            Err(e) => problems.push(Problem::RepositoriesCorrupt {
                reason: e.to_string(),
            }),
        }

        // Cache records.
        let keys = self.cache_keys()?;
        counts.cache_records = keys.len();
        for key in keys {
            match self.cache_get(&key) {
                Ok(Some(rec)) => {
                    if let Some(c) = rec.chain_id {
                        if !records.contains_key(&c) {
                            problems.push(Problem::CacheDangling { key, chain_id: c });
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => problems.push(Problem::CacheUnreadable {
                    key,
                    reason: e.to_string(),
                }),
            }
        }
        Ok((problems, counts))
    }

    /// The snapshot's nearest lower dir is the parent layer's snapshot (none for a base layer).
    fn snapshot_on_parent(
        &self,
        snapshots: &OverlaySnapshotter,
        rec: &LayerRecord,
        records: &BTreeMap<Digest, LayerRecord>,
    ) -> Result<bool, StoreError> {
        let Ok(snap) = snapshots.get(&rec.cache_id) else {
            return Ok(false);
        };
        let parent_link = match rec.parent.as_ref().and_then(|p| records.get(p)) {
            Some(p) => match snapshots.get(&p.cache_id) {
                Ok(ps) => Some(format!("l/{}", ps.link)),
                // The parent's own snapshot problem is reported on the parent.
                Err(_) => return Ok(true),
            },
            None => None,
        };
        Ok(snap.lower.first() == parent_link.as_ref())
    }

    /// None when the snapshot's diff dir holds exactly the layer's content, else why not.
    fn verify_snapshot(
        &self,
        snapshots: &OverlaySnapshotter,
        rec: &LayerRecord,
        blob_ok: bool,
    ) -> Result<Option<String>, StoreError> {
        let diff = snapshots.diff_dir(&rec.cache_id)?;
        let plain = LayerOptions {
            compression: Compression::Uncompressed,
            clamp_mtime: None,
            ..Default::default()
        };
        match layer::write_layer(&diff, io::sink(), &plain) {
            Ok((_, info)) if info.diff_id == rec.diff_id => return Ok(None),
            Ok(_) => {}
            Err(e) => return Ok(Some(format!("cannot read it: {e}"))),
        }
        if !blob_ok {
            return Ok(Some(
                "re-tarred it does not give the diffID, and the blob to compare with is gone"
                    .into(),
            ));
        }
        // Not written by our layer writer (or mtimes were clamped): compare trees instead.
        let scratch = fsutil::temp_dir(&self.tmp_dir())?;
        if let Err(e) = apply_blob(&self.blob_path(&rec.blob), scratch.path()) {
            return Ok(Some(format!(
                "cannot apply blob {} to compare: {e}",
                rec.blob
            )));
        }
        let canon = LayerOptions {
            compression: Compression::Uncompressed,
            clamp_mtime: Some(0),
            ..Default::default()
        };
        let want = layer::write_layer(scratch.path(), io::sink(), &canon)
            .map(|(_, i)| i.diff_id)
            .map_err(|e| e.to_string());
        let have = layer::write_layer(&diff, io::sink(), &canon)
            .map(|(_, i)| i.diff_id)
            .map_err(|e| e.to_string());
        Ok(match (want, have) {
            (Ok(w), Ok(h)) if w == h => None,
            (Ok(_), Ok(_)) => Some(format!(
                "its content differs from layer {} (blob {})",
                rec.diff_id, rec.blob
            )),
            (Err(e), _) | (_, Err(e)) => Some(format!("cannot compare: {e}")),
        })
    }

    /// Fixes one problem; returns the actions taken (empty: nothing to do or not repairable).
    fn repair(
        &self,
        snapshots: &OverlaySnapshotter,
        problem: &Problem,
        memo: &mut Memo,
    ) -> Result<Vec<String>, StoreError> {
        let mut actions = Vec::new();
        match problem {
            Problem::BlobDigest { blob, .. } => {
                self.remove_blob(blob)?;
                self.remove_distribution(Some(blob), None)?;
                memo.blob_hash.remove(blob);
                memo.blob_diff.remove(blob);
                actions.push(format!("removed corrupt blob {blob}"));
            }
            Problem::CompressedForm { diff_id, form, .. } => {
                self.remove_compressed_form(diff_id, form)?;
                actions.push(format!("dropped compressed form {form} of {diff_id}"));
            }
            Problem::BlobMissing { chain_id, blob } => {
                let Some(rec) = self.get_layer(chain_id).ok().flatten() else {
                    return Ok(actions);
                };
                if self.regenerate_blob(snapshots, &rec)? {
                    memo.blob_hash.insert(blob.clone(), blob.clone());
                    actions.push(format!(
                        "regenerated blob {blob} of layer {chain_id} from its snapshot"
                    ));
                } else {
                    actions.extend(self.drop_layer(snapshots, chain_id, memo)?);
                }
            }
            Problem::SnapshotContent {
                chain_id, cache_id, ..
            } => {
                let rec = self.get_layer(chain_id).ok().flatten();
                let reapplied = match &rec {
                    Some(rec) if self.has_blob(&rec.blob) => {
                        let diff = snapshots.diff_dir(cache_id)?;
                        empty_dir(&diff)?;
                        apply_blob(&self.blob_path(&rec.blob), &diff).is_ok()
                    }
                    _ => false,
                };
                memo.snapshot.remove(cache_id);
                if reapplied {
                    actions.push(format!(
                        "re-extracted snapshot {cache_id} of layer {chain_id} from its blob"
                    ));
                } else {
                    actions.extend(self.drop_layer(snapshots, chain_id, memo)?);
                }
            }
            Problem::LayerUnreadable { chain_id, .. }
            | Problem::LayerChainId { chain_id, .. }
            | Problem::LayerParentMissing { chain_id, .. }
            | Problem::BlobDiffId { chain_id, .. }
            | Problem::SnapshotMissing { chain_id, .. }
            | Problem::SnapshotParent { chain_id, .. } => {
                actions.extend(self.drop_layer(snapshots, chain_id, memo)?);
            }
            Problem::ConfigDigest { image, .. }
            | Problem::ConfigInvalid { image, .. }
            | Problem::LayerMissing { image, .. } => {
                for r in self.delete_image(image)? {
                    actions.push(format!("untagged {r}"));
                }
                actions.push(format!("removed broken image {image}"));
            }
            Problem::ImageParentMissing { image, .. } => {
                let p = self.imagedb_metadata_dir().join(image.hex()).join("parent");
                remove_file_opt(&p)?;
                actions.push(format!("removed the dangling parent of image {image}"));
            }
            Problem::ImageMetadataOrphan { image } => {
                let p = self.imagedb_metadata_dir().join(image.hex());
                match std::fs::remove_dir_all(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&p)(e)),
                }
                actions.push(format!("removed metadata of missing image {image}"));
            }
            Problem::RepositoriesCorrupt { .. } => {
                // Tags are not derivable from content: keep the bad file for the user and
                // start from an empty one, so every other command works again.
                let p = self.repositories_path();
                let aside = p.with_extension(format!(
                    "json.corrupt-{}",
                    jiff::Timestamp::now().as_second()
                ));
                std::fs::rename(&p, &aside).map_err(io_err(&p))?;
                fsutil::write_atomic(&self.tmp_dir(), &p, br#"{"Repositories":{}}"#)?;
                actions.push(format!(
                    "moved unreadable repositories.json to {} (its tags are lost) and started an empty one",
                    aside.display()
                ));
            }
            Problem::TagDangling { reference, image } => {
                self.remove_reference(reference)?;
                actions.push(format!(
                    "untagged {reference} (its image {image} is missing)"
                ));
            }
            Problem::CacheUnreadable { key, .. } => {
                let p = self.cache_dir().join(key.hex());
                remove_file_opt(&p)?;
                actions.push(format!("removed unreadable cache record {key}"));
            }
            Problem::CacheDangling { key, .. } => {
                self.cache_delete(key)?;
                actions.push(format!("removed cache record {key} (its layer is gone)"));
            }
            Problem::SnapshotOrphan { .. } => {}
        }
        Ok(actions)
    }

    /// Removes a layer record and its snapshot (children go in later passes, as their parent
    /// is now missing).
    fn drop_layer(
        &self,
        snapshots: &OverlaySnapshotter,
        chain: &Digest,
        memo: &mut Memo,
    ) -> Result<Vec<String>, StoreError> {
        let mut actions = Vec::new();
        let dir = self.layer_dir(chain);
        if !dir.exists() {
            return Ok(actions);
        }
        let cache_id = fsutil::read_opt(&dir.join("cache-id"))
            .ok()
            .flatten()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let doomed = fsutil::temp_dir(&self.tmp_dir())?.keep();
        let target = doomed.join("layer");
        std::fs::rename(&dir, &target).map_err(io_err(&dir))?;
        std::fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        actions.push(format!("removed broken layer {chain}"));
        if !cache_id.is_empty() && snapshots.get(&cache_id).is_ok() {
            memo.snapshot.remove(&cache_id);
            // If children's snapshots still sit on it, it goes after them, as an orphan.
            if snapshots.remove(&cache_id).is_ok() {
                actions.push(format!("removed its snapshot {cache_id}"));
            }
        }
        Ok(actions)
    }

    /// Rebuilds a missing blob by re-tarring the snapshot, when that reproduces the recorded
    /// digest exactly (layers rbuild wrote itself, default compression, no clamped mtimes).
    fn regenerate_blob(
        &self,
        snapshots: &OverlaySnapshotter,
        rec: &LayerRecord,
    ) -> Result<bool, StoreError> {
        let Ok(diff) = snapshots.diff_dir(&rec.cache_id) else {
            return Ok(false);
        };
        if !diff.is_dir() {
            return Ok(false);
        }
        let compression = if rec.media_type.ends_with("gzip") {
            Compression::default()
        } else if rec.media_type.ends_with("zstd") {
            Compression::Zstd { level: 3 }
        } else {
            Compression::Uncompressed
        };
        let opts = LayerOptions {
            compression,
            clamp_mtime: None,
            ..Default::default()
        };
        let writer = self.new_blob_writer()?;
        let Ok((writer, info)) = layer::write_layer(&diff, writer, &opts) else {
            return Ok(false);
        };
        if info.diff_id != rec.diff_id {
            return Ok(false);
        }
        Ok(writer.commit(Some(&rec.blob)).is_ok())
    }

    /// Removes one `name:tag` / `name@digest` entry from repositories.json.
    fn remove_reference(&self, reference: &str) -> Result<(), StoreError> {
        let mut repos = self.read_repositories()?;
        for refs in repos.repositories.values_mut() {
            refs.remove(reference);
        }
        repos.repositories.retain(|_, refs| !refs.is_empty());
        self.write_repositories(&repos)
    }
}

fn hash_file(path: &Path) -> Result<Digest, StoreError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut w).map_err(io_err(path))?;
    Ok(w.finish().1)
}

/// sha256 of the blob's decompressed content.
fn blob_diff_id(path: &Path) -> Result<Digest, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let (reader, _) = layer::decompress(io::BufReader::new(f)).map_err(|e| e.to_string())?;
    let mut hashing = HashingReader::new(reader);
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| format!("decompressing: {e}"))?;
    Ok(hashing.finish().1)
}

/// Applies a layer blob into `dir` the way snapshots are made (overlay whiteouts, owners kept).
fn apply_blob(blob: &Path, dir: &Path) -> Result<(), String> {
    let f = std::fs::File::open(blob).map_err(|e| e.to_string())?;
    let (reader, _) = layer::decompress(io::BufReader::new(f)).map_err(|e| e.to_string())?;
    layer::apply(
        reader,
        dir,
        &layer::ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            max_bytes: None,
            same_owner: true,
        },
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn empty_dir(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = entry.map_err(io_err(dir))?.path();
        let res = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        res.map_err(io_err(&p))?;
    }
    Ok(())
}

fn remove_file_opt(p: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(p)(e)),
    }
}
