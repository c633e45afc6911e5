//! Library side of `rbuild images | inspect | history | rmi | df | prune`: docker-compatible
//! text written to a `&mut dyn Write`.

use crate::digest::{chain_ids, Digest};
use crate::image::{ImageConfig, Reference};
use crate::store::{LayerRecord, Store, StoreError};
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

fn out_err(e: std::io::Error) -> StoreError {
    StoreError::Output(e)
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // Go %.3g: 3 significant digits, no trailing zeros.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// go-units `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let hours_rounded = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours_rounded == 1 => "About an hour".into(),
        _ if hours_rounded < 48 => format!("{hours_rounded} hours"),
        _ if hours_rounded < 24 * 7 * 2 => format!("{} days", hours_rounded / 24),
        _ if hours_rounded < 24 * 30 * 2 => format!("{} weeks", hours_rounded / 24 / 7),
        _ if hours_rounded < 24 * 365 * 2 => format!("{} months", hours_rounded / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

fn parse_time(created: Option<&str>) -> Option<jiff::Timestamp> {
    created.and_then(|c| c.parse::<jiff::Timestamp>().ok())
}

fn since(created: Option<&str>, now: jiff::Timestamp) -> String {
    match parse_time(created) {
        Some(t) => format!(
            "{} ago",
            human_duration(now.as_second().saturating_sub(t.as_second()))
        ),
        None => "N/A".into(),
    }
}

/// Aligned columns like Go's `tabwriter(minwidth 10, padding 3)` as the docker CLI uses it.
fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> Result<(), StoreError> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        writeln!(out, "{line}").map_err(out_err)?;
    }
    Ok(())
}

fn short_id(id: &Digest, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.short().to_string()
    }
}

/// `images`.
pub fn images(store: &Store, out: &mut dyn Write, opts: &ImagesOptions) -> Result<(), StoreError> {
    let now = jiff::Timestamp::now();
    let filter = opts
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let mut rows: Vec<(String, String, String, &crate::store::ImageSummary)> = Vec::new();
    let list = store.list_images()?;
    for img in &list {
        let mut entries: Vec<(String, String)> = Vec::new();
        for t in &img.repo_tags {
            if let Ok(r) = Reference::parse(t) {
                entries.push((r.familiar_name(), r.tag().unwrap_or("<none>").to_string()));
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
                writeln!(out, "{}", short_id(&img.id, opts.no_trunc)).map_err(out_err)?;
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
            let line = serde_json::to_string(&m).map_err(|e| StoreError::Output(e.into()))?;
            // Go's encoder escapes < and > (HTML safety); match its bytes.
            let line = line.replace('<', "\\u003c").replace('>', "\\u003e");
            writeln!(out, "{line}").map_err(out_err)?;
        }
        return Ok(());
    }
    let mut table = Vec::new();
    let mut header = vec!["REPOSITORY".to_string(), "TAG".to_string()];
    if opts.digests {
        header.push("DIGEST".into());
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"].map(String::from));
    table.push(header);
    for (repo, tag, digest, img) in &rows {
        let mut r = vec![repo.clone(), tag.clone()];
        if opts.digests {
            r.push(digest.clone());
        }
        r.push(short_id(&img.id, opts.no_trunc));
        r.push(since(img.created.as_deref(), now));
        r.push(human_size(img.size));
        table.push(r);
    }
    write_table(out, &table)
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
pub fn inspect(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    dirs: GraphDirs<'_>,
) -> Result<(), StoreError> {
    let mut items = Vec::new();
    for name in names {
        let id = store
            .resolve(name)?
            .ok_or_else(|| StoreError::ImageNotFound(name.clone()))?;
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
        let last_tag = crate::store::fsutil::read_opt(
            &store
                .imagedb_metadata_dir()
                .join(id.hex())
                .join("lastUpdated"),
        )?
        .unwrap_or_default();
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
    items
        .serialize(&mut ser)
        .map_err(|e| StoreError::Output(e.into()))?;
    out.write_all(&buf).map_err(out_err)?;
    writeln!(out).map_err(out_err)
}

/// One row of `history` (newest first), as the engine's image history API gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image this entry completes: the image itself for the newest row, a stored ancestor
    /// (its base image) for the row its history ends at, else None (`<missing>`).
    pub id: Option<Digest>,
    pub created: Option<String>,
    pub created_by: String,
    /// Uncompressed size of the entry's layer (0 for `empty_layer` entries).
    pub size: u64,
    pub comment: String,
}

/// The history rows of image `name`, newest first.
pub fn history_rows(store: &Store, name: &str) -> Result<Vec<HistoryRow>, StoreError> {
    let id = store
        .resolve(name)?
        .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?;
    let config = ImageConfig::from_bytes(&store.image_config(&id)?)?;
    let layers: Vec<LayerRecord> = match chain_ids(&config.rootfs.diff_ids).pop() {
        Some(top) => store.layer_chain(&top)?,
        None => Vec::new(),
    };
    let mut sizes = layers.iter().map(|l| l.size);
    let mut rows: Vec<HistoryRow> = Vec::new();
    let row = |created, created_by, size, comment| HistoryRow {
        id: None,
        created,
        created_by,
        size,
        comment,
    };
    if config.history.is_empty() {
        for l in &layers {
            rows.push(row(None, String::new(), l.size, String::new()));
        }
    } else {
        for h in &config.history {
            let size = if h.empty_layer {
                0
            } else {
                sizes.next().unwrap_or(0)
            };
            rows.push(row(
                h.created.clone(),
                h.created_by.clone(),
                size,
                h.comment.clone(),
            ));
        }
    }
    // Ancestors in the store name the row their own history ends at (Docker walks the parent
    // chain the same way; matching by history keeps a base image on its own row).
    let mut next = Some(id.clone());
    let mut seen = BTreeSet::new();
    while let Some(img) = next.filter(|i| seen.insert(i.clone())) {
        let cfg = ImageConfig::from_bytes(&store.image_config(&img)?)?;
        let n = if cfg.history.is_empty() {
            cfg.rootfs.diff_ids.len()
        } else {
            cfg.history.len()
        };
        let prefix = config
            .history
            .iter()
            .zip(&cfg.history)
            .all(|(a, b)| a.created_by == b.created_by);
        if n > 0 && n <= rows.len() && prefix && rows[n - 1].id.is_none() {
            rows[n - 1].id = Some(img.clone());
        }
        next = store.image_parent(&img)?;
    }
    rows.reverse();
    Ok(rows)
}

/// Options of `history`, as `docker history`'s flags.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// `--no-trunc`: full ids and CREATED BY.
    pub no_trunc: bool,
    /// `-q`: ids only (with the table format).
    pub quiet: bool,
    /// `-H/--human` (default true): sizes and dates for humans, else bytes and RFC 3339.
    pub human: bool,
    /// `--format`: `table`, `table TEMPLATE`, `json` or `TEMPLATE`.
    pub format: Option<String>,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            no_trunc: false,
            quiet: false,
            human: true,
            format: None,
        }
    }
}

