//! apk: `/lib/apk/db/installed` (docs/sbom.md, "apk"). One paragraph per package, one `X:value`
//! line per field: `P` name, `V` version, `A` arch, `L` license, `o` origin; `F` a directory,
//! `R` a file in the last `F`, `Z` that file's checksum (`Q1` + base64 SHA-1).

use std::path::Path;

use base64::Engine as _;

use super::distro::Distro;
use super::license;
use super::model::{Algorithm, FileRecord, Package, Source};
use super::purl::purl;
use super::rootfs::RootFs;
use super::SbomError;

const DB: &str = "lib/apk/db/installed";
const DB_LIMIT: u64 = 256 << 20;

#[derive(Default)]
struct Entry {
    line: usize,
    name: String,
    version: String,
    arch: String,
    license: String,
    origin: String,
    dir: String,
    files: Vec<FileRecord>,
    /// The last `R:` file, waiting for its `Z:`.
    pending: Option<String>,
}

pub(crate) fn scan(root: &RootFs, distro: &Distro) -> Result<Vec<Package>, SbomError> {
    let path = Path::new(DB);
    let Some(text) = root.read_text(path, DB_LIMIT)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut cur = Entry::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            finish(root, distro, &mut cur, &mut out)?;
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(SbomError::Parse {
                path: root.display(path),
                line: i + 1,
                message: format!("not a `X:value` line: {line:?}"),
            });
        };
        if cur.line == 0 {
            cur.line = i + 1;
        }
        match key {
            "P" => cur.name = value.to_owned(),
            "V" => cur.version = value.to_owned(),
            "A" => cur.arch = value.to_owned(),
            "L" => cur.license = value.to_owned(),
            "o" => cur.origin = value.to_owned(),
            "F" => cur.dir = value.to_owned(),
            "R" => {
                let p = if cur.dir.is_empty() {
                    format!("/{value}")
                } else {
                    format!("/{}/{value}", cur.dir)
                };
                cur.pending = Some(p);
            }
            "Z" => {
                if let (Some(p), Some(sha1)) = (cur.pending.take(), q1_sha1(value)) {
                    cur.files.push(FileRecord {
                        path: p,
                        algorithm: Algorithm::Sha1,
                        digest: sha1,
                    });
                }
            }
            _ => {}
        }
    }
    finish(root, distro, &mut cur, &mut out)?;
    out.sort_by(|a, b| (&a.name, &a.purl).cmp(&(&b.name, &b.purl)));
    Ok(out)
}

fn finish(
    root: &RootFs,
    distro: &Distro,
    cur: &mut Entry,
    out: &mut Vec<Package>,
) -> Result<(), SbomError> {
    let e = std::mem::take(cur);
    if e.line == 0 {
        return Ok(());
    }
    if e.name.is_empty() {
        return Err(SbomError::Parse {
            path: root.display(Path::new(DB)),
            line: e.line,
            message: "a package without a `P:` line".into(),
        });
    }
    let distro_q = distro.qualifier();
    let mut q = vec![("arch", e.arch.as_str()), ("distro", distro_q.as_str())];
    if e.origin != e.name {
        q.push(("upstream", e.origin.as_str()));
    }
    let mut files = e.files;
    files.sort();
    files.dedup();
    out.push(Package {
        source: Source::Apk,
        purl: purl(
            "apk",
            Some(distro.namespace("alpine")),
            &e.name,
            &e.version,
            &q,
        ),
        name: e.name,
        version: e.version,
        license: license::normalize(&e.license),
        location: DB.into(),
        files,
    });
    Ok(())
}

/// `Q1<base64 SHA-1>` → hex; other forms (plain MD5 hex of old databases) are not kept.
fn q1_sha1(z: &str) -> Option<String> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(z.strip_prefix("Q1")?)
        .ok()?;
    (b.len() == 20).then(|| hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_db_packages_files_and_checksums() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("lib/apk/db")).unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/os-release"), "ID=alpine\nVERSION_ID=3.19.1\n").unwrap();
        std::fs::write(
            d.join(DB),
            "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\n\
a:0:0:755\nZ:Q1Ha0Y6hJz0xPWJ3JRmtkrJLbgMqk=\nR:libc.musl-x86_64.so.1\n\n\
P:busybox-binsh\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\nF:bin\nR:sh\n\
Z:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\n",
        )
        .unwrap();
        let root = RootFs::open(d).unwrap();
        let pkgs = scan(&root, &Distro::read(&root).unwrap()).unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "busybox-binsh");
        assert_eq!(
            pkgs[0].purl,
            "pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1&upstream=busybox"
        );
        assert_eq!(pkgs[0].license.as_deref(), Some("GPL-2.0-only"));
        assert_eq!(pkgs[0].files[0].path, "/bin/sh");
        assert_eq!(
            pkgs[0].files[0].digest,
            "a5c7d37c33446cd290736b35b626bb75ad3933c4"
        );
        assert_eq!(pkgs[1].name, "musl");
        // The second file of musl has no Z: line, so only one file is listed.
        assert_eq!(pkgs[1].files.len(), 1);
        assert_eq!(pkgs[1].files[0].path, "/lib/ld-musl-x86_64.so.1");
    }

    #[test]
    fn a_line_without_colon_names_the_line() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("lib/apk/db")).unwrap();
        std::fs::write(t.path().join(DB), "P:a\nV:1\ngarbage\n").unwrap();
        let e = scan(&RootFs::open(t.path()).unwrap(), &Distro::default()).unwrap_err();
        assert!(e.to_string().contains("installed:3"), "{e}");
    }
}
