//! Rootless mode (issue 17, docs/rootless.md): rbuild run by an ordinary user with subordinate
//! ids builds the same bytes as root, with each snapshotter; each setup error is one line.
//!
//! CI runs as root: the tests make an unprivileged user (idempotently, `useradd` with a
//! `/etc/subuid` and `/etc/subgid` range) and run rbuild as that user through `setpriv`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const USER: &str = "rbuild-rootless";
const EPOCH: &str = "1700000000";

/// What every test here needs; `false` means skip (fails under RBUILD_REQUIRE_TOOLS=1).
fn ready() -> bool {
    need("setpriv") && need("useradd") && need("newuidmap") && need("newgidmap")
}

/// The test user, made once; its uid.
fn test_user() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        let exists = Command::new("id").arg("-u").arg(USER).output().unwrap();
        if !exists.status.success() {
            let out = Command::new("useradd")
                .args(["--no-create-home", "--shell", "/bin/sh", USER])
                .output()
                .unwrap();
            // A parallel test binary may have made it just now.
            assert!(
                out.status.success() || String::from_utf8_lossy(&out.stderr).contains("exists"),
                "useradd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
                let flag = if file.ends_with("uid") {
                    "--add-subuids"
                } else {
                    "--add-subgids"
                };
                sh(Command::new("usermod").args([flag, "600000-665535", USER]));
            }
        }
        let id = sh(Command::new("id").arg("-u").arg(USER));
        id.trim().parse().unwrap()
    })
}

fn setpriv() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        PathBuf::from(sh(Command::new("sh").args(["-c", "command -v setpriv"])).trim())
    })
    .clone()
}

