//! Reliability (issue 15): nothing lost, duplicated, reordered, hung or
//! crashed under load, packet loss, threads, processes, signals and bad
//! input — in auto mode (TFO_MODE=auto, loopback included) with both
//! backends, and in explicit mode (programs that set TCP_FASTOPEN_CONNECT,
//! emulated).
//!
//! Streams are checked end to end: `tests/programs/tfo_stress.c` writes
//! frames whose bytes derive from a seed, with random write calls, sizes and
//! iovecs; `tfo-sink` (tests/src/bin/tfo-sink.rs) regenerates every frame and
//! compares it byte by byte, and answers a verdict the client checks.
//!
//! `TFO_RELIABILITY_SCALE=K` multiplies the connection counts (`make
//! reliability N=K`); the default fits `make test`.

use tfo_tests::{auto_env, example, relay_count, script, values, Mode, Netns};

/// How a client runs: natively, or preloaded with this environment.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// No libtfo (the control: the checks themselves must pass).
    Native,
    /// Auto mode, TFO_BACKEND=auto (the kernel's own deferred connect).
    AutoKernel,
    /// Auto mode, TFO_BACKEND=emulate.
    AutoEmulate,
    /// Explicit mode, emulated; the program sets TCP_FASTOPEN_CONNECT.
    ExplicitEmulate,
}

impl Client {
    const ALL: [Client; 4] = [Client::Native, Client::AutoKernel, Client::AutoEmulate, Client::ExplicitEmulate];

    /// The command prefix (environment and preload) for a script.
    fn prefix(self) -> &'static str {
        match self {
            Client::Native => "env",
            Client::AutoKernel => "env LD_PRELOAD=$TFO_LIB TFO_MODE=auto TFO_BACKEND=auto TFO_EXCLUDE=none",
            Client::AutoEmulate => "env LD_PRELOAD=$TFO_LIB TFO_MODE=auto TFO_BACKEND=emulate TFO_EXCLUDE=none",
            Client::ExplicitEmulate => "env LD_PRELOAD=$TFO_LIB TFO_MODE=explicit TFO_BACKEND=emulate",
        }
    }

    /// tfo_stress's option for programs that set the option themselves.
    fn option(self) -> &'static str {
        match self {
            Client::ExplicitEmulate => "-x",
            _ => "",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Client::Native => "native",
            Client::AutoKernel => "auto-kernel",
            Client::AutoEmulate => "auto-emulate",
            Client::ExplicitEmulate => "explicit-emulate",
        }
    }
}

/// The scale of the run: `make reliability N=K` sets it.
fn scale() -> usize {
    std::env::var("TFO_RELIABILITY_SCALE").ok().and_then(|s| s.parse().ok()).filter(|&k| k >= 1).unwrap_or(1)
}

/// A script's time limit for `work` units of about a second each.
fn limit(seconds: usize) -> Option<u32> {
    Some((60 + seconds * scale()) as u32)
}

/// Shell helpers: `sink NAME ADDRESS:PORT [NETNS]` starts a tfo-sink (in
/// the server namespace when NETNS is given) writing to /tmp/sink-NAME;
/// `sink_totals NAME` stops it and prints its totals with NAME in front.
const PRELUDE: &str = r#"
set -u
R=$TFO_ROOT; STRESS=$TFO_EXAMPLES/tfo_stress
declare -A SINKS
sink() {
	local name=$1 address=$2 out=/tmp/sink-$1-$$
	if [ $# -gt 2 ]; then
		nsenter --net="$3" $R/target/release/tfo-sink "$address" > $out 2> $out.err &
	else
		$R/target/release/tfo-sink "$address" > $out 2> $out.err &
	fi
	SINKS[$name]=$!
	for _ in $(seq 200); do grep -q ready $out 2>/dev/null && return; sleep 0.02; done
	echo "sink $name did not start"; cat $out.err; exit 1
}
sink_totals() {
	local name=$1 out=/tmp/sink-$1-$$
	kill -TERM ${SINKS[$name]}; wait ${SINKS[$name]}
	sed -n "s/^tfo-sink: /sink $name /p" $out
	sed "s/^/sink-error $name /" $out.err | head -20
	rm -f $out $out.err
}
fastopen_active() { nstat -asz TcpExtTCPFastOpenActive 2>/dev/null | awk '$1 == "TcpExtTCPFastOpenActive" {print $2}'; }
"#;

/// `key=value` out of a `sink NAME connections=.. frames=..` line.
fn sink_total(out: &str, name: &str, key: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with(&format!("sink {name} connections=")))?;
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The value of `KEY N` printed by tfo_stress after the `run NAME` marker.
fn stress_value(out: &str, run: &str, key: &str) -> Option<i64> {
    let section = out.split(&format!("run {run}\n")).nth(1)?;
    let section = section.split("\nrun ").next()?;
    values(section, key).first().copied()
}

/// A sendmmsg whose first message is cut short on a deferred socket (only
/// what fits in the SYN, or the 16 KiB a non-blocking auto-mode first write
/// keeps for a retry) must not send the messages after it: the stream would
/// have a hole. The kernel's own deferred socket stops there too.
#[test]
fn sendmmsg_never_leaves_a_hole_after_a_short_first_message() {
    for backend in ["auto", "emulate"] {
        let netns = Netns { prime: true, env: auto_env(backend), ..Netns::default() };
        let trace = netns.trace(Mode::ShimAuto, "127.0.0.1", &["socket", "nonblock", "connect", "sendmmsg=100000"]);
        let line = trace.lines().find(|l| l.starts_with("sendmmsg=")).unwrap_or_else(|| panic!("{trace}"));
        let lens: Vec<u64> = line.split("lens=").nth(1).unwrap().split(',').map(|n| n.trim().parse().unwrap()).collect();
        assert!(lens[0] > 0, "{backend}: the first message went (in the SYN): {line}");
        if lens[0] < 100_000 {
            assert_eq!(lens[1..], [0, 0], "{backend}: a short first message followed by more leaves a hole: {line}");
        }
    }
    // Explicit mode: exactly the kernel's answer (one message, cut short).
    let trace = tfo_tests::assert_same_trace(&Netns::primed(), "127.0.0.1", &["socket", "nonblock", "setopt=1", "connect", "sendmmsg=100000"]);
    assert!(trace.contains(" 1 lens=") && trace.contains(",0,0"), "{trace}");
}

/// Runs tfo_signals cases in one namespace (the Fast Open echo server 50 ms
/// away each way, so a handshake takes 100 ms and a 30 ms alarm lands in
/// it). A case naming `connect` starts without a cookie; the others with one.
/// Prints `case CASE: LINE;LINE;...`.
fn signal_cases(prefix: &str, cases: &[&str]) -> String {
    let mut body = String::from("set -u\nS=$TFO_EXAMPLES/tfo_signals\n");
    for case in cases {
        let (options, call) = case.rsplit_once(' ').unwrap_or(("", case));
        let cookie = if call == "connect" { "ip tcp_metrics flush all" } else { "$TFO_EXAMPLES/tfo_client 198.18.0.2 7000 prime > /dev/null" };
        body += &format!("{cookie}\necho \"case {case}: $({prefix} $S {options} 198.18.0.2 7000 {call} 2>&1 | tr '\\n' ';')\"\n");
    }
    let netns = Netns { delay: Some(50), time_limit: Some(120), ..Netns::default() };
    let (out, ok) = script(&netns, &body);
    assert!(ok, "{out}");
    out
}

/// The case lines of `signal_cases`' output, by case.
fn case_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("case ")?.split_once(": ").map(|(c, r)| (c.to_string(), r.to_string())))
        .collect()
}

