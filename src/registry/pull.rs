//! `pull`: resolves a reference to a manifest for the build platform, downloads missing layer
//! blobs in parallel straight into the store's blob ingest (digest and size verified while they
//! stream, resumed with `Range` after a dropped connection), checks each layer's diffID after
//! decompression, then records layers, the image and its tags as `load` does.

use super::client::{scope, Client, Req, MAX_ATTEMPTS};
use super::{redact_url, RegistryError};
use crate::digest::{chain_ids, Digest, HashingWriter};
use crate::image::manifest::{
    oci_layer_media_type, Descriptor, Index, Manifest, MEDIA_DOCKER_FOREIGN_LAYER_GZIP,
    MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_LAYER_TAR, MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD, MEDIA_OCI_MANIFEST,
};
use crate::image::{ImageConfig, Reference};
use crate::platform::Platform;
use crate::store::load::ExtractFn;
use crate::store::{LayerRecord, Store, StoreError};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;

/// Manifest media types rbuild accepts, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// containerd's `MaxManifestSize` (SECURITY F3).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1048 * 1048;
/// Largest image config accepted.
const MAX_CONFIG_SIZE: u64 = 16 << 20;
/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Layers downloaded at once.
    pub jobs: usize,
    /// Suppress progress lines.
    pub quiet: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            jobs: 3,
            quiet: false,
        }
    }
}

/// What a pull produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub id: Digest,
    /// Digest of what the reference points at (the index, for a multi-platform image).
    pub digest: Digest,
    /// Digest of the platform's image manifest.
    pub manifest_digest: Digest,
    /// Layers that were not in the store before.
    pub new_layers: usize,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Doc {
    Index(Index),
    Manifest(Manifest),
}

/// A fetched manifest: bytes, their digest and the parsed document.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub doc: Doc,
}

fn bad(reference: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::BadManifest {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// Reads at most `max` bytes; more is an error (bounded memory, SECURITY F3/F7).
fn read_capped(r: impl Read, max: u64, url: &str) -> Result<Vec<u8>, RegistryError> {
    let mut buf = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| RegistryError::Transport {
            url: redact_url(url),
            message: e.to_string(),
        })?;
    if buf.len() as u64 > max {
        return Err(RegistryError::Transport {
            url: redact_url(url),
            message: format!("response larger than the {max}-byte limit"),
        });
    }
    Ok(buf)
}

/// Parses a manifest or index, rejecting ambiguous documents (CVE-2021-41190), a `mediaType`
/// that contradicts `Content-Type`, and schema 1 (SECURITY F2, F6).
pub fn classify(bytes: &[u8], content_type: &str, reference: &str) -> Result<Doc, RegistryError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(reference, format!("invalid JSON: {e}")))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err(bad(
            reference,
            "Docker image manifest schema 1 is not supported (deprecated since Docker 1.10)",
        ));
    }
    let has_manifests = v.get("manifests").is_some();
    let has_image = v.get("layers").is_some() || v.get("config").is_some();
    if has_manifests && has_image {
        return Err(bad(
            reference,
            "ambiguous document: it has both `manifests` and `layers`/`config`",
        ));
    }
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let declared = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    if !declared.is_empty() && !ct.is_empty() && ct != declared && ct != "application/json" {
        return Err(bad(
            reference,
            format!("mediaType {declared:?} does not match Content-Type {ct:?}"),
        ));
    }
    let kind = if declared.is_empty() { ct } else { declared };
    let is_index = match kind {
        MEDIA_OCI_INDEX | MEDIA_DOCKER_MANIFEST_LIST => true,
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => false,
        _ => has_manifests,
    };
    if is_index != has_manifests {
        return Err(bad(
            reference,
            format!(
                "a {kind} document must {}have `manifests`",
                if is_index { "" } else { "not " }
            ),
        ));
    }
    if is_index {
        Index::from_bytes(bytes)
            .map(Doc::Index)
            .map_err(|e| bad(reference, e.to_string()))
    } else {
        Manifest::from_bytes(bytes)
            .map(Doc::Manifest)
            .map_err(|e| bad(reference, e.to_string()))
    }
}

