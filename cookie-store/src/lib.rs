//! Asks the kernel's TCP metrics cache whether it holds a TCP Fast Open cookie
//! for a destination.
//!
//! The cache is keyed by (source IP, destination IP) within the caller's
//! network namespace, and the port plays no part. It is read through the
//! generic-netlink family `tcp_metrics`, whose GET command needs no privilege.
//! Every call opens its own netlink socket, so nothing is shared between
//! threads or leaks across fork/exec; the family id is resolved once.
//!
//! The reply to a single-entry GET is produced synchronously while the
//! request is sent, so [`lookup`] receives with `MSG_DONTWAIT` and can never
//! block its caller (a `connect()` inside libtfo).

mod message;

pub use message::{MetricsAttr, MetricsMessage};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::{
    ctrl::{nlas::GenlCtrlAttrs, GenlCtrl, GenlCtrlCmd},
    GenlMessage,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};

/// What the kernel's metrics cache holds for one (source, destination) pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    pub destination: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub age_ms: Option<u64>,
    pub fastopen_mss: Option<u16>,
    pub fastopen_syn_drops: Option<u16>,
    /// Milliseconds since the last Fast Open SYN drop (sent only with drops).
    pub fastopen_syn_drop_age_ms: Option<u64>,
    pub fastopen_cookie: Option<Vec<u8>>,
}

impl Metrics {
    /// True when the kernel would put this cookie in a Fast Open SYN.
    pub fn has_cookie(&self) -> bool {
        self.fastopen_cookie.as_ref().is_some_and(|c| !c.is_empty())
    }

    fn from_attrs(attrs: Vec<MetricsAttr>) -> Self {
        let mut m = Metrics::default();
        for attr in attrs {
            match attr {
                MetricsAttr::Addr4(a) => m.destination = Some(a.into()),
                MetricsAttr::Addr6(a) => m.destination = Some(a.into()),
                MetricsAttr::Saddr4(a) => m.source = Some(a.into()),
                MetricsAttr::Saddr6(a) => m.source = Some(a.into()),
                MetricsAttr::Age(v) => m.age_ms = Some(v),
                MetricsAttr::FastOpenMss(v) => m.fastopen_mss = Some(v),
                MetricsAttr::FastOpenSynDrops(v) => m.fastopen_syn_drops = Some(v),
                MetricsAttr::FastOpenCookie(c) => m.fastopen_cookie = Some(c),
                MetricsAttr::FastOpenSynDropAge(v) => m.fastopen_syn_drop_age_ms = Some(v),
                MetricsAttr::Other(_) => {}
            }
        }
        m
    }
}

/// Why the kernel's cache could not be read. None of these means "no cookie":
/// callers that must not guess fall back to an ordinary connect.
#[derive(Debug)]
pub enum Error {
    /// The netlink socket could not be opened, written or read.
    Socket(io::Error),
    /// The kernel has no `tcp_metrics` generic-netlink family.
    FamilyMissing,
    /// The kernel answered the request with this errno.
    Kernel(i32),
    /// The reply could not be decoded.
    Decode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Socket(e) => write!(f, "netlink socket: {e}"),
            Error::FamilyMissing => write!(f, "kernel has no tcp_metrics netlink family"),
            Error::Kernel(errno) => {
                write!(f, "tcp_metrics request failed: {}", io::Error::from_raw_os_error(*errno))
            }
            Error::Decode(e) => write!(f, "tcp_metrics reply: {e}"),
        }
    }
}

impl std::error::Error for Error {}

const ESRCH: i32 = 3;
const ENOENT: i32 = 2;
const MSG_DONTWAIT: i32 = 0x40;

/// The dynamic id of `tcp_metrics`; 0 until resolved. Family ids do not
/// change while the kernel runs, so one resolution serves the process.
static FAMILY_ID: AtomicU16 = AtomicU16::new(0);

