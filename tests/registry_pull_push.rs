//! Pull and push against a real `docker-registry` on 127.0.0.1, checked with skopeo.

mod common;

use common::registry::Registry;
use common::*;
use std::path::Path;
use std::process::Command;

/// Builds `FROM scratch / ADD rootfs.tar /` (plus `extra` lines) tagged `tag` into `root`.
fn build_busybox(t: &Path, root: &Path, tag: &str, extra: &str, output: Option<&str>) {
    let ctx = context(
        &t.join(format!("ctx-{}", tag.replace(['/', ':'], "_"))),
        &format!("FROM scratch\nADD rootfs.tar /\nCMD [\"sh\"]\n{extra}"),
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let mut args = vec!["build", "-q", "-t", tag];
    let out = output.map(|o| o.to_string());
    if let Some(o) = &out {
        args.push("-o");
        args.push(o);
    }
    args.push(ctx.to_str().unwrap());
    ok(rbuild(root, &args));
}

fn skopeo_inspect(reference: &str) -> serde_json::Value {
    let out = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_str(&out).unwrap()
}

fn layer_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("image/overlay2/layerdb/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn push_inspect_pull_build_and_mount() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root1 = t.path().join("root1");
    let name = format!("{}/rb/busybox:1", reg.addr());
    build_busybox(t.path(), &root1, &name, "", None);
    let r = ok(rbuild(&root1, &["push", &name]));
    let digest = r.stdout.trim().to_string();
    assert!(digest.starts_with("sha256:"), "{}", r.stdout);
    assert!(r.stderr.contains("Pushed"), "{}", r.stderr);
    let info = skopeo_inspect(&name);
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(info["Architecture"], "amd64");
    // A second push finds every blob in the registry.
    let r = ok(rbuild(&root1, &["push", &name]));
    assert_eq!(r.stdout.trim(), digest);
    assert!(r.stderr.contains("Layer already exists"), "{}", r.stderr);

    // An empty root pulls the base implicitly and builds FROM it.
    let root2 = t.path().join("root2");
    let ctx = context(
        &t.path().join("ctx2"),
        &format!("FROM {name}\nRUN echo hi > /hi\n"),
        &[],
    );
    let out = t.path().join("out");
    ok(rbuild(
        &root2,
        &[
            "build",
            "-q",
            "-t",
            "derived:1",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(out.join("hi")).unwrap(), "hi\n");
    assert!(out.join("bin/busybox").is_file());
    let images = ok(rbuild(&root2, &["images", "--digests"])).stdout;
    assert!(images.contains(&digest), "{images}");
    // Distribution metadata names where the layer came from.
    let dist = root2.join("image/overlay2/distribution/v2metadata-by-diffid/sha256");
    let meta: String = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        meta.contains(&format!(
            "\"SourceRepository\":\"{}/rb/busybox\"",
            reg.addr()
        )),
        "{meta}"
    );
    assert!(root2
        .join("image/overlay2/distribution/diffid-by-digest/sha256")
        .read_dir()
        .unwrap()
        .next()
        .is_some());

    // Pushing the base under another repository mounts its layer instead of uploading it.
    let other = format!("{}/other/copy:1", reg.addr());
    let r = ok(rbuild(&root2, &["push", &name, &other]));
    assert!(r.stderr.contains("Mounted from rb/busybox"), "{}", r.stderr);
    assert_eq!(skopeo_inspect(&other)["Digest"], digest.as_str());
    // Pulling again fetches nothing.
    let r = ok(rbuild(&root2, &["pull", &name]));
    assert!(r.stderr.contains("Already exists"), "{}", r.stderr);
    // The store a pull leaves passes fsck.
    ok(rbuild(&root2, &["fsck"]));
    assert_nothing_mounted_under(&root2);

    // COPY --from=<image> pulls too; build --push and -o type=registry push the result.
    let root3 = t.path().join("root3");
    let ctx3 = context(
        &t.path().join("ctx3"),
        &format!("FROM scratch\nCOPY --from={name} /bin/busybox /bb\n"),
        &[],
    );
    let pushed = format!("{}/rb/copied:1", reg.addr());
    let also = format!("{}/rb/also:2", reg.addr());
    ok(rbuild(
        &root3,
        &[
            "build",
            "-q",
            "--push",
            "-t",
            &pushed,
            "-o",
            &format!("type=registry,name={also}"),
            ctx3.to_str().unwrap(),
        ],
    ));
    let a = skopeo_inspect(&pushed);
    let b = skopeo_inspect(&also);
    assert_eq!(a["Digest"], b["Digest"]);
    assert_eq!(a["Layers"].as_array().unwrap().len(), 1);
    assert_nothing_mounted_under(&root3);
}

#[test]
fn layers_in_every_compression_round_trip() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root1 = t.path().join("root1");
    for (i, comp) in ["gzip", "zstd", "uncompressed"].iter().enumerate() {
        let name = format!("{}/rb/comp:{comp}", reg.addr());
        let dest = t.path().join(format!("o{i}.tar"));
        build_busybox(
            t.path(),
            &root1,
            &name,
            &format!("RUN echo {comp} > /which\n"),
            Some(&format!(
                "type=oci,dest={},compression={comp}",
                dest.display()
            )),
        );
        ok(rbuild(
            &root1,
            &["push", "-q", "--compression", comp, &name],
        ));
        let raw = sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ]));
        let info: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let want = match *comp {
            "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        assert_eq!(info["layers"][1]["mediaType"], want, "{info}");
        let root2 = t.path().join(format!("fresh{i}"));
        let r = ok(rbuild(&root2, &["pull", &name]));
        let id = r.stdout.trim().to_string();
        let local = rbuild::store::Store::open(&root1)
            .unwrap()
            .resolve(&name)
            .unwrap()
            .unwrap();
        assert_eq!(id, local.to_string());
        assert_eq!(layer_count(&root2), 2);
    }
}

