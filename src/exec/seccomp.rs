//! The RUN command's seccomp filter: what Docker's default profile (moby
//! `profiles/seccomp/default.json`) refuses to a container holding the 14 default capabilities,
//! expressed as a deny list for `seccompiler` (pure Rust, Firecracker's; no libseccomp C
//! dependency). Denied calls fail with `EPERM`, as with Docker — the process is not killed.
//! `clone3` gets `ENOSYS` instead (Docker's `errnoRet: 38`): its flags sit behind a pointer a
//! filter cannot read, and libc falls back to `clone`, whose flags the filter checks.
//!
//! Docker allows `ptrace`, `process_vm_readv` and `process_vm_writev` on kernels >= 4.8 (the
//! kernel then checks them like any ptrace access), so they are allowed here too.
//!
//! x32: on kernels built with `CONFIG_X86_X32_ABI`, an x86_64 process may call any syscall with
//! `__X32_SYSCALL_BIT` (0x40000000) set in its number; the audit arch is still x86_64, so a deny
//! list keyed by x86_64 numbers would let `unshare | 0x40000000` through. A third program refuses
//! every x32 number with EPERM (docs/compat.md "Seccomp and x32").

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::error::ExecError;

/// Refused outright: need a capability RUN does not have (CAP_SYS_ADMIN, _MODULE, _BOOT,
/// _TIME, _RAWIO, _PACCT, _NICE, _PTRACE for kcmp/pidfd_getfd, CAP_SYSLOG, CAP_BPF,
/// CAP_PERFMON), or are not allowed to containers at all (keyrings, kexec, swap,
/// userfaultfd, open_by_handle_at, io_uring, ...). `create_module`, `get_kernel_syms` and
/// `query_module` are gone from the kernel (ENOSYS) and from `libc`.
// seccompiler keys rules by i64: `c_long` on the 64-bit targets it supports.
const DENIED: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_fanotify_init,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_pivot_root,
    libc::SYS_process_madvise,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setdomainname,
    libc::SYS_sethostname,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
];

/// `clone` flags that create namespaces (Docker's mask 0x7E020000); CLONE_NEWTIME is left
/// out because for `clone` its bit is part of the exit signal.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The personalities Docker allows (`PER_LINUX`, `PER_LINUX32`, `UNAME26` variants, query).
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: Docker refuses these sockets to containers.
const AF_VSOCK: u64 = 40;

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ExecError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| ExecError::Setup(format!("seccomp rule: {e}")))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, ExecError> {
    SeccompRule::new(conds).map_err(|e| ExecError::Setup(format!("seccomp rule: {e}")))
}

fn arch() -> Result<TargetArch, ExecError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| ExecError::Setup(format!("seccomp on {}: {e}", std::env::consts::ARCH)))
}

/// The two programs to install: the EPERM deny list, then clone3's ENOSYS.
pub(crate) fn programs() -> Result<Vec<BpfProgram>, ExecError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in DENIED {
        rules.insert(*nr, Vec::new()); // no conditions: always matches
    }
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|f| {
            let f = *f as u64;
            rule(vec![cond(0, SeccompCmpOp::MaskedEq(f), f)?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // personality(x) is refused unless x is one of PERSONAS (conditions of a rule are ANDed).
    let not_allowed = PERSONAS
        .iter()
        .map(|p| cond(0, SeccompCmpOp::Ne, *p))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(not_allowed)?]);
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, AF_VSOCK)?])?],
    );
    let compile = |rules, errno: i32| -> Result<BpfProgram, ExecError> {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch()?,
        )
        .map_err(|e| ExecError::Setup(format!("seccomp filter: {e}")))?;
        filter.try_into().map_err(|e: seccompiler::BackendError| {
            ExecError::Setup(format!("seccomp filter: {e}"))
        })
    };
    let deny = compile(rules, libc::EPERM)?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
    )?;
    let mut programs = vec![deny, clone3];
    #[cfg(target_arch = "x86_64")]
    programs.push(deny_x32());
    Ok(programs)
}

/// `__X32_SYSCALL_BIT`: x32 syscall numbers are the x86_64 ones (or 512+) with this bit set.
#[cfg(target_arch = "x86_64")]
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A classic-BPF program refusing every x32 syscall number with EPERM. seccompiler's rules
/// match syscall numbers exactly, so "every number at or above the x32 bit" is written
/// directly: load arch, load nr, one `jge`. Other arches return ALLOW here; the deny program
/// decides for them.
#[cfg(target_arch = "x86_64")]
fn deny_x32() -> BpfProgram {
    use seccompiler::sock_filter;
    // `struct seccomp_data`: nr at offset 0, arch at offset 4.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    // AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let allow = libc::SECCOMP_RET_ALLOW;
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    vec![
        stmt(ld, ARCH),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH_X86_64,
            0,
            3,
        ),
        stmt(ld, NR),
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            X32_SYSCALL_BIT,
            0,
            1,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, eperm),
        stmt(libc::BPF_RET | libc::BPF_K, allow),
    ]
}

/// Installs `programs` on the calling thread (after `no_new_privs`, just before `execve`).
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), ExecError> {
    for p in programs {
        seccompiler::apply_filter(p)
            .map_err(|e| ExecError::Setup(format!("install seccomp filter: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_the_filters_compile_for_this_machine() {
        let p = programs().unwrap();
        assert_eq!(p.len(), if cfg!(target_arch = "x86_64") { 3 } else { 2 });
        assert!(
            p[0].len() > DENIED.len(),
            "one check per denied syscall at least"
        );
    }
}
