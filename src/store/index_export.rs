//! `export_index`: a stored image index ready for `export::oci_index_*`,
//! `export::docker_index_archive` and `registry::push_index` (layers in the requested form).

use crate::digest::Digest;
use crate::export::{ExportContent, ExportEntry, ExportIndex};
use crate::image::index::EntryContent;
use crate::store::{LayerForm, Store, StoreError};

impl Store {
    /// The index `id` with its images' blobs in `form`, named by `tags`. `default` (os, arch,
    /// variant) picks the image a classic `docker load` tags (see `Store::index_default_image`).
    pub fn export_index(
        &self,
        id: &Digest,
        tags: &[String],
        form: LayerForm,
        default: (&str, &str, Option<&str>),
    ) -> Result<ExportIndex, StoreError> {
        let index = self.get_index(id)?;
        let default_image = Self::index_default_image(&index, default);
        let mut entries = Vec::new();
        let mut default_entry = 0;
        for (i, e) in index.manifests.iter().enumerate() {
            let content = match &e.content {
                EntryContent::Image(image) => {
                    if Some(image) == default_image.as_ref() {
                        default_entry = i;
                    }
                    ExportContent::Image(self.export_image(image, &[], form)?)
                }
                EntryContent::Artifact(a) => ExportContent::Artifact(a.clone()),
            };
            entries.push(ExportEntry {
                content,
                platform: e.platform.clone(),
                annotations: e.annotations.clone(),
                subject: e.subject,
            });
        }
        Ok(ExportIndex {
            entries,
            annotations: index.annotations.clone(),
            tags: tags.to_vec(),
            default_entry,
        })
    }
}
