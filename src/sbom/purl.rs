//! Package URLs (purl: `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`): each component is
//! percent-encoded except the unreserved characters (and `:` in versions, for Debian epochs);
//! qualifiers are sorted by key, as the purl spec's canonical form asks.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const VERSION: &AsciiSet = &COMPONENT.remove(b':');

/// Builds a purl; `namespace` may have several `/`-separated segments (Go module paths), each
/// encoded on its own. Empty qualifier values are dropped.
pub(crate) fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&utf8_percent_encode(seg, COMPONENT).to_string());
            out.push('/');
        }
    }
    out.push_str(&utf8_percent_encode(name, COMPONENT).to_string());
    if !version.is_empty() {
        out.push('@');
        out.push_str(&utf8_percent_encode(version, VERSION).to_string());
    }
    let mut q: Vec<&(&str, &str)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort();
    for (i, (k, v)) in q.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&utf8_percent_encode(v, COMPONENT).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::purl;

    #[test]
    fn encodes_components_and_sorts_qualifiers() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                "2.36-9+deb12u4",
                &[("distro", "debian-12"), ("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("npm", Some("@types"), "node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(
            purl("golang", Some("golang.org/x"), "sys", "v0.1.0", &[]),
            "pkg:golang/golang.org/x/sys@v0.1.0"
        );
        assert_eq!(
            purl("deb", Some("debian"), "x", "1:2.0", &[("arch", "")]),
            "pkg:deb/debian/x@1:2.0"
        );
    }
}
