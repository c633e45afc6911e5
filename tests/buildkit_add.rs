//! Ports of BuildKit's `dockerfile_add_test.go` and `dockerfile_parents_test.go` (Dockerfile data
//! and assertions; `FROM busybox`/`alpine` is the busybox-static image of tests/bk; BuildKit's
//! test HTTP server is tests/common's).

mod bk;
mod common;

use bk::*;
use sha2::Digest;

/// A ustar header with Go's tar.Writer defaults (uid, gid, mtime 0), as BuildKit's cases write.
fn hdr() -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

/// A tar of regular files (mode 0644) and directories (names ending in `/`, mode 0755).
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = hdr();
        h.set_path(name).unwrap();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

#[test]
fn add_archive() {
    let t = tar_of(&[("foo", b"content0")]);
    let tgz = gzip(&t);
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nADD t.tar /\n")
        .file("t.tar", &t, 0o600);
    assert_eq!(text(&b.local(&[]), "foo"), "content0");

    b.dockerfile("\nFROM scratch\nADD t.tar.gz /\n")
        .file("t.tar.gz", &tgz, 0o600);
    assert_eq!(text(&b.local(&[]), "foo"), "content0");

    b.dockerfile("\n\tFROM scratch\n\tADD --unpack=false t.tar.gz /\n\t");
    let out = b.local(&[]);
    assert!(!exists(&out, "foo"));
    assert_eq!(std::fs::read(out.join("t.tar.gz")).unwrap(), tgz);

    b.dockerfile("\nFROM scratch\nCOPY t.tar.gz /\n");
    assert_eq!(std::fs::read(b.local(&[]).join("t.tar.gz")).unwrap(), tgz);

    let server = HttpServer::start(&tgz);
    let url = format!("{}/t.tar.gz", server.url);
    b.dockerfile(&format!("\nFROM scratch\nADD {url} /\n"));
    assert_eq!(std::fs::read(b.local(&[]).join("t.tar.gz")).unwrap(), tgz);

    b.dockerfile(&format!("\nFROM scratch\nADD --unpack=true {url} /dest/\n"));
    assert_eq!(text(&b.local(&[]), "dest/foo"), "content0");

    b.dockerfile(&format!("\nFROM scratch\nADD {url} /newname.tar.gz\n"));
    assert_eq!(
        std::fs::read(b.local(&[]).join("newname.tar.gz")).unwrap(),
        tgz
    );
}

#[test]
fn add_archive_with_implied_parent_dir() {
    let tgz = gzip(&tar_of(&[
        ("etc/dnf/", b""),
        ("etc/dnf/dnf.conf", b"content0"),
    ]));
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nADD t.tar.gz /\n")
        .file("t.tar.gz", &tgz, 0o600);
    assert_eq!(text(&b.local(&[]), "etc/dnf/dnf.conf"), "content0");
}

#[test]
fn add_archive_through_absolute_symlink() {
    let rootfs = {
        let mut b = tar::Builder::new(Vec::new());
        for d in ["run/", "var/"] {
            let mut h = hdr();
            h.set_path(d).unwrap();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, "var/run", "/run").unwrap();
        b.into_inner().unwrap()
    };
    let payload = {
        let mut b = tar::Builder::new(Vec::new());
        for d in [
            "var/run/act/",
            "var/run/act/actions/",
            "var/run/act/actions/broad/",
            "var/run/act/actions/broad/.git/",
        ] {
            let mut h = hdr();
            h.set_path(d).unwrap();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        let content = b"ref: refs/heads/main\n";
        let mut h = hdr();
        h.set_path("var/run/act/actions/broad/.git/HEAD").unwrap();
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        h.set_cksum();
        b.append(&h, &content[..]).unwrap();
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Link);
        h.set_mode(0o644);
        h.set_size(0);
        b.append_link(
            &mut h,
            "var/run/act/actions/broad/.git/HEAD.link",
            "var/run/act/actions/broad/.git/HEAD",
        )
        .unwrap();
        b.into_inner().unwrap()
    };
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nADD rootfs.tar /\nADD payload.tar /\n")
        .file("rootfs.tar", &rootfs, 0o600)
        .file("payload.tar", &payload, 0o600);
    let out = b.local(&[]);
    let head = "run/act/actions/broad/.git/HEAD";
    assert_eq!(text(&out, head), "ref: refs/heads/main\n");
    assert_eq!(
        text(&out, "run/act/actions/broad/.git/HEAD.link"),
        "ref: refs/heads/main\n"
    );
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(out.join(head)).unwrap();
    let l = std::fs::metadata(out.join("run/act/actions/broad/.git/HEAD.link")).unwrap();
    assert_eq!((a.dev(), a.ino()), (l.dev(), l.ino()));
}

