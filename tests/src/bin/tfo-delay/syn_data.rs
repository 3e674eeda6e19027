//! What the relay does to a TCP SYN carrying data on its way from the client
//! to the server: the three middleboxes Fast Open meets in the field (one
//! that drops such SYNs, one that resets them, one that strips their data).
//!
//! Works on raw IP packets as a TUN device without packet information hands
//! them over: IPv4 (any header length, unfragmented) and IPv6 (TCP directly
//! after the fixed header).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The SYN vanishes; the client retransmits a plain SYN after its RTO.
    Drop,
    /// The SYN vanishes and a RST goes back to the client, as if from the server.
    Reset,
    /// The SYN goes on without its payload; options (the cookie) stay.
    Strip,
    /// Every SYN carrying the Fast Open option vanishes, with or without
    /// data (a cookie request too): a firewall that drops unknown options.
    /// The client's plain retransmission passes.
    DropOption,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Mode::Drop),
            "reset" => Ok(Mode::Reset),
            "strip" => Ok(Mode::Strip),
            "option" => Ok(Mode::DropOption),
            _ => Err(format!("--syn-data takes drop, reset, strip or option, not {s:?}")),
        }
    }
}

impl Mode {
    pub fn past_tense(self) -> &'static str {
        match self {
            Mode::Drop => "dropped",
            Mode::Reset => "reset",
            Mode::Strip => "stripped",
            Mode::DropOption => "dropped (Fast Open option)",
        }
    }
}

/// What becomes of one packet from the client side.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Not a SYN with data: forwarded as it is.
    Forward,
    /// Discarded.
    Discard,
    /// Discarded; this packet goes back to the client instead.
    Reply(Vec<u8>),
    /// Forwarded as rewritten in place (the packet is now shorter).
    Rewritten,
}

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Where the TCP segment sits in an IP packet.
#[derive(Clone, Copy, Debug)]
struct Segment {
    v6: bool,
    /// Offset of the TCP header (= IP header length).
    tcp: usize,
    tcp_header_len: usize,
    payload_len: usize,
}

impl Segment {
    fn parse(packet: &[u8]) -> Option<Segment> {
        let (v6, tcp, ip_len) = match packet.first()? >> 4 {
            4 => {
                let ihl = usize::from(packet[0] & 0x0f) * 4;
                let fragment = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x3fff;
                if ihl < 20 || packet.len() < ihl || packet[9] != TCP || fragment != 0 {
                    return None;
                }
                (false, ihl, usize::from(u16::from_be_bytes([packet[2], packet[3]])))
            }
            6 => {
                if packet.len() < 40 || packet[6] != TCP {
                    return None; // extension headers are left alone
                }
                (true, 40, 40 + usize::from(u16::from_be_bytes([packet[4], packet[5]])))
            }
            _ => return None,
        };
        if ip_len > packet.len() || ip_len < tcp + 20 {
            return None;
        }
        let tcp_header_len = usize::from(packet[tcp + 12] >> 4) * 4;
        if tcp_header_len < 20 || tcp + tcp_header_len > ip_len {
            return None;
        }
        Some(Segment { v6, tcp, tcp_header_len, payload_len: ip_len - tcp - tcp_header_len })
    }

    fn flags(&self, packet: &[u8]) -> u8 {
        packet[self.tcp + 13]
    }

    fn addresses(&self, packet: &[u8]) -> (IpAddr, IpAddr) {
        if self.v6 {
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&packet[at..at + 16]).unwrap());
            (ip(8), ip(24))
        } else {
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&packet[at..at + 4]).unwrap());
            (ip(12), ip(16))
        }
    }

    fn ports(&self, packet: &[u8]) -> (u16, u16) {
        let at = self.tcp;
        (u16::from_be_bytes([packet[at], packet[at + 1]]), u16::from_be_bytes([packet[at + 2], packet[at + 3]]))
    }
}

