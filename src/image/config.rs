//! The image config (`application/vnd.oci.image.config.v1+json`, also Docker's image JSON).
//!
//! Own structs rather than `oci-spec`'s: those use `HashMap`s (non-deterministic output) and drop
//! Docker's `Healthcheck`/`OnBuild`/`Shell` (CRATES.md §2). Unknown fields of base images are kept
//! in `extra` so that they survive a rebuild.
//!
//! Serialization is canonical: top-level keys sorted (as BuildKit's exporter writes them, it
//! round-trips the config through a Go map), nested objects in Go struct field order, Go `omitempty`
//! rules. Hash exactly the bytes [`ImageConfig::to_bytes`] returns and never re-serialize them.

use crate::digest::Digest;
use crate::image::{lenient, ImageError};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// `PATH` of a `FROM scratch` image (BuildKit `system.DefaultPathEnv("linux")`).
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An empty JSON object, the value type of `ExposedPorts` and `Volumes` (Go `struct{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `config.Healthcheck`; durations are nanoseconds as in Docker's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    #[serde(
        rename = "Test",
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        rename = "Interval",
        default,
        deserialize_with = "lenient::int",
        skip_serializing_if = "is_zero"
    )]
    pub interval: i64,
    #[serde(
        rename = "Timeout",
        default,
        deserialize_with = "lenient::int",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: i64,
    #[serde(
        rename = "StartPeriod",
        default,
        deserialize_with = "lenient::int",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: i64,
    #[serde(
        rename = "StartInterval",
        default,
        deserialize_with = "lenient::int",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: i64,
    #[serde(
        rename = "Retries",
        default,
        deserialize_with = "lenient::int",
        skip_serializing_if = "is_zero"
    )]
    pub retries: i64,
}

/// The `config` object: runtime defaults of containers made from the image. Read by hand
/// (`image::config_de`) so that `null` is accepted everywhere and errors carry their JSON path.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `None` = not set; `Some(vec![])` = explicitly emptied (`ENTRYPOINT []`).
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// `None` = not set (`null` or absent); `Some(vec![])` = `CMD []`, written as `[]`.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(rename = "ArgsEscaped", default, skip_serializing_if = "is_false")]
    pub args_escaped: bool,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
    /// Fields rbuild does not model (`Hostname`, `StopTimeout`, …), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: the uncompressed layer digests, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(
        rename = "type",
        default = "layers",
        deserialize_with = "lenient::string"
    )]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient::list")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

fn layers() -> String {
    "layers".to_string()
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub created_by: String,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub author: String,
    #[serde(
        default,
        deserialize_with = "lenient::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub comment: String,
    #[serde(
        default,
        deserialize_with = "lenient::boolean",
        skip_serializing_if = "is_false"
    )]
    pub empty_layer: bool,
}

/// The image config document. Read by hand (`image::config_de`): see [`ContainerConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// Go `RFC3339Nano` text; see [`format_time`].
    pub created: Option<String>,
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
    /// Unknown top-level fields (`os.version`, `container_config`, `docker_version`, …).
    pub extra: BTreeMap<String, Value>,
}

/// Formats an instant the way Go's `time.RFC3339Nano` does (trailing fraction zeros trimmed, `Z`).
pub fn format_time(t: jiff::Timestamp) -> String {
    t.to_string()
}

