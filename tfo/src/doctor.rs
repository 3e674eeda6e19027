//! `tfo doctor`: one check per thing libtfo depends on, each with its
//! verdict, the facts behind it and, when it fails, the fix.

use crate::cli::DoctorArgs;
use crate::kernel::{self, FASTOPEN_BITS, FASTOPEN_CLIENT};
use crate::{library, selftest};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The oldest kernel with everything libtfo needs: a Fast Open client for
/// IPv4 and IPv6 (MSG_FASTOPEN) and the tcp_metrics netlink family.
const MINIMUM_KERNEL: (u32, u32) = (3, 16);
/// TCP_INFO's tcpi_fastopen_client_fail appeared in Linux 5.5.
const CLIENT_FAIL_KERNEL: (u32, u32) = (5, 5);

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Pass,
    /// Works, with a limitation the summary names.
    Warn,
    /// Does not work; `fix` says what to do.
    Fail,
    /// Not checked; the summary says why.
    Skip,
}

impl Status {
    fn symbol(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        }
    }
}

#[derive(Serialize, Debug)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub summary: String,
    pub fix: Option<String>,
    pub facts: Value,
}

impl Check {
    fn new(name: &'static str, status: Status, summary: impl Into<String>, facts: Value) -> Self {
        Check { name, status, summary: summary.into(), fix: None, facts }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

pub fn doctor(args: DoctorArgs) -> ExitCode {
    let mut checks = vec![
        kernel_version(),
        fastopen_sysctl(),
        fastopen_connect_option(),
        client_fail_field(),
        tcp_metrics(),
        blackhole_detection(),
        broken_paths(),
    ];
    let (library_check, loadable) = library(args.lib.as_deref());
    checks.push(library_check);
    checks.push(live_self_test(loadable.as_deref()));
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "ok": ok, "checks": checks })).expect("plain values"));
    } else {
        for check in &checks {
            println!("{} {}", check.status.symbol(), check.summary);
            if let Some(fix) = &check.fix {
                let label = if check.status == Status::Fail { "fix" } else { "hint" };
                println!("    {label}: {fix}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn kernel_version() -> Check {
    let (release, version) = kernel::release();
    let facts = json!({ "release": release, "major": version.0, "minor": version.1 });
    if version >= MINIMUM_KERNEL {
        Check::new("kernel", Status::Pass, format!("kernel: Linux {release}"), facts)
    } else {
        Check::new(
            "kernel",
            Status::Fail,
            format!("kernel: Linux {release} is older than 3.16: no Fast Open client for both IPv4 and IPv6"),
            facts,
        )
        .fix("upgrade the kernel to 3.16 or later (4.11+ has TCP_FASTOPEN_CONNECT, 5.5+ reports dropped SYN data)")
    }
}

fn fastopen_sysctl() -> Check {
    const NAME: &str = "net.ipv4.tcp_fastopen";
    let value = match kernel::sysctl("net/ipv4/tcp_fastopen") {
        Ok(v) => v,
        Err(e) => {
            return Check::new("tcp_fastopen", Status::Fail, format!("{NAME}: cannot be read ({e})"), json!({}))
                .fix("a kernel with TCP Fast Open (3.7 or later) and /proc mounted")
        }
    };
    let bits: Vec<Value> = FASTOPEN_BITS
        .iter()
        .map(|&(bit, name, meaning)| json!({ "bit": bit, "name": name, "on": value & bit != 0, "meaning": meaning }))
        .collect();
    let explained: Vec<String> = FASTOPEN_BITS
        .iter()
        .map(|&(bit, name, _)| format!("{bit:#x} {} {}", name.replace('_', "-"), if value & bit != 0 { "on" } else { "off" }))
        .collect();
    let facts = json!({ "value": value, "bits": bits });
    let line = format!("{NAME} = {value} ({value:#x}) in this network namespace: {}", explained.join(", "));
    if value & FASTOPEN_CLIENT != 0 {
        return Check::new("tcp_fastopen", Status::Pass, line, facts);
    }
    let wanted = value | FASTOPEN_CLIENT;
    Check::new("tcp_fastopen", Status::Fail, format!("{line}; client Fast Open is off: no program gets it"), facts).fix(
        format!(
            "sysctl -w {NAME}={wanted} (as root, in this namespace); to keep it: \
             echo '{NAME} = {wanted}' > /etc/sysctl.d/60-tcp-fastopen.conf; \
             in a container: docker run --sysctl {NAME}={wanted}"
        ),
    )
}

fn fastopen_connect_option() -> Check {
    let probe = kernel::fastopen_connect_probe();
    let errno = probe.as_ref().err().and_then(std::io::Error::raw_os_error);
    let facts = json!({ "setsockopt_errno": errno });
    match errno {
        None | Some(libc::EOPNOTSUPP) => Check::new(
            "tcp_fastopen_connect",
            Status::Pass,
            "kernel has TCP_FASTOPEN_CONNECT (TFO_BACKEND=auto hands it the option)",
            facts,
        ),
        Some(libc::ENOPROTOOPT) => Check::new(
            "tcp_fastopen_connect",
            Status::Warn,
            "kernel lacks TCP_FASTOPEN_CONNECT (older than 4.11): libtfo emulates it (TFO_BACKEND=kernel would not work)",
            facts,
        ),
        Some(_) => Check::new(
            "tcp_fastopen_connect",
            Status::Fail,
            format!("TCP_FASTOPEN_CONNECT could not be probed: {}", probe.unwrap_err()),
            facts,
        )
        .fix("run tfo doctor where it may create TCP sockets (no seccomp filter or sandbox denying them)"),
    }
}

fn client_fail_field() -> Check {
    let (release, version) = kernel::release();
    let length = kernel::tcp_info_length().ok();
    let present = version >= CLIENT_FAIL_KERNEL;
    let facts = json!({ "present": present, "tcp_info_length": length });
    if present {
        Check::new(
            "tcpi_fastopen_client_fail",
            Status::Pass,
            format!(
                "kernel reports dropped SYN data (tcpi_fastopen_client_fail; TCP_INFO {} bytes)",
                length.map_or("?".to_owned(), |l| l.to_string())
            ),
            facts,
        )
    } else {
        Check::new(
            "tcpi_fastopen_client_fail",
            Status::Warn,
            format!(
                "Linux {release} has no tcpi_fastopen_client_fail (5.5+): libtfo's failure memory learns from \
                 resets only, not from dropped SYN data"
            ),
            facts,
        )
    }
}

fn tcp_metrics() -> Check {
    match cookie_store::dump() {
        Ok(entries) => {
            let cookies = entries.iter().filter(|m| m.has_cookie()).count();
            Check::new(
                "tcp_metrics",
                Status::Pass,
                format!(
                    "generic netlink tcp_metrics answers: {} entries in this namespace, {cookies} with a Fast Open cookie",
                    entries.len()
                ),
                json!({ "entries": entries.len(), "cookies": cookies }),
            )
        }
        Err(e) => Check::new(
            "tcp_metrics",
            Status::Fail,
            format!("generic netlink tcp_metrics does not answer ({e}): libtfo cannot see cookies and never defers connect()"),
            json!({ "error": e.to_string() }),
        )
        .fix("a kernel with the tcp_metrics netlink family (3.9 or later); a sandbox must allow NETLINK_GENERIC sockets"),
    }
}

fn blackhole_detection() -> Check {
    const NAME: &str = "net.ipv4.tcp_fastopen_blackhole_timeout_sec";
    let Ok(timeout) = kernel::sysctl("net/ipv4/tcp_fastopen_blackhole_timeout_sec") else {
        return Check::new("blackhole", Status::Skip, format!("{NAME}: not in this kernel (older than 4.10)"), json!({}));
    };
    let triggered = kernel::tcp_ext_counter("TCPFastOpenBlackhole");
    let facts = json!({ "timeout_sec": timeout, "triggered": triggered });
    if timeout == 0 {
        return Check::new(
            "blackhole",
            Status::Pass,
            format!("{NAME} = 0: blackhole detection off (the kernel never switches client Fast Open off by itself)"),
            facts,
        );
    }
    let meaning = format!(
        "{NAME} = {timeout}: when Fast Open SYNs or their replies seem dropped by a middlebox, the kernel turns \
         client Fast Open off in this namespace for {timeout} s, doubling on each repeat up to {} s",
        timeout * 64
    );
    match triggered {
        Some(n) if n > 0 => Check::new(
            "blackhole",
            Status::Warn,
            format!("{meaning}; it triggered {n} times here, so Fast Open may be off now (connections then go without it)"),
            facts,
        )
        .fix(format!("if the network does not drop Fast Open, sysctl -w {NAME}=0")),
        _ => Check::new("blackhole", Status::Pass, format!("{meaning}; it has not triggered here"), facts),
    }
}

/// libtfo's own finding: a path (the local side: a source address) on
/// which Fast Open broke, so libtfo gives none through it for a while.
fn broken_paths() -> Check {
    let dir = crate::failures::state_dir(None);
    let stopped = crate::failures::stopped_paths(&dir);
    let facts = json!({ "state_dir": dir, "stopped_paths": stopped });
    if stopped.is_empty() {
        return Check::new("network", Status::Pass, "no path of this machine's network was found to break Fast Open (libtfo's failure memory)", facts);
    }
    let list: Vec<String> = stopped
        .iter()
        .map(|p| {
            let why = failure_record::Reason::from_name(&p.reason).map_or("", failure_record::Reason::describe);
            format!("from {} ({why}, {} s left)", p.address, p.remaining_sec)
        })
        .collect();
    Check::new(
        "network",
        Status::Warn,
        format!("this machine's network was found to break Fast Open: libtfo gives none on the path {} (connections go plainly, as without libtfo)", list.join(", ")),
        facts,
    )
    .fix("a firewall or middlebox on the local network drops or resets Fast Open SYNs; `tfo failures` lists what was seen, `tfo forget` clears it (libtfo tries again by itself after the backoff)")
}

/// The library check, and the library when it loads.
fn library(explicit: Option<&Path>) -> (Check, Option<PathBuf>) {
    let found = match library::find(explicit) {
        Ok(found) => found,
        Err(library::NotFound(why)) => {
            let check = Check::new("library", Status::Fail, format!("libtfo: {why}"), json!({ "found": false }))
                .fix(library::ADVICE);
            return (check, None);
        }
    };
    let path = found.path;
    let facts = |loaded: bool, loader: &str| json!({ "found": true, "path": path, "how": found.how, "loads": loaded, "loader": loader });
    let outcome = std::env::current_exe().and_then(|exe| {
        let mut cmd = Command::new(exe);
        cmd.args(["inside", "maps"]).arg(&path);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TFO_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("LD_PRELOAD", &path).output()
    });
    match outcome {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "loaded" => (
            Check::new(
                "library",
                Status::Pass,
                format!("libtfo: {} ({}) loads into programs", path.display(), found.how),
                facts(true, ""),
            ),
            Some(path.clone()),
        ),
        Ok(out) => {
            let loader = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            (
                Check::new(
                    "library",
                    Status::Fail,
                    format!("libtfo: {} ({}) does not load: {}", path.display(), found.how, if loader.is_empty() { "no reason given" } else { &loader }),
                    facts(false, &loader),
                )
                .fix("rebuild it for this machine: make build, then make install"),
                None,
            )
        }
        Err(e) => (
            Check::new("library", Status::Fail, format!("libtfo: cannot start a test program: {e}"), facts(false, ""))
                .fix("run tfo doctor where it may start programs"),
            None,
        ),
    }
}

fn live_self_test(lib: Option<&Path>) -> Check {
    const NAME: &str = "self_test";
    let Some(lib) = lib else {
        return Check::new(NAME, Status::Skip, "live self-test: skipped (needs a libtfo that loads)", json!({}));
    };
    if !selftest::namespaces_available() {
        return Check::new(
            NAME,
            Status::Skip,
            "live self-test: skipped (cannot create a network namespace: not root, and user namespaces are off)",
            json!({}),
        )
        .fix("run tfo doctor as root, or allow user namespaces (sysctl -w user.max_user_namespaces=15000)");
    }
    let result = match selftest::run(lib) {
        Ok(result) => result,
        Err(e) => {
            return Check::new(NAME, Status::Fail, format!("live self-test: {e}"), json!({ "error": e.to_string() }))
                .fix("run `tfo doctor --json` for details")
        }
    };
    let facts = serde_json::to_value(&result).expect("plain struct");
    if let (Some(e), true) = (&result.error, result.not_permitted) {
        return Check::new(NAME, Status::Skip, format!("live self-test: skipped (not permitted to set up its network namespace here: {e})"), facts)
            .fix("in a container, run it with --privileged to include the live self-test");
    }
    if let Some(e) = &result.error {
        return Check::new(NAME, Status::Fail, format!("live self-test: could not set up the namespace: {e}"), facts)
            .fix("run tfo doctor as root");
    }
    let round = |mode: &str| result.rounds.iter().find(|r| r.mode == mode);
    let counter = |r: &selftest::Round| r.fastopen_active.map_or(String::new(), |n| format!(", TcpExtTCPFastOpenActive +{n}"));
    match (round("auto"), round("explicit")) {
        (Some(auto), _) if auto.passed() => Check::new(
            NAME,
            Status::Pass,
            format!(
                "live self-test: an unmodified client (TFO_MODE=auto) sent its second request in the SYN, \
                 and the server acknowledged it (TCPI_OPT_SYN_DATA{})",
                counter(auto)
            ),
            facts,
        ),
        (Some(auto), Some(explicit)) if explicit.passed() => Check::new(
            NAME,
            Status::Fail,
            format!(
                "live self-test: only a client that sets TCP_FASTOPEN_CONNECT got its second request into the SYN \
                 (TCPI_OPT_SYN_DATA{}); an unmodified client under TFO_MODE=auto did not ({})",
                counter(explicit),
                describe(auto)
            ),
            facts,
        )
        .fix("this libtfo has no auto mode: build and install the current one (make build, make install)"),
        (auto, explicit) => {
            let what: Vec<String> = [auto, explicit].into_iter().flatten().map(|r| format!("{}: {}", r.mode, describe(r))).collect();
            Check::new(NAME, Status::Fail, format!("live self-test: no Fast Open ({})", what.join("; ")), facts)
                .fix("run a client with `tfo run --log debug` to see what libtfo does, and check the lines above")
        }
    }
}

/// What happened to a round's connections, in a few words.
fn describe(round: &selftest::Round) -> String {
    if let Some(e) = &round.error {
        return e.clone();
    }
    let parts: Vec<String> = round
        .connections
        .iter()
        .enumerate()
        .map(|(i, c)| match (&c.error, c.echoed, c.syn_data_acked) {
            (Some(e), _, _) => format!("connection {}: {e}", i + 1),
            (None, false, _) => format!("connection {}: no echo", i + 1),
            (None, true, true) => format!("connection {}: data in SYN", i + 1),
            (None, true, false) if c.fastopen_client_fail != 0 => {
                format!("connection {}: no data in SYN (tcpi_fastopen_client_fail {})", i + 1, c.fastopen_client_fail)
            }
            (None, true, false) => format!("connection {}: no data in SYN", i + 1),
        })
        .collect();
    parts.join(", ")
}
