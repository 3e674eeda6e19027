//! FTP in passive mode, the shape of protocol where the server answers on
//! one connection only once the program's *other* connection exists: the
//! client connects the data connection (deferred: the host's cookie is
//! cached), sends RETR or LIST on the control connection and waits there.
//! libtfo must start the data connection although the program never
//! touches it before the reply: curl, wget, lftp and Python's ftplib take
//! the plain time and get the same bytes, natively and preloaded, with
//! both backends.
//!
//! The server is vsftpd at 198.18.0.2 (it answers RETR and LIST only once
//! it has accepted the data connection: without libtfo's fix the clients
//! stalled until its 60 s accept timeout), 50 ms away (`tests/in-netns --delay 25`); every listener of its
//! namespace takes Fast Open (sysctl 0x403), and `--prime` caches the
//! host's cookie, so every connection the clients make is deferred.

use tfo_tests::{auto_env, median, script, values, Netns};

/// The script: a server, then each client plainly and preloaded, three
/// times each; prints `ms CLIENT-HOW N`, `md5 CLIENT-HOW SUM` and the
/// server's count of Fast Open connections (`passive`).
const FTP_SCRIPT: &str = r#"
set -u
P=$TFO_PEER_NETNS; L="env LD_PRELOAD=$TFO_LIB"
for tool in curl wget lftp vsftpd; do command -v $tool > /dev/null || { echo "missing $tool (apt install $tool)"; exit 1; }; done
dir=$(mktemp -d); empty=$(mktemp -d); conf=$(mktemp); log=$(mktemp)
chmod 755 $dir $empty
head -c 200000 /dev/urandom > $dir/data.bin
echo "a small text file" > $dir/small.txt
chmod 644 $dir/*
# Anonymous, read-only, passive mode. vsftpd answers RETR and LIST only
# once it has accepted the data connection.
cat > $conf <<EOC
listen=YES
listen_ipv6=NO
listen_address=198.18.0.2
listen_port=2121
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$dir
no_anon_password=YES
pasv_enable=YES
pasv_address=198.18.0.2
connect_from_port_20=NO
seccomp_sandbox=NO
secure_chroot_dir=$empty
xferlog_enable=NO
EOC
nsenter --net="$P" vsftpd $conf > /dev/null 2>&1 &
for _ in $(seq 200); do nsenter --net="$P" bash -c "exec 3<>/dev/tcp/198.18.0.2/2121" 2>/dev/null && break; sleep 0.05; done
peer_counter() { nsenter --net="$P" nstat -asz "$1" 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
ftplib_client='import ftplib, sys, hashlib
f = ftplib.FTP(); f.connect("198.18.0.2", 2121); f.login()
parts = []; f.retrbinary("RETR data.bin", parts.append)
names = []; f.retrlines("NLST", names.append)
f.quit(); sys.stdout.write(hashlib.md5(b"".join(parts)).hexdigest() + " " + ",".join(sorted(names)) + "\n")'
run() {
	case $1 in
	curl) curl -s ftp://198.18.0.2:2121/data.bin | md5sum ;;
	wget) wget -q -O - ftp://198.18.0.2:2121/data.bin | md5sum ;;
	lftp) lftp -c "set net:max-retries 1; set net:timeout 20; set ftp:passive-mode on; open ftp://198.18.0.2:2121; cat data.bin; cls -1" | md5sum ;;
	ftplib) python3 -c "$ftplib_client" ;;
	esac
}
export -f run; export ftplib_client
passive_before=$(peer_counter TcpExtTCPFastOpenPassive)
for client in curl wget lftp ftplib; do
	for how in plain preload; do
		for i in 1 2 3; do
			pre=""; [ $how = preload ] && pre="$L TFO_LOG=debug TFO_LOG_FILE=$log.$client"
			t=$(date +%s%N)
			sum=$(timeout 15 $pre bash -c "run $client" 2>&1) || echo "failed $client $how: $sum"
			echo "ms $client-$how $((($(date +%s%N) - t) / 1000000))"
			echo "md5 $client-$how $(echo "$sum" | tr -d ' -' | tr '\n' ' ')"
		done
	done
done
echo "passive $(($(peer_counter TcpExtTCPFastOpenPassive) - passive_before))"
for client in curl wget lftp ftplib; do
	echo "deferred $client $(grep -c 'connect deferred' $log.$client)"
	echo "started-by-timer $client $(grep -c 'SYN sent without data (the program idles' $log.$client)"
done
rm -f $log.*
rm -rf $dir $empty $conf $log
"#;

fn ftp_clients_take_the_plain_time(backend: &str) {
    // Fast Open listeners everywhere (the passive data ports too), a
    // cookie cached for 198.18.0.2, RTT 50 ms.
    let netns = Netns { delay: Some(25), prime: true, sysctl: Some(0x403), time_limit: Some(600), env: auto_env(backend), ..Netns::default() };
    let (out, ok) = script(&netns, FTP_SCRIPT);
    eprintln!("{out}");
    assert!(ok && !out.contains("failed ") && !out.contains("missing "), "{out}");
    for client in ["curl", "wget", "lftp", "ftplib"] {
        let sums = |how: &str| {
            let key = format!("md5 {client}-{how} ");
            out.lines().filter_map(|l| l.strip_prefix(&key)).map(str::to_string).collect::<Vec<_>>()
        };
        let (plain, preload) = (sums("plain"), sums("preload"));
        assert_eq!(plain.len(), 3, "{client}\n{out}");
        assert!(plain.iter().all(|s| s.len() >= 32), "{client}: no checksum\n{out}");
        assert_eq!(plain, preload, "{client}: the same bytes\n{out}");
        let (p, l) = (median(values(&out, &format!("ms {client}-plain"))), median(values(&out, &format!("ms {client}-preload"))));
        // Several round trips each (50 ms): a stalled data connection
        // takes seconds (vsftpd's accept timeout, lftp's own 5 s); with the
        // cookie the preloaded transfers save a round trip or two (the
        // margin is for a loaded machine: the mechanism is checked below).
        assert!(p >= 100 && l <= p + 50, "{client}: plain {p} ms, preloaded {l} ms\n{out}");
        // Every connection deferred (control and data: 2 or more per
        // transfer), and each started by the program's own calls at once,
        // never left to libtfo's timer.
        assert!(values(&out, &format!("deferred {client}")).first().is_some_and(|&n| n >= 6), "{client}\n{out}");
        assert_eq!(values(&out, &format!("started-by-timer {client}")), [0], "{client}\n{out}");
    }
    // Every preloaded connection (control and data) carried the cookie:
    // the server took each on its SYN.
    assert!(values(&out, "passive").first().is_some_and(|&n| n >= 4 * 3 * 2), "{out}");
}

#[test]
fn ftp_passive_transfers_take_the_plain_time() {
    ftp_clients_take_the_plain_time("kernel");
}

#[test]
fn ftp_passive_transfers_with_the_emulation() {
    ftp_clients_take_the_plain_time("emulate");
}