#[test]
fn add_chown_archive() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nADD --chown=100:200 t.tar /out/\n")
        .file("t.tar", &tar_of(&[("foo", b"content0")]), 0o600);
    let out = b.dir.path().join("out.tar");
    let o = format!("type=tar,dest={}", out.display());
    ok(b.run(&["-o", &o]));
    let mut found = Vec::new();
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().to_string();
        let (uid, gid) = (e.header().uid().unwrap(), e.header().gid().unwrap());
        let mut data = String::new();
        std::io::Read::read_to_string(&mut e, &mut data).unwrap();
        found.push((path.trim_start_matches("./").to_string(), uid, gid, data));
    }
    let get = |p: &str| {
        found
            .iter()
            .find(|(n, ..)| n == p || n.trim_end_matches('/') == p.trim_end_matches('/'))
            .unwrap_or_else(|| panic!("{p} not in {found:?}"))
            .clone()
    };
    let foo = get("out/foo");
    assert_eq!(foo.3, "content0");
    assert_eq!((foo.1, foo.2), (100, 200));
    let dir = get("out/");
    assert_eq!((dir.1, dir.2), (100, 200));
}

#[test]
fn add_archive_wildcard() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nADD *.tar /dest\n")
        .file("t.tar", &tar_of(&[("foo", b"content0")]), 0o600)
        .file("b.tar", &tar_of(&[("bar", b"content1")]), 0o600);
    let out = b.local(&[]);
    assert_eq!(text(&out, "dest/foo"), "content0");
    assert_eq!(text(&out, "dest/bar"), "content1");
}

#[test]
fn add_chown_expand() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nARG group\nENV owner 1000\nADD --chown=${owner}:${group} foo /\nRUN [ \"$(stat -c \"%u %G\" /foo)\" == \"1000 nobody\" ]\n")
        .file("foo", b"foo-contents", 0o600);
    b.build(&["--build-arg", "group=nobody"]);
}

#[test]
fn add_url_chmod() {
    let server = HttpServer::start(b"content");
    let url = format!("{}/foo", server.url);
    let b = Bk::new();
    b.dockerfile(&format!(
        "\nFROM busybox AS build\nADD --chmod=644 {url} /tmp/foo1\nADD --chmod=755 {url} /tmp/foo2\nADD --chmod=0413 {url} /tmp/foo3\n\nARG mode\nADD --chmod=${{mode}} {url} /tmp/foo4\n\nRUN stat -c \"%04a\" /tmp/foo1 >> /dest && \\\n\tstat -c \"%04a\" /tmp/foo2 >> /dest && \\\n\tstat -c \"%04a\" /tmp/foo3 >> /dest && \\\n\tstat -c \"%04a\" /tmp/foo4 >> /dest\n\nFROM scratch\nCOPY --from=build /dest /dest\n"
    ));
    assert_eq!(
        text(&b.local(&["--build-arg", "mode=400"]), "dest"),
        "0644\n0755\n0413\n0400\n"
    );
}

