//! Provenance and SBOM attestations (BuildKit's attestation-manifest layout, SLSA v1 and SPDX 2.3
//! checked against the committed JSON schemas with `check-jsonschema`), and `rbuild verify`:
//! reproduced from a copy of the context in another store, a tampered layer reported down to the
//! file, a mismatched context refused, a networked RUN refused. docs/provenance.md.

mod common;

use common::registry::Registry;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const EPOCH: &str = "1700000000";
const CHECK_JSONSCHEMA: &str = "/opt/rbuild-venv/bin/check-jsonschema";

fn secret_value() -> String {
    format!("TOPSECRET-{}-VALUE", std::process::id())
}

/// A context: busybox rootfs added from a tar, a secret mounted and used, a build arg, a file.
fn app_context(dir: &Path, from: &str) -> PathBuf {
    let ctx = context(
        dir,
        &format!(
            "FROM {from}\nARG GREETING=hi\n\
             RUN --network=none --mount=type=secret,id=tok echo $GREETING > /hello && test -s /run/secrets/tok\n\
             COPY app.txt /app.txt\n"
        ),
        &[("app.txt", "application payload\n")],
    );
    if from == "scratch" {
        let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            df.replacen("FROM scratch\n", "FROM scratch\nADD rootfs.tar /\n", 1),
        )
        .unwrap();
        rootfs_archive(&ctx, "rootfs.tar");
    }
    ctx
}

/// `rbuild build` with the test secret and epoch, attestations as `attest` asks.
fn build(root: &Path, ctx: &Path, secret: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "build",
        "-q",
        "--source-date-epoch",
        EPOCH,
        "--build-arg",
        "GREETING=hello",
    ];
    let s = format!("id=tok,src={}", secret.display());
    args.extend(["--secret", &s]);
    args.extend(extra);
    args.push(ctx.to_str().unwrap());
    ok(rbuild(root, &args))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The image index of an OCI layout written by a build with attestations.
