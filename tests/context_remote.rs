//! ADD from http(s) URLs and git repositories, against servers/repos created by the test.

mod common;

use rbuild::context::git::{fetch, parse_git_ref};
use rbuild::context::{copy, Context, ContextError, CopyEnv, CopyRequest, SourceRoot};
use rbuild::digest::Digest;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Serves `body` with a fixed Last-Modified to every request, on 127.0.0.1.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn add(
    url: &str,
    dest: &str,
    root: &Path,
    edit: impl FnOnce(&mut CopyRequest),
) -> Result<(), ContextError> {
    let ctx_dir = tempfile::tempdir().unwrap();
    let ctx = Context::open(ctx_dir.path(), &ctx_dir.path().join("Dockerfile")).unwrap();
    let mut req = CopyRequest::new(SourceRoot::Context(&ctx), vec![url.to_string()], dest);
    req.is_add = true;
    edit(&mut req);
    let scratch = tempfile::tempdir().unwrap();
    let env = CopyEnv {
        scratch: Some(scratch.path()),
        max_download: 1 << 20,
        ..CopyEnv::default()
    };
    copy(&req, root, &env).map(|_| ())
}

#[test]
fn http_download_name_mode_mtime_checksum() {
    let body = b"hello from the server\n".to_vec();
    let sum = Digest::of_bytes(&body).to_string();
    let base = serve(body.clone());
    let root = tempfile::tempdir().unwrap();
    add(
        &format!("{base}/dir/file.tar.gz?x=1"),
        "/dl/",
        root.path(),
        |r| r.checksum = Some(sum.clone()),
    )
    .unwrap();
    let p = root.path().join("dl/file.tar.gz");
    // Never extracted, mode 0600, owner 0:0, mtime from Last-Modified.
    assert_eq!(std::fs::read(&p).unwrap(), body);
    let md = std::fs::metadata(&p).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!((md.uid(), md.gid()), (0, 0));
    assert_eq!(md.mtime(), 1445412480);
    // No trailing slash: the destination is the file name.
    add(&format!("{base}/x"), "/named", root.path(), |r| {
        r.chmod = Some("644".into())
    })
    .unwrap();
    assert_eq!(
        std::fs::metadata(root.path().join("named")).unwrap().mode() & 0o7777,
        0o644
    );
    // A URL without a path gets BuildKit's placeholder name.
    add(&base, "/u/", root.path(), |_| {}).unwrap();
    assert!(root.path().join("u/__unnamed__").exists());
}

