//! End to end COPY/ADD through `rbuild build`: misuse errors name the Dockerfile line, flags shape the
//! layer (names, modes, owners, link targets, bytes), remote sources are revalidated by ETag.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// Runs a build that must fail; checks the message names `Dockerfile:<line>`, shows the line, says
/// `expect`, and that nothing was mounted, no output file and no snapshot were left behind.
fn must_fail(
    t: &Path,
    name: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
    line: usize,
    expect: &str,
) {
    let ctx = context(&t.join(name), dockerfile, files);
    must_fail_in(t, name, &ctx, &[], line, expect);
}

fn must_fail_in(t: &Path, name: &str, ctx: &Path, extra: &[&str], line: usize, expect: &str) {
    let root = t.join(format!("root-{name}"));
    let out = t.join(format!("{name}.tar"));
    let dest = format!("type=docker,dest={}", out.display());
    let mut args = vec!["-o", dest.as_str()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = rbuild(&root, &args);
    assert_ne!(r.status, 0, "{name}: build succeeded\n{}", r.stderr);
    let text = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    let shown = text.lines().nth(line - 1).unwrap();
    assert!(
        r.stderr.contains(&format!("Dockerfile:{line}")),
        "{name}: no Dockerfile:{line} in\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(shown),
        "{name}: line text missing\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(expect),
        "{name}: {expect:?} missing\n{}",
        r.stderr
    );
    assert!(!out.exists(), "{name}: partial output left");
    assert_nothing_mounted_under(&root);
    // Only the short-link and shared empty directories may remain: no half-made snapshot.
    let snaps: Vec<String> = std::fs::read_dir(root.join("overlay2"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "l" && n != "empty")
                .collect()
        })
        .unwrap_or_default();
    // Each successful layer step before the failing one keeps its (committed) snapshot.
    let committed = text
        .lines()
        .take(line - 1)
        .filter(|l| l.starts_with("COPY"))
        .count();
    assert_eq!(snaps.len(), committed, "{name}: snapshots left: {snaps:?}");
}

#[test]
fn copy_and_add_misuse_names_the_dockerfile_line() {
    let t = tempfile::tempdir().unwrap();
    let t = t.path();
    let files = [("a", "a"), ("b", "b")];
    must_fail(
        t,
        "missing",
        "FROM scratch\nENV X=1\nCOPY nope.txt /\n",
        &files,
        3,
        "\"nope.txt\": not found",
    );
    // `../x` climbs out of the context even though the file exists next to it.
    std::fs::write(t.join("outside.txt"), "secret").unwrap();
    must_fail(
        t,
        "dotdot",
        "FROM scratch\nCOPY ../outside.txt /\n",
        &files,
        2,
        "outside the build context",
    );
    // An absolute source is a context path: the host's /etc/hostname is never read.
    must_fail(
        t,
        "absolute",
        "FROM scratch\nCOPY /etc/hostname /\n",
        &files,
        2,
        "not found",
    );
    // A symlink in the context pointing out of it resolves inside the context: not found.
    let ctx = context(&t.join("symlink"), "FROM scratch\nCOPY link /x\n", &files);
    std::os::unix::fs::symlink(t.join("outside.txt"), ctx.join("link")).unwrap();
    must_fail_in(t, "symlink", &ctx, &[], 2, "\"link\": not found");
    must_fail(
        t,
        "multi",
        "FROM scratch\nCOPY a b /file\n",
        &files,
        2,
        "destination must be a directory",
    );
    must_fail(
        t,
        "chown",
        "FROM scratch\nCOPY a /etc/passwd\nCOPY --chown=nosuchuser a /a\n",
        &files,
        3,
        "nosuchuser",
    );
    must_fail(
        t,
        "chmod",
        "FROM scratch\nCOPY --chmod=u+q a /a\n",
        &files,
        2,
        "--chmod",
    );
    must_fail(
        t,
        "chmod-octal",
        "FROM scratch\nCOPY --chmod=999 a /a\n",
        &files,
        2,
        "--chmod",
    );
    let server = HttpServer::start(b"served bytes");
    must_fail(
        t,
        "checksum-syntax",
        &format!(
            "FROM scratch\nADD --checksum=sha256:zz {}/f /f\n",
            server.url
        ),
        &files,
        2,
        "checksum",
    );
    must_fail(
        t,
        "checksum-mismatch",
        &format!(
            "FROM scratch\nADD --checksum=sha256:{} {}/f /f\n",
            "1".repeat(64),
            server.url
        ),
        &files,
        2,
        "checksum mismatch",
    );
    must_fail(
        t,
        "bad-url",
        "FROM scratch\nADD http://[::1/x /x\n",
        &files,
        2,
        "invalid URL \"http://[::1/x\"",
    );
    must_fail(
        t,
        "unreachable",
        "FROM scratch\nADD http://127.0.0.1:1/x /x\n",
        &files,
        2,
        "127.0.0.1:1",
    );
}