/// GETs a manifest by tag or digest; verifies it against the requested digest and against
/// `Docker-Content-Digest`.
pub fn fetch_manifest(
    client: &Client,
    repo: &str,
    tag_or_digest: &str,
    expected: Option<&Digest>,
    display: &str,
) -> Result<Fetched, RegistryError> {
    let url = client.url(&format!("{repo}/manifests/{tag_or_digest}"));
    let req =
        Req::new("GET", url.clone(), vec![scope(repo, "pull")]).header("Accept", MANIFEST_ACCEPT);
    let resp = client.send(&req)?;
    if resp.status().as_u16() == 404 {
        return Err(RegistryError::ManifestNotFound {
            reference: display.to_string(),
            url: redact_url(&url),
        });
    }
    let resp = client.expect(resp, &url, &[200])?;
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let header_digest = header("docker-content-digest");
    let bytes = read_capped(resp.into_body().into_reader(), MAX_MANIFEST_SIZE, &url)?;
    let digest = Digest::of_bytes(&bytes);
    if let Some(e) = expected {
        if *e != digest {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                digest: e.clone(),
                actual: digest,
            });
        }
    }
    if let Some(h) = header_digest {
        if let Ok(hd) = Digest::parse(h.trim()) {
            if hd != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest (Docker-Content-Digest)",
                    digest: hd,
                    actual: digest,
                });
            }
        }
    }
    let doc = classify(&bytes, &content_type, display)?;
    Ok(Fetched {
        bytes,
        digest,
        media_type: content_type,
        doc,
    })
}

fn variant_of(arch: &str, v: Option<&str>) -> String {
    match (arch, v) {
        ("arm64", None) => "v8".into(),
        ("amd64", None) => "v1".into(),
        ("arm", None) => "v7".into(),
        (_, v) => v.unwrap_or("").to_string(),
    }
}

/// How well an image for `have` runs on `want` (same os/arch assumed): `Some(0)` exact, a
/// larger rank for an older compatible variant, `None` when it cannot run. As containerd's
/// platform matcher: arm/v7 runs v6 and v5 images, amd64/v3 runs v2 and v1; never the other way.
fn variant_rank(arch: &str, want: &str, have: &str) -> Option<u32> {
    if want == have {
        return Some(0);
    }
    let num = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
    match arch {
        "arm" | "amd64" => match (num(want), num(have)) {
            (Some(w), Some(h)) if h < w => Some(w - h),
            _ => None,
        },
        _ => None,
    }
}

