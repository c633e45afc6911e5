//! Layers are stored as tars and compressed when an output first needs them (`store::compressed`):
//! the compressed bytes equal what compressing at build time gave, are made once and kept, are
//! collected with their layer, and `fsck` drops a form whose blob is gone.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn blobs(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn forms_dir(root: &Path) -> PathBuf {
    root.join("image/overlay2/distribution/compressed-by-diffid/sha256")
}

/// `index.json` → manifest → its layers' (mediaType, digest), from an OCI layout tar.
fn oci_layers(archive: &Path) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    sh(std::process::Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path()));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("blobs/sha256")
                .join(md.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `rbuild save --format oci --compression gzip -o OUT app:1`.
fn save_gzip(root: &Path, out: &Path) {
    let out = out.to_str().unwrap();
    ok(rbuild(
        root,
        &[
            "save",
            "--format",
            "oci",
            "--compression",
            "gzip",
            "-o",
            out,
            "app:1",
        ],
    ));
}

fn build(root: &Path, ctx: &Path, tag: &str, output: Option<String>) {
    let mut args = vec!["build", "-q", "-t", tag];
    if let Some(o) = &output {
        args.push("-o");
        args.push(o);
    }
    args.push(ctx.to_str().unwrap());
    ok(rbuild_env(
        root,
        &args,
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
}

#[test]
fn built_layers_are_stored_as_tars_and_compressed_once_on_export() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nCOPY a /a\n",
        &[("a", "hello\n")],
    );
    rootfs_archive(&ctx, "rootfs.tar");

    // Reference: a build that writes a gzip OCI archive right away.
    let ref_root = t.path().join("ref");
    let ref_out = t.path().join("ref.tar");
    build(
        &ref_root,
        &ctx,
        "app:1",
        Some(format!("type=oci,dest={}", ref_out.display())),
    );
    let want = oci_layers(&ref_out);
    assert_eq!(want.len(), 2);
    assert!(want
        .iter()
        .all(|(mt, _)| mt == "application/vnd.oci.image.layer.v1.tar+gzip"));

    // A build with no output stores only tars: each blob is named by its diffID.
    let root = t.path().join("root");
    build(&root, &ctx, "app:1", None);
    let stored = blobs(&root);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(!forms_dir(&root).exists());
    let save = t.path().join("plain.tar");
    ok(rbuild(
        &root,
        &[
            "save",
            "--format",
            "oci",
            "-o",
            save.to_str().unwrap(),
            "app:1",
        ],
    ));
    let plain = oci_layers(&save);
    for (mt, d) in &plain {
        assert_eq!(mt, "application/vnd.oci.image.layer.v1.tar");
        assert!(stored.contains(&d.trim_start_matches("sha256:").to_string()));
    }

    // Compressed on demand: the same bytes as compressing at build time, recorded as a form.
    let gz = t.path().join("gz.tar");
    save_gzip(&root, &gz);
    assert_eq!(oci_layers(&gz), want);
    let after_first = blobs(&root);
    assert_eq!(after_first.len(), 4, "{after_first:?}");
    assert_eq!(std::fs::read_dir(forms_dir(&root)).unwrap().count(), 2);
    // Kept: a second export reuses the forms (no new blob) and gives the same archive.
    let gz2 = t.path().join("gz2.tar");
    save_gzip(&root, &gz2);
    assert_eq!(blobs(&root), after_first);
    assert_eq!(std::fs::read(&gz).unwrap(), std::fs::read(&gz2).unwrap());
    // A build output in another codec asks for another form; the layers themselves are cached.
    let zst = t.path().join("zst.tar");
    build(
        &root,
        &ctx,
        "app:1",
        Some(format!("type=oci,dest={},compression=zstd", zst.display())),
    );
    assert!(oci_layers(&zst)
        .iter()
        .all(|(mt, _)| mt == "application/vnd.oci.image.layer.v1.tar+zstd"));
    assert_eq!(blobs(&root).len(), 6);
    assert_store_consistent(&root);

    // fsck: a form whose blob is gone is reported and dropped; the next export remakes it.
    let (_, gz_top) = &want[1];
    std::fs::remove_file(
        root.join("blobs/sha256")
            .join(gz_top.trim_start_matches("sha256:")),
    )
    .unwrap();
    let r = rbuild(&root, &["fsck"]);
    assert_eq!(r.status, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("compressed form gzip-6-p2"),
        "{}",
        r.stdout
    );
    let r = ok(rbuild(&root, &["fsck", "--repair"]));
    assert!(
        r.stdout.contains("dropped compressed form gzip-6-p2"),
        "{}",
        r.stdout
    );
    save_gzip(&root, &gz2);
    assert_eq!(std::fs::read(&gz).unwrap(), std::fs::read(&gz2).unwrap());
    assert_store_consistent(&root);

    // GC: removing the image takes its layers, their tars and every compressed form.
    ok(rbuild(&root, &["rmi", "app:1"]));
    ok(rbuild(&root, &["prune", "-a"]));
    assert_eq!(blobs(&root), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(forms_dir(&root)).unwrap().count(), 0);
}