/// True when the TCP header's options hold a Fast Open option: kind 34,
/// or the experimental kind 254 with magic 0xF989 (RFC 7413 §4.1.1).
fn has_fastopen_option(packet: &[u8], seg: Segment) -> bool {
    let options = &packet[seg.tcp + 20..seg.tcp + seg.tcp_header_len];
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            0 => return false,
            1 => at += 1,
            kind => {
                let Some(&len) = options.get(at + 1) else { return false };
                let len = usize::from(len);
                if len < 2 || at + len > options.len() {
                    return false;
                }
                if kind == 34 || (kind == 254 && len >= 4 && options[at + 2..at + 4] == [0xf9, 0x89]) {
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

/// A SYN with data seen by the relay, for its log line.
#[derive(Debug, PartialEq, Eq)]
pub struct SynData {
    pub from: (IpAddr, u16),
    pub to: (IpAddr, u16),
    pub payload_len: usize,
}

impl fmt::Display for SynData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |(ip, port): (IpAddr, u16)| match ip {
            IpAddr::V4(ip) => format!("{ip}:{port}"),
            IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        };
        write!(f, "{} > {}, {} bytes", show(self.from), show(self.to), self.payload_len)
    }
}

/// True for a client's SYN (no ACK) that carries data.
pub fn is_syn_with_data(packet: &[u8]) -> bool {
    Segment::parse(packet).is_some_and(|seg| seg.flags(packet) & (SYN | ACK | RST) == SYN && seg.payload_len > 0)
}

/// Applies `mode` to `packet` (travelling from the client towards the
/// server). Returns what to do, and the SYN with data when it was one.
pub fn apply(mode: Mode, packet: &mut Vec<u8>) -> (Action, Option<SynData>) {
    let Some(seg) = Segment::parse(packet) else { return (Action::Forward, None) };
    // A SYN-ACK with data is the server's business; only the client's SYN counts.
    if seg.flags(packet) & (SYN | ACK | RST) != SYN {
        return (Action::Forward, None);
    }
    let concerned = match mode {
        Mode::DropOption => has_fastopen_option(packet, seg),
        _ => seg.payload_len > 0,
    };
    if !concerned {
        return (Action::Forward, None);
    }
    let (from_ip, to_ip) = seg.addresses(packet);
    let (from_port, to_port) = seg.ports(packet);
    let seen = SynData { from: (from_ip, from_port), to: (to_ip, to_port), payload_len: seg.payload_len };
    let action = match mode {
        Mode::Drop | Mode::DropOption => Action::Discard,
        Mode::Reset => Action::Reply(reset_for(packet, seg)),
        Mode::Strip => {
            strip(packet, seg);
            Action::Rewritten
        }
    };
    (action, Some(seen))
}

/// The RST (with ACK) a server would send for this SYN: RFC 9293 3.10.7.1,
/// seq 0, ack = seq + SYN + payload (+ FIN), so the client accepts it.
fn reset_for(syn: &[u8], seg: Segment) -> Vec<u8> {
    let (from, to) = seg.addresses(syn);
    let (from_port, to_port) = seg.ports(syn);
    let t = seg.tcp;
    let seq = u32::from_be_bytes(syn[t + 4..t + 8].try_into().unwrap());
    let fin = u32::from(seg.flags(syn) & FIN != 0);
    let ack = seq.wrapping_add(1).wrapping_add(seg.payload_len as u32).wrapping_add(fin);

    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&to_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&from_port.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = RST | ACK;

    let mut packet = match (to, from) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = TCP;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            ip
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            ip
        }
        _ => unreachable!("one packet, one family"),
    };
    packet.extend_from_slice(&tcp);
    let reply = Segment::parse(&packet).expect("a well-formed reset");
    fix_checksums(&mut packet, reply);
    packet
}

