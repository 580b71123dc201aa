//! Address ranges and block-list lines (`access::ip`).
//!
//! Properties, for any text:
//! - `Cidr::parse` and `IpRules::push_line` never panic;
//! - a range that parses contains its own network address (host bits set are refused, so the
//!   address written is the network) and, for a prefix shorter than the width, the last
//!   address of the range, and not the address just past it (IPv4-mapped IPv6 addresses
//!   aside: a client is compared in its IPv4 form, so `::/80` does not cover
//!   `::ffff:1.2.3.4`, as in nginx);
//! - a list of one `deny` line denies the range's network address, and one `allow` line
//!   allows it, whatever the list's default.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use revproxy::access::ip::{Cidr, IpRules, Verdict};

fn from_bits(v4: bool, bits: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

fn is_mapped(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut rules = IpRules::default();
    let _ = rules.push_line(text);
    let Ok(cidr) = Cidr::parse(text) else {
        return;
    };
    let trimmed = text.trim();
    let (addr, prefix) = match trimmed.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok()),
        None => (trimmed, None),
    };
    let network: IpAddr = addr.parse().expect("a range that parsed has an address");
    assert!(cidr.contains(network), "{text:?}");
    let (v4, width, bits) = match network {
        IpAddr::V4(a) => (true, 32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (false, 128, u128::from(a)),
    };
    let prefix = prefix.unwrap_or(width);
    if prefix < width {
        let host_bits = width - prefix;
        let span = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let last = bits | span;
        let last_addr = from_bits(v4, last);
        assert!(
            is_mapped(last_addr) || cidr.contains(last_addr),
            "{text:?}: last address"
        );
        let max = if v4 { u128::from(u32::MAX) } else { u128::MAX };
        if last < max && !is_mapped(from_bits(v4, last + 1)) {
            assert!(
                !cidr.contains(from_bits(v4, last + 1)),
                "{text:?}: past the end"
            );
        }
    }
    for (line, verdict) in [("deny", Verdict::Deny), ("allow", Verdict::Allow)] {
        let mut rules = IpRules::default();
        rules
            .push_line(&format!("{line} {trimmed}"))
            .expect("a range that parses makes a valid line");
        assert_eq!(rules.verdict(network), verdict, "{line} {text:?}");
    }
});
