//! The `tcp_metrics` generic-netlink family (include/uapi/linux/tcp_metrics.h).
//!
//! netlink-packet-generic supplies the generic-netlink framing and the
//! controller family; no published crate describes `tcp_metrics`, so its
//! commands and attributes are defined here on top of netlink-packet-core's
//! `Nla` machinery.

use netlink_packet_core::{
    emit_u16, emit_u64, parse_u16, parse_u64, DecodeError, DefaultNla, Emitable,
    ErrorContext, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const FAMILY_NAME: &str = "tcp_metrics";
pub const FAMILY_VERSION: u8 = 1;

pub const CMD_GET: u8 = 1;

pub const ATTR_ADDR_IPV4: u16 = 1;
pub const ATTR_ADDR_IPV6: u16 = 2;
pub const ATTR_AGE: u16 = 3;
pub const ATTR_FOPEN_MSS: u16 = 7;
pub const ATTR_FOPEN_SYN_DROPS: u16 = 8;
pub const ATTR_FOPEN_SYN_DROP_TS: u16 = 9;
pub const ATTR_FOPEN_COOKIE: u16 = 10;
pub const ATTR_SADDR_IPV4: u16 = 11;
pub const ATTR_SADDR_IPV6: u16 = 12;

/// One attribute of a tcp_metrics request or reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAttr {
    Addr4(Ipv4Addr),
    Addr6(Ipv6Addr),
    Saddr4(Ipv4Addr),
    Saddr6(Ipv6Addr),
    /// Milliseconds since the entry was last updated.
    Age(u64),
    FastOpenMss(u16),
    FastOpenSynDrops(u16),
    /// Milliseconds since the last Fast Open SYN drop.
    FastOpenSynDropAge(u64),
    FastOpenCookie(Vec<u8>),
    /// RTT values, padding and anything newer kernels add.
    Other(DefaultNla),
}

impl Nla for MetricsAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Addr4(_) | Self::Saddr4(_) => 4,
            Self::Addr6(_) | Self::Saddr6(_) => 16,
            Self::Age(_) | Self::FastOpenSynDropAge(_) => 8,
            Self::FastOpenMss(_) | Self::FastOpenSynDrops(_) => 2,
            Self::FastOpenCookie(c) => c.len(),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Addr4(_) => ATTR_ADDR_IPV4,
            Self::Addr6(_) => ATTR_ADDR_IPV6,
            Self::Saddr4(_) => ATTR_SADDR_IPV4,
            Self::Saddr6(_) => ATTR_SADDR_IPV6,
            Self::Age(_) => ATTR_AGE,
            Self::FastOpenMss(_) => ATTR_FOPEN_MSS,
            Self::FastOpenSynDrops(_) => ATTR_FOPEN_SYN_DROPS,
            Self::FastOpenSynDropAge(_) => ATTR_FOPEN_SYN_DROP_TS,
            Self::FastOpenCookie(_) => ATTR_FOPEN_COOKIE,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            // Addresses travel in network byte order, exactly as in the sockaddr.
            Self::Addr4(a) | Self::Saddr4(a) => buffer[..4].copy_from_slice(&a.octets()),
            Self::Addr6(a) | Self::Saddr6(a) => buffer[..16].copy_from_slice(&a.octets()),
            Self::Age(v) | Self::FastOpenSynDropAge(v) => {
                emit_u64(buffer, *v).expect("buffer sized by value_len")
            }
            Self::FastOpenMss(v) | Self::FastOpenSynDrops(v) => {
                emit_u16(buffer, *v).expect("buffer sized by value_len")
            }
            Self::FastOpenCookie(c) => buffer[..c.len()].copy_from_slice(c),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

fn octets<const N: usize>(payload: &[u8]) -> Result<[u8; N], DecodeError> {
    payload
        .try_into()
        .map_err(|_| DecodeError::from(format!("expected {N} address bytes, got {}", payload.len())))
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for MetricsAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            ATTR_ADDR_IPV4 => Self::Addr4(octets::<4>(payload)?.into()),
            ATTR_ADDR_IPV6 => Self::Addr6(octets::<16>(payload)?.into()),
            ATTR_SADDR_IPV4 => Self::Saddr4(octets::<4>(payload)?.into()),
            ATTR_SADDR_IPV6 => Self::Saddr6(octets::<16>(payload)?.into()),
            ATTR_AGE => Self::Age(parse_u64(payload).context("TCP_METRICS_ATTR_AGE")?),
            ATTR_FOPEN_MSS => Self::FastOpenMss(parse_u16(payload).context("FOPEN_MSS")?),
            ATTR_FOPEN_SYN_DROPS => {
                Self::FastOpenSynDrops(parse_u16(payload).context("FOPEN_SYN_DROPS")?)
            }
            ATTR_FOPEN_SYN_DROP_TS => {
                Self::FastOpenSynDropAge(parse_u64(payload).context("FOPEN_SYN_DROP_TS")?)
            }
            ATTR_FOPEN_COOKIE => Self::FastOpenCookie(payload.to_vec()),
            _ => Self::Other(DefaultNla::parse(buf).context("tcp_metrics attribute")?),
        })
    }
}

/// A tcp_metrics message: the command and its attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsMessage {
    pub cmd: u8,
    pub attrs: Vec<MetricsAttr>,
}

impl GenlFamily for MetricsMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

impl Emitable for MetricsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for MetricsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| MetricsAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()
            .context("tcp_metrics reply attributes")?;
        Ok(Self { cmd: header.cmd, attrs })
    }
}
