//! End to end: the real binary builds real images, checked by skopeo, umoci and (when an engine runs)
//! docker load.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn oci_manifest(dir: &Path) -> (Value, Value) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&d)).unwrap()).unwrap();
    let c = m["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(c)).unwrap()).unwrap();
    (m, cfg)
}

#[test]
fn classic_base_image_add_rootfs_tar_xz() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar.xz /\nCMD [\"sh\"]\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar.xz");
    let root = t.path().join("root");
    let docker_tar = t.path().join("img.tar");
    let oci_dir = t.path().join("oci");
    let oci_tar = t.path().join("oci.tar");
    let r = ok(rbuild(
        &root,
        &[
            "-t",
            "debian:buster",
            "-o",
            &format!("type=docker,dest={}", docker_tar.display()),
            "-o",
            &format!("type=oci,dest={},tar=false", oci_dir.display()),
            "-o",
            &format!("type=oci,dest={}", oci_tar.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let image_id = r.stdout.trim().to_string();
    assert!(image_id.starts_with("sha256:"), "stdout: {}", r.stdout);

    // Our own reading of the OCI layout: one layer, CMD, history with an empty CMD entry.
    let (m, cfg) = oci_manifest(&oci_dir);
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    let hist = cfg["history"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0]["created_by"], "ADD rootfs.tar.xz / # buildkit");
    assert!(hist[0].get("empty_layer").is_none());
    assert_eq!(hist[1]["created_by"], "CMD [\"sh\"]");
    assert_eq!(hist[1]["empty_layer"], true);
    assert!(cfg["config"]["Env"][0]
        .as_str()
        .unwrap()
        .starts_with("PATH="));

    // The layer really holds the rootfs.
    let layer_hex = m["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let listing = tar_listing(&oci_dir.join("blobs/sha256").join(layer_hex));
    assert!(
        listing.iter().any(|l| l.ends_with(" bin/busybox")),
        "{listing:?}"
    );
    assert!(listing.iter().any(|l| l.contains("etc/passwd")));

    if need("skopeo") {
        let out = sh(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", docker_tar.display())));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
        assert_eq!(v["Architecture"], "amd64");
        let out = sh(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:buster", oci_dir.display())));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
        sh(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", oci_tar.display())));
    }
    if need("umoci") {
        let bundle = t.path().join("bundle");
        sh(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:buster", oci_dir.display()))
            .arg(&bundle));
        assert!(bundle.join("rootfs/bin/busybox").is_file());
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["process"]["args"], serde_json::json!(["sh"]));
    }
    if need_docker() {
        let out = sh(Command::new("docker")
            .arg("load")
            .arg("-i")
            .arg(&docker_tar));
        assert!(
            out.contains("debian:buster") || out.contains(&image_id),
            "{out}"
        );
        let out = sh(Command::new("docker").args([
            "image",
            "inspect",
            "debian:buster",
            "--format",
            "{{.Id}}",
        ]));
        assert_eq!(out.trim(), image_id);
    }
    assert_nothing_mounted_under(&root);
}

#[test]
fn run_layers_hold_only_changes_with_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\n\
         RUN echo new > /new.txt && rm /etc/motd && rm -rf /home && mkdir -p /home/x && echo hi > /home/x/f\n\
         RUN ln -s /new.txt /link && ln /new.txt /hard && chmod 4755 /new.txt\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    let oci = t.path().join("oci");
    ok(rbuild(
        &root,
        &[
            "-o",
            &format!("type=oci,dest={},tar=false", oci.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let (m, _cfg) = oci_manifest(&oci);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let blob = |i: usize| {
        oci.join("blobs/sha256").join(
            layers[i]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        )
    };
    let l1 = tar_listing(&blob(1));
    let names: Vec<String> = l1
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert!(names.contains(&"new.txt".to_string()), "{l1:?}");
    assert!(names.contains(&"etc/.wh.motd".to_string()), "{l1:?}");
    assert!(names.contains(&"home/.wh..wh..opq".to_string()), "{l1:?}");
    assert!(names.contains(&"home/x/f".to_string()), "{l1:?}");
    // Only what changed: no busybox applets in the RUN layer.
    assert!(!names.iter().any(|n| n.starts_with("bin/")), "{l1:?}");
    let l2 = tar_listing(&blob(2));
    assert!(
        l2.iter()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.contains("link -> /new.txt")),
        "{l2:?}"
    );
    // new.txt and hard are one inode: the first in tar order is the file (setuid kept), the
    // other a hardlink entry to it.
    assert!(
        l2.iter()
            .any(|l| l.starts_with("-rwsr-xr-x") && l.ends_with(" hard")),
        "{l2:?}"
    );
    assert!(
        l2.iter()
            .any(|l| l.starts_with('h') && l.contains("new.txt link to hard")),
        "{l2:?}"
    );
    assert_nothing_mounted_under(&root);
}

#[test]
fn bad_inputs_give_one_line_errors_and_leave_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // Missing context.
    let r = rbuild(&root, &[t.path().join("nope").to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    // Missing Dockerfile.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let r = rbuild(&root, &[empty.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("Dockerfile"), "{}", r.stderr);
    // Unknown instruction: names the file and line.
    let ctx = context(&t.path().join("bad"), "FROM scratch\nFROB x\n", &[]);
    let r = rbuild(&root, &[ctx.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains(":2"), "{}", r.stderr);
    // Corrupt archive in ADD: a .tar.gz that is not gzip data is copied as a file, but a truncated gzip
    // of a tar fails the build and leaves no output file.
    let ctx = context(
        &t.path().join("corrupt"),
        "FROM scratch\nADD broken.tar.gz /\n",
        &[],
    );
    let good = rootfs_archive(&ctx, "good.tar.gz");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(ctx.join("broken.tar.gz"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_file(&good).unwrap();
    let out = t.path().join("out.tar");
    let r = rbuild(
        &root,
        &[
            "-o",
            &format!("type=docker,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    );
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
    // Unwritable output path.
    let ctx = context(&t.path().join("ok"), "FROM scratch\nCMD [\"x\"]\n", &[]);
    let r = rbuild(
        &root,
        &[
            "-o",
            "type=docker,dest=/nonexistent-dir/x.tar",
            ctx.to_str().unwrap(),
        ],
    );
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("/nonexistent-dir"), "{}", r.stderr);
    assert_nothing_mounted_under(&root);
}

#[test]
fn failing_run_exits_with_its_code_and_shows_output() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN echo boom-output; exit 7\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    let r = rbuild(&root, &[ctx.to_str().unwrap()]);
    assert_eq!(r.status, 7, "{}", r.stderr);
    assert!(r.stderr.contains("boom-output"));
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    assert_nothing_mounted_under(&root);
}

#[test]
fn cache_hit_skips_run_and_explains_misses() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(&t.path().join("ctx"), "", &[("a.txt", "one")]);
    // The RUN appends to a file in a host dir bind-mounted via a cache mount.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD rootfs.tar /\nCOPY a.txt /a.txt\nRUN --mount=type=cache,id=counter,target=/count echo ran >> /count/runs; cat /a.txt > /copied\n",
    )
    .unwrap();
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    ok(rbuild(&root, &[ctx.to_str().unwrap()]));
    let r = ok(rbuild(
        &root,
        &["--progress", "plain", ctx.to_str().unwrap()],
    ));
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    let runs_file = std::fs::read_dir(root.join("cache/mounts"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("runs");
    assert_eq!(
        std::fs::read_to_string(&runs_file).unwrap().lines().count(),
        1,
        "RUN ran twice"
    );
    // touch does not invalidate; a content change does, and the miss names the sources.
    std::fs::write(ctx.join("a.txt"), "one").unwrap();
    ok(rbuild(&root, &[ctx.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(&runs_file).unwrap().lines().count(),
        1
    );
    std::fs::write(ctx.join("a.txt"), "two").unwrap();
    let r = ok(rbuild(
        &root,
        &["--progress", "plain", ctx.to_str().unwrap()],
    ));
    assert!(
        r.stderr.contains("cache miss: sources changed"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&runs_file).unwrap().lines().count(),
        2
    );
}

#[test]
fn reproducible_with_source_date_epoch() {
    let t = tempfile::tempdir().unwrap();
    let df = "FROM scratch AS base\nADD rootfs.tar.gz /\nRUN echo hello > /hello && mkdir /d && touch /d/x\n\
              FROM base\nCOPY --from=base /hello /copied\nCOPY files/ /files/\nENV A=1\nCMD [\"sh\"]\n";
    let mut outs = Vec::new();
    for i in 0..2 {
        let ctx = context(
            &t.path().join(format!("ctx{i}")),
            df,
            &[("files/a", "a"), ("files/b/c", "c")],
        );
        rootfs_archive(&ctx, "rootfs.tar.gz");
        // Different mtimes on the second copy.
        if i == 1 {
            sh(Command::new("touch")
                .args(["-d", "2025-01-01"])
                .arg(ctx.join("files/a")));
        }
        let out = t.path().join(format!("out{i}.tar"));
        ok(rbuild_env(
            &t.path().join(format!("root{i}")),
            &[
                "-t",
                "repro:1",
                "-o",
                &format!("type=oci,dest={}", out.display()),
                ctx.to_str().unwrap(),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ));
        outs.push(out);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let r = rbuild(
        &t.path().join("root0"),
        &["diff", outs[0].to_str().unwrap(), outs[1].to_str().unwrap()],
    );
    assert_eq!(r.status, 0, "{}", r.stdout);
    let a = std::fs::read(&outs[0]).unwrap();
    let b = std::fs::read(&outs[1]).unwrap();
    assert!(a == b, "output archives differ");
}

#[test]
fn diff_names_a_byte_a_mode_and_an_mtime() {
    let t = tempfile::tempdir().unwrap();
    let build = |name: &str, content: &str, mode: u32, epoch: Option<&str>| {
        let ctx = context(
            &t.path().join(name),
            "FROM scratch\nCOPY f /f\n",
            &[("f", content)],
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx.join("f"), std::fs::Permissions::from_mode(mode)).unwrap();
        let out = t.path().join(format!("{name}.tar"));
        let mut env = vec![];
        if let Some(e) = epoch {
            env.push(("SOURCE_DATE_EPOCH", e));
        }
        ok(rbuild_env(
            &t.path().join("root"),
            &[
                "-o",
                &format!("type=oci,dest={}", out.display()),
                ctx.to_str().unwrap(),
            ],
            &env,
        ));
        out
    };
    let base = build("base", "abc", 0o644, Some("1700000000"));
    let byte = build("byte", "abd", 0o644, Some("1700000000"));
    let mode = build("mode", "abc", 0o755, Some("1700000000"));
    let diff = |a: &Path, b: &Path| {
        rbuild(
            &t.path().join("root"),
            &["diff", a.to_str().unwrap(), b.to_str().unwrap()],
        )
    };
    let r = diff(&base, &byte);
    assert_eq!(r.status, 1);
    assert!(r.stdout.contains("f: content differs"), "{}", r.stdout);
    let r = diff(&base, &mode);
    assert!(r.stdout.contains("f: mode 644 != 755"), "{}", r.stdout);
    // Without an epoch, file mtimes are kept: touching the file shows up as an mtime difference.
    let m1 = build("m1", "abc", 0o644, None);
    sh(Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(t.path().join("m1/f")));
    let ctx = t.path().join("m1");
    let m2 = t.path().join("m2.tar");
    ok(rbuild(
        &t.path().join("root"),
        &[
            "--no-cache",
            "-o",
            &format!("type=oci,dest={}", m2.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let r = diff(&m1, &m2);
    assert!(r.stdout.contains("mtime"), "{}", r.stdout);
}

#[test]
fn e06_writable_bind_mount_never_changes_the_context() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=bind,source=.,target=/ctx,rw echo x > /ctx/written && cat /ctx/keep > /seen\n\
         RUN --mount=type=bind,source=.,target=/ro sh -c 'echo y > /ro/nope' || touch /ro-refused\n",
        &[("keep", "kept")],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    let out = t.path().join("rootfs");
    ok(rbuild(
        &root,
        &[
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    assert!(
        !ctx.join("written").exists(),
        "a RUN wrote into the build context"
    );
    assert!(!ctx.join("nope").exists());
    assert_eq!(std::fs::read_to_string(out.join("seen")).unwrap(), "kept");
    assert!(
        out.join("ro-refused").exists(),
        "a read-only bind mount was writable"
    );
    assert!(out.join("bin/busybox").is_file());
}

/// SOURCE_DATE_EPOCH clamps the mtimes in every new layer, so it is part of a layer step's cache
/// key: a rebuild with another epoch in the same root must not reuse the first layer.
#[test]
fn another_source_date_epoch_is_a_cache_miss() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY a /a\n",
        &[("a", "x\n")],
    );
    let root = t.path().join("root");
    let diff_ids = |epoch: &str| {
        ok(rbuild(
            &root,
            &[
                "build",
                "--source-date-epoch",
                epoch,
                "-t",
                "clamped",
                ctx.to_str().unwrap(),
            ],
        ));
        let out = ok(rbuild(&root, &["inspect", "clamped"])).stdout;
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0]["RootFS"]["Layers"].clone()
    };
    let first = diff_ids("1000");
    assert_eq!(diff_ids("1000"), first, "same epoch: same layer");
    assert_ne!(
        diff_ids("2000"),
        first,
        "another epoch reused a layer clamped to the old one"
    );
}

/// Splits a table line at runs of 2+ spaces (docker's tabwriter pads with at least 3).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn history_columns_flags_and_formats_match_docker() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let env = [("SOURCE_DATE_EPOCH", "1700000000"), ("TZ", "UTC")];
    let base = context(
        &t.path().join("base"),
        "FROM scratch\nCOPY a.txt /a.txt\nCMD [\"sh\"]\n",
        &[("a.txt", "a\n")],
    );
    // Builds `ctx` as `<name>:1` and returns the path of its --iidfile.
    let build = |name: &str, ctx: &Path| {
        let iid = t.path().join(format!("{name}.iid"));
        let tag = format!("{name}:1");
        ok(rbuild_env(
            &root,
            &[
                "-t",
                &tag,
                "--iidfile",
                iid.to_str().unwrap(),
                ctx.to_str().unwrap(),
            ],
            &env,
        ));
        iid
    };
    let base_iid = build("base", &base);
    let long = "a label value that is long enough to pass forty-five characters";
    let app = context(
        &t.path().join("app"),
        &format!("FROM base:1\nCOPY b.txt /b.txt\nLABEL description=\"{long}\"\n"),
        &[("b.txt", "b\n")],
    );
    let app_iid = build("app", &app);
    let id_of = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let (app_id, base_id) = (id_of(&app_iid), id_of(&base_iid));
    assert!(app_id.starts_with("sha256:") && base_id.starts_with("sha256:"));
    let short = |id: &str| id["sha256:".len().."sha256:".len() + 12].to_string();
    let history = |args: &[&str]| {
        let mut a = vec!["history"];
        a.extend_from_slice(args);
        a.push("app:1");
        ok(rbuild_env(&root, &a, &env)).stdout
    };

    // Default table: docker's five columns; the image's own row and its base's row carry ids.
    let out = history(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(
        cells(lines[0]),
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    );
    let row0 = cells(lines[1]);
    assert_eq!(row0[0], short(&app_id), "{out}");
    assert!(row0[1].ends_with(" ago"), "{out}");
    assert_eq!(row0[2].chars().count(), 45, "{out}");
    assert!(row0[2].ends_with('…'), "{out}");
    assert_eq!(row0[3], "0B", "{out}");
    assert_eq!(row0[4], "buildkit.dockerfile.v0", "{out}");
    assert!(lines[2].starts_with("<missing>") && lines[2].contains("COPY b.txt /b.txt"));
    assert!(lines[3].starts_with(&short(&base_id)) && lines[3].contains("CMD [\"sh\"]"));
    assert!(lines[4].starts_with("<missing>") && lines[4].contains("COPY a.txt /a.txt"));

    // -q: one id per row, as `{{.ID}}`; --no-trunc gives full ids.
    assert_eq!(
        history(&["-q"]),
        format!(
            "{}\n<missing>\n{}\n<missing>\n",
            short(&app_id),
            short(&base_id)
        )
    );
    assert_eq!(
        history(&["-q", "--no-trunc"]),
        format!("{app_id}\n<missing>\n{base_id}\n<missing>\n")
    );

    // --human=false: CREATED AT in RFC 3339 and sizes in bytes.
    let out = history(&["--human=false"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["IMAGE", "CREATED AT", "CREATED BY", "SIZE", "COMMENT"]
    );
    let row1 = cells(lines[2]);
    assert_eq!(row1[1], "2023-11-14T22:13:20Z", "{out}");
    let bytes: u64 = row1[3].parse().unwrap_or_else(|_| panic!("{out}"));
    assert!(bytes >= 1024, "{out}");

    // --format json: docker's keys; --no-trunc keeps CREATED BY whole.
    let out = history(&["--format", "json", "--no-trunc"]);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "Comment",
            "CreatedAt",
            "CreatedBy",
            "CreatedSince",
            "ID",
            "Size"
        ]
    );
    assert_eq!(rows[0]["ID"], app_id.as_str());
    assert!(rows[0]["CreatedBy"].as_str().unwrap().contains(long));
    assert_eq!(rows[1]["CreatedAt"], "2023-11-14T22:13:20Z");

    // Templates: bare and table, with docker's `\t` escape.
    let raw = history(&["--format", "{{.ID}}|{{.Size}}"]);
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines[0], format!("{}|0B", short(&app_id)));
    assert!(
        lines[1].starts_with("<missing>|") && lines[1].ends_with("kB"),
        "{raw}"
    );
    let raw = history(&["--format", "{{.ID}}|{{json .Comment}}"]);
    assert_eq!(
        raw.lines().next().unwrap(),
        format!("{}|\"buildkit.dockerfile.v0\"", short(&app_id))
    );
    let out = history(&["--format", "table {{.ID}}\\t{{.Size}}"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(cells(lines[0]), ["IMAGE", "SIZE"]);
    assert_eq!(cells(lines[1]), [short(&app_id), "0B".to_string()]);
    // An unknown field is an error naming it.
    let r = rbuild(&root, &["history", "--format", "{{.Nope}}", "app:1"]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("can't evaluate field Nope"),
        "{}",
        r.stderr
    );
}

/// A `--no-cache` rebuild makes the same layer again: its duplicate snapshot is set aside (not
/// deleted on the build's clock), invisible to `fsck`, and `prune` deletes it.
#[test]
fn duplicate_snapshots_wait_for_prune() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY a /a\n",
        &[("a", "x\n")],
    );
    let root = t.path().join("root");
    let trash = || {
        std::fs::read_dir(root.join("overlay2"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".trash-")
            })
            .count()
    };
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "-q", "-t", "dup"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        ok(rbuild(&root, &args));
    };
    build(&[]);
    assert_eq!(trash(), 0);
    build(&["--no-cache"]);
    build(&["--no-cache"]);
    assert_eq!(trash(), 2);
    assert_store_consistent(&root);
    let out = ok(rbuild(&root, &["prune"])).stdout;
    assert!(out.contains("Deleted 2 duplicate snapshots"), "{out}");
    assert_eq!(trash(), 0);
    assert_store_consistent(&root);
    // The image still has its layer and snapshot.
    build(&[]);
    assert_eq!(trash(), 0);
}