/// Go's `time.Format(time.RFC3339)` in the local zone (as the docker CLI prints CreatedAt).
fn rfc3339_local(created: Option<&str>) -> String {
    let t = parse_time(created).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let z = t.to_zoned_datetime(jiff::tz::TimeZone::system());
    let s = z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    match s.strip_suffix("+00:00") {
        Some(utc) => format!("{utc}Z"),
        None => s,
    }
}

/// A history row's template fields, as the docker CLI's history formatter computes them.
fn history_fields(
    r: &HistoryRow,
    opts: &HistoryOptions,
    now: jiff::Timestamp,
) -> BTreeMap<&'static str, String> {
    let id = match &r.id {
        Some(id) => short_id(id, opts.no_trunc),
        None => "<missing>".to_string(),
    };
    let created_at = rfc3339_local(r.created.as_deref());
    // Dates before 2000 (e.g. SOURCE_DATE_EPOCH=0) are left blank rather than "55 years ago".
    let y2k = 946_684_800;
    let created_since = if !opts.human {
        created_at.clone()
    } else {
        match parse_time(r.created.as_deref()) {
            Some(t) if t.as_second() > y2k => since(r.created.as_deref(), now),
            _ => String::new(),
        }
    };
    let by = r.created_by.replace('\t', " ");
    let by = if opts.no_trunc || by.chars().count() <= 45 {
        by
    } else {
        let cut: String = by.chars().take(44).collect();
        format!("{cut}…")
    };
    let size = if opts.human {
        human_size(r.size)
    } else {
        r.size.to_string()
    };
    BTreeMap::from([
        ("ID", id),
        ("CreatedSince", created_since),
        ("CreatedAt", created_at),
        ("CreatedBy", by),
        ("Size", size),
        ("Comment", r.comment.clone()),
    ])
}

