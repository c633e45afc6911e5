//! Runs a parsed command line.

use super::args::{Cli, Command};
use super::build::run_build;
use super::options::layer_form;
use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};

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

/// Chooses how snapshots are mounted (snapshot::driver), probing under the store root.
fn select_snapshotter(root: &Path, in_userns: bool) -> Result<crate::snapshot::Driver> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    Ok(crate::snapshot::driver::select(root, in_userns)?)
}

pub fn run(cli: Cli) -> Result<i32> {
    let root = default_root(cli.root);
    let registry = crate::registry::RegistryConfig {
        insecure: cli.insecure_registry.clone(),
        docker_config: None,
        transfer_deadline: cli.registry_timeout.map(std::time::Duration::from_secs),
    };
    // Archive-bomb limits for every extraction in this process (layer/limits.rs).
    crate::layer::limits::configure(crate::layer::Limits::from_flags(
        cli.max_expanded_size,
        cli.min_free_space,
    ));
    match cli.command {
        Command::Completion(a) => return super::docs::completion(a.shell),
        Command::Man => return super::docs::man(),
        _ => {}
    }
    // An ordinary user's rbuild becomes root of a user namespace mapped with the user's
    // subordinate ids (docs/rootless.md); the root was chosen above, from the real user.
    let rootless = crate::rootless::enter_if_unprivileged()?;
    // Every mount rbuild makes lives in its own mount namespace, so none outlives the process, even on
    // kill -9. Must happen while the process is still single-threaded.
    crate::snapshot::enter_private_mount_namespace()
        .context("entering a private mount namespace")?;
    let in_userns = rootless.is_some() || crate::rootless::in_user_namespace();
    let driver = select_snapshotter(&root, in_userns)?;
    match cli.command {
        Command::Info => {
            super::info::print(&root, rootless.as_ref(), in_userns, driver);
            Ok(0)
        }
        Command::Build(args) => run_build(root, *args, registry),
        Command::Images(a) => {
            let store = open_store(&root)?;
            let opts = super::render::ImagesOptions {
                quiet: a.quiet,
                digests: a.digests,
                no_trunc: a.no_trunc,
                json: a.format.as_deref() == Some("json")
                    || a.format.as_deref() == Some("{{json .}}"),
                reference: None,
            };
            super::render::images(&store, &mut std::io::stdout().lock(), &opts)?;
            Ok(0)
        }
        Command::Inspect(a) if a.provenance || a.sbom => {
            let ptype = if a.sbom {
                crate::attest::PREDICATE_SPDX
            } else {
                crate::attest::PREDICATE_SLSA_V1
            };
            let platform = a
                .platform
                .as_deref()
                .map(crate::platform::Platform::parse)
                .transpose()
                .map_err(|e| anyhow!(e))?;
            let mut code = 0;
            for image in &a.images {
                code = code.max(super::attest::inspect(
                    image,
                    ptype,
                    &registry,
                    &root,
                    platform.as_ref(),
                )?);
            }
            Ok(code)
        }
        Command::Inspect(a) => {
            let store = open_store(&root)?;
            let snapdir = root.join("overlay2");
            let dirs = |cache_id: &str| snapdir.join(cache_id);
            let platform = a
                .platform
                .as_deref()
                .map(crate::platform::Platform::parse)
                .transpose()
                .map_err(|e| anyhow!(e))?;
            super::render::inspect(
                &store,
                &mut std::io::stdout().lock(),
                &a.images,
                platform.as_ref(),
                &dirs,
            )?;
            Ok(0)
        }
        Command::History(a) => {
            let store = open_store(&root)?;
            let opts = super::render::HistoryOptions {
                no_trunc: a.no_trunc,
                quiet: a.quiet,
                human: a.human,
                format: a.format,
            };
            super::render::history_with(&store, &mut std::io::stdout().lock(), &a.image, &opts)?;
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
            let freed =
                super::render::rmi(&store, &mut std::io::stdout().lock(), &a.images, a.force)?;
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
            let form = layer_form(a.compression.as_deref(), a.compression_level)?;
            // One multi-platform name: the whole index (docs/store-layout.md "Image indexes").
            let index = match a.images.as_slice() {
                [one] => store.resolve_index(one)?,
                _ => None,
            };
            let members = match &index {
                Some(ix) => store.get_index(ix)?.image_ids().cloned().collect(),
                None => vec![id.clone()],
            };
            let (img, index) = {
                // Leased: a concurrent `prune -a`/`rmi` keeps the blobs we are about to stream.
                let _lock = store.lock()?;
                for m in &members {
                    if let Some(top) = store.image_top_layer(m)? {
                        store.lease_layer(&top)?;
                    }
                }
                let host = crate::platform::Platform::host();
                let default = (
                    host.os.as_str(),
                    host.architecture.as_str(),
                    host.variant.as_deref(),
                );
                let index = index
                    .map(|ix| store.export_index(&ix, &tags, form, default))
                    .transpose()?;
                (store.export_image(&id, &tags, form)?, index)
            };
            let tmp = a.output.with_extension("rbuild-partial");
            let res = (|| -> Result<()> {
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("{}", a.output.display()))?;
                let mut w = std::io::BufWriter::new(f);
                match (a.format.as_str(), &index) {
                    ("docker", Some(ix)) => crate::export::docker_index_archive(ix, &mut w)?,
                    ("oci", Some(ix)) => crate::export::oci_index_tar(ix, &mut w)?,
                    ("docker", None) => crate::export::docker_archive(&img, &mut w)?,
                    ("oci", None) => crate::export::oci_layout_tar(&img, &mut w)?,
                    (other, _) => bail!("unknown --format {other:?} (docker or oci)"),
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
            let freed = super::render::prune(&store, &mut std::io::stdout().lock(), a.all)?;
            remove_snapshots(&snapshots, freed);
            super::render::prune_snapshots(&store, &snapshots, &mut std::io::stdout().lock())?;
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
            super::render::df(&store, &mut std::io::stdout().lock())?;
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
        Command::Verify(a) => super::verify::run(&root, &registry, a),
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
        Command::Completion(_) | Command::Man => Ok(0),
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
