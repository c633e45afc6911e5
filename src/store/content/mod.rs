//! Content: blobs by digest (verified ingest through `BlobWriter`) and the compressed forms of
//! stored layers. Knows nothing of images or tags; `meta` records point into it.

pub mod blob;
pub mod compressed;
