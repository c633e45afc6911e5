//! COPY/ADD semantics on real trees: each test builds a context and a destination rootfs in temp
//! dirs, runs `rbuild::context::copy` and asserts the resulting tree.

use rbuild::context::{copy, Context, ContextError, CopyEnv, CopyRequest, SourceRoot};
use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use tempfile::TempDir;

fn write(p: &Path, data: &str, mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

struct Fixture {
    ctx_dir: TempDir,
    root: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            ctx_dir: tempfile::tempdir().unwrap(),
            root: tempfile::tempdir().unwrap(),
        };
        write(
            &f.root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
            0o644,
        );
        write(
            &f.root.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\n",
            0o644,
        );
        f
    }
    fn c(&self, rel: &str) -> std::path::PathBuf {
        self.ctx_dir.path().join(rel)
    }
    fn r(&self, rel: &str) -> std::path::PathBuf {
        self.root.path().join(rel)
    }
    fn context(&self) -> Context {
        Context::open(self.ctx_dir.path(), &self.c("Dockerfile")).unwrap()
    }
    fn run(
        &self,
        ctx: &Context,
        srcs: &[&str],
        dest: &str,
        edit: impl FnOnce(&mut CopyRequest),
    ) -> Result<rbuild::context::CopyStats, ContextError> {
        let mut req = CopyRequest::new(
            SourceRoot::Context(ctx),
            srcs.iter().map(|s| s.to_string()).collect(),
            dest,
        );
        edit(&mut req);
        copy(&req, self.root.path(), &CopyEnv::default())
    }
}

