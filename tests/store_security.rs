//! SECURITY.md (a) group F: store and metadata input validation, through `Store::load_archive`
//! on OCI layouts and docker-archives built here byte by byte. Each test is named after its id.

mod common;

use common::layer_tar;
use rbuild::digest::Digest;
use rbuild::image::manifest::{
    MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER, MEDIA_OCI_MANIFEST,
};
use rbuild::store::{LayerRecord, Store, StoreError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// An OCI layout under construction.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    fn blob(&self, bytes: &[u8]) -> (Digest, u64) {
        let d = Digest::of_bytes(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        (d, bytes.len() as u64)
    }
    fn json_blob(&self, v: &Value) -> (Digest, u64) {
        self.blob(&serde_json::to_vec(v).unwrap())
    }
    fn index(&self, v: &Value) {
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(v).unwrap()).unwrap();
    }
    /// A valid one-layer image: returns (manifest value, config digest, layer digest).
    fn image(&self) -> (Value, Digest, Digest) {
        let tar = layer_tar("hello", b"hi\n");
        let (ld, ls) = self.blob(&tar);
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [ld.to_string()]},
        });
        let (cd, cs) = self.json_blob(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": cd.to_string(), "size": cs},
            "layers": [{"mediaType": MEDIA_OCI_LAYER, "digest": ld.to_string(), "size": ls}],
        });
        (manifest, cd, ld)
    }
    fn top(&self, manifest: &Value, extra: Value) {
        let (md, ms) = self.json_blob(manifest);
        let mut desc = json!({
            "mediaType": MEDIA_OCI_MANIFEST, "digest": md.to_string(), "size": ms,
            "annotations": {"io.containerd.image.name": "docker.io/library/f:1"},
        });
        if let (Some(d), Some(e)) = (desc.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                d.insert(k.clone(), v.clone());
            }
        }
        self.index(&json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [desc]}));
    }
}

fn load(
    dir: &Path,
) -> (
    tempfile::TempDir,
    Result<Vec<rbuild::store::LoadedImage>, StoreError>,
) {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let mut cb =
        |_: &LayerRecord, _: &Path| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            Ok("x".into())
        };
    let r = store.load_archive(dir, &mut cb);
    if r.is_err() {
        // A refused archive leaves no image behind.
        assert!(store.list_image_ids().unwrap().is_empty());
    }
    (t, r)
}

fn load_err(dir: &Path) -> String {
    match load(dir).1 {
        Ok(_) => panic!("{} must be refused", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn f00_the_valid_layout_loads() {
    // The baseline every other case mutates.
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (m, _, _) = l.image();
    l.top(&m, json!({}));
    let (_s, r) = load(t.path());
    assert_eq!(r.unwrap()[0].tags, vec!["f:1".to_string()]);
}

#[test]
fn f01_malformed_digests_never_reach_the_filesystem() {
    for bad in [
        "sha256:../../../tmp/x",
        &format!("sha256:{}", "A".repeat(64)),
        &format!("sha256:{}", "a".repeat(63)),
        &format!("sha256:{}", "a".repeat(65)),
        "sha256:",
        &format!("sha512:{}", "a".repeat(128)),
        &format!("md5/../../{}", "a".repeat(64)),
    ] {
        assert!(Digest::parse(bad).is_err(), "{bad}");
        let t = tempfile::tempdir().unwrap();
        let l = Layout::new(t.path());
        l.index(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": MEDIA_OCI_MANIFEST, "digest": bad, "size": 2}]}));
        let e = load_err(t.path());
        assert!(e.contains("digest"), "{bad}: {e}");
    }
    // Store listings ignore names that are not digests.
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    for dir in [
        "image/overlay2/imagedb/content/sha256",
        "image/overlay2/layerdb/sha256",
    ] {
        std::fs::create_dir_all(t.path().join(dir).join("..evil")).unwrap();
        std::fs::write(t.path().join(dir).join("NOTAHEX"), b"{}").unwrap();
    }
    assert!(store.list_image_ids().unwrap().is_empty());
    assert!(store.list_layers().unwrap().is_empty());
}

#[test]
fn f02_ambiguous_documents_are_refused() {
    // CVE-2021-41190: a manifest that also has `manifests`, an index that also has `layers`.
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (mut m, _, _) = l.image();
    m["manifests"] = json!([]);
    l.top(&m, json!({}));
    assert!(load_err(t.path()).contains("ambiguous"));

    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (m, _, _) = l.image();
    l.top(&m, json!({}));
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(t.path().join("index.json")).unwrap()).unwrap();
    index["layers"] = m["layers"].clone();
    l.index(&index);
    assert!(load_err(t.path()).contains("ambiguous"));

    // The document's own mediaType disagrees with the descriptor that points at it.
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (mut m, _, _) = l.image();
    m["mediaType"] = json!(MEDIA_OCI_INDEX);
    l.top(&m, json!({}));
    let e = load_err(t.path());
    assert!(e.contains("media type"), "{e}");
}

#[test]
fn f03_oversized_and_deeply_nested_documents_are_refused() {
    // A manifest beyond the 4 MiB cap (containerd's MaxManifestSize).
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (mut m, _, _) = l.image();
    m["annotations"] = json!({"pad": "x".repeat(5 << 20)});
    l.top(&m, json!({}));
    let e = load_err(t.path());
    assert!(e.contains("larger than"), "{e}");
    // An index whose chosen entry is itself an index: one level of nesting only.
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (m, _, _) = l.image();
    let (md, ms) = l.json_blob(&m);
    let mut inner = json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": md.to_string(), "size": ms}]});
    for _ in 0..100 {
        let (d, s) = l.json_blob(&inner);
        inner = json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
            {"mediaType": MEDIA_OCI_INDEX, "digest": d.to_string(), "size": s}]});
    }
    l.index(&inner);
    let e = load_err(t.path());
    assert!(e.contains("index"), "{e}");
    // 100,000 layers: the manifest alone passes the size cap; 20,000 pass it but not the layer
    // cap. Either way a clear error, and nothing read layer by layer.
    for (n, want) in [(100_000, "larger than"), (20_000, "layers")] {
        let t = tempfile::tempdir().unwrap();
        let l = Layout::new(t.path());
        let (mut m, _, ld) = l.image();
        let layer = m["layers"][0].clone();
        m["layers"] = Value::Array(vec![layer; n]);
        let ids: Vec<String> = vec![ld.to_string(); n];
        let (cd, cs) = l.json_blob(&json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ids}}));
        m["config"] = json!({"mediaType": MEDIA_OCI_CONFIG, "digest": cd.to_string(), "size": cs});
        l.top(&m, json!({}));
        let e = load_err(t.path());
        assert!(e.contains(want), "{n}: {e}");
    }
}