/// Builds `ctx` into an OCI layout dir and returns it (SOURCE_DATE_EPOCH fixed).
fn build_oci(root: &Path, ctx: &Path, out: &Path, extra: &[&str]) -> Run {
    let dest = format!("type=oci,dest={},tar=false", out.display());
    let mut args = vec!["--progress", "plain", "-o", dest.as_str()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    ok(rbuild_env(
        root,
        &args,
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ))
}

/// `tar -tv` lines of layer `i`, reduced to `mode owner name[ -> target]` (no size/date).
fn layer(out: &Path, i: usize) -> Vec<String> {
    tar_listing(&oci_layer_blobs(out)[i])
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", f[0], f[1], f[5..].join(" "))
        })
        .collect()
}

/// The bytes of `name` in layer `i`.
fn layer_file(out: &Path, i: usize, name: &str) -> String {
    sh(std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&oci_layer_blobs(out)[i])
        .arg(name))
}

fn has(listing: &[String], line: &str) -> bool {
    listing.iter().any(|l| l == line)
}

#[test]
fn copy_flags_shape_the_layer_contents() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\n\
         COPY --exclude=*.log --exclude=sub src/ /ex/\n\
         COPY --parents src/./sub/tool.sh src/a.txt /par/\n\
         COPY --chmod=a=rX,u+w src/a.txt src/sub/tool.sh /sym/\n\
         COPY --chmod=g+w,o-r --chown=1234:5678 src/a.txt /own\n\
         COPY --chmod=0640 src/ /oct/\n",
        &[
            ("src/a.txt", "alpha\n"),
            ("src/skip.log", "log\n"),
            ("src/sub/tool.sh", "#!/bin/sh\n"),
        ],
    );
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(ctx.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("src/a.txt", 0o644);
    mode("src/sub/tool.sh", 0o755);
    std::os::unix::fs::symlink("a.txt", ctx.join("src/link")).unwrap();
    std::fs::hard_link(ctx.join("src/a.txt"), ctx.join("src/hard")).unwrap();
    let out = t.path().join("oci");
    build_oci(&t.path().join("root"), &ctx, &out, &[]);

    // --exclude: no *.log, no sub/; symlink kept as a symlink, hardlink as a hardlink, 0:0.
    let l = layer(&out, 0);
    assert!(has(&l, "-rw-r--r-- 0/0 ex/a.txt"), "{l:#?}");
    assert!(has(&l, "lrwxrwxrwx 0/0 ex/link -> a.txt"), "{l:#?}");
    assert!(has(&l, "hrw-r--r-- 0/0 ex/hard link to ex/a.txt"), "{l:#?}");
    assert!(
        !l.iter()
            .any(|x| x.contains("skip.log") || x.contains("sub")),
        "{l:#?}"
    );
    assert_eq!(layer_file(&out, 0, "ex/a.txt"), "alpha\n");
    // --parents: the part after the `/./` pivot keeps its directories; without a pivot, all.
    let l = layer(&out, 1);
    assert!(has(&l, "-rwxr-xr-x 0/0 par/sub/tool.sh"), "{l:#?}");
    assert!(has(&l, "-rw-r--r-- 0/0 par/src/a.txt"), "{l:#?}");
    // Symbolic --chmod applies to each file's own mode: X only where something was executable.
    let l = layer(&out, 2);
    assert!(has(&l, "-rw-r--r-- 0/0 sym/a.txt"), "{l:#?}");
    assert!(has(&l, "-rwxr-xr-x 0/0 sym/tool.sh"), "{l:#?}");
    let l = layer(&out, 3);
    assert!(has(&l, "-rw-rw---- 1234/5678 own"), "{l:#?}");
    // Octal --chmod replaces the bits of files and directories alike.
    let l = layer(&out, 4);
    assert!(has(&l, "-rw-r----- 0/0 oct/a.txt"), "{l:#?}");
    assert!(has(&l, "drw-r----- 0/0 oct/sub/"), "{l:#?}");
    assert_eq!(layer_file(&out, 4, "oct/sub/tool.sh"), "#!/bin/sh\n");
}

