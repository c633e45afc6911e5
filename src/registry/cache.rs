//! The build cache as a registry artifact (`--cache-to` / `--cache-from`), format in
//! `docs/registry-cache.md`: an OCI image manifest whose config blob lists cache records (key,
//! parent key, inputs, resulting image config, layer chain) and whose layers are the stored
//! layer blobs, as they are. The same manifest and blobs make an OCI layout for `type=local`.

pub use super::cache_format::{ANNOTATION_INLINE_CACHE, MEDIA_CACHE_CONFIG};
use super::client::Client;
use super::pull::{diff_id_of, fetch_blob_bytes, fetch_blob_to_store, fetch_manifest, Doc};
use super::push::{
    mount_sources, push_blob, push_blobs, push_manifest, BlobJob, BlobSource, PushOptions,
};
use super::RegistryError;
use crate::digest::{chain_id, Digest};
use crate::image::manifest::{Descriptor, Manifest, MEDIA_OCI_MANIFEST};
use crate::image::{ImageConfig, Reference};
use crate::store::load::ExtractFn;
use crate::store::{CacheRecord, LayerForm, LayerRecord, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest cache config accepted on import.
const MAX_CACHE_CONFIG: u64 = 64 << 20;

/// Which records a `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Only steps whose result is part of the final image.
    Min,
    /// Every step of every stage.
    Max,
}

/// A `--cache-to` / `--cache-from` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    Registry {
        reference: String,
        mode: CacheMode,
    },
    Local {
        dir: PathBuf,
        mode: CacheMode,
    },
    /// Records in the pushed image itself: its manifest's [`ANNOTATION_INLINE_CACHE`] names a
    /// cache config blob; the layers are the image's own (mode=min only, as BuildKit).
    Inline,
}

impl CacheSpec {
    /// Parses `type=registry,ref=R[,mode=min|max]`, `type=local,dest=DIR|src=DIR` or
    /// `type=inline`; a bare
    /// value is a registry ref (as `--cache-from R` in docker).
    pub fn parse(s: &str) -> Result<CacheSpec, String> {
        if !s.contains('=') {
            return Ok(CacheSpec::Registry {
                reference: s.to_string(),
                mode: CacheMode::Min,
            });
        }
        let mut kind = None;
        let mut reference = None;
        let mut dir = None;
        let mut mode = CacheMode::Min;
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid cache option {part:?} in {s:?}"))?;
            match k {
                "type" => kind = Some(v.to_string()),
                "ref" => reference = Some(v.to_string()),
                "dest" | "src" => dir = Some(PathBuf::from(v)),
                "mode" => {
                    mode = match v {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => return Err(format!("invalid mode={v:?} in {s:?} (min or max)")),
                    }
                }
                // Accepted for buildx compatibility; rbuild always writes OCI media types.
                "oci-mediatypes" | "image-manifest" | "ignore-error" | "compression" => {}
                other => return Err(format!("unknown cache option {other:?} in {s:?}")),
            }
        }
        match kind.as_deref() {
            Some("registry") => Ok(CacheSpec::Registry {
                reference: reference.ok_or_else(|| format!("{s:?} needs ref="))?,
                mode,
            }),
            Some("local") => Ok(CacheSpec::Local {
                dir: dir.ok_or_else(|| format!("{s:?} needs dest= or src="))?,
                mode,
            }),
            Some("inline") => Ok(CacheSpec::Inline),
            Some(other) => Err(format!(
                "unsupported cache type {other:?} (registry, local)"
            )),
            None => Err(format!("{s:?} needs type=")),
        }
    }

    pub fn mode(&self) -> CacheMode {
        match self {
            CacheSpec::Registry { mode, .. } | CacheSpec::Local { mode, .. } => *mode,
            CacheSpec::Inline => CacheMode::Min,
        }
    }
}

