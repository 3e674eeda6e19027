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

use tfo_tests::{auto_env, relay_count, script, values, Mode, Netns};

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

/// Shell helpers: `sink NAME ADDRESS:PORT [--netns NETNS] [OPTION...]`
/// starts a tfo-sink (in the server namespace with --netns) writing to
/// $T/sink-NAME ($T: this script's own scratch directory: every namespace
/// has its own PID numbering, so `$$` names would collide across tests);
/// `sink_totals NAME` stops it and prints its totals with NAME in front.
const PRELUDE: &str = r#"
set -u
R=$TFO_ROOT; STRESS=$TFO_EXAMPLES/tfo_stress; T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
declare -A SINKS
sink() {
	local name=$1 address=$2 out=$T/sink-$1 netns=()
	shift 2
	if [ "${1:-}" = --netns ]; then netns=(nsenter --net="$2"); shift 2; fi
	"${netns[@]}" $R/target/release/tfo-sink "$address" "$@" > $out 2> $out.err &
	SINKS[$name]=$!
	for _ in $(seq 200); do grep -q ready $out 2>/dev/null && return; sleep 0.02; done
	echo "sink $name did not start"; cat $out.err; exit 1
}
sink_totals() {
	local name=$1 out=$T/sink-$1
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
    let (native, shim) = std::thread::scope(|s| {
        let native = s.spawn(|| case_lines(&signal_cases("env", &cases)));
        let shim = case_lines(&signal_cases("env LD_PRELOAD=$TFO_LIB TFO_MODE=explicit TFO_BACKEND=emulate", &cases));
        (native.join().unwrap(), shim)
    });
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
    let prefix = |backend| format!("env LD_PRELOAD=$TFO_LIB TFO_MODE=auto TFO_BACKEND={backend} TFO_EXCLUDE=none");
    let runs: Vec<_> = std::thread::scope(|s| {
        let native = s.spawn(|| case_lines(&signal_cases("env", &compared)));
        let runs: Vec<_> = ["auto", "emulate"]
            .map(|backend| {
                let prefix = prefix(backend);
                s.spawn(move || {
                    let cases = [&compared[..], &["write", "-r write"]].concat();
                    (backend, case_lines(&signal_cases(&prefix, &cases)))
                })
            })
            .into_iter()
            .collect();
        let native = native.join().unwrap();
        runs.into_iter().map(|r| (native.clone(), r.join().unwrap())).collect()
    });
    for (native, (backend, lines)) in runs {
        let (auto, writes) = lines.split_at(compared.len().min(lines.len()));
        assert_eq!(native.len(), compared.len(), "{native:?}");
        for ((case, n), (_, a)) in native.iter().zip(auto) {
            assert_eq!(n, a, "{backend} {case}: plain (left) and auto mode (right) differ");
        }
        assert_eq!(writes.len(), 2, "{lines:?}");
        for (case, line) in writes {
            // What the write says it took is what reached the server, once.
            let written: i64 = line.split("write ").nth(1).and_then(|w| w.split([' ', ';']).next()?.parse().ok()).unwrap();
            let echoed: i64 = line.split("echo ").nth(1).and_then(|w| w.split(';').next()?.parse().ok()).unwrap();
            assert_eq!(written.max(0), echoed, "{backend} {case}: {line}");
            assert_eq!(written, 5, "{backend} {case}: the bytes went in the SYN: {line}");
        }
    }
}

/// One tfo_stress run in a script: `run NAME` then its KEY VALUE lines.
fn stress_line(client: Client, run: &str, options: &str, address: &str) -> String {
    format!(
        "echo \"run {run}\"; {} timeout {} $STRESS {} {options} {address} 9000; echo \"status {run} $?\"\n",
        client.prefix(),
        50 + 60 * scale(),
        client.option()
    )
}

