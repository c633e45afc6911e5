//! Runs a parsed command line.

use super::args::{BuildArgs, Cli, Command, HistoryFormatArg, ProgressArg};
use crate::image::history::HistoryFormat;
use crate::layer::Compression;
use crate::solve::{
    self, BuildOptions, ContextSource, DockerfileSource, OutputKind, OutputSpec, Progress,
};
use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The store root: `--root`/`RBUILD_ROOT`, else `/var/lib/rbuild` for root, else `$XDG_DATA_HOME/rbuild`.
pub fn default_root(given: Option<PathBuf>) -> PathBuf {
    if let Some(r) = given {
        return r;
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/rbuild");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("rbuild"),
        _ => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".local/share/rbuild"),
            None => PathBuf::from("/var/lib/rbuild"),
        },
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    let root = default_root(cli.root);
    let registry = crate::registry::RegistryConfig {
        insecure: cli.insecure_registry.clone(),
        docker_config: None,
    };
    // Every mount rbuild makes lives in its own mount namespace, so none outlives the process, even on
    // kill -9. Must happen while the process is still single-threaded.
    crate::snapshot::enter_private_mount_namespace()
        .context("entering a private mount namespace (rbuild needs root)")?;
    match cli.command {
        Command::Build(args) => run_build(root, *args, registry),
        Command::Images(a) => {
            let store = open_store(&root)?;
            let opts = crate::store::commands::ImagesOptions {
                quiet: a.quiet,
                digests: a.digests,
                no_trunc: a.no_trunc,
                json: a.format.as_deref() == Some("json")
                    || a.format.as_deref() == Some("{{json .}}"),
                reference: None,
            };
            crate::store::commands::images(&store, &mut std::io::stdout().lock(), &opts)?;
            Ok(0)
        }
        Command::Inspect(a) => {
            let store = open_store(&root)?;
            let snapdir = root.join("overlay2");
            let dirs = |cache_id: &str| snapdir.join(cache_id);
            crate::store::commands::inspect(
                &store,
                &mut std::io::stdout().lock(),
                &a.images,
                &dirs,
            )?;
            Ok(0)
        }
        Command::History(a) => {
            let store = open_store(&root)?;
            let opts = crate::store::commands::HistoryOptions {
                no_trunc: a.no_trunc,
                quiet: a.quiet,
                human: a.human,
                format: a.format,
            };
            crate::store::commands::history_with(
                &store,
                &mut std::io::stdout().lock(),
                &a.image,
                &opts,
            )?;
            Ok(0)
        }
        Command::Tag(a) => {
            let store = open_store(&root)?;
            let id = store
                .resolve(&a.source)?
                .ok_or_else(|| anyhow!("no such image: {}", a.source))?;
            let r = crate::image::reference::Reference::parse(&a.target)
                .map_err(|e| anyhow!("invalid reference {:?}: {e}", a.target))?;
            let _lock = store.lock()?;
            store.tag(&r, &id)?;
            Ok(0)
        }
        Command::Rmi(a) => {
            let store = open_store(&root)?;
            let snapshots = crate::snapshot::OverlaySnapshotter::open(&root.join("overlay2"))?;
            let freed = crate::store::commands::rmi(
                &store,
                &mut std::io::stdout().lock(),
                &a.images,
                a.force,
            )?;
            remove_snapshots(&snapshots, freed);
            Ok(0)
        }
        Command::Save(a) => {
            let store = open_store(&root)?;
            let mut tags = Vec::new();
            let mut id = None;
            for name in &a.images {
                let i = store
                    .resolve(name)?
                    .ok_or_else(|| anyhow!("no such image: {name}"))?;
                if !name.starts_with("sha256:") && !is_hex_prefix(name) {
                    tags.push(name.clone());
                }
                id = Some(i);
            }
            let id = id.ok_or_else(|| anyhow!("no image given"))?;
            let img = {
                // Leased: a concurrent `prune -a`/`rmi` keeps the blobs we are about to stream.
                let _lock = store.lock()?;
                if let Some(top) = store.image_top_layer(&id)? {
                    store.lease_layer(&top)?;
                }
                store.export_image(
                    &id,
                    &tags,
                    layer_form(a.compression.as_deref(), a.compression_level)?,
                )?
            };
            let tmp = a.output.with_extension("rbuild-partial");
            let res = (|| -> Result<()> {
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("{}", a.output.display()))?;
                let mut w = std::io::BufWriter::new(f);
                match a.format.as_str() {
                    "docker" => crate::export::docker_archive(&img, &mut w)?,
                    "oci" => crate::export::oci_layout_tar(&img, &mut w)?,
                    other => bail!("unknown --format {other:?} (docker or oci)"),
                };
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &a.output)
                    .with_context(|| format!("{}", a.output.display()))?;
                Ok(())
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res?;
            Ok(0)
        }
        Command::Load(a) => {
            let store = open_store(&root)?;
            let snapshots = crate::snapshot::OverlaySnapshotter::open(&root.join("overlay2"))?;
            store.recover(&snapshots)?;
            let loaded = crate::solve::load::load(&store, &snapshots, &a.input)?;
            if !a.quiet {
                for l in loaded {
                    println!("Loaded image: {l}");
                }
            }
            Ok(0)
        }
        Command::Prune(a) => {
            let store = open_store(&root)?;
            let snapshots = crate::snapshot::OverlaySnapshotter::open(&root.join("overlay2"))?;
            store.recover(&snapshots)?;
            let freed =
                crate::store::commands::prune(&store, &mut std::io::stdout().lock(), a.all)?;
            remove_snapshots(&snapshots, freed);
            crate::store::commands::prune_snapshots(
                &store,
                &snapshots,
                &mut std::io::stdout().lock(),
            )?;
            if a.all {
                // Kept `ADD <url>` downloads are build cache too (BuildKit's prune drops them).
                let freed = crate::context::remote::prune_cache(&root.join("cache").join("http"))?;
                if freed > 0 {
                    println!("Deleted kept downloads: {freed} bytes");
                }
            }
            Ok(0)
        }
        Command::Df => {
            let store = open_store(&root)?;
            crate::store::commands::df(&store, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Diff(a) => {
            let store = crate::store::Store::open(&root).ok();
            let ia = crate::compare::ImageInput::open(&a.image_a, store.as_ref())?;
            let ib = crate::compare::ImageInput::open(&a.image_b, store.as_ref())?;
            let diffs = crate::compare::compare(&ia, &ib)?;
            if diffs.is_empty() {
                println!("identical: {} and {}", a.image_a, a.image_b);
                Ok(0)
            } else {
                println!("{} and {} differ:", a.image_a, a.image_b);
                for d in diffs {
                    println!("{d}");
                }
                Ok(1)
            }
        }
        Command::Fsck(a) => {
            let store = open_store(&root)?;
            let snapshots = crate::snapshot::OverlaySnapshotter::open(&root.join("overlay2"))?;
            let opts = crate::store::FsckOptions { repair: a.repair };
            let report = store.fsck(&snapshots, &opts, &mut std::io::stdout().lock())?;
            // 0: verified; 1: problems remain (after repair, if asked).
            Ok(if report.remaining.is_empty() { 0 } else { 1 })
        }
        Command::Pull(a) => super::registry::pull(&root, &registry, a),
        Command::Push(a) => super::registry::push(&root, &registry, a),
        Command::Login(a) => super::registry::login(&registry, a),
        Command::Logout(a) => super::registry::logout(&registry, a),
    }
}

/// Removes freed snapshots, children first (a snapshot with children refuses removal).
fn remove_snapshots(snapshots: &crate::snapshot::OverlaySnapshotter, mut ids: Vec<String>) {
    for _ in 0..ids.len().max(1) {
        ids.retain(|id| snapshots.remove(id).is_err());
        if ids.is_empty() {
            break;
        }
    }
}

fn is_hex_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn open_store(root: &Path) -> Result<crate::store::Store> {
    crate::store::Store::open(root)
        .with_context(|| format!("opening the store at {}", root.display()))
}

fn run_build(
    root: PathBuf,
    a: BuildArgs,
    registry: crate::registry::RegistryConfig,
) -> Result<i32> {
    let context = if a.context == "-" {
        ContextSource::StdinTar
    } else {
        ContextSource::Dir(PathBuf::from(&a.context))
    };
    if let ContextSource::Dir(d) = &context {
        if !d.exists() {
            bail!(
                "unable to prepare context: path {:?} not found",
                d.display().to_string()
            );
        }
    }
    if let Some(p) = &a.platform {
        if p != "linux/amd64" && p != "linux/x86_64" {
            bail!("platform {p:?} is not supported: rbuild builds for the native linux/amd64 only");
        }
    }
    let mut opts = BuildOptions::new(root, context.clone());
    opts.registry = registry;
    opts.dockerfile = match a.file.as_deref() {
        None => DockerfileSource::Default,
        Some("-") => DockerfileSource::Stdin,
        Some(p) => DockerfileSource::Path(PathBuf::from(p)),
    };
    if let (DockerfileSource::Path(p), ContextSource::Dir(_)) = (&opts.dockerfile, &context) {
        if !p.exists() {
            bail!("unable to read Dockerfile: {} not found", p.display());
        }
    }
    if let (DockerfileSource::Default, ContextSource::Dir(d)) = (&opts.dockerfile, &context) {
        let p = d.join("Dockerfile");
        if !p.exists() {
            bail!("unable to read Dockerfile: {} not found", p.display());
        }
    }
    opts.tags = a.tags.clone();
    for t in &opts.tags {
        crate::image::reference::Reference::parse(t)
            .map_err(|e| anyhow!("invalid tag {t:?}: {e}"))?;
    }
    opts.build_args = parse_build_args(&a.build_args)?;
    opts.target = a.target.clone();
    opts.no_cache = a.no_cache;
    opts.no_cache_filter = a.no_cache_filter.clone();
    opts.history_format = match a.history_format {
        HistoryFormatArg::Buildkit => HistoryFormat::Buildkit,
        HistoryFormatArg::Classic => HistoryFormat::Classic,
    };
    opts.progress = match (a.progress, a.quiet) {
        (_, true) | (ProgressArg::Quiet, _) => Progress::Quiet,
        (ProgressArg::Tty, _) => Progress::Tty,
        (ProgressArg::Auto, _) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            Progress::Tty
        }
        _ => Progress::Plain,
    };
    opts.explain_cache = a.explain_cache;
    opts.network_none = match a.network.as_str() {
        "none" => true,
        "host" | "default" => false,
        other => bail!("unsupported --network {other:?} (host or none)"),
    };
    // Secrets given as env=VAR are written to files in here (tmpfs when there is one), removed on return.
    let secret_dir = if a.secret.iter().any(|s| s.contains("env=")) {
        Some(
            tempfile::Builder::new()
                .prefix("rbuild-secrets-")
                .tempdir_in(if Path::new("/dev/shm").is_dir() {
                    PathBuf::from("/dev/shm")
                } else {
                    std::env::temp_dir()
                })
                .context("creating a directory for --secret env= values")?,
        )
    } else {
        None
    };
    for s in &a.secret {
        let (id, path) = parse_secret(s, secret_dir.as_ref().map(|d| d.path()))?;
        opts.secrets.insert(id, path);
    }
    let mut compression: Option<Compression> = None;
    let mut level: Option<i64> = None;
    if a.push {
        opts.push.extend(a.tags.iter().cloned());
    }
    for c in &a.cache_to {
        opts.cache_to.push(
            crate::registry::cache::CacheSpec::parse(c).map_err(|e| anyhow!("--cache-to: {e}"))?,
        );
    }
    for c in &a.cache_from {
        opts.cache_from.push(
            crate::registry::cache::CacheSpec::parse(c)
                .map_err(|e| anyhow!("--cache-from: {e}"))?,
        );
    }
    for o in &a.outputs {
        if let Some(names) = super::registry::registry_output(o, &a.tags)? {
            opts.push.extend(names);
            continue;
        }
        let (spec, c, l, rewrite) = parse_output(o)?;
        if let Some(c) = c {
            compression = Some(c);
        }
        if let Some(l) = l {
            level = Some(l);
        }
        if let Some(r) = rewrite {
            opts.rewrite_timestamp = r;
        }
        if let Some(parent) = spec.dest.parent() {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                bail!(
                    "output destination {}: directory {} does not exist",
                    spec.dest.display(),
                    parent.display()
                );
            }
        }
        opts.outputs.push(spec);
    }
    opts.compression = with_level(compression.unwrap_or_default(), level)?;
    if let Some(n) = a.repro_profile {
        opts.repro_profile = crate::layer::Profile::from_number(n)
            .ok_or_else(|| anyhow!("--repro-profile {n}: unknown profile (1 or 2)"))?;
    }
    opts.source_date_epoch = match a.source_date_epoch.as_deref() {
        None | Some("") => None,
        Some(v) => Some(resolve_epoch(v, &context, &opts)?),
    };
    opts.jobs = a.jobs.map(usize::from);
    opts.cancel = Some(cancel_on_signals()?);
    if a.check_reproducible {
        return crate::solve::repro::check(&opts).map(|same| if same { 0 } else { 1 });
    }

    let res = match solve::build(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rbuild: error: {e}");
            return Ok(e.exit_code());
        }
    };
    if let Some(p) = &a.iidfile {
        std::fs::write(p, res.image_id.to_string())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", res.image_id)?;
    Ok(0)
}

