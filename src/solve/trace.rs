//! What the provenance records of a build as it runs (filled by the solver's threads, read by
//! `solve::record`).

use crate::attest::BaseImage;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Trace {
    /// Base images as resolved, once per name and platform.
    pub(super) bases: Mutex<Vec<BaseImage>>,
    /// RUN steps with network access: (Dockerfile line, network mode).
    pub(super) network_runs: Mutex<Vec<(usize, String)>>,
}
