//! Sending the deferred SYN, and what follows it.
//!
//! * [`first_write`]: the first write of a deferred socket carries its data
//!   in the SYN. Emulated: `sendto`/`sendmsg` with MSG_FASTOPEN to the
//!   recorded destination, which returns exactly what the kernel's own
//!   deferred socket would (spec §6). Kernel engine: the write itself.
//!   In auto mode the program only ever sees what a plain connected socket
//!   would give: EINPROGRESS becomes EAGAIN (or 0 for an empty write), and
//!   a reset answering the SYN's data is retried without data.
//! * [`kick`]: auto mode, the program reads or waits for input before it
//!   writes (or shuts down, or execs): the SYN leaves now, without data, so
//!   it never waits on a connection that was not started.
//! * [`resolve`]: auto mode, once the SYN with data has left: a hook that
//!   sees the handshake's outcome acts on it — established (a dropped SYN
//!   is remembered), or reset (connect again without data and send the
//!   kept bytes), or failed (the error is left for the program).

use crate::addr::SockAddr;
use crate::errno::{check, Errno, SysResult};
use crate::export::{Answer, Done, Real};
use crate::failures::{self, Reason};
use crate::fdtable::Entry;
use crate::kernel::{self, MSG_FASTOPEN, TCPI_OPT_SYN_DATA, TCP_CLOSE, TCP_FASTOPEN_CONNECT, TCP_SYN_SENT, TFO_SYN_RETRANSMITTED};
use crate::log::{debug, info};
use crate::real;
use crate::retain;
use crate::state::{Engine, Origin, Phase};
use crate::stats::{self, Counter};
use libc::{c_int, c_void, iovec, msghdr, size_t, ssize_t};

/// The most data a SYN carries (tcp_send_syn_data: 32 KiB on loopback).
const MAX_SYN_DATA: usize = 32 * 1024;

/// Iovecs handled on the stack when a first write must be shortened or
/// kept; a longer vector is sent whole and not kept (no retry possible).
const MAX_IOV: usize = 64;

/// The data of a write call, as the program gave it.
#[derive(Clone, Copy)]
pub enum Payload {
    Buf(*const c_void, size_t),
    Msg(msghdr),
}

impl Payload {
    fn iov(&self) -> &[iovec] {
        match self {
            Payload::Buf(..) => &[],
            // SAFETY: the program's msghdr describes msg_iovlen iovecs
            // (the kernel reports EFAULT/EINVAL otherwise, and we only get
            // here after checking the pointer is not null).
            Payload::Msg(m) if !m.msg_iov.is_null() => unsafe { std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen) },
            Payload::Msg(_) => &[],
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Payload::Buf(_, len) => *len,
            Payload::Msg(_) => self.iov().iter().fold(0usize, |a, v| a.saturating_add(v.iov_len)),
        }
    }

    /// Sends it: to `to` with MSG_FASTOPEN (emulated), or plainly.
    fn send(&self, fd: c_int, flags: c_int, to: Option<&SockAddr>) -> SysResult<ssize_t> {
        let (name, namelen, flags) = match to {
            Some(to) => (to.as_ptr(), to.len(), flags | MSG_FASTOPEN),
            None => (std::ptr::null(), 0, flags),
        };
        match *self {
            // SAFETY: the program's buffer contract is passed on unchanged.
            Payload::Buf(buf, len) => check(unsafe { real::sendto(fd, buf, len, flags, name, namelen) }),
            Payload::Msg(mut msg) => {
                if to.is_some() {
                    msg.msg_name = name as *mut c_void;
                    msg.msg_namelen = namelen;
                }
                // SAFETY: the program's msghdr contract is passed on unchanged.
                check(unsafe { real::sendmsg(fd, &msg, flags) })
            }
        }
    }

    /// Whether the first `n` bytes (or all, when fewer) can be read.
    fn prefix_readable(&self, n: usize) -> bool {
        match *self {
            Payload::Buf(buf, len) => kernel::readable(buf, len.min(n)),
            Payload::Msg(_) => {
                let mut left = n;
                self.iov().iter().all(|v| {
                    let take = v.iov_len.min(left);
                    left -= take;
                    kernel::readable(v.iov_base, take)
                })
            }
        }
    }

    /// Up to `n` bytes as slices (for keeping them), or `None` when the
    /// vector is too long to describe on the stack.
    fn with_prefix<R>(&self, n: usize, f: impl FnOnce(&[&[u8]]) -> R) -> Option<R> {
        let mut parts: [&[u8]; MAX_IOV] = [&[]; MAX_IOV];
        let mut count = 0;
        let mut left = n;
        match *self {
            Payload::Buf(buf, len) if !buf.is_null() => {
                // SAFETY: the write just read these bytes from the program's buffer.
                parts[0] = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len.min(left)) };
                count = 1;
            }
            Payload::Buf(..) => {}
            Payload::Msg(_) => {
                for v in self.iov() {
                    if left == 0 {
                        break;
                    }
                    if count == MAX_IOV {
                        return None;
                    }
                    let take = v.iov_len.min(left);
                    // SAFETY: as above, for each iovec the kernel just read.
                    parts[count] = unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), take) };
                    count += 1;
                    left -= take;
                }
            }
        }
        Some(f(&parts[..count]))
    }
}

