//! One timed connection to the server: plain, or with the kernel's own
//! TCP_FASTOPEN_CONNECT (never libtfo's), and what TCP_INFO says about it.
//!
//! Blocking sockets whose send and receive timeouts are set to what is left
//! of the connection's deadline before each call: a blocking connect() gives
//! up with EINPROGRESS, and the first write of a Fast Open socket (which waits
//! for the handshake) returns once the SYN with data has left.

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// tcp_info.tcpi_options bit: the server acknowledged the data in our SYN.
const TCPI_OPT_SYN_DATA: u8 = 32;
/// The part of struct tcp_info the probe reads (up to tcpi_total_retrans).
const TCP_INFO_LEN: usize = 104;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plain,
    FastOpen,
}

/// The call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Socket,
    Setsockopt,
    Connect,
    Write,
    Read,
}

#[derive(Debug)]
pub struct Failure {
    pub stage: Stage,
    pub error: io::Error,
    /// The deadline passed (rather than the kernel reporting an error).
    pub timed_out: bool,
}

impl Failure {
    fn new(stage: Stage, error: io::Error) -> Failure {
        Failure { stage, timed_out: is_timeout(&error), error }
    }

    pub fn errno(&self) -> Option<i32> {
        self.error.raw_os_error()
    }

    pub fn describe(&self) -> String {
        if self.timed_out {
            "no answer within the timeout".to_string()
        } else {
            let stage = format!("{:?}", self.stage).to_lowercase();
            // "Connection refused", without std's " (os error 111)".
            let error = self.error.to_string();
            format!("{stage}: {}", error.split(" (os error").next().unwrap_or(&error))
        }
    }
}

/// A socket timeout ran out: EAGAIN from a read or write, EINPROGRESS from
/// a blocking connect().
fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) || error.raw_os_error() == Some(libc::EINPROGRESS)
}

/// What TCP_INFO says about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// TCPI_OPT_SYN_DATA: data in the SYN was acknowledged.
    pub syn_data_acked: bool,
    /// tcpi_fastopen_client_fail: 0 none, 1 no cookie, 2 data not
    /// acknowledged, 3 SYN with data timed out and a plain SYN retransmitted.
    pub fastopen_client_fail: u8,
    pub rtt: Duration,
    pub total_retrans: u32,
}

