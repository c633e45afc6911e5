//! Harness for the ports of BuildKit's Dockerfile frontend integration tests (tests/buildkit_*.rs):
//! a context directory, a store that already holds `busybox:latest` (and `alpine:latest`, the same
//! image: the tests only need a shell; like the busybox image it has every applet in /bin, a group
//! `nobody` (65534) and `wheel` (10, root), and /etc/alpine-release for the cases that read it),
//! builds through the real binary, and readers for the outputs.
#![allow(dead_code)]

pub use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A docker-archive of the busybox-static rootfs as `busybox:latest`, made once per test binary.
fn busybox_archive() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("rbuild-bk-base-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let ctx = context(
            &base.join("ctx"),
            "FROM scratch\nADD rootfs.tar /\nRUN for a in $(busybox --list); do [ -e /bin/$a ] || ln -s busybox /bin/$a; done && echo 3.20.0 > /etc/alpine-release && sed -i 's/^nogroup:/nobody:/' /etc/group && echo 'wheel:x:10:root' >> /etc/group\n",
            &[],
        );
        rootfs_archive(&ctx, "rootfs.tar");
        let root = base.join("root");
        ok(rbuild(
            &root,
            &["build", "-q", "-t", "busybox", ctx.to_str().unwrap()],
        ));
        let out = base.join("busybox.tar");
        ok(rbuild(
            &root,
            &["save", "-o", out.to_str().unwrap(), "busybox"],
        ));
        out
    })
}

/// One ported case: its own store (with busybox loaded) and context.
pub struct Bk {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ctx: PathBuf,
    outs: AtomicUsize,
}

impl Bk {
    pub fn new() -> Bk {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        ok(rbuild(
            &root,
            &["load", "-i", busybox_archive().to_str().unwrap()],
        ));
        ok(rbuild(&root, &["tag", "busybox", "alpine"]));
        Bk {
            dir,
            root,
            ctx,
            outs: AtomicUsize::new(0),
        }
    }

    /// Writes `Dockerfile`.
    pub fn dockerfile(&self, text: &str) -> &Self {
        self.file("Dockerfile", text.as_bytes(), 0o600)
    }

    /// Writes a context file (parents created 0700 like fstest's CreateDir).
    pub fn file(&self, name: &str, data: &[u8], mode: u32) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let p = self.ctx.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn mkdir(&self, name: &str, mode: u32) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let p = self.ctx.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn symlink(&self, target: &str, name: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.ctx.join(name)).unwrap();
        self
    }

    /// `rbuild build --progress plain ARGS ctx`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        let ctx = self.ctx.to_str().unwrap().to_string();
        all.push(&ctx);
        rbuild_env(&self.root, &all, env)
    }

    /// Builds and asserts success; returns the image id.
    pub fn build(&self, args: &[&str]) -> String {
        let r = ok(self.run(args));
        r.stdout.lines().last().unwrap_or("").trim().to_string()
    }

    /// Builds with `-o type=local` into a fresh directory and returns it.
    pub fn local(&self, args: &[&str]) -> PathBuf {
        let n = self.outs.fetch_add(1, Ordering::SeqCst);
        let out = self.dir.path().join(format!("out{n}"));
        let o = format!("type=local,dest={}", out.display());
        let mut all = vec!["-o", o.as_str()];
        all.extend_from_slice(args);
        ok(self.run(&all));
        out
    }

    /// Builds, expecting failure; returns stdout+stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_ne!(r.status, 0, "build succeeded unexpectedly:\n{}", r.stderr);
        format!("{}{}", r.stdout, r.stderr)
    }

    /// Builds into an OCI layout dir; returns the image config JSON.
    pub fn config(&self, args: &[&str]) -> Value {
        let n = self.outs.fetch_add(1, Ordering::SeqCst);
        let out = self.dir.path().join(format!("oci{n}"));
        let o = format!("type=oci,dest={},tar=false", out.display());
        let mut all = vec!["-o", o.as_str()];
        all.extend_from_slice(args);
        ok(self.run(&all));
        oci_config(&out)
    }
}

impl Default for Bk {
    fn default() -> Self {
        Bk::new()
    }
}

/// The image config of the first manifest of an OCI layout directory.
pub fn oci_config(dir: &Path) -> Value {
    let read =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(dir.join("index.json"));
    let m = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    read(blob(m["config"]["digest"].as_str().unwrap()))
}

/// The text of `out/name`, panicking with the path if it is missing.
pub fn text(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", out.join(name).display()))
}

pub fn exists(out: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(out.join(name)).is_ok()
}

/// Stands in for busybox's `adduser -D NAME` (Debian's busybox-static has no adduser applet):
/// `RUN {ADDUSER} NAME ID` adds the user and its group with that id.
pub const ADDUSER: &str = "f() { echo \"$1:x:$2:$2::/home/$1:/bin/sh\" >> /etc/passwd && echo \"$1:x:$2:\" >> /etc/group && mkdir -p /home/$1 && chown $2:$2 /home/$1; }; f";
