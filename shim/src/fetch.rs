//! Cookie requests on libtfo's own connections, so a program's connection
//! never waits on one.
//!
//! A destination without a cookie is the one place where auto mode used to
//! put something on the program's own SYN that a path may refuse: the
//! cookie request. A firewall that drops SYNs carrying the Fast Open option
//! then cost that connection one SYN timeout (1 s), every time, since the
//! kernel remembers nothing of a lost cookie request (spec §17b). Instead,
//! the program's socket connects plainly (exactly as without libtfo), and
//! libtfo opens a connection of its own to the same destination, whose SYN
//! carries the cookie request. The server sees one extra connection, closed
//! without a byte once its handshake is done; the next connection to it
//! finds the cookie and carries its first bytes in the SYN.
//!
//! Each such connection is judged once, at the next connect() or close()
//! of the program, or at exit:
//! * answered with a cookie: Fast Open works on the path (`path_worked`);
//! * answered without one: the server does not serve Fast Open; no cookie
//!   request to it for an hour (doubling);
//! * answered only after one retransmission (which never carries the
//!   option), or still unanswered when the program's own plain connection,
//!   whose SYN left at the same time, has long had its answer (1.5 of its
//!   round trips): something drops the option. The destination backs off,
//!   and the path learns of it (two destinations make a path stop);
//! * anything murkier (more retransmissions, a refusal, the program gone
//!   before its own connection was answered) proves nothing: no record.
//!
//! At most [`SLOTS`] at once per process, one per destination; the sockets
//! are libtfo's (close-on-exec, never tracked), recognised by their
//! SO_COOKIE before anything is done to their number, so a program that
//! closed one behind libtfo's back loses nothing.

use crate::addr::SockAddr;
use crate::errno::{check, Errno};
use crate::failures::{self, Reason};
use crate::kernel::{self, MSG_FASTOPEN, TCP_CLOSE, TCP_FASTOPEN_CONNECT, TCP_SYN_SENT};
use crate::lock::OwnedLock;
use crate::log::debug;
use libc::c_int;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

const SLOTS: usize = 8;

/// getsockopt(SOL_SOCKET, SO_COOKIE): a socket's unique 64-bit id (4.12+).
const SO_COOKIE: c_int = 57;

/// A fetch still unanswered this long is let go without a verdict (the
/// kernel's own retransmissions reach 7 s by then: nothing left to learn).
const GIVE_UP_MS: u64 = 10_000;

#[derive(Clone, Copy)]
struct Fetch {
    /// libtfo's socket; -1 for a free slot.
    fd: c_int,
    cookie: u64,
    /// The program's socket to the same destination, connecting plainly.
    companion: c_int,
    companion_cookie: u64,
    dest: SockAddr,
    source: IpAddr,
    started_ms: u64,
}

const FREE: Fetch = Fetch {
    fd: -1,
    cookie: 0,
    companion: -1,
    companion_cookie: 0,
    dest: SockAddr::empty(),
    source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    started_ms: 0,
};

static TABLE: [OwnedLock<Fetch>; SLOTS] = [const { OwnedLock::new(FREE) }; SLOTS];

/// Slots in use: the close() guard reads only this while it is 0.
// In .data, beside what loading writes anyway: every process's destructor
// reads it, and in .bss that read would fault a page in at exit.
#[link_section = ".data.tfo_fetch_pending"]
static PENDING: AtomicUsize = AtomicUsize::new(0);

fn socket_cookie(fd: c_int) -> Option<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: one u64 and its length, valid for writing.
    let r = unsafe { libc::syscall(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, SO_COOKIE, &mut cookie as *mut u64, &mut len as *mut libc::socklen_t) };
    (r == 0).then_some(cookie)
}

fn close_own(fd: c_int) {
    // SAFETY: a socket of libtfo's own (its SO_COOKIE was checked).
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Asks for `dest`'s cookie on a connection of libtfo's own, beside the
/// program's socket `companion`, which connects plainly. Nothing happens
/// when one is already under way for `dest`, or every slot is taken.
pub fn start(companion: c_int, dest: &SockAddr, source: IpAddr) {
    if PENDING.load(Ordering::Relaxed) >= SLOTS {
        return;
    }
    let mut free = None;
    for slot in &TABLE {
        let Some(fetch) = slot.try_lock() else { continue };
        // Cookies are per address (tcp_metrics), whatever the port.
        if fetch.fd >= 0 && fetch.dest.ip() == dest.ip() {
            return;
        }
        if fetch.fd < 0 && free.is_none() {
            free = Some(fetch);
        }
    }
    let Some(mut slot) = free else { return };
    // SAFETY: plain arguments; a raw system call, so no hook sees the socket.
    let fd = unsafe { libc::syscall(libc::SYS_socket, dest.family(), libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::IPPROTO_TCP) } as c_int;
    if fd < 0 {
        return;
    }
    let (Some(cookie), Some(companion_cookie)) = (socket_cookie(fd), socket_cookie(companion)) else {
        close_own(fd);
        return;
    };
    // The kernel's option, or (before 4.11) a zero-length MSG_FASTOPEN
    // sendto: either sends a SYN with a cookie request, non-blocking.
    let sent = match kernel::set_int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1) {
        // SAFETY: `dest` is a valid address of its length.
        Ok(()) => check(unsafe { libc::syscall(libc::SYS_connect, fd, dest.as_ptr(), dest.len()) } as c_int).map(drop),
        // SAFETY: a zero-length sendto reads no memory; `dest` is valid.
        Err(_) => check(unsafe { libc::syscall(libc::SYS_sendto, fd, std::ptr::null::<u8>(), 0usize, MSG_FASTOPEN | libc::MSG_NOSIGNAL, dest.as_ptr(), dest.len()) } as c_int).map(drop),
    };
    // Anything but a SYN on its way (a cookie after all, no route) ends it.
    if sent != Err(Errno(libc::EINPROGRESS)) || kernel::tcp_state(fd) != Some(TCP_SYN_SENT) {
        close_own(fd);
        return;
    }
    *slot = Fetch { fd, cookie, companion, companion_cookie, dest: *dest, source, started_ms: kernel::monotonic_ms() };
    PENDING.fetch_add(1, Ordering::Relaxed);
    debug!("{dest}: no cookie; asking for one on a connection of libtfo's own");
}

