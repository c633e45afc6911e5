//! Parallel gzip whose bytes do not depend on the number of threads (pigz's scheme).
//!
//! The input is cut into fixed [`PGZIP_BLOCK`]-byte blocks. Each block is raw-deflated on its
//! own, with the previous block's last 32 KiB as preset dictionary (so back-references still
//! reach across the cut), and ends with a sync flush (an empty stored block, byte aligned); the
//! last block ends with `Z_FINISH`. The deflate pieces concatenate into ONE valid deflate stream,
//! wrapped in one gzip member whose CRC-32 is the combination of the blocks' CRCs. Every block is
//! compressed with one `deflate` call over the whole block, so the output depends only on the
//! input bytes, the level, the block size and the deflate implementation: never on the thread
//! count or on how the caller split its writes.
//!
//! Hand-written rather than `gzp` because gzp needs the C zlib-ng (cmake) while rbuild's gzip is
//! the pure-Rust zlib-rs (CRATES.md); the scheme is ~150 lines on top of flate2's `Compress`.

use flate2::{Compress, Crc, FlushCompress, Status};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per independently deflated block (part of output profile 2).
pub(crate) const PGZIP_BLOCK: usize = 1 << 20;
/// Deflate's window: how much of the previous block serves as dictionary.
const DICT: usize = 32 * 1024;

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
    crc: Crc,
    /// The block's input buffer, handed back for reuse.
    data: Vec<u8>,
}

/// A `Write` that gzips on `threads` worker threads, pigz-style (see the module docs).
pub(crate) struct ParGzEncoder<W: Write> {
    out: Option<W>,
    level: u32,
    buf: Vec<u8>,
    /// Last `DICT` bytes of the previous block.
    dict: Vec<u8>,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_write: u64,
    pending: BTreeMap<u64, Done>,
    max_in_flight: u64,
    spare: Vec<Vec<u8>>,
    crc: Crc,
    header_written: bool,
    /// Set once a block or the output failed: the stream has a hole, so every later call fails
    /// at once instead of waiting for a block that will never come (tar::Builder's drop writes
    /// its trailer even after an error).
    failed: bool,
}