/// `history`: newest entry first; CREATED BY truncated to 45 columns unless `no_trunc`.
pub fn history(
    store: &Store,
    out: &mut dyn Write,
    name: &str,
    no_trunc: bool,
) -> Result<(), StoreError> {
    let opts = HistoryOptions {
        no_trunc,
        ..Default::default()
    };
    history_with(store, out, name, &opts)
}

/// `history` with all of `docker history`'s flags.
pub fn history_with(
    store: &Store,
    out: &mut dyn Write,
    name: &str,
    opts: &HistoryOptions,
) -> Result<(), StoreError> {
    use super::format::{json_object, Format, Template};
    let split_cells = |line: &str| line.split('\t').map(String::from).collect::<Vec<_>>();
    let now = jiff::Timestamp::now();
    let rows = history_rows(store, name)?;
    let bad = StoreError::Format;
    let mut format = Format::parse(opts.format.as_deref().unwrap_or("")).map_err(bad)?;
    if format == Format::Table(None) {
        let default = if opts.quiet {
            "{{.ID}}"
        } else if opts.human {
            "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
        } else {
            "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
        };
        format = Format::parse(default).map_err(bad)?;
    }
    let fields: Vec<_> = rows.iter().map(|r| history_fields(r, opts, now)).collect();
    match format {
        Format::Json => {
            for f in &fields {
                writeln!(out, "{}", json_object(f)).map_err(out_err)?;
            }
        }
        Format::Raw(t) => {
            for f in &fields {
                writeln!(out, "{}", t.render(f).map_err(bad)?).map_err(out_err)?;
            }
        }
        Format::Table(t) => {
            // (A bare `table` was replaced by the default columns above.)
            let t: Template = t.unwrap_or_default();
            let header = BTreeMap::from([
                ("ID", "IMAGE".to_string()),
                ("CreatedSince", "CREATED".to_string()),
                ("CreatedAt", "CREATED AT".to_string()),
                ("CreatedBy", "CREATED BY".to_string()),
                ("Size", "SIZE".to_string()),
                ("Comment", "COMMENT".to_string()),
            ]);
            let mut table = vec![split_cells(&t.render(&header).map_err(bad)?)];
            for f in &fields {
                table.push(split_cells(&t.render(f).map_err(bad)?));
            }
            write_table(out, &table)?;
        }
    }
    Ok(())
}

/// Chains (layer ids) referenced by images and, unless `ignore_cache`, cache records.
fn referenced_layers(store: &Store, ignore_cache: bool) -> Result<BTreeSet<Digest>, StoreError> {
    let mut tops = Vec::new();
    for id in store.list_image_ids()? {
        if let Some(t) = store.image_top_layer(&id)? {
            tops.push(t);
        }
    }
    if !ignore_cache {
        for key in store.cache_keys()? {
            if let Some(c) = store.cache_get(&key)?.and_then(|r| r.chain_id) {
                tops.push(c);
            }
        }
    }
    let mut set = BTreeSet::new();
    for t in tops {
        let mut next = Some(t);
        while let Some(id) = next {
            if !set.insert(id.clone()) {
                break;
            }
            next = store.get_layer(&id)?.and_then(|l| l.parent);
        }
    }
    Ok(set)
}

/// Removes layers not in `keep` among `candidates` and blobs no remaining layer uses.
/// Returns (removed layers, removed blob count, freed bytes).
fn collect_garbage(
    store: &Store,
    candidates: &[Digest],
    keep: &BTreeSet<Digest>,
) -> Result<(Vec<LayerRecord>, usize, u64), StoreError> {
    // Layers that running builds and loads hold (leases) stay, with their parents.
    let (leased, _) = store.read_leases()?;
    let leased_blobs = leased.blobs;
    let mut keep = keep.clone();
    for l in leased.layers {
        let mut next = Some(l);
        while let Some(id) = next {
            if !keep.insert(id.clone()) {
                break;
            }
            next = store.get_layer(&id)?.and_then(|l| l.parent);
        }
    }
    let mut removed = Vec::new();
    let mut freed = 0;
    for c in candidates {
        if keep.contains(c) {
            continue;
        }
        if let Some(rec) = store.get_layer(c)? {
            store.remove_layer(&rec)?;
            freed += rec.size;
            removed.push(rec);
        }
    }
    let mut live_blobs = BTreeSet::new();
    let mut live_diffs = BTreeSet::new();
    for l in store.list_layers()? {
        if let Some(rec) = store.get_layer(&l)? {
            live_blobs.insert(rec.blob);
            live_diffs.insert(rec.diff_id);
        }
    }
    // Compressed forms live while a layer with their diffID does.
    live_blobs.extend(store.gc_compressed_forms(&live_diffs)?);
    let mut blobs = 0;
    for b in store.list_blobs()? {
        if !live_blobs.contains(&b) && !leased_blobs.contains(&b) {
            freed += std::fs::metadata(store.blob_path(&b)).map_or(0, |m| m.len());
            store.remove_blob(&b)?;
            store.remove_distribution(Some(&b), None)?;
            blobs += 1;
        }
    }
    for rec in &removed {
        if !live_diffs.contains(&rec.diff_id) {
            store.remove_distribution(None, Some(&rec.diff_id))?;
        }
    }
    Ok((removed, blobs, freed))
}

