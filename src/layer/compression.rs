//! Layer blob compression: the choice (`Compression`), its media types and the streaming encoder.

use crate::digest::Digest;
use crate::digest::HashingWriter;
use crate::layer::block_writer::{BlockWriter, BLOCK_SIZE};
use crate::layer::pgzip::ParGzEncoder;
use crate::layer::LayerError;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// What a layer writer produced (`diff::write_layer`, `finish` here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the blob as written to `out`.
    pub digest: Digest,
    /// Blob bytes.
    pub size: u64,
    /// Tar bytes.
    pub uncompressed_size: u64,
    /// OCI media type of the blob.
    pub media_type: String,
}

/// How a layer blob is compressed.
///
/// Gzip goes through flate2 with the pure-Rust zlib-rs backend. Its output depends on how the
/// input is chunked into `write()` calls (CRATES.md), so the layer writer always feeds it fixed
/// 1 MiB blocks; the gzip header has no file name, mtime 0 and OS byte 255 ("unknown"), so the
/// same tar always gives the same blob. Zstd runs single-threaded with default parameters for the
/// same reason (multi-threaded zstd output is only stable for a fixed worker count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip { level: u32 },
    Zstd { level: i32 },
    Uncompressed,
}

impl Default for Compression {
    /// Gzip level 6: what `docker build`/BuildKit produce by default (Go's DefaultCompression).
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// OCI image-spec layer media type.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Docker schema2 layer media type (zstd uses containerd's docker-style name).
    pub fn docker_media_type(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Zstd { .. } => "application/vnd.docker.image.rootfs.diff.tar.zstd",
            Compression::Uncompressed => "application/vnd.docker.image.rootfs.diff.tar",
        }
    }
}

/// The versioned output profile (`--repro-profile=N`, docs/reproducibility.md): everything that
/// decides a layer blob's bytes besides its content. Tar writer settings and JSON encoding are
/// the same in every profile so far; the profiles differ in how gzip and zstd run.
///
/// * 1: gzip = one deflate stream on one thread (flate2 + zlib-rs, 1 MiB writes); zstd = one
///   thread (`nbWorkers` 0).
/// * 2 (default): gzip = pigz-style parallel blocks of 1 MiB with a 32 KiB dictionary (one gzip
///   member, same bytes for any thread count; `layer::pgzip`); zstd = libzstd multithreaded mode,
///   whose bytes do not depend on the worker count once it is >= 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Profile {
    V1,
    #[default]
    V2,
}

impl Profile {
    /// The newest profile, used unless a build pins another.
    pub const LATEST: Profile = Profile::V2;

    /// The profile numbered `n`, if there is one.
    pub fn from_number(n: u32) -> Option<Profile> {
        match n {
            1 => Some(Profile::V1),
            2 => Some(Profile::V2),
            _ => None,
        }
    }

    pub fn number(self) -> u32 {
        match self {
            Profile::V1 => 1,
            Profile::V2 => 2,
        }
    }
}

/// Worker threads for parallel compression: every core (the bytes do not depend on it).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A streaming compressor for one of the [`Compression`] choices.
pub(crate) enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    ParGzip(ParGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, profile: Profile, out: W) -> io::Result<Self> {
        Ok(match (compression, profile) {
            (Compression::Gzip { level }, Profile::V2) => {
                Encoder::ParGzip(ParGzEncoder::new(out, level, threads()))
            }
            (Compression::Gzip { level }, Profile::V1) => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, flate2::Compression::new(level.min(9))),
            ),
            (Compression::Zstd { level }, Profile::V1) => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level)?)
            }
            (Compression::Zstd { level }, Profile::V2) => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                e.multithread(threads() as u32)?;
                Encoder::Zstd(e)
            }
            (Compression::Uncompressed, _) => Encoder::Plain(out),
        })
    }

    /// Writes the compressor's trailer and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParGzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParGzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParGzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// Compresses an uncompressed layer tar read from `input` into `out`, exactly as
/// [`crate::layer::write_layer`] would have while writing it: same encoder, same 1 MiB blocks, so
/// compressing later gives the bytes compressing at build time gives. Returns the diffID of the
/// input (callers check it against the layer's) with the blob's digest and size.
pub fn compress_tar<R: Read, W: Write>(
    mut input: R,
    out: W,
    compression: Compression,
    profile: Profile,
) -> Result<(W, LayerInfo), LayerError> {
    let blob = HashingWriter::new(out);
    let encoder = Encoder::new(compression, profile, blob).map_err(LayerError::Write)?;
    let mut blocks = BlockWriter::new(HashingWriter::new(encoder));
    let mut buf = vec![0u8; BLOCK_SIZE];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LayerError::Read(e)),
        };
        blocks.write_all(&buf[..n]).map_err(LayerError::Write)?;
    }
    let tar_hash = blocks.finish().map_err(LayerError::Write)?;
    let (encoder, diff_id, uncompressed_size) = tar_hash.finish();
    finish_blob(encoder, diff_id, uncompressed_size, compression)
}

/// Ends a compressed blob: the encoder's trailer, then the blob's digest and size.
pub(crate) fn finish_blob<W: Write>(
    encoder: Encoder<HashingWriter<W>>,
    diff_id: crate::digest::Digest,
    uncompressed_size: u64,
    compression: Compression,
) -> Result<(W, LayerInfo), LayerError> {
    let blob = encoder.finish().map_err(LayerError::Write)?;
    let (out, digest, size) = blob.finish();
    Ok((
        out,
        LayerInfo {
            diff_id,
            digest,
            size,
            uncompressed_size,
            media_type: compression.media_type().to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 88172645463325252;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x % 7) as u8
                } else {
                    b"abcdefgh"[i % 8]
                }
            })
            .collect()
    }

    fn zstd_mt(data: &[u8], workers: u32, chunk: usize) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.multithread(workers).unwrap();
        for c in data.chunks(chunk) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    /// Profile 2 relies on this: libzstd's multithreaded output is the same for any worker
    /// count >= 1 and any write chunking (several jobs' worth of input, so jobs really split).
    #[test]
    fn zstd_multithread_bytes_do_not_depend_on_workers() {
        let data = sample(24 << 20);
        let one = zstd_mt(&data, 1, 1 << 20);
        assert_eq!(zstd_mt(&data, 2, 4096), one);
        assert_eq!(zstd_mt(&data, 4, 3 << 20), one);
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn profile_numbers_round_trip() {
        assert_eq!(Profile::default(), Profile::LATEST);
        for n in 1..=2 {
            assert_eq!(Profile::from_number(n).map(Profile::number), Some(n));
        }
        assert_eq!(Profile::from_number(0), None);
        assert_eq!(Profile::from_number(3), None);
    }
}
