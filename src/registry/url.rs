//! URL building for registry requests: query strings and `Location` headers.

use super::auth::url_origin;

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `k=v` pairs to a URL that may already have a query.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = url.to_string();
    for (k, v) in pairs {
        u.push(if u.contains('?') { '&' } else { '?' });
        u.push_str(k);
        u.push('=');
        u.push_str(&encode_query(v));
    }
    u
}

/// Resolves a `Location` header against the URL it answered.
pub fn resolve_location(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let Some((scheme, authority)) = url_origin(base) else {
        return loc.to_string();
    };
    if loc.starts_with("//") {
        return format!("{scheme}:{loc}");
    }
    if loc.starts_with('/') {
        return format!("{scheme}://{authority}{loc}");
    }
    let path = base.split('?').next().unwrap_or(base);
    match path.rfind('/') {
        Some(i) if i > scheme.len() + 3 => format!("{}/{loc}", &path[..i]),
        _ => format!("{scheme}://{authority}/{loc}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let base = "http://127.0.0.1:5000/v2/x/blobs/uploads/";
        assert_eq!(
            resolve_location(base, "/v2/x/blobs/uploads/u?_state=a"),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u?_state=a"
        );
        assert_eq!(resolve_location(base, "https://other/b"), "https://other/b");
        assert_eq!(
            resolve_location("http://h/v2/a/b?q=1", "c"),
            "http://h/v2/a/c"
        );
        assert_eq!(
            with_query("http://h/u?_state=a", &[("digest", "sha256:ab")]),
            "http://h/u?_state=a&digest=sha256%3Aab"
        );
    }
}
