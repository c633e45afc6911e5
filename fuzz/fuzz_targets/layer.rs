//! Layer extraction: a fuzzer-made tar (optionally compressed) applied with `layer::apply` (or
//! ADD's `extract_if_archive`) into a scratch root must never touch anything outside it.
//!
//! Input: byte 0 picks the entry point and wrapping, the rest is the archive.
//! * bits 0-1: 0 = whiteouts applied, 1 = overlay whiteouts, 2 = no whiteouts (archive),
//!   3 = `extract_if_archive` into `/app`, where `/app` is a symlink to `/`;
//! * bit 2: the harness gzips the rest (so mutations inside a compressed layer stay valid);
//!   the rest may also be compressed by the fuzzer itself: `decompress` sniffs it.
//!
//! Oracle (moby/go-archive's "victim" test, SECURITY.md 1.7), checked after every input:
//! the box holding the root still lists exactly `root`, `victim`, `root-evil`; the victims'
//! listings, bytes, modes and link counts are unchanged; the root is still a real directory;
//! and every multiply-linked file in the root has all its links inside the root (a hardlink
//! to anything outside would show up as a link count the root cannot account for).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::layer::{apply, decompress, extract_if_archive, ApplyOptions, WhiteoutMode};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Sandbox {
    top: PathBuf,
    dir: PathBuf,
}

fn the_box() -> &'static Sandbox {
    static B: OnceLock<Sandbox> = OnceLock::new();
    B.get_or_init(|| {
        let top = std::env::temp_dir().join(format!("rbuild-fuzz-layer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&top);
        let dir = top.join("box");
        fs::create_dir_all(dir.join("victim")).expect("victim dir");
        fs::create_dir_all(dir.join("root-evil")).expect("sibling-prefix dir");
        fs::write(dir.join("victim/hello"), b"hello victim").expect("victim file");
        fs::write(dir.join("root-evil/secret"), b"sibling secret").expect("sibling file");
        Sandbox { top, dir }
    })
}

/// Listing, bytes, mode, link count and mtime of a victim dir's files.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32, u64, i64)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("victim readable")
        .map(|e| {
            let e = e.expect("victim entry");
            let md = fs::symlink_metadata(e.path()).expect("victim stat");
            let bytes = if md.is_file() {
                fs::read(e.path()).expect("victim read")
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes,
                md.mode(),
                md.nlink(),
                md.mtime(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A new scratch root with its pre-existing links; `None` when the machine cannot provide it
/// (a full disk is the environment's failure, not a finding).
fn fresh_root(b: &Sandbox) -> Option<PathBuf> {
    let root = b.dir.join("root");
    if fs::symlink_metadata(&root).is_ok() {
        fs::remove_dir_all(&root).ok()?;
    }
    fs::create_dir(&root).ok()?;
    // Pre-existing hostile links (a lower layer's work): followed on the host they would lead
    // out of the root, resolved inside it they must not.
    fs::create_dir(root.join("etc")).ok()?;
    fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").ok()?;
    symlink("../victim", root.join("up")).ok()?;
    symlink(b.dir.join("victim"), root.join("abs")).ok()?;
    symlink("/", root.join("app")).ok()?;
    symlink("..", root.join("dotdot")).ok()?;
    Some(root)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let b = the_box();
    let Some(root) = fresh_root(b) else {
        return;
    };
    let before = (
        snapshot(&b.dir.join("victim")),
        snapshot(&b.dir.join("root-evil")),
    );

    let payload = if mode & 4 != 0 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).expect("gzip into memory");
        gz.finish().expect("gzip into memory")
    } else {
        rest.to_vec()
    };
    let opts = |whiteouts| ApplyOptions {
        whiteouts,
        max_bytes: Some(64 << 20),
        same_owner: true,
        limits: Default::default(),
    };
    match mode & 3 {
        3 => {
            let input = b.top.join("input");
            if fs::write(&input, &payload).is_err() {
                return; // disk full: nothing to test
            }
            let _ = extract_if_archive(&input, &root, Path::new("/app"), &opts(WhiteoutMode::None));
        }
        m => {
            if let Ok((reader, _)) = decompress(std::io::Cursor::new(payload)) {
                let wm = [
                    WhiteoutMode::Apply,
                    WhiteoutMode::Overlay,
                    WhiteoutMode::None,
                ][m as usize];
                let _ = apply(reader, &root, &opts(wm));
            }
        }
    }

    let mut names: Vec<_> = fs::read_dir(&b.dir)
        .expect("box readable")
        .map(|e| {
            e.expect("box entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root", "root-evil", "victim"],
        "something appeared beside the root"
    );
    let after = (
        snapshot(&b.dir.join("victim")),
        snapshot(&b.dir.join("root-evil")),
    );
    assert_eq!(before, after, "a victim outside the root changed");
    assert!(
        fs::symlink_metadata(&root).expect("root stat").is_dir(),
        "the root was replaced"
    );
    // Every inode with several links must have all of them inside the root.
    let mut seen: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    for e in walkdir::WalkDir::new(&root).follow_links(false) {
        let Ok(e) = e else { continue };
        let Ok(md) = e.metadata() else { continue };
        if !md.is_dir() && md.nlink() > 1 {
            let slot = seen.entry((md.dev(), md.ino())).or_insert((md.nlink(), 0));
            slot.1 += 1;
        }
    }
    for ((dev, ino), (nlink, found)) in seen {
        assert_eq!(
            nlink, found,
            "inode {dev}:{ino} has {nlink} links but only {found} inside the root"
        );
    }
});
