//! `push`: uploads an image's stored blobs as they are (never recompressed): blobs the registry
//! has are skipped (HEAD), blobs known to be in another repository of the same registry are
//! cross-repo mounted, the rest are uploaded monolithically or in chunks; the manifest goes last.

use super::client::{error_detail, resolve_location, scope, with_query, Client, Payload, Req};
use super::{redact_url, RegistryError};
use crate::digest::Digest;
use crate::image::manifest::{self, ManifestKind, MEDIA_OCI_MANIFEST};
use crate::image::Reference;
use crate::store::Store;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// `--cache-to type=inline`: a cache config blob pushed with the image and named by the
    /// manifest's `io.rbuild.cache.config` annotation.
    pub inline_cache: Option<Vec<u8>>,
    /// Blobs larger than this go up in chunks of this size (PATCH); smaller ones in one PUT.
    pub chunk_size: u64,
    pub quiet: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            inline_cache: None,
            chunk_size: 32 << 20,
            quiet: false,
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
    let mut loc = match upload_url {
        Some(u) => u,
        None => {
            let resp = client.send_expect(
                &Req::new("POST", uploads.clone(), vec![push_scope.clone()]),
                &[202],
            )?;
            location(&resp, &uploads)?
        }
    };
    if size > opts.chunk_size && opts.chunk_size > 0 {
        let mut offset = 0u64;
        let mut chunk = Vec::new();
        let mut file = match src {
            BlobSource::File(p) => Some(std::fs::File::open(p).map_err(RegistryError::io(p))?),
            BlobSource::Bytes(_) => None,
        };
        while offset < size {
            let n = opts.chunk_size.min(size - offset);
            let body: &[u8] = match (&mut file, src) {
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
            let req = Req::new("PATCH", loc.clone(), vec![push_scope.clone()])
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{}-{}", offset, offset + n - 1))
                .payload(Payload::Bytes(body));
            let resp = client.send_expect(&req, &[202])?;
            loc = location(&resp, &loc)?;
            offset += n;
        }
        let put = with_query(&loc, &[("digest", &digest.to_string())]);
        client.send_expect(&Req::new("PUT", put, vec![push_scope]), &[201])?;
    } else {
        let put = with_query(&loc, &[("digest", &digest.to_string())]);
        let payload = match src {
            BlobSource::File(p) => Payload::File(p),
            BlobSource::Bytes(b) => Payload::Bytes(b),
        };
        let req = Req::new("PUT", put, vec![push_scope])
            .header("Content-Type", "application/octet-stream")
            .payload(payload);
        client.send_expect(&req, &[201])?;
    }
    Ok(BlobOutcome::Uploaded)
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

/// Pushes image `id` as `target`; returns the manifest digest.
pub fn push(
    client: &Client,
    store: &Store,
    id: &Digest,
    target: &Reference,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    let repo = target.path();
    let img = store.export_image(id, &[])?;
    if !opts.quiet {
        eprintln!("The push refers to repository [{}]", target.name());
    }
    let source = target.name();
    for (layer, path) in &img.layers {
        let from = mount_sources(store, client, &layer.diff_id, &layer.digest);
        let outcome = push_blob(
            client,
            repo,
            &layer.digest,
            layer.size,
            BlobSource::File(path),
            &from,
            opts,
        )?;
        if !opts.quiet {
            let what = match outcome {
                BlobOutcome::Exists => "Layer already exists".to_string(),
                BlobOutcome::Mounted => format!("Mounted from {}", from.join(", ")),
                BlobOutcome::Uploaded => "Pushed".to_string(),
            };
            eprintln!("{}: {what}", layer.digest.short());
        }
        store.add_v2_metadata(&layer.diff_id, &layer.digest, &source)?;
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
            super::cache::ANNOTATION_INLINE_CACHE.to_string(),
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
