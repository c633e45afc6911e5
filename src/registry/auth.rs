//! Credentials (`config.json` via `docker_credential`), `WWW-Authenticate` challenges, and which
//! token realms may receive them.

use super::host::{is_loopback, split_authority, Host, RegistryConfig};
use super::RegistryError;
use std::fmt;
use std::path::PathBuf;

/// A secret for one registry. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in `config.json`).
    IdentityToken(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password { username, .. } => write!(f, "Password({username:?}, <redacted>)"),
            Secret::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Credentials and where they came from (for error messages: the source, never the value).
#[derive(Clone, Debug)]
pub struct Credential {
    pub secret: Secret,
    pub source: String,
}

impl Credential {
    /// `Basic` header value, when the secret is a password.
    pub fn basic(&self) -> Option<String> {
        use base64::Engine;
        match &self.secret {
            Secret::Password { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Secret::IdentityToken(_) => None,
        }
    }

    pub fn username(&self) -> Option<&str> {
        match &self.secret {
            Secret::Password { username, .. } => Some(username),
            Secret::IdentityToken(_) => None,
        }
    }
}

/// What was looked up for a host, for "which credential was tried" messages.
#[derive(Clone, Debug)]
pub struct Lookup {
    pub credential: Option<Credential>,
    /// Where we looked when nothing was found.
    pub searched: String,
}

impl Lookup {
    pub fn anonymous(searched: impl Into<String>) -> Self {
        Lookup {
            credential: None,
            searched: searched.into(),
        }
    }

    /// "credentials of user X from F" / "anonymous access (no credentials for H in F)".
    pub fn describe(&self, host: &Host) -> String {
        match &self.credential {
            Some(c) => match c.username() {
                Some(u) => format!("tried the credentials of user {u:?} from {}", c.source),
                None => format!("tried the identity token from {}", c.source),
            },
            None => format!(
                "tried anonymous access (no credentials for {} in {}); run `rbuild login {}`",
                host.credential_key(),
                self.searched,
                host.domain
            ),
        }
    }
}

/// Looks up credentials for `host`: exact (normalized) host match only (SECURITY G4).
pub fn lookup(host: &Host, cfg: &RegistryConfig) -> Result<Lookup, RegistryError> {
    let Some(dir) = cfg.config_dir() else {
        return Ok(Lookup::anonymous("no config directory ($HOME unset)"));
    };
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Lookup::anonymous(path.display().to_string()))
        }
        Err(e) => return Err(RegistryError::io(&path)(e)),
    };
    let key = host.credential_key();
    let source = describe_source(&text, &key, &path);
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential_from_reader(&text[..], &key) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(Lookup {
            credential: Some(Credential {
                secret: Secret::Password { username, password },
                source,
            }),
            searched: path.display().to_string(),
        }),
        Ok(DockerCredential::IdentityToken(t)) => Ok(Lookup {
            credential: Some(Credential {
                secret: Secret::IdentityToken(t),
                source,
            }),
            searched: path.display().to_string(),
        }),
        Err(E::NoCredentialConfigured) => Ok(Lookup::anonymous(path.display().to_string())),
        // A helper that knows nothing of this host answers with an error: anonymous, as docker.
        Err(E::HelperFailure { .. }) | Err(E::HelperCommunicationError) => {
            Ok(Lookup::anonymous(source))
        }
        Err(e) => Err(RegistryError::Credentials(format!(
            "{}: {e:?} (entry for {key})",
            path.display()
        ))),
    }
}

/// Names the helper or file entry `docker_credential` will use, without reading secrets.
fn describe_source(config: &[u8], key: &str, path: &std::path::Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    if let Some(h) = v
        .get("credHelpers")
        .and_then(|m| m.get(key))
        .and_then(|h| h.as_str())
    {
        return format!(
            "credential helper docker-credential-{h} (credHelpers in {})",
            path.display()
        );
    }
    let has_entry = v.get("auths").and_then(|a| a.get(key)).is_some();
    match v.get("credsStore").and_then(|h| h.as_str()) {
        Some(h) if !has_entry => {
            format!(
                "credential helper docker-credential-{h} (credsStore in {})",
                path.display()
            )
        }
        _ => format!("{} (auths entry {key:?})", path.display()),
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the challenges of a `WWW-Authenticate` header value (RFC 7235: `scheme k="v", k=v`).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut scheme: Option<String> = None;
    let mut params: Vec<(String, String)> = Vec::new();
    let flush =
        |scheme: &Option<String>, params: &mut Vec<(String, String)>, out: &mut Vec<Challenge>| {
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            match scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("basic") => out.push(Challenge::Basic),
                Some("bearer") => {
                    if let Some(realm) = get("realm") {
                        out.push(Challenge::Bearer {
                            realm,
                            service: get("service"),
                            scope: get("scope"),
                        });
                    }
                }
                _ => {}
            }
            params.clear();
        };
    let b = header.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'=' | b',' | b'\t') {
            i += 1;
        }
        let token = &header[start..i];
        if token.is_empty() {
            break;
        }
        if i < b.len() && b[i] == b'=' {
            i += 1;
            let mut value = String::new();
            if i < b.len() && b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch_len = header[i..].chars().next().map_or(1, char::len_utf8);
                    value.push_str(&header[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1;
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = header[s..i].trim().to_string();
            }
            params.push((token.to_string(), value));
        } else {
            // A new auth scheme starts.
            if scheme.is_some() {
                flush(&scheme, &mut params, &mut out);
            }
            scheme = Some(token.to_string());
        }
    }
    if scheme.is_some() {
        flush(&scheme, &mut params, &mut out);
    }
    out
}

