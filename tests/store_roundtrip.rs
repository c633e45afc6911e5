//! load(save()) round trips through every export format, plus archives written by skopeo.

mod common;

use common::layer_tar;
use flate2::write::GzEncoder;
use rbuild::digest::{chain_id, Digest};
use rbuild::export::{docker_archive, oci_layout_dir, oci_layout_tar};
use rbuild::image::manifest::MEDIA_OCI_LAYER_GZIP;
use rbuild::image::{ImageConfig, Reference};
use rbuild::store::{LayerForm, LayerRecord, Store};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A store holding `app:1.0` with two gzip layers; returns the image id.
fn source_store(root: &Path) -> (Store, Digest) {
    let store = Store::open(root).unwrap();
    let mut parent: Option<Digest> = None;
    let mut cfg = ImageConfig::scratch("amd64", "linux", None);
    cfg.created = Some("2024-03-04T05:06:07.5Z".into());
    for (i, body) in [&b"first\n"[..], &b"second\n"[..]].iter().enumerate() {
        let tar = layer_tar(&format!("f{i}.txt"), body);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        let mut w = store.new_blob_writer().unwrap();
        w.write_all(&blob).unwrap();
        let digest = w.commit(None).unwrap();
        let diff_id = Digest::of_bytes(&tar);
        let rec = LayerRecord {
            chain_id: chain_id(parent.as_ref(), &diff_id),
            diff_id: diff_id.clone(),
            parent: parent.clone(),
            size: tar.len() as u64,
            cache_id: format!("src-{i}"),
            blob: digest,
            blob_size: blob.len() as u64,
            media_type: MEDIA_OCI_LAYER_GZIP.into(),
        };
        store.put_layer(&rec).unwrap();
        parent = Some(rec.chain_id.clone());
        cfg.push_layer(diff_id);
        cfg.add_history_entry(None, "COPY f / # buildkit", "buildkit.dockerfile.v0", false);
    }
    let id = store.put_image(&cfg.to_bytes().unwrap(), None).unwrap();
    store
        .tag(&Reference::parse_tagged("app:1.0").unwrap(), &id)
        .unwrap();
    (store, id)
}

/// Loads `path` into a fresh store; returns the store, loaded images and extracted layers.
fn load_into(root: &Path, path: &Path) -> (Store, Vec<rbuild::store::LoadedImage>, Vec<Digest>) {
    let store = Store::open(root).unwrap();
    let mut extracted = Vec::new();
    let mut cb = |rec: &LayerRecord,
                  blob: &Path|
     -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        assert!(blob.is_file());
        assert_eq!(Digest::of_bytes(&std::fs::read(blob).unwrap()), rec.blob);
        extracted.push(rec.chain_id.clone());
        Ok(format!("dst-{}", extracted.len()))
    };
    let loaded = store.load_archive(path, &mut cb).unwrap();
    (store, loaded, extracted)
}

fn same_layers(a: &Store, b: &Store, id: &Digest) {
    let top_a = a.image_top_layer(id).unwrap().unwrap();
    let top_b = b.image_top_layer(id).unwrap().unwrap();
    assert_eq!(top_a, top_b);
    let la = a.layer_chain(&top_a).unwrap();
    let lb = b.layer_chain(&top_b).unwrap();
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(
            (&x.chain_id, &x.diff_id, &x.blob, x.size),
            (&y.chain_id, &y.diff_id, &y.blob, y.size)
        );
        assert!(b.has_blob(&y.blob));
    }
}

