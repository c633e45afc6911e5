//! Ports of BuildKit's `frontend/dockerfile/dockerfile_copy_test.go` (Dockerfile data and assertions;
//! `FROM busybox`/`alpine` is the busybox-static image of tests/bk). Cases left out are listed in
//! docs/compat.md ("Ported BuildKit frontend tests").

mod bk;
mod common;

use bk::*;

/// An owner check as the BuildKit case writes it: `stat -c %u:%g` of `p` must be `e`.
fn owner_check(e: &str, p: &str) -> String {
    format!(
        "e=\"{e}\"; p=\"{p}\"; a=`stat -c \"%u:%g\" \"$p\"`; if [ \"$a\" != \"$e\" ]; then echo \"incorrect ownership on $p. expected $e, got $a\"; exit 1; fi"
    )
}

#[test]
fn copy_from_args_is_rejected() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nCOPY --from=$FOO . .\n");
    let e = b.fail(&[]);
    assert!(
        e.contains("variable expansion is not supported for --from"),
        "{e}"
    );
}

#[test]
fn empty_dest_dir() {
    let b = Bk::new();
    b.dockerfile(
        "FROM busybox\nENV empty=\"\"\nCOPY testfile $empty\nRUN [ \"$(cat testfile)\" == \"contents0\" ]\n",
    )
    .file("testfile", b"contents0", 0o600);
    b.build(&[]);
}

#[test]
fn preserve_dest_dir_slash() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nCOPY testfile /sample/\nRUN [ \"$(cat /sample/testfile)\" == \"contents0\" ]\n")
        .file("testfile", b"contents0", 0o600);
    b.build(&[]);
}

#[test]
fn copy_link_dot_dest_dir() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nWORKDIR /var/www\nCOPY --link testfile .\nRUN [ \"$(cat testfile)\" == \"contents0\" ]\n")
        .file("testfile", b"contents0", 0o600);
    b.build(&[]);
}

#[test]
fn copy_link_empty_dest_dir() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nWORKDIR /var/www\nENV empty=\"\"\nCOPY --link testfile $empty\nRUN [ \"$(cat testfile)\" == \"contents0\" ]\n")
        .file("testfile", b"contents0", 0o600);
    b.build(&[]);
}

#[test]
fn copy_chown_existing_dir() {
    let checks = |owned: &str| {
        let (f, d, s, n, es, en) = if owned.is_empty() {
            ("100:200", "0:0", "101:201", "102:202", "101:201", "102:202")
        } else {
            (owned, owned, owned, owned, owned, owned)
        };
        [
            owner_check(f, "/file"),
            owner_check(d, "/dir"),
            owner_check(s, "/dir/subdir"),
            owner_check(n, "/dir/subdir/nestedfile"),
            owner_check("500:600", "/existingdir"),
            owner_check("501:601", "/existingdir/existingsubdir"),
            owner_check("501:601", "/existingdir/existingfile"),
            owner_check(es, "/existingdir/subdir"),
            owner_check(en, "/existingdir/subdir/nestedfile"),
        ]
        .join(" \\\n && ")
    };
    let df = format!(
        r#"FROM busybox AS source
RUN touch /file && chown 100:200 /file \
 && mkdir -p /dir/subdir \
 && touch /dir/subdir/nestedfile \
 && chown 100:200 /dir \
 && chown 101:201 /dir/subdir \
 && chown 102:202 /dir/subdir/nestedfile

FROM busybox AS test_base
RUN mkdir -p /existingdir/existingsubdir \
 && touch /existingdir/existingfile \
 && chown 500:600 /existingdir \
 && chown 501:601 /existingdir/existingsubdir \
 && chown 501:601 /existingdir/existingfile

FROM test_base AS copy_from
COPY --from=source /file .
COPY --from=source /dir /dir
COPY --from=source /dir/. /existingdir
RUN {}

FROM test_base AS copy_from_chowned
COPY --from=source --chown=300:400 /file .
COPY --from=source --chown=300:400 /dir /dir
COPY --from=source --chown=300:400 /dir/. /existingdir
RUN {}
"#,
        checks(""),
        checks("300:400")
    );
    let b = Bk::new();
    b.dockerfile(&df);
    b.build(&["--target", "copy_from"]);
    b.build(&["--target", "copy_from_chowned"]);
}

