//! OCI image layout (`OCI:image-layout.md`) as a directory or a tar.
//!
//! `index.json` descriptors carry `org.opencontainers.image.ref.name` = tag and
//! `io.containerd.image.name` = full normalized reference, as BuildKit/containerd write them.

use crate::digest::{Digest, HashingWriter};
use crate::export::layout::{blob_entries, index_descriptors, OCI_LAYOUT};
use crate::export::tar_writer::{write_tar, Entry, MODE_BLOB, MODE_FILE};
use crate::export::{created_mtime, ExportError, ExportImage};
use crate::image::manifest::{self, Descriptor, Index, ManifestKind, ANNOTATION_REF_NAME};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `image` as an OCI layout tar (no `manifest.json`) and returns `out`.
pub fn oci_layout_tar<W: Write>(image: &ExportImage, out: W) -> Result<W, ExportError> {
    let (config, refs) = image.validate()?;
    let mtime = created_mtime(&config);
    let config_digest = Digest::of_bytes(&image.config_bytes);
    let built = manifest::build(ManifestKind::Oci, &image.config_bytes, &image.layer_descs())?;
    let mut entries = blob_entries(image, &config_digest, &built, mtime);
    entries.push(Entry::bytes(
        "index.json",
        MODE_FILE,
        0,
        manifest::build_index(&index_descriptors(&built.descriptor, &refs))?,
    ));
    entries.push(Entry::bytes(
        "oci-layout",
        MODE_BLOB,
        0,
        OCI_LAYOUT.as_bytes().to_vec(),
    ));
    write_tar(out, entries)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `target` via a temp file in the same directory, fsync and rename.
fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(target))?;
    tmp.as_file().sync_all().map_err(io_err(target))?;
    tmp.persist(target).map_err(|e| io_err(target)(e.error))?;
    Ok(())
}

/// Copies a blob into `blobs/sha256/` unless an identical one is there, verifying its digest.
fn put_blob_file(blobs: &Path, src: &Path, digest: &Digest, size: u64) -> Result<(), ExportError> {
    let target = blobs.join(digest.hex());
    if fs::metadata(&target).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let mut tmp = tempfile::NamedTempFile::new_in(blobs).map_err(io_err(blobs))?;
    let mut input = File::open(src).map_err(io_err(src))?;
    let mut w = HashingWriter::new(tmp.as_file_mut());
    io::copy(&mut input, &mut w).map_err(io_err(src))?;
    let (_, actual, count) = w.finish();
    if &actual != digest || count != size {
        return Err(ExportError::BlobMismatch {
            path: src.to_path_buf(),
            expected: digest.clone(),
            expected_size: size,
            actual,
            actual_size: count,
        });
    }
    tmp.as_file().sync_all().map_err(io_err(&target))?;
    tmp.persist(&target).map_err(|e| io_err(&target)(e.error))?;
    Ok(())
}

/// Copies an image's layer blobs, config and manifest into `blobs` (`blobs/sha256/`).
pub(crate) fn put_image_blobs(
    image: &ExportImage,
    blobs: &Path,
    built: &manifest::BuiltManifest,
) -> Result<(), ExportError> {
    for (desc, path) in &image.layers {
        put_blob_file(blobs, path, &desc.digest, desc.size)?;
    }
    write_blob(blobs, &image.config_bytes)?;
    write_blob(blobs, &built.bytes)
}

/// Writes `bytes` as the blob named by their digest.
pub(crate) fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    write_atomic(&blobs.join(Digest::of_bytes(bytes).hex()), bytes)
}

/// Writes (or adds to) an OCI layout directory. Existing `index.json` entries with the same
/// `org.opencontainers.image.ref.name` are replaced; other images in the layout are kept.
pub fn oci_layout_dir(image: &ExportImage, dir: &Path) -> Result<(), ExportError> {
    let (_, refs) = image.validate()?;
    let blobs: PathBuf = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let built = manifest::build(ManifestKind::Oci, &image.config_bytes, &image.layer_descs())?;
    put_image_blobs(image, &blobs, &built)?;
    merge_index_json(dir, index_descriptors(&built.descriptor, &refs))
}

/// Adds `new_descs` to the layout's `index.json`, replacing entries of the same reference name
/// (or, unnamed, the same digest), and writes `oci-layout` if absent.
pub(crate) fn merge_index_json(dir: &Path, new_descs: Vec<Descriptor>) -> Result<(), ExportError> {
    let index_path = dir.join("index.json");
    let mut manifests: Vec<Descriptor> = match fs::read(&index_path) {
        Ok(bytes) => Index::from_bytes(&bytes)?.manifests,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&index_path)(e)),
    };
    let ref_name = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
    manifests.retain(|old| {
        !new_descs
            .iter()
            .any(|n| match (ref_name(old), ref_name(n)) {
                (Some(a), Some(b)) => a == b,
                (None, None) => old.digest == n.digest,
                _ => false,
            })
    });
    manifests.extend(new_descs);
    write_atomic(&index_path, &manifest::build_index(&manifests)?)?;
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        write_atomic(&layout, OCI_LAYOUT.as_bytes())?;
    }
    Ok(())
}
