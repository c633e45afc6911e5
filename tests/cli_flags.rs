//! End-to-end checks of the buildx/docker build flags (issue 20): each asserts the flag's effect
//! on a real build, not just that it parses.

mod common;

use common::registry::Registry;
use common::*;
use std::path::Path;
use std::process::Command;

fn inspect(root: &Path, name: &str) -> serde_json::Value {
    let r = ok(rbuild(root, &["inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("inspect JSON");
    v[0].clone()
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}

#[test]
fn check_fails_on_error_true_and_reports_rules() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let bad = context(
        &t.path().join("bad"),
        "# check=error=true\nFROM scratch as base\nCOPY a /a\n",
        &[("a", "x")],
    );
    let r = rbuild(&root, &["build", "--check", bad.to_str().unwrap()]);
    assert_ne!(r.status, 0, "{}", r.stdout);
    has(&r.stdout, "Check complete, 1 warning has been found!");
    has(
        &r.stdout,
        "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
    );
    has(&r.stderr, "lint violation found for rules: FromAsCasing");

    // `--call check` is the same; a skipped rule no longer reports.
    let skipped = context(
        &t.path().join("skipped"),
        "# check=skip=FromAsCasing;error=true\nFROM scratch as base\nCOPY a /a\n",
        &[("a", "x")],
    );
    let r = ok(rbuild(
        &root,
        &["build", "--call", "check", skipped.to_str().unwrap()],
    ));
    has(&r.stdout, "Check complete, no warnings found.");

    // The normal build refuses to run with error=true, and builds nothing.
    let r = rbuild(&root, &["build", "-t", "never:1", bad.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    has(
        &r.stderr,
        "WARN: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)",
    );
    assert_ne!(rbuild(&root, &["inspect", "never:1"]).status, 0);
}

#[test]
fn warnings_are_printed_during_a_build() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch AS Base\nMAINTAINER me\nCOPY a /a\n",
        &[("a", "x")],
    );
    let r = ok(rbuild(
        &root,
        &["build", "-t", "warned:1", ctx.to_str().unwrap()],
    ));
    has(
        &r.stderr,
        "WARN: StageNameCasing: Stage name 'Base' should be lowercase (line 1)",
    );
    has(&r.stderr, "WARN: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)");
    assert_eq!(inspect(&root, "warned:1")["Author"], "me");
}

#[test]
fn call_outline_and_targets() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "ARG BASE=scratch\n# build compiles the thing\nFROM $BASE AS build\n# VERSION the release number\nARG VERSION=1.0\nRUN --mount=type=secret,id=token,required=true cat /run/secrets/token\n\n# release ships it\nFROM scratch AS release\nCOPY --from=build /out /out\n\nFROM scratch AS other\nARG UNUSED\n",
        &[],
    );
    let r = ok(rbuild(
        &root,
        &["build", "--call", "targets", ctx.to_str().unwrap()],
    ));
    has(&r.stdout, "build\tcompiles the thing");
    has(&r.stdout, "release\tships it");
    has(&r.stdout, "other (default)");
    let r = ok(rbuild(
        &root,
        &[
            "build",
            "--call",
            "outline",
            "--target",
            "release",
            ctx.to_str().unwrap(),
        ],
    ));
    has(&r.stdout, "TARGET:\trelease");
    has(&r.stdout, "BASE\tscratch");
    has(&r.stdout, "VERSION\t1.0\tthe release number");
    has(&r.stdout, "token\ttrue");
    assert!(!r.stdout.contains("UNUSED"), "{}", r.stdout);
}

