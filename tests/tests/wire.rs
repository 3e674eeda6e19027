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