#[test]
fn f04_layer_whose_diff_id_differs_from_the_config() {
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (mut m, _, _) = l.image();
    let other = Digest::of_bytes(b"not the layer's diff id");
    let (cd, cs) = l.json_blob(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [other.to_string()]}}));
    m["config"] = json!({"mediaType": MEDIA_OCI_CONFIG, "digest": cd.to_string(), "size": cs});
    l.top(&m, json!({}));
    let e = load_err(t.path());
    assert!(e.contains("diffID"), "{e}");
}

#[test]
fn f05_descriptor_size_must_match() {
    for delta in [-1i64, 1, 1000] {
        // The manifest's size in the index is wrong.
        let t = tempfile::tempdir().unwrap();
        let l = Layout::new(t.path());
        let (m, _, _) = l.image();
        let (md, ms) = l.json_blob(&m);
        l.index(
            &json!({"schemaVersion": 2, "manifests": [{"mediaType": MEDIA_OCI_MANIFEST,
            "digest": md.to_string(), "size": ms as i64 + delta}]}),
        );
        let e = load_err(t.path());
        assert!(e.contains("size"), "{delta}: {e}");
        // The layer's size in the manifest is wrong.
        let t = tempfile::tempdir().unwrap();
        let l = Layout::new(t.path());
        let (mut m, _, _) = l.image();
        let s = m["layers"][0]["size"].as_i64().unwrap();
        m["layers"][0]["size"] = json!(s + delta);
        l.top(&m, json!({}));
        let e = load_err(t.path());
        assert!(e.contains("size"), "{delta}: {e}");
    }
}

#[test]
fn f06_schema1_and_unknown_media_types_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let schema1 =
        json!({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": [], "history": []});
    l.top(&schema1, json!({}));
    assert!(load(t.path()).1.is_err());
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let (m, _, _) = l.image();
    l.top(
        &m,
        json!({"mediaType": "application/vnd.example.unknown+json"}),
    );
    let e = load_err(t.path());
    assert!(e.contains("media type"), "{e}");
}

#[test]
fn f07_huge_index_and_manifest_json_are_bounded() {
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    let f = std::fs::File::create(t.path().join("index.json")).unwrap();
    f.set_len(64 << 20).unwrap(); // sparse: 64 MiB of zeros
    drop(l);
    let e = load_err(t.path());
    assert!(e.contains("larger than"), "{e}");
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("blobs/sha256")).unwrap();
    let f = std::fs::File::create(t.path().join("manifest.json")).unwrap();
    f.set_len(64 << 20).unwrap();
    let e = load_err(t.path());
    assert!(e.contains("larger than"), "{e}");
}