#[test]
fn label_sets_and_overrides_image_labels() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nLABEL a=from-dockerfile keep=1\nCOPY f /f\n",
        &[("f", "x")],
    );
    ok(rbuild(
        &root,
        &[
            "build",
            "-q",
            "-t",
            "lab:1",
            "--label",
            "a=from-cli",
            "--label",
            "b=2",
            ctx.to_str().unwrap(),
        ],
    ));
    let labels = &inspect(&root, "lab:1")["Config"]["Labels"];
    assert_eq!(labels["a"], "from-cli");
    assert_eq!(labels["b"], "2");
    assert_eq!(labels["keep"], "1");
    assert_ne!(
        rbuild(&root, &["build", "--label", "nokey", ctx.to_str().unwrap()]).status,
        0
    );
}

#[test]
fn docker_noop_flags_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY f /f\n",
        &[("f", "x")],
    );
    let c = ctx.to_str().unwrap();
    let plain = ok(rbuild(&root, &["build", "-q", c])).stdout;
    let flagged = ok(rbuild(
        &root,
        &[
            "build",
            "-q",
            "--rm=false",
            "--force-rm",
            "--compress",
            "--isolation",
            "process",
            "--network",
            "bridge",
            c,
        ],
    ))
    .stdout;
    assert_eq!(plain, flagged, "the no-op flags gave another image");
    let r = rbuild(&root, &["build", "--isolation", "hyperv", c]);
    assert_ne!(r.status, 0);
    has(&r.stderr, "--isolation");
}

/// `--network bridge` is the default network: a RUN sees the same interfaces as without it.
#[test]
fn network_bridge_is_the_default() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN ls /sys/class/net | sort > /ifs\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let out_a = t.path().join("a");
    let out_b = t.path().join("b");
    for (net, out) in [("default", &out_a), ("bridge", &out_b)] {
        ok(rbuild(
            &root,
            &[
                "build",
                "-q",
                "--no-cache",
                "--network",
                net,
                "-o",
                &format!("type=local,dest={}", out.display()),
                ctx.to_str().unwrap(),
            ],
        ));
    }
    let a = std::fs::read_to_string(out_a.join("ifs")).unwrap();
    assert_eq!(a, std::fs::read_to_string(out_b.join("ifs")).unwrap());
    assert!(
        a.lines().count() > 1,
        "the default network has lo and the user-mode stack's interface: {a}"
    );
}

#[test]
fn did_you_mean() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPPY f /f\n",
        &[("f", "x")],
    );
    let r = rbuild(&root, &["build", ctx.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    has(
        &r.stderr,
        "Dockerfile:2:1: unknown instruction: COPPY (did you mean COPY?)",
    );
    let r = rbuild(&root, &["biuld", "."]);
    has(&r.stderr, "a similar subcommand exists: 'build'");
    let r = rbuild(&root, &["build", "--no-cahe", ctx.to_str().unwrap()]);
    has(&r.stderr, "a similar argument exists: '--no-cache'");
}

/// `--progress rawjson`: every stderr line is a BuildKit `SolveStatus` object; started,
/// completed, cached and errored vertices and logs all appear.
#[test]
fn rawjson_events_parse() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo hello-rawjson\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let events = |r: &Run| -> Vec<serde_json::Value> {
        r.stderr
            .lines()
            .filter(|l| !l.starts_with("rbuild: error") && !l.starts_with("  "))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    };
    let vertexes = |ev: &[serde_json::Value]| -> Vec<serde_json::Value> {
        ev.iter()
            .filter_map(|e| e["vertexes"].as_array())
            .flatten()
            .cloned()
            .collect()
    };
    let r = ok(rbuild(
        &root,
        &["build", "--progress", "rawjson", ctx.to_str().unwrap()],
    ));
    let ev = events(&r);
    let v = vertexes(&ev);
    assert!(v
        .iter()
        .any(|x| x["started"].is_string() && x["completed"].is_null()));
    assert!(v.iter().any(
        |x| x["completed"].is_string() && x["digest"].as_str().unwrap().starts_with("sha256:")
    ));
    use base64::Engine;
    let logs: String = ev
        .iter()
        .filter_map(|e| e["logs"].as_array())
        .flatten()
        .map(|l| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(l["data"].as_str().unwrap())
                .unwrap();
            String::from_utf8_lossy(&b).to_string()
        })
        .collect();
    assert!(logs.contains("hello-rawjson"), "{logs}");

    let r = ok(rbuild(
        &root,
        &["build", "--progress", "rawjson", ctx.to_str().unwrap()],
    ));
    assert!(vertexes(&events(&r)).iter().any(|x| x["cached"] == true));

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD rootfs.tar /\nRUN exit 3\n",
    )
    .unwrap();
    let r = rbuild(
        &root,
        &["build", "--progress", "rawjson", ctx.to_str().unwrap()],
    );
    assert_ne!(r.status, 0);
    assert!(vertexes(&events(&r)).iter().any(|x| x["error"].is_string()));
}

