//! `--network`, `--allow` and `--add-host` of `rbuild build` (README "Network modes").

use anyhow::{anyhow, bail, Result};

use crate::exec::Network;
use crate::solve::BuildOptions;

/// Sets the build's network options from the flags.
pub(super) fn apply(
    network: &str,
    allow: &[String],
    add_hosts: &[String],
    opts: &mut BuildOptions,
) -> Result<()> {
    // docker's `bridge` is its default network: here, the build's own namespace per RUN.
    let network = if network == "bridge" {
        "default"
    } else {
        network
    };
    opts.network = network
        .parse::<Network>()
        .map_err(|e| anyhow!("--network: {e}"))?;
    // As buildx: choosing the host network for the whole build grants the entitlement.
    opts.allow_network_host = opts.network == Network::Host;
    for a in allow.iter().flat_map(|a| a.split(',')) {
        match a.trim() {
            "network.host" => opts.allow_network_host = true,
            other => {
                bail!("--allow {other:?}: unsupported entitlement (rbuild knows network.host)")
            }
        }
    }
    let mut gateway = None;
    for h in add_hosts {
        let (name, ip) = parse_add_host(h)?;
        let ip = if ip == "host-gateway" {
            match gateway {
                Some(g) => g,
                None => {
                    let g = crate::exec::host_gateway_ip()
                        .map_err(|e| anyhow!("--add-host {h}: {e}"))?;
                    gateway = Some(g);
                    g
                }
            }
            .to_string()
        } else {
            ip
        };
        opts.extra_hosts.push((name, ip));
    }
    Ok(())
}

/// Docker's syntax: `NAME:IP` or `NAME=IP`; an IPv6 address may be in brackets; the IP may be
/// `host-gateway`.
fn parse_add_host(s: &str) -> Result<(String, String)> {
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| anyhow!("--add-host {s:?}: expected NAME:IP"))?;
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        bail!("--add-host {s:?}: invalid host name {name:?}");
    }
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        bail!("--add-host {s:?}: invalid IP address {ip:?}");
    }
    Ok((name.to_string(), ip.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_forms() {
        let p = |s| parse_add_host(s).map_err(|e| e.to_string());
        assert_eq!(p("db:10.0.0.2").unwrap(), ("db".into(), "10.0.0.2".into()));
        assert_eq!(p("db=10.0.0.2").unwrap(), ("db".into(), "10.0.0.2".into()));
        assert_eq!(p("v6:::1").unwrap(), ("v6".into(), "::1".into()));
        assert_eq!(p("v6=[fd00::3]").unwrap(), ("v6".into(), "fd00::3".into()));
        assert_eq!(p("gw:host-gateway").unwrap().1, "host-gateway");
        assert!(p("db").unwrap_err().contains("expected NAME:IP"));
        assert!(p("db:not-an-ip").unwrap_err().contains("invalid IP"));
        assert!(p(":10.0.0.2").unwrap_err().contains("invalid host name"));
    }

    #[test]
    fn network_and_entitlement() {
        let mut o = BuildOptions::new(
            "/nonexistent".into(),
            crate::solve::ContextSource::Dir("/nonexistent".into()),
        );
        apply("default", &[], &[], &mut o).unwrap();
        assert_eq!((o.network, o.allow_network_host), (Network::Default, false));
        apply("host", &[], &[], &mut o).unwrap();
        assert_eq!((o.network, o.allow_network_host), (Network::Host, true));
        apply("none", &["network.host".into()], &[], &mut o).unwrap();
        assert_eq!((o.network, o.allow_network_host), (Network::None, true));
        apply("bridge", &[], &[], &mut o).unwrap();
        assert_eq!((o.network, o.allow_network_host), (Network::Default, false));
        assert!(apply("bridged", &[], &[], &mut o).is_err());
        assert!(apply("default", &["security.insecure".into()], &[], &mut o).is_err());
    }
}
