//! `rbuild verify IMAGE [--context DIR|GIT-URL#COMMIT]`: reads the image's SLSA provenance,
//! checks the context against the recorded digest, rebuilds in a scratch store from the recorded
//! inputs (bases by digest, args, epoch, profile, flags) and compares the result with the image,
//! file by file through `compare` (`rbuild diff`). Exit 0 reproduced, 1 different, 2 could not
//! rebuild. docs/provenance.md.

use super::attest::open;
use crate::attest::provenance::{
    Predicate, ResourceDescriptor, ANNOTATION_IMAGE_ID, ANNOTATION_IMAGE_NAME, CONTEXT_DEPENDENCY,
};
use crate::attest::PREDICATE_SLSA_V1;
use crate::digest::Digest;
use crate::registry::RegistryConfig;
use crate::solve::{BuildOptions, ContextSource, DockerfileSource, OutputKind, OutputSpec};
use anyhow::{anyhow, Context as _, Result};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why verification stopped without a verdict (exit 2).
#[derive(Debug)]
struct CannotRebuild(String);

impl std::fmt::Display for CannotRebuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CannotRebuild {}

/// The outcome, printed as text or `--json`.
#[derive(serde::Serialize)]
struct Report {
    /// `reproduced`, `different` or `cannot-rebuild`.
    result: &'static str,
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuilt: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    differences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub fn run(root: &Path, registry: &RegistryConfig, a: super::args::VerifyArgs) -> Result<i32> {
    let mut report = Report {
        result: "cannot-rebuild",
        image: a.image.clone(),
        manifest: None,
        rebuilt: None,
        differences: Vec::new(),
        reason: None,
    };
    let code = match verify(root, registry, &a, &mut report) {
        Ok(()) if report.result == "reproduced" => 0,
        Ok(()) => 1,
        // Every failure is "could not rebuild", refusals (CannotRebuild) and errors alike.
        Err(e) => {
            report.reason = Some(match e.downcast::<CannotRebuild>() {
                Ok(CannotRebuild(why)) => why,
                Err(e) => format!("{e:#}"),
            });
            2
        }
    };
    let mut text = String::new();
    if a.json {
        text = serde_json::to_string_pretty(&report)? + "\n";
    } else {
        match report.result {
            "reproduced" => {
                text = format!(
                    "reproduced {}\n",
                    report.rebuilt.as_deref().unwrap_or_default()
                )
            }
            "different" => {
                text = format!(
                    "different: {} rebuilt as {}\n",
                    report.manifest.as_deref().unwrap_or_default(),
                    report.rebuilt.as_deref().unwrap_or_default()
                );
                for d in &report.differences {
                    text.push_str(d);
                    text.push('\n');
                }
            }
            _ => eprintln!(
                "rbuild verify: cannot rebuild {}: {}",
                a.image,
                report.reason.as_deref().unwrap_or_default()
            ),
        }
    }
    // A closed pipe (`| head`) ends the output quietly.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(code)
}

fn refuse(why: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CannotRebuild(why.into()))
}

