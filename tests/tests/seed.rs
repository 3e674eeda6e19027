//! The seed's API, differential: the same call sequence runs with the
//! kernel's TCP_FASTOPEN_CONNECT and under libtfo, each in a fresh network
//! namespace, and the traces must be identical (spec §3–§9).

use tfo_tests::{assert_same_trace, Netns};

/// The seed's client: setsockopt, connect, write, read.
const BLOCKING: &[&str] = &[
    "socket", "setopt=1", "getopt", "connect", "getpeername", "poll=0", "write=100", "read", "tcpinfo",
    "getpeername", "close",
];

/// Non-blocking: connect, poll masks before and after the first write, EAGAIN reads.
const NONBLOCKING: &[&str] = &[
    "socket", "nonblock", "setopt=1", "connect", "poll=0", "recv", "write=100", "pollout=2000", "waitin=2000",
    "read", "tcpinfo", "getpeername", "close",
];

fn seed(address: &str, cookie: bool, steps: &[&str]) {
    let netns = if cookie { Netns::primed() } else { Netns::default() };
    let trace = assert_same_trace(&netns, address, steps);
    // Not a vacuous comparison: the data went in the SYN exactly when a cookie was cached.
    assert!(trace.contains(&format!("syn_data={}", cookie as u8)), "{trace}");
}

#[test]
fn ipv4_blocking_with_cookie() {
    seed("127.0.0.1", true, BLOCKING);
}

#[test]
fn ipv4_blocking_without_cookie() {
    seed("127.0.0.1", false, BLOCKING);
}

#[test]
fn ipv4_nonblocking_with_cookie() {
    seed("127.0.0.1", true, NONBLOCKING);
}

#[test]
fn ipv4_nonblocking_without_cookie() {
    seed("127.0.0.1", false, NONBLOCKING);
}

#[test]
fn ipv6_blocking_with_cookie() {
    seed("::1", true, BLOCKING);
}

#[test]
fn ipv6_blocking_without_cookie() {
    seed("::1", false, BLOCKING);
}

#[test]
fn ipv6_nonblocking_with_cookie() {
    seed("::1", true, NONBLOCKING);
}

#[test]
fn ipv6_nonblocking_without_cookie() {
    seed("::1", false, NONBLOCKING);
}

/// A non-blocking write larger than the SYN can carry returns only what went
/// in the SYN (spec §6); a blocking one returns everything.
#[test]
fn large_first_write() {
    let netns = Netns::primed();
    assert_same_trace(&netns, "127.0.0.1", &["socket", "nonblock", "setopt=1", "connect", "write=100000", "pollout=2000", "close"]);
    assert_same_trace(&netns, "127.0.0.1", &["socket", "setopt=1", "connect", "write=100000", "close"]);
}

/// Each write-family call can be the first write.
#[test]
fn every_write_call_sends_the_syn() {
    for first in ["send=100", "sendto=100", "sendmsg=100", "writev=100", "send_dontwait=100"] {
        let trace = assert_same_trace(&Netns::primed(), "127.0.0.1", &["socket", "setopt=1", "connect", first, "waitin=2000", "recv", "tcpinfo"]);
        assert!(trace.contains("syn_data=1"), "{first}: {trace}");
    }
}

/// Each read-family call on a deferred non-blocking socket: EAGAIN.
#[test]
fn reads_before_the_first_write() {
    assert_same_trace(
        &Netns::primed(),
        "::1",
        &["socket", "nonblock", "setopt=1", "connect", "read", "recv", "readv", "recv_peek", "block", "rcvtimeo=300", "recv", "read"],
    );
}

/// setsockopt's checks, in the kernel's order (spec §3).
#[test]
fn setsockopt_errors() {
    let netns = Netns::default();
    assert_same_trace(
        &netns,
        "127.0.0.1",
        &["socket", "setopt_len=3", "setopt_len=0", "setopt=2", "setopt=-1", "getopt", "setopt=0", "getopt", "setopt=1", "setopt_len=8", "getopt"],
    );
    // Client bit off: EOPNOTSUPP even for 0, after the length and value checks.
    assert_same_trace(
        &Netns { sysctl: Some(2), ..Netns::default() },
        "127.0.0.1",
        &["socket", "setopt=1", "setopt=0", "setopt=5", "setopt_len=2", "getopt"],
    );
    // Not CLOSE: deferred, listening, connected.
    assert_same_trace(&Netns::primed(), "127.0.0.1", &["socket", "setopt=1", "connect", "setopt=0", "setopt=1", "getopt"]);
    assert_same_trace(&netns, "127.0.0.1", &["socket", "bind", "listen", "setopt=1", "getopt"]);
    assert_same_trace(&netns, "::1", &["socket", "connect", "setopt=1", "getopt"]);
}

/// The option is recorded but clearing it, or never setting it, leaves a plain socket.
#[test]
fn option_cleared_before_connect() {
    assert_same_trace(&Netns::primed(), "127.0.0.1", &["socket", "setopt=1", "setopt=0", "connect", "poll=0", "write=10", "waitin=2000", "read", "tcpinfo"]);
}
