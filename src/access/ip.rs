//! Client addresses: CIDR ranges, nginx's ordered `allow`/`deny` lists, and the real client
//! address behind trusted proxies (nginx's `real_ip` with `real_ip_recursive on`).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address (`/32`, `/128` implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, with the host bits cleared.
    net: IpAddr,
    prefix: u8,
}

/// Why a range could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    BadAddress(String),
    BadPrefix(String),
    /// `10.0.0.1/8`: host bits set, as nginx warns; almost always a typo for another range.
    HostBitsSet(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress(s) => write!(f, "'{s}' is not an IPv4 or IPv6 address"),
            CidrError::BadPrefix(s) => write!(f, "'{s}' has a prefix length out of range"),
            CidrError::HostBitsSet(s) => {
                write!(
                    f,
                    "'{s}' has host bits set (did you mean its network address?)"
                )
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                // A leading `+` or zero would read differently elsewhere: digits only.
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(CidrError::BadPrefix(text.to_owned())),
            },
        };
        let cidr = Cidr { net: addr, prefix };
        if cidr.mask(addr) != bits(addr) {
            return Err(CidrError::HostBitsSet(text.to_owned()));
        }
        Ok(cidr.as_ipv4_when_mapped())
    }

    /// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: client addresses are compared in their IPv4
    /// form (see [`canonical`]), so a range inside `::ffff:0:0/96` must be kept in that form
    /// too, or it would match nobody. (Found by the `cidr` fuzz target.) A shorter IPv6
    /// prefix such as `::/0` stays IPv6: it is not read as also covering IPv4 clients.
    fn as_ipv4_when_mapped(self) -> Cidr {
        match self.net {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    net: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }

    /// Whether `addr` is in the range. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what
    /// a dual-stack socket reports) is compared as the IPv4 address it is.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.net.is_ipv4() && self.mask(addr) == bits(self.net)
    }

    fn mask(&self, addr: IpAddr) -> u128 {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            u128::MAX << host_bits
        };
        bits(addr) & mask
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one rule covers both spellings of a client.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// What an entry matches: a range, or every address (`all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    All,
    Range(Cidr),
}

/// nginx's `allow`/`deny`: checked in order, the first match decides, no match allows.
///
/// Checked fast however long the list: consecutive entries with the same verdict form a
/// block, inside which order cannot matter, and a block keeps one hash set of networks per
/// prefix length. A lookup costs one set probe per prefix length in use (at most 33 for IPv4)
/// per block, instead of one comparison per entry: 1,000 ranges walked one by one cost stage 8
/// about 7% of its throughput (`chapters/scripts/access-cost.sh`).
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    entries: Vec<(Verdict, Match)>,
    blocks: Vec<Block>,
}

impl PartialEq for IpRules {
    fn eq(&self, other: &IpRules) -> bool {
        self.entries == other.entries
    }
}

impl Eq for IpRules {}

