//! Ports of BuildKit's `frontend/dockerfile/dockerfile_mount_test.go` (Dockerfile data and
//! assertions; `FROM busybox`/`alpine` is the busybox-static image of tests/bk).

mod bk;
mod common;

use bk::*;

#[test]
fn mount_context() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nRUN --mount=target=/context [ \"$(cat /context/testfile)\" == \"contents0\" ]\n")
        .file("testfile", b"contents0", 0o600);
    b.build(&[]);
}

#[test]
fn mount_tmpfs() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nRUN --mount=target=/mytmp,type=tmpfs touch /mytmp/foo\nRUN [ ! -f /mytmp/foo ]\n");
    b.build(&[]);
}

#[test]
fn mount_invalid() {
    let b = Bk::new();
    b.dockerfile("FROM scratch\nRUN --mont=target=/mytmp,type=tmpfs /bin/true\n");
    let e = b.fail(&[]);
    assert!(e.contains("unknown flag: --mont"), "{e}");
    assert!(e.contains("did you mean mount?"), "{e}");

    b.dockerfile("\n\tFROM scratch\n\tRUN --mount=typ=tmpfs /bin/true\n\t");
    let e = b.fail(&[]);
    assert!(e.contains("unexpected key 'typ'"), "{e}");
    assert!(e.contains("did you mean type?"), "{e}");

    b.dockerfile("\n\tFROM scratch\n\tRUN --mount=type=tmp /bin/true\n\t");
    let e = b.fail(&[]);
    assert!(e.contains("unsupported mount type \"tmp\""), "{e}");
    assert!(e.contains("did you mean tmpfs?"), "{e}");
}

#[test]
fn cache_mount_user() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nRUN --mount=type=cache,target=/mycache,uid=1001,gid=1002,mode=0751 [ \"$(stat -c \"%u %g %f\" /mycache)\" == \"1001 1002 41e9\" ]\n");
    b.build(&[]);
}

#[test]
fn cache_mount_default_id() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nRUN --mount=type=cache,target=/mycache touch /mycache/foo\nRUN --mount=type=cache,target=/mycache2 [ ! -f /mycache2/foo ]\nRUN --mount=type=cache,target=/mycache [ -f /mycache/foo ]\n");
    b.build(&[]);
}

#[test]
fn mount_env_var() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nENV SOME_PATH=/mycache\nRUN --mount=type=cache,target=/mycache touch /mycache/foo\nRUN --mount=type=cache,target=$SOME_PATH [ -f $SOME_PATH/foo ]\n");
    b.build(&[]);
}

#[test]
fn mount_arg() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nARG MNT_TYPE=cache\nRUN --mount=type=$MNT_TYPE,target=/mycache2 touch /mycache2/foo\nRUN --mount=type=cache,target=/mycache2 [ -f /mycache2/foo ]\n");
    b.build(&[]);
}

#[test]
fn mount_env_across_stages() {
    let b = Bk::new();
    b.dockerfile("FROM busybox as stage1\n\nENV MNT_ID=mycache\nENV MNT_TYPE2=cache\nRUN --mount=type=cache,id=mycache,target=/abcabc touch /abcabc/foo\nRUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]\n\nFROM stage1\nRUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n");
    b.build(&[]);
}

#[test]
fn mount_meta_arg() {
    let b = Bk::new();
    b.dockerfile("ARG META_PATH=/tmp/meta\n\nFROM busybox\nARG META_PATH\nRUN --mount=type=cache,id=mycache,target=/tmp/meta touch /tmp/meta/foo\nRUN --mount=type=cache,id=mycache,target=$META_PATH [ -f /tmp/meta/foo ]\n");
    b.build(&[]);
}

#[test]
fn mount_from_error() {
    let b = Bk::new();
    b.dockerfile("FROM busybox as test\nRUN touch /tmp/test\n\nFROM busybox\nENV ttt=test\nRUN --mount=from=$ttt,type=cache,target=/tmp ls\n");
    let e = b.fail(&[]);
    assert!(
        e.contains("'from' doesn't support variable expansion, define alias stage instead"),
        "{e}"
    );
}

#[test]
fn mount_tmpfs_size() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS base\nRUN --mount=type=tmpfs,target=/dev/shm,size=128m mount | grep /dev/shm > /tmpfssize\nFROM scratch\nCOPY --from=base /tmpfssize /\n");
    let t = text(&b.local(&[]), "tmpfssize");
    assert!(t.contains("size=131072k"), "{t}");
}

#[test]
fn mount_duplicate() {
    let b = Bk::new();
    let a = "foo\n".repeat(100);
    b.dockerfile("FROM busybox AS base\nRUN --mount=source=.,target=/tmp/test \\\n  --mount=source=b.txt,target=/tmp/b.txt \\\n  cat /tmp/test/a.txt /tmp/b.txt > /combined.txt\nFROM scratch\nCOPY --from=base /combined.txt /\n")
        .file("a.txt", a.as_bytes(), 0o600)
        .file("b.txt", b"bar\n", 0o600);
    assert_eq!(text(&b.local(&[]), "combined.txt"), format!("{a}bar\n"));
}

#[test]
fn cache_mount_parallel() {
    let b = Bk::new();
    b.dockerfile("FROM alpine AS b1\nRUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 1\n\nFROM alpine AS b2\nRUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 2\n\nFROM scratch\nCOPY --from=b1 /etc/passwd p1\nCOPY --from=b2 /etc/passwd p2\n");
    b.build(&[]);
}

#[test]
fn cache_mount_source_escape() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS init\nRUN --mount=type=cache,id=sourceescape,target=/cache mkdir -p /cache/sel && echo benign > /cache/sel/benign.txt\n\nFROM init AS link\nRUN --mount=type=cache,id=sourceescape,target=/cache rm -rf /cache/sel && ln -s /etc /cache/sel\n\nFROM link AS victim\nRUN --mount=type=cache,id=sourceescape,source=sel,target=/victim cat /victim/hostname\n\nFROM scratch\nCOPY --from=victim /etc/hostname /hostname\n");
    b.fail(&[]);
}
