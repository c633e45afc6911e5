//! Fixture rootfs for the scanners' unit tests.

use std::path::Path;

/// Writes `text` at `rel` under `dir`, creating the parents.
pub(crate) fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("a relative path with a parent"))
        .expect("create fixture dirs");
    std::fs::write(p, text).expect("write fixture file");
}
