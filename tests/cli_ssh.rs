//! `--ssh` with `RUN --mount=type=ssh` (issue 20): a real `ssh-agent` holding a generated key is
//! forwarded into the RUN, where the host's `ssh-add` (copied in with its libraries) lists it.
//! The socket never reaches the layer and the agent's keys never reach the cache key.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `ssh-add` and the shared objects it loads, at their host paths under `dir`.
fn copy_ssh_add(dir: &Path) {
    let bin = Path::new("/usr/bin/ssh-add");
    let ldd = sh(Command::new("ldd").arg(bin));
    let mut files = vec![bin.to_path_buf()];
    for line in ldd.lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(std::path::PathBuf::from);
        files.extend(path);
    }
    for f in files {
        let dest = dir.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

fn keygen(path: &Path, comment: &str) {
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path));
}

/// An `ssh-agent -D` on `sock` holding `key`; killed on drop.
struct Agent(Child);

impl Agent {
    fn start(sock: &Path, key: &Path) -> Agent {
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(sock)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The first line is printed once the socket listens.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        sh(Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", sock));
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const DOCKERFILE: &str = "FROM scratch\nADD rootfs.tar /\nCOPY tools/ /\n\
    RUN --mount=type=ssh ssh-add -l > /listed; echo \"$SSH_AUTH_SOCK\" > /sock; \
    test -S /run/buildkit/ssh_agent.0 && echo socket > /seen\n\
    RUN --mount=type=ssh,target=/tmp/agent,uid=1000,gid=50,mode=0640 \
    stat -c %u:%g:%a /tmp/agent > /owner; echo \"$SSH_AUTH_SOCK\" > /sock2\n";

#[test]
fn ssh_mount_sees_the_agents_key_and_leaves_no_trace() {
    if !require(have("ssh-agent") && have("ssh-add"), "openssh-client") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(&t.path().join("ctx"), DOCKERFILE, &[]);
    rootfs_archive(&ctx, "rootfs.tar");
    copy_ssh_add(&ctx.join("tools"));
    let (key1, key2) = (t.path().join("key1"), t.path().join("key2"));
    keygen(&key1, "rbuild-test-key-one");
    keygen(&key2, "rbuild-test-key-two");
    let sock = t.path().join("agent.sock");
    let _agent = Agent::start(&sock, &key1);

    let build = |out: &str, ssh: &str, extra: &[&str]| {
        let dest = format!("type=local,dest={}", t.path().join(out).display());
        let mut args = vec!["build", "--progress", "plain", "--ssh", ssh, "-o", &dest];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        ok(rbuild_env(
            &root,
            &args,
            &[("SSH_AUTH_SOCK", sock.to_str().unwrap())],
        ))
    };
    let read = |out: &str, f: &str| std::fs::read_to_string(t.path().join(out).join(f)).unwrap();
    // `--ssh default`: the agent of $SSH_AUTH_SOCK.
    build("one", "default", &[]);
    assert!(
        read("one", "listed").contains("rbuild-test-key-one"),
        "{}",
        read("one", "listed")
    );
    assert_eq!(read("one", "sock"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(read("one", "seen"), "socket\n");
    // target, uid, gid and mode of the mount, and SSH_AUTH_SOCK naming it.
    assert_eq!(read("one", "owner"), "1000:50:640\n");
    assert_eq!(read("one", "sock2"), "/tmp/agent\n");
    // The socket and its mount point are not in the layer.
    assert!(!t.path().join("one/run/buildkit").exists());
    assert!(!t.path().join("one/run").exists());
    assert!(!t.path().join("one/tmp/agent").exists());

    // Another key: same cache key (the step is CACHED, the old output kept).
    let r = build("two", &format!("default={}", key2.display()), &[]);
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
    assert!(read("two", "listed").contains("rbuild-test-key-one"));
    // Run again: a KEYFILE is loaded into rbuild's own agent, and that is what RUN sees.
    build(
        "three",
        &format!("default={}", key2.display()),
        &["--no-cache"],
    );
    let listed = read("three", "listed");
    assert!(listed.contains("rbuild-test-key-two"), "{listed}");
    assert!(!listed.contains("rbuild-test-key-one"), "{listed}");
}

#[test]
fn required_ssh_mount_without_an_agent_fails() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let ctx = context(
        &t.path().join("ctx"),
        "FROM scratch\nADD rootfs.tar /\nRUN --mount=type=ssh,id=deploy,required true\n",
        &[],
    );
    rootfs_archive(&ctx, "rootfs.tar");
    let r = rbuild(&root, &["build", ctx.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("no SSH key \"deploy\""), "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    // Not required: the RUN runs without it, and without SSH_AUTH_SOCK.
    let ctx2 = context(
        &t.path().join("ctx2"),
        "FROM scratch\nADD rootfs.tar /\nRUN --mount=type=ssh test -z \"$SSH_AUTH_SOCK\"\n",
        &[],
    );
    rootfs_archive(&ctx2, "rootfs.tar");
    ok(rbuild(&root, &["build", ctx2.to_str().unwrap()]));
}