fn verify(
    root: &Path,
    registry: &RegistryConfig,
    a: &super::args::VerifyArgs,
    report: &mut Report,
) -> Result<()> {
    let opened = open(&a.image, registry, root)?;
    // Of a multi-platform index, the host's image (the one this host can rebuild), else the first.
    let host_platform = crate::platform::Platform::host().to_string();
    let attested: Vec<_> = opened
        .images
        .iter()
        .filter_map(|i| i.statement(PREDICATE_SLSA_V1).map(|s| (i, s)))
        .collect();
    let recorded_platform = |s: &serde_json::Value| {
        s["predicate"]["buildDefinition"]["externalParameters"]["request"]["args"]["platform"]
            .as_str()
            .map(str::to_string)
    };
    let (image, statement) = attested
        .iter()
        .find(|(_, s)| recorded_platform(s).as_deref() == Some(host_platform.as_str()))
        .or(attested.first())
        .cloned()
        .ok_or_else(|| refuse(format!("{} has no SLSA provenance attestation", a.image)))?;
    let predicate: Predicate = serde_json::from_value(statement["predicate"].clone())
        .context("reading the provenance predicate")?;
    let ext = &predicate.build_definition.external_parameters;
    let args = &ext.request.args;
    // A stored image has no manifest of its own: it is the one the build wrote, with the
    // recorded compression.
    let stored = opened
        .store_images
        .iter()
        .find(|(m, _)| *m == image.manifest.digest)
        .map(|(_, id)| id.clone());
    let original_manifest = match &stored {
        Some(id) => stored_manifest(root, id, args)?,
        None => image.manifest.digest.clone(),
    };
    report.manifest = Some(original_manifest.to_string());
    let meta = &predicate.run_details.metadata;
    if !meta.hermetic && !a.allow_network {
        let at = meta
            .rbuild_metadata
            .network
            .first()
            .map(|n| {
                format!(
                    " (the RUN at Dockerfile line {}, network {})",
                    n.line, n.network
                )
            })
            .unwrap_or_default();
        return Err(refuse(format!(
            "the build ran RUN steps with network access{at}: what they downloaded cannot be \
             replayed (rebuild anyway with --allow-network)"
        )));
    }
    let host = crate::platform::Platform::host().to_string();
    if let Some(p) = args.get("platform").filter(|p| **p != host) {
        return Err(refuse(format!(
            "the image was built for {p}; this host builds {host}"
        )));
    }

    // The context: given, or the recorded git remote and commit.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let deps = &predicate.build_definition.resolved_dependencies;
    let ctx_dep = deps
        .iter()
        .find(|d| d.name.as_deref() == Some(CONTEXT_DEPENDENCY))
        .ok_or_else(|| refuse("the provenance records no build context"))?;
    let ctx_dir = match a.context.as_deref() {
        Some(c) if Path::new(c).is_dir() => PathBuf::from(c),
        Some(c) => clone_git(c, &scratch.path().join("git"))?,
        None => match (&ctx_dep.uri, ctx_dep.digest.get("gitCommit")) {
            (Some(remote), Some(commit)) => {
                clone_git(&format!("{remote}#{commit}"), &scratch.path().join("git"))?
            }
            _ => {
                return Err(refuse(
                    "the provenance records no git remote for the context: give --context DIR",
                ))
            }
        },
    };

    // The Dockerfile: its text from a `max` provenance, else the recorded path in the context.
    let df_path = &ext.config_source.path;
    let df_file = match meta
        .rbuild_metadata
        .source
        .as_ref()
        .and_then(|s| s.infos.first())
    {
        Some(info) => {
            let text = base64::engine::general_purpose::STANDARD
                .decode(&info.data)
                .context("decoding the recorded Dockerfile")?;
            let p = scratch.path().join("Dockerfile");
            std::fs::write(&p, text)?;
            p
        }
        None => ctx_dir.join(df_path),
    };
    let df_bytes = std::fs::read(&df_file)
        .map_err(|e| refuse(format!("reading the Dockerfile {}: {e}", df_file.display())))?;
    let recorded_df = ext
        .config_source
        .digest
        .get("sha256")
        .cloned()
        .unwrap_or_default();
    if Digest::of_bytes(&df_bytes).hex() != recorded_df {
        return Err(refuse(format!(
            "the Dockerfile {} does not match the recorded digest sha256:{recorded_df}",
            df_file.display()
        )));
    }
    let ctx = crate::context::Context::open(&ctx_dir, &ctx_dir.join(df_path))
        .with_context(|| format!("opening the context {}", ctx_dir.display()))?;
    let have = crate::attest::context_digest(&ctx)?;
    let want = ctx_dep.digest.get("sha256").cloned().unwrap_or_default();
    if have.hex() != want {
        return Err(refuse(format!(
            "context mismatch: {} has digest {have}, the provenance records sha256:{want} \
             (a file was added, removed or changed; mtimes do not count)",
            ctx_dir.display()
        )));
    }

    let mut opts = BuildOptions::new(scratch.path().join("root"), ContextSource::Dir(ctx_dir));
    opts.dockerfile = DockerfileSource::Path(df_file);
    apply_args(&mut opts, args)?;
    for s in &a.secret {
        let (id, path) = super::build::parse_secret(s, None)?;
        opts.secrets.insert(id, path);
    }
    if let Some(missing) = predicate
        .build_definition
        .external_parameters
        .request
        .secrets
        .iter()
        .find(|s| !opts.secrets.contains_key(&s.id))
    {
        return Err(refuse(format!(
            "the build used secret {:?}: pass it with --secret id={},src=PATH",
            missing.id, missing.id
        )));
    }
    import_bases(root, registry, &opts.root, deps)?;
    let out = scratch.path().join("rebuilt");
    opts.outputs = vec![OutputSpec {
        kind: OutputKind::Oci { tar: false },
        dest: out.clone(),
    }];
    opts.progress = crate::solve::Progress::Quiet;
    crate::solve::build(&opts).map_err(|e| refuse(format!("the rebuild failed: {e}")))?;

    let rebuilt = crate::compare::ImageInput::open(&out.to_string_lossy(), None)?;
    let rebuilt_digest = rebuilt
        .manifest_digest
        .clone()
        .ok_or_else(|| anyhow!("the rebuilt image has no manifest"))?;
    report.rebuilt = Some(rebuilt_digest.to_string());
    if rebuilt_digest == original_manifest {
        report.result = "reproduced";
        return Ok(());
    }
    report.result = "different";
    let original = match (&opened.layout, &stored) {
        (Some(dir), _) => crate::compare::ImageInput::open(&dir.to_string_lossy(), None)?,
        (None, Some(id)) => {
            let store = crate::store::Store::open(root)?;
            crate::compare::ImageInput::open(&id.to_string(), Some(&store))?
        }
        (None, None) => pulled_image(registry, &a.image, scratch.path())?,
    };
    let diffs = crate::compare::compare(&original, &rebuilt)?;
    report.differences = if diffs.is_empty() {
        vec!["same files and config, different manifest bytes (layer compression?)".into()]
    } else {
        diffs
    };
    if !meta.reproducible {
        report.differences.push(
            "note: the build set no SOURCE_DATE_EPOCH, so its timestamps were never meant to \
             repeat (docs/reproducibility.md)"
                .into(),
        );
    }
    Ok(())
}