/// Checks one run: the client's verdicts all ok, nothing cut short.
fn assert_run(out: &str, run: &str, connections: usize) -> i64 {
    let get = |key| stress_value(out, run, key).unwrap_or_else(|| panic!("{run}: no {key}\n{out}"));
    assert_eq!(values(out, &format!("status {run}")), [0], "{run}: the client failed\n{out}");
    assert_eq!((get("connections"), get("ok"), get("bad"), get("gaps")), (connections as i64, connections as i64, 0, 0), "{run}\n{out}");
    for call in ["write", "writev", "send", "sendto", "sendmsg", "sendmmsg", "sendfile", "splice"] {
        let section = out.split(&format!("run {run}\n")).nth(1).unwrap();
        assert!(values(section, &format!("calls {call}")).first().is_some_and(|&n| n > 0), "{run}: no {call}\n{out}");
    }
    get("bytes")
}

/// Checks a sink's totals: every stream arrived whole, none twice.
/// Connections closed without a byte are libtfo's cookie requests (one per
/// destination without a cookie at most, fetch.rs), not streams.
fn assert_sink(out: &str, name: &str, connections: usize, bytes: i64) {
    let total = |key| sink_total(out, name, key).unwrap_or_else(|| panic!("sink {name}: no {key}\n{out}"));
    let empty = total("empty");
    assert_eq!(
        (total("connections") - empty, total("frames"), total("bad"), total("duplicates"), total("bytes") as i64),
        (connections as u64, connections as u64, 0, 0, bytes),
        "sink {name}\n{out}"
    );
    assert!(empty <= 16, "sink {name}: {empty} cookie requests\n{out}");
}

/// Thousands of connections on loopback, natively (the control) and under
/// libtfo in auto mode with both backends and in explicit mode: random write
/// calls (write, writev, send, sendto, sendmsg, sendmmsg, sendfile, splice),
/// sizes from 0 to 256 KiB, iovec counts up to 100 (more than libtfo keeps
/// on its stack), blocking and non-blocking, IPv4 and IPv6. Every byte is
/// checked by the sink; every connection of a Fast Open run carries data in
/// its SYN but the first.
#[test]
fn streams_arrive_intact_on_loopback() {
    let n = 2000 * scale();
    // Each client in a namespace of its own: the emulation's ports linger in
    // TIME_WAIT (see emulated_deferrals_do_not_exhaust_ports).
    let runs: Vec<(Client, &str, &str)> = Client::ALL
        .iter()
        .map(|&c| (c, c.name(), "127.0.0.1"))
        .chain([(Client::AutoKernel, "v6", "::1"), (Client::ExplicitEmulate, "v6-explicit", "::1")])
        .collect();
    let (mut connections, mut bytes) = (0, 0);
    for (i, &(client, name, address)) in runs.iter().enumerate() {
        let count = if address == "::1" { n / 2 } else { n };
        let listen = if address == "::1" { "[::1]:9000" } else { "127.0.0.1:9000" };
        let mut body = format!("{PRELUDE}\nsink s {listen}\nbefore=$(fastopen_active)\n");
        body += &stress_line(client, name, &format!("-n {count} -t 4 -s {} -b 0", 11 + i), address);
        body += &format!("echo \"fastopen {name} $(($(fastopen_active) - before))\"\nsink_totals s\n");
        let (out, ok) = script(&Netns { time_limit: limit(10), ..Netns::default() }, &body);
        assert!(ok, "{out}");
        let checked = assert_run(&out, name, count);
        assert_sink(&out, "s", count, checked);
        let fastopen = values(&out, &format!("fastopen {name}"))[0];
        match client {
            Client::Native => assert_eq!(fastopen, 0, "{out}"),
            // The first connection of each thread may ask for the cookie (a
            // SYN without data), and an empty first write sends none. (The
            // counter counts SYNs whose data the server took: under load a
            // few in a thousand may have it sent again after the handshake.)
            _ => {
                let empty = stress_value(&out, name, "empty_first").unwrap();
                let expected = count as i64 - 4 - empty;
                assert!(fastopen >= expected - expected / 200, "{name}: {fastopen} SYNs with data of {count}\n{out}");
            }
        }
        connections += count;
        bytes += checked;
    }
    eprintln!("loopback: {connections} connections, {bytes} bytes checked");
}

