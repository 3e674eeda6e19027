//! Test harness for libtfo: runs the C programs of `examples/` in private
//! network namespaces (through `tests/in-netns`), natively with the
//! kernel's own TCP_FASTOPEN_CONNECT and under `LD_PRELOAD=libtfo.so`, and
//! compares what they print.
//!
//! The artifacts are built by `make` (`make test` builds, then runs this).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod fuzz;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// target/release/libtfo.so, or $TFO_TEST_LIB (a copy, also named libtfo.so, a long fuzz run uses
/// while the library is rebuilt).
pub fn library() -> PathBuf {
    artifact(std::env::var_os("TFO_TEST_LIB").map_or_else(|| root().join("target/release/libtfo.so"), PathBuf::from))
}

pub fn example(name: &str) -> PathBuf {
    artifact(root().join("target/examples").join(name))
}

/// What one callgrind run counted: the instructions, and the shared
/// objects it saw code running in (its `ob=` and `cob=` lines).
pub struct Callgrind {
    pub instructions: u64,
    pub objects: String,
}

/// Runs `program` under callgrind, with the environment `setup` gives it;
/// `name` tells this run's profile file apart. Fails when valgrind is
/// missing (a count that could not be taken proves nothing).
pub fn callgrind(name: &str, program: &Path, setup: impl FnOnce(&mut Command)) -> Callgrind {
    let out_file = root().join(format!("target/{name}-{}.callgrind", std::process::id()));
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out_file.display())).arg(program);
    setup(&mut cmd);
    let out = cmd.output().unwrap_or_else(|e| panic!("valgrind is needed for this test (Debian: apt install valgrind): {e}"));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind failed ({}):\n{text}", out.status);
    let line = text.lines().find(|l| l.contains("Collected")).unwrap_or_else(|| panic!("no instruction count from callgrind:\n{text}"));
    let profile = std::fs::read_to_string(&out_file).unwrap_or_else(|e| panic!("{}: {e}", out_file.display()));
    let _ = std::fs::remove_file(&out_file);
    let objects = profile.lines().filter(|l| l.starts_with("ob=") || l.starts_with("cob=")).collect::<Vec<_>>().join("\n");
    Callgrind { instructions: line.split_whitespace().last().unwrap().parse().unwrap(), objects }
}

/// The `tfo` command.
pub fn tfo_command() -> PathBuf {
    artifact(root().join("target/release/tfo"))
}

fn artifact(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run `make test` (it builds everything first)", path.display());
    path
}

/// How a program runs: natively, with libtfo preloaded in explicit mode
/// (emulating the option), in auto mode (the default; sockets that set the
/// option keep the kernel's semantics), or in explicit mode with
/// TFO_BACKEND=kernel (passing the option through).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Native,
    Shim,
    ShimAuto,
    KernelBackend,
    /// Explicit mode, the backend chosen by libtfo itself, on what looks
    /// like a kernel before 4.11 (tests/programs/tfo_oldkernel.c: a seccomp
    /// filter refuses TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE), so
    /// the emulation runs as it does there.
    OldKernel,
}

/// Options of one run in a fresh namespace.
#[derive(Clone, Debug, Default)]
pub struct Netns {
    /// Connect once first so the kernel caches a cookie for both servers.
    pub prime: bool,
    /// net.ipv4.tcp_fastopen (default 3).
    pub sysctl: Option<u32>,
    /// Print the namespace's Fast Open counters after the command.
    pub counters: bool,
    /// Print the SYN, SYN-ACK and RST segments after the command.
    pub capture: bool,
    /// 198.18.0.2 drops everything sent to it.
    pub blackhole: bool,
    /// 198.18.0.2 is a Fast Open echo server in another namespace, behind
    /// a relay that delays each packet this many milliseconds each way.
    pub delay: Option<u32>,
    /// Every program the command starts loads this library through an
    /// /etc/ld.so.preload seen only inside the namespace.
    pub etc_preload: Option<PathBuf>,
    /// With `delay`: the relay drops (`drop`), answers with a RST (`reset`)
    /// or strips the data of (`strip`) SYNs carrying data towards 198.18.0.2,
    /// or drops every SYN carrying the Fast Open option (`option`).
    pub syn_data: Option<String>,
    /// With `syn_data`: only SYNs towards this address, and only the first
    /// this many of them.
    pub syn_data_to: Option<String>,
    pub syn_data_count: Option<u32>,
    /// With `delay`: the server namespace answers at 198.18.0.2 up to
    /// 198.18.0.(peers+1), destinations sharing one path.
    pub peers: Option<u32>,
    /// With `delay`: the relay drops this percentage of the packets in
    /// each direction at random (seeded by `loss_seed`, default 1).
    pub loss: Option<f64>,
    pub loss_seed: Option<u64>,
    /// Seconds before the run is killed (default 60).
    pub time_limit: Option<u32>,
    /// Extra environment for the command.
    pub env: Vec<(String, String)>,
}

