//! `rbuild diff`: says whether two images are identical and, if not, exactly where they differ — config
//! fields, which layer, and per file what differs (presence, type, mode, owner, size, content, mtime, xattrs,
//! link target). Images come from the store, a docker-archive, or an OCI layout (directory or tar).

use crate::digest::{Digest, HashingReader};
use crate::store::Store;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CompareError + '_ {
    move |source| CompareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One image, ready to compare: its config bytes and its layer blobs (compressed or not) in order.
pub struct ImageInput {
    pub name: String,
    pub manifest_digest: Option<Digest>,
    pub config: Vec<u8>,
    pub layers: Vec<PathBuf>,
    /// Keeps an extracted archive alive while the image is compared.
    _scratch: Option<tempfile::TempDir>,
}

impl ImageInput {
    /// `spec` is a path to a docker-archive / OCI layout (dir or tar), or a name or id in `store`.
    pub fn open(spec: &str, store: Option<&Store>) -> Result<ImageInput, CompareError> {
        let p = Path::new(spec);
        if p.is_dir() {
            return Self::from_layout_dir(spec, p, None);
        }
        if p.is_file() {
            let scratch = tempfile::tempdir().map_err(io_err(p))?;
            let f = File::open(p).map_err(io_err(p))?;
            let mut ar = tar::Archive::new(BufReader::new(f));
            // Archives here are our own or Docker's outputs; unpack() refuses `..` and absolute names.
            ar.unpack(scratch.path()).map_err(io_err(p))?;
            let dir = scratch.path().to_path_buf();
            return Self::from_layout_dir(spec, &dir, Some(scratch));
        }
        let store = store.ok_or_else(|| {
            CompareError::Format(format!("{spec}: no such file, and no store given"))
        })?;
        let id = store
            .resolve(spec)
            .map_err(|e| CompareError::Format(e.to_string()))?
            .ok_or_else(|| {
                CompareError::Format(format!(
                    "{spec}: not a file, directory or image in the store"
                ))
            })?;
        let img = store
            .export_image(&id, &[], crate::store::LayerForm::AsStored)
            .map_err(|e| CompareError::Format(e.to_string()))?;
        Ok(ImageInput {
            name: spec.to_string(),
            manifest_digest: None,
            config: img.config_bytes.clone(),
            layers: img.layers.iter().map(|(_, p)| p.clone()).collect(),
            _scratch: None,
        })
    }

    fn from_layout_dir(
        name: &str,
        dir: &Path,
        scratch: Option<tempfile::TempDir>,
    ) -> Result<ImageInput, CompareError> {
        let blob = |d: &str| -> Result<PathBuf, CompareError> {
            let dg = Digest::parse(d).map_err(|e| CompareError::Format(e.to_string()))?;
            Ok(dir.join("blobs").join("sha256").join(dg.hex()))
        };
        let index_path = dir.join("index.json");
        if index_path.is_file() {
            let index: Value = read_json(&index_path)?;
            let mut desc = index["manifests"].get(0).cloned().ok_or_else(|| {
                CompareError::Format(format!("{}: no manifests", index_path.display()))
            })?;
            // Follow a nested index to its first manifest.
            loop {
                let mt = desc["mediaType"].as_str().unwrap_or("");
                let d = desc["digest"].as_str().unwrap_or("").to_string();
                let path = blob(&d)?;
                let v: Value = read_json(&path)?;
                if mt.contains("index") || mt.contains("manifest.list") {
                    desc = v["manifests"].get(0).cloned().ok_or_else(|| {
                        CompareError::Format(format!("{}: empty index", path.display()))
                    })?;
                    continue;
                }
                let config_path = blob(v["config"]["digest"].as_str().unwrap_or(""))?;
                let config = std::fs::read(&config_path).map_err(io_err(&config_path))?;
                let mut layers = Vec::new();
                for l in v["layers"].as_array().cloned().unwrap_or_default() {
                    layers.push(blob(l["digest"].as_str().unwrap_or(""))?);
                }
                return Ok(ImageInput {
                    name: name.to_string(),
                    manifest_digest: Digest::parse(&d).ok(),
                    config,
                    layers,
                    _scratch: scratch,
                });
            }
        }
        let mpath = dir.join("manifest.json");
        let m: Value = read_json(&mpath)?;
        let entry = m
            .get(0)
            .ok_or_else(|| CompareError::Format(format!("{}: empty manifest", mpath.display())))?;
        let config_path = dir.join(entry["Config"].as_str().unwrap_or(""));
        let config = std::fs::read(&config_path).map_err(io_err(&config_path))?;
        let layers = entry["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| dir.join(l.as_str().unwrap_or("")))
            .collect();
        Ok(ImageInput {
            name: name.to_string(),
            manifest_digest: None,
            config,
            layers,
            _scratch: scratch,
        })
    }
}

fn read_json(p: &Path) -> Result<Value, CompareError> {
    let bytes = std::fs::read(p).map_err(io_err(p))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CompareError::Format(format!("{}: {e}", p.display())))
}