/// 8 threads of 1000 connections each in one process, in auto mode with
/// both backends and in explicit mode: every stream intact, none twice.
#[test]
fn eight_threads_of_a_thousand_connections_each() {
    // Not scaled: 80 000 emulated connections a minute exhaust the ports
    // (see emulated_deferrals_do_not_exhaust_ports).
    let n = 8000;
    let clients = [Client::AutoKernel, Client::AutoEmulate, Client::ExplicitEmulate];
    let mut body = format!("{PRELUDE}\nsink v4 127.0.0.1:9000\n");
    for (i, client) in clients.iter().enumerate() {
        body += &stress_line(*client, client.name(), &format!("-n {n} -t 8 -m 65536 -s {} -b {}", 31 + i, i * n), "127.0.0.1");
    }
    body += "sink_totals v4\n";
    let (out, ok) = script(&Netns { time_limit: limit(40), ..Netns::default() }, &body);
    assert!(ok, "{out}");
    let bytes: i64 = clients.iter().map(|c| assert_run(&out, c.name(), n)).sum();
    assert_sink(&out, "v4", 3 * n, bytes);
    eprintln!("threads: {} connections, {bytes} bytes checked", 3 * n);
}

/// Over a path that loses 5 % of its packets each way (the delay relay,
/// 2 ms each way): SYNs with data are lost and retransmitted, SYN-ACKs and
/// data segments too, and every stream still arrives whole, once. Auto
/// mode's failure memory would stop Fast Open after the first lost SYN
/// (that is its job); it is cleared between batches of 25 connections so
/// that SYNs with data keep being lost.
#[test]
fn streams_arrive_intact_over_a_lossy_path() {
    let n = 200 * scale();
    let mut body = format!("{PRELUDE}\nsink lossy 198.18.0.2:9000 --netns $TFO_PEER_NETNS\nclients=\n");
    // The four clients run side by side (the time goes in retransmission
    // timeouts), each with a failure memory of its own.
    for (i, client) in Client::ALL.iter().enumerate() {
        let name = client.name();
        body += &format!("(\nexport TFO_STATE_DIR=$(mktemp -d) TFO_STATS=$T/stats-{name}\nmkdir -p $TFO_STATS\nfor batch in $(seq 0 {}); do\n", n / 25 - 1);
        body += &format!(
            "{} $STRESS {} -n 25 -t 5 -m 65536 -s $(({} + batch)) -b $(({} + batch * 25)) 198.18.0.2 9000 > $T/batch-{name} || echo \"failed {name} batch $batch\"\n",
            client.prefix(),
            client.option(),
            1000 * i,
            i * n
        );
        body += &format!("awk '$1 == \"ok\" || $1 == \"bytes\" {{print \"{name}\", $1, $2}}' $T/batch-{name}\nrm -f $TFO_STATE_DIR/*\ndone\n");
        body += &format!("[ -d $TFO_STATS ] && $R/target/release/tfo stats $TFO_STATS | awk '$1 ~ /^syn_data_/ {{print \"{name}\", $1, $2}}'\n) > $T/lossy-{name} &\nclients+=\" $!\"\n");
    }
    body += "wait $clients\ncat $T/lossy-*\nsink_totals lossy\n";
    let netns = Netns { delay: Some(2), loss: Some(5.0), loss_seed: Some(7), time_limit: limit(60), ..Netns::default() };
    let out = netns.run(Mode::Native, &["bash", "-c", &body]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !stdout.contains("failed "), "{stdout}\n{stderr}");
    let mut bytes = 0;
    for client in Client::ALL {
        let name = client.name();
        let ok: i64 = values(&stdout, &format!("{name} ok")).iter().sum();
        assert_eq!(ok, n as i64, "{name}\n{stdout}\n{stderr}");
        bytes += values(&stdout, &format!("{name} bytes")).iter().sum::<i64>();
        // libtfo's statistics (TFO_STATS): the SYNs that carried data, and
        // (auto mode) those whose data the path dropped.
        let count = |key| values(&stdout, &format!("{name} {key}")).iter().sum::<i64>();
        let (sent, dropped) = (count("syn_data_sent"), count("syn_data_dropped"));
        eprintln!("lossy: {name}: {sent} SYNs with data, {dropped} of them dropped on the way");
        if !matches!(client, Client::Native) {
            assert!(sent > 0, "{name}: Fast Open was used\n{stdout}\n{stderr}");
        }
    }
    assert_sink(&stdout, "lossy", 4 * n, bytes);
    let count = |name| relay_count(&stderr, name).unwrap_or_else(|| panic!("no relay count {name}\n{stderr}"));
    let (lost_out, lost_back, syn_data_lost) = (count("lost_a_to_b"), count("lost_b_to_a"), count("syn_data_lost"));
    eprintln!("lossy: {} connections, {bytes} bytes checked; {lost_out} + {lost_back} packets lost, {syn_data_lost} of them SYNs with data", 4 * n);
    assert!(lost_out > 0 && lost_back > 0 && syn_data_lost > 0, "{stderr}");
}

