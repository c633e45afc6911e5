//! `--metadata-file`: buildx's build result metadata as JSON (`containerimage.digest`,
//! `containerimage.config.digest`, `containerimage.descriptor`, `image.name`,
//! `buildx.build.ref`), written atomically. Which manifest the digest names: docs/compat.md.

use crate::digest::Digest;
use crate::solve::BuildOptions;
use crate::store::{LayerForm, Store};
use anyhow::{Context as _, Result};
use std::io::Write;
use std::path::Path;

/// The manifest digest of a pushed image: the `name@digest` reference the push recorded.
fn pushed_digest(store: &Store, id: &Digest, name: &str) -> Option<String> {
    let r = crate::image::Reference::parse_tagged(name).ok()?;
    let (_, digests) = store.references_of(id).ok()?;
    let prefix = format!("{}@", r.name());
    digests
        .iter()
        .find_map(|d| d.strip_prefix(&prefix).map(str::to_string))
}

pub(super) fn write(path: &Path, opts: &BuildOptions, id: &Digest) -> Result<()> {
    let store = Store::open(&opts.root)?;
    // The manifest as shipped: compressed layers when pushed, the stored tars otherwise (the
    // manifest `--load` and `rbuild save` carry).
    let form = if opts.push.is_empty() {
        LayerForm::AsStored
    } else {
        LayerForm::Compress(opts.compression, opts.repro_profile)
    };
    let mut img = store.export_image(id, &[], form)?;
    let platform = opts
        .platforms
        .first()
        .cloned()
        .unwrap_or_else(crate::platform::Platform::host);
    crate::export::annotate::annotate_image(&mut img, &opts.annotations, &platform.to_string());
    let built = img.manifest()?;
    let mut desc = serde_json::to_value(&built.descriptor)?;
    let mut digest = built.descriptor.digest.to_string();
    if let Some(p) = opts.push.first().and_then(|n| pushed_digest(&store, id, n)) {
        if p != digest {
            // An inline cache annotation changed the pushed manifest: its size is not known here.
            desc = serde_json::json!({
                "mediaType": built.descriptor.media_type,
                "digest": p,
            });
            digest = p;
        }
    }
    let mut names: Vec<String> = opts.tags.clone();
    for p in &opts.push {
        if !names.contains(p) {
            names.push(p.clone());
        }
    }
    let mut m = serde_json::Map::new();
    m.insert(
        "buildx.build.ref".into(),
        format!("rbuild/local/{}", &build_ref(id)).into(),
    );
    m.insert("containerimage.config.digest".into(), id.to_string().into());
    m.insert("containerimage.descriptor".into(), desc);
    m.insert("containerimage.digest".into(), digest.into());
    if !names.is_empty() {
        m.insert("image.name".into(), names.join(",").into());
    }
    let text = serde_json::to_vec_pretty(&serde_json::Value::Object(m))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("--metadata-file: creating a file in {}", dir.display()))?;
    tmp.write_all(&text)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("--metadata-file: writing {}", path.display()))?;
    Ok(())
}

/// A build reference unique to this run (buildx uses a random id).
fn build_ref(id: &Digest) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{id}{nanos}{}", std::process::id());
    Digest::of_bytes(seed.as_bytes()).hex()[..25].to_string()
}
