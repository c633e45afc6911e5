//! clap definitions: flags named as `docker build` / `docker image` name them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rbuild",
    version,
    about = "A daemonless Dockerfile image builder",
    long_about = "A daemonless Dockerfile image builder.\n\n`rbuild -t NAME CONTEXT` is short for `rbuild build -t NAME CONTEXT`."
)]
pub struct Cli {
    /// Where rbuild keeps images, layers and the build cache
    /// [default: /var/lib/rbuild for root, $XDG_DATA_HOME/rbuild otherwise]
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    pub root: Option<PathBuf>,

    /// Reach this registry (host[:port]) over plain HTTP; repeatable (loopback always is)
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "RBUILD_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,

    /// Overall deadline in seconds for one registry transfer (a manifest, a blob with its
    /// resumes, an upload); 0 disables it [default: 3600]
    #[arg(
        long = "registry-timeout",
        global = true,
        env = "RBUILD_REGISTRY_TIMEOUT"
    )]
    pub registry_timeout: Option<u64>,

    /// Cap on what one ADD archive or image layer expands to (logical size, sparse holes
    /// included); bytes or with a k/m/g/t suffix (powers of 1024); 0 disables it [default: 64g]
    #[arg(long = "max-expanded-size", global = true, env = "RBUILD_MAX_EXPANDED_SIZE", value_parser = parse_byte_size)]
    pub max_expanded_size: Option<u64>,

    /// Free space an extraction must leave on its filesystem (at most 5% of it); 0 disables the
    /// check [default: 512m]
    #[arg(long = "min-free-space", global = true, env = "RBUILD_MIN_FREE_SPACE", value_parser = parse_byte_size)]
    pub min_free_space: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// List images
    Images(ImagesArgs),
    /// Show low-level information on images (JSON)
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Save an image to a tar archive (docker-archive, or OCI with --format oci)
    Save(SaveArgs),
    /// Load an image from a docker-archive or OCI layout
    Load(LoadArgs),
    /// Remove unreferenced layers, snapshots and build cache
    Prune(PruneArgs),
    /// Show disk usage of images, layers and cache
    Df,
    /// Compare two images (store names/ids, docker-archive or OCI layout paths) and explain differences
    Diff(DiffArgs),
    /// Rebuild an image from its provenance and check that it comes out byte for byte the same
    Verify(VerifyArgs),
    /// Verify the store: blobs, layers, snapshots and references; --repair fixes what is broken
    Fsck(FsckArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Push an image to a registry
    Push(PushArgs),
    /// Log in to a registry (stores credentials in ~/.docker/config.json)
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout
    Completion(CompletionArgs),
    /// Print the man page (roff) to stdout
    Man,
    /// Show how rbuild runs here: store root, rootless mode and id maps, snapshotter
    Info,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Fix or remove what is broken, printing each action (default: only report)
    #[arg(long)]
    pub repair: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Plain,
    Quiet,
    Tty,
    /// One JSON object per event, in BuildKit's `SolveStatus` shape (docs/compat.md)
    Rawjson,
}

