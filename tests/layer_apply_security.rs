//! SECURITY.md (a) groups A and B against `layer::apply` (and A18 against
//! `extract_if_archive`). Each test is named after its case id.
//!
//! Policy tested here: names whose `..` climb above the root are rejected; symlinks (absolute
//! or relative) are followed *inside* the root (contained); hardlink targets are resolved inside
//! the root and rejected when their `..` climb above it; malformed whiteouts are rejected.

use rbuild::layer::{
    apply, extract_if_archive, ApplyOptions, ApplyStats, LayerError, WhiteoutMode,
};
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

// ---------------------------------------------------------------------------------------------
// hostile tar construction (raw header fields, no sanitising)

struct T {
    b: tar::Builder<Vec<u8>>,
}

fn raw_header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

fn put(field: &mut [u8], value: &str) {
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}

impl T {
    fn new() -> Self {
        T {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn add(
        &mut self,
        kind: EntryType,
        name: &str,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        let mut h = raw_header(kind, data.len() as u64, mode);
        put(&mut h.as_old_mut().name, name);
        put(&mut h.as_old_mut().linkname, link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.add(EntryType::Regular, name, "", data, 0o644)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.add(EntryType::Directory, name, "", b"", 0o755)
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(EntryType::Symlink, name, target, b"", 0o777)
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(EntryType::Link, name, target, b"", 0o644)
    }
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }
    fn bytes(&mut self) -> Vec<u8> {
        self.b.finish().unwrap();
        self.b.get_ref().clone()
    }
}

/// `scripts/fuzz` seeds the `layer` fuzz target with these hostile archives: with
/// `RBUILD_FUZZ_SEEDS=DIR`, every tar applied here is also written to DIR in the target's input
/// format (one mode byte, then the tar).
fn dump_fuzz_seed(tar: &[u8], mode: WhiteoutMode) {
    let Some(dir) = std::env::var_os("RBUILD_FUZZ_SEEDS") else {
        return;
    };
    let mode_byte = match mode {
        WhiteoutMode::Apply => 0u8,
        WhiteoutMode::Overlay => 1,
        WhiteoutMode::None => 2,
    };
    let mut input = vec![mode_byte];
    input.extend_from_slice(tar);
    let name = rbuild::digest::Digest::of_bytes(&input);
    fs::write(Path::new(&dir).join(&name.hex()[..16]), input).unwrap();
}

// ---------------------------------------------------------------------------------------------
// fixture: tmp/{root, victim/hello}

struct Fx {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    hello: Vec<u8>,
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root = base.join("root");
        fs::create_dir(&root).unwrap();
        fs::create_dir(base.join("victim")).unwrap();
        let hello = format!(
            "hello-{:?}-{}",
            std::time::SystemTime::now(),
            std::process::id()
        )
        .into_bytes();
        fs::write(base.join("victim/hello"), &hello).unwrap();
        Fx {
            _tmp: tmp,
            base,
            root,
            hello,
        }
    }

    fn apply(&self, tar: &[u8], mode: WhiteoutMode) -> Result<ApplyStats, LayerError> {
        dump_fuzz_seed(tar, mode);
        apply(
            Cursor::new(tar.to_vec()),
            &self.root,
            &ApplyOptions {
                whiteouts: mode,
                max_bytes: None,
                same_owner: true,
                limits: Default::default(),
            },
        )
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// go-archive's oracle: the victim dir is untouched, nothing new next to the root, and no
    /// file under the root holds the victim's bytes.
    fn assert_safe(&self) {
        let names: Vec<_> = fs::read_dir(self.base.join("victim"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("hello")],
            "victim dir changed"
        );
        assert_eq!(
            fs::read(self.base.join("victim/hello")).unwrap(),
            self.hello
        );
        let mut siblings: Vec<_> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        siblings.sort();
        assert!(
            siblings
                .iter()
                .all(|s| ["root", "victim", "dest-evil"].contains(&s.as_str())),
            "something was created beside the root: {siblings:?}"
        );
        for e in walkdir::WalkDir::new(&self.root) {
            let e = e.unwrap();
            if e.file_type().is_file() {
                assert_ne!(
                    fs::read(e.path()).unwrap(),
                    self.hello,
                    "{} leaks",
                    e.path().display()
                );
            }
        }
        assert!(
            fs::symlink_metadata(&self.root).unwrap().is_dir(),
            "root replaced"
        );
    }
}

fn unique(tag: &str) -> String {
    format!(
        "rbuild-{tag}-{}-{}",
        std::process::id(),
        fs::read_dir("/proc/self/fd").unwrap().count()
    )
}

fn is_escape(r: &Result<ApplyStats, LayerError>) -> bool {
    matches!(
        r,
        Err(LayerError::Escape { .. }) | Err(LayerError::HardlinkEscape { .. })
    )
}

// ---------------------------------------------------------------------------------------------
// A. extraction

#[test]
fn a01_dotdot_name() {
    let fx = Fx::new();
    let r = fx.apply(
        &T::new().file("../victim/dotdot", b"x").bytes(),
        WhiteoutMode::Apply,
    );
    assert!(is_escape(&r), "{r:?}");
    let r = fx.apply(
        &T::new().file("/../victim/slash-dotdot", b"x").bytes(),
        WhiteoutMode::Apply,
    );
    assert!(is_escape(&r), "{r:?}");
    fx.assert_safe();
}

#[test]
fn a01_absolute_name_is_rerooted() {
    let fx = Fx::new();
    fx.apply(
        &T::new().file("/abs/file", b"x").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert_eq!(fs::read(fx.p("abs/file")).unwrap(), b"x");
    fx.assert_safe();
}

#[test]
fn a02_bare_parent_names() {
    let fx = Fx::new();
    for name in ["..", "../pwned", "../../pwned"] {
        let r = fx.apply(&T::new().file(name, b"x").bytes(), WhiteoutMode::Apply);
        assert!(is_escape(&r), "{name}: {r:?}");
    }
    fx.assert_safe();
}

#[test]
fn a03_absolute_symlink_write_through() {
    let host_name = unique("a03");
    for (target, make_dummy) in [
        ("/etc", false),
        ("/dummy/../etc", true),
        ("/dummy/../etc", false),
    ] {
        let fx = Fx::new();
        if make_dummy {
            fs::create_dir(fx.p("dummy")).unwrap();
        }
        let tar = T::new()
            .dir("etc/")
            .symlink("localetc", target)
            .file(&format!("localetc/{host_name}"), b"in")
            .bytes();
        let r = fx.apply(&tar, WhiteoutMode::Apply);
        if make_dummy || target == "/etc" {
            r.unwrap();
            assert_eq!(fs::read(fx.p(&format!("etc/{host_name}"))).unwrap(), b"in");
        } else {
            // Symlinks resolve like the kernel does: `/dummy/..` needs `dummy` to exist, so
            // the link dangles and writing through it is refused.
            assert!(matches!(r, Err(LayerError::Resolve { .. })), "{r:?}");
        }
        fx.assert_safe();
    }
    // chained links
    for second in ["/dummy/etc", "./dummy/etc"] {
        let fx = Fx::new();
        let tar = T::new()
            .dir("etc/")
            .dir("dummy/")
            .symlink("dummy/etc", "/etc")
            .symlink("localetc", second)
            .file(&format!("localetc/{host_name}"), b"in")
            .bytes();
        fx.apply(&tar, WhiteoutMode::Apply).unwrap();
        assert_eq!(fs::read(fx.p(&format!("etc/{host_name}"))).unwrap(), b"in");
        fx.assert_safe();
    }
    // an empty file through the link truncates only the in-root file
    let fx = Fx::new();
    fs::create_dir(fx.p("etc")).unwrap();
    fs::write(fx.p("etc/emptied"), b"notempty").unwrap();
    let tar = T::new()
        .symlink("localetc", "/etc")
        .file("localetc/emptied", b"")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(fx.p("etc/emptied")).unwrap(), b"");
    assert!(
        !Path::new("/etc").join(&host_name).exists(),
        "host /etc written"
    );
    assert!(fs::metadata("/etc/passwd").unwrap().len() > 0);
}

#[test]
fn a04_relative_symlink_escape() {
    // `..` from the root is the root: the link points at ROOT/victim. While that does not
    // exist the link dangles and writing through it is refused; once it exists, the write is
    // contained in it.
    for make_in_root_victim in [false, true] {
        let fx = Fx::new();
        if make_in_root_victim {
            fs::create_dir(fx.p("victim")).unwrap();
        }
        let tar = T::new()
            .symlink("loophole-victim", "../victim")
            .file("loophole-victim/file", b"x")
            .dir("dir/")
            .symlink("dir/loophole", "../../victim")
            .file("dir/loophole/newdir/newfile", b"x")
            .bytes();
        let r = fx.apply(&tar, WhiteoutMode::Apply);
        if make_in_root_victim {
            r.unwrap();
            assert_eq!(fs::read(fx.p("victim/file")).unwrap(), b"x");
            assert!(fx.p("victim/newdir/newfile").exists());
        } else {
            assert!(matches!(r, Err(LayerError::Resolve { .. })), "{r:?}");
        }
        fx.assert_safe();
    }

    // symlink -> symlink, then replace the link by a regular file
    let fx = Fx::new();
    fs::create_dir(fx.p("victim")).unwrap();
    let tar = T::new()
        .symlink("a", "../victim")
        .symlink("b", "a")
        .file("b/hello", b"overwritten?")
        .file("a", b"now a file")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(fx.p("a")).unwrap(), b"now a file");
    fx.assert_safe();
}

#[test]
fn a05_two_hop_symlink_chain() {
    let fx = Fx::new();
    let tar = T::new()
        .dir("inner/")
        .symlink("inner/go_up", "..")
        .symlink("inner/go_up/escape", "../victim")
        .file("inner/go_up/escape/newfile", b"x")
        .bytes();
    // go_up -> `..` is the root; escape -> ../victim then dangles inside the root: refused.
    let r = fx.apply(&tar, WhiteoutMode::Apply);
    assert!(matches!(r, Err(LayerError::Resolve { .. })), "{r:?}");
    assert!(!fx.base.join("victim/newfile").exists());
    fx.assert_safe();
}

#[test]
fn a06_sibling_prefix() {
    let fx = Fx::new();
    fs::create_dir(fx.base.join("dest-evil")).unwrap();
    fs::write(fx.base.join("dest-evil/secret"), b"secret").unwrap();
    let r = fx.apply(
        &T::new().hardlink("grab", "../dest-evil/secret").bytes(),
        WhiteoutMode::Apply,
    );
    assert!(is_escape(&r), "{r:?}");
    assert!(!fx.p("grab").exists());
    fx.assert_safe();
}

#[test]
fn a07_hardlink_to_outside() {
    let fx = Fx::new();
    for target in ["../victim/hello", "/../victim/hello"] {
        let r = fx.apply(
            &T::new().hardlink("dotdot", target).bytes(),
            WhiteoutMode::Apply,
        );
        assert!(is_escape(&r), "{target}: {r:?}");
    }
    // through an in-root symlink pointing "outside": resolves inside, where nothing exists
    let tar = T::new()
        .symlink("loophole-victim", "../victim")
        .hardlink("grab", "loophole-victim/hello")
        .bytes();
    assert!(fx.apply(&tar, WhiteoutMode::Apply).is_err());
    // a hardlink named like the symlink, then writes through it
    let tar = T::new()
        .hardlink("loophole-victim2", "../victim")
        .file("loophole-victim2/file", b"x")
        .bytes();
    assert!(fx.apply(&tar, WhiteoutMode::Apply).is_err());
    fx.assert_safe();
}

#[test]
fn a08_hardlink_through_in_root_symlinks() {
    let cases: &[&[(&str, &str)]] = &[
        &[("breakouts/d1", "../../etc")],
        &[
            ("downandout", "breakouts"),
            ("breakouts/d1", "../downandout/../../etc"),
        ],
        &[("localetc", "/etc")],
        &[("localetc", "../../../../../../../etc")],
        &[("upandout", "etc"), ("localetc", "upandout/../../../etc")],
    ];
    for links in cases {
        let fx = Fx::new();
        fs::create_dir(fx.p("etc")).unwrap();
        fs::create_dir(fx.p("breakouts")).unwrap();
        fs::write(fx.p("etc/passwd"), b"root:x:0:0").unwrap();
        let mut t = T::new();
        for (name, target) in *links {
            t.symlink(name, target);
        }
        let via = if links.iter().any(|l| l.0 == "breakouts/d1") {
            "/breakouts/d1/passwd"
        } else {
            "/localetc/passwd"
        };
        t.hardlink("mypasswd", via);
        fx.apply(&t.bytes(), WhiteoutMode::Apply).unwrap();
        let a = fs::metadata(fx.p("mypasswd")).unwrap();
        let b = fs::metadata(fx.p("etc/passwd")).unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{links:?}");
        fx.assert_safe();
    }
    // direct targets: absolute is in-root; `..` climbing out is rejected
    let fx = Fx::new();
    fs::create_dir(fx.p("etc")).unwrap();
    fs::write(fx.p("etc/passwd"), b"root:x:0:0").unwrap();
    fx.apply(
        &T::new().hardlink("abs", "/etc/passwd").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert_eq!(
        fs::metadata(fx.p("abs")).unwrap().ino(),
        fs::metadata(fx.p("etc/passwd")).unwrap().ino()
    );
    let r = fx.apply(
        &T::new()
            .hardlink("rel", "../../../../../etc/passwd")
            .bytes(),
        WhiteoutMode::Apply,
    );
    assert!(is_escape(&r), "{r:?}");
    fx.assert_safe();
}

#[test]
fn a09_hardlink_to_symlink() {
    let fx = Fx::new();
    let tar = T::new()
        .symlink("symlink1", "regfile")
        .hardlink("symlink2", "symlink1")
        .file("regfile", b"data")
        .symlink("dangling", "does-not-exist-yet")
        .hardlink("dangling2", "dangling")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    let a = fs::symlink_metadata(fx.p("symlink1")).unwrap();
    let b = fs::symlink_metadata(fx.p("symlink2")).unwrap();
    assert!(b.file_type().is_symlink());
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        fs::read_link(fx.p("dangling2")).unwrap(),
        Path::new("does-not-exist-yet")
    );
    fx.assert_safe();
}

#[test]
fn a10_metadata_ops_through_links() {
    let fx = Fx::new();
    let host = fx.base.join("victim-dir");
    fs::create_dir(&host).unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o700)).unwrap();
    let perm400 = fx.base.join("victim/hello");
    fs::set_permissions(&perm400, fs::Permissions::from_mode(0o400)).unwrap();
    let tar = T::new()
        .symlink("p", perm400.to_str().unwrap())
        .hardlink("h", "p")
        .symlink("x", host.to_str().unwrap())
        .add(EntryType::Directory, "x", "", b"", 0o777)
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(&perm400).unwrap().mode() & 0o7777, 0o400);
    assert!(fs::symlink_metadata(fx.p("x")).unwrap().is_dir());
    assert_eq!(fs::metadata(fx.p("x")).unwrap().mode() & 0o7777, 0o777);
    fs::remove_dir(&host).unwrap();
    fx.assert_safe();
}

