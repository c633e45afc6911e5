//! `write_layer` on real overlay upper dirs, round trips through `apply`, determinism and
//! compression variants. Needs root (overlay mounts, trusted.* xattrs, chown).

use rbuild::digest::Digest;
use rbuild::layer::{
    apply, decompress, write_layer, ApplyOptions, Compression, Detected, LayerInfo, LayerOptions,
    WhiteoutMode,
};
use rbuild::snapshot::{OverlaySnapshotter as Snapshotter, Snapshot};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const CAP: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
const LONG_DIR: &str =
    "a-very-long-directory-name-that-goes-on-and-on-and-on-for-quite-a-while-0123456789";

fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A base snapshot with a small tree, and a child whose upper dir holds every kind of change.
fn scenario(store: &Snapshotter) -> (Snapshot, Snapshot) {
    let base = store.create(None).unwrap();
    let d = base.diff_dir();
    fs::create_dir_all(d.join("etc")).unwrap();
    fs::write(d.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(d.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::create_dir_all(d.join("dir/sub")).unwrap();
    fs::write(d.join("dir/sub/a"), "a").unwrap();
    fs::write(d.join("dir/b"), "b").unwrap();
    fs::write(d.join("gone.txt"), "bye").unwrap();
    fs::create_dir_all(d.join("bin")).unwrap();

    let child = store.create(Some(&base.id)).unwrap();
    let m = store.mount(&child).unwrap();
    let r = m.path();
    fs::write(r.join("new-hard.txt"), "hard").unwrap();
    fs::hard_link(r.join("new-hard.txt"), r.join("new.txt")).unwrap();
    fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n10.0.0.1 box\n").unwrap();
    fs::remove_file(r.join("gone.txt")).unwrap();
    fs::remove_dir_all(r.join("dir")).unwrap();
    fs::create_dir(r.join("dir")).unwrap();
    fs::write(r.join("dir/new"), "fresh").unwrap();
    symlink("etc/passwd", r.join("link")).unwrap();
    fs::write(r.join("bin/suid"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(r.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(r.join("bin/cap"), "elf").unwrap();
    xattr::set(r.join("bin/cap"), "security.capability", CAP).unwrap();
    fs::write(r.join("owned"), "o").unwrap();
    std::os::unix::fs::lchown(r.join("owned"), Some(1000), Some(2000)).unwrap();
    let deep = r.join(LONG_DIR).join(LONG_DIR).join(LONG_DIR);
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file-with-a-long-name"), "deep").unwrap();
    m.unmount().unwrap();
    (base, child)
}

struct Listed {
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
    link: Option<String>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn list(tar_bytes: &[u8]) -> Vec<(String, Listed)> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(Cursor::new(tar_bytes));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                if let Some(k) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(k.to_string(), r.value_bytes().to_vec());
                }
            }
        }
        let h = e.header();
        out.push((
            name,
            Listed {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                size: e.size(),
                mtime: h.mtime().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                xattrs,
            },
        ));
    }
    out
}

fn layer(dir: &Path, compression: Compression, clamp: Option<i64>) -> (Vec<u8>, LayerInfo) {
    write_layer(
        dir,
        Vec::new(),
        &LayerOptions {
            compression,
            clamp_mtime: clamp,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn diff_of_real_overlay_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let (_base, child) = scenario(&store);
    let (tar_bytes, info) = layer(&child.diff_dir(), Compression::Uncompressed, None);
    assert_eq!(info.diff_id, Digest::of_bytes(&tar_bytes));
    assert_eq!(info.digest, info.diff_id);
    assert_eq!(info.size, tar_bytes.len() as u64);
    assert_eq!(info.uncompressed_size, tar_bytes.len() as u64);
    assert_eq!(info.media_type, "application/vnd.oci.image.layer.v1.tar");

    let entries = list(&tar_bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let get = |n: &str| {
        &entries
            .iter()
            .find(|(x, _)| x == n)
            .unwrap_or_else(|| panic!("{n} missing: {names:?}"))
            .1
    };

    // deletion -> whiteout file, no host data on it
    let wh = get(".wh.gone.txt");
    assert_eq!(
        (wh.kind, wh.mode, wh.size, wh.mtime),
        (tar::EntryType::Regular, 0, 0, 0)
    );
    // rm -rf + mkdir -> opaque dir: the dir entry, then its marker
    let pos = names.iter().position(|n| *n == "dir/").unwrap();
    assert_eq!(names[pos + 1], "dir/.wh..wh..opq");
    assert!(names.contains(&"dir/new"));
    assert!(!names.iter().any(|n| n.starts_with("dir/sub")));
    // modification: the whole file, in a dir entry that comes first
    assert!(
        names.iter().position(|n| *n == "etc/").unwrap()
            < names.iter().position(|n| *n == "etc/hosts").unwrap()
    );
    assert_eq!(get("etc/hosts").size, 33);
    assert!(!names.contains(&"etc/passwd"));
    // symlink, hardlink (first name in walk order is the real file)
    assert_eq!(get("link").kind, tar::EntryType::Symlink);
    assert_eq!(get("link").link.as_deref(), Some("etc/passwd"));
    assert_eq!(get("new-hard.txt").kind, tar::EntryType::Regular);
    assert_eq!(get("new.txt").kind, tar::EntryType::Link);
    assert_eq!(get("new.txt").link.as_deref(), Some("new-hard.txt"));
    // setuid, capabilities, overlay xattrs never leak
    assert_eq!(get("bin/suid").mode, 0o4755);
    assert_eq!(
        get("bin/cap")
            .xattrs
            .get("security.capability")
            .map(Vec::as_slice),
        Some(CAP)
    );
    for (n, e) in &entries {
        assert!(
            !e.xattrs.keys().any(|k| k.contains("overlay")),
            "{n} carries {:?}",
            e.xattrs
        );
    }
    // long names survive (PAX path or ustar prefix)
    let deep = format!("{LONG_DIR}/{LONG_DIR}/{LONG_DIR}/file-with-a-long-name");
    assert_eq!(get(&deep).size, 4);
    // each directory's children come sorted, directories before their contents
    for w in names.windows(2) {
        let (a, b) = (w[0].trim_end_matches('/'), w[1].trim_end_matches('/'));
        // A whiteout sits where the walk met the deleted name.
        let key = |p: &str| -> Vec<String> {
            p.split('/')
                .map(|c| {
                    if c == ".wh..wh..opq" {
                        c
                    } else {
                        c.strip_prefix(".wh.").unwrap_or(c)
                    }
                })
                .map(str::to_string)
                .collect()
        };
        let (pa, pb) = (key(a), key(b));
        let common = pa.iter().zip(&pb).take_while(|(x, y)| x == y).count();
        if common < pa.len() && common < pb.len() {
            assert!(pa[common] < pb[common], "{a} before {b}");
        } else {
            assert!(pa.len() < pb.len() || (a == b), "{a} before {b}");
        }
    }
    // uid/gid numeric, names empty
    let mut a = tar::Archive::new(Cursor::new(&tar_bytes[..]));
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        if e.path_bytes().as_ref() == b"owned" {
            assert_eq!(
                (e.header().uid().unwrap(), e.header().gid().unwrap()),
                (1000, 2000)
            );
        }
    }
    store.remove(&child.id).unwrap();
}

/// Every path of a tree with what a user can observe about it.
fn observe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        if e.depth() == 0 {
            continue;
        }
        let md = e.path().symlink_metadata().unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let what = if md.file_type().is_symlink() {
            format!("link {}", fs::read_link(e.path()).unwrap().display())
        } else if md.is_file() {
            format!(
                "file {:?} mtime {}",
                fs::read(e.path()).unwrap(),
                md.mtime()
            )
        } else {
            "dir".to_string()
        };
        let cap = xattr::get(e.path(), "security.capability").ok().flatten();
        out.insert(
            rel,
            format!(
                "{what} mode {:o} {}:{} cap {cap:?}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            ),
        );
    }
    out
}

#[test]
fn round_trip_through_apply_overlay_and_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Snapshotter::open(&tmp.path().join("overlay2")).unwrap();
    let (base, child) = scenario(&store);
    let (blob, info) = layer(&child.diff_dir(), Compression::default(), None);

    let copy = store.create(Some(&base.id)).unwrap();
    let (reader, detected) = decompress(Cursor::new(blob)).unwrap();
    assert_eq!(detected, Detected::Gzip);
    let hashing = rbuild::digest::HashingReader::new(reader);
    let mut hashing = hashing;
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        max_bytes: None,
        same_owner: true,
    };
    apply(&mut hashing, &copy.diff_dir(), &opts).unwrap();
    let (_, applied_diff_id, _) = hashing.finish();
    assert_eq!(
        applied_diff_id, info.diff_id,
        "apply consumed the whole stream"
    );

    let want = {
        let m = store.mount(&child).unwrap();
        observe(m.path())
    };
    let got = {
        let m = store.mount(&copy).unwrap();
        observe(m.path())
    };
    assert!(want.contains_key(Path::new("dir/new")) && !want.contains_key(Path::new("gone.txt")));
    assert!(!want.contains_key(Path::new("dir/sub")));
    assert_eq!(got, want);

    // And flattened with WhiteoutMode::Apply onto a plain tree: base layer, then the child.
    let flat = tmp.path().join("flat");
    fs::create_dir(&flat).unwrap();
    let apply_opts = ApplyOptions {
        whiteouts: WhiteoutMode::Apply,
        max_bytes: None,
        same_owner: true,
    };
    for snap in [&base, &child] {
        let (tar_bytes, _) = layer(&snap.diff_dir(), Compression::Uncompressed, None);
        apply(Cursor::new(tar_bytes), &flat, &apply_opts).unwrap();
    }
    assert_eq!(observe(&flat), want);
}

