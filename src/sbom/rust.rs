//! Rust: the `.dep-v0` section cargo-auditable links into a binary, zlib-compressed JSON
//! `{"packages": [{"name", "version", "source", "kind", "dependencies", "root"}]}`
//! (docs/sbom.md, "Rust"). Build-time dependencies (`"kind": "build"`) are not in the binary and
//! are not listed.

use std::io::Read;

use serde::Deserialize;

use super::elf::Binary;
use super::model::{Package, Source};
use super::purl::purl;

/// A decompressed `.dep-v0` larger than this is not read (real ones are a few tens of KB).
const JSON_LIMIT: u64 = 16 << 20;

#[derive(Deserialize)]
struct Audit {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    #[serde(default)]
    kind: Option<String>,
}

/// The crates of every binary that has a readable `.dep-v0` (one that does not decode is
/// skipped: it describes nothing a reader could check).
pub(crate) fn packages(binaries: &[Binary]) -> Vec<Package> {
    let mut out = Vec::new();
    for b in binaries {
        let Some(compressed) = &b.dep_v0 else {
            continue;
        };
        let Some(audit) = decode(compressed) else {
            continue;
        };
        for p in audit.packages {
            if p.kind.as_deref() == Some("build") {
                continue;
            }
            out.push(Package {
                source: Source::Cargo,
                purl: purl("cargo", None, &p.name, &p.version, &[]),
                name: p.name,
                version: p.version,
                license: None,
                location: b.path.clone(),
                files: Vec::new(),
            });
        }
    }
    out
}

fn decode(compressed: &[u8]) -> Option<Audit> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(JSON_LIMIT + 1)
        .read_to_end(&mut json)
        .ok()?;
    if json.len() as u64 > JSON_LIMIT {
        return None;
    }
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn dep_v0(json: &str) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json.as_bytes()).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn decodes_packages_and_drops_build_dependencies() {
        let b = Binary {
            path: "usr/bin/rg".into(),
            dep_v0: Some(dep_v0(
                r#"{"packages":[{"name":"ripgrep","version":"14.1.0","source":"local","root":true,"dependencies":[1]},
                {"name":"memchr","version":"2.7.1","source":"crates.io"},
                {"name":"cc","version":"1.0.0","source":"crates.io","kind":"build"}]}"#,
            )),
            go_buildinfo: None,
        };
        let bad = Binary {
            path: "usr/bin/bad".into(),
            dep_v0: Some(b"not zlib".to_vec()),
            go_buildinfo: None,
        };
        let pkgs = packages(&[b, bad]);
        let purls: Vec<_> = pkgs.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            ["pkg:cargo/ripgrep@14.1.0", "pkg:cargo/memchr@2.7.1"]
        );
        assert_eq!(pkgs[0].location, std::path::Path::new("usr/bin/rg"));
    }
}