#[test]
fn a11_type_flip_mid_archive() {
    let fx = Fx::new();
    let name = unique("a11");
    let tar = T::new()
        .file(&format!("foo/tmp/{name}"), &[1, 2])
        .symlink("foo", "/")
        .file(&format!("foo/tmp/{name}"), &[3, 4, 5])
        .dir("foo/")
        .file(&format!("foo/tmp/{name}"), &[6])
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert!(!Path::new("/tmp").join(&name).exists(), "host /tmp written");
    assert_eq!(fs::read(fx.p(&format!("tmp/{name}"))).unwrap(), [3, 4, 5]);
    assert_eq!(fs::read(fx.p(&format!("foo/tmp/{name}"))).unwrap(), [6]);

    // an existing dir with a hardlink beneath, replaced by a symlink then a dir again
    let fx = Fx::new();
    fs::create_dir_all(fx.p("etc")).unwrap();
    fs::write(fx.p("etc/passwd"), b"orig").unwrap();
    fs::create_dir(fx.p("localetc")).unwrap();
    fs::hard_link(fx.p("etc/passwd"), fx.p("localetc/passwd")).unwrap();
    let tar = T::new()
        .symlink("localetc", "etc")
        .dir("localetc/")
        .file("localetc/passwd", b"new")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(fx.p("etc/passwd")).unwrap(), b"orig");
    assert_eq!(fs::read(fx.p("localetc/passwd")).unwrap(), b"new");
    fx.assert_safe();
}

