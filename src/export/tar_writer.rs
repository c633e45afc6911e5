//! A deterministic tar writer for archive outputs: entries sorted by name, duplicates dropped,
//! uid/gid 0, no user/group names, fixed modes and mtimes.

use crate::digest::{Digest, HashingReader};
use crate::export::ExportError;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

pub const MODE_BLOB: u32 = 0o444;
pub const MODE_FILE: u32 = 0o644;
pub const MODE_DIR: u32 = 0o755;

/// Where an entry's content comes from.
#[derive(Debug, Clone)]
pub enum Content {
    Dir,
    Bytes(Vec<u8>),
    /// A blob file streamed as is and verified against its digest and size.
    Blob {
        path: PathBuf,
        digest: Digest,
        size: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the archive; directories end with `/`.
    pub name: String,
    pub mode: u32,
    pub mtime: u64,
    pub content: Content,
}

impl Entry {
    pub fn dir(name: &str) -> Self {
        Entry {
            name: name.to_string(),
            mode: MODE_DIR,
            mtime: 0,
            content: Content::Dir,
        }
    }

    pub fn bytes(name: &str, mode: u32, mtime: u64, data: Vec<u8>) -> Self {
        Entry {
            name: name.to_string(),
            mode,
            mtime,
            content: Content::Bytes(data),
        }
    }

    pub fn blob(name: &str, mtime: u64, path: PathBuf, digest: Digest, size: u64) -> Self {
        Entry {
            name: name.to_string(),
            mode: MODE_BLOB,
            mtime,
            content: Content::Blob { path, digest, size },
        }
    }
}

/// Writes `entries` (sorted, first of each name kept) as a tar stream and returns the writer.
pub fn write_tar<W: Write>(out: W, mut entries: Vec<Entry>) -> Result<W, ExportError> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries.dedup_by(|later, earlier| later.name == earlier.name);
    let mut builder = tar::Builder::new(out);
    for e in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(&e.name).map_err(ExportError::Write)?;
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(e.mtime);
        match &e.content {
            Content::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_cksum();
                builder
                    .append(&h, std::io::empty())
                    .map_err(ExportError::Write)?;
            }
            Content::Bytes(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_cksum();
                builder
                    .append(&h, data.as_slice())
                    .map_err(ExportError::Write)?;
            }
            Content::Blob { path, digest, size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                h.set_cksum();
                let file = File::open(path).map_err(|source| ExportError::Io {
                    path: path.clone(),
                    source,
                })?;
                // take(): never write more than the header promised, even if the file grew.
                let mut reader = HashingReader::new(file.take(*size));
                builder
                    .append(&h, &mut reader)
                    .map_err(ExportError::Write)?;
                let (_, actual, count) = reader.finish();
                if &actual != digest || count != *size {
                    return Err(ExportError::BlobMismatch {
                        path: path.clone(),
                        expected: digest.clone(),
                        expected_size: *size,
                        actual,
                        actual_size: count,
                    });
                }
            }
        }
    }
    builder.into_inner().map_err(ExportError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduped_fixed_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        std::fs::write(&p, b"blob").unwrap();
        let entries = vec![
            Entry::bytes("z.json", MODE_FILE, 0, b"{}".to_vec()),
            Entry::blob("blobs/x", 7, p.clone(), Digest::of_bytes(b"blob"), 4),
            Entry::dir("blobs/"),
            Entry::bytes("z.json", MODE_FILE, 0, b"dup".to_vec()),
        ];
        let out = write_tar(Vec::new(), entries).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.username().unwrap(), Some(""));
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
                body,
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("blobs/".to_string(), 0o755, 0, vec![]),
                ("blobs/x".to_string(), 0o444, 7, b"blob".to_vec()),
                ("z.json".to_string(), 0o644, 0, b"{}".to_vec()),
            ]
        );
    }

    #[test]
    fn blob_digest_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        std::fs::write(&p, b"blob").unwrap();
        let bad = vec![Entry::blob("x", 0, p, Digest::of_bytes(b"other"), 4)];
        assert!(matches!(
            write_tar(Vec::new(), bad),
            Err(ExportError::BlobMismatch { .. })
        ));
    }
}
