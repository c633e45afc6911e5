//! Build progress output: one header line per step, streamed step output with a `#N` prefix, and a
//! closing `DONE`/`CACHED`/`ERROR` line with the step's duration (BuildKit's plain progress style, so CI logs
//! read the same as `docker build --progress=plain`).
//!
//! In `tty` mode the same lines are printed, and byte transfers (layer writes, archive extractions,
//! URL downloads) also get an indicatif bar with bytes and throughput while they run, then one
//! summary line. Plain mode never draws bars, so CI logs and the tests that parse them stay stable.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle,
};

use super::options::Progress;

pub struct Reporter {
    mode: Progress,
    /// Atomic: stages build on several threads and each step takes the next number.
    next_id: AtomicUsize,
    /// Draws the byte bars (tty mode only); lines go through it so bars are never torn.
    bars: Option<MultiProgress>,
}

/// A byte-counting bar for one transfer; does nothing outside tty mode. Cloneable and `Send`, so a
/// reader or writer on another thread can advance it.
#[derive(Clone)]
pub struct ByteBar {
    bar: Option<ProgressBar>,
    multi: Option<MultiProgress>,
    label: String,
}

impl ByteBar {
    pub fn hidden() -> ByteBar {
        ByteBar {
            bar: None,
            multi: None,
            label: String::new(),
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Removes the bar and prints one summary line: bytes, duration and throughput.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            let bytes = b.position();
            let secs = b.elapsed().as_secs_f64();
            b.finish_and_clear();
            let rate = if secs > 0.0 {
                bytes as f64 / secs
            } else {
                bytes as f64
            };
            let line = format!(
                "{} {} in {:.2}s ({}/s)",
                self.label,
                HumanBytes(bytes),
                secs,
                HumanBytes(rate as u64)
            );
            match &self.multi {
                Some(m) => m.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
    }
}

/// Wraps a writer so every write advances a [`ByteBar`].
pub struct BarWriter<W> {
    pub inner: W,
    bar: ByteBar,
}

impl<W: Write> BarWriter<W> {
    pub fn new(inner: W, bar: ByteBar) -> Self {
        BarWriter { inner, bar }
    }
}

impl<W: Write> Write for BarWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Wraps a reader so every read advances a [`ByteBar`].
pub struct BarReader<R> {
    inner: R,
    bar: ByteBar,
}

impl<R: std::io::Read> BarReader<R> {
    pub fn new(inner: R, bar: ByteBar) -> Self {
        BarReader { inner, bar }
    }
}

impl<R: std::io::Read> std::io::Read for BarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn unsized_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {msg} {bytes} ({binary_bytes_per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn sized_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

pub struct StepHandle {
    id: usize,
    started: Instant,
    /// Holds an incomplete output line until its newline arrives, so prefixes stay at line starts.
    partial: Vec<u8>,
}

/// Makes [`ByteBar`]s; `Clone + Sync`, for closures that need no [`Reporter`].
#[derive(Clone)]
pub struct BarFactory {
    multi: Option<MultiProgress>,
}

impl BarFactory {
    /// A byte bar for a transfer within step `step_id`; `total` when known.
    pub fn bytes(&self, step_id: usize, what: &str, total: Option<u64>) -> ByteBar {
        let Some(m) = &self.multi else {
            return ByteBar::hidden();
        };
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(sized_style()),
            None => ProgressBar::no_length().with_style(unsized_style()),
        }
        .with_finish(ProgressFinish::AndClear);
        let bar = m.add(
            bar.with_prefix(format!("#{step_id}"))
                .with_message(what.to_string()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        ByteBar {
            bar: Some(bar),
            multi: Some(m.clone()),
            label: format!("#{step_id} {what}"),
        }
    }
}

impl StepHandle {
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Reporter {
    pub fn new(mode: Progress) -> Self {
        let bars = (mode == Progress::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Reporter {
            mode,
            next_id: AtomicUsize::new(1),
            bars,
        }
    }

    pub fn quiet(&self) -> bool {
        self.mode == Progress::Quiet
    }

    /// Prints one line to stderr, with any running bar moved out of the way.
    fn line(&self, msg: &str) {
        match &self.bars {
            Some(m) => m.suspend(|| eprintln!("{msg}")),
            None => eprintln!("{msg}"),
        }
    }

    pub fn message(&self, msg: &str) {
        if !self.quiet() {
            self.line(msg);
        }
    }

    pub fn warn(&self, msg: &str) {
        // Warnings are shown even in quiet mode: they tell the user something is off.
        self.line(&format!("WARNING: {msg}"));
    }

    /// A byte bar for a transfer within step `step_id` (tty mode; hidden otherwise).
    pub fn bytes(&self, step_id: usize, what: &str, total: Option<u64>) -> ByteBar {
        self.bar_factory().bytes(step_id, what, total)
    }

    /// A `Sync` handle that makes byte bars, for closures run on other threads.
    pub fn bar_factory(&self) -> BarFactory {
        BarFactory {
            multi: self.bars.clone(),
        }
    }

    pub fn start(&self, title: &str) -> StepHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if !self.quiet() {
            self.line(&format!("#{id} {title}"));
        }
        StepHandle {
            id,
            started: Instant::now(),
            partial: Vec::new(),
        }
    }

    pub fn detail(&self, step: &StepHandle, msg: &str) {
        if !self.quiet() {
            self.line(&format!("#{} {msg}", step.id));
        }
    }

    /// Streams a chunk of step output, prefixing every complete line.
    pub fn output(&self, step: &mut StepHandle, data: &[u8]) {
        if self.quiet() {
            return;
        }
        step.partial.extend_from_slice(data);
        let id = step.id;
        let partial = &mut step.partial;
        let mut write = move || {
            let mut err = std::io::stderr().lock();
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                let _ = write!(err, "#{id} ");
                let _ = err.write_all(&line);
            }
        };
        match &self.bars {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }

    fn flush_partial(&self, step: &mut StepHandle) {
        if !step.partial.is_empty() && !self.quiet() {
            self.line(&format!(
                "#{} {}",
                step.id,
                String::from_utf8_lossy(&step.partial)
            ));
        }
        step.partial.clear();
    }

    pub fn cached(&self, mut step: StepHandle) {
        self.flush_partial(&mut step);
        if !self.quiet() {
            self.line(&format!("#{} CACHED", step.id));
        }
    }

    pub fn done(&self, mut step: StepHandle) {
        self.flush_partial(&mut step);
        if !self.quiet() {
            self.line(&format!(
                "#{} DONE {}",
                step.id,
                secs(step.started.elapsed())
            ));
        }
    }

    /// The step was stopped by Ctrl-C or by another stage's failure (BuildKit prints `CANCELED`).
    pub fn canceled(&self, mut step: StepHandle) {
        self.flush_partial(&mut step);
        self.line(&format!("#{} CANCELED", step.id));
    }

    pub fn error(&self, mut step: StepHandle, msg: &str) {
        self.flush_partial(&mut step);
        self.line(&format!(
            "#{} ERROR {}: {msg}",
            step.id,
            secs(step.started.elapsed())
        ));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl crate::context::remote::Transfer for ByteBar {
    fn advance(&mut self, bytes: u64) {
        self.inc(bytes);
    }
    fn finish(self: Box<Self>) {
        ByteBar::finish(*self);
    }
}

/// Download bars for the URL sources of one step.
pub struct DownloadBars {
    pub bars: BarFactory,
    pub step_id: usize,
}

impl crate::context::remote::TransferFactory for DownloadBars {
    fn start(&self, url: &str, total: Option<u64>) -> Box<dyn crate::context::remote::Transfer> {
        Box::new(
            self.bars
                .bytes(self.step_id, &format!("downloading {url}"), total),
        )
    }
}
