//! Exports checked with the real tools: skopeo (docker-archive:, oci:, oci-archive:), umoci,
//! and `docker load` when a Docker engine is reachable.

mod common;

use flate2::write::GzEncoder;
use rbuild::digest::{Digest, HashingWriter};
use rbuild::export::{docker_archive, oci_layout_dir, oci_layout_tar, ExportImage};
use rbuild::image::manifest::{MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP};
use rbuild::image::{ImageConfig, LayerDesc};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A layer tar with one directory and one file, written uncompressed or gzipped.
fn make_layer(
    dir: &Path,
    name: &str,
    content: &[u8],
    gzip: bool,
) -> (LayerDesc, std::path::PathBuf) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("etc/").unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path(format!("etc/{name}")).unwrap();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    h.set_cksum();
    b.append(&h, content).unwrap();
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of_bytes(&tar);
    let blob = if gzip {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    } else {
        tar.clone()
    };
    let path = dir.join(format!("{name}.blob"));
    let mut w = HashingWriter::new(File::create(&path).unwrap());
    w.write_all(&blob).unwrap();
    let (_, digest, size) = w.finish();
    (
        LayerDesc {
            diff_id,
            digest,
            size,
            uncompressed_size: tar.len() as u64,
            media_type: if gzip {
                MEDIA_OCI_LAYER_GZIP
            } else {
                MEDIA_OCI_LAYER
            }
            .to_string(),
        },
        path,
    )
}

fn sample_image(dir: &Path) -> ExportImage {
    let l1 = make_layer(dir, "hello.txt", b"hello from rbuild\n", true);
    let l2 = make_layer(dir, "second.txt", b"second layer\n", false);
    let mut cfg = ImageConfig::scratch("amd64", "linux", None);
    cfg.created = Some("2024-01-02T03:04:05Z".into());
    cfg.config.cmd = Some(vec!["/bin/sh".into()]);
    for (d, _) in [&l1, &l2] {
        cfg.push_layer(d.diff_id.clone());
        cfg.add_history_entry(None, "COPY x / # buildkit", "buildkit.dockerfile.v0", false);
    }
    ExportImage {
        config_bytes: cfg.to_bytes().unwrap(),
        layers: vec![l1, l2],
        tags: vec!["rbuild-test:1.0".into()],
        manifest_annotations: Default::default(),
        descriptor_annotations: Default::default(),
    }
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn docker_archive_is_read_by_skopeo_both_ways() {
    if !common::need("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = sample_image(tmp.path());
    let cfg_digest = Digest::of_bytes(&img.config_bytes);
    let path = tmp.path().join("image.tar");
    docker_archive(&img, File::create(&path).unwrap()).unwrap();
    let arg = format!("docker-archive:{}", path.display());

    let raw = json(&tool("skopeo", &["inspect", "--raw", &arg]));
    assert_eq!(raw["config"]["digest"], cfg_digest.to_string());
    let cfg = tool("skopeo", &["inspect", "--config", "--raw", &arg]);
    assert_eq!(cfg.as_bytes(), img.config_bytes.as_slice());
    let info = json(&tool("skopeo", &["inspect", &arg]));
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);

    // The same file is an OCI layout archive too.
    let oarg = format!("oci-archive:{}", path.display());
    let oinfo = json(&tool("skopeo", &["inspect", &oarg]));
    let layers: Vec<String> = oinfo["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let expect: Vec<String> = img
        .layers
        .iter()
        .map(|(d, _)| d.digest.to_string())
        .collect();
    assert_eq!(layers, expect);

    // skopeo copy reads every layer blob (decompressing the gzip one) and checks it.
    let copy_dir = tmp.path().join("copied");
    tool(
        "skopeo",
        &["copy", &arg, &format!("oci:{}:x", copy_dir.display())],
    );
    let copied = json(&tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("oci:{}:x", copy_dir.display()),
        ],
    ));
    assert_eq!(
        copied["rootfs"]["diff_ids"],
        json(std::str::from_utf8(&img.config_bytes).unwrap())["rootfs"]["diff_ids"]
    );

    // Deterministic: the same image gives the same bytes.
    let again = docker_archive(&img, Vec::new()).unwrap();
    assert_eq!(again, std::fs::read(&path).unwrap());
}