/// One layer blob of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLayer {
    pub digest: Digest,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    pub size: u64,
    #[serde(rename = "uncompressedSize")]
    pub uncompressed_size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// One cache record of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: Digest,
    pub parent: Option<Digest>,
    pub inputs: BTreeMap<String, String>,
    /// Image config after the step, as JSON text (kept byte for byte).
    pub config: String,
    /// Indexes into `layers`: the layer chain after the step, bottom first.
    pub layers: Vec<usize>,
}

/// The config blob of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    pub layers: Vec<CacheLayer>,
    pub records: Vec<CacheEntry>,
}

/// Gathers the records under `keys` and their layers (with blob paths) from the store.
pub fn collect(
    store: &Store,
    keys: &[Digest],
    form: LayerForm,
) -> Result<(CacheConfig, Vec<PathBuf>), RegistryError> {
    let mut layers: Vec<CacheLayer> = Vec::new();
    let mut paths = Vec::new();
    let mut index: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let Some(rec) = store.cache_get(key)? else {
            continue;
        };
        let chain = match &rec.chain_id {
            Some(c) => store.layer_chain(c)?,
            None => Vec::new(),
        };
        let mut idx = Vec::new();
        let mut complete = true;
        for l in &chain {
            if !store.has_blob(&l.blob) {
                complete = false;
                break;
            }
            let b = store.shipped_blob(l, form)?;
            let i = match index.get(&b.digest) {
                Some(i) => *i,
                None => {
                    index.insert(b.digest.clone(), layers.len());
                    layers.push(CacheLayer {
                        digest: b.digest,
                        diff_id: l.diff_id.clone(),
                        size: b.size,
                        uncompressed_size: l.size,
                        media_type: b.media_type,
                    });
                    paths.push(b.path);
                    layers.len() - 1
                }
            };
            idx.push(i);
        }
        if !complete {
            continue;
        }
        records.push(CacheEntry {
            key: key.clone(),
            parent: rec.parent.clone(),
            inputs: rec.inputs.clone(),
            config: String::from_utf8_lossy(&rec.config).into_owned(),
            layers: idx,
        });
    }
    Ok((
        CacheConfig {
            schema_version: 1,
            layers,
            records,
        },
        paths,
    ))
}

/// The manifest bytes for a cache config.
fn manifest_for(config_bytes: &[u8], cfg: &CacheConfig) -> Result<Vec<u8>, RegistryError> {
    let m = Manifest {
        schema_version: 2,
        media_type: MEDIA_OCI_MANIFEST.to_string(),
        config: Descriptor::of_bytes(MEDIA_CACHE_CONFIG, config_bytes),
        layers: cfg
            .layers
            .iter()
            .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
            .collect(),
        annotations: BTreeMap::new(),
    };
    serde_json::to_vec(&m).map_err(|e| RegistryError::Other(e.to_string()))
}

pub fn config_bytes(cfg: &CacheConfig) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(cfg).map_err(|e| RegistryError::Other(e.to_string()))
}

/// Pushes the records under `keys` to `reference`; returns the number of records exported.
pub fn export_registry(
    client: &Client,
    store: &Store,
    reference: &Reference,
    keys: &[Digest],
    form: LayerForm,
) -> Result<usize, RegistryError> {
    let (cfg, paths) = collect(store, keys, form)?;
    let repo = reference.path();
    let opts = PushOptions {
        quiet: true,
        ..Default::default()
    };
    let jobs: Vec<BlobJob<'_>> = cfg
        .layers
        .iter()
        .zip(&paths)
        .map(|(l, p)| BlobJob {
            digest: &l.digest,
            size: l.size,
            path: p,
            mount_from: mount_sources(store, client, &l.diff_id, &l.digest),
        })
        .collect();
    push_blobs(client, repo, &jobs, &opts)?;
    let cb = config_bytes(&cfg)?;
    let cd = Digest::of_bytes(&cb);
    push_blob(
        client,
        repo,
        &cd,
        cb.len() as u64,
        BlobSource::Bytes(&cb),
        &[],
        &opts,
    )?;
    let mb = manifest_for(&cb, &cfg)?;
    let tag = reference.tag_or_latest().unwrap_or("latest");
    push_manifest(client, repo, tag, &mb, MEDIA_OCI_MANIFEST)?;
    Ok(cfg.records.len())
}

