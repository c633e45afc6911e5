//! `load` of OCI layouts shaped as BuildKit and multi-platform tools write them: nested indexes
//! (several levels, without `mediaType` in the documents), attestation manifests beside the
//! image, and Go's `null`s in the config (issue 22).

mod common;

use common::*;
use rbuild::digest::Digest;
use serde_json::json;
use std::path::Path;

struct Layout<'a> {
    blobs: &'a Path,
}

impl Layout<'_> {
    /// Stores `bytes` and returns its descriptor.
    fn put(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let d = Digest::of_bytes(bytes);
        std::fs::write(self.blobs.join(d.hex()), bytes).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
    }
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn nested_indexes_skip_attestations_and_keep_the_config() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("layout");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let l = Layout { blobs: &blobs };

    let tar = std::fs::read(rootfs_archive(t.path(), "rootfs.tar")).unwrap();
    let layer = l.put("application/vnd.oci.image.layer.v1.tar", &tar);
    // Not the host's architecture, so that only "skip attestations" decides the pick.
    let config = format!(
        r#"{{"architecture":"riscv64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":null,"OnBuild":null,"Volumes":null,"Labels":null}},"rootfs":{{"type":"layers","diff_ids":["{}"]}},"history":null}}"#,
        Digest::of_bytes(&tar)
    );
    let cfg = l.put(
        "application/vnd.oci.image.config.v1+json",
        config.as_bytes(),
    );
    // Documents without `mediaType`, as some writers leave it out.
    let image =
        serde_json::to_vec(&json!({"schemaVersion": 2, "config": cfg, "layers": [layer]})).unwrap();
    let mut image_desc = l.put(MANIFEST, &image);
    image_desc["platform"] = json!({"architecture": "riscv64", "os": "linux"});
    let statement = l.put(
        "application/vnd.in-toto+json",
        br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#,
    );
    let att_cfg = l.put(
        "application/vnd.oci.image.config.v1+json",
        b"{\"architecture\":\"unknown\",\"os\":\"unknown\"}",
    );
    let att = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": att_cfg, "layers": [statement]})).unwrap();
    let mut att_desc = l.put(MANIFEST, &att);
    att_desc["platform"] = json!({"architecture": "unknown", "os": "unknown"});
    att_desc["annotations"] = json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": image_desc["digest"],
    });
    // The attestation first: a reader that takes "the first entry" gets it wrong.
    let inner =
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [att_desc, image_desc]}))
            .unwrap();
    let inner_desc = l.put(INDEX, &inner);
    let middle = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [inner_desc]}),
    )
    .unwrap();
    let mut middle_desc = l.put(INDEX, &middle);
    middle_desc["annotations"] = json!({"io.containerd.image.name": "docker.io/library/nested:1", "org.opencontainers.image.ref.name": "1"});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [middle_desc]})).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    let root = t.path().join("root");
    ok(rbuild(&root, &["load", "-q", "-i", dir.to_str().unwrap()]));
    let out = ok(rbuild(&root, &["inspect", "nested:1"])).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[0]["Id"].as_str().unwrap(),
        Digest::of_bytes(config.as_bytes()).to_string()
    );
    // Saved unchanged: the same bytes, nulls included.
    let saved = t.path().join("saved.tar");
    ok(rbuild(
        &root,
        &["save", "-o", saved.to_str().unwrap(), "nested:1"],
    ));
    let id = Digest::of_bytes(config.as_bytes());
    let bytes = sh(std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&saved)
        .arg(format!("blobs/sha256/{}", id.hex())));
    assert_eq!(bytes, config);
}

#[test]
fn errors_name_the_document_and_the_field() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("archive");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let l = Layout { blobs: &blobs };
    let cfg = l.put(
        "x",
        br#"{"architecture":"amd64","os":"linux","config":{"OnBuild":5}}"#,
    );
    let name = format!("blobs/sha256/{}", &cfg["digest"].as_str().unwrap()[7..]);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&json!([{"Config": name, "RepoTags": ["bad:1"], "Layers": []}]))
            .unwrap(),
    )
    .unwrap();
    let r = rbuild(
        &t.path().join("root"),
        &["load", "-i", dir.to_str().unwrap()],
    );
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains(&name)
            && r.stderr
                .contains("config.OnBuild: expected a list, got a number"),
        "{}",
        r.stderr
    );
}
