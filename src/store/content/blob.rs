//! Content-addressed blob writes: temp file in `<root>/tmp`, hashed while written, verified,
//! fsynced and renamed without replacing (first writer wins; contents are identical anyway).

use crate::digest::{Digest, HashingWriter};
use crate::store::{fsutil, io_err, Store, StoreError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A blob being written. Dropping it without `commit` removes the temp file.
pub struct BlobWriter {
    inner: Sink,
    blobs_dir: PathBuf,
}

/// Hashing on the way in, or not: a writer that hashes its own output (the layer writer) hands
/// the digest to `commit`, and a second sha256 pass over the same bytes would only cost time.
enum Sink {
    Hashing(HashingWriter<tempfile::NamedTempFile>),
    Trusted(tempfile::NamedTempFile, u64),
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Sink::Hashing(w) => w.write(buf),
            Sink::Trusted(f, n) => {
                let k = f.write(buf)?;
                *n += k as u64;
                Ok(k)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Sink::Hashing(w) => w.flush(),
            Sink::Trusted(f, _) => f.flush(),
        }
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        match &self.inner {
            Sink::Hashing(w) => w.count(),
            Sink::Trusted(_, n) => *n,
        }
    }

    /// Finishes the blob: verifies it against `expected` (if given), makes it durable and moves
    /// it to `blobs/sha256/<hex>`. Returns its digest. A trusted writer takes `expected` as the
    /// digest (without one, it hashes the file).
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let (tmp, digest) = match self.inner {
            Sink::Hashing(w) => {
                let (tmp, digest, _) = w.finish();
                (tmp, digest)
            }
            Sink::Trusted(tmp, _) => match expected {
                Some(d) => (tmp, d.clone()),
                None => {
                    let mut f = tmp.reopen().map_err(io_err(tmp.path()))?;
                    let mut h = HashingWriter::new(io::sink());
                    io::copy(&mut f, &mut h).map_err(io_err(tmp.path()))?;
                    (tmp, h.finish().1)
                }
            },
        };
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
    /// Starts writing a blob.
    pub fn new_blob_writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(BlobWriter {
            inner: Sink::Hashing(HashingWriter::new(fsutil::temp_file(&self.tmp_dir())?)),
            blobs_dir: self.blobs_dir(),
        })
    }

    /// Starts writing a blob whose digest the caller computes over exactly the bytes it writes
    /// and passes to `commit` (no second hash).
    pub fn new_trusted_blob_writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(BlobWriter {
            inner: Sink::Trusted(fsutil::temp_file(&self.tmp_dir())?, 0),
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
        fsutil::list_digest_names(&self.blobs_dir())
    }
}
