//! Multi-platform builds (issue 18): `--platform a,b` makes an image index, kept in the store
//! under one tag, written by `-o type=oci|docker`, pushed as an OCI index, pulled per platform.

mod common;

use common::oci::*;
use common::registry::Registry;
use common::*;
use std::path::Path;
use std::process::Command;

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
    let info = json(ok(rbuild(&root3, &["inspect", &name])).stdout.as_bytes());
    assert_eq!(
        info[0]["Architecture"], "amd64",
        "the plain name: the host's image"
    );

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
    // Its untagged platform image is protected: `rmi` by id refuses, `prune -a` keeps it.
    let arm_id = inspect(&["inspect", "--platform", "linux/arm64", "multi:2"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = rbuild(&root2, &["rmi", &arm_id]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("multi-platform image multi:2"),
        "{}",
        r.stderr
    );
    ok(rbuild(&root2, &["prune", "-a"]));
    assert_eq!(
        inspect(&["inspect", "--platform", "linux/arm64", "multi:2"])[0]["Id"],
        arm_id.as_str()
    );
    // `save` of the name writes the whole index (gzip: the same bytes as the build's output).
    let saved = t.path().join("saved.oci.tar");
    ok(rbuild(
        &root2,
        &[
            "save",
            "--format",
            "oci",
            "--compression",
            "gzip",
            "-o",
            saved.to_str().unwrap(),
            "multi:2",
        ],
    ));
    assert_eq!(
        json(&tar_file(&saved, "index.json"))["manifests"][0]["digest"],
        idx_desc["digest"]
    );
    // Retagging the name to one image makes it a plain tag again.
    ok(rbuild(&root2, &["tag", "multi:2", "multi:3"]));
    let r = rbuild(&root2, &["inspect", "--platform", "linux/arm64", "multi:3"]);
    assert_ne!(r.status, 0, "multi:3 names the amd64 image only");
    assert_store_consistent(&root);
}
