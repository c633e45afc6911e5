//! What a copy is given (`CopyEnv`, the archive `Extractor`) and what it counts (`CopyStats`):
//! shared by `copy` and its writers, kept apart so that they do not import each other.

use std::path::Path;

/// Extracts `file` into `dest_in_root` inside `root` if it is a tar (plain or compressed) and
/// returns whether it did; creates `dest_in_root` (in-root) when extracting. Provided by the layer
/// module (`layer::archive::extract_if_archive`), injected by the integrator.
pub type Extractor<'a> =
    &'a (dyn Fn(&Path, &Path, &Path, Option<(u32, u32)>) -> Result<bool, String> + Sync);

/// What the environment provides to a copy.
pub struct CopyEnv<'a> {
    pub extract: Option<Extractor<'a>>,
    /// Where downloads and git clones are staged (default: the system temp dir).
    pub scratch: Option<&'a Path>,
    /// Upper bound for one remote download.
    pub max_download: u64,
    /// The build's cancel flag: checked per entry and per block of file data.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    /// Incremental COPY: the previous snapshot's unchanged files are linked, and what is
    /// written is recorded (`reuse`). Only for a copy straight into an upper dir.
    pub reuse: Option<&'a super::reuse::Reuse>,
}

impl Default for CopyEnv<'_> {
    fn default() -> Self {
        CopyEnv {
            extract: None,
            scratch: None,
            max_download: 8 << 30,
            cancel: None,
            reuse: None,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    pub bytes: u64,
    pub extracted: u64,
}

impl CopyStats {
    pub(super) fn add(&mut self, o: &CopyStats) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.specials += o.specials;
        self.bytes += o.bytes;
        self.extracted += o.extracted;
    }
}
