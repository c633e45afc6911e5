//! dpkg: `/var/lib/dpkg/status` (and distroless images' `/var/lib/dpkg/status.d/`), each
//! package's `info/<pkg>.md5sums` for its files, and `/usr/share/doc/<pkg>/copyright` for the
//! license when it is machine-readable (DEP-5). docs/sbom.md, "dpkg".

use std::path::{Path, PathBuf};

use super::control::{self, Paragraph};
use super::distro::Distro;
use super::license;
use super::model::{Algorithm, FileRecord, Package, Source};
use super::purl::purl;
use super::rootfs::RootFs;
use super::SbomError;

const ADMIN: &str = "var/lib/dpkg";
/// Bigger than any real status database (Debian's full archive installed is ~40 MB).
const DB_LIMIT: u64 = 256 << 20;
const MD5SUMS_LIMIT: u64 = 64 << 20;
const COPYRIGHT_LIMIT: u64 = 1 << 20;

/// Every package dpkg has files on disk for (states other than `not-installed` and
/// `config-files`), sorted by name and architecture.
pub(crate) fn scan(root: &RootFs, distro: &Distro) -> Result<Vec<Package>, SbomError> {
    let mut found: Vec<(Paragraph, PathBuf, Option<PathBuf>)> = Vec::new();
    let status = PathBuf::from(ADMIN).join("status");
    if let Some(text) = root.read_text(&status, DB_LIMIT)? {
        for p in parse(root, &status, &text)? {
            found.push((p, status.clone(), None));
        }
    }
    // Distroless: one paragraph per file, its md5sums beside it.
    let status_d = PathBuf::from(ADMIN).join("status.d");
    for name in root.list(&status_d)? {
        if name.ends_with(".md5sums") || name.starts_with('.') {
            continue;
        }
        let path = status_d.join(&name);
        let Some(text) = root.read_text(&path, DB_LIMIT)? else {
            continue;
        };
        let md5 = status_d.join(format!("{name}.md5sums"));
        for p in parse(root, &path, &text)? {
            found.push((p, path.clone(), Some(md5.clone())));
        }
    }
    let mut out = Vec::new();
    for (p, db, md5) in found {
        if let Some(pkg) = package(root, distro, &p, &db, md5.as_deref())? {
            out.push(pkg);
        }
    }
    out.sort_by(|a, b| (&a.name, &a.purl).cmp(&(&b.name, &b.purl)));
    out.dedup_by(|a, b| a.purl == b.purl);
    Ok(out)
}

fn parse(root: &RootFs, path: &Path, text: &str) -> Result<Vec<Paragraph>, SbomError> {
    control::parse(text).map_err(|e| SbomError::Parse {
        path: root.display(path),
        line: e.line,
        message: format!("not a `Field: value` line: {:?}", e.text),
    })
}

fn package(
    root: &RootFs,
    distro: &Distro,
    p: &Paragraph,
    db: &Path,
    md5sums: Option<&Path>,
) -> Result<Option<Package>, SbomError> {
    let Some(name) = p.get("Package").filter(|n| valid_name(n)) else {
        return Err(SbomError::Parse {
            path: root.display(db),
            line: p.line,
            message: "a paragraph without a valid `Package:` field".into(),
        });
    };
    // `Status: want flag state`; distroless entries have none and are installed.
    let state = p
        .get("Status")
        .and_then(|s| s.split_whitespace().nth(2))
        .unwrap_or("installed");
    if matches!(state, "not-installed" | "config-files") {
        return Ok(None);
    }
    let version = p.get("Version").unwrap_or("").to_owned();
    let arch = p.get("Architecture").unwrap_or("").to_owned();
    let files = match md5sums {
        Some(m) => read_md5sums(root, m)?,
        None => {
            let info = PathBuf::from(ADMIN).join("info");
            let qualified = info.join(format!("{name}:{arch}.md5sums"));
            match read_md5sums(root, &qualified)? {
                v if !v.is_empty() => v,
                _ => read_md5sums(root, &info.join(format!("{name}.md5sums")))?,
            }
        }
    };
    let mut qualifiers = vec![("arch", arch.as_str())];
    let distro_q = distro.qualifier();
    qualifiers.push(("distro", distro_q.as_str()));
    // The source package, when it differs (purl's `upstream` qualifier, as syft writes it).
    let source = p
        .get("Source")
        .map(|s| s.split_whitespace().next().unwrap_or(s));
    if let Some(src) = source.filter(|s| *s != name) {
        qualifiers.push(("upstream", src));
    }
    Ok(Some(Package {
        source: Source::Dpkg,
        name: name.to_owned(),
        purl: purl(
            "deb",
            Some(distro.namespace("debian")),
            name,
            &version,
            &qualifiers,
        ),
        version,
        license: copyright_license(root, name)?,
        location: db.to_path_buf(),
        files,
    }))
}

