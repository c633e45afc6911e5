//! `ADD <http(s) URL>`: download with `ureq`, bounded in size, checksum-verified, never extracted
//! unless `--unpack`. BuildKit names the file after the last segment of the URL path
//! (`__unnamed__` when there is none), gives it mode 0600 and the `Last-Modified` time.
//!
//! [`RemoteCache`] keeps downloads between builds as BuildKit's HTTP source does: each URL's last
//! `ETag`/`Last-Modified` is revalidated with `If-None-Match`/`If-Modified-Since` (a 304 reuses the
//! kept bytes), the build cache key is the digest of the content (not the URL), and a `--checksum`
//! whose content is already kept needs no request at all.

use super::error::ContextError;
use crate::digest::{Digest, HashingWriter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One running download's progress, as reported to the caller.
pub trait Transfer: Send {
    fn advance(&mut self, bytes: u64);
    fn finish(self: Box<Self>);
}

/// Starts a [`Transfer`] per download (`total` when the server sent a length).
pub trait TransferFactory: Sync {
    fn start(&self, url: &str, total: Option<u64>) -> Box<dyn Transfer>;
}

/// A URL's content, kept in the remote cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The kept file (read-only use: it is shared by later builds).
    pub path: PathBuf,
    /// File name for the destination (from the URL path).
    pub name: String,
    /// `Last-Modified` of the download, seconds since the epoch.
    pub mtime: Option<i64>,
    pub digest: Digest,
    pub size: u64,
}

/// What is remembered about a URL (`<dir>/<sha256(url)>.json`).
#[derive(Serialize, Deserialize, Clone)]
struct UrlRecord {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    mtime: Option<i64>,
    digest: Digest,
    size: u64,
}

/// Downloads kept under one directory (`<root>/cache/http`): `blobs/<hex>` and a record per URL.
pub struct RemoteCache<'a> {
    dir: PathBuf,
    max: u64,
    progress: Option<&'a dyn TransferFactory>,
    /// URLs already resolved in this build: a second use makes no request.
    resolved: Mutex<HashMap<String, Fetched>>,
}

impl<'a> RemoteCache<'a> {
    pub fn new(dir: &Path, max: u64) -> RemoteCache<'a> {
        RemoteCache {
            dir: dir.to_path_buf(),
            max,
            progress: None,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_progress(mut self, progress: &'a dyn TransferFactory) -> Self {
        self.progress = Some(progress);
        self
    }

    fn record_path(&self, url: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", Digest::of_bytes(url.as_bytes()).hex()))
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join(d.hex())
    }

    fn fetched(&self, url: &str, rec: &UrlRecord) -> Fetched {
        Fetched {
            path: self.blob_path(&rec.digest),
            name: url_file_name(url),
            mtime: rec.mtime,
            digest: rec.digest.clone(),
            size: rec.size,
        }
    }

    /// The content of `url`: revalidated against the kept copy, or downloaded; verified against
    /// `checksum` when given.
    pub fn fetch(&self, url: &str, checksum: Option<&str>) -> Result<Fetched, ContextError> {
        let expected = checksum.map(parse_checksum).transpose()?;
        if let Some(f) = self.resolved.lock().ok().and_then(|m| m.get(url).cloned()) {
            return Ok(f);
        }
        let fetched = self.fetch_uncached(url, expected.as_ref())?;
        if let Some(expected) = &expected {
            if *expected != fetched.digest {
                return Err(ContextError::ChecksumMismatch {
                    url: url.to_string(),
                    expected: expected.to_string(),
                    actual: fetched.digest.to_string(),
                });
            }
        }
        if let Ok(mut m) = self.resolved.lock() {
            m.insert(url.to_string(), fetched.clone());
        }
        Ok(fetched)
    }

    fn fetch_uncached(
        &self,
        url: &str,
        expected: Option<&Digest>,
    ) -> Result<Fetched, ContextError> {
        let blobs = self.dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| ContextError::io(&blobs, e))?;
        // A missing or unreadable record only means "not kept".
        let kept: Option<UrlRecord> = std::fs::read(self.record_path(url))
            .ok()
            .and_then(|b| serde_json::from_slice::<UrlRecord>(&b).ok())
            .filter(|r| r.url == url && self.blob_path(&r.digest).is_file());
        if let (Some(rec), Some(exp)) = (&kept, expected) {
            if rec.digest == *exp {
                return Ok(self.fetched(url, rec));
            }
        }
        let fail = |reason: String| ContextError::Download {
            url: url.to_string(),
            reason,
        };
        check_url(url)?;
        let mut request = ureq::get(url)
            .config()
            .timeout_global(download_deadline())
            .build();
        if let Some(rec) = &kept {
            if let Some(etag) = &rec.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(lm) = &rec.last_modified {
                request = request.header("If-Modified-Since", lm);
            }
        }
        let response = request.call().map_err(|e| request_error(url, e))?;
        if response.status().as_u16() == 304 {
            if let Some(rec) = &kept {
                return Ok(self.fetched(url, rec));
            }
        }
        if !response.status().is_success() {
            return Err(fail(format!("HTTP status {}", response.status())));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let last_modified = header("last-modified");
        let total = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let tmp =
            tempfile::NamedTempFile::new_in(&blobs).map_err(|e| ContextError::io(&blobs, e))?;
        let mut progress = self.progress.map(|p| p.start(url, total));
        let mut writer = HashingWriter::new(tmp);
        let mut body = response
            .into_body()
            .into_reader()
            .take(self.max.saturating_add(1));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = body.read(&mut buf).map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| ContextError::io(&blobs, e))?;
            if let Some(p) = progress.as_mut() {
                p.advance(n as u64);
            }
        }
        if let Some(p) = progress {
            p.finish();
        }
        let (mut tmp, digest, size) = writer.finish();
        if size > self.max {
            return Err(ContextError::DownloadTooLarge {
                url: url.to_string(),
                limit: self.max,
            });
        }
        tmp.flush().map_err(|e| ContextError::io(&blobs, e))?;
        let rec = UrlRecord {
            url: url.to_string(),
            etag,
            mtime: last_modified.as_deref().and_then(parse_http_date),
            last_modified,
            digest: digest.clone(),
            size,
        };
        let blob = self.blob_path(&digest);
        // A mismatching download is not kept: the caller reports it.
        if expected.is_none_or(|e| *e == digest) {
            tmp.persist(&blob)
                .map_err(|e| ContextError::io(&blob, e.error))?;
            let json = serde_json::to_vec(&rec).map_err(|e| fail(e.to_string()))?;
            let path = self.record_path(url);
            let mut rtmp = tempfile::NamedTempFile::new_in(&self.dir)
                .map_err(|e| ContextError::io(&self.dir, e))?;
            rtmp.write_all(&json)
                .map_err(|e| ContextError::io(&path, e))?;
            rtmp.persist(&path)
                .map_err(|e| ContextError::io(&path, e.error))?;
        }
        Ok(self.fetched(url, &rec))
    }
}

