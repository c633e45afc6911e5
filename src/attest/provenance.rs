//! The SLSA provenance v1 statement of a build, shaped as BuildKit writes it
//! (`buildDefinition.externalParameters.{configSource,request}`, `internalParameters`,
//! `resolvedDependencies`, `runDetails.{builder,metadata}`) with rbuild's extension fields
//! (`rbuild_*`). docs/provenance.md lists every field and what `min` and `max` include.

use super::{AttestError, DEFAULT_BUILDER_ID, PREDICATE_SLSA_V1, STATEMENT_V1};
use crate::digest::Digest;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How much the provenance records (buildx's `--provenance=mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inputs by digest, args, bases, context, epoch, profile, platform, flags.
    Min,
    /// `min` plus the Dockerfile text, the secret and ssh ids, and every RUN that had network.
    Max,
}

/// One base image (`FROM` or `COPY --from` naming an image), as resolved by the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The name as the Dockerfile wrote it (after ARG expansion).
    pub name: String,
    pub platform: String,
    /// The image id (config digest) the name resolved to.
    pub image_id: Digest,
    /// The manifest digest the image was pulled or loaded with, when the store knows it.
    pub manifest_digest: Option<Digest>,
}

/// The git checkout a context directory is, when it is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Uncommitted changes: the commit alone does not give the context.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRecord {
    /// `context_digest()` of the context as the build saw it.
    pub digest: Digest,
    pub git: Option<GitInfo>,
}

/// Everything a build's provenance records, collected by the solver.
#[derive(Debug, Clone, Default)]
pub struct BuildRecord {
    /// The Dockerfile's path relative to the context (`Dockerfile` by default), or as given.
    pub dockerfile_path: String,
    pub dockerfile_text: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub bases: Vec<BaseImage>,
    pub context: Option<ContextRecord>,
    pub source_date_epoch: Option<i64>,
    /// Flags that change the output bytes, by their CLI names (`compression`, `repro-profile`, …).
    pub flags: BTreeMap<String, String>,
    /// The target platform (`linux/amd64`).
    pub platform: String,
    pub secret_ids: Vec<String>,
    pub ssh_ids: Vec<String>,
    /// RUN steps that had network access: (Dockerfile line, network mode).
    pub network_runs: Vec<(usize, String)>,
    /// Seconds since the epoch; ignored when `source_date_epoch` is set.
    pub started: i64,
    pub finished: i64,
}

