//! `tfo probe` against local servers, each run in private namespaces
//! (tests/in-netns): the six situations of issue 18 told apart, once as text
//! and once, in a second fresh namespace, as JSON holding the same facts.

use serde_json::Value;
use tfo_tests::{example, relay_count, tfo_command, Mode, Netns};

struct Run {
    stdout: String,
    stderr: String,
    exit: i32,
    /// How long the probe itself took, in ms.
    elapsed_ms: u64,
}

/// Runs `setup` (bash), then `tfo probe ARGS`, in a fresh namespace.
fn run(netns: &Netns, setup: &str, args: &str) -> Run {
    let script = format!(
        "{setup}\ns=$(date +%s%N); {tfo} probe {args}; rc=$?\necho \"probe took $((($(date +%s%N) - s) / 1000000))\" >&2\nexit $rc",
        tfo = tfo_command().display()
    );
    let out = netns.run(Mode::Native, &["bash", "-c", &script]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let elapsed_ms = stderr.lines().find_map(|l| l.strip_prefix("probe took ")?.parse().ok()).expect("the probe did not run");
    Run { stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr, exit: out.status.code().unwrap_or(-1), elapsed_ms }
}

/// The probe's text and JSON reports of the same situation.
struct Probe {
    text: Run,
    json: Value,
    json_run: Run,
}

fn probe(netns: &Netns, setup: &str, args: &str) -> Probe {
    let text = run(netns, setup, args);
    let json_run = run(netns, setup, &format!("{args} --json"));
    let json: Value = serde_json::from_str(&json_run.stdout).unwrap_or_else(|e| panic!("--json output does not parse: {e}\n{}", json_run.stdout));
    let p = Probe { text, json, json_run };
    p.assert_same_facts();
    p
}

impl Probe {
    /// The text and the JSON agree: exit status, and each check's verdict
    /// (and its words, for those without measured times).
    fn assert_same_facts(&self) {
        let (text, json) = (&self.text.stdout, &self.json);
        assert_eq!(self.text.exit, self.json_run.exit, "text and JSON runs exit differently\n{text}\n{json:#}");
        assert_eq!(json["exit_code"], self.json_run.exit, "{json:#}");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(['✓', '✗', '-'])).collect();
        let checks = json["checks"].as_array().expect("checks");
        assert_eq!(lines.len(), checks.len(), "{text}\n{json:#}");
        for (line, check) in lines.iter().zip(checks) {
            let mark = match check["ok"].as_bool() {
                Some(true) => '✓',
                Some(false) => '✗',
                None => '-',
            };
            // Timings differ from run to run, and with them the time check
            // on a path without a measurable round trip (loopback).
            if check["name"] != "time" {
                assert!(line.starts_with(mark), "text says {line:?}, JSON says {check}");
            }
            if ["client", "cookie", "syn_data"].contains(&check["name"].as_str().unwrap()) {
                assert_eq!(&line[mark.len_utf8() + 1..], check["text"].as_str().unwrap(), "{text}\n{json:#}");
            }
        }
        let verdict = if json["works"] == true { "Fast Open works end to end" } else { "fix: " };
        assert!(text.contains(verdict), "{text}\n{json:#}");
    }

    fn text(&self) -> &str {
        &self.text.stdout
    }

    fn problem(&self) -> &str {
        self.json["problem"]["code"].as_str().unwrap_or("none")
    }

    fn context(&self) -> String {
        format!("{}\n{}\n{:#}", self.text.stdout, self.text.stderr, self.json)
    }
}

fn server() -> String {
    example("tfo_echo_server").display().to_string()
}

