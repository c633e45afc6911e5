//! Layer-writer throughput against the machine's ceilings (run by `scripts/bench`; not a test).
//!
//! `cargo bench --bench layer -- DIR [RUNS]` tars DIR (warm page cache) through
//! `layer::write_layer` with each compression and output profile, and measures in the same process
//! the two ceilings a layer write cannot beat: SHA-256 and single-thread gzip-6 (zlib-rs) over the
//! same tar bytes held in memory. Prints a Markdown table (MB = 10^6 bytes of uncompressed tar).

use rbuild::layer::{write_layer, Compression, LayerOptions, Profile};
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// User + system CPU time of this process, all threads.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Median wall time and median CPU time of `runs` calls.
fn time<F: FnMut()>(runs: usize, mut f: F) -> (Duration, Duration) {
    let (walls, cpus) = (0..runs)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_time());
            f();
            (t.elapsed(), cpu_time().saturating_sub(c))
        })
        .unzip();
    (median(walls), median(cpus))
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Counts bytes, keeps nothing.
struct Count(u64);
impl Write for Count {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench layer -- DIR [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);

    // The tar itself, in memory, for the ceilings.
    let plain = LayerOptions {
        compression: Compression::Uncompressed,
        ..Default::default()
    };
    let (tar, _) = write_layer(&dir, Vec::new(), &plain)?;
    let n = tar.len() as u64;

    println!(
        "Input: `{}` as a layer tar, {:.1} MB; median of {runs} runs; {} CPUs.\n",
        dir.display(),
        n as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!("| what | MB/s (wall) | s (wall) | CPU s | cores used |");
    println!("|---|---|---|---|---|");
    let row = |what: &str, (d, c): (Duration, Duration)| {
        println!(
            "| {what} | {:.0} | {:.2} | {:.2} | {:.2} |",
            mbps(n, d),
            d.as_secs_f64(),
            c.as_secs_f64(),
            c.as_secs_f64() / d.as_secs_f64()
        )
    };

    let d = time(runs, || {
        std::hint::black_box(Sha256::digest(&tar));
    });
    row("ceiling: SHA-256 of the tar in memory (sha2)", d);
    let d = time(runs, || {
        let mut e = flate2::write::GzEncoder::new(Count(0), flate2::Compression::new(6));
        for block in tar.chunks(1 << 20) {
            let _ = e.write_all(block);
        }
        let _ = e.finish();
    });
    row("ceiling: gzip-6 zlib-rs, 1 thread, tar in memory", d);

    let cases = [
        ("uncompressed", Compression::Uncompressed, Profile::V1),
        (
            "gzip-6, profile 1 (one stream, 1 thread)",
            Compression::Gzip { level: 6 },
            Profile::V1,
        ),
        (
            "gzip-6, profile 2 (parallel blocks)",
            Compression::Gzip { level: 6 },
            Profile::V2,
        ),
        (
            "zstd-3, profile 1 (1 thread)",
            Compression::Zstd { level: 3 },
            Profile::V1,
        ),
        (
            "zstd-3, profile 2 (multithreaded)",
            Compression::Zstd { level: 3 },
            Profile::V2,
        ),
    ];
    for (what, compression, profile) in cases {
        let opts = LayerOptions {
            compression,
            profile,
            ..Default::default()
        };
        let mut out_size = 0;
        let d = time(runs, || {
            if let Ok((sink, _)) = write_layer(&dir, Count(0), &opts) {
                out_size = sink.0;
            }
        });
        row(
            &format!(
                "write_layer from disk: {what} (ratio {:.3})",
                out_size as f64 / n as f64
            ),
            d,
        );
    }
    Ok(())
}