/// The cache entry for `destination` as seen from `source`, or `None` when the
/// kernel has no entry. Without `source` the kernel returns the first entry
/// for the destination, whatever its source. IPv4-mapped IPv6 addresses are
/// looked up under their IPv4 key, as the kernel does.
pub fn lookup(destination: IpAddr, source: Option<IpAddr>) -> Result<Option<Metrics>, Error> {
    let family = family_id()?;
    let mut attrs = vec![destination_attr(destination)];
    attrs.extend(source.map(source_attr));
    let socket = open()?;
    send(&socket, family, NLM_F_REQUEST, attrs)?;
    match receive(&socket, MSG_DONTWAIT) {
        Ok(mut entries) => Ok(entries.pop()),
        Err(Error::Kernel(ESRCH)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every entry of the caller's network namespace.
pub fn dump() -> Result<Vec<Metrics>, Error> {
    let family = family_id()?;
    let socket = open()?;
    send(&socket, family, NLM_F_REQUEST | NLM_F_DUMP, Vec::new())?;
    receive(&socket, 0)
}

/// True when the kernel holds a cookie for the pair; see [`lookup`].
pub fn has_cookie(destination: IpAddr, source: Option<IpAddr>) -> Result<bool, Error> {
    Ok(lookup(destination, source)?.is_some_and(|m| m.has_cookie()))
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn destination_attr(addr: IpAddr) -> MetricsAttr {
    match canonical(addr) {
        IpAddr::V4(a) => MetricsAttr::Addr4(a),
        IpAddr::V6(a) => MetricsAttr::Addr6(a),
    }
}

fn source_attr(addr: IpAddr) -> MetricsAttr {
    match canonical(addr) {
        IpAddr::V4(a) => MetricsAttr::Saddr4(a),
        IpAddr::V6(a) => MetricsAttr::Saddr6(a),
    }
}

fn open() -> Result<Socket, Error> {
    Socket::new(NETLINK_GENERIC).map_err(Error::Socket)
}

/// Serialises one tcp_metrics GET request.
pub fn encode_get(family: u16, flags: u16, attrs: Vec<MetricsAttr>) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(MetricsMessage { cmd: message::CMD_GET, attrs });
    genl.set_resolved_family_id(family);
    encode(genl, flags)
}

fn encode<F>(genl: GenlMessage<F>, flags: u16) -> Vec<u8>
where
    F: fmt::Debug,
    GenlMessage<F>: netlink_packet_core::NetlinkSerializable,
{
    let mut msg = NetlinkMessage::from(genl);
    msg.header.flags = flags;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn send(socket: &Socket, family: u16, flags: u16, attrs: Vec<MetricsAttr>) -> Result<(), Error> {
    let request = encode_get(family, flags, attrs);
    socket.send_to(&request, &SocketAddr::new(0, 0), 0).map_err(Error::Socket)?;
    Ok(())
}

/// Reads replies until the request is answered: one entry for a plain GET,
/// every entry up to NLMSG_DONE for a dump.
fn receive(socket: &Socket, flags: i32) -> Result<Vec<Metrics>, Error> {
    let mut entries = Vec::new();
    let mut buf = Vec::with_capacity(32 * 1024);
    loop {
        buf.clear();
        socket.recv(&mut buf, flags).map_err(Error::Socket)?;
        match decode_replies(&buf, &mut entries)? {
            Progress::Finished => return Ok(entries),
            Progress::MoreToCome => {}
        }
    }
}

enum Progress {
    Finished,
    MoreToCome,
}

/// Decodes one datagram of replies into `entries`.
fn decode_replies(mut buf: &[u8], entries: &mut Vec<Metrics>) -> Result<Progress, Error> {
    let mut multipart = false;
    while !buf.is_empty() {
        let msg = NetlinkMessage::<GenlMessage<MetricsMessage>>::deserialize(buf)
            .map_err(|e| Error::Decode(e.to_string()))?;
        let len = msg.header.length as usize;
        multipart |= msg.header.flags & netlink_packet_core::NLM_F_MULTIPART != 0;
        match msg.payload {
            NetlinkPayload::InnerMessage(genl) => {
                entries.push(Metrics::from_attrs(genl.payload.attrs))
            }
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(Error::Kernel(-e.raw_code())),
            NetlinkPayload::Done(_) => return Ok(Progress::Finished),
            _ => {}
        }
        // Messages in one datagram are padded to 4 bytes (NLMSG_ALIGN).
        let next = (len + 3) & !3;
        if len == 0 || next >= buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    Ok(if multipart { Progress::MoreToCome } else { Progress::Finished })
}

fn family_id() -> Result<u16, Error> {
    let cached = FAMILY_ID.load(Ordering::Relaxed);
    if cached != 0 {
        return Ok(cached);
    }
    let id = resolve_family()?;
    FAMILY_ID.store(id, Ordering::Relaxed);
    Ok(id)
}

/// Asks the generic-netlink controller for the id of `tcp_metrics`.
fn resolve_family() -> Result<u16, Error> {
    let socket = open()?;
    let request = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(message::FAMILY_NAME.to_owned())],
    });
    let bytes = encode(request, NLM_F_REQUEST);
    socket.send_to(&bytes, &SocketAddr::new(0, 0), 0).map_err(Error::Socket)?;
    let mut buf = Vec::with_capacity(8192);
    socket.recv(&mut buf, MSG_DONTWAIT).map_err(Error::Socket)?;
    let msg = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(&buf)
        .map_err(|e| Error::Decode(e.to_string()))?;
    match msg.payload {
        NetlinkPayload::InnerMessage(genl) => genl
            .payload
            .nlas
            .iter()
            .find_map(|nla| match nla {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| Error::Decode("controller reply without a family id".into())),
        NetlinkPayload::Error(e) if e.raw_code() == -ENOENT => Err(Error::FamilyMissing),
        NetlinkPayload::Error(e) => Err(Error::Kernel(-e.raw_code())),
        _ => Err(Error::Decode("unexpected controller reply".into())),
    }
}

#[cfg(test)]
mod tests;
