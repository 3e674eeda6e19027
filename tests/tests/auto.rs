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

fn matrix_netns() -> Netns {
    // 0x403: client and server bits, and every listener takes Fast Open
    // (openssl s_server does not set TCP_FASTOPEN itself).
    Netns { delay: Some(10), sysctl: Some(0x403), env: auto_env("auto"), ..Netns::default() }
}

/// The client-speaks-first matrix: curl, wget, python urllib and asyncio,
/// Node's http.get, nc, socat, openssl s_client (its ClientHello rides in
/// the SYN), a Rust std client, 32 Python threads. Each makes three
/// connections; after the first cookie (per destination), every SYN
/// carries the request.
#[test]
fn client_speaks_first_programs_get_fast_open_on_repeats() {
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
check socat "request from socat" bash -c "$L socat - TCP:198.18.0.2:7000 <<< 'request from socat'"
check openssl "HTTP/1.0 200 ok" bash -c "printf 'GET / HTTP/1.0\r\n\r\n' | $L openssl s_client -connect 198.18.0.2:4433 -quiet 2>/dev/null | head -n 1"
check rust "got 14 bytes" $L $R/target/release/tfo-std-client 198.18.0.2:7100 "from rust std!"
head -c 300000 /dev/urandom > /tmp/big_$$
check big "$(md5sum < /tmp/big_$$)" bash -c "$L nc -N 198.18.0.2 7200 < /tmp/big_$$ | md5sum"
before=$(counter TcpExtTCPFastOpenActive)
sed 's/"127.0.0.1"/"198.18.0.2"/; s/"::1"/"198.18.0.2"/; s/AF_INET6/AF_INET/' $R/tests/programs/threads_client.py > /tmp/threads_$$.py
TFO_TEST_OPTION=0 $L python3 /tmp/threads_$$.py
echo "syn threads $(($(counter TcpExtTCPFastOpenActive) - before))"
echo "passive $(($(peer_counter TcpExtTCPFastOpenPassive) - passive_before))"
"#,
        tls = tls.display()
    );
    let (out, ok) = script(&matrix_netns(), &body);
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
    assert!(out.contains("echoed 320 of 320\n"), "{out}");
    assert_eq!(values(&out, "syn threads"), [320], "{out}");
    assert_eq!(values(&out, "passive"), [2 + 3 * 9 + 320], "{out}");
}

/// Programs whose server speaks first (an SSH-style banner, an SMTP
/// dialogue with Python's smtplib, an asyncio client awaiting the banner)
/// read before they write: libtfo starts their connection at once, so they
/// complete, never hang, and take the plain time (no added round trip).
#[test]
fn server_speaks_first_programs_keep_the_plain_timing() {
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
    let netns = Netns { delay: Some(30), env: auto_env("auto"), ..Netns::default() };
    let (out, ok) = script(&netns, &body);
    eprintln!("{out}");
    assert!(ok && !out.contains("failed "), "{out}");
    for kind in ["ssh", "smtp", "asyncio"] {
        let transcripts = |how| out.lines().filter(|l| l.starts_with(&format!("transcript {kind}-{how} "))).map(|l| l.split_once(' ').unwrap().1.split_once(' ').unwrap().1).collect::<Vec<_>>();
        let (plain, preload) = (transcripts("plain"), transcripts("preload"));
        assert_eq!(plain.len(), 5, "{out}");
        assert_eq!(plain, preload, "{kind}: the same dialogue with and without libtfo\n{out}");
        let (p, l) = (median(values(&out, &format!("ms {kind}-plain"))), median(values(&out, &format!("ms {kind}-preload"))));
        // The dialogue alone: a round trip more (60 ms) would show.
        assert!(p >= 60 && l <= p + 25, "{kind}: plain {p} ms, preloaded {l} ms\n{out}");
    }
    assert!(out.contains("transcript ssh-preload SSH-2.0-libtfo-test ok hello"), "{out}");
    assert!(out.contains("transcript smtp-preload 250 221"), "{out}");
}
