//! `HOST[:PORT]` on the command line, and the addresses it names.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

/// The port probed when the argument names none (HTTP).
pub const DEFAULT_PORT: u16 = 80;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Parses `HOST`, `HOST:PORT`, `IPV6`, `[IPV6]` or `[IPV6]:PORT`.
pub fn parse(spec: &str) -> Result<Target, String> {
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("{spec:?}: missing ']'"))?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(|| format!("{spec:?}: expected ':PORT' after ']'"))?)),
        }
    } else {
        match spec.split_once(':') {
            // One colon separates the port; more make a bare IPv6 address.
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (spec, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{spec:?}: no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| format!("{spec:?}: bad port {p:?}"))?,
    };
    Ok(Target { host: host.to_string(), port })
}

/// Which address families to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// The target's addresses in the resolver's order, within `timeout`
/// (getaddrinfo has no timeout of its own, so it runs on a thread that is
/// abandoned when time is up).
pub fn resolve(target: &Target, family: Family, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = mpsc::channel();
    let query = (target.host.clone(), target.port);
    std::thread::spawn(move || {
        let _ = tx.send(query.to_socket_addrs().map(Vec::from_iter));
    });
    let found = match rx.recv_timeout(timeout) {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", target.host)),
        Err(_) => return Err(format!("cannot resolve {}: no answer within {} s", target.host, timeout.as_secs_f64())),
    };
    let wanted: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .collect();
    if wanted.is_empty() {
        let which = if family == Family::V4 { "IPv4" } else { "IPv6" };
        return Err(format!("{} has no {which} address", target.host));
    }
    Ok(wanted)
}

/// True when `host` is an address literal (a TLS ClientHello names no such host).
pub fn is_literal(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> (String, u16) {
        let t = parse(spec).unwrap();
        (t.host, t.port)
    }

    #[test]
    fn forms_of_the_argument() {
        assert_eq!(ok("example.test"), ("example.test".into(), 80));
        assert_eq!(ok("example.test:8080"), ("example.test".into(), 8080));
        assert_eq!(ok("198.18.0.2:7000"), ("198.18.0.2".into(), 7000));
        assert_eq!(ok("::1"), ("::1".into(), 80));
        assert_eq!(ok("2001:db8::1"), ("2001:db8::1".into(), 80));
        assert_eq!(ok("[::1]"), ("::1".into(), 80));
        assert_eq!(ok("[::1]:443"), ("::1".into(), 443));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for spec in ["", ":80", "host:", "host:0", "host:65536", "host:http", "[::1", "[::1]443", "[]:80"] {
            assert!(parse(spec).is_err(), "{spec:?} accepted");
        }
    }

    #[test]
    fn literals_resolve_to_themselves() {
        let t = parse("[::1]:7000").unwrap();
        assert_eq!(resolve(&t, Family::Any, Duration::from_secs(5)).unwrap(), ["[::1]:7000".parse().unwrap()]);
        assert!(resolve(&t, Family::V4, Duration::from_secs(5)).unwrap_err().contains("no IPv4 address"));
    }
}
