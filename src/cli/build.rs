//! `rbuild build`: turns the build flags into `BuildOptions` (secrets, outputs, SOURCE_DATE_EPOCH)
//! and runs the build with Ctrl-C cancelling it.

use super::args::{BuildArgs, CallArg, HistoryFormatArg, ProgressArg};
use super::options::{parse_output, with_level};
use crate::image::history::HistoryFormat;
use crate::layer::Compression;
use crate::solve::{self, BuildOptions, ContextSource, DockerfileSource, Progress};
use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub(super) fn run_build(
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
    let mut opts = BuildOptions::new(root, context.clone());
    if let Some(p) = &a.platform {
        opts.platforms = crate::platform::Platform::parse_list(p).map_err(|e| anyhow!(e))?;
    }
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
            // As BuildKit: a lowercase `dockerfile` is the fallback.
            let lower = d.join("dockerfile");
            if !lower.exists() {
                bail!("unable to read Dockerfile: {} not found", p.display());
            }
            opts.dockerfile = DockerfileSource::Path(lower);
        }
    }
    opts.tags = a.tags.clone();
    for t in &opts.tags {
        crate::image::reference::Reference::parse(t)
            .map_err(|e| anyhow!("invalid tag {t:?}: {e}"))?;
    }
    opts.build_args = parse_build_args(&a.build_args)?;
    super::proxies::add_from_config(opts.registry.config_dir().as_deref(), &mut opts.build_args)?;
    let call = if a.check { CallArg::Check } else { a.call };
    let checked = super::check::run_checks(
        &a,
        &opts.root,
        &opts.build_args,
        a.check || a.call != CallArg::Build,
    )?;
    if call != CallArg::Build {
        return super::check::call(&a, checked, call);
    }
    if let Some(c) = &checked {
        super::check::warn_before_build(c, a.progress == ProgressArg::Rawjson)?;
    }
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
        (ProgressArg::Rawjson, _) => Progress::RawJson,
        (ProgressArg::Auto, _) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            Progress::Tty
        }
        _ => Progress::Plain,
    };
    opts.explain_cache = a.explain_cache;
    opts.pull = a.pull;
    opts.squash = a.squash;
    super::network::apply(&a.network, &a.allow, &a.add_host, &mut opts)?;
    opts.resources = resources(&a)?;
    // Cgroups of RUNs whose rbuild was killed (kill -9) go now, not only at the next RUN.
    crate::exec::sweep_stale_cgroups(&opts.resources);
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
    let mut load = a.load;
    for o in &a.outputs {
        // `-o type=docker` without dest: into the local Docker engine, as buildx's docker driver.
        if o == "type=docker" || (o.starts_with("type=docker,") && !o.contains("dest=")) {
            load = true;
            continue;
        }
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
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --label {l:?}: expected KEY=VALUE"))?;
        opts.labels.insert(k.to_string(), v.to_string());
    }
    for s in &a.annotations {
        opts.annotations
            .extend(crate::export::annotate::parse(s).map_err(|e| anyhow!("--annotation: {e}"))?);
    }
    opts.index_annotations = crate::export::annotate::select(
        &opts.annotations,
        crate::export::annotate::AnnotationKind::Index,
        None,
    );
    opts.attest = attest_options(&a, &opts)?;
    match a.isolation.as_deref() {
        None | Some("default") | Some("process") => {}
        Some(other) => bail!("--isolation {other:?}: only `default` or `process` exist on Linux"),
    }
    opts.cancel = Some(cancel_on_signals()?);
    super::contexts::resolve(&a.build_contexts, &mut opts)?;
    // Agents started for key files live as long as this build.
    let (ssh, _agents) = super::ssh::resolve(&a.ssh)?;
    opts.ssh = ssh;
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
    if load {
        let store = crate::store::Store::open(&opts.root)?;
        super::engine::load(
            &store,
            &res.image_id,
            &opts.tags,
            opts.progress == Progress::Quiet,
        )?;
    }
    if let Some(p) = &a.metadata_file {
        super::metadata::write(p, &opts, &res.image_id)?;
    }
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
pub(super) fn parse_secret(s: &str, env_dir: Option<&Path>) -> Result<(String, PathBuf)> {
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

/// `--memory`, `--cpu-*`, `--ulimit`, `--shm-size`, `--pids-limit`, `--cgroup-parent`.
fn resources(a: &BuildArgs) -> Result<crate::exec::Resources> {
    use crate::exec::{parse_size, Resources, Ulimit};
    let size = |flag: &str, v: &str| parse_size(v).map_err(|e| anyhow!("--{flag}: {e}"));
    let mut r = Resources::default();
    if let Some(m) = &a.memory {
        r.memory = Some(size("memory", m)?);
    }
    if let Some(s) = &a.memory_swap {
        r.memory_swap = Some(if s.trim() == "-1" {
            -1
        } else {
            i64::try_from(size("memory-swap", s)?)
                .map_err(|_| anyhow!("--memory-swap: too large"))?
        });
    }
    r.cpu_shares = a.cpu_shares;
    r.cpu_period = a.cpu_period;
    r.cpu_quota = a.cpu_quota;
    r.cpuset_cpus = a.cpuset_cpus.clone();
    r.cgroup_parent = a.cgroup_parent.clone();
    r.ulimits = a
        .ulimit
        .iter()
        .map(|u| Ulimit::parse(u))
        .collect::<Result<_, _>>()?;
    if let Some(s) = &a.shm_size {
        r.shm_size = size("shm-size", s)?;
    }
    if let Some(n) = a.pids_limit {
        r.pids_limit = (n > 0).then_some(n);
    }
    r.validate()?;
    Ok(r)
}

/// `--provenance` / `--sbom`, with buildx's default: `min` provenance on pushes and OCI outputs
/// unless BUILDX_NO_DEFAULT_ATTESTATIONS is set (docs/provenance.md).
fn attest_options(a: &BuildArgs, opts: &BuildOptions) -> Result<crate::attest::AttestOptions> {
    let mut out = crate::attest::AttestOptions::default();
    match a.provenance.as_deref() {
        Some(v) => {
            let (mode, builder) =
                crate::attest::AttestOptions::parse_provenance(v).map_err(|e| anyhow!(e))?;
            out.provenance = mode;
            out.builder_id = builder;
        }
        None => {
            let no_default = std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS")
                .is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
            let attachable = !opts.push.is_empty()
                || opts
                    .outputs
                    .iter()
                    .any(|o| matches!(o.kind, crate::solve::OutputKind::Oci { .. }));
            if attachable && !no_default {
                out.provenance = Some(crate::attest::Mode::Min);
            }
        }
    }
    out.sbom = match a.sbom.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => bail!("invalid --sbom value {other:?}: expected true or false"),
    };
    Ok(out)
}
