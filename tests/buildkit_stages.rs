//! Ports of BuildKit's `dockerfile_workdir_test.go`, `dockerfile_multistage_test.go`,
//! `dockerfile_onbuild_test.go` and `dockerfile_dockerignore_test.go` (Dockerfile data and
//! assertions; `FROM busybox`/`alpine` is the busybox-static image of tests/bk; images BuildKit
//! pushes to a registry between builds are tagged in the store instead).

mod bk;
mod common;

use bk::*;

// ---- dockerfile_workdir_test.go

#[test]
fn workdir_creates_dir() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nWORKDIR /foo\nWORKDIR /\n");
    let out = b.local(&[]);
    assert!(std::fs::symlink_metadata(out.join("foo")).unwrap().is_dir());
}

#[test]
fn workdir_source_date_epoch_reproducible() {
    let b = Bk::new();
    b.dockerfile("\nFROM alpine\nWORKDIR /mydir\n");
    let epoch = "1673364896"; // 2023-01-10T15:34:56Z
    let index = |n: &str| {
        let out = b.dir.path().join(n);
        let o = format!("type=oci,dest={},tar=false", out.display());
        ok(b.run(&[
            "--no-cache",
            "--build-arg",
            &format!("SOURCE_DATE_EPOCH={epoch}"),
            "-o",
            &o,
        ]));
        std::fs::read_to_string(out.join("index.json")).unwrap()
    };
    let first = index("oci-a");
    // BuildKit prunes its cache and waits 3 s; --no-cache rebuilds every step a second later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(first, index("oci-b"));
}

#[test]
fn workdir_user() {
    let b = Bk::new();
    b.dockerfile(
        &"\nFROM busybox\nRUN {ADDUSER} user 1001\nUSER user\nWORKDIR /mydir\nRUN [ \"$(stat -c \"%U %G\" /mydir)\" == \"user user\" ]\n"
            .replace("{ADDUSER}", ADDUSER),
    );
    b.build(&[]);
}

#[test]
fn workdir_copy_ignore_relative() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox AS base\nWORKDIR /foo\nCOPY Dockerfile /\nFROM busybox\n# relative path still loaded as absolute\nCOPY --from=base Dockerfile .\n");
    b.build(&[]);
}

#[test]
fn workdir_exists() {
    let b = Bk::new();
    b.dockerfile(
        &"\nFROM busybox\nRUN {ADDUSER} user 1001\nRUN mkdir /mydir && chown user:user /mydir\nWORKDIR /mydir\nRUN [ \"$(stat -c \"%U %G\" /mydir)\" == \"user user\" ]\n"
            .replace("{ADDUSER}", ADDUSER),
    );
    b.build(&[]);
}

// ---- dockerfile_multistage_test.go

#[test]
fn multi_stage_implicit_from() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCOPY --from=busybox /etc/passwd test\n");
    assert!(text(&b.local(&[]), "test").contains("root"));

    b.dockerfile("\nFROM busybox AS golang\nRUN mkdir -p /usr/bin && echo -n foo > /usr/bin/go\n\nFROM scratch\nCOPY --from=golang /usr/bin/go go\n");
    assert!(text(&b.local(&[]), "go").contains("foo"));
}

#[test]
fn multi_stage_case_insensitive() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch AS STAge0\nCOPY foo bar\nFROM scratch AS staGE1\nCOPY --from=staGE0 bar baz\nFROM scratch\nCOPY --from=stage1 baz bax\n")
        .file("foo", b"foo-contents", 0o600);
    assert!(text(&b.local(&["--target", "Stage1"]), "baz").contains("foo-contents"));
}

#[test]
fn out_of_order_stage() {
    for src in ["/d2", "/"] {
        let b = Bk::new();
        b.dockerfile(&format!("\nFROM busybox AS target\nCOPY --from=build {src} /out\n\nFROM alpine AS build\nCOPY /Dockerfile /d2\n\nFROM target\n"));
        let e = b.fail(&[]);
        assert!(e.contains("cannot copy from stage"), "{e}");
        assert!(
            e.contains("needs to be defined before current stage"),
            "{e}"
        );
    }
}

#[test]
fn empty_stages() {
    let b = Bk::new();
    b.dockerfile("\nARG foo=bar\n");
    let e = b.fail(&[]);
    assert!(e.contains("dockerfile contains no stages to build"), "{e}");
}

// ---- dockerfile_onbuild_test.go

