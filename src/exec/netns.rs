//! Small network-namespace chores: bringing `lo` up in a new namespace, and the host's own
//! address for `--add-host NAME:host-gateway`.

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

/// The host's address on its default route: what `--add-host NAME:host-gateway` maps to.
///
/// From `Network::Default` the gateway 10.0.2.2 does not reach the host (the host's loopback
/// is closed to RUN), so the host's own interface address is used, as Docker uses its bridge
/// address: services the host binds on all interfaces are reachable, loopback-only ones not.
pub fn host_gateway_ip() -> Result<std::net::IpAddr, ExecError> {
    // A UDP connect only picks a route and a source address; no packet is sent.
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .map_err(|e| ExecError::io("socket for host-gateway", e))?;
    sock.connect("8.8.8.8:53")
        .and_then(|()| sock.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
        .ok_or_else(|| {
            ExecError::UserNet("host-gateway: the host has no IPv4 default route".into())
        })
}
