//! Pull and push with snapshots: `rbuild pull`, implicit pulls of `FROM`/`COPY --from` images that
//! are not in the store, and `rbuild push` / `build --push`.

use super::load::unpack_layer;
use crate::digest::Digest;
use crate::image::Reference;
use crate::registry::{
    self, Client, PullOptions, Pulled, PushOptions, RegistryConfig, RegistryError,
};
use crate::snapshot::Snapshotter;
use crate::store::Store;
use std::path::Path;

/// Pulls `name` into the store, unpacking each new layer into a snapshot. When the name already
/// denoted images of other platforms, it then denotes all of them (an index; the tag stays on the
/// host's image): pulling `--platform linux/arm64` keeps the amd64 image reachable by name.
pub fn pull(
    store: &Store,
    snapshots: &dyn Snapshotter,
    cfg: &RegistryConfig,
    name: &str,
    opts: &PullOptions,
) -> Result<Pulled, RegistryError> {
    let reference = Reference::parse(name)?;
    let before = name_images(store, name)?;
    let client = Client::new(reference.domain(), cfg)?;
    let mut unpack =
        |rec: &crate::store::LayerRecord, blob: &Path| unpack_layer(store, snapshots, rec, blob);
    let pulled = registry::pull(&client, store, &reference, opts, &mut unpack)?;
    keep_other_platforms(store, name, before, &pulled.id)?;
    Ok(pulled)
}

/// The images `name` denotes: an index's members, or the one tagged image.
fn name_images(store: &Store, name: &str) -> Result<Vec<Digest>, RegistryError> {
    if let Some(index) = store.resolve_index(name)? {
        return Ok(store.get_index(&index)?.image_ids().cloned().collect());
    }
    Ok(store.resolve(name)?.into_iter().collect())
}

fn platform_of_image(
    store: &Store,
    id: &Digest,
) -> Result<crate::image::manifest::Platform, RegistryError> {
    let c = crate::image::ImageConfig::from_bytes(&store.image_config(id)?)?;
    Ok(crate::image::index::platform_of(
        &c.os,
        &c.architecture,
        c.variant.as_deref(),
    ))
}

/// After pulling `pulled` as `name`: images `name` denoted before for other platforms stay
/// denoted by it, as an index with the pulled one.
fn keep_other_platforms(
    store: &Store,
    name: &str,
    before: Vec<Digest>,
    pulled: &Digest,
) -> Result<(), RegistryError> {
    let Ok(reference) = Reference::parse_tagged(name) else {
        return Ok(());
    };
    let new_platform = platform_of_image(store, pulled)?;
    let mut index = crate::image::index::ImageIndex::default();
    for id in before.into_iter().filter(|id| id != pulled) {
        let p = platform_of_image(store, &id)?;
        if p != new_platform {
            index.push(crate::image::index::IndexEntry::image(id, p));
        }
    }
    if index.manifests.is_empty() {
        return Ok(());
    }
    index.push(crate::image::index::IndexEntry::image(
        pulled.clone(),
        new_platform,
    ));
    let id = store.put_index(&index)?;
    let host = crate::platform::Platform::host();
    store.tag_index(
        &reference,
        &id,
        (&host.os, &host.architecture, host.variant.as_deref()),
    )?;
    Ok(())
}

/// Pushes the image `source` (a store name or id) as `target` (default: `source`). A name that
/// denotes an image index (a multi-platform build's tag) pushes the whole index.
pub fn push(
    store: &Store,
    cfg: &RegistryConfig,
    source: &str,
    target: Option<&str>,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    if let Some(index) = store.resolve_index(source)? {
        let target = Reference::parse_tagged(target.unwrap_or(source))?;
        return push_index(store, cfg, &index, &target, opts);
    }
    let id = store
        .resolve(source)?
        .ok_or_else(|| RegistryError::Other(format!("no such image: {source}")))?;
    let target = Reference::parse_tagged(target.unwrap_or(source))?;
    let client = Client::new(target.domain(), cfg)?;
    registry::push(&client, store, &id, &target, opts)
}

/// Pushes the stored index `index` as `target`.
pub fn push_index(
    store: &Store,
    cfg: &RegistryConfig,
    index: &Digest,
    target: &Reference,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    let host = crate::platform::Platform::host();
    let default = (
        host.os.as_str(),
        host.architecture.as_str(),
        host.variant.as_deref(),
    );
    let export = store.export_index(index, &[], opts.form, default)?;
    let client = Client::new(target.domain(), cfg)?;
    registry::push_index(&client, store, &export, target, opts)
}

