//! Images as other producers make them, read by rbuild (issue 22): the Docker engine (classic
//! builder and BuildKit; `docker push`, `docker save`), buildah (`bud --format docker|oci`, manifest lists)
//! and skopeo copies of them (OCI, zstd, uncompressed, v2s2, archives), through a real
//! `docker-registry` on 127.0.0.1. `pull`, `load` and `FROM` work on each; an image loaded or
//! pulled and saved unchanged keeps its config bytes, so its image id.
//!
//! The engine is the one scripts/test starts when `docker info` answers; otherwise this test
//! starts its own `dockerd` with private data/exec roots and socket, and stops it at the end.
//! A missing tool skips the test, or fails it when RBUILD_REQUIRE_TOOLS=1.

mod common;

use common::registry::Registry;
use common::*;
use rbuild::digest::Digest;
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn require_tools() -> bool {
    std::env::var("RBUILD_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Whether all `tools` exist; a missing one fails the test under RBUILD_REQUIRE_TOOLS=1.
fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !require_tools(),
        "RBUILD_REQUIRE_TOOLS=1 but {missing:?} missing"
    );
    eprintln!("SKIP: {missing:?} not installed");
    false
}

/// A Docker engine to talk to: scripts/test's, or one started here (stopped on drop).
struct Engine {
    host: Option<String>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Engine {
    fn get() -> Option<Engine> {
        if docker_running() {
            return Some(Engine {
                host: None,
                child: None,
                _dir: None,
            });
        }
        // Short paths: containerd's socket under the exec root must fit a sockaddr_un.
        let dir = tempfile::Builder::new()
            .prefix("rbd")
            .tempdir_in("/tmp")
            .unwrap();
        let sock = format!("unix://{}/docker.sock", dir.path().display());
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(dir.path().join("d"))
            .arg("--exec-root")
            .arg(dir.path().join("x"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .args(["-H", &sock])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("starting dockerd");
        let mut e = Engine {
            host: Some(sock),
            child: Some(child),
            _dir: Some(dir),
        };
        // Polled by count: dockerd answers within a few seconds when it can start at all.
        for _ in 0..120 {
            if e.docker()
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Some(e);
            }
            if let Some(Ok(Some(_))) = e.child.as_mut().map(|c| c.try_wait()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let log = e
            ._dir
            .as_ref()
            .map(|d| std::fs::read_to_string(d.path().join("log")).unwrap_or_default())
            .unwrap_or_default();
        assert!(!require_tools(), "dockerd did not start:\n{log}");
        eprintln!("SKIP: dockerd did not start");
        None
    }

    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        if let Some(h) = &self.host {
            c.env("DOCKER_HOST", h);
        }
        c.env("DOCKER_BUILDKIT", "0");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        sh(self.docker().args(args))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SIGTERM lets dockerd stop its containerd and unmount its overlay mounts.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// buildah with a private store, so that parallel tests and other users do not meet.
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Buildah {
        Buildah {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        sh(Command::new("buildah")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args))
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // vfs layers are plain directories; nothing is mounted once buildah has exited.
        let _ = Command::new("buildah")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs", "rm", "--all"])
            .output();
    }
}

fn skopeo(args: &[&str]) -> String {
    sh(Command::new("skopeo").args(args))
}

/// The config digest of an image in the registry, as skopeo reads it: the image id.
fn registry_image_id(reference: &str) -> Digest {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--config", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Digest::of_bytes(&out.stdout)
}

fn rbuild_id(root: &Path, name: &str) -> String {
    let out = ok(rbuild(root, &["inspect", name])).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// Builds `dockerfile` with rbuild, tagged `tag`, and returns its id.
fn rbuild_from(root: &Path, dir: &Path, tag: &str, dockerfile: &str) -> String {
    let ctx = context(&dir.join(tag.replace(['/', ':'], "_")), dockerfile, &[]);
    ok(rbuild(
        root,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ],
    ));
    rbuild_id(root, tag)
}

/// Config bytes of the only image in a `docker save`/`rbuild save` tar.
fn archive_config(archive: &Path) -> Vec<u8> {
    let out = sh(Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("manifest.json"));
    let items: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = items[0]["Config"].as_str().unwrap().to_string();
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(&name)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Saves `name` from rbuild's store and checks the saved config is byte for byte the one
/// with id `id`.
fn assert_saved_unchanged(root: &Path, dir: &Path, name: &str, id: &str) {
    let out = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    ok(rbuild(root, &["save", "-o", out.to_str().unwrap(), name]));
    assert_eq!(
        Digest::of_bytes(&archive_config(&out)).to_string(),
        id,
        "{name}: saving changed the config"
    );
}

#[test]
fn docker_buildah_and_skopeo_images_pull_load_and_serve_as_bases() {
    if !tools_present(&[
        "dockerd",
        "docker",
        "buildah",
        "skopeo",
        "runc",
        "docker-registry",
    ]) {
        return;
    }
    let Some(engine) = Engine::get() else {
        return;
    };
    let reg = Registry::start();
    let r = reg.addr();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let rootfs = rootfs_archive(t.path(), "rootfs.tar");

    // Docker engine: an imported base, a classic build on it (nulls: Entrypoint, OnBuild;
    // container_config, docker_version), pushed and saved.
    let docker_base = format!("{r}/wild/docker-base:1");
    let docker_img = format!("{r}/wild/docker:1");
    engine.run(&["import", rootfs.to_str().unwrap(), &docker_base]);
    let dctx = context(
        &t.path().join("dctx"),
        &format!(
            "FROM {docker_base}\nENV A=1\nRUN echo docker > /from-docker\nVOLUME /data\nEXPOSE 80\nCMD [\"sh\"]\n"
        ),
        &[],
    );
    engine.run(&["build", "-q", "-t", &docker_img, dctx.to_str().unwrap()]);
    engine.run(&["push", &docker_base]);
    engine.run(&["push", &docker_img]);
    let docker_id = engine
        .run(&["inspect", "-f", "{{.Id}}", &docker_img])
        .trim()
        .to_string();
    let docker_tar = t.path().join("docker-save.tar");
    engine.run(&["save", "-o", docker_tar.to_str().unwrap(), &docker_img]);
    let cfg = String::from_utf8(archive_config(&docker_tar)).unwrap();
    assert!(
        cfg.contains("\"OnBuild\":null") && cfg.contains("container_config"),
        "{cfg}"
    );

    // pull: the same id as the engine's (the config bytes are kept).
    ok(rbuild(&root, &["pull", "-q", &docker_img]));
    assert_eq!(rbuild_id(&root, &docker_img), docker_id);
    assert_saved_unchanged(&root, t.path(), &docker_img, &docker_id);
    // load of `docker save`: the same id again, into a fresh store.
    let root2 = t.path().join("root2");
    ok(rbuild(
        &root2,
        &["load", "-q", "-i", docker_tar.to_str().unwrap()],
    ));
    assert_eq!(rbuild_id(&root2, &docker_img), docker_id);
    assert_saved_unchanged(&root2, t.path(), &docker_img, &docker_id);
    // ... and the engine agrees: `docker load` of rbuild's save gives the engine's id.
    let resaved = t.path().join("resaved.tar");
    ok(rbuild(
        &root2,
        &["save", "-o", resaved.to_str().unwrap(), &docker_img],
    ));
    engine.run(&["rmi", "-f", &docker_img]);
    engine.run(&["load", "-q", "-i", resaved.to_str().unwrap()]);
    let reloaded = engine.run(&["inspect", "-f", "{{.Id}}", &docker_img]);
    assert_eq!(reloaded.trim(), docker_id);
    // FROM: RUN sees the engine's layers; the new config drops the engine's container fields.
    rbuild_from(
        &root,
        t.path(),
        "out/docker:1",
        &format!("FROM {docker_img}\nRUN grep docker /from-docker > /seen\n"),
    );
    let out_cfg = t.path().join("out-docker.tar");
    ok(rbuild(
        &root,
        &["save", "-o", out_cfg.to_str().unwrap(), "out/docker:1"],
    ));
    let out_cfg = String::from_utf8(archive_config(&out_cfg)).unwrap();
    assert!(
        !out_cfg.contains("container_config") && !out_cfg.contains("null"),
        "{out_cfg}"
    );
    assert!(out_cfg.contains("\"Volumes\":{\"/data\":{}}"), "{out_cfg}");

    // BuildKit (the engine's own, DOCKER_BUILDKIT=1): its config shape, pushed, pulled with
    // the engine's id kept, saved unchanged, and a base for a build (no RUN: the engine here
    // runs without a bridge network).
    let bk_img = format!("{r}/wild/buildkit:1");
    let kctx = context(
        &t.path().join("kctx"),
        &format!("FROM {docker_base}\nENV B=1\nCOPY f /from-buildkit\nLABEL by=buildkit\n"),
        &[("f", "buildkit\n")],
    );
    // Debian's docker.io CLI (20.10) builds with the engine's BuildKit without the buildx
    // plugin, which a newer CLI earlier on PATH would demand.
    let mut bk = Command::new("/usr/bin/docker");
    if let Some(h) = &engine.host {
        bk.env("DOCKER_HOST", h);
    }
    bk.env("DOCKER_BUILDKIT", "1")
        .args(["build", "-q", "-t", &bk_img, kctx.to_str().unwrap()]);
    sh(&mut bk);
    engine.run(&["push", &bk_img]);
    let bk_id = engine
        .run(&["inspect", "-f", "{{.Id}}", &bk_img])
        .trim()
        .to_string();
    ok(rbuild(&root, &["pull", "-q", &bk_img]));
    assert_eq!(rbuild_id(&root, &bk_img), bk_id);
    assert_saved_unchanged(&root, t.path(), &bk_img, &bk_id);
    rbuild_from(
        &root,
        t.path(),
        "out/buildkit:1",
        &format!("FROM {bk_img}\nRUN grep buildkit /from-buildkit > /seen\n"),
    );

    // buildah: both formats, FROM the engine's image, with ONBUILD/SHELL/HEALTHCHECK/USER.
    let buildah = Buildah::new();
    let bctx = context(
        &t.path().join("bctx"),
        &format!(
            "FROM {docker_img}\nRUN echo buildah > /from-buildah\nONBUILD RUN echo onbuild > /onbuild\nSHELL [\"/bin/sh\", \"-ec\"]\nHEALTHCHECK --interval=5s CMD true\nWORKDIR /w\nSTOPSIGNAL SIGTERM\n"
        ),
        &[],
    );
    let mut buildah_imgs = Vec::new();
    for format in ["docker", "oci"] {
        let img = format!("{r}/wild/buildah-{format}:1");
        buildah.run(&[
            "bud",
            "-q",
            "--tls-verify=false",
            "--runtime",
            "runc",
            "--network",
            "none",
            "--format",
            format,
            "-t",
            &img,
            bctx.to_str().unwrap(),
        ]);
        buildah.run(&["push", "-q", "--tls-verify=false", &img]);
        buildah_imgs.push(img);
    }
    // A manifest list (OCI index) holding the OCI image.
    let list = format!("{r}/wild/buildah-list:1");
    buildah.run(&["manifest", "create", "wild-list"]);
    buildah.run(&[
        "manifest",
        "add",
        "--tls-verify=false",
        "wild-list",
        &format!("docker://{}", buildah_imgs[1]),
    ]);
    buildah.run(&[
        "manifest",
        "push",
        "-q",
        "--all",
        "--tls-verify=false",
        "wild-list",
        &format!("docker://{list}"),
    ]);

    // skopeo copies: OCI, zstd, uncompressed layers, and back to v2s2.
    let copy = |src: &str, dst: &str, extra: &[&str]| {
        let mut args = vec![
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ];
        args.extend(extra);
        let (s, d) = (format!("docker://{src}"), format!("docker://{dst}"));
        args.push(&s);
        args.push(&d);
        skopeo(&args);
    };
    let sk_oci = format!("{r}/wild/skopeo-oci:1");
    let sk_zstd = format!("{r}/wild/skopeo-zstd:1");
    let sk_plain = format!("{r}/wild/skopeo-plain:1");
    let sk_v2s2 = format!("{r}/wild/skopeo-v2s2:1");
    copy(&docker_img, &sk_oci, &["--format", "oci"]);
    copy(
        &docker_img,
        &sk_zstd,
        &[
            "--format",
            "oci",
            "--dest-compress",
            "--dest-compress-format",
            "zstd",
        ],
    );
    copy(
        &docker_img,
        &sk_plain,
        &["--format", "oci", "--dest-decompress"],
    );
    copy(&buildah_imgs[1], &sk_v2s2, &["--format", "v2s2"]);

    // Each pulls with the registry's config digest as its id, saves unchanged, and serves
    // as a base whose files RUN can read (so every codec's layers were unpacked right).
    // (image, file its builder wrote, whether it carries buildah's ONBUILD: only the docker
    // format can; buildah drops ONBUILD from OCI configs, and so from what is copied from them.)
    let all = [
        (&buildah_imgs[0], "/from-buildah", true),
        (&buildah_imgs[1], "/from-buildah", false),
        (&list, "/from-buildah", false),
        (&sk_oci, "/from-docker", false),
        (&sk_zstd, "/from-docker", false),
        (&sk_plain, "/from-docker", false),
        (&sk_v2s2, "/from-buildah", false),
    ];
    for (i, (img, file, onbuild)) in all.iter().enumerate() {
        ok(rbuild(&root, &["pull", "-q", img]));
        let id = rbuild_id(&root, img);
        assert_eq!(id, registry_image_id(img).to_string(), "{img}");
        assert_saved_unchanged(&root, t.path(), img, &id);
        // The base's ONBUILD runs in this build, before our RUN.
        let onbuild = if *onbuild {
            " && test -f /onbuild"
        } else {
            " && test ! -e /onbuild"
        };
        rbuild_from(
            &root,
            t.path(),
            &format!("out/n{i}:1"),
            &format!("FROM {img}\nRUN test -s {file} && test -s /from-docker{onbuild}\n"),
        );
    }

    // FROM alone pulls what the store lacks: the manifest list and the zstd copy.
    let root_from = t.path().join("root-from");
    for img in [&list, &sk_zstd] {
        rbuild_from(
            &root_from,
            t.path(),
            "out/from-only:1",
            &format!("FROM {img}\nRUN test -s /from-docker\n"),
        );
        assert_eq!(
            rbuild_id(&root_from, img),
            registry_image_id(img).to_string()
        );
    }

    // load of skopeo's archives of buildah's image: docker-archive and oci-archive.
    for (transport, file) in [
        ("docker-archive", "b-docker.tar"),
        ("oci-archive", "b-oci.tar"),
    ] {
        let path = t.path().join(file);
        let dest = match transport {
            "docker-archive" => format!("docker-archive:{}:{}", path.display(), buildah_imgs[1]),
            _ => format!("oci-archive:{}:wild", path.display()),
        };
        skopeo(&[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}", buildah_imgs[1]),
            &dest,
        ]);
        let root3 = t.path().join(format!("root-{transport}"));
        ok(rbuild(
            &root3,
            &["load", "-q", "-i", path.to_str().unwrap()],
        ));
        let id = registry_image_id(&buildah_imgs[1]).to_string();
        let name = if transport == "docker-archive" {
            buildah_imgs[1].clone()
        } else {
            id.clone()
        };
        assert_eq!(rbuild_id(&root3, &name), id, "{transport}");
        assert_saved_unchanged(&root3, t.path(), &name, &id);
    }
    assert_nothing_mounted_under(t.path());
    drop(buildah);
    drop(engine);
}