#[test]
fn link_layer_does_not_depend_on_the_layers_below() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let files = [("a.txt", "alpha\n"), ("p/x/f", "f\n")];
    // Below: /x is a 0700 directory in one build and absent in the other.
    let ctx1 = context(
        &t.path().join("ctx1"),
        "FROM scratch\nCOPY p/ /\nCOPY --link a.txt /x/a.txt\nCOPY a.txt /x/b.txt\n",
        &files,
    );
    std::fs::set_permissions(ctx1.join("p/x"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let ctx2 = context(
        &t.path().join("ctx2"),
        "FROM scratch\nCOPY p/x/f /other\nCOPY --link a.txt /x/a.txt\n",
        &files,
    );
    let (o1, o2) = (t.path().join("o1"), t.path().join("o2"));
    build_oci(&t.path().join("root"), &ctx1, &o1, &[]);
    build_oci(&t.path().join("root"), &ctx2, &o2, &[]);
    // The --link layer is made in an empty root: /x is a fresh 0755 directory, not the 0700 one
    // below it, and the layer's bytes are the same whatever is below.
    let l = layer(&o1, 1);
    assert_eq!(l, vec!["drwxr-xr-x 0/0 x/", "-rw-r--r-- 0/0 x/a.txt"]);
    assert_eq!(
        std::fs::read(&oci_layer_blobs(&o1)[1]).unwrap(),
        std::fs::read(&oci_layer_blobs(&o2)[1]).unwrap()
    );
    // ... while the layer below does hold the 0700 /x.
    let l = layer(&o1, 0);
    assert!(has(&l, "drwx------ 0/0 x/"), "{l:#?}");
}

/// A COPY to a top-level path that no layer below has is written straight into the new upper
/// dir; with `--chown=0:0` (the same owners) it goes through the overlay mount. Both give the same
/// layer bytes, and a COPY into a directory a lower layer has still merges through the overlay.
#[test]
fn copy_to_a_new_top_level_path_skips_the_overlay_with_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let files = [
        ("base/etc/keep", "k\n"),
        ("src/a.txt", "alpha\n"),
        ("src/sub/b.sh", "#!/bin/sh\n"),
    ];
    let direct = "FROM scratch\nCOPY base/ /\nCOPY src/ /fresh/\nCOPY src/a.txt /top\n\
                  COPY src/a.txt /etc/\n";
    let merged = "FROM scratch\nCOPY base/ /\nCOPY --chown=0:0 src/ /fresh/\n\
                  COPY --chown=0:0 src/a.txt /top\nCOPY src/a.txt /etc/\n";
    let mut outs = Vec::new();
    for (name, df) in [("direct", direct), ("merged", merged)] {
        let ctx = context(&t.path().join(name), df, &files);
        std::os::unix::fs::symlink("a.txt", ctx.join("src/link")).unwrap();
        std::fs::hard_link(ctx.join("src/a.txt"), ctx.join("src/hard")).unwrap();
        let out = t.path().join(format!("{name}-oci"));
        let dest = format!(
            "type=oci,dest={},tar=false,rewrite-timestamp=true",
            out.display()
        );
        ok(rbuild_env(
            &t.path().join(format!("root-{name}")),
            &["-o", &dest, ctx.to_str().unwrap()],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ));
        outs.push(out);
    }
    let l = layer(&outs[0], 1);
    assert!(has(&l, "drwxr-xr-x 0/0 fresh/"), "{l:#?}");
    assert!(has(&l, "lrwxrwxrwx 0/0 fresh/link -> a.txt"), "{l:#?}");
    assert!(
        has(&l, "hrw-r--r-- 0/0 fresh/hard link to fresh/a.txt"),
        "{l:#?}"
    );
    for i in 1..=3 {
        assert_eq!(
            std::fs::read(&oci_layer_blobs(&outs[0])[i]).unwrap(),
            std::fs::read(&oci_layer_blobs(&outs[1])[i]).unwrap(),
            "layer {i} differs"
        );
    }
    // /etc exists below: the COPY into it went through the overlay, which copied /etc up.
    let l = layer(&outs[0], 3);
    assert!(has(&l, "drwxr-xr-x 0/0 etc/"), "{l:#?}");
    assert!(has(&l, "-rw-r--r-- 0/0 etc/a.txt"), "{l:#?}");
    assert!(!l.iter().any(|x| x.contains("etc/keep")), "{l:#?}");
}

#[test]
fn dockerfile_specific_dockerignore_wins_over_the_context_one() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY . /all/\n",
        &[
            ("a.txt", "a"),
            ("b.txt", "b"),
            (".dockerignore", "a.txt\n"),
            ("build/app.Dockerfile", "FROM scratch\nCOPY . /all/\n"),
            ("build/app.Dockerfile.dockerignore", "b.txt\nbuild\n"),
        ],
    );
    let root = t.path().join("root");
    // Default Dockerfile: .dockerignore hides a.txt.
    let o1 = t.path().join("o1");
    build_oci(&root, &ctx, &o1, &[]);
    let l = layer(&o1, 0);
    assert!(
        has(&l, "-rw-r--r-- 0/0 all/b.txt") && !l.iter().any(|x| x.contains("a.txt")),
        "{l:#?}"
    );
    // -f build/app.Dockerfile: its own ignore file replaces .dockerignore (a.txt is back).
    let o2 = t.path().join("o2");
    let df = ctx.join("build/app.Dockerfile");
    build_oci(&root, &ctx, &o2, &["-f", df.to_str().unwrap()]);
    let l = layer(&o2, 0);
    assert!(has(&l, "-rw-r--r-- 0/0 all/a.txt"), "{l:#?}");
    assert!(
        !l.iter().any(|x| x.contains("b.txt") || x.contains("build")),
        "{l:#?}"
    );
    assert!(has(&l, "-rw-r--r-- 0/0 all/.dockerignore"), "{l:#?}");
}

