//! `rbuild login` / `logout`: verify credentials against the registry, then write or remove the
//! `auths` entry of `config.json` as docker does (base64 `user:password`, file mode 0600). Other
//! keys of the file are kept as they are. With `credHelpers[host]` or `credsStore` set, the secret
//! goes to `docker-credential-<name> store` (removed with `erase`) and `auths` gets an empty entry
//! for the host, as docker's `configfile.GetCredentialsStore` does.

use super::auth::{Credential, Lookup, Secret};
use super::client::{Client, Req};
use super::host::{Host, RegistryConfig};
use super::RegistryError;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

fn config_file(cfg: &RegistryConfig) -> Result<PathBuf, RegistryError> {
    cfg.config_dir()
        .map(|d| d.join("config.json"))
        .ok_or_else(|| {
            RegistryError::Credentials("no config directory: set DOCKER_CONFIG or HOME".into())
        })
}

fn read_config(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, RegistryError> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Default::default()),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            RegistryError::Credentials(format!("{}: invalid JSON: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(RegistryError::io(path)(e)),
    }
}

/// Writes via a 0600 temp file + fsync + rename, so a crash never leaves a truncated file.
fn write_config(
    path: &Path,
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(RegistryError::io(dir))?;
    let bytes =
        serde_json::to_vec_pretty(map).map_err(|e| RegistryError::Credentials(e.to_string()))?;
    let tmp = dir.join(format!(".config.json.rbuild-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(RegistryError::io(path))
}

/// Checks `username`/`password` against the registry (`GET /v2/` with the challenge's flow).
pub fn verify(
    domain: &str,
    cfg: &RegistryConfig,
    username: &str,
    password: &str,
) -> Result<(), RegistryError> {
    let host = Host::new(domain, cfg);
    let lookup = Lookup {
        credential: Some(Credential {
            secret: Secret::Password {
                username: username.to_string(),
                password: password.to_string(),
            },
            source: "the login command line".into(),
        }),
        searched: String::new(),
    };
    let client = Client::with_lookup(host, lookup);
    client.send_expect(&Req::new("GET", client.url(""), Vec::new()), &[200])?;
    Ok(())
}

/// Verifies and stores credentials; returns the file written.
pub fn login(
    domain: &str,
    cfg: &RegistryConfig,
    username: &str,
    password: &str,
) -> Result<PathBuf, RegistryError> {
    verify(domain, cfg, username, password)?;
    use base64::Engine;
    let key = Host::new(domain, cfg).credential_key();
    let path = config_file(cfg)?;
    let mut map = read_config(&path)?;
    let helper = helper_for(&map, &key);
    let auths = map
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(RegistryError::Credentials(format!(
            "{}: `auths` is not an object",
            path.display()
        )));
    };
    match helper {
        Some(h) => {
            let input =
                serde_json::json!({ "ServerURL": key, "Username": username, "Secret": password });
            run_helper(&h, "store", input.to_string().as_bytes())?;
            auths.insert(key, serde_json::json!({}));
        }
        None => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            auths.insert(key, serde_json::json!({ "auth": encoded }));
        }
    }
    write_config(&path, &map)?;
    Ok(path)
}

/// The credential helper docker would use for `key`: `credHelpers[key]`, else `credsStore`.
fn helper_for(map: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    map.get("credHelpers")
        .and_then(|h| h.get(key))
        .or_else(|| map.get("credsStore"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Runs `docker-credential-<name> <action>` with `input` on stdin. Its output is not shown: a
/// helper may echo what it was given.
fn run_helper(name: &str, action: &str, input: &[u8]) -> Result<(), RegistryError> {
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{name}");
    let fail = |why: String| RegistryError::Credentials(format!("{program} {action}: {why}"));
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        // Helpers print their error message on stdout; it names no secret for store/erase
        // failures, but is kept short.
        let msg = String::from_utf8_lossy(&out.stdout);
        let msg: String = msg.trim().chars().take(200).collect();
        return Err(fail(format!("{} {msg}", out.status)));
    }
    Ok(())
}

/// Removes the stored credentials of `domain`; false if there were none.
pub fn logout(domain: &str, cfg: &RegistryConfig) -> Result<bool, RegistryError> {
    let key = Host::new(domain, cfg).credential_key();
    let path = config_file(cfg)?;
    let mut map = read_config(&path)?;
    if let Some(h) = helper_for(&map, &key) {
        // Erasing what the helper does not have is not an error (docker ignores it too).
        let _ = run_helper(&h, "erase", key.as_bytes());
    }
    let removed = map
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .and_then(|a| a.remove(&key))
        .is_some();
    if removed {
        write_config(&path, &map)?;
    }
    Ok(removed)
}