/// `prune -a`: forgets every kept download under `dir` (records and blobs) and returns the bytes
/// freed. Temp files of a download in progress (`.tmp*`) and the directories stay, so a build
/// fetching at the same time still completes.
pub fn prune_cache(dir: &Path) -> Result<u64, ContextError> {
    let mut freed = 0;
    for sub in [dir.to_path_buf(), dir.join("blobs")] {
        let entries = match std::fs::read_dir(&sub) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ContextError::io(&sub, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| ContextError::io(&sub, e))?;
            let name = entry.file_name();
            let meta = entry
                .metadata()
                .map_err(|e| ContextError::io(entry.path(), e))?;
            if !meta.is_file() || name.to_string_lossy().starts_with(".tmp") {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => freed += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ContextError::io(entry.path(), e)),
            }
        }
    }
    Ok(freed)
}

/// How long one download may take in all, headers and body: `RBUILD_DOWNLOAD_TIMEOUT` seconds
/// (default 3600; 0 = no limit). Without it a server that drips bytes holds the build forever
/// (README "ADD from a URL"; the registry has its own deadline, `--registry-timeout`).
fn download_deadline() -> Option<std::time::Duration> {
    let secs = std::env::var("RBUILD_DOWNLOAD_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(3600);
    (secs > 0).then(|| std::time::Duration::from_secs(secs))
}

/// Refuses a URL that does not parse (bad authority, spaces, ...) before any request.
fn check_url(url: &str) -> Result<(), ContextError> {
    url.parse::<ureq::http::Uri>()
        .map(|_| ())
        .map_err(|e| ContextError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

fn request_error(url: &str, e: ureq::Error) -> ContextError {
    match e {
        ureq::Error::BadUri(reason) => ContextError::BadUrl {
            url: url.to_string(),
            reason,
        },
        other => ContextError::Download {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

fn parse_http_date(v: &str) -> Option<i64> {
    jiff::fmt::rfc2822::parse(v)
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// A downloaded file, staged in a temp file until copied.
pub struct Download {
    pub file: tempfile::NamedTempFile,
    /// File name for the destination (from the URL path).
    pub name: String,
    /// `Last-Modified`, seconds since the epoch.
    pub mtime: Option<i64>,
    pub digest: Digest,
    pub size: u64,
}

impl Download {
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// `http://` or `https://` and not a git repository URL (BuildKit `isHTTPSource`).
pub fn is_http_source(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://"))
        && super::git::parse_git_ref(src).is_none()
}

/// Parses `--checksum=sha256:<hex>` for an HTTP source.
pub fn parse_checksum(sum: &str) -> Result<Digest, ContextError> {
    Digest::parse(sum).map_err(|_| ContextError::BadChecksum(sum.to_string()))
}

/// The destination file name for `url`: the last segment of its (percent-decoded) path, or
/// `__unnamed__` when that is empty, `.`, `..`, or not a single safe name (SECURITY C4).
pub fn url_file_name(url: &str) -> String {
    const UNNAMED: &str = "__unnamed__";
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = match after_scheme.find('/') {
        Some(i) => &after_scheme[i..],
        None => "",
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path);
    let trimmed = decoded.trim_end_matches('/');
    let base = trimmed.rsplit('/').next().unwrap_or("");
    if base.is_empty() || base == "." || base == ".." || base.chars().any(|c| c.is_control()) {
        UNNAMED.to_string()
    } else {
        base.to_string()
    }
}

/// Minimal RFC 3986 percent-decoding (invalid escapes are kept literally, as Go's lenient path).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into a temp file under `scratch`, at most `max` bytes, verifying `checksum`;
/// stops with `Cancelled` once `cancel` is set.
pub fn download(
    url: &str,
    checksum: Option<&str>,
    scratch: &Path,
    max: u64,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Download, ContextError> {
    let expected = checksum.map(parse_checksum).transpose()?;
    let fail = |reason: String| ContextError::Download {
        url: url.to_string(),
        reason,
    };
    check_url(url)?;
    let response = ureq::get(url)
        .config()
        .timeout_global(download_deadline())
        .build()
        .call()
        .map_err(|e| request_error(url, e))?;
    let mtime = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let file =
        tempfile::NamedTempFile::new_in(scratch).map_err(|e| ContextError::io(scratch, e))?;
    let mut writer = HashingWriter::new(file);
    let body = response
        .into_body()
        .into_reader()
        .take(max.saturating_add(1));
    let mut body = crate::cancel::Reader::new(body, cancel);
    std::io::copy(&mut body, &mut writer).map_err(|e| {
        if crate::cancel::is_cancelled(&e) {
            ContextError::Cancelled(crate::cancel::Cancelled)
        } else {
            fail(e.to_string())
        }
    })?;
    let (mut file, digest, size) = writer.finish();
    if size > max {
        return Err(ContextError::DownloadTooLarge {
            url: url.to_string(),
            limit: max,
        });
    }
    file.flush().map_err(|e| ContextError::io(scratch, e))?;
    if let Some(expected) = expected {
        if expected != digest {
            return Err(ContextError::ChecksumMismatch {
                url: url.to_string(),
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    Ok(Download {
        file,
        name: url_file_name(url),
        mtime,
        digest,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        // SECURITY C4 / BuildKit TestSafeFileName shapes.
        assert_eq!(
            url_file_name("https://x.org/a/b/file.tar.gz"),
            "file.tar.gz"
        );
        assert_eq!(url_file_name("https://x.org/a/b/file?x=1#f"), "file");
        assert_eq!(url_file_name("https://x.org"), "__unnamed__");
        assert_eq!(url_file_name("https://x.org/"), "__unnamed__");
        assert_eq!(url_file_name("https://x.org/.."), "__unnamed__");
        assert_eq!(url_file_name("https://x.org/a/."), "__unnamed__");
        assert_eq!(
            url_file_name("https://x.org/a%2F..%2F..%2Fetc%2Fpasswd"),
            "passwd"
        );
        assert_eq!(url_file_name("https://x.org/a%2f.."), "__unnamed__");
        assert_eq!(url_file_name("https://x.org/a%00b"), "__unnamed__");
        assert_eq!(url_file_name("https://x.org/a%0Ab"), "__unnamed__");
        assert_eq!(url_file_name("https://x.org/dir/"), "dir");
        assert_eq!(url_file_name("https://x.org/sp%20ace"), "sp ace");
    }

    #[test]
    fn http_vs_git() {
        assert!(is_http_source("https://example.com/file.txt"));
        assert!(!is_http_source("https://example.com/repo.git"));
        assert!(!is_http_source("https://example.com/repo.git#main"));
        assert!(!is_http_source("./local"));
    }
}
