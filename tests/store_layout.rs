//! Store layout, blob verification, locking, cache records and the command outputs, checked on
//! real files.

mod common;

use common::layer_tar;
use flate2::write::GzEncoder;
use rbuild::cli::render::{self as commands, ImagesOptions};
use rbuild::digest::Digest;
use rbuild::image::manifest::MEDIA_OCI_LAYER_GZIP;
use rbuild::image::{ImageConfig, Reference};
use rbuild::store::{CacheRecord, LayerRecord, Store};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Independent chainID: sha256 of "<parent chainID> <diffID>".
fn chain(parent: Option<&Digest>, diff: &Digest) -> Digest {
    match parent {
        None => diff.clone(),
        Some(p) => Digest::from_hex(&hex::encode(Sha256::digest(format!("{p} {diff}")))).unwrap(),
    }
}

/// Stores a gzip layer on `parent` and returns its record.
fn add_layer(store: &Store, parent: Option<&Digest>, name: &str, content: &[u8]) -> LayerRecord {
    let tar = layer_tar(name, content);
    let blob = gzip(&tar);
    let mut w = store.new_blob_writer().unwrap();
    w.write_all(&blob).unwrap();
    let digest = w.commit(Some(&Digest::of_bytes(&blob))).unwrap();
    let diff_id = Digest::of_bytes(&tar);
    let rec = LayerRecord {
        chain_id: chain(parent, &diff_id),
        diff_id,
        parent: parent.cloned(),
        size: tar.len() as u64,
        cache_id: format!("snap-{name}"),
        blob: digest,
        blob_size: blob.len() as u64,
        media_type: MEDIA_OCI_LAYER_GZIP.into(),
    };
    store.put_layer(&rec).unwrap();
    rec
}

