//! Multi-platform builds (issue 18): foreign RUN under QEMU user emulation (binfmt_misc), the
//! cross-compilation pattern (`FROM --platform=$BUILDPLATFORM`, `ARG TARGETARCH`), arm variants.
//! Foreign rootfs come from Debian's busybox-static .debs (scripts/setup).

mod common;

use common::oci::*;
use common::*;
use std::path::Path;
use std::process::Command;

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

    // Without --platform, FROM the local arm64 tag uses it as it is (no pull) and its RUN is
    // emulated too: the base's architecture decides.
    let ctx2 = context(
        &t.path().join("ctx2"),
        &format!("FROM {tag}\nRUN uname -m > /again\n"),
        &[],
    );
    let oci2 = t.path().join("again.oci.tar");
    ok(rbuild(
        &root,
        &[
            "build",
            "-o",
            &format!("type=oci,dest={}", oci2.display()),
            ctx2.to_str().unwrap(),
        ],
    ));
    let top2 = json(&tar_file(&oci2, "index.json"));
    let again = file_in_image(
        &oci2,
        top2["manifests"][0]["digest"].as_str().unwrap(),
        "again",
    );
    assert_eq!(String::from_utf8(again.unwrap()).unwrap(), "aarch64\n");

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
    let cache = t.path().join("cache");
    let r = ok(rbuild(
        &root,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
            "--build-arg",
            "UNUSED=1",
            ctx.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        r.stderr.matches("\"UNUSED\" was not consumed").count(),
        1,
        "warned once, not per target\n{}",
        r.stderr
    );
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

    // The exported cache holds both platforms' steps: a fresh store builds from it, running
    // nothing, to the same index.
    let root2 = t.path().join("root2");
    let oci2 = t.path().join("cross2.oci.tar");
    let r = ok(rbuild(
        &root2,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=oci,dest={}", oci2.display()),
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    assert!(!r.stderr.contains("cache miss"), "{}", r.stderr);
    assert_eq!(oci_manifests(&oci2), manifests);
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
