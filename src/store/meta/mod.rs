//! Metadata: images and tags, layer records by chainID, distribution sources, build cache
//! records, leases, and the history rows `rbuild history` shows. Points into `content` by digest;
//! never imports it.

pub mod cache;
pub mod distribution;
pub mod history;
pub mod images;
pub mod indexes;
pub mod layers;
pub mod lease;
