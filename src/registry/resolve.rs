//! Resolving a reference to one image manifest: fetching manifests and indexes (verified
//! against their digests), telling them apart safely, and choosing the entry for a platform
//! through nested indexes, past attestation manifests; and the checks on what a manifest names
//! (layer and config media types) before anything is downloaded.

use super::client::{scope, Client, Req};
use super::{redact_url, RegistryError};
use crate::digest::Digest;
use crate::image::manifest::{
    is_foreign_layer, is_index_type, Descriptor, Index, Manifest, MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_LAYER_TAR, MEDIA_DOCKER_LAYER_ZSTD,
    MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD, MEDIA_OCI_MANIFEST,
};
use crate::image::Reference;
use crate::platform::Platform;
use std::io::Read;

/// Manifest media types rbuild accepts, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// containerd's `MaxManifestSize` (SECURITY F3).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1048 * 1048;
/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;

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
pub(super) fn read_capped(r: impl Read, max: u64, url: &str) -> Result<Vec<u8>, RegistryError> {
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

/// Rank of an index entry without a platform: after every entry that names a matching one.
/// containerd, too, takes such an entry (a nested index, or a lone manifest) as a candidate.
const UNNAMED_RANK: u32 = 1000;

/// The index entry for `want`: same os and architecture, the exact variant, else the newest
/// older variant the platform can run, else an entry without a platform (a nested index, or
/// the only manifest of a single-platform index). Attestation manifests (BuildKit's
/// provenance/SBOM, `unknown/unknown`) are never chosen.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, RegistryError> {
    let want = &want.clone().normalize();
    let want_v = variant_of(&want.architecture, want.variant.as_deref());
    index
        .manifests
        .iter()
        .filter(|d| !d.is_attestation())
        .filter_map(|d| {
            let Some(p) = d.platform.as_ref() else {
                return Some((UNNAMED_RANK, d));
            };
            // Entries name platforms loosely too (`aarch64`, `armhf`): compared normalized.
            let p = &Platform {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
            }
            .normalize();
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
                .filter(|d| !d.is_attestation())
                .filter_map(|d| d.platform.as_ref())
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
                if !is_index_type(&d.media_type)
                    && !crate::image::manifest::is_manifest_type(&d.media_type)
                {
                    return Err(bad(
                        &display,
                        format!(
                            "index entry {} has media type {:?}, neither an image manifest nor an index",
                            d.digest, d.media_type
                        ),
                    ));
                }
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

/// Refuses a layer rbuild cannot unpack, naming why.
pub(super) fn check_layer_media_type(d: &Descriptor, reference: &str) -> Result<(), RegistryError> {
    match d.media_type.as_str() {
        MEDIA_OCI_LAYER
        | MEDIA_OCI_LAYER_GZIP
        | MEDIA_OCI_LAYER_ZSTD
        | MEDIA_DOCKER_LAYER_GZIP
        | MEDIA_DOCKER_LAYER_TAR
        | MEDIA_DOCKER_LAYER_ZSTD => Ok(()),
        // Fetched from the registry like any layer (never from the descriptor's `urls`, SECURITY
        // G01); a registry without the blob gets an error saying so (`download_layers`).
        t if is_foreign_layer(t) => Ok(()),
        t if t.ends_with("+encrypted") => Err(bad(
            reference,
            format!(
                "layer {} is encrypted ({t}); rbuild cannot decrypt layers",
                d.digest
            ),
        )),
        other => Err(bad(
            reference,
            format!("layer {} has unsupported media type {other:?}", d.digest),
        )),
    }
}

/// A foreign (non-distributable) layer the registry could not serve: say why rbuild does not
/// look elsewhere. Other errors pass unchanged.
pub(super) fn foreign_layer_error(d: &Descriptor, e: RegistryError) -> RegistryError {
    if !is_foreign_layer(&d.media_type) {
        return e;
    }
    RegistryError::Other(format!(
        "layer {} is a foreign (non-distributable) layer ({}), which only Windows images use, \
         and the registry could not serve it ({e}); rbuild never downloads layers from the \
         descriptor's `urls`",
        d.digest, d.media_type
    ))
}

/// The manifest's config must be an image config, not an artifact's (Helm chart, signature…).
pub(super) fn check_config_media_type(
    d: &Descriptor,
    reference: &str,
) -> Result<(), RegistryError> {
    match d.media_type.as_str() {
        MEDIA_OCI_CONFIG | MEDIA_DOCKER_CONFIG => Ok(()),
        other => Err(bad(
            reference,
            format!(
                "the manifest's config has media type {other:?}: this is not a container \
                 image (an OCI artifact?)"
            ),
        )),
    }
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
        // Loose names in an index are normalized as containerd does.
        let loose = idx(&[entry('a', "aarch64", None), entry('b', "armhf", None)]);
        assert_eq!(pick(&loose, "linux/arm64").unwrap(), "a");
        assert_eq!(pick(&loose, "linux/arm/v7").unwrap(), "b");
        // amd64/v3 images do not run on a plain amd64 (v1) host; v1 runs everywhere.
        let v3 = idx(&[entry('e', "amd64", Some("v3"))]);
        assert!(pick(&v3, "linux/amd64").is_err());
        let both = idx(&[entry('f', "amd64", None), entry('e', "amd64", Some("v3"))]);
        assert_eq!(pick(&both, "linux/amd64").unwrap(), "f");
        assert_eq!(pick(&both, "linux/amd64/v3").unwrap(), "e");
    }

    /// Attestations are skipped even with a real-looking platform; an entry without a platform
    /// (a nested index) is taken only when no entry names the platform.
    #[test]
    fn attestations_skipped_unnamed_entries_last() {
        let idx: Index = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{a}","size":1,"platform":{{"architecture":"amd64","os":"linux"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}},
              {{"mediaType":"{MEDIA_OCI_INDEX}","digest":"sha256:{b}","size":1}},
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:{c}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}}
            ]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64),
        ))
        .unwrap();
        let pick = |p: &str| {
            select_platform(&idx, &Platform::parse(p).unwrap(), "x")
                .map(|d| d.digest.hex()[..1].to_string())
                .unwrap()
        };
        assert_eq!(pick("linux/amd64"), "b");
        assert_eq!(pick("linux/arm64"), "c");
    }

    fn desc(media_type: &str) -> Descriptor {
        Descriptor::new(media_type, Digest::of_bytes(b"x"), 1)
    }

    #[test]
    fn layer_and_config_media_types_are_named() {
        for ok in [
            MEDIA_OCI_LAYER,
            MEDIA_OCI_LAYER_GZIP,
            MEDIA_OCI_LAYER_ZSTD,
            MEDIA_DOCKER_LAYER_GZIP,
            MEDIA_DOCKER_LAYER_TAR,
            MEDIA_DOCKER_LAYER_ZSTD,
        ] {
            assert!(check_layer_media_type(&desc(ok), "x").is_ok(), "{ok}");
        }
        for foreign in [
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        ] {
            assert!(check_layer_media_type(&desc(foreign), "x").is_ok());
            let e = foreign_layer_error(&desc(foreign), RegistryError::Other("404".into()));
            assert!(e.to_string().contains("never downloads layers from"), "{e}");
        }
        for (t, says) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                "encrypted",
            ),
            (
                "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                "unsupported",
            ),
        ] {
            let e = check_layer_media_type(&desc(t), "x")
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.contains(t), "{e}");
        }
        assert!(check_config_media_type(&desc(MEDIA_DOCKER_CONFIG), "x").is_ok());
        let e = check_config_media_type(&desc("application/vnd.cncf.helm.config.v1+json"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a container image"), "{e}");
    }
}