#[test]
fn add_invalid_chmod() {
    for mode in ["64a", "10000"] {
        let b = Bk::new();
        b.dockerfile(&format!("\nFROM scratch\nADD --chmod={mode} foo /\n"))
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
fn add_checksum() {
    let content = b"content1";
    let server = HttpServer::start(content);
    let url = format!("{}/foo", server.url);
    let good = sha256(content);
    let b = Bk::new();
    b.dockerfile(&format!(
        "\nFROM scratch\nADD --checksum={good} {url} /tmp/foo\n"
    ));
    b.build(&[]);

    b.dockerfile(&format!("\nFROM scratch\nENV DIGEST={good}\nENV LINK={url}\nADD --checksum=${{DIGEST}} ${{LINK}} /tmp/foo\n"));
    b.build(&[]);

    for bad in [
        sha256(b""),
        "md5:7e55db001d319a94b0b713529a756623".to_string(),
        format!("unknown:{}", good.trim_start_matches("sha256:")),
        good.trim_start_matches("sha256:").to_string(),
    ] {
        b.dockerfile(&format!(
            "\nFROM scratch\nADD --checksum={bad} {url} /tmp/foo\n"
        ));
        b.fail(&[]);
    }

    b.dockerfile(&format!(
        "\nFROM scratch\nADD --checksum={good} foo /tmp/foo\n"
    ))
    .file("foo", content, 0o600);
    let e = b.fail(&[]);
    assert!(
        e.contains("checksum requires HTTP(S) or Git sources"),
        "{e}"
    );
}

// ---- dockerfile_parents_test.go

#[test]
fn copy_parents() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCOPY --parents foo1/foo2/bar /\n\nWORKDIR /test\nCOPY --parents foo1/foo2/ba* .\n")
        .mkdir("foo1/foo2", 0o700)
        .file("foo1/foo2/bar", b"testing", 0o600)
        .file("foo1/foo2/baz", b"testing2", 0o600);
    let out = b.local(&[]);
    assert_eq!(text(&out, "foo1/foo2/bar"), "testing");
    assert_eq!(text(&out, "test/foo1/foo2/bar"), "testing");
    assert_eq!(text(&out, "test/foo1/foo2/baz"), "testing2");
}

const PARENTS_BASE: &str = "FROM alpine AS base\nWORKDIR /test\nRUN <<eot\n\tset -ex\n\tmkdir -p a/b/c/d/e\n\tmkdir -p a/b2/c/d/e\n\tmkdir -p a/b/c2/d/e\n\tmkdir -p a/b/c2/d/e2\n\ttouch a/b/c/d/foo\n\ttouch a/b/c/d/e/bay\n\ttouch a/b2/c/d/e/bar\n\ttouch a/b/c2/d/e/baz\n\ttouch a/b/c2/d/e2/baz\neot\n";

#[test]
fn copy_relative_parents() {
    let stages = [
        ("middle", "COPY --from=base --parents /test/a/b/./c/d /out/", "[ -d /out/c/d/e ]\n\t[ -f /out/c/d/foo ]\n\t[ ! -d /out/a ]\n\t[ ! -d /out/e ]"),
        ("end", "COPY --from=base --parents /test/a/b/c/d/. /out/", "[ -d /out/test/a/b/c/d/e ]\n\t[ -f /out/test/a/b/c/d/foo ]"),
        ("start", "COPY --from=base --parents ./test/a/b/c/d /out/", "[ -d /out/test/a/b/c/d/e ]\n\t[ -f /out/test/a/b/c/d/foo ]"),
        ("double", "COPY --from=base --parents /test/a/./b/./c /out/", "[ -d /out/b/c/d/e ]\n\t[ -f /out/b/c/d/foo ]"),
        ("wildcard", "COPY --from=base --parents /test/a/./*/c /out/", "[ -d /out/b/c/d/e ]\n\t[ -f /out/b2/c/d/e/bar ]"),
        ("doublewildcard", "COPY --from=base --parents /test/a/b*/./c/**/e /out/", "[ -d /out/c/d/e ]\n\t[ -f /out/c/d/e/bay ] # via b\n\t[ -f /out/c/d/e/bar ] # via b2"),
        ("doubleinputs", "COPY --from=base --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /out/", "[ -f /out/d/e/baz ]\n\t[ ! -f /out/d/e/bay ]\n\t[ -f /out/d/e2/baz ]\n\t[ -f /out/c/d/e/bar ] # via b2"),
    ];
    let mut df = PARENTS_BASE.to_string();
    for (name, copy, checks) in stages {
        df.push_str(&format!(
            "\nFROM alpine AS {name}\n{copy}\nRUN <<eot\n\tset -ex\n\t{checks}\neot\n"
        ));
    }
    let b = Bk::new();
    b.dockerfile(&df);
    for (name, ..) in stages {
        b.build(&["--target", name]);
    }
}

#[test]
fn copy_parents_missing_directory() {
    let base = "FROM alpine AS base\nWORKDIR /test\nRUN <<eot\n\tset -ex\n\tmkdir -p a/b/c/d/e\n\ttouch a/b/c/d/foo\n\ttouch a/b/c/d/e/bay\neot\n";
    let stages = [
        ("normal", "COPY --from=base --parents /test/a/b/c/d /out/", "[ -d /out/test/a/b/c/d/e ]\n\t[ -f /out/test/a/b/c/d/e/bay ]\n\t[ ! -d /out/e ]\n\t[ ! -d /out/a ]"),
        ("withpivot", "COPY --from=base --parents /test/a/b/./c/d /out/", "[ -d /out/c/d/e ]\n\t[ -f /out/c/d/foo ]\n\t[ ! -d /out/a ]\n\t[ ! -d /out/e ]"),
        ("wildcard-nonexistent", "COPY --from=base --parents /test/a/b2*/c /out/", "[ -d /out ]\n\t[ ! -d /out/a ]"),
        ("wildcard-afterpivot", "COPY --from=base --parents /test/a/b/./c2* /out/", "[ -d /out ]\n\t[ ! -d /out/a ]\n\t[ ! -d /out/c* ]"),
    ];
    let mut df = base.to_string();
    for (name, copy, checks) in stages {
        df.push_str(&format!(
            "\nFROM alpine AS {name}\n{copy}\nRUN <<eot\n\tset -ex\n\t{checks}\neot\n"
        ));
    }
    df.push_str("\nFROM alpine AS nonexistentfile\nCOPY --from=base --parents /test/nonexistent-file /out/\n");
    let b = Bk::new();
    b.dockerfile(&df);
    for (name, ..) in stages {
        b.build(&["--target", name]);
    }
    let e = b.fail(&["--target", "nonexistentfile"]);
    assert!(e.contains("nonexistent-file"), "{e}");
}