/// Runs rbuild with `stdin` fed from bytes.
fn rbuild_stdin(root: &Path, args: &[&str], stdin: &[u8]) -> Run {
    use std::io::Write;
    let mut child = std::process::Command::new(rbuild_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn dockerfile_and_context_from_stdin() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY from-tar.txt /in-tar\n",
        &[
            ("a.txt", "from the dir\n"),
            ("from-tar.txt", "from the tar\n"),
            (".dockerignore", "secret\n"),
            ("secret", "s"),
            ("sub/ig.Dockerfile", "FROM scratch\nCOPY secret /s\n"),
        ],
    );
    // `-f -`: the Dockerfile on stdin, the context a directory.
    let o1 = t.path().join("o1");
    let dest = format!("type=oci,dest={},tar=false", o1.display());
    let r = rbuild_stdin(
        &root,
        &["-f", "-", "-o", &dest, ctx.to_str().unwrap()],
        b"FROM scratch\nCOPY a.txt /stdin-df\n",
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(layer_file(&o1, 0, "stdin-df"), "from the dir\n");
    // `-`: the context is a tar on stdin, with its Dockerfile and .dockerignore inside.
    let tar_bytes = std::process::Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .args(["-czf", "-", "."])
        .output()
        .unwrap()
        .stdout;
    let o2 = t.path().join("o2");
    let dest = format!("type=oci,dest={},tar=false", o2.display());
    let r = rbuild_stdin(&root, &["-o", &dest, "-"], &tar_bytes);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(layer_file(&o2, 0, "in-tar"), "from the tar\n");
    // `-f` names a file inside the tar; the tar's .dockerignore hides `secret`.
    let r = rbuild_stdin(&root, &["-f", "sub/ig.Dockerfile", "-"], &tar_bytes);
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("sub/ig.Dockerfile:2") && r.stderr.contains("\"secret\": not found"),
        "{}",
        r.stderr
    );
    // A Dockerfile in the tar that is a symlink to a host file is resolved inside the context.
    let evil = t.path().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", evil.join("Dockerfile")).unwrap();
    let evil_tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&evil)
        .args(["-cf", "-", "."])
        .output()
        .unwrap()
        .stdout;
    let r = rbuild_stdin(&root, &["-"], &evil_tar);
    assert_ne!(r.status, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("root:x:0:0"), "{}", r.stderr);
    // `rbuild build - < Dockerfile`: a plain Dockerfile on stdin, the context holds only it.
    let o3 = t.path().join("o3");
    let dest = format!("type=oci,dest={},tar=false", o3.display());
    let r = rbuild_stdin(&root, &["-o", &dest, "-"], b"FROM scratch\nCOPY . /ctx/\n");
    assert_eq!(r.status, 0, "{}", r.stderr);
    let l = layer(&o3, 0);
    assert!(
        has(&l, "-rw-r--r-- 0/0 ctx/Dockerfile") && l.len() == 2,
        "{l:#?}"
    );
    let r = rbuild_stdin(&root, &["-f", "-", "-"], b"FROM scratch\n");
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("both come from stdin"), "{}", r.stderr);
}

#[test]
fn add_url_is_revalidated_by_etag_and_keyed_by_content() {
    let t = tempfile::tempdir().unwrap();
    let server = HttpServer::start(b"version one\n");
    let ctx = context(
        &t.path().join("ctx"),
        &format!("FROM scratch\nADD {}/dl/file.txt /f/\n", server.url),
        &[],
    );
    let root = t.path().join("root");
    let o = t.path().join("o");
    build_oci(&root, &ctx, &o, &[]);
    assert_eq!((server.requests(), server.bodies()), (1, 1));
    let l = layer(&o, 0);
    assert!(has(&l, "-rw------- 0/0 f/file.txt"), "{l:#?}");
    assert_eq!(layer_file(&o, 0, "f/file.txt"), "version one\n");
    // Unchanged: one conditional request, answered 304; the step is a cache hit.
    let r = build_oci(&root, &ctx, &o, &[]);
    assert_eq!((server.requests(), server.bodies()), (2, 1));
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    // Changed content behind the same URL: downloaded again, and the cache key changes with it.
    server.set_body(b"version two\n");
    let r = build_oci(&root, &ctx, &o, &[]);
    assert_eq!((server.requests(), server.bodies()), (3, 2));
    assert!(!r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_eq!(layer_file(&o, 0, "f/file.txt"), "version two\n");
    // A --checksum whose content is already kept needs no request at all.
    let sum = rbuild::digest::Digest::of_bytes(b"version two\n");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nADD --checksum={sum} {}/dl/file.txt /f/\n",
            server.url
        ),
    )
    .unwrap();
    build_oci(&root, &ctx, &o, &["--no-cache"]);
    assert_eq!(server.requests(), 3);
    assert_eq!(layer_file(&o, 0, "f/file.txt"), "version two\n");
    // `prune -a` forgets kept downloads: the next build downloads again.
    let r = ok(rbuild(&root, &["prune", "-a"]));
    assert!(r.stdout.contains("Deleted kept downloads"), "{}", r.stdout);
    build_oci(&root, &ctx, &o, &[]);
    assert_eq!((server.requests(), server.bodies()), (4, 3));
}