/// `--call`: what a build returns instead of (or besides) an image.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CallArg {
    /// Build the image (default)
    Build,
    /// Run the build checks only; exit 1 when any check reports
    Check,
    /// List the build args and secrets the target uses
    Outline,
    /// List the stages and their descriptions
    Targets,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormatArg {
    Buildkit,
    Classic,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Path to the Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set a build-time variable (K=V, or K alone to take it from the environment); repeatable
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages; repeatable
    #[arg(long = "no-cache-filter")]
    pub no_cache_filter: Vec<String>,
    /// Print only the image id
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image id to this file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Progress output: auto, plain, tty, quiet or rawjson
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    /// Target platforms, comma-separated (linux/amd64,linux/arm64): several make an image index
    #[arg(long)]
    pub platform: Option<String>,
    /// Output: type=docker|oci|tar|local,dest=PATH[,tar=false][,compression=gzip|zstd|uncompressed][,compression-level=N][,rewrite-timestamp=BOOL]; repeatable
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Format of history `created_by` strings
    #[arg(long, value_enum, default_value = "buildkit")]
    pub history_format: HistoryFormatArg,
    /// Output profile to write layers with (docs/reproducibility.md); default: the newest (2)
    #[arg(long, value_name = "N")]
    pub repro_profile: Option<u32>,
    /// Timestamp for `created` and clamped file mtimes (seconds since the epoch, `git` or `context`)
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<String>,
    /// Secret for RUN --mount=type=secret: id=ID,src=PATH (or env=VAR); repeatable
    #[arg(long)]
    pub secret: Vec<String>,
    /// Network for RUN: default (own namespace, outbound via slirp4netns or pasta), none, or host
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Entitlement for the Dockerfile: network.host (lets `RUN --network=host` use the host network)
    #[arg(long)]
    pub allow: Vec<String>,
    /// Extra /etc/hosts entry for RUN: NAME:IP (IP may be host-gateway); repeatable
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Explain every cache miss (always on with --progress plain)
    #[arg(long)]
    pub explain_cache: bool,
    /// Build twice in separate scratch stores and compare the results; fails on any difference
    #[arg(long)]
    pub check_reproducible: bool,
    /// Export the build cache: type=registry,ref=R[,mode=min|max], type=local,dest=DIR or type=inline; repeatable
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Import a build cache: type=registry,ref=R or type=local,src=DIR; repeatable
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Push the image to its -t names after the build (same as -o type=registry)
    #[arg(long)]
    pub push: bool,
    /// How many independent stages may build at once (default: the number of cores)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    // --- RUN resource limits (issue 16; README.md "Resource limits"), as `docker build` ---
    /// Memory limit of each RUN (e.g. 512m, 2g)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit of each RUN; -1 for unlimited swap (default: twice --memory)
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight) of each RUN
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// CFS period of each RUN, in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CFS quota of each RUN, in microseconds per period
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs each RUN may use (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Parent cgroup (from the cgroup root) of the RUN cgroups
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Ulimit of each RUN: name=soft[:hard] (nofile=1024:2048); repeatable
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm in each RUN (default 64m)
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Most processes a RUN may have at once; 0 or -1 for no limit (default 2048)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    // --- end of RUN resource limits ---
    /// Set image labels (K=V); repeatable. Override LABEL instructions of the Dockerfile
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Provenance attestation: true, false, mode=min, mode=max[,builder-id=URI] (default: min on
    /// pushes and OCI outputs; BUILDX_NO_DEFAULT_ATTESTATIONS=1 turns the default off)
    #[arg(long, value_name = "VALUE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub provenance: Option<String>,
    /// Attach an SPDX 2.3 SBOM attestation of the final root filesystem
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub sbom: Option<String>,
    /// Write buildx's build result metadata (digests, name, build ref) as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Load the image into the local Docker engine (same as -o type=docker without dest)
    #[arg(long)]
    pub load: bool,
    /// Run a build method instead of building: check, outline or targets
    #[arg(long, value_enum, default_value = "build")]
    pub call: CallArg,
    /// Shorthand for --call=check
    #[arg(long)]
    pub check: bool,
    /// Additional build context NAME=VALUE: a directory, docker-image://REF,
    /// oci-layout://PATH[:TAG|@DIGEST], a git URL or an https URL to a tarball; `FROM NAME` and
    /// `COPY --from=NAME` use it before any stage or image of that name; repeatable
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Add an annotation: [TYPE[,TYPE][\[PLATFORM\]]:]KEY=VALUE with TYPE manifest (default),
    /// manifest-descriptor, index or index-descriptor; repeatable
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh: default ($SSH_AUTH_SOCK) or ID=SOCKET|KEYFILE[,KEYFILE];
    /// repeatable
    #[arg(long, value_name = "default|ID[=SOCKET|KEY]")]
    pub ssh: Vec<String>,
    /// Squash the build's own layers into one on top of the base image (classic docker build)
    #[arg(long)]
    pub squash: bool,
    /// Always look up base images in their registry and use the newest digest, even when the
    /// store has the tag
    #[arg(long)]
    pub pull: bool,
    /// Accepted for docker compatibility; no effect (rbuild keeps no intermediate containers)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", hide_default_value = true)]
    pub rm: bool,
    /// Accepted for docker compatibility; no effect (rbuild keeps no intermediate containers)
    #[arg(long)]
    pub force_rm: bool,
    /// Accepted for docker compatibility; no effect (the context is read in place, never sent)
    #[arg(long)]
    pub compress: bool,
    /// Accepted for docker compatibility: `default` or `process` only (Windows isolation has no
    /// meaning on Linux)
    #[arg(long)]
    pub isolation: Option<String>,
    /// Build context: a directory, or `-` for a tar on stdin
    pub context: String,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: `json` for one JSON object per line
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Print the SLSA provenance attestation of IMAGE (an OCI layout dir or tar, a
    /// docker-archive, an image of the store, or a registry reference)
    #[arg(long, conflicts_with = "sbom")]
    pub provenance: bool,
    /// Print the SPDX SBOM attestation of IMAGE (as --provenance)
    #[arg(long)]
    pub sbom: bool,
    /// For a multi-platform image: inspect the image of this platform (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format (`--human=false`: bytes and RFC 3339)
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub human: bool,
    /// `table`, `table TEMPLATE`, `json` or a template (`{{.ID}}`, `{{.CreatedSince}}`,
    /// `{{.CreatedAt}}`, `{{.CreatedBy}}`, `{{.Size}}`, `{{.Comment}}`, `{{json .}}`)
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file (required: rbuild does not write archives to a terminal)
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// docker (default) or oci
    #[arg(long, default_value = "docker")]
    pub format: String,
    /// Ship layers stored as tars compressed: gzip or zstd (made once, then kept in the store).
    /// Default: as stored (built layers as tars, as `docker save` writes them; pulled ones as pulled)
    #[arg(long)]
    pub compression: Option<String>,
    /// Level for --compression (gzip 0-9, zstd 1-22)
    #[arg(long)]
    pub compression_level: Option<i64>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from a docker-archive or OCI layout (tar or directory)
    #[arg(short = 'i', long)]
    pub input: PathBuf,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt (rbuild never prompts; accepted for docker compatibility)
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The build context: a directory, or GIT-URL#COMMIT (default: the git remote and commit the
    /// provenance records)
    #[arg(long, value_name = "DIR|GIT-URL#COMMIT")]
    pub context: Option<String>,
    /// Print a machine-readable report (JSON) on stdout
    #[arg(long)]
    pub json: bool,
    /// Rebuild even when RUN steps had network access (their downloads may differ)
    #[arg(long)]
    pub allow_network: bool,
    /// Secret the build used: id=ID,src=PATH; repeatable
    #[arg(long, value_name = "id=ID,src=PATH")]
    pub secret: Vec<String>,
    /// The image: an OCI layout dir or tar, a docker-archive, or a registry reference
    pub image: String,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub image_a: String,
    pub image_b: String,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Platform to pull from a multi-platform image (default: the host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Layers built here ship as gzip (default, as `docker push`), zstd or uncompressed; pulled
    /// layers ship as they came
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Level for --compression (gzip 0-9, zstd 1-22)
    #[arg(long)]
    pub compression_level: Option<i64>,
    /// NAME[:TAG] (an image in the store)
    pub name: String,
    /// Push under this name instead (like `docker tag NAME TARGET && docker push TARGET`)
    pub target: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: command lines are visible to other users)
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry host[:port] (default: docker.io)
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: docker.io)
    pub server: Option<String>,
}

/// `123`, `64k`, `512m`, `64g`, `1t` (optionally with a trailing `b`/`B`): powers of 1024, as
/// docker's size flags read them.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 512m or 64g"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod size_tests {
    use super::parse_byte_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("123"), Ok(123));
        assert_eq!(parse_byte_size("64k"), Ok(64 << 10));
        assert_eq!(parse_byte_size("512M"), Ok(512 << 20));
        assert_eq!(parse_byte_size("64gb"), Ok(64 << 30));
        assert!(parse_byte_size("lots").is_err());
        assert!(parse_byte_size("99999999t").is_err());
    }
}