/// The manifest digest of stored image `id` with the recorded layer compression.
fn stored_manifest(root: &Path, id: &Digest, args: &BTreeMap<String, String>) -> Result<Digest> {
    let mut probe = BuildOptions::new(root.to_path_buf(), ContextSource::StdinTar);
    apply_args(&mut probe, args)?;
    let store = crate::store::Store::open(root)?;
    let img = store.export_image(
        id,
        &[],
        crate::store::LayerForm::Compress(probe.compression, probe.repro_profile),
    )?;
    let built = crate::image::manifest::build(
        crate::image::manifest::ManifestKind::Oci,
        &img.config_bytes,
        &img.layer_descs(),
    )?;
    Ok(built.descriptor.digest)
}

/// Build options from the recorded request args (`build-arg:`, `label:`, `target`, the flags).
fn apply_args(opts: &mut BuildOptions, args: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in args {
        if let Some(name) = k.strip_prefix("build-arg:") {
            opts.build_args.insert(name.to_string(), v.clone());
        } else if let Some(name) = k.strip_prefix("label:") {
            opts.labels.insert(name.to_string(), v.clone());
        }
    }
    opts.target = args.get("target").cloned();
    let num = |k: &str| -> Result<Option<i64>> {
        args.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| refuse(format!("recorded {k} {v:?} is not a number")))
            })
            .transpose()
    };
    opts.source_date_epoch = num("source-date-epoch")?;
    let level = num("compression-level")?;
    opts.compression = match args.get("compression").map(String::as_str) {
        Some("gzip") | None => crate::layer::Compression::Gzip {
            level: level.unwrap_or(6) as u32,
        },
        Some("zstd") => crate::layer::Compression::Zstd {
            level: level.unwrap_or(3) as i32,
        },
        Some("uncompressed") => crate::layer::Compression::Uncompressed,
        Some(other) => return Err(refuse(format!("unknown recorded compression {other:?}"))),
    };
    if let Some(p) = num("repro-profile")? {
        opts.repro_profile = crate::layer::Profile::from_number(p as u32)
            .ok_or_else(|| refuse(format!("repro profile {p} is unknown to this rbuild")))?;
    }
    opts.history_format = match args.get("history-format").map(String::as_str) {
        Some("classic") => crate::image::history::HistoryFormat::Classic,
        _ => crate::image::history::HistoryFormat::Buildkit,
    };
    opts.rewrite_timestamp = args.get("rewrite-timestamp").is_none_or(|v| v == "true");
    if let Some(n) = args.get("network") {
        opts.network = n.parse().map_err(|e: String| refuse(e))?;
        opts.allow_network_host = n == "host";
    }
    Ok(())
}