fn image_with(layers: &[&LayerRecord], created: &str) -> Vec<u8> {
    let mut cfg = ImageConfig::scratch("amd64", "linux", None);
    cfg.created = Some(created.into());
    for l in layers {
        cfg.push_layer(l.diff_id.clone());
        cfg.add_history_entry(
            None,
            &format!("COPY {} / # buildkit", l.cache_id),
            "buildkit.dockerfile.v0",
            false,
        );
    }
    cfg.add_history_entry(None, "CMD [\"sh\"]", "buildkit.dockerfile.v0", true);
    cfg.to_bytes().unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn layout_matches_docker_shape_and_chain_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let l1 = add_layer(&store, None, "a.txt", b"A");
    let l2 = add_layer(&store, Some(&l1.chain_id), "b.txt", b"B");
    assert_eq!(l1.chain_id, l1.diff_id);
    let img = tmp.path().join("image/overlay2");
    let d2 = img.join("layerdb/sha256").join(l2.chain_id.hex());
    assert_eq!(read(&d2.join("diff")), l2.diff_id.to_string());
    assert_eq!(read(&d2.join("parent")), l1.chain_id.to_string());
    assert_eq!(read(&d2.join("size")), l2.size.to_string());
    assert_eq!(read(&d2.join("cache-id")), "snap-b.txt");
    assert!(!img
        .join("layerdb/sha256")
        .join(l1.chain_id.hex())
        .join("parent")
        .exists());
    let info: serde_json::Value =
        serde_json::from_str(&read(&d2.join("rbuild-blob.json"))).unwrap();
    assert_eq!(info["digest"], l2.blob.to_string());
    assert_eq!(info["mediaType"], MEDIA_OCI_LAYER_GZIP);
    assert_eq!(
        read(
            &img.join("distribution/diffid-by-digest/sha256")
                .join(l2.blob.hex())
        ),
        l2.diff_id.to_string()
    );
    let v2: serde_json::Value = serde_json::from_str(&read(
        &img.join("distribution/v2metadata-by-diffid/sha256")
            .join(l2.diff_id.hex()),
    ))
    .unwrap();
    assert_eq!(v2[0]["Digest"], l2.blob.to_string());
    assert!(tmp
        .path()
        .join("blobs/sha256")
        .join(l2.blob.hex())
        .is_file());
    assert_eq!(store.get_layer(&l2.chain_id).unwrap().unwrap(), l2);
    assert_eq!(
        store.layer_chain(&l2.chain_id).unwrap(),
        vec![l1.clone(), l2.clone()]
    );

    // A wrong chainID and a missing parent are refused.
    let mut bad = l2.clone();
    bad.chain_id = l2.diff_id.clone();
    assert!(store.put_layer(&bad).is_err());
    let mut orphan = l2.clone();
    orphan.parent = Some(Digest::of_bytes(b"nope"));
    orphan.chain_id = chain(orphan.parent.as_ref(), &orphan.diff_id);
    assert!(store.put_layer(&orphan).is_err());

    let cfg = image_with(&[&l1, &l2], "2024-01-02T03:04:05Z");
    let id = store.put_image(&cfg, None).unwrap();
    assert_eq!(id, Digest::of_bytes(&cfg));
    assert_eq!(
        std::fs::read(img.join("imagedb/content/sha256").join(id.hex())).unwrap(),
        cfg
    );
    assert!(img
        .join("imagedb/metadata/sha256")
        .join(id.hex())
        .join("lastUpdated")
        .is_file());
    store
        .tag(&Reference::parse_tagged("app").unwrap(), &id)
        .unwrap();
    store
        .tag(&Reference::parse_tagged("ghcr.io/o/app:v1").unwrap(), &id)
        .unwrap();
    assert_eq!(
        read(&img.join("repositories.json")),
        format!(
            r#"{{"Repositories":{{"app":{{"app:latest":"{id}"}},"ghcr.io/o/app":{{"ghcr.io/o/app:v1":"{id}"}}}}}}"#
        )
    );
    for name in [
        "app",
        "app:latest",
        "docker.io/library/app:latest",
        "ghcr.io/o/app:v1",
        &id.to_string(),
        id.short(),
        &id.hex()[..5],
    ] {
        assert_eq!(store.resolve(name).unwrap().as_ref(), Some(&id), "{name}");
    }
    assert_eq!(store.resolve("other").unwrap(), None);
    // An image whose layers are not recorded is refused.
    let mut cfg2 = ImageConfig::from_bytes(&cfg).unwrap();
    cfg2.push_layer(Digest::of_bytes(b"missing"));
    assert!(store.put_image(&cfg2.to_bytes().unwrap(), None).is_err());

    let list = store.list_images().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].size, l1.size + l2.size);
    assert_eq!(
        store
            .untag(&Reference::parse_tagged("app").unwrap())
            .unwrap(),
        Some(id.clone())
    );
    assert_eq!(store.resolve("app").unwrap(), None);
}

#[test]
fn blob_writer_verifies_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let mut w = store.new_blob_writer().unwrap();
    w.write_all(b"hello").unwrap();
    let err = w.commit(Some(&Digest::of_bytes(b"other"))).unwrap_err();
    assert!(err.to_string().contains("mismatch"), "{err}");
    assert!(!store.has_blob(&Digest::of_bytes(b"hello")));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
    let mut w = store.new_blob_writer().unwrap();
    w.write_all(b"hello").unwrap();
    let d = w.commit(None).unwrap();
    assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), b"hello");
}

#[test]
fn open_removes_temp_files_of_dead_processes() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path()).unwrap();
    let stale = tmp.path().join("tmp/999999999-abc");
    std::fs::write(&stale, b"x").unwrap();
    let stale_dir = tmp.path().join("tmp/999999998-dir");
    std::fs::create_dir(&stale_dir).unwrap();
    let mine = tmp.path().join(format!("tmp/{}-live", std::process::id()));
    std::fs::write(&mine, b"x").unwrap();
    Store::open(tmp.path()).unwrap();
    assert!(!stale.exists());
    assert!(!stale_dir.exists());
    assert!(mine.exists());
}