impl Netns {
    pub fn primed() -> Self {
        Netns { prime: true, ..Netns::default() }
    }

    /// Runs `command` in a fresh namespace and returns its output.
    pub fn run(&self, mode: Mode, command: &[&str]) -> Output {
        // No run may hang the suite: a stuck program is killed after 60 s
        // (or the run's own limit).
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &self.time_limit.unwrap_or(60).to_string()]).arg(root().join("tests/in-netns"));
        if self.prime {
            cmd.arg("--prime");
        }
        if let Some(v) = self.sysctl {
            cmd.args(["--sysctl", &v.to_string()]);
        }
        if self.counters {
            cmd.arg("--counters");
        }
        if self.capture {
            cmd.arg("--capture");
        }
        if self.blackhole {
            cmd.arg("--blackhole");
        }
        if let Some(ms) = self.delay {
            cmd.args(["--delay", &ms.to_string()]);
        }
        if let Some(lib) = &self.etc_preload {
            cmd.arg("--etc-preload").arg(lib);
        }
        if let Some(mode) = &self.syn_data {
            cmd.args(["--syn-data", mode]);
        }
        if let Some(to) = &self.syn_data_to {
            cmd.args(["--syn-data-to", to]);
        }
        if let Some(n) = self.syn_data_count {
            cmd.args(["--syn-data-count", &n.to_string()]);
        }
        if let Some(n) = self.peers {
            cmd.args(["--peers", &n.to_string()]);
        }
        if let Some(percent) = self.loss {
            cmd.args(["--loss", &percent.to_string()]);
        }
        if let Some(seed) = self.loss_seed {
            cmd.args(["--loss-seed", &seed.to_string()]);
        }
        if mode != Mode::Native {
            cmd.arg("--preload");
        }
        // Scripts preload programs themselves with $TFO_LIB.
        cmd.env("TFO_LIB", library()).env("TFO_ROOT", root());
        if mode == Mode::OldKernel {
            cmd.env_remove("TFO_BACKEND").env("TFO_MODE", "explicit");
        } else if mode != Mode::Native {
            cmd.env("TFO_BACKEND", if mode == Mode::KernelBackend { "kernel" } else { "emulate" });
            cmd.env("TFO_MODE", if mode == Mode::ShimAuto { "auto" } else { "explicit" });
        } else {
            // Scripts that preload programs themselves get the defaults.
            cmd.env_remove("TFO_BACKEND").env_remove("TFO_MODE");
        }
        cmd.env("TFO_EXAMPLES", root().join("target/examples"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--");
        if mode == Mode::OldKernel {
            cmd.arg(example("tfo_oldkernel"));
        }
        cmd.args(command);
        cmd.output().expect("cannot run tests/in-netns")
    }

    /// The trace printed by `tfo_trace ADDRESS 7000 STEPS...`.
    pub fn trace(&self, mode: Mode, address: &str, steps: &[&str]) -> String {
        let out = self.run_trace(mode, address, steps);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode:?} run failed ({}):\n{stdout}\n{stderr}", out.status);
        stdout
    }

    /// Runs `tfo_trace ADDRESS 7000 STEPS...`, and panics unless libtfo was
    /// mapped into it exactly when `mode` preloads it: a comparison
    /// without the library loaded would prove nothing.
    pub fn run_trace(&self, mode: Mode, address: &str, steps: &[&str]) -> Output {
        let trace = example("tfo_trace");
        let mut command = vec![trace.to_str().unwrap(), address, "7000"];
        command.extend_from_slice(steps);
        let mut netns = self.clone();
        netns.env.push(("TFO_TRACE_SHOW_PRELOAD".into(), "1".into()));
        let out = netns.run(mode, &command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = if mode == Mode::Native { "tfo_trace: libtfo not mapped" } else { "tfo_trace: libtfo mapped" };
        assert!(
            stderr.lines().any(|l| l == expected),
            "{mode:?} run of tfo_trace {address} {} did not say \"{expected}\" ({}):\n{stderr}",
            steps.join(" "),
            out.status
        );
        out
    }
}