#[test]
fn directory_source_copies_contents_with_modes_and_empty_dirs() {
    let f = Fixture::new();
    write(&f.c("src/a.sh"), "#!/bin/sh\n", 0o750);
    write(&f.c("src/sub/b.txt"), "b", 0o600);
    fs::create_dir_all(f.c("src/empty")).unwrap();
    fs::set_permissions(f.c("src/sub"), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(f.c("src"), fs::Permissions::from_mode(0o700)).unwrap();
    chown(f.c("src/a.sh"), Some(1000), Some(1000)).unwrap();
    let ctx = f.context();
    f.run(&ctx, &["src"], "/app", |_| {}).unwrap();
    // Contents, not the directory itself.
    assert_eq!(read(&f.r("app/a.sh")), "#!/bin/sh\n");
    assert!(!f.r("app/src").exists());
    assert_eq!(mode(&f.r("app/a.sh")), 0o750);
    assert_eq!(mode(&f.r("app/sub/b.txt")), 0o600);
    assert_eq!(mode(&f.r("app/sub")), 0o711);
    assert!(f.r("app/empty").is_dir());
    // Created destination directory: 0755, not the source dir's 0700.
    assert_eq!(mode(&f.r("app")), 0o755);
    // Context owners become 0:0.
    assert_eq!(owner(&f.r("app/a.sh")), (0, 0));
    // Source mtimes are kept.
    let src_mtime = fs::metadata(f.c("src/sub/b.txt")).unwrap().mtime();
    assert_eq!(
        fs::metadata(f.r("app/sub/b.txt")).unwrap().mtime(),
        src_mtime
    );
}

#[test]
fn file_destination_rules() {
    let f = Fixture::new();
    write(&f.c("a.txt"), "A", 0o644);
    fs::create_dir_all(f.r("existing")).unwrap();
    let ctx = f.context();
    f.run(&ctx, &["a.txt"], "/new/dir/", |_| {}).unwrap();
    assert_eq!(read(&f.r("new/dir/a.txt")), "A");
    f.run(&ctx, &["a.txt"], "/renamed", |_| {}).unwrap();
    assert_eq!(read(&f.r("renamed")), "A");
    f.run(&ctx, &["a.txt"], "/existing", |_| {}).unwrap();
    assert_eq!(read(&f.r("existing/a.txt")), "A");
    // Missing parents: 0755 root.
    f.run(&ctx, &["a.txt"], "/p/q/r.txt", |_| {}).unwrap();
    assert_eq!(mode(&f.r("p/q")), 0o755);
    assert_eq!(owner(&f.r("p/q")), (0, 0));
    // Overwrites an existing file.
    write(&f.r("renamed"), "old", 0o600);
    f.run(&ctx, &["a.txt"], "/renamed", |_| {}).unwrap();
    assert_eq!(read(&f.r("renamed")), "A");
    assert_eq!(mode(&f.r("renamed")), 0o644);
}

#[test]
fn relative_destination_is_under_workdir() {
    let f = Fixture::new();
    write(&f.c("a.txt"), "A", 0o644);
    write(&f.c("b.txt"), "B", 0o644);
    let ctx = f.context();
    f.run(&ctx, &["a.txt", "b.txt"], ".", |r| {
        r.workdir = "/work".into()
    })
    .unwrap();
    assert_eq!(read(&f.r("work/a.txt")), "A");
    assert_eq!(read(&f.r("work/b.txt")), "B");
    f.run(&ctx, &["a.txt"], "sub/x", |r| r.workdir = "/work".into())
        .unwrap();
    assert_eq!(read(&f.r("work/sub/x")), "A");
}

#[test]
fn several_sources_need_a_directory_destination() {
    let f = Fixture::new();
    write(&f.c("a.txt"), "A", 0o644);
    write(&f.c("b.txt"), "B", 0o644);
    let ctx = f.context();
    let err = f
        .run(&ctx, &["a.txt", "b.txt"], "/out", |_| {})
        .unwrap_err();
    assert!(
        matches!(err, ContextError::MultipleSourcesNeedDir { count: 2, .. }),
        "{err}"
    );
    assert!(!f.r("out").exists());
    // A wildcard expanding to two files counts as two sources.
    let err = f.run(&ctx, &["*.txt"], "/out", |_| {}).unwrap_err();
    assert!(err.to_string().contains("must be a directory"), "{err}");
    f.run(&ctx, &["a.txt", "b.txt"], "/out/", |_| {}).unwrap();
    assert_eq!(read(&f.r("out/b.txt")), "B");
}

#[test]
fn wildcards() {
    let f = Fixture::new();
    write(&f.c("a.txt"), "A", 0o644);
    write(&f.c("b.md"), "B", 0o644);
    write(&f.c("d1/f"), "1", 0o644);
    write(&f.c("d2/f"), "2", 0o644);
    write(&f.c("d2/g"), "g", 0o644);
    write(&f.c("[x].txt"), "lit", 0o644);
    let ctx = f.context();
    f.run(&ctx, &["*.txt"], "/w/", |_| {}).unwrap();
    assert_eq!(read(&f.r("w/a.txt")), "A");
    assert_eq!(read(&f.r("w/[x].txt")), "lit");
    assert!(!f.r("w/b.md").exists());
    // A matched directory copies its contents into dest.
    f.run(&ctx, &["d*/f"], "/m/", |_| {}).unwrap();
    assert_eq!(read(&f.r("m/f")), "2");
    f.run(&ctx, &["d?"], "/dirs/", |_| {}).unwrap();
    assert_eq!(read(&f.r("dirs/g")), "g");
    // Escaped brackets are literal inside a wildcard pattern.
    f.run(&ctx, &["\\[x\\]*"], "/lit", |_| {}).unwrap();
    assert_eq!(read(&f.r("lit")), "lit");
    // No match: BuildKit copies nothing and does not fail.
    let stats = f.run(&ctx, &["*.none"], "/none/", |_| {}).unwrap();
    assert_eq!(stats.files, 0);
    assert!(!f.r("none").exists());
    // A missing literal source is an error naming it.
    let err = f.run(&ctx, &["missing.txt"], "/x", |_| {}).unwrap_err();
    assert!(err.to_string().contains("missing.txt"), "{err}");
    assert!(f.run(&ctx, &["a["], "/x", |_| {}).is_err());
}

#[test]
fn dockerignore_hides_files_from_copy() {
    let f = Fixture::new();
    write(
        &f.c(".dockerignore"),
        "secret.txt\n*.log\nnode_modules\ndocs\n!docs/README.md\n",
        0o644,
    );
    write(&f.c("secret.txt"), "s", 0o644);
    write(&f.c("app.log"), "l", 0o644);
    write(&f.c("keep.txt"), "k", 0o644);
    write(&f.c("node_modules/x/y.js"), "y", 0o644);
    write(&f.c("docs/README.md"), "r", 0o644);
    write(&f.c("docs/other.md"), "o", 0o644);
    write(&f.c("sub/app.log"), "deep", 0o644);
    let ctx = f.context();
    let err = f.run(&ctx, &["secret.txt"], "/x", |_| {}).unwrap_err();
    assert!(matches!(err, ContextError::NotFound(_)), "{err}");
    assert!(f.run(&ctx, &["node_modules/x/y.js"], "/x", |_| {}).is_err());
    f.run(&ctx, &["."], "/all/", |_| {}).unwrap();
    assert!(f.r("all/keep.txt").exists());
    assert!(!f.r("all/secret.txt").exists());
    assert!(!f.r("all/app.log").exists());
    assert!(!f.r("all/node_modules").exists());
    // Patterns are anchored at the root: sub/app.log stays.
    assert!(f.r("all/sub/app.log").exists());
    // The exception re-includes one file inside an excluded directory.
    assert_eq!(read(&f.r("all/docs/README.md")), "r");
    assert!(!f.r("all/docs/other.md").exists());
    // Wildcards do not see ignored files either.
    f.run(&ctx, &["*.txt"], "/w/", |_| {}).unwrap();
    assert!(f.r("w/keep.txt").exists());
    assert!(!f.r("w/secret.txt").exists());
    // The re-included file is copyable by name.
    f.run(&ctx, &["docs/README.md"], "/readme", |_| {}).unwrap();
    assert_eq!(read(&f.r("readme")), "r");
}

#[test]
fn c01_sources_never_leave_the_context() {
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    write(&host.path().join("hostfile"), "HOST", 0o644);
    write(&f.c("x"), "ctx-x", 0o644);
    symlink(host.path().join("hostfile"), f.c("abs-link")).unwrap();
    symlink("../../../../../../../../etc", f.c("rel-link")).unwrap();
    symlink(host.path(), f.c("dir-link")).unwrap();
    symlink("x", f.c("good-link")).unwrap();
    let ctx = f.context();
    // `../x` climbs out of the context: an error (classic builder rule; BuildKit clamps it).
    let e = f.run(&ctx, &["../x"], "/clamped", |_| {}).unwrap_err();
    assert!(matches!(e, ContextError::OutsideContext(_)), "{e}");
    assert!(f.run(&ctx, &["a/../../x"], "/clamped", |_| {}).is_err());
    // An absolute source names a path from the context root, never the host's.
    f.run(&ctx, &["/x"], "/clamped", |_| {}).unwrap();
    assert_eq!(read(&f.r("clamped")), "ctx-x");
    // Symlinks are resolved as if the context were `/`: the host file is unreachable.
    assert!(f.run(&ctx, &["abs-link"], "/o1", |_| {}).is_err());
    assert!(f.run(&ctx, &["rel-link/passwd"], "/o2", |_| {}).is_err());
    assert!(f.run(&ctx, &["dir-link/hostfile"], "/o3", |_| {}).is_err());
    assert!(f.run(&ctx, &["abs*"], "/o4/", |_| {}).is_err());
    assert!(!f.r("o1").exists() && !f.r("o2").exists() && !f.r("o3").exists());
    // A symlink named as the source is followed inside the context (BuildKit FollowSymlinks).
    f.run(&ctx, &["good-link"], "/followed", |_| {}).unwrap();
    assert_eq!(read(&f.r("followed")), "ctx-x");
    // Inside a copied directory, symlinks are copied as symlinks, targets untouched.
    f.run(&ctx, &["."], "/tree/", |_| {}).unwrap();
    assert_eq!(
        fs::read_link(f.r("tree/abs-link")).unwrap(),
        host.path().join("hostfile")
    );
    assert_eq!(
        fs::read_link(f.r("tree/good-link")).unwrap().to_str(),
        Some("x")
    );
    assert!(fs::symlink_metadata(f.r("tree/dir-link"))
        .unwrap()
        .is_symlink());
}

#[test]
fn c06_destination_symlinks_resolve_inside_root() {
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    write(&f.c("a.txt"), "A", 0o644);
    fs::create_dir_all(f.r("run")).unwrap();
    fs::create_dir_all(f.r("var")).unwrap();
    symlink("/run", f.r("var/run")).unwrap();
    symlink("/", f.r("app")).unwrap();
    symlink(host.path(), f.r("evil")).unwrap();
    let ctx = f.context();
    f.run(&ctx, &["a.txt"], "/var/run/", |_| {}).unwrap();
    assert_eq!(read(&f.r("run/a.txt")), "A");
    f.run(&ctx, &["a.txt"], "/app/etc/x", |_| {}).unwrap();
    assert_eq!(read(&f.r("etc/x")), "A");
    f.run(&ctx, &["a.txt"], "/evil/", |_| {}).unwrap();
    assert_eq!(fs::read_dir(host.path()).unwrap().count(), 0);
    assert_eq!(
        read(
            &f.r(host
                .path()
                .strip_prefix("/")
                .unwrap()
                .join("a.txt")
                .to_str()
                .unwrap())
        ),
        "A"
    );
}

#[test]
fn c05_copy_from_rootfs_does_not_write_through_image_symlinks() {
    // SECURITY C5/C6: a source tree with a symlink to / and a destination where the same path
    // is a symlink: the copy replaces the symlink, never writes through it.
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    let stage = tempfile::tempdir().unwrap();
    write(&stage.path().join("out/etc/f"), "payload", 0o644);
    symlink(host.path(), f.r("out")).unwrap();
    let mut req = CopyRequest::new(
        SourceRoot::Rootfs(stage.path()),
        vec!["/out".into()],
        "/copied/",
    );
    req.workdir = "/".into();
    copy(&req, f.root.path(), &CopyEnv::default()).unwrap();
    assert_eq!(read(&f.r("copied/etc/f")), "payload");
    fs::create_dir_all(f.r("d")).unwrap();
    symlink(host.path(), f.r("d/etc")).unwrap();
    let req = CopyRequest::new(SourceRoot::Rootfs(stage.path()), vec!["/out".into()], "/d");
    let err = copy(&req, f.root.path(), &CopyEnv::default()).unwrap_err();
    assert!(matches!(err, ContextError::NotADirectory { .. }), "{err}");
    assert_eq!(fs::read_dir(host.path()).unwrap().count(), 0);
}

#[test]
fn hardlinks_stay_hardlinks_within_one_copy() {
    let f = Fixture::new();
    write(&f.c("d/one"), "same", 0o644);
    fs::hard_link(f.c("d/one"), f.c("d/two")).unwrap();
    let ctx = f.context();
    let stats = f.run(&ctx, &["d"], "/h", |_| {}).unwrap();
    assert_eq!(stats.hardlinks, 1);
    let a = fs::metadata(f.r("h/one")).unwrap();
    let b = fs::metadata(f.r("h/two")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
}

#[test]
fn chown_resolves_names_in_destination_image() {
    let f = Fixture::new();
    write(&f.c("d/a"), "a", 0o644);
    let ctx = f.context();
    f.run(&ctx, &["d"], "/new/deep/", |r| {
        r.chown = Some("app:staff".into())
    })
    .unwrap();
    assert_eq!(owner(&f.r("new/deep/a")), (1001, 50));
    // Parents created for the copy belong to the --chown user too (BuildKit).
    assert_eq!(owner(&f.r("new")), (1001, 50));
    f.run(&ctx, &["d/a"], "/n1", |r| r.chown = Some("app".into()))
        .unwrap();
    assert_eq!(owner(&f.r("n1")), (1001, 1002));
    f.run(&ctx, &["d/a"], "/n2", |r| r.chown = Some("42".into()))
        .unwrap();
    assert_eq!(owner(&f.r("n2")), (42, 42));
    let err = f
        .run(&ctx, &["d/a"], "/n3", |r| r.chown = Some("ghost".into()))
        .unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    assert!(!f.r("n3").exists());
}

#[test]
fn chmod_octal_and_symbolic() {
    let f = Fixture::new();
    write(&f.c("d/a"), "a", 0o600);
    write(&f.c("d/s/b"), "b", 0o700);
    let ctx = f.context();
    f.run(&ctx, &["d"], "/o", |r| r.chmod = Some("640".into()))
        .unwrap();
    assert_eq!(mode(&f.r("o/a")), 0o640);
    assert_eq!(mode(&f.r("o/s")), 0o640);
    f.run(&ctx, &["d"], "/s", |r| r.chmod = Some("u=rwX,go=rX".into()))
        .unwrap();
    assert_eq!(mode(&f.r("s/a")), 0o644);
    assert_eq!(mode(&f.r("s/s/b")), 0o755);
    assert_eq!(mode(&f.r("s/s")), 0o755);
    let err = f
        .run(&ctx, &["d"], "/bad", |r| r.chmod = Some("99999".into()))
        .unwrap_err();
    assert!(err.to_string().contains("07777"), "{err}");
}

#[test]
fn exclude_and_parents() {
    let f = Fixture::new();
    write(&f.c("src/a.go"), "a", 0o644);
    write(&f.c("src/a_test.go"), "t", 0o644);
    write(&f.c("src/pkg/b.go"), "b", 0o644);
    write(&f.c("src/pkg/b.txt"), "x", 0o644);
    write(&f.c("home.txt"), "h", 0o644);
    write(&f.c("homer.md"), "m", 0o644);
    let ctx = f.context();
    f.run(&ctx, &["src"], "/ex", |r| {
        r.exclude = vec!["*_test.go".into(), "pkg/*.txt".into()]
    })
    .unwrap();
    assert!(f.r("ex/a.go").exists());
    assert!(!f.r("ex/a_test.go").exists());
    assert!(f.r("ex/pkg/b.go").exists());
    assert!(!f.r("ex/pkg/b.txt").exists());
    // Documented example: COPY --exclude=*.txt hom* /mydir/
    f.run(&ctx, &["hom*"], "/mydir/", |r| {
        r.exclude = vec!["*.txt".into()]
    })
    .unwrap();
    assert!(f.r("mydir/homer.md").exists());
    assert!(!f.r("mydir/home.txt").exists());
    // --parents keeps the source's directories.
    f.run(&ctx, &["src/pkg/b.go", "home.txt"], "/par/", |r| {
        r.parents = true
    })
    .unwrap();
    assert_eq!(read(&f.r("par/src/pkg/b.go")), "b");
    assert_eq!(read(&f.r("par/home.txt")), "h");
    assert!(!f.r("par/src/a.go").exists());
    // `/./` pivot and `**` patterns.
    f.run(&ctx, &["src/./**/*.go"], "/piv/", |r| r.parents = true)
        .unwrap();
    assert!(f.r("piv/pkg/b.go").exists());
    assert!(f.r("piv/a.go").exists());
    assert!(!f.r("piv/pkg/b.txt").exists());
    assert!(f
        .run(&ctx, &["src/nope.go"], "/par2/", |r| r.parents = true)
        .is_err());
}

#[test]
fn from_rootfs_keeps_owners_and_timestamp_forces_mtime() {
    let f = Fixture::new();
    let stage = tempfile::tempdir().unwrap();
    write(&stage.path().join("bin/tool"), "t", 0o755);
    chown(stage.path().join("bin/tool"), Some(7), Some(8)).unwrap();
    let req = CopyRequest::new(
        SourceRoot::Rootfs(stage.path()),
        vec!["/bin/tool".into()],
        "/usr/bin/",
    );
    copy(&req, f.root.path(), &CopyEnv::default()).unwrap();
    assert_eq!(owner(&f.r("usr/bin/tool")), (7, 8));
    let ctx = f.context();
    write(&f.c("d/x"), "x", 0o644);
    f.run(&ctx, &["d"], "/ts/a/", |r| r.timestamp = Some(1_234_567))
        .unwrap();
    assert_eq!(fs::metadata(f.r("ts/a/x")).unwrap().mtime(), 1_234_567);
    assert_eq!(fs::metadata(f.r("ts/a")).unwrap().mtime(), 1_234_567);
    assert_eq!(fs::metadata(f.r("ts")).unwrap().mtime(), 1_234_567);
}

#[test]
fn heredoc_files() {
    let f = Fixture::new();
    let ctx = f.context();
    f.run(&ctx, &[], "/etc/app/", |r| {
        r.inline = vec![
            ("conf".into(), b"key=1\n".to_vec()),
            ("../../evil".into(), b"e".to_vec()),
        ]
    })
    .unwrap();
    assert_eq!(read(&f.r("etc/app/conf")), "key=1\n");
    assert_eq!(mode(&f.r("etc/app/conf")), 0o644);
    assert_eq!(read(&f.r("etc/app/evil")), "e");
    f.run(&ctx, &[], "/script.sh", |r| {
        r.inline = vec![("EOF".into(), b"echo\n".to_vec())];
        r.chmod = Some("755".into());
    })
    .unwrap();
    assert_eq!(mode(&f.r("script.sh")), 0o755);
}

#[test]
fn add_local_archives_use_the_injected_extractor() {
    let f = Fixture::new();
    write(&f.c("a.tar"), "pretend", 0o644);
    write(&f.c("plain.txt"), "p", 0o644);
    let ctx = f.context();
    let calls = std::sync::Mutex::new(Vec::new());
    let ex = |file: &Path,
              root: &Path,
              dest: &Path,
              _owner: Option<(u32, u32)>|
     -> Result<bool, String> {
        calls
            .lock()
            .unwrap()
            .push((file.to_path_buf(), root.to_path_buf(), dest.to_path_buf()));
        Ok(file.extension().is_some_and(|e| e == "tar"))
    };
    let env = CopyEnv {
        extract: Some(&ex),
        ..CopyEnv::default()
    };
    let mut req = CopyRequest::new(
        SourceRoot::Context(&ctx),
        vec!["a.tar".into(), "plain.txt".into()],
        "/x/",
    );
    req.is_add = true;
    let stats = copy(&req, f.root.path(), &env).unwrap();
    assert_eq!(stats.extracted, 1);
    assert!(!f.r("x/a.tar").exists());
    assert_eq!(read(&f.r("x/plain.txt")), "p");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[0].0, fs::canonicalize(f.c("a.tar")).unwrap());
    assert_eq!(calls[0].2, Path::new("/x"));
    // --unpack=false and COPY never extract.
    req.unpack = Some(false);
    copy(&req, f.root.path(), &env).unwrap();
    assert_eq!(read(&f.r("x/a.tar")), "pretend");
    let err = |_: &Path, _: &Path, _: &Path, _: Option<(u32, u32)>| -> Result<bool, String> {
        Err("corrupt".into())
    };
    let env = CopyEnv {
        extract: Some(&err),
        ..CopyEnv::default()
    };
    req.unpack = None;
    let e = copy(&req, f.root.path(), &env).unwrap_err();
    assert!(
        e.to_string().contains("corrupt") && e.to_string().contains("a.tar"),
        "{e}"
    );
}

#[test]
fn misuse_is_rejected() {
    let f = Fixture::new();
    write(&f.c("a"), "a", 0o644);
    let ctx = f.context();
    let e = f
        .run(&ctx, &["https://example.com/x"], "/x", |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("URL for COPY"), "{e}");
    let e = f
        .run(&ctx, &["https://example.com/r.git"], "/x", |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("git ref for COPY"), "{e}");
    let e = f
        .run(&ctx, &["a"], "/x", |r| {
            r.checksum = Some("sha256:00".into())
        })
        .unwrap_err();
    assert!(e.to_string().contains("COPY"), "{e}");
    let e = f.run(&ctx, &["a"], "/x", |r| {
        r.is_add = true;
        r.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    });
    assert!(e.unwrap_err().to_string().contains("HTTP(S) or Git"));
    let e = f.run(&ctx, &[], "/x", |_| {}).unwrap_err();
    assert!(e.to_string().contains("no source"), "{e}");
    // A directory cannot replace a file and vice versa.
    write(&f.r("file"), "f", 0o644);
    fs::create_dir_all(f.c("d")).unwrap();
    assert!(matches!(
        f.run(&ctx, &["d"], "/file", |_| {}),
        Err(ContextError::NotADirectory { .. })
    ));
    fs::create_dir_all(f.r("dir/a")).unwrap();
    assert!(matches!(
        f.run(&ctx, &["a"], "/dir/", |_| {}),
        Err(ContextError::DirectoryInTheWay { .. })
    ));
}

#[test]
fn context_from_stdin_tar() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "Dockerfile", &b"FROM x"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, ".dockerignore", &b"ign\n"[..])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "ign", &b"i"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let ctx = Context::from_tar(&data[..], scratch.path()).unwrap();
    assert!(ctx.is_ignored("ign"));
    assert_eq!(fs::read(ctx.root().join("Dockerfile")).unwrap(), b"FROM x");
}

