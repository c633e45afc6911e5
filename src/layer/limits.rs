//! How far an archive may expand on disk: ADD archives, pulled and loaded layers (issue 16,
//! archive bombs). Two limits, both checked *before* an entry's data is written:
//!
//! * a cap on the expanded size: the sum of the entries' logical sizes (a sparse file counts
//!   with its holes, as extraction writes them out) plus 512 bytes per entry (its header, so a
//!   flood of empty files counts too);
//! * a free-space margin: what the archive expands to must leave at least this much free on the
//!   destination's filesystem (`statvfs` when extraction starts), or 5% of that filesystem's
//!   size when that is less (a small tmpfs is not refused everything).
//!
//! The CLI sets them once per process ([`configure`]: `--max-expanded-size`,
//! `--min-free-space`); [`Limits::default`] is what was configured, else the defaults below.

use std::os::fd::AsFd;
use std::sync::OnceLock;

/// Default cap on what one archive or layer expands to: 64 GiB.
pub const DEFAULT_MAX_EXPANDED: u64 = 64 << 30;
/// Default free space an extraction must leave on its filesystem: 512 MiB.
pub const DEFAULT_MIN_FREE: u64 = 512 << 20;
/// The margin never exceeds this share of the filesystem's size (1/20 = 5%).
const MAX_MARGIN_SHARE: u64 = 20;

/// The margin kept on a filesystem of `fs_size` bytes when `min_free` is asked for.
pub fn effective_margin(min_free: u64, fs_size: u64) -> u64 {
    min_free.min(fs_size / MAX_MARGIN_SHARE)
}
/// What one entry costs besides its data (its tar header).
pub const ENTRY_COST: u64 = 512;

/// The limits of one extraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the expanded (logical) size; `None`: no cap.
    pub max_expanded: Option<u64>,
    /// Free space to leave on the destination's filesystem; 0: not checked.
    pub min_free: u64,
}

static CONFIGURED: OnceLock<Limits> = OnceLock::new();

/// Sets the process-wide limits (once, from the CLI); later calls are ignored.
pub fn configure(limits: Limits) {
    let _ = CONFIGURED.set(limits);
}

impl Default for Limits {
    fn default() -> Self {
        *CONFIGURED.get_or_init(|| Limits::from_flags(None, None))
    }
}

impl Limits {
    /// From `--max-expanded-size` and `--min-free-space`: unset means the default, 0 none.
    pub fn from_flags(max_expanded: Option<u64>, min_free: Option<u64>) -> Limits {
        Limits {
            max_expanded: match max_expanded {
                Some(0) => None,
                Some(n) => Some(n),
                None => Some(DEFAULT_MAX_EXPANDED),
            },
            min_free: min_free.unwrap_or(DEFAULT_MIN_FREE),
        }
    }

    /// No limit at all.
    pub fn none() -> Limits {
        Limits {
            max_expanded: None,
            min_free: 0,
        }
    }
}

/// Why an extraction was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The expanded size would pass `cap`.
    Cap { cap: u64 },
    /// Less than `margin` would be left (`avail` was free when extraction started).
    Space { avail: u64, margin: u64 },
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Cap { cap } => write!(
                f,
                "expands to more than {cap} bytes (logical size, sparse holes included; \
                 --max-expanded-size)"
            ),
            Exceeded::Space { avail, margin } => write!(
                f,
                "would leave less than {margin} bytes free on the destination's filesystem \
                 ({avail} bytes were free; --min-free-space)"
            ),
        }
    }
}

/// The running count of one extraction against its limits.
pub(crate) struct Budget {
    limits: Limits,
    /// Free bytes on the destination's filesystem at the start and the margin to keep there
    /// (when a margin is set).
    space: Option<(u64, u64)>,
    used: u64,
}

impl Budget {
    /// Starts counting for an extraction into `dest`.
    pub(crate) fn new(limits: Limits, dest: impl AsFd) -> std::io::Result<Budget> {
        let space = if limits.min_free > 0 {
            let st = rustix::fs::fstatvfs(dest)?;
            let avail = st.f_bavail.saturating_mul(st.f_frsize);
            let size = st.f_blocks.saturating_mul(st.f_frsize);
            Some((avail, effective_margin(limits.min_free, size)))
        } else {
            None
        };
        Ok(Budget {
            limits,
            space,
            used: 0,
        })
    }

    /// Counts `bytes` more (an entry: [`ENTRY_COST`] plus its logical size); an error if that
    /// passes a limit.
    pub(crate) fn take(&mut self, bytes: u64) -> Result<(), Exceeded> {
        self.used = self.used.saturating_add(bytes);
        if let Some(cap) = self.limits.max_expanded {
            if self.used > cap {
                return Err(Exceeded::Cap { cap });
            }
        }
        if let Some((avail, margin)) = self.space {
            if self.used > avail.saturating_sub(margin) {
                return Err(Exceeded::Space { avail, margin });
            }
        }
        Ok(())
    }

    /// Bytes counted so far.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_counts_headers_and_logical_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::open(dir.path()).unwrap();
        let limits = Limits {
            max_expanded: Some(10_000),
            min_free: 0,
        };
        let mut b = Budget::new(limits, &f).unwrap();
        b.take(ENTRY_COST + 8_000).unwrap();
        assert_eq!(b.used(), 8_512);
        assert_eq!(
            b.take(ENTRY_COST + 1_000),
            Err(Exceeded::Cap { cap: 10_000 })
        );
    }

    #[test]
    fn margin_is_at_most_a_twentieth_of_the_filesystem() {
        assert_eq!(
            effective_margin(DEFAULT_MIN_FREE, 100 << 30),
            DEFAULT_MIN_FREE
        );
        assert_eq!(
            effective_margin(DEFAULT_MIN_FREE, 16 << 20),
            (16 << 20) / 20
        );
        assert_eq!(effective_margin(0, 100 << 30), 0);
    }
}