#[test]
fn concurrent_writers_from_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let base = add_layer(&store, None, "base", b"base");
    let id = store
        .put_image(&image_with(&[&base], "2024-01-01T00:00:00Z"), None)
        .unwrap();
    let payload = vec![7u8; 1 << 20];
    std::thread::scope(|s| {
        for t in 0..2 {
            let store = store.clone();
            let id = id.clone();
            let payload = &payload;
            s.spawn(move || {
                for i in 0..20 {
                    // Same blob from both threads: first writer wins, both succeed.
                    let mut w = store.new_blob_writer().unwrap();
                    w.write_all(payload).unwrap();
                    w.commit(Some(&Digest::of_bytes(payload))).unwrap();
                    // Read-modify-write of repositories.json: the lock prevents lost updates.
                    let r = Reference::parse_tagged(&format!("t{t}:v{i}")).unwrap();
                    store.tag(&r, &id).unwrap();
                    // Nested lock on the same thread does not deadlock.
                    let _g = store.lock().unwrap();
                    let _g2 = store.lock().unwrap();
                }
            });
        }
    });
    let (tags, _) = store.references_of(&id).unwrap();
    assert_eq!(tags.len(), 40);
    assert!(store.has_blob(&Digest::of_bytes(&payload)));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn cache_records_and_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let l = add_layer(&store, None, "x", b"x");
    let k1 = Digest::of_bytes(b"step1");
    let k2 = Digest::of_bytes(b"step2-a");
    let k3 = Digest::of_bytes(b"step2-b");
    let rec = |parent: Option<&Digest>, inst: &str| CacheRecord {
        config: image_with(&[&l], "2024-01-01T00:00:00Z"),
        chain_id: Some(l.chain_id.clone()),
        inputs: BTreeMap::from([("instruction".to_string(), inst.to_string())]),
        parent: parent.cloned(),
    };
    store.cache_put(&k1, &rec(None, "COPY x /")).unwrap();
    store.cache_put(&k2, &rec(Some(&k1), "RUN a")).unwrap();
    store.cache_put(&k3, &rec(Some(&k1), "RUN b")).unwrap();
    assert_eq!(
        store.cache_get(&k2).unwrap().unwrap(),
        rec(Some(&k1), "RUN a")
    );
    assert_eq!(store.cache_get(&Digest::of_bytes(b"none")).unwrap(), None);
    let cands = store.cache_candidates(Some(&k1)).unwrap();
    let mut insts: Vec<_> = cands
        .iter()
        .map(|(_, r)| r.inputs["instruction"].clone())
        .collect();
    insts.sort();
    assert_eq!(insts, vec!["RUN a", "RUN b"]);
    assert_eq!(store.cache_candidates(None).unwrap().len(), 1);
    // Config bytes survive exactly.
    let raw = read(&tmp.path().join("cache/sha256").join(k1.hex()));
    assert!(raw.contains("\"config\":\"{"), "{raw}");
}