/// A run of entries with one verdict.
#[derive(Debug, Clone)]
struct Block {
    verdict: Verdict,
    all: bool,
    /// (prefix length, the networks of that length), IPv4 and IPv6 apart.
    v4: Vec<(u8, HashSet<u128>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

impl Block {
    fn new(verdict: Verdict) -> Block {
        Block {
            verdict,
            all: false,
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }

    fn add(&mut self, matched: Match) {
        let Match::Range(cidr) = matched else {
            self.all = true;
            return;
        };
        let groups = if cidr.net.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        let net = bits(cidr.net);
        match groups.iter_mut().find(|(p, _)| *p == cidr.prefix) {
            Some((_, set)) => {
                set.insert(net);
            }
            None => groups.push((cidr.prefix, HashSet::from([net]))),
        }
    }

    fn matches(&self, addr: IpAddr) -> bool {
        if self.all {
            return true;
        }
        let groups = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        groups.iter().any(|(prefix, set)| {
            let probe = Cidr {
                net: addr,
                prefix: *prefix,
            };
            set.contains(&probe.mask(addr))
        })
    }
}

impl IpRules {
    /// Parses `"allow 10.0.0.0/8"`, `"deny all"`; a bare address or range means `deny`, as in
    /// the course's block list.
    pub fn push_line(&mut self, line: &str) -> Result<(), CidrError> {
        let line = line.trim();
        let (verdict, what) = match line.split_once(char::is_whitespace) {
            Some(("allow", rest)) => (Verdict::Allow, rest.trim()),
            Some(("deny", rest)) => (Verdict::Deny, rest.trim()),
            _ => (Verdict::Deny, line),
        };
        let matched = if what == "all" {
            Match::All
        } else {
            Match::Range(Cidr::parse(what)?)
        };
        self.push(verdict, matched);
        Ok(())
    }

    fn push(&mut self, verdict: Verdict, matched: Match) {
        self.entries.push((verdict, matched));
        match self.blocks.last_mut() {
            Some(block) if block.verdict == verdict => block.add(matched),
            _ => {
                let mut block = Block::new(verdict);
                block.add(matched);
                self.blocks.push(block);
            }
        }
    }

    /// Entries of `other` first, then ours: a list given on the command line is checked
    /// before the file's.
    pub fn prepend(&mut self, other: &IpRules) {
        let ours = std::mem::take(&mut self.entries);
        self.blocks.clear();
        for (verdict, matched) in other.entries.iter().chain(&ours) {
            self.push(*verdict, *matched);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn verdict(&self, addr: IpAddr) -> Verdict {
        let addr = canonical(addr);
        self.blocks
            .iter()
            .find(|block| block.matches(addr))
            .map_or(Verdict::Allow, |block| block.verdict)
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is read from the right and the first address that is not itself trusted
/// is the client (nginx `real_ip_recursive on`). Entries left of it were written by the
/// client and prove nothing. When every entry is trusted, the leftmost one is taken, as nginx
/// does; an entry that is not an address stops the walk at the last good one.
pub fn real_client<'a>(
    peer: IpAddr,
    trusted: &[Cidr],
    forwarded_for: impl Iterator<Item = &'a [u8]>,
) -> IpAddr {
    crate::exercise::stub!("real_client");
    let peer = canonical(peer);
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    // Several X-Forwarded-For lines are one list, in order (RFC 9110 section 5.3).
    let values: Vec<&[u8]> = forwarded_for.collect();
    let mut current = peer;
    for value in values.iter().rev() {
        for item in value.rsplit(|&b| b == b',') {
            let Some(addr) = parse_forwarded_item(item) else {
                return current;
            };
            current = canonical(addr);
            if !trusted.iter().any(|c| c.contains(current)) {
                return current;
            }
        }
    }
    current
}

fn parse_forwarded_item(item: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(item).ok()?.trim();
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    // `[2001:db8::1]:443` and `192.0.2.1:443` appear in the wild.
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_table() {
        // (text, ok)
        let table: &[(&str, bool)] = &[
            ("10.0.0.0/8", true),
            ("10.0.0.1", true),
            ("0.0.0.0/0", true),
            ("10.0.0.1/32", true),
            ("10.0.0.0/33", false),
            ("10.0.0.1/8", false),
            ("10.0.0.0/+8", false),
            ("10.0.0.0/", false),
            ("10.0.0/8", false),
            ("2001:db8::/32", true),
            ("::/0", true),
            ("::1", true),
            ("2001:db8::/129", false),
            ("2001:db8::1/32", false),
            ("not-an-ip", false),
            ("", false),
        ];
        for (text, ok) in table {
            assert_eq!(Cidr::parse(text).is_ok(), *ok, "{text}");
        }
    }

    #[test]
    fn cidr_edges_v4_and_v6() {
        let net = Cidr::parse("192.168.4.0/22").unwrap();
        assert!(!net.contains(ip("192.168.3.255")));
        assert!(net.contains(ip("192.168.4.0")));
        assert!(net.contains(ip("192.168.7.255")));
        assert!(!net.contains(ip("192.168.8.0")));
        assert!(
            net.contains(ip("::ffff:192.168.5.1")),
            "v4-mapped counts as v4"
        );
        assert!(!net.contains(ip("::c0a8:501")), "v4-compatible is not v4");
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("::1")), "a v4 range never matches v6");
        let v6 = Cidr::parse("2001:db8:abcd:0010::/60").unwrap();
        assert!(!v6.contains(ip("2001:db8:abcd:000f:ffff:ffff:ffff:ffff")));
        assert!(v6.contains(ip("2001:db8:abcd:0010::")));
        assert!(v6.contains(ip("2001:db8:abcd:001f:ffff:ffff:ffff:ffff")));
        assert!(!v6.contains(ip("2001:db8:abcd:0020::")));
        let everything = Cidr::parse("::/0").unwrap();
        assert!(everything.contains(ip("ffff::1")));
        assert!(!everything.contains(ip("10.0.0.1")));
        // A range written in the IPv4-mapped form matches the clients it names, both
        // spellings, in a rule list too.
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped, Cidr::parse("10.0.0.0/8").unwrap());
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.1.2.3")));
        let mut rules = IpRules::default();
        rules.push_line("deny ::ffff:10.0.0.0/104").unwrap();
        assert_eq!(rules.verdict(ip("10.9.9.9")), Verdict::Deny);
        assert_eq!(rules.verdict(ip("11.0.0.1")), Verdict::Allow);
    }

    /// The blocks give what walking the list in order gives, on lists that mix verdicts,
    /// prefix lengths, `all` and both families.
    #[test]
    fn blocks_decide_as_the_ordered_walk_does() {
        let lines = [
            "allow 10.1.0.0/16",
            "deny 10.0.0.0/8",
            "deny 10.1.2.0/24",
            "allow 192.168.1.7",
            "allow 2001:db8::/32",
            "deny 2001:db8:1::/48",
            "deny 192.168.0.0/16",
            "allow all",
        ];
        let mut rules = IpRules::default();
        for line in lines {
            rules.push_line(line).unwrap();
        }
        let walk = |addr: IpAddr| {
            for (verdict, matched) in &rules.entries {
                let hit = match matched {
                    Match::All => true,
                    Match::Range(cidr) => cidr.contains(addr),
                };
                if hit {
                    return *verdict;
                }
            }
            Verdict::Allow
        };
        for addr in [
            "10.1.2.3",
            "10.2.3.4",
            "10.1.0.1",
            "192.168.1.7",
            "192.168.1.8",
            "8.8.8.8",
            "2001:db8:1::1",
            "2001:db8:2::1",
            "::1",
            "::ffff:10.2.3.4",
            "::ffff:10.1.0.1",
        ] {
            assert_eq!(rules.verdict(ip(addr)), walk(ip(addr)), "{addr}");
        }
        let mut front = IpRules::default();
        front.push_line("deny 10.1.0.0/16").unwrap();
        rules.prepend(&front);
        assert_eq!(
            rules.verdict(ip("10.1.0.1")),
            Verdict::Deny,
            "the prepended list first"
        );
        assert_eq!(rules.len(), lines.len() + 1);
    }

    #[test]
    fn first_match_wins_and_no_match_allows() {
        let mut rules = IpRules::default();
        for line in ["allow 10.1.0.0/16", "deny 10.0.0.0/8", "allow all"] {
            rules.push_line(line).unwrap();
        }
        assert_eq!(rules.verdict(ip("10.1.2.3")), Verdict::Allow);
        assert_eq!(rules.verdict(ip("10.2.0.1")), Verdict::Deny);
        assert_eq!(rules.verdict(ip("8.8.8.8")), Verdict::Allow);
        let mut block = IpRules::default();
        block.push_line("203.0.113.7").unwrap();
        assert_eq!(block.verdict(ip("203.0.113.7")), Verdict::Deny);
        assert_eq!(block.verdict(ip("203.0.113.8")), Verdict::Allow);
        assert!(block.push_line("deny nowhere").is_err());
    }

    #[test]
    fn real_ip_is_the_rightmost_untrusted_address() {
        let trusted = [
            Cidr::parse("127.0.0.0/8").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap(),
        ];
        let xff = |v: &'static [&'static str]| v.iter().map(|s| s.as_bytes());
        // An untrusted peer's header is ignored entirely.
        assert_eq!(
            real_client(ip("192.0.2.9"), &trusted, xff(&["1.2.3.4"])),
            ip("192.0.2.9")
        );
        // A trusted peer: the client forged "1.2.3.4", our proxy 10.0.0.2 appended the truth.
        assert_eq!(
            real_client(
                ip("127.0.0.1"),
                &trusted,
                xff(&["1.2.3.4, 198.51.100.7, 10.0.0.2"])
            ),
            ip("198.51.100.7")
        );
        // Two header lines are one list.
        assert_eq!(
            real_client(ip("127.0.0.1"), &trusted, xff(&["1.2.3.4", "198.51.100.7"])),
            ip("198.51.100.7")
        );
        // All trusted: the leftmost.
        assert_eq!(
            real_client(ip("127.0.0.1"), &trusted, xff(&["10.0.0.5, 10.0.0.2"])),
            ip("10.0.0.5")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            real_client(ip("127.0.0.1"), &trusted, xff(&["1.2.3.4, junk, 10.0.0.2"])),
            ip("10.0.0.2")
        );
        // No header: the peer.
        assert_eq!(
            real_client(ip("127.0.0.1"), &trusted, xff(&[])),
            ip("127.0.0.1")
        );
    }
}