/// A scratch dir every user can read: the user's store goes here, and a copy of the binary
/// (the build's `target/` may not be reachable by others).
struct Scratch {
    dir: PathBuf,
    bin: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rbuild-rl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("rbuild");
        // Copied by `cp`, not by this process: a write fd of ours would be inherited by the
        // children other test threads fork meanwhile, and exec would fail with ETXTBSY.
        sh(Command::new("cp").arg(rbuild_bin()).arg(&bin));
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir, bin }
    }

    /// A dir owned by the test user (its store).
    fn user_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let uid = test_user();
        std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
        d
    }

    /// Runs the copied rbuild as `user` (None: root) with `env`.
    fn run(&self, user: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = match user {
            Some(u) => {
                // Absolute: the child's PATH may be changed by `env`.
                let mut c = Command::new(setpriv());
                c.args(["--reuid", u, "--regid", u, "--init-groups"])
                    .arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env_remove("XDG_DATA_HOME")
            .env_remove("RBUILD_SNAPSHOTTER")
            .env("SOURCE_DATE_EPOCH", EPOCH);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Builds `ctx` into the store at `root` and returns the image id (`--iidfile`).
    fn build(&self, user: Option<&str>, root: &Path, ctx: &Path, env: &[(&str, &str)]) -> String {
        // Inside the store dir, which the building user owns.
        std::fs::create_dir_all(root).unwrap();
        let iid = root.join("last.iid");
        let _ = std::fs::remove_file(&iid);
        let out = self.run(
            user,
            &[
                "--root",
                root.to_str().unwrap(),
                "build",
                "--network=none",
                "--iidfile",
                iid.to_str().unwrap(),
                ctx.to_str().unwrap(),
            ],
            env,
        );
        assert!(
            out.status.success(),
            "build as {user:?} {env:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&iid).unwrap().trim().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A context readable by everyone: the busybox rootfs archive, a file, a Dockerfile.
fn make_context(s: &Scratch, name: &str, dockerfile: &str) -> PathBuf {
    let dir = s.dir.join(name);
    context(&dir, dockerfile, &[("hello.txt", "hello\n")]);
    rootfs_archive(&dir, "rootfs.tar");
    sh(Command::new("chmod").arg("-R").arg("a+rX").arg(&dir));
    dir
}

/// The key builds of issue 17, one Dockerfile each.
const CASES: &[(&str, &str)] = &[
    ("add-rootfs", "FROM scratch\nADD rootfs.tar /\n"),
    (
        "copy-chown",
        "FROM scratch\nADD rootfs.tar /\nCOPY --chown=1234:5678 hello.txt /srv/\nCOPY --chown=nobody hello.txt /srv/n.txt\n",
    ),
    (
        "run-user-chown",
        "FROM scratch\nADD rootfs.tar /\n\
         RUN echo app:x:2000:2000::/home/app:/bin/sh >> /etc/passwd && echo app:x:2000: >> /etc/group \
         && mkdir -p /data/sub && echo x > /data/sub/f && chown -R app:app /data && chown 3000:4000 /data/sub/f \
         && rm /bin/ls && chmod 4755 /bin/busybox\n",
    ),
    (
        "multi-stage",
        "FROM scratch AS base\nADD rootfs.tar /\nRUN mkdir /out && echo built > /out/a && chown 42:43 /out/a\n\
         FROM scratch\nADD rootfs.tar /\nCOPY --from=base /out /out\nRUN rm -r /usr && mkdir /usr\n",
    ),
    (
        "cache-mount",
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=cache,target=/cache,uid=1000 echo c > /cache/c && cp /cache/c /c && chown 1000 /c\n",
    ),
];

#[test]
fn rootless_builds_have_the_digests_of_root_builds() {
    if !ready() {
        return;
    }
    test_user();
    let s = Scratch::new("digests");
    let root_store = s.dir.join("root-store");
    let user_store = s.user_dir("user-store");
    for (name, dockerfile) in CASES {
        let ctx = make_context(&s, name, dockerfile);
        let as_root = s.build(None, &root_store, &ctx, &[]);
        let as_user = s.build(Some(USER), &user_store, &ctx, &[]);
        assert_eq!(as_user, as_root, "case {name}: rootless digest differs");
    }
    // The user's store holds files of many ids, owned through the subordinate range on the host.
    let mut owners = std::collections::BTreeSet::new();
    for e in walk(&user_store.join("overlay2")) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(&e) {
            owners.insert(m.uid());
        }
    }
    let uid = test_user();
    assert!(owners.contains(&uid), "{owners:?}");
    assert!(
        owners.iter().any(|o| *o >= 100_000),
        "no file owned by a subordinate id: {owners:?}"
    );
    assert!(
        !owners.contains(&0),
        "a file of the user's store is owned by host root"
    );
    assert_nothing_mounted_under(&s.dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            }
        }
    }
    out
}

#[test]
fn every_snapshotter_gives_the_same_digest() {
    if !ready() || !need("fuse-overlayfs") {
        return;
    }
    test_user();
    let s = Scratch::new("snapshotters");
    // One build that deletes, replaces a directory and chowns: whiteouts and opaque dirs.
    let ctx = make_context(
        &s,
        "ctx",
        "FROM scratch\nADD rootfs.tar /\nRUN rm -r /usr && mkdir /usr && echo x > /usr/x && chown 7:8 /usr/x && rm /bin/ls\n\
         RUN --mount=type=cache,target=/cache touch /cache/t && mkdir -p /a/b && touch /a/b/c\n",
    );
    let reference = s.build(None, &s.dir.join("root"), &ctx, &[]);
    for (user, driver, name) in [
        (Some(USER), "overlay", "overlayfs (userxattr)"),
        (Some(USER), "copy", "copy"),
        (None, "copy", "copy"),
        // /dev/fuse is root's only on most CI hosts; fuse-overlayfs as root runs the same code.
        (None, "fuse-overlayfs", "fuse-overlayfs"),
    ] {
        let store = match user {
            Some(_) => s.user_dir(&format!("user-{driver}")),
            None => s.dir.join(format!("root-{driver}")),
        };
        let env = [("RBUILD_SNAPSHOTTER", driver)];
        let info = s.run(user, &["--root", store.to_str().unwrap(), "info"], &env);
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(
            text.contains(&format!("Snapshotter: {name}\n")),
            "{user:?} {driver}: {text}{}",
            String::from_utf8_lossy(&info.stderr)
        );
        let id = s.build(user, &store, &ctx, &env);
        assert_eq!(id, reference, "{user:?} with {driver}");
    }
    assert_nothing_mounted_under(&s.dir);
}

#[test]
fn rootless_info_and_default_root() {
    if !ready() {
        return;
    }
    test_user();
    let s = Scratch::new("info");
    let home = s.user_dir("home");
    let out = s.run(Some(USER), &["info"], &[("HOME", home.to_str().unwrap())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("Root: {}/.local/share/rbuild\n", home.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("Rootless: yes (user {USER}")),
        "{text}"
    );
    assert!(text.contains("UID map: 0 "), "{text}");
    assert!(
        text.contains("Snapshotter: overlayfs (userxattr)"),
        "{text}"
    );
    let xdg = s.user_dir("xdg");
    let out = s.run(
        Some(USER),
        &["info"],
        &[("XDG_DATA_HOME", xdg.to_str().unwrap())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("Root: {}/rbuild\n", xdg.display())),
        "{text}"
    );
    // Root is not rootless.
    let out = s.run(
        None,
        &["--root", s.dir.join("r").to_str().unwrap(), "info"],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Rootless: no"));
}

/// One line on stderr, naming the fix.
fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn setup_errors_are_one_line_naming_the_fix() {
    if !ready() {
        return;
    }
    test_user();
    let s = Scratch::new("errors");
    // `nobody` (65534) has no subordinate ids.
    let out = s.run(Some("65534"), &["info"], &[]);
    let err = one_error_line(&out);
    assert!(
        err.contains("no subordinate uid range for user nobody in /etc/subuid")
            && err.contains("usermod --add-subuids"),
        "{err}"
    );
    // No newuidmap on PATH.
    let out = s.run(Some(USER), &["info"], &[("PATH", "/nonexistent")]);
    let err = one_error_line(&out);
    assert!(
        err.contains("newuidmap not found in PATH") && err.contains("uidmap"),
        "{err}"
    );
    // fuse-overlayfs forced without a usable /dev/fuse (root's only here, or absent).
    let fuse_open = s.run(
        Some(USER),
        &["--root", s.user_dir("f").to_str().unwrap(), "info"],
        &[("RBUILD_SNAPSHOTTER", "fuse-overlayfs")],
    );
    if !fuse_usable_by_others() {
        let err = one_error_line(&fuse_open);
        assert!(
            err.contains("/dev/fuse") && err.contains("--device /dev/fuse"),
            "{err}"
        );
    }
    // An unknown snapshotter name.
    let out = s.run(
        Some(USER),
        &["--root", s.user_dir("g").to_str().unwrap(), "info"],
        &[("RBUILD_SNAPSHOTTER", "zfs")],
    );
    let err = one_error_line(&out);
    assert!(err.contains("RBUILD_SNAPSHOTTER=zfs"), "{err}");
}

fn fuse_usable_by_others() -> bool {
    std::fs::metadata("/dev/fuse").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006)
}

/// A rootless RUN's default network (slirp4netns/pasta, started from outside the RUN's network
/// namespace) comes up where the user may open `/dev/net/tun` (Debian ships it 0666), and fails
/// with one line naming it where not (this CI host keeps it root's).
#[test]
fn rootless_default_network() {
    if !ready() || !need("slirp4netns") {
        return;
    }
    test_user();
    let s = Scratch::new("net");
    let ctx = make_context(
        &s,
        "ctx",
        "FROM scratch\nADD rootfs.tar /\nRUN ip addr show tap0 | grep -q 10.0.2.100 && grep -q 10.0.2.3 /etc/resolv.conf\n",
    );
    let store = s.user_dir("store");
    let out = s.run(
        Some(USER),
        &[
            "--root",
            store.to_str().unwrap(),
            "build",
            "--no-cache",
            ctx.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let tun_open =
        std::fs::metadata("/dev/net/tun").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006);
    if tun_open {
        assert!(out.status.success(), "{err}");
    } else {
        assert!(!out.status.success());
        let line = err
            .lines()
            .find(|l| l.starts_with("rbuild: error:"))
            .unwrap_or_default();
        assert!(
            line.contains("slirp4netns exited before the network was ready")
                && line.contains("/dev/net/tun"),
            "{err}"
        );
    }
    assert_nothing_mounted_under(&s.dir);
}

/// rbuild in a container of the shared Docker engine, without `--privileged`, as a non-root user:
/// an image made from host files (busybox-static, the stripped binary, newuidmap/newgidmap with
/// file capabilities and their libraries; no Rust is compiled), building an image whose digest
/// equals the root build's. The options are the minimal set docs/rootless.md explains.
#[test]
fn rootless_in_an_unprivileged_container() {
    if !ready() || !need_docker() || !need("setcap") || !need("strip") {
        return;
    }
    if !need("docker-registry") || !need("skopeo") {
        return;
    }
    let s = Scratch::new("container");
    let reg = common::registry::Registry::start();
    let tag = format!("rbuild-rootless-test:{}", std::process::id());
    let ctx = make_context(&s, "ctx", CASES[2].1);
    let reference = s.build(None, &s.dir.join("root"), &ctx, &[]);
    let script = r#"
set -euo pipefail
W=$SCRATCH/img; R=$W/rootfs; mkdir -p $R
"$REPO/testdata/make-busybox-rootfs.sh" $R >/dev/null
mkdir -p $R/usr/local/bin $R/usr/bin $R/home/build $R/tmp
strip -o $R/usr/local/bin/rbuild "$BIN"
cp /usr/bin/newuidmap /usr/bin/newgidmap $R/usr/bin/
chmod 755 $R/usr/bin/newuidmap $R/usr/bin/newgidmap
# File capabilities, not set-uid: see docs/rootless.md.
setcap cap_setuid,cap_setfcap+ep $R/usr/bin/newuidmap
setcap cap_setgid+ep $R/usr/bin/newgidmap
for l in $(ldd /usr/bin/newuidmap "$BIN" | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
  mkdir -p $R$(dirname $l); cp -L $l $R$l
done
echo 'build:x:1500:1500::/home/build:/bin/sh' >> $R/etc/passwd
echo 'build:x:1500:' >> $R/etc/group
echo 'build:100000:65536' > $R/etc/subuid; cp $R/etc/subuid $R/etc/subgid
chown 1500:1500 $R/home/build; chmod 1777 $R/tmp
tar --numeric-owner --xattrs --xattrs-include=security.capability -C $R -cf $W/rootfs.tar .
rm -rf $R
printf 'FROM scratch\nADD rootfs.tar /\nUSER build\nWORKDIR /home/build\nENV HOME=/home/build\nENTRYPOINT ["/usr/local/bin/rbuild"]\n' > $W/Dockerfile
"$BIN" --root $W/store build -q -o type=docker,dest=$W/img.tar -t "$TAG" $W >/dev/null
rm -rf $W/store $W/rootfs.tar
docker load -i $W/img.tar >/dev/null
rm $W/img.tar
mkdir -p $SCRATCH/out $SCRATCH/cstore; chown 1500:1500 $SCRATCH/out $SCRATCH/cstore
# --network host only to reach the test's registry on 127.0.0.1.
RUN=(docker run --rm --network host --security-opt seccomp=unconfined --security-opt systempaths=unconfined
  -v "$CTX":/ctx:ro -v $SCRATCH/out:/out -v $SCRATCH/cstore:/home/build/.local/share/rbuild
  -e SOURCE_DATE_EPOCH=1700000000 "$TAG")
"${RUN[@]}" build --network=none -t "$REG/rootless:1" --iidfile /out/iid -o type=oci,dest=/out/img.tar /ctx
"${RUN[@]}" --insecure-registry "$REG" push "$REG/rootless:1"
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("SCRATCH", &s.dir)
        .env("REPO", repo_dir())
        .env("BIN", &s.bin)
        .env("TAG", &tag)
        .env("CTX", &ctx)
        .env("REG", reg.addr())
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", &tag]).output();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let iid = std::fs::read_to_string(s.dir.join("out/iid")).unwrap();
    assert_eq!(
        iid.trim(),
        reference,
        "the container's build differs from root's"
    );
    // The pushed image is the same image. The push carries the default (min) provenance, so
    // the tag names an index: the image manifest, then its attestation manifest.
    let raw = |r: &str| {
        sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/rootless{r}", reg.addr()),
        ]))
    };
    let index = raw(":1");
    let parsed: serde_json::Value = serde_json::from_str(&index).unwrap();
    let first = parsed["manifests"][0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("pushed index without manifests: {index}"));
    assert!(
        index.contains("attestation-manifest"),
        "pushed index: {index}"
    );
    let manifest = raw(&format!("@{first}"));
    assert!(manifest.contains(iid.trim()), "pushed manifest: {manifest}");
    let listing = tar_listing(&s.dir.join("out/img.tar")).join("\n");
    assert!(
        listing.contains("index.json") && listing.contains("oci-layout"),
        "no OCI archive written: {listing}"
    );
}
