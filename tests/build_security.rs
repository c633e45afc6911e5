//! SECURITY.md (a) cases that need a whole build (the real binary): C2, C7, D8, E1, E2, E4, E7,
//! F8.
//! Each test is named after its case id. Host sentinels live in per-test temp dirs, plus the
//! fixed paths the attacks aim at (`/BIND_BREAKOUT`, ...), which must never appear.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A context holding the busybox rootfs as `rootfs.tar` and `Dockerfile`.
fn busybox_ctx(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let ctx = context(dir, dockerfile, files);
    rootfs_archive(&ctx, "rootfs.tar");
    ctx
}

fn build_to_dir(t: &Path, ctx: &Path) -> (Run, PathBuf) {
    let out = t.join("out");
    let root = t.join("root");
    let r = rbuild(
        &root,
        &[
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    );
    assert_nothing_mounted_under(&root);
    (r, out)
}

#[test]
fn c02_stdin_context_with_symlinked_dockerfile_reads_nothing_from_the_host() {
    let t = tempfile::tempdir().unwrap();
    let host = t.path().join("host-dockerfile");
    std::fs::write(&host, "FROM scratch\nLABEL secret=host-secret-text\n").unwrap();
    let tar_of = |garbage: bool| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "Dockerfile", &host).unwrap();
        let mut data = b.into_inner().unwrap();
        if garbage {
            data.truncate(512);
            data.extend_from_slice(&[0x41; 700]);
        }
        data
    };
    for garbage in [true, false] {
        let mut child = Command::new(rbuild_bin())
            .arg("--root")
            .arg(t.path().join("root"))
            .args(["build", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&tar_of(garbage))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "garbage={garbage}: {stderr}");
        // The symlink is resolved inside the context: the host file is neither read (its text
        // never shows up) nor written.
        assert!(!stderr.contains("host-secret-text"), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(&host).unwrap(),
            "FROM scratch\nLABEL secret=host-secret-text\n"
        );
    }
    // The same for a directory context.
    let ctx = t.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::os::unix::fs::symlink(&host, ctx.join("Dockerfile")).unwrap();
    let r = rbuild(&t.path().join("root"), &[ctx.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(!r.stderr.contains("host-secret-text"), "{}", r.stderr);
}

#[test]
fn c07_copy_from_a_stage_whose_processes_swapped_paths() {
    // The source stage's RUN leaves a loop swapping a directory and a symlink to /; RUN ends
    // with its PID namespace, so the later COPY --from reads a quiescent, read-only view.
    let t = tempfile::tempdir().unwrap();
    let sentinel = t.path().join("host-sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("f"), "host").unwrap();
    let df = format!(
        "FROM scratch AS a\nADD rootfs.tar /\n\
         RUN mkdir -p /d{s} && (i=0; while [ $i -lt 500 ]; do rm -rf /d; ln -s / /d; rm -f /d; mkdir -p /d{s}; i=$((i+1)); done) & \
             sleep 0.2; echo done\n\
         RUN rm -rf /d && ln -s / /d\n\
         FROM scratch\nADD rootfs.tar /\nCOPY --from=a /d{s} /copied\n\
         COPY --from=a /d /dlink\n",
        s = sentinel.display()
    );
    let ctx = busybox_ctx(&t.path().join("ctx"), &df, &[]);
    let (r, out) = build_to_dir(t.path(), &ctx);
    // /d -> / inside stage a: /d<sentinel> names the stage's own <sentinel> path (missing in
    // the stage, so the COPY fails) — it never reaches the host's sentinel dir.
    if r.status == 0 {
        assert!(!out.join("copied/f").exists(), "host file copied");
    } else {
        assert!(r.stderr.contains("Dockerfile:"), "{}", r.stderr);
    }
    assert_eq!(std::fs::read_dir(&sentinel).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(sentinel.join("f")).unwrap(), "host");
}

#[test]
fn d08_image_binaries_never_run_outside_the_sandbox() {
    // Trap every helper a builder might be tempted to run from the image (getent for --chown,
    // tar/gzip/xz for ADD, sh for COPY): each would write a host file if run on the host.
    let t = tempfile::tempdir().unwrap();
    let trap = t.path().join("trap-fired");
    let script = format!("#!/bin/sh\necho \"$0\" >> {}\n", trap.display());
    let df = "FROM scratch\nADD rootfs.tar /\nCOPY trap /trap\n\
              RUN for b in getent tar gzip xz unxz zstd bzip2 id; do for d in /bin /usr/bin /sbin /usr/sbin; do rm -f $d/$b; cp /trap $d/$b; chmod 755 $d/$b; done; done; \
                  echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd; echo 'app:x:1000:' >> /etc/group\n\
              COPY --chown=app:app f /f\nADD a.tar.gz /x/\nRUN test \"$(stat -c %u:%g /f)\" = 1000:1000\n";
    let ctx = busybox_ctx(
        &t.path().join("ctx"),
        df,
        &[("f", "file"), ("trap", &script)],
    );
    // A small gzipped tar for ADD to auto-extract.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "inner", &b"in"[..]).unwrap();
        b.finish().unwrap();
    }
    std::fs::write(ctx.join("a.tar.gz"), gz.finish().unwrap()).unwrap();
    let (r, out) = build_to_dir(t.path(), &ctx);
    let r = ok(r);
    assert_eq!(std::fs::read_to_string(out.join("x/inner")).unwrap(), "in");
    assert!(
        !trap.exists(),
        "an image binary ran on the host: {}",
        r.stderr
    );
}

#[test]
fn e01_bind_mount_of_a_stage_symlink_to_root_stays_in_the_stage() {
    // buildah CVE-2024-1753: stage `base` has /rootdir -> /; the bind source resolves inside
    // the stage (its own root), and writes through the rw mount are discarded.
    let t = tempfile::tempdir().unwrap();
    let df =
        "FROM scratch AS base\nADD rootfs.tar /\nRUN ln -s / /rootdir && echo stage > /marker\n\
              FROM scratch\nADD rootfs.tar /\n\
              RUN --mount=type=bind,from=base,source=/rootdir,target=/exploit,rw \
                  touch /exploit/BIND_BREAKOUT && cat /exploit/marker > /seen\n";
    let ctx = busybox_ctx(&t.path().join("ctx"), df, &[]);
    let (r, out) = build_to_dir(t.path(), &ctx);
    ok(r);
    assert!(!Path::new("/BIND_BREAKOUT").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("seen")).unwrap(),
        "stage\n"
    );
    assert!(!out.join("BIND_BREAKOUT").exists());
}

