//! `pull`, `push`, `login`, `logout`, and the registry forms of `build -o`.

use super::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::registry::{PullOptions, PushOptions, RegistryConfig};
use anyhow::{anyhow, bail, Context as _, Result};
use std::io::Read;
use std::path::Path;

pub fn pull(root: &Path, cfg: &RegistryConfig, a: PullArgs) -> Result<i32> {
    let store = crate::store::Store::open(root)
        .with_context(|| format!("opening the store at {}", root.display()))?;
    let snapshots = crate::snapshot::OverlaySnapshotter::open(&root.join("overlay2"))?;
    let mut opts = PullOptions {
        quiet: a.quiet,
        ..Default::default()
    };
    if let Some(p) = &a.platform {
        opts.platform = crate::platform::Platform::parse(p).map_err(|e| anyhow!(e))?;
    }
    let pulled = crate::solve::pull::pull(&store, &snapshots, cfg, &a.name, &opts)?;
    let reference = crate::image::Reference::parse(&a.name)?;
    if a.quiet {
        println!("{}", reference.normalized());
    } else {
        println!("{}", pulled.id);
    }
    Ok(0)
}

pub fn push(root: &Path, cfg: &RegistryConfig, a: PushArgs) -> Result<i32> {
    let store = crate::store::Store::open(root)
        .with_context(|| format!("opening the store at {}", root.display()))?;
    let opts = PushOptions {
        quiet: a.quiet,
        form: super::commands::layer_form(Some(&a.compression), a.compression_level)?,
        ..Default::default()
    };
    let digest = crate::solve::pull::push(&store, cfg, &a.name, a.target.as_deref(), &opts)?;
    println!("{digest}");
    Ok(0)
}

fn server(s: &Option<String>) -> Result<String> {
    let s = s.as_deref().unwrap_or("docker.io");
    // Accept docker's URL forms (`https://index.docker.io/v1/`, `https://host/`).
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    if host.is_empty() {
        bail!("invalid registry {s:?}");
    }
    Ok(host.to_string())
}

pub fn login(cfg: &RegistryConfig, a: LoginArgs) -> Result<i32> {
    let domain = server(&a.server)?;
    let username = match a.username {
        Some(u) => u,
        None => bail!("--username is required (rbuild does not prompt)"),
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (rbuild does not prompt)"),
    };
    let path = crate::registry::login::login(&domain, cfg, &username, &password)?;
    eprintln!("Credentials saved in {}", path.display());
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(cfg: &RegistryConfig, a: LogoutArgs) -> Result<i32> {
    let domain = server(&a.server)?;
    if crate::registry::login::logout(&domain, cfg)? {
        println!("Removing login credentials for {domain}");
    } else {
        println!("Not logged in to {domain}");
    }
    Ok(0)
}

/// `-o type=registry[,name=N]` or `-o type=image,name=N,push=true`: the names to push (default:
/// the -t tags). None for other output types.
pub fn registry_output(spec: &str, tags: &[String]) -> Result<Option<Vec<String>>> {
    let mut kind = None;
    let mut names = Vec::new();
    let mut push = false;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("name", v)) => names.extend(v.split(';').map(str::to_string)),
            Some(("push", v)) => push = v == "true" || v == "1",
            _ => {}
        }
    }
    let push = match kind.as_deref() {
        Some("registry") => true,
        Some("image") => push,
        _ => return Ok(None),
    };
    if !push {
        bail!("output {spec:?}: type=image without push=true stores nothing new (use -t)");
    }
    if names.is_empty() {
        names = tags.to_vec();
    }
    if names.is_empty() {
        bail!("output {spec:?} needs name= or a -t tag to push to");
    }
    Ok(Some(names))
}
