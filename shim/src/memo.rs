//! Questions asked at every connect(), answered from memory for a second:
//! which source address routing picks towards a destination, and whether
//! the kernel holds a Fast Open cookie for (source, destination) — asked
//! afresh, they cost an emulated connect() eight system calls (a UDP socket
//! connected as a route probe, a netlink exchange with tcp_metrics) and most
//! of its time — and whether the failure memory holds a backoff for the
//! destination (a file lookup at every auto-mode connect). Remembered, a
//! connect() to a recent destination costs about what the kernel's own
//! deferred connect does.
//!
//! The rule (what may differ from asking each time):
//! * an answer is kept at most [`TTL_MS`], so a new route, a new address
//!   or a cookie the kernel dropped (a flush, an eviction) is seen within a
//!   second. A dropped cookie makes one connect() defer where the kernel's
//!   would have sent its SYN; the first write then sends the kernel's own
//!   cookie request, with the data after the handshake;
//! * only positive answers are kept: "no route", "no cookie" and "in
//!   backoff" are asked again every time, so a cookie just obtained is used
//!   at once, a backoff cleared (`tfo forget`) ends at once, and an error
//!   is always the kernel's own, fresh;
//! * a Fast Open failure towards a destination ([`forget`], called by the
//!   failure memory when it records one) drops what is known of it at once;
//!   another process's failure is seen within the second.
//!
//! Bounded: [`SLOTS`] entries, direct-mapped by a hash of the question; a
//! new answer replaces whatever shared its slot. A slot that is busy (or
//! that a fork child inherited locked) is a miss: the question is asked.

use crate::addr::SockAddr;
use crate::kernel::{self, Steering};
use crate::lock::OwnedLock;
use crate::policy::canonical;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};

/// How long an answer is believed.
pub const TTL_MS: u64 = 1000;

const SLOTS: usize = 64;

#[derive(Clone, Copy, Hash, PartialEq, Eq)]
enum Question {
    /// The source address towards (destination, port), for a socket steered so.
    Route { dest: IpAddr, port: u16, steering: Steering, bound: Option<IpAddr> },
    /// A cookie is cached for (destination, source).
    Cookie { dest: IpAddr, source: IpAddr },
    /// The failure memory holds no backoff for the destination.
    NoBackoff { dest: IpAddr },
    /// The failure memory holds no backoff for the path through this source.
    PathClear { source: IpAddr },
}

impl Question {
    fn dest(&self) -> IpAddr {
        match *self {
            Question::Route { dest, .. } | Question::Cookie { dest, .. } | Question::NoBackoff { dest } => canonical(dest),
            Question::PathClear { source } => canonical(source),
        }
    }

    fn slot(&self) -> &'static OwnedLock<Answer> {
        let mut hasher = std::hash::DefaultHasher::new();
        self.hash(&mut hasher);
        &TABLE[hasher.finish() as usize % SLOTS]
    }
}

#[derive(Clone, Copy)]
struct Answer {
    question: Question,
    /// The source address (Route); the destination again (the others).
    ip: IpAddr,
    /// 0: an empty slot (expired for ever).
    expires_ms: u64,
}

/// An empty slot. All its bytes are zero (`bound: None` would not be: its
/// niche is a 2), so the table lies in .bss: no page of it is touched
/// before it is used (each page loading touches costs every process a
/// fault; tests/tests/load.rs counts them).
const EMPTY: Answer = Answer {
    question: Question::Route {
        dest: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        steering: Steering { mark: 0, device: [0; libc::IFNAMSIZ], transparent: false },
        bound: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    },
    ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    expires_ms: 0,
};

static TABLE: [OwnedLock<Answer>; SLOTS] = [const { OwnedLock::new(EMPTY) }; SLOTS];

fn recall(question: Question) -> Option<IpAddr> {
    let slot = question.slot().try_lock()?;
    (slot.question == question && slot.expires_ms > kernel::monotonic_ms()).then_some(slot.ip)
}

fn remember(question: Question, ip: IpAddr) {
    if let Some(mut slot) = question.slot().try_lock() {
        *slot = Answer { question, ip, expires_ms: kernel::monotonic_ms() + TTL_MS };
    }
}

/// The source address the kernel will use for `fd` towards `dest`: the
/// address `fd` is bound to (`local`, its getsockname()) if any, else the
/// one routing picks (remembered, or asked with a probe). `None` means no
/// route: the caller lets the kernel connect and report it.
pub fn source_for(fd: libc::c_int, local: &SockAddr, dest: &SockAddr) -> Option<IpAddr> {
    // A socket bound to a broadcast or multicast address sends from the
    // address routing picks (inet_bind leaves inet_saddr 0 for them).
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    };
    // A bound socket sends from its address, but the kernel's connect still
    // needs a route (ENETUNREACH, EACCES for a broadcast).
    let bound = local.ip().filter(usable);
    let steering = kernel::steering(fd);
    // Not canonical: a mapped destination is asked on an IPv6 socket, and
    // its answer is an IPv6 (mapped) source.
    let question = Question::Route { dest: dest.ip()?, port: dest.port(), steering, bound };
    if let Some(source) = recall(question) {
        return Some(bound.unwrap_or(source));
    }
    let source = kernel::route_source(dest, &steering, bound)?;
    remember(question, source);
    Some(bound.unwrap_or(source))
}

