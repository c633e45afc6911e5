//! What a scanner finds, before it becomes SPDX (`spdx.rs`).

use std::path::PathBuf;

/// The package database or artifact a package was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    Dpkg,
    Apk,
    Python,
    Npm,
    Cargo,
    Go,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dpkg => "dpkg",
            Source::Apk => "apk",
            Source::Python => "python",
            Source::Npm => "npm",
            Source::Cargo => "cargo",
            Source::Go => "go",
        }
    }
}

/// SPDX checksum algorithms the databases record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    Md5,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub fn spdx_name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }
}

/// A file a package database lists, with the checksum it records (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FileRecord {
    /// Path in the rootfs, absolute (`/usr/bin/hello`).
    pub path: String,
    pub algorithm: Algorithm,
    pub digest: String,
}

/// One package as found.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub source: Source,
    pub name: String,
    pub version: String,
    pub purl: String,
    /// The license as the database writes it (normalized to SPDX by `license.rs`), if any.
    pub license: Option<String>,
    /// Where it was found (the database file, the dist-info directory, the binary).
    pub location: PathBuf,
    pub files: Vec<FileRecord>,
}
