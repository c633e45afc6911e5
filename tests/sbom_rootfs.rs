//! SBOM generation (`rbuild::sbom::generate`, docs/sbom.md) on real rootfs directories: a Debian
//! bookworm rootfs with packages installed by apt in a chroot (testdata/debian-sbom-rootfs.sh)
//! checked against `dpkg-query`, the SPDX 2.3 JSON schema (testdata/schemas, checked with
//! `check-jsonschema` from PyPI in /opt/rbuild-venv, installed by scripts/setup), determinism,
//! ELF binaries carrying real cargo-auditable and Go build-info sections (added with objcopy),
//! and a hostile rootfs whose symlinks point out of it.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rbuild::sbom::{generate, SbomOptions};

const CHECK_JSONSCHEMA: &str = "/opt/rbuild-venv/bin/check-jsonschema";

fn opts() -> SbomOptions {
    SbomOptions {
        name: "test-rootfs".into(),
        created: Some(1_700_000_000),
        ..SbomOptions::default()
    }
}

fn mirror_reachable() -> bool {
    ("deb.debian.org", 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).ok())
        .is_some()
}

/// The cached Debian rootfs with `hello jq python3-six` installed (made by scripts/setup, or
/// here on first use). `None` (skip) only when RBUILD_REQUIRE_TOOLS is not set.
fn debian_rootfs() -> Option<PathBuf> {
    let cached = Path::new("/var/cache/rbuild-testdata/sbom-bookworm/.done").exists();
    if !cached
        && !require(
            have("debootstrap") && have("dpkg-query") && mirror_reachable(),
            "debootstrap, dpkg-query and deb.debian.org (for the Debian rootfs)",
        )
    {
        return None;
    }
    let out = Command::new(repo_dir().join("testdata/debian-sbom-rootfs.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "testdata/debian-sbom-rootfs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// (name, version) of every package whose purl has the type `ty`.
fn by_purl_type(doc: &serde_json::Value, ty: &str) -> BTreeSet<(String, String)> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with(&format!("pkg:{ty}/")))
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn package<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name}"))
}

