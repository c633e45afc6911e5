//! `--squash`, as classic Docker's (moby's `SquashImage`): the build's own layers (those after
//! its base image's) become one layer on top of the base; their history entries stay, marked
//! `empty_layer`, and one entry `merge <id> to <parent>` (`create new from <id>` without a base)
//! is added for the new layer. The squashed image is imported like a loaded one and takes the
//! build's tags (docs/compat.md "CLI flags").

use super::error::BuildError;
use super::solver::Solver;
use super::state::StageResult;
use crate::digest::{Digest, HashingWriter};
use crate::image::{History, ImageConfig, LayerDesc};
use crate::store::LayerForm;
use std::io::Write;
use std::path::Path;

impl Solver<'_> {
    /// Squashes image `id` (the build's result `r`); returns the new image's id, tagged with the
    /// build's tags when `tag`.
    pub(super) fn squash(
        &self,
        r: &StageResult,
        id: &Digest,
        tag: bool,
    ) -> Result<Digest, BuildError> {
        let store = self.store;
        let step = self.reporter.start("squashing the build's layers");
        let config_of = |d: &Digest| -> Result<ImageConfig, BuildError> {
            let bytes = store.image_config(d).map_err(BuildError::store)?;
            ImageConfig::from_bytes(&bytes).map_err(BuildError::store)
        };
        let mut config = config_of(id)?;
        let parent = match &r.parent_image {
            Some(p) => Some((p, config_of(p)?)),
            None => None,
        };
        let (keep_layers, keep_history) = match &parent {
            Some((_, pc))
                if config.rootfs.diff_ids.starts_with(&pc.rootfs.diff_ids)
                    && pc.history.len() <= config.history.len() =>
            {
                (pc.rootfs.diff_ids.len(), pc.history.len())
            }
            _ => (0, 0),
        };
        let img = store
            .export_image(id, &[], LayerForm::AsStored)
            .map_err(BuildError::store)?;
        let own: Vec<&Path> = img.layers[keep_layers..]
            .iter()
            .map(|(_, p)| p.as_path())
            .collect();
        let io = |e: std::io::Error| BuildError::io(&self.scratch, e);
        let merged = tempfile::NamedTempFile::new_in(&self.scratch).map_err(io)?;
        let out = HashingWriter::new(std::io::BufWriter::new(merged.reopen().map_err(io)?));
        let out = crate::layer::squash::merge_layers(&own, out)
            .map_err(|e| BuildError::Internal(format!("squashing layers: {e}")))?;
        let (mut file, diff_id, size) = out.finish();
        file.flush().map_err(io)?;
        drop(file);

        let now = self.now_created();
        config.rootfs.diff_ids.truncate(keep_layers);
        config.rootfs.diff_ids.push(diff_id.clone());
        for h in config.history.iter_mut().skip(keep_history) {
            h.empty_layer = true;
        }
        config.history.push(History {
            created: Some(now.clone()),
            comment: match &parent {
                Some((p, _)) if keep_layers > 0 || keep_history > 0 => format!("merge {id} to {p}"),
                _ => format!("create new from {id}"),
            },
            ..Default::default()
        });
        config.created = Some(now);
        let config_bytes = config.to_bytes().map_err(BuildError::store)?;
        let mut layers = img.layers[..keep_layers].to_vec();
        layers.push((
            LayerDesc {
                diff_id: diff_id.clone(),
                digest: diff_id,
                size,
                uncompressed_size: size,
                media_type: crate::image::manifest::MEDIA_OCI_LAYER.to_string(),
            },
            merged.path().to_path_buf(),
        ));
        let squashed = crate::export::ExportImage {
            config_bytes,
            layers,
            tags: Vec::new(),
            manifest_annotations: Default::default(),
            descriptor_annotations: Default::default(),
        };
        // Imported as `rbuild load` imports a layout: the new layer gets its snapshot.
        let layout = tempfile::Builder::new()
            .prefix("squash-")
            .tempdir_in(&self.scratch)
            .map_err(io)?;
        crate::export::oci_layout_dir(&squashed, layout.path()).map_err(BuildError::export)?;
        super::load::load(store, self.snapshots, layout.path())
            .map_err(|e| BuildError::Internal(format!("importing the squashed image: {e}")))?;
        let new_id = Digest::of_bytes(&squashed.config_bytes);
        for t in self.opts.tags.iter().filter(|_| tag) {
            let reference = crate::image::Reference::parse(t)
                .map_err(|e| BuildError::Usage(format!("invalid tag {t:?}: {e}")))?;
            store.tag(&reference, &new_id).map_err(BuildError::store)?;
        }
        self.reporter.done(step);
        Ok(new_id)
    }
}
