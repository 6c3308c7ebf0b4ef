//! IP allowlists: IPv4 and IPv6 CIDRs; an IPv4-mapped IPv6 client address matches IPv4 entries.

use std::net::IpAddr;

use ipnet::IpNet;

/// An empty allowlist allows every address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpAllowlist(Vec<IpNet>);

/// More entries than this is a configuration mistake, not a use case.
pub const MAX_ENTRIES: usize = 100;

impl IpAllowlist {
    /// Accepts CIDRs (`10.0.0.0/8`, `2001:db8::/32`) and bare addresses (a /32 or /128).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in items {
            let shown: String = item.chars().take(60).collect();
            let net = if item.contains('/') {
                let net: IpNet = item
                    .parse()
                    .map_err(|_| format!("`{shown}` is not a valid CIDR (e.g. 203.0.113.0/24 or 2001:db8::/32)"))?;
                if net.trunc() != net {
                    return Err(format!("`{shown}` has host bits set; did you mean {}?", net.trunc()));
                }
                net
            } else {
                let addr: IpAddr = item.parse().map_err(|_| format!("`{shown}` is not an IP address or CIDR"))?;
                IpNet::from(addr)
            };
            nets.push(net);
        }
        if nets.len() > MAX_ENTRIES {
            return Err(format!("an IP allowlist holds at most {MAX_ENTRIES} entries"));
        }
        nets.sort();
        nets.dedup();
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether every network of this list lies inside one of `outer`'s (a non-empty list's subset test;
    /// an empty `outer` allows everything, an empty `self` is not within a non-empty one).
    pub fn is_within(&self, outer: &IpAllowlist) -> bool {
        if outer.0.is_empty() {
            return true;
        }
        !self.0.is_empty() && self.0.iter().all(|n| outer.0.iter().any(|o| o.contains(n)))
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// `::ffff:1.2.3.4` is the IPv4 client `1.2.3.4` seen through a dual-stack socket.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let good = ["10.0.0.0/8", "203.0.113.7", "2001:db8::/32", "::1", "0.0.0.0/0"];
        assert_eq!(IpAllowlist::parse(good).unwrap().to_strings().len(), 5);
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "300.1.1.1",
            "10.0.0.0/",
            "/8",
            "2001:db8::/129",
            "abc",
            "10.0.0.0/8 ",
            "10.0.0.0/-1",
            "1.2.3.4/08x",
            "fe80::1%eth0",
        ] {
            assert!(IpAllowlist::parse([bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_table() {
        let list = IpAllowlist::parse(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        let rows = [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("::ffff:10.1.2.3", true),
            ("::ffff:11.1.2.3", false),
            ("2001:db8::5", true),
            ("2001:db9::5", false),
        ];
        for (ip, want) in rows {
            assert_eq!(list.allows(ip.parse().unwrap()), want, "{ip}");
        }
        assert!(IpAllowlist::default().allows("1.1.1.1".parse().unwrap()));
    }

    #[test]
    fn within_table() {
        let outer = IpAllowlist::parse(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        let rows: [(&[&str], bool); 7] = [
            (&["10.1.0.0/16"], true),
            (&["10.0.0.0/8", "2001:db8:1::/48"], true),
            (&["10.0.0.1"], true),
            (&["10.0.0.0/7"], false),
            (&["10.1.0.0/16", "192.0.2.1"], false),
            (&["0.0.0.0/0"], false),
            (&[], false),
        ];
        for (inner, want) in rows {
            assert_eq!(IpAllowlist::parse(inner.iter().copied()).unwrap().is_within(&outer), want, "{inner:?}");
        }
        assert!(outer.is_within(&IpAllowlist::default()));
    }
}
