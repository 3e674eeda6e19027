//! What reaches the kernel and the wire: under libtfo the option never
//! reaches the kernel, the first write leaves as sendto(MSG_FASTOPEN) and the
//! server acknowledges the data in the SYN (TCP_INFO, TcpExt counters).

use tfo_tests::{counter, example, Mode, Netns};

fn strace_client(mode: Mode, address: &str) -> (String, String) {
    let client = example("tfo_client");
    let out = Netns::primed().run(
        mode,
        &["strace", "-qq", "-e", "trace=setsockopt,sendto,sendmsg,write", client.to_str().unwrap(), address, "7000", "hello"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn option_never_reaches_the_kernel_and_the_first_write_is_syn_data() {
    for address in ["127.0.0.1", "::1"] {
        // Control: natively strace does see the option, so the check below can fail.
        let (_, native) = strace_client(Mode::Native, address);
        assert!(native.contains("TCP_FASTOPEN_CONNECT"), "{native}");

        let (stdout, syscalls) = strace_client(Mode::Shim, address);
        assert!(!syscalls.contains("TCP_FASTOPEN_CONNECT"), "option reached the kernel:\n{syscalls}");
        assert!(
            syscalls.lines().any(|l| l.starts_with("sendto(") && l.contains("\"hello\", 5, MSG_FASTOPEN") && l.ends_with("= 5")),
            "first write was not sendto(MSG_FASTOPEN):\n{syscalls}"
        );
        assert!(stdout.contains("reply: hello") && stdout.contains("acknowledged: yes"), "{stdout}");
    }
}

/// Three runs of the seed client: the first asks for a cookie, the repeats
/// carry their request in the SYN. The namespace's counters must say so,
/// exactly as they do for the kernel's own option.
#[test]
fn repeats_carry_data_in_the_syn() {
    for address in ["127.0.0.1", "::1"] {
        let client = example("tfo_client");
        let script = format!("for i in 1 2 3; do {} {address} 7000 hi; done", client.display());
        let netns = Netns { counters: true, ..Netns::default() };
        let run = |mode| {
            let out = netns.run(mode, &["bash", "-c", &script]);
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let (native, shim) = (run(Mode::Native), run(Mode::Shim));
        let acked: Vec<_> = shim.lines().filter(|l| l.starts_with("data in SYN")).collect();
        assert_eq!(acked, ["data in SYN acknowledged: no", "data in SYN acknowledged: yes", "data in SYN acknowledged: yes"], "{shim}");
        assert_eq!(counter(&shim, "TcpExtTCPFastOpenCookieReqd"), Some(1), "{shim}");
        assert_eq!(counter(&shim, "TcpExtTCPFastOpenActive"), Some(2), "{shim}");
        assert_eq!(counter(&shim, "TcpExtTCPFastOpenPassive"), Some(2), "{shim}");
        assert_eq!(native, shim);
    }
}

/// Over a link with a 100 ms round trip (tests/in-netns --delay 50, a relay
/// between two namespaces), the seed client under libtfo takes two round
/// trips the first time and one on repeats: the round trip Fast Open saves.
#[test]
fn repeats_save_a_round_trip() {
    let client = example("tfo_client");
    let script = format!(
        "for i in 1 2 3; do s=$(date +%s%N); {} 198.18.0.2 7000 hi > /dev/null; echo elapsed $((($(date +%s%N) - s) / 1000000)); done",
        client.display()
    );
    let netns = Netns { delay: Some(50), ..Netns::default() };
    let out = netns.run(Mode::Shim, &["bash", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let ms: Vec<u64> = text.lines().filter_map(|l| l.strip_prefix("elapsed ")?.parse().ok()).collect();
    assert_eq!(ms.len(), 3, "{text}");
    assert!(ms[0] >= 200, "first connection should take two round trips: {ms:?}");
    assert!(ms[1] >= 100 && ms[1] < 180 && ms[2] < 180, "repeats should take one round trip: {ms:?}");
}
