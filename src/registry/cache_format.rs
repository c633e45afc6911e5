//! Names of the build cache artifact (`docs/registry-cache.md`), shared by `cache` (export and
//! import of records) and `push` (the inline-cache annotation of a pushed image).

/// Media type of the cache config blob.
pub const MEDIA_CACHE_CONFIG: &str = "application/vnd.rbuild.cache.config.v1+json";

/// Manifest annotation of an image pushed with `--cache-to type=inline`: the digest of its cache
/// config blob (same repository).
pub const ANNOTATION_INLINE_CACHE: &str = "io.rbuild.cache.config";