/// Runs `rbuild ARGS` under `script` so that stderr is a pseudo-terminal; returns the transcript.
fn rbuild_on_a_tty(root: &Path, args: &[&str]) -> String {
    let mut cmd = format!("{} --root {}", rbuild_bin().display(), root.display());
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn progress_bars_on_a_terminal_and_stable_plain_lines_otherwise() {
    if !need("script") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&vec![b'x'; 300_000]);
    let ctx = context(
        &t.path().join("ctx"),
        &format!(
            "FROM scratch\nADD rootfs.tar.gz /\nADD {}/blob.bin /blob\nCMD [\"sh\"]\n",
            server.url
        ),
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar.gz");
    // auto on a terminal: byte summaries for the extraction, the download and the layer writes.
    let text = rbuild_on_a_tty(&t.path().join("root1"), &[ctx.to_str().unwrap()]);
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains("#1 extracting rootfs.tar.gz"), "{text}");
    assert!(
        text.contains(&format!(
            "#2 downloading {}/blob.bin 292.97 KiB in",
            server.url
        )),
        "{text}"
    );
    assert!(text.contains("#1 writing layer"), "{text}");
    assert!(text.contains("/s)"), "{text}");
    // --progress plain on the same terminal: only the plain step lines, no byte figures.
    let text = rbuild_on_a_tty(
        &t.path().join("root2"),
        &["--progress", "plain", ctx.to_str().unwrap()],
    );
    assert!(
        !text.contains("/s)") && !text.contains("writing layer"),
        "{text}"
    );
    // Not a terminal (CI logs): plain lines, each `#N ...`, closed by DONE and a duration.
    let r = ok(rbuild_env(
        &t.path().join("root3"),
        &[ctx.to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    let lines: Vec<&str> = r.stderr.lines().collect();
    for l in &lines {
        assert!(
            l.starts_with('#') || l.starts_with("writing image") || l.starts_with("naming to"),
            "unexpected plain line {l:?} in\n{}",
            r.stderr
        );
    }
    assert!(
        lines.contains(&"#1 [stage-0 1/3] ADD rootfs.tar.gz /"),
        "{}",
        r.stderr
    );
    let done = lines.iter().filter(|l| l.starts_with("#1 DONE ")).count();
    assert_eq!(done, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("/s)"), "{}", r.stderr);
}

/// The history entries' `created_by` of the image in an OCI layout dir.
fn history(out: &Path) -> Vec<String> {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |d: &str| {
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(out.join("index.json"));
    let m = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let c = read(blob(m["config"]["digest"].as_str().unwrap()));
    c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap().to_string())
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    rbuild::digest::Digest::of_bytes(b).hex().to_string()
}

/// Docker's tarsum-v1 per-file header (no mtime, empty user/group names), spelled out here
/// independently of rbuild's code.
fn tarsum(name: &str, mode: u32, size: usize, typeflag: char, content: &[u8]) -> String {
    let mut v = format!(
        "name{name}mode{mode}uid0gid0size{size}typeflag{typeflag}linknameunamegnamedevmajor0devminor0"
    )
    .into_bytes();
    v.extend_from_slice(content);
    sha256_hex(&v)
}

#[test]
fn classic_history_names_content_as_docker_does() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY a.txt /a.txt\nCOPY --chown=1:2 dir /d/\nCOPY a.txt dir/b.txt /m/\n",
        &[("a.txt", "hello\n"), ("dir/b.txt", "b\n")],
    );
    for (p, m) in [("a.txt", 0o644), ("dir/b.txt", 0o600), ("dir", 0o755)] {
        std::fs::set_permissions(ctx.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    }
    let out = t.path().join("o");
    build_oci(
        &t.path().join("root"),
        &ctx,
        &out,
        &["--history-format", "classic"],
    );
    let h = history(&out);
    let file_a = format!("file:{}", tarsum("a.txt", 0o644, 6, '0', b"hello\n"));
    let mut dir_sums = [
        tarsum("dir/", 0o755, 0, '5', b""),
        tarsum("dir/b.txt", 0o600, 2, '0', b"b\n"),
    ];
    dir_sums.sort();
    let dir = format!("dir:{}", sha256_hex(dir_sums.join(",").as_bytes()));
    let file_b = format!("file:{}", tarsum("dir/b.txt", 0o600, 2, '0', b"b\n"));
    let multi = format!(
        "multi:{}",
        sha256_hex(format!("{file_a},{file_b}").as_bytes())
    );
    assert_eq!(h[0], format!("/bin/sh -c #(nop) COPY {file_a} in /a.txt "));
    assert_eq!(
        h[1],
        format!("/bin/sh -c #(nop) COPY --chown=1:2{dir} in /d/ ")
    );
    assert_eq!(h[2], format!("/bin/sh -c #(nop) COPY {multi} in /m/ "));

    // The per-path sums are memoised by stat data: a poisoned entry for the unchanged a.txt is
    // trusted (proving the memo is read), and a real change to a.txt replaces it.
    let memo = t.path().join("root/cache/classic-tarsums.json");
    let real = tarsum("a.txt", 0o644, 6, '0', b"hello\n");
    let text = std::fs::read_to_string(&memo).unwrap();
    assert!(text.contains(&real), "{text}");
    std::fs::write(&memo, text.replace(&real, &"0".repeat(64))).unwrap();
    let out2 = t.path().join("o2");
    let classic = ["--history-format", "classic"];
    build_oci(&t.path().join("root"), &ctx, &out2, &classic);
    let poisoned = format!("file:{}", "0".repeat(64));
    assert!(history(&out2)[0].contains(&poisoned));
    std::fs::write(ctx.join("a.txt"), "hello!\n").unwrap();
    let out3 = t.path().join("o3");
    build_oci(&t.path().join("root"), &ctx, &out3, &classic);
    let fresh = format!("file:{}", tarsum("a.txt", 0o644, 7, '0', b"hello!\n"));
    assert_eq!(
        history(&out3)[0],
        format!("/bin/sh -c #(nop) COPY {fresh} in /a.txt ")
    );
}

#[test]
fn add_extracts_tars_by_content_keeping_owners_modes_mtimes_xattrs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;
    let t = tempfile::tempdir().unwrap();
    // The archive's tree: an owned, 0640, old file with a user xattr, a symlink, an empty dir.
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("dir/empty")).unwrap();
    let f = tree.join("dir/f");
    std::fs::write(&f, "archived\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(99)).unwrap();
    std::os::unix::fs::symlink("f", tree.join("dir/link")).unwrap();
    let with_xattr = xattr::set(&f, "user.rbuild", b"kept").is_ok();
    sh(Command::new("touch")
        .args(["-h", "-d", "@1600000000"])
        .arg(&f));
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD a.bin /gz/\nADD b.data /bz/\nADD c /xz/\nADD d.tar.zst /zst/\nADD notar.gz /raw/\n",
        &[],
    );
    let tar = t.path().join("t.tar");
    sh(Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=user.*",
            "--numeric-owner",
            "-C",
        ])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let compress = |tool: &str, out: &str| {
        let bytes = Command::new(tool)
            .arg("-c")
            .arg(&tar)
            .output()
            .unwrap()
            .stdout;
        std::fs::write(ctx.join(out), bytes).unwrap();
    };
    compress("gzip", "a.bin");
    compress("bzip2", "b.data");
    compress("xz", "c");
    compress("zstd", "d.tar.zst");
    let raw = Command::new("gzip")
        .arg("-c")
        .arg(ctx.join("Dockerfile"))
        .output()
        .unwrap()
        .stdout;
    std::fs::write(ctx.join("notar.gz"), &raw).unwrap();
    let out = t.path().join("o");
    build_oci(&t.path().join("root"), &ctx, &out, &[]);
    // Flatten the image with GNU tar (owners, modes, mtimes and xattrs restored) and look.
    let fs_dir = t.path().join("flat");
    std::fs::create_dir_all(&fs_dir).unwrap();
    for blob in oci_layer_blobs(&out) {
        sh(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(&blob)
            .arg("-C")
            .arg(&fs_dir));
    }
    for d in ["gz", "bz", "xz", "zst"] {
        let p = fs_dir.join(d).join("dir/f");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "archived\n", "{d}");
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
            (0o640, 1234, 99, 1600000000),
            "{d}"
        );
        assert_eq!(
            std::fs::read_link(fs_dir.join(d).join("dir/link")).unwrap(),
            Path::new("f")
        );
        assert!(fs_dir.join(d).join("dir/empty").is_dir(), "{d}");
        if with_xattr {
            assert_eq!(
                xattr::get(&p, "user.rbuild").unwrap().as_deref(),
                Some(&b"kept"[..]),
                "{d}"
            );
        }
    }
    // A compressed file that is not a tar is copied as it is.
    assert_eq!(std::fs::read(fs_dir.join("raw/notar.gz")).unwrap(), raw);
}

