//! The `# check=skip=A,B;error=true;experimental=all` directive (BuildKit's `ParseLintOptions`).

/// Which rules run and whether findings fail the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub experimental_all: bool,
    pub experimental: Vec<String>,
    /// `error=true`: any finding fails the build (and `--call check`).
    pub error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid check option {0:?}: expected key=value")]
    NoValue(String),
    #[error("invalid boolean value for check option error: {0:?}")]
    Bool(String),
    #[error("invalid check option {0:?}: skip, error or experimental")]
    Unknown(String),
}

impl CheckConfig {
    /// Parses the directive's value (the text after `check=`).
    pub fn parse(value: &str) -> Result<CheckConfig, ConfigError> {
        let mut c = CheckConfig::default();
        let value = value.split(' ').next().unwrap_or("");
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ConfigError::NoValue(part.to_string()))?;
            let list = || {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            };
            match k.trim() {
                "skip" if v.trim() == "all" => c.skip_all = true,
                "skip" => c.skip = list(),
                "experimental" if v.trim() == "all" => c.experimental_all = true,
                "experimental" => c.experimental = list(),
                "error" => {
                    c.error = match v.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "t" => true,
                        "false" | "0" | "f" => false,
                        _ => return Err(ConfigError::Bool(v.to_string())),
                    }
                }
                _ => return Err(ConfigError::Unknown(k.to_string())),
            }
        }
        Ok(c)
    }

    /// Whether `rule` reports: experimental rules only when named, others unless skipped.
    pub fn enabled(&self, rule: &str) -> bool {
        if super::EXPERIMENTAL.contains(&rule) {
            return self.experimental_all || self.experimental.iter().any(|r| r == rule);
        }
        !(self.skip_all || self.skip.iter().any(|r| r == rule))
    }
}