impl TcpInfo {
    fn parse(b: &[u8; TCP_INFO_LEN]) -> TcpInfo {
        let word = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        TcpInfo {
            syn_data_acked: b[5] & TCPI_OPT_SYN_DATA != 0,
            // Byte 7 holds the bit fields delivery_rate_app_limited:1, fastopen_client_fail:2.
            fastopen_client_fail: (b[7] >> 1) & 3,
            rtt: Duration::from_micros(word(68).into()),
            total_retrans: word(100),
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// From connect() to the first byte from the server (or its close).
    pub ttfb: Option<Duration>,
    /// How long a blocking connect() took: one round trip (plain sockets).
    pub handshake: Option<Duration>,
    pub reply_bytes: usize,
    /// The first bytes of the answer (what kind of answer it was).
    pub reply_head: Vec<u8>,
    /// The server closed without a byte.
    pub closed_without_reply: bool,
    /// Bytes the server sent before the request (a server that speaks first).
    pub banner_bytes: usize,
    pub failure: Option<Failure>,
    pub info: Option<TcpInfo>,
}

/// One connection to `addr` that sends `request` and waits for the first
/// bytes of the answer, all within `timeout`. With `listen_first`, it first
/// waits a little (two handshakes' time) for a server that speaks first.
pub fn run(addr: SocketAddr, kind: Kind, request: &[u8], timeout: Duration, listen_first: bool) -> Outcome {
    let mut out = Outcome::default();
    if let Err(f) = exchange(addr, kind, request, timeout, listen_first, &mut out) {
        out.failure = Some(f);
    }
    out
}

fn exchange(addr: SocketAddr, kind: Kind, request: &[u8], timeout: Duration, listen_first: bool, out: &mut Outcome) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    // Timeouts of zero mean "none" to the kernel; never pass one.
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(|e| Failure::new(Stage::Socket, e))?;
    if kind == Kind::FastOpen {
        set_fastopen_connect(&socket).map_err(|e| Failure::new(Stage::Setsockopt, e))?;
    }

    let start = Instant::now();
    socket.set_write_timeout(Some(left())).map_err(|e| Failure::new(Stage::Connect, e))?;
    socket.connect(&addr.into()).map_err(|e| Failure::new(Stage::Connect, e))?;
    if kind == Kind::Plain {
        out.handshake = Some(start.elapsed());
    }

    let mut buf = [0u8; 4096];
    // Time spent listening for a greeting that did not come is no part of
    // the time to first byte.
    let mut waited = Duration::ZERO;
    if listen_first {
        let wait = (start.elapsed() * 2 + Duration::from_millis(50)).min(left());
        socket.set_read_timeout(Some(wait)).map_err(|e| Failure::new(Stage::Read, e))?;
        let listening = Instant::now();
        match (&socket).read(&mut buf) {
            Ok(n) => {
                out.banner_bytes = n;
                out.reply_head = buf[..n.min(8)].to_vec();
                out.closed_without_reply = n == 0;
                out.ttfb = Some(start.elapsed());
            }
            Err(e) if is_timeout(&e) => waited = listening.elapsed(), // it waits for us: the usual case
            Err(e) => return Err(Failure::new(Stage::Read, e)),
        }
    }

    socket.set_write_timeout(Some(left())).map_err(|e| Failure::new(Stage::Write, e))?;
    if !out.closed_without_reply {
        (&socket).write_all(request).map_err(|e| Failure::new(Stage::Write, e))?;
    }
    if out.ttfb.is_none() {
        socket.set_read_timeout(Some(left())).map_err(|e| Failure::new(Stage::Read, e))?;
        let n = (&socket).read(&mut buf).map_err(|e| Failure::new(Stage::Read, e))?;
        out.ttfb = Some(start.elapsed() - waited);
        out.reply_bytes = n;
        out.reply_head = buf[..n.min(8)].to_vec();
        out.closed_without_reply = n == 0;
    }
    out.info = tcp_info(&socket).ok();
    Ok(())
}

/// The kernel's own Fast Open for this socket's connect() and first write.
fn set_fastopen_connect(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a live local of that size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN_CONNECT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn tcp_info(socket: &Socket) -> io::Result<TcpInfo> {
    let mut buf = [0u8; TCP_INFO_LEN];
    let mut len = TCP_INFO_LEN as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which holds that many.
    let rc = unsafe { libc::getsockopt(socket.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, buf.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < TCP_INFO_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short TCP_INFO"));
    }
    Ok(TcpInfo::parse(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn tcp_info_offsets_match_the_c_struct() {
        assert_eq!(offset_of!(libc::tcp_info, tcpi_options), 5);
        assert_eq!(offset_of!(libc::tcp_info, tcpi_rtt), 68);
        assert_eq!(offset_of!(libc::tcp_info, tcpi_total_retrans), 100);
        assert_eq!(offset_of!(libc::tcp_info, tcpi_total_retrans) + 4, TCP_INFO_LEN);
    }

    #[test]
    fn tcp_info_fields() {
        let mut b = [0u8; TCP_INFO_LEN];
        b[5] = TCPI_OPT_SYN_DATA | 0x07;
        b[7] = 3 << 1 | 1; // fail 3, app-limited
        b[68..72].copy_from_slice(&50_000u32.to_ne_bytes());
        b[100..104].copy_from_slice(&2u32.to_ne_bytes());
        let info = TcpInfo::parse(&b);
        assert_eq!(info, TcpInfo { syn_data_acked: true, fastopen_client_fail: 3, rtt: Duration::from_millis(50), total_retrans: 2 });
        b[5] = 0x07;
        b[7] = 2 << 1;
        assert_eq!((TcpInfo::parse(&b).syn_data_acked, TcpInfo::parse(&b).fastopen_client_fail), (false, 2));
    }

    /// A refused port fails at connect (plain) with ECONNREFUSED.
    #[test]
    fn refused_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let out = run(addr, Kind::Plain, b"x", Duration::from_secs(2), false);
        let f = out.failure.unwrap();
        assert_eq!((f.stage, f.errno(), f.timed_out), (Stage::Connect, Some(libc::ECONNREFUSED), false));
    }

    /// A local echo: the reply and a handshake time are recorded.
    #[test]
    fn answered_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).unwrap();
            c.write_all(&b).unwrap();
        });
        let out = run(addr, Kind::Plain, b"hello", Duration::from_secs(2), true);
        server.join().unwrap();
        assert!(out.failure.is_none(), "{:?}", out.failure);
        assert_eq!((out.reply_bytes, out.banner_bytes, out.closed_without_reply), (5, 0, false));
        assert!(out.handshake.is_some() && out.ttfb.is_some() && out.info.is_some());
    }
}