/// SIGINT/SIGTERM set the build's cancel flag: running containers are killed, snapshots unmounted and
/// removed, and the build exits with 130. A second signal exits at once (the mounts die with rbuild's
/// private mount namespace, the containers with their helper's PDEATHSIG).
fn cancel_on_signals() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The shutdown must be registered first: it then only fires once the flag is already set.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .context("installing the SIGINT/SIGTERM handler")?;
        signal_hook::flag::register(sig, flag.clone())
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    Ok(flag)
}

fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) => {
                m.insert(k.to_string(), v.to_string());
            }
            // `--build-arg K` takes K from the environment; unset means "not given", as docker does.
            None => {
                if let Ok(v) = std::env::var(a) {
                    m.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(m)
}

/// `--secret id=ID,src=PATH` or `id=ID,env=VAR` (as docker buildx). An env value is written to a 0600
/// file in `env_dir`, since RUN mounts secrets from files.
fn parse_secret(s: &str, env_dir: Option<&Path>) -> Result<(String, PathBuf)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src", v)) | Some(("source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", "file")) | Some(("type", "env")) => {}
            _ => bail!("invalid --secret {s:?}: expected id=ID,src=PATH or id=ID,env=VAR"),
        }
    }
    let id = id.ok_or_else(|| anyhow!("invalid --secret {s:?}: missing id="))?;
    if let Some(var) = env {
        let value = std::env::var_os(&var)
            .ok_or_else(|| anyhow!("secret {id}: environment variable {var} is not set"))?;
        let dir = env_dir.ok_or_else(|| anyhow!("secret {id}: no directory for env secrets"))?;
        let path = dir.join(crate::digest::Digest::of_bytes(id.as_bytes()).hex());
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("secret {id}: {}", path.display()))?;
        f.write_all(std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()))
            .with_context(|| format!("secret {id}: {}", path.display()))?;
        return Ok((id, path));
    }
    let src = src.ok_or_else(|| anyhow!("invalid --secret {s:?}: missing src="))?;
    if !src.is_file() {
        bail!("secret {id}: {} is not a file", src.display());
    }
    Ok((id, src))
}

