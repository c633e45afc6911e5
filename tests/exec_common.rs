//! Shared helpers for the RUN executor integration tests (included with `mod`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild::exec::{run_with, ExecConfig, ExecError, Network, RunOutcome, RunSpec, Stream};

pub fn busybox_rootfs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-busybox-rootfs.sh");
    let st = Command::new("sh").arg(script).arg(&root).status().unwrap();
    assert!(st.success(), "make-busybox-rootfs.sh failed");
    (dir, root)
}

pub fn spec(rootfs: &Path, script: &str) -> RunSpec {
    RunSpec {
        rootfs: rootfs.to_path_buf(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        user: None,
        workdir: "/".into(),
        hostname: "rbuild-test".into(),
        network: Network::Host,
        mounts: vec![],
        extra_hosts: vec![],
    }
}

pub fn config() -> ExecConfig {
    ExecConfig {
        helper_exe: PathBuf::from(env!("CARGO_BIN_EXE_rbuild")),
        ..ExecConfig::default()
    }
}

pub struct Captured {
    pub outcome: RunOutcome,
    pub stdout: String,
    pub stderr: String,
}

pub fn try_run(spec: &RunSpec) -> Result<Captured, ExecError> {
    try_run_with(spec, &config())
}

/// `try_run` with an explicit config (resource limits, cancel flag).
pub fn try_run_with(spec: &RunSpec, config: &ExecConfig) -> Result<Captured, ExecError> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let outcome = run_with(spec, config, &mut |s, b| match s {
        Stream::Stdout => out.extend_from_slice(b),
        Stream::Stderr => err.extend_from_slice(b),
    })?;
    Ok(Captured {
        outcome,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Runs and expects exit 0; returns stdout.
pub fn run_ok(spec: &RunSpec) -> String {
    let c = try_run(spec).unwrap();
    assert_eq!(
        c.outcome.exit_code, 0,
        "stdout: {}\nstderr: {}",
        c.stdout, c.stderr
    );
    c.stdout
}
