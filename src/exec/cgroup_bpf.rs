//! The cgroup v2 device filter: a `BPF_PROG_TYPE_CGROUP_DEVICE` program with Docker's device
//! allowlist, attached to the RUN's v2 cgroup (on v2 hosts its one leaf, on hybrid hosts a leaf in
//! the unified hierarchy). It is the v2 counterpart of the v1 devices controller and a second layer
//! next to the nodev mounts (README.md "Devices").
//!
//! Hand-assembled (about 25 instructions) rather than with a BPF crate (aya, libbpf-rs): those
//! bring a loader and object-file handling for what is one fixed program.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::error::ExecError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

/// `bpf_cgroup_dev_ctx.access_type`: type in the low 16 bits, access in the high ones.
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;

/// Character devices a RUN may read and write (minor `None` = any): null, zero, full, random,
/// urandom, tty, console, ptmx, pts/*. Any device may be created (mknod) as with Docker.
const ALLOWED: [(i32, Option<i32>); 9] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
];

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

#[derive(Clone, Copy)]
enum Target {
    Allow,
    Deny,
}

/// The program: returns 1 (allow) or 0 (deny) for `(access, type, major, minor)` in r1's context.
fn program() -> Vec<Insn> {
    let mut code = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
        insn(ALU64_MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(ALU64_AND_K, 3, 0, 0, 0xffff), // r3 = device type
        insn(ALU64_RSH_K, 2, 0, 0, 16),     // r2 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
    ];
    let mut jumps: Vec<(usize, Target)> = Vec::new();
    let mut jump = |code: &mut Vec<Insn>, op: u8, reg: u8, imm: i32, to: Target| {
        jumps.push((code.len(), to));
        code.push(insn(op, reg, 0, 0, imm));
    };
    jump(&mut code, JMP_JEQ_K, 2, ACC_MKNOD, Target::Allow);
    jump(&mut code, JMP_JNE_K, 3, DEV_CHAR, Target::Deny);
    for (major, minor) in ALLOWED {
        match minor {
            Some(minor) => {
                // Not this major: skip the minor test.
                code.push(insn(JMP_JNE_K, 4, 0, 1, major));
                jump(&mut code, JMP_JEQ_K, 5, minor, Target::Allow);
            }
            None => jump(&mut code, JMP_JEQ_K, 4, major, Target::Allow),
        }
    }
    let deny = code.len();
    code.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    code.push(insn(JMP_EXIT, 0, 0, 0, 0));
    let allow = code.len();
    code.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    code.push(insn(JMP_EXIT, 0, 0, 0, 0));
    for (at, to) in jumps {
        let target = match to {
            Target::Allow => allow,
            Target::Deny => deny,
        };
        // Offsets count from the instruction after the jump.
        code[at].off = (target - at - 1) as i16;
    }
    code
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> std::io::Result<libc::c_long> {
    // SAFETY: bpf(2) with a zeroed, 128-byte attribute block laid out as the kernel's union
    // bpf_attr for `cmd`; pointers in it reference buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load() -> Result<OwnedFd, ExecError> {
    let prog = program();
    let license = b"Apache-2.0\0";
    let mut attr = [0u64; 16];
    attr[0] = u64::from(BPF_PROG_TYPE_CGROUP_DEVICE) | ((prog.len() as u64) << 32);
    attr[1] = prog.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let fd = bpf(BPF_PROG_LOAD, &mut attr)
        .map_err(|e| ExecError::Cgroup(format!("load the device filter (BPF): {e}")))?;
    // SAFETY: bpf returned a new program fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches Docker's device allowlist to the v2 cgroup `dir`; it stays attached (and is freed)
/// with the cgroup.
pub(crate) fn attach_device_filter(dir: &Path) -> Result<(), ExecError> {
    let prog = load()?;
    let cg = std::fs::File::open(dir)
        .map_err(|e| ExecError::Cgroup(format!("open {}: {e}", dir.display())))?;
    let mut attr = [0u64; 16];
    attr[0] = u64::from(cg.as_raw_fd() as u32) | (u64::from(prog.as_raw_fd() as u32) << 32);
    attr[1] = u64::from(BPF_CGROUP_DEVICE);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        ExecError::Cgroup(format!(
            "attach the device filter to {}: {e}",
            dir.display()
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// The v2 hierarchy: `/sys/fs/cgroup` on v2 hosts, the unified one on hybrid hosts.
    fn v2_mount() -> Option<std::path::PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "cgroup2").then(|| std::path::PathBuf::from(mount))
        })
    }

    /// Opens (without reading) each device in a shell, inside `cgroup` when given.
    fn open_devices(cgroup: Option<&Path>) -> String {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(
            "for d in null zero urandom loop-control; do \
             (exec 3</dev/$d) 2>/dev/null && echo $d=open || echo $d=denied; done",
        );
        if let Some(cg) = cgroup {
            let procs = CString::new(
                cg.join("cgroup.procs")
                    .as_os_str()
                    .to_string_lossy()
                    .as_ref(),
            )
            .unwrap();
            // SAFETY: open/write/close only, on data prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                });
            }
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    }

    #[test]
    fn the_filter_lets_only_the_allowlist_open() {
        let Some(mount) = v2_mount() else {
            assert!(
                std::env::var_os("RBUILD_REQUIRE_TOOLS").is_none(),
                "no cgroup v2 hierarchy mounted"
            );
            eprintln!("skipped: no cgroup v2 hierarchy mounted");
            return;
        };
        // Control: outside the cgroup, root opens all four (so the test can fail).
        assert_eq!(
            open_devices(None),
            "null=open\nzero=open\nurandom=open\nloop-control=open\n"
        );
        let dir = mount.join(format!("rbuild-test-bpf-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let attached = attach_device_filter(&dir);
        let out = attached.as_ref().map(|()| open_devices(Some(&dir)));
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            out.unwrap(),
            "null=open\nzero=open\nurandom=open\nloop-control=denied\n"
        );
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        let p = program();
        for (i, ins) in p.iter().enumerate() {
            if ins.code == JMP_JEQ_K || ins.code == JMP_JNE_K {
                let to = i as i64 + 1 + i64::from(ins.off);
                assert!(to > i as i64 && (to as usize) < p.len(), "jump at {i}");
            }
        }
        assert_eq!(p.last().map(|i| i.code), Some(JMP_EXIT));
    }
}