/// An in-toto Statement v1 (BuildKit's field order: `_type`, `predicateType`, `subject`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement<P> {
    #[serde(rename = "_type")]
    pub type_: String,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub subject: Vec<Subject>,
    pub predicate: P,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Predicate {
    #[serde(rename = "buildDefinition")]
    pub build_definition: BuildDefinition,
    #[serde(rename = "runDetails")]
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildDefinition {
    #[serde(rename = "buildType")]
    pub build_type: String,
    #[serde(rename = "externalParameters")]
    pub external_parameters: ExternalParameters,
    #[serde(rename = "internalParameters")]
    pub internal_parameters: InternalParameters,
    #[serde(
        rename = "resolvedDependencies",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalParameters {
    #[serde(rename = "configSource")]
    pub config_source: ConfigSource,
    pub request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub frontend: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<IdRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<IdRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<Local>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Local {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InternalParameters {
    #[serde(rename = "builderPlatform")]
    pub builder_platform: String,
}

/// A SLSA v1 ResourceDescriptor (field order of in-toto's Go struct).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: RunMetadata,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetadata {
    #[serde(rename = "invocationID")]
    pub invocation_id: String,
    #[serde(rename = "startedOn")]
    pub started_on: String,
    #[serde(rename = "finishedOn")]
    pub finished_on: String,
    #[serde(rename = "rbuild_metadata")]
    pub rbuild_metadata: RbuildMetadata,
    /// No RUN had network access: the recorded inputs are all the inputs.
    #[serde(rename = "rbuild_hermetic")]
    pub hermetic: bool,
    /// The build set SOURCE_DATE_EPOCH: its output is meant to be byte-reproducible.
    #[serde(rename = "rbuild_reproducible")]
    pub reproducible: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RbuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs: Option<GitInfo>,
    /// `max` only: the Dockerfile (BuildKit's `source.infos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfos>,
    /// RUN steps with network access (`max`: all of them; `min`: the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetworkRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfos {
    pub infos: Vec<SourceInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    pub filename: String,
    pub language: String,
    /// Base64, as BuildKit encodes Go `[]byte`.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRun {
    pub line: usize,
    pub network: String,
}

pub type ProvenanceStatement = Statement<Predicate>;

/// `name` of the resolved dependency that is the build context.
pub const CONTEXT_DEPENDENCY: &str = "context";
/// Annotation on a base image dependency: its image id (config digest).
pub const ANNOTATION_IMAGE_ID: &str = "rbuild.image-id";
/// Annotation on a base image dependency: the name the Dockerfile used.
pub const ANNOTATION_IMAGE_NAME: &str = "rbuild.image-name";

/// A package URL for an image name (BuildKit's `pkg:docker/NAME@TAG?platform=OS%2FARCH`).
pub fn image_purl(name: &str, platform: &str) -> String {
    let (repo, tag) = match name.rsplit_once('@') {
        Some((r, d)) => (r.to_string(), d.to_string()),
        None => match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (name.to_string(), "latest".to_string()),
        },
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(&repo)
        .to_string();
    format!(
        "pkg:docker/{repo}@{}?platform={}",
        tag.replace(':', "%3A"),
        platform.replace('/', "%2F")
    )
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl BuildRecord {
    /// The predicate for `mode`. Deterministic for the same record: with SOURCE_DATE_EPOCH the
    /// timestamps are the epoch and the invocation id is a digest of the inputs.
    pub fn predicate(&self, mode: Mode, builder_id: Option<&str>) -> Predicate {
        let mut args = BTreeMap::new();
        for (k, v) in &self.build_args {
            args.insert(format!("build-arg:{k}"), v.clone());
        }
        for (k, v) in &self.labels {
            args.insert(format!("label:{k}"), v.clone());
        }
        if let Some(t) = &self.target {
            args.insert("target".into(), t.clone());
        }
        if let Some(e) = self.source_date_epoch {
            args.insert("source-date-epoch".into(), e.to_string());
        }
        args.insert("platform".into(), self.platform.clone());
        for (k, v) in &self.flags {
            args.insert(k.clone(), v.clone());
        }
        let ids = |v: &[String]| v.iter().map(|id| IdRef { id: id.clone() }).collect();
        let request = Request {
            frontend: "dockerfile.v0".into(),
            args,
            secrets: if mode == Mode::Max {
                ids(&self.secret_ids)
            } else {
                Vec::new()
            },
            ssh: if mode == Mode::Max {
                ids(&self.ssh_ids)
            } else {
                Vec::new()
            },
            locals: vec![
                Local {
                    name: "context".into(),
                },
                Local {
                    name: "dockerfile".into(),
                },
            ],
        };
        let df_digest = Digest::of_bytes(self.dockerfile_text.as_bytes());
        let git = self.context.as_ref().and_then(|c| c.git.clone());
        let config_source = ConfigSource {
            uri: git
                .as_ref()
                .and_then(|g| g.remote.as_ref().map(|r| format!("{r}#{}", g.commit))),
            digest: BTreeMap::from([("sha256".to_string(), df_digest.hex().to_string())]),
            path: self.dockerfile_path.clone(),
        };
        let mut deps = Vec::new();
        for b in &self.bases {
            let mut digest = BTreeMap::new();
            if let Some(m) = &b.manifest_digest {
                digest.insert("sha256".to_string(), m.hex().to_string());
            }
            deps.push(ResourceDescriptor {
                uri: Some(image_purl(&b.name, &b.platform)),
                digest,
                name: None,
                annotations: BTreeMap::from([
                    (ANNOTATION_IMAGE_ID.to_string(), b.image_id.to_string()),
                    (ANNOTATION_IMAGE_NAME.to_string(), b.name.clone()),
                ]),
            });
        }
        if let Some(c) = &self.context {
            let mut digest = BTreeMap::from([("sha256".to_string(), c.digest.hex().to_string())]);
            if let Some(g) = &c.git {
                digest.insert("gitCommit".into(), g.commit.clone());
            }
            deps.push(ResourceDescriptor {
                uri: c.git.as_ref().and_then(|g| g.remote.clone()),
                digest,
                name: Some(CONTEXT_DEPENDENCY.into()),
                annotations: BTreeMap::new(),
            });
        }
        let network: Vec<NetworkRun> = self
            .network_runs
            .iter()
            .take(if mode == Mode::Max { usize::MAX } else { 1 })
            .map(|(line, network)| NetworkRun {
                line: *line,
                network: network.clone(),
            })
            .collect();
        let source = (mode == Mode::Max).then(|| SourceInfos {
            infos: vec![SourceInfo {
                filename: self.dockerfile_path.clone(),
                language: "Dockerfile".into(),
                data: base64::engine::general_purpose::STANDARD
                    .encode(self.dockerfile_text.as_bytes()),
            }],
        });
        let build_definition = BuildDefinition {
            build_type: super::BUILD_TYPE.into(),
            external_parameters: ExternalParameters {
                config_source,
                request,
            },
            internal_parameters: InternalParameters {
                builder_platform: crate::platform::Platform::host().to_string(),
            },
            resolved_dependencies: deps,
        };
        let (started, finished) = match self.source_date_epoch {
            Some(e) => (e, e),
            None => (self.started, self.finished),
        };
        let invocation_id = match self.source_date_epoch {
            // Same inputs, same id: a digest of everything recorded above.
            Some(_) => serde_json::to_vec(&build_definition)
                .map(|b| Digest::of_bytes(&b).hex()[..32].to_string())
                .unwrap_or_default(),
            None => fresh_id(),
        };
        Predicate {
            build_definition,
            run_details: RunDetails {
                builder: Builder {
                    id: builder_id.unwrap_or(DEFAULT_BUILDER_ID).to_string(),
                    version: BTreeMap::from([(
                        "rbuild".to_string(),
                        env!("CARGO_PKG_VERSION").to_string(),
                    )]),
                },
                metadata: RunMetadata {
                    invocation_id,
                    started_on: rfc3339(started),
                    finished_on: rfc3339(finished),
                    rbuild_metadata: RbuildMetadata {
                        vcs: git,
                        source,
                        network,
                    },
                    hermetic: self.network_runs.is_empty(),
                    reproducible: self.source_date_epoch.is_some(),
                },
            },
        }
    }
}

/// A build-unique id when no epoch pins the build: time and pid hashed.
fn fresh_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{now}-{}", std::process::id());
    Digest::of_bytes(seed.as_bytes()).hex()[..32].to_string()
}

/// The statement bytes for `subjects` (name, manifest digest).
pub fn statement_bytes<P: Serialize>(
    predicate_type: &str,
    subjects: &[(String, Digest)],
    predicate: P,
) -> Result<Vec<u8>, AttestError> {
    let st = Statement {
        type_: STATEMENT_V1.into(),
        predicate_type: predicate_type.into(),
        subject: subjects
            .iter()
            .map(|(name, d)| Subject {
                name: name.clone(),
                digest: BTreeMap::from([("sha256".to_string(), d.hex().to_string())]),
            })
            .collect(),
        predicate,
    };
    serde_json::to_vec(&st).map_err(|source| AttestError::Json {
        what: "attestation statement",
        source,
    })
}

/// The provenance statement of `record` for the image manifest `manifest`, named by `tags`
/// (BuildKit names subjects by package URL; `_` when the image has no name).
pub fn provenance_statement(
    record: &BuildRecord,
    mode: Mode,
    builder_id: Option<&str>,
    tags: &[String],
    manifest: &Digest,
) -> Result<Vec<u8>, AttestError> {
    statement_bytes(
        PREDICATE_SLSA_V1,
        &subjects(tags, &record.platform, manifest),
        record.predicate(mode, builder_id),
    )
}

/// Subjects for an image: one package URL per tag, `_` when untagged.
pub fn subjects(tags: &[String], platform: &str, manifest: &Digest) -> Vec<(String, Digest)> {
    if tags.is_empty() {
        return vec![("_".to_string(), manifest.clone())];
    }
    tags.iter()
        .map(|t| (image_purl(t, platform), manifest.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> BuildRecord {
        BuildRecord {
            dockerfile_path: "Dockerfile".into(),
            dockerfile_text: "FROM busybox\nRUN --mount=type=secret,id=tok true\n".into(),
            build_args: BTreeMap::from([("A".into(), "1".into())]),
            bases: vec![BaseImage {
                name: "busybox".into(),
                platform: "linux/amd64".into(),
                image_id: Digest::of_bytes(b"config"),
                manifest_digest: Some(Digest::of_bytes(b"manifest")),
            }],
            context: Some(ContextRecord {
                digest: Digest::of_bytes(b"ctx"),
                git: None,
            }),
            source_date_epoch: Some(1_700_000_000),
            platform: "linux/amd64".into(),
            secret_ids: vec!["tok".into()],
            network_runs: vec![(2, "default".into())],
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_with_epoch_and_fields_present() {
        let r = record();
        let m = Digest::of_bytes(b"m");
        let a = provenance_statement(&r, Mode::Max, None, &["app:1".into()], &m).unwrap();
        let b = provenance_statement(&r, Mode::Max, None, &["app:1".into()], &m).unwrap();
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["_type"], STATEMENT_V1);
        assert_eq!(
            v["subject"][0]["name"],
            "pkg:docker/app@1?platform=linux%2Famd64"
        );
        let p = &v["predicate"];
        assert_eq!(
            p["runDetails"]["metadata"]["startedOn"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["request"]["args"]["build-arg:A"],
            "1"
        );
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["request"]["secrets"][0]["id"],
            "tok"
        );
        assert_eq!(p["runDetails"]["metadata"]["rbuild_hermetic"], false);
        assert!(p["runDetails"]["metadata"]["rbuild_metadata"]["source"].is_object());
        let min = provenance_statement(&r, Mode::Min, None, &[], &m).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&min).unwrap();
        assert_eq!(v["subject"][0]["name"], "_");
        assert!(v["predicate"]["runDetails"]["metadata"]["rbuild_metadata"]["source"].is_null());
        assert!(
            v["predicate"]["buildDefinition"]["externalParameters"]["request"]["secrets"].is_null()
        );
    }

    #[test]
    fn purls() {
        assert_eq!(
            image_purl("busybox", "linux/amd64"),
            "pkg:docker/busybox@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            image_purl("127.0.0.1:5000/a/b:v2", "linux/arm64/v8"),
            "pkg:docker/127.0.0.1:5000/a/b@v2?platform=linux%2Farm64%2Fv8"
        );
    }
}
