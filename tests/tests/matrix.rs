//! The program matrix: real clients and servers people run, each natively
//! and under the preload (auto mode, no configuration) over a 50 ms link
//! (`tests/in-netns --delay 25`: clients here, servers at 198.18.0.2 in a
//! second namespace). Each program runs three times each way, alternating;
//! the test compares every preloaded reply with the native one, counts the
//! SYNs that carried data (client `TcpExtTCPFastOpenActive`) and the
//! connections the server took on a cookie (`TcpExtTCPFastOpenPassive`),
//! and compares the times (medians reported, the fastest of each three
//! compared: preloaded at most 30 ms + 25 % above plain). A cookie for 198.18.0.2 is cached first
//! (`--prime`), so every preloaded connection is a repeat. No run may take
//! 20 s (a hang fails it).
//!
//! Classes: client-speaks-first programs carry their first bytes in every
//! SYN; server-speaks-first ones (MariaDB) start their connection at the
//! read, with the cookie (the server takes it on the SYN) and no data; a
//! static binary does not load libtfo at all (the README's Limits).
//!
//! The groups run one at a time (a lock), so their timings do not
//! disturb each other on a small machine.

use std::sync::Mutex;
use tfo_tests::{script, Netns};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PRELUDE: &str = r#"
set -u
P=$TFO_PEER_NETNS; R=$TFO_ROOT
T=$(mktemp -d); chmod 755 $T
trap 'rm -rf $T' EXIT
counter() { nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
peer_counter() { nsenter --net="$P" nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
in_peer() { nsenter --net="$P" "$@"; }
# wait_port ADDRESS PORT: until something listens there (tried from its own namespace)
wait_port() {
	local ns=--net="$P"; [ "$1" = 127.0.0.1 ] && ns=--net=/proc/self/ns/net
	for _ in $(seq 600); do nsenter "$ns" bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return; sleep 0.05; done
	echo "no server on $1:$2"; exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
minimum() { printf '%s\n' "$@" | sort -n | head -n 1; }
# run_case NAME EXPECTED COMMAND: the bash command line COMMAND three times
# natively and three times preloaded, alternating; $PRE is empty natively
# and "env LD_PRELOAD=..." preloaded, $ON 0 or 1. Prints one result line.
run_case() {
	local name=$1 expected=$2 cmd=$3 active=0 passive=0 good=0 same=0 native_out= nat=() pre=()
	for i in 1 2 3; do
		for on in 0 1; do
			PRE=; [ $on = 1 ] && PRE="env LD_PRELOAD=$TFO_LIB"
			export PRE ON=$on T
			local a=$(counter TcpExtTCPFastOpenActive) p=$(peer_counter TcpExtTCPFastOpenPassive) s=$(now_ms)
			local out st=0
			out=$(timeout -k 2 20 bash -c "$cmd" 2>&1) || st=$?
			local ms=$(($(now_ms) - s))
			if [ $on = 1 ]; then
				active=$((active + $(counter TcpExtTCPFastOpenActive) - a))
				passive=$((passive + $(peer_counter TcpExtTCPFastOpenPassive) - p))
				pre+=($ms)
				[ "$out" = "$native_out" ] && same=$((same + 1)) || echo "differs $name $i: [$native_out] [$out]"
			else
				nat+=($ms); native_out=$out
			fi
			if [ $st = 0 ] && [[ "$out" == *"$expected"* ]]; then good=$((good + 1)); else echo "bad $name on=$on $i: status $st: $out"; fi
		done
	done
	echo "result $name good=$good same=$same syn=$active passive=$passive native=$(median "${nat[@]}") preload=$(median "${pre[@]}") native_min=$(minimum "${nat[@]}") preload_min=$(minimum "${pre[@]}")"
}
in_peer python3 "$R/tests/programs/servers.py" 198.18.0.2 http:8000 eof:7100 > /dev/null 2>&1 &
wait_port 198.18.0.2 8000; wait_port 198.18.0.2 7100
"#;

/// How a program should fare under the preload.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    /// Its first bytes ride in every SYN.
    ClientFirst,
    /// It reads first: the SYN carries the cookie (the server takes the
    /// connection on it) but no data.
    ServerFirst,
    /// libtfo does not load (a static binary): plain connections.
    NotLoaded,
}

#[derive(Debug)]
struct Row {
    name: String,
    good: i64,
    same: i64,
    syn: i64,
    passive: i64,
    native: i64,
    preload: i64,
    native_min: i64,
    preload_min: i64,
}

fn rows(out: &str) -> Vec<Row> {
    out.lines()
        .filter_map(|l| l.strip_prefix("result "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_string();
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok()).unwrap_or(-1);
            Row { name, good: field("good"), same: field("same"), syn: field("syn"), passive: field("passive"), native: field("native"), preload: field("preload"), native_min: field("native_min"), preload_min: field("preload_min") }
        })
        .collect()
}

/// Runs one group's script and checks every program of `expected`, with
/// the kernel's deferred connect (TFO_BACKEND=auto) and with the emulation
/// (as on kernels without TCP_FASTOPEN_CONNECT).
fn matrix(setup_and_cases: &str, expected: &[(&str, Class)]) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for backend in ["auto", "emulate"] {
        let netns = Netns {
            delay: Some(25),
            prime: true,
            // Client and server bits, and every listener takes Fast Open (0x400)
            // unless it sets its own queue (nginx's fastopen=256 does).
            sysctl: Some(0x403),
            // The defaults but the backend (loopback stays excluded).
            env: vec![("TFO_MODE".into(), "auto".into()), ("TFO_BACKEND".into(), backend.into())],
            time_limit: Some(600),
            ..Netns::default()
        };
        let (out, ok) = script(&netns, &format!("{PRELUDE}\n{setup_and_cases}"));
        eprintln!("--- {backend}\n{out}");
        assert!(ok, "{backend}: {out}");
        let rows = rows(&out);
        for &(name, class) in expected {
            let row = rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{backend}: no result for {name}\n{out}"));
            eprintln!("| {name} | {backend} | {} ms | {} ms | {}/3 | {}/3 | {class:?} |", row.native, row.preload, row.syn, row.passive);
            assert_eq!((row.good, row.same), (6, 3), "{name} ({backend}): every run right, preloaded replies as native\n{out}");
            let (syn, passive) = match class {
                Class::ClientFirst => (3, 3),
                Class::ServerFirst => (0, 3),
                Class::NotLoaded => (0, 0),
            };
            assert_eq!(
                (row.syn, row.passive),
                (syn, passive),
                "{name} ({class:?}, {backend}): SYNs with data, connections taken on a cookie\n{out}"
            );
            // Never slower than plain (a lost round trip is 50 ms here); the
            // fastest of each three, the least disturbed by a busy machine.
            assert!(
                row.preload_min <= row.native_min + 30 + row.native_min / 4,
                "{name} ({backend}): plain {} ms, preloaded {} ms at best\n{out}",
                row.native_min,
                row.preload_min
            );
        }
    }
}

