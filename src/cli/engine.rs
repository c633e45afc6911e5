//! `--load` (and `-o type=docker` without `dest`): streams the image as a docker-archive into
//! the local Docker engine's `POST /images/load` over its unix socket, as buildx's docker driver
//! does, printing the engine's progress messages. A small HTTP/1.1 client: the request body is
//! sent chunked while the archive is written, so the image is never staged on disk.

use crate::digest::Digest;
use crate::store::{LayerForm, Store};
use anyhow::{anyhow, bail, Context as _, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// The engine's socket: `DOCKER_HOST=unix://PATH`, else /var/run/docker.sock.
fn socket_path() -> Result<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h.strip_prefix("unix://").map(PathBuf::from).ok_or_else(|| {
            anyhow!("DOCKER_HOST={h}: --load reaches the engine over a unix:// socket only")
        }),
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// Writes HTTP/1.1 chunks; `finish` sends the last, empty chunk.
struct Chunked<W: Write>(W);

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Loads image `id` (named `tags`) into the engine; prints its messages to stderr unless `quiet`.
pub(super) fn load(store: &Store, id: &Digest, tags: &[String], quiet: bool) -> Result<()> {
    let sock = socket_path()?;
    let img = {
        // Leased, so a concurrent prune keeps the blobs being streamed.
        let _lock = store.lock()?;
        if let Some(top) = store.image_top_layer(id)? {
            store.lease_layer(&top)?;
        }
        store.export_image(id, tags, LayerForm::AsStored)?
    };
    let stream = UnixStream::connect(&sock).with_context(|| {
        format!(
            "--load: connecting to the Docker engine at {}",
            sock.display()
        )
    })?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &stream);
    w.write_all(
        b"POST /images/load?quiet=0 HTTP/1.1\r\nHost: docker\r\nUser-Agent: rbuild\r\n\
          Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    let chunked = crate::export::docker_archive(&img, Chunked(w))
        .map_err(|e| anyhow!("--load: writing the image archive: {e}"))?;
    let mut w = chunked.0;
    w.write_all(b"0\r\n\r\n")?;
    w.flush()?;
    drop(w);

    let mut r = BufReader::new(&stream);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("--load: unexpected engine reply {status:?}"))?;
    let mut is_chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            is_chunked = true;
        }
    }
    let body = if is_chunked {
        read_chunked(&mut r)?
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        b
    };
    let text = String::from_utf8_lossy(&body);
    if !(200..300).contains(&code) {
        bail!("--load: the Docker engine answered {code}: {}", text.trim());
    }
    // The body is a JSON stream: {"stream": "Loaded image: …"} or {"errorDetail": …}.
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            bail!("--load: the Docker engine refused the image: {e}");
        }
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            if !quiet {
                eprint!("{s}");
            }
        }
    }
    Ok(())
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        if r.read_line(&mut size)? == 0 {
            return Ok(out);
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| anyhow!("--load: bad chunk size {size:?} from the engine"))?;
        if n == 0 {
            return Ok(out);
        }
        let mut buf = vec![0; n];
        r.read_exact(&mut buf)?;
        out.extend_from_slice(&buf);
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}
