//! `ADD <http(s) URL>`: download with `ureq`, bounded in size, checksum-verified, never extracted
//! unless `--unpack`. BuildKit names the file after the last segment of the URL path
//! (`__unnamed__` when there is none), gives it mode 0600 and the `Last-Modified` time.

use super::error::ContextError;
use crate::digest::{Digest, HashingWriter};
use std::io::{Read, Write};
use std::path::Path;

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
    let response = ureq::get(url).call().map_err(|e| match e {
        ureq::Error::BadUri(reason) => ContextError::BadUrl {
            url: url.to_string(),
            reason,
        },
        other => fail(other.to_string()),
    })?;
    let mtime = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())
        .map(|z| z.timestamp().as_second());
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