/// `rmi`: untags, deletes images and their layers no other image or cache record uses.
/// Refuses images used by several repositories (unless `force`) or by child images.
/// Returns the cache-ids of freed layers: the caller removes those snapshots.
pub fn rmi(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    force: bool,
) -> Result<Vec<String>, StoreError> {
    let _lock = store.lock()?;
    let mut freed_ids = Vec::new();
    for name in names {
        let id = store
            .resolve(name)?
            .ok_or_else(|| StoreError::ImageNotFound(name.clone()))?;
        let (tags, digests) = store.references_of(&id)?;
        let by_ref = Reference::parse_tagged(name)
            .ok()
            .filter(|r| tags.contains(&r.familiar()) || digests.contains(&r.familiar()));
        if let Some(r) = &by_ref {
            if tags.len() + digests.len() > 1 && !force {
                // Other names still point at the image: only this one goes.
                store.untag(r)?;
                writeln!(out, "Untagged: {}", r.familiar()).map_err(out_err)?;
                continue;
            }
        } else if tags.len() > 1 && !force {
            return Err(StoreError::Conflict {
                id: id.short().to_string(),
                reason: "must be forced - image is referenced in multiple repositories".into(),
            });
        }
        if !store.children(&id)?.is_empty() {
            return Err(StoreError::Conflict {
                id: id.short().to_string(),
                reason: "cannot be forced - image has dependent child images".into(),
            });
        }
        let top = store.image_top_layer(&id)?;
        for r in store.delete_image(&id)? {
            writeln!(out, "Untagged: {r}").map_err(out_err)?;
        }
        writeln!(out, "Deleted: {id}").map_err(out_err)?;
        if let Some(top) = top {
            let chain: Vec<Digest> = store
                .layer_chain(&top)?
                .into_iter()
                .rev()
                .map(|l| l.chain_id)
                .collect();
            let keep = referenced_layers(store, false)?;
            let (removed, _, _) = collect_garbage(store, &chain, &keep)?;
            for rec in removed {
                writeln!(out, "Deleted: {}", rec.chain_id).map_err(out_err)?;
                freed_ids.push(rec.cache_id);
            }
        }
    }
    Ok(freed_ids)
}

/// `df`: space used by images and build cache.
pub fn df(store: &Store, out: &mut dyn Write) -> Result<(), StoreError> {
    let images = store.list_images()?;
    let tagged: Vec<&crate::store::ImageSummary> = images
        .iter()
        .filter(|i| !i.repo_tags.is_empty() || !i.repo_digests.is_empty())
        .collect();
    let layers_of = |ids: &[&Digest]| -> Result<BTreeSet<Digest>, StoreError> {
        let mut set = BTreeSet::new();
        for id in ids {
            if let Some(top) = store.image_top_layer(id)? {
                for l in store.layer_chain(&top)? {
                    set.insert(l.chain_id);
                }
            }
        }
        Ok(set)
    };
    let size_of = |set: &BTreeSet<Digest>| -> Result<u64, StoreError> {
        let mut total = 0;
        for c in set {
            total += store.get_layer(c)?.map_or(0, |l| l.size);
        }
        Ok(total)
    };
    let all_ids: Vec<&Digest> = images.iter().map(|i| &i.id).collect();
    let tagged_ids: Vec<&Digest> = tagged.iter().map(|i| &i.id).collect();
    let image_layers = layers_of(&all_ids)?;
    let active_layers = layers_of(&tagged_ids)?;
    let image_size = size_of(&image_layers)?;
    let reclaim = size_of(&image_layers.difference(&active_layers).cloned().collect())?;
    let with_cache = referenced_layers(store, false)?;
    let cache_only: BTreeSet<Digest> = with_cache.difference(&image_layers).cloned().collect();
    let cache_size = size_of(&cache_only)?;
    let cache_count = store.cache_keys()?.len();
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let table = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
            .map(String::from)
            .to_vec(),
        vec![
            "Images".into(),
            images.len().to_string(),
            tagged.len().to_string(),
            human_size(image_size),
            format!("{} ({}%)", human_size(reclaim), pct(reclaim, image_size)),
        ],
        vec![
            "Build Cache".into(),
            cache_count.to_string(),
            "0".into(),
            human_size(cache_size),
            human_size(cache_size),
        ],
    ];
    write_table(out, &table)
}