/// The first write on a deferred socket. `Real` when there is nothing to
/// do (the SYN already left), and the caller makes its real call.
pub fn first_write(fd: c_int, entry: &Entry, payload: Payload, flags: c_int) -> Answer<ssize_t> {
    let conn = &entry.conn;
    if conn.is_confirming() {
        resolve(fd, entry, true);
    }
    // An error left by a disconnect or a failed retry: a send reports it,
    // unless this write sends a new SYN, which clears it (tcp_connect_init).
    if !conn.is_unsent() {
        return match conn.take_pending_error() {
            Some(e) => Done(Err(e)),
            None => Real,
        };
    }
    if conn.begin_send(fd).is_err() {
        return Real;
    }
    match conn.origin() {
        Origin::Explicit => explicit_first_write(fd, entry, payload, flags),
        Origin::Auto => auto_first_write(fd, entry, payload, flags),
    }
}

/// Sends the deferred SYN carrying `payload`, by the socket's engine.
fn send_syn(fd: c_int, entry: &Entry, payload: &Payload, flags: c_int) -> SysResult<ssize_t> {
    match entry.conn.engine() {
        Engine::Emulated => payload.send(fd, flags, Some(&entry.conn.endpoints().remote)),
        Engine::Kernel => payload.send(fd, flags, None),
    }
}

/// Explicit sockets answer exactly as the kernel's deferred socket.
fn explicit_first_write(fd: c_int, entry: &Entry, payload: Payload, flags: c_int) -> Answer<ssize_t> {
    let conn = &entry.conn;
    let result = send_syn(fd, entry, &payload, flags);
    match result {
        // Client Fast Open was switched off after connect(): the kernel's
        // socket stays deferred in SYN_SENT, and so does ours.
        Err(Errno(libc::EOPNOTSUPP)) => {
            conn.syn_not_sent();
            Done(result)
        }
        // Another process sharing the socket (fork) sent the SYN first: the
        // kernel socket is connecting or connected, so this is a plain write.
        Err(Errno(libc::EALREADY | libc::EISCONN)) => {
            syn_gone(fd, entry, false);
            Real
        }
        _ => {
            syn_gone(fd, entry, false);
            if result.is_ok_and(|n| n > 0) {
                stats::count(Counter::SynDataSent);
            }
            // A call that did not wait leaves the socket layer "connecting".
            let waited = flags & libc::MSG_DONTWAIT == 0 && !kernel::is_nonblocking(fd);
            conn.socket_connect_went(!waited && matches!(result, Ok(_) | Err(Errno(libc::EINPROGRESS))), waited && result.is_ok());
            Done(result)
        }
    }
}

/// The SYN left (or another process's did): the error a disconnect left is
/// cleared, epoll registrations go back to the kernel.
fn syn_gone(fd: c_int, entry: &Entry, with_data_to_confirm: bool) {
    entry.conn.drop_held_error();
    entry.conn.syn_left(with_data_to_confirm);
    super::registrations::release(fd, entry);
}