#[test]
fn chown_names_come_from_the_image_and_from_image_keeps_owners() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // An image in the store whose /f is owned by app:staff (names from its own /etc/passwd, group).
    let src = context(
        &t.path().join("src"),
        "FROM scratch\nADD rootfs.tar /\nCOPY --chown=app:staff a.txt /f\nCOPY --chown=app a.txt /g\n\
         COPY --chown=4321 a.txt /h\n",
        &[("a.txt", "owned\n")],
    );
    rootfs_archive(&src, "rootfs.tar");
    let o1 = t.path().join("o1");
    build_oci(&root, &src, &o1, &["-t", "src:1"]);
    let l = layer(&o1, 1);
    assert!(has(&l, "-rw-r--r-- 1000/50 f"), "{l:#?}");
    // A user alone gets its primary group; a number alone is uid and gid.
    assert!(has(&layer(&o1, 2), "-rw-r--r-- 1000/1000 g"));
    assert!(has(&layer(&o1, 3), "-rw-r--r-- 4321/4321 h"));
    // COPY --from=<image> (not a stage of this Dockerfile) reads it from the store, owners kept.
    let user = context(
        &t.path().join("user"),
        "FROM scratch\nCOPY --from=src:1 /f /copied\nCOPY --from=src:1 --chown=7:8 /f /rechowned\n",
        &[],
    );
    let o2 = t.path().join("o2");
    build_oci(&root, &user, &o2, &[]);
    assert!(has(&layer(&o2, 0), "-rw-r--r-- 1000/50 copied"));
    assert!(has(&layer(&o2, 1), "-rw-r--r-- 7/8 rechowned"));
    assert_eq!(layer_file(&o2, 0, "copied"), "owned\n");
}

