//! OCI distribution registries: pull, push, login, and the registry build cache.
//!
//! Why a hand-written blocking client on `ureq` rather than `oci-client` (CRATES.md §3): rbuild is
//! synchronous, and `oci-client` brings tokio + reqwest (~150 crates) while still leaving the parts
//! that matter here to us: resuming a blob with `Range` into the store's atomic blob ingest while
//! verifying its digest, following redirects without forwarding `Authorization` to another host
//! (distribution-spec; CVE-2020-15157), refusing to send credentials to a token realm on another
//! site (CVE-2026-33540), clear 401/403 errors naming the credential source tried, and pushing the
//! stored compressed blobs as they are. The protocol is small (a dozen endpoints), so owning it is
//! cheaper than adapting around an async client. Credentials come from `docker_credential`
//! (`~/.docker/config.json`, `credsStore`, `credHelpers`).
//!
//! Module map: `host` (where a registry is and how to reach it), `auth` (credentials, challenges,
//! tokens), `client` (requests with auth, redirects, retries), `resolve` (manifests, indexes, platforms),
//! `pull`, `push`, `login`, `cache`
//! (`--cache-to/--cache-from`).

pub mod auth;
pub mod cache;
pub mod cache_format;

pub mod client;
pub mod host;
pub mod login;
pub mod pull;
pub mod push;
pub mod push_index;
pub mod resolve;
pub mod url;

pub use client::Client;
pub use host::{Host, RegistryConfig};
pub use pull::{pull, PullOptions, Pulled};
pub use push::{push, PushOptions};
pub use push_index::push_index;

use crate::digest::Digest;
use std::path::PathBuf;

/// Errors talking to a registry. Messages never contain credentials, tokens or query strings.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error(
        "{url}: transfer not finished within its {}s deadline (--registry-timeout)",
        secs
    )]
    Deadline { url: String, secs: u64 },
    #[error("{url}: access denied (HTTP {status}): {tried}")]
    Unauthorized {
        url: String,
        status: u16,
        tried: String,
    },
    #[error("{reference}: manifest unknown (HTTP 404 from {url})")]
    ManifestNotFound { reference: String, url: String },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{what} {digest}: digest mismatch, the downloaded content has digest {actual} (the partial download was deleted)")]
    DigestMismatch {
        what: &'static str,
        digest: Digest,
        actual: Digest,
    },
    #[error("{what} {digest}: size mismatch: the descriptor says {expected} bytes, the registry sent {actual}")]
    SizeMismatch {
        what: &'static str,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("layer {digest}: its content has diffID {actual}, the image config says {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference}: {reason}")]
    BadManifest { reference: String, reason: String },
    #[error("{reference}: no manifest for platform {platform} (available: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{0}")]
    Other(String),
}

impl RegistryError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.into();
        move |source| RegistryError::Io { path, source }
    }
}

/// A URL fit for messages: no userinfo, and query values (presigned signatures, upload state)
/// replaced by `…` (SECURITY G5; containerd `TestRequestSanitize`).
pub fn redact_url(url: &str) -> String {
    let (base, has_query) = match url.split_once('?') {
        Some((b, _)) => (b, true),
        None => (url, false),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    if has_query {
        format!("{base}?…")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g05_redacts_userinfo_and_query() {
        assert_eq!(
            redact_url("https://u:secret@h.example/v2/x?X-Amz-Signature=abc&sig=def"),
            "https://h.example/v2/x?…"
        );
        assert_eq!(redact_url("http://h:5000/v2/"), "http://h:5000/v2/");
    }
}
