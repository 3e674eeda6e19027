//! A destination filter as people type it: an address, a network in CIDR
//! form, or a host name (resolved once, every address it has).

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::str::FromStr;

#[derive(Clone, Debug)]
pub struct Destination {
    text: String,
    networks: Vec<IpNet>,
}

impl Destination {
    pub fn matches(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks.iter().any(|net| net.contains(&address))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let networks = if let Ok(address) = text.parse::<IpAddr>() {
            vec![IpNet::from(canonical(address))]
        } else if let Ok(net) = text.parse::<IpNet>() {
            vec![net.trunc()]
        } else {
            let resolved = (text, 0)
                .to_socket_addrs()
                .map_err(|e| format!("not an address, a network or a known host name ({e})"))?;
            resolved.map(|a| IpNet::from(canonical(a.ip()))).collect()
        };
        Ok(Destination { text: text.to_owned(), networks })
    }
}

/// The kernel keys IPv4-mapped IPv6 destinations as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_network_and_mapped_forms() {
        let one: Destination = "198.18.0.2".parse().unwrap();
        assert!(one.matches("198.18.0.2".parse().unwrap()));
        assert!(one.matches("::ffff:198.18.0.2".parse().unwrap()));
        assert!(!one.matches("198.18.0.3".parse().unwrap()));
        let net: Destination = "198.18.0.0/15".parse().unwrap();
        assert!(net.matches("198.19.255.1".parse().unwrap()));
        assert!(!net.matches("198.20.0.1".parse().unwrap()));
        let v6: Destination = "2001:db8::/32".parse().unwrap();
        assert!(v6.matches("2001:db8::1".parse().unwrap()));
        assert!("localhost".parse::<Destination>().unwrap().matches("127.0.0.1".parse().unwrap()));
        assert!("no such host.invalid".parse::<Destination>().is_err());
    }
}
