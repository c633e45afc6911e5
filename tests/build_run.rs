//! RUN through the real binary on a busybox-static rootfs: Ctrl-C, secrets, every --mount type,
//! USER/WORKDIR/ENV/ARG, network=none, parallel stages, --target with a broken unused stage.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A context with the busybox rootfs as `rootfs.tar` and the Dockerfile `FROM scratch / ADD rootfs.tar /`
/// followed by `rest`.
fn busybox_context(dir: &Path, rest: &str, files: &[(&str, &str)]) -> PathBuf {
    let ctx = context(
        dir,
        &format!("FROM scratch\nADD rootfs.tar /\n{rest}"),
        files,
    );
    rootfs_archive(&ctx, "rootfs.tar");
    ctx
}

/// Host pids whose command line is exactly `sleep <marker>`.
fn sleepers(marker: &str) -> Vec<i32> {
    let want = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

/// A running rbuild, killed (whole process group) if the test panics before it exits.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.0.wait();
        }
    }
}

/// Starts `rbuild build` in its own process group (as a shell puts a foreground job) and returns once
/// its progress output shows `marker`, with the child and the rest of its stderr.
fn start_until(root: &Path, args: &[&str], marker: &str) -> Running {
    use std::os::unix::process::CommandExt;
    let mut child = Running(
        Command::new(rbuild_bin())
            .arg("--root")
            .arg(root)
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut reader = BufReader::new(child.0.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "build ended before {marker:?} appeared:\n{seen}");
        seen.push_str(&line);
        // The marker as RUN output (`#N marker`), not the step title that echoes the command.
        if line.trim_end().ends_with(&format!(" {marker}")) && !line.contains("RUN") {
            break;
        }
    }
    // Keep draining stderr so the build never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    child
}