/// The step number (`#N`) of the plain-progress step whose title contains `title`.
fn step_id(stderr: &str, title: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains(title) && l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step {title:?} in\n{stderr}"))
        .to_string()
}

fn step_lines<'a>(stderr: &'a str, id: &str) -> Vec<&'a str> {
    let prefix = format!("{id} ");
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

fn blob_names(out: &Path) -> Vec<String> {
    oci_layer_blobs(out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn link_layer_is_reused_when_the_layers_below_change() {
    let t = tempfile::tempdir().unwrap();
    let df = |word: &str| {
        format!(
            "FROM scratch\nADD rootfs.tar /\nRUN echo {word} > /base.txt\nCOPY --link app/ /app/\n\
             COPY plain.txt /plain.txt\nRUN cat /app/a.txt /app/sub/b.txt /base.txt > /check\n"
        )
    };
    let ctx = context(
        &t.path().join("ctx"),
        &df("one"),
        &[
            ("app/a.txt", "alpha\n"),
            ("app/sub/b.txt", "beta\n"),
            ("plain.txt", "plain\n"),
        ],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    let (o1, o2, o3) = (
        t.path().join("o1"),
        t.path().join("o2"),
        t.path().join("o3"),
    );
    build_oci(&root, &ctx, &o1, &[]);

    // An earlier RUN changes: every layer above it is on a new parent.
    std::fs::write(ctx.join("Dockerfile"), df("two")).unwrap();
    let r = build_oci(&root, &ctx, &o2, &["--explain-cache"]);
    let (b1, b2) = (blob_names(&o1), blob_names(&o2));
    assert_eq!(b1.len(), 5);
    assert_ne!(b1[1], b2[1], "the RUN layer must differ");
    // The --link layer: same blob (so same diffID) on the new parent, marked CACHED, not copied.
    assert_eq!(b1[2], b2[2], "--link layer was not reused");
    let link = step_id(&r.stderr, "COPY --link app/ /app/");
    let lines = step_lines(&r.stderr, &link);
    assert!(
        lines.contains(&format!("{link} CACHED").as_str()),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("via --link")), "{lines:#?}");
    // A plain COPY on the new parent is a miss that says why, and runs.
    let plain = step_id(&r.stderr, "COPY plain.txt /plain.txt");
    let lines = step_lines(&r.stderr, &plain);
    assert!(
        lines.iter().any(|l| l.contains("cache miss")) && lines.iter().any(|l| l.contains("DONE")),
        "{lines:#?}"
    );
    // The relinked layer is a real snapshot under the new base: the RUN above reads both.
    assert_eq!(layer_file(&o2, 4, "check"), "alpha\nbeta\ntwo\n");
    assert_eq!(layer_file(&o1, 4, "check"), "alpha\nbeta\none\n");
    let l = layer(&o2, 2);
    assert!(has(&l, "-rw-r--r-- 0/0 app/sub/b.txt"), "{l:#?}");

    // A real change to what --link copies makes a new layer.
    std::fs::write(ctx.join("app/a.txt"), "ALPHA\n").unwrap();
    let r = build_oci(&root, &ctx, &o3, &[]);
    let b3 = blob_names(&o3);
    assert_eq!(b3[1], b2[1]);
    assert_ne!(b3[2], b2[2]);
    let link = step_id(&r.stderr, "COPY --link app/ /app/");
    assert!(
        !step_lines(&r.stderr, &link)
            .iter()
            .any(|l| l.ends_with("CACHED")),
        "{}",
        r.stderr
    );
    assert_eq!(layer_file(&o3, 4, "check"), "ALPHA\nbeta\ntwo\n");
    // Going back to the first base reuses every layer of the first build.
    std::fs::write(ctx.join("app/a.txt"), "alpha\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), df("one")).unwrap();
    let o4 = t.path().join("o4");
    build_oci(&root, &ctx, &o4, &[]);
    assert_eq!(blob_names(&o4), b1);
}

/// The diffIDs of the image in an OCI layout directory.
fn diff_ids(dir: &Path) -> Vec<String> {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        dir.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(dir.join("index.json"));
    let manifest = read(blob(&index["manifests"][0]["digest"]));
    let config = read(blob(&manifest["config"]["digest"]));
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn parallel_copy_writes_the_same_layer_as_one_worker() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};
    let t = tempfile::tempdir().unwrap();
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY tree/ /plain/\nCOPY --chown=1234:5678 --chmod=go-w tree/ /owned/\n",
        &[],
    );
    // Well above the size written on the calling thread alone: 10 dirs x 3 subdirs x 12 files,
    // of varied sizes (one spans several copy calls), modes and mtimes.
    let tree = ctx.join("tree");
    let mut n = 0u64;
    for d in 0..10 {
        for s in 0..3 {
            let dir = tree.join(format!("d{d}/s{s}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..12 {
                n += 1;
                let p = dir.join(format!("f{f}"));
                std::fs::write(&p, format!("{d}/{s}/{f}\n").repeat(f * 40)).unwrap();
                let mode = [0o644, 0o755, 0o600, 0o4755][f % 4];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                let mtime = UNIX_EPOCH + Duration::from_secs(1_600_000_000 + n);
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(mtime)
                    .unwrap();
            }
        }
    }
    std::fs::write(tree.join("big"), vec![7u8; 9 << 20]).unwrap();
    std::fs::hard_link(tree.join("d0/s0/f1"), tree.join("d9/s2/hard")).unwrap();
    std::os::unix::fs::symlink("../d0/s0/f1", tree.join("d5/link")).unwrap();
    std::fs::create_dir(tree.join("d3/empty")).unwrap();
    std::fs::set_permissions(tree.join("d4"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Directory mtimes last (writing inside a directory changes its own), deepest first.
    sh(std::process::Command::new("find").arg(&tree).args([
        "-depth",
        "-type",
        "d",
        "-exec",
        "touch",
        "-d",
        "@1500000000",
        "{}",
        "+",
    ]));
    sh(std::process::Command::new("touch")
        .args(["-h", "-d", "@1500000001"])
        .arg(tree.join("d5/link")));

    let build = |jobs: &str| {
        let out = t.path().join(format!("oci-{jobs}"));
        let dest = format!("type=oci,dest={},tar=false", out.display());
        ok(rbuild_env(
            &t.path().join(format!("root-{jobs}")),
            &["-o", &dest, ctx.to_str().unwrap()],
            // Clamps only the mtime of the created /plain and /owned (now); the tree's are older.
            &[
                ("RBUILD_COPY_JOBS", jobs),
                ("SOURCE_DATE_EPOCH", "1700000000"),
            ],
        ));
        out
    };
    // Counted by the kernel: which threads of rbuild write the copied files.
    let writes = common::fanotify::FileEvents::watch(
        t.path(),
        nix::sys::fanotify::MaskFlags::FAN_CLOSE_WRITE,
    );
    let writers = |jobs: &str| {
        let (mut tids, mut n) = (std::collections::BTreeSet::new(), 0);
        for e in writes.drain() {
            let copied = ["plain", "owned"]
                .iter()
                .any(|d| e.path.components().any(|c| c.as_os_str() == *d));
            if e.path.starts_with(t.path().join(format!("root-{jobs}"))) && copied {
                tids.insert(e.tid);
                n += 1;
            }
        }
        (tids.len(), n)
    };
    let one = build("1");
    let (one_threads, one_files) = writers("1");
    let many = build("4");
    let (many_threads, many_files) = writers("4");
    // 10 x 3 x 12 files and `big` at least (the plain COPY writes straight into the snapshot).
    assert!(
        one_files >= 361 && many_files >= 361,
        "{one_files} / {many_files} files written"
    );
    assert_eq!(
        one_threads, 1,
        "RBUILD_COPY_JOBS=1 wrote from several threads"
    );
    assert!(
        many_threads >= 2,
        "RBUILD_COPY_JOBS=4 wrote from {many_threads} thread(s): not in parallel"
    );
    let ids = diff_ids(&one);
    assert_eq!(ids.len(), 2);
    assert_eq!(
        ids,
        diff_ids(&many),
        "1 and 4 copy workers made different layers"
    );

    // And the layers hold what the source does: owners, modes (setuid survives --chown), links,
    // file and directory mtimes (a directory's is applied after its children are written).
    let full = |i: usize| {
        sh(std::process::Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvf"])
            .arg(&oci_layer_blobs(&many)[i]))
    };
    let (plain, owned) = (full(0), full(1));
    let line = |l: &str, name: &str| -> String {
        l.lines()
            .find(|x| x.ends_with(name) || x.contains(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{l}"))
            .to_string()
    };
    assert!(line(&plain, "plain/d0/s0/f3").starts_with("-rwsr-xr-x 0/0"));
    assert!(line(&owned, "owned/d0/s0/f3").starts_with("-rwsr-xr-x 1234/5678"));
    assert!(line(&owned, "owned/d0/s0/f0").starts_with("-rw-r--r-- 1234/5678"));
    assert!(line(&plain, "plain/d0/s0/f1").contains("2020-09-13 12:26:42"));
    assert!(line(&plain, "plain/d4/").starts_with("drwx------ 0/0"));
    assert!(line(&plain, "plain/d4/").contains("2017-07-14 02:40:00"));
    assert!(line(&owned, "owned/d3/empty/").contains("2017-07-14 02:40:00"));
    assert!(line(&plain, "plain/d0/s0/").contains("2017-07-14 02:40:00"));
    assert!(line(&owned, "owned/d9/s2/").contains("2017-07-14 02:40:00"));
    assert!(line(&owned, "owned/d5/").contains("2017-07-14 02:40:00"));
    assert!(line(&plain, "plain/d9/s2/hard").starts_with("h"));
    assert!(line(&plain, "plain/d5/link").contains("-> ../d0/s0/f1"));
    assert_eq!(plain.lines().filter(|l| l.starts_with('-')).count(), 361);
}
