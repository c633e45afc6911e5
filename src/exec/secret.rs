//! Reading a build secret's bytes, with the one size cap that holds for a secret mounted as a file
//! (copied onto /dev's tmpfs, 64 MiB) and for one read into an environment variable.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::ExecError;

/// Largest secret accepted, as a file or as an env var (README "RUN --mount").
pub const MAX_SECRET: u64 = 32 * 1024 * 1024;

/// The secret at `source`; more than [`MAX_SECRET`] bytes is an error naming the path. Reads
/// at most one byte past the cap, so a huge or endless source (a FIFO, /dev/zero) is not slurped.
pub fn read_secret(source: &Path) -> Result<Vec<u8>, ExecError> {
    let f = File::open(source)
        .map_err(|e| ExecError::io(format!("open secret {}", source.display()), e))?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ExecError::io(format!("read secret {}", source.display()), e))?;
    if buf.len() as u64 > MAX_SECRET {
        return Err(ExecError::BadFile {
            path: source.to_path_buf(),
            reason: format!("secret larger than {MAX_SECRET} bytes"),
        });
    }
    Ok(buf)
}