/// The files a package CONTAINS, by file name → (algorithm, checksum).
fn files_of(doc: &serde_json::Value, pkg: &serde_json::Value) -> Vec<(String, String, String)> {
    let id = pkg["SPDXID"].as_str().unwrap();
    let ids: BTreeSet<&str> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spdxElementId"] == id && r["relationshipType"] == "CONTAINS")
        .map(|r| r["relatedSpdxElement"].as_str().unwrap())
        .collect();
    doc["files"]
        .as_array()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|f| ids.contains(f["SPDXID"].as_str().unwrap()))
        .map(|f| {
            (
                f["fileName"].as_str().unwrap().to_owned(),
                f["checksums"][0]["algorithm"].as_str().unwrap().to_owned(),
                f["checksums"][0]["checksumValue"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

/// Validates `doc` against the committed SPDX 2.3 schema with check-jsonschema.
fn assert_valid_spdx(doc: &serde_json::Value) {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("sbom.spdx.json");
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = Command::new(CHECK_JSONSCHEMA)
        .arg("--schemafile")
        .arg(repo_dir().join("testdata/schemas/spdx-2.3.schema.json"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SPDX 2.3 schema validation failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn debian_sbom_lists_exactly_what_dpkg_lists_with_files_and_licenses() {
    let Some(root) = debian_rootfs() else { return };
    let doc = generate(&root, &opts()).unwrap();
    let admin = root.join("var/lib/dpkg");
    let listing = sh(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .arg("-W")
        .arg("-f=${Package}\t${Version}\t${db:Status-Abbrev}\n"));
    let mut dpkg = BTreeSet::new();
    for line in listing.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            cols[2].trim(),
            "ii",
            "a fresh rootfs has only installed packages: {line}"
        );
        dpkg.insert((cols[0].to_owned(), cols[1].to_owned()));
    }
    for p in ["hello", "jq", "libjq1", "python3-six", "libc6", "dpkg"] {
        assert!(dpkg.iter().any(|(n, _)| n == p), "{p} not installed");
    }
    let ours = by_purl_type(&doc, "deb");
    let missing: Vec<_> = dpkg.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&dpkg).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    println!(
        "dpkg-query lists {} packages; the SBOM lists the same {}",
        dpkg.len(),
        ours.len()
    );

    // hello's files come from its md5sums, with the MD5 of the bytes on disk.
    let hello = package(&doc, "hello");
    let files = files_of(&doc, hello);
    let bin = files
        .iter()
        .find(|(n, _, _)| n == "/usr/bin/hello")
        .expect("/usr/bin/hello listed");
    assert_eq!(bin.1, "MD5");
    let md5 = sh(Command::new("md5sum").arg(root.join("usr/bin/hello")));
    assert_eq!(bin.2, md5.split_whitespace().next().unwrap());
    let listed = std::fs::read_to_string(admin.join("info/hello.md5sums")).unwrap();
    assert_eq!(files.len(), listed.lines().count());
    let purl = hello["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/hello@") && purl.contains("distro=debian-12"),
        "{purl}"
    );
    // Licenses come from DEP-5 copyright files (jq's names MIT, CC-BY-3.0, Expat, GPL-2.0+);
    // hello's is free-form, so it declares nothing.
    assert_eq!(
        package(&doc, "jq")["licenseDeclared"],
        "CC-BY-3.0 AND GPL-2.0-or-later AND MIT"
    );
    assert_eq!(package(&doc, "python3-six")["licenseDeclared"], "MIT");
    assert_eq!(hello["licenseDeclared"], "NOASSERTION");
    // The egg-info of python3-six is found too.
    assert!(by_purl_type(&doc, "pypi").iter().any(|(n, _)| n == "six"));
}

#[test]
fn debian_sbom_passes_the_spdx_2_3_schema_and_is_deterministic() {
    if !require(Path::new(CHECK_JSONSCHEMA).exists(), CHECK_JSONSCHEMA) {
        return;
    }
    let Some(root) = debian_rootfs() else { return };
    let a = serde_json::to_vec(&generate(&root, &opts()).unwrap()).unwrap();
    let b = serde_json::to_vec(&generate(&root, &opts()).unwrap()).unwrap();
    assert!(a == b, "two runs over the same rootfs differ");
    let doc: serde_json::Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert_valid_spdx(&doc);
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// A Go 1.18+ build-info blob (the layout docs/sbom.md describes, as the Go linker writes it).
fn go_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut b = b"\xff Go buildinf:".to_vec();
    b.extend([8u8, 2]);
    b.resize(32, 0);
    varint(version.len(), &mut b);
    b.extend(version.as_bytes());
    // The module info is framed by 16 sentinel bytes on each side.
    let mut framed = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    framed.extend(modinfo.as_bytes());
    framed.extend(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
    varint(framed.len(), &mut b);
    b.extend(framed);
    b
}

/// Copies a real ELF executable and adds `section` with `data` to it (objcopy), mode 0755.
fn elf_with_section(dir: &Path, rel: &str, section: &str, data: &[u8]) {
    let t = tempfile::tempdir().unwrap();
    let blob = t.path().join("blob");
    std::fs::write(&blob, data).unwrap();
    let dest = dir.join(rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    sh(Command::new("objcopy")
        .arg(format!("--add-section={section}={}", blob.display()))
        .arg(format!("--set-section-flags={section}=alloc,readonly,data"))
        .arg("/bin/true")
        .arg(&dest));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A rootfs with one package of each other kind: apk, dist-info, npm, Rust and Go binaries.
fn mixed_rootfs(d: &Path) {
    write(d, "etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n");
    write(
        d,
        "lib/apk/db/installed",
        b"P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\n\
Z:Q1Ha0Y6hJz0xPWJ3JRmtkrJLbgMqk=\n",
    );
    let site = "usr/lib/python3.11/site-packages";
    write(
        d,
        &format!("{site}/attrs-23.1.0.dist-info/METADATA"),
        b"Metadata-Version: 2.1\nName: attrs\nVersion: 23.1.0\nLicense-Expression: MIT\n",
    );
    write(
        d,
        &format!("{site}/attrs-23.1.0.dist-info/RECORD"),
        b"attr/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n",
    );
    write(
        d,
        "srv/app/node_modules/@babel/core/package.json",
        br#"{"name":"@babel/core","version":"7.23.0","license":"MIT"}"#,
    );
    elf_with_section(
        d,
        "usr/local/bin/rg",
        ".dep-v0",
        &zlib(br#"{"packages":[{"name":"ripgrep","version":"14.1.0","source":"local","root":true,"dependencies":[1]},{"name":"memchr","version":"2.7.1","source":"crates.io"}]}"#),
    );
    elf_with_section(
        d,
        "usr/local/bin/app",
        ".go.buildinfo",
        &go_buildinfo(
            "go1.21.5",
            "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
dep\tgolang.org/x/sys\tv0.15.0\th1:abc=\n",
        ),
    );
}

#[test]
fn every_scanner_on_one_rootfs_real_elf_sections_and_the_schema() {
    if !need("objcopy") || !require(Path::new(CHECK_JSONSCHEMA).exists(), CHECK_JSONSCHEMA) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    mixed_rootfs(t.path());
    let doc = generate(t.path(), &opts()).unwrap();
    let purls: BTreeSet<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    let want = [
        "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1",
        "pkg:pypi/attrs@23.1.0",
        "pkg:npm/%40babel/core@7.23.0",
        "pkg:cargo/ripgrep@14.1.0",
        "pkg:cargo/memchr@2.7.1",
        "pkg:golang/example.com/app@%28devel%29",
        "pkg:golang/golang.org/x/sys@v0.15.0",
        "pkg:golang/stdlib@1.21.5",
    ];
    assert_eq!(purls, want.into_iter().collect(), "{doc:#}");
    let attrs = package(&doc, "attrs");
    assert_eq!(attrs["licenseDeclared"], "MIT");
    assert_eq!(
        files_of(&doc, attrs),
        [(
            "/usr/lib/python3.11/site-packages/attr/__init__.py".to_owned(),
            "SHA256".to_owned(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned()
        )]
    );
    assert!(package(&doc, "memchr")["sourceInfo"]
        .as_str()
        .unwrap()
        .ends_with("/usr/local/bin/rg"));
    assert_valid_spdx(&doc);
    // Determinism, and a namespace that follows the content.
    assert_eq!(generate(t.path(), &opts()).unwrap(), doc);
    write(
        t.path(),
        "srv/app/node_modules/left-pad/package.json",
        br#"{"name":"left-pad","version":"1.3.0"}"#,
    );
    let changed = generate(t.path(), &opts()).unwrap();
    assert_ne!(changed["documentNamespace"], doc["documentNamespace"]);
}

#[test]
fn symlinks_out_of_a_hostile_rootfs_are_never_followed() {
    // The host's own package databases must not show up through links in the rootfs.
    if !require(
        Path::new("/var/lib/dpkg/status").exists(),
        "a host dpkg database (/var/lib/dpkg/status) to try to leak",
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::os::unix::fs::symlink("/var", d.join("var")).unwrap();
    std::fs::create_dir_all(d.join("lib/apk")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../lib/apk/db", d.join("lib/apk/db")).unwrap();
    std::fs::create_dir_all(d.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release", d.join("etc/os-release")).unwrap();
    // A node_modules that points at the host's global one, a site dir that points at the host's.
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/node_modules", d.join("app/node_modules")).unwrap();
    std::fs::create_dir_all(d.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/python3", d.join("usr/lib/python3")).unwrap();
    std::os::unix::fs::symlink("/usr/bin", d.join("bin")).unwrap();
    let doc = generate(d, &opts()).unwrap();
    let pkgs = doc["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), 1, "only the rootfs itself: {doc:#}");
    assert!(doc.get("files").is_none());

    // Inside the root, a symlinked database is read like the system would read it.
    let t2 = tempfile::tempdir().unwrap();
    let d2 = t2.path();
    write(d2, "usr/lib/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
    std::os::unix::fs::symlink("../usr/lib/os-release", {
        std::fs::create_dir_all(d2.join("etc")).unwrap();
        d2.join("etc/os-release")
    })
    .unwrap();
    write(
        d2,
        "real/status",
        b"Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n",
    );
    std::fs::create_dir_all(d2.join("var/lib/dpkg")).unwrap();
    std::os::unix::fs::symlink("/real/status", d2.join("var/lib/dpkg/status")).unwrap();
    let doc = generate(d2, &opts()).unwrap();
    assert_eq!(
        package(&doc, "base-files")["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/base-files@12.4?arch=amd64&distro=debian-12"
    );
}

#[test]
fn a_broken_database_is_an_error_naming_the_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "var/lib/dpkg/status",
        b"Package: a\nVersion: 1\n\nPackage: b\nthis line has no colon\n",
    );
    let err = generate(t.path(), &opts()).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "{}:5",
            t.path().join("var/lib/dpkg/status").display()
        )),
        "{err}"
    );
}