#[test]
fn a12_names_resolving_to_root() {
    let fx = Fx::new();
    fs::set_permissions(&fx.root, fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir(fx.p("etc")).unwrap();
    let tar = T::new()
        .symlink(".", "/etc")
        .symlink("/", "/etc")
        .add(EntryType::Directory, "./", "", b"", 0o777)
        .symlink("localetc/sub/..", "/etc")
        .file("localetc/x", b"x")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    let md = fs::symlink_metadata(&fx.root).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o750, "root re-moded");
    assert!(fx.p("etc/x").exists());
    // a symlink named `..` is a traversal name: rejected
    let r = fx.apply(&T::new().symlink("..", "/etc").bytes(), WhiteoutMode::Apply);
    assert!(is_escape(&r), "{r:?}");
    fx.assert_safe();
}

#[test]
fn a13_relative_escape_before_absolute_symlink() {
    // `escape` resolves to the root, `absolute` to ROOT/target, which does not exist: the
    // dangling link is refused and nothing is written. With ROOT/target present the write is
    // contained in it.
    let fx = Fx::new();
    std::os::unix::fs::symlink("..", fx.p("escape")).unwrap();
    std::os::unix::fs::symlink("/target", fx.p("absolute")).unwrap();
    let tar = T::new().file("escape/absolute/file", b"x").bytes();
    let r = fx.apply(&tar, WhiteoutMode::Apply);
    assert!(matches!(r, Err(LayerError::Resolve { .. })), "{r:?}");
    assert!(!fx.p("target").exists());
    fs::create_dir(fx.p("target")).unwrap();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(fx.p("target/file")).unwrap(), b"x");
    assert!(!Path::new("/target").exists());
    fx.assert_safe();
}

