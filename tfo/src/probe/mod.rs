//! `tfo probe HOST[:PORT]`: does TCP Fast Open work between this host and a
//! server, and if not, what breaks it?
//!
//! Plain connections give the baseline and show the server answers; a first
//! Fast Open connection asks for a cookie; repeats carry the request in the
//! SYN. The kernel's own TCP_FASTOPEN_CONNECT does the work (never libtfo:
//! the probe tests the path, not the library), TCP_INFO tells whether the
//! data in the SYN was acknowledged and why not, and the kernel's tcp_metrics
//! cache (cookie-store) whether a cookie came back.

mod connection;
mod namespace;
mod report;
mod request;
mod target;

use connection::Kind;
use report::{Connection, ConnectionKind, Cookie, Report, EXIT_USAGE};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The server: HOST, HOST:PORT, IPV6 or [IPV6]:PORT (port 80 by default).
    target: String,
    /// Plain and Fast Open repeat connections to time (medians of N).
    #[arg(long, short = 'n', default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    count: u32,
    /// Seconds each connection may take (and name resolution).
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    timeout: f64,
    /// Print the findings as JSON (same facts as the text).
    #[arg(long)]
    json: bool,
    /// Send this request (the server must answer it).
    #[arg(long, group = "what")]
    request: Option<String>,
    /// Send a minimal HTTP HEAD request (the default, except on port 443).
    #[arg(long, group = "what")]
    http: bool,
    /// Send a TLS ClientHello (the default on port 443).
    #[arg(long, group = "what")]
    tls: bool,
    /// Only IPv4 addresses.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6 addresses.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 600.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds between 0 and 600")),
    }
}

