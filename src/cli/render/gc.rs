//! `rbuild rmi`, `prune` and `df`: the store's reports (`store::gc::prune`) as the docker CLI
//! prints them.

use super::table::{human_size, write_table};
use crate::snapshot::OverlaySnapshotter;
use crate::store::{RmiEvent, Store};
use anyhow::Result;
use std::io::Write;

/// `rmi`: untags and deletes each image in turn, printing what goes. Returns the cache-ids of
/// freed layers: the caller removes those snapshots.
pub fn rmi(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    force: bool,
) -> Result<Vec<String>> {
    let _lock = store.lock()?;
    let mut freed = Vec::new();
    for name in names {
        let (events, ids) = store.remove_image(name, force)?;
        for e in events {
            match e {
                RmiEvent::Untagged(r) => writeln!(out, "Untagged: {r}")?,
                RmiEvent::Deleted(d) => writeln!(out, "Deleted: {d}")?,
            }
        }
        freed.extend(ids);
    }
    Ok(freed)
}

/// `df`: space used by images and build cache.
pub fn df(store: &Store, out: &mut dyn Write) -> Result<()> {
    let u = store.disk_usage()?;
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let table = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
            .map(String::from)
            .to_vec(),
        vec![
            "Images".into(),
            u.images.to_string(),
            u.active_images.to_string(),
            human_size(u.images_size),
            format!(
                "{} ({}%)",
                human_size(u.reclaimable),
                pct(u.reclaimable, u.images_size)
            ),
        ],
        vec![
            "Build Cache".into(),
            u.cache_records.to_string(),
            "0".into(),
            human_size(u.cache_size),
            human_size(u.cache_size),
        ],
    ];
    write_table(out, &table)
}

/// `prune`: see [`Store::prune`]. Returns the freed cache-ids; the caller removes those snapshots.
pub fn prune(store: &Store, out: &mut dyn Write, all: bool) -> Result<Vec<String>> {
    let r = store.prune(all)?;
    if !r.deleted_images.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for id in &r.deleted_images {
            writeln!(out, "deleted: {id}")?;
        }
        writeln!(out)?;
    }
    if !r.deleted_layers.is_empty() {
        writeln!(out, "Deleted Layers:")?;
        for id in &r.deleted_layers {
            writeln!(out, "deleted: {id}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Deleted {} layers, {} blobs, {} cache records",
        r.deleted_layers.len(),
        r.deleted_blobs,
        r.deleted_cache_records
    )?;
    writeln!(out, "Total reclaimed space: {}", human_size(r.freed_bytes))?;
    Ok(r.freed_snapshots)
}

/// After [`prune`]/[`rmi`]: removes every snapshot that no layer record and no running process
/// owns, printing each one.
pub fn prune_snapshots(
    store: &Store,
    snapshots: &OverlaySnapshotter,
    out: &mut dyn Write,
) -> Result<usize> {
    let r = store.prune_snapshots(snapshots)?;
    for id in &r.removed {
        writeln!(out, "Deleted snapshot: {id}")?;
    }
    if r.trash > 0 {
        writeln!(
            out,
            "Deleted {} duplicate snapshots set aside by builds",
            r.trash
        )?;
    }
    Ok(r.removed.len() + r.trash)
}