#[test]
fn a_failing_tree_reports_its_first_failure_in_walk_order() {
    // Enough files for the parallel writers (one per core); three conflicts in the destination:
    // a directory where d2/f05 goes and where d7/f11 goes (found by the writers), a file where
    // the directory d5 goes (found by the walk). The first in walk order is the one reported.
    let f = Fixture::new();
    for d in 0..10 {
        for i in 0..20 {
            write(&f.c(&format!("t/d{d}/f{i:02}")), &format!("{d}{i}"), 0o644);
        }
    }
    fs::create_dir_all(f.r("app/d2/f05/inside")).unwrap();
    fs::create_dir_all(f.r("app/d7/f11")).unwrap();
    write(&f.r("app/d5"), "a file", 0o644);
    let ctx = f.context();
    for _ in 0..3 {
        let err = f.run(&ctx, &["t"], "/app", |_| {}).unwrap_err();
        match &err {
            ContextError::DirectoryInTheWay { dest, .. } => assert_eq!(dest, "/app/d2/f05"),
            other => panic!("unexpected error: {other}"),
        }
    }
    // Without the first conflict, the walk's comes next (d5 is before d7).
    fs::remove_dir_all(f.r("app/d2/f05")).unwrap();
    let err = f.run(&ctx, &["t"], "/app", |_| {}).unwrap_err();
    assert!(
        matches!(&err, ContextError::NotADirectory { dest, .. } if dest == "/app/d5"),
        "{err}"
    );
}