/// Auto mode: the program believes it has a connected socket.
///
/// The SYN leaves without waiting for the handshake (MSG_DONTWAIT), even
/// from a blocking socket: the kernel's Fast Open client answers EINTR to a
/// blocking send that a signal interrupts in the handshake although its data
/// left in the SYN (or, with SA_RESTART, sends it again), and the program
/// would send those bytes twice. A blocking write then waits for the
/// handshake itself and sends the rest ([`finish_blocking`]).
fn auto_first_write(fd: c_int, entry: &Entry, payload: Payload, flags: c_int) -> Answer<ssize_t> {
    let nonblocking = flags & libc::MSG_DONTWAIT != 0 || kernel::is_nonblocking(fd);
    let len = payload.len();
    // Bytes the kernel cannot read: a connected socket says EFAULT and sends
    // nothing (the SYN's copy would fail silently, leaving without data).
    // As much as the largest SYN takes (32 KiB, loopback) is checked: a
    // length beyond the program's buffer faults there.
    if !payload.prefix_readable(MAX_SYN_DATA) {
        entry.conn.syn_not_sent();
        return Done(Err(Errno(libc::EFAULT)));
    }
    // What goes in the SYN is cut to what can be kept for a retry after a
    // reset (any write may be shortened; a blocking one sends the rest).
    let mut iov = [iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
    let sent_payload = if len > retain::CAPACITY { shorten(&payload, retain::CAPACITY, &mut iov) } else { payload };
    let result = send_syn(fd, entry, &sent_payload, flags | libc::MSG_DONTWAIT);
    match result {
        Ok(n) if n > 0 => {
            stats::count(Counter::SynDataSent);
            // The outcome comes later: keep the bytes until it does.
            sent_payload.with_prefix(n as usize, |parts| entry.conn.retained.keep(parts));
            syn_gone(fd, entry, true);
            if nonblocking {
                return Done(result);
            }
            Done(finish_blocking(fd, entry, &payload, n as usize, flags))
        }
        Ok(_) => {
            syn_gone(fd, entry, false);
            Done(result)
        }
        // No data went (an empty write, or the cookie vanished since
        // connect): the SYN left alone (EINPROGRESS from the emulation,
        // EAGAIN from the kernel's deferred socket). A connected socket
        // would have taken the empty write, and asks a longer one to come
        // back (EAGAIN); a blocking one waits for the handshake and writes.
        Err(Errno(libc::EINPROGRESS | libc::EAGAIN)) => {
            syn_gone(fd, entry, false);
            if len == 0 {
                Done(Ok(0))
            } else if nonblocking {
                Done(Err(Errno(libc::EAGAIN)))
            } else {
                Done(payload.send(fd, flags, None))
            }
        }
        // The SYN with data was refused at once: by the server (port
        // closed) or by a middlebox that resets SYNs with data. Connecting
        // again without data tells them apart; the program gets its reply.
        Err(Errno(libc::ECONNREFUSED | libc::ECONNRESET)) if len > 0 => {
            syn_gone(fd, entry, false);
            stats::count(Counter::SynDataReset);
            Done(retry_blocking(fd, entry, &payload, flags, result))
        }
        // Client Fast Open was switched off after connect(): connect plainly.
        Err(Errno(libc::EOPNOTSUPP)) => {
            syn_gone(fd, entry, false);
            match connect_plainly(fd, entry, nonblocking) {
                Ok(()) => Done(payload.send(fd, flags, None)),
                Err(Errno(libc::EINPROGRESS)) => Done(Err(Errno(libc::EAGAIN))),
                Err(e) => Done(Err(e)),
            }
        }
        Err(_) => {
            syn_gone(fd, entry, false);
            Done(result)
        }
    }
}

/// A blocking first write whose SYN carried its first `sent` bytes: waits
/// for the handshake as the blocking write would have (until SO_SNDTIMEO),
/// acts on its outcome (a reset SYN is retried, a refusal reported), then
/// sends the rest as a blocking write. A signal during the wait, or an
/// error after it, ends the write with the bytes accepted so far, as a
/// blocking write interrupted after some data returns.
fn finish_blocking(fd: c_int, entry: &Entry, payload: &Payload, sent: usize, flags: c_int) -> SysResult<ssize_t> {
    let mut ready = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    let deadline = kernel::deadline(fd, libc::SO_SNDTIMEO);
    let timeout = deadline.map_or(-1, |d| {
        let now = kernel::after(0);
        ((d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1_000_000).clamp(0, i32::MAX as i64) as c_int
    });
    // SAFETY: one valid pollfd.
    if unsafe { real::poll(&mut ready, 1, timeout) } <= 0 {
        return Ok(sent as ssize_t);
    }
    resolve(fd, entry, true);
    if let Some(e) = entry.conn.take_pending_error() {
        return Err(e);
    }
    let len = payload.len();
    let mut at = sent;
    while at < len {
        let mut iov = [iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        match window(payload, at, &mut iov).send(fd, flags, None) {
            Ok(n) if n > 0 => at += n as usize,
            _ => break,
        }
    }
    Ok(at as ssize_t)
}

/// `payload` from byte `from` on, at most MAX_IOV iovecs of it (rebuilt in
/// `iov`), without the address and control data its first part carried.
fn window(payload: &Payload, from: usize, iov: &mut [iovec; MAX_IOV]) -> Payload {
    match *payload {
        Payload::Buf(buf, len) => Payload::Buf(buf.cast::<u8>().wrapping_add(from).cast(), len - from.min(len)),
        Payload::Msg(mut msg) => {
            let mut skip = from;
            let mut count = 0;
            for v in payload.iov() {
                if count == MAX_IOV {
                    break;
                }
                if skip >= v.iov_len {
                    skip -= v.iov_len;
                    continue;
                }
                iov[count] = iovec { iov_base: v.iov_base.cast::<u8>().wrapping_add(skip).cast(), iov_len: v.iov_len - skip };
                skip = 0;
                count += 1;
            }
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count;
            msg.msg_name = std::ptr::null_mut();
            msg.msg_namelen = 0;
            msg.msg_control = std::ptr::null_mut();
            msg.msg_controllen = 0;
            Payload::Msg(msg)
        }
    }
}

/// `payload` cut to `cap` bytes, its iovecs rebuilt in `iov`; unchanged
/// when the vector is too long to rebuild.
fn shorten(payload: &Payload, cap: usize, iov: &mut [iovec; MAX_IOV]) -> Payload {
    match *payload {
        Payload::Buf(buf, len) => Payload::Buf(buf, len.min(cap)),
        Payload::Msg(mut msg) => {
            let source = payload.iov();
            if source.len() > MAX_IOV {
                return *payload;
            }
            let mut left = cap;
            let mut count = 0;
            for v in source {
                if left == 0 {
                    break;
                }
                iov[count] = iovec { iov_base: v.iov_base, iov_len: v.iov_len.min(left) };
                left -= iov[count].iov_len;
                count += 1;
            }
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count;
            Payload::Msg(msg)
        }
    }
}

/// Connects `fd` to its recorded destination without Fast Open. The kernel
/// engine's option must go first, or the kernel would defer again.
fn connect_plainly(fd: c_int, entry: &Entry, nonblocking: bool) -> SysResult<()> {
    if entry.conn.engine() == Engine::Kernel {
        let _ = kernel::set_int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 0);
    }
    if kernel::tcp_state(fd) != Some(TCP_CLOSE) {
        // Still SYN_SENT (a deferred socket whose SYN cannot leave): drop it.
        let unspec = SockAddr::any(libc::AF_UNSPEC);
        // SAFETY: a valid AF_UNSPEC address.
        let _ = check(unsafe { real::connect(fd, unspec.as_ptr(), unspec.len()) });
    }
    let remote = entry.conn.endpoints().remote;
    // SAFETY: a valid address of its length.
    let connect = || check(unsafe { real::connect(fd, remote.as_ptr(), remote.len()) });
    // A socket whose failure no connect() has seen yet is still
    // "connecting" to the kernel: the first connect() reports the failure
    // (ECONNABORTED) and resets it, the second connects.
    let r = match connect() {
        Err(Errno(libc::ECONNABORTED)) => connect(),
        r => r,
    };
    match r {
        Err(Errno(libc::EINPROGRESS)) if !nonblocking => Err(Errno(libc::EINPROGRESS)),
        r => r.map(drop),
    }
}

/// A blocking first write whose SYN was refused: connect plainly and write
/// again. The server refusing too means the refusal was real.
fn retry_blocking(fd: c_int, entry: &Entry, payload: &Payload, flags: c_int, refused: SysResult<ssize_t>) -> SysResult<ssize_t> {
    match connect_plainly(fd, entry, false) {
        Ok(()) => {
            remember(fd, entry, Reason::Reset);
            stats::count(Counter::ResetRetries);
            payload.send(fd, flags, None)
        }
        Err(_) => refused,
    }
}

/// How long a retry after a reset may take inside the call that noticed it.
const RETRY_TIMEOUT_NS: i64 = 10_000_000_000;

/// A non-blocking connection whose SYN with data was reset: connect plainly
/// and send the kept bytes, inside this call (one round trip).
fn retry_kept(fd: c_int, entry: &Entry) -> SysResult<()> {
    let Some(kept) = entry.conn.retained.bytes() else { return Err(Errno(libc::ECONNREFUSED)) };
    let deadline = Some(kernel::after(RETRY_TIMEOUT_NS));
    match connect_plainly(fd, entry, true) {
        Ok(()) | Err(Errno(libc::EINPROGRESS)) => {}
        Err(e) => return Err(e),
    }
    let revents = kernel::wait_for(fd, libc::POLLOUT, deadline)?;
    if revents == 0 {
        return Err(Errno(libc::ETIMEDOUT));
    }
    match kernel::take_socket_error(fd) {
        0 => {}
        e => return Err(Errno(e)),
    }
    let mut sent = 0;
    while sent < kept.len() {
        let rest = &kept[sent..];
        // SAFETY: a slice of our own buffer.
        match check(unsafe { real::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) }) {
            Ok(n) => sent += n as usize,
            Err(Errno(libc::EAGAIN)) => {
                if kernel::wait_for(fd, libc::POLLOUT, deadline)? == 0 {
                    return Err(Errno(libc::ETIMEDOUT));
                }
            }
            Err(e) => return Err(e),
        }
    }
    remember(fd, entry, Reason::Reset);
    stats::count(Counter::ResetRetries);
    Ok(())
}

/// What `resolve` found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting for the handshake (or another thread is resolving).
    Pending,
    /// Settled: the kernel answers from now on.
    Settled,
    /// Reset, and connected again with the kept bytes re-sent: readiness
    /// reported before this is stale.
    Retried,
}