#[test]
fn metadata_file_matches_the_pushed_digest() {
    if !need("skopeo") {
        return;
    }
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY f /f\n",
        &[("f", "meta")],
    );
    let name = format!("{}/rb/meta:1", reg.addr());
    let meta = t.path().join("meta.json");
    ok(rbuild(
        &root,
        &[
            "build",
            "-q",
            "-t",
            &name,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    ));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let out = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]));
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["containerimage.digest"], info["Digest"]);
    assert_eq!(m["containerimage.descriptor"]["digest"], info["Digest"]);
    assert_eq!(
        m["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(m["containerimage.descriptor"]["size"].as_u64().unwrap() > 0);
    assert_eq!(
        m["containerimage.config.digest"],
        inspect(&root, &name)["Id"]
    );
    assert_eq!(m["image.name"], name.as_str());
    assert!(m["buildx.build.ref"]
        .as_str()
        .unwrap()
        .starts_with("rbuild/"));
    // No temp file left next to it (written atomically).
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 3);
}

#[test]
fn load_puts_the_image_into_the_docker_engine() {
    if !need_docker() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY f /f\nLABEL loaded=yes\n",
        &[("f", "load")],
    );
    let tag = format!("rbuild-load-test:{}", std::process::id());
    let r = ok(rbuild(
        &root,
        &["build", "--load", "-t", &tag, ctx.to_str().unwrap()],
    ));
    has(&r.stderr, "Loaded image");
    let out = sh(Command::new("docker").args(["image", "inspect", &tag]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Config"]["Labels"]["loaded"], "yes");
    let id = inspect(&root, &tag)["Id"].clone();
    assert_eq!(v[0]["Id"], id);

    // `-o type=docker` without dest does the same.
    let tag2 = format!("rbuild-load-test:o{}", std::process::id());
    ok(rbuild(
        &root,
        &[
            "build",
            "-q",
            "-o",
            "type=docker",
            "-t",
            &tag2,
            ctx.to_str().unwrap(),
        ],
    ));
    sh(Command::new("docker").args(["image", "inspect", &tag2]));
    let _ = Command::new("docker").args(["rmi", &tag, &tag2]).output();
}

/// Without a push the digest is the manifest's over the stored layers: the one `rbuild save` writes.
#[test]
fn metadata_file_without_push_names_the_saved_manifest() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY f /f\n",
        &[("f", "local")],
    );
    let meta = t.path().join("meta.json");
    ok(rbuild(
        &root,
        &[
            "build",
            "-q",
            "-t",
            "meta-local:1",
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    ));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(
        m["containerimage.config.digest"],
        inspect(&root, "meta-local:1")["Id"]
    );
    assert_eq!(m["image.name"], "meta-local:1");
    let saved = t.path().join("saved.tar");
    ok(rbuild(
        &root,
        &["save", "-o", saved.to_str().unwrap(), "meta-local:1"],
    ));
    let index = sh(Command::new("tar")
        .arg("-xOf")
        .arg(&saved)
        .arg("index.json"));
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    assert_eq!(m["containerimage.digest"], index["manifests"][0]["digest"]);
}