#[test]
fn commands_images_history_inspect_rmi_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let l1 = add_layer(&store, None, "a.txt", b"A");
    let l2 = add_layer(&store, Some(&l1.chain_id), "b.txt", b"B");
    let base = store
        .put_image(&image_with(&[&l1], "2020-01-01T00:00:00Z"), None)
        .unwrap();
    let app = store
        .put_image(
            &image_with(&[&l1, &l2], "2024-01-02T03:04:05Z"),
            Some(&base),
        )
        .unwrap();
    store
        .tag(&Reference::parse_tagged("base").unwrap(), &base)
        .unwrap();
    store
        .tag(&Reference::parse_tagged("app:1").unwrap(), &app)
        .unwrap();
    store
        .tag(&Reference::parse_tagged("app:2").unwrap(), &app)
        .unwrap();

    let mut out = Vec::new();
    commands::images(&store, &mut out, &ImagesOptions::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].starts_with("app          1         ") && lines[1].contains(app.short()),
        "{text}"
    );
    assert!(
        lines[3].starts_with("base") && lines[3].contains("years ago"),
        "{text}"
    );

    let mut out = Vec::new();
    commands::images(
        &store,
        &mut out,
        &ImagesOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\n{}\n", app.short(), base.short())
    );

    let mut out = Vec::new();
    commands::images(
        &store,
        &mut out,
        &ImagesOptions {
            json: true,
            reference: Some("base".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["Repository"], "base");
    assert_eq!(v["CreatedAt"], "2020-01-01 00:00:00 +0000 UTC");
    assert_eq!(v["Digest"], "<none>");

    let mut out = Vec::new();
    commands::history(&store, &mut out, "app:1", false).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("IMAGE          CREATED   CREATED BY"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(app.short())
            && lines[1].contains("CMD [\"sh\"]")
            && lines[1].contains(" 0B "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("<missing>") && lines[2].contains("COPY snap-b.txt / # buildkit"),
        "{text}"
    );

    let mut out = Vec::new();
    let dirs = |id: &str| tmp.path().join("overlay2").join(id);
    commands::inspect(&store, &mut out, &["app:2".to_string()], None, &dirs).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], app.to_string());
    assert_eq!(i["Parent"], base.to_string());
    // Every key docker image inspect prints is there.
    let keys: Vec<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "Id",
        "RepoTags",
        "RepoDigests",
        "Parent",
        "Comment",
        "Created",
        "DockerVersion",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "GraphDriver",
        "RootFS",
        "Metadata",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(i["RepoTags"].as_array().unwrap().len(), 2);
    assert_eq!(i["RootFS"]["Layers"][1], l2.diff_id.to_string());
    assert_eq!(i["GraphDriver"]["Name"], "overlay2");
    assert_eq!(
        i["GraphDriver"]["Data"]["UpperDir"],
        tmp.path()
            .join("overlay2/snap-b.txt/diff")
            .display()
            .to_string()
    );
    assert_eq!(
        i["GraphDriver"]["Data"]["LowerDir"],
        tmp.path()
            .join("overlay2/snap-a.txt/diff")
            .display()
            .to_string()
    );
    assert_eq!(
        i["Config"]["Env"][0],
        format!("PATH={}", rbuild::image::DEFAULT_PATH_ENV)
    );

    let mut out = Vec::new();
    commands::df(&store, &mut out).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("Images        2         2"));

    // Base has a child: refused even with force.
    let mut out = Vec::new();
    let err = commands::rmi(&store, &mut out, &[base.to_string()], true).unwrap_err();
    assert!(err.to_string().contains("child"), "{err}");
    // By id with two tags: refused without force.
    let err = commands::rmi(&store, &mut out, &[app.short().to_string()], false).unwrap_err();
    assert!(err.to_string().contains("multiple repositories"), "{err}");
    // By tag: only untags.
    let mut out = Vec::new();
    let freed = commands::rmi(&store, &mut out, &["app:1".to_string()], false).unwrap();
    assert!(freed.is_empty());
    assert_eq!(String::from_utf8(out).unwrap(), "Untagged: app:1\n");
    assert!(store.has_image(&app));
    // Last tag: deletes the image and the layer only it used.
    let mut out = Vec::new();
    let freed = commands::rmi(&store, &mut out, &["app:2".to_string()], false).unwrap();
    assert_eq!(freed, vec!["snap-b.txt".to_string()]);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!("Deleted: {app}"))
            && text.contains(&format!("Deleted: {}", l2.chain_id)),
        "{text}"
    );
    assert!(!store.has_image(&app));
    assert!(store.get_layer(&l2.chain_id).unwrap().is_none());
    assert!(!store.has_blob(&l2.blob));
    assert!(store.has_blob(&l1.blob));

    // A cache record keeps its layer alive until prune --all.
    let l3 = add_layer(&store, Some(&l1.chain_id), "c.txt", b"C");
    let orphan = add_layer(&store, None, "orphan", b"O");
    store
        .cache_put(
            &Digest::of_bytes(b"k"),
            &CacheRecord {
                config: b"{}".to_vec(),
                chain_id: Some(l3.chain_id.clone()),
                inputs: BTreeMap::new(),
                parent: None,
            },
        )
        .unwrap();
    let mut out = Vec::new();
    let freed = commands::prune(&store, &mut out, false).unwrap();
    assert_eq!(freed, vec!["snap-orphan".to_string()]);
    assert!(!store.has_blob(&orphan.blob));
    assert!(store.get_layer(&l3.chain_id).unwrap().is_some());
    let mut out = Vec::new();
    let freed = commands::prune(&store, &mut out, true).unwrap();
    assert_eq!(freed, vec!["snap-c.txt".to_string()]);
    assert!(store.cache_keys().unwrap().is_empty());
    // The tagged base image and its layer survive.
    assert!(store.has_image(&base));
    assert!(store.get_layer(&l1.chain_id).unwrap().is_some());
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("Total reclaimed space"));
}