/// Acts on the outcome of an auto-mode SYN that carried data, if it is in.
/// `retry`: a reset may be retried now (not when the program is closing).
pub fn resolve(fd: c_int, entry: &Entry, retry: bool) -> Outcome {
    let conn = &entry.conn;
    if !conn.begin_resolve() {
        return Outcome::Pending;
    }
    let info = match kernel::tcp_info(fd) {
        Ok(info) => info,
        Err(_) => {
            conn.resolved();
            return Outcome::Settled;
        }
    };
    match info.state {
        TCP_SYN_SENT => {
            conn.unresolved();
            Outcome::Pending
        }
        TCP_CLOSE => {
            let err = kernel::take_socket_error(fd);
            let reset = matches!(err, libc::ECONNREFUSED | libc::ECONNRESET);
            if reset {
                stats::count(Counter::SynDataReset);
            }
            if reset && retry && conn.retained.bytes().is_some() {
                debug!("fd {fd} {}: SYN with data reset; connecting again without data", conn.endpoints().remote);
                let outcome = retry_kept(fd, entry);
                if let Err(Errno(e)) = outcome {
                    conn.hold_error(e);
                }
                conn.resolved();
                return if outcome.is_ok() { Outcome::Retried } else { Outcome::Settled };
            }
            if err != 0 {
                // Consumed to look at it: the program still gets it once.
                conn.hold_error(err);
            }
            conn.resolved();
            Outcome::Settled
        }
        _ => {
            if info.options & TCPI_OPT_SYN_DATA != 0 {
                stats::count(Counter::SynDataAcked);
                failures::path_worked(failures::Worked::Data, || source_of(fd, entry));
            }
            // The SYN with data went unanswered and its plain retransmission
            // got through at once (two retransmissions: that SYN, then the
            // data it no longer carried): the data was the trouble. More say
            // the path loses packets anyway: the destination backs off, the
            // path is not blamed.
            if info.fastopen_client_fail == TFO_SYN_RETRANSMITTED {
                stats::count(Counter::SynDataDropped);
                if info.total_retrans <= 2 {
                    remember(fd, entry, Reason::Dropped);
                } else if let Some(ip) = entry.conn.endpoints().remote.ip() {
                    failures::record(ip, Reason::Dropped, 0);
                }
            }
            conn.resolved();
            Outcome::Settled
        }
    }
}