/// Writes the records under `keys` as an OCI layout in `dir` (replacing an earlier export).
pub fn export_local(
    store: &Store,
    dir: &Path,
    keys: &[Digest],
    form: LayerForm,
) -> Result<usize, RegistryError> {
    let (cfg, paths) = collect(store, keys, form)?;
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(RegistryError::io(&blobs))?;
    let put = |d: &Digest, write: &dyn Fn(&Path) -> std::io::Result<()>| {
        let target = blobs.join(d.hex());
        if target.is_file() {
            return Ok(());
        }
        let tmp = blobs.join(format!(".{}.partial-{}", d.hex(), std::process::id()));
        write(&tmp)
            .and_then(|_| std::fs::rename(&tmp, &target))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                RegistryError::io(&target)(e)
            })
    };
    for (l, p) in cfg.layers.iter().zip(&paths) {
        put(&l.digest, &|t| std::fs::copy(p, t).map(|_| ()))?;
    }
    let cb = config_bytes(&cfg)?;
    put(&Digest::of_bytes(&cb), &|t| std::fs::write(t, &cb))?;
    let mb = manifest_for(&cb, &cfg)?;
    let md = Digest::of_bytes(&mb);
    put(&md, &|t| std::fs::write(t, &mb))?;
    let index = crate::image::manifest::build_index(&[Descriptor::new(
        MEDIA_OCI_MANIFEST,
        md,
        mb.len() as u64,
    )])?;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(RegistryError::io(&p))
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write("index.json", &index)?;
    Ok(cfg.records.len())
}

/// Parses and checks a cache config: every record's layers exist and are the diffIDs its
/// image config names, so a record cannot pair a config with other layers.
fn parse_config(bytes: &[u8], what: &str) -> Result<CacheConfig, RegistryError> {
    let bad = |reason: String| RegistryError::BadManifest {
        reference: what.to_string(),
        reason,
    };
    let cfg: CacheConfig =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid cache config: {e}")))?;
    for r in &cfg.records {
        let img = ImageConfig::from_bytes(r.config.as_bytes())
            .map_err(|e| bad(format!("record {}: {e}", r.key)))?;
        let mut diffs = Vec::new();
        for &i in &r.layers {
            let l = cfg.layers.get(i).ok_or_else(|| {
                bad(format!(
                    "record {} names layer {i}, which is not listed",
                    r.key
                ))
            })?;
            diffs.push(l.diff_id.clone());
        }
        if diffs != img.rootfs.diff_ids {
            return Err(bad(format!(
                "record {}: its layers do not match its config's rootfs.diff_ids",
                r.key
            )));
        }
    }
    Ok(cfg)
}