#[test]
fn chunked_upload_through_the_library() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let name = format!("{}/rb/chunked:1", reg.addr());
    build_busybox(t.path(), &root, &name, "", None);
    let store = rbuild::store::Store::open(&root).unwrap();
    let id = store.resolve(&name).unwrap().unwrap();
    let cfg = rbuild::registry::RegistryConfig::default();
    let target = rbuild::image::Reference::parse(&name).unwrap();
    let client = rbuild::registry::Client::new(target.domain(), &cfg).unwrap();
    let opts = rbuild::registry::PushOptions {
        chunk_size: 100 * 1024,
        quiet: true,
        ..Default::default()
    };
    let digest = rbuild::registry::push(&client, &store, &id, &target, &opts).unwrap();
    assert_eq!(skopeo_inspect(&name)["Digest"], digest.to_string().as_str());
    // The registry assembled the chunks into the same blob: skopeo can copy it out verified.
    let dest = t.path().join("copy");
    sh(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}", dest.display()),
    ]));
}

#[test]
fn manifest_list_resolves_to_the_host_platform() {
    use rbuild::digest::Digest;
    use rbuild::image::manifest::{Descriptor, Platform, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST};
    use rbuild::registry::push::{push_blob, push_manifest, BlobSource};
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let amd = format!("{}/rb/multi:amd64", reg.addr());
    build_busybox(t.path(), &root, &amd, "", None);
    ok(rbuild(&root, &["push", "-q", &amd]));
    let amd_manifest = skopeo_inspect(&amd)["Digest"].as_str().unwrap().to_string();
    // An "arm64" image: one tiny layer and a config naming arm64.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "arch", &b"arm\n"[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let diff_id = Digest::of_bytes(&layer);
    let config = format!(
        r#"{{"architecture":"arm64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let cfg = rbuild::registry::RegistryConfig::default();
    let client = rbuild::registry::Client::new(&reg.addr(), &cfg).unwrap();
    let opts = rbuild::registry::PushOptions::default();
    let layer_d = Digest::of_bytes(&layer);
    push_blob(
        &client,
        "rb/multi",
        &layer_d,
        layer.len() as u64,
        BlobSource::Bytes(&layer),
        &[],
        &opts,
    )
    .unwrap();
    let config_d = Digest::of_bytes(config.as_bytes());
    push_blob(
        &client,
        "rb/multi",
        &config_d,
        config.len() as u64,
        BlobSource::Bytes(config.as_bytes()),
        &[],
        &opts,
    )
    .unwrap();
    let arm_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let arm_d = push_manifest(
        &client,
        "rb/multi",
        "arm64",
        arm_manifest.as_bytes(),
        MEDIA_OCI_MANIFEST,
    )
    .unwrap();
    let amd_bytes_len = {
        let out = sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{amd}"),
        ]));
        out.len() as u64
    };
    let mut arm = Descriptor::new(MEDIA_OCI_MANIFEST, arm_d.clone(), arm_manifest.len() as u64);
    arm.platform = Some(Platform {
        architecture: "arm64".into(),
        os: "linux".into(),
        os_version: None,
        variant: Some("v8".into()),
    });
    let mut x86 = Descriptor::new(
        MEDIA_OCI_MANIFEST,
        Digest::parse(&amd_manifest).unwrap(),
        amd_bytes_len,
    );
    x86.platform = Some(Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        os_version: None,
        variant: None,
    });
    let index = rbuild::image::manifest::build_index(&[arm, x86]).unwrap();
    push_manifest(&client, "rb/multi", "latest", &index, MEDIA_OCI_INDEX).unwrap();
    let raw = sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/rb/multi:latest", reg.addr()),
    ]));
    assert!(raw.contains("\"manifests\""), "{raw}");

    let multi = format!("{}/rb/multi", reg.addr());
    let fresh = t.path().join("fresh");
    let r = ok(rbuild(&fresh, &["pull", &multi]));
    let amd_id = rbuild::store::Store::open(&root)
        .unwrap()
        .resolve(&amd)
        .unwrap()
        .unwrap();
    assert_eq!(
        r.stdout.trim(),
        amd_id.to_string(),
        "the index did not resolve to amd64"
    );
    // By the index's digest, to the same image; a wrong digest is a clear 404.
    let index_digest = Digest::of_bytes(&index);
    let r = ok(rbuild(
        &t.path().join("bydigest"),
        &["pull", &format!("{multi}@{index_digest}")],
    ));
    assert_eq!(r.stdout.trim(), amd_id.to_string());
    let r = rbuild(
        &t.path().join("bydigest"),
        &["pull", &format!("{multi}@{}", Digest::of_bytes(b"nope"))],
    );
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("manifest unknown"), "{}", r.stderr);
    // The other platform on request, and a clear error for one the index lacks.
    let r = ok(rbuild(
        &fresh,
        &["pull", "--platform", "linux/arm64", &multi],
    ));
    assert_eq!(
        r.stdout.trim(),
        Digest::of_bytes(config.as_bytes()).to_string()
    );
    let r = rbuild(&fresh, &["pull", "--platform", "linux/s390x", &multi]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("no manifest for platform linux/s390x"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("linux/arm64/v8"), "{}", r.stderr);
}