#[test]
fn e02_cache_and_bind_ids_and_sources_cannot_climb_out() {
    // buildah CVE-2024-9675: id=../.., source=../.. stay inside the cache / context.
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let up = "../".repeat(12);
    let rel_victim = victim.strip_prefix("/").unwrap().display().to_string();
    let df = format!(
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=cache,id={up}{v},target=/c touch /c/by-id\n\
         RUN --mount=type=cache,id=x,source={up}{v},target=/c touch /c/by-source\n",
        v = rel_victim
    );
    let ctx = busybox_ctx(&t.path().join("ctx"), &df, &[]);
    let (r, _) = build_to_dir(t.path(), &ctx);
    ok(r);
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    // A bind source `../../victim` is cleaned to a path inside the context: not found there,
    // so the step fails at its line; the host dir is never mounted.
    let df = format!(
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=bind,source={up}{v},target=/b,rw touch /b/by-bind\n",
        v = rel_victim
    );
    let ctx = busybox_ctx(&t.path().join("ctx2"), &df, &[]);
    let (r, _) = build_to_dir(t.path(), &ctx);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
}

#[test]
fn e04_cache_mount_source_symlink_is_not_followed_to_the_host() {
    // CVE-2024-23651: a cache dir holds `sub -> /`; later mounts of that cache never expose
    // the host's root (the cache is mounted by fd, `sub` is just a symlink inside it).
    let t = tempfile::tempdir().unwrap();
    let marker = t.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let df = format!(
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=cache,id=c,target=/c rm -rf /c/sub && ln -s / /c/sub\n\
         RUN --mount=type=cache,id=c,target=/c cat /c/sub{m} > /seen 2>&1 || echo absent > /seen\n",
        m = marker.display()
    );
    let ctx = busybox_ctx(&t.path().join("ctx"), &df, &[]);
    let (r, out) = build_to_dir(t.path(), &ctx);
    ok(r);
    let seen = std::fs::read_to_string(out.join("seen")).unwrap();
    assert!(!seen.contains("host"), "{seen}");
}

