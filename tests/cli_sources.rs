//! End-to-end checks of the build flags that choose where a build's inputs come from (issue 20):
//! `--pull`, `--build-context`, `--cache-from IMAGE`.

mod common;

use common::registry::Registry;
use common::*;
use std::path::Path;

/// Builds `ctx` into `root` with a fixed epoch and `extra` flags; returns the image id.
fn build(root: &Path, ctx: &Path, extra: &[&str]) -> (Run, String) {
    let mut args = vec![
        "build",
        "--progress",
        "plain",
        "--source-date-epoch",
        "1700000000",
    ];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = ok(rbuild(root, &args));
    let id = r.stdout.trim().to_string();
    (r, id)
}

/// Pushes a one-file image (`/v` holding `value`) as `image`, built in its own store.
fn push_value(dir: &Path, image: &str, value: &str) {
    let ctx = context(
        &dir.join(format!("ctx-{value}")),
        "FROM scratch\nCOPY v /v\n",
        &[("v", value)],
    );
    build(&dir.join("publisher"), &ctx, &["--push", "-t", image]);
}

#[test]
fn pull_picks_up_a_tag_that_moved() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let base = format!("{}/cli/base:t", reg.addr());
    push_value(t.path(), &base, "A");
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("app"),
        &format!("FROM {base}\nCOPY w /w\n"),
        &[("w", "app")],
    );
    let out = |n: &str| t.path().join(n);
    let dest = |n: &str| format!("type=local,dest={}", out(n).display());
    let read_v = |n: &str| std::fs::read_to_string(out(n).join("v")).unwrap();

    let (_, first) = build(&root, &ctx, &["-o", &dest("first")]);
    assert_eq!(read_v("first"), "A");
    push_value(t.path(), &base, "B");
    // Without --pull the stored tag is used: same base, every step cached, same image.
    let (r, again) = build(&root, &ctx, &["-o", &dest("again")]);
    assert_eq!(read_v("again"), "A");
    assert_eq!(first, again);
    assert!(!r.stderr.contains("pulling"), "{}", r.stderr);
    // With --pull the registry's newest digest wins, and the COPY's cache key follows it.
    let (r, pulled) = build(&root, &ctx, &["--pull", "-o", &dest("pulled")]);
    assert_eq!(read_v("pulled"), "B");
    assert!(
        r.stderr.contains(&format!("pulling {base}")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_ne!(first, pulled);
    // The store's tag now names the new base: a later build without --pull uses it too.
    let (_, after) = build(&root, &ctx, &["-o", &dest("after")]);
    assert_eq!(read_v("after"), "B");
    assert_eq!(after, pulled);
}

const STAGES: &str = "FROM scratch AS base\nCOPY stage.txt /marker\nFROM base AS second\n\
                      FROM scratch\nCOPY --from=base /marker /m1\nCOPY --from=second /marker /m2\n";

/// Builds [`STAGES`] with `extra` flags into a local dir; returns what `/m1` and `/m2` hold.
fn stage_markers(t: &Path, root: &Path, out: &str, extra: &[&str]) -> (String, String) {
    let ctx = context(&t.join("stages"), STAGES, &[("stage.txt", "stage")]);
    let dest = t.join(out);
    let o = format!("type=local,dest={}", dest.display());
    let mut args = vec!["-o", o.as_str()];
    args.extend_from_slice(extra);
    build(root, &ctx, &args);
    let read = |f: &str| std::fs::read_to_string(dest.join(f)).unwrap();
    (read("m1"), read("m2"))
}

#[test]
fn build_context_dir_replaces_a_stage() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let (m1, m2) = stage_markers(t.path(), &root, "plain", &[]);
    assert_eq!((m1.as_str(), m2.as_str()), ("stage", "stage"));
    // The context named `base` wins over the stage `base`: for COPY --from and for FROM.
    let dir = t.path().join("named");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("marker"), "from the named context").unwrap();
    let arg = format!("BASE={}", dir.display());
    let (m1, m2) = stage_markers(t.path(), &root, "named-out", &["--build-context", &arg]);
    assert_eq!(m1, "from the named context");
    assert_eq!(m2, "from the named context");
    // --pull re-resolves registry images only: a named context is not looked up anywhere.
    let (m1, _) = stage_markers(
        t.path(),
        &root,
        "named-pull",
        &["--pull", "--build-context", &arg],
    );
    assert_eq!(m1, "from the named context");
}

