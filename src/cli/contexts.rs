//! `--build-context NAME=VALUE` (buildx's named contexts): each value is turned into an image
//! the store resolves, before the build, so `FROM NAME` and `COPY --from=NAME` read it through
//! the one `--from` resolver (plan/named.rs). A directory, git URL or https tarball becomes a
//! one-layer image built `FROM scratch` by the same solver; `docker-image://REF` is that
//! reference (pulled when missing); `oci-layout://PATH[:TAG|@DIGEST]` is imported from the
//! layout. docs/compat.md "CLI flags" says how this differs from BuildKit.

use crate::digest::Digest;
use crate::solve::{self, BuildOptions, ContextSource, DockerfileSource};
use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Dir(PathBuf),
    Image(String),
    OciLayout {
        path: PathBuf,
        select: Option<String>,
    },
    /// A git URL or an http(s) tarball: fetched by an `ADD` of a `FROM scratch` build.
    Remote {
        url: String,
        unpack: bool,
    },
}

fn parse(s: &str) -> Result<(String, Value)> {
    let (name, v) = s
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| anyhow!("invalid --build-context {s:?}: expected NAME=VALUE"))?;
    let value = if let Some(r) = v.strip_prefix("docker-image://") {
        crate::image::Reference::parse(r)
            .map_err(|e| anyhow!("--build-context {name}: invalid image {r:?}: {e}"))?;
        Value::Image(r.to_string())
    } else if let Some(rest) = v.strip_prefix("oci-layout://") {
        let (path, select) = split_layout(rest);
        Value::OciLayout { path, select }
    } else if crate::context::git::parse_git_ref(v).is_some() {
        Value::Remote {
            url: v.to_string(),
            unpack: false,
        }
    } else if v.starts_with("https://") || v.starts_with("http://") {
        Value::Remote {
            url: v.to_string(),
            unpack: true,
        }
    } else if v.contains("://") {
        bail!("--build-context {name}: unsupported value {v:?} (a directory, docker-image://, oci-layout://, a git URL or an https URL)");
    } else {
        let dir = PathBuf::from(v);
        if !dir.is_dir() {
            bail!("--build-context {name}: {v} is not a directory");
        }
        Value::Dir(dir)
    };
    Ok((name.to_string(), value))
}

/// `PATH`, `PATH:TAG` or `PATH@sha256:…` (a tag has no `/`, as buildx splits it).
fn split_layout(rest: &str) -> (PathBuf, Option<String>) {
    if let Some((p, d)) = rest.rsplit_once('@') {
        return (PathBuf::from(p), Some(d.to_string()));
    }
    match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !p.is_empty() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(rest), None),
    }
}

/// Turns each `--build-context` into an image and records it in `opts.named_contexts`.
pub(super) fn resolve(raw: &[String], opts: &mut BuildOptions) -> Result<()> {
    for s in raw {
        let (name, value) = parse(s)?;
        let image = match value {
            Value::Image(r) => r,
            Value::Dir(dir) => build_scratch(opts, &name, Some(&dir), "COPY . /")?,
            Value::Remote { url, unpack } => {
                let json = serde_json::to_string(&[url.as_str(), "/"])?;
                let flag = if unpack { "--unpack=true " } else { "" };
                build_scratch(opts, &name, None, &format!("ADD {flag}{json}"))?
            }
            Value::OciLayout { path, select } => import_layout(opts, &name, &path, select)?,
        };
        opts.named_contexts
            .insert(crate::plan::named::context_key(&name), image);
    }
    Ok(())
}

/// Builds `FROM scratch` + `step` over `dir` (an empty context when None); returns the image id.
fn build_scratch(
    opts: &BuildOptions,
    name: &str,
    dir: Option<&Path>,
    step: &str,
) -> Result<String> {
    let tmp = tempfile::Builder::new()
        .prefix("rbuild-named-context-")
        .tempdir()
        .context("creating a temp dir for a named context")?;
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).with_context(|| format!("creating {}", empty.display()))?;
    let df = tmp.path().join("Dockerfile");
    std::fs::write(&df, format!("FROM scratch\n{step}\n"))
        .with_context(|| format!("writing {}", df.display()))?;
    let mut o = BuildOptions::new(
        opts.root.clone(),
        ContextSource::Dir(dir.map_or(empty, Path::to_path_buf)),
    );
    o.dockerfile = DockerfileSource::Path(df);
    o.progress = opts.progress;
    o.registry = opts.registry.clone();
    o.source_date_epoch = opts.source_date_epoch;
    o.no_cache = opts.no_cache;
    o.network = opts.network;
    o.cancel = opts.cancel.clone();
    let res = solve::build(&o).map_err(|e| anyhow!("--build-context {name}: {e}"))?;
    Ok(res.image_id.to_string())
}

