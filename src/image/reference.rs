//! Image references (`name[:tag][@digest]`) with Docker's normalization rules
//! (`distribution/reference` `ParseNormalizedNamed`): `x` → `docker.io/library/x`, default tag
//! `latest`, familiar form for display.

use crate::digest::Digest;
use crate::image::reference_grammar::{is_domain, is_path, is_tag};
use crate::image::ImageError;
use std::fmt;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_MAX: usize = 255;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference; errors name the offending input.
    pub fn parse(input: &str) -> Result<Self, ImageError> {
        let err = |reason: &str| ImageError::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    Digest::parse(d)
                        .map_err(|_| err("invalid digest (only sha256 is supported)"))?,
                ),
            ),
            None => (input, None),
        };
        // A ':' after the last '/' separates the tag; earlier ones belong to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !is_tag(t) {
                return Err(err("invalid tag"));
            }
        }
        if name.is_empty() {
            return Err(err("empty name"));
        }
        if Digest::from_hex(name).is_ok() {
            return Err(err("cannot specify 64-byte hexadecimal strings"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if !is_domain(&domain) {
            return Err(err("invalid registry domain"));
        }
        if path.to_lowercase() != path {
            return Err(err("repository name must be lowercase"));
        }
        if !is_path(&path) {
            return Err(err("invalid repository name"));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > NAME_TOTAL_MAX {
            return Err(err("repository name too long"));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Parses and adds the `latest` tag when neither tag nor digest is given (`docker tag x`).
    pub fn parse_tagged(input: &str) -> Result<Self, ImageError> {
        let mut r = Self::parse(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_string());
        }
        Ok(r)
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/alpine`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag, or `latest` when the reference has neither tag nor digest.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// Full repository name: `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Short repository name as Docker displays it: `alpine`, `user/app`, `ghcr.io/o/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(p) if !p.contains('/') => p.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    fn with_suffix(&self, name: String) -> String {
        let mut s = name;
        if let Some(t) = self.tag_or_latest() {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// `docker.io/library/alpine:latest` (tag defaults to `latest` unless a digest is given).
    pub fn normalized(&self) -> String {
        self.with_suffix(self.name())
    }

    /// `alpine:latest`.
    pub fn familiar(&self) -> String {
        self.with_suffix(self.familiar_name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
            (
                "alpine:3.19",
                "docker.io/library/alpine:3.19",
                "alpine:3.19",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            (
                "docker.io/library/x",
                "docker.io/library/x:latest",
                "x:latest",
            ),
            ("index.docker.io/x:1", "docker.io/library/x:1", "x:1"),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            ("localhost/a", "localhost/a:latest", "localhost/a:latest"),
            (
                "ghcr.io/o/app",
                "ghcr.io/o/app:latest",
                "ghcr.io/o/app:latest",
            ),
        ];
        for (input, norm, fam) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.normalized(), norm, "{input}");
            assert_eq!(r.familiar(), fam, "{input}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("x@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.normalized(), format!("docker.io/library/x@{d}"));
        assert_eq!(r.familiar_name(), "x");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "UPPER",
            "a:b:c",
            "a::b",
            "-a",
            "a/",
            "a//b",
            "x:-tag",
            "x@sha256:zz",
            &"a".repeat(64),
            &format!("{}:t", "a".repeat(300)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
