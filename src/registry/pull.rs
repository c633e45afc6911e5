//! `pull`: resolves a reference to a manifest for the build platform, downloads missing layer
//! blobs in parallel straight into the store's blob ingest (digest and size verified while they
//! stream, resumed with `Range` after a dropped connection), checks each layer's diffID after
//! decompression, then records layers, the image and its tags as `load` does.

use super::client::{scope, Client, Req, MAX_ATTEMPTS};
use super::resolve::{
    check_config_media_type, check_layer_media_type, foreign_layer_error, read_capped,
};
use super::{redact_url, RegistryError};
use crate::digest::{chain_ids, Digest, HashingWriter};
use crate::image::manifest::{oci_layer_media_type, Descriptor};
use crate::image::{ImageConfig, Reference};
use crate::platform::Platform;
use crate::store::load::ExtractFn;
use crate::store::{LayerRecord, Store, StoreError};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;

pub use super::resolve::{
    classify, fetch_manifest, resolve, select_platform, Doc, Fetched, MANIFEST_ACCEPT,
    MAX_MANIFEST_SIZE,
};

/// Largest image config accepted.
const MAX_CONFIG_SIZE: u64 = 16 << 20;

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
    /// The inline build cache the manifest names (`--cache-to type=inline`), if any.
    pub inline_cache: Option<Digest>,
}

fn bad(reference: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::BadManifest {
        reference: reference.to_string(),
        reason: reason.into(),
    }
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
    // One deadline for the blob, resumes included (a dripping server cannot restart it).
    let deadline = client.transfer_deadline();
    loop {
        let offset = w.size();
        let mut req = Req::new("GET", url.clone(), scopes.clone()).deadline(deadline);
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
                client.time_left(deadline, &url)?;
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
                        fetch_blob_to_store(client, store, repo, d, &|n| bar.set_position(n))
                            .map_err(|e| foreign_layer_error(d, e))?;
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
    check_config_media_type(&manifest.config, &display)?;
    for l in &manifest.layers {
        check_layer_media_type(l, &display)?;
    }
    let config_bytes =
        fetch_blob_bytes(client, reference.path(), &manifest.config, MAX_CONFIG_SIZE)?;
    let config = ImageConfig::from_bytes(&config_bytes)
        .map_err(|e| bad(&display, format!("config {}: {e}", manifest.config.digest)))?;
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
        inline_cache: manifest
            .annotations
            .get(super::cache_format::ANNOTATION_INLINE_CACHE)
            .and_then(|d| Digest::parse(d).ok()),
    })
}