#[test]
fn copy_wildcard_cache() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS base\nCOPY foo* files/\nRUN cat /dev/urandom | head -c 100 | sha256sum > unique\nCOPY bar files/\nFROM scratch\nCOPY --from=base unique /\n")
        .file("foo1", b"foo1-data", 0o600)
        .file("foo2", b"foo2-data", 0o600)
        .file("bar", b"bar-data", 0o600);
    let first = text(&b.local(&[]), "unique");
    b.file("bar", b"bar-data-mod", 0o600);
    let second = text(&b.local(&[]), "unique");
    assert_eq!(first, second);
}

#[test]
fn empty_wildcard() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nCOPY foo nomatch* /\n")
        .file("foo", b"contents0", 0o600);
    assert_eq!(text(&b.local(&[]), "foo"), "contents0");
}

#[test]
fn copy_chown_create_dest() {
    let b = Bk::new();
    b.dockerfile(
        &r#"FROM busybox
ARG group
ENV owner user01
RUN {ADDUSER} user 1001
RUN {ADDUSER} user01 1002
COPY --chown=user:user . /dest
COPY --chown=${owner}:${group} . /dest01
RUN [ "$(stat -c "%U %G" /dest)" == "user user" ]
RUN [ "$(stat -c "%U %G" /dest01)" == "user01 user" ]
"#
        .replace("{ADDUSER}", ADDUSER),
    );
    b.build(&["--build-arg", "group=user"]);
}

#[test]
fn copy_through_symlink_context() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nCOPY link/foo .\n")
        .symlink("sub", "link")
        .mkdir("sub", 0o700)
        .file("sub/foo", b"contents", 0o600);
    assert_eq!(text(&b.local(&[]), "foo"), "contents");
}

#[test]
fn copy_through_symlink_multi_stage() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS build\nRUN mkdir -p /out/sub && ln -s /out/sub /sub && ln -s out/sub /sub2 && echo -n \"data\" > /sub/foo\nFROM scratch\nCOPY --from=build /sub/foo .\nCOPY --from=build /sub2/foo bar\n");
    let out = b.local(&[]);
    assert_eq!(text(&out, "foo"), "data");
}

#[test]
fn copy_socket_becomes_a_regular_file() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nCOPY . /\n");
    let _l = std::os::unix::net::UnixListener::bind(b.ctx.join("socket.sock")).unwrap();
    let out = b.local(&[]);
    let md = std::fs::symlink_metadata(out.join("socket.sock")).unwrap();
    assert!(md.file_type().is_file(), "{:?}", md.file_type());
}

#[test]
fn copy_follow_all_symlinks() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nCOPY foo /\nCOPY foo/sub bar\n")
        .file("bar", b"bar-contents", 0o600)
        .mkdir("foo", 0o700)
        .symlink("../bar", "foo/sub");
    b.build(&[]);
}

#[test]
fn copy_symlinks() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nCOPY foo /\nCOPY sub/l* alllinks/\n")
        .file("bar", b"bar-contents", 0o600)
        .symlink("bar", "foo")
        .mkdir("sub", 0o700)
        .file("sub/lfile", b"lfile-contents", 0o600)
        .symlink("subfile", "sub/l0")
        .file("sub/subfile", b"subfile-contents", 0o600)
        .symlink("second", "sub/l1")
        .symlink("baz", "sub/second")
        .file("sub/baz", b"baz-contents", 0o600);
    let out = b.local(&[]);
    assert_eq!(text(&out, "foo"), "bar-contents");
    assert_eq!(text(&out, "alllinks/l0"), "subfile-contents");
    assert_eq!(text(&out, "alllinks/lfile"), "lfile-contents");
    assert_eq!(text(&out, "alllinks/l1"), "baz-contents");
}

#[test]
fn copy_chown() {
    let b = Bk::new();
    b.dockerfile(
        r#"FROM busybox AS base
ENV owner 1000
RUN mkdir -m 0777 /out
COPY --chown=daemon foo /
COPY --chown=1000:nobody bar /baz
ARG group
COPY --chown=${owner}:${group} foo /foobis
RUN stat -c "%U %G" /foo  > /out/fooowner
RUN stat -c "%u %G" /baz/sub  > /out/subowner
RUN stat -c "%u %G" /foobis  > /out/foobisowner
FROM scratch
COPY --from=base /out /
"#,
    )
    .file("foo", b"foo-contents", 0o600)
    .mkdir("bar", 0o700)
    .file("bar/sub", b"", 0o600);
    let out = b.local(&["--build-arg", "group=nobody"]);
    assert_eq!(text(&out, "fooowner"), "daemon daemon\n");
    assert_eq!(text(&out, "subowner"), "1000 nobody\n");
    assert_eq!(text(&out, "foobisowner"), "1000 nobody\n");
}

