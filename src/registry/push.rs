//! `push`: uploads an image's stored blobs as they are (never recompressed): blobs the registry
//! has are skipped (HEAD), blobs known to be in another repository of the same registry are
//! cross-repo mounted, the rest are uploaded monolithically or in chunks; the manifest goes last.

use super::client::{
    error_detail, resolve_location, scope, with_query, Client, Payload, Req, MAX_ATTEMPTS,
};
use super::{redact_url, RegistryError};
use crate::digest::Digest;
use crate::image::manifest::{self, ManifestKind, MEDIA_OCI_MANIFEST};
use crate::image::Reference;
use crate::layer::{Compression, Profile};
use crate::store::{LayerForm, Store};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// `--cache-to type=inline`: a cache config blob pushed with the image and named by the
    /// manifest's `io.rbuild.cache.config` annotation.
    pub inline_cache: Option<Vec<u8>>,
    /// Blobs larger than this go up in chunks of this size (PATCH); smaller ones in one PUT.
    pub chunk_size: u64,
    /// Blobs uploaded at once.
    pub jobs: usize,
    pub quiet: bool,
    /// How layers stored as tars (built ones) ship; compressed (pulled) layers ship as they are.
    pub form: LayerForm,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            inline_cache: None,
            chunk_size: 32 << 20,
            jobs: 3,
            quiet: false,
            // What `docker push` sends: gzip.
            form: LayerForm::Compress(Compression::default(), Profile::LATEST),
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Exists,
    Mounted,
    Uploaded,
}

/// Where a blob's bytes are.
#[derive(Clone, Copy)]
pub enum BlobSource<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

fn location(resp: &super::client::Response, base: &str) -> Result<String, RegistryError> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|l| resolve_location(base, l))
        .ok_or_else(|| RegistryError::Transport {
            url: redact_url(base),
            message: "upload response has no Location header".into(),
        })
}

/// Pushes one blob unless the registry has it; `mount_from` names repositories (same registry)
/// that hold it.
pub fn push_blob(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    src: BlobSource<'_>,
    mount_from: &[String],
    opts: &PushOptions,
) -> Result<BlobOutcome, RegistryError> {
    push_blob_progress(client, repo, digest, size, src, mount_from, opts, &|_| {})
}

/// `push_blob`, reporting the bytes the registry has acknowledged so far.
#[allow(clippy::too_many_arguments)]
pub fn push_blob_progress(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    src: BlobSource<'_>,
    mount_from: &[String],
    opts: &PushOptions,
    progress: &dyn Fn(u64),
) -> Result<BlobOutcome, RegistryError> {
    let blob_url = client.url(&format!("{repo}/blobs/{digest}"));
    let push_scope = scope(repo, "pull,push");
    let head = client.send(&Req::new(
        "HEAD",
        blob_url.clone(),
        vec![push_scope.clone()],
    ))?;
    match head.status().as_u16() {
        200 => return Ok(BlobOutcome::Exists),
        404 => {}
        _ => {
            client.expect(head, &blob_url, &[200, 404])?;
        }
    }
    let uploads = client.url(&format!("{repo}/blobs/uploads/"));
    let mut upload_url = None;
    for from in mount_from.iter().filter(|f| f.as_str() != repo).take(3) {
        let url = with_query(&uploads, &[("mount", &digest.to_string()), ("from", from)]);
        let scopes = vec![push_scope.clone(), scope(from, "pull")];
        let resp = client.send(&Req::new("POST", url.clone(), scopes))?;
        match resp.status().as_u16() {
            201 => return Ok(BlobOutcome::Mounted),
            // 202: the registry started a normal upload instead.
            202 => {
                upload_url = Some(location(&resp, &url)?);
                break;
            }
            _ => {}
        }
    }
    let up = Upload {
        client,
        scope: push_scope,
        uploads,
        digest,
        size,
        src,
    };
    let mut loc = match upload_url {
        Some(u) => u,
        None => up.start()?,
    };
    if size > opts.chunk_size && opts.chunk_size > 0 {
        up.chunked(loc, opts.chunk_size, progress)?;
        return Ok(BlobOutcome::Uploaded);
    }
    // Monolithic: a failed PUT leaves nothing worth resuming, so the upload starts over
    // (bounded); 4xx answers other than 408/429 are final.
    let mut failures = 0;
    loop {
        let put = with_query(&loc, &[("digest", &digest.to_string())]);
        let payload = match src {
            BlobSource::File(p) => Payload::File(p),
            BlobSource::Bytes(b) => Payload::Bytes(b),
        };
        let req = Req::new("PUT", put.clone(), vec![up.scope.clone()])
            .header("Content-Type", "application/octet-stream")
            .payload(payload);
        let err = match client.send(&req) {
            Ok(resp) if resp.status().as_u16() == 201 => break,
            Ok(resp) if retryable(resp.status().as_u16()) => client
                .expect(resp, &put, &[201])
                .err()
                .unwrap_or_else(|| RegistryError::Other("unreachable".into())),
            Ok(resp) => {
                return client
                    .expect(resp, &put, &[201])
                    .map(|_| BlobOutcome::Uploaded)
            }
            Err(e @ RegistryError::Transport { .. }) => e,
            Err(e) => return Err(e),
        };
        back_off(&mut failures, err)?;
        loc = up.start()?;
    }
    progress(size);
    Ok(BlobOutcome::Uploaded)
}