/// Language runtimes and client libraries against an HTTP server and an
/// echo-style server: Ruby's Net::HTTP, Perl's HTTP::Tiny, PHP's
/// file_get_contents, Java's java.net.Socket, a tokio client, aria2c; and
/// a statically linked client, which libtfo cannot reach.
#[test]
fn runtimes_and_clients() {
    let cases = r#"
cat > $T/Client.java <<'JAVA'
import java.io.*;
import java.net.Socket;
public class Client {
    public static void main(String[] args) throws IOException {
        try (Socket s = new Socket("198.18.0.2", 8000)) {
            s.getOutputStream().write("GET /java HTTP/1.0\r\n\r\n".getBytes());
            BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream()));
            String line, last = null;
            while ((line = r.readLine()) != null) last = line;
            System.out.println(last);
        }
    }
}
JAVA
javac -d $T $T/Client.java
cat > $T/static.c <<'C'
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7100)};
	inet_pton(AF_INET, "198.18.0.2", &a.sin_addr);
	char reply[64] = "";
	if (connect(s, (struct sockaddr *)&a, sizeof a) || write(s, "hello static", 12) != 12 || shutdown(s, SHUT_WR)) return 1;
	if (read(s, reply, sizeof reply - 1) < 0) return 1;
	printf("%s\n", reply);
	return 0;
}
C
gcc -static -O2 -o $T/static $T/static.c
run_case ruby "hello from http /ruby" '$PRE ruby -rnet/http -e "print Net::HTTP.get(URI(%q(http://198.18.0.2:8000/ruby)))"'
run_case perl "hello from http /perl" '$PRE perl -MHTTP::Tiny -e "print HTTP::Tiny->new->get(q(http://198.18.0.2:8000/perl))->{content}"'
run_case php "hello from http /php" '$PRE php -r "echo file_get_contents(\"http://198.18.0.2:8000/php\");"'
run_case java "hello from http /java" '$PRE java -cp $T Client'
run_case tokio "got 16 bytes" '$PRE $TFO_ROOT/target/release/tfo-tokio-client 198.18.0.2:7100 "hello from tokio"'
run_case aria2c "hello from http /aria2" '$PRE aria2c -q --allow-overwrite=true -d $T -o aria2.$ON http://198.18.0.2:8000/aria2 && cat $T/aria2.$ON'
run_case static "got 12 bytes" '$PRE $T/static'
"#;
    matrix(
        cases,
        &[
            ("ruby", Class::ClientFirst),
            ("perl", Class::ClientFirst),
            ("php", Class::ClientFirst),
            ("java", Class::ClientFirst),
            ("tokio", Class::ClientFirst),
            ("aria2c", Class::ClientFirst),
            ("static", Class::NotLoaded),
        ],
    );
}

