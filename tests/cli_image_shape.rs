//! End-to-end checks of the build flags that shape the image or what RUN sees (issue 20):
//! proxies from `config.json`, `--squash`, `--annotation`.

mod common;

use common::*;
use std::path::Path;

fn build(root: &Path, ctx: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = ok(rbuild_env(root, &args, env));
    r.stdout.trim().to_string()
}

#[test]
fn proxies_from_docker_config_reach_run_but_not_the_image() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let cfg = t.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        r#"{"proxies":{"default":{"httpProxy":"http://proxy.example:3128","httpsProxy":"http://sproxy.example:3129","noProxy":"localhost,.internal"}}}"#,
    )
    .unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo \"$HTTP_PROXY|$http_proxy|$HTTPS_PROXY|$https_proxy|$NO_PROXY|$no_proxy|$FTP_PROXY\" > /seen\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let out = t.path().join("out");
    let env = [("DOCKER_CONFIG", cfg.to_str().unwrap())];
    let dest = format!("type=local,dest={}", out.display());
    build(
        &root,
        &ctx,
        &[
            "-t",
            "proxied:1",
            "--build-arg",
            "https_proxy=mine",
            "-o",
            &dest,
        ],
        &env,
    );
    assert_eq!(
        std::fs::read_to_string(out.join("seen")).unwrap(),
        "http://proxy.example:3128|http://proxy.example:3128|http://sproxy.example:3129|mine|localhost,.internal|localhost,.internal|\n"
    );
    // As Docker's predefined proxy args: neither the config nor the history records them.
    let inspect = ok(rbuild(&root, &["inspect", "proxied:1"])).stdout;
    let history = ok(rbuild(&root, &["history", "--no-trunc", "proxied:1"])).stdout;
    for text in [&inspect, &history] {
        assert!(!text.contains("proxy.example"), "{text}");
        assert!(!text.contains("mine"), "{text}");
    }
    assert!(history.contains("RUN /bin/sh -c echo"), "{history}");
    // Proxies are not in the cache key (BuildKit's ProxyEnv): without the config the RUN is a
    // cache hit; run again, it sees no proxy.
    let empty = t.path().join("empty-config");
    std::fs::create_dir_all(&empty).unwrap();
    let env = [("DOCKER_CONFIG", empty.to_str().unwrap())];
    let again = |extra: &str, out: &Path| {
        let dest = format!("type=local,dest={}", out.display());
        let mut args = vec!["build", "--progress", "plain", "-o", &dest];
        if !extra.is_empty() {
            args.push(extra);
        }
        args.push(ctx.to_str().unwrap());
        ok(rbuild_env(&root, &args, &env))
    };
    let r = again("", &t.path().join("out2"));
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    let out3 = t.path().join("out3");
    let r = again("--no-cache", &out3);
    assert_eq!(
        std::fs::read_to_string(out3.join("seen")).unwrap(),
        "||||||\n",
        "{}",
        r.stderr
    );
}

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &serde_json::Value) -> serde_json::Value {
    let d = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    json_file(&layout.join("blobs/sha256").join(d))
}

#[test]
fn annotations_on_the_pushed_manifest_and_in_layouts() {
    let reg = common::registry::Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY a /a\n",
        &[("a", "x")],
    );
    let image = format!("{}/cli/annotated:1", reg.addr());
    let meta = t.path().join("meta.json");
    let anns = [
        "--annotation",
        "org.example.plain=1",
        "--annotation",
        "manifest[linux/amd64]:org.example.amd=2",
        "--annotation",
        "manifest[linux/arm64]:org.example.arm=3",
        "--annotation",
        "manifest-descriptor:org.example.desc=4",
    ];
    let mut args = vec!["--push", "-t", &image, "--metadata-file"];
    args.push(meta.to_str().unwrap());
    args.extend_from_slice(&anns);
    build(&root, &ctx, &args, &[]);
    let raw = sh(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["annotations"]["org.example.plain"], "1", "{raw}");
    assert_eq!(m["annotations"]["org.example.amd"], "2", "{raw}");
    assert!(m["annotations"].get("org.example.arm").is_none(), "{raw}");
    assert!(m["annotations"].get("org.example.desc").is_none(), "{raw}");
    // --metadata-file names the annotated manifest that was pushed.
    let digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    assert_eq!(json_file(&meta)["containerimage.digest"], digest.as_str());

    // An OCI layout: the manifest's annotations, and the descriptor's in index.json.
    let layout = t.path().join("layout");
    let o = format!("type=oci,tar=false,dest={}", layout.display());
    let mut args = vec!["-t", "annotated:1", "-o", &o];
    args.extend_from_slice(&anns);
    build(&root, &ctx, &args, &[]);
    let index = json_file(&layout.join("index.json"));
    let desc = &index["manifests"][0];
    assert_eq!(desc["annotations"]["org.example.desc"], "4", "{index}");
    let m = blob(&layout, &desc["digest"]);
    assert_eq!(m["annotations"]["org.example.plain"], "1", "{m}");
    assert!(m["annotations"].get("org.example.desc").is_none(), "{m}");

    // Index annotations need an index: refused for one platform, as BuildKit.
    let r = rbuild(
        &root,
        &["build", "--annotation", "index:k=v", ctx.to_str().unwrap()],
    );
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("need an image index"), "{}", r.stderr);
}