type ParsedOutput = (OutputSpec, Option<Compression>, Option<i64>, Option<bool>);

/// Parses `-o type=...,dest=...` (and the `-o DIR` shorthand for type=local).
pub fn parse_output(s: &str) -> Result<ParsedOutput> {
    if !s.contains('=') {
        return Ok((
            OutputSpec {
                kind: OutputKind::Local,
                dest: PathBuf::from(s),
            },
            None,
            None,
            None,
        ));
    }
    let mut kind = None;
    let mut dest = None;
    let mut tar = true;
    let mut compression = None;
    let mut level = None;
    let mut rewrite = None;
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid output {s:?}: {part:?} is not key=value"))?;
        match k {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(PathBuf::from(v)),
            "tar" => tar = parse_bool(v).ok_or_else(|| anyhow!("invalid tar={v:?}"))?,
            "compression" => {
                compression = Some(match v {
                    "gzip" => Compression::Gzip { level: 6 },
                    "zstd" => Compression::Zstd { level: 3 },
                    "uncompressed" => Compression::Uncompressed,
                    other => bail!("unsupported compression {other:?} (gzip, zstd, uncompressed)"),
                })
            }
            "compression-level" => {
                level = Some(
                    v.parse::<i64>()
                        .map_err(|_| anyhow!("invalid compression-level {v:?}"))?,
                )
            }
            "rewrite-timestamp" => {
                rewrite =
                    Some(parse_bool(v).ok_or_else(|| anyhow!("invalid rewrite-timestamp={v:?}"))?)
            }
            "name" | "force-compression" | "oci-mediatypes" => {}
            other => bail!("unknown output option {other:?} in {s:?}"),
        }
    }
    let dest = dest.ok_or_else(|| anyhow!("output {s:?} needs dest="))?;
    let kind = match kind.as_deref() {
        Some("docker") => OutputKind::Docker,
        Some("oci") => OutputKind::Oci { tar },
        Some("tar") => OutputKind::Tar,
        Some("local") => OutputKind::Local,
        Some(other) => bail!("unsupported output type {other:?} (docker, oci, tar, local)"),
        None => bail!("output {s:?} needs type="),
    };
    Ok((OutputSpec { kind, dest }, compression, level, rewrite))
}

