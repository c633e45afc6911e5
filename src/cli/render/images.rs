//! `rbuild images` and `rbuild inspect`: docker-compatible text written to a `&mut dyn Write`.

use super::table::{human_size, parse_time, short_id, since, write_table};
use crate::digest::{chain_ids, Digest};
use crate::image::{ImageConfig, Reference};
use crate::platform::Platform;
use crate::store::{Store, StoreError};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

/// Maps a layer's cache-id to its snapshot directory (`<root>/overlay2/<cache-id>`).
pub type GraphDirs<'a> = &'a dyn Fn(&str) -> PathBuf;

/// Options of `images`.
#[derive(Debug, Clone, Default)]
pub struct ImagesOptions {
    /// `-q`: ids only.
    pub quiet: bool,
    /// `--digests`: add a DIGEST column.
    pub digests: bool,
    /// `--format json`: one JSON object per line.
    pub json: bool,
    /// `--no-trunc`: full ids.
    pub no_trunc: bool,
    /// Only this repository (`name` or `name:tag`).
    pub reference: Option<String>,
}

/// `images`.
pub fn images(store: &Store, out: &mut dyn Write, opts: &ImagesOptions) -> Result<()> {
    let now = jiff::Timestamp::now();
    let filter = opts
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let mut rows: Vec<(String, String, String, &crate::store::ImageSummary)> = Vec::new();
    let list = store.list_images()?;
    // A multi-platform tag names an index: every member image is listed under it, and a
    // PLATFORM column says which is which (docs/store-layout.md "Image indexes").
    let members = index_members(store)?;
    for img in &list {
        let mut entries: Vec<(String, String)> = Vec::new();
        for t in &img.repo_tags {
            if let Ok(r) = Reference::parse(t) {
                entries.push((r.familiar_name(), r.tag().unwrap_or("<none>").to_string()));
            }
        }
        for r in members.get(&img.id).into_iter().flatten() {
            let e = (r.familiar_name(), r.tag().unwrap_or("<none>").to_string());
            if !entries.contains(&e) {
                entries.push(e);
            }
        }
        let digest_of = |repo: &str| {
            img.repo_digests
                .iter()
                .filter_map(|d| Reference::parse(d).ok())
                .find(|r| r.familiar_name() == repo)
                .and_then(|r| r.digest().map(|d| d.to_string()))
                .unwrap_or_else(|| "<none>".into())
        };
        if entries.is_empty() {
            // Digest-only references still name a repository.
            for d in &img.repo_digests {
                if let Ok(r) = Reference::parse(d) {
                    entries.push((r.familiar_name(), "<none>".into()));
                }
            }
        }
        if entries.is_empty() {
            entries.push(("<none>".into(), "<none>".into()));
        }
        entries.dedup();
        for (repo, tag) in entries {
            if let Some(f) = &filter {
                if repo != f.familiar_name() || f.tag().is_some_and(|t| t != tag) {
                    continue;
                }
            }
            let digest = digest_of(&repo);
            rows.push((repo, tag, digest, img));
        }
    }
    if opts.quiet {
        let mut seen = BTreeSet::new();
        for (_, _, _, img) in &rows {
            if seen.insert(&img.id) {
                writeln!(out, "{}", short_id(&img.id, opts.no_trunc))?;
            }
        }
        return Ok(());
    }
    if opts.json {
        for (repo, tag, digest, img) in &rows {
            let created_at = parse_time(img.created.as_deref())
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
                .unwrap_or_default();
            let mut m = BTreeMap::new();
            m.insert("Containers", "N/A".to_string());
            m.insert("CreatedAt", created_at);
            m.insert("CreatedSince", since(img.created.as_deref(), now));
            m.insert("Digest", digest.clone());
            m.insert("ID", short_id(&img.id, opts.no_trunc));
            m.insert("Repository", repo.clone());
            m.insert("SharedSize", "N/A".into());
            m.insert("Size", human_size(img.size));
            m.insert("Tag", tag.clone());
            m.insert("UniqueSize", "N/A".into());
            m.insert("VirtualSize", human_size(img.size));
            let line = serde_json::to_string(&m)?;
            // Go's encoder escapes < and > (HTML safety); match its bytes.
            let line = line.replace('<', "\\u003c").replace('>', "\\u003e");
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let mut table = Vec::new();
    let mut header = vec!["REPOSITORY".to_string(), "TAG".to_string()];
    if opts.digests {
        header.push("DIGEST".into());
    }
    let platforms = !members.is_empty();
    if platforms {
        header.push("PLATFORM".into());
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"].map(String::from));
    table.push(header);
    for (repo, tag, digest, img) in &rows {
        let mut r = vec![repo.clone(), tag.clone()];
        if opts.digests {
            r.push(digest.clone());
        }
        if platforms {
            r.push(image_platform(store, &img.id)?.to_string());
        }
        r.push(short_id(&img.id, opts.no_trunc));
        r.push(since(img.created.as_deref(), now));
        r.push(human_size(img.size));
        table.push(r);
    }
    write_table(out, &table)
}

/// Member image id → the references of the indexes it is in.
fn index_members(store: &Store) -> Result<BTreeMap<Digest, Vec<Reference>>> {
    let mut out: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
    for (name, index_id) in store.index_refs()? {
        let Ok(r) = Reference::parse(&name) else {
            continue;
        };
        let Ok(index) = store.get_index(&index_id) else {
            continue;
        };
        for id in index.image_ids() {
            out.entry(id.clone()).or_default().push(r.clone());
        }
    }
    Ok(out)
}

/// The platform an image's config names.
fn image_platform(store: &Store, id: &Digest) -> Result<Platform> {
    let c = ImageConfig::from_bytes(&store.image_config(id)?)?;
    Ok(Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant.filter(|v| !v.is_empty()),
    })
}

/// The image `name` means for `platform`: a multi-platform tag (or index id) gives its member
/// for that platform (variants matched as `Platform::matches` does); a single image must be for
/// that platform. Without a platform, what `Store::resolve` says (an index's default image).
pub fn resolve_for_platform(
    store: &Store,
    name: &str,
    platform: Option<&Platform>,
) -> Result<Digest> {
    let Some(want) = platform else {
        return Ok(store
            .resolve(name)?
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?);
    };
    let candidates: Vec<Digest> = match store.resolve_index(name)? {
        Some(index_id) => store.get_index(&index_id)?.image_ids().cloned().collect(),
        None => vec![store
            .resolve(name)?
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?],
    };
    let mut available = Vec::new();
    for id in candidates {
        let p = image_platform(store, &id)?;
        if want.matches(&p) {
            return Ok(id);
        }
        available.push(p.to_string());
    }
    anyhow::bail!(
        "{name}: no image for platform {want} (available: {})",
        available.join(", ")
    )
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectGraphDriver {
    data: BTreeMap<&'static str, String>,
    name: &'static str,
}

#[derive(Serialize)]
struct InspectRootFs {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Layers")]
    layers: Vec<Digest>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectMetadata {
    last_tag_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectImage {
    id: Digest,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    /// Docker fills it with the engine version that built the image; "" for BuildKit builds.
    docker_version: String,
    author: String,
    config: crate::image::ContainerConfig,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    size: u64,
    graph_driver: InspectGraphDriver,
    #[serde(rename = "RootFS")]
    root_fs: InspectRootFs,
    metadata: InspectMetadata,
}

/// `inspect`: a JSON array like `docker image inspect`. `dirs` maps a cache-id to its snapshot dir.
/// `platform` (`inspect --platform`) picks one image of a multi-platform tag.
pub fn inspect(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    platform: Option<&Platform>,
    dirs: GraphDirs<'_>,
) -> Result<()> {
    let mut items = Vec::new();
    for name in names {
        let id = resolve_for_platform(store, name, platform)?;
        let config = ImageConfig::from_bytes(&store.image_config(&id)?)?;
        let summary = store.image_summary(&id)?;
        let mut data = BTreeMap::new();
        if let Some(top) = chain_ids(&config.rootfs.diff_ids).pop() {
            let chain = store.layer_chain(&top)?;
            if let Some((top, lower)) = chain.split_last() {
                let d = dirs(&top.cache_id);
                data.insert("MergedDir", d.join("merged").display().to_string());
                data.insert("UpperDir", d.join("diff").display().to_string());
                data.insert("WorkDir", d.join("work").display().to_string());
                if !lower.is_empty() {
                    let lowers: Vec<String> = lower
                        .iter()
                        .rev()
                        .map(|l| dirs(&l.cache_id).join("diff").display().to_string())
                        .collect();
                    data.insert("LowerDir", lowers.join(":"));
                }
            }
        }
        let last_tag = store.image_last_updated(&id)?.unwrap_or_default();
        items.push(InspectImage {
            id: id.clone(),
            repo_tags: summary.repo_tags,
            repo_digests: summary.repo_digests,
            parent: summary.parent.map(|p| p.to_string()).unwrap_or_default(),
            comment: String::new(),
            created: config.created.clone().unwrap_or_default(),
            docker_version: String::new(),
            author: config.author.clone().unwrap_or_default(),
            config: config.config.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
            os: config.os.clone(),
            size: summary.size,
            graph_driver: InspectGraphDriver {
                data,
                name: "overlay2",
            },
            root_fs: InspectRootFs {
                kind: config.rootfs.kind.clone(),
                layers: config.rootfs.diff_ids.clone(),
            },
            metadata: InspectMetadata {
                last_tag_time: last_tag.trim().to_string(),
            },
        });
    }
    // docker prints with a 4-space indent.
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    items.serialize(&mut ser)?;
    out.write_all(&buf)?;
    writeln!(out)?;
    Ok(())
}
