//! Compressed forms of stored layers, made when an export or a push first needs them and then kept.
//!
//! A build stores each new layer once, as an uncompressed tar (its blob digest is its diffID), as
//! Docker's layer store and BuildKit's docker exporter do: compressing at build time cost most of a
//! cold build's CPU (gzip-6 runs at ~50 MB/s a core), and a docker-archive ships tars anyway. The
//! first `-o type=oci`, push or cache export that asks for gzip or zstd compresses the stored tar
//! (same encoder, same 1 MiB blocks, so the same bytes the build would have written) and records
//! the result here; later exports reuse it:
//!
//! ```text
//! <root>/image/overlay2/distribution/compressed-by-diffid/sha256/<diffID hex>/<form>
//!     {"digest","size","mediaType"}     <form> = gzip-6-p2, zstd-3-p1, ... (codec, level, profile)
//! ```
//!
//! GC keeps a form while a layer with its diffID lives; `fsck` drops forms whose blob is gone.

use crate::digest::Digest;
use crate::layer::{Compression, LayerError, Profile};
use crate::store::blob::list_digest_names;
use crate::store::{fsutil, io_err, LayerRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

/// Which blob each layer of an export ships as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerForm {
    /// The blob as stored: built layers as uncompressed tars, pulled and loaded ones as they came.
    AsStored,
    /// Layers stored uncompressed ship compressed with this codec and profile; layers stored
    /// compressed ship as they are (BuildKit's behaviour without `force-compression`), so a
    /// pulled base layer keeps its digest.
    Compress(Compression, Profile),
}

/// One recorded compressed form.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CompressedForm {
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// The blob a layer ships as: digest, size, media type and the file holding it.
#[derive(Debug, Clone)]
pub struct ShippedBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

const PLAIN_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_PLAIN_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The file name of a form: codec, level and output profile decide its bytes.
fn form_name(c: Compression, p: Profile) -> Option<String> {
    match c {
        Compression::Gzip { level } => Some(format!("gzip-{level}-p{}", p.number())),
        Compression::Zstd { level } => Some(format!("zstd-{level}-p{}", p.number())),
        Compression::Uncompressed => None,
    }
}

impl Store {
    fn compressed_dir(&self) -> PathBuf {
        self.distribution_dir()
            .join("compressed-by-diffid")
            .join("sha256")
    }

    /// The recorded compressed form of `diff_id`, if any (its blob may be gone: callers check).
    fn compressed_form(
        &self,
        diff_id: &Digest,
        name: &str,
    ) -> Result<Option<CompressedForm>, StoreError> {
        fsutil::read_json_opt(&self.compressed_dir().join(diff_id.hex()).join(name))
    }

    /// The blob layer `rec` ships as under `form`, compressing (once) if needed.
    ///
    /// The caller keeps the layer alive (an image reference or a lease); a new compressed blob is
    /// committed, recorded and leased under the store lock, so a concurrent prune cannot take it.
    pub fn shipped_blob(
        &self,
        rec: &LayerRecord,
        form: LayerForm,
    ) -> Result<ShippedBlob, StoreError> {
        let stored = ShippedBlob {
            digest: rec.blob.clone(),
            size: rec.blob_size,
            media_type: rec.media_type.clone(),
            path: self.blob_path(&rec.blob),
        };
        let (c, p) = match form {
            LayerForm::AsStored => return Ok(stored),
            LayerForm::Compress(c, p) => (c, p),
        };
        let Some(name) = form_name(c, p) else {
            return Ok(stored);
        };
        if rec.media_type != PLAIN_TAR && rec.media_type != DOCKER_PLAIN_TAR {
            return Ok(stored);
        }
        if let Some(f) = self.compressed_form(&rec.diff_id, &name)? {
            if self.has_blob(&f.digest) {
                return Ok(ShippedBlob {
                    path: self.blob_path(&f.digest),
                    digest: f.digest,
                    size: f.size,
                    media_type: f.media_type,
                });
            }
        }
        let src = self.blob_path(&rec.blob);
        let input = std::fs::File::open(&src).map_err(io_err(&src))?;
        // The blob writer hashes what it stores and checks it against the digest `compress_tar`
        // computed (a second pass over the compressed bytes only: compression costs far more).
        let writer = BufWriter::with_capacity(1 << 20, self.new_blob_writer()?);
        let (writer, info) = crate::layer::compression::compress_tar(
            BufReader::with_capacity(1 << 20, input),
            writer,
            c,
            p,
        )
        .map_err(|e| match e {
            LayerError::Read(source) => io_err(&src)(source),
            other => StoreError::Corrupt {
                path: src.clone(),
                reason: other.to_string(),
            },
        })?;
        if info.diff_id != rec.diff_id {
            return Err(StoreError::Corrupt {
                path: src,
                reason: format!(
                    "blob hashes to {} but the layer's diffID is {}",
                    info.diff_id, rec.diff_id
                ),
            });
        }
        let writer = writer
            .into_inner()
            .map_err(|e| io_err(&src)(e.into_error()))?;
        let _lock = self.lock()?;
        let digest = writer.commit(Some(&info.digest))?;
        self.lease_blob(&digest)?;
        let form = CompressedForm {
            digest: digest.clone(),
            size: info.size,
            media_type: info.media_type.clone(),
        };
        let path = self.compressed_dir().join(rec.diff_id.hex()).join(&name);
        let bytes = serde_json::to_vec(&form).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fsutil::write_atomic(&self.tmp_dir(), &path, &bytes)?;
        self.write_digest_to_diff(&digest, &rec.diff_id)?;
        Ok(ShippedBlob {
            path: self.blob_path(&digest),
            digest,
            size: info.size,
            media_type: info.media_type,
        })
    }

    /// Every recorded form, by diffID.
    pub(crate) fn list_compressed_forms(
        &self,
    ) -> Result<Vec<(Digest, String, CompressedForm)>, StoreError> {
        let dir = self.compressed_dir();
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for diff in list_digest_names(&dir)? {
            let d = dir.join(diff.hex());
            for entry in std::fs::read_dir(&d).map_err(io_err(&d))? {
                let entry = entry.map_err(io_err(&d))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(f) = self.compressed_form(&diff, &name)? {
                    out.push((diff.clone(), name, f));
                }
            }
        }
        Ok(out)
    }

    /// Removes one recorded form (not its blob).
    pub(crate) fn remove_compressed_form(
        &self,
        diff_id: &Digest,
        name: &str,
    ) -> Result<(), StoreError> {
        let d = self.compressed_dir().join(diff_id.hex());
        let p = d.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
        // The last form gone: the diffID's directory goes too (ENOTEMPTY: another form remains).
        let _ = std::fs::remove_dir(&d);
        Ok(())
    }

    /// GC: drops the forms of diffIDs no layer has any more; returns the blobs the rest use.
    pub(crate) fn gc_compressed_forms(
        &self,
        live_diffs: &BTreeSet<Digest>,
    ) -> Result<BTreeSet<Digest>, StoreError> {
        let mut live = BTreeSet::new();
        for (diff, name, f) in self.list_compressed_forms()? {
            if live_diffs.contains(&diff) {
                live.insert(f.digest);
            } else {
                self.remove_compressed_form(&diff, &name)?;
            }
        }
        Ok(live)
    }
}
