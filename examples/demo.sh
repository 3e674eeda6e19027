#!/usr/bin/env bash
# The libtfo demo. `make demo` runs it inside tests/in-netns --delay 50: a
# client namespace and a server namespace (198.18.0.2) joined by a relay
# that delays every packet 50 ms each way, so one round trip takes 100 ms.
#
# 1. An unmodified curl fetches a page three times plainly, then three
#    times under LD_PRELOAD=libtfo.so (auto mode, no configuration): the
#    first preloaded request fetches a cookie, the repeats carry their
#    request in the SYN and save a round trip.
# 2. The seed's client, which sets TCP_FASTOPEN_CONNECT itself, the same.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$root/target/release/libtfo.so
client=$root/target/examples/tfo_client
server=${TFO_DEMO_SERVER:-198.18.0.2}
peer=${TFO_PEER_NETNS:-}

# TcpExt Fast Open counters: the client's here, the server's in its namespace.
counter() { nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
peer_counter() { [ -n "$peer" ] && nsenter --net="$peer" nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
counters() {
	printf 'client TCPFastOpenActive=%s  server TCPFastOpenPassive=%s CookieReqd=%s' \
		"$(counter TcpExtTCPFastOpenActive)" "$(peer_counter TcpExtTCPFastOpenPassive)" "$(peer_counter TcpExtTCPFastOpenCookieReqd)"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

if [ -n "$peer" ]; then
	nsenter --net="$peer" python3 "$root/tests/programs/servers.py" "$server" http:8000 > /dev/null 2>&1 &
	for _ in $(seq 200); do nsenter --net="$peer" bash -c "exec 3<>/dev/tcp/$server/8000" 2>/dev/null && break; sleep 0.05; done
fi

echo "libtfo demo: server $server, 100 ms round trip (tfo-delay between two namespaces)"
echo
echo "== 1. unmodified curl: time to first byte of http://$server:8000/"
declare -A first_byte
for how in plain libtfo; do
	for i in 1 2 3; do
		pre=(); [ $how = libtfo ] && pre=(env "LD_PRELOAD=$lib")
		ms=$("${pre[@]}" curl -s -o /dev/null -w '%{time_starttransfer}' "http://$server:8000/" | awk '{printf "%d", $1 * 1000}')
		first_byte[$how$i]=$ms
		printf '   %-7s request %d: %4d ms   %s\n' "$how" "$i" "$ms" "$(counters)"
	done
done
saved=$(((first_byte[plain2] + first_byte[plain3]) / 2 - (first_byte[libtfo2] + first_byte[libtfo3]) / 2))
echo "   repeats: plain $(((first_byte[plain2] + first_byte[plain3]) / 2)) ms, under libtfo $(((first_byte[libtfo2] + first_byte[libtfo3]) / 2)) ms: $saved ms saved (one round trip)"

echo
echo "== 2. the seed's client (sets TCP_FASTOPEN_CONNECT itself), under libtfo"
for i in 1 2 3; do
	start=$(now_ms)
	LD_PRELOAD=$lib "$client" "$server" 7000 "request $i" | sed 's/^/   /'
	echo "   took $(($(now_ms) - start)) ms;  $(counters)"
done
echo
echo "== the kernel's cookie cache (read by libtfo over netlink):"
ip tcp_metrics show "$server" | sed 's/^/   /'
