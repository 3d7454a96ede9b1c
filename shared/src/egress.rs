//! The egress policy: which addresses the gateway may open a connection to on a tenant's behalf.
//!
//! A tenant chooses its providers' base URLs, so an upstream address is attacker-controlled
//! input. Without a policy a tenant could point a provider at the cloud metadata service, the
//! control plane, Redis, or anything else on the gateway's private network, and read answers
//! back through error messages (SSRF). The rule:
//!
//! - Public unicast addresses are always allowed.
//! - Loopback, private (RFC 1918), link-local, unique-local, CGNAT, multicast, unspecified,
//!   documentation, benchmarking and reserved ranges are refused unless an entry of the
//!   operator's allow-list (`SWITCHYARD_UPSTREAM_ALLOW_CIDRS`) covers the address.
//! - Cloud metadata addresses (AWS, GCP, Azure, Alibaba, Oracle, ECS/EKS) are refused unless the
//!   allow-list names that exact address: allowing `169.254.0.0/16` for a link-local service
//!   must not silently open the metadata endpoint too.
//! - IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) addresses are
//!   judged by the IPv4 address they carry, so `[::ffff:127.0.0.1]` is loopback.
//!
//! This module only judges addresses; resolving names and checking at connection time (so DNS
//! rebinding cannot slip past a check made earlier) is the data plane's `egress` module.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The allow-list of the zero-setup default: loopback only, so a local vLLM, Ollama or
/// llama.cpp works out of the box. Distributed deployments default to an empty list.
pub const ZERO_SETUP_ALLOW: &str = "127.0.0.0/8,::1/128";

/// Which upstream addresses are allowed. Cheap to clone; built once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
}

/// Why an address is refused, named after the range it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub range: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} address", self.range)
    }
}

/// A malformed `SWITCHYARD_UPSTREAM_ALLOW_CIDRS` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8, 192.168.1.5)")]
pub struct BadCidr {
    pub entry: String,
}

const METADATA: &str = "cloud metadata";

/// Addresses of cloud instance metadata services.
const METADATA_ADDRESSES: [IpAddr; 6] = [
    // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean.
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    // AWS ECS task metadata and EKS pod identity agent.
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
    // Alibaba Cloud.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // Oracle Cloud (legacy).
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    // AWS over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Non-public IPv4 ranges: (network, prefix length, name).
const V4_RANGES: [(Ipv4Addr, u8, &str); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "unspecified"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "carrier-grade NAT"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "reserved"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "reserved"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    // Includes the limited broadcast address 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

/// Non-public IPv6 ranges. `::ffff:0:0/96`, `64:ff9b::/96` and `2002::/16` are not here: they
/// are judged by the IPv4 address they embed.
const V6_RANGES: [(Ipv6Addr, u8, &str); 11] = [
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    // IPv4-compatible addresses (deprecated), e.g. ::127.0.0.1.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "reserved"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "private"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "reserved"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "reserved"),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

impl EgressPolicy {
    /// Parses a comma-separated list of CIDRs (a bare address means just that address).
    /// Blank entries are ignored, so an empty string is the empty (strictest) policy.
    pub fn parse(list: &str) -> Result<Self, BadCidr> {
        let mut allow = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| BadCidr {
                    entry: entry.chars().take(64).collect(),
                })?;
            allow.push(net.trunc());
        }
        Ok(Self { allow })
    }

    /// The allow-list, for logs and docs.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether the gateway may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        if METADATA_ADDRESSES.contains(&ip) {
            let named = self
                .allow
                .iter()
                .any(|net| net.prefix_len() == net.max_prefix_len() && net.addr() == ip);
            return if named {
                Ok(())
            } else {
                Err(Refused { range: METADATA })
            };
        }
        let Some(range) = non_public_range(ip) else {
            // A public IPv6 address may still carry a non-public IPv4 one (NAT64, 6to4).
            return match embedded_v4(ip) {
                Some(v4) => self.check(IpAddr::V4(v4)),
                None => Ok(()),
            };
        };
        if self.allow.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(Refused { range })
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; everything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The name of the non-public range `ip` falls in, if any.
fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => V4_RANGES
            .iter()
            .find(|(net, len, _)| v4_in(v4, *net, *len))
            .map(|(_, _, name)| *name),
        IpAddr::V6(v6) => V6_RANGES
            .iter()
            .find(|(net, len, _)| v6_in(v6, *net, *len))
            .map(|(_, _, name)| *name),
    }
}