/// `--compression/--compression-level` of save and push: which blobs the layers ship as.
pub(super) fn layer_form(
    compression: Option<&str>,
    level: Option<i64>,
) -> Result<crate::store::LayerForm> {
    let c = match compression {
        None if level.is_some() => bail!("--compression-level needs --compression"),
        None | Some("uncompressed") => return Ok(crate::store::LayerForm::AsStored),
        Some("gzip") => Compression::Gzip { level: 6 },
        Some("zstd") => Compression::Zstd { level: 3 },
        Some(other) => bail!("unsupported --compression {other:?} (gzip, zstd, uncompressed)"),
    };
    Ok(crate::store::LayerForm::Compress(
        with_level(c, level)?,
        crate::layer::Profile::LATEST,
    ))
}

/// Applies `compression-level=N` to the chosen compression, within each codec's range.
fn with_level(c: Compression, level: Option<i64>) -> Result<Compression> {
    let Some(l) = level else { return Ok(c) };
    match c {
        Compression::Gzip { .. } if (0..=9).contains(&l) => {
            Ok(Compression::Gzip { level: l as u32 })
        }
        Compression::Zstd { .. } if (1..=22).contains(&l) => {
            Ok(Compression::Zstd { level: l as i32 })
        }
        Compression::Uncompressed => bail!("compression-level needs compression=gzip or zstd"),
        _ => bail!("compression-level {l} is out of range (gzip 0-9, zstd 1-22)"),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// SOURCE_DATE_EPOCH: a number, `git` (last commit time of the context's repository), or `context`
/// (newest mtime among the context's files that are not ignored).
fn resolve_epoch(v: &str, context: &ContextSource, opts: &BuildOptions) -> Result<i64> {
    if let Ok(n) = v.parse::<i64>() {
        if n < 0 {
            bail!("SOURCE_DATE_EPOCH must not be negative");
        }
        return Ok(n);
    }
    let dir = match context {
        ContextSource::Dir(d) => d.clone(),
        ContextSource::StdinTar => bail!("SOURCE_DATE_EPOCH={v} needs a context directory"),
    };
    match v {
        "git" => {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(["log", "-1", "--format=%ct"])
                .output()
                .context("running git to read the last commit time")?;
            if !out.status.success() {
                bail!(
                    "SOURCE_DATE_EPOCH=git: {} is not in a git repository with commits",
                    dir.display()
                );
            }
            let s = String::from_utf8_lossy(&out.stdout);
            s.trim()
                .parse::<i64>()
                .map_err(|_| anyhow!("unexpected git output {s:?}"))
        }
        "context" => {
            let df = match &opts.dockerfile {
                DockerfileSource::Path(p) => p.clone(),
                _ => dir.join("Dockerfile"),
            };
            let ctx = crate::context::Context::open(&dir, &df)?;
            let mut newest = 0i64;
            for e in walkdir::WalkDir::new(&dir).follow_links(false) {
                let e = e?;
                let rel = e.path().strip_prefix(&dir).unwrap_or(e.path());
                if rel.as_os_str().is_empty() || ctx.is_ignored(&rel.to_string_lossy()) {
                    continue;
                }
                use std::os::unix::fs::MetadataExt;
                newest = newest.max(e.metadata()?.mtime());
            }
            Ok(newest)
        }
        other => {
            bail!("invalid SOURCE_DATE_EPOCH {other:?}: a number of seconds, `git` or `context`")
        }
    }
}
