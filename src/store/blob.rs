//! Content-addressed blob writes: temp file in `<root>/tmp`, hashed while written, verified,
//! fsynced and renamed without replacing (first writer wins; contents are identical anyway).

use crate::digest::{Digest, HashingWriter};
use crate::store::{fsutil, io_err, Store, StoreError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A blob being written. It hashes every byte on the way in, so what `commit` stores is always
/// named by the sha256 of the bytes actually written, and checked against the digest the caller
/// expects. There is no trusted path: a producer that needs the digest (the layer writer) takes
/// it from [`BlobWriter::digest`] instead of hashing the same bytes a second time.
/// Dropping it without `commit` removes the temp file.
pub struct BlobWriter {
    inner: HashingWriter<tempfile::NamedTempFile>,
    blobs_dir: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.inner.count()
    }

    /// The sha256 of the bytes written so far: the digest `commit` will store the blob under.
    pub fn digest(&self) -> Digest {
        self.inner.digest()
    }

    /// Finishes the blob: checks the digest of the bytes written against `expected` (the
    /// caller's digest, e.g. from a manifest; `None` when the bytes define it), makes it durable
    /// and moves it to `blobs/sha256/<hex>`. Returns its digest.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let (tmp, digest, _) = self.inner.finish();
        if let Some(exp) = expected {
            if exp != &digest {
                return Err(StoreError::DigestMismatch {
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        let target = self.blobs_dir.join(digest.hex());
        if target.is_file() {
            return Ok(digest);
        }
        tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        match tmp.persist_noclobber(&target) {
            Ok(_) => fsutil::sync_dir(&self.blobs_dir)?,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&target)(e.error)),
        }
        Ok(digest)
    }
}

impl Store {
    /// Starts writing a blob (hashed as written, verified on commit).
    pub fn new_blob_writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(BlobWriter {
            inner: HashingWriter::new(fsutil::temp_file(&self.tmp_dir())?),
            blobs_dir: self.blobs_dir(),
        })
    }

    /// Copies a file into the blob store (verified against `expected`), unless already there.
    pub fn put_blob_file(
        &self,
        src: &Path,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(d) = expected {
            let p = self.blob_path(d);
            if let Ok(m) = std::fs::metadata(&p) {
                return Ok((d.clone(), m.len()));
            }
        }
        let mut w = self.new_blob_writer()?;
        let mut f = std::fs::File::open(src).map_err(io_err(src))?;
        io::copy(&mut f, &mut w).map_err(io_err(src))?;
        let size = w.size();
        Ok((w.commit(expected)?, size))
    }

    /// Removes a blob; missing blobs are not an error.
    pub(crate) fn remove_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let p = self.blob_path(digest);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Digests of all stored blobs.
    pub(crate) fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        list_digest_names(&self.blobs_dir())
    }
}

/// Entries of a `sha256/` directory whose names are valid hex digests (others ignored).
pub(crate) fn list_digest_names(dir: &Path) -> Result<Vec<Digest>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(d) = entry
            .file_name()
            .to_str()
            .and_then(|n| Digest::from_hex(n).ok())
        {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}