#[test]
fn a14_must_not_reject() {
    let fx = Fx::new();
    fs::create_dir_all(fx.p("run/existing")).unwrap();
    fs::create_dir_all(fx.p("var")).unwrap();
    std::os::unix::fs::symlink("/run", fx.p("var/run")).unwrap();
    fs::create_dir_all(fx.p("usr/bin")).unwrap();
    fs::write(fx.p("usr/bin/perl"), b"perl").unwrap();
    fs::create_dir_all(fx.p("bin")).unwrap();
    fs::write(fx.p("bin/dash"), b"dash").unwrap();
    std::os::unix::fs::symlink("dash", fx.p("bin/sh")).unwrap();
    let deep = "../../../../../../../../../../etc/pki/java/cacerts";
    let tar = T::new()
        .file("var/run/existing/non-existing/file", b"f")
        .hardlink(
            "var/run/existing/link",
            "var/run/existing/non-existing/file",
        )
        .hardlink("usr/bin/perlbug", "/usr/bin/perl")
        .symlink("usr/lib/jvm/cacerts", deep)
        .file("bin/sh", b"new sh")
        .add(EntryType::Char, "dev-null", "", b"", 0o666)
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert_eq!(
        fs::read(fx.p("run/existing/non-existing/file")).unwrap(),
        b"f"
    );
    assert!(fx.p("run/existing/link").exists());
    assert_eq!(
        fs::metadata(fx.p("usr/bin/perlbug")).unwrap().ino(),
        fs::metadata(fx.p("usr/bin/perl")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(fx.p("usr/lib/jvm/cacerts")).unwrap(),
        Path::new(deep)
    );
    assert_eq!(fs::read(fx.p("bin/dash")).unwrap(), b"dash");
    assert_eq!(fs::read(fx.p("bin/sh")).unwrap(), b"new sh");
    assert_eq!(
        fs::metadata(fx.p("dev-null")).unwrap().mode() & 0o7777,
        0o666
    );
    fx.assert_safe();
}

#[test]
fn a15_pax_size_disagreement() {
    let fx = Fx::new();
    // The payload looks like a tar holding `../victim/x`; PAX says it is all file data.
    let inner = T::new().file("../victim/x", b"smuggled").bytes();
    let mut outer = tar::Builder::new(Vec::new());
    let size = inner.len().to_string();
    outer
        .append_pax_extensions([("size", size.as_bytes())])
        .unwrap();
    let mut h = raw_header(EntryType::Regular, 0, 0o644);
    put(&mut h.as_old_mut().name, "outer");
    h.set_cksum();
    let mut bytes = outer.get_ref().clone();
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(&inner);
    bytes.extend_from_slice(&[0u8; 1024]);
    let stats = fx.apply(&bytes, WhiteoutMode::Apply).unwrap();
    assert_eq!(stats.entries, 1);
    assert_eq!(fs::read(fx.p("outer")).unwrap(), inner);
    fx.assert_safe();
}

#[test]
fn a16_junk_and_truncation() {
    let fx = Fx::new();
    // a gzip stream fed as a raw layer
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"NAME=debian\nID=debian\n").unwrap();
    assert!(fx
        .apply(&gz.finish().unwrap(), WhiteoutMode::Apply)
        .is_err());
    // a valid header then EOF in the data
    let full = T::new().file("big", &[7u8; 5000]).bytes();
    let r = fx.apply(&full[..512 + 1000], WhiteoutMode::Apply);
    assert!(
        matches!(
            r,
            Err(LayerError::Truncated { .. }) | Err(LayerError::Read(_))
        ),
        "{r:?}"
    );
    // a cut inside a header
    assert!(fx.apply(&full[..300], WhiteoutMode::Apply).is_err());
    // valid entries followed by junk blocks instead of the end marker
    let mut junk = T::new().file("ok", b"ok").bytes();
    junk.truncate(1024);
    junk.extend((0..1024).map(|i| (i * 7 + 3) as u8));
    assert!(fx.apply(&junk, WhiteoutMode::Apply).is_err());
    fx.assert_safe();
}

