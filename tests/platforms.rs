//! Multi-platform builds (issue 18): `--platform a,b` makes an image index, kept in the store
//! under one tag, written by `-o type=oci|docker` and pushed as an OCI index.

mod common;

use common::registry::Registry;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Reads `name` from a tar archive.
fn tar_file(archive: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut out).unwrap();
            return out;
        }
    }
    panic!("{name} not in {}", archive.display());
}

fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    tar_file(
        archive,
        &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
    )
}

/// A FROM-scratch Dockerfile whose file differs by target (`ARG TARGETARCH`), no RUN.
fn per_target_context(dir: &Path) -> std::path::PathBuf {
    context(
        dir,
        "FROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nCOPY ${TARGETARCH}.txt /arch.txt\nLABEL target=$TARGETPLATFORM\n",
        &[("amd64.txt", "built for amd64\n"), ("arm64.txt", "built for arm64\n")],
    )
}

/// The platforms of an OCI index's manifests, `os/arch[/variant]`, in order.
fn platforms_of(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push_str(&format!("/{v}"));
            }
            s
        })
        .collect()
}

#[test]
fn two_platform_index_in_oci_docker_outputs_and_registry() {
    if !need("skopeo")
        || !require(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry",
        )
    {
        return;
    }
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = per_target_context(&t.path().join("ctx"));
    let name = format!("{}/rb/multi:1", reg.addr());
    let oci = t.path().join("out.oci.tar");
    let docker = t.path().join("out.docker.tar");
    let r = ok(rbuild_env(
        &root,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &name,
            "--push",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            ctx.to_str().unwrap(),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    assert!(r.stderr.contains("index of 2 manifests"), "{}", r.stderr);

    // The registry holds an OCI index with both platforms; each config names its architecture.
    let raw = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{name}"),
    ]));
    let index = json(raw.as_bytes());
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"]);
    for (arch, m) in ["amd64", "arm64"]
        .iter()
        .zip(index["manifests"].as_array().unwrap())
    {
        let digest = m["digest"].as_str().unwrap();
        let config = sh(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--config",
            &format!("docker://{}/rb/multi@{digest}", reg.addr()),
        ]));
        let config = json(config.as_bytes());
        assert_eq!(config["architecture"], *arch);
        assert_eq!(config["os"], "linux");
        assert_eq!(
            config["config"]["Labels"]["target"],
            format!("linux/{arch}").as_str()
        );
    }
    // skopeo picks the arm64 image from the index and its layer has the arm64 file.
    let pulled = t.path().join("pulled");
    sh(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{name}"),
        &format!("oci:{}:x", pulled.display()),
    ]));
    let pulled_index = json(&std::fs::read(pulled.join("index.json")).unwrap());
    let manifest = json(
        &std::fs::read(
            pulled.join("blobs/sha256").join(
                pulled_index["manifests"][0]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    );
    let layer = pulled.join("blobs/sha256").join(
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let out = sh(Command::new("tar").arg("-xzOf").arg(&layer).arg("arch.txt"));
    assert_eq!(out, "built for arm64\n");

    // type=oci: index.json points at the index blob, which lists the same manifests.
    let top = json(&tar_file(&oci, "index.json"));
    assert_eq!(top["manifests"].as_array().unwrap().len(), 1);
    let idx_desc = &top["manifests"][0];
    assert_eq!(
        idx_desc["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        idx_desc["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    let oci_index_bytes = blob(&oci, idx_desc["digest"].as_str().unwrap());
    assert_eq!(
        json(&oci_index_bytes),
        index,
        "the OCI output holds the pushed index"
    );

    // type=docker: the same index, and one manifest.json item per platform, tagged once.
    let items = json(&tar_file(&docker, "manifest.json"));
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let tagged: Vec<_> = items
        .iter()
        .filter(|i| !i["RepoTags"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(tagged.len(), 1);
    let tagged_config = json(&tar_file(&docker, tagged[0]["Config"].as_str().unwrap()));
    assert_eq!(tagged_config["architecture"], "amd64");
    let dtop = json(&tar_file(&docker, "index.json"));
    assert_eq!(dtop["manifests"][0]["digest"], idx_desc["digest"]);

    // `rbuild push` of the tag pushes the index again (same digest); `images` lists both.
    let again = format!("{}/rb/again:1", reg.addr());
    let r = ok(rbuild(&root, &["push", &name, &again]));
    assert_eq!(r.stdout.trim(), idx_desc["digest"].as_str().unwrap());

    // Pull from the index: the wanted platform (variant normalized), or an error listing those
    // there are.
    let root3 = t.path().join("root3");
    let r = rbuild(&root3, &["pull", "--platform", "linux/arm/v7", &name]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("no manifest for platform linux/arm/v7")
            && r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
    ok(rbuild(
        &root3,
        &["pull", "-q", "--platform", "linux/arm64/v8", &name],
    ));
    let info = json(ok(rbuild(&root3, &["inspect", &name])).stdout.as_bytes());
    assert_eq!(info[0]["Architecture"], "arm64");
    // A multi-platform build FROM the index takes each platform's base: the arm64 one is
    // local, the amd64 one is pulled; both stay known under the name.
    let ctx3 = context(
        &t.path().join("ctx3"),
        &format!("FROM {name}\nCOPY extra /extra\n"),
        &[("extra", "x")],
    );
    let oci3 = t.path().join("out3.oci.tar");
    ok(rbuild(
        &root3,
        &[
            "build",
            "--platform",
            "linux/arm64,linux/amd64",
            "-o",
            &format!("type=oci,dest={}", oci3.display()),
            ctx3.to_str().unwrap(),
        ],
    ));
    for (platform, digest) in oci_manifests(&oci3) {
        let arch = platform.trim_start_matches("linux/");
        let text = file_in_image(&oci3, &digest, "arch.txt").unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            format!("built for {arch}\n")
        );
    }
    let info = json(
        ok(rbuild(
            &root3,
            &["inspect", "--platform", "linux/arm64", &name],
        ))
        .stdout
        .as_bytes(),
    );
    assert_eq!(info[0]["Architecture"], "arm64");

    // Reproducible: a second store, same SOURCE_DATE_EPOCH, same index digest.
    let root2 = t.path().join("root2");
    let oci2 = t.path().join("out2.oci.tar");
    ok(rbuild_env(
        &root2,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "multi:2",
            "-o",
            &format!("type=oci,dest={}", oci2.display()),
            ctx.to_str().unwrap(),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    let top2 = json(&tar_file(&oci2, "index.json"));
    assert_eq!(top2["manifests"][0]["digest"], idx_desc["digest"]);

    // `images` lists both platforms under the tag; `inspect --platform` picks one.
    let images = ok(rbuild(&root2, &["images"])).stdout;
    let rows: Vec<&str> = images.lines().filter(|l| l.starts_with("multi ")).collect();
    assert_eq!(rows.len(), 2, "{images}");
    assert!(
        images.lines().next().unwrap().contains("PLATFORM"),
        "{images}"
    );
    assert!(rows.iter().any(|r| r.contains("linux/arm64")), "{images}");
    assert!(rows.iter().any(|r| r.contains("linux/amd64")), "{images}");
    let inspect = |args: &[&str]| json(ok(rbuild(&root2, args)).stdout.as_bytes());
    assert_eq!(
        inspect(&["inspect", "--platform", "linux/arm64/v8", "multi:2"])[0]["Architecture"],
        "arm64"
    );
    assert_eq!(inspect(&["inspect", "multi:2"])[0]["Architecture"], "amd64");
    let r = rbuild(&root2, &["inspect", "--platform", "linux/s390x", "multi:2"]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("no image for platform linux/s390x")
            && r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
    // Retagging the name to one image makes it a plain tag again.
    ok(rbuild(&root2, &["tag", "multi:2", "multi:3"]));
    let r = rbuild(&root2, &["inspect", "--platform", "linux/arm64", "multi:3"]);
    assert_ne!(r.status, 0, "multi:3 names the amd64 image only");
    assert_store_consistent(&root);
}

const TESTDATA: &str = "/var/cache/rbuild-testdata";

/// Debian's busybox-static for `deb_arch` (`arm64`, `armhf`), extracted from the .deb that
/// scripts/setup keeps in /var/cache/rbuild-testdata; None (after `require`) when absent.
fn foreign_busybox(dir: &Path, deb_arch: &str) -> Option<std::path::PathBuf> {
    let deb = std::fs::read_dir(TESTDATA).ok().and_then(|d| {
        d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("busybox-static_") && n.ends_with(&format!("_{deb_arch}.deb"))
        })
    });
    if !require(
        deb.is_some(),
        &format!("{TESTDATA}/busybox-static_*_{deb_arch}.deb (scripts/setup downloads it)"),
    ) {
        return None;
    }
    let out = dir.join(format!("deb-{deb_arch}"));
    sh(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb.unwrap())
        .arg(&out));
    Some(out.join("bin/busybox"))
}

/// A busybox rootfs tar made from `busybox` (any architecture) at `dest`.
fn rootfs_tar_of(busybox: &Path, work: &Path, dest: &Path) {
    let tree = work.join(format!(
        "tree-{}",
        dest.file_name().unwrap().to_string_lossy()
    ));
    sh(
        Command::new(repo_dir().join("testdata/make-busybox-rootfs.sh"))
            .arg(&tree)
            .env("BUSYBOX", busybox)
            .env("BUSYBOX_LIST", "/bin/busybox"),
    );
    sh(Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--mtime=@1700000000",
            "-C",
        ])
        .arg(&tree)
        .arg("-cf")
        .arg(dest)
        .arg("."));
}

/// The ELF `e_machine` of `bytes` (0x3e x86-64, 0xb7 AArch64, 0x28 ARM).
fn e_machine(bytes: &[u8]) -> u16 {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// `path` from the layers of the image `manifest_digest` in OCI tar `oci` (top layer wins).
fn file_in_image(oci: &Path, manifest_digest: &str, path: &str) -> Option<Vec<u8>> {
    let manifest = json(&blob(oci, manifest_digest));
    let mut found = None;
    for l in manifest["layers"].as_array().unwrap() {
        let bytes = blob(oci, l["digest"].as_str().unwrap());
        let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
        } else {
            Box::new(bytes.as_slice())
        };
        let mut ar = tar::Archive::new(reader);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if p == path {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut out).unwrap();
                found = Some(out);
            }
        }
    }
    found
}

/// The manifests of the index in OCI tar `oci`: (platform, manifest digest).
fn oci_manifests(oci: &Path) -> Vec<(String, String)> {
    let top = json(&tar_file(oci, "index.json"));
    let index = json(&blob(oci, top["manifests"][0]["digest"].as_str().unwrap()));
    platforms_of(&index)
        .into_iter()
        .zip(index["manifests"].as_array().unwrap())
        .map(|(p, m)| (p, m["digest"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn foreign_run_under_qemu_and_docker_runs_it() {
    if !need("dpkg-deb")
        || !require(
            Path::new("/usr/bin/qemu-aarch64-static").exists(),
            "qemu-user-static",
        )
    {
        return;
    }
    // The kernel drops binfmt entries with the last binfmt_misc mount: one that rbuild makes in
    // its private mount namespace goes when it exits. For the Docker engine to run the image
    // afterwards, binfmt_misc is mounted here on the host, as systemd does at boot.
    if !Path::new("/proc/sys/fs/binfmt_misc/register").exists() {
        sh(Command::new("mount").args([
            "-t",
            "binfmt_misc",
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
        ]));
    }
    let t = tempfile::tempdir().unwrap();
    let Some(bb) = foreign_busybox(t.path(), "arm64") else {
        return;
    };
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN uname -m > /machine && busybox | head -1 > /version\nCMD [\"cat\", \"/machine\"]\n",
        &[],
    );
    rootfs_tar_of(&bb, t.path(), &ctx.join("rootfs.tar"));
    let root = t.path().join("root");
    let oci = t.path().join("arm64.oci.tar");
    let docker = t.path().join("arm64.docker.tar");
    let tag = "rbuild-platform-arm64:test";
    ok(rbuild(
        &root,
        &[
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            tag,
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    // One platform: a plain image (no index), its config arm64, and the RUN saw an aarch64 CPU.
    let top = json(&tar_file(&oci, "index.json"));
    let m = &top["manifests"][0];
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let manifest = json(&blob(&oci, m["digest"].as_str().unwrap()));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["architecture"], "arm64");
    let machine = file_in_image(&oci, m["digest"].as_str().unwrap(), "machine").unwrap();
    assert_eq!(String::from_utf8(machine).unwrap(), "aarch64\n");

    // The Docker engine loads it and runs it as linux/arm64 (through the same binfmt entry).
    if !need("docker") || !need_docker() {
        return;
    }
    sh(Command::new("docker").arg("load").arg("-i").arg(&docker));
    let out = Command::new("docker")
        .args(["run", "--rm", "--platform", "linux/arm64", tag])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    assert!(
        out.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "aarch64\n");
}

#[test]
fn cross_compilation_stage_runs_natively_once_and_feeds_each_target() {
    if !need("dpkg-deb") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(arm64) = foreign_busybox(t.path(), "arm64") else {
        return;
    };
    let ctx = context(
        &t.path().join("ctx"),
        "FROM --platform=$BUILDPLATFORM scratch AS build\n\
         ADD rootfs.tar /\n\
         COPY bb/ /bb/\n\
         RUN uname -m > /build-machine\n\
         ARG TARGETARCH\n\
         RUN mkdir /out && cp /bb/$TARGETARCH /out/busybox && cp /build-machine /out/ && echo $TARGETARCH > /out/target\n\
         FROM scratch\n\
         COPY --from=build /out/ /\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    std::fs::create_dir_all(ctx.join("bb")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("bb/amd64")).unwrap();
    std::fs::copy(&arm64, ctx.join("bb/arm64")).unwrap();
    let root = t.path().join("root");
    let oci = t.path().join("cross.oci.tar");
    let r = ok(rbuild(
        &root,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    // The steps before `ARG TARGETARCH` do not depend on the target: the second platform's
    // solve finds them in the cache (the build stage's first RUN ran once).
    let ran = r.stderr.matches("RUN uname -m > /build-machine").count();
    assert_eq!(ran, 2, "one start line per platform\n{}", r.stderr);
    let cached = r.stderr.lines().filter(|l| l.ends_with(" CACHED")).count();
    assert!(
        cached >= 3,
        "ADD, COPY and the first RUN cached for arm64\n{}",
        r.stderr
    );

    let manifests = oci_manifests(&oci);
    assert_eq!(
        manifests
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    for ((platform, digest), (machine, target)) in
        manifests.iter().zip([(0x3e_u16, "amd64"), (0xb7, "arm64")])
    {
        let bin = file_in_image(&oci, digest, "busybox").unwrap();
        assert_eq!(e_machine(&bin), machine, "{platform}");
        let built_on = file_in_image(&oci, digest, "build-machine").unwrap();
        assert_eq!(
            String::from_utf8(built_on).unwrap(),
            "x86_64\n",
            "{platform}: native build stage"
        );
        let t = file_in_image(&oci, digest, "target").unwrap();
        assert_eq!(String::from_utf8(t).unwrap(), format!("{target}\n"));
    }
    assert_store_consistent(&root);
}

/// arm/v7 (Debian armhf): `--platform linux/armhf` normalizes to linux/arm/v7, the config names
/// the variant, TARGETVARIANT is v7, and the RUN sees an ARMv7 CPU under QEMU.
#[test]
fn armhf_variant_in_config_args_and_emulated_run() {
    if !need("dpkg-deb")
        || !require(
            Path::new("/usr/bin/qemu-arm-static").exists(),
            "qemu-user-static",
        )
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(bb) = foreign_busybox(t.path(), "armhf") else {
        return;
    };
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nARG TARGETPLATFORM TARGETVARIANT\nRUN echo \"$(uname -m) $TARGETPLATFORM $TARGETVARIANT\" > /seen\n",
        &[],
    );
    rootfs_tar_of(&bb, t.path(), &ctx.join("rootfs.tar"));
    let root = t.path().join("root");
    let oci = t.path().join("armhf.oci.tar");
    ok(rbuild(
        &root,
        &[
            "build",
            "--platform",
            "linux/armhf",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let top = json(&tar_file(&oci, "index.json"));
    let digest = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest = json(&blob(&oci, &digest));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["architecture"], "arm");
    assert_eq!(config["variant"], "v7");
    let seen = String::from_utf8(file_in_image(&oci, &digest, "seen").unwrap()).unwrap();
    assert_eq!(seen, "armv7l linux/arm/v7 v7\n");
}