/// The host part of `scheme://authority/...`, with the scheme.
pub fn url_origin(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    Some((scheme, authority))
}

/// The last two DNS labels: a stand-in for the registrable domain (no public-suffix list is
/// shipped; hosts under multi-label public suffixes such as `co.uk` are treated as one site).
fn site(host: &str) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        return None;
    }
    let labels: Vec<&str> = host.trim_end_matches('.').rsplit('.').take(2).collect();
    Some(format!("{}.{}", labels[1], labels[0]).to_ascii_lowercase())
}

/// May credentials for `registry` be sent to this token `realm`? Same origin, or the same site
/// over HTTPS (`registry-1.docker.io` → `auth.docker.io`). A loopback or IP realm on another
/// authority never gets them (SECURITY G2; distribution fix for CVE-2026-33540).
pub fn realm_allowed(registry: &Host, realm: &str) -> bool {
    let Some((scheme, authority)) = url_origin(realm) else {
        return false;
    };
    if authority.eq_ignore_ascii_case(&registry.authority) && scheme == registry.scheme {
        return true;
    }
    if scheme != "https" || is_loopback(authority) {
        return false;
    }
    let (rh, _) = split_authority(authority);
    let (gh, _) = split_authority(&registry.authority);
    match (site(rh), site(gh)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `config.json` path for messages.
pub fn config_path(cfg: &RegistryConfig) -> Option<PathBuf> {
    cfg.config_dir().map(|d| d.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(d: &str) -> Host {
        Host::new(d, &RegistryConfig::default())
    }

    #[test]
    fn parses_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull,push""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/x:pull,push".into()),
            }]
        );
        let c = parse_challenges(r#"Basic realm="basic-realm", Bearer realm="http://x/t""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], Challenge::Basic);
    }

    #[test]
    fn g02_realm_binding() {
        let hub = host("docker.io");
        assert!(realm_allowed(&hub, "https://auth.docker.io/token"));
        assert!(!realm_allowed(&hub, "http://auth.docker.io/token"));
        assert!(!realm_allowed(
            &hub,
            "https://auth.docker.io.evil.com/token"
        ));
        assert!(!realm_allowed(&hub, "https://127.0.0.1:8080/token"));
        let local = host("127.0.0.1:5000");
        assert!(realm_allowed(&local, "http://127.0.0.1:5000/token"));
        assert!(!realm_allowed(&local, "http://127.0.0.1:5001/token"));
        assert!(!realm_allowed(&local, "http://localhost:5000/token"));
        let g = host("ghcr.io");
        assert!(realm_allowed(&g, "https://ghcr.io/token"));
        assert!(!realm_allowed(&g, "https://attacker.example/token"));
    }

    #[test]
    fn g04_credentials_match_exact_host_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"evil.azurecr.io":{"auth":"dTpw"},"registry.example.com":{"auth":"dTpw"},"https://index.docker.io/v1/":{"auth":"aHViOnB3"}}}"#,
        )
        .unwrap();
        let cfg = RegistryConfig {
            insecure: vec![],
            docker_config: Some(dir.path().to_path_buf()),
            transfer_deadline: None,
        };
        for (domain, found) in [
            ("evil.azurecr.io", true),
            ("registry.example.com", true),
            ("evil.azurecr.io.attacker.com", false),
            ("registry.example.com.evil", false),
            ("example.com", false),
            ("registry.example.com:5000", false),
            ("docker.io", true),
        ] {
            let l = lookup(&host(domain), &cfg).unwrap();
            assert_eq!(l.credential.is_some(), found, "{domain}");
        }
        let l = lookup(&host("docker.io"), &cfg).unwrap();
        assert_eq!(l.credential.as_ref().unwrap().username(), Some("hub"));
        // Debug output never shows the password.
        assert!(!format!("{l:?}").contains("pw"), "{l:?}");
        assert!(l.describe(&host("docker.io")).contains("\"hub\""));
    }
}
