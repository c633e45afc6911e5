//! The `proxies` section of `~/.docker/config.json` as build args, as the docker CLI turns it
//! into `HTTP_PROXY`/`http_proxy`/… (its `ParseProxyConfig`; docs/compat.md "CLI flags").
//! These are BuildKit's predefined proxy args: RUN sees them, history and cache keys do not
//! (plan/args.rs `proxy_env`).

use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// config.json's proxy keys and the build arg each becomes (upper and lower case).
const KEYS: [(&str, &str); 5] = [
    ("httpProxy", "HTTP_PROXY"),
    ("httpsProxy", "HTTPS_PROXY"),
    ("noProxy", "NO_PROXY"),
    ("ftpProxy", "FTP_PROXY"),
    ("allProxy", "ALL_PROXY"),
];

/// Adds the `proxies.default` values of `dir/config.json` to `args`, each name only when the
/// build args do not set it already (an explicit `--build-arg` wins, name by name as docker).
/// A missing file or section adds nothing.
pub(super) fn add_from_config(
    dir: Option<&Path>,
    args: &mut BTreeMap<String, String>,
) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let cfg: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let Some(proxies) = cfg.get("proxies").and_then(|p| p.get("default")) else {
        return Ok(());
    };
    for (key, arg) in KEYS {
        let Some(value) = proxies.get(key).and_then(|v| v.as_str()) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        for name in [arg.to_string(), arg.to_lowercase()] {
            args.entry(name).or_insert_with(|| value.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_args_win_name_by_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"proxies":{"default":{"httpProxy":"http://p:3128","noProxy":"","ftpProxy":"ftp://f"},"tcp://other":{"httpProxy":"x"}}}"#,
        )
        .unwrap();
        let mut args = BTreeMap::from([("http_proxy".to_string(), "mine".to_string())]);
        add_from_config(Some(d.path()), &mut args).unwrap();
        assert_eq!(args["http_proxy"], "mine");
        assert_eq!(args["HTTP_PROXY"], "http://p:3128");
        assert_eq!(args["ftp_proxy"], "ftp://f");
        assert!(!args.contains_key("NO_PROXY"));
        assert_eq!(args.len(), 4);
    }

    #[test]
    fn no_file_adds_nothing_and_bad_json_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut args = BTreeMap::new();
        add_from_config(Some(d.path()), &mut args).unwrap();
        assert!(args.is_empty());
        std::fs::write(d.path().join("config.json"), "{").unwrap();
        let e = add_from_config(Some(d.path()), &mut args).unwrap_err();
        assert!(format!("{e:#}").contains("config.json"), "{e:#}");
    }
}
