//! Decompression by magic-byte sniffing (ADD of local archives, base layers of any compression).

use crate::layer::error::LayerError;
use crate::layer::readahead::ReadAhead;
use std::io::{self, Cursor, Read};

/// What [`decompress`] found at the start of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    /// No known compression magic: the bytes are passed through as they are.
    None,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Sniffs the compression of `reader` and returns a reader of the decompressed bytes.
///
/// Multi-member gzip, multi-stream bzip2/xz and multi-frame zstd are read to the end, as Go's
/// readers (and so Docker) do. Compressed input is decoded on a thread of its own
/// ([`ReadAhead`]); dropping the returned reader stops it.
pub fn decompress<R: Read + Send + 'static>(
    mut reader: R,
) -> Result<(Box<dyn Read + Send>, Detected), LayerError> {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::Read(e)),
        }
    }
    let head = &head[..got];
    let detected = if head.starts_with(GZIP_MAGIC) {
        Detected::Gzip
    } else if head.starts_with(BZIP2_MAGIC) {
        Detected::Bzip2
    } else if head.starts_with(XZ_MAGIC) {
        Detected::Xz
    } else if head.starts_with(ZSTD_MAGIC) {
        Detected::Zstd
    } else {
        Detected::None
    };
    let whole = Cursor::new(head.to_vec()).chain(reader);
    let decoder: Box<dyn Read + Send> = match detected {
        Detected::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Detected::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        Detected::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
        Detected::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(LayerError::Read)?)
        }
        Detected::None => return Ok((Box::new(whole), detected)),
    };
    // Decoding on its own thread overlaps it with the consumer (extraction, hashing); without a
    // thread to be had, the decoder runs in the caller's.
    let out: Box<dyn Read + Send> = match ReadAhead::spawn(decoder) {
        Ok(r) => Box::new(r),
        Err(e) => return Err(LayerError::Read(e)),
    };
    Ok((out, detected))
}

/// True when `header` (the first 512 bytes of a stream) is a tar header: the checksum must
/// match (v7 tars have no magic), and the block must not be all zeros (an empty archive is not
/// treated as an archive, as with Docker's `IsArchivePath`).
pub fn is_tar(header: &[u8]) -> bool {
    if header.len() < 512 {
        return false;
    }
    let block = &header[..512];
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u64::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    // Some historic writers summed signed bytes; accept both like GNU tar does.
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(*b as i8)
            }
        })
        .sum();
    stored == unsigned || i64::try_from(stored).ok() == Some(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("hello.txt").unwrap();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn roundtrip(compressed: Vec<u8>, want: Detected, plain: &[u8]) {
        let (mut r, d) = decompress(Cursor::new(compressed)).unwrap();
        assert_eq!(d, want);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn sniffs_every_format() {
        let plain = sample_tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        roundtrip(gz.finish().unwrap(), Detected::Gzip, &plain);

        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        roundtrip(bz.finish().unwrap(), Detected::Bzip2, &plain);

        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        roundtrip(xz.finish().unwrap(), Detected::Xz, &plain);

        roundtrip(
            zstd::encode_all(&plain[..], 3).unwrap(),
            Detected::Zstd,
            &plain,
        );
        roundtrip(plain.clone(), Detected::None, &plain);
        roundtrip(b"ab".to_vec(), Detected::None, b"ab");
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let mut all = Vec::new();
        for part in [&b"one "[..], &b"two"[..]] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            all.extend(gz.finish().unwrap());
        }
        roundtrip(all, Detected::Gzip, b"one two");
    }

    #[test]
    fn is_tar_checks_the_checksum() {
        let t = sample_tar();
        assert!(is_tar(&t));
        let mut bad = t.clone();
        bad[0] ^= 1;
        assert!(!is_tar(&bad));
        assert!(!is_tar(&[0u8; 1024]));
        assert!(!is_tar(b"#!/bin/sh\necho not a tar\n"));
        assert!(!is_tar(&vec![b'a'; 512]));
    }
}
