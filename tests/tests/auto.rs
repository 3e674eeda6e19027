//! Auto mode with real, unmodified programs: they never set
//! TCP_FASTOPEN_CONNECT, and under the preload (no configuration but
//! TFO_EXCLUDE where loopback is used) their repeat connections carry the
//! request in the SYN — checked with the namespace's TcpExt counters — while
//! every reply arrives intact, and programs whose server speaks first keep
//! the plain timing and never hang.
//!
//! Most run over the delay relay (`tests/in-netns --delay`): the client in
//! one namespace, the servers (`tests/programs/servers.py`, openssl
//! s_server, the echo server) at 198.18.0.2 in another.

use tfo_tests::{auto_env, median, script, values, Netns};

/// Shell helpers for the scripts below.
const PRELUDE: &str = r#"
set -u
P=$TFO_PEER_NETNS; R=$TFO_ROOT; L="env LD_PRELOAD=$TFO_LIB"
counter() { nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
peer_counter() { nsenter --net="$P" nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
wait_port() { for _ in $(seq 200); do nsenter --net="$P" bash -c "exec 3<>/dev/tcp/198.18.0.2/$1" 2>/dev/null && return; sleep 0.05; done; echo "no server on $1"; exit 1; }
serve() {
	nsenter --net="$P" python3 "$R/tests/programs/servers.py" 198.18.0.2 "$@" > /dev/null 2>&1 &
	for spec in "$@"; do wait_port "${spec#*:}"; done
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# check NAME EXPECTED COMMAND...: three connections; prints how many replies
# held EXPECTED and how many SYNs carried data.
check() {
	local name=$1 expected=$2; shift 2
	local before=$(counter TcpExtTCPFastOpenActive) good=0
	for i in 1 2 3; do
		out=$(timeout 20 "$@" 2>&1) && [[ "$out" == *"$expected"* ]] && good=$((good + 1)) || echo "bad reply from $name: $out"
	done
	echo "replies $name $good"
	echo "syn $name $(($(counter TcpExtTCPFastOpenActive) - before))"
}
"#;

fn matrix_netns(backend: &str) -> Netns {
    // 0x403: client and server bits, and every listener takes Fast Open
    // (openssl s_server does not set TCP_FASTOPEN itself).
    Netns { delay: Some(10), sysctl: Some(0x403), env: auto_env(backend), ..Netns::default() }
}

/// The client-speaks-first matrix: curl, wget, python urllib and asyncio,
/// Node's http.get, nc, socat, openssl s_client (its ClientHello rides in
/// the SYN), a Rust std client, 32 Python threads. Each makes three
/// connections; after the first cookie (per destination), every SYN
/// carries the request.
#[test]
fn client_speaks_first_programs_get_fast_open_on_repeats() {
    client_speaks_first("auto");
}

/// The same with the emulation (TFO_BACKEND=emulate), as on kernels
/// without TCP_FASTOPEN_CONNECT.
#[test]
fn client_speaks_first_programs_with_the_emulation() {
    client_speaks_first("emulate");
}

fn client_speaks_first(backend: &str) {
    let tls = std::env::temp_dir().join(format!("tfo-tls-{}", std::process::id()));
    std::fs::create_dir_all(&tls).unwrap();
    let body = format!(
        r#"{PRELUDE}
serve http:8000 eof:7100 bigecho:7200
openssl req -x509 -newkey rsa:2048 -nodes -keyout {tls}/key.pem -out {tls}/cert.pem -days 2 -subj /CN=tfo-test 2>/dev/null
nsenter --net="$P" openssl s_server -quiet -accept 198.18.0.2:4433 -cert {tls}/cert.pem -key {tls}/key.pem -www > /dev/null 2>&1 &
wait_port 4433
passive_before=$(peer_counter TcpExtTCPFastOpenPassive)
check curl "hello from http /curl" $L curl -s http://198.18.0.2:8000/curl
check wget "hello from http /wget" $L wget -q -O - http://198.18.0.2:8000/wget
check urllib "hello from http /py" $L python3 -c 'import urllib.request; print(urllib.request.urlopen("http://198.18.0.2:8000/py").read().decode())'
check node "hello from http /node" $L node -e 'require("http").get("http://198.18.0.2:8000/node", r => {{ let b = ""; r.on("data", d => b += d); r.on("end", () => console.log(b)) }})'
check asyncio "request from asyncio" $L python3 -c '
import asyncio
async def main():
    r, w = await asyncio.open_connection("198.18.0.2", 7000)
    w.write(b"request from asyncio"); await w.drain()
    print((await r.read(100)).decode()); w.close()
asyncio.run(main())'
# (input ready before the program starts: nc polls its input and the socket
# together, and a poll that finds nothing ready starts the connection)
check nc "request from nc" bash -c "$L nc -N 198.18.0.2 7000 <<< 'request from nc'"
check nc-empty "got 0 bytes" bash -c "$L nc -N 198.18.0.2 7100 < /dev/null"
check socat "request from socat" bash -c "$L socat - TCP:198.18.0.2:7000 <<< 'request from socat'"
check openssl "HTTP/1.0 200 ok" bash -c "printf 'GET / HTTP/1.0\r\n\r\n' | $L openssl s_client -connect 198.18.0.2:4433 -quiet 2>/dev/null | head -n 1"
check rust "got 14 bytes" $L $R/target/release/tfo-std-client 198.18.0.2:7100 "from rust std!"
big=$(mktemp)
head -c 300000 /dev/urandom > $big
check big "$(md5sum < $big)" bash -c "$L nc -N 198.18.0.2 7200 < $big | md5sum"
before=$(counter TcpExtTCPFastOpenActive)
threads=$(mktemp --suffix=.py)
sed 's/"127.0.0.1"/"198.18.0.2"/; s/"::1"/"198.18.0.2"/; s/AF_INET6/AF_INET/' $R/tests/programs/threads_client.py > $threads
TFO_TEST_OPTION=0 $L python3 $threads
echo "syn threads $(($(counter TcpExtTCPFastOpenActive) - before))"
echo "passive $(($(peer_counter TcpExtTCPFastOpenPassive) - passive_before))"
"#,
        tls = tls.display()
    );
    let (out, ok) = script(&matrix_netns(backend), &body);
    std::fs::remove_dir_all(&tls).ok();
    eprintln!("{out}");
    assert!(ok, "{out}");
    let programs = ["curl", "wget", "urllib", "node", "asyncio", "nc", "socat", "openssl", "rust", "big"];
    for (i, program) in programs.iter().enumerate() {
        assert_eq!(values(&out, &format!("replies {program}")), [3], "{program} replies:\n{out}");
        let syn = values(&out, &format!("syn {program}"));
        // The very first connection asks for the cookie; the rest carry data.
        let expected = if i == 0 { 2 } else { 3 };
        assert_eq!(syn, [expected], "{program}: connections that carried data in the SYN\n{out}");
    }
    // An empty request (nc -N with nothing on stdin): shutdown() starts the
    // connection, which carries no data; the server's reply still arrives.
    assert_eq!(values(&out, "replies nc-empty"), [3], "{out}");
    assert_eq!(values(&out, "syn nc-empty"), [0], "{out}");
    assert!(out.contains("echoed 320 of 320\n"), "{out}");
    assert_eq!(values(&out, "syn threads"), [320], "{out}");
    // The server counts nc-empty's data-less SYNs too: they carried the cookie.
    assert_eq!(values(&out, "passive"), [2 + 3 * 10 + 320], "{out}");
}

/// Programs whose server speaks first (an SSH-style banner, an SMTP
/// dialogue with Python's smtplib, an asyncio client awaiting the banner)
/// read before they write: libtfo starts their connection at once, so they
/// complete, never hang, and take the plain time (no added round trip).
#[test]
fn server_speaks_first_programs_keep_the_plain_timing() {
    server_speaks_first("auto");
}

#[test]
fn server_speaks_first_programs_with_the_emulation() {
    server_speaks_first("emulate");
}

fn server_speaks_first(backend: &str) {
    let body = format!(
        r#"{PRELUDE}
serve ssh:2222 smtp:2525
# a program per protocol; each prints its transcript, then the time its
# dialogue took (from before connect to the end), without interpreter start-up
ssh_client='import socket, time
t = time.monotonic()
s = socket.create_connection(("198.18.0.2", 2222)); f = s.makefile("rb")
print(f.readline().strip().decode()); s.sendall(b"hello\r\n"); print(f.readline().strip().decode())
print("elapsed", int((time.monotonic() - t) * 1000))'
smtp_client='import smtplib, time
t = time.monotonic()
s = smtplib.SMTP("198.18.0.2", 2525, timeout=10); print(s.helo()[0]); s.sendmail("a@x", ["b@y"], "Subject: t\r\n\r\nhi"); print(s.quit()[0])
print("elapsed", int((time.monotonic() - t) * 1000))'
asyncio_client='import asyncio, time
async def main():
    t = time.monotonic()
    r, w = await asyncio.open_connection("198.18.0.2", 2222)
    print((await r.readline()).decode().strip()); w.write(b"from asyncio\r\n"); print((await r.readline()).decode().strip()); w.close()
    print("elapsed", int((time.monotonic() - t) * 1000))
asyncio.run(main())'
for kind in ssh smtp asyncio; do
	code=${{kind}}_client
	for how in plain preload; do
		for i in 1 2 3 4 5; do
			pre=""; [ $how = preload ] && pre="$L"
			out=$(timeout 20 $pre python3 -c "${{!code}}" 2>&1) || echo "failed $kind $how: $out"
			echo "ms $kind-$how $(echo "$out" | awk '/^elapsed/ {{print $2}}')"
			echo "transcript $kind-$how $(echo "$out" | grep -v '^elapsed' | tr '\n' ' ')"
		done
	done
done
"#
    );
    // RTT 60 ms: an added round trip would stand out.
    let netns = Netns { delay: Some(30), env: auto_env(backend), ..Netns::default() };
    let (out, ok) = script(&netns, &body);
    eprintln!("{out}");
    assert!(ok && !out.contains("failed "), "{out}");
    for kind in ["ssh", "smtp", "asyncio"] {
        let transcripts = |how| out.lines().filter(|l| l.starts_with(&format!("transcript {kind}-{how} "))).map(|l| l.split_once(' ').unwrap().1.split_once(' ').unwrap().1).collect::<Vec<_>>();
        let (plain, preload) = (transcripts("plain"), transcripts("preload"));
        assert_eq!(plain.len(), 5, "{out}");
        assert_eq!(plain, preload, "{kind}: the same dialogue with and without libtfo\n{out}");
        let (p, l) = (median(values(&out, &format!("ms {kind}-plain"))), median(values(&out, &format!("ms {kind}-preload"))));
        // The dialogue alone: a round trip more (60 ms) would show. (With a
        // cookie it is a round trip shorter: the server takes the
        // connection on the SYN and its banner follows the SYN-ACK.)
        assert!(p >= 60 && l <= p + 40, "{kind}: plain {p} ms, preloaded {l} ms\n{out}");
    }
    assert!(out.contains("transcript ssh-preload SSH-2.0-libtfo-test ok hello"), "{out}");
    assert!(out.contains("transcript smtp-preload 250 221"), "{out}");
}

/// An asyncio event loop (200 concurrent connections through epoll) and
/// 32 threads of blocking clients, none setting the option, on loopback
/// (TFO_EXCLUDE=none): everything echoed, every SYN with data — with the
/// kernel's deferred connect and with the emulation alike.
#[test]
fn event_loop_and_threads_on_loopback_with_either_backend() {
    for backend in ["auto", "emulate"] {
        for (program, total) in [("asyncio_client.py", 200), ("threads_client.py", 320)] {
            let netns = Netns { prime: true, counters: true, env: auto_env(backend), ..Netns::default() };
            let (out, ok) = script(&netns, &format!("TFO_TEST_OPTION=0 LD_PRELOAD=$TFO_LIB python3 $TFO_ROOT/tests/programs/{program}"));
            assert!(ok, "{backend} {program}: {out}");
            assert!(out.contains(&format!("echoed {total} of {total}\ndata in SYN {total}\n")), "{backend} {program}: {out}");
            assert_eq!(tfo_tests::counter(&out, "TcpExtTCPFastOpenActive"), Some(total as i64), "{backend} {program}: {out}");
        }
    }
}

/// Who gets Fast Open: loopback is left out by default; TFO_PORTS,
/// TFO_INCLUDE and TFO_EXCLUDE choose; TFO_MODE=off and explicit leave
/// unmodified programs alone (off: not even a setsockopt reaches the
/// kernel); a namespace without the client bit passes through silently.
#[test]
fn policy_and_modes_choose_who_gets_fast_open() {
    let body = r#"
set -u
counter() { nstat -asz TcpExtTCPFastOpenActive 2>/dev/null | awk '$1 == "TcpExtTCPFastOpenActive" {print $2}'; }
client=$TFO_ROOT/target/release/tfo-std-client
# try NAME ADDRESS ENV...: one connection; prints whether its SYN had data
try() {
	local name=$1 address=$2; shift 2
	local before=$(counter)
	out=$(env LD_PRELOAD=$TFO_LIB "$@" $client "$address" "ping $name" 2>&1)
	[ "$out" = "ping $name" ] || echo "bad reply for $name: $out"
	echo "fastopen $name $(($(counter) - before))"
}
try default 127.0.0.1:7000 TFO_MODE=auto
try exclude-none 127.0.0.1:7000 TFO_EXCLUDE=none
try exclude-none-v6 [::1]:7000 TFO_EXCLUDE=none
try ports-80 127.0.0.1:7000 TFO_EXCLUDE=none TFO_PORTS=80,443
try ports-7000 127.0.0.1:7000 TFO_EXCLUDE=none TFO_PORTS=6000-7000
try include-v6-only 127.0.0.1:7000 TFO_EXCLUDE=none TFO_INCLUDE=::1
try include-v6-only-v6 [::1]:7000 TFO_EXCLUDE=none TFO_INCLUDE=::1
try exclude-v6 [::1]:7000 TFO_EXCLUDE=::/0
try mode-off 127.0.0.1:7000 TFO_EXCLUDE=none TFO_MODE=off
try mode-explicit 127.0.0.1:7000 TFO_EXCLUDE=none TFO_MODE=explicit
# explicit mode still serves a program that asks
before=$(counter); env LD_PRELOAD=$TFO_LIB TFO_MODE=explicit $TFO_EXAMPLES/tfo_client 127.0.0.1 7000 asks > /dev/null
echo "fastopen explicit-asks $(($(counter) - before))"
# off: nothing of libtfo reaches the kernel
env LD_PRELOAD=$TFO_LIB TFO_MODE=off TFO_EXCLUDE=none strace -f -qq -e trace=setsockopt $client 127.0.0.1:7000 quiet 2>&1 | grep -c 'TCP_FASTOPEN_CONNECT' | sed 's/^/setsockopt-off /'
env LD_PRELOAD=$TFO_LIB TFO_EXCLUDE=none strace -f -qq -e trace=setsockopt $client 127.0.0.1:7000 quiet 2>&1 | grep -c 'TCP_FASTOPEN_CONNECT' | sed 's/^/setsockopt-auto /'
# a malformed value: one warning naming it, the default used, the same reply
out=$(env LD_PRELOAD=$TFO_LIB TFO_EXCLUDE=none TFO_PORTS=http $client 127.0.0.1:7000 "bad ports" 2>&1)
echo "malformed [$out]"
# the client bit off: a plain connection, not a word on stderr
echo 2 > /proc/sys/net/ipv4/tcp_fastopen
out=$(env LD_PRELOAD=$TFO_LIB TFO_EXCLUDE=none $client 127.0.0.1:7000 "no client bit" 2>&1)
echo "client-bit-off [$out]"
"#;
    let (out, ok) = script(&Netns::primed(), body);
    assert!(ok && !out.contains("bad reply"), "{out}");
    for (name, expected) in [
        ("default", 0),
        ("exclude-none", 1),
        ("exclude-none-v6", 1),
        ("ports-80", 0),
        ("ports-7000", 1),
        ("include-v6-only", 0),
        ("include-v6-only-v6", 1),
        ("exclude-v6", 0),
        ("mode-off", 0),
        ("mode-explicit", 0),
        ("explicit-asks", 1),
    ] {
        assert_eq!(values(&out, &format!("fastopen {name}")), [expected], "{name}\n{out}");
    }
    assert_eq!(values(&out, "setsockopt-off"), [0], "{out}");
    assert_eq!(values(&out, "setsockopt-auto"), [1], "the control: strace does see it in auto mode\n{out}");
    assert!(out.contains("client-bit-off [no client bit]\n"), "{out}");
    let malformed = out.split_once("malformed [").unwrap().1.split_once("]\n").unwrap().0;
    assert!(malformed.ends_with(": warning: ignoring TFO_PORTS=\"http\" (expected all or ports like 80,443,8000-8999); using all\nbad ports"), "{malformed}");
}

/// TFO_SERVER=1: a server that never set TCP_FASTOPEN (Python's
/// http.server) accepts data in SYNs, in a namespace without the
/// every-listener bit (0x400); without it, it does not.
#[test]
fn tfo_server_gives_legacy_listeners_fast_open() {
    let body = r#"
set -u
counter() { nsenter --net="$TFO_PEER_NETNS" nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
www=$(mktemp -d) && echo "legacy server" > $www/index.html
for server in 0 1; do
	port=$((8100 + server))
	nsenter --net="$TFO_PEER_NETNS" env LD_PRELOAD=$TFO_LIB TFO_SERVER=$server python3 -m http.server -b 198.18.0.2 -d $www $port > /dev/null 2>&1 &
	for _ in $(seq 100); do nsenter --net="$TFO_PEER_NETNS" bash -c "exec 3<>/dev/tcp/198.18.0.2/$port" 2>/dev/null && break; sleep 0.05; done
	before=$(counter TcpExtTCPFastOpenPassive)
	for i in 1 2 3; do curl -s --tcp-fastopen http://198.18.0.2:$port/ | sed "s/^/reply $server /"; done
	echo "passive $server $(($(counter TcpExtTCPFastOpenPassive) - before))"
done
"#;
    let netns = Netns { delay: Some(5), ..Netns::default() };
    let (out, ok) = script(&netns, body);
    assert!(ok, "{out}");
    assert_eq!(out.matches("legacy server").count(), 6, "{out}");
    assert_eq!(values(&out, "passive 0"), [0], "{out}");
    // The first connection fetches the cookie; the next two carry data.
    assert_eq!(values(&out, "passive 1"), [2], "{out}");
}

/// TFO_STATS: the statistics file of each process says what libtfo did.
#[test]
fn statistics_count_what_happened() {
    let dir = std::env::temp_dir().join(format!("tfo-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = format!(
        r#"
set -u
client=$TFO_ROOT/target/release/tfo-std-client
export LD_PRELOAD=$TFO_LIB TFO_STATS={dir} TFO_EXCLUDE=none
$client 127.0.0.1:7000 one 3 > /dev/null
TFO_PORTS=80 $client 127.0.0.1:7000 two > /dev/null
python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", 7000)); s.settimeout(0.5)
try: s.recv(1)
except OSError: pass'
python3 -c 'import socket
for i in range(2):
    s = socket.create_connection(("127.0.0.1", 7000)); s.shutdown(socket.SHUT_WR); assert s.recv(1) == b""'
"#,
        dir = dir.display()
    );
    let (out, ok) = script(&Netns::primed(), &body);
    assert!(ok, "{out}");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(files.len(), 4, "one file per process that connected: {files:?}");
    let get = |f: &str, k: &str| values(f, k).first().copied().unwrap_or(-1);
    files.sort_by_key(|f| (get(f, "sockets_seen"), get(f, "fallback_policy")));
    let (python, policy, shutdown, client) = (&files[0], &files[1], &files[2], &files[3]);
    assert!(client.contains("program tfo-std-client\n") && python.contains("program python3\n"), "{files:?}");
    assert_eq!((get(shutdown, "sockets_seen"), get(shutdown, "kicks_shutdown")), (2, 2), "{shutdown}");
    assert_eq!((get(client, "sockets_seen"), get(client, "connections_deferred"), get(client, "syn_data_sent"), get(client, "syn_data_acked")), (3, 3, 3, 3), "{client}");
    assert_eq!((get(policy, "sockets_seen"), get(policy, "fallback_policy"), get(policy, "connections_deferred")), (1, 1, 0), "{policy}");
    // Python's socket timeouts poll before they read: a wait for input.
    assert_eq!((get(python, "connections_deferred"), get(python, "kicks_wait"), get(python, "syn_data_sent")), (1, 1, 0), "{python}");
}

/// Paths that break Fast Open (the relay as a middlebox that drops, resets
/// or strips SYNs carrying data): every reply still arrives, and a
/// destination costs at most one slow connection, across processes — the
/// failure memory (TFO_STATE_DIR) tells the next programs to connect
/// plainly. A reset SYN is retried without data inside the call that saw
/// it, for a non-blocking client (curl) and a blocking one alike.
#[test]
fn broken_paths_cost_at_most_one_slow_connection() {
    broken_paths("auto");
}

#[test]
fn broken_paths_with_the_emulation() {
    broken_paths("emulate");
}

fn broken_paths(backend: &str) {
    for mode in ["drop", "reset", "strip"] {
        let state = std::env::temp_dir().join(format!("tfo-state-{backend}-{mode}-{}", std::process::id()));
        let body = format!(
            r#"{PRELUDE}
serve http:8000 eof:7100
export TFO_STATE_DIR={state}
# the first connection asks for a cookie (its SYN has no data: it passes)
$L curl -s -o /dev/null http://198.18.0.2:8000/cookie
for i in 1 2 3 4 5; do
	s=$(now_ms)
	out=$($L curl -s -m 10 http://198.18.0.2:8000/n$i)
	echo "ms curl $(($(now_ms) - s))"
	[ "$out" = "hello from http /n$i" ] && echo "reply curl ok" || echo "reply curl bad: $out"
done
$R/target/release/tfo failures | sed 's/^/failures /'
$R/target/release/tfo forget > /dev/null
for i in 1 2 3; do
	s=$(now_ms)
	out=$($L $R/target/release/tfo-std-client 198.18.0.2:7100 "blocking $i")
	echo "ms blocking $(($(now_ms) - s))"
	[ "$out" = "got 10 bytes" ] && echo "reply blocking ok" || echo "reply blocking bad: $out"
done

"#,
            state = state.display()
        );
        let netns = Netns { delay: Some(25), syn_data: Some(mode.into()), env: auto_env(backend), ..Netns::default() };
        let (out, ok) = script(&netns, &body);
        std::fs::remove_dir_all(&state).ok();
        eprintln!("--- {mode}\n{out}");
        assert!(ok, "{mode}: {out}");
        assert_eq!(out.matches("reply curl ok").count(), 5, "{mode}: every reply arrives\n{out}");
        assert_eq!(out.matches("reply blocking ok").count(), 3, "{mode}: every reply arrives\n{out}");
        let slow = |what: &str| values(&out, &format!("ms {what}")).iter().filter(|&&ms| ms > 600).count();
        match mode {
            // One SYN timeout (about 1 s), then plain connections.
            "drop" => {
                assert_eq!(slow("curl"), 1, "{mode}: one slow connection\n{out}");
                assert!(out.contains("failures 198.18.0.2"), "{mode}: remembered\n{out}");
            }
            // A reset costs a round trip, never a failure; then plain.
            "reset" => {
                assert_eq!(slow("curl"), 0, "{out}");
                assert!(out.contains("failures 198.18.0.2"), "{mode}: remembered\n{out}");
            }
            // Stripped data is sent again after the handshake: no cost, no memory.
            _ => {
                assert_eq!(slow("curl"), 0, "{out}");
                assert!(!out.contains("failures 198.18.0.2"), "{out}");
            }
        }
        // After `tfo forget` the blocking client tries Fast Open again: the
        // drop costs it one more slow connection, a reset none.
        assert!(slow("blocking") <= 1, "{mode}\n{out}");
    }
}

/// The failure memory is the user's own: a damaged record, a symlink in a
/// record's place or a directory others can write is ignored with one
/// warning, and Fast Open goes on.
#[test]
fn a_damaged_or_hostile_failure_memory_is_ignored_with_one_warning() {
    let body = r#"
set -u
client=$TFO_ROOT/target/release/tfo-std-client
counter() { nstat -asz TcpExtTCPFastOpenActive 2>/dev/null | awk '$1 == "TcpExtTCPFastOpenActive" {print $2}'; }
export LD_PRELOAD=$TFO_LIB TFO_EXCLUDE=none
for case in damaged symlink foreign open-directory; do
	dir=$(mktemp -d); chmod 700 $dir
	case $case in
	damaged) printf 'libtfo-failure v1 3 99999999999 dropped and more' > $dir/127.0.0.1 ;;
	symlink) echo "libtfo-failure v1 1 99999999999 dropped" > $dir/elsewhere; ln -s $dir/elsewhere $dir/127.0.0.1 ;;
	foreign) echo "libtfo-failure v1 1 99999999999 dropped" > $dir/127.0.0.1; chown 65534 $dir/127.0.0.1 ;;
	open-directory) chmod 777 $dir ;;
	esac
	before=$(counter)
	err=$(mktemp)
	TFO_STATE_DIR=$dir $client 127.0.0.1:7000 "$case one" 2> $err > /dev/null
	TFO_STATE_DIR=$dir $client 127.0.0.1:7000 "$case two" 2>> $err > /dev/null
	echo "fastopen $case $(($(counter) - before))"
	echo "warnings $case $(grep -c 'failure memory' $err)"
	rm -rf $dir
done
"#;
    let (out, ok) = script(&Netns::primed(), body);
    assert!(ok, "{out}");
    for case in ["damaged", "symlink", "foreign"] {
        assert_eq!(values(&out, &format!("fastopen {case}")), [2], "{case}: Fast Open goes on\n{out}");
        // One warning per process: two processes, two lines.
        assert_eq!(values(&out, &format!("warnings {case}")), [2], "{case}\n{out}");
    }
    // An open directory is only refused when a failure must be written.
    assert_eq!(values(&out, "fastopen open-directory"), [2], "{out}");
}

/// TFO_LOG / TFO_LOG_FILE: one line per event with the pid, fd and
/// destination, appended to the file (nothing on stdout or stderr then);
/// `info` leaves out the per-connection debug lines.
#[test]
fn log_lines_go_to_the_log_file() {
    let body = r#"
set -u
client=$TFO_ROOT/target/release/tfo-std-client
log=$(mktemp)
stderr=$(mktemp)
out=$(env LD_PRELOAD=$TFO_LIB TFO_EXCLUDE=none TFO_LOG=debug TFO_LOG_FILE=$log $client 127.0.0.1:7000 logged 2>$stderr)
echo "stdout [$out]"
echo "stderr [$(cat $stderr)]"
sed 's/^/file /' $log
env LD_PRELOAD=$TFO_LIB TFO_EXCLUDE=none TFO_LOG=info TFO_LOG_FILE=$log $client 127.0.0.1:7000 quiet > /dev/null
echo "lines $(wc -l < $log)"
"#;
    let (out, ok) = script(&Netns::primed(), body);
    assert!(ok, "{out}");
    assert!(out.contains("stdout [logged]\nstderr []\n"), "{out}");
    let lines: Vec<_> = out.lines().filter_map(|l| l.strip_prefix("file ")).collect();
    assert!(!lines.is_empty(), "{out}");
    for line in &lines {
        let (prefix, rest) = line.split_once("]: ").unwrap();
        assert!(prefix.strip_prefix("libtfo[").unwrap().parse::<u32>().is_ok(), "{line}");
        assert!(rest.starts_with("debug: fd ") && rest.contains("127.0.0.1:7000"), "{line}");
    }
    assert!(lines.iter().any(|l| l.ends_with("connect deferred (kernel)")), "{out}");
    assert_eq!(values(&out, "lines"), [lines.len() as i64], "info adds no debug lines\n{out}");
}

/// The program's own disconnect (connect(AF_UNSPEC), or a shutdown while the
/// SYN is unanswered) is not a reset to retry: auto mode used to connect
/// again and wait up to 10 s for it, in a poll with a 50 ms timeout, a
/// getsockopt or a non-blocking write (found by `tfo-fuzz --mode auto`, seed
/// 302). Each sequence, towards a black hole, against auto mode's own
/// invariants (fuzz::auto_violation: no wait where the kernel's socket does
/// not wait, no EINPROGRESS from a write, no byte read twice).
#[test]
fn the_programs_own_disconnect_is_not_retried() {
    let netns = Netns { sysctl: Some(5), blackhole: true, ..Netns::default() };
    for steps in [
        "watchdog=700 socket fionbio=1 connect sendfile64=1 connect_unspec poll=50",
        "watchdog=700 socket sndtimeo=150 connect send_dontwait=100 connect_unspec tcpinfo_len=32",
        "watchdog=700 socket nonblock connect write=5000 connect_unspec write=100",
        "watchdog=700 socket sndtimeo=150 connect sendmsg=1400 shutdown=wr read",
    ] {
        let steps: Vec<&str> = steps.split(' ').collect();
        let native = netns.trace(tfo_tests::Mode::Native, "198.18.0.2", &steps);
        let auto = netns.trace(tfo_tests::Mode::ShimAuto, "198.18.0.2", &steps);
        let violation = tfo_tests::fuzz::auto_violation(&native, &auto);
        assert!(violation.is_none(), "{violation:?}\n{}", tfo_tests::side_by_side(&native, &auto));
    }
}
