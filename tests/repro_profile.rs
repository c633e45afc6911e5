//! `--repro-profile=N`: each output profile keeps its bytes. The manifest digest of a fixed case is
//! pinned per profile and compression, so a dependency update (zlib-rs, libzstd, tar, serde_json)
//! or a code change that alters the bytes fails here instead of silently changing digests.
//! Profile 2's parallel gzip is also checked with gzip, pigz, flate2 and Go (umoci, skopeo).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const EPOCH: &str = "1700000000";

/// A 3 MiB text-like file from a fixed xorshift sequence, so the gzip layer spans several
/// parallel-gzip blocks (1 MiB each) and its bytes depend on nothing but this code.
fn fixed_file() -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"layer ",
        b"digest ",
        b"overlay ",
        b"rootfs ",
        b"epoch ",
        b"tar ",
        b"gzip ",
        b"\n",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(3 << 20);
    while out.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 8) as usize]);
        if x.is_multiple_of(5) {
            out.extend_from_slice(format!("{:x} ", x >> 40).as_bytes());
        }
    }
    out.truncate(3 << 20);
    out
}

/// FROM scratch, ADD a fixed tar, COPY a fixed file, ENV, CMD.
fn fixed_context(dir: &Path) -> PathBuf {
    let ctx = context(
        dir,
        "FROM scratch\nADD fixed.tar /\nCOPY data.txt /opt/data.txt\nENV PROFILE_TEST=1\nCMD [\"/opt/fixed/a.txt\"]\n",
        &[],
    );
    std::fs::copy(
        repo_dir().join("testdata/repro/fixed.tar"),
        ctx.join("fixed.tar"),
    )
    .unwrap();
    std::fs::write(ctx.join("data.txt"), fixed_file()).unwrap();
    ctx
}

/// Builds the fixed case into a fresh root as an OCI layout dir; returns (manifest digest, layout).
fn build(tmp: &Path, profile: Option<u32>, compression: &str) -> (String, PathBuf) {
    let name = format!(
        "p{}-{compression}",
        profile.map_or("default".into(), |p| p.to_string())
    );
    let ctx = fixed_context(&tmp.join(format!("ctx-{name}")));
    let layout = tmp.join(format!("oci-{name}"));
    let out = format!(
        "type=oci,dest={},tar=false,compression={compression}",
        layout.display()
    );
    let mut args = vec!["build", "-q", "-t", "profile-test:1", "-o", &out];
    let p;
    if let Some(n) = profile {
        p = n.to_string();
        args.extend(["--repro-profile", &p]);
    }
    args.push(ctx.to_str().unwrap());
    ok(rbuild_env(
        &tmp.join(format!("root-{name}")),
        &args,
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    ));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    (digest, layout)
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn layer_blobs(layout: &Path, manifest: &str) -> Vec<PathBuf> {
    let m: Value = serde_json::from_slice(&std::fs::read(blob(layout, manifest)).unwrap()).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(layout, l["digest"].as_str().unwrap()))
        .collect()
}

/// The pinned digests. If one changes on purpose (a new tar/JSON/compressor behaviour), that is a
/// new profile: add it, keep the old one producing the old bytes, and pin the new digests here.
const PINNED: &[(u32, &str, &str)] = &[
    (
        1,
        "gzip",
        "sha256:54cb852e7e7065e4dace3afc248f0663489404794b863b9cc4965890adee1d3f",
    ),
    (
        1,
        "zstd",
        "sha256:c3f8a1eebdfc1034b088622f13744e2508c0dc383da0cf655ffa5e8a3a08af8e",
    ),
    (
        1,
        "uncompressed",
        "sha256:db4c51935370d54174902395d4c4e4536c3676c9a7751a55245eb4a16b919303",
    ),
    (
        2,
        "gzip",
        "sha256:7fb48665129f8fd1fe679118789d60a2833cade784c762a375902ebbbaa514d1",
    ),
    (
        2,
        "zstd",
        "sha256:f47c1e61ab9fb4ef4a94aa24ad253f8ea3311f5b41cb46878048fa8a578a87b8",
    ),
    (
        2,
        "uncompressed",
        "sha256:db4c51935370d54174902395d4c4e4536c3676c9a7751a55245eb4a16b919303",
    ),
];

#[test]
fn each_profile_keeps_its_pinned_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut got = Vec::new();
    for (profile, compression, _) in PINNED {
        let (digest, _) = build(tmp.path(), Some(*profile), compression);
        got.push((*profile, *compression, digest));
    }
    let want: Vec<_> = PINNED
        .iter()
        .map(|(p, c, d)| (*p, *c, d.to_string()))
        .collect();
    assert_eq!(
        got, want,
        "output bytes changed: see docs/reproducibility.md"
    );

    // The default is the newest profile; uncompressed layers are the same in every profile.
    let (default, _) = build(tmp.path(), None, "gzip");
    assert_eq!(default, got[3].2);
    assert_eq!(got[2].2, got[5].2);
    assert_ne!(
        got[0].2, got[3].2,
        "profile 2 gzip must differ from profile 1"
    );
}

#[test]
fn unknown_profile_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = fixed_context(&tmp.path().join("ctx"));
    let r = rbuild(
        &tmp.path().join("root"),
        &["build", "--repro-profile", "9", ctx.to_str().unwrap()],
    );
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("--repro-profile 9"), "{}", r.stderr);
}

#[test]
fn parallel_gzip_layers_read_by_gzip_pigz_and_go() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, layout) = build(tmp.path(), Some(2), "gzip");
    let layers = layer_blobs(&layout, &manifest);
    assert_eq!(layers.len(), 2);
    let copied = &layers[1];
    for tool in ["gzip", "pigz"] {
        if need(tool) {
            sh(Command::new(tool).arg("-t").arg(copied));
        }
    }
    // GNU gzip decodes it to the tar holding the fixed file (CRC and length checked).
    let tar = sh(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | tar -xOf - opt/data.txt | sha256sum",
        copied.display()
    )));
    let want = sh(Command::new("sh").arg("-c").arg(format!(
        "sha256sum < {}",
        tmp.path().join("ctx-p2-gzip/data.txt").display()
    )));
    assert_eq!(
        tar.split_whitespace().next(),
        want.split_whitespace().next()
    );
    // Exactly one gzip member: flate2's single-member decoder leaves nothing behind.
    let bytes = std::fs::read(copied).unwrap();
    let mut d = flate2::read::GzDecoder::new(&bytes[..]);
    std::io::copy(&mut d, &mut std::io::sink()).unwrap();
    assert!(d.into_inner().is_empty(), "more than one gzip member");
    // Go's compress/gzip (umoci) unpacks it.
    if need("umoci") {
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("ref.name annotation");
        let bundle = tmp.path().join("bundle");
        sh(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle));
        assert_eq!(
            std::fs::read(bundle.join("rootfs/opt/data.txt")).unwrap(),
            fixed_file()
        );
    }
}
