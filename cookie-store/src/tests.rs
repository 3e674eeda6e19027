//! Byte fixtures in the layout of include/uapi/linux/tcp_metrics.h and
//! genetlink.h, plus a live query against the running kernel.

use super::*;
use std::net::Ipv4Addr;

const FAMILY: u16 = 27;
const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

fn header(len: u32, kind: u16, flags: u16) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend(kind.to_le_bytes());
    h.extend(flags.to_le_bytes());
    h.extend(1u32.to_le_bytes()); // sequence
    h.extend(0u32.to_le_bytes()); // port id
    h
}

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = ((4 + value.len()) as u16).to_le_bytes().to_vec();
    a.extend(kind.to_le_bytes());
    a.extend(value);
    a.resize((a.len() + 3) & !3, 0);
    a
}

/// A reply as the kernel sends it for a destination with a cached cookie.
fn cookie_reply() -> Vec<u8> {
    let mut body = vec![message::CMD_GET, 1, 0, 0];
    body.extend(attr(1, &LOCALHOST));
    body.extend(attr(3, &200u64.to_le_bytes()));
    body.extend(attr(7, &1460u16.to_le_bytes()));
    body.extend(attr(10, &[0x95, 0x83, 0x31, 0xe6, 0x86, 0x66, 0x5f, 0xad]));
    body.extend(attr(11, &LOCALHOST));
    let mut msg = header(16 + body.len() as u32, FAMILY, 0);
    msg.extend(body);
    msg
}

#[test]
fn get_request_matches_the_kernel_layout() {
    let bytes = encode_get(
        FAMILY,
        NLM_F_REQUEST,
        vec![
            destination_attr(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            source_attr(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ],
    );
    let mut expected = header(36, FAMILY, NLM_F_REQUEST);
    expected.extend([message::CMD_GET, 1, 0, 0]);
    expected.extend(attr(1, &LOCALHOST));
    expected.extend(attr(11, &LOCALHOST));
    assert_eq!(bytes, expected);
}

#[test]
fn ipv4_mapped_addresses_use_the_ipv4_key() {
    let mapped: IpAddr = "::ffff:10.9.0.2".parse().unwrap();
    assert_eq!(destination_attr(mapped), MetricsAttr::Addr4(Ipv4Addr::new(10, 9, 0, 2)));
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert!(matches!(destination_attr(v6), MetricsAttr::Addr6(_)));
}

#[test]
fn reply_with_cookie_decodes() {
    let mut entries = Vec::new();
    assert!(matches!(decode_replies(&cookie_reply(), &mut entries), Ok(Progress::Finished)));
    let m = &entries[0];
    assert_eq!(m.destination, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(m.source, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(m.age_ms, Some(200));
    assert_eq!(m.fastopen_mss, Some(1460));
    assert_eq!(m.fastopen_cookie.as_deref(), Some(&[0x95, 0x83, 0x31, 0xe6, 0x86, 0x66, 0x5f, 0xad][..]));
    assert!(m.has_cookie());
}

#[test]
fn reply_without_cookie_has_no_cookie() {
    let mut body = vec![message::CMD_GET, 1, 0, 0];
    body.extend(attr(1, &LOCALHOST));
    body.extend(attr(7, &1460u16.to_le_bytes()));
    let mut msg = header(16 + body.len() as u32, FAMILY, 0);
    msg.extend(body);
    let mut entries = Vec::new();
    decode_replies(&msg, &mut entries).unwrap();
    assert!(!entries[0].has_cookie());
}

/// An entry whose Fast Open SYNs were dropped: the count and how long ago.
#[test]
fn reply_with_syn_drops_decodes() {
    let mut body = vec![message::CMD_GET, 1, 0, 0];
    body.extend(attr(1, &LOCALHOST));
    body.extend(attr(8, &2u16.to_le_bytes()));
    body.extend(attr(9, &1500u64.to_le_bytes()));
    let mut msg = header(16 + body.len() as u32, FAMILY, 0);
    msg.extend(body);
    let mut entries = Vec::new();
    decode_replies(&msg, &mut entries).unwrap();
    assert_eq!(entries[0].fastopen_syn_drops, Some(2));
    assert_eq!(entries[0].fastopen_syn_drop_age_ms, Some(1500));
}

#[test]
fn esrch_means_no_entry() {
    let mut msg = header(36, 2, 0); // NLMSG_ERROR
    msg.extend((-3i32).to_le_bytes());
    msg.extend(header(36, FAMILY, NLM_F_REQUEST));
    let mut entries = Vec::new();
    assert!(matches!(decode_replies(&msg, &mut entries), Err(Error::Kernel(ESRCH))));
}

#[test]
fn dump_reads_until_done() {
    let mut datagram = cookie_reply();
    datagram[6] = netlink_packet_core::NLM_F_MULTIPART as u8;
    let mut entries = Vec::new();
    assert!(matches!(decode_replies(&datagram, &mut entries), Ok(Progress::MoreToCome)));
    let mut done = header(20, 3, netlink_packet_core::NLM_F_MULTIPART); // NLMSG_DONE
    done.extend(0i32.to_le_bytes());
    assert!(matches!(decode_replies(&done, &mut entries), Ok(Progress::Finished)));
    assert_eq!(entries.len(), 1);
}

#[test]
fn truncated_reply_is_a_decode_error() {
    let reply = cookie_reply();
    let mut entries = Vec::new();
    assert!(matches!(decode_replies(&reply[..30], &mut entries), Err(Error::Decode(_))));
}

/// The live kernel: an address nobody connected to has no entry.
#[test]
fn live_lookup_of_unknown_destination_is_none() {
    let unknown: IpAddr = "198.18.255.254".parse().unwrap();
    match lookup(unknown, None) {
        Ok(entry) => assert!(entry.is_none(), "unexpected entry {entry:?}"),
        Err(Error::FamilyMissing) => eprintln!("kernel without tcp_metrics: skipped"),
        Err(e) => panic!("{e}"),
    }
}
