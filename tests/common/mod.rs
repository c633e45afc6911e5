//! Helpers shared by the end-to-end tests: a busybox-static rootfs, contexts, running the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn rbuild_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rbuild"))
}

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A busybox-static rootfs built once per test binary (testdata/make-busybox-rootfs.sh).
pub fn busybox_rootfs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("rbuild-test-rootfs-{}", std::process::id()));
        let dest = base.join("rootfs");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let st = Command::new(repo_dir().join("testdata/make-busybox-rootfs.sh"))
            .arg(&dest)
            .status()
            .expect("running make-busybox-rootfs.sh");
        assert!(
            st.success(),
            "make-busybox-rootfs.sh failed (is busybox-static installed?)"
        );
        dest
    })
}

/// Writes the busybox rootfs as `name` (tar, optionally compressed by extension) into `dir`.
pub fn rootfs_archive(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let comp = if name.ends_with(".xz") {
        "-J"
    } else if name.ends_with(".gz") {
        "-z"
    } else {
        ""
    };
    let mut cmd = Command::new("tar");
    cmd.args([
        "--sort=name",
        "--numeric-owner",
        "--mtime=@1700000000",
        "-C",
    ])
    .arg(busybox_rootfs())
    .arg("-c");
    if !comp.is_empty() {
        cmd.arg(comp);
    }
    let st = cmd.arg("-f").arg(&out).arg(".").status().unwrap();
    assert!(st.success());
    out
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn rbuild(root: &Path, args: &[&str]) -> Run {
    rbuild_env(root, args, &[])
}

pub fn rbuild_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(rbuild_bin());
    cmd.arg("--root").arg(root).args(args);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    // Provenance is attached by default to OCI outputs and pushes (docs/provenance.md); tests of
    // other features expect plain single-manifest outputs. tests/provenance.rs turns it back on.
    cmd.env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("running rbuild");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Asserts success and returns the run, printing its output on failure.
pub fn ok(r: Run) -> Run {
    assert_eq!(
        r.status, 0,
        "rbuild failed\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

/// A context dir holding `Dockerfile` with `text` and the given files.
pub fn context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir.to_path_buf()
}

/// No mount of the host mentions `path` (nothing was left mounted).
pub fn assert_nothing_mounted_under(path: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    for line in mounts.lines() {
        assert!(!line.contains(p.as_ref()), "left mounted: {line}");
    }
}

pub mod fanotify;

/// Whether `tool` is on PATH (for optional extras; a test that needs the tool uses [`need`]).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// CI sets RBUILD_REQUIRE_TOOLS=1 (`.ci/run`): then nothing a test needs may be missing.
pub fn tools_required() -> bool {
    std::env::var("RBUILD_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// A test needs `what` and `present` says whether it is there. Missing: panics naming it when
/// RBUILD_REQUIRE_TOOLS=1, else says it skips (on stderr) and returns false.
pub fn require(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        !tools_required(),
        "RBUILD_REQUIRE_TOOLS=1 and this test needs {what}, which is missing (scripts/setup installs the tools)"
    );
    eprintln!("SKIP: {what} is missing");
    false
}

/// [`require`] for a program on PATH.
pub fn need(tool: &str) -> bool {
    require(have(tool), &format!("`{tool}`"))
}

pub fn docker_running() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// [`require`] for a running Docker engine (scripts/test starts one).
pub fn need_docker() -> bool {
    require(
        docker_running(),
        "a running Docker engine (`docker info`; scripts/test starts dockerd)",
    )
}

/// [`require`] for at least `n` cores (tests that observe work running side by side).
pub fn need_cores(n: usize) -> bool {
    let have = std::thread::available_parallelism().map_or(1, |c| c.get());
    require(have >= n, &format!("{n} cores (this machine has {have})"))
}

/// Runs a command and returns stdout, panicking with its stderr on failure.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Lists a layer tar (any compression) as `name mode uid:gid size` lines, via GNU tar.
pub fn tar_listing(path: &Path) -> Vec<String> {
    let out = sh(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvf")
        .arg(path));
    out.lines().map(|s| s.to_string()).collect()
}

/// A small HTTP/1.1 server on 127.0.0.1 for ADD tests: serves the current body at every path with
/// an ETag (derived from the body) and a fixed Last-Modified, answers a matching `If-None-Match`
/// with 304, and counts requests and full bodies sent.
pub struct HttpServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub bodies: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl HttpServer {
    pub fn start(body: &[u8]) -> HttpServer {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer {
            url: format!("http://{addr}"),
            requests: Default::default(),
            bodies: Default::default(),
            body: std::sync::Arc::new(std::sync::Mutex::new(body.to_vec())),
        };
        let (requests, bodies, body) = (
            server.requests.clone(),
            server.bodies.clone(),
            server.body.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut line = String::new();
                let mut if_none_match = None;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("if-none-match") {
                            if_none_match = Some(v.trim().to_string());
                        }
                    }
                    line.clear();
                }
                requests.fetch_add(1, Ordering::SeqCst);
                let body = body.lock().unwrap().clone();
                let etag = format!(
                    "\"{:x}\"",
                    body.iter()
                        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64))
                );
                let common = format!(
                    "ETag: {etag}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n"
                );
                if if_none_match.as_deref() == Some(etag.as_str()) {
                    let _ = stream.write_all(
                        format!("HTTP/1.1 304 Not Modified\r\n{common}Content-Length: 0\r\n\r\n")
                            .as_bytes(),
                    );
                    continue;
                }
                bodies.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{common}Content-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        server
    }

    pub fn set_body(&self, body: &[u8]) {
        *self.body.lock().unwrap() = body.to_vec();
    }

    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn bodies(&self) -> usize {
        self.bodies.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The layer blobs of an OCI layout directory, in manifest order.
pub fn oci_layer_blobs(dir: &Path) -> Vec<PathBuf> {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(dir.join("index.json"));
    let mut manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    // An image index (an image with attestations, several platforms): its first manifest.
    while manifest.get("manifests").is_some() {
        manifest = read(blob(manifest["manifests"][0]["digest"].as_str().unwrap()));
    }
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap()))
        .collect()
}

