//! Dropping privileges for the RUN command: Docker's default capability set (bounding,
//! permitted, effective; inheritable and ambient empty: GHSA-c3g4-w6cv-6v7h), the USER's
//! ids and groups, and `no_new_privs` (SECURITY D5).

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};

use super::error::ExecError;

/// Docker's default capabilities (CapEff 0x00000000a80425fb for root).
pub const DOCKER_DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Drops to Docker's capability set and switches to `uid:gid` with `groups`.
/// A non-root uid ends with empty permitted/effective sets (the kernel clears them on
/// setuid); root keeps the 14 default capabilities.
pub(crate) fn drop_to(uid: u32, gid: u32, groups: &[u32]) -> Result<(), ExecError> {
    let keep: CapsHashSet = DOCKER_DEFAULT_CAPS.iter().copied().collect();
    let caps_err =
        |what: &str, e: caps::errors::CapsError| ExecError::Setup(format!("{what}: {e}"));
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| caps_err("drop bounding capability", e))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("clear ambient capabilities", e))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| caps_err("clear inheritable capabilities", e))?;
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &keep)
        .map_err(|e| caps_err("set effective capabilities", e))?;
    caps::set(None, CapSet::Permitted, &keep)
        .map_err(|e| caps_err("set permitted capabilities", e))?;

    let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).map_err(|e| ExecError::io("setgroups", e))?;
    nix::unistd::setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))
        .map_err(|e| ExecError::io(format!("setgid {gid}"), e))?;
    nix::unistd::setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
        .map_err(|e| ExecError::io(format!("setuid {uid}"), e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| ExecError::io("set no_new_privs", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_default_set_is_dockers_mask() {
        let mask: u64 = DOCKER_DEFAULT_CAPS
            .iter()
            .map(|c| c.bitmask())
            .fold(0, |a, b| a | b);
        assert_eq!(mask, 0xa80425fb);
    }
}
