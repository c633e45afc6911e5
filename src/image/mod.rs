//! Image config, history and manifests.