/// Two trees with the same content; only mtimes differ.
fn twin_trees(root: &Path, mtime: i64) -> PathBuf {
    let d = root.join(format!("t{mtime}"));
    fs::create_dir_all(d.join("usr/lib")).unwrap();
    fs::write(
        d.join("usr/lib/big"),
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(d.join("usr/lib/small"), "x").unwrap();
    symlink("big", d.join("usr/lib/alias")).unwrap();
    for p in [
        "usr/lib/big",
        "usr/lib/small",
        "usr/lib/alias",
        "usr/lib",
        "usr",
    ] {
        set_mtime(&d.join(p), mtime);
    }
    d
}

#[test]
fn determinism_and_mtime_clamp() {
    let tmp = tempfile::tempdir().unwrap();
    let a = twin_trees(tmp.path(), 1_700_000_000);
    let b = twin_trees(tmp.path(), 1_700_000_500);
    for compression in [
        Compression::default(),
        Compression::Zstd { level: 3 },
        Compression::Uncompressed,
    ] {
        let (blob1, i1) = layer(&a, compression, None);
        let (blob2, i2) = layer(&a, compression, None);
        assert_eq!(blob1, blob2, "{compression:?}: same tree, same bytes");
        assert_eq!(i1, i2);
        // different mtimes differ without a clamp, and are identical once clamped below both
        let (_, ib) = layer(&b, compression, None);
        assert_ne!(i1.diff_id, ib.diff_id);
        let (_, ca) = layer(&a, compression, Some(1_600_000_000));
        let (_, cb) = layer(&b, compression, Some(1_600_000_000));
        assert_eq!(ca, cb, "{compression:?}");
        // a clamp above the mtimes changes nothing
        let (_, high) = layer(&a, compression, Some(1_800_000_000));
        assert_eq!(high, i1);
    }
    let (tar_bytes, _) = layer(&a, Compression::Uncompressed, Some(1_600_000_000));
    assert!(list(&tar_bytes)
        .iter()
        .all(|(_, e)| e.mtime == 1_600_000_000));
}

#[test]
fn compression_variants() {
    let tmp = tempfile::tempdir().unwrap();
    let a = twin_trees(tmp.path(), 1_700_000_000);
    let (plain, plain_info) = layer(&a, Compression::Uncompressed, None);
    for (compression, detected, media) in [
        (
            Compression::Gzip { level: 6 },
            Detected::Gzip,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            Compression::Gzip { level: 1 },
            Detected::Gzip,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            Compression::Zstd { level: 3 },
            Detected::Zstd,
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        let (blob, info) = layer(&a, compression, None);
        assert_eq!(info.media_type, media);
        assert_eq!(compression.media_type(), media);
        assert_eq!(info.digest, Digest::of_bytes(&blob));
        assert_eq!(info.size, blob.len() as u64);
        assert!(info.size < info.uncompressed_size);
        assert_eq!(info.diff_id, plain_info.diff_id);
        assert_eq!(info.uncompressed_size, plain.len() as u64);
        let (mut r, d) = decompress(Cursor::new(blob.clone())).unwrap();
        assert_eq!(d, detected);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
        if detected == Detected::Gzip {
            // no file name, mtime 0, OS "unknown"
            assert_eq!(blob[3] & 0x08, 0);
            assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
            assert_eq!(blob[9], 255);
        }
    }
    assert_eq!(Compression::default(), Compression::Gzip { level: 6 });
    assert_eq!(
        Compression::default().docker_media_type(),
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        Compression::Uncompressed.docker_media_type(),
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    let json = serde_json::to_string(&plain_info).unwrap();
    assert!(json.contains("\"diff_id\":\"sha256:"));
    let back: LayerInfo = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plain_info);
}

#[test]
fn empty_upper_gives_the_empty_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (bytes, info) = layer(tmp.path(), Compression::Uncompressed, None);
    assert_eq!(bytes, vec![0u8; 1024]);
    assert_eq!(
        info.diff_id.to_string(),
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
}

#[test]
fn sockets_are_skipped_devices_and_fifos_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        d.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        d.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let (bytes, _) = layer(d, Compression::Uncompressed, None);
    let entries = list(&bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fifo", "null"]);
    assert_eq!(entries[0].1.kind, tar::EntryType::Fifo);
    assert_eq!(entries[1].1.kind, tar::EntryType::Char);
    let mut a = tar::Archive::new(Cursor::new(&bytes[..]));
    let e = a.entries().unwrap().nth(1).unwrap().unwrap();
    assert_eq!(
        (
            e.header().device_major().unwrap(),
            e.header().device_minor().unwrap()
        ),
        (Some(1), Some(3))
    );
}