/// Statuses after which an upload is retried: the request may not have been processed.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 416 | 429 | 500 | 502 | 503 | 504)
}

/// Counts one more failed attempt: gives `err` back once `MAX_ATTEMPTS` are used up, else waits
/// a little longer each time before the caller retries.
fn back_off(failures: &mut u32, err: RegistryError) -> Result<(), RegistryError> {
    *failures += 1;
    if *failures >= MAX_ATTEMPTS {
        return Err(err);
    }
    std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(*failures)));
    Ok(())
}

/// One blob upload session and what it needs to start over.
struct Upload<'a> {
    client: &'a Client,
    scope: String,
    uploads: String,
    digest: &'a Digest,
    size: u64,
    src: BlobSource<'a>,
}

impl Upload<'_> {
    /// POSTs a new upload session; returns its URL.
    fn start(&self) -> Result<String, RegistryError> {
        let resp = self.client.send_expect(
            &Req::new("POST", self.uploads.clone(), vec![self.scope.clone()]),
            &[202],
        )?;
        location(&resp, &self.uploads)
    }

    /// Asks the registry how much of the upload at `loc` it has (GET: 204 + `Range: 0-N`).
    /// `None` when the session is gone (404 `BLOB_UPLOAD_UNKNOWN`): the upload must restart.
    fn status(&self, loc: &str) -> Result<Option<(String, u64)>, RegistryError> {
        let resp = self
            .client
            .send(&Req::new("GET", loc.to_string(), vec![self.scope.clone()]))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = self.client.expect(resp, loc, &[204])?;
        let next = match resp.headers().get("location") {
            Some(_) => location(&resp, loc)?,
            None => loc.to_string(),
        };
        let committed = resp
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(committed_from_range)
            .unwrap_or(0);
        Ok(Some((next, committed.min(self.size))))
    }

    /// PATCHes the blob in chunks from `loc`, then PUTs `?digest=`. A chunk that fails (dropped
    /// connection, 416, 5xx) is followed by a status GET and the upload continues from the
    /// offset the registry reports, or starts over if the session is gone; bounded retries.
    fn chunked(
        &self,
        mut loc: String,
        chunk_size: u64,
        progress: &dyn Fn(u64),
    ) -> Result<(), RegistryError> {
        let mut offset = 0u64;
        let mut chunk = Vec::new();
        let mut file = match self.src {
            BlobSource::File(p) => Some(std::fs::File::open(p).map_err(RegistryError::io(p))?),
            BlobSource::Bytes(_) => None,
        };
        let mut failures = 0u32;
        while offset < self.size {
            let n = chunk_size.min(self.size - offset);
            let body: &[u8] = match (&mut file, self.src) {
                (Some(f), BlobSource::File(p)) => {
                    chunk.resize(n as usize, 0);
                    f.seek(SeekFrom::Start(offset))
                        .and_then(|_| f.read_exact(&mut chunk))
                        .map_err(RegistryError::io(p))?;
                    &chunk
                }
                (_, BlobSource::Bytes(b)) => &b[offset as usize..(offset + n) as usize],
                _ => return Err(RegistryError::Other("blob source mismatch".into())),
            };
            let req = Req::new("PATCH", loc.clone(), vec![self.scope.clone()])
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{}-{}", offset, offset + n - 1))
                .payload(Payload::Bytes(body));
            let err = match self.client.send(&req) {
                Ok(resp) if resp.status().as_u16() == 202 => {
                    loc = location(&resp, &loc)?;
                    offset += n;
                    progress(offset);
                    // The bound is on failures in a row: a long upload over a flaky link that
                    // keeps progressing is not given up.
                    failures = 0;
                    continue;
                }
                Ok(resp) if retryable(resp.status().as_u16()) => {
                    match self.client.expect(resp, &loc, &[202]) {
                        Err(e) => e,
                        Ok(_) => continue,
                    }
                }
                // 404: the session was purged; anything else is final.
                Ok(resp) if resp.status().as_u16() != 404 => {
                    self.client.expect(resp, &loc, &[202])?;
                    continue;
                }
                Ok(_) => RegistryError::NotFound {
                    url: redact_url(&loc),
                },
                Err(e @ RegistryError::Transport { .. }) => e,
                Err(e) => return Err(e),
            };
            back_off(&mut failures, err)?;
            match self.status(&loc)? {
                Some((next, committed)) => {
                    loc = next;
                    offset = committed;
                }
                None => {
                    loc = self.start()?;
                    offset = 0;
                }
            }
            progress(offset);
        }
        let put = with_query(&loc, &[("digest", &self.digest.to_string())]);
        self.client
            .send_expect(&Req::new("PUT", put, vec![self.scope.clone()]), &[201])?;
        Ok(())
    }
}

