//! rbuild: a daemonless Dockerfile image builder.
//!
//! One module per concept; see `docs/ARCHITECTURE.md` for how they fit together.

pub mod attest;
pub mod cancel;
pub mod cli;
pub mod compare;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod exec;
pub mod export;
pub mod fileop;
pub mod image;
pub mod layer;
pub mod lint;
pub mod plan;
pub mod platform;
pub mod registry;
pub mod rootless;
pub mod sbom;
pub mod snapshot;
pub mod solve;
pub mod store;
