//! The corpus in testdata/images (see its SOURCES.md): real configs, manifests and indexes as
//! Docker, BuildKit, buildah, skopeo, containers/image, moby and the OCI spec write them. Every
//! document parses; every config serves as the base of a real build; an image loaded and saved
//! unchanged keeps its config bytes (and so its id).

mod common;

use common::*;
use rbuild::digest::Digest;
use rbuild::image::manifest::{Index, Manifest};
use rbuild::image::ImageConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// (producer, kind, file) for every corpus document.
fn corpus() -> Vec<(String, String, PathBuf)> {
    let root = repo_dir().join("testdata/images");
    let mut out = Vec::new();
    for producer in std::fs::read_dir(&root).unwrap() {
        let producer = producer.unwrap().path();
        if !producer.is_dir() {
            continue;
        }
        for kind in std::fs::read_dir(&producer).unwrap() {
            let kind = kind.unwrap().path();
            for f in std::fs::read_dir(&kind).unwrap() {
                let f = f.unwrap().path();
                out.push((
                    producer.file_name().unwrap().to_string_lossy().to_string(),
                    kind.file_name().unwrap().to_string_lossy().to_string(),
                    f,
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_corpus_document_parses() {
    let docs = corpus();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (producer, kind, f) in &docs {
        let bytes = std::fs::read(f).unwrap();
        let name = f.display();
        match kind.as_str() {
            "config" => {
                let c = ImageConfig::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                // rbuild's own form is stable: written, read and written again, same bytes.
                let canon = c.clone().into_base().to_bytes().unwrap();
                let again = ImageConfig::from_bytes(&canon).unwrap();
                assert_eq!(again.to_bytes().unwrap(), canon, "{name}");
                assert_eq!(again.config.env, c.config.env, "{name}");
            }
            "manifest" => {
                Manifest::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "index" => {
                Index::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "rejected" => {
                let m = Manifest::from_bytes(&bytes).expect_err(&name.to_string());
                assert!(Index::from_bytes(&bytes).is_err(), "{name}");
                let text = String::from_utf8_lossy(&bytes);
                if text.contains("\"schemaVersion\": 1") || text.contains("\"schemaVersion\":1") {
                    assert!(m.to_string().contains("schema 1"), "{name}: {m}");
                }
            }
            other => panic!("{name}: unknown corpus kind {other}"),
        }
        *counts.entry(producer.clone()).or_default() += 1;
    }
    eprintln!("corpus by producer: {counts:?} ({} files)", docs.len());
    for p in [
        "buildah",
        "buildkit",
        "containers-image",
        "docker-engine",
        "image-spec",
        "moby",
        "skopeo",
    ] {
        assert!(
            counts.get(p).copied().unwrap_or(0) > 0,
            "no corpus files from {p}"
        );
    }
}

/// The corpus's Docker-era configs really carry what issue 22 is about.
#[test]
fn corpus_holds_nulls_and_legacy_fields() {
    let configs: Vec<String> = corpus()
        .into_iter()
        .filter(|(_, k, _)| k == "config")
        .map(|(_, _, f)| std::fs::read_to_string(f).unwrap())
        .collect();
    for needle in [
        "\"OnBuild\":null",
        "\"Volumes\":null",
        "\"Entrypoint\":null",
        "\"Labels\":null",
        "container_config",
        "docker_version",
        "\"AttachStdin\"",
    ] {
        assert!(
            configs.iter().any(|c| c.contains(needle)),
            "no corpus config holds {needle}"
        );
    }
}

/// A layer tar with one file, every header field set (as real layers have them).
fn small_layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(content.len() as u64);
    h.set_cksum();
    b.append(&h, content).unwrap();
    b.into_inner().unwrap()
}

/// A docker-archive directory holding every corpus config as an image. Each keeps its text,
/// except that `rootfs.diff_ids` name stand-in layers (the real layers are not in the corpus),
/// as many as the original lists so that `history` still matches: busybox first (a base's
/// `ONBUILD RUN` needs a shell), then one small file each.
fn corpus_archive(dir: &Path) -> Vec<(String, Vec<u8>, ImageConfig)> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let busybox = std::fs::read(rootfs_archive(dir, "busybox.tar")).unwrap();
    let put = |bytes: &[u8]| -> String {
        let d = Digest::of_bytes(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        format!("blobs/sha256/{}", d.hex())
    };
    let mut items = Vec::new();
    let mut images = Vec::new();
    for (producer, kind, f) in corpus() {
        if kind != "config" {
            continue;
        }
        let stem = f.file_stem().unwrap().to_string_lossy().to_lowercase();
        let tag = format!("corpus/{producer}-{}:1", stem.replace(['.', '_'], "-"));
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let n = v["rootfs"]["diff_ids"].as_array().map_or(0, |a| a.len());
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..n {
            let tar = match i {
                0 => busybox.clone(),
                _ => small_layer(&format!("layer-{i}"), tag.as_bytes()),
            };
            diff_ids.push(Digest::of_bytes(&tar).to_string());
            layers.push(put(&tar));
        }
        if n > 0 {
            v["rootfs"]["diff_ids"] = serde_json::json!(diff_ids);
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        let config = ImageConfig::from_bytes(&bytes).unwrap();
        items.push(serde_json::json!({"Config": put(&bytes), "RepoTags": [tag], "Layers": layers}));
        images.push((tag, bytes, config));
    }
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&items).unwrap(),
    )
    .unwrap();
    images
}

/// Config bytes of each tagged image in a `docker save` archive.
fn saved_configs(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = archive.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    sh(std::process::Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&dir));
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for it in items {
        let bytes = std::fs::read(dir.join(it["Config"].as_str().unwrap())).unwrap();
        for t in it["RepoTags"].as_array().unwrap() {
            out.insert(t.as_str().unwrap().to_string(), bytes.clone());
        }
    }
    out
}

#[test]
fn every_corpus_config_is_a_base_and_passes_through_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let images = corpus_archive(&t.path().join("archive"));
    assert!(images.len() >= 10, "corpus has {} configs", images.len());
    ok(rbuild(
        &root,
        &[
            "load",
            "-q",
            "-i",
            t.path().join("archive").to_str().unwrap(),
        ],
    ));

    // Loaded and saved unchanged: the same config bytes, so the same image id. (One image per
    // `save`: `rbuild save a b` writes only the last image today, under both tags.)
    for (i, (tag, bytes, _)) in images.iter().enumerate() {
        let saved = t.path().join(format!("saved{i}.tar"));
        ok(rbuild(&root, &["save", "-o", saved.to_str().unwrap(), tag]));
        let saved = saved_configs(&saved);
        assert_eq!(saved.get(tag), Some(bytes), "{tag}: config bytes changed");
    }

    // Built on: written in rbuild's own form, the base's settings kept.
    let mut outs = Vec::new();
    for (i, (tag, _, base)) in images.iter().enumerate() {
        let ctx = context(
            &t.path().join(format!("ctx{i}")),
            &format!("FROM {tag}\nENV CORPUS=1\nLABEL corpus.base={tag}\n"),
            &[],
        );
        let out = format!("corpus-out/n{i}:1");
        ok(rbuild(
            &root,
            &["build", "-q", "-t", &out, ctx.to_str().unwrap()],
        ));
        outs.push((out, tag, base));
    }
    for (i, (out, tag, base)) in outs.into_iter().enumerate() {
        let saved = t.path().join(format!("out{i}.tar"));
        ok(rbuild(
            &root,
            &["save", "-o", saved.to_str().unwrap(), &out],
        ));
        let bytes = &saved_configs(&saved)[&out];
        let c = ImageConfig::from_bytes(bytes).unwrap();
        assert_eq!(
            &c.to_bytes().unwrap(),
            bytes,
            "{tag}: not rbuild's canonical form"
        );
        let text = String::from_utf8_lossy(bytes);
        for legacy in ["container_config", "docker_version", "\"Hostname\"", "null"] {
            assert!(
                !text.contains(legacy),
                "{tag}: {legacy} carried over: {text}"
            );
        }
        assert_eq!(c.config.env.last().map(String::as_str), Some("CORPUS=1"));
        assert_eq!(
            c.config.env[..c.config.env.len() - 1],
            base.config.env[..],
            "{tag}"
        );
        assert_eq!(c.config.cmd, base.config.cmd, "{tag}");
        assert_eq!(c.config.entrypoint, base.config.entrypoint, "{tag}");
        // The base's layers, then one for each `ONBUILD RUN` it carries.
        let n = base.rootfs.diff_ids.len();
        assert_eq!(c.rootfs.diff_ids[..n], base.rootfs.diff_ids[..], "{tag}");
        let onbuild_runs = base
            .config
            .on_build
            .iter()
            .filter(|t| t.starts_with("RUN"))
            .count();
        assert_eq!(c.rootfs.diff_ids.len(), n + onbuild_runs, "{tag}");
        assert_eq!(c.config.labels["corpus.base"], *tag);
    }
}