/// What one file looks like inside a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub kind: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub content: Option<Digest>,
    pub mtime: u64,
    pub link: Option<String>,
    pub xattrs: BTreeMap<String, String>,
}

/// Reads a layer blob (any compression) into path -> entry.
pub fn read_layer(path: &Path) -> Result<(Digest, BTreeMap<String, FileEntry>), CompareError> {
    let f = File::open(path).map_err(io_err(path))?;
    let (reader, _) = crate::layer::compress::decompress(BufReader::new(f))
        .map_err(|e| CompareError::Format(format!("{}: {e}", path.display())))?;
    let mut hashing = HashingReader::new(reader);
    let mut out = BTreeMap::new();
    {
        let mut ar = tar::Archive::new(&mut hashing);
        for e in ar.entries().map_err(io_err(path))? {
            let mut e = e.map_err(io_err(path))?;
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string();
            let h = e.header().clone();
            let kind = format!("{:?}", h.entry_type());
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).to_string());
            let mut xattrs = BTreeMap::new();
            if let Some(exts) = e.pax_extensions().map_err(io_err(path))? {
                for ext in exts.flatten() {
                    let k = ext.key().unwrap_or("").to_string();
                    if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(x.to_string(), hex::encode(ext.value_bytes()));
                    }
                }
            }
            let content = if h.entry_type().is_file() {
                let mut hr = HashingReader::new(&mut e);
                std::io::copy(&mut hr, &mut std::io::sink()).map_err(io_err(path))?;
                Some(hr.finish().1)
            } else {
                None
            };
            out.insert(
                name,
                FileEntry {
                    kind,
                    mode: h.mode().unwrap_or(0),
                    uid: h.uid().unwrap_or(0),
                    gid: h.gid().unwrap_or(0),
                    size: h.size().unwrap_or(0),
                    content,
                    mtime: h.mtime().unwrap_or(0),
                    link,
                    xattrs,
                },
            );
        }
    }
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_err(path))?;
    let (_, diff_id, _) = hashing.finish();
    Ok((diff_id, out))
}

/// Compares two JSON values; pushes `path: a -> b` for every leaf that differs.
fn diff_json(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_json(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_json(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("config {path}: {a} != {b}")),
    }
}

fn diff_entry(name: &str, a: &FileEntry, b: &FileEntry, out: &mut Vec<String>) {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push(format!("type {} != {}", a.kind, b.kind));
    }
    if a.mode != b.mode {
        what.push(format!("mode {:o} != {:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        what.push(format!("owner {}:{} != {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.size != b.size {
        what.push(format!("size {} != {}", a.size, b.size));
    }
    if a.content != b.content && a.size == b.size {
        what.push("content differs".to_string());
    }
    if a.mtime != b.mtime {
        what.push(format!("mtime {} != {}", a.mtime, b.mtime));
    }
    if a.link != b.link {
        what.push(format!("link target {:?} != {:?}", a.link, b.link));
    }
    if a.xattrs != b.xattrs {
        what.push("xattrs differ".to_string());
    }
    if !what.is_empty() {
        out.push(format!("  {name}: {}", what.join(", ")));
    }
}

/// Compares two images; returns the list of differences (empty when identical).
pub fn compare(a: &ImageInput, b: &ImageInput) -> Result<Vec<String>, CompareError> {
    let mut out = Vec::new();
    if a.config != b.config {
        let ca: Value =
            serde_json::from_slice(&a.config).map_err(|e| CompareError::Format(e.to_string()))?;
        let cb: Value =
            serde_json::from_slice(&b.config).map_err(|e| CompareError::Format(e.to_string()))?;
        let before = out.len();
        diff_json("", &ca, &cb, &mut out);
        if out.len() == before {
            out.push(
                "config: same JSON content, different bytes (key order or whitespace)".to_string(),
            );
        }
    }
    if a.layers.len() != b.layers.len() {
        out.push(format!(
            "layer count: {} != {}",
            a.layers.len(),
            b.layers.len()
        ));
    }
    for (i, (la, lb)) in a.layers.iter().zip(&b.layers).enumerate() {
        let (da, fa) = read_layer(la)?;
        let (db, fb) = read_layer(lb)?;
        let same_blob = std::fs::read(la).ok() == std::fs::read(lb).ok();
        if da == db {
            if !same_blob {
                out.push(format!(
                    "layer {i}: same content (diffID {da}) but the compressed blobs differ"
                ));
            }
            continue;
        }
        out.push(format!("layer {i}: diffID {da} != {db}"));
        let names: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
        for n in names {
            match (fa.get(n), fb.get(n)) {
                (Some(x), Some(y)) => diff_entry(n, x, y, &mut out),
                (Some(_), None) => out.push(format!("  {n}: only in {}", a.name)),
                (None, Some(_)) => out.push(format!("  {n}: only in {}", b.name)),
                (None, None) => {}
            }
        }
    }
    Ok(out)
}
