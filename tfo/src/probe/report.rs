//! What the probe found, the verdict drawn from it, and its two renderings:
//! lines with ✓/✗ for people, and the same facts as JSON (`--json`).

use super::connection::{Failure, Outcome, Stage};
use super::namespace::{self, Namespace};
use super::request;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// Exit status: Fast Open works end to end.
pub const EXIT_WORKS: u8 = 0;
/// It does not (or the server cannot be reached).
pub const EXIT_FAILS: u8 = 1;
/// Bad usage, or the name does not resolve.
pub const EXIT_USAGE: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionKind {
    /// An ordinary connection: the baseline.
    Plain,
    /// The first Fast Open connection: asks for a cookie (unless one is cached).
    FastopenFirst,
    /// A Fast Open connection after it: the request rides in the SYN.
    FastopenRepeat,
}

#[derive(Debug, Serialize)]
pub struct Connection {
    pub kind: ConnectionKind,
    pub ttfb_ms: Option<f64>,
    pub handshake_ms: Option<f64>,
    pub reply_bytes: usize,
    /// The first bytes of the answer, in hex.
    pub reply_head: String,
    pub banner_bytes: usize,
    pub closed_without_reply: bool,
    pub error: Option<String>,
    pub errno: Option<i32>,
    pub timed_out: bool,
    pub syn_data_acked: Option<bool>,
    pub fastopen_client_fail: Option<u8>,
    pub retransmissions: Option<u32>,
    #[serde(skip)]
    pub failure: Option<Failure>,
}

impl Connection {
    pub fn new(kind: ConnectionKind, out: Outcome) -> Connection {
        Connection {
            kind,
            ttfb_ms: out.ttfb.map(ms),
            handshake_ms: out.handshake.map(ms),
            reply_bytes: out.reply_bytes,
            reply_head: out.reply_head.iter().map(|b| format!("{b:02x}")).collect(),
            banner_bytes: out.banner_bytes,
            closed_without_reply: out.closed_without_reply,
            error: out.failure.as_ref().map(Failure::describe),
            errno: out.failure.as_ref().and_then(Failure::errno),
            timed_out: out.failure.as_ref().is_some_and(|f| f.timed_out),
            syn_data_acked: out.info.map(|i| i.syn_data_acked),
            fastopen_client_fail: out.info.map(|i| i.fastopen_client_fail),
            retransmissions: out.info.map(|i| i.total_retrans),
            failure: out.failure,
        }
    }

    fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Cookie {
    /// A cookie for the destination was cached before the probe.
    pub cached_before: Option<bool>,
    /// ... after the first Fast Open connection.
    pub cached: Option<bool>,
    /// The server handed out a new cookie during the probe.
    pub returned: Option<bool>,
    pub length: Option<usize>,
    /// SYNs with data the kernel recorded as lost for the destination.
    pub syn_drops: Option<u16>,
    /// The kernel's cache (tcp_metrics) could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Request {
    pub kind: request::Kind,
    pub bytes: usize,
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// None: not checked (an earlier step failed), or for information only.
    pub ok: Option<bool>,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub reason: String,
    pub fix: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub host: String,
    pub port: u16,
    pub address: String,
    pub request: Request,
    pub count: u32,
    pub timeout_ms: f64,
    pub namespace: Namespace,
    pub client_enabled: bool,
    pub reachable: bool,
    pub server_spoke_first: bool,
    pub cookie: Cookie,
    pub connections: Vec<Connection>,
    pub repeats: usize,
    pub repeats_acked: usize,
    /// tcpi_fastopen_client_fail of the last Fast Open connection.
    pub fastopen_client_fail: Option<u8>,
    pub ttfb_plain_ms: Option<f64>,
    pub ttfb_fastopen_ms: Option<f64>,
    pub saved_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub round_trips_saved: Option<f64>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub works: bool,
    pub problem: Option<Problem>,
    pub exit_code: u8,
}

fn ms(d: Duration) -> f64 {
    tenths(d.as_secs_f64() * 1e3)
}

/// Rounded to one decimal, never -0.0 (which would print as a loss).
fn tenths(v: f64) -> f64 {
    (v * 10.0).round() / 10.0 + 0.0
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl Report {
    /// Fills in the medians, the checks, the verdict and the exit code from
    /// the connections and the cookie.
    pub fn conclude(&mut self) {
        let connections = std::mem::take(&mut self.connections);
        {
            let of = |kind| connections.iter().filter(move |c: &&Connection| c.kind == kind);
            let plain: Vec<&Connection> = of(ConnectionKind::Plain).collect();
            let repeats: Vec<&Connection> = of(ConnectionKind::FastopenRepeat).collect();
            let first = of(ConnectionKind::FastopenFirst).next();
            let last = repeats.last().copied().or(first);

            self.reachable = plain.iter().any(|c| c.ok());
            self.server_spoke_first = plain.iter().any(|c| c.banner_bytes > 0);
            self.repeats = repeats.len();
            self.repeats_acked = repeats.iter().filter(|c| c.syn_data_acked == Some(true)).count();
            self.fastopen_client_fail = last.and_then(|c| c.fastopen_client_fail);
            self.ttfb_plain_ms = median(plain.iter().filter(|c| c.ok()).filter_map(|c| c.ttfb_ms).collect());
            self.ttfb_fastopen_ms = median(repeats.iter().filter(|c| c.ok()).filter_map(|c| c.ttfb_ms).collect());
            self.rtt_ms = median(plain.iter().filter_map(|c| c.handshake_ms).collect());
            if let (Some(p), Some(f)) = (self.ttfb_plain_ms, self.ttfb_fastopen_ms) {
                self.saved_ms = Some(tenths(p - f));
                self.round_trips_saved = self.rtt_ms.filter(|&r| r >= 1.0).map(|r| tenths((p - f) / r));
            }
            self.works =
                self.client_enabled && last.is_some_and(|c| c.ok() && c.syn_data_acked == Some(true)) && repeats.iter().all(|c| c.ok());
            self.problem = if self.works { None } else { Some(self.diagnose(&plain, first, &repeats)) };
            self.exit_code = if self.works { EXIT_WORKS } else { EXIT_FAILS };
            self.checks = self.checks(&plain, first, &repeats);
            self.add_notes(&connections, &repeats);
        }
        self.connections = connections;
    }

    /// Why Fast Open does not work, and what to do about it.
    fn diagnose(&self, plain: &[&Connection], first: Option<&Connection>, repeats: &[&Connection]) -> Problem {
        let dest = &self.address;
        let exclude = format!(
            "exclude the destination from Fast Open where libtfo runs: TFO_EXCLUDE=127.0.0.0/8,::1/128,{dest}/{} \
             (libtfo's failure memory also backs off from it by itself)",
            if dest.contains(':') { 128 } else { 32 }
        );
        let server_fix = "on the server: give the listening socket the TCP_FASTOPEN option (or run the server under libtfo \
                          with TFO_SERVER=1) and set bit 0x2 of net.ipv4.tcp_fastopen"
            .to_string();
        if !self.reachable {
            let failure = plain.first().and_then(|c| c.failure.as_ref());
            let (code, reason, fix) = match failure.and_then(Failure::errno) {
                _ if failure.is_some_and(|f| f.timed_out) => (
                    "timeout",
                    format!("no answer from {dest} port {} within {} s: the port is filtered or the host is down", self.port, self.timeout_ms / 1000.0),
                    "check the address, the port and firewalls on the way; or allow more time with --timeout".to_string(),
                ),
                Some(libc::ECONNREFUSED) => (
                    "refused",
                    format!("connection refused: nothing listens on {dest} port {}", self.port),
                    "check the port, and that the server runs".to_string(),
                ),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL) => (
                    "unreachable",
                    format!("{dest} is unreachable from here ({})", failure.map_or(String::new(), Failure::describe)),
                    if dest.contains(':') { "check IPv6 routing here, or probe over IPv4 with -4".into() } else { "check the route to the server".into() },
                ),
                _ => (
                    "unreachable",
                    format!("the server cannot be reached: {}", failure.map_or("no connection".into(), Failure::describe)),
                    "check the address and the port".to_string(),
                ),
            };
            return Problem { code, reason, fix };
        }
        if !self.client_enabled {
            let v = self.namespace.tcp_fastopen.unwrap_or(0);
            return Problem {
                code: "client_disabled",
                reason: format!("Fast Open is disabled for clients in this network namespace (net.ipv4.tcp_fastopen = {v}, bit 0x1 off)"),
                fix: format!("sysctl -w net.ipv4.tcp_fastopen={} (bit 0x1 enables clients; the other bits kept)", v | namespace::CLIENT),
            };
        }
        // A Fast Open connection that failed outright, while plain ones work.
        if let Some(c) = first.into_iter().chain(repeats.iter().copied()).find(|c| !c.ok()) {
            let f = c.failure.as_ref().unwrap();
            return match f.errno() {
                _ if f.stage == Stage::Setsockopt => Problem {
                    code: "client_disabled",
                    reason: format!("the kernel refuses TCP_FASTOPEN_CONNECT ({})", f.describe()),
                    fix: "a kernel with TCP Fast Open (4.11 or later) and bit 0x1 of net.ipv4.tcp_fastopen".into(),
                },
                Some(libc::ECONNREFUSED | libc::ECONNRESET) => Problem {
                    code: "syn_data_reset",
                    reason: format!(
                        "a Fast Open SYN was answered with a reset ({}) while plain connections work: a middlebox resets SYNs carrying data",
                        f.describe()
                    ),
                    fix: exclude,
                },
                _ if f.timed_out => Problem {
                    code: "fastopen_timeout",
                    reason: "a Fast Open connection got no answer within the timeout while plain connections work: the path drops SYNs carrying data"
                        .into(),
                    fix: exclude,
                },
                _ => Problem { code: "fastopen_error", reason: format!("a Fast Open connection failed: {}", f.describe()), fix: exclude },
            };
        }
        let fail = self.fastopen_client_fail.unwrap_or(0);
        match fail {
            3 => Problem {
                code: "syn_data_dropped",
                reason: "SYNs carrying data are dropped on the path (tcpi_fastopen_client_fail 3: the SYN with data went unanswered, \
                         the plain SYN retransmitted after it got through): a middlebox; every attempt costs a retransmission timeout"
                    .into(),
                fix: exclude,
            },
            2 => Problem {
                code: "syn_data_ignored",
                reason: "the server acknowledged the SYN but not the data in it (tcpi_fastopen_client_fail 2): it gave a cookie once but no \
                         longer takes data in SYNs (its listener restarted without TCP_FASTOPEN, a new key, or bit 0x2 of its \
                         net.ipv4.tcp_fastopen off), or something on the path strips the data"
                    .into(),
                fix: server_fix,
            },
            1 => Problem {
                code: "no_cookie",
                reason: "the server returned no Fast Open cookie (tcpi_fastopen_client_fail 1): its listener lacks TCP_FASTOPEN or its \
                         net.ipv4.tcp_fastopen lacks bit 0x2 (or a middlebox strips the option)"
                    .into(),
                fix: server_fix,
            },
            _ if self.namespace.blackhole_events.is_some_and(|n| n > 0) => Problem {
                code: "blackhole_disabled",
                reason: format!("the kernel sent no data in the SYN: its blackhole detection has switched active Fast Open off ({})", self.namespace.blackhole_state()),
                fix: "wait for net.ipv4.tcp_fastopen_blackhole_timeout_sec to pass, and look for a middlebox on the path".into(),
            },
            _ => Problem {
                code: "not_attempted",
                reason: "the kernel sent no data in the SYN (no cookie used, tcpi_fastopen_client_fail 0)".into(),
                fix: "look at net.ipv4.tcp_fastopen and the route's fastopen_no_cookie attribute".into(),
            },
        }
    }

    fn checks(&self, plain: &[&Connection], first: Option<&Connection>, repeats: &[&Connection]) -> Vec<Check> {
        let mut checks = vec![];
        let sysctl = self.namespace.tcp_fastopen.map_or("unreadable".into(), |v| v.to_string());
        checks.push(Check {
            name: "client",
            ok: Some(self.client_enabled),
            text: format!(
                "Fast Open {} for clients in this network namespace (net.ipv4.tcp_fastopen = {sysctl}{}; {})",
                if self.client_enabled { "enabled" } else { "disabled" },
                if self.client_enabled { "" } else { ": bit 0x1 off" },
                self.namespace.blackhole_state()
            ),
        });
        let plain_failure = plain.iter().find_map(|c| c.failure.as_ref());
        checks.push(Check {
            name: "reachable",
            ok: Some(self.reachable),
            text: match (self.reachable, self.rtt_ms) {
                (true, Some(rtt)) => format!(
                    "the server answers plain TCP connections (handshake {rtt:.1} ms{})",
                    if self.server_spoke_first { "; it speaks first" } else { "" }
                ),
                _ => format!("the server cannot be reached: {}", plain_failure.map_or("no connection".into(), Failure::describe)),
            },
        });
        let not_checked = |name, what: &str| Check { name, ok: None, text: format!("{what}: not checked") };
        if first.is_none() {
            checks.push(not_checked("cookie", "cookie"));
            checks.push(not_checked("syn_data", "data in the SYN"));
            checks.push(not_checked("time", "time to first byte with Fast Open"));
            return checks;
        }
        checks.push(self.cookie_check(repeats));
        let fail = self.fastopen_client_fail.unwrap_or(0);
        let why = match fail {
            1 => ": no cookie (tcpi_fastopen_client_fail 1)".to_string(),
            2 => ": the server ignores data in the SYN (tcpi_fastopen_client_fail 2)".to_string(),
            3 => ": the SYN with data was lost, a plain SYN retransmitted (tcpi_fastopen_client_fail 3)".to_string(),
            _ => match repeats.iter().find_map(|c| c.failure.as_ref()) {
                Some(f) => format!(": {}", f.describe()),
                None => String::new(),
            },
        };
        let tally = format!("{} of {} repeat{}", self.repeats_acked, self.repeats, if self.repeats == 1 { "" } else { "s" });
        checks.push(Check {
            name: "syn_data",
            ok: Some(self.works),
            text: if self.works {
                format!("the SYN carrying data was acknowledged ({tally})")
            } else {
                format!("the SYN carrying data was not acknowledged ({tally}){why}")
            },
        });
        checks.push(match (self.ttfb_plain_ms, self.ttfb_fastopen_ms, self.saved_ms) {
            (Some(p), Some(f), Some(saved)) => {
                let trips = self.round_trips_saved.map_or(String::new(), |r| format!(", {r:.1} round trip{}", if r == 1.0 { "" } else { "s" }));
                let n = self.repeats.min(plain.len());
                // Information only where Fast Open fails (the cause is told
                // above) or below a millisecond (loopback: no round trip to save).
                let measurable = self.works && self.rtt_ms.is_some_and(|r| r >= 1.0);
                Check {
                    name: "time",
                    ok: measurable.then_some(saved > 0.0),
                    text: if saved >= 0.0 {
                        format!("time to first byte: plain {p:.1} ms, Fast Open {f:.1} ms (median of {n}): {saved:.1} ms saved{trips}")
                    } else {
                        format!("time to first byte: plain {p:.1} ms, Fast Open {f:.1} ms (median of {n}): {:.1} ms lost", -saved)
                    },
                }
            }
            _ => Check { name: "time", ok: None, text: "time to first byte with Fast Open: no answer to time".into() },
        });
        checks
    }

    fn cookie_check(&self, repeats: &[&Connection]) -> Check {
        let c = &self.cookie;
        let len = c.length.map_or(String::new(), |n| format!("{n} bytes, "));
        let (ok, text) = match (c.cached, c.returned, c.cached_before) {
            (Some(true), Some(true), _) => (true, format!("the server returned a cookie ({len}in the kernel's tcp_metrics)")),
            (Some(true), _, Some(true)) => {
                (true, format!("a cookie for the server is cached ({len}from an earlier connection; the server was not asked for a new one)"))
            }
            (Some(true), _, _) => (true, format!("a cookie for the server is cached ({len}in the kernel's tcp_metrics)")),
            (Some(false), _, _) => (false, "the server returned no cookie (none in the kernel's tcp_metrics)".into()),
            (None, _, _) => {
                let got = repeats.iter().any(|c| c.fastopen_client_fail.is_some_and(|f| f != 1));
                (got, format!("cookie: the kernel's cache is unreadable ({}); judged from TCP_INFO", c.error.as_deref().unwrap_or("?")))
            }
        };
        Check { name: "cookie", ok: Some(ok), text }
    }

    fn add_notes(&mut self, connections: &[Connection], repeats: &[&Connection]) {
        if self.server_spoke_first {
            self.notes.push("the server speaks first: the times are to its greeting, which Fast Open brings forward by a round trip too".into());
        }
        if connections.iter().any(|c| c.closed_without_reply) {
            self.notes.push("the server closed a connection without answering: the times are to its close; try --http, --tls or --request".into());
        }
        if self.works && self.repeats_acked < repeats.len() {
            self.notes.push(format!(
                "{} of {} repeats had their data refused before a later one was accepted (e.g. the server's key changed and it sent a new cookie)",
                repeats.len() - self.repeats_acked,
                repeats.len()
            ));
        }
        if let Some(n) = self.cookie.syn_drops.filter(|&n| n > 0) {
            self.notes.push(format!("the kernel has recorded {n} lost SYN{} with data for this destination", if n == 1 { "" } else { "s" }));
        }
    }

    /// The first line, printed before the connections are made.
    pub fn header(&self) -> String {
        let kind = match self.request.kind {
            request::Kind::Http => "an HTTP HEAD request",
            request::Kind::Tls => "a TLS ClientHello",
            request::Kind::Text => "the given request",
        };
        let name = if self.host == self.address { String::new() } else { format!(" ({})", self.address) };
        format!(
            "tfo probe: {}{name} port {}, {kind} ({} bytes), {} plain and 1 + {} Fast Open connections\n",
            self.host, self.port, self.request.bytes, self.count, self.count
        )
    }

    /// The report for people: one line per check, the verdict, the fix.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for c in &self.checks {
            let mark = match c.ok {
                Some(true) => '✓',
                Some(false) => '✗',
                None => '-',
            };
            let _ = writeln!(text, "{mark} {}", c.text);
        }
        for n in &self.notes {
            let _ = writeln!(text, "  note: {n}");
        }
        match &self.problem {
            None => {
                let _ = writeln!(text, "Fast Open works end to end to {} port {}.", self.address, self.port);
            }
            Some(p) if !self.reachable => {
                let _ = writeln!(text, "Fast Open cannot be tried: {}.", p.reason);
                let _ = writeln!(text, "fix: {}", p.fix);
            }
            Some(p) => {
                let _ = writeln!(text, "Fast Open does not work: {}.", p.reason);
                let _ = writeln!(text, "fix: {}", p.fix);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn milliseconds_keep_one_decimal() {
        assert_eq!(ms(Duration::from_micros(50_349)), 50.3);
        assert_eq!(tenths(-0.04).to_string(), "0");
    }
}
