//! ELF binaries' metadata sections (docs/sbom.md, "Rust" and "Go"): `.dep-v0` (cargo-auditable)
//! and `.go.buildinfo`. Only regular files that are executable or named like a shared library are
//! opened, only their first bytes are read to check the ELF magic, and only the section headers
//! and the two sections themselves after that (through `object`'s `ReadCache`): the rest of a
//! binary is never read.

use std::io::Read;
use std::path::PathBuf;

use object::{Object, ObjectSection};

use super::rootfs::{Entry, RootFs};
use super::SbomError;

/// Bigger than any real `.dep-v0` or `.go.buildinfo` section (a few KB each).
const SECTION_LIMIT: u64 = 8 << 20;

/// What one binary carries.
#[derive(Debug, Default)]
pub(crate) struct Binary {
    /// Path in the rootfs, relative (`usr/bin/rg`).
    pub path: PathBuf,
    /// The zlib-compressed JSON of cargo-auditable.
    pub dep_v0: Option<Vec<u8>>,
    /// The Go build info blob (starts with `\xff Go buildinf:`).
    pub go_buildinfo: Option<Vec<u8>>,
}

/// The ELF files among `entries` that carry either section, at most `max` files opened.
pub(crate) fn scan(root: &RootFs, entries: &[Entry], max: usize) -> Result<Vec<Binary>, SbomError> {
    let mut out = Vec::new();
    let mut opened = 0usize;
    for e in entries {
        if e.is_dir || e.size < 64 || !candidate(e) {
            continue;
        }
        if opened >= max {
            break;
        }
        opened += 1;
        let Some(mut file) = root.open_file(&e.path)? else {
            continue;
        };
        let mut magic = [0u8; 4];
        if file.read_exact(&mut magic).is_err() || magic != *b"\x7fELF" {
            continue;
        }
        let cache = object::ReadCache::new(file);
        // Not an ELF object `object` understands (truncated, other class): nothing to read.
        let Ok(obj) = object::File::parse(&cache) else {
            continue;
        };
        let section = |name: &str| -> Option<Vec<u8>> {
            let s = obj.section_by_name(name)?;
            if s.size() > SECTION_LIMIT {
                return None;
            }
            s.data().ok().map(<[u8]>::to_vec)
        };
        let bin = Binary {
            path: e.path.clone(),
            dep_v0: section(".dep-v0"),
            go_buildinfo: section(".go.buildinfo"),
        };
        if bin.dep_v0.is_some() || bin.go_buildinfo.is_some() {
            out.push(bin);
        }
    }
    Ok(out)
}

/// Executable (any x bit), or a shared library by name (`libfoo.so`, `libfoo.so.1.2`).
fn candidate(e: &Entry) -> bool {
    e.mode & 0o111 != 0
        || e.path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".so") || n.contains(".so."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_of_a_real_binary_and_skips_non_elf() {
        // This test binary is an ELF file with neither section; a copy with its x bit set must be
        // opened and yield nothing, and a script with an x bit is not ELF.
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        let me = std::env::current_exe().unwrap();
        std::fs::copy(&me, d.join("bin/test")).unwrap();
        std::fs::write(
            d.join("bin/script"),
            format!("#!/bin/sh\n{}\n", "x".repeat(100)),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("bin/script"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let root = RootFs::open(d).unwrap();
        let entries = root.walk(100).unwrap();
        assert!(scan(&root, &entries, 100).unwrap().is_empty());
    }
}