/// Imports records and their layers; `fetch` puts a layer blob into the store.
fn import(
    store: &Store,
    cfg: &CacheConfig,
    fetch: &mut dyn FnMut(&CacheLayer) -> Result<(), RegistryError>,
    extract: &mut ExtractFn<'_>,
) -> Result<usize, RegistryError> {
    let mut imported = 0;
    for r in &cfg.records {
        if store.cache_get(&r.key)?.is_some() {
            continue;
        }
        let mut parent: Option<Digest> = None;
        for &i in &r.layers {
            let l = &cfg.layers[i];
            let chain = chain_id(parent.as_ref(), &l.diff_id);
            if store.get_layer(&chain)?.is_none() {
                if !store.has_blob(&l.digest) {
                    fetch(l)?;
                }
                let (diff_id, size) = diff_id_of(&store.blob_path(&l.digest))?;
                if diff_id != l.diff_id {
                    let _ = store.remove_blob(&l.digest);
                    return Err(RegistryError::DiffIdMismatch {
                        digest: l.digest.clone(),
                        expected: l.diff_id.clone(),
                        actual: diff_id,
                    });
                }
                let mut rec = LayerRecord {
                    chain_id: chain.clone(),
                    diff_id,
                    parent: parent.clone(),
                    size,
                    cache_id: String::new(),
                    blob: l.digest.clone(),
                    blob_size: l.size,
                    media_type: l.media_type.clone(),
                };
                rec.cache_id = extract(&rec, &store.blob_path(&l.digest)).map_err(|e| {
                    RegistryError::Other(format!("unpacking cached layer {}: {e}", l.digest))
                })?;
                let _lock = store.lock()?;
                store.put_layer(&rec)?;
                store.lease_layer(&rec.chain_id)?;
            }
            parent = Some(chain);
        }
        store.cache_put(
            &r.key,
            &CacheRecord {
                config: r.config.clone().into_bytes(),
                chain_id: parent,
                inputs: r.inputs.clone(),
                parent: r.parent.clone(),
            },
        )?;
        imported += 1;
    }
    Ok(imported)
}