impl<W: Write> ParGzEncoder<W> {
    pub(crate) fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let level = level.min(9);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                std::thread::spawn(move || worker(rx, tx, level))
            })
            .collect();
        ParGzEncoder {
            out: Some(out),
            level,
            buf: Vec::with_capacity(PGZIP_BLOCK),
            dict: Vec::new(),
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            next_seq: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            // Two blocks per worker keep every core busy while bounding memory.
            max_in_flight: 2 * threads as u64,
            spare: Vec::new(),
            crc: Crc::new(),
            header_written: false,
            failed: false,
        }
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // Same header as flate2's GzBuilder with mtime 0 and OS 255: XFL says "best" at
            // level 9 and "fastest" at levels 0-1, as zlib sets it.
            let xfl = match self.level {
                9 => 2,
                0 | 1 => 4,
                _ => 0,
            };
            self.out()?
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hands the buffered block to the workers.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        self.check()?;
        while self.next_seq - self.next_write >= self.max_in_flight {
            self.collect_one()?;
        }
        let mut next = self.spare.pop().unwrap_or_default();
        next.clear();
        next.reserve(PGZIP_BLOCK);
        let data = std::mem::replace(&mut self.buf, next);
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(DICT)..].to_vec();
        let job = Job {
            seq: self.next_seq,
            data,
            dict,
            last,
        };
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip workers gone"))?
            .send(job)
            .map_err(|_| io::Error::other("gzip worker thread died"))
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("gzip stream already failed"));
        }
        Ok(())
    }

    /// Waits for one finished block and writes out every block that is now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        self.check()?;
        let r = self.collect_one_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn collect_one_inner(&mut self) -> io::Result<()> {
        let done = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread died"))?;
        self.pending.insert(done.seq, done);
        while let Some(done) = self.pending.remove(&self.next_write) {
            let bytes = done.out?;
            self.write_header()?;
            self.out()?.write_all(&bytes)?;
            self.crc.combine(&done.crc);
            self.spare.push(done.data);
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.next_write < self.next_seq {
            self.collect_one()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        Ok(out)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        let n = (PGZIP_BLOCK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PGZIP_BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// A no-op: flushing a partial block would move the block boundaries and change the bytes.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    fn drop(&mut self) {
        // Closing the job channel ends the workers; they hold nothing but their current block.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>, done: Sender<Done>, level: u32) {
    loop {
        // A fresh compressor per block: one reused after `reset` can pick different (valid)
        // matches depending on what its window held before (zlib-rs issue #459), so the bytes
        // would depend on which worker got which block.
        let mut z = Compress::new(flate2::Compression::new(level), false);
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let mut crc = Crc::new();
        crc.update(&job.data);
        let out = deflate_block(&mut z, &job.data, &job.dict, job.last);
        if done
            .send(Done {
                seq: job.seq,
                out,
                crc,
                data: job.data,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Raw-deflates one block (with a preset dictionary) in a single call, ending byte-aligned.
fn deflate_block(z: &mut Compress, data: &[u8], dict: &[u8], last: bool) -> io::Result<Vec<u8>> {
    z.reset();
    if !dict.is_empty() {
        z.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // deflateBound-ish: stored blocks cost 5 bytes per 16 KiB, plus the flush markers.
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    let start_in = z.total_in();
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(64 * 1024);
        }
        let consumed = (z.total_in() - start_in) as usize;
        let status = z
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = (z.total_in() - start_in) as usize;
        // Done when all input is in and the flush fit (zlib: avail_out left over).
        let done = if last {
            status == Status::StreamEnd
        } else {
            consumed == data.len() && out.len() < out.capacity()
        };
        if done {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Compressible but not trivial: text-like runs mixed with pseudo-random bytes.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (i / 4096) % 3 == 0 {
                    (x % 251) as u8
                } else {
                    b"the quick brown fox jumps over the lazy dog "[i % 44]
                }
            })
            .collect()
    }

    fn encode(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut e = ParGzEncoder::new(Vec::new(), 6, threads);
        for c in data.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_chunking() {
        let data = sample(3 * PGZIP_BLOCK + 12345);
        let one = encode(&data, 1, 1 << 20);
        for (threads, chunk) in [(2, 7777), (3, 1 << 16), (8, 3 * PGZIP_BLOCK)] {
            assert_eq!(encode(&data, threads, chunk), one, "{threads} threads");
        }
    }

    #[test]
    fn one_member_that_flate2_decodes() {
        for len in [0, 1, DICT, PGZIP_BLOCK, 2 * PGZIP_BLOCK + 1] {
            let data = sample(len);
            let gz = encode(&data, 2, 1 << 20);
            // GzDecoder (not MultiGzDecoder) reads exactly one member and checks CRC and size.
            let mut d = flate2::read::GzDecoder::new(&gz[..]);
            let mut back = Vec::new();
            d.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "len {len}");
            assert_eq!(
                d.into_inner(),
                &[] as &[u8],
                "trailing bytes after the member"
            );
        }
    }

    #[test]
    fn dictionary_keeps_the_ratio_across_blocks() {
        // Two blocks of a repeated 16 KiB unit: without the dictionary the second block would
        // have to spell the unit out again; with it, the second block is all back-references.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let unit: Vec<u8> = (0..16 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let alone = encode(&unit, 1, 1 << 20).len();
        let data: Vec<u8> = unit.iter().copied().cycle().take(2 * PGZIP_BLOCK).collect();
        let gz = encode(&data, 2, 1 << 20);
        // Two independent halves would pay for the unit's literals twice.
        let half = encode(&data[..PGZIP_BLOCK], 1, 1 << 20).len();
        assert!(
            gz.len() + alone / 2 < 2 * half,
            "{} vs 2 x {half}",
            gz.len()
        );
        // And the result is about as small as one single-stream deflate of the whole.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            gz.len() < single + single / 20,
            "{} vs single {single}",
            gz.len()
        );
    }

    /// Fails on every write.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_output_error_fails_every_later_call_instead_of_hanging() {
        let data = sample(6 * PGZIP_BLOCK);
        let mut e = ParGzEncoder::new(Broken, 6, 2);
        let r = data.chunks(PGZIP_BLOCK).try_for_each(|c| e.write_all(c));
        assert!(r.is_err());
        assert!(e.write_all(&data[..PGZIP_BLOCK]).is_err());
        assert!(e.finish().is_err());
    }
}
