//! `rbuild build --check-reproducible`: builds twice, each in its own scratch store (so no cache is shared),
//! and compares the two images file by file with `compare`.

use super::options::{BuildOptions, OutputKind, OutputSpec, Progress};
use crate::compare::{compare, ImageInput};
use crate::store::LayerForm;

/// Returns true when both builds gave byte-identical images; prints the differences otherwise.
pub fn check(opts: &BuildOptions) -> anyhow::Result<bool> {
    let scratch = tempfile::tempdir()?;
    let mut archives = Vec::new();
    for run in 0..2 {
        let mut o = opts.clone();
        o.root = scratch.path().join(format!("root{run}"));
        o.no_cache = true;
        o.progress = Progress::Quiet;
        o.tags.clear();
        let dest = scratch.path().join(format!("image{run}.tar"));
        o.outputs = vec![OutputSpec {
            kind: OutputKind::Oci { tar: true },
            dest: dest.clone(),
        }];
        let r = super::build(&o)?;
        // The output above made the compressed blobs; this only reads their records.
        let store = crate::store::Store::open(&o.root)?;
        let img = store.export_image(
            &r.image_id,
            &[],
            LayerForm::Compress(o.compression, o.repro_profile),
        )?;
        let manifest = crate::image::manifest::build(
            crate::image::manifest::ManifestKind::Oci,
            &img.config_bytes,
            &img.layer_descs(),
        )?;
        eprintln!(
            "build {}: image {} manifest {}",
            run + 1,
            r.image_id,
            manifest.descriptor.digest
        );
        archives.push(dest);
    }
    let a = ImageInput::open(&archives[0].to_string_lossy(), None)?;
    let b = ImageInput::open(&archives[1].to_string_lossy(), None)?;
    let diffs = compare(&a, &b)?;
    let same_bytes = std::fs::read(&archives[0])? == std::fs::read(&archives[1])?;
    if diffs.is_empty() && same_bytes {
        eprintln!("reproducible: both builds produced identical images and identical output files");
        return Ok(true);
    }
    eprintln!("NOT reproducible:");
    for d in &diffs {
        eprintln!("{d}");
    }
    if diffs.is_empty() {
        eprintln!("the images are equal but the OCI archive files differ");
    }
    Ok(false)
}