fn layout_index(dir: &Path) -> Value {
    let top = read_json(&dir.join("index.json"));
    assert_eq!(
        top["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    read_json(&blob(dir, top["manifests"][0]["digest"].as_str().unwrap()))
}

/// (predicate type, statement path) of every attestation in an OCI layout.
fn statements(dir: &Path) -> Vec<(String, PathBuf)> {
    let index = layout_index(dir);
    let mut out = Vec::new();
    for d in index["manifests"].as_array().unwrap() {
        if d["annotations"]["vnd.docker.reference.type"] != "attestation-manifest" {
            continue;
        }
        let m = read_json(&blob(dir, d["digest"].as_str().unwrap()));
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
            out.push((
                l["annotations"]["in-toto.io/predicate-type"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                blob(dir, l["digest"].as_str().unwrap()),
            ));
        }
    }
    out
}

fn check_schema(schema: &str, doc: &Path) {
    let out = Command::new(CHECK_JSONSCHEMA)
        .arg("--schemafile")
        .arg(repo_dir().join("testdata/schemas").join(schema))
        .arg(doc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} fails {schema}:\n{}{}",
        doc.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No file under `dir` contains `needle`.
fn assert_absent(dir: &Path, needle: &str) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_file() {
            let mut data = Vec::new();
            std::fs::File::open(e.path())
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            assert!(
                !data.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                e.path().display()
            );
        }
    }
}

fn skopeo_raw(reference: &str) -> Value {
    let out = sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn pushed_max_provenance_and_sbom_carry_buildkit_layout_validate_and_verify_from_registry() {
    if !need("skopeo") || !require(Path::new(CHECK_JSONSCHEMA).exists(), CHECK_JSONSCHEMA) {
        return;
    }
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, secret_value()).unwrap();
    // A base image in the registry, so the provenance records it by manifest digest.
    let base = format!("{}/rb/base:1", reg.addr());
    let bctx = context(
        &t.path().join("bctx"),
        "FROM scratch\nADD rootfs.tar /\n",
        &[],
    );
    rootfs_archive(&bctx, "rootfs.tar");
    let root = t.path().join("root");
    ok(rbuild(
        &root,
        &["build", "-q", "--push", "-t", &base, bctx.to_str().unwrap()],
    ));

    let ctx = app_context(&t.path().join("ctx"), &base);
    let name = format!("{}/rb/app:1", reg.addr());
    let layout = t.path().join("layout");
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    build(
        &root,
        &ctx,
        &secret,
        &[
            "--provenance=mode=max",
            "--sbom",
            "--push",
            "-t",
            &name,
            "-o",
            &dest,
        ],
    );

    // The index in the registry: the image, then its attestation manifest (BuildKit's layout).
    let index = skopeo_raw(&name);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{index}");
    assert_eq!(m[0]["platform"]["os"], "linux");
    assert_eq!(m[1]["platform"]["os"], "unknown");
    assert_eq!(m[1]["platform"]["architecture"], "unknown");
    let ann = &m[1]["annotations"];
    assert_eq!(ann["vnd.docker.reference.type"], "attestation-manifest");
    assert_eq!(ann["vnd.docker.reference.digest"], m[0]["digest"]);
    let att = skopeo_raw(&format!(
        "{}/rb/app@{}",
        reg.addr(),
        m[1]["digest"].as_str().unwrap()
    ));
    let types: Vec<&str> = att["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
            l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        types,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    // The OCI output of the same build holds the same index.
    assert_eq!(layout_index(&layout), index);

    // The statements: SLSA v1 and SPDX 2.3 schemas; the recorded inputs.
    let st = statements(&layout);
    let prov_path = &st[0].1;
    check_schema("slsa-provenance-v1.schema.json", prov_path);
    let prov = read_json(prov_path);
    assert_eq!(
        prov["subject"][0]["digest"]["sha256"],
        m[0]["digest"].as_str().unwrap()[7..]
    );
    let bd = &prov["predicate"]["buildDefinition"];
    let args = &bd["externalParameters"]["request"]["args"];
    assert_eq!(args["build-arg:GREETING"], "hello");
    assert_eq!(args["source-date-epoch"], EPOCH);
    assert_eq!(args["repro-profile"], "2");
    assert_eq!(
        bd["externalParameters"]["request"]["secrets"][0]["id"],
        "tok"
    );
    let df = std::fs::read(ctx.join("Dockerfile")).unwrap();
    assert_eq!(
        bd["externalParameters"]["configSource"]["digest"]["sha256"],
        sha256_hex(&df)
    );
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let info = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{base}"),
    ]));
    let info: Value = serde_json::from_str(&info).unwrap();
    assert!(
        deps.iter().any(|d| d["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("pkg:docker/") && u.contains("rb/base@1"))
            && format!("sha256:{}", d["digest"]["sha256"].as_str().unwrap_or(""))
                == info["Digest"].as_str().unwrap()),
        "base image by manifest digest in {deps:?}"
    );
    assert!(deps.iter().any(|d| d["name"] == "context"));
    let sbom = read_json(&st[1].1);
    let spdx = t.path().join("spdx.json");
    std::fs::write(&spdx, serde_json::to_vec(&sbom["predicate"]).unwrap()).unwrap();
    check_schema("spdx-2.3.schema.json", &spdx);

    // Secrets: the id is there, the value nowhere (outputs, registry storage, inspect).
    assert_absent(&layout, &secret_value());
    assert_absent(reg.dir.path(), &secret_value());
    let shown = ok(rbuild(&root, &["inspect", "--provenance", &name]));
    assert!(shown.stdout.contains("\"tok\"") && !shown.stdout.contains(&secret_value()));
    let shown = ok(rbuild(
        &root,
        &["inspect", "--sbom", layout.to_str().unwrap()],
    ));
    assert!(shown.stdout.contains("SPDX-2.3"), "{}", shown.stdout);

    // verify from the registry in a fresh store: the base comes by digest from the registry.
    let fresh = t.path().join("fresh");
    let s = format!("id=tok,src={}", secret.display());
    let r = rbuild(
        &fresh,
        &[
            "verify",
            "--context",
            ctx.to_str().unwrap(),
            "--secret",
            &s,
            &name,
        ],
    );
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.trim(),
        format!("reproduced {}", m[0]["digest"].as_str().unwrap())
    );
    assert_nothing_mounted_under(t.path());
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// Builds the scratch-based app with max provenance into an OCI layout; returns the layout.
fn build_layout(t: &Path, root: &Path, ctx: &Path, secret: &Path, name: &str) -> PathBuf {
    let layout = t.join(name);
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    build(
        root,
        ctx,
        secret,
        &["--provenance=mode=max", "-t", "app:1", "-o", &dest],
    );
    layout
}

/// A copy of `ctx` whose files all get mtime `secs` (after the epoch: the clamp applies).
fn copy_with_mtimes(ctx: &Path, dest: &Path, secs: u64) {
    let st = Command::new("cp")
        .arg("-r")
        .arg(ctx)
        .arg(dest)
        .status()
        .unwrap();
    assert!(st.success());
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    for e in walkdir::WalkDir::new(dest).into_iter().flatten() {
        if e.file_type().is_file() {
            let f = std::fs::File::options().write(true).open(e.path()).unwrap();
            f.set_modified(when).unwrap();
        }
    }
}

fn verify(root: &Path, ctx: &Path, secret: &Path, image: &Path, extra: &[&str]) -> Run {
    let s = format!("id=tok,src={}", secret.display());
    let mut args = vec!["verify", "--context", ctx.to_str().unwrap(), "--secret", &s];
    args.extend(extra);
    args.push(image.to_str().unwrap());
    rbuild(root, &args)
}