#[test]
fn a_tree_with_more_directories_than_descriptors() {
    // 1,500 directories (each with a file) under a 400-descriptor limit: the copy may hold open
    // only some of them at once, and every directory still gets its mtime after its content.
    let f = Fixture::new();
    for d in 0..30 {
        for s in 0..50 {
            write(
                &f.c(&format!("t/d{d:02}/s{s:02}/f")),
                &format!("{d}/{s}"),
                0o644,
            );
        }
    }
    let stamp = std::process::Command::new("find")
        .arg(f.c("t"))
        .args([
            "-type",
            "d",
            "-exec",
            "touch",
            "-d",
            "@1500000000",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(stamp.success());
    let ctx = f.context();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let low = libc::rlimit {
        rlim_cur: 400,
        rlim_max: lim.rlim_max,
    };
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) };
    let res = f.run(&ctx, &["t"], "/app", |_| {});
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let stats = res.unwrap();
    assert_eq!(stats.files, 1500);
    assert_eq!(read(&f.r("app/d29/s49/f")), "29/49");
    for p in ["app/d00", "app/d00/s00", "app/d17/s31", "app/d29/s49"] {
        assert_eq!(fs::metadata(f.r(p)).unwrap().mtime(), 1_500_000_000, "{p}");
    }
}
