//! SBOM generation: scans a final rootfs directory for the packages installed in it and describes
//! them as an SPDX 2.3 JSON document (docs/sbom.md).
//!
//! Scanners, one per file: `dpkg`, `apk`, `python` (dist-info / egg-info), `npm`
//! (node_modules), `rust` (cargo-auditable) and `golang` (Go build info), the last two over the
//! ELF sections `elf` reads. The rootfs is treated as hostile: every read goes through
//! `rootfs::RootFs` (never out of the root, sizes capped). The output is deterministic: same
//! rootfs and options → byte-identical JSON.

mod apk;
mod control;
mod distro;
mod dpkg;
mod elf;
mod golang;
mod license;
mod model;
mod npm;
mod purl;
mod python;
mod rootfs;
mod rust;
mod spdx;
#[cfg(test)]
mod test_fs;

use std::path::{Path, PathBuf};

use model::Package;
use rootfs::RootFs;

/// What the document says about itself, and how much work a scan may do.
#[derive(Debug, Clone)]
pub struct SbomOptions {
    /// The document's name and its describing package's name (an image reference, say).
    pub name: String,
    /// The document namespace is `<namespace_base>/<name>-<sha256 of the content>`: unique per
    /// content, never random, so the same rootfs gives the same document.
    pub namespace_base: String,
    /// Creation time in seconds since the epoch (SOURCE_DATE_EPOCH); `None` = now.
    pub created: Option<i64>,
    /// The `Tool:` creator (`rbuild-0.1.0`).
    pub tool: String,
    /// List each package's files (with the checksums its database records).
    pub include_files: bool,
    /// Stop with [`SbomError::TooManyEntries`] past this many directory entries.
    pub max_entries: usize,
    /// Look into at most this many ELF files for Rust and Go metadata (the rest are not read).
    pub max_binaries: usize,
}

impl Default for SbomOptions {
    fn default() -> Self {
        SbomOptions {
            name: "rootfs".into(),
            namespace_base: "https://rbuild.invalid/spdx".into(),
            created: None,
            tool: format!("rbuild-{}", env!("CARGO_PKG_VERSION")),
            include_files: true,
            max_entries: 2_000_000,
            max_binaries: 20_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("sbom: cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: pathrs::error::Error,
    },
    #[error("sbom: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sbom: {path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("sbom: {path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("sbom: {path} has more than {limit} entries")]
    TooManyEntries { path: PathBuf, limit: usize },
    #[error("sbom: invalid creation time {0} (seconds since the epoch)")]
    Time(i64),
    #[error("sbom: cannot serialize the document: {0}")]
    Json(#[from] serde_json::Error),
}

impl SbomError {
    fn open(path: &Path, source: pathrs::error::Error) -> Self {
        SbomError::Open {
            path: path.to_path_buf(),
            source,
        }
    }

    fn read(path: &Path, source: std::io::Error) -> Self {
        SbomError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Scans the rootfs directory `root` (read-only) and returns its SPDX 2.3 document.
pub fn generate(root: &Path, opts: &SbomOptions) -> Result<serde_json::Value, SbomError> {
    let packages = scan(root, opts)?;
    spdx::document(&packages, opts)
}

/// Runs every scanner; packages come out sorted (scanner, name, version, purl, location).
fn scan(root: &Path, opts: &SbomOptions) -> Result<Vec<Package>, SbomError> {
    let fs = RootFs::open(root)?;
    let distro = distro::Distro::read(&fs)?;
    let mut packages = dpkg::scan(&fs, &distro)?;
    packages.extend(apk::scan(&fs, &distro)?);
    let entries = fs.walk(opts.max_entries)?;
    packages.extend(python::scan(&fs, &entries)?);
    packages.extend(npm::scan(&fs, &entries)?);
    let binaries = elf::scan(&fs, &entries, opts.max_binaries)?;
    packages.extend(rust::packages(&binaries));
    packages.extend(golang::packages(&binaries));
    if !opts.include_files {
        for p in &mut packages {
            p.files.clear();
        }
    }
    packages.sort_by(|a, b| {
        (a.source, &a.name, &a.version, &a.purl, &a.location).cmp(&(
            b.source,
            &b.name,
            &b.version,
            &b.purl,
            &b.location,
        ))
    });
    Ok(packages)
}
