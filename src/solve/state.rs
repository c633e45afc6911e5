//! The state of a stage while its steps are solved.

use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::platform::Platform;
use crate::store::LayerRecord;

/// What a finished stage leaves for later stages and for the image.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    /// Cache key of the stage's final state: later stages that build on it chain from here.
    pub key: Digest,
    /// The id of the base image, recorded as the parent of the built image.
    pub parent_image: Option<Digest>,
}

#[derive(Debug, Clone)]
pub struct StageState {
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    pub key: Digest,
    pub parent_image: Option<Digest>,
}

impl StageState {
    /// `FROM scratch`: no layers, the default PATH, the target platform.
    pub fn scratch(platform: &Platform) -> Self {
        let config = ImageConfig::scratch(
            &platform.architecture,
            &platform.os,
            platform.variant.as_deref(),
        );
        StageState {
            config,
            layers: Vec::new(),
            key: Digest::of_bytes(format!("scratch {}", platform).as_bytes()),
            parent_image: None,
        }
    }

    pub fn from_result(r: StageResult) -> Self {
        StageState {
            config: r.config,
            layers: r.layers,
            key: r.key,
            parent_image: r.parent_image,
        }
    }

    pub fn into_result(self) -> StageResult {
        StageResult {
            config: self.config,
            layers: self.layers,
            key: self.key,
            parent_image: self.parent_image,
        }
    }

    pub fn chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }

    pub fn top_cache_id(&self) -> Option<&str> {
        self.layers.last().map(|l| l.cache_id.as_str())
    }
}