/// Runs rbuild in its own process group to its (bounded) exit; returns the exit code and stderr.
fn run_to_exit(root: &Path, args: &[&std::ffi::OsStr]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut child = Running(
        Command::new(rbuild_bin())
            .arg("--root")
            .arg(root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.0.stderr.take().unwrap();
    let collect = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let code = wait_exit(&mut child);
    (code, collect.join().unwrap())
}

/// Waits for the child (a bounded wait: a hung build fails the test instead of hanging it).
fn wait_exit(child: &mut Running) -> i32 {
    let child = &mut child.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rbuild did not exit after the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sleepers(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sleepers(marker).is_empty(),
        "container process `sleep {marker}` left behind"
    );
}

#[test]
fn sigint_and_sigterm_stop_the_build_and_leave_the_store_clean() {
    let t = tempfile::tempdir().unwrap();
    let marker = "3171";
    let ctx = busybox_context(
        &t.path().join("ctx"),
        "ARG S=3171\nRUN echo run-has-started; echo partial > /partial; sleep $S\n",
        &[],
    );
    let root = t.path().join("root");
    let ctx_s = ctx.to_str().unwrap();

    // Ctrl-C in a terminal: SIGINT to the whole foreground process group (rbuild and its RUN helper).
    let mut child = start_until(&root, &[ctx_s], "run-has-started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers(marker).is_empty() {
        assert!(Instant::now() < deadline, "the RUN's sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(wait_exit(&mut child), 130);
    wait_gone(marker);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);

    // SIGTERM to rbuild alone (a supervisor stopping it): rbuild itself must stop the container.
    let mut child = start_until(&root, &[ctx_s], "run-has-started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(wait_exit(&mut child), 130);
    wait_gone(marker);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);

    // The next build works, reuses the committed ADD layer, and the interrupted RUN left no trace.
    let out = t.path().join("out");
    let r = ok(rbuild(
        &root,
        &[
            "--build-arg",
            "S=0",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx_s,
        ],
    ));
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out.join("partial")).unwrap(),
        "partial\n"
    );
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}

/// The layer tars (and config) inside an uncompressed docker-archive, extracted into `dir`.
fn unpack_archive(archive: &Path, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| dir.join(l.as_str().unwrap()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_reach_run_but_never_the_image_or_the_store() {
    let t = tempfile::tempdir().unwrap();
    let value = "s3cr3t-VALUE-6f1d2c";
    let secret = t.path().join("token.txt");
    std::fs::write(&secret, value).unwrap();
    let sha = sh(Command::new("sha256sum").arg(&secret));
    let sha = sha.split_whitespace().next().unwrap();
    // The Dockerfile only ever sees the secret's hash, so the value cannot reach history by its text.
    let ctx = busybox_context(
        &t.path().join("ctx"),
        "RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /seen-sha && \
           stat -c '%a %u:%g' /run/secrets/tok > /seen-mode && \
           (echo nope > /run/secrets/tok 2>/dev/null || echo ro > /seen-ro)\n\
         RUN --mount=type=secret,id=tok,target=/etc/app/token,mode=0440,uid=1000,gid=50 \
           su app -s /bin/sh -c 'sha256sum /etc/app/token' | cut -d' ' -f1 > /seen-sha-app && \
           stat -c '%a %u:%g' /etc/app/token > /seen-mode-app\n\
         RUN --mount=type=secret,id=tok,env=TOKEN sh -c 'printf %s \"$TOKEN\" | sha256sum' | cut -d' ' -f1 > /seen-sha-env\n\
         RUN --mount=type=secret,id=envtok cat /run/secrets/envtok | sha256sum | cut -d' ' -f1 > /seen-sha-cli-env\n\
         RUN --mount=type=secret,id=absent ls /run/secrets > /seen-absent 2>&1 || echo none > /seen-absent\n",
        &[],
    );
    let root = t.path().join("root");
    let archive = t.path().join("img.tar");
    // A second secret from rbuild's environment (--secret id=..,env=VAR).
    let env_value = "env-s3cr3t-41b7e9";
    let env_sha = sh(Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {env_value} | sha256sum")));
    let env_sha = env_sha.split_whitespace().next().unwrap();
    let r = ok(rbuild_env(
        &root,
        &[
            "--secret",
            "id=envtok,env=RBUILD_TEST_SECRET",
            "--secret",
            &format!("id=tok,src={}", secret.display()),
            "-o",
            &format!(
                "type=docker,dest={},compression=uncompressed",
                archive.display()
            ),
            ctx.to_str().unwrap(),
        ],
        &[("RBUILD_TEST_SECRET", env_value)],
    ));
    assert!(!r.stderr.contains(value), "secret in the build output");
    let dir = t.path().join("unpacked");
    let layers = unpack_archive(&archive, &dir);
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for l in &layers {
        sh(Command::new("tar").arg("-xf").arg(l).arg("-C").arg(&rootfs));
        // Nothing of the secret mount points leaks into a layer: not /run/secrets, not the target.
        for line in tar_listing(l) {
            let name = line.rsplit(' ').next().unwrap();
            assert!(
                !name.starts_with("run") && !name.starts_with("etc/app"),
                "{line}"
            );
        }
    }
    let read = |f: &str| std::fs::read_to_string(rootfs.join(f)).unwrap();
    assert_eq!(read("seen-sha").trim(), sha, "/run/secrets/tok content");
    assert_eq!(read("seen-mode").trim(), "400 0:0");
    assert_eq!(read("seen-ro").trim(), "ro", "the secret file was writable");
    assert_eq!(read("seen-sha-app").trim(), sha);
    assert_eq!(read("seen-mode-app").trim(), "440 1000:50");
    assert_eq!(read("seen-sha-env").trim(), sha, "secret as env var");
    assert_eq!(read("seen-sha-cli-env").trim(), env_sha, "--secret env=");
    assert_eq!(
        read("seen-absent").trim(),
        "none",
        "an absent secret mounts nothing"
    );
    // Not in any layer blob, the config (with its history), the manifest: every byte of the archive.
    let bytes = std::fs::read(&archive).unwrap();
    assert!(!contains(&bytes, value.as_bytes()), "secret in the image");
    assert!(
        !contains(&bytes, env_value.as_bytes()),
        "env secret in the image"
    );
    let config = std::fs::read_to_string(
        dir.join(
            serde_json::from_slice::<Value>(&std::fs::read(dir.join("manifest.json")).unwrap())
                .unwrap()[0]["Config"]
                .as_str()
                .unwrap(),
        ),
    )
    .unwrap();
    // History records the command (BuildKit leaves the --mount flags out) but never the value.
    assert!(config.contains("sha256sum /run/secrets/tok"), "{config}");
    // Not in the store either (blobs, layer dirs, cache records, snapshots).
    for e in walkdir::WalkDir::new(&root).into_iter().flatten() {
        if e.file_type().is_file() {
            let b = std::fs::read(e.path()).unwrap();
            assert!(
                !contains(&b, value.as_bytes()) && !contains(&b, env_value.as_bytes()),
                "secret stored in {}",
                e.path().display()
            );
        }
    }
    // A required secret that was not given fails the step, naming the id.
    let ctx2 = busybox_context(
        &t.path().join("ctx2"),
        "RUN --mount=type=secret,id=needed,required=true true\n",
        &[],
    );
    let r = rbuild(&root, &[ctx2.to_str().unwrap()]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("Dockerfile:3") && r.stderr.contains("\"needed\""),
        "{}",
        r.stderr
    );
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}

#[test]
fn user_workdir_env_arg_network_and_mounts_in_run() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_context(
        &t.path().join("ctx"),
        "ARG GREETING=hello\n\
         ENV FOO=bar\n\
         WORKDIR /work/dir\n\
         RUN echo \"$GREETING $FOO $(pwd)\" > /env-out\n\
         USER app\n\
         RUN id > /tmp/id-out && pwd > /tmp/pwd-out\n\
         USER 1:50\n\
         RUN id -u > /tmp/uid-out && id -g > /tmp/gid-out\n\
         USER root\n\
         RUN --network=none cat /proc/net/dev > /netdev\n\
         RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/f && grep ' /scratch tmpfs ' /proc/mounts > /tmpfs-seen\n\
         RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/f > /bound\n\
         RUN --mount=type=cache,target=/var/cache/c echo run >> /var/cache/c/log && cat /var/cache/c/log > /cache-seen\n",
        &[("data/f", "from-context")],
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    let oci = t.path().join("oci");
    ok(rbuild(
        &root,
        &[
            "--build-arg",
            "GREETING=hi",
            "-o",
            &format!("type=local,dest={}", out.display()),
            "-o",
            &format!("type=oci,dest={},tar=false", oci.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("env-out"), "hi bar /work/dir\n");
    let id = read("tmp/id-out");
    assert!(
        id.starts_with("uid=1000(app) gid=1000(app) ") && id.contains("50(staff)"),
        "{id}"
    );
    assert_eq!(read("tmp/pwd-out"), "/work/dir\n");
    assert!(out.join("work/dir").is_dir(), "WORKDIR not created");
    assert_eq!(read("tmp/uid-out"), "1\n");
    assert_eq!(read("tmp/gid-out"), "50\n");
    // network=none: only the loopback interface exists.
    let ifaces: Vec<String> = read("netdev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{}", read("netdev"));
    assert!(read("tmpfs-seen").contains("tmpfs"));
    assert!(
        !out.join("scratch/f").exists(),
        "tmpfs content in the image"
    );
    assert_eq!(read("bound"), "from-context");
    assert!(!out.join("mnt/data").exists(), "bind content in the image");
    assert_eq!(read("cache-seen"), "run\n");
    assert!(
        !out.join("var/cache/c/log").exists(),
        "cache content in the image"
    );
    // Build args reach RUN but not the config; ENV does.
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        oci.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let m: Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(blob(m["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let env = cfg["config"]["Env"].to_string();
    assert!(
        env.contains("FOO=bar") && !env.contains("GREETING"),
        "{env}"
    );
    assert_eq!(cfg["config"]["User"], "root");
    assert_eq!(cfg["config"]["WorkingDir"], "/work/dir");

    // --network none for the whole build.
    let ctx2 = busybox_context(
        &t.path().join("ctx2"),
        "RUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces\n",
        &[],
    );
    let out2 = t.path().join("out2");
    ok(rbuild(
        &root,
        &[
            "--network",
            "none",
            "-o",
            &format!("type=local,dest={}", out2.display()),
            ctx2.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(out2.join("ifaces")).unwrap(),
        "lo\n"
    );
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}

#[test]
fn independent_stages_run_in_parallel_and_only_needed_stages_build() {
    if !need_cores(2) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // Stages a and b each wait for the other's marker in a shared cache mount: built one after the
    // other they would both give up (exit 9). `broken` is not needed by the target.
    let wait_for = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/sync touch /sync/{me}; i=0; \
             while [ ! -e /sync/{other} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.05; done; \
             echo {me} > /{me}\n"
        )
    };
    let df = format!(
        "FROM scratch AS base\nADD rootfs.tar /\n\
         FROM base AS broken\nRUN echo broken-stage-ran; exit 3\n\
         FROM base AS a\n{}\
         FROM base AS b\n{}\
         FROM base AS final\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n\
         RUN --mount=type=bind,from=b,target=/mnt/b cat /mnt/b/b > /b-via-bind && \
           (touch /mnt/b/x 2>/dev/null || echo ro > /bind-ro)\n\
         FROM final AS uses-broken\nCOPY --from=broken /etc/motd /motd\n",
        wait_for("a", "b"),
        wait_for("b", "a")
    );
    let ctx = context(&t.path().join("ctx"), &df, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    let out = t.path().join("out");
    let r = ok(rbuild(
        &root,
        &[
            "--target",
            "final",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(out.join("b")).unwrap(), "b\n");
    assert_eq!(
        std::fs::read_to_string(out.join("b-via-bind")).unwrap(),
        "b\n"
    );
    assert!(
        out.join("bind-ro").exists(),
        "a bind from a stage was writable"
    );
    assert!(
        !out.join("mnt/b").exists(),
        "the bind mount point stayed in the image"
    );
    assert!(
        !r.stderr.contains("broken-stage-ran") && !r.stderr.contains("[broken"),
        "an unneeded stage was built:\n{}",
        r.stderr
    );
    // Without --target the last stage needs `broken`, and its failure fails the build.
    let r = rbuild(&root, &[ctx.to_str().unwrap()]);
    assert_eq!(r.status, 3, "{}", r.stderr);
    assert!(r.stderr.contains("broken-stage-ran"), "{}", r.stderr);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}

#[test]
fn a_failing_stage_cancels_the_others() {
    if !need_cores(2) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let marker = "3173";
    // `failing` fails only once `slow` is running (it waits for slow's marker in a shared cache).
    let ctx = context(
        &t.path().join("ctx"),
        &format!(
            "FROM scratch AS base\nADD rootfs.tar /\n\
             FROM base AS slow\nRUN --mount=type=cache,id=sig,target=/sync touch /sync/slow; sleep {marker}\n\
             FROM base AS failing\nRUN --mount=type=cache,id=sig,target=/sync i=0; \
               while [ ! -e /sync/slow ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.05; done; \
               echo failing-now; exit 5\n\
             FROM base\nCOPY --from=slow /etc/motd /a\nCOPY --from=failing /etc/motd /b\n"
        ),
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    // The slow stage would sleep for an hour: the build only ends because the failure cancels it.
    let (code, stderr) = run_to_exit(&root, &[ctx.as_os_str()]);
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains("failing-now") && stderr.contains("CANCELED"),
        "{stderr}"
    );
    wait_gone(marker);
    assert_nothing_mounted_under(&root);
    assert_store_consistent(&root);
}

#[test]
fn parallel_and_serial_builds_give_the_same_image() {
    let t = tempfile::tempdir().unwrap();
    let df = "FROM scratch AS base\nADD rootfs.tar /\n\
              FROM base AS one\nRUN mkdir /out && echo one > /out/one && ln -s one /out/link\n\
              FROM base AS two\nRUN mkdir /out && echo two > /out/two && chmod 4755 /out/two\n\
              FROM base AS three\nWORKDIR /w\nRUN echo three > three\n\
              FROM base\nCOPY --from=one /out/ /one/\nCOPY --from=two /out/ /two/\nCOPY --from=three /w/three /three\n";
    let ctx = context(&t.path().join("ctx"), df, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    let mut ids = Vec::new();
    for jobs in ["1", "4"] {
        let r = ok(rbuild_env(
            &t.path().join(format!("root{jobs}")),
            &["--jobs", jobs, ctx.to_str().unwrap()],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ));
        ids.push(r.stdout.trim().to_string());
    }
    assert!(ids[0].starts_with("sha256:"), "{ids:?}");
    assert_eq!(
        ids[0], ids[1],
        "--jobs 1 and --jobs 4 built different images"
    );
}

#[test]
fn cache_mount_sharing_locked_serializes_and_private_separates() {
    if !need_cores(2) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // Each stage logs start/end around a pause into a `locked` cache: the log never interleaves.
    // Each also writes its name into a `private` cache and reads it back after the pause: no other
    // stage's write is seen.
    let stage = |n: &str| {
        format!(
            "FROM base AS s{n}\n\
             RUN --mount=type=cache,id=pv,sharing=private,target=/p echo {n} > /p/who; sleep 1; cat /p/who > /who\n\
             RUN --mount=type=cache,id=lk,sharing=locked,target=/c echo start >> /c/log; sleep 0.3; echo end >> /c/log\n"
        )
    };
    let df = format!(
        "FROM scratch AS base\nADD rootfs.tar /\n{}{}{}\
         FROM base\nCOPY --from=s1 /who /w1\nCOPY --from=s2 /who /w2\nCOPY --from=s3 /who /w3\n\
         RUN --mount=type=cache,id=lk,target=/c cp /c/log /log\n",
        stage("1"),
        stage("2"),
        stage("3")
    );
    let ctx = context(&t.path().join("ctx"), &df, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    let root = t.path().join("root");
    let out = t.path().join("out");
    ok(rbuild(
        &root,
        &[
            "--jobs",
            "3",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let log = std::fs::read_to_string(out.join("log")).unwrap();
    assert_eq!(
        log,
        "start\nend\n".repeat(3),
        "locked cache used concurrently"
    );
    for n in ["1", "2", "3"] {
        assert_eq!(
            std::fs::read_to_string(out.join(format!("w{n}"))).unwrap(),
            format!("{n}\n"),
            "a private cache was shared"
        );
    }
    assert_nothing_mounted_under(&root);
}

#[test]
fn loaded_images_are_bases_and_their_layers_unpack_once() {
    let t = tempfile::tempdir().unwrap();
    // The base image comes from another store, as a docker-archive and as an OCI layout tar.
    let ctx = busybox_context(
        &t.path().join("base"),
        "RUN echo from-base > /base-file\nENV BASE=1\n",
        &[],
    );
    let docker_tar = t.path().join("base-docker.tar");
    let oci_tar = t.path().join("base-oci.tar");
    ok(rbuild(
        &t.path().join("root-a"),
        &[
            "-t",
            "base:1",
            "-o",
            &format!("type=docker,dest={}", docker_tar.display()),
            "-o",
            &format!("type=oci,dest={}", oci_tar.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let df = "FROM base:1\nRUN cat /base-file > /seen && echo $BASE >> /seen\n";
    for (name, archive) in [("docker", &docker_tar), ("oci", &oci_tar)] {
        let root = t.path().join(format!("root-{name}"));
        let ctx = context(&t.path().join(format!("ctx-{name}")), df, &[]);
        let r = ok(rbuild(&root, &["load", "-i", archive.to_str().unwrap()]));
        assert!(r.stdout.contains("base:1"), "{}", r.stdout);
        let snapshots = |root: &Path| {
            std::fs::read_dir(root.join("overlay2"))
                .unwrap()
                .flatten()
                .filter(|e| !["l", "empty"].contains(&e.file_name().to_str().unwrap()))
                .count()
        };
        assert_eq!(
            snapshots(&root),
            2,
            "one snapshot per base layer after load"
        );
        let out = t.path().join(format!("out-{name}"));
        ok(rbuild(
            &root,
            &[
                "--no-cache",
                "-o",
                &format!("type=local,dest={}", out.display()),
                ctx.to_str().unwrap(),
            ],
        ));
        assert_eq!(
            std::fs::read_to_string(out.join("seen")).unwrap(),
            "from-base\n1\n"
        );
        // The RUN added one snapshot; the base layers were not unpacked again.
        assert_eq!(snapshots(&root), 3);
        assert_nothing_mounted_under(&root);
        assert_store_consistent(&root);
    }
}

#[test]
fn heredoc_run_bodies_execute() {
    let t = tempfile::tempdir().unwrap();
    let ctx = busybox_context(
        &t.path().join("ctx"),
        "ENV FOO=foo\n\
         RUN <<EOF\n\
         echo one > /h1\n\
         echo two >> /h1\n\
         EOF\n\
         RUN cat <<EOF > /h2\n\
         value $FOO\n\
         EOF\n\
         RUN <<-EOT sh -c 'cat > /h3; echo \"$0\" >> /h3'\n\
         \tindented\n\
         \tEOT\n\
         RUN set -e; <<A cat > /h4; <<B cat >> /h4\n\
         first\n\
         A\n\
         second\n\
         B\n",
        &[],
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    ok(rbuild(
        &root,
        &[
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    ));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("h1"), "one\ntwo\n");
    assert_eq!(read("h2"), "value foo\n");
    assert_eq!(read("h3"), "indented\nsh\n");
    assert_eq!(read("h4"), "first\nsecond\n");
    assert_nothing_mounted_under(&root);
}

#[test]
fn locked_caches_taken_crosswise_do_not_deadlock() {
    let t = tempfile::tempdir().unwrap();
    // Two stages lock caches x and y in opposite orders at the same time; a third RUN mounts one
    // locked cache twice. Taken in Dockerfile order, the locks could deadlock; rbuild takes them in id
    // order and shares one lock per id within a RUN.
    let lx = "--mount=type=cache,id=x,sharing=locked,target=/x";
    let ly = "--mount=type=cache,id=y,sharing=locked,target=/y";
    let ctx = busybox_context(
        &t.path().join("ctx"),
        &format!(
            "FROM scratch AS s1\nCOPY --from=0 / /\nRUN {lx} {ly} echo 1 >> /x/log; sleep 0.5; echo 1 > /s1\n\
             FROM scratch AS s2\nCOPY --from=0 / /\nRUN {ly} {lx} echo 2 >> /x/log; sleep 0.5; echo 2 > /s2\n\
             FROM s1\nCOPY --from=s2 /s2 /s2\n\
             RUN {lx} --mount=type=cache,id=z,sharing=locked,target=/a --mount=type=cache,id=z,sharing=locked,target=/b \
               echo same > /a/f && cat /b/f > /twice && cat /x/log > /log\n"
        ),
        &[],
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (code, stderr) = run_to_exit(
        &root,
        &[
            "--jobs".as_ref(),
            "2".as_ref(),
            "-o".as_ref(),
            dest.as_ref(),
            ctx.as_os_str(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("twice")).unwrap(),
        "same\n"
    );
    let log = std::fs::read_to_string(out.join("log")).unwrap();
    assert!(log == "1\n2\n" || log == "2\n1\n", "{log:?}");
    assert_nothing_mounted_under(&root);
}
