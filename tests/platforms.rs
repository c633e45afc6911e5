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
    assert_store_consistent(&root);
}
