//! Reading OCI layouts and Debian foreign-architecture test data, for the multi-platform tests
//! (tests/platforms.rs, tests/platforms_emulation.rs).
#![allow(dead_code)]

use super::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Reads `name` from a tar archive.
pub fn tar_file(archive: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut out).unwrap();
            return out;
        }
    }
    panic!("{name} not in {}", archive.display());
}

pub fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    tar_file(
        archive,
        &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
    )
}

/// A FROM-scratch Dockerfile whose file differs by target (`ARG TARGETARCH`), no RUN.
pub fn per_target_context(dir: &Path) -> std::path::PathBuf {
    context(
        dir,
        "FROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nCOPY ${TARGETARCH}.txt /arch.txt\nLABEL target=$TARGETPLATFORM\n",
        &[("amd64.txt", "built for amd64\n"), ("arm64.txt", "built for arm64\n")],
    )
}

/// The platforms of an OCI index's manifests, `os/arch[/variant]`, in order.
pub fn platforms_of(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push_str(&format!("/{v}"));
            }
            s
        })
        .collect()
}

pub const TESTDATA: &str = "/var/cache/rbuild-testdata";

/// Debian's busybox-static for `deb_arch` (`arm64`, `armhf`), extracted from the .deb that
/// scripts/setup keeps in /var/cache/rbuild-testdata; None (after `require`) when absent.
pub fn foreign_busybox(dir: &Path, deb_arch: &str) -> Option<std::path::PathBuf> {
    let deb = std::fs::read_dir(TESTDATA).ok().and_then(|d| {
        d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("busybox-static_") && n.ends_with(&format!("_{deb_arch}.deb"))
        })
    });
    if !require(
        deb.is_some(),
        &format!("{TESTDATA}/busybox-static_*_{deb_arch}.deb (scripts/setup downloads it)"),
    ) {
        return None;
    }
    let out = dir.join(format!("deb-{deb_arch}"));
    sh(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb.unwrap())
        .arg(&out));
    Some(out.join("bin/busybox"))
}

/// A busybox rootfs tar made from `busybox` (any architecture) at `dest`.
pub fn rootfs_tar_of(busybox: &Path, work: &Path, dest: &Path) {
    let tree = work.join(format!(
        "tree-{}",
        dest.file_name().unwrap().to_string_lossy()
    ));
    sh(
        Command::new(repo_dir().join("testdata/make-busybox-rootfs.sh"))
            .arg(&tree)
            .env("BUSYBOX", busybox)
            .env("BUSYBOX_LIST", "/bin/busybox"),
    );
    sh(Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--mtime=@1700000000",
            "-C",
        ])
        .arg(&tree)
        .arg("-cf")
        .arg(dest)
        .arg("."));
}

/// The ELF `e_machine` of `bytes` (0x3e x86-64, 0xb7 AArch64, 0x28 ARM).
pub fn e_machine(bytes: &[u8]) -> u16 {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// `path` from the layers of the image `manifest_digest` in OCI tar `oci` (top layer wins).
pub fn file_in_image(oci: &Path, manifest_digest: &str, path: &str) -> Option<Vec<u8>> {
    let manifest = json(&blob(oci, manifest_digest));
    let mut found = None;
    for l in manifest["layers"].as_array().unwrap() {
        let bytes = blob(oci, l["digest"].as_str().unwrap());
        let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
        } else {
            Box::new(bytes.as_slice())
        };
        let mut ar = tar::Archive::new(reader);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if p == path {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut out).unwrap();
                found = Some(out);
            }
        }
    }
    found
}

/// The manifests of the index in OCI tar `oci`: (platform, manifest digest).
pub fn oci_manifests(oci: &Path) -> Vec<(String, String)> {
    let top = json(&tar_file(oci, "index.json"));
    let index = json(&blob(oci, top["manifests"][0]["digest"].as_str().unwrap()));
    platforms_of(&index)
        .into_iter()
        .zip(index["manifests"].as_array().unwrap())
        .map(|(p, m)| (p, m["digest"].as_str().unwrap().to_string()))
        .collect()
}