#[test]
fn build_context_images_tarballs_and_layouts() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // docker-image://: the image replaces the stage (and `alpine` is never pulled).
    let image = format!("{}/cli/ctx:t", reg.addr());
    push_value(t.path(), &image, "marker from the registry");
    let ctx = context(
        &t.path().join("alpine"),
        "FROM scratch\nCOPY --from=alpine:latest /v /v\n",
        &[],
    );
    let dest = t.path().join("img");
    let img_arg = format!("alpine=docker-image://{image}");
    let o = format!("type=local,dest={}", dest.display());
    build(&root, &ctx, &["--build-context", &img_arg, "-o", &o]);
    assert_eq!(
        std::fs::read_to_string(dest.join("v")).unwrap(),
        "marker from the registry"
    );

    // An http(s) URL to a tarball: its files.
    let http = HttpServer::start(&one_file_tar("marker", b"from the tarball"));
    let url_arg = format!("base={}/ctx.tar", http.url);
    let (m1, m2) = stage_markers(t.path(), &root, "tarball", &["--build-context", &url_arg]);
    assert_eq!(
        (m1.as_str(), m2.as_str()),
        ("from the tarball", "from the tarball")
    );

    // oci-layout://PATH:TAG and @DIGEST: the image the layout names.
    let src = context(
        &t.path().join("layout-src"),
        "FROM scratch\nCOPY marker /marker\n",
        &[("marker", "from the layout")],
    );
    let layout = t.path().join("layout");
    let o = format!("type=oci,tar=false,dest={}", layout.display());
    build(
        &t.path().join("producer"),
        &src,
        &["-t", "laid:v1", "-o", &o],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for (n, sel) in [("tag", ":v1".to_string()), ("digest", format!("@{digest}"))] {
        let arg = format!("base=oci-layout://{}{sel}", layout.display());
        let (m1, _) = stage_markers(t.path(), &root, n, &["--build-context", &arg]);
        assert_eq!(m1, "from the layout");
    }
    let arg = format!("base=oci-layout://{}:nope", layout.display());
    let r = rbuild(
        &root,
        &["build", "--build-context", &arg, ctx.to_str().unwrap()],
    );
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("no image nope in index.json"),
        "{}",
        r.stderr
    );
}

/// A tar holding one regular file, as `tar` writes it (numeric owner fields set).
fn one_file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn cache_from_an_image_in_the_store() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo built > /built\nCOPY f /f\n",
        &[("f", "file")],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let image = format!("{}/cli/cached:1", reg.addr());
    let (_, id1) = build(
        &t.path().join("root1"),
        &ctx,
        &["--push", "-t", &image, "--cache-to", "type=inline"],
    );
    // Another store pulls the image (and with it its inline cache); then the registry goes.
    let root2 = t.path().join("root2");
    ok(rbuild(&root2, &["pull", &image]));
    drop(reg);
    let (r, id2) = build(&root2, &ctx, &["--cache-from", &image]);
    assert!(
        r.stderr
            .contains(&format!("cache {image}: using the image in the store")),
        "{}",
        r.stderr
    );
    // ADD, RUN and COPY: all from the cache, nothing run.
    assert_eq!(r.stderr.matches(" CACHED").count(), 3, "{}", r.stderr);
    assert_eq!(id1, id2);
}

/// A `git-daemon` on loopback serving the directories under `base` (killed on drop).
struct GitDaemon(std::process::Child, u16);

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        use std::process::{Command, Stdio};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let exec_path = sh(Command::new("git").arg("--exec-path"));
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = GitDaemon(child, port);
        // Up once it accepts a connection (counted attempts, no timing asserted).
        let up = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(25));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "git daemon did not start");
        d
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn build_context_from_a_git_url() {
    if !need("git") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("srv/r.git");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        sh(std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args))
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("marker"), "from git").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    let daemon = GitDaemon::start(&t.path().join("srv"));
    let arg = format!("base=git://127.0.0.1:{}/r.git#main", daemon.1);
    let root = t.path().join("root");
    let (m1, m2) = stage_markers(t.path(), &root, "git", &["--build-context", &arg]);
    assert_eq!((m1.as_str(), m2.as_str()), ("from git", "from git"));
    // The .git directory is not part of the context (BuildKit's default).
    let r = rbuild(
        &root,
        &[
            "build",
            "--build-context",
            &arg,
            "-o",
            &format!("type=local,dest={}", t.path().join("whole").display()),
            context(&t.path().join("whole-ctx"), "FROM base\n", &[])
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(t.path().join("whole/marker").is_file());
    assert!(!t.path().join("whole/.git").exists());
}