/// Clients of small servers: `dig +tcp` against dnsmasq, redis-cli against
/// redis-server, libmemcached's memccat against memcached, rsync against an
/// rsync daemon, `git clone git://` against git daemon, curl against nginx
/// listening with `fastopen=256`, and nginx as a reverse proxy run under
/// libtfo (its upstream connections get Fast Open; curl reaches it on
/// loopback, natively).
#[test]
fn small_servers_and_their_clients() {
    let cases = r#"
in_peer dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root --group=root \
	--listen-address=198.18.0.2 --bind-interfaces --port=5353 --address=/matrix.test/192.0.2.7 --pid-file= 2>/dev/null &
in_peer redis-server --bind 198.18.0.2 --port 6379 --save '' --appendonly no --protected-mode no --dir $T > /dev/null &
in_peer memcached -u root -l 198.18.0.2 -p 11211 -U 0 &
mkdir $T/rsync && echo "hello from rsync" > $T/rsync/file.txt
printf '[m]\npath = %s/rsync\nread only = yes\nuse chroot = no\nuid = root\ngid = root\n' $T > $T/rsyncd.conf
in_peer rsync --daemon --no-detach --config=$T/rsyncd.conf --address=198.18.0.2 --port=8730 &
git init -q $T/src && git -C $T/src -c user.name=m -c user.email=m@m commit -q --allow-empty -m "hello from git"
mkdir $T/git && git clone -q --bare $T/src $T/git/repo.git
in_peer git daemon --reuseaddr --base-path=$T/git --export-all --listen=198.18.0.2 --port=9418 &
nginx_conf() { # NAME LISTEN LOCATION
	mkdir -p $T/$1
	cat > $T/$1/nginx.conf <<NGINX
daemon off; user root; pid $T/$1/pid; error_log stderr error;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $T/$1; proxy_temp_path $T/$1; fastcgi_temp_path $T/$1; uwsgi_temp_path $T/$1; scgi_temp_path $T/$1;
	server { listen $2; location / { $3 } }
}
NGINX
}
nginx_conf origin "198.18.0.2:8080 fastopen=256" 'default_type text/plain; return 200 "hello from nginx\n";'
in_peer nginx -c $T/origin/nginx.conf &
# the proxies: one plain, one under libtfo
nginx_conf proxy-plain 127.0.0.1:8082 'proxy_pass http://198.18.0.2:8000;'
nginx_conf proxy-libtfo 127.0.0.1:8081 'proxy_pass http://198.18.0.2:8000;'
nginx -c $T/proxy-plain/nginx.conf &
env LD_PRELOAD=$TFO_LIB nginx -c $T/proxy-libtfo/nginx.conf &
wait_port 198.18.0.2 5353; wait_port 198.18.0.2 6379; wait_port 198.18.0.2 11211; wait_port 198.18.0.2 8730
wait_port 198.18.0.2 9418; wait_port 198.18.0.2 8080; wait_port 127.0.0.1 8081; wait_port 127.0.0.1 8082
in_peer bash -c 'exec 3<>/dev/tcp/198.18.0.2/11211; printf "set k 0 0 20\r\nhello from memcached\r\n" >&3; head -c 8 <&3' > /dev/null
run_case dig "192.0.2.7" '$PRE dig +tcp +short +tries=1 -p 5353 @198.18.0.2 matrix.test'
run_case redis "hello from redis" '$PRE redis-cli -h 198.18.0.2 -p 6379 echo "hello from redis"'
run_case memcached "hello from memcached" '$PRE memccat --servers=198.18.0.2:11211 k'
run_case rsync "hello from rsync" '$PRE rsync -q rsync://198.18.0.2:8730/m/file.txt $T/rsync.$ON && cat $T/rsync.$ON'
run_case git "hello from git" 'rm -rf $T/clone.$ON; $PRE git clone -q git://198.18.0.2/repo.git $T/clone.$ON && git -C $T/clone.$ON log --format=%s'
run_case nginx-fastopen "hello from nginx" '$PRE curl -s http://198.18.0.2:8080/'
run_case nginx-proxy "hello from http /proxied" 'curl -s http://127.0.0.1:$((8082 - ON))/proxied'
"#;
    matrix(
        cases,
        &[
            ("dig", Class::ClientFirst),
            ("redis", Class::ClientFirst),
            ("memcached", Class::ClientFirst),
            ("rsync", Class::ClientFirst),
            ("git", Class::ClientFirst),
            ("nginx-fastopen", Class::ClientFirst),
            ("nginx-proxy", Class::ClientFirst),
        ],
    );
}

