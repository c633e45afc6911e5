//! Build progress output: one header line per step, streamed step output with a `#N` prefix, and a
//! closing `DONE`/`CACHED`/`ERROR` line with the step's duration (BuildKit's plain progress style, so CI logs
//! read the same as `docker build --progress=plain`).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::options::Progress;

pub struct Reporter {
    mode: Progress,
    /// Atomic: stages build on several threads and each step takes the next number.
    next_id: AtomicUsize,
}

pub struct StepHandle {
    id: usize,
    started: Instant,
    /// Holds an incomplete output line until its newline arrives, so prefixes stay at line starts.
    partial: Vec<u8>,
}

impl Reporter {
    pub fn new(mode: Progress) -> Self {
        Reporter {
            mode,
            next_id: AtomicUsize::new(1),
        }
    }

    pub fn quiet(&self) -> bool {
        self.mode == Progress::Quiet
    }

    pub fn message(&self, msg: &str) {
        if !self.quiet() {
            eprintln!("{msg}");
        }
    }

    pub fn warn(&self, msg: &str) {
        // Warnings are shown even in quiet mode: they tell the user something is off.
        eprintln!("WARNING: {msg}");
    }

    pub fn start(&self, title: &str) -> StepHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if !self.quiet() {
            eprintln!("#{id} {title}");
        }
        StepHandle {
            id,
            started: Instant::now(),
            partial: Vec::new(),
        }
    }

    pub fn detail(&self, step: &StepHandle, msg: &str) {
        if !self.quiet() {
            eprintln!("#{} {msg}", step.id);
        }
    }

    /// Streams a chunk of step output, prefixing every complete line.
    pub fn output(&self, step: &mut StepHandle, data: &[u8]) {
        if self.quiet() {
            return;
        }
        step.partial.extend_from_slice(data);
        let mut err = std::io::stderr().lock();
        while let Some(pos) = step.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = step.partial.drain(..=pos).collect();
            let _ = write!(err, "#{} ", step.id);
            let _ = err.write_all(&line);
        }
    }

    fn flush_partial(&self, step: &mut StepHandle) {
        if !step.partial.is_empty() && !self.quiet() {
            eprintln!("#{} {}", step.id, String::from_utf8_lossy(&step.partial));
        }
        step.partial.clear();
    }

    pub fn cached(&self, mut step: StepHandle) {
        self.flush_partial(&mut step);
        if !self.quiet() {
            eprintln!("#{} CACHED", step.id);
        }
    }

    pub fn done(&self, mut step: StepHandle) {
        self.flush_partial(&mut step);
        if !self.quiet() {
            eprintln!("#{} DONE {}", step.id, secs(step.started.elapsed()));
        }
    }

    /// The step was stopped by Ctrl-C or by another stage's failure (BuildKit prints `CANCELED`).
    pub fn canceled(&self, mut step: StepHandle) {
        self.flush_partial(&mut step);
        eprintln!("#{} CANCELED", step.id);
    }

    pub fn error(&self, mut step: StepHandle, msg: &str) {
        self.flush_partial(&mut step);
        eprintln!("#{} ERROR {}: {msg}", step.id, secs(step.started.elapsed()));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}