#[test]
fn corrupted_blob_fails_the_pull_and_leaves_no_layer() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root1 = t.path().join("root1");
    let name = format!("{}/rb/corrupt:1", reg.addr());
    build_busybox(t.path(), &root1, &name, "", None);
    ok(rbuild(&root1, &["push", "-q", &name]));
    let info = skopeo_inspect(&name);
    let layer = info["Layers"][0].as_str().unwrap().to_string();
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let root2 = t.path().join("root2");
    let r = rbuild(&root2, &["pull", &name]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("digest mismatch"), "{}", r.stderr);
    assert!(r.stderr.contains(&layer), "{}", r.stderr);
    assert_eq!(layer_count(&root2), 0);
    let blobs: Vec<_> = std::fs::read_dir(root2.join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "partial blob kept: {blobs:?}");
    let tmp: Vec<_> = std::fs::read_dir(root2.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    assert!(ok(rbuild(&root2, &["images", "-q"]))
        .stdout
        .trim()
        .is_empty());
    // A missing tag is a clear 404.
    let r = rbuild(
        &root2,
        &["pull", &format!("{}/rb/corrupt:nope", reg.addr())],
    );
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("manifest unknown"), "{}", r.stderr);
}

#[test]
fn g_htpasswd_auth_with_right_and_wrong_credentials() {
    let reg = Registry::start_htpasswd("alice", "s3cret-pw");
    let t = tempfile::tempdir().unwrap();
    let cfgdir = t.path().join("dockercfg");
    let env = [("DOCKER_CONFIG", cfgdir.to_str().unwrap())];
    let root1 = t.path().join("root1");
    let name = format!("{}/rb/private:1", reg.addr());
    build_busybox(t.path(), &root1, &name, "", None);
    // Anonymous: refused, and the error says nothing was configured.
    let r = rbuild_env(&root1, &["push", &name], &env);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("HTTP 401"), "{}", r.stderr);
    assert!(r.stderr.contains("anonymous"), "{}", r.stderr);
    // Wrong password: login fails and stores nothing.
    let login = |pw: &str| {
        let mut cmd = Command::new(rbuild_bin());
        cmd.args(["login", "-u", "alice", "--password-stdin", &reg.addr()])
            .env("DOCKER_CONFIG", &cfgdir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pw.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = login("wrong-pw");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("wrong-pw"), "password printed: {err}");
    assert!(!cfgdir.join("config.json").exists());
    // Right password: stored as docker does, then push and pull work.
    let out = login("s3cret-pw");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfgdir.join("config.json")).unwrap()).unwrap();
    use base64::Engine;
    let auth = cfg["auths"][reg.addr()]["auth"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .unwrap(),
        b"alice:s3cret-pw"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cfgdir.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "config.json readable by others");
    let r = ok(rbuild_env(&root1, &["push", &name], &env));
    assert!(!r.stderr.contains("s3cret"), "{}", r.stderr);
    let root2 = t.path().join("root2");
    ok(rbuild_env(&root2, &["pull", &name], &env));
    // A config entry with the wrong password names its source, not the password.
    std::fs::write(
        cfgdir.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr(),
            base64::engine::general_purpose::STANDARD.encode("alice:bad-one")
        ),
    )
    .unwrap();
    let r = rbuild_env(&t.path().join("root3"), &["pull", &name], &env);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("user \"alice\""), "{}", r.stderr);
    assert!(r.stderr.contains("config.json"), "{}", r.stderr);
    assert!(!r.stderr.contains("bad-one"), "{}", r.stderr);
    // Logout removes the entry.
    let r = ok(rbuild_env(&root1, &["logout", &reg.addr()], &env));
    assert!(
        r.stdout.contains("Removing login credentials"),
        "{}",
        r.stdout
    );
    let cfg = std::fs::read_to_string(cfgdir.join("config.json")).unwrap();
    assert!(!cfg.contains(&reg.addr()), "{cfg}");

    // With `credsStore` set, login stores through the helper (a file-backed script here) and
    // config.json gets an empty entry, as docker does; pull reads the secret back from it.
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let vault = t.path().join("vault.json");
    let helper = bin.join("docker-credential-rbfile");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nv={v}\ncase \"$1\" in\n store) cat > $v ;;\n get) read s; [ -f $v ] && cat $v || {{ echo 'credentials not found in native keychain'; exit 1; }} ;;\n erase) read s; echo \"$s\" > {v}.erased; rm -f $v ;;\nesac\n",
            v = vault.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(cfgdir.join("config.json"), r#"{"credsStore":"rbfile"}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new(rbuild_bin());
    cmd.args(["login", "-u", "alice", "--password-stdin", &reg.addr()])
        .env("DOCKER_CONFIG", &cfgdir)
        .env("PATH", &path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"s3cret-pw").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vault).unwrap()).unwrap();
    assert_eq!(stored["ServerURL"], reg.addr().as_str());
    assert_eq!(stored["Username"], "alice");
    assert_eq!(stored["Secret"], "s3cret-pw");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfgdir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["auths"][reg.addr()], serde_json::json!({}), "{cfg}");
    assert_eq!(cfg["credsStore"], "rbfile");
    let env2 = [
        ("DOCKER_CONFIG", cfgdir.to_str().unwrap()),
        ("PATH", path.as_str()),
    ];
    ok(rbuild_env(&t.path().join("root4"), &["pull", &name], &env2));
    ok(rbuild_env(&root1, &["logout", &reg.addr()], &env2));
    assert!(!vault.exists(), "logout did not erase through the helper");
    assert_eq!(
        std::fs::read_to_string(format!("{}.erased", vault.display()))
            .unwrap()
            .trim(),
        reg.addr()
    );
}