#[test]
fn e07_workdir_and_copy_through_symlinked_parents_stay_in_the_step_root() {
    // Builder-side file operations (WORKDIR creation, COPY destination) given `../` or a
    // symlinked parent that points at a host path.
    let t = tempfile::tempdir().unwrap();
    let host = t.path().join("host-dir");
    std::fs::create_dir(&host).unwrap();
    let df = format!(
        "FROM scratch\nADD rootfs.tar /\nRUN ln -s {h} /evil\n\
         WORKDIR /evil/../../../../evil/sub\nCOPY f ./\nCOPY f /evil/direct\n",
        h = host.display()
    );
    let ctx = busybox_ctx(&t.path().join("ctx"), &df, &[("f", "file")]);
    let (r, out) = build_to_dir(t.path(), &ctx);
    ok(r);
    assert_eq!(
        std::fs::read_dir(&host).unwrap().count(),
        0,
        "wrote on the host"
    );
    let inside = out.join(host.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(inside.join("sub/f")).unwrap(),
        "file"
    );
    assert_eq!(
        std::fs::read_to_string(inside.join("direct")).unwrap(),
        "file"
    );
}

#[test]
fn f08_metadata_only_differences_never_reuse_a_cached_image() {
    // CVE-2024-24557: images differing only in HEALTHCHECK or ONBUILD must not come from the
    // cache of the other; the final config always holds this Dockerfile's values.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let build = |name: &str, meta: &str| -> (String, serde_json::Value) {
        let df = format!("FROM scratch\nADD rootfs.tar /\n{meta}\nRUN echo a > /a\n");
        let ctx = busybox_ctx(&t.path().join(name), &df, &[]);
        let out = t.path().join(format!("{name}-oci"));
        let iid = t.path().join(format!("{name}.iid"));
        ok(rbuild(
            &root,
            &[
                "--iidfile",
                iid.to_str().unwrap(),
                "-o",
                &format!("type=oci,dest={},tar=false", out.display()),
                ctx.to_str().unwrap(),
            ],
        ));
        let blob = |d: &str| -> serde_json::Value {
            let hex = d.trim_start_matches("sha256:");
            serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(hex)).unwrap())
                .unwrap()
        };
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        (std::fs::read_to_string(iid).unwrap(), config)
    };
    let (id1, c1) = build("a", "HEALTHCHECK CMD true");
    let (id2, c2) = build("b", "HEALTHCHECK CMD false");
    let (id3, c3) = build("c", "HEALTHCHECK CMD false\nONBUILD RUN evil");
    assert_ne!(id1, id2);
    assert_ne!(id2, id3);
    assert_eq!(c1["config"]["Healthcheck"]["Test"][1], "true");
    assert_eq!(c2["config"]["Healthcheck"]["Test"][1], "false");
    assert!(c2["config"]["OnBuild"].is_null(), "{}", c2["config"]);
    assert_eq!(c3["config"]["OnBuild"][0], "RUN evil");
}