/// Imports the cache at `reference`; a missing ref imports nothing (first build).
pub fn import_registry(
    client: &Client,
    store: &Store,
    reference: &Reference,
    extract: &mut ExtractFn<'_>,
) -> Result<usize, RegistryError> {
    let repo = reference.path();
    let tag = reference.tag_or_latest().unwrap_or("latest").to_string();
    let fetched = match fetch_manifest(client, repo, &tag, None, &reference.familiar()) {
        Ok(f) => f,
        Err(RegistryError::ManifestNotFound { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    let m = match fetched.doc {
        Doc::Manifest(m) => m,
        // An image index: its platform's image may carry inline cache.
        Doc::Index(_) => {
            super::pull::resolve(client, reference, &crate::platform::Platform::host())?.2
        }
    };
    let config_desc = if m.config.media_type == MEDIA_CACHE_CONFIG {
        m.config.clone()
    } else if let Some(d) = m.annotations.get(ANNOTATION_INLINE_CACHE) {
        let digest = Digest::parse(d).map_err(|e| RegistryError::BadManifest {
            reference: reference.familiar(),
            reason: format!("{ANNOTATION_INLINE_CACHE}: {e}"),
        })?;
        // The size is not in the annotation: bounded by the limit, verified by digest.
        Descriptor::new(MEDIA_CACHE_CONFIG, digest, MAX_CACHE_CONFIG)
    } else {
        return Err(RegistryError::BadManifest {
            reference: reference.familiar(),
            reason: format!(
                "not an rbuild cache (config media type {:?}, no {ANNOTATION_INLINE_CACHE} annotation)",
                m.config.media_type
            ),
        });
    };
    let bytes = if m.config.media_type == MEDIA_CACHE_CONFIG {
        fetch_blob_bytes(client, repo, &config_desc, MAX_CACHE_CONFIG)?
    } else {
        super::pull::fetch_blob_unsized(client, repo, &config_desc.digest, MAX_CACHE_CONFIG)?
    };
    let cfg = parse_config(&bytes, &reference.familiar())?;
    let mut fetch = |l: &CacheLayer| {
        let d = Descriptor::new(&l.media_type, l.digest.clone(), l.size);
        fetch_blob_to_store(client, store, repo, &d, &|_| {})
    };
    import(store, &cfg, &mut fetch, extract)
}

/// Imports the inline cache config `digest` of a pulled image (its layers are the image's own,
/// already in the store), so `--cache-from` finds its records in the store later.
pub fn import_inline(
    client: &Client,
    store: &Store,
    reference: &Reference,
    digest: &Digest,
    extract: &mut ExtractFn<'_>,
) -> Result<usize, RegistryError> {
    let repo = reference.path();
    let bytes = super::pull::fetch_blob_unsized(client, repo, digest, MAX_CACHE_CONFIG)?;
    let cfg = parse_config(&bytes, &reference.familiar())?;
    let mut fetch = |l: &CacheLayer| {
        let d = Descriptor::new(&l.media_type, l.digest.clone(), l.size);
        fetch_blob_to_store(client, store, repo, &d, &|_| {})
    };
    import(store, &cfg, &mut fetch, extract)
}

/// Imports the cache exported to `dir` by `type=local`.
pub fn import_local(
    store: &Store,
    dir: &Path,
    extract: &mut ExtractFn<'_>,
) -> Result<usize, RegistryError> {
    let blob = |d: &Digest| dir.join("blobs").join("sha256").join(d.hex());
    let read = |p: &Path, max: u64| -> Result<Vec<u8>, RegistryError> {
        let len = std::fs::metadata(p).map_err(RegistryError::io(p))?.len();
        if len > max {
            return Err(RegistryError::Other(format!(
                "{} is too large",
                p.display()
            )));
        }
        std::fs::read(p).map_err(RegistryError::io(p))
    };
    let index_path = dir.join("index.json");
    if !index_path.is_file() {
        return Ok(0);
    }
    let index = crate::image::manifest::Index::from_bytes(&read(&index_path, 1 << 20)?)?;
    let what = dir.display().to_string();
    let Some(md) = index.manifests.first() else {
        return Ok(0);
    };
    let verified = |d: &Digest, max: u64| -> Result<Vec<u8>, RegistryError> {
        let b = read(&blob(d), max)?;
        let actual = Digest::of_bytes(&b);
        if actual != *d {
            return Err(RegistryError::DigestMismatch {
                what: "blob",
                digest: d.clone(),
                actual,
            });
        }
        Ok(b)
    };
    let m = Manifest::from_bytes(&verified(&md.digest, 4 << 20)?)?;
    let cfg = parse_config(&verified(&m.config.digest, MAX_CACHE_CONFIG)?, &what)?;
    let mut fetch = |l: &CacheLayer| {
        store
            .put_blob_file(&blob(&l.digest), Some(&l.digest))
            .map(|_| ())
            .map_err(|e| match e {
                crate::store::StoreError::DigestMismatch { expected, actual } => {
                    RegistryError::DigestMismatch {
                        what: "blob",
                        digest: expected,
                        actual,
                    }
                }
                e => e.into(),
            })
    };
    import(store, &cfg, &mut fetch, extract)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            CacheSpec::parse("type=registry,ref=h:5000/c:1,mode=max").unwrap(),
            CacheSpec::Registry {
                reference: "h:5000/c:1".into(),
                mode: CacheMode::Max
            }
        );
        assert_eq!(
            CacheSpec::parse("type=local,src=/x").unwrap(),
            CacheSpec::Local {
                dir: "/x".into(),
                mode: CacheMode::Min
            }
        );
        assert!(CacheSpec::parse("type=registry").is_err());
        assert!(CacheSpec::parse("type=gha").is_err());
        assert!(CacheSpec::parse("type=registry,ref=x,mode=all").is_err());
    }

    #[test]
    fn f08_rejects_records_whose_layers_differ_from_their_config() {
        let d = Digest::of_bytes(b"layer");
        let other = Digest::of_bytes(b"other");
        let cfg = CacheConfig {
            schema_version: 1,
            layers: vec![CacheLayer {
                digest: d.clone(),
                diff_id: d.clone(),
                size: 1,
                uncompressed_size: 1,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }],
            records: vec![CacheEntry {
                key: d.clone(),
                parent: None,
                inputs: BTreeMap::new(),
                config: format!(
                    r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{other}"]}}}}"#
                ),
                layers: vec![0],
            }],
        };
        let bytes = serde_json::to_vec(&cfg).unwrap();
        let e = parse_config(&bytes, "c").unwrap_err().to_string();
        assert!(e.contains("do not match"), "{e}");
    }
}
