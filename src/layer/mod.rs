//! Layers: diff tar writer, applier, compression, decompression.
//!
//! * [`diff::write_layer`]: overlay upper dir -> compressed layer blob + diffID/digest, one pass.
//! * [`apply::apply`]: layer tar -> directory, every path resolved inside the root.
//! * [`compress::decompress`]: sniff gzip/bzip2/xz/zstd and wrap a reader (decoded on its own
//!   thread, [`readahead::ReadAhead`]).
//! * [`blob_codec`]: a stored layer blob's codec and its digest + diffID in one pass.
//! * [`archive::extract_if_archive`]: ADD's "is this a (compressed) tar? then extract it".

pub mod apply;
pub mod archive;
pub mod blob_codec;
mod block_writer;
pub mod compress;
pub mod compression;
pub mod diff;
pub mod error;
pub mod limits;
pub(crate) mod pgzip;
pub mod readahead;
pub mod squash;
pub mod whiteout;
mod xattrs;

pub use apply::{apply, ApplyOptions, ApplyStats, WhiteoutMode};
pub use archive::extract_if_archive;
pub use compress::{decompress, is_tar, Detected};
pub use compression::{Compression, LayerInfo, Profile};
pub use diff::{write_layer, LayerOptions};
pub use error::LayerError;
pub use limits::Limits;
