//! Bringing `lo` up in a new network namespace (`Network::None`).

use super::error::ExecError;

/// Sets IFF_UP on `lo` in the current network namespace.
///
/// Hand-written with two ioctls: a netlink crate would be a large dependency for one flag.
pub(crate) fn loopback_up() -> Result<(), ExecError> {
    // SAFETY: plain socket/ioctl calls on a zeroed, NUL-terminated ifreq we own; the
    // socket fd is closed on every path.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(ExecError::io(
                "socket for lo",
                std::io::Error::last_os_error(),
            ));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            result = Err(ExecError::io(
                "get lo flags",
                std::io::Error::last_os_error(),
            ));
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr) < 0 {
                result = Err(ExecError::io(
                    "bring lo up",
                    std::io::Error::last_os_error(),
                ));
            }
        }
        libc::close(sock);
        result
    }
}