#[test]
fn check_reports_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let l1 = add_layer(&store, None, "a.txt", b"A");
    let l2 = add_layer(&store, Some(&l1.chain_id), "b.txt", b"B");
    let id = store
        .put_image(&image_with(&[&l1, &l2], "2024-01-01T00:00:00Z"), None)
        .unwrap();
    assert!(store.check().unwrap().is_empty());
    // Flip the blob of layer 1, delete the blob of layer 2.
    std::fs::write(store.blob_path(&l1.blob), b"garbage").unwrap();
    std::fs::remove_file(store.blob_path(&l2.blob)).unwrap();
    let problems = store.check().unwrap();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{text:?}");
    assert!(
        text[0].contains(&format!("blob {} is corrupt", l1.blob)),
        "{text:?}"
    );
    assert!(text[1].contains("is missing"), "{text:?}");
    // Exporting the image refuses the missing blob instead of writing a broken archive.
    assert!(store
        .export_image(&id, &[], rbuild::store::LayerForm::AsStored)
        .is_err());
}

/// R8: a layer a running process wrote but nothing references yet survives `prune` while that
/// process's lease is live (another store handle holds the lease file's flock), and goes once the
/// lease is released.
#[test]
fn r8_lease_keeps_unreferenced_layer_and_blob_from_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let builder = Store::open(tmp.path()).unwrap();
    let l1 = add_layer(&builder, None, "a.txt", b"A");
    builder.lease_layer(&l1.chain_id).unwrap();
    let pruner = Store::open(tmp.path()).unwrap();
    let mut out = Vec::new();
    commands::prune(&pruner, &mut out, true).unwrap();
    assert!(pruner.get_layer(&l1.chain_id).unwrap().is_some());
    assert!(pruner.has_blob(&l1.blob));
    // Released (as when the build ends or dies): the next prune collects it.
    builder.release_lease();
    commands::prune(&pruner, &mut out, true).unwrap();
    assert!(pruner.get_layer(&l1.chain_id).unwrap().is_none());
    assert!(!pruner.has_blob(&l1.blob));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("leases"))
            .unwrap()
            .count(),
        0
    );
}

/// R3: a lease file left by a killed process (no flock held) is recognised as stale; the
/// snapshot it held that no layer record took over is deleted with it, the others stay.
#[test]
fn r3_recover_removes_stale_lease_and_its_incomplete_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let snaps = rbuild::snapshot::OverlaySnapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let kept = store.create_snapshot(&snaps, None).unwrap();
    let orphan = snaps.create(Some(&kept.id)).unwrap();
    // `kept` belongs to a layer record; `orphan` only to a dead process's lease.
    let tar = layer_tar("k.txt", b"K");
    let blob = gzip(&tar);
    let mut w = store.new_blob_writer().unwrap();
    w.write_all(&blob).unwrap();
    let digest = w.commit(None).unwrap();
    let diff_id = Digest::of_bytes(&tar);
    store
        .put_layer(&LayerRecord {
            chain_id: chain(None, &diff_id),
            diff_id,
            parent: None,
            size: tar.len() as u64,
            cache_id: kept.id.clone(),
            blob: digest,
            blob_size: blob.len() as u64,
            media_type: MEDIA_OCI_LAYER_GZIP.into(),
        })
        .unwrap();
    store.release_lease();
    let stale = tmp.path().join("leases/999999-dead");
    std::fs::write(
        &stale,
        format!(
            "snapshot {}\nsnapshot {}\nlayer sha256:cut",
            kept.id, orphan.id
        ),
    )
    .unwrap();
    let actions = store.recover(&snaps).unwrap();
    assert!(
        actions.iter().any(|a| a.contains(&orphan.id)),
        "{actions:?}"
    );
    assert!(!stale.exists());
    assert!(snaps.get(&orphan.id).is_err());
    assert!(snaps.get(&kept.id).is_ok());
    // Nothing left to do the second time.
    assert!(store.recover(&snaps).unwrap().is_empty());
}