/// A SIGALRM every 100 µs (and every 20 µs) whose handler does I/O on
/// other fds (write, read, poll, dup, close, send, recv on a pipe and a
/// socket pair, all through libtfo's hooks) fires during deferred connects
/// and first writes, with and without SA_RESTART: the handler runs every
/// time, the program's calls see EINTR or partial writes as on plain
/// sockets, and every stream still arrives whole. On loopback and over the
/// delay relay (where first writes wait for the handshake).
#[test]
fn a_signal_handler_doing_io_fires_during_deferred_writes() {
    let n = 300 * scale();
    let clients = [Client::Native, Client::AutoKernel, Client::AutoEmulate];
    for (address, delay) in [("127.0.0.1", None), ("198.18.0.2", Some(5))] {
        let mut body = PRELUDE.to_string();
        body += &match delay {
            None => "sink s 127.0.0.1:9000\n".to_string(),
            Some(_) => "sink s 198.18.0.2:9000 --netns $TFO_PEER_NETNS\n".to_string(),
        };
        let mut runs = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            for (j, timer) in ["-i 100", "-i 100 -r", "-i 20"].iter().enumerate() {
                let run = format!("{}-{}", client.name(), timer.replace(' ', ""));
                let threads = if delay.is_some() { 8 } else { 4 };
                let options = format!("-n {n} -t {threads} -m 65536 {timer} -s {} -b {}", 50 + i * 3 + j, (i * 3 + j) * n);
                body += &stress_line(*client, &run, &options, address);
                runs.push(run);
            }
        }
        body += "sink_totals s\n";
        let (out, ok) = script(&Netns { delay, time_limit: limit(60), ..Netns::default() }, &body);
        assert!(ok, "{out}");
        let mut bytes = 0;
        let mut signals = 0;
        for run in &runs {
            bytes += assert_run(&out, run, n);
            let caught = stress_value(&out, run, "signals").unwrap();
            // Three bits of I/O per signal, all of which succeed.
            assert!(caught > 0 && stress_value(&out, run, "handler_io") == Some(3 * caught), "{run}\n{out}");
            signals += caught;
        }
        assert_sink(&out, "s", runs.len() * n, bytes);
        eprintln!("signals ({address}): {} connections, {bytes} bytes checked, {signals} signals handled", runs.len() * n);
    }
}

