#!/usr/bin/env bash
# The libtfo demo (`make demo` runs it inside tests/in-netns: a private
# network namespace with a Fast Open echo server on 127.0.0.1:7000).
#
# The seed's client, an ordinary program that sets TCP_FASTOPEN_CONNECT,
# runs three times under LD_PRELOAD=libtfo.so. The first connection asks the
# server for a cookie; the repeats carry their request inside the SYN.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$root/target/release/libtfo.so
client=$root/target/examples/tfo_client

counters() {
	nstat -az 2>/dev/null | awk '/TcpExtTCPFastOpen(CookieReqd|Active|Passive) / {printf "%s=%s  ", substr($1, 18), $2}'
}

echo "libtfo demo: $client under LD_PRELOAD=$lib"
echo "(kernel's TCP_FASTOPEN_CONNECT emulated in user space; TFO_BACKEND=${TFO_BACKEND:-emulate})"
for i in 1 2 3; do
	echo
	echo "== connection $i"
	LD_PRELOAD=$lib "$client" 127.0.0.1 7000 "request $i" | sed 's/^/   /'
	echo "   TcpExt counters: $(counters)"
done
echo
echo "== the kernel's cookie cache (read by libtfo over netlink):"
ip tcp_metrics show 127.0.0.1 | sed 's/^/   /'