/// Whether the kernel holds a cookie for (`dest`, `source`): remembered
/// when it did within the last second, else asked with `ask`.
pub fn has_cookie(dest: IpAddr, source: IpAddr, ask: impl FnOnce() -> bool) -> bool {
    yes_remembered(Question::Cookie { dest: canonical(dest), source: canonical(source) }, ask)
}

/// Whether the kernel holds a cookie for (`dest`, `source`), asked of its
/// tcp_metrics cache (netlink) unless remembered; `None` when the cache
/// cannot be read (a sandbox that denies netlink): the caller decides.
pub fn cookie_cached(dest: IpAddr, source: IpAddr) -> Option<bool> {
    let source = Some(source).filter(|s| !s.is_unspecified());
    let mut unreadable = None;
    let cached = has_cookie(dest, source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), || match cookie_store::has_cookie(dest, source) {
        Ok(cached) => cached,
        Err(e) => {
            unreadable = Some(e);
            false
        }
    });
    match unreadable {
        Some(e) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                crate::log::debug!("cannot read the kernel's Fast Open cookies ({e})");
            }
            None
        }
        None => Some(cached),
    }
}

/// A yes-or-no question whose "yes" is remembered for a second.
fn yes_remembered(question: Question, ask: impl FnOnce() -> bool) -> bool {
    if recall(question).is_some() {
        return true;
    }
    let yes = ask();
    if yes {
        remember(question, question.dest());
    }
    yes
}

/// Whether the failure memory holds no backoff for `dest`: remembered when
/// it held none within the last second, else asked with `ask`.
pub fn clear_of_backoff(dest: IpAddr, ask: impl FnOnce() -> bool) -> bool {
    yes_remembered(Question::NoBackoff { dest: canonical(dest) }, ask)
}

/// Whether the failure memory holds no backoff for the path through
/// `source`, remembered as [`clear_of_backoff`] is.
pub fn path_clear(source: IpAddr, ask: impl FnOnce() -> bool) -> bool {
    yes_remembered(Question::PathClear { source: canonical(source) }, ask)
}

/// Fast Open failed towards `dest` (or on the path through it, a source
/// address): forget every answer about it.
pub fn forget(dest: IpAddr) {
    let dest = canonical(dest);
    for slot in &TABLE {
        if let Some(mut answer) = slot.try_lock() {
            if answer.expires_ms != 0 && answer.question.dest() == dest {
                *answer = EMPTY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The table is the process's: one test at a time, so no other test's
    /// answer takes a slot from under another.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn only_positive_cookie_answers_are_remembered_and_forget_drops_them() {
        let _serial = serial();
        let (dest, source) = (ip("192.0.2.7"), ip("192.0.2.1"));
        assert!(!has_cookie(dest, source, || false));
        let mut asked = false;
        assert!(has_cookie(dest, source, || {
            asked = true;
            true
        }));
        assert!(asked, "a negative answer was remembered");
        assert!(has_cookie(dest, source, || panic!("asked again within the second")));
        // The mapped form is the same destination, as in the kernel's cache.
        assert!(has_cookie(ip("::ffff:192.0.2.7"), source, || panic!("asked again for the mapped form")));
        assert!(has_cookie(dest, ip("192.0.2.2"), || true), "another source is another question");
        forget(dest);
        assert!(!has_cookie(dest, source, || false), "forgotten, so asked again");
    }

    #[test]
    fn a_clear_path_is_remembered_until_a_failure_is_recorded() {
        let _serial = serial();
        let dest = ip("192.0.2.13");
        assert!(!clear_of_backoff(dest, || false), "in backoff: not remembered");
        assert!(clear_of_backoff(dest, || true));
        assert!(clear_of_backoff(dest, || panic!("asked again within the second")));
        forget(dest);
        assert!(!clear_of_backoff(dest, || false), "a recorded failure is seen at once");
    }

    #[test]
    fn answers_expire() {
        let _serial = serial();
        let question = Question::Cookie { dest: ip("192.0.2.9"), source: ip("192.0.2.1") };
        *question.slot().lock().unwrap() = Answer { question, ip: ip("192.0.2.9"), expires_ms: kernel::monotonic_ms() - 1 };
        assert!(recall(question).is_none());
    }

    #[test]
    fn a_busy_slot_is_a_miss() {
        let _serial = serial();
        let question = Question::Cookie { dest: ip("192.0.2.11"), source: ip("192.0.2.1") };
        remember(question, ip("192.0.2.11"));
        let held = question.slot().lock().unwrap();
        assert!(recall(question).is_none());
        drop(held);
        assert!(recall(question).is_some());
    }
}