pub fn run(args: Args) -> ExitCode {
    without_libtfo();
    let (mut report, addresses, payload) = match prepare(&args) {
        Ok(ready) => ready,
        Err(message) => {
            eprintln!("tfo probe: {message}");
            if args.json {
                println!("{}", serde_json::json!({ "error": message, "exit_code": EXIT_USAGE }));
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !args.json {
        print!("{}", report.header());
        let _ = std::io::stdout().flush();
    }
    probe(&mut report, &addresses, &payload, Duration::from_secs_f64(args.timeout));
    report.conclude();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report serialises"));
    } else {
        print!("{}", report.render());
    }
    ExitCode::from(report.exit_code)
}

/// Parses and resolves the target and builds the request: every way the
/// probe can fail before it connects (exit status 2).
fn prepare(args: &Args) -> Result<(Report, Vec<SocketAddr>, Vec<u8>), String> {
    let target = target::parse(&args.target)?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => target::Family::V4,
        (_, true) => target::Family::V6,
        _ => target::Family::Any,
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let addresses = target::resolve(&target, family, timeout)?;
    let kind = match (&args.request, args.http, args.tls) {
        (Some(_), _, _) => request::Kind::Text,
        (_, true, _) => request::Kind::Http,
        (_, _, true) => request::Kind::Tls,
        _ if target.port == 443 => request::Kind::Tls,
        _ => request::Kind::Http,
    };
    let payload = match kind {
        request::Kind::Text => args.request.clone().unwrap_or_default().into_bytes(),
        request::Kind::Http => request::http_head(&target.host, target.port),
        request::Kind::Tls => {
            let random = request::random().map_err(|e| format!("no random bytes for the ClientHello: {e}"))?;
            let sni = (!target::is_literal(&target.host)).then_some(target.host.as_str());
            request::tls_client_hello(sni, &random)
        }
    };
    if payload.is_empty() {
        return Err("--request is empty: the SYN needs data to carry".into());
    }
    let namespace = namespace::Namespace::read();
    let report = Report {
        host: target.host,
        port: target.port,
        address: addresses[0].ip().to_string(),
        request: report::Request { kind, bytes: payload.len() },
        count: args.count,
        timeout_ms: args.timeout * 1000.0,
        client_enabled: namespace.client_enabled(),
        namespace,
        reachable: false,
        server_spoke_first: false,
        cookie: Cookie::default(),
        connections: vec![],
        repeats: 0,
        repeats_acked: 0,
        fastopen_client_fail: None,
        ttfb_plain_ms: None,
        ttfb_fastopen_ms: None,
        saved_ms: None,
        rtt_ms: None,
        round_trips_saved: None,
        checks: vec![],
        notes: vec![],
        works: false,
        problem: None,
        exit_code: 0,
    };
    Ok((report, addresses, payload))
}

/// Makes the connections, stopping at the first sign the server cannot be
/// reached, so a refused or filtered port costs one timeout at most.
fn probe(report: &mut Report, addresses: &[SocketAddr], payload: &[u8], timeout: Duration) {
    // The first plain connection also listens for a server that speaks
    // first; an unreachable address gives way to the next one (an IPv6
    // address without an IPv6 route, say).
    let mut addr = addresses[0];
    let mut first = connection::run(addr, Kind::Plain, payload, timeout, true);
    for next in &addresses[1..] {
        let unreachable = first.failure.as_ref().and_then(|f| f.errno()).is_some_and(|e| {
            [libc::ENETUNREACH, libc::EHOSTUNREACH, libc::EADDRNOTAVAIL, libc::EAFNOSUPPORT].contains(&e)
        });
        if !unreachable {
            break;
        }
        report.notes.push(format!("{} is unreachable ({}); probing {} instead", addr.ip(), first.failure.as_ref().unwrap().describe(), next.ip()));
        addr = *next;
        first = connection::run(addr, Kind::Plain, payload, timeout, true);
    }
    report.address = addr.ip().to_string();
    let reachable = first.failure.is_none();
    report.connections.push(Connection::new(ConnectionKind::Plain, first));
    if !reachable {
        return;
    }
    for _ in 1..report.count {
        let out = connection::run(addr, Kind::Plain, payload, timeout, false);
        report.connections.push(Connection::new(ConnectionKind::Plain, out));
    }
    if !report.client_enabled {
        return;
    }

    let (before, error) = cached_cookie(addr);
    report.cookie.cached_before = before.as_ref().map(|c| c.is_some());
    report.cookie.error = error;
    let out = connection::run(addr, Kind::FastOpen, payload, timeout, false);
    let first_failed = out.failure.is_some();
    report.connections.push(Connection::new(ConnectionKind::FastopenFirst, out));
    let (after, _) = cached_cookie(addr);
    if let Some(after) = &after {
        report.cookie.cached = Some(after.is_some());
        report.cookie.returned = Some(after.is_some() && before.as_ref().is_some_and(|b| b != after));
        report.cookie.length = after.as_ref().map(Vec::len);
    }
    if first_failed {
        return;
    }
    for _ in 0..report.count {
        let out = connection::run(addr, Kind::FastOpen, payload, timeout, false);
        let failed = out.failure.is_some();
        report.connections.push(Connection::new(ConnectionKind::FastopenRepeat, out));
        if failed {
            break; // one failure says it; more would each cost a timeout
        }
    }
    report.cookie.syn_drops = cookie_store::lookup(addr.ip(), None).ok().flatten().and_then(|m| m.fastopen_syn_drops);
}

/// The cookie the kernel holds for `addr` (Some(None): none), or why the
/// cache could not be read.
fn cached_cookie(addr: SocketAddr) -> (Option<Option<Vec<u8>>>, Option<String>) {
    match cookie_store::lookup(addr.ip(), None) {
        Ok(entry) => (Some(entry.filter(|m| m.has_cookie()).and_then(|m| m.fastopen_cookie)), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Runs this program again without libtfo when it is preloaded: the probe
/// must see the kernel's Fast Open, not the library's.
fn without_libtfo() {
    const AGAIN: &str = "_TFO_PROBE_WITHOUT_PRELOAD";
    let Some(preload) = std::env::var_os("LD_PRELOAD") else { return };
    let preload = preload.to_string_lossy().into_owned();
    let is_libtfo = |entry: &str| entry.rsplit('/').next().is_some_and(|file| file.starts_with("libtfo"));
    if std::env::var_os(AGAIN).is_some() || !preload.split([':', ' ']).any(is_libtfo) {
        return;
    }
    let kept: Vec<&str> = preload.split([':', ' ']).filter(|e| !e.is_empty() && !is_libtfo(e)).collect();
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(AGAIN, "1");
    if kept.is_empty() {
        cmd.env_remove("LD_PRELOAD");
    } else {
        cmd.env("LD_PRELOAD", kept.join(":"));
    }
    let err = cmd.exec(); // returns only on failure
    eprintln!("tfo probe: warning: cannot run again without libtfo ({err}); its Fast Open may stand in for the kernel's");
}