/// True when `fd` may be the program's socket beside a pending fetch (its
/// close() is the moment to judge the fetch). One load while none is pending.
#[inline(always)]
pub fn is_companion(fd: c_int) -> bool {
    PENDING.load(Ordering::Relaxed) != 0 && TABLE.iter().any(|slot| slot.try_lock().is_some_and(|f| f.fd >= 0 && f.companion == fd))
}

/// When fetches are judged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The program connects or closes something: judge what is answered.
    Now,
    /// The program closes `fd`, perhaps the companion of a fetch.
    Closing(c_int),
    /// The process exits: judge what can be, let the rest go.
    Exit,
}

/// Judges the fetches that have an outcome (see the module's rules).
/// Inlined, so that the destructor of a process without fetches runs no
/// code beyond the test (lib.rs).
#[inline(always)]
pub fn reap(moment: Moment) {
    if PENDING.load(Ordering::Relaxed) != 0 {
        reap_pending(moment);
    }
}

#[inline(never)]
fn reap_pending(moment: Moment) {
    for slot in &TABLE {
        let Some(mut fetch) = slot.try_lock() else { continue };
        if fetch.fd < 0 {
            continue;
        }
        if !judge(&fetch, moment) {
            continue;
        }
        // Its number may be the program's by now (closed behind libtfo's
        // back, and reused): only a socket still ours is closed.
        if socket_cookie(fetch.fd) == Some(fetch.cookie) {
            close_own(fetch.fd);
        }
        *fetch = FREE;
        PENDING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Records what `fetch` shows, if anything; true when it is over.
fn judge(fetch: &Fetch, moment: Moment) -> bool {
    if socket_cookie(fetch.fd) != Some(fetch.cookie) {
        return true;
    }
    let Ok(info) = kernel::tcp_info(fetch.fd) else { return true };
    let Some(dest) = fetch.dest.ip() else { return true };
    let age_ms = kernel::monotonic_ms().saturating_sub(fetch.started_ms);
    match info.state {
        TCP_SYN_SENT => {
            if let Moment::Closing(fd) = moment {
                if fd == fetch.companion && companion_answered_long_ago(fetch, age_ms) {
                    lost(fetch, dest);
                    return true;
                }
            }
            moment == Moment::Exit || age_ms > GIVE_UP_MS
        }
        // Refused or unreachable: the program's own connection says so.
        TCP_CLOSE => true,
        _ => {
            match info.total_retrans {
                0 => match crate::memo::cookie_cached(dest, fetch.source) {
                    Some(true) => {
                        debug!("{}: cookie obtained", fetch.dest);
                        failures::path_worked(failures::Worked::Cookie, || Some(fetch.source));
                    }
                    Some(false) => failures::record(dest, Reason::NoCookie, 0),
                    None => {}
                },
                // Its one retransmission, without the option, got through.
                1 => lost(fetch, dest),
                _ => {}
            }
            true
        }
    }
}

/// The program's socket beside `fetch`, connected at the same moment, has
/// had its handshake's answer for half a round trip more than the fetch
/// would need: the fetch's SYN was lost, and only its option sets it apart.
fn companion_answered_long_ago(fetch: &Fetch, age_ms: u64) -> bool {
    if socket_cookie(fetch.companion) != Some(fetch.companion_cookie) {
        return false;
    }
    match kernel::tcp_info(fetch.companion) {
        Ok(info) if info.state != TCP_SYN_SENT && info.state != TCP_CLOSE && info.rtt_us > 0 => {
            age_ms * 1000 >= u64::from(info.rtt_us) * 3 / 2 + 10_000
        }
        _ => false,
    }
}

fn lost(fetch: &Fetch, dest: IpAddr) {
    debug!("{}: the cookie request was lost where a plain SYN got through", fetch.dest);
    failures::record(dest, Reason::Option, 0);
    failures::path_failed(fetch.source, dest, Reason::Option);
}