#[test]
fn verify_reproduces_from_a_copy_in_another_store_and_attestations_are_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, secret_value()).unwrap();
    let ctx = app_context(&t.path().join("ctx"), "scratch");
    let a = build_layout(t.path(), &t.path().join("rootA"), &ctx, &secret, "a");
    // A second build in another store from a copy with other mtimes: the same bytes, index and
    // attestations included.
    let copy = t.path().join("copy");
    copy_with_mtimes(&ctx, &copy, 1_900_000_000);
    let b = build_layout(t.path(), &t.path().join("rootB"), &copy, &secret, "b");
    assert_eq!(
        std::fs::read(a.join("index.json")).unwrap(),
        std::fs::read(b.join("index.json")).unwrap()
    );
    let (sa, sb) = (statements(&a), statements(&b));
    assert_eq!(sa.len(), 1);
    assert_eq!(
        std::fs::read(&sa[0].1).unwrap(),
        std::fs::read(&sb[0].1).unwrap()
    );
    assert_absent(&a, &secret_value());

    // verify, in a third store, from yet another copy.
    let copy2 = t.path().join("copy2");
    copy_with_mtimes(&ctx, &copy2, 2_000_000_000);
    let r = verify(&t.path().join("rootC"), &copy2, &secret, &a, &[]);
    let image = layout_index(&a)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), format!("reproduced {image}"));
    let r = verify(&t.path().join("rootC"), &copy2, &secret, &a, &["--json"]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["result"], "reproduced");
    assert_eq!(report["rebuilt"], image.as_str());

    // Without the secret it cannot rebuild, and says which one.
    let r = rbuild(
        &t.path().join("rootC"),
        &[
            "verify",
            "--context",
            copy2.to_str().unwrap(),
            a.to_str().unwrap(),
        ],
    );
    assert_eq!(r.status, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("secret \"tok\""), "{}", r.stderr);
    assert_nothing_mounted_under(t.path());
}