/// `prune`: deletes cache records whose layers are gone (all of them if `all`, plus untagged
/// childless images), then every layer and blob nothing references. Returns the freed
/// cache-ids; the caller removes those snapshots.
///
/// Layers a running build or load has written (or uses) but not yet referenced are in its
/// lease (`store::lease`) and survive; [`prune_snapshots`] then removes unowned snapshots.
pub fn prune(store: &Store, out: &mut dyn Write, all: bool) -> Result<Vec<String>, StoreError> {
    let _lock = store.lock()?;
    let mut deleted_images = Vec::new();
    if all {
        for img in store.list_images()? {
            let named = !img.repo_tags.is_empty() || !img.repo_digests.is_empty();
            if !named && store.children(&img.id)?.is_empty() {
                store.delete_image(&img.id)?;
                deleted_images.push(img.id);
            }
        }
    }
    let mut cache_deleted = 0;
    for key in store.cache_keys()? {
        let stale = match store.cache_get(&key)? {
            Some(rec) => match &rec.chain_id {
                Some(c) => store.get_layer(c)?.is_none(),
                None => false,
            },
            None => true,
        };
        if all || stale {
            store.cache_delete(&key)?;
            cache_deleted += 1;
        }
    }
    let keep = referenced_layers(store, false)?;
    let candidates = store.list_layers()?;
    let (removed, blobs, freed) = collect_garbage(store, &candidates, &keep)?;
    if !deleted_images.is_empty() {
        writeln!(out, "Deleted Images:").map_err(out_err)?;
        for id in &deleted_images {
            writeln!(out, "deleted: {id}").map_err(out_err)?;
        }
        writeln!(out).map_err(out_err)?;
    }
    if !removed.is_empty() {
        writeln!(out, "Deleted Layers:").map_err(out_err)?;
        for rec in &removed {
            writeln!(out, "deleted: {}", rec.chain_id).map_err(out_err)?;
        }
        writeln!(out).map_err(out_err)?;
    }
    writeln!(
        out,
        "Deleted {} layers, {} blobs, {} cache records",
        removed.len(),
        blobs,
        cache_deleted
    )
    .map_err(out_err)?;
    writeln!(out, "Total reclaimed space: {}", human_size(freed)).map_err(out_err)?;
    Ok(removed.into_iter().map(|r| r.cache_id).collect())
}

/// After [`prune`]/[`rmi`]: removes every snapshot that no layer record and no running
/// process owns (what those freed, and what killed builds left), printing each one.
pub fn prune_snapshots(
    store: &Store,
    snapshots: &crate::snapshot::OverlaySnapshotter,
    out: &mut dyn Write,
) -> Result<usize, StoreError> {
    let _lock = store.lock()?;
    let orphans = store.orphan_snapshots(snapshots)?;
    let removed = crate::store::gc::remove_snapshots(snapshots, orphans);
    for id in &removed {
        writeln!(out, "Deleted snapshot: {id}").map_err(out_err)?;
    }
    let trash = snapshots.empty_trash()?;
    if trash > 0 {
        writeln!(
            out,
            "Deleted {trash} duplicate snapshots set aside by builds"
        )
        .map_err(out_err)?;
    }
    Ok(removed.len() + trash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_units_formatting() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(7_800_000), "7.8MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(3599), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(100 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn table_alignment() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &[
                vec!["A".into(), "LONGER-HEADER".into(), "X".into()],
                vec!["value".into(), "b".into(), "last".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A         LONGER-HEADER   X\nvalue     b               last\n"
        );
    }
}
