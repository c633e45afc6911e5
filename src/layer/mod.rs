//! Layers: diff tar writer, applier, compression, decompression.
