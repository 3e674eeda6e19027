//! Socket addresses as the kernel takes and returns them (IPv4 or IPv6),
//! copied out of the caller's memory once, at the hook's entry.

use libc::{c_int, sockaddr, socklen_t};
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_in6,
    len: socklen_t,
}

impl SockAddr {
    pub const MAX_LEN: socklen_t = size_of::<libc::sockaddr_in6>() as socklen_t;

    pub const fn empty() -> Self {
        // SAFETY: an all-zero sockaddr_in6 is a valid (AF_UNSPEC) value.
        SockAddr { storage: unsafe { std::mem::zeroed() }, len: 0 }
    }

    /// Copies `len` bytes (at most MAX_LEN) from `addr`.
    ///
    /// # Safety
    /// `addr` must be readable for `len` bytes.
    pub unsafe fn copy_from(addr: *const sockaddr, len: socklen_t) -> Self {
        let mut out = Self::empty();
        out.len = len.min(Self::MAX_LEN);
        // SAFETY: the caller guarantees `len` readable bytes; the storage
        // holds MAX_LEN and we copy at most that.
        unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), out.len as usize) };
        out
    }

    /// An AF_INET or AF_INET6 address of the right length, or `None`
    /// (null, short, another family): then the kernel answers the call.
    ///
    /// # Safety
    /// `addr`, when not null, must be readable for `len` bytes.
    pub unsafe fn inet(addr: *const sockaddr, len: socklen_t) -> Option<Self> {
        if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
            return None;
        }
        // SAFETY: at least the family field is readable (checked above).
        let family = c_int::from(unsafe { (*addr).sa_family });
        let needed = match family {
            libc::AF_INET => size_of::<libc::sockaddr_in>(),
            // SIN6_LEN_RFC2133: the kernel takes one without sin6_scope_id.
            libc::AF_INET6 => 24,
            _ => return None,
        };
        // SAFETY: `len` bytes are readable, and len >= needed.
        (len as usize >= needed).then(|| unsafe { Self::copy_from(addr, len) })
    }

    /// Whether `addr` is an AF_UNSPEC address (a disconnect for connect()).
    ///
    /// # Safety
    /// `addr`, when not null, must be readable for `len` bytes.
    pub unsafe fn is_unspec(addr: *const sockaddr, len: socklen_t) -> bool {
        // SAFETY: the family field is readable when len covers it.
        !addr.is_null() && len as usize >= size_of::<libc::sa_family_t>() && c_int::from(unsafe { (*addr).sa_family }) == libc::AF_UNSPEC
    }

    /// A wildcard address of `family` (port 0), for bind().
    pub fn any(family: c_int) -> Self {
        let mut out = Self::empty();
        out.storage.sin6_family = family as libc::sa_family_t;
        out.len = if family == libc::AF_INET { size_of::<libc::sockaddr_in>() } else { size_of::<libc::sockaddr_in6>() } as socklen_t;
        out
    }

    pub fn as_ptr(&self) -> *const sockaddr {
        (&self.storage as *const libc::sockaddr_in6).cast()
    }

    pub fn as_mut_ptr(&mut self) -> *mut sockaddr {
        (&mut self.storage as *mut libc::sockaddr_in6).cast()
    }

    pub fn len(&self) -> socklen_t {
        self.len
    }

    pub fn set_len(&mut self, len: socklen_t) {
        self.len = len.min(Self::MAX_LEN);
    }

    pub fn family(&self) -> c_int {
        c_int::from(self.storage.sin6_family)
    }

    /// The IP address, for an AF_INET or AF_INET6 address.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.family() {
            libc::AF_INET if self.len as usize >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: an AF_INET address is a sockaddr_in, which fits in the storage.
                let sin = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in) };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
            }
            libc::AF_INET6 if self.len as usize >= 24 => {
                Some(IpAddr::V6(Ipv6Addr::from(self.storage.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }

    /// The port in host order (sin_port and sin6_port share an offset).
    pub fn port(&self) -> u16 {
        u16::from_be(self.storage.sin6_port)
    }

    /// Replaces the port (sin_port and sin6_port share an offset).
    pub fn set_port(&mut self, port: u16) {
        self.storage.sin6_port = port.to_be();
    }

    /// Replaces the IP address, keeping family, port and the rest.
    pub fn set_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) if self.family() == libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in, which fits in the storage.
                let sin = unsafe { &mut *(self.as_mut_ptr() as *mut libc::sockaddr_in) };
                sin.sin_addr.s_addr = u32::from(v4).to_be();
            }
            IpAddr::V6(v6) if self.family() == libc::AF_INET6 => self.storage.sin6_addr.s6_addr = v6.octets(),
            _ => {}
        }
    }

    /// getsockname()-style copy-out: at most `*len` bytes, then `*len` = full length.
    ///
    /// # Safety
    /// `out` must be writable for `*len` bytes; `len` must be valid.
    pub unsafe fn copy_out(&self, out: *mut sockaddr, len: *mut socklen_t) {
        // SAFETY: the caller guarantees both pointers.
        unsafe {
            let n = (*len).min(self.len);
            if n > 0 {
                std::ptr::copy_nonoverlapping(self.as_ptr().cast::<u8>(), out.cast::<u8>(), n as usize);
            }
            *len = self.len;
        }
    }
}

impl std::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port()),
            Some(ip) => write!(f, "{ip}:{}", self.port()),
            None => write!(f, "?"),
        }
    }
}
