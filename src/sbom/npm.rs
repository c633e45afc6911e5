//! npm: `node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`
//! (docs/sbom.md, "npm"). Only package.json files at those places count: the ones deeper inside a
//! package (fixtures, examples) are not installed packages. npm records no file checksums.

use std::path::Path;

use serde::Deserialize;

use super::license;
use super::model::{Package, Source};
use super::purl::purl;
use super::rootfs::{Entry, RootFs};
use super::SbomError;

const LIMIT: u64 = 4 << 20;

#[derive(Deserialize)]
struct PackageJson {
    name: Option<String>,
    version: Option<String>,
    license: Option<serde_json::Value>,
    licenses: Option<Vec<serde_json::Value>>,
}

pub(crate) fn scan(root: &RootFs, entries: &[Entry]) -> Result<Vec<Package>, SbomError> {
    let mut out = Vec::new();
    for e in entries {
        if e.is_dir || !is_installed_manifest(&e.path) {
            continue;
        }
        let bytes = match root.read(&e.path, LIMIT) {
            Ok(Some(b)) => b,
            Ok(None) | Err(SbomError::TooLarge { .. }) => continue,
            Err(err) => return Err(err),
        };
        // A package.json that is not JSON (or lacks name/version) names no package.
        let Ok(pj) = serde_json::from_slice::<PackageJson>(&bytes) else {
            continue;
        };
        let (Some(name), Some(version)) = (pj.name, pj.version) else {
            continue;
        };
        let (ns, base) = match name.split_once('/') {
            Some((scope, n)) if scope.starts_with('@') => (Some(scope), n),
            _ => (None, name.as_str()),
        };
        let purl = purl("npm", ns, base, &version, &[]);
        out.push(Package {
            source: Source::Npm,
            license: declared(pj.license.as_ref(), pj.licenses.as_deref()),
            name,
            version,
            purl,
            location: e.path.clone(),
            files: Vec::new(),
        });
    }
    Ok(out)
}

/// `…/node_modules/<name>/package.json` or `…/node_modules/@scope/<name>/package.json`.
fn is_installed_manifest(p: &Path) -> bool {
    if p.file_name().and_then(|n| n.to_str()) != Some("package.json") {
        return false;
    }
    let names: Vec<&str> = p
        .iter()
        .rev()
        .skip(1)
        .take(3)
        .filter_map(|c| c.to_str())
        .collect();
    match names.as_slice() {
        [_, "node_modules", ..] => true,
        [_, scope, "node_modules"] => scope.starts_with('@'),
        _ => false,
    }
}

/// `"license": "MIT"`, the old `{"type": "MIT"}`, or `"licenses": [{"type": …}, …]`.
fn declared(
    license: Option<&serde_json::Value>,
    licenses: Option<&[serde_json::Value]>,
) -> Option<String> {
    let name = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) => license::normalize(s),
            serde_json::Value::Object(o) => o
                .get("type")
                .and_then(|t| t.as_str())
                .and_then(license::normalize),
            _ => None,
        }
    };
    if let Some(l) = license.and_then(name) {
        return Some(l);
    }
    let all: Vec<String> = licenses?.iter().filter_map(name).collect();
    // `licenses` lists alternatives (the package may be used under any of them).
    match all.len() {
        0 => None,
        1 => all.into_iter().next(),
        _ => Some(format!("({})", all.join(" OR "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::test_fs::write;

    #[test]
    fn node_modules_packages_scoped_and_plain() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let nm = "app/node_modules";
        write(d, "app/package.json", r#"{"name":"app","version":"1.0.0"}"#);
        write(
            d,
            &format!("{nm}/left-pad/package.json"),
            r#"{"name":"left-pad","version":"1.3.0","license":"WTFPL"}"#,
        );
        write(
            d,
            &format!("{nm}/@types/node/package.json"),
            r#"{"name":"@types/node","version":"20.1.0","license":{"type":"MIT"}}"#,
        );
        write(
            d,
            &format!("{nm}/old/package.json"),
            r#"{"name":"old","version":"0.0.1","licenses":[{"type":"MIT"},{"type":"Apache-2.0"}]}"#,
        );
        write(
            d,
            &format!("{nm}/left-pad/test/fixture/package.json"),
            r#"{"name":"fixture","version":"9"}"#,
        );
        write(d, &format!("{nm}/broken/package.json"), "{not json");
        let root = RootFs::open(d).unwrap();
        let entries = root.walk(1000).unwrap();
        let mut pkgs = scan(&root, &entries).unwrap();
        pkgs.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<_> = pkgs
            .iter()
            .map(|p| (p.purl.as_str(), p.license.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("pkg:npm/%40types/node@20.1.0", Some("MIT")),
                ("pkg:npm/left-pad@1.3.0", Some("WTFPL")),
                ("pkg:npm/old@0.0.1", Some("(MIT OR Apache-2.0)")),
            ]
        );
    }
}