/// The Go/OCI architecture name of the machine rbuild runs on.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl ImageConfig {
    /// The config of `FROM scratch`, as BuildKit creates it: default `PATH`, `WorkingDir` `/`.
    pub fn scratch(architecture: &str, os: &str, variant: Option<&str>) -> Self {
        ImageConfig {
            created: None,
            author: None,
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
            config: ContainerConfig {
                env: vec![format!("PATH={DEFAULT_PATH_ENV}")],
                working_dir: "/".to_string(),
                ..ContainerConfig::default()
            },
            rootfs: RootFs::default(),
            history: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// `FROM scratch` for the host platform (`linux/<host arch>`).
    pub fn scratch_for_host() -> Self {
        Self::scratch(host_architecture(), "linux", None)
    }

    /// Parses a config blob. Unknown fields are kept in `extra`; `null` reads as empty; an
    /// error names the JSON path of the bad field (`config.OnBuild: expected a list, got a
    /// number`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ImageError> {
        lenient::parse("image config", bytes).map_err(ImageError::Json)
    }

    /// The canonical JSON bytes (compact, fixed key order). The image id is the digest of these.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        serde_json::to_vec(self).map_err(|source| ImageError::Write {
            what: "image config",
            source,
        })
    }

    /// The image id: digest of [`Self::to_bytes`].
    pub fn digest(&self) -> Result<Digest, ImageError> {
        Ok(Digest::of_bytes(&self.to_bytes()?))
    }

    /// This config as the starting point of a build on top of it: only what rbuild models
    /// plus the OCI platform fields (`os.version`, `os.features`) stay. Docker's container
    /// fields (`Hostname`, `AttachStdin`, `Image`, `container_config`, `docker_version`, …)
    /// describe the container that made the base, not the new image, so they go, as BuildKit
    /// drops them (it reads a base into its typed image struct). A base only passed through
    /// (`pull`, `load`, `save`, `push`) keeps its bytes untouched (docs/compat.md).
    pub fn into_base(mut self) -> Self {
        self.extra
            .retain(|k, _| k == "os.version" || k == "os.features");
        self.config.extra.clear();
        self
    }

    /// Docker `ENV` semantics: replaces `key=…` in place, or appends `key=value`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let slot = self
            .config
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match slot {
            Some(existing) => *existing = entry,
            None => self.config.env.push(entry),
        }
    }

    /// The value of `key` in `config.Env`.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .find_map(|e| match e.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if e == key => Some(""),
                _ => None,
            })
    }

    /// Appends a history entry.
    pub fn add_history(&mut self, entry: History) {
        self.history.push(entry);
    }

    /// Appends a history entry built from its parts (`created` formatted as Go RFC3339Nano).
    pub fn add_history_entry(
        &mut self,
        created: Option<jiff::Timestamp>,
        created_by: &str,
        comment: &str,
        empty_layer: bool,
    ) {
        self.history.push(History {
            created: created.map(format_time),
            created_by: created_by.to_string(),
            author: String::new(),
            comment: comment.to_string(),
            empty_layer,
        });
    }

    /// Appends a layer's diffID to `rootfs.diff_ids`.
    pub fn push_layer(&mut self, diff_id: Digest) {
        self.rootfs.diff_ids.push(diff_id);
    }

    /// Sets `created`.
    pub fn set_created(&mut self, t: jiff::Timestamp) {
        self.created = Some(format_time(t));
    }

    /// Number of history entries that own a layer; equals `rootfs.diff_ids.len()` in a valid image.
    pub fn non_empty_history_len(&self) -> usize {
        self.history.iter().filter(|h| !h.empty_layer).count()
    }
}

