//! Contents of the per-run `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`
//! (formats as BuildKit writes them).

use super::spec::Network;

/// Used when the host has no resolv.conf (Docker's fallback).
const DEFAULT_RESOLV: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

pub(crate) fn hosts(hostname: &str, extra_hosts: &[(String, String)]) -> String {
    let mut s =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, ip) in extra_hosts {
        s.push_str(&format!("{ip}\t{host}\n"));
    }
    s
}

/// Host network: the host's resolver config. No network: only localhost, so lookups fail
/// fast instead of timing out.
pub(crate) fn resolv_conf(network: Network, host_resolv: Option<&str>) -> String {
    match network {
        Network::Host => host_resolv
            .filter(|s| s.lines().any(|l| l.trim_start().starts_with("nameserver")))
            .map(str::to_string)
            .unwrap_or_else(|| DEFAULT_RESOLV.to_string()),
        Network::None => "nameserver 127.0.0.1\n".to_string(),
    }
}

pub(crate) fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_hostname_and_extras() {
        let h = hosts("box", &[("db".into(), "10.0.0.2".into())]);
        assert_eq!(
            h,
            "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.2\tdb\n"
        );
    }

    #[test]
    fn resolv_conf_by_network() {
        let host = "search lan\nnameserver 192.168.1.1\n";
        assert_eq!(resolv_conf(Network::Host, Some(host)), host);
        assert_eq!(resolv_conf(Network::Host, None), DEFAULT_RESOLV);
        assert_eq!(
            resolv_conf(Network::Host, Some("search x\n")),
            DEFAULT_RESOLV
        );
        assert_eq!(
            resolv_conf(Network::None, Some(host)),
            "nameserver 127.0.0.1\n"
        );
    }
}
