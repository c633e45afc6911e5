//! Values of flags shared by several commands: `-o` outputs, `--compression[-level]`.

use crate::layer::Compression;
use crate::solve::{OutputKind, OutputSpec};
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;

type ParsedOutput = (OutputSpec, Option<Compression>, Option<i64>, Option<bool>);

/// Parses `-o type=...,dest=...` (and the `-o DIR` shorthand for type=local).
pub fn parse_output(s: &str) -> Result<ParsedOutput> {
    if !s.contains('=') {
        return Ok((
            OutputSpec {
                kind: OutputKind::Local,
                dest: PathBuf::from(s),
            },
            None,
            None,
            None,
        ));
    }
    let mut kind = None;
    let mut dest = None;
    let mut tar = true;
    let mut compression = None;
    let mut level = None;
    let mut rewrite = None;
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid output {s:?}: {part:?} is not key=value"))?;
        match k {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(PathBuf::from(v)),
            "tar" => tar = parse_bool(v).ok_or_else(|| anyhow!("invalid tar={v:?}"))?,
            "compression" => {
                compression = Some(match v {
                    "gzip" => Compression::Gzip { level: 6 },
                    "zstd" => Compression::Zstd { level: 3 },
                    "uncompressed" => Compression::Uncompressed,
                    other => bail!("unsupported compression {other:?} (gzip, zstd, uncompressed)"),
                })
            }
            "compression-level" => {
                level = Some(
                    v.parse::<i64>()
                        .map_err(|_| anyhow!("invalid compression-level {v:?}"))?,
                )
            }
            "rewrite-timestamp" => {
                rewrite =
                    Some(parse_bool(v).ok_or_else(|| anyhow!("invalid rewrite-timestamp={v:?}"))?)
            }
            "name" | "force-compression" | "oci-mediatypes" => {}
            other => bail!("unknown output option {other:?} in {s:?}"),
        }
    }
    let dest = dest.ok_or_else(|| anyhow!("output {s:?} needs dest="))?;
    let kind = match kind.as_deref() {
        Some("docker") => OutputKind::Docker,
        Some("oci") => OutputKind::Oci { tar },
        Some("tar") => OutputKind::Tar,
        Some("local") => OutputKind::Local,
        Some(other) => bail!("unsupported output type {other:?} (docker, oci, tar, local)"),
        None => bail!("output {s:?} needs type="),
    };
    Ok((OutputSpec { kind, dest }, compression, level, rewrite))
}

/// `--compression/--compression-level` of save and push: which blobs the layers ship as.
pub(super) fn layer_form(
    compression: Option<&str>,
    level: Option<i64>,
) -> Result<crate::store::LayerForm> {
    let c = match compression {
        None if level.is_some() => bail!("--compression-level needs --compression"),
        None | Some("uncompressed") => return Ok(crate::store::LayerForm::AsStored),
        Some("gzip") => Compression::Gzip { level: 6 },
        Some("zstd") => Compression::Zstd { level: 3 },
        Some(other) => bail!("unsupported --compression {other:?} (gzip, zstd, uncompressed)"),
    };
    Ok(crate::store::LayerForm::Compress(
        with_level(c, level)?,
        crate::layer::Profile::LATEST,
    ))
}

/// Applies `compression-level=N` to the chosen compression, within each codec's range.
pub(super) fn with_level(c: Compression, level: Option<i64>) -> Result<Compression> {
    let Some(l) = level else { return Ok(c) };
    match c {
        Compression::Gzip { .. } if (0..=9).contains(&l) => {
            Ok(Compression::Gzip { level: l as u32 })
        }
        Compression::Zstd { .. } if (1..=22).contains(&l) => {
            Ok(Compression::Zstd { level: l as i32 })
        }
        Compression::Uncompressed => bail!("compression-level needs compression=gzip or zstd"),
        _ => bail!("compression-level {l} is out of range (gzip 0-9, zstd 1-22)"),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}