/// Bytes committed from an upload status `Range: 0-N` (N inclusive). distribution answers
/// `0-0` for an empty upload too, so `0-0` counts as nothing: resending one byte is harmless,
/// skipping one is not.
fn committed_from_range(v: &str) -> u64 {
    let end = v
        .trim()
        .trim_start_matches("bytes=")
        .split_once('-')
        .and_then(|(_, e)| e.trim().parse::<u64>().ok());
    match end {
        Some(0) | None => 0,
        Some(e) => e + 1,
    }
}

/// One file blob to push, with the repositories of the same registry it can be mounted from.
pub struct BlobJob<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub path: &'a Path,
    pub mount_from: Vec<String>,
}

/// Pushes `jobs` with `opts.jobs` threads (as pull downloads): a progress bar per blob on a
/// terminal, one line per blob otherwise. Blobs listed twice go up once. Returns each job's
/// outcome in order; after a failure no new blob is started.
pub fn push_blobs(
    client: &Client,
    repo: &str,
    jobs: &[BlobJob<'_>],
    opts: &PushOptions,
) -> Result<Vec<BlobOutcome>, RegistryError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut unique: Vec<usize> = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        if !unique.iter().any(|&u| jobs[u].digest == j.digest) {
            unique.push(i);
        }
    }
    let queue = Mutex::new(unique.iter().copied().collect::<VecDeque<usize>>());
    type Slot = Option<Result<BlobOutcome, RegistryError>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let failed = AtomicBool::new(false);
    let multi = indicatif::MultiProgress::new();
    let quiet = opts.quiet;
    if quiet {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style =
        indicatif::ProgressStyle::with_template("{prefix}: {msg} {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let threads = opts.jobs.max(1).min(unique.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(i) = next else { return };
                let j = &jobs[i];
                let bar = multi.add(indicatif::ProgressBar::new(j.size));
                bar.set_style(style.clone());
                bar.set_prefix(j.digest.short().to_string());
                bar.set_message("Pushing");
                let r = push_blob_progress(
                    client,
                    repo,
                    j.digest,
                    j.size,
                    BlobSource::File(j.path),
                    &j.mount_from,
                    opts,
                    &|n| bar.set_position(n),
                );
                bar.finish_and_clear();
                match &r {
                    Ok(outcome) if !quiet => {
                        let what = match outcome {
                            BlobOutcome::Exists => "Layer already exists".to_string(),
                            BlobOutcome::Mounted => {
                                format!("Mounted from {}", j.mount_from.join(", "))
                            }
                            BlobOutcome::Uploaded => "Pushed".to_string(),
                        };
                        // Printed above the live bars on a terminal; a plain line otherwise.
                        multi.suspend(|| eprintln!("{}: {what}", j.digest.short()));
                    }
                    Ok(_) => {}
                    Err(_) => failed.store(true, Ordering::Relaxed),
                }
                if let Ok(mut res) = results.lock() {
                    res[i] = Some(r);
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| RegistryError::Other("upload thread panicked".into()))?;
    // Duplicates share the outcome of their first occurrence.
    for i in 0..jobs.len() {
        if results[i].is_none() {
            if let Some(u) = unique.iter().find(|&&u| jobs[u].digest == jobs[i].digest) {
                if let Some(Ok(o)) = &results[*u] {
                    results[i] = Some(Ok(*o));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut first_err = None;
    for r in results {
        match r {
            Some(Ok(o)) => out.push(o),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None if out.len() == jobs.len() => Ok(out),
        None => Err(RegistryError::Other("a blob upload was cancelled".into())),
    }
}

/// PUTs a manifest under a tag or digest; returns its digest (checked against the registry's).
pub fn push_manifest(
    client: &Client,
    repo: &str,
    tag_or_digest: &str,
    bytes: &[u8],
    media_type: &str,
) -> Result<Digest, RegistryError> {
    let url = client.url(&format!("{repo}/manifests/{tag_or_digest}"));
    let req = Req::new("PUT", url.clone(), vec![scope(repo, "pull,push")])
        .header("Content-Type", media_type)
        .payload(Payload::Bytes(bytes));
    let resp = client.send(&req)?;
    let status = resp.status().as_u16();
    if status != 201 {
        let detail = error_detail(resp);
        return Err(match status {
            401 | 403 => RegistryError::Unauthorized {
                url: redact_url(&url),
                status,
                tried: format!("{}{detail}", client.tried()),
            },
            _ => RegistryError::Status {
                url: redact_url(&url),
                status,
                detail,
            },
        });
    }
    let digest = Digest::of_bytes(bytes);
    if let Some(h) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if let Ok(d) = Digest::parse(h.trim()) {
            if d != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "pushed manifest",
                    digest,
                    actual: d,
                });
            }
        }
    }
    Ok(digest)
}

/// Repositories of this registry that hold `digest` (from pulls and pushes), for mounting.
pub fn mount_sources(
    store: &Store,
    client: &Client,
    diff_id: &Digest,
    digest: &Digest,
) -> Vec<String> {
    let prefix = format!("{}/", client.host.domain);
    store
        .v2_metadata(diff_id)
        .into_iter()
        .filter(|m| m.digest == *digest)
        .filter_map(|m| {
            m.source_repository
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect()
}

/// Uploads an image's layer blobs (recording where they went, for later mounts) and its config.
pub(crate) fn upload_image(
    client: &Client,
    store: &Store,
    img: &crate::export::ExportImage,
    repo: &str,
    source: &str,
    opts: &PushOptions,
) -> Result<(), RegistryError> {
    let jobs: Vec<BlobJob<'_>> = img
        .layers
        .iter()
        .map(|(layer, path)| BlobJob {
            digest: &layer.digest,
            size: layer.size,
            path,
            mount_from: mount_sources(store, client, &layer.diff_id, &layer.digest),
        })
        .collect();
    push_blobs(client, repo, &jobs, opts)?;
    for (layer, _) in &img.layers {
        store.add_v2_metadata(&layer.diff_id, &layer.digest, source)?;
    }
    let config_digest = Digest::of_bytes(&img.config_bytes);
    push_blob(
        client,
        repo,
        &config_digest,
        img.config_bytes.len() as u64,
        BlobSource::Bytes(&img.config_bytes),
        &[],
        opts,
    )?;
    Ok(())
}

/// Pushes image `id` as `target`; returns the manifest digest.
pub fn push(
    client: &Client,
    store: &Store,
    id: &Digest,
    target: &Reference,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    let repo = target.path();
    let img = store.export_image(id, &[], opts.form)?;
    if !opts.quiet {
        eprintln!("The push refers to repository [{}]", target.name());
    }
    upload_image(client, store, &img, repo, &target.name(), opts)?;
    let layers: Vec<_> = img.layers.iter().map(|(l, _)| l.clone()).collect();
    let mut built = manifest::build(ManifestKind::Oci, &img.config_bytes, &layers)?;
    if let Some(cache) = &opts.inline_cache {
        let d = Digest::of_bytes(cache);
        push_blob(
            client,
            repo,
            &d,
            cache.len() as u64,
            BlobSource::Bytes(cache),
            &[],
            opts,
        )?;
        let mut m = manifest::Manifest::from_bytes(&built.bytes)?;
        m.annotations.insert(
            super::cache_format::ANNOTATION_INLINE_CACHE.to_string(),
            d.to_string(),
        );
        built.bytes = serde_json::to_vec(&m).map_err(|e| RegistryError::Other(e.to_string()))?;
    }
    let tag = match (target.tag(), target.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    let digest = push_manifest(client, repo, &tag, &built.bytes, MEDIA_OCI_MANIFEST)?;
    let digested = Reference::parse(&format!("{}@{digest}", target.name()))?;
    store.tag(&digested, id)?;
    if !opts.quiet {
        eprintln!("{tag}: digest: {digest} size: {}", built.bytes.len());
    }
    Ok(digest)
}