#[test]
fn copy_chmod() {
    let b = Bk::new();
    b.dockerfile(
        r#"FROM busybox AS base

RUN mkdir -m 0777 /out
COPY --chmod=0644 foo /
COPY --chmod=777 bar /baz
COPY --chmod=0 foo /foobis
COPY --chmod=777 foo /parent/foo
COPY --chmod=770 foo /parent/sub/foo

ARG mode
COPY --chmod=${mode} foo /footer

RUN stat -c "%04a" /foo  > /out/fooperm
RUN stat -c "%04a" /baz  > /out/barperm
RUN stat -c "%04a" /foobis  > /out/foobisperm
RUN stat -c "%04a" /parent  > /out/parentperm
RUN stat -c "%04a" /parent/sub  > /out/subparentperm
RUN stat -c "%04a" /footer  > /out/footerperm
FROM scratch
COPY --from=base /out /
"#,
    )
    .file("foo", b"foo-contents", 0o600)
    .file("bar", b"bar-contents", 0o700);
    let out = b.local(&["--build-arg", "mode=755"]);
    assert_eq!(text(&out, "fooperm"), "0644\n");
    assert_eq!(text(&out, "barperm"), "0777\n");
    assert_eq!(text(&out, "foobisperm"), "0000\n");
    assert_eq!(text(&out, "parentperm"), "0777\n");
    assert_eq!(text(&out, "subparentperm"), "0770\n");
    assert_eq!(text(&out, "footerperm"), "0755\n");
}

#[test]
fn copy_invalid_chmod() {
    for mode in ["64a", "10000"] {
        let b = Bk::new();
        b.dockerfile(&format!("FROM scratch\nCOPY --chmod={mode} foo /\n"))
            .file("foo", b"foo-contents", 0o600);
        let e = b.fail(&[]);
        assert!(
            e.contains(&format!(
                "invalid chmod parameter: '{mode}'. it should be octal string and between 0 and 07777"
            )),
            "{e}"
        );
    }
}

#[test]
fn copy_override_files() {
    let b = Bk::new();
    b.dockerfile("FROM scratch AS base\nCOPY sub sub\nCOPY sub sub\nCOPY files/foo.go dest/foo.go\nCOPY files/foo.go dest/foo.go\nCOPY files dest\n")
        .mkdir("sub/dir1/dir2", 0o700)
        .file("sub/dir1/dir2/foo", b"foo-contents", 0o600)
        .mkdir("files", 0o700)
        .file("files/foo.go", b"foo.go-contents", 0o600);
    let out = b.local(&[]);
    assert_eq!(text(&out, "sub/dir1/dir2/foo"), "foo-contents");
    assert_eq!(text(&out, "dest/foo.go"), "foo.go-contents");
}

#[test]
fn copy_var_substitution() {
    let b = Bk::new();
    b.dockerfile("FROM scratch AS base\nENV FOO bar\nCOPY $FOO baz\n")
        .file("bar", b"bar-contents", 0o600);
    assert_eq!(text(&b.local(&[]), "baz"), "bar-contents");
}

#[test]
fn copy_wildcards() {
    let b = Bk::new();
    b.dockerfile("FROM scratch AS base\nCOPY *.go /gofiles/\nCOPY f*.go foo2.go\nCOPY sub/* /subdest/\nCOPY sub/*/dir2/foo /subdest2/\nCOPY sub/*/dir2/foo /subdest3/bar\nCOPY . all/\nCOPY sub/dir1/ subdest4\nCOPY sub/dir1/. subdest5\nCOPY sub/dir1 subdest6\n")
        .file("foo.go", b"foo-contents", 0o600)
        .file("bar.go", b"bar-contents", 0o600)
        .mkdir("sub/dir1/dir2", 0o700)
        .file("sub/dir1/dir2/foo", b"foo-contents", 0o600);
    let out = b.local(&[]);
    for (p, want) in [
        ("gofiles/foo.go", "foo-contents"),
        ("gofiles/bar.go", "bar-contents"),
        ("foo2.go", "foo-contents"),
        ("subdest/dir2/foo", "foo-contents"),
        ("subdest2/foo", "foo-contents"),
        ("subdest3/bar", "foo-contents"),
        ("all/foo.go", "foo-contents"),
        ("subdest4/dir2/foo", "foo-contents"),
        ("subdest5/dir2/foo", "foo-contents"),
        ("subdest6/dir2/foo", "foo-contents"),
    ] {
        assert_eq!(text(&out, p), want, "{p}");
    }
}

