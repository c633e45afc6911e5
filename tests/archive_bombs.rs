//! Archive bombs (issue 16): what an ADD archive or a layer expands to is capped by its logical
//! size (sparse holes included), and must leave the destination's free-space margin. At this
//! level the applier stops before the oversized entry is written; tests/build_limits.rs checks
//! that a build or a load then keeps nothing of it.

use rbuild::layer::limits::{Exceeded, DEFAULT_MAX_EXPANDED};
use rbuild::layer::{apply, extract_if_archive, ApplyOptions, LayerError, Limits, WhiteoutMode};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tar holding `small` (1 KiB), then `bomb` (`size` zero bytes), in memory.
fn tar_with_bomb(size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, len) in [("small", 1024), ("bomb", size)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(len as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, std::io::repeat(0).take_bytes(len))
            .unwrap();
    }
    b.into_inner().unwrap()
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: usize) -> std::io::Take<Self> {
        self.take(n as u64)
    }
}
impl<R: std::io::Read> TakeBytes for R {}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A tar made by GNU tar from a sparse file of `logical` bytes (`format`: gnu or posix).
fn sparse_tar(dir: &Path, logical: u64, format: &str) -> PathBuf {
    let src = dir.join(format!("src-{format}"));
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("hole")).unwrap();
    f.set_len(logical).unwrap();
    drop(f);
    let out = dir.join(format!("sparse-{format}.tar"));
    let st = Command::new("tar")
        .arg(format!("--format={format}"))
        .args(["--sparse", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&out)
        .arg("hole")
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::metadata(&out).unwrap().len() < 1 << 20,
        "sparse tar"
    );
    out
}

fn opts(limits: Limits) -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        max_bytes: None,
        same_owner: true,
        limits,
    }
}

fn cap(n: u64) -> Limits {
    Limits {
        max_expanded: Some(n),
        min_free: 0,
    }
}

#[test]
fn gzip_bomb_stops_before_the_entry_that_passes_the_cap() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let blob = gzip(&tar_with_bomb(64 << 20));
    assert!(blob.len() < 1 << 20, "a bomb: {} bytes", blob.len());
    let archive = t.path().join("bomb.tar.gz");
    std::fs::write(&archive, &blob).unwrap();
    let r = extract_if_archive(&archive, &root, Path::new("/dest"), &opts(cap(16 << 20)));
    match r {
        Err(LayerError::TooLarge { ref entry, why }) => {
            assert_eq!(entry, "bomb");
            assert_eq!(why, Exceeded::Cap { cap: 16 << 20 });
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(!root.join("dest/bomb").exists(), "the bomb was not written");
    // Under a cap it fits, it extracts.
    let r = extract_if_archive(&archive, &root, Path::new("/ok"), &opts(cap(65 << 20)));
    assert!(r.unwrap());
    assert_eq!(
        std::fs::metadata(root.join("ok/bomb")).unwrap().len(),
        64 << 20
    );
}

#[test]
fn gnu_and_pax_sparse_entries_count_their_holes() {
    let t = tempfile::tempdir().unwrap();
    // 1 TiB of holes in a few KiB of tar: the default cap (64 GiB) refuses it.
    let logical = 1u64 << 40;
    assert!(logical > DEFAULT_MAX_EXPANDED);
    for format in ["gnu", "posix"] {
        let tar = sparse_tar(t.path(), logical, format);
        let root = t.path().join(format!("root-{format}"));
        std::fs::create_dir(&root).unwrap();
        let f = std::fs::File::open(&tar).unwrap();
        let r = apply(f, &root, &opts(Limits::default()));
        assert!(
            matches!(
                r,
                Err(LayerError::TooLarge {
                    why: Exceeded::Cap {
                        cap: DEFAULT_MAX_EXPANDED
                    },
                    ..
                })
            ),
            "{format}: {r:?}"
        );
        // Nothing of the hole's size was written.
        let written: u64 = walkdir::WalkDir::new(&root)
            .into_iter()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(written < 1 << 20, "{format}: {written} bytes written");
    }
}

#[test]
fn the_free_space_margin_is_kept() {
    // A 16 MiB tmpfs: the default margin there is 5% of it (0.8 MiB), so a 15.5 MiB file that
    // would fit is refused, naming the space; with no margin it extracts.
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs (needs root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let tar = tar_with_bomb(31 << 19);
    let limits = Limits {
        max_expanded: None,
        min_free: rbuild::layer::limits::DEFAULT_MIN_FREE,
    };
    let r = apply(Cursor::new(tar.clone()), &mnt, &opts(limits));
    match r {
        Err(LayerError::TooLarge {
            why: Exceeded::Space { margin, .. },
            ref entry,
        }) => {
            assert_eq!(margin, (16 << 20) / 20);
            assert_eq!(entry, "bomb");
            let msg = r.as_ref().unwrap_err().to_string();
            assert!(msg.contains("--min-free-space"), "{msg}");
        }
        other => panic!("expected the margin to hold, got {other:?}"),
    }
    assert!(!mnt.join("bomb").exists(), "refused before it was written");
    apply(Cursor::new(tar), &mnt, &opts(Limits::none())).unwrap();
    assert_eq!(std::fs::metadata(mnt.join("bomb")).unwrap().len(), 31 << 19);
}
