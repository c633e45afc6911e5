//! A reader that runs its source on a thread of its own, so decompression overlaps with what the
//! consumer does (extraction, hashing) on another core.
//!
//! The thread fills chunks of [`CHUNK`] bytes and hands them over a bounded channel (at most
//! [`DEPTH`] ready chunks: memory stays a few MiB whatever the stream's size); the consumer returns
//! emptied chunks for reuse, so no fresh memory is touched per chunk. The source's errors reach
//! the consumer as they were (same `io::Error`), after the bytes read before them. Dropping the
//! reader stops the thread: its next hand-over fails, and `drop` waits for it to end, so nothing
//! outlives the reader (the source, e.g. a file or a cancel-aware reader, is dropped with it).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes per hand-over.
pub const CHUNK: usize = 1 << 20;
/// Chunks decoded ahead of the consumer.
const DEPTH: usize = 4;

/// Reads what a source thread produced; see the module docs.
pub struct ReadAhead {
    /// `None` once dropped (so the thread sees the hang-up before `drop` joins it).
    ready: Option<Receiver<io::Result<Vec<u8>>>>,
    spare: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts a thread reading `source`. If no thread can be started, the error is returned and
    /// nothing is read.
    pub fn spawn<R: Read + Send + 'static>(source: R) -> io::Result<ReadAhead> {
        let (tx, ready) = sync_channel(DEPTH);
        let (spare, spares) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name("rbuild-readahead".into())
            .spawn(move || fill(source, &tx, &spares))?;
        Ok(ReadAhead {
            ready: Some(ready),
            spare,
            cur: Vec::new(),
            pos: 0,
            done: false,
            thread: Some(thread),
        })
    }
}

/// The thread: read full chunks until EOF or an error; an empty chunk marks the end.
fn fill<R: Read>(mut source: R, tx: &SyncSender<io::Result<Vec<u8>>>, spares: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = spares.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut len = 0;
        let mut failed = None;
        while len < CHUNK {
            match source.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        buf.truncate(len);
        let end = len < CHUNK;
        // The bytes before an error are delivered first, as a direct read would have.
        if len > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = tx.send(Err(e));
            return;
        }
        if end {
            let _ = tx.send(Ok(Vec::new()));
            return;
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            let Some(ready) = &self.ready else {
                return Ok(0);
            };
            match ready.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.cur, chunk);
                    self.pos = 0;
                    // Reuse only real buffers; a full spare queue just drops one.
                    if old.capacity() > 0 {
                        let _ = self.spare.try_send(old);
                    }
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The thread ended without an end mark: it panicked.
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("read-ahead thread stopped"));
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Hang up first: the thread's next send fails and it returns after its current read.
        self.ready = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Yields `len` bytes of a counter pattern in odd-sized reads, then `err` if given.
    struct Source {
        len: usize,
        pos: usize,
        err: Option<io::ErrorKind>,
        dropped: Arc<AtomicBool>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.len {
                return match self.err {
                    Some(k) => Err(io::Error::new(k, "source broke")),
                    None => Ok(0),
                };
            }
            let n = buf.len().min(self.len - self.pos).min(77_777);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((self.pos + i) % 251) as u8;
            }
            self.pos += n;
            Ok(n)
        }
    }

    impl Drop for Source {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn source(len: usize, err: Option<io::ErrorKind>) -> (Source, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let s = Source {
            len,
            pos: 0,
            err,
            dropped: dropped.clone(),
        };
        (s, dropped)
    }

    #[test]
    fn delivers_every_byte_in_order() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12_345] {
            let (s, _) = source(len, None);
            let mut out = Vec::new();
            ReadAhead::spawn(s).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out.len(), len);
            assert!(out.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        }
    }

    #[test]
    fn source_error_comes_after_the_bytes_before_it() {
        let (s, _) = source(CHUNK + 10, Some(io::ErrorKind::InvalidData));
        let mut r = ReadAhead::spawn(s).unwrap();
        let mut out = vec![0u8; CHUNK + 10];
        r.read_exact(&mut out).unwrap();
        let err = r.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "source broke");
    }

    #[test]
    fn dropping_the_reader_ends_the_thread_and_drops_the_source() {
        // Far more than the channel holds: the thread is blocked handing over when we drop.
        let (s, dropped) = source(64 * CHUNK, None);
        let mut r = ReadAhead::spawn(s).unwrap();
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        drop(r);
        assert!(dropped.load(Ordering::SeqCst));
    }
}