/// Puts every base image into the scratch store under the name the Dockerfile used: from the
/// local store by image id when it is there, else pulled by its recorded manifest digest.
fn import_bases(
    root: &Path,
    registry: &RegistryConfig,
    scratch_root: &Path,
    deps: &[ResourceDescriptor],
) -> Result<()> {
    // The user's store only when there is one: verify never creates it.
    let local = root
        .join("image")
        .is_dir()
        .then(|| crate::store::Store::open(root).ok())
        .flatten();
    let store = crate::store::Store::open(scratch_root)?;
    let snapshots = crate::snapshot::OverlaySnapshotter::open(&scratch_root.join("overlay2"))?;
    for d in deps
        .iter()
        .filter(|d| d.annotations.contains_key(ANNOTATION_IMAGE_ID))
    {
        let name = d
            .annotations
            .get(ANNOTATION_IMAGE_NAME)
            .cloned()
            .unwrap_or_default();
        let id = Digest::parse(&d.annotations[ANNOTATION_IMAGE_ID])?;
        let reference = crate::image::Reference::parse_tagged(&name)
            .map_err(|e| refuse(format!("base image name {name:?}: {e}")))?;
        let in_local = local.as_ref().is_some_and(|s| s.image_config(&id).is_ok());
        if let (true, Some(local)) = (in_local, local.as_ref()) {
            let img = local.export_image(&id, &[], crate::store::LayerForm::AsStored)?;
            let dir = tempfile::tempdir()?;
            crate::export::oci_layout_dir(&img, dir.path())?;
            crate::solve::load::load(&store, &snapshots, dir.path())?;
        } else if let Some(hex) = d.digest.get("sha256") {
            let by_digest = format!("{}@sha256:{hex}", reference.name());
            let opts = crate::registry::PullOptions {
                quiet: true,
                ..Default::default()
            };
            crate::solve::pull::pull(&store, &snapshots, registry, &by_digest, &opts).map_err(
                |e| {
                    refuse(format!(
                        "base image {name}: pulling {by_digest} failed: {e}"
                    ))
                },
            )?;
        } else {
            return Err(refuse(format!(
                "base image {name} ({id}) is not in the store at {} and the provenance records \
                 no manifest digest to pull it by",
                root.display()
            )));
        }
        if store.image_config(&id).is_err() {
            return Err(refuse(format!(
                "base image {name}: what was found is not image {id}"
            )));
        }
        store.tag(&reference, &id)?;
    }
    Ok(())
}

/// A registry image pulled into a scratch store, for `compare`.
fn pulled_image(
    registry: &RegistryConfig,
    spec: &str,
    scratch: &Path,
) -> Result<crate::compare::ImageInput> {
    let root = scratch.join("pulled");
    let store = crate::store::Store::open(&root)?;
    let snapshots = crate::snapshot::OverlaySnapshotter::open(&root.join("overlay2"))?;
    let pulled = crate::solve::pull::pull(
        &store,
        &snapshots,
        registry,
        spec,
        &crate::registry::PullOptions {
            quiet: true,
            ..Default::default()
        },
    )?;
    Ok(crate::compare::ImageInput::open(
        &pulled.id.to_string(),
        Some(&store),
    )?)
}

/// Clones `GIT-URL#COMMIT` into `dest` and checks the commit out.
fn clone_git(spec: &str, dest: &Path) -> Result<PathBuf> {
    let (url, commit) = spec.rsplit_once('#').ok_or_else(|| {
        refuse(format!(
            "--context {spec:?}: expected a directory or GIT-URL#COMMIT"
        ))
    })?;
    let run = |args: &[&std::ffi::OsStr]| -> Result<()> {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .map_err(|e| refuse(format!("running git: {e}")))?;
        if !out.status.success() {
            return Err(refuse(format!(
                "git {}: {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    };
    run(&[
        "clone".as_ref(),
        "--quiet".as_ref(),
        url.as_ref(),
        dest.as_os_str(),
    ])?;
    run(&[
        "-C".as_ref(),
        dest.as_os_str(),
        "checkout".as_ref(),
        "--quiet".as_ref(),
        commit.as_ref(),
    ])?;
    Ok(dest.to_path_buf())
}