/// A Fast Open echo server 50 ms away: cookie, data acknowledged, one
/// round trip saved.
#[test]
fn fast_open_server_saves_a_round_trip() {
    let netns = Netns { delay: Some(25), ..Netns::default() };
    let p = probe(&netns, "", "198.18.0.2:7000 --request hello");
    let (text, json) = (p.text(), &p.json);
    assert_eq!(p.text.exit, 0, "{}", p.context());
    assert!(text.contains("✓ the server returned a cookie"), "{}", p.context());
    assert!(text.contains("✓ the SYN carrying data was acknowledged (3 of 3 repeats)"), "{}", p.context());
    assert!(text.contains("ms saved, "), "{}", p.context());
    assert_eq!((json["works"].as_bool(), json["repeats_acked"].as_u64(), json["repeats"].as_u64()), (Some(true), Some(3), Some(3)));
    assert_eq!(json["cookie"]["returned"], true, "{}", p.context());
    assert_eq!(json["fastopen_client_fail"], 0, "{}", p.context());
    // Physics bounds (two and one round trips of 50 ms), and a saving of at
    // least half a round trip: generous under load.
    let ms = |k: &str| json[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {}", p.context()));
    assert!(ms("ttfb_plain_ms") >= 100.0 && ms("ttfb_fastopen_ms") >= 50.0, "{}", p.context());
    assert!(ms("saved_ms") >= 25.0, "less than half a round trip saved: {}", p.context());
    assert!(json["problem"].is_null());
}

/// A listener without TCP_FASTOPEN: no cookie comes back.
#[test]
fn listener_without_fast_open_gives_no_cookie() {
    let setup = format!("{} -n -d 127.0.0.1 7002 > /dev/null", server());
    let p = probe(&Netns::default(), &setup, "127.0.0.1:7002 --request hello --count 2");
    assert_eq!((p.text.exit, p.problem()), (1, "no_cookie"), "{}", p.context());
    assert!(p.text().contains("✗ the server returned no cookie"), "{}", p.context());
    assert!(p.text().contains("TCP_FASTOPEN"), "the fix names the listener option: {}", p.context());
    assert_eq!(p.json["cookie"]["cached"], false);
    assert_eq!(p.json["fastopen_client_fail"], 1);
    assert_eq!(p.json["reachable"], true);
}

/// The server gave a cookie, then its listener came back without
/// TCP_FASTOPEN: the cookie is sent, the data is not acknowledged (fail 2).
#[test]
fn server_that_stopped_taking_syn_data() {
    let setup = format!(
        // The new listener binds once the old one is gone.
        "pid=$({server} -d 127.0.0.1 7002)\n{client} 127.0.0.1 7002 prime > /dev/null\nkill $pid\n\
         until {server} -n -d 127.0.0.1 7002 > /dev/null 2>&1; do sleep 0.02; done",
        server = server(),
        client = example("tfo_client").display()
    );
    let p = probe(&Netns::default(), &setup, "127.0.0.1:7002 --request hello --count 2");
    assert_eq!((p.text.exit, p.problem()), (1, "syn_data_ignored"), "{}", p.context());
    assert!(p.text().contains("✓ a cookie for the server is cached"), "{}", p.context());
    assert!(p.text().contains("✗ the SYN carrying data was not acknowledged (0 of 2 repeats)"), "{}", p.context());
    assert!(p.text().contains("tcpi_fastopen_client_fail 2"), "{}", p.context());
    assert_eq!(p.json["fastopen_client_fail"], 2);
    assert_eq!(p.json["cookie"]["cached_before"], true);
}

/// A path that drops SYNs carrying data (the relay's drop mode): the plain
/// SYN retransmitted after a second gets through (fail 3), a middlebox.
#[test]
fn path_dropping_syn_data() {
    let netns = Netns { delay: Some(25), syn_data: Some("drop".into()), ..Netns::default() };
    let p = probe(&netns, "", "198.18.0.2:7000 --request hello --count 1");
    assert!(relay_count(&p.text.stderr, "syn_data_dropped").is_some_and(|n| n >= 1), "the relay dropped nothing: {}", p.context());
    assert_eq!((p.text.exit, p.problem()), (1, "syn_data_dropped"), "{}", p.context());
    assert!(p.text().contains("tcpi_fastopen_client_fail 3"), "{}", p.context());
    assert!(p.text().contains("fix: exclude the destination from Fast Open where libtfo runs: TFO_EXCLUDE="), "{}", p.context());
    assert!(p.text().contains("198.18.0.2/32"), "{}", p.context());
    assert_eq!(p.json["fastopen_client_fail"], 3);
    assert_eq!(p.json["cookie"]["returned"], true, "the cookie request itself got through: {}", p.context());
    assert!(p.json["ttfb_fastopen_ms"].as_f64().unwrap() >= 1000.0, "no retransmission timeout? {}", p.context());
}

/// net.ipv4.tcp_fastopen = 2 in the client's namespace: server bit only.
#[test]
fn client_bit_off() {
    let netns = Netns { sysctl: Some(2), ..Netns::default() };
    let p = probe(&netns, "", "127.0.0.1:7000 --request hello --count 1");
    assert_eq!((p.text.exit, p.problem()), (1, "client_disabled"), "{}", p.context());
    assert!(p.text().contains("✗ Fast Open disabled for clients in this network namespace (net.ipv4.tcp_fastopen = 2"), "{}", p.context());
    assert!(p.text().contains("fix: sysctl -w net.ipv4.tcp_fastopen=3"), "{}", p.context());
    assert_eq!(p.json["namespace"]["tcp_fastopen"], 2);
    assert_eq!(p.json["client_enabled"], false);
    assert_eq!(p.json["reachable"], true, "plain connections still work: {}", p.context());
}

/// A port nobody listens on: refused at once, exit 1, well within the timeout.
#[test]
fn refused_port() {
    let p = probe(&Netns::default(), "", "127.0.0.1:7001 --timeout 3");
    assert_eq!((p.text.exit, p.problem()), (1, "refused"), "{}", p.context());
    assert!(p.text().contains("✗ the server cannot be reached: connect: Connection refused"), "{}", p.context());
    assert_eq!(p.json["reachable"], false);
    assert_eq!(p.json["connections"].as_array().unwrap().len(), 1, "one connection is enough: {}", p.context());
    assert!(p.text.elapsed_ms < 3000 && p.json_run.elapsed_ms < 3000, "{} / {} ms", p.text.elapsed_ms, p.json_run.elapsed_ms);
}

/// A filtered port (198.18.0.2 drops everything): bounded by --timeout.
#[test]
fn filtered_port_is_bounded_by_the_timeout() {
    let netns = Netns { blackhole: true, ..Netns::default() };
    let r = run(&netns, "", "198.18.0.2:7000 --timeout 1 --json");
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((r.exit, json["problem"]["code"].as_str()), (1, Some("timeout")), "{}", r.stdout);
    assert!(r.elapsed_ms >= 1000 && r.elapsed_ms < 5000, "took {} ms with --timeout 1", r.elapsed_ms);
}

/// Names that do not resolve and malformed targets: exit 2, nothing sent.
/// (In a namespace: the name lookup must not leave the machine.)
#[test]
fn usage_and_resolution_errors() {
    let cases = ["no-such-host.invalid --timeout 3", "'[::1'", "host:0", "h --http --tls", "h --count 0", "no-such-host.invalid --json --timeout 3"];
    let script: String = cases.iter().map(|args| format!("{} probe {args}; echo \"exit $?\"\n", tfo_command().display())).collect();
    let out = Netns::default().run(Mode::Native, &["bash", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exits: Vec<&str> = stdout.lines().filter(|l| l.starts_with("exit ")).collect();
    assert_eq!(exits, ["exit 2"; 6], "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 2);
    assert!(json["error"].as_str().unwrap().contains("cannot resolve no-such-host.invalid"), "{json}");
}

/// A server that greets first (SMTP-like): reported, and Fast Open still works.
#[test]
fn server_that_speaks_first() {
    let setup = format!("{} -d -b '220 probe.test ready' 127.0.0.1 7002 > /dev/null", server());
    let r = run(&Netns::default(), &setup, "127.0.0.1:7002 --request hello --count 1 --json");
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((r.exit, &json["server_spoke_first"], &json["works"]), (0, &Value::Bool(true), &Value::Bool(true)), "{json:#}");
    assert!(json["notes"].to_string().contains("speaks first"), "{json:#}");
}

/// Real servers answer the built-in requests: an HTTP server the HEAD
/// request, an OpenSSL TLS server the ClientHello (with a ServerHello: a
/// handshake record). net.ipv4.tcp_fastopen = 0x403 gives every listener
/// Fast Open, so both work end to end.
#[test]
fn http_and_tls_servers_answer_the_built_in_requests() {
    let setup = r#"
        dir=$(mktemp -d)
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key" -out "$dir/cert" -days 1 -subj /CN=probe.test 2> /dev/null
        openssl s_server -quiet -accept 127.0.0.1:7443 -cert "$dir/cert" -key "$dir/key" -www > /dev/null 2>&1 &
        python3 -m http.server -b 127.0.0.1 7080 > /dev/null 2>&1 &
        for port in 7443 7080; do
            for _ in $(seq 200); do (exec 3<> /dev/tcp/127.0.0.1/$port) 2> /dev/null && break; sleep 0.05; done
        done
    "#;
    let netns = Netns { sysctl: Some(0x403), ..Netns::default() };
    for (args, head) in [("127.0.0.1:7443 --tls", "16030"), ("127.0.0.1:7080 --http", "48545450")] {
        let r = run(&netns, setup, &format!("{args} --count 1 --json"));
        let json: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
        assert_eq!((r.exit, &json["works"]), (0, &Value::Bool(true)), "{args}: {json:#}\n{}", r.stderr);
        for c in json["connections"].as_array().unwrap() {
            assert!(c["reply_head"].as_str().unwrap().starts_with(head), "{args}: answer {c}");
        }
    }
}

/// Under LD_PRELOAD=libtfo.so the probe runs itself again without it, so
/// TCP_FASTOPEN_CONNECT reaches the kernel (libtfo would keep it); natively
/// it runs once.
#[test]
fn probe_uses_the_kernel_not_libtfo() {
    let tfo = tfo_command();
    let command = ["strace", "-f", "-qq", "-e", "trace=execve,setsockopt", "-e", "signal=none", tfo.to_str().unwrap(), "probe", "127.0.0.1:7000", "--request", "hi", "--count", "1"];
    for (mode, runs) in [(Mode::Native, 1), (Mode::Shim, 2)] {
        let out = Netns::default().run(mode, &command);
        let (stdout, trace) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{mode:?}: {stdout}\n{trace}");
        let execs = trace.lines().filter(|l| l.contains("execve(") && l.contains("tfo\", [")).count();
        assert_eq!(execs, runs, "{mode:?}:\n{trace}");
        assert!(trace.contains("TCP_FASTOPEN_CONNECT, [1], 4) = 0"), "{mode:?}: the option did not reach the kernel:\n{trace}");
        assert!(stdout.contains("Fast Open works end to end"), "{stdout}");
    }
}