/// Debian policy 5.6.1: lower-case letters, digits, `+`, `-`, `.`, at least two characters.
fn valid_name(n: &str) -> bool {
    n.len() >= 2
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// `<md5>  <path>` lines; the paths are relative to `/`.
fn read_md5sums(root: &RootFs, path: &Path) -> Result<Vec<FileRecord>, SbomError> {
    let Some(text) = root.read_text(path, MD5SUMS_LIMIT)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .split_once(char::is_whitespace)
            .and_then(|(sum, file)| {
                let file = file.trim_start();
                (sum.len() == 32 && sum.bytes().all(|b| b.is_ascii_hexdigit()) && !file.is_empty())
                    .then(|| (sum.to_ascii_lowercase(), file))
            });
        let Some((sum, file)) = parsed else {
            return Err(SbomError::Parse {
                path: root.display(path),
                line: i + 1,
                message: format!("not an `<md5>  <path>` line: {line:?}"),
            });
        };
        out.push(FileRecord {
            path: format!("/{}", file.trim_start_matches('/')),
            algorithm: Algorithm::Md5,
            digest: sum,
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The licenses of a machine-readable copyright file (its `Format:` names copyright-format):
/// every `License:` short name of its `Files:` paragraphs, joined with AND. `None` for
/// free-form files, which name no license a tool can read reliably.
fn copyright_license(root: &RootFs, pkg: &str) -> Result<Option<String>, SbomError> {
    let path = PathBuf::from("usr/share/doc").join(pkg).join("copyright");
    let text = match root.read_text(&path, COPYRIGHT_LIMIT) {
        Ok(Some(t)) => t,
        Ok(None) | Err(SbomError::TooLarge { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(dep5_license(&text))
}

pub(crate) fn dep5_license(text: &str) -> Option<String> {
    let paragraphs = control::parse(text).ok()?;
    let header = paragraphs.first()?;
    let format = header
        .get("Format")
        .or_else(|| header.get("Format-Specification"))?;
    if !(format.contains("copyright-format") || format.contains("dep5")) {
        return None;
    }
    license::all_of(
        paragraphs
            .iter()
            .filter(|p| p.get("Files").is_some())
            .filter_map(|p| p.get("License"))
            .filter_map(license::normalize),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::test_fs::write;

    const COPYRIGHT: &str =
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: hello\n\n\
Files: *\nCopyright: 1992 FSF\nLicense: GPL-3+\n\n\
Files: lib/*\nCopyright: x\nLicense: LGPL-2.1+ or Expat\n\n\
License: GPL-3+\n On Debian systems, the full text is in /usr/share/common-licenses.\n";

    #[test]
    fn dep5_files_paragraph_licenses_are_joined() {
        assert_eq!(
            dep5_license(COPYRIGHT).as_deref(),
            Some("GPL-3.0-or-later AND (LGPL-2.1-or-later OR MIT)")
        );
        assert_eq!(dep5_license("This is free-form.\nGPL applies.\n"), None);
    }

    #[test]
    fn status_md5sums_and_copyright() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(d, "etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
        write(
            d,
            "var/lib/dpkg/status",
            "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\n\
Description: greets\n long text\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n\n\
Package: libjq1\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\n\
Source: jq\nVersion: 1.6-2.1+deb12u1\n",
        );
        write(
            d,
            "var/lib/dpkg/info/hello.md5sums",
            "0123456789abcdef0123456789ABCDEF  usr/bin/hello\n\
fedcba9876543210fedcba9876543210  usr/share/doc/hello/copyright\n",
        );
        write(
            d,
            "var/lib/dpkg/info/libjq1:amd64.md5sums",
            "00000000000000000000000000000000  usr/lib/x86_64-linux-gnu/libjq.so.1\n",
        );
        write(d, "usr/share/doc/hello/copyright", COPYRIGHT);
        let root = RootFs::open(d).unwrap();
        let distro = Distro::read(&root).unwrap();
        let pkgs = scan(&root, &distro).unwrap();
        let names: Vec<_> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("hello", "2.10-3"), ("libjq1", "1.6-2.1+deb12u1")]);
        assert_eq!(
            pkgs[0].purl,
            "pkg:deb/debian/hello@2.10-3?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            pkgs[1].purl,
            "pkg:deb/debian/libjq1@1.6-2.1%2Bdeb12u1?arch=amd64&distro=debian-12&upstream=jq"
        );
        assert_eq!(pkgs[0].files.len(), 2);
        assert_eq!(pkgs[0].files[0].path, "/usr/bin/hello");
        assert_eq!(pkgs[0].files[0].digest, "0123456789abcdef0123456789abcdef");
        assert_eq!(pkgs[1].files.len(), 1);
        assert!(pkgs[0]
            .license
            .as_deref()
            .unwrap()
            .contains("GPL-3.0-or-later"));
        assert_eq!(pkgs[1].license, None);
    }

    #[test]
    fn distroless_status_d_and_errors_name_the_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(
            d,
            "var/lib/dpkg/status.d/base-files",
            "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
        );
        write(
            d,
            "var/lib/dpkg/status.d/base-files.md5sums",
            "11111111111111111111111111111111  etc/debian_version\n",
        );
        let root = RootFs::open(d).unwrap();
        let pkgs = scan(&root, &Distro::default()).unwrap();
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].purl, "pkg:deb/debian/base-files@12.4?arch=amd64");
        assert_eq!(pkgs[0].files[0].path, "/etc/debian_version");

        write(
            d,
            "var/lib/dpkg/status",
            "Package: ok\nVersion: 1\n\nnonsense line\n",
        );
        let err = scan(&RootFs::open(d).unwrap(), &Distro::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("var/lib/dpkg/status") && msg.contains(":4"),
            "{msg}"
        );
    }
}
