//! Where a registry named by a reference's domain is, and how to reach it: Docker Hub's API host,
//! plain HTTP for loopback addresses (as Docker does) and for `--insecure-registry` hosts only;
//! HTTPS with verified certificates everywhere else, with no fallback (SECURITY G6).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Registry settings shared by pull, push, login and the cache.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Hosts (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Directory holding `config.json` (default: `$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config: Option<PathBuf>,
    /// Longest one transfer may take, retries and resumes included (`--registry-timeout`);
    /// `None`: [`DEFAULT_TRANSFER_DEADLINE`]; zero: no deadline.
    pub transfer_deadline: Option<Duration>,
}

/// Default overall deadline of one registry transfer (a manifest, a blob with its resumes, an
/// upload): an hour, about 7 GB at 2 MB/s. The per-read timeout alone cannot stop a server that
/// sends a byte just often enough (README "Registries").
pub const DEFAULT_TRANSFER_DEADLINE: Duration = Duration::from_secs(3600);

impl RegistryConfig {
    /// The overall deadline of one transfer, `None` when disabled.
    pub fn deadline(&self) -> Option<Duration> {
        match self.transfer_deadline {
            None => Some(DEFAULT_TRANSFER_DEADLINE),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        }
    }

    /// The directory of `config.json`.
    pub fn config_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.docker_config {
            return Some(d.clone());
        }
        match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")),
        }
    }
}

/// A registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The domain as references name it (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// `host[:port]` the API is served on (`registry-1.docker.io` for Docker Hub).
    pub authority: String,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl Host {
    pub fn new(domain: &str, cfg: &RegistryConfig) -> Host {
        let authority = match domain {
            "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
            d => d.to_string(),
        };
        let insecure = is_loopback(&authority)
            || cfg
                .insecure
                .iter()
                .any(|h| h.trim_end_matches('/') == domain || h.trim_end_matches('/') == authority);
        Host {
            domain: domain.to_string(),
            authority,
            scheme: if insecure { "http" } else { "https" },
        }
    }

    /// `scheme://authority`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The key of this registry in `config.json` `auths` (Docker Hub's historical URL for it).
    pub fn credential_key(&self) -> String {
        if self.domain == "docker.io" || self.domain == "index.docker.io" {
            "https://index.docker.io/v1/".to_string()
        } else {
            self.domain.clone()
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into host and port.
pub fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (h, tail.strip_prefix(':'));
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

/// `localhost`, 127.0.0.0/8 or ::1, with or without a port.
pub fn is_loopback(authority: &str) -> bool {
    let (h, _) = split_authority(authority);
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_schemes() {
        let cfg = RegistryConfig {
            insecure: vec!["reg.internal:5000".into()],
            docker_config: None,
            transfer_deadline: None,
        };
        let hub = Host::new("docker.io", &cfg);
        assert_eq!(hub.base_url(), "https://registry-1.docker.io");
        assert_eq!(hub.credential_key(), "https://index.docker.io/v1/");
        assert_eq!(
            Host::new("127.0.0.1:5000", &cfg).base_url(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(Host::new("localhost", &cfg).scheme, "http");
        assert_eq!(Host::new("[::1]:5000", &cfg).scheme, "http");
        assert_eq!(Host::new("reg.internal:5000", &cfg).scheme, "http");
        // G6: only the configured host (with its port) is plain HTTP.
        assert_eq!(Host::new("reg.internal", &cfg).scheme, "https");
        assert_eq!(Host::new("ghcr.io", &cfg).scheme, "https");
        assert_eq!(Host::new("127.0.0.1.nip.io", &cfg).scheme, "https");
    }
}
