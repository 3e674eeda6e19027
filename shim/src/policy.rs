//! Which destinations auto mode gives Fast Open to: port sets and address
//! ranges, parsed from `TFO_PORTS`, `TFO_INCLUDE` and `TFO_EXCLUDE`.
//! Pure data and parsing; nothing here talks to the kernel.

use std::net::IpAddr;

/// A set of TCP ports, as a bitmap: membership is one load. `all` (the
/// default) has no bitmap: it costs the library's constructor nothing,
/// where 8 KiB written would cost every process two page faults.
#[derive(Clone)]
pub struct PortSet {
    bits: Option<Box<[u64; 1024]>>,
}

impl PortSet {
    pub const fn all() -> Self {
        PortSet { bits: None }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.bits.as_ref().is_none_or(|bits| bits[port as usize / 64] & (1 << (port % 64)) != 0)
    }

    /// `all`, or ports and ranges separated by commas or spaces: `80,443,8000-8999`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Some(Self::all());
        }
        let mut bits = Box::new([0u64; 1024]);
        let mut any = false;
        for item in items(text) {
            let (low, high) = match item.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
                None => {
                    let p = item.parse::<u16>().ok()?;
                    (p, p)
                }
            };
            if low == 0 || low > high {
                return None;
            }
            for port in low..=high {
                bits[port as usize / 64] |= 1 << (port % 64);
            }
            any = true;
        }
        any.then_some(PortSet { bits: Some(bits) })
    }
}

/// An address range such as `10.0.0.0/8` or `2001:db8::/32`; a bare
/// address is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network = canonical(address.parse::<IpAddr>().ok()?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        (prefix <= width).then_some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, width: u8) -> bool {
    prefix == 0 || (a ^ b) >> (width - prefix) == 0
}

/// IPv4-mapped IPv6 addresses are IPv4 addresses, for routing and for the
/// kernel's metrics cache alike.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty())
}

/// A list of ranges: `all`, `none` (or empty), or CIDRs separated by commas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ranges {
    All,
    /// 127.0.0.0/8 and ::1/128 (the default exclusion), without allocating.
    Loopback,
    Some(Vec<Cidr>),
}

impl Ranges {
    pub fn none() -> Self {
        Ranges::Some(Vec::new())
    }

    pub const fn loopback() -> Self {
        Ranges::Loopback
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Ranges::All => true,
            Ranges::Loopback => canonical(ip).is_loopback(),
            Ranges::Some(list) => list.iter().any(|c| c.contains(ip)),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Some(Ranges::All);
        }
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Some(Self::none());
        }
        items(text).map(Cidr::parse).collect::<Option<Vec<_>>>().map(Ranges::Some)
    }
}

/// The auto-mode admission rule: the port is listed, the address included
/// and not excluded.
#[derive(Clone)]
pub struct Policy {
    pub ports: PortSet,
    pub include: Ranges,
    pub exclude: Ranges,
}

impl Policy {
    pub const fn default_policy() -> Self {
        Policy { ports: PortSet::all(), include: Ranges::All, exclude: Ranges::loopback() }
    }

    pub fn admits(&self, ip: IpAddr, port: u16) -> bool {
        self.ports.contains(port) && self.include.contains(ip) && !self.exclude.contains(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_and_ranges() {
        let p = PortSet::parse("80, 443,8000-8002").unwrap();
        assert!(p.contains(80) && p.contains(443) && p.contains(8001) && !p.contains(8003) && !p.contains(22));
        assert!(PortSet::parse("all").unwrap().contains(1));
        for bad in ["", "0", "70000", "90-80", "http", "1-"] {
            assert!(PortSet::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cidrs_match_by_prefix_and_mapped_addresses_as_ipv4() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.200.3")) && !c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(Cidr::parse("::ffff:127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("2001:db8::/32").unwrap().contains(ip("2001:db8:1::5")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("198.18.0.2")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0/8", ""] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_default_policy_leaves_out_loopback_only() {
        let p = Policy::default_policy();
        assert!(p.admits(ip("198.18.0.2"), 80) && p.admits(ip("2001:db8::1"), 22));
        assert!(!p.admits(ip("127.0.0.1"), 80) && !p.admits(ip("127.9.9.9"), 80));
        assert!(!p.admits(ip("::1"), 80) && !p.admits(ip("::ffff:127.0.0.1"), 80));
        let mut p = p;
        p.exclude = Ranges::parse("none").unwrap();
        assert!(p.admits(ip("127.0.0.1"), 7000));
        p.include = Ranges::parse("198.18.0.0/15").unwrap();
        assert!(!p.admits(ip("127.0.0.1"), 7000) && p.admits(ip("198.19.1.1"), 7000));
    }
}
