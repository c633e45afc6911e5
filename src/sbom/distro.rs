//! The distribution a rootfs comes from, from `/etc/os-release` (or `/usr/lib/os-release`), for
//! the `distro=` qualifier of deb and apk purls.

use std::path::Path;

use super::rootfs::RootFs;
use super::SbomError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Distro {
    /// `ID` (`debian`, `ubuntu`, `alpine`), empty when unknown.
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`), empty when unknown (Debian testing/sid has none).
    pub version_id: String,
}

impl Distro {
    pub fn read(root: &RootFs) -> Result<Self, SbomError> {
        for p in ["etc/os-release", "usr/lib/os-release"] {
            if let Some(text) = root.read_text(Path::new(p), 64 * 1024)? {
                return Ok(Self::parse(&text));
            }
        }
        Ok(Distro::default())
    }

    /// Parses os-release's shell-like `KEY=value` / `KEY="value"` lines.
    pub fn parse(text: &str) -> Self {
        let mut d = Distro::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
            match k.trim() {
                "ID" => d.id = v,
                "VERSION_ID" => d.version_id = v,
                _ => {}
            }
        }
        d
    }

    /// The `distro=` qualifier (`debian-12`), empty when the version is unknown.
    pub fn qualifier(&self) -> String {
        if self.id.is_empty() || self.version_id.is_empty() {
            String::new()
        } else {
            format!("{}-{}", self.id, self.version_id)
        }
    }

    /// The purl namespace, `fallback` when os-release does not say.
    pub fn namespace<'a>(&'a self, fallback: &'a str) -> &'a str {
        if self.id.is_empty() {
            fallback
        } else {
            &self.id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Distro;

    #[test]
    fn parses_quoted_values() {
        let d = Distro::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        assert_eq!(d.qualifier(), "debian-12");
        assert_eq!(d.namespace("x"), "debian");
        assert_eq!(Distro::parse("").namespace("debian"), "debian");
        assert_eq!(Distro::parse("ID=debian\n").qualifier(), "");
    }
}