/// EINTR in blocking connect, write, read and poll, with and without
/// SA_RESTART, with and without SO_RCVTIMEO: a program that sets
/// TCP_FASTOPEN_CONNECT gets the kernel's results under libtfo's emulation
/// (explicit mode), line for line. (The kernel's own results include one
/// surprise: a first write interrupted after its data left in the SYN says
/// EINTR, or is restarted and sends the data again; libtfo gives the same.)
#[test]
fn signals_interrupt_explicit_blocking_calls_as_the_kernel_does() {
    let cases = [
        "-x connect", "-x -r connect", "-x write", "-x -r write", "-x read", "-x -r read", "-x -r -t 150 read", "-x -t 150 read",
        "-x poll", "-x -r poll",
    ];
    let native = case_lines(&signal_cases("env", &cases));
    let shim = case_lines(&signal_cases("env LD_PRELOAD=$TFO_LIB TFO_MODE=explicit TFO_BACKEND=emulate", &cases));
    assert_eq!(native.len(), cases.len(), "{native:?}");
    for ((case, n), (_, s)) in native.iter().zip(&shim) {
        assert!(n.contains("+SIGALRM"), "{case}: the signal must land in the call: {n}");
        assert_eq!(n, s, "{case}: kernel (left) and libtfo (right) differ");
    }
}

/// The same for programs that never asked (auto mode, both backends): a
/// signal interrupts their blocking calls as it would on a plain connected
/// socket, and a signal landing in a first write whose data left in the SYN
/// never makes them send it twice (the kernel's Fast Open client would say
/// EINTR, or restart and send it again).
#[test]
fn signals_interrupt_auto_mode_blocking_calls_as_on_a_plain_socket() {
    let compared = ["connect", "-r connect", "read", "-r read", "-r -t 150 read", "poll", "-r poll"];
    let native = case_lines(&signal_cases("env", &compared));
    for backend in ["auto", "emulate"] {
        let prefix = format!("env LD_PRELOAD=$TFO_LIB TFO_MODE=auto TFO_BACKEND={backend} TFO_EXCLUDE=none");
        let auto = case_lines(&signal_cases(&prefix, &compared));
        assert_eq!(native.len(), compared.len(), "{native:?}");
        for ((case, n), (_, a)) in native.iter().zip(&auto) {
            assert_eq!(n, a, "{backend} {case}: plain (left) and auto mode (right) differ");
        }
        for (case, line) in case_lines(&signal_cases(&prefix, &["write", "-r write"])) {
            // What the write says it took is what reached the server, once.
            let written: i64 = line.split("write ").nth(1).and_then(|w| w.split([' ', ';']).next()?.parse().ok()).unwrap();
            let echoed: i64 = line.split("echo ").nth(1).and_then(|w| w.split(';').next()?.parse().ok()).unwrap();
            assert_eq!(written.max(0), echoed, "{backend} {case}: {line}");
            assert_eq!(written, 5, "{backend} {case}: the bytes went in the SYN: {line}");
        }
    }
}