/// The IPv4 address inside a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let bits = u128::from(v6);
    if v6_in(v6, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some(Ipv4Addr::from((bits & 0xffff_ffff) as u32));
    }
    if v6_in(v6, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// `(address, policy, expected)`: `Ok(())` or the refused range's name.
    fn check(cases: &[(&str, &str, Result<(), &str>)]) {
        for (addr, policy, want) in cases {
            let ip: IpAddr = addr.parse().expect("test address");
            let policy = EgressPolicy::parse(policy).expect("test policy");
            let got = policy.check(ip).map_err(|r| r.range);
            assert_eq!(got, *want, "{addr} under {policy:?}");
        }
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        check(&[
            ("127.0.0.1", "", Err("loopback")),
            ("127.255.0.9", "", Err("loopback")),
            ("::1", "", Err("loopback")),
            ("0.0.0.0", "", Err("unspecified")),
            ("::", "", Err("unspecified")),
            ("10.0.0.1", "", Err("private")),
            ("172.16.5.4", "", Err("private")),
            ("172.31.255.255", "", Err("private")),
            ("192.168.1.1", "", Err("private")),
            ("100.64.0.1", "", Err("carrier-grade NAT")),
            ("169.254.1.1", "", Err("link-local")),
            ("fe80::1", "", Err("link-local")),
            ("fd12:3456::1", "", Err("unique-local")),
            ("fc00::1", "", Err("unique-local")),
            ("224.0.0.1", "", Err("multicast")),
            ("ff02::1", "", Err("multicast")),
            ("255.255.255.255", "", Err("reserved")),
            ("240.0.0.1", "", Err("reserved")),
            ("192.0.2.10", "", Err("documentation")),
            ("2001:db8::1", "", Err("documentation")),
            ("198.18.0.1", "", Err("benchmarking")),
            ("::127.0.0.1", "", Err("reserved")),
        ]);
    }

    #[test]
    fn embedded_ipv4_is_judged_by_the_ipv4_address() {
        check(&[
            ("::ffff:127.0.0.1", "", Err("loopback")),
            ("::ffff:10.1.2.3", "", Err("private")),
            ("::ffff:169.254.169.254", "", Err(METADATA)),
            ("64:ff9b::7f00:1", "", Err("loopback")),
            ("64:ff9b::a00:1", "", Err("private")),
            ("2002:7f00:1::", "", Err("loopback")),
            ("2002:c0a8:101::1", "", Err("private")),
            ("64:ff9b::808:808", "", Ok(())),
            ("::ffff:127.0.0.1", "127.0.0.0/8", Ok(())),
        ]);
    }

    #[test]
    fn public_addresses_pass_and_the_allow_list_opens_ranges() {
        check(&[
            ("8.8.8.8", "", Ok(())),
            ("104.18.6.192", "", Ok(())),
            ("2606:4700::6810:1", "", Ok(())),
            ("127.0.0.1", ZERO_SETUP_ALLOW, Ok(())),
            ("::1", ZERO_SETUP_ALLOW, Ok(())),
            ("10.0.0.1", ZERO_SETUP_ALLOW, Err("private")),
            ("10.0.0.1", "10.0.0.0/8", Ok(())),
            ("10.1.0.1", "10.0.0.1", Err("private")),
            ("10.0.0.1", " 10.0.0.1 , ", Ok(())),
            ("fd00::5", "fd00::/8", Ok(())),
            ("192.168.1.1", "0.0.0.0/0", Ok(())),
        ]);
    }

    #[test]
    fn metadata_addresses_need_an_explicit_entry() {
        check(&[
            ("169.254.169.254", "", Err(METADATA)),
            ("169.254.169.254", "169.254.0.0/16", Err(METADATA)),
            ("169.254.169.254", "0.0.0.0/0", Err(METADATA)),
            ("169.254.169.254", "169.254.169.254/32", Ok(())),
            ("169.254.169.254", "169.254.169.254", Ok(())),
            ("169.254.170.2", "169.254.0.0/16", Err(METADATA)),
            ("100.100.100.200", "100.64.0.0/10", Err(METADATA)),
            ("fd00:ec2::254", "fd00::/8", Err(METADATA)),
            ("169.254.1.1", "169.254.0.0/16", Ok(())),
        ]);
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_much() {
        assert!(EgressPolicy::parse("").expect("empty").allowed().is_empty());
        let err = EgressPolicy::parse("10.0.0.0/8,nonsense").expect_err("refused");
        assert_eq!(err.entry, "nonsense");
        assert!(EgressPolicy::parse("10.0.0.0/33").is_err());
        let long = "x".repeat(1000);
        assert!(
            EgressPolicy::parse(&long)
                .expect_err("refused")
                .to_string()
                .len()
                < 200
        );
    }
}
