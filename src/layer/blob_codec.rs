//! The codec of a stored layer blob, sniffed from its first bytes, and the two digests of a
//! blob (as stored, and of the tar inside: the diffID) in one pass.
//!
//! Gzip is read as a series of members: pigz, estargz (a TOC member and an empty footer member
//! with an extra field) and `cat a.gz b.gz` all write several, and every member's tar bytes
//! count toward the diffID, as Go's `gzip.Reader` (multistream by default) counts them.

use crate::digest::{Digest, HashingReader, HashingWriter};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Layer blob codecs the OCI image-spec allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Zstd,
}

/// The codec of the blob at `path`, from its magic bytes; anything else is an uncompressed tar.
pub fn sniff(path: &Path) -> io::Result<Codec> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < magic.len() {
        let r = f.read(&mut magic[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Codec::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Codec::Zstd,
        _ => Codec::None,
    })
}

/// Digests and sizes of one layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHashes {
    /// Of the blob as stored.
    pub digest: Digest,
    pub size: u64,
    /// Of the uncompressed tar.
    pub diff_id: Digest,
    pub tar_size: u64,
}

/// Hashes the blob at `path` and, decoded with `codec`, its tar.
pub fn hash(path: &Path, codec: Codec) -> io::Result<BlobHashes> {
    let f = File::open(path)?;
    let mut blob = HashingReader::new(io::BufReader::new(f));
    let mut tar = HashingWriter::new(io::sink());
    match codec {
        Codec::None => io::copy(&mut blob, &mut tar),
        Codec::Gzip => io::copy(&mut flate2::read::MultiGzDecoder::new(&mut blob), &mut tar),
        Codec::Zstd => {
            zstd::stream::read::Decoder::new(&mut blob).and_then(|mut d| io::copy(&mut d, &mut tar))
        }
    }?;
    // Drain trailing bytes the decoder did not need, so the blob digest covers the whole file.
    io::copy(&mut blob, &mut io::sink())?;
    let (_, digest, size) = blob.finish();
    let (_, diff_id, tar_size) = tar.finish();
    Ok(BlobHashes {
        digest,
        size,
        diff_id,
        tar_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn member(data: &[u8], extra: Option<Vec<u8>>) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new();
        if let Some(x) = extra {
            b = b.extra(x);
        }
        let mut e = b.write(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// pigz/estargz shape: several members and an empty footer member with an extra field.
    #[test]
    fn every_gzip_member_counts_toward_the_diff_id() {
        let tar: Vec<u8> = (0..3000u32).flat_map(|i| i.to_le_bytes()).collect();
        let (a, b) = tar.split_at(5000);
        let mut blob = member(a, None);
        blob.extend(member(b, None));
        blob.extend(member(b"", Some(b"SG\x10\x00%016xSTARGZ".to_vec())));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blob");
        std::fs::write(&p, &blob).unwrap();
        assert_eq!(sniff(&p).unwrap(), Codec::Gzip);
        let h = hash(&p, Codec::Gzip).unwrap();
        assert_eq!(h.diff_id, Digest::of_bytes(&tar));
        assert_eq!(h.tar_size, tar.len() as u64);
        assert_eq!(h.digest, Digest::of_bytes(&blob));

        // Two zstd frames with a skippable frame (zstd:chunked keeps its TOC in one) between.
        let mut z = zstd::encode_all(a, 3).unwrap();
        z.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        z.extend(zstd::encode_all(b, 3).unwrap());
        std::fs::write(&p, &z).unwrap();
        assert_eq!(sniff(&p).unwrap(), Codec::Zstd);
        assert_eq!(
            hash(&p, Codec::Zstd).unwrap().diff_id,
            Digest::of_bytes(&tar)
        );
        std::fs::write(&p, &tar).unwrap();
        assert_eq!(sniff(&p).unwrap(), Codec::None);
        assert_eq!(
            hash(&p, Codec::None).unwrap().diff_id,
            Digest::of_bytes(&tar)
        );
    }
}
