//! The delay relay as a middlebox (`tests/in-netns --syn-data`): the
//! kernel's own Fast Open client meets a path that drops, resets or strips
//! SYNs carrying data, and reacts as it does in the field.

use tfo_tests::{counter, example, relay_count, root, Mode, Netns};

/// Runs, after the priming connection (cookie cached), one repeat with the
/// seed client (timed), one with fastopen_info.py (TCP_INFO), then prints
/// the server namespace's passive opens and the client's Fast Open counters.
/// Returns (stdout, stderr).
fn repeat_through(mode: &str) -> (String, String) {
    let client = example("tfo_client");
    let info = root().join("tests/programs/fastopen_info.py");
    let script = format!(
        r#"s=$(date +%s%N); {client} 198.18.0.2 7000 hi; echo "client exit $?"
        echo "elapsed $((($(date +%s%N) - s) / 1000000))"
        python3 {info} 198.18.0.2 7000 hey
        nsenter --net="$TFO_PEER_NETNS" nstat -az TcpPassiveOpens TcpExtTCPFastOpenPassive | awk '/^Tcp/ {{print "server", $1, $2}}'"#,
        client = client.display(),
        info = info.display()
    );
    let netns = Netns { prime: true, delay: Some(25), syn_data: Some(mode.into()), counters: true, ..Netns::default() };
    let out = netns.run(Mode::Native, &["bash", "-c", &script]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{mode}: {}\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

fn value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(prefix)).map(str::trim)
}

fn server(text: &str, name: &str) -> Option<u64> {
    value(text, &format!("server {name} "))?.parse().ok()
}

/// A SYN with data that vanishes: the client retransmits a plain SYN after
/// its one-second timeout, then sends the data; TCP_INFO says fail 3.
#[test]
fn dropped_syn_data_costs_a_retransmission_timeout() {
    let (out, err) = repeat_through("drop");
    assert_eq!(relay_count(&err, "syn_data_dropped"), Some(2), "{err}");
    assert_eq!(value(&out, "reply:"), Some("hi"), "{out}");
    assert_eq!(value(&out, "data in SYN acknowledged:"), Some("no"), "{out}");
    let ms: u64 = value(&out, "elapsed").unwrap().parse().unwrap();
    assert!(ms >= 1000, "the plain SYN should leave after the initial RTO (1 s): {ms} ms\n{out}");
    assert_eq!(value(&out, "fastopen_client_fail:"), Some("3"), "{out}");
    assert_eq!(value(&out, "syn_data_acked:"), Some("0"), "{out}");
    assert_eq!(counter(&out, "TcpExtTCPFastOpenActiveFail"), Some(2), "{out}");
    assert_eq!(server(&out, "TcpExtTCPFastOpenPassive"), Some(0), "{out}");
}

/// A SYN with data answered by a RST: the blocking write that carried it
/// fails with ECONNREFUSED and the server never hears of the connection.
#[test]
fn reset_syn_data_refuses_the_connection() {
    let (out, err) = repeat_through("reset");
    assert_eq!(relay_count(&err, "syn_data_reset"), Some(2), "{err}");
    assert!(err.contains("write: Connection refused"), "{err}");
    assert_eq!(value(&out, "client exit"), Some("1"), "{out}");
    assert_eq!(value(&out, "error:"), Some("ECONNREFUSED"), "{out}");
    // The priming connection is the only one the server accepted.
    assert_eq!(server(&out, "TcpPassiveOpens"), Some(1), "{out}");
}

/// A SYN whose data is stripped: the server sees a data-less SYN with a
/// valid cookie (a Fast Open child without data), the client resends the
/// data after the handshake; TCP_INFO says fail 2.
#[test]
fn stripped_syn_data_is_sent_again_after_the_handshake() {
    let (out, err) = repeat_through("strip");
    assert_eq!(relay_count(&err, "syn_data_stripped"), Some(2), "{err}");
    assert_eq!(value(&out, "reply:"), Some("hi"), "{out}");
    assert_eq!(value(&out, "data in SYN acknowledged:"), Some("no"), "{out}");
    assert_eq!(value(&out, "fastopen_client_fail:"), Some("2"), "{out}");
    let ms: u64 = value(&out, "elapsed").unwrap().parse().unwrap();
    assert!(ms < 1000, "no retransmission timeout when only the data is lost: {ms} ms\n{out}");
    // The cookie survived the stripping: the server accepted it.
    assert_eq!(server(&out, "TcpExtTCPFastOpenPassive"), Some(2), "{out}");
}

/// Control: the same path without --syn-data lets the data through, so the
/// three tests above can tell a mistreating path from a working one.
#[test]
fn untouched_syn_data_is_acknowledged() {
    let info = root().join("tests/programs/fastopen_info.py");
    let netns = Netns { prime: true, delay: Some(25), ..Netns::default() };
    let out = netns.run(Mode::Native, &["python3", info.to_str().unwrap(), "198.18.0.2", "7000", "hey"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(value(&stdout, "syn_data_acked:"), Some("1"), "{stdout}");
    assert_eq!(value(&stdout, "fastopen_client_fail:"), Some("0"), "{stdout}");
}