/// The path to this destination broke Fast Open: back off from it, and
/// tell the path's memory (`failures::path_failed`).
fn remember(fd: c_int, entry: &Entry, reason: Reason) {
    let remote = entry.conn.endpoints().remote;
    let Some(ip) = remote.ip() else { return };
    info!("{remote}: the SYN's data was {}", if reason == Reason::Reset { "reset" } else { "dropped" });
    // The kernel's drop count, to start from when it is higher (it also
    // counts drops of programs that use Fast Open without libtfo).
    let drops = if reason == Reason::Dropped {
        cookie_store::lookup(crate::policy::canonical(ip), None).ok().flatten().and_then(|m| m.fastopen_syn_drops).unwrap_or(0)
    } else {
        0
    };
    failures::record(ip, reason, u32::from(drops));
    if let Some(source) = source_of(fd, entry) {
        failures::path_failed(source, ip, reason);
    }
}

/// The local address `fd` sends from.
fn source_of(fd: c_int, entry: &Entry) -> Option<std::net::IpAddr> {
    match entry.conn.engine() {
        Engine::Emulated => entry.conn.endpoints().local.ip(),
        Engine::Kernel => kernel::local_address(fd).ok()?.ip(),
    }
    .filter(|ip| !ip.is_unspecified())
}

