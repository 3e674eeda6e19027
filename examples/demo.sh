#!/usr/bin/env bash
# The libtfo demo. `make demo` runs it inside tests/in-netns --delay 50: a
# client namespace and a server namespace (Fast Open echo server on
# 198.18.0.2:7000) joined by a relay that delays every packet 50 ms each
# way, so one round trip takes 100 ms.
#
# The seed's client, an ordinary program that sets TCP_FASTOPEN_CONNECT,
# runs three times under LD_PRELOAD=libtfo.so. The first connection asks the
# server for a cookie and needs two round trips (handshake, then request);
# the repeats carry their request inside the SYN and need one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$root/target/release/libtfo.so
client=$root/target/examples/tfo_client
server=${TFO_DEMO_SERVER:-198.18.0.2}

# TcpExt Fast Open counters: the client's here, the server's in its namespace.
counters() {
	nstat -az 2>/dev/null | awk '/TcpExtTCPFastOpenActive / {printf "client Active=%s  ", $2}'
	if [ -n "${TFO_PEER_NETNS:-}" ]; then
		nsenter --net="$TFO_PEER_NETNS" nstat -az 2>/dev/null |
			awk '/TcpExtTCPFastOpen(CookieReqd|Passive) / {printf "server %s=%s  ", substr($1, 18), $2}'
	fi
}

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

echo "libtfo demo: $client under LD_PRELOAD=$lib"
echo "server $server:7000, 100 ms round trip; TFO_BACKEND=${TFO_BACKEND:-emulate}"
for i in 1 2 3; do
	echo
	echo "== connection $i"
	start=$(now_ms)
	LD_PRELOAD=$lib "$client" "$server" 7000 "request $i" | sed 's/^/   /'
	echo "   took $(($(now_ms) - start)) ms;  $(counters)"
done
echo
echo "== the kernel's cookie cache (read by libtfo over netlink):"
ip tcp_metrics show "$server" | sed 's/^/   /'
