//! The build context: .dockerignore, source resolution, content hashing, COPY/ADD into a rootfs.
//!
//! Semantics follow BuildKit's Dockerfile frontend (`dockerfile2llb/convert_copy.go`) and its
//! file backend (`tonistiigi/fsutil/copy`); the module docs of each file say which part. Points
//! where rbuild deliberately differs are marked "Deviation" in the module docs.

pub mod build_context;
pub mod chmod;
pub mod copy;
mod copy_env;
mod copy_io;
mod copy_writer;
pub mod dest_root;
pub mod error;
pub mod filepath_match;
pub mod git;
pub mod hash;
pub mod ignore;
pub mod memo;
pub mod path_clean;
pub mod remote;
pub mod reuse;
pub mod source;
pub mod stdin_tar;
pub mod tarsum;

pub use build_context::Context;
pub use copy::{
    copy, copy_resolved, resolve, CopyEnv, CopyRequest, CopyStats, Extractor, Resolution,
    SourceRoot,
};
pub use error::ContextError;
pub use hash::{hash_resolved, hash_sources, resolved_digests};
pub use ignore::{read_ignore_file, PatternMatcher};
pub use memo::MemoPath;