#[test]
fn annotations_on_an_image_index() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY a /a\n",
        &[("a", "x")],
    );
    let layout = t.path().join("layout");
    let o = format!("type=oci,tar=false,dest={}", layout.display());
    build(
        &root,
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "multi:1",
            "-o",
            &o,
            "--annotation",
            "index,manifest:org.example.both=1",
            "--annotation",
            "index-descriptor:org.example.idesc=2",
            "--annotation",
            "manifest[linux/arm64]:org.example.arm=3",
            "--annotation",
            "manifest-descriptor[linux/amd64]:org.example.mdesc=4",
        ],
        &[],
    );
    let top = json_file(&layout.join("index.json"));
    let idesc = &top["manifests"][0];
    assert_eq!(idesc["annotations"]["org.example.idesc"], "2", "{top}");
    let index = blob(&layout, &idesc["digest"]);
    assert_eq!(index["annotations"]["org.example.both"], "1", "{index}");
    let mut seen = 0;
    for d in index["manifests"].as_array().unwrap() {
        let arch = d["platform"]["architecture"].as_str().unwrap_or("");
        let m = blob(&layout, &d["digest"]);
        if !matches!(arch, "amd64" | "arm64") {
            continue;
        }
        seen += 1;
        assert_eq!(m["annotations"]["org.example.both"], "1", "{m}");
        assert_eq!(
            m["annotations"].get("org.example.arm").is_some(),
            arch == "arm64"
        );
        assert_eq!(
            d["annotations"].get("org.example.mdesc").is_some(),
            arch == "amd64"
        );
    }
    assert_eq!(seen, 2, "{index}");
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn squash_makes_the_builds_layers_one_on_top_of_the_base() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let base = context(
        &t.path().join("base"),
        "FROM scratch\nADD rootfs.tar /\nCOPY f1 /f1\n",
        &[("f1", "base file")],
    );
    rootfs_archive(&base, "rootfs.tar");
    build(&root, &base, &["-t", "sqbase:1"], &[]);
    let ctx = context(
        &t.path().join("ctx"),
        "FROM sqbase:1\nRUN echo a > /a\nRUN rm /f1\nRUN echo b > /b\nRUN rm /b\nENV K=v\nCOPY c /c\n",
        &[("c", "copied")],
    );
    let archive = t.path().join("sq.tar");
    let dest = format!("type=docker,dest={}", archive.display());
    let unsquashed = build(&root, &ctx, &["-t", "plain:1"], &[]);
    let id = build(&root, &ctx, &["--squash", "-t", "sq:1", "-o", &dest], &[]);
    assert_ne!(id, unsquashed);
    // skopeo reads the archive: the base's two layers plus one.
    let raw = sh(std::process::Command::new("skopeo")
        .args(["inspect", &format!("docker-archive:{}", archive.display())]));
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 3, "{raw}");
    let cfg: serde_json::Value = serde_json::from_str(&sh(std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            &format!("docker-archive:{}", archive.display()),
        ])))
    .unwrap();
    let history = cfg["history"].as_array().unwrap();
    // The base's two entries, the build's six (now empty layers), the merge entry.
    assert_eq!(history.len(), 2 + 6 + 1, "{cfg}");
    assert!(
        history[2..8].iter().all(|h| h["empty_layer"] == true),
        "{cfg}"
    );
    let base_id = inspect_id(&root, "sqbase:1");
    let merge = history[8]["comment"].as_str().unwrap();
    assert_eq!(merge, format!("merge {unsquashed} to {base_id}"));
    assert_eq!(history[8].get("empty_layer"), None, "{cfg}");
    assert_eq!(cfg["config"]["Env"][1], "K=v", "{cfg}");
    // The squashed layer has the build's changes: new files and the base file's whiteout.
    let layer_list = squashed_layer_listing(&archive);
    for want in ["a", "c", ".wh.f1"] {
        assert!(layer_list.iter().any(|p| p == want), "{layer_list:?}");
    }
    assert!(
        !layer_list
            .iter()
            .any(|p| p == "b" || p == "f1" || p.starts_with("bin")),
        "{layer_list:?}"
    );
    // Built upon, it reads as the unsquashed image does.
    let child = context(
        &t.path().join("child"),
        "FROM sq:1\nRUN ls / > /listing\n",
        &[],
    );
    let out = t.path().join("out");
    build(
        &root,
        &child,
        &["-o", &format!("type=local,dest={}", out.display())],
        &[],
    );
    assert_eq!(std::fs::read_to_string(out.join("c")).unwrap(), "copied");
    assert!(out.join("a").is_file() && !out.join("f1").exists() && !out.join("b").exists());
}

fn inspect_id(root: &Path, name: &str) -> String {
    let r = ok(rbuild(root, &["inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// The entry names of the archive's last layer (as its manifest.json lists them).
fn squashed_layer_listing(archive: &Path) -> Vec<String> {
    use std::io::Read;
    let mut files = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(name, data);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let last = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    let blob = &files[last.as_str().unwrap()];
    let tar_bytes = if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(blob.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        blob.clone()
    };
    let mut inner = tar::Archive::new(tar_bytes.as_slice());
    inner
        .entries()
        .unwrap()
        .map(|x| {
            let x = x.unwrap();
            x.path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}