/// `--cache-from`: imports each cache's records and layers before the build. A cache that
/// cannot be read is a warning, not a failure (the build just runs its steps), as in BuildKit.
pub(super) fn import_cache(
    opts: &super::BuildOptions,
    store: &Store,
    snapshots: &dyn Snapshotter,
    reporter: &super::progress::Reporter,
) -> Result<(), super::BuildError> {
    use crate::registry::cache::{self, CacheSpec};
    for spec in &opts.cache_from {
        let step = reporter.start(&format!("importing cache {}", describe(spec)));
        let mut unpack = |rec: &crate::store::LayerRecord, blob: &Path| {
            unpack_layer(store, snapshots, rec, blob)
        };
        let res = match spec {
            CacheSpec::Registry { reference, .. } => Reference::parse_tagged(reference)
                .map_err(RegistryError::from)
                .and_then(|r| {
                    let client = Client::new(r.domain(), &opts.registry)?;
                    cache::import_registry(&client, store, &r, &mut unpack)
                }),
            CacheSpec::Local { dir, .. } => cache::import_local(store, dir, &mut unpack),
            CacheSpec::Inline => Ok(0),
        };
        match res {
            Ok(n) => reporter.message(&format!(
                "imported {n} cache records from {}",
                describe(spec)
            )),
            Err(e) => reporter.warn(&format!("cache {}: {e}", describe(spec))),
        }
        reporter.done(step);
    }
    Ok(())
}

/// Cache exports ship layers as the image does (inline cache names the pushed image's blobs).
fn layer_form(opts: &super::BuildOptions) -> crate::store::LayerForm {
    crate::store::LayerForm::Compress(opts.compression, opts.repro_profile)
}

/// `--cache-to type=inline`: the cache config (mode=min) to push with the image; warns when the
/// build pushes nothing.
pub(super) fn inline_cache(
    opts: &super::BuildOptions,
    store: &Store,
    reporter: &super::progress::Reporter,
    used: &[Digest],
    result: &super::state::StageResult,
) -> Result<Option<Vec<u8>>, super::BuildError> {
    use crate::registry::cache::{self, CacheSpec};
    if !opts.cache_to.contains(&CacheSpec::Inline) {
        return Ok(None);
    }
    if opts.push.is_empty() {
        reporter
            .warn("--cache-to type=inline needs --push (or -o type=registry): nothing exported");
        return Ok(None);
    }
    let keys = min_keys(store, used, result);
    let (cfg, _) = cache::collect(store, &keys, layer_form(opts))
        .map_err(|e| super::BuildError::Export(Box::new(e)))?;
    cache::config_bytes(&cfg)
        .map(Some)
        .map_err(|e| super::BuildError::Export(Box::new(e)))
}

/// The used keys whose layers are all in the final image (mode=min).
fn min_keys(store: &Store, used: &[Digest], result: &super::state::StageResult) -> Vec<Digest> {
    let in_image: std::collections::BTreeSet<&Digest> =
        result.layers.iter().map(|l| &l.chain_id).collect();
    used.iter()
        .filter(|k| {
            store
                .cache_get(k)
                .ok()
                .flatten()
                .is_some_and(|r| r.chain_id.as_ref().is_none_or(|c| in_image.contains(c)))
        })
        .cloned()
        .collect()
}

/// `--cache-to`: exports the records this build used (mode=min: those whose layers are all in
/// the final image).
pub(super) fn export_cache(
    opts: &super::BuildOptions,
    store: &Store,
    reporter: &super::progress::Reporter,
    used: &[Digest],
    result: &super::state::StageResult,
) -> Result<(), super::BuildError> {
    use crate::registry::cache::{self, CacheMode, CacheSpec};
    for spec in &opts.cache_to {
        let keys: Vec<Digest> = match spec.mode() {
            CacheMode::Max => used.to_vec(),
            CacheMode::Min => min_keys(store, used, result),
        };
        if *spec == CacheSpec::Inline {
            continue;
        }
        let step = reporter.start(&format!("exporting cache to {}", describe(spec)));
        let n = match spec {
            CacheSpec::Registry { reference, .. } => Reference::parse_tagged(reference)
                .map_err(RegistryError::from)
                .and_then(|r| {
                    let client = Client::new(r.domain(), &opts.registry)?;
                    cache::export_registry(&client, store, &r, &keys, layer_form(opts))
                }),
            CacheSpec::Local { dir, .. } => {
                cache::export_local(store, dir, &keys, layer_form(opts))
            }
            CacheSpec::Inline => Ok(0),
        }
        .map_err(|e| super::BuildError::Export(Box::new(e)))?;
        reporter.message(&format!("exported {n} cache records"));
        reporter.done(step);
    }
    Ok(())
}

fn describe(spec: &crate::registry::cache::CacheSpec) -> String {
    match spec {
        crate::registry::cache::CacheSpec::Registry { reference, .. } => reference.clone(),
        crate::registry::cache::CacheSpec::Local { dir, .. } => dir.display().to_string(),
        crate::registry::cache::CacheSpec::Inline => "inline".to_string(),
    }
}