/// The heavier servers: ssh against sshd, psql against PostgreSQL, the
/// mariadb client against MariaDB (whose server speaks first).
#[test]
fn ssh_postgresql_and_mariadb() {
    let cases = r#"
ssh-keygen -q -t ed25519 -N '' -f $T/host && ssh-keygen -q -t ed25519 -N '' -f $T/user
mkdir -p /run/sshd
in_peer /usr/sbin/sshd -D -e -f /dev/null -o ListenAddress=198.18.0.2:2222 -o HostKey=$T/host \
	-o AuthorizedKeysFile=$T/user.pub -o StrictModes=no -o UsePAM=no -o PermitRootLogin=yes -o PidFile=none 2>/dev/null &
pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
mkdir $T/pg $T/pgsock && chown nobody $T/pg $T/pgsock
as_nobody $pg/initdb -D $T/pg -U postgres --auth=trust --no-sync > /dev/null
echo "host all all 198.18.0.0/15 trust" >> $T/pg/pg_hba.conf
in_peer setpriv --reuid=nobody --regid=nogroup --clear-groups $pg/postgres -D $T/pg -c listen_addresses=198.18.0.2 \
	-c port=5432 -c unix_socket_directories=$T/pgsock -c fsync=off > /dev/null 2>&1 &
mariadb-install-db --no-defaults --datadir=$T/my --user=root --auth-root-authentication-method=normal --skip-test-db > /dev/null 2>&1
in_peer mariadbd --no-defaults --datadir=$T/my --user=root --bind-address=198.18.0.2 --port=3306 \
	--socket=$T/my.sock --pid-file=$T/my.pid --skip-grant-tables > /dev/null 2>&1 &
wait_port 198.18.0.2 2222; wait_port 198.18.0.2 5432; wait_port 198.18.0.2 3306
run_case ssh "hello from ssh" '$PRE ssh -F /dev/null -i $T/user -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -p 2222 root@198.18.0.2 echo hello from ssh'
run_case psql "hello from psql" '$PRE psql -X -h 198.18.0.2 -p 5432 -U postgres -Atc "select \$\$hello from psql\$\$"'
run_case mariadb "hello from mariadb" '$PRE mariadb --no-defaults -h 198.18.0.2 -P 3306 -u root -N -e "select \"hello from mariadb\""'
"#;
    matrix(cases, &[("ssh", Class::ClientFirst), ("psql", Class::ClientFirst), ("mariadb", Class::ServerFirst)]);
}
