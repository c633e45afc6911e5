//! A writer that hands its inner writer fixed-size blocks.

use std::io::{self, Write};

/// Block size fed to compressors (and the diffID hasher).
pub(crate) const BLOCK_SIZE: usize = 1 << 20;

/// Re-chunks a byte stream into exactly `BLOCK_SIZE` writes (the last one shorter).
///
/// Hand-written because `BufWriter` passes large writes straight through, and deflate output
/// depends on how its input is chunked: fixed blocks make gzip blobs reproducible no matter how
/// the tar writer happens to split its writes.
pub(crate) struct BlockWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> BlockWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        BlockWriter {
            inner,
            buf: Vec::with_capacity(BLOCK_SIZE),
        }
    }

    /// Writes the last partial block and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for BlockWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK_SIZE {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    /// Deliberately does not push a partial block down: a flush in the middle of the stream
    /// would change the block boundaries and therefore the compressed bytes.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the size of every write it receives.
    struct Sizes(Vec<usize>);
    impl Write for Sizes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.push(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn emits_fixed_blocks_whatever_the_input_chunking() {
        let mut w = BlockWriter::new(Sizes(Vec::new()));
        w.write_all(&[1u8; 10]).unwrap();
        w.write_all(&vec![2u8; BLOCK_SIZE * 2 + 5]).unwrap();
        w.flush().unwrap();
        let sizes = w.finish().unwrap().0;
        assert_eq!(sizes, vec![BLOCK_SIZE, BLOCK_SIZE, 15]);
    }
}
