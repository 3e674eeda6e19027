//! fd lifetime beyond what the kernel comparison covers: exec replaces
//! libtfo's memory, so a deferred socket the new image inherits is connected
//! first (its SYN leaves without data) and the new image gets an ordinary,
//! working socket. This is a deliberate difference from the kernel, whose
//! socket stays deferred across exec; it is checked here, not differentially.

use tfo_tests::{Mode, Netns};

#[test]
fn exec_and_spawn_inherit_a_working_socket() {
    for (address, how) in [("127.0.0.1", "exec"), ("::1", "exec"), ("127.0.0.1", "spawn")] {
        let netns = Netns { prime: true, capture: true, ..Netns::default() };
        let child = format!("{how}=write=5,read,getpeername");
        let trace = netns.trace(Mode::Shim, address, &["socket", "setopt=1", "connect", &child, "getpeername"]);
        let lines: Vec<_> = trace.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert!(lines.contains(&"write=5 5".to_string()), "{trace}");
        assert!(lines.contains(&"read 5".to_string()), "{trace}");
        // One SYN, sent before exec, without data; no RST.
        let syns: Vec<_> = lines.iter().filter(|l| l.starts_with("wire c>s [S]")).collect();
        assert_eq!(syns, ["wire c>s [S] tfo-cookie len=0"], "{trace}");
        assert!(!trace.contains("[R"), "{trace}");
    }
}

/// A deferred socket shared with a child (fork): whoever writes first sends
/// the one SYN; the other's first write is an ordinary write, and errno is
/// left alone.
#[test]
fn fork_shares_one_connection() {
    let netns = Netns { prime: true, capture: true, ..Netns::default() };
    let steps = ["socket", "setopt=1", "connect", "fork=write=5", "write=5", "sleep=200", "read"];
    let shim = netns.trace(Mode::Shim, "127.0.0.1", &steps);
    assert_eq!(shim, netns.trace(Mode::Native, "127.0.0.1", &steps));
    assert_eq!(shim.matches("wire c>s [S]").count(), 1, "{shim}");
}

/// The variadic exec functions (execl, execlp, execle) reach libtfo's
/// completion too: tfo_trace's exec= step uses execl.
#[test]
fn execl_is_intercepted() {
    let netns = Netns { prime: true, capture: true, ..Netns::default() };
    let trace = netns.trace(Mode::Shim, "127.0.0.1", &["socket", "setopt=1", "connect", "exec=getpeername"]);
    assert!(trace.contains("port=server"), "the exec'd image saw an unconnected socket:\n{trace}");
}