#[test]
fn copy_relative() {
    let b = Bk::new();
    b.dockerfile(
        r#"FROM busybox
WORKDIR /test1
WORKDIR test2
RUN sh -c "[ "$PWD" = '/test1/test2' ]"
COPY foo ./
RUN sh -c "[ $(cat /test1/test2/foo) = 'hello' ]"
ADD foo ./bar/baz
RUN sh -c "[ $(cat /test1/test2/bar/baz) = 'hello' ]"
COPY foo ./bar/baz2
RUN sh -c "[ $(cat /test1/test2/bar/baz2) = 'hello' ]"
WORKDIR ..
COPY foo ./
RUN sh -c "[ $(cat /test1/foo) = 'hello' ]"
COPY foo /test3/
RUN sh -c "[ $(cat /test3/foo) = 'hello' ]"
WORKDIR /test4
COPY . .
RUN sh -c "[ $(cat /test4/foo) = 'hello' ]"
WORKDIR /test5/test6
COPY foo ../
RUN sh -c "[ $(cat /test5/foo) = 'hello' ]"
"#,
    )
    .file("foo", b"hello", 0o600);
    b.build(&[]);
}

#[test]
fn copy_unicode_path() {
    let b = Bk::new();
    b.dockerfile("FROM alpine\nCOPY test-äöü.txt /\nCOPY test-%C3%A4%C3%B6%C3%BC.txt /\nCOPY test+aou.txt /\n")
        .file("test-äöü.txt", b"foo", 0o644)
        .file("test-%C3%A4%C3%B6%C3%BC.txt", b"bar", 0o644)
        .file("test+aou.txt", b"baz", 0o644);
    let out = b.local(&[]);
    assert_eq!(text(&out, "test-äöü.txt"), "foo");
    assert_eq!(text(&out, "test-%C3%A4%C3%B6%C3%BC.txt"), "bar");
    assert_eq!(text(&out, "test+aou.txt"), "baz");
}

#[test]
fn chmod_non_octal() {
    // (src, dst, mode, is_dir) as in the BuildKit case.
    let cases = [
        ("file", "f1", "go-w", false),
        ("file", "f2", "u=rw,g=r,o=r", false),
        ("file", "f3", "a+X", false),
        ("dir", "d1", "go-w", true),
        ("dir", "d2", "u+rw,g+r,o-x,o+w", true),
        ("dir", "d3", "a+X", true),
    ];
    let (mut expected, mut copies, mut verify) = (String::new(), String::new(), String::new());
    for (src, dst, mode, is_dir) in cases {
        if is_dir {
            expected.push_str(&format!(
                "RUN mkdir -p /input/dirs/{dst} && cp -a /input/{src} /input/dirs/{dst}/{dst}\n\
                 RUN cp -a /input/dirs/{dst}/. /expected/ && chmod {mode} /expected/{dst}\n"
            ));
            copies.push_str(&format!(
                "COPY --from=base --chmod={mode} /input/dirs/{dst} /\n"
            ));
        } else {
            expected.push_str(&format!(
                "RUN cp -a /input/{src} /expected/{dst} && chmod {mode} /expected/{dst}\n"
            ));
            copies.push_str(&format!(
                "COPY --from=base --chmod={mode} /input/{src} /{dst}\n"
            ));
        }
        verify.push_str(&format!(
            "RUN [ \"$(stat -c %A /actual/{dst})\" = \"$(stat -c %A /expected/{dst})\" ]\n"
        ));
    }
    let b = Bk::new();
    b.dockerfile(&format!(
        "FROM alpine as base\nRUN <<eot\n\tset -ex\n\tmkdir /input\n\ttouch /input/file\n\tchmod 666 /input/file\n\tmkdir /input/dir\n\tchmod 124 /input/dir\n\tmkdir /expected\neot\n{expected}\nFROM scratch as result\n{copies}\nFROM base\nCOPY --from=result / /actual/\n{verify}\n"
    ));
    b.build(&[]);
}
