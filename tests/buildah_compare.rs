//! The same Dockerfile built by rbuild and by `buildah bud` (runc, overlay, --layers, network none):
//! both images are exported as OCI layouts, flattened with `umoci unpack`, and the trees must agree on
//! names, types, modes (setuid/setgid/sticky included), owners, contents, symlink targets and hardlinks.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// File creation, modification and deletion over the base layer, a directory replaced (opaque),
/// absolute and relative symlinks, a hardlink, setuid/setgid/sticky bits and chown by id and by name.
const DOCKERFILE: &str = "FROM scratch
ADD rootfs.tar /
RUN echo created > /created && echo changed >> /etc/passwd && rm /etc/motd \\
 && rm -rf /home && mkdir -p /home/new && echo n > /home/new/f \\
 && mkdir -p /d/keep /d/sub && echo k > /d/keep/k && echo s > /d/sub/s
RUN rm -rf /d && mkdir /d && echo replaced > /d/file \\
 && rm /created && echo recreated > /created \\
 && ln -s /created /abs-link && ln -s ../created /tmp/rel-link && ln /created /hard \\
 && cp /bin/busybox /setuid-bin && chmod 4755 /setuid-bin && chmod 2775 /d && mkdir -m 1777 /sticky \\
 && touch /owned && chown 1000:50 /owned && mkdir /owned-dir && chown app:staff /owned-dir \\
 && chmod 0600 /etc/group && mkdir -p /empty/dir
RUN rm /abs-link && ln -s /etc/passwd /abs-link && rm -r /empty/dir && rm /bin/vi
";

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// File content, or a symlink's target.
    data: Vec<u8>,
    /// For regular files: the other paths sharing the inode.
    links: Vec<String>,
}

fn tree(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let (kind, data) = if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).unwrap();
            ("symlink", t.to_string_lossy().as_bytes().to_vec())
        } else if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_file() {
            inodes.entry(md.ino()).or_default().push(rel.clone());
            ("file", std::fs::read(e.path()).unwrap())
        } else {
            ("other", Vec::new())
        };
        out.insert(
            rel,
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                data,
                links: Vec::new(),
            },
        );
    }
    for paths in inodes.values().filter(|p| p.len() > 1) {
        for p in paths {
            if let Some(e) = out.get_mut(p) {
                e.links = paths.iter().filter(|q| *q != p).cloned().collect();
            }
        }
    }
    out
}

/// Runs buildah in a private mount namespace: its overlay and storage mounts end with the command.
fn buildah(root: &Path, args: &[&str]) -> String {
    sh(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "buildah"])
        .arg("--root")
        .arg(root.join("storage"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "overlay"])
        .args(args))
}

#[test]
fn flattened_rootfs_matches_buildah() {
    if !need("buildah") || !need("umoci") || !need("runc") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let ctx = context(&t.path().join("ctx"), DOCKERFILE, &[]);
    rootfs_archive(&ctx, "rootfs.tar");

    let root = t.path().join("root");
    let ours = t.path().join("ours");
    ok(rbuild(
        &root,
        &[
            "-t",
            "cmp:latest",
            "-o",
            &format!("type=oci,dest={},tar=false", ours.display()),
            ctx.to_str().unwrap(),
        ],
    ));

    let bh = t.path().join("buildah");
    buildah(
        &bh,
        &[
            "bud",
            "--runtime",
            "runc",
            "--network",
            "none",
            "--layers",
            "-t",
            "cmp:latest",
            ctx.to_str().unwrap(),
        ],
    );
    let theirs = t.path().join("theirs");
    buildah(
        &bh,
        &[
            "push",
            "cmp:latest",
            &format!("oci:{}:latest", theirs.display()),
        ],
    );

    let flat = |layout: &Path, name: &str| {
        let bundle = t.path().join(name);
        sh(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle));
        tree(&bundle.join("rootfs"))
    };
    let a = flat(&ours, "bundle-ours");
    let mut b = flat(&theirs, "bundle-theirs");
    // buildah (unlike BuildKit and the classic builder) leaves its RUN mount points in the image:
    // an empty /run and an empty /etc/hostname. They are buildah's artifacts, not differences.
    for artifact in ["run", "etc/hostname"] {
        if !a.contains_key(artifact) {
            if let Some(e) = b.get(artifact) {
                assert!(e.data.is_empty(), "buildah's {artifact} is not empty");
                b.remove(artifact);
            }
        }
    }
    // Sanity: the interesting cases are really in the trees.
    assert_eq!(a["created"].data, b"recreated\n");
    assert_eq!(a["created"].links, vec!["hard".to_string()]);
    assert_eq!(a["setuid-bin"].mode, 0o4755);
    assert_eq!(a["d"].mode, 0o2775);
    assert_eq!(a["sticky"].mode, 0o1777);
    assert_eq!((a["owned-dir"].uid, a["owned-dir"].gid), (1000, 50));
    assert_eq!(a["abs-link"].data, b"/etc/passwd");
    assert!(!a.contains_key("etc/motd") && !a.contains_key("d/keep") && !a.contains_key("bin/vi"));
    assert!(a.contains_key("empty") && !a.contains_key("empty/dir"));

    let mut diffs = Vec::new();
    for (p, e) in &a {
        match b.get(p) {
            None => diffs.push(format!("{p}: only in rbuild's image")),
            Some(o) if o != e => diffs.push(format!(
                "{p}: rbuild {} {:o} {}:{} links {:?} / buildah {} {:o} {}:{} links {:?}{}",
                e.kind,
                e.mode,
                e.uid,
                e.gid,
                e.links,
                o.kind,
                o.mode,
                o.uid,
                o.gid,
                o.links,
                if o.data != e.data {
                    " (content differs)"
                } else {
                    ""
                }
            )),
            Some(_) => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("{p}: only in buildah's image"));
    }
    assert!(
        diffs.is_empty(),
        "flattened rootfs differ:\n{}",
        diffs.join("\n")
    );
    assert_nothing_mounted_under(t.path());
}