/// Deferred sockets across threads and processes (tests/programs/tfo_procs.c,
/// every frame checked by the sink): fork with both sides writing at once,
/// fork with the child writing, a thread waiting in a second connect()
/// while the process forks and then writes, vfork then exec (the exec'd image writes)
/// or exit, exec and posix_spawn with three deferred sockets (one
/// close-on-exec), dup2 of a deferred socket over another, dup2 of a pipe
/// over a deferred socket, dup then close of the original, and a deferred
/// socket closed by one thread while another races a write on its number
/// and a third reuses the number for a new connection (to another server,
/// which must never see the old one's destination used for it).
#[test]
fn deferred_sockets_across_threads_and_processes() {
    let k = 40 * scale();
    let cases = "fork-both-write fork-child-writes fork-while-waiting vfork-exec vfork-exit exec-several spawn-several dup2-over dup2-pipe-over dup-close close-reuse";
    // The second server takes only the racing writes' ids (base + 1000000 on).
    let mut body = format!("{PRELUDE}\nsink main 127.0.0.1:9000\nsink other 127.0.0.1:9001 --ids 1000000-1999999\n");
    for (i, client) in Client::ALL.iter().enumerate() {
        let name = client.name();
        body += &format!(
            "before=$(fastopen_active)\n{} timeout {} $TFO_EXAMPLES/tfo_procs {} -b {} -k {k} 127.0.0.1 9000 {cases} | sed 's/^/{name} /'\necho \"status {name} ${{PIPESTATUS[0]}}\"\necho \"fastopen {name} $(($(fastopen_active) - before))\"\n",
            client.prefix(),
            50 + 30 * scale(),
            client.option(),
            i * 100_000
        );
    }
    body += "sink_totals main\nsink_totals other\n";
    let (out, ok) = script(&Netns { time_limit: limit(60), ..Netns::default() }, &body);
    assert!(ok, "{out}");
    for client in Client::ALL {
        let name = client.name();
        assert_eq!(values(&out, &format!("status {name}")), [0], "{name}\n{out}");
        for case in cases.split(' ') {
            assert_eq!(values(&out, &format!("{name} case {case} ok")), [k as i64], "{name} {case}\n{out}");
        }
        let fastopen = values(&out, &format!("fastopen {name}"))[0];
        match client {
            Client::Native => assert_eq!(fastopen, 0, "{out}"),
            // Nine of the eleven cases end with a SYN carrying data (exec ones send it
            // without, a pipe over the socket none).
            _ => assert!(fastopen >= (7 * k) as i64, "{name}: the sockets were deferred ({fastopen} SYNs with data)\n{out}"),
        }
    }
    for sink in ["main", "other"] {
        assert_eq!((sink_total(&out, sink, "bad"), sink_total(&out, sink, "duplicates")), (Some(0), Some(0)), "{sink}\n{out}");
    }
    eprintln!(
        "processes: {} rounds, {} frames checked",
        4 * 11 * k,
        sink_total(&out, "main", "frames").unwrap() + sink_total(&out, "other", "frames").unwrap()
    );
}

