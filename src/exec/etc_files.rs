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

/// Host network: the host's resolver config. Default network: the user-mode stack's DNS
/// forwarder, keeping the host's `search`/`options` lines. No network: only localhost, so
/// lookups fail fast instead of timing out.
pub(crate) fn resolv_conf(network: Network, host_resolv: Option<&str>) -> String {
    match network {
        Network::Default => {
            let mut s = format!("nameserver {}\n", super::usernet::DNS_ADDR);
            for line in host_resolv.unwrap_or("").lines() {
                let t = line.trim_start();
                if t.starts_with("search") || t.starts_with("options") {
                    s.push_str(line);
                    s.push('\n');
                }
            }
            s
        }
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
        assert_eq!(
            resolv_conf(
                Network::Default,
                Some("search lan\nnameserver 127.0.0.53\noptions edns0\n")
            ),
            "nameserver 10.0.2.3\nsearch lan\noptions edns0\n"
        );
        assert_eq!(resolv_conf(Network::Default, None), "nameserver 10.0.2.3\n");
    }
}
