//! Which network addresses tenant-supplied hosts may point at.
//!
//! A tenant configures hosts the service connects to (an SMTP server today, webhook URLs
//! later). Unless the operator sets `COMMUNICATION_ALLOW_PRIVATE_HOSTS=true`, those hosts must
//! be public: a tenant must not make the service talk to its own loopback, the cloud metadata
//! endpoint (169.254.169.254) or the private network it runs in.
//!
//! - [`check_literal_host`] judges a host written as an IP literal, once, when a configuration
//!   is saved or built (a name is left for connect time: DNS can change).
//! - [`resolve_public`] resolves a name at connect time and refuses it if *any* of its
//!   addresses is not public; callers then connect to the returned addresses themselves, so a
//!   second, different DNS answer cannot slip a private address in (DNS rebinding).
//! - [`is_private_or_local`] is the range table both use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A host refused by the policy. The message never shows a resolved address (it would tell a
/// tenant about internal DNS), only what the tenant wrote.
#[derive(Debug, thiserror::Error)]
pub enum AddressRefused {
    #[error(
        "{0} is a private or local address; hosts must be public unless the operator sets \
         COMMUNICATION_ALLOW_PRIVATE_HOSTS=true"
    )]
    PrivateLiteral(IpAddr),
    #[error(
        "{0} resolves to a private or local address; hosts must be public unless the operator \
         sets COMMUNICATION_ALLOW_PRIVATE_HOSTS=true"
    )]
    PrivateName(String),
    #[error("could not resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

impl AddressRefused {
    /// Whether the refusal is the policy's (permanent) rather than a DNS failure (transient).
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            AddressRefused::PrivateLiteral(_) | AddressRefused::PrivateName(_)
        )
    }
}

/// The IP address a host is written as (`10.0.0.1`, `::1`, `[::1]`), if it is one.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let h = host.trim();
    let unbracketed = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    unbracketed.parse().ok()
}

/// Refuses a host written as a non-public IP literal unless `allow_private`. Names pass: they
/// are judged by [`resolve_public`] when connecting.
pub fn check_literal_host(host: &str, allow_private: bool) -> Result<(), AddressRefused> {
    match literal_ip(host) {
        Some(ip) if !allow_private && is_private_or_local(ip) => {
            Err(AddressRefused::PrivateLiteral(ip))
        }
        _ => Ok(()),
    }
}

/// Resolves `host` (a name or a literal) and returns its distinct addresses, refusing the host
/// if any of them is not public unless `allow_private`.
pub async fn resolve_public(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, AddressRefused> {
    if let Some(ip) = literal_ip(host) {
        check_literal_host(host, allow_private)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolved = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| AddressRefused::Lookup {
            host: host.to_owned(),
            source,
        })?;
    let mut all: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !allow_private && is_private_or_local(addr.ip()) {
            return Err(AddressRefused::PrivateName(host.to_owned()));
        }
        if !all.contains(&addr) {
            all.push(addr);
        }
    }
    if all.is_empty() {
        return Err(AddressRefused::NoAddress(host.to_owned()));
    }
    Ok(all)
}

/// Whether `ip` is anything but a public unicast address: loopback, private (10/8,
/// 172.16/12, 192.168/16), CGNAT (100.64/10), link-local (169.254/16, fe80::/10), unique-local
/// (fc00::/7), unspecified, "this network" (0/8), documentation and benchmarking ranges,
/// IETF protocol assignments, multicast, broadcast and reserved space. IPv6 addresses that
/// embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) are judged by that IPv4 address; IPv6 outside global unicast `2000::/3` is
/// never public.
pub fn is_private_or_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_is_private_or_local(v4),
        IpAddr::V6(v6) => ipv6_is_private_or_local(v6),
    }
}

fn ipv4_is_private_or_local(ip: Ipv4Addr) -> bool {
    matches!(
        ip.octets(),
        [0, ..]                      // "this network", incl. 0.0.0.0
            | [10, ..]               // private
            | [100, 64..=127, ..]    // CGNAT 100.64/10
            | [127, ..]              // loopback
            | [169, 254, ..]         // link-local
            | [172, 16..=31, ..]     // private 172.16/12
            | [192, 0, 0 | 2, _]     // IETF protocol assignments, TEST-NET-1
            | [192, 88, 99, _]       // 6to4 relay anycast (deprecated)
            | [192, 168, ..]         // private
            | [198, 18 | 19, ..]     // benchmarking 198.18/15
            | [198, 51, 100, _]      // TEST-NET-2
            | [203, 0, 113, _]       // TEST-NET-3
            | [224..=255, ..] // multicast 224/4, reserved 240/4, broadcast
    )
}

fn ipv6_is_private_or_local(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_is_private_or_local(v4);
    }
    match s {
        // NAT64 well-known prefix 64:ff9b::/96 and 6to4 2002::/16 carry an IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => {
            ipv4_is_private_or_local(embedded(hi, lo))
        }
        // Outside global unicast 2000::/3: ::, ::1, IPv4-compatible, 64:ff9b:1::/48,
        // 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8, unassigned space.
        [first, ..] if first & 0xe000 != 0x2000 => true,
        // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking, …),
        // 2001:db8::/32 and 3fff::/20 documentation.
        [0x2001, 0..=0x01ff, ..] | [0x2001, 0x0db8, ..] | [0x3fff, 0..=0x0fff, ..] => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn private_and_local_addresses_are_recognised() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_private_or_local(ip(s)), "{s} should be private or local");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "3ffe::1",
        ] {
            assert!(!is_private_or_local(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_are_left_for_connect_time() {
        for host in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "[::1]",
            "fc00::5",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            let refused = check_literal_host(host, false).expect_err(host);
            assert!(refused.is_policy());
            assert!(
                refused.to_string().contains("private or local"),
                "{refused}"
            );
            assert!(
                check_literal_host(host, true).is_ok(),
                "{host} with allowance"
            );
        }
        for host in [
            "8.8.8.8",
            "[2606:4700:4700::1111]",
            "mail.example.com",
            "localhost",
        ] {
            assert!(check_literal_host(host, false).is_ok(), "{host}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_unless_allowed() {
        let refused = resolve_public("localhost", 25, false)
            .await
            .expect_err("localhost is loopback");
        assert!(
            matches!(refused, AddressRefused::PrivateName(_)),
            "{refused}"
        );
        assert!(!refused.to_string().contains("127.0.0.1"), "{refused}");
        let allowed = resolve_public("localhost", 25, true)
            .await
            .expect("allowed");
        assert!(
            allowed
                .iter()
                .all(|a| a.port() == 25 && a.ip().is_loopback())
        );
        let literal = resolve_public("[::1]", 587, true).await.expect("literal");
        assert_eq!(literal, vec![SocketAddr::new(ip("::1"), 587)]);
        assert!(resolve_public("10.0.0.1", 587, false).await.is_err());
    }
}
