//! Layer blob compression: the choice (`Compression`), its media types and the streaming encoder.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};

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

/// A streaming compressor for one of the [`Compression`] choices.
pub(crate) enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, out: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip { level } => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, flate2::Compression::new(level.min(9))),
            ),
            Compression::Zstd { level } => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level)?)
            }
            Compression::Uncompressed => Encoder::Plain(out),
        })
    }

    /// Writes the compressor's trailer and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}