/// Imports the images of an OCI layout and picks the one `select` names (a tag in
/// `org.opencontainers.image.ref.name`, or a manifest digest); the only one when None.
fn import_layout(
    opts: &BuildOptions,
    name: &str,
    path: &Path,
    select: Option<String>,
) -> Result<String> {
    let ctx = || format!("--build-context {name}: {}", path.display());
    let text = std::fs::read(path.join("index.json")).with_context(ctx)?;
    let index: serde_json::Value = serde_json::from_slice(&text).with_context(ctx)?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let picked: Vec<&serde_json::Value> = manifests
        .iter()
        .filter(|d| match &select {
            None => true,
            Some(s) if s.starts_with("sha256:") => d["digest"].as_str() == Some(s),
            Some(t) => {
                let r = d["annotations"]["org.opencontainers.image.ref.name"].as_str();
                r == Some(t) || r.is_some_and(|r| r.rsplit_once(':').map(|x| x.1) == Some(t))
            }
        })
        .collect();
    let desc = match picked.as_slice() {
        [one] => *one,
        [] => bail!(
            "{}: no image {} in index.json",
            ctx(),
            select.as_deref().unwrap_or("")
        ),
        _ => bail!("{}: several images; name one with :TAG or @DIGEST", ctx()),
    };
    let blob = |d: &serde_json::Value| -> Result<serde_json::Value> {
        let digest = Digest::parse(d["digest"].as_str().unwrap_or(""))
            .map_err(|e| anyhow!("{}: {e}", ctx()))?;
        let p = path.join("blobs/sha256").join(digest.hex());
        let bytes = std::fs::read(&p).with_context(|| format!("{}: {}", ctx(), p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: {}", ctx(), p.display()))
    };
    let mut manifest = blob(desc)?;
    if manifest["manifests"].is_array() {
        // An index: the host platform's image.
        let host = crate::platform::Platform::host();
        let m = manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| {
                d["platform"]["os"].as_str() == Some(host.os.as_str())
                    && d["platform"]["architecture"].as_str() == Some(host.architecture.as_str())
            })
            .cloned()
            .ok_or_else(|| anyhow!("{}: no {host} image in the index", ctx()))?;
        manifest = blob(&m)?;
    }
    let config = Digest::parse(manifest["config"]["digest"].as_str().unwrap_or(""))
        .map_err(|e| anyhow!("{}: config: {e}", ctx()))?;
    let store = crate::store::Store::open(&opts.root)?;
    let snapshots = crate::snapshot::OverlaySnapshotter::open(&opts.root.join("overlay2"))?;
    store.recover(&snapshots)?;
    crate::solve::load::load(&store, &snapshots, path).with_context(ctx)?;
    Ok(config.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        assert_eq!(
            parse(&format!("a={dir}")).unwrap().1,
            Value::Dir(d.path().into())
        );
        assert_eq!(
            parse("b=docker-image://alpine:3").unwrap().1,
            Value::Image("alpine:3".into())
        );
        assert_eq!(
            parse("c=oci-layout:///x/y:v1").unwrap().1,
            Value::OciLayout {
                path: "/x/y".into(),
                select: Some("v1".into())
            }
        );
        assert_eq!(
            parse("c=oci-layout:///x/y@sha256:ab").unwrap().1,
            Value::OciLayout {
                path: "/x/y".into(),
                select: Some("sha256:ab".into())
            }
        );
        assert!(matches!(
            parse("g=https://example.com/r.git").unwrap().1,
            Value::Remote { unpack: false, .. }
        ));
        assert!(matches!(
            parse("t=https://example.com/r.tar.gz").unwrap().1,
            Value::Remote { unpack: true, .. }
        ));
        assert!(parse("x=/does/not/exist").is_err());
        assert!(parse("x=ftp://h/f").is_err());
        assert!(parse("novalue").is_err());
    }
}