#[test]
fn http_checksum_mismatch_and_size_limit() {
    let base = serve(b"abc".to_vec());
    let root = tempfile::tempdir().unwrap();
    let wrong = format!("sha256:{}", "1".repeat(64));
    let e = add(&format!("{base}/f"), "/f", root.path(), |r| {
        r.checksum = Some(wrong)
    })
    .unwrap_err();
    assert!(matches!(e, ContextError::ChecksumMismatch { .. }), "{e}");
    assert!(!root.path().join("f").exists());
    let e = add(&format!("{base}/f"), "/f", root.path(), |r| {
        r.checksum = Some("md5:x".into())
    })
    .unwrap_err();
    assert!(matches!(e, ContextError::BadChecksum(_)), "{e}");
    let big = serve(vec![7u8; (1 << 20) + 10]);
    let e = add(&format!("{big}/big"), "/big", root.path(), |_| {}).unwrap_err();
    assert!(matches!(e, ContextError::DownloadTooLarge { .. }), "{e}");
    let e = add("http://127.0.0.1:1/nothing", "/n", root.path(), |_| {}).unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

fn sh(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn git_fetch_ref_subdir_checksum_keep_git_dir() {
    // git is optional at runtime, but the test needs it.
    if !common::need("git") {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    sh(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.path().join("sub")).unwrap();
    std::fs::write(repo.path().join("sub/f.txt"), "v1").unwrap();
    std::fs::write(repo.path().join("run.sh"), "#!/bin/sh").unwrap();
    std::fs::set_permissions(
        repo.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    sh(repo.path(), &["add", "."]);
    sh(repo.path(), &["commit", "-q", "-m", "one"]);
    sh(repo.path(), &["tag", "v1"]);
    let c1 = sh(repo.path(), &["rev-parse", "HEAD"]);
    std::fs::write(repo.path().join("sub/f.txt"), "v2").unwrap();
    sh(repo.path(), &["commit", "-q", "-am", "two"]);

    let remote = repo.path().to_str().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut r = parse_git_ref("https://example.com/r.git#v1:sub")
        .unwrap()
        .unwrap();
    assert_eq!(r.subdir, "sub");
    r.remote = remote.to_string();
    let co = fetch(&r, false, None, scratch.path()).unwrap();
    assert_eq!(co.commit, c1);
    assert_eq!(
        std::fs::read_to_string(co.root().join("sub/f.txt")).unwrap(),
        "v1"
    );
    assert!(!co.root().join(".git").exists());
    let co = fetch(&r, true, Some(&c1[..12]), scratch.path()).unwrap();
    assert!(co.root().join(".git").exists());
    let e = fetch(&r, false, Some("deadbeef"), scratch.path())
        .err()
        .unwrap();
    assert!(matches!(e, ContextError::ChecksumMismatch { .. }), "{e}");
    r.git_ref = None;
    let co = fetch(&r, false, None, scratch.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(co.root().join("sub/f.txt")).unwrap(),
        "v2"
    );
}

#[test]
fn c03_git_subdir_through_a_symlink_is_refused() {
    // buildah "ADD with git repository source escape directory" / BuildKit CVE-2026-33748: the
    // repo has `proj -> /` (and `rel -> ../../..`); `#main:proj<hostdir>` must copy nothing.
    // git is optional at runtime, but the test needs it.
    if !common::need("git") {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let host = base.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), "host").unwrap();
    let repo = base.path().join("srv/r.git");
    std::fs::create_dir_all(&repo).unwrap();
    sh(&repo, &["init", "-q", "-b", "main"]);
    std::os::unix::fs::symlink("/", repo.join("proj")).unwrap();
    std::os::unix::fs::symlink("../../..", repo.join("rel")).unwrap();
    std::fs::create_dir(repo.join("real")).unwrap();
    std::fs::write(repo.join("real/f"), "in repo").unwrap();
    sh(&repo, &["add", "."]);
    sh(&repo, &["commit", "-q", "-m", "one"]);
    // A git daemon on loopback only, on a port picked by binding first.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // git-daemon itself (not the `git daemon` wrapper, whose child would outlive kill()).
    let exec_path = String::from_utf8(
        Command::new("git")
            .arg("--exec-path")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
        .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.path().join("srv").display()))
        .arg(base.path().join("srv"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = |sub: &str| format!("git://127.0.0.1:{port}/r.git#main:{sub}");
    let result = std::panic::catch_unwind(|| {
        assert!(up, "git daemon did not start");
        let root = tempfile::tempdir().unwrap();
        // The control: a real subdir is copied.
        add(&url("real"), "/ok/", root.path(), |_| {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("ok/f")).unwrap(),
            "in repo"
        );
        let hostdir = host.display().to_string();
        for sub in [
            format!("proj{hostdir}"),
            "proj".into(),
            format!("rel{hostdir}"),
        ] {
            let e = add(&url(&sub), "/x/", root.path(), |_| {}).unwrap_err();
            assert!(
                e.to_string().contains("symlink") || e.to_string().contains("not"),
                "{sub}: {e}"
            );
            assert!(!root.path().join("x/secret").exists(), "{sub}");
        }
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 1);
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn c04_download_names_never_leave_the_destination() {
    // BuildKit TestSafeFileName shapes, through a real download: the file always lands as a
    // single name directly in the destination directory.
    let base = serve(b"payload".to_vec());
    let root = tempfile::tempdir().unwrap();
    let cases = [
        ("/a/b/c.txt", "c.txt"),
        ("/..", "__unnamed__"),
        ("/a/.", "__unnamed__"),
        ("/a%2F..%2F..%2F..%2Fescaped", "escaped"),
        ("/a%2f..", "__unnamed__"),
        ("/a%00b", "__unnamed__"),
        ("/a%0Ab", "__unnamed__"),
        ("", "__unnamed__"),
    ];
    for (i, (path, name)) in cases.iter().enumerate() {
        let dest = format!("/d{i}/");
        add(&format!("{base}{path}"), &dest, root.path(), |_| {}).unwrap();
        let got: Vec<_> = std::fs::read_dir(root.path().join(&dest[1..]))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(got, vec![name.to_string()], "{path}");
    }
    assert!(!root.path().join("escaped").exists());
    assert!(!root.path().parent().unwrap().join("escaped").exists());
}

/// A server that sends its headers, then one byte a second: `ADD <url>` fails at the download
/// deadline (`RBUILD_DOWNLOAD_TIMEOUT`) with an error naming the URL, instead of waiting forever.
#[test]
fn dripping_download_fails_at_its_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..100_000 {
                    if stream.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            });
        }
    });
    let t = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/slow.bin");
    let ctx = common::context(
        &t.path().join("ctx"),
        &format!("FROM scratch\nADD {url} /slow.bin\n"),
        &[],
    );
    let mut child = Command::new(common::rbuild_bin())
        .args(["--root", t.path().join("root").to_str().unwrap()])
        .args(["build", "--progress", "plain", ctx.to_str().unwrap()])
        .env("RBUILD_DOWNLOAD_TIMEOUT", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded by counting polls, not by timing the build: 600 polls of 100 ms. Before the
    // deadline existed this loop ran out and the test failed here.
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("ADD of a dripping URL still running after its 2 s deadline");
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&url) || stderr.contains("slow.bin"),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("timeout") || stderr.to_lowercase().contains("timed out"),
        "{stderr}"
    );
}