#[test]
fn a17_size_cap() {
    let fx = Fx::new();
    let big = T::new().file("big", &vec![0u8; 4 << 20]).bytes();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Apply,
        max_bytes: Some(1 << 20),
        same_owner: true,
        limits: Default::default(),
    };
    let r = apply(Cursor::new(big.clone()), &fx.root, &opts);
    assert!(
        matches!(r, Err(LayerError::SizeCap { cap }) if cap == 1 << 20),
        "{r:?}"
    );
    // a gzip bomb through the decompressor hits the same cap
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let blob = gz.finish().unwrap();
    assert!(blob.len() < 64 << 10);
    let (reader, _) = rbuild::layer::decompress(Cursor::new(blob)).unwrap();
    let r = apply(reader, &fx.root, &opts);
    assert!(matches!(r, Err(LayerError::SizeCap { .. })), "{r:?}");
    // under the cap it works and reports the bytes read
    let ok = apply(
        Cursor::new(big.clone()),
        &fx.root,
        &ApplyOptions {
            max_bytes: Some(8 << 20),
            ..opts
        },
    )
    .unwrap();
    assert_eq!(ok.bytes_read, big.len() as u64);
}

#[test]
fn a18_add_archive_into_hostile_rootfs() {
    let fx = Fx::new();
    // /app -> / inside the rootfs: the archive must land in ROOT (resolved in root), and its
    // own escapes are contained in the destination or rejected.
    std::os::unix::fs::symlink("/", fx.p("app")).unwrap();
    fs::create_dir(fx.p("victim")).unwrap();
    let tar = T::new()
        .symlink("up", "../../victim")
        .file("up/added", b"x")
        .file("plain", b"p")
        .file(".wh.literal", b"") // archives are not layers: a plain file
        .bytes();
    let archive = fx.base.join("x.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    fs::write(&archive, gz.finish().unwrap()).unwrap();
    let opts = ApplyOptions {
        same_owner: true,
        ..ApplyOptions::default()
    };
    assert!(extract_if_archive(&archive, &fx.root, Path::new("/app"), &opts).unwrap());
    assert_eq!(fs::read(fx.p("plain")).unwrap(), b"p");
    assert!(fx.p(".wh.literal").exists());
    assert!(fx.p("victim/added").exists());
    fs::remove_file(&archive).unwrap();
    // `../` names in an ADDed archive are rejected too
    let bad = fx.base.join("bad.tar");
    fs::write(&bad, T::new().file("../victim/x", b"x").bytes()).unwrap();
    assert!(extract_if_archive(&bad, &fx.root, Path::new("/dest"), &opts).is_err());
    fs::remove_file(&bad).unwrap();
    // a non-archive (and a compressed non-tar) is reported as such
    let txt = fx.base.join("notes.txt");
    fs::write(&txt, b"just text").unwrap();
    assert!(!extract_if_archive(&txt, &fx.root, Path::new("/d"), &opts).unwrap());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"not a tar but compressed").unwrap();
    fs::write(&txt, gz.finish().unwrap()).unwrap();
    assert!(!extract_if_archive(&txt, &fx.root, Path::new("/d"), &opts).unwrap());
    fs::remove_file(&txt).unwrap();
    fx.assert_safe();
}