/// The environment of a preloaded program in auto mode (`backend`: auto,
/// kernel or emulate), loopback included so local servers count.
pub fn auto_env(backend: &str) -> Vec<(String, String)> {
    [("TFO_MODE", "auto"), ("TFO_BACKEND", backend), ("TFO_EXCLUDE", "none")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a bash script in the namespace (natively: the script preloads
/// what it wants with $TFO_LIB); stdout and stderr together, and whether it
/// succeeded.
pub fn script(netns: &Netns, script: &str) -> (String, bool) {
    let out = netns.run(Mode::Native, &["bash", "-c", script]);
    (format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)), out.status.success())
}

/// Every `KEY VALUE` line whose key is `key`, values parsed.
pub fn values(output: &str, key: &str) -> Vec<i64> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The median of some numbers.
pub fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Runs `steps` natively and under the shim, each in a fresh namespace, and
/// fails with both traces side by side unless they are identical.
pub fn assert_same_trace(netns: &Netns, address: &str, steps: &[&str]) -> String {
    let native = netns.trace(Mode::Native, address, steps);
    let shim = netns.trace(Mode::Shim, address, steps);
    if native != shim {
        panic!("traces differ for {address} {}:\n{}", steps.join(" "), side_by_side(&native, &shim));
    }
    native
}

/// One line of tests/scenarios.txt.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub netns: Netns,
    pub address: String,
    pub steps: Vec<String>,
}

/// The scenarios of tests/scenarios.txt.
pub fn scenarios() -> Vec<Scenario> {
    scenarios_in(&root().join("tests/scenarios.txt"))
}

/// The scenario lines of a file in the format of tests/scenarios.txt.
pub fn scenarios_in(path: &Path) -> Vec<Scenario> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(Scenario::parse).collect()
}

impl Scenario {
    /// Parses `name | options | address | steps`.
    pub fn parse(line: &str) -> Scenario {
        let fields: Vec<_> = line.split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 4, "bad scenario line: {line}");
        let mut netns = Netns::default();
        for option in fields[1].split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                None if option == "prime" => netns.prime = true,
                None if option == "capture" => netns.capture = true,
                None if option == "blackhole" => netns.blackhole = true,
                Some(("sysctl", v)) => netns.sysctl = Some(v.parse().unwrap()),
                Some(("delay", v)) => netns.delay = Some(v.parse().unwrap()),
                Some(("syn-data", v)) => netns.syn_data = Some(v.to_string()),
                _ => panic!("unknown option {option} in: {line}"),
            }
        }
        Scenario {
            name: fields[0].to_string(),
            netns,
            address: fields[2].to_string(),
            steps: fields[3].split_whitespace().map(String::from).collect(),
        }
    }

    /// The scenario as a line of tests/scenarios.txt (the inverse of `parse`).
    pub fn line(&self) -> String {
        let mut options = Vec::new();
        if let Some(v) = self.netns.sysctl {
            options.push(format!("sysctl={v}"));
        }
        if let Some(v) = self.netns.delay {
            options.push(format!("delay={v}"));
        }
        if let Some(v) = &self.netns.syn_data {
            options.push(format!("syn-data={v}"));
        }
        for (on, name) in [(self.netns.prime, "prime"), (self.netns.capture, "capture"), (self.netns.blackhole, "blackhole")] {
            if on {
                options.push(name.to_string());
            }
        }
        format!("{} | {} | {} | {}", self.name, options.join(","), self.address, self.steps.join(" "))
    }

    /// The trace of this scenario in `mode`.
    pub fn trace(&self, mode: Mode) -> String {
        let steps: Vec<&str> = self.steps.iter().map(String::as_str).collect();
        self.netns.trace(mode, &self.address, &steps)
    }
}

/// Two traces in columns, mismatching lines marked with `!`.
pub fn side_by_side(native: &str, shim: &str) -> String {
    side_by_side_titled(native, shim, "libtfo (shim)")
}

pub fn side_by_side_titled(native: &str, other: &str, title: &str) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (native.lines().collect(), other.lines().collect());
    let mut out = format!("  {:<56} | {}\n", "kernel (native)", title);
    for i in 0..a.len().max(b.len()) {
        let (l, r) = (a.get(i).copied().unwrap_or(""), b.get(i).copied().unwrap_or(""));
        out += &format!("{} {l:<56} | {r}\n", if l == r { ' ' } else { '!' });
    }
    out
}

/// The value of `NAME=VALUE` in the counts line the delay relay prints on
/// stderr when the run ends (`tfo-delay: counts forwarded_a_to_b=N ...`).
pub fn relay_count(stderr: &str, name: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.starts_with("tfo-delay: counts "))?;
    line.split_whitespace().find_map(|field| field.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The value of a `counter NAME VALUE` line printed by `--counters`.
pub fn counter(output: &str, name: &str) -> Option<i64> {
    output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == "counter" && words.next()? == name).then(|| words.next()?.parse().ok())?
    })
}

/// Blocks SIGTERM and SIGINT in this thread and the threads it starts
/// (they inherit the mask), so a tool can wait for them with sigwait and
/// report before it exits. Returns the set.
pub fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset; the mask
    // change affects only this thread and those it starts.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}
