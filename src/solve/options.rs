//! What a build is asked to do: parsed from the CLI, independent of clap.

use crate::image::history::HistoryFormat;
use crate::layer::{Compression, Profile};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the build context comes from.
#[derive(Debug, Clone)]
pub enum ContextSource {
    Dir(PathBuf),
    /// A tar archive on stdin (`rbuild build -`).
    StdinTar,
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone)]
pub enum DockerfileSource {
    /// `CONTEXT/Dockerfile`.
    Default,
    Path(PathBuf),
    Stdin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// docker-archive tar (also a valid OCI layout, as Docker 25+ writes it).
    Docker,
    /// OCI image layout, as a tar or (tar=false) a directory.
    Oci { tar: bool },
    /// The final rootfs, flattened, as a tar.
    Tar,
    /// The final rootfs, flattened, into a directory.
    Local,
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub kind: OutputKind,
    pub dest: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Plain,
    /// Plain lines plus byte bars for transfers (a terminal on stderr).
    Tty,
    Quiet,
    /// One JSON object per event, shaped as BuildKit's `client.SolveStatus` (`--progress rawjson`).
    RawJson,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub root: PathBuf,
    pub context: ContextSource,
    pub dockerfile: DockerfileSource,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub outputs: Vec<OutputSpec>,
    pub compression: Compression,
    /// `--repro-profile=N`: the versioned output profile (compressor scheme) layers are written with.
    pub repro_profile: Profile,
    pub history_format: HistoryFormat,
    /// SOURCE_DATE_EPOCH: `created` of new history entries and the config, and the mtime clamp.
    pub source_date_epoch: Option<i64>,
    /// Clamp file mtimes in new layers to the epoch (on by default when an epoch is set).
    pub rewrite_timestamp: bool,
    pub secrets: BTreeMap<String, PathBuf>,
    /// Resource limits of every RUN (cgroup, ulimits, /dev/shm).
    pub resources: crate::exec::Resources,
    /// The network of RUN steps without `--network` (or with `--network=default`).
    pub network: crate::exec::Network,
    /// The `network.host` entitlement (`--allow network.host`, implied by `--network host`):
    /// without it `RUN --network=host` fails.
    pub allow_network_host: bool,
    /// `--add-host NAME:IP` entries, `(name, ip)`, written to every RUN's /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    pub progress: Progress,
    pub explain_cache: bool,
    /// Registry access (insecure hosts, config.json location) for pulls, pushes and the cache.
    pub registry: crate::registry::RegistryConfig,
    /// References to push the result to (`--push`, `-o type=registry,name=...`).
    pub push: Vec<String>,
    /// `--cache-to` exports and `--cache-from` imports of the build cache.
    pub cache_to: Vec<crate::registry::cache::CacheSpec>,
    pub cache_from: Vec<crate::registry::cache::CacheSpec>,
    /// How many independent stages may build at once (default: the number of cores).
    pub jobs: Option<usize>,
    /// Set from the CLI's SIGINT/SIGTERM handler: the build kills its containers, cleans up and returns
    /// `BuildError::Interrupted`.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// `--label K=V`: labels set on the final image's config.
    pub labels: BTreeMap<String, String>,
    /// `--pull`: re-resolve every base image in its registry even when the store has the tag.
    pub pull: bool,
    /// `--build-context`: context key (`plan::named::context_key`) -> the image (store name or
    /// id) the CLI turned the context into.
    pub named_contexts: BTreeMap<String, String>,
    /// `--annotation`: manifest, descriptor and index annotations of the outputs and pushes.
    pub annotations: Vec<crate::export::annotate::Annotation>,
    /// `--ssh`: agent socket per id, for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--squash`: the build's own layers become one on top of its base (classic Docker).
    pub squash: bool,
    /// `--provenance` / `--sbom`: attestations attached to OCI/docker outputs and pushes.
    pub attest: crate::attest::AttestOptions,
    /// `--platform a,b`: target platforms (empty: the host's). Several make an image index.
    pub platforms: Vec<crate::platform::Platform>,
    /// Make an image index even for one platform (attestation manifests need one, as in BuildKit).
    pub force_index: bool,
    /// Annotations of the image index (`--annotation index:K=V`).
    pub index_annotations: BTreeMap<String, String>,
}

impl BuildOptions {
    pub fn new(root: PathBuf, context: ContextSource) -> Self {
        BuildOptions {
            root,
            context,
            dockerfile: DockerfileSource::Default,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            outputs: Vec::new(),
            compression: Compression::default(),
            repro_profile: Profile::LATEST,
            history_format: HistoryFormat::Buildkit,
            source_date_epoch: None,
            rewrite_timestamp: true,
            secrets: BTreeMap::new(),
            resources: crate::exec::Resources::default(),
            network: crate::exec::Network::Default,
            allow_network_host: false,
            extra_hosts: Vec::new(),
            progress: Progress::Plain,
            explain_cache: false,
            registry: crate::registry::RegistryConfig::default(),
            push: Vec::new(),
            cache_to: Vec::new(),
            cache_from: Vec::new(),
            jobs: None,
            cancel: None,
            labels: BTreeMap::new(),
            pull: false,
            named_contexts: BTreeMap::new(),
            annotations: Vec::new(),
            ssh: BTreeMap::new(),
            squash: false,
            attest: crate::attest::AttestOptions::default(),
            platforms: Vec::new(),
            force_index: false,
            index_annotations: BTreeMap::new(),
        }
    }
}