#[test]
fn verify_refuses_a_context_that_does_not_match() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, secret_value()).unwrap();
    let ctx = app_context(&t.path().join("ctx"), "scratch");
    let a = build_layout(t.path(), &t.path().join("root"), &ctx, &secret, "a");
    let copy = t.path().join("copy");
    copy_with_mtimes(&ctx, &copy, 1_900_000_000);
    std::fs::write(copy.join("app.txt"), "application payload, edited\n").unwrap();
    let r = verify(&t.path().join("root2"), &copy, &secret, &a, &[]);
    assert_eq!(r.status, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("context mismatch"), "{}", r.stderr);
    let r = verify(&t.path().join("root2"), &copy, &secret, &a, &["--json"]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["result"], "cannot-rebuild");
    assert!(report["reason"]
        .as_str()
        .unwrap()
        .contains("context mismatch"));
    // Nothing was rebuilt: the scratch store never got an image.
    assert!(
        !t.path()
            .join("root2/image/overlay2/imagedb/content/sha256")
            .is_dir()
            || std::fs::read_dir(t.path().join("root2/image/overlay2/imagedb/content/sha256"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn verify_refuses_a_build_whose_run_had_network() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN true\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let layout = t.path().join("out");
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    // No --provenance: min is attached to OCI outputs by default (as buildx does).
    ok(rbuild_env(
        &t.path().join("root"),
        &[
            "build",
            "-q",
            "--source-date-epoch",
            EPOCH,
            "-o",
            &dest,
            ctx.to_str().unwrap(),
        ],
        &[("BUILDX_NO_DEFAULT_ATTESTATIONS", "")],
    ));
    let prov = read_json(&statements(&layout)[0].1);
    let meta = &prov["predicate"]["runDetails"]["metadata"];
    assert!(
        meta["rbuild_metadata"]["source"].is_null(),
        "min has no Dockerfile text"
    );
    assert_eq!(
        prov["predicate"]["runDetails"]["metadata"]["rbuild_hermetic"],
        false
    );
    let r = rbuild(
        &t.path().join("root2"),
        &[
            "verify",
            "--context",
            ctx.to_str().unwrap(),
            layout.to_str().unwrap(),
        ],
    );
    assert_eq!(r.status, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("Dockerfile line 3, network default"),
        "{}",
        r.stderr
    );
}

/// Flips one byte of `file`'s content inside the gzip layer that holds it, and rewrites every
/// digest above it (layer, diff_id, config, manifest, index, the attestation's reference) so the
/// copy is a valid image whose attestation still points at it.
fn tamper(dir: &Path, file: &str) {
    let top_path = dir.join("index.json");
    let mut top = read_json(&top_path);
    let index_digest = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut index = read_json(&blob(dir, &index_digest));
    let old_manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest = read_json(&blob(dir, &old_manifest));
    let mut config = read_json(&blob(dir, manifest["config"]["digest"].as_str().unwrap()));
    let write = |v: &Value| -> (String, usize) {
        let bytes = serde_json::to_vec(v).unwrap();
        let d = sha256_hex(&bytes);
        std::fs::write(dir.join("blobs/sha256").join(&d), &bytes).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let layers = manifest["layers"].as_array().unwrap().len();
    let mut done = false;
    for i in 0..layers {
        let path = blob(dir, manifest["layers"][i]["digest"].as_str().unwrap());
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut tar)
            .unwrap();
        let mut at = None;
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.path().unwrap().to_string_lossy().trim_start_matches("./") == file {
                at = Some(e.raw_file_position() as usize);
            }
        }
        let Some(at) = at else { continue };
        tar[at] ^= 0x01;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = sha256_hex(&gz);
        std::fs::write(dir.join("blobs/sha256").join(&d), &gz).unwrap();
        manifest["layers"][i]["digest"] = Value::from(format!("sha256:{d}"));
        manifest["layers"][i]["size"] = Value::from(gz.len());
        config["rootfs"]["diff_ids"][i] = Value::from(format!("sha256:{}", sha256_hex(&tar)));
        done = true;
    }
    assert!(done, "{file} is in no layer");
    let (cd, cs) = write(&config);
    manifest["config"]["digest"] = Value::from(cd);
    manifest["config"]["size"] = Value::from(cs);
    let (md, ms) = write(&manifest);
    index["manifests"][0]["digest"] = Value::from(md.clone());
    index["manifests"][0]["size"] = Value::from(ms);
    index["manifests"][1]["annotations"]["vnd.docker.reference.digest"] = Value::from(md);
    let (id, is) = write(&index);
    top["manifests"][0]["digest"] = Value::from(id);
    top["manifests"][0]["size"] = Value::from(is);
    std::fs::write(&top_path, serde_json::to_vec(&top).unwrap()).unwrap();
}

#[test]
fn verify_reports_a_tampered_layer_down_to_the_file() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, secret_value()).unwrap();
    let ctx = app_context(&t.path().join("ctx"), "scratch");
    let a = build_layout(t.path(), &t.path().join("root"), &ctx, &secret, "a");
    let tampered = t.path().join("tampered");
    let st = Command::new("cp")
        .arg("-r")
        .arg(&a)
        .arg(&tampered)
        .status()
        .unwrap();
    assert!(st.success());
    tamper(&tampered, "app.txt");
    // Still a valid image: skopeo copies it (verifying every digest) when it is installed.
    if have("skopeo") {
        sh(Command::new("skopeo").args([
            "copy",
            "-q",
            &format!("oci:{}:1", tampered.display()),
            &format!("oci:{}:x", t.path().join("check").display()),
        ]));
    }
    let r = verify(&t.path().join("root2"), &ctx, &secret, &tampered, &[]);
    assert_eq!(r.status, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("different:"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("app.txt") && l.contains("content")),
        "the difference names the file: {}",
        r.stdout
    );
    let r = verify(
        &t.path().join("root2"),
        &ctx,
        &secret,
        &tampered,
        &["--json"],
    );
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["result"], "different");
    // The untouched original still verifies.
    let r = verify(&t.path().join("root2"), &ctx, &secret, &a, &[]);
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn docker_archive_and_store_images_carry_their_provenance() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, secret_value()).unwrap();
    let ctx = app_context(&t.path().join("ctx"), "scratch");
    let root = t.path().join("root");
    let archive = t.path().join("app.tar");
    let dest = format!("type=docker,dest={}", archive.display());
    build(
        &root,
        &ctx,
        &secret,
        &["--provenance=mode=min", "-t", "app:1", "-o", &dest],
    );
    for image in [archive.to_str().unwrap(), "app:1"] {
        let r = ok(rbuild(&root, &["inspect", "--provenance", image]));
        let st: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(
            st["predicateType"], "https://slsa.dev/provenance/v1",
            "{image}"
        );
        assert_eq!(
            st["subject"][0]["name"],
            "pkg:docker/app@1?platform=linux%2Famd64"
        );
        // verify reads the archive, and the index in the store.
        let r = verify(&root, &ctx, &secret, Path::new(image), &[]);
        assert_eq!(r.status, 0, "{image}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.starts_with("reproduced sha256:"), "{}", r.stdout);
    }
    // No SBOM was asked for: inspect --sbom says so.
    let r = rbuild(&root, &["inspect", "--sbom", "app:1"]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr
            .contains("no https://spdx.dev/Document attestation"),
        "{}",
        r.stderr
    );
    // The docker-archive loads into another store.
    ok(rbuild(
        &t.path().join("root2"),
        &["load", "-i", archive.to_str().unwrap()],
    ));
    assert_nothing_mounted_under(t.path());
}
