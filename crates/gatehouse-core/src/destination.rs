//! The SSRF guard of SPEC §6: which resolved addresses a webhook may not be delivered to.
//! IPv4-mapped, IPv4-compatible and NAT64 IPv6 addresses are judged by the IPv4 address inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, for the error message.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [127, ..] => "loopback",
        [10, ..] | [192, 168, ..] => "private",
        [172, b, ..] if (16..=31).contains(&b) => "private",
        [169, 254, 169, 254] => "cloud metadata",
        [169, 254, ..] => "link-local",
        [100, b, ..] if (64..=127).contains(&b) => "carrier-grade NAT",
        [0, ..] => "unspecified",
        [a, ..] if (224..=239).contains(&a) => "multicast",
        [255, 255, 255, 255] => "broadcast",
        [a, ..] if a >= 240 => "reserved",
        [192, 0, 0, _] => "IETF protocol assignments",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d) carry an IPv4 address.
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0])
        || (s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1))
    {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return v4_reason(v4);
    }
    Some(match s[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        x if x & 0xfe00 == 0xfc00 => "unique local (private)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_table() {
        let refused = [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.10.10",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
            "2001:db8::1",
            "fec0::1",
            "198.18.0.1",
        ];
        for a in refused {
            assert!(forbidden_reason(a.parse().unwrap()).is_some(), "{a} must be refused");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for a in allowed {
            assert_eq!(forbidden_reason(a.parse().unwrap()), None, "{a} must be allowed");
        }
        assert_eq!(forbidden_reason("169.254.169.254".parse().unwrap()), Some("cloud metadata"));
    }
}
