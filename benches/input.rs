//! The input side of a cold build, without the rest of the build around it (not a test).
//!
//! `cargo bench --bench input -- copy CONTEXT_DIR SCRATCH [RUNS]` times `COPY . /ctx/` of
//! CONTEXT_DIR into a fresh directory under SCRATCH (as a build writes into a snapshot's diff dir);
//! `cargo bench --bench input -- add ARCHIVE SCRATCH [RUNS]` times `ADD ARCHIVE /` (decompression
//! and extraction); `... -- decode ARCHIVE SCRATCH [RUNS]` only decompresses it. Prints wall and CPU (user+sys, all threads) per run and their medians; the
//! copy worker count follows `RBUILD_COPY_JOBS` like a build does. Outputs stay in SCRATCH.

use rbuild::context::{self, Context, CopyEnv, CopyRequest, SourceRoot};
use rbuild::layer::{self, ApplyOptions, WhiteoutMode};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [what, input, scratch, rest @ ..] = args.as_slice() else {
        eprintln!("usage: input (copy CONTEXT_DIR | add ARCHIVE | decode ARCHIVE) SCRATCH [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = rest.first().and_then(|r| r.parse().ok()).unwrap_or(3);
    let input = PathBuf::from(input);
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    // Outputs are left in SCRATCH for the caller to remove: on ext4 without a journal, creating
    // inodes soon after deleting many is slow for 1-5 minutes (`recently_deleted` in ialloc.c
    // skips the freed inode numbers one by one), which would charge one run's cleanup to the next.
    for _ in 0..runs {
        let dest = tempfile::tempdir_in(scratch).expect("scratch dir");
        let (t, c) = (Instant::now(), cpu_time());
        match what.as_str() {
            "copy" => copy(&input, dest.path()),
            "add" => add(&input, dest.path()),
            "decode" => decode(&input),
            _ => panic!("unknown mode {what}"),
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), (cpu_time() - c).as_secs_f64());
        println!(
            "{what} {}: wall {wall:.3} s, cpu {cpu:.3} s",
            input.display()
        );
        walls.push(wall);
        cpus.push(cpu);
        let _ = dest.keep();
    }
    println!(
        "median of {runs}: wall {:.3} s, cpu {:.3} s",
        median(walls),
        median(cpus)
    );
}

fn copy(ctx_dir: &Path, dest: &Path) {
    let ctx = Context::open(ctx_dir, &ctx_dir.join("Dockerfile")).expect("context");
    let req = CopyRequest::new(SourceRoot::Context(&ctx), vec![".".into()], "/ctx/");
    context::copy(&req, dest, &CopyEnv::default()).expect("copy");
}

/// Decompression alone (through `layer::decompress`, so on its read-ahead thread): the floor
/// under `add`.
fn decode(archive: &Path) {
    let f = std::fs::File::open(archive).expect("archive");
    let (mut r, _) = layer::decompress(f).expect("decompress");
    std::io::copy(&mut r, &mut std::io::sink()).expect("decode");
}

fn add(archive: &Path, dest: &Path) {
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::None,
        max_bytes: None,
        same_owner: true,
        limits: Default::default(),
    };
    let done = layer::extract_if_archive(archive, dest, Path::new("/"), &opts).expect("extract");
    assert!(done, "{} is not an archive", archive.display());
}