/// Bad input (tests/programs/tfo_badinput.c, each call in a child process):
/// every hooked call on invalid, closed and negative fds, fd 1100000 (past
/// fs.nr_open), the highest fd the table holds (1048575, after raising
/// RLIMIT_NOFILE), pipes, files, UDP, Unix and raw sockets, fresh and
/// deferred TCP sockets; then NULL and invalid pointers, negative and huge
/// lengths and counts on deferred sockets. The return value and errno of
/// each must be the kernel's: explicit mode against the kernel's own
/// TCP_FASTOPEN_CONNECT, auto mode (both backends) against a plain socket.
/// Never a crash or a hang inside the library.
#[test]
fn bad_input_gets_the_kernels_answers() {
    // A non-blocking connect() says EINPROGRESS on a plain socket and 0 in
    // auto mode (deferred): a second connect() then differs by design.
    const AUTO_BY_DESIGN: &[&str] = &["connect on deferred-nb:", "connect-wrong-family on deferred-nb:"];
    // Each run in a namespace of its own (a raw socket sees every TCP
    // segment of its namespace), side by side.
    let runs = [
        ("native-x", "-x"),
        ("explicit", "env LD_PRELOAD=$TFO_LIB TFO_MODE=explicit TFO_BACKEND=emulate -x"),
        ("native", ""),
        ("auto-kernel", "env LD_PRELOAD=$TFO_LIB TFO_MODE=auto TFO_BACKEND=auto TFO_EXCLUDE=none"),
        ("auto-emulate", "env LD_PRELOAD=$TFO_LIB TFO_MODE=auto TFO_BACKEND=emulate TFO_EXCLUDE=none"),
    ];
    let outputs: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(_, how)| {
                let (prefix, option) = how.strip_suffix("-x").map_or((*how, ""), |p| (p, "-x"));
                let body = format!("{prefix} $TFO_EXAMPLES/tfo_badinput {option} 127.0.0.1 7000");
                s.spawn(move || script(&Netns { prime: true, time_limit: Some(180), ..Netns::default() }, &body))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let out: String = runs.iter().zip(&outputs).map(|((name, _), (text, _))| text.lines().map(|l| format!("{name} | {l}\n")).collect::<String>()).collect();
    assert!(outputs.iter().all(|(_, ok)| *ok), "{out}");
    let run = |name: &str| -> Vec<String> {
        out.lines().filter_map(|l| l.strip_prefix(&format!("{name} | "))).map(String::from).collect()
    };
    let (native_x, native) = (run("native-x"), run("native"));
    assert!(native.len() > 400, "{out}");
    // The control: natively nothing crashes (the kernel's own deferred
    // socket does hang in a second blocking connect(): so must libtfo), and
    // the kinds of fd were what they should be (a deferred socket is
    // writable, the top fd exists).
    assert!(!native.iter().chain(&native_x).any(|l| l.contains("CRASH")), "{out}");
    assert!(native_x.contains(&"write on top: 5".to_string()) && native_x.contains(&"write on beyond: -1 EBADF".to_string()), "{out}");
    let mut differences = Vec::new();
    for (name, reference, by_design) in [
        ("explicit", &native_x, &[][..]),
        ("auto-kernel", &native, AUTO_BY_DESIGN),
        ("auto-emulate", &native, AUTO_BY_DESIGN),
    ] {
        let lines = run(name);
        assert_eq!(lines.len(), reference.len(), "{name}\n{out}");
        for (want, got) in reference.iter().zip(&lines) {
            if want != got && !by_design.iter().any(|d| want.starts_with(d)) {
                differences.push(format!("{name}: kernel `{want}`, libtfo `{got}`"));
            }
        }
    }
    assert!(differences.is_empty(), "{} bad inputs answered differently:\n{}", differences.len(), differences.join("\n"));
    eprintln!("bad input: {} calls, each natively and under libtfo (explicit, auto with both backends)", native.len() + native_x.len());
}

/// Malformed TFO_* values and a sandbox that denies netlink sockets
/// (tests/programs/tfo_nonetlink.c: a seccomp filter, socket(AF_NETLINK)
/// fails with EPERM): the program's results do not change, and stderr holds
/// exactly one warning per problem. Without netlink the emulation cannot see
/// cookies and connects plainly; the kernel's own deferred connect needs no
/// netlink and keeps Fast Open.
#[test]
fn malformed_settings_and_denied_netlink_cost_one_warning() {
    let malformed = [
        ("TFO_MODE", "turbo"),
        ("TFO_BACKEND", "fast"),
        ("TFO_PORTS", "80-"),
        ("TFO_INCLUDE", "10.0.0.0/99"),
        ("TFO_EXCLUDE", "everything"),
        ("TFO_SERVER", "maybe"),
        ("TFO_SERVER_QLEN", "0"),
        ("TFO_SERVER_PORTS", "http"),
        ("TFO_BACKOFF", "-5"),
        ("TFO_LOG", "loud"),
    ];
    let mut body = format!("{PRELUDE}\nsink s 127.0.0.1:9000\n");
    // run NAME ENV...: 40 connections; the verdicts and stderr, by name
    // ($X: tfo_stress -x, the program sets the option itself).
    body += r#"X=
run() {
	local name=$1; shift
	local before=$(fastopen_active)
	env LD_PRELOAD=$TFO_LIB "$@" $STRESS $X -n 40 -t 2 -s 5 -b $((RANDOM * 100)) 127.0.0.1 9000 2> $T/err | awk -v n="$name" '$1 == "ok" || $1 == "bad" {print n, $1, $2}'
	echo "$name fastopen $(($(fastopen_active) - before))"
	echo "$name warnings $(grep -c 'libtfo\[[0-9]*\]: warning: ' $T/err)"
	echo "$name stderr $(grep -c . $T/err)"
	sed "s/^/$name says /" $T/err
}
"#;
    for (var, value) in malformed {
        body += &format!("run {var} TFO_EXCLUDE=none {var}={value}\n");
    }
    body += "run two TFO_EXCLUDE=none TFO_PORTS=x TFO_BACKOFF=y\n";
    body += "run nonetlink-auto-emulate $TFO_EXAMPLES/tfo_nonetlink env TFO_MODE=auto TFO_BACKEND=emulate TFO_EXCLUDE=none\n";
    body += "X=-x run nonetlink-explicit-emulate $TFO_EXAMPLES/tfo_nonetlink env TFO_MODE=explicit TFO_BACKEND=emulate\n";
    body += "run nonetlink-auto-kernel $TFO_EXAMPLES/tfo_nonetlink env TFO_MODE=auto TFO_EXCLUDE=none\n";
    body += "sink_totals s\n";
    let (out, ok) = script(&Netns { prime: true, time_limit: limit(30), ..Netns::default() }, &body);
    assert!(ok, "{out}");
    let get = |name: &str, key: &str| values(&out, &format!("{name} {key}")).first().copied().unwrap_or(-1);
    for (var, value) in malformed {
        assert_eq!((get(var, "ok"), get(var, "bad")), (40, 0), "{var}\n{out}");
        assert_eq!((get(var, "warnings"), get(var, "stderr")), (1, 1), "{var}: one warning\n{out}");
        assert!(out.contains(&format!("{var} says libtfo[")) && out.contains(&format!("ignoring {var}=\"{value}\"")), "{var}\n{out}");
    }
    assert_eq!((get("two", "ok"), get("two", "warnings"), get("two", "stderr")), (40, 2, 2), "{out}");
    // The controls: a good value gives Fast Open, so the malformed ones that
    // fell back to defaults (loopback excluded) are the ones that did not.
    assert!(get("TFO_MODE", "fastopen") >= 36 && get("TFO_EXCLUDE", "fastopen") == 0, "{out}");
    for run in ["nonetlink-auto-emulate", "nonetlink-explicit-emulate"] {
        assert_eq!((get(run, "ok"), get(run, "bad"), get(run, "fastopen")), (40, 0, 0), "{run}: plain connections\n{out}");
        assert_eq!((get(run, "warnings"), get(run, "stderr")), (1, 1), "{run}\n{out}");
        assert!(out.contains(&format!("{run} says libtfo[")) && out.contains("cannot read the kernel's Fast Open cookies"), "{out}");
    }
    let kernel = "nonetlink-auto-kernel";
    assert_eq!((get(kernel, "ok"), get(kernel, "stderr")), (40, 0), "{out}");
    assert!(get(kernel, "fastopen") >= 36, "{out}");
    assert_eq!(sink_total(&out, "s", "bad"), Some(0), "{out}");
}

/// Many short connections in a few minutes, in one namespace: with the
/// kernel's own option they go on (its connect() reuses ports in TIME_WAIT
/// towards loopback, tcp_tw_reuse=2); with the emulation they must too. This
/// is the 8 x 1000 test ten times over (`make reliability N=10` failed so:
/// "connect: Cannot assign requested address" in the explicit run, 20 of
/// 80 000 connections; and a later IPv6 client of the kernel backend in the
/// same namespace lost 118 of 10 000 the same way; the emulated runs are
/// also several times slower as bind(0) searches a nearly full range: with
/// 110 s per run, they were killed before the end). Up to 15 minutes.
#[test]
#[ignore = "known defect: the emulation takes each deferred socket's port with bind(port 0); after close such a port sits in TIME_WAIT for 60 s and neither bind(0) nor connect()'s autobind (which skips ports made by bind()) reuses it, so tens of thousands of emulated connections a minute exhaust the ephemeral range and connect() fails with EADDRNOTAVAIL, in the program and in other programs of the namespace"]
fn emulated_deferrals_do_not_exhaust_ports() {
    let n = 80_000;
    let clients = [Client::AutoKernel, Client::AutoEmulate, Client::ExplicitEmulate];
    let mut body = format!("{PRELUDE}\nsink s 127.0.0.1:9000\n");
    for (i, client) in clients.iter().enumerate() {
        let name = client.name();
        body += &format!(
            "echo \"run {name}\"; {} timeout 280 $STRESS {} -n {n} -t 8 -m 65536 -s {} -b {} 127.0.0.1 9000; echo \"status {name} $?\"\n",
            client.prefix(),
            client.option(),
            31 + i,
            i * n
        );
    }
    body += "sink_totals s\n";
    let (out, ok) = script(&Netns { time_limit: Some(900), ..Netns::default() }, &body);
    assert!(ok, "{out}");
    for client in clients {
        assert_run(&out, client.name(), n);
    }
}