pub mod oci;
pub mod registry;

/// Every snapshot under `<root>/overlay2` belongs to a committed layer, `l/` has no dangling link and the
/// store's scratch dir is empty: an interrupted or failed build left nothing half-made behind.
pub fn assert_store_consistent(root: &Path) {
    let layerdb = root.join("image/overlay2/layerdb/sha256");
    let mut cache_ids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&layerdb) {
        for e in rd.flatten() {
            cache_ids.push(std::fs::read_to_string(e.path().join("cache-id")).unwrap());
        }
    }
    for e in std::fs::read_dir(root.join("overlay2")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        // `.trash-*`: complete duplicates a build set aside for `prune` (Snapshotter::discard).
        if name == "empty" || name.starts_with(".trash-") {
            continue;
        }
        if name == "l" {
            for link in std::fs::read_dir(e.path()).unwrap().flatten() {
                assert!(
                    link.path().exists(),
                    "dangling snapshot link {}",
                    link.path().display()
                );
            }
            continue;
        }
        assert!(
            cache_ids.contains(&name),
            "snapshot {name} belongs to no layer (left by an unfinished step)"
        );
    }
    if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
        let left: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "left in the store's tmp: {left:?}");
    } // And the store's own verifier agrees.
    let r = rbuild(root, &["fsck"]);
    assert_eq!(r.status, 0, "fsck:\n{}{}", r.stdout, r.stderr);
}

/// A layer tar holding one regular file `name` (mode 0644) with `content`.
pub fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    h.set_cksum();
    b.append(&h, content).unwrap();
    b.into_inner().unwrap()
}
