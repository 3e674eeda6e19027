#!/usr/bin/env bash
# Fetches http://198.18.0.N:8080/ from N destinations on one path, in turn,
# for several rounds, with an unmodified curl (preloaded with libtfo when
# PRELOAD=1), and prints one line per request:
#   request ROUND DEST MILLISECONDS ok|WRONG|curl-exit-N
# then the client's TcpExt Fast Open counters ("counter NAME VALUE").
# Runs inside `tests/in-netns --delay MS --peers N` (the server namespace is
# $TFO_PEER_NETNS); its HTTP server listens with TCP_FASTOPEN on every address.
# Usage: rounds.sh ROUNDS DESTINATIONS
set -uo pipefail
rounds=$1 dests=$2
root=${TFO_ROOT:?}
lib=${TFO_LIB:?}
# The server runs without libtfo, whatever this script was given.
# (mktemp: $$ repeats across the PID namespaces of tests run side by side)
ready=$(mktemp)
env -u LD_PRELOAD nsenter --net="$TFO_PEER_NETNS" python3 "$root/tests/programs/servers.py" 0.0.0.0 http:8080 > "$ready" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$ready"' EXIT
for _ in $(seq 200); do grep -q ready "$ready" 2>/dev/null && break; sleep 0.02; done
grep -q ready "$ready" || { echo "rounds: the server did not start" >&2; exit 1; }
nstat -n > /dev/null 2>&1 || true
for round in $(seq "$rounds"); do
	for i in $(seq 2 $((dests + 1))); do
		dest=198.18.0.$i
		rc=0
		if [ "${PRELOAD:-0}" = 1 ]; then
			out=$(LD_PRELOAD="$lib" curl -sS -m 20 -w '\n%{time_total}' "http://$dest:8080/r$round") || rc=$?
		else
			out=$(env -u LD_PRELOAD curl -sS -m 20 -w '\n%{time_total}' "http://$dest:8080/r$round") || rc=$?
		fi
		body=$(printf '%s\n' "$out" | head -n 1)
		secs=$(printf '%s\n' "$out" | tail -n 1)
		ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
		verdict=WRONG
		[ "$body" = "hello from http /r$round" ] && verdict=ok
		[ $rc = 0 ] || verdict=curl-exit-$rc
		echo "request $round $dest $ms $verdict"
	done
done
nstat -az 2>/dev/null | awk '/TcpExtTCPFastOpen(Active|ActiveFail|CookieReqd)/ {print "counter", $1, $2}'