#[test]
fn onbuild_cleared() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n");
    b.build(&["-t", "onbuild:base"]);
    b.dockerfile("\n\tFROM onbuild:base\n\t");
    b.build(&["-t", "onbuild:child"]);
    b.dockerfile("\n\tFROM onbuild:child AS base\n\tFROM scratch\n\tCOPY --from=base /out /\n\t");
    assert_eq!(text(&b.local(&[]), "foo"), "11");
}

#[test]
fn onbuild_with_child_stage() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nONBUILD RUN mkdir -p /out && touch /out/didrun\n");
    b.build(&["-t", "onbuild:base"]);
    b.dockerfile("\nFROM onbuild:base AS base\nRUN [ -f /out/didrun ] && touch /step1\nRUN rm /out/didrun\nRUN [ ! -f /out/didrun ] && touch /step2\n\nFROM base AS child\nRUN [ ! -f /out/didrun ] && touch /step3\n\nFROM scratch\nCOPY --from=child /step* /\n");
    let out = b.local(&[]);
    for s in ["step1", "step2", "step3"] {
        assert!(exists(&out, s), "{s}");
    }
}

#[test]
fn onbuild_inherited_stage_run() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox AS base\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n\nFROM base AS mid\nRUN cp /out/foo /out/bar\n\nFROM scratch\nCOPY --from=mid /out/bar /\n");
    assert_eq!(text(&b.local(&[]), "bar"), "11");
}

#[test]
fn onbuild_inherited_stage_with_from() {
    let b = Bk::new();
    b.dockerfile("\nFROM alpine AS src\nRUN mkdir -p /in && echo -n 12 > /in/file\n\nFROM busybox AS base\nONBUILD COPY --from=src /in/file /out/foo\n\nFROM base AS mid\nRUN cp /out/foo /out/bar\n\nFROM scratch\nCOPY --from=mid /out/bar /\n");
    assert_eq!(text(&b.local(&[]), "bar"), "12");
}

#[test]
fn onbuild_new_deps() {
    let b = Bk::new();
    b.dockerfile(
        "\nFROM busybox\nONBUILD COPY --from=alpine /etc/alpine-release /out/alpine-release2\n",
    );
    b.build(&["-t", "onbuild:one"]);
    b.dockerfile("\n\tFROM onbuild:one AS base\n\tRUN cat /out/alpine-release2 > /out/alpine-release3\n\tFROM scratch\n\tCOPY --from=base /out /\n\t");
    assert!(text(&b.local(&[]), "alpine-release3").len() > 5);

    // BuildKit's second half (an image's ONBUILD `RUN --mount=from=` naming a stage of the
    // Dockerfile that uses the image) is not ported: docs/compat.md.
}

#[test]
fn onbuild_with_cache_mount() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nONBUILD RUN --mount=type=cache,target=/cache echo -n 42 >> /cache/foo && echo -n 11 >> /bar\n");
    b.build(&["-t", "onbuild:cache"]);
    b.dockerfile("\n\tFROM onbuild:cache\n\tRUN --mount=type=cache,target=/cache [ \"$(cat /cache/foo)\" = \"42\" ] && [ \"$(cat /bar)\" = \"11\" ]\n\t");
    b.build(&[]);
}

// ---- dockerfile_dockerignore_test.go

#[test]
fn dockerignore() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCOPY . .\n")
        .file("foo", b"foo-contents", 0o600)
        .file("bar", b"bar-contents", 0o600)
        .file("baz", b"baz-contents", 0o600)
        .file("bay", b"bay-contents", 0o600)
        .file(
            ".dockerignore",
            b"\nba*\nDockerfile\n!bay\n.dockerignore\n",
            0o600,
        );
    let out = b.local(&[]);
    assert_eq!(text(&out, "foo"), "foo-contents");
    for gone in [".dockerignore", "Dockerfile", "bar", "baz"] {
        assert!(!exists(&out, gone), "{gone}");
    }
    assert_eq!(text(&out, "bay"), "bay-contents");
}

#[test]
fn dockerignore_invalid() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCOPY . .\n")
        .file(".dockerignore", b"!\n", 0o600);
    b.fail(&[]);
}

#[test]
fn dockerignore_override() {
    // BuildKit passes the patterns as a frontend attribute; rbuild's way to override them is a
    // `<Dockerfile>.dockerignore` next to the Dockerfile (the same rule docker follows).
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nCOPY . .\nRUN [ -f foo ] && [ ! -f bar ]\n")
        .file("foo", b"contents0", 0o600)
        .file("bar", b"contents0", 0o600)
        .file(".dockerignore", b"foo\n", 0o600)
        .file("Dockerfile.dockerignore", b"bar\n", 0o600);
    b.build(&[]);
}