// ---------------------------------------------------------------------------------------------
// B. whiteouts

fn etc_fixture() -> Fx {
    let fx = Fx::new();
    fs::create_dir(fx.p("etc")).unwrap();
    fs::write(fx.p("etc/unbroken"), b"keep").unwrap();
    fx
}

#[test]
fn b01_whiteout_dot() {
    for mode in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let fx = etc_fixture();
        for name in [".wh..", "etc/.wh.."] {
            let r = fx.apply(&T::new().file(name, b"").bytes(), mode);
            assert!(
                matches!(r, Err(LayerError::InvalidWhiteout { .. })),
                "{name}: {r:?}"
            );
        }
        assert!(fx.p("etc/unbroken").exists());
        fx.assert_safe();
    }
}

#[test]
fn b02_whiteout_dotdot() {
    for mode in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let fx = etc_fixture();
        for name in [".wh...", "etc/.wh..."] {
            let r = fx.apply(&T::new().file(name, b"").bytes(), mode);
            assert!(
                matches!(r, Err(LayerError::InvalidWhiteout { .. })),
                "{name}: {r:?}"
            );
        }
        assert!(fx.p("etc/unbroken").exists());
        fx.assert_safe();
    }
}

#[test]
fn b03_whiteout_without_basename() {
    let fx = etc_fixture();
    let r = fx.apply(&T::new().file("etc/.wh.", b"").bytes(), WhiteoutMode::Apply);
    assert!(
        matches!(r, Err(LayerError::InvalidWhiteout { .. })),
        "{r:?}"
    );
    assert!(fx.p("etc/unbroken").exists());
}

