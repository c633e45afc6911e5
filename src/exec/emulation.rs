//! Foreign RUN steps: an [`Executor`] that runs another architecture's programs under QEMU user
//! emulation through binfmt_misc (README "Multi-platform builds").
//!
//! The kernel does the work: with a `qemu-<arch>` binfmt entry registered with the fix-binary
//! flag `F`, it opened the interpreter when the entry was registered, so exec of a foreign ELF
//! inside any root (after pivot_root) runs it under `/usr/bin/qemu-<arch>-static` with nothing
//! copied into the rootfs. Debian's `qemu-user-static` registers those entries (flags `OPF`)
//! through systemd-binfmt or binfmt-support; where neither runs (a container, CI), this module
//! mounts binfmt_misc if absent and registers the one entry a build needs, with the magic and
//! mask from the package's own `/usr/lib/binfmt.d/qemu-<arch>.conf` and flags `F`.

use crate::exec::{ExecError, Executor, RunOutcome, RunSpec, Stream};
use crate::snapshot::MountSpec;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
const PACKAGE: &str = "qemu-user-static";

/// The QEMU name of an OCI architecture (`arm64` → `aarch64`), when QEMU emulates it.
pub fn qemu_arch(oci_arch: &str) -> Option<&'static str> {
    crate::platform::kernel_arch_of(oci_arch)
}

/// Whether this host runs `oci_arch` programs natively (its own architecture, or 32-bit x86 on
/// x86-64).
pub fn runs_natively(oci_arch: &str) -> bool {
    let host = std::env::consts::ARCH;
    matches!(
        (host, oci_arch),
        ("x86_64", "amd64") | ("x86_64", "386") | ("aarch64", "arm64") | ("arm", "arm")
    ) || oci_arch.is_empty()
}

/// Runs through `inner` after making sure the binfmt entry for `arch` exists.
pub struct EmulatedExecutor<'a> {
    pub inner: &'a dyn Executor,
    /// The OCI architecture (`arm64`), for messages and the QEMU name.
    pub arch: String,
}

impl Executor for EmulatedExecutor<'_> {
    fn run(
        &self,
        rootfs: &[MountSpec],
        spec: &RunSpec,
        cancel: Option<Arc<AtomicBool>>,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<RunOutcome, ExecError> {
        ensure_binfmt(&self.arch, Path::new(BINFMT_DIR), Path::new("/"))?;
        self.inner.run(rootfs, spec, cancel, output)
    }
}

fn setup(msg: String) -> ExecError {
    ExecError::Setup(msg)
}

/// Makes sure `binfmt_dir` has an enabled `qemu-<arch>` entry; `sysroot` is where
/// `/usr/bin/qemu-*-static` and `/usr/lib/binfmt.d` are looked up (`/`, or a test's tree).
pub fn ensure_binfmt(oci_arch: &str, binfmt_dir: &Path, sysroot: &Path) -> Result<(), ExecError> {
    // One registration at a time: two stages of one build must not both write `register`.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let qarch = qemu_arch(oci_arch).ok_or_else(|| {
        setup(format!(
            "RUN for architecture {oci_arch:?}: QEMU user emulation does not support it"
        ))
    })?;
    let entry = binfmt_dir.join(format!("qemu-{qarch}"));
    if let Some(state) = read_entry(&entry) {
        if state.lines().next() == Some("enabled") {
            return Ok(());
        }
        return Err(setup(format!(
            "RUN for {oci_arch}: the binfmt_misc entry {} is disabled (enable it: `echo 1 > {}`)",
            entry.display(),
            entry.display()
        )));
    }
    let interpreter = sysroot.join(format!("usr/bin/qemu-{qarch}-static"));
    let conf = sysroot.join(format!("usr/lib/binfmt.d/qemu-{qarch}.conf"));
    if !interpreter.is_file() || !conf.is_file() {
        return Err(setup(format!(
            "RUN for {oci_arch} needs QEMU user emulation and {} is missing: install Debian's \
             package {PACKAGE} (apt-get install {PACKAGE})",
            if interpreter.is_file() {
                &conf
            } else {
                &interpreter
            }
            .display()
        )));
    }
    let register = binfmt_dir.join("register");
    if !register.exists() {
        mount_binfmt_misc(binfmt_dir)?;
    }
    let text = std::fs::read_to_string(&conf).map_err(|source| ExecError::Io {
        what: format!("reading {}", conf.display()),
        source,
    })?;
    let line = registration(
        &text,
        qarch,
        &PathBuf::from(format!("/usr/bin/qemu-{qarch}-static")),
    )
    .ok_or_else(|| {
        setup(format!(
            "{}: no binfmt entry for qemu-{qarch}",
            conf.display()
        ))
    })?;
    match std::fs::write(&register, line.as_bytes()) {
        Ok(()) => Ok(()),
        // Registered meanwhile by another process.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(source) => Err(ExecError::Io {
            what: format!(
                "registering qemu-{qarch} in {} (RUN for {oci_arch} needs it; as root, or \
                 install {PACKAGE} with binfmt-support)",
                register.display()
            ),
            source,
        }),
    }
}

fn read_entry(entry: &Path) -> Option<String> {
    std::fs::read_to_string(entry).ok()
}

fn mount_binfmt_misc(dir: &Path) -> Result<(), ExecError> {
    nix::mount::mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| ExecError::Io {
        what: format!(
            "mounting binfmt_misc on {} (needed to register QEMU for a foreign RUN)",
            dir.display()
        ),
        source: e.into(),
    })
}

/// The `register` line for `qarch` from a binfmt.d file (`:name:type:offset:magic:mask:interp:flags`):
/// its name, type, offset, magic and mask, with `interpreter` and flags `F`.
pub fn registration(conf: &str, qarch: &str, interpreter: &Path) -> Option<String> {
    let name = format!("qemu-{qarch}");
    conf.lines().find_map(|l| {
        let l = l.trim();
        let sep = l.chars().next()?;
        let f: Vec<&str> = l[1..].split(sep).collect();
        (f.len() >= 6 && f[0] == name).then(|| {
            format!(
                "{sep}{name}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}F",
                f[1],
                f[2],
                f[3],
                f[4],
                interpreter.display()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";

    #[test]
    fn registration_keeps_magic_sets_interpreter_and_f() {
        let line =
            registration(CONF, "aarch64", Path::new("/usr/bin/qemu-aarch64-static")).unwrap();
        assert!(
            line.starts_with(r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02"),
            "{line}"
        );
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:F"), "{line}");
        assert!(registration(CONF, "arm", Path::new("/x")).is_none());
    }

    #[test]
    fn missing_emulator_names_the_package() {
        let t = tempfile::tempdir().unwrap();
        let e = ensure_binfmt("arm64", &t.path().join("binfmt"), t.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("qemu-user-static") && e.contains("qemu-aarch64-static"),
            "{e}"
        );
        // An enabled entry is enough, whatever the sysroot holds.
        std::fs::create_dir(t.path().join("binfmt")).unwrap();
        std::fs::write(
            t.path().join("binfmt/qemu-aarch64"),
            "enabled\ninterpreter x\n",
        )
        .unwrap();
        ensure_binfmt("arm64", &t.path().join("binfmt"), t.path()).unwrap();
        std::fs::write(t.path().join("binfmt/qemu-aarch64"), "disabled\n").unwrap();
        assert!(ensure_binfmt("arm64", &t.path().join("binfmt"), t.path()).is_err());
        assert_eq!(qemu_arch("arm64"), Some("aarch64"));
        assert!(runs_natively("") && !runs_natively("s390x"));
    }
}