/// Sends the deferred SYN now, without data and without waiting, counting
/// why. Nothing happens when the SYN already left.
pub fn kick(fd: c_int, entry: &Entry, why: Counter) {
    let conn = &entry.conn;
    if conn.begin_send(fd).is_err() {
        return;
    }
    let result = match conn.engine() {
        Engine::Kernel => kernel::send_nothing(fd, libc::MSG_DONTWAIT),
        Engine::Emulated => Payload::Buf(std::ptr::null(), 0).send(fd, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL, Some(&conn.endpoints().remote)),
    };
    match result {
        Err(Errno(libc::EOPNOTSUPP)) if conn.origin() == Origin::Explicit => {
            conn.syn_not_sent();
            return;
        }
        Err(Errno(libc::EOPNOTSUPP)) => {
            syn_gone(fd, entry, false);
            let _ = connect_plainly(fd, entry, true);
        }
        _ => syn_gone(fd, entry, false),
    }
    stats::count(why);
    debug!("fd {fd} {}: SYN sent without data ({})", conn.endpoints().remote, kick_reason(why));
}

fn kick_reason(why: Counter) -> &'static str {
    match why {
        Counter::KicksRead => "the program reads first",
        Counter::KicksWait => "the program waits for input",
        Counter::KicksShutdown => "the program shuts down",
        Counter::KicksExec => "exec",
        _ => "",
    }
}

/// Explicit: the SYN without data, by the explicit rules (exec); `Real`
/// when it had already left.
pub fn syn_without_data(fd: c_int, entry: &Entry, flags: c_int) -> Answer<ssize_t> {
    first_write(fd, entry, Payload::Buf(std::ptr::null(), 0), flags | libc::MSG_DONTWAIT)
}

/// A wait that does not block (timeout 0) is no sign the program waits for
/// the server: event loops poll so between callbacks, just before they
/// write. Only after this long deferred does such a wait start the
/// connection (a loop that busy-polls for a banner).
const ZERO_WAIT_GRACE_MS: u64 = 20;

/// Auto mode: a wait for input that found nothing ready starts the
/// connection of this deferred socket (see `ZERO_WAIT_GRACE_MS`).
pub fn wait_kicks(entry: &Entry, caller_waits: bool) -> bool {
    auto_unsent(entry) && (caller_waits || entry.conn.deferred_for_ms() >= ZERO_WAIT_GRACE_MS)
}

/// The phase says the SYN is unsent and the socket is auto-mode.
pub fn auto_unsent(entry: &Entry) -> bool {
    entry.conn.is_auto() && entry.conn.phase() == Phase::Deferred
}
