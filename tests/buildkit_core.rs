//! Ports of BuildKit's `dockerfile_core_test.go` (Dockerfile data and assertions; `FROM busybox`
//! is the busybox-static image of tests/bk).

mod bk;
mod common;

use bk::*;
use serde_json::json;

#[test]
fn dockerfile_dirs() {
    let b = Bk::new();
    b.dockerfile("\nFROM busybox\nCOPY foo /foo2\nCOPY foo /\nRUN echo -n bar > foo3\nRUN test -f foo\nRUN cmp -s foo foo2\nRUN cmp -s foo foo3\n")
        .file("foo", b"bar", 0o600);
    b.build(&[]);
}

#[test]
fn symlink_destination() {
    let t = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_link(&mut h, "symlink", "../tmp/symlink-target")
            .unwrap();
        b.into_inner().unwrap()
    };
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nADD t.tar /\nCOPY foo /symlink/\n")
        .file("foo", b"content0", 0o600)
        .file("t.tar", &t, 0o600);
    assert_eq!(text(&b.local(&[]), "tmp/symlink-target/foo"), "content0");
}

#[test]
fn context_change_dir_to_file() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nCOPY foo /\n")
        .mkdir("foo", 0o700)
        .file("foo/bar", b"contents", 0o600);
    b.build(&[]);
    std::fs::remove_dir_all(b.ctx.join("foo")).unwrap();
    b.file("foo", b"contents2", 0o600);
    assert_eq!(text(&b.local(&[]), "foo"), "contents2");
}

#[test]
fn expose_expansion() {
    let b = Bk::new();
    b.dockerfile("\nFROM scratch\nARG PORTS=\"3000 4000/udp\"\nEXPOSE $PORTS\nEXPOSE 5000\n");
    let cfg = b.config(&[]);
    let ports = cfg["config"]["ExposedPorts"].as_object().unwrap();
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort();
    assert_eq!(keys, ["3000/tcp", "4000/udp", "5000/tcp"]);
}

#[test]
fn dockerfile_lowercase() {
    let b = Bk::new();
    b.file("dockerfile", b"\nFROM scratch\n", 0o600);
    b.build(&[]);
}

#[test]
fn user() {
    let b = Bk::new();
    b.dockerfile(
        r#"
FROM busybox AS base
RUN mkdir -m 0777 /out
RUN id -un > /out/rootuser

# Make sure our defaults work
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)" = '0:0/root:root' ]

USER root
RUN [ "$(id -G):$(id -Gn)" = '0 10:root wheel' ]

# Setup dockerio user and group
RUN echo 'dockerio:x:1001:1001::/bin:/bin/false' >> /etc/passwd && \
	echo 'dockerio:x:1001:' >> /etc/group

# Make sure we can switch to our user and all the information is exactly as we expect it to be
USER dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]

# Switch back to root and double check that worked exactly as we might expect it to
USER root
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '0:0/root:root/0 10:root wheel' ] && \
        # Add a "supplementary" group for our dockerio user
	echo 'supplementary:x:1002:dockerio' >> /etc/group

# ... and then go verify that we get it like we expect
USER dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]
USER 1001
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]

# super test the new "user:group" syntax
USER dockerio:dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]
USER 1001:dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]
USER dockerio:1001
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]
USER 1001:1001
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]
USER dockerio:supplementary
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1002/dockerio:supplementary/1002:supplementary' ]
USER dockerio:1002
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1002/dockerio:supplementary/1002:supplementary' ]
USER 1001:supplementary
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1002/dockerio:supplementary/1002:supplementary' ]
USER 1001:1002
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1002/dockerio:supplementary/1002:supplementary' ]

# make sure unknown uid/gid still works properly
USER 1042:1043
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1042:1043/1042:1043/1043:1043' ]
USER daemon
RUN id -un > /out/daemonuser
FROM scratch
COPY --from=base /out /
USER nobody
"#,
    );
    let out = b.local(&[]);
    assert_eq!(text(&out, "rootuser"), "root\n");
    assert_eq!(text(&out, "daemonuser"), "daemon\n");
    assert_eq!(b.config(&[])["config"]["User"], json!("nobody"));
}

#[test]
fn user_additional_gids() {
    let b = Bk::new();
    b.dockerfile(
        r#"
# Mimics the tests in https://github.com/containerd/containerd/commit/3eda46af12b1deedab3d0802adb2e81cb3521950
FROM busybox
SHELL ["/bin/sh", "-euxc"]
RUN [ "$(id)" = "uid=0(root) gid=0(root) groups=0(root),10(wheel)" ]
USER 1234
RUN [ "$(id)" = "uid=1234 gid=0(root) groups=0(root)" ]
USER 1234:1234
RUN [ "$(id)" = "uid=1234 gid=1234 groups=1234" ]
USER daemon
RUN [ "$(id)" = "uid=1(daemon) gid=1(daemon) groups=1(daemon)" ]
"#,
    );
    b.build(&[]);
}
