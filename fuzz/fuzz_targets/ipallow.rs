//! IP allowlists of restricted keys (CIDR lists, one item a line): an accepted list prints to items
//! that parse back to the same list, is within itself, and answers `allows` for any address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gatehouse_core::ipallow::IpAllowlist;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(list) = IpAllowlist::parse(s.lines()) else { return };
    let printed = list.to_strings();
    let again = IpAllowlist::parse(printed.iter().map(String::as_str)).expect("printed items parse");
    assert_eq!(again.to_strings(), printed);
    assert!(list.is_within(&list));
    let seed = data.iter().fold(0u128, |a, b| a.rotate_left(7) ^ u128::from(*b));
    let _ = list.allows(IpAddr::V6(Ipv6Addr::from(seed)));
    let _ = list.allows(IpAddr::V4(Ipv4Addr::from(seed as u32)));
    let _ = list.allows(IpAddr::V6(Ipv4Addr::from(seed as u32).to_ipv6_mapped()));
});
