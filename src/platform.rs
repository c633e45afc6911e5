//! Target/build platforms (`os/arch[/variant]`), the source of the predefined platform ARGs.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, in OCI names (`x86_64` -> `amd64`, …).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]` (e.g. `linux/arm64/v8`) and normalizes it ([`Platform::normalize`]).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "invalid platform \"{s}\": expected os/arch[/variant]"
            ));
        }
        Ok(Platform {
            os: parts[0].to_lowercase(),
            architecture: parts[1].to_lowercase(),
            variant: parts.get(2).map(|v| v.to_lowercase()),
        }
        .normalize())
    }

    /// Parses a `--platform` list (`linux/amd64,linux/arm64`): normalized, duplicates dropped,
    /// order kept.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, String> {
        let mut out: Vec<Platform> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p = Platform::parse(part)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err(format!("invalid platform list \"{s}\": no platform"));
        }
        Ok(out)
    }

    /// The canonical names containerd's `platforms.Normalize` gives: `x86_64` → `amd64`,
    /// `aarch64` → `arm64` (variant `v8` dropped: it is the only one), `armhf` → `arm/v7`,
    /// `armel` → `arm/v6`, `arm` without a variant → `arm/v7`, `i386` → `386`, `macos` → `darwin`.
    pub fn normalize(self) -> Platform {
        let os = match self.os.as_str() {
            "macos" => "darwin".to_string(),
            _ => self.os,
        };
        let variant = self.variant;
        let (arch, variant) = match self.architecture.as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
            "aarch64" | "arm64" => (
                "arm64",
                variant.filter(|v| !matches!(v.as_str(), "8" | "v8" | "v8.0")),
            ),
            "armhf" => ("arm", Some("v7".to_string())),
            "armel" => ("arm", Some("v6".to_string())),
            "arm" => match variant.as_deref() {
                None | Some("7") => ("arm", Some("v7".to_string())),
                Some(v @ ("5" | "6" | "8")) => ("arm", Some(format!("v{v}"))),
                _ => ("arm", variant),
            },
            "i386" => ("386", variant),
            _ => {
                return Platform {
                    os,
                    architecture: self.architecture,
                    variant,
                }
            }
        };
        Platform {
            os,
            architecture: arch.to_string(),
            variant,
        }
    }

    /// Whether an image for `other` (as an index or config names it) runs as `self`: same os
    /// and architecture after normalization, and the same variant (containerd's matcher, without
    /// its fallbacks to older arm variants).
    pub fn matches(&self, other: &Platform) -> bool {
        let a = self.clone().normalize();
        let b = other.clone().normalize();
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }

    /// The architecture name the Linux kernel (`uname -m`) and QEMU use for this platform.
    pub fn kernel_arch(&self) -> &str {
        kernel_arch_of(&self.architecture).unwrap_or(&self.architecture)
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::host()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The Linux kernel's (`uname -m`) and QEMU's name of an OCI architecture (`arm64` → `aarch64`),
/// for the architectures both know.
pub fn kernel_arch_of(oci_arch: &str) -> Option<&'static str> {
    Some(match oci_arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "mips64le" => "mips64el",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_containerd() {
        for (given, want) in [
            ("linux/x86_64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/v5", "linux/arm/v5"),
            ("linux/i386", "linux/386"),
            ("linux/riscv64", "linux/riscv64"),
        ] {
            assert_eq!(Platform::parse(given).unwrap().to_string(), want, "{given}");
        }
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }

    #[test]
    fn list_and_matching() {
        let l = Platform::parse_list("linux/amd64, linux/arm64,linux/aarch64").unwrap();
        assert_eq!(l.len(), 2);
        assert!(Platform::parse_list(" , ").is_err());
        let v8 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert!(Platform::parse("linux/arm64").unwrap().matches(&v8));
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: None,
        };
        assert!(Platform::parse("linux/arm/v7").unwrap().matches(&arm));
        assert!(!Platform::parse("linux/arm/v6").unwrap().matches(&arm));
    }
}