#[test]
fn b04_whiteout_of_a_symlink_removes_only_the_link() {
    let fx = etc_fixture();
    std::os::unix::fs::symlink("/etc", fx.p("localetc")).unwrap();
    fx.apply(
        &T::new().file(".wh.localetc", b"").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert!(fs::symlink_metadata(fx.p("localetc")).is_err());
    assert!(fx.p("etc/unbroken").exists());
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn b05_whiteout_through_symlinked_dir_is_contained() {
    let fx = etc_fixture();
    fs::write(fx.p("etc/whitedout"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc", fx.p("localetc")).unwrap();
    fx.apply(
        &T::new().file("localetc/.wh.whitedout", b"").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert!(!fx.p("etc/whitedout").exists());
    assert!(fx.p("etc/unbroken").exists());
}

#[test]
fn b06_whiteout_under_dangling_symlink_is_a_noop() {
    let fx = etc_fixture();
    std::os::unix::fs::symlink("/dne", fx.p("localetc")).unwrap();
    fx.apply(
        &T::new().file("localetc/.wh.etc", b"").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert!(fx.p("etc/unbroken").exists());
    assert!(!fx.p("dne").exists());
}

#[test]
fn b07_whiteout_prefix_on_a_directory_component_is_literal() {
    let fx = etc_fixture();
    fx.apply(
        &T::new().file(".wh.etc/somefile", b"s").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert!(fx.p("etc/unbroken").exists());
    assert_eq!(fs::read(fx.p(".wh.etc/somefile")).unwrap(), b"s");
}

#[test]
fn b08_whiteout_relative_path_is_cleaned() {
    let fx = etc_fixture();
    fs::write(fx.p("other"), b"o").unwrap();
    fx.apply(
        &T::new().file("dne/../.wh.etc", b"").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert!(!fx.p("etc").exists());
    assert!(fx.p("other").exists());
    fx.assert_safe();
}

#[test]
fn b09_opaque_after_same_layer_children() {
    let fx = Fx::new();
    fs::create_dir_all(fx.p("a/lower-dir")).unwrap();
    fs::write(fx.p("a/lower-file"), b"l").unwrap();
    let tar = T::new()
        .dir("a/")
        .file("a/b/c/foo", b"same layer")
        .file("a/.wh..wh..opq", b"")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Apply).unwrap();
    assert!(!fx.p("a/lower-dir").exists());
    assert!(!fx.p("a/lower-file").exists());
    assert_eq!(fs::read(fx.p("a/b/c/foo")).unwrap(), b"same layer");
}

#[test]
fn b10_whiteout_and_file_of_the_same_name() {
    for mode in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let fx = Fx::new();
        fs::write(fx.p("foo"), b"lower").unwrap();
        let tar = T::new().file("foo", b"upper").file(".wh.foo", b"").bytes();
        fx.apply(&tar, mode).unwrap();
        assert_eq!(fs::read(fx.p("foo")).unwrap(), b"upper", "{mode:?}");
    }
}

#[test]
fn b11_whiteout_that_is_not_an_empty_file() {
    let fx = etc_fixture();
    let cases = [
        T::new().dir(".wh.etc/").bytes(),
        T::new().symlink(".wh.etc", "x").bytes(),
        T::new().hardlink(".wh.etc", "etc/unbroken").bytes(),
        T::new().file(".wh.etc", b"data").bytes(),
    ];
    for tar in cases {
        let r = fx.apply(&tar, WhiteoutMode::Apply);
        assert!(
            matches!(r, Err(LayerError::InvalidWhiteout { .. })),
            "{r:?}"
        );
        assert!(fx.p("etc/unbroken").exists());
    }
}

#[test]
fn b12_overlay_xattrs_from_the_tar_are_never_applied() {
    let fx = Fx::new();
    let tar = T::new()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.user.rbuild", b"kept"),
        ])
        .dir("d/")
        .bytes();
    fx.apply(&tar, WhiteoutMode::Overlay).unwrap();
    assert_eq!(
        xattr::get(fx.p("d"), "trusted.overlay.opaque").unwrap(),
        None
    );
    assert_eq!(
        xattr::get(fx.p("d"), "trusted.overlay.redirect").unwrap(),
        None
    );
    assert_eq!(
        xattr::get(fx.p("d"), "user.rbuild").unwrap(),
        Some(b"kept".to_vec())
    );
}

#[test]
fn overlay_mode_turns_whiteouts_into_overlay_markers() {
    use std::os::unix::fs::FileTypeExt;
    let fx = Fx::new();
    let tar = T::new()
        .dir("d/")
        .file("d/.wh..wh..opq", b"")
        .file(".wh.gone", b"")
        .bytes();
    let stats = fx.apply(&tar, WhiteoutMode::Overlay).unwrap();
    assert_eq!(stats.whiteouts, 2);
    let md = fs::symlink_metadata(fx.p("gone")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    assert_eq!(
        xattr::get(fx.p("d"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!fx.p(".wh.gone").exists());
}

#[test]
fn apply_keeps_owners_modes_times_xattrs_and_special_files() {
    use std::os::unix::fs::FileTypeExt;
    let fx = Fx::new();
    let mut t = T::new();
    t.pax(&[(
        "SCHILY.xattr.security.capability",
        &[
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ][..],
    )]);
    t.add(EntryType::Regular, "bin/ping", "", b"elf", 0o4755);
    let mut h = raw_header(EntryType::Regular, 2, 0o640);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(1_000_000_000);
    put(&mut h.as_old_mut().name, "owned");
    h.set_cksum();
    t.b.append(&h, &b"ok"[..]).unwrap();
    t.add(EntryType::Fifo, "fifo", "", b"", 0o600);
    let mut h = raw_header(EntryType::Block, 0, 0o660);
    h.set_device_major(7).unwrap();
    h.set_device_minor(3).unwrap();
    put(&mut h.as_old_mut().name, "loop3");
    h.set_cksum();
    t.b.append(&h, &b""[..]).unwrap();
    let mut h = raw_header(EntryType::Directory, 0, 0o1777);
    h.set_mtime(1_234_567_890);
    put(&mut h.as_old_mut().name, "tmp/");
    h.set_cksum();
    t.b.append(&h, &b""[..]).unwrap();
    t.file("tmp/child", b"c");
    fx.apply(&t.bytes(), WhiteoutMode::Apply).unwrap();

    let ping = fs::metadata(fx.p("bin/ping")).unwrap();
    assert_eq!(ping.mode() & 0o7777, 0o4755);
    assert!(xattr::get(fx.p("bin/ping"), "security.capability")
        .unwrap()
        .is_some());
    let owned = fs::metadata(fx.p("owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1234, 5678, 0o640)
    );
    assert_eq!(owned.mtime(), 1_000_000_000);
    assert!(fs::metadata(fx.p("fifo")).unwrap().file_type().is_fifo());
    let dev = fs::metadata(fx.p("loop3")).unwrap();
    assert!(dev.file_type().is_block_device());
    assert_eq!(dev.rdev(), libc::makedev(7, 3));
    let tmp = fs::metadata(fx.p("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    assert_eq!(
        tmp.mtime(),
        1_234_567_890,
        "dir mtime set after its children"
    );
}

// ---------------------------------------------------------------------------------------------
// C5: the extractor behind `COPY --from=<image>` (base layers are applied with `apply`)

#[test]
fn c05_image_layer_cannot_reach_the_builders_own_files() {
    // kaniko #586: an image layer entry `../../../../<builder binary>`.
    let fx = Fx::new();
    let helper = Path::new(env!("CARGO_BIN_EXE_rbuild"));
    let before = fs::read(helper).unwrap();
    let links = fs::metadata(helper).unwrap().nlink();
    let rel = helper.strip_prefix("/").unwrap().to_str().unwrap();
    let climb = format!("{}{rel}", "../".repeat(10));
    let r = fx.apply(
        &T::new().file(&climb, b"pwned").bytes(),
        WhiteoutMode::Apply,
    );
    assert!(is_escape(&r), "{r:?}");
    // An absolute name is re-rooted; a hardlink to the binary is refused or stays inside.
    fx.apply(
        &T::new().file(helper.to_str().unwrap(), b"inside").bytes(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert_eq!(fs::read(fx.p(rel)).unwrap(), b"inside");
    let _ = fx.apply(
        &T::new()
            .hardlink("grab", &climb)
            .hardlink("grab2", helper.to_str().unwrap())
            .bytes(),
        WhiteoutMode::Apply,
    );
    assert_eq!(
        fs::read(helper).unwrap(),
        before,
        "the builder binary changed"
    );
    assert_eq!(fs::metadata(helper).unwrap().nlink(), links);
    fx.assert_safe();
}
