//! Python: installed distributions' `*.dist-info/METADATA` (files from `RECORD`, with their
//! SHA-256) and `*.egg-info/PKG-INFO` or single-file `*.egg-info` (no checksums recorded, so no
//! files). docs/sbom.md, "Python".

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;

use super::control;
use super::license;
use super::model::{Algorithm, FileRecord, Package, Source};
use super::purl::purl;
use super::rootfs::{Entry, RootFs};
use super::SbomError;

const META_LIMIT: u64 = 4 << 20;
const RECORD_LIMIT: u64 = 64 << 20;

pub(crate) fn scan(root: &RootFs, entries: &[Entry]) -> Result<Vec<Package>, SbomError> {
    let mut out = Vec::new();
    for e in entries {
        let Some(name) = e.path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let (meta, record) = if e.is_dir && name.ends_with(".dist-info") {
            (e.path.join("METADATA"), Some(e.path.join("RECORD")))
        } else if e.is_dir && name.ends_with(".egg-info") {
            (e.path.join("PKG-INFO"), None)
        } else if !e.is_dir && name.ends_with(".egg-info") {
            (e.path.clone(), None)
        } else {
            continue;
        };
        let text = match root.read_text(&meta, META_LIMIT) {
            Ok(Some(t)) => t,
            // No or oversized metadata: not a distribution a tool can name.
            Ok(None) | Err(SbomError::TooLarge { .. }) => continue,
            Err(err) => return Err(err),
        };
        let h = control::parse_headers(&text);
        let (Some(pname), Some(version)) = (h.get("Name"), h.get("Version")) else {
            continue;
        };
        let files = match record {
            Some(r) => {
                let site = e.path.parent().unwrap_or(Path::new(""));
                read_record(root, &r, site)?
            }
            None => Vec::new(),
        };
        out.push(Package {
            source: Source::Python,
            name: pname.to_owned(),
            version: version.to_owned(),
            purl: purl("pypi", None, &normalize_name(pname), version, &[]),
            license: metadata_license(&h),
            location: meta,
            files,
        });
    }
    Ok(out)
}

/// PEP 503 normalization, as purl's pypi type asks: lower case, runs of `-_.` → `-`.
fn normalize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `License-Expression` (PEP 639), else the license classifiers, else a one-line `License`.
fn metadata_license(h: &control::Paragraph) -> Option<String> {
    if let Some(e) = h.get("License-Expression").and_then(license::normalize) {
        return Some(e);
    }
    let from_classifiers =
        license::all_of(h.all("Classifier").filter_map(license::from_classifier));
    if from_classifiers.is_some() {
        return from_classifiers;
    }
    h.get("License")
        .filter(|l| !l.contains('\n') && l.len() <= 80)
        .and_then(license::normalize)
}

/// RECORD: CSV rows `path,sha256=<urlsafe base64>,size`, paths relative to the site directory.
fn read_record(root: &RootFs, record: &Path, site: &Path) -> Result<Vec<FileRecord>, SbomError> {
    let text = match root.read_text(record, RECORD_LIMIT) {
        Ok(Some(t)) => t,
        Ok(None) | Err(SbomError::TooLarge { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let cols = csv_row(line);
        let (Some(path), Some(hash)) = (cols.first(), cols.get(1)) else {
            continue;
        };
        let Some(digest) = hash
            .strip_prefix("sha256=")
            .and_then(|b| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b)
                    .ok()
            })
            .filter(|d| d.len() == 32)
        else {
            continue;
        };
        out.push(FileRecord {
            path: in_root(&site.join(path)),
            algorithm: Algorithm::Sha256,
            digest: hex::encode(digest),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One CSV row (RECORD quotes a field with `"` when it holds a comma; `""` is a quote).
fn csv_row(line: &str) -> Vec<String> {
    let mut cols = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cols.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    cols.push(cur);
    cols
}

/// The absolute path a relative path names inside the root, `..` resolved lexically and clamped
/// at `/` (RECORD lists scripts as `../../../bin/x`).
fn in_root(p: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::test_fs::write;

    #[test]
    fn dist_info_egg_info_and_record() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let site = "usr/lib/python3/dist-packages";
        write(
            d,
            &format!("{site}/Requests_OAuth-1.0.dist-info/METADATA"),
            "Metadata-Version: 2.1\nName: Requests_OAuth\nVersion: 1.0\n\
Classifier: License :: OSI Approved :: Apache Software License\n\nName: not-a-header\n",
        );
        write(
            d,
            &format!("{site}/Requests_OAuth-1.0.dist-info/RECORD"),
            "requests_oauth/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\
\"odd,name.py\",sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\
../../../bin/oauth,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\
Requests_OAuth-1.0.dist-info/RECORD,,\n",
        );
        write(
            d,
            &format!("{site}/six-1.16.0.egg-info/PKG-INFO"),
            "Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\nLicense: MIT\n",
        );
        write(
            d,
            &format!("{site}/legacy-0.1.egg-info"),
            "Metadata-Version: 1.0\nName: legacy\nVersion: 0.1\nLicense: UNKNOWN\n",
        );
        let root = RootFs::open(d).unwrap();
        let entries = root.walk(1000).unwrap();
        let mut pkgs = scan(&root, &entries).unwrap();
        pkgs.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<_> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.purl.as_str(), p.license.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Requests_OAuth",
                    "pkg:pypi/requests-oauth@1.0",
                    Some("Apache-2.0")
                ),
                ("legacy", "pkg:pypi/legacy@0.1", None),
                ("six", "pkg:pypi/six@1.16.0", Some("MIT")),
            ]
        );
        let files: Vec<_> = pkgs[0].files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            files,
            [
                "/usr/bin/oauth",
                "/usr/lib/python3/dist-packages/odd,name.py",
                "/usr/lib/python3/dist-packages/requests_oauth/__init__.py",
            ]
        );
        // sha256 of the empty file, from RECORD's urlsafe base64.
        assert_eq!(
            pkgs[0].files[0].digest,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