#[test]
fn docker_archive_round_trip_is_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, id) = source_store(&tmp.path().join("a"));
    let img = src
        .export_image(&id, &["app:1.0".into()], LayerForm::AsStored)
        .unwrap();
    let archive = tmp.path().join("app.tar");
    docker_archive(&img, File::create(&archive).unwrap()).unwrap();

    let (dst, loaded, extracted) = load_into(&tmp.path().join("b"), &archive);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].tags, vec!["app:1.0".to_string()]);
    assert_eq!(extracted.len(), 2);
    assert_eq!(dst.resolve("app:1.0").unwrap(), Some(id.clone()));
    same_layers(&src, &dst, &id);
    assert_eq!(
        dst.get_layer(&extracted[1]).unwrap().unwrap().cache_id,
        "dst-2"
    );

    // Saving again from the destination gives the same bytes.
    let again = docker_archive(
        &dst.export_image(&id, &["app:1.0".into()], LayerForm::AsStored)
            .unwrap(),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(again, std::fs::read(&archive).unwrap());

    // Loading twice extracts nothing new.
    let mut calls = 0;
    let mut cb =
        |_: &LayerRecord, _: &Path| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            calls += 1;
            Ok(String::new())
        };
    dst.load_archive(&archive, &mut cb).unwrap();
    assert_eq!(calls, 0);
}

#[test]
fn oci_layout_dir_and_tar_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, id) = source_store(&tmp.path().join("a"));
    let img = src
        .export_image(&id, &["app:1.0".into()], LayerForm::AsStored)
        .unwrap();
    let dir = tmp.path().join("layout");
    oci_layout_dir(&img, &dir).unwrap();
    let (dst, loaded, _) = load_into(&tmp.path().join("b"), &dir);
    assert_eq!(loaded[0].id, id);
    same_layers(&src, &dst, &id);
    // The manifest digest is recorded as a repo digest.
    let (_, digests) = dst.references_of(&id).unwrap();
    assert_eq!(digests.len(), 1);
    assert!(digests[0].starts_with("app@sha256:"));
    assert_eq!(dst.resolve(&digests[0]).unwrap(), Some(id.clone()));

    let tar_path = tmp.path().join("oci.tar");
    oci_layout_tar(&img, File::create(&tar_path).unwrap()).unwrap();
    let (dst2, loaded, _) = load_into(&tmp.path().join("c"), &tar_path);
    assert_eq!(loaded[0].id, id);
    same_layers(&src, &dst2, &id);
}

#[test]
fn tampered_blob_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, id) = source_store(&tmp.path().join("a"));
    let img = src
        .export_image(&id, &["app:1.0".into()], LayerForm::AsStored)
        .unwrap();
    let dir = tmp.path().join("layout");
    oci_layout_dir(&img, &dir).unwrap();
    let victim = dir.join("blobs/sha256").join(img.layers[1].0.digest.hex());
    std::fs::write(&victim, b"not the layer").unwrap();
    let store = Store::open(tmp.path().join("b")).unwrap();
    let mut cb =
        |_: &LayerRecord, _: &Path| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            Ok("x".into())
        };
    let err = store.load_archive(&dir, &mut cb).unwrap_err();
    assert!(err.to_string().contains("mismatch"), "{err}");
    assert!(store.list_image_ids().unwrap().is_empty());
}

#[test]
fn loads_archives_written_by_skopeo() {
    if !common::need("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, id) = source_store(&tmp.path().join("a"));
    let dir = tmp.path().join("layout");
    oci_layout_dir(
        &src.export_image(&id, &["app:1.0".into()], LayerForm::AsStored)
            .unwrap(),
        &dir,
    )
    .unwrap();
    // skopeo's docker-archive: legacy layout with <v1id>/layer.tar symlinks, uncompressed layers.
    let legacy = tmp.path().join("legacy.tar");
    let oarch = tmp.path().join("skopeo-oci.tar");
    for (dest, _) in [
        (format!("docker-archive:{}:app:1.0", legacy.display()), ()),
        (format!("oci-archive:{}:app:1.0", oarch.display()), ()),
    ] {
        let out = Command::new("skopeo")
            .args(["copy", &format!("oci:{}:1.0", dir.display()), &dest])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (dst, loaded, _) = load_into(&tmp.path().join("b"), &legacy);
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].tags, vec!["app:1.0".to_string()]);
    let top = dst.image_top_layer(&id).unwrap().unwrap();
    assert_eq!(top, src.image_top_layer(&id).unwrap().unwrap());
    let (dst2, loaded, _) = load_into(&tmp.path().join("c"), &oarch);
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].tags, vec!["app:1.0".to_string()]);
    same_layers(&src, &dst2, &id);
}