#[test]
fn oci_layout_dir_and_tar_read_by_skopeo_and_umoci() {
    if !common::need("skopeo") || !common::need("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = sample_image(tmp.path());
    let layout = tmp.path().join("layout");
    oci_layout_dir(&img, &layout).unwrap();
    let info = json(&tool(
        "skopeo",
        &["inspect", &format!("oci:{}:1.0", layout.display())],
    ));
    let manifest_digest = info["Digest"].as_str().unwrap().to_string();
    let layers: Vec<&str> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(layers[0], img.layers[0].0.digest.to_string());
    assert_eq!(layers[1], img.layers[1].0.digest.to_string());
    let idx = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    assert_eq!(
        idx["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/rbuild-test:1.0"
    );
    assert_eq!(idx["manifests"][0]["digest"], manifest_digest);

    let tar_path = tmp.path().join("oci.tar");
    oci_layout_tar(&img, File::create(&tar_path).unwrap()).unwrap();
    let tinfo = json(&tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci-archive:{}:1.0", tar_path.display()),
        ],
    ));
    assert_eq!(tinfo["Digest"], manifest_digest);

    let bundle = tmp.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:1.0", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/hello.txt")).unwrap(),
        b"hello from rbuild\n"
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/second.txt")).unwrap(),
        b"second layer\n"
    );
}

#[test]
fn docker_load_when_engine_available() {
    if !common::need_docker() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = sample_image(tmp.path());
    let path = tmp.path().join("image.tar");
    docker_archive(&img, File::create(&path).unwrap()).unwrap();
    let out = tool("docker", &["load", "-i", path.to_str().unwrap()]);
    assert!(out.contains("rbuild-test:1.0"), "{out}");
    let id = tool(
        "docker",
        &["image", "inspect", "-f", "{{.Id}}", "rbuild-test:1.0"],
    );
    assert_eq!(id.trim(), Digest::of_bytes(&img.config_bytes).to_string());
    let _ = Command::new("docker")
        .args(["rmi", "rbuild-test:1.0"])
        .output();
}

#[test]
fn inconsistent_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut img = sample_image(tmp.path());
    // A corrupted blob file: the digest check while streaming catches it.
    std::fs::write(&img.layers[1].1, b"corrupt").unwrap();
    img.layers[1].0.size = 7;
    let err = docker_archive(&img, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // One layer too few for the config.
    img.layers.pop();
    let err = oci_layout_tar(&img, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("diff_ids"), "{err}");
    // Bad tag.
    let mut img = sample_image(tmp.path());
    img.tags = vec!["Bad:Tag".into()];
    assert!(oci_layout_dir(&img, &tmp.path().join("x")).is_err());
}

#[test]
fn docker_archive_members_and_manifest_json() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let img = sample_image(tmp.path());
    let bytes = docker_archive(&img, Vec::new()).unwrap();
    let mut ar = tar::Archive::new(bytes.as_slice());
    let mut members = Vec::new();
    let mut files = std::collections::BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mtime = e.header().mtime().unwrap();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        members.push((name.clone(), mode, mtime));
        files.insert(name, body);
    }
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    let cfg_name = format!("blobs/sha256/{}", Digest::of_bytes(&img.config_bytes).hex());
    let created = 1704164645; // 2024-01-02T03:04:05Z
    assert!(members.contains(&(cfg_name.clone(), 0o444, created)));
    assert!(members.contains(&("manifest.json".into(), 0o644, 0)));
    assert!(members.contains(&("blobs/".into(), 0o755, 0)));
    assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion": "1.0.0"}"#);

    let manifest = std::str::from_utf8(&files["manifest.json"]).unwrap();
    assert!(manifest.ends_with("]\n"));
    let m = json(manifest);
    assert_eq!(m[0]["Config"], cfg_name);
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["rbuild-test:1.0"]));
    let l0 = &img.layers[0].0;
    let l1 = &img.layers[1].0;
    assert_eq!(
        m[0]["Layers"],
        serde_json::json!([
            format!("blobs/sha256/{}", l0.digest.hex()),
            format!("blobs/sha256/{}", l1.digest.hex())
        ])
    );
    // Only the uncompressed layer gets a LayerSources entry (as Docker 25 writes it).
    let sources = m[0]["LayerSources"].as_object().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(
        sources[&l1.diff_id.to_string()]["mediaType"],
        MEDIA_OCI_LAYER
    );
    let repos = json(std::str::from_utf8(&files["repositories"]).unwrap());
    assert_eq!(repos["rbuild-test"]["1.0"], l1.diff_id.hex());
    let index = json(std::str::from_utf8(&files["index.json"]).unwrap());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
}
