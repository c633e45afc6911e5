//! What a build's provenance records (`attest::BuildRecord`), collected as the build runs: the
//! base images as resolved, the RUN steps that had network access; and, at the end, the
//! Dockerfile, args, context digest and the flags that change the output.

use super::options::{BuildOptions, ContextSource};
use super::solver::{lock, Solver};
use crate::attest::{BaseImage, BuildRecord, ContextRecord};
use crate::digest::Digest;
use crate::exec::Network;
use crate::platform::Platform;

impl Solver<'_> {
    /// Notes that `name` resolved to image `id` (once per name and platform).
    pub(super) fn note_base(&self, name: &str, platform: &Platform, id: &Digest) {
        let manifest_digest = self.store.references_of(id).ok().and_then(|(_, digests)| {
            let repo = name.split('@').next().unwrap_or(name);
            let repo = repo
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(repo, |(r, _)| r);
            let pick = digests
                .iter()
                .find(|d| d.split('@').next().is_some_and(|r| r.ends_with(repo)))
                .or(digests.first())?;
            Digest::parse(pick.rsplit('@').next()?).ok()
        });
        let base = BaseImage {
            name: name.to_string(),
            platform: platform.to_string(),
            image_id: id.clone(),
            manifest_digest,
        };
        let mut bases = lock(&self.trace.bases);
        if !bases
            .iter()
            .any(|b| b.name == base.name && b.platform == base.platform)
        {
            bases.push(base);
        }
    }

    /// Notes a RUN at `line` that ran (or would have run) with `network`.
    pub(super) fn note_network(&self, line: usize, network: Network) {
        let name = match network {
            Network::None => return,
            Network::Default => "default",
            Network::Host => "host",
        };
        lock(&self.trace.network_runs).push((line, name.to_string()));
    }

    /// The provenance record of this build; `dockerfile_text` is the Dockerfile as read.
    pub(super) fn build_record(
        &self,
        dockerfile_text: &str,
    ) -> Result<BuildRecord, super::BuildError> {
        let opts = self.opts;
        let context = match self.context {
            Some(c) => Some(ContextRecord {
                digest: crate::attest::context_digest(c)
                    .map_err(|e| super::BuildError::Usage(format!("provenance: {e}")))?,
                git: match &opts.context {
                    ContextSource::Dir(d) => crate::attest::context_digest::git_info(d),
                    ContextSource::StdinTar => None,
                },
            }),
            None => None,
        };
        let mut bases = lock(&self.trace.bases).clone();
        bases.sort_by(|a, b| (&a.name, &a.platform).cmp(&(&b.name, &b.platform)));
        let mut network_runs = lock(&self.trace.network_runs).clone();
        network_runs.sort();
        network_runs.dedup();
        let now = jiff::Timestamp::now().as_second();
        Ok(BuildRecord {
            dockerfile_path: dockerfile_path(opts),
            dockerfile_text: dockerfile_text.to_string(),
            build_args: opts.build_args.clone(),
            target: opts.target.clone(),
            labels: opts.labels.clone(),
            bases,
            context,
            source_date_epoch: self.epoch,
            flags: output_flags(opts),
            platform: self.plan_opts.platform.to_string(),
            secret_ids: opts.secrets.keys().cloned().collect(),
            ssh_ids: Vec::new(),
            network_runs,
            started: self.started,
            finished: now,
        })
    }
}

/// The Dockerfile as `rbuild verify` finds it again: relative to the context when inside it.
fn dockerfile_path(opts: &BuildOptions) -> String {
    match (&opts.dockerfile, &opts.context) {
        (super::DockerfileSource::Path(p), ContextSource::Dir(dir)) => p
            .strip_prefix(dir)
            .map(|r| r.to_string_lossy().to_string())
            .unwrap_or_else(|_| p.to_string_lossy().to_string()),
        (super::DockerfileSource::Path(p), _) => p.to_string_lossy().to_string(),
        (super::DockerfileSource::Stdin, _) => "-".to_string(),
        (super::DockerfileSource::Default, _) => "Dockerfile".to_string(),
    }
}

/// The flags that change the output bytes, by CLI name, with their values.
fn output_flags(opts: &BuildOptions) -> std::collections::BTreeMap<String, String> {
    let mut f = std::collections::BTreeMap::new();
    let (name, level) = match opts.compression {
        crate::layer::Compression::Gzip { level } => ("gzip", Some(level as i64)),
        crate::layer::Compression::Zstd { level } => ("zstd", Some(level as i64)),
        crate::layer::Compression::Uncompressed => ("uncompressed", None),
    };
    f.insert("compression".into(), name.into());
    if let Some(l) = level {
        f.insert("compression-level".into(), l.to_string());
    }
    f.insert(
        "repro-profile".into(),
        opts.repro_profile.number().to_string(),
    );
    f.insert(
        "history-format".into(),
        format!("{:?}", opts.history_format).to_lowercase(),
    );
    f.insert(
        "rewrite-timestamp".into(),
        opts.rewrite_timestamp.to_string(),
    );
    f.insert(
        "network".into(),
        match opts.network {
            Network::Default => "default",
            Network::Host => "host",
            Network::None => "none",
        }
        .into(),
    );
    f
}