/// Cuts the payload off, leaving the TCP header and its options as they were.
fn strip(packet: &mut Vec<u8>, seg: Segment) {
    let end = seg.tcp + seg.tcp_header_len;
    packet.truncate(end);
    if seg.v6 {
        packet[4..6].copy_from_slice(&(seg.tcp_header_len as u16).to_be_bytes());
    } else {
        packet[2..4].copy_from_slice(&(end as u16).to_be_bytes());
    }
    fix_checksums(packet, Segment { payload_len: 0, ..seg });
}

/// Recomputes the IPv4 header checksum (if IPv4) and the TCP checksum.
fn fix_checksums(packet: &mut [u8], seg: Segment) {
    let t = seg.tcp;
    let tcp_len = seg.tcp_header_len + seg.payload_len;
    if !seg.v6 {
        packet[10..12].fill(0);
        let sum = checksum(&[&packet[..t]]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    packet[t + 16..t + 18].fill(0);
    let sum = tcp_checksum(packet, seg, tcp_len);
    packet[t + 16..t + 18].copy_from_slice(&sum.to_be_bytes());
}

/// The TCP checksum over the pseudo-header and the segment (which must hold
/// zero in its checksum field, or the result is 0 for a correct one).
fn tcp_checksum(packet: &[u8], seg: Segment, tcp_len: usize) -> u16 {
    let segment = &packet[seg.tcp..seg.tcp + tcp_len];
    if seg.v6 {
        let mut pseudo = [0u8; 8];
        pseudo[0..4].copy_from_slice(&(tcp_len as u32).to_be_bytes());
        pseudo[7] = TCP;
        checksum(&[&packet[8..40], &pseudo, segment])
    } else {
        let mut pseudo = [0u8; 4];
        pseudo[1] = TCP;
        pseudo[2..4].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        checksum(&[&packet[12..20], &pseudo, segment])
    }
}

/// The Internet checksum (RFC 1071) of the concatenated parts; every part
/// but the last has an even length.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN (no ACK) with a Fast Open cookie option and `data`, checksums right.
    fn syn(v6: bool, flags: u8, data: &[u8]) -> Vec<u8> {
        // MSS 1460, then the Fast Open option (kind 34) with an 8-byte cookie, padded.
        let options = [2, 4, 5, 0xb4, 34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1];
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&7000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes()); // wraps on the ack
        tcp[12] = 9 << 4; // 36-byte header
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        tcp.extend_from_slice(&options);
        tcp.extend_from_slice(data);
        let mut ip = if v6 {
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
            ip[6] = TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
            ip[24..40].copy_from_slice(&"2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
            ip
        } else {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = TCP;
            ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
            ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
            ip
        };
        ip.extend_from_slice(&tcp);
        let seg = Segment::parse(&ip).unwrap();
        fix_checksums(&mut ip, seg);
        ip
    }

    /// Checks both checksums the way a receiver does: summing over the field gives 0.
    fn checksums_hold(packet: &[u8]) -> bool {
        let seg = Segment::parse(packet).unwrap();
        let ip_ok = seg.v6 || checksum(&[&packet[..seg.tcp]]) == 0;
        ip_ok && tcp_checksum(packet, seg, seg.tcp_header_len + seg.payload_len) == 0
    }

    #[test]
    fn the_checksum_of_rfc_1071s_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]), !0xddf2);
    }

    #[test]
    fn other_segments_pass() {
        for v6 in [false, true] {
            for (flags, data) in [(SYN, &b""[..]), (SYN | ACK, &b"x"[..]), (ACK, &b"data"[..]), (RST, &b"x"[..])] {
                let mut p = syn(v6, flags, data);
                let before = p.clone();
                assert_eq!(apply(Mode::Strip, &mut p), (Action::Forward, None));
                assert_eq!(p, before);
            }
        }
        let mut udp = syn(false, SYN, b"x");
        udp[9] = 17;
        assert_eq!(apply(Mode::Drop, &mut udp).0, Action::Forward);
    }

    #[test]
    fn drop_discards_the_syn_with_data() {
        for v6 in [false, true] {
            let mut p = syn(v6, SYN, b"hello");
            let (action, seen) = apply(Mode::Drop, &mut p);
            assert_eq!(action, Action::Discard);
            let seen = seen.unwrap();
            assert_eq!((seen.from.1, seen.to.1, seen.payload_len), (40000, 7000, 5));
        }
        let mut p = syn(false, SYN, b"hello");
        let line = apply(Mode::Drop, &mut p).1.unwrap().to_string();
        assert_eq!(line, "198.18.0.1:40000 > 198.18.0.2:7000, 5 bytes");
    }

    #[test]
    fn option_mode_drops_every_syn_with_the_fastopen_option() {
        for v6 in [false, true] {
            // A cookie (kind 34) with data, and a bare cookie request.
            assert_eq!(apply(Mode::DropOption, &mut syn(v6, SYN, b"hello")).0, Action::Discard);
            assert_eq!(apply(Mode::DropOption, &mut syn(v6, SYN, b"")).0, Action::Discard);
            // Its plain retransmission, and a SYN-ACK, pass.
            let mut plain = syn(v6, SYN, b"");
            let t = Segment::parse(&plain).unwrap().tcp;
            plain[t + 24] = 1; // the option's kind becomes NOPs
            plain[t + 25] = 1;
            for b in &mut plain[t + 26..t + 34] {
                *b = 1;
            }
            assert_eq!(apply(Mode::DropOption, &mut plain), (Action::Forward, None));
            assert_eq!(apply(Mode::DropOption, &mut syn(v6, SYN | ACK, b"")), (Action::Forward, None));
        }
        // The experimental kind 254 with magic F989.
        let mut exp = syn(false, SYN, b"");
        let t = Segment::parse(&exp).unwrap().tcp;
        exp[t + 24..t + 28].copy_from_slice(&[254, 10, 0xf9, 0x89]);
        assert_eq!(apply(Mode::DropOption, &mut exp).0, Action::Discard);
    }

    #[test]
    fn strip_leaves_a_syn_with_its_options_and_right_checksums() {
        for v6 in [false, true] {
            let original = syn(v6, SYN, b"hello");
            assert!(checksums_hold(&original));
            let mut p = original.clone();
            assert_eq!(apply(Mode::Strip, &mut p).0, Action::Rewritten);
            assert_eq!(p.len(), original.len() - 5);
            let seg = Segment::parse(&p).unwrap();
            assert_eq!((seg.payload_len, seg.tcp_header_len), (0, 36));
            // Everything but lengths and checksums is unchanged (the cookie too).
            let t = seg.tcp;
            assert_eq!(p[t..t + 16], original[t..t + 16]);
            assert_eq!(p[t + 20..], original[t + 20..t + 36]);
            assert!(checksums_hold(&p), "{p:02x?}");
        }
    }

    #[test]
    fn reset_answers_with_an_acceptable_rst() {
        for v6 in [false, true] {
            let mut p = syn(v6, SYN, b"hello");
            let (Action::Reply(rst), Some(_)) = apply(Mode::Reset, &mut p) else { panic!("no reply") };
            let seg = Segment::parse(&rst).unwrap();
            assert!(checksums_hold(&rst), "{rst:02x?}");
            assert_eq!(seg.flags(&rst), RST | ACK);
            assert_eq!(seg.ports(&rst), (7000, 40000));
            let (from, to) = seg.addresses(&rst);
            let (syn_from, syn_to) = Segment::parse(&p).unwrap().addresses(&p);
            assert_eq!((from, to), (syn_to, syn_from));
            let t = seg.tcp;
            // seq 0xfffffff0 + SYN + 5 bytes wraps around to 0xfffffff6.
            assert_eq!(u32::from_be_bytes(rst[t + 8..t + 12].try_into().unwrap()), 0xffff_fff6);
            assert_eq!(u32::from_be_bytes(rst[t + 4..t + 8].try_into().unwrap()), 0);
        }
    }
}
