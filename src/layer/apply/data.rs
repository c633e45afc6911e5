//! File data of a tar entry into the file being extracted, in large writes.

use std::fs::File;
use std::io::{self, Read, Write};

/// Bytes per write of file data: `io::copy`'s 8 KiB would be 25,000 writes for a 200 MB rootfs.
pub(super) const COPY_BUF: usize = 256 << 10;

/// Copies an entry's data into `out`, filling `buf` before each write.
pub(super) fn copy_data(entry: &mut impl Read, out: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let mut len = 0;
        while len < buf.len() {
            match entry.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(k) => len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.write_all(&buf[..len])?;
        n += len as u64;
        if len < buf.len() {
            return Ok(n);
        }
    }
}
