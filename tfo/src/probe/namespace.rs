//! Fast Open's switches in the current network namespace: the
//! `net.ipv4.tcp_fastopen` bits (IPv6 uses them too) and the kernel's
//! blackhole detection, which switches active Fast Open off for a while after
//! it suspects a middlebox eating SYNs with data.

use serde::Serialize;

/// net.ipv4.tcp_fastopen bit: clients may send data in the SYN.
pub const CLIENT: u32 = 0x1;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Namespace {
    /// net.ipv4.tcp_fastopen, if readable.
    pub tcp_fastopen: Option<u32>,
    /// net.ipv4.tcp_fastopen_blackhole_timeout_sec (0: detection off).
    pub blackhole_timeout_sec: Option<u32>,
    /// TcpExt TCPFastOpenBlackhole: times detection switched active Fast
    /// Open off in this namespace.
    pub blackhole_events: Option<u64>,
}

impl Namespace {
    pub fn read() -> Namespace {
        let sysctl = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok()?.trim().parse().ok();
        Namespace {
            tcp_fastopen: sysctl("tcp_fastopen"),
            blackhole_timeout_sec: sysctl("tcp_fastopen_blackhole_timeout_sec"),
            blackhole_events: std::fs::read_to_string("/proc/net/netstat")
                .ok()
                .and_then(|text| netstat_counter(&text, "TcpExt", "TCPFastOpenBlackhole")),
        }
    }

    /// Unknown (unreadable sysctl) counts as enabled: the probe then finds out.
    pub fn client_enabled(&self) -> bool {
        !matches!(self.tcp_fastopen, Some(v) if v & CLIENT == 0)
    }

    /// The blackhole detection in words, for the report.
    pub fn blackhole_state(&self) -> String {
        match (self.blackhole_timeout_sec, self.blackhole_events) {
            (Some(0), _) => "blackhole detection off".into(),
            (Some(t), Some(0)) => format!("blackhole detection on ({t} s), never triggered"),
            (Some(t), Some(n)) => format!("blackhole detection on ({t} s): active Fast Open was switched off {n} times"),
            (Some(t), None) => format!("blackhole detection on ({t} s)"),
            (None, _) => "blackhole state unknown".into(),
        }
    }
}

/// A counter of /proc/net/netstat, where each group is a line of names
/// followed by a line of values, both starting with `GROUP:`.
fn netstat_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    names.zip(values).find(|(n, _)| *n == name)?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_name() {
        let text = "TcpExt: SyncookiesSent TCPFastOpenBlackhole Other\nTcpExt: 0 7 9\nIpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(netstat_counter(text, "TcpExt", "TCPFastOpenBlackhole"), Some(7));
        assert_eq!(netstat_counter(text, "IpExt", "InNoRoutes"), Some(3));
        assert_eq!(netstat_counter(text, "TcpExt", "Missing"), None);
    }

    #[test]
    fn the_client_bit() {
        let ns = |v| Namespace { tcp_fastopen: Some(v), ..Namespace::default() };
        assert!(ns(1).client_enabled() && ns(3).client_enabled() && ns(0x401).client_enabled());
        assert!(!ns(0).client_enabled() && !ns(2).client_enabled());
    }
}