/// The index entry for `want`: same os and architecture, the exact variant, else the newest
/// older variant the platform can run. Attestation manifests (`unknown/unknown`) never match.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, RegistryError> {
    let want_v = variant_of(&want.architecture, want.variant.as_deref());
    index
        .manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            if p.os != want.os || p.architecture != want.architecture {
                return None;
            }
            let have = variant_of(&p.architecture, p.variant.as_deref());
            variant_rank(&want.architecture, &want_v, &have).map(|r| (r, d))
        })
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
        .ok_or_else(|| RegistryError::NoPlatform {
            reference: reference.to_string(),
            platform: want.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Resolves a reference to the platform's image manifest: (top digest, manifest digest, manifest).
pub fn resolve(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
) -> Result<(Digest, Digest, Manifest), RegistryError> {
    let display = reference.familiar();
    let repo = reference.path();
    let top_ref = match (reference.digest(), reference.tag_or_latest()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let mut fetched = fetch_manifest(client, repo, &top_ref, reference.digest(), &display)?;
    let top = fetched.digest.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        match fetched.doc {
            Doc::Manifest(m) => return Ok((top, fetched.digest, m)),
            Doc::Index(idx) => {
                let d = select_platform(&idx, platform, &display)?;
                if d.size > MAX_MANIFEST_SIZE {
                    return Err(bad(&display, format!("manifest {} is too large", d.digest)));
                }
                fetched = fetch_manifest(
                    client,
                    repo,
                    &d.digest.to_string(),
                    Some(&d.digest),
                    &display,
                )?;
            }
        }
    }
    Err(bad(
        &display,
        format!("indexes nested deeper than {MAX_INDEX_DEPTH} levels"),
    ))
}

/// GETs a small blob (the config) into memory, verifying size and digest.
pub fn fetch_blob_bytes(
    client: &Client,
    repo: &str,
    desc: &Descriptor,
    max: u64,
) -> Result<Vec<u8>, RegistryError> {
    if desc.size > max {
        return Err(RegistryError::Other(format!(
            "blob {} is {} bytes, over the {max}-byte limit",
            desc.digest, desc.size
        )));
    }
    let url = client.url(&format!("{repo}/blobs/{}", desc.digest));
    let resp = client.send_expect(
        &Req::new("GET", url.clone(), vec![scope(repo, "pull")]),
        &[200],
    )?;
    let bytes = read_capped(resp.into_body().into_reader(), desc.size, &url)?;
    let actual = Digest::of_bytes(&bytes);
    if actual != desc.digest {
        return Err(RegistryError::DigestMismatch {
            what: "blob",
            digest: desc.digest.clone(),
            actual,
        });
    }
    if bytes.len() as u64 != desc.size {
        return Err(RegistryError::SizeMismatch {
            what: "blob",
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// GETs a blob whose size is not known (at most `max` bytes), verifying its digest.
pub fn fetch_blob_unsized(
    client: &Client,
    repo: &str,
    digest: &Digest,
    max: u64,
) -> Result<Vec<u8>, RegistryError> {
    let url = client.url(&format!("{repo}/blobs/{digest}"));
    let resp = client.send_expect(
        &Req::new("GET", url.clone(), vec![scope(repo, "pull")]),
        &[200],
    )?;
    let bytes = read_capped(resp.into_body().into_reader(), max, &url)?;
    let actual = Digest::of_bytes(&bytes);
    if actual != *digest {
        return Err(RegistryError::DigestMismatch {
            what: "blob",
            digest: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Parses `Content-Range: bytes START-END/TOTAL` → START.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Downloads a blob into the store: hashed while written, resumed with `Range` after a dropped
/// connection; a wrong size or digest deletes the partial file and names the blob.
pub fn fetch_blob_to_store(
    client: &Client,
    store: &Store,
    repo: &str,
    desc: &Descriptor,
    progress: &dyn Fn(u64),
) -> Result<(), RegistryError> {
    let url = client.url(&format!("{repo}/blobs/{}", desc.digest));
    let scopes = vec![scope(repo, "pull")];
    let mut w = store.new_blob_writer()?;
    let mut failures = 0u32;
    loop {
        let offset = w.size();
        let mut req = Req::new("GET", url.clone(), scopes.clone());
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let resp = client.send(&req)?;
        let status = resp.status().as_u16();
        // `send` already retried 429/502/503/504; a 500 or 408 gets the download loop's bounded
        // retries too (containerd retries a 500 once), then surfaces as the registry's error.
        if matches!(status, 408 | 500) && failures + 1 < MAX_ATTEMPTS {
            failures += 1;
            std::thread::sleep(std::time::Duration::from_millis(200 * failures as u64));
            continue;
        }
        let resp = client.expect(resp, &url, &[200, 206])?;
        let range_start = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(content_range_start);
        let mut body = resp.into_body().into_reader();
        if offset > 0 {
            if status == 206 {
                if range_start != Some(offset) {
                    return Err(RegistryError::Transport {
                        url: redact_url(&url),
                        message: format!(
                            "asked to resume at byte {offset}, the registry answered Content-Range from {range_start:?}"
                        ),
                    });
                }
            } else {
                // The server ignored Range: skip what we already have.
                let skipped = io::copy(&mut (&mut body).take(offset), &mut io::sink()).unwrap_or(0);
                if skipped != offset {
                    failures += 1;
                    if failures >= MAX_ATTEMPTS {
                        return Err(RegistryError::Transport {
                            url: redact_url(&url),
                            message: "connection dropped while skipping to the resume offset"
                                .into(),
                        });
                    }
                    continue;
                }
            }
        }
        // Read at most one byte more than declared, to detect a longer body (SECURITY F5).
        let limit = (desc.size + 1).saturating_sub(w.size());
        let mut limited = body.take(limit);
        let mut buf = vec![0u8; 256 * 1024];
        let res: io::Result<()> = (|| loop {
            let n = limited.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            w.write_all(&buf[..n])?;
            progress(w.size());
        })();
        match res {
            Ok(()) if w.size() >= desc.size => break,
            Ok(()) | Err(_) => {
                failures += 1;
                if failures >= MAX_ATTEMPTS {
                    let message = match res {
                        Err(e) => e.to_string(),
                        Ok(()) => format!(
                            "connection closed after {} of {} bytes",
                            w.size(),
                            desc.size
                        ),
                    };
                    return Err(RegistryError::Transport {
                        url: redact_url(&url),
                        message,
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(200 * failures as u64));
            }
        }
    }
    if w.size() != desc.size {
        return Err(RegistryError::SizeMismatch {
            what: "blob",
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: w.size(),
        });
    }
    // The blob is unreferenced until its layer record exists: commit and lease it under the
    // store lock so a concurrent prune cannot collect it in between.
    let _lock = store.lock()?;
    match w.commit(Some(&desc.digest)) {
        Ok(d) => Ok(store.lease_blob(&d)?),
        Err(StoreError::DigestMismatch { expected, actual }) => {
            Err(RegistryError::DigestMismatch {
                what: "blob",
                digest: expected,
                actual,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// diffID and size of a layer blob's uncompressed tar.
pub fn diff_id_of(path: &Path) -> Result<(Digest, u64), RegistryError> {
    let f = std::fs::File::open(path).map_err(RegistryError::io(path))?;
    let (mut r, _) = crate::layer::compress::decompress(io::BufReader::new(f))
        .map_err(|e| RegistryError::Other(format!("{}: {e}", path.display())))?;
    let mut h = HashingWriter::new(io::sink());
    io::copy(&mut r, &mut h).map_err(RegistryError::io(path))?;
    let (_, d, n) = h.finish();
    Ok((d, n))
}

fn check_layer_media_type(d: &Descriptor, reference: &str) -> Result<(), RegistryError> {
    match d.media_type.as_str() {
        MEDIA_OCI_LAYER
        | MEDIA_OCI_LAYER_GZIP
        | MEDIA_OCI_LAYER_ZSTD
        | MEDIA_DOCKER_LAYER_GZIP
        | MEDIA_DOCKER_LAYER_TAR
        | MEDIA_DOCKER_FOREIGN_LAYER_GZIP
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Ok(()),
        other => Err(bad(
            reference,
            format!("layer {} has unsupported media type {other:?}", d.digest),
        )),
    }
}

/// One line per event, unless quiet.
fn say(opts: &PullOptions, msg: &str) {
    if !opts.quiet {
        eprintln!("{msg}");
    }
}

/// Downloads the layers at `missing` (indexes into `layers`) with `jobs` threads; returns each
/// one's (diffID, uncompressed size) in the same order.
pub fn download_layers(
    client: &Client,
    store: &Store,
    repo: &str,
    layers: &[Descriptor],
    missing: &[usize],
    opts: &PullOptions,
) -> Result<Vec<(Digest, u64)>, RegistryError> {
    let queue = Mutex::new(missing.iter().copied().collect::<VecDeque<usize>>());
    type Slot = Option<Result<(Digest, u64), RegistryError>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..missing.len()).map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let multi = indicatif::MultiProgress::new();
    if opts.quiet {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style =
        indicatif::ProgressStyle::with_template("{prefix}: {msg} {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(missing.len().max(1)) {
            s.spawn(|| loop {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(i) = next else { return };
                let d = &layers[i];
                let bar = multi.add(indicatif::ProgressBar::new(d.size));
                bar.set_style(style.clone());
                bar.set_prefix(d.digest.short().to_string());
                let r = (|| {
                    if !store.has_blob(&d.digest) {
                        bar.set_message("Downloading");
                        fetch_blob_to_store(client, store, repo, d, &|n| bar.set_position(n))?;
                    }
                    bar.set_message("Verifying");
                    diff_id_of(&store.blob_path(&d.digest))
                })();
                bar.finish_and_clear();
                match &r {
                    Ok(_) => say(opts, &format!("{}: Download complete", d.digest.short())),
                    Err(_) => failed.store(true, std::sync::atomic::Ordering::Relaxed),
                }
                let pos = missing.iter().position(|m| *m == i).unwrap_or(0);
                if let Ok(mut res) = results.lock() {
                    res[pos] = Some(r);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| RegistryError::Other("download thread panicked".into()))?;
    let mut out = Vec::new();
    let mut first_err = None;
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None if out.len() == missing.len() => Ok(out),
        None => Err(RegistryError::Other(
            "a layer download was cancelled".into(),
        )),
    }
}

/// Records downloaded layers bottom-up: `extract` makes each snapshot, then the layer record and
/// the distribution metadata are written. `layers[i]` has diffID `diff_ids[i]`.
pub fn record_layers(
    store: &Store,
    layers: &[Descriptor],
    diff_ids: &[Digest],
    missing: &[usize],
    hashed: &[(Digest, u64)],
    source_repository: &str,
    extract: &mut ExtractFn<'_>,
) -> Result<(), RegistryError> {
    let chains = chain_ids(diff_ids);
    for (&i, (diff_id, size)) in missing.iter().zip(hashed) {
        let d = &layers[i];
        if *diff_id != diff_ids[i] {
            // Content-addressed and verified, but not the layer the config names: drop it.
            let _ = store.remove_blob(&d.digest);
            return Err(RegistryError::DiffIdMismatch {
                digest: d.digest.clone(),
                expected: diff_ids[i].clone(),
                actual: diff_id.clone(),
            });
        }
        if store.get_layer(&chains[i])?.is_some() {
            continue;
        }
        let mut rec = LayerRecord {
            chain_id: chains[i].clone(),
            diff_id: diff_id.clone(),
            parent: if i == 0 {
                None
            } else {
                Some(chains[i - 1].clone())
            },
            size: *size,
            cache_id: String::new(),
            blob: d.digest.clone(),
            blob_size: d.size,
            media_type: oci_layer_media_type(&d.media_type),
        };
        rec.cache_id = extract(&rec, &store.blob_path(&d.digest))
            .map_err(|e| RegistryError::Other(format!("unpacking layer {}: {e}", d.digest)))?;
        {
            let _lock = store.lock()?;
            store.put_layer(&rec)?;
            store.lease_layer(&rec.chain_id)?;
        }
        if !source_repository.is_empty() {
            store.add_v2_metadata(diff_id, &d.digest, source_repository)?;
        }
    }
    Ok(())
}

/// Pulls `reference` into the store; `extract` turns a layer blob into a snapshot.
pub fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    extract: &mut ExtractFn<'_>,
) -> Result<Pulled, RegistryError> {
    let display = reference.familiar();
    say(
        opts,
        &format!(
            "{}: Pulling from {}",
            reference.tag_or_latest().unwrap_or("digest"),
            reference.familiar_name()
        ),
    );
    let (top, manifest_digest, manifest) = resolve(client, reference, &opts.platform)?;
    let config_bytes =
        fetch_blob_bytes(client, reference.path(), &manifest.config, MAX_CONFIG_SIZE)?;
    let config = ImageConfig::from_bytes(&config_bytes)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(bad(
            &display,
            format!(
                "the config lists {} diff_ids but the manifest has {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    for l in &manifest.layers {
        check_layer_media_type(l, &display)?;
    }
    let chains = chain_ids(diff_ids);
    let mut missing = Vec::new();
    for (i, c) in chains.iter().enumerate() {
        // Checked and leased under the lock: a prune must not take a layer we decided to reuse.
        let present = {
            let _lock = store.lock()?;
            let present = store.get_layer(c)?.is_some();
            if present {
                store.lease_layer(c)?;
            }
            present
        };
        if !present {
            missing.push(i);
        } else {
            say(
                opts,
                &format!("{}: Already exists", manifest.layers[i].digest.short()),
            );
        }
    }
    let hashed = download_layers(
        client,
        store,
        reference.path(),
        &manifest.layers,
        &missing,
        opts,
    )?;
    let source = reference.name();
    record_layers(
        store,
        &manifest.layers,
        diff_ids,
        &missing,
        &hashed,
        &source,
        extract,
    )?;
    let id = {
        let _lock = store.lock()?;
        store.put_image(&config_bytes, None)?
    };
    if reference.digest().is_none() {
        store.tag(reference, &id)?;
    }
    let digested = Reference::parse(&format!("{}@{top}", reference.name()))?;
    store.tag(&digested, &id)?;
    say(opts, &format!("Digest: {top}"));
    say(opts, &format!("Status: Downloaded image for {display}"));
    Ok(Pulled {
        id,
        digest: top,
        manifest_digest,
        new_layers: missing.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f02_rejects_ambiguous_and_mismatched_documents() {
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}}"#;
        assert!(classify(both, MEDIA_OCI_INDEX, "x").is_err());
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(
            classify(idx, MEDIA_OCI_INDEX, "x"),
            Ok(Doc::Index(_))
        ));
        assert!(classify(idx, MEDIA_OCI_MANIFEST, "x").is_err());
        let no_type = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(classify(no_type, MEDIA_OCI_MANIFEST, "x").is_err());
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        let e = classify(
            v1,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("schema 1"), "{e}");
    }

    #[test]
    fn platform_selection() {
        let idx: Index = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{a}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v6"}}}},
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{b}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{c}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{d}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}}
            ]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64),
            d = "d".repeat(64)
        ))
        .unwrap();
        let pick = |p: &str| {
            select_platform(&idx, &Platform::parse(p).unwrap(), "x")
                .map(|d| d.digest.hex()[..1].to_string())
        };
        assert_eq!(pick("linux/arm/v7").unwrap(), "b");
        assert_eq!(pick("linux/arm/v6").unwrap(), "a");
        assert_eq!(pick("linux/arm64").unwrap(), "c");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "c");
        let e = pick("linux/amd64").unwrap_err().to_string();
        assert!(e.contains("no manifest for platform linux/amd64"), "{e}");
        assert!(e.contains("linux/arm64/v8"), "{e}");
        // The attestation entry is not offered as a platform.
        assert!(!e.contains("unknown"), "{e}");
    }

    /// R15: variants. Only v6 available: a v7 host takes it; only v7: a v6 host cannot.
    #[test]
    fn r15_variant_compatibility() {
        let entry = |h: char, arch: &str, variant: Option<&str>| {
            let v = variant
                .map(|v| format!(r#","variant":"{v}""#))
                .unwrap_or_default();
            format!(
                r#"{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{}","size":1,"platform":{{"architecture":"{arch}","os":"linux"{v}}}}}"#,
                h.to_string().repeat(64)
            )
        };
        let idx = |entries: &[String]| -> Index {
            serde_json::from_str(&format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                entries.join(",")
            ))
            .unwrap()
        };
        let pick = |i: &Index, p: &str| {
            select_platform(i, &Platform::parse(p).unwrap(), "x")
                .map(|d| d.digest.hex()[..1].to_string())
        };
        let v6_only = idx(&[entry('a', "arm", Some("v6"))]);
        assert_eq!(pick(&v6_only, "linux/arm/v7").unwrap(), "a");
        assert_eq!(pick(&v6_only, "linux/arm").unwrap(), "a");
        let v7_only = idx(&[entry('b', "arm", Some("v7"))]);
        let e = pick(&v7_only, "linux/arm/v6").unwrap_err().to_string();
        assert!(
            e.contains("linux/arm/v6") && e.contains("linux/arm/v7"),
            "{e}"
        );
        // v5, v6 and v7: a v7 host takes v7, a v6 host v6 (not v5).
        let all = idx(&[
            entry('c', "arm", Some("v5")),
            entry('a', "arm", Some("v6")),
            entry('b', "arm", Some("v7")),
        ]);
        assert_eq!(pick(&all, "linux/arm/v7").unwrap(), "b");
        assert_eq!(pick(&all, "linux/arm/v6").unwrap(), "a");
        // arm64 without a variant is arm64/v8, both ways.
        let plain = idx(&[entry('d', "arm64", None)]);
        assert_eq!(pick(&plain, "linux/arm64/v8").unwrap(), "d");
        // amd64/v3 images do not run on a plain amd64 (v1) host; v1 runs everywhere.
        let v3 = idx(&[entry('e', "amd64", Some("v3"))]);
        assert!(pick(&v3, "linux/amd64").is_err());
        let both = idx(&[entry('f', "amd64", None), entry('e', "amd64", Some("v3"))]);
        assert_eq!(pick(&both, "linux/amd64").unwrap(), "f");
        assert_eq!(pick(&both, "linux/amd64/v3").unwrap(), "e");
    }
}