/// A borrowed top-level value, so the top level can be written in sorted key order while nested
/// objects keep their own (Go struct) order.
enum TopValue<'a> {
    Str(&'a str),
    Config(&'a ContainerConfig),
    RootFs(&'a RootFs),
    History(&'a [History]),
    Extra(&'a Value),
}

impl Serialize for TopValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TopValue::Str(v) => v.serialize(s),
            TopValue::Config(v) => v.serialize(s),
            TopValue::RootFs(v) => v.serialize(s),
            TopValue::History(v) => v.serialize(s),
            TopValue::Extra(v) => v.serialize(s),
        }
    }
}

impl Serialize for ImageConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut top: BTreeMap<&str, TopValue<'_>> = BTreeMap::new();
        for (k, v) in &self.extra {
            top.insert(k.as_str(), TopValue::Extra(v));
        }
        if let Some(c) = &self.created {
            top.insert("created", TopValue::Str(c));
        }
        if let Some(a) = self.author.as_deref().filter(|a| !a.is_empty()) {
            top.insert("author", TopValue::Str(a));
        }
        top.insert("architecture", TopValue::Str(&self.architecture));
        top.insert("os", TopValue::Str(&self.os));
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            top.insert("variant", TopValue::Str(v));
        }
        top.insert("config", TopValue::Config(&self.config));
        top.insert("rootfs", TopValue::RootFs(&self.rootfs));
        if !self.history.is_empty() {
            top.insert("history", TopValue::History(&self.history));
        }
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in &top {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageConfig {
        let mut c = ImageConfig::scratch("amd64", "linux", None);
        c.created = Some("2024-01-02T03:04:05.12Z".into());
        c.set_env("FOO", "bar");
        c.config.cmd = Some(vec!["/bin/sh".into()]);
        c.config.exposed_ports.insert("80/tcp".into(), Empty {});
        c.config.labels.insert("b".into(), "2".into());
        c.config.labels.insert("a".into(), "1".into());
        c.config.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 300_000_000_000,
            ..Default::default()
        });
        c.push_layer(Digest::of_bytes(&[0u8; 1024]));
        c.add_history_entry(None, "COPY a / # buildkit", "buildkit.dockerfile.v0", false);
        c.add_history_entry(None, "CMD [\"/bin/sh\"]", "buildkit.dockerfile.v0", true);
        c
    }

    #[test]
    fn scratch_has_default_path_and_workdir() {
        let c = ImageConfig::scratch("amd64", "linux", None);
        let s = String::from_utf8(c.to_bytes().unwrap()).unwrap();
        assert_eq!(
            s,
            r#"{"architecture":"amd64","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn exact_bytes_and_docker_names() {
        let s = String::from_utf8(sample().to_bytes().unwrap()).unwrap();
        assert_eq!(
            s,
            concat!(
                r#"{"architecture":"amd64","config":{"ExposedPorts":{"80/tcp":{}},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","FOO=bar"],"#,
                r#""Cmd":["/bin/sh"],"WorkingDir":"/","Labels":{"a":"1","b":"2"},"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":300000000000}},"#,
                r#""created":"2024-01-02T03:04:05.12Z","history":[{"created_by":"COPY a / # buildkit","comment":"buildkit.dockerfile.v0"},"#,
                r#"{"created_by":"CMD [\"/bin/sh\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}],"os":"linux","#,
                r#""rootfs":{"type":"layers","diff_ids":["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]}}"#
            )
        );
    }

    #[test]
    fn deterministic_across_runs_and_roundtrip() {
        let a = sample().to_bytes().unwrap();
        for _ in 0..20 {
            assert_eq!(sample().to_bytes().unwrap(), a);
        }
        let back = ImageConfig::from_bytes(&a).unwrap();
        assert_eq!(back, sample());
        assert_eq!(back.to_bytes().unwrap(), a);
    }

    #[test]
    fn unknown_fields_survive() {
        let src = br#"{"architecture":"amd64","os":"linux","os.version":"10","docker_version":"20.10",
            "container_config":{"Hostname":"abc"},"config":{"Hostname":"h","Cmd":null,"StopTimeout":5},
            "rootfs":{"type":"layers","diff_ids":null}}"#;
        let c = ImageConfig::from_bytes(src).unwrap();
        assert_eq!(c.config.cmd, None);
        assert_eq!(c.config.extra["Hostname"], "h");
        let s = String::from_utf8(c.to_bytes().unwrap()).unwrap();
        assert_eq!(
            s,
            r#"{"architecture":"amd64","config":{"Hostname":"h","StopTimeout":5},"container_config":{"Hostname":"abc"},"docker_version":"20.10","os":"linux","os.version":"10","rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn cmd_empty_vs_unset() {
        let mut c = ImageConfig::scratch("amd64", "linux", None);
        c.config.cmd = Some(vec![]);
        let s = String::from_utf8(c.to_bytes().unwrap()).unwrap();
        assert!(s.contains(r#""Cmd":[]"#), "{s}");
        let back = ImageConfig::from_bytes(s.as_bytes()).unwrap();
        assert_eq!(back.config.cmd, Some(vec![]));
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut c = ImageConfig::scratch("amd64", "linux", None);
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        c.set_env("PATH", "/x");
        assert_eq!(c.config.env, vec!["PATH=/x", "A=3", "B=2"]);
        assert_eq!(c.env_get("A"), Some("3"));
        assert_eq!(c.env_get("PAT"), None);
    }

    #[test]
    fn go_rfc3339nano() {
        let t: jiff::Timestamp = "2024-05-06T07:08:09.120Z".parse().unwrap();
        assert_eq!(format_time(t), "2024-05-06T07:08:09.12Z");
        assert_eq!(
            format_time(jiff::Timestamp::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
    }
}
