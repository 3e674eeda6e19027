//! Test harness for libtfo: runs the C programs of `examples/` in private
//! network namespaces (through `tests/in-netns`), natively with the
//! kernel's own TCP_FASTOPEN_CONNECT and under `LD_PRELOAD=libtfo.so`, and
//! compares what they print.
//!
//! The artifacts are built by `make` (`make test` builds, then runs this).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn library() -> PathBuf {
    artifact(root().join("target/release/libtfo.so"))
}

pub fn example(name: &str) -> PathBuf {
    artifact(root().join("target/examples").join(name))
}

fn artifact(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run `make test` (it builds everything first)", path.display());
    path
}

/// How a program runs: natively or with libtfo preloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Native,
    Shim,
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
    /// Extra environment for the command.
    pub env: Vec<(String, String)>,
}

impl Netns {
    pub fn primed() -> Self {
        Netns { prime: true, ..Netns::default() }
    }

    /// Runs `command` in a fresh namespace and returns its output.
    pub fn run(&self, mode: Mode, command: &[&str]) -> Output {
        let mut cmd = Command::new(root().join("tests/in-netns"));
        if self.prime {
            cmd.arg("--prime");
        }
        if let Some(v) = self.sysctl {
            cmd.args(["--sysctl", &v.to_string()]);
        }
        if self.counters {
            cmd.arg("--counters");
        }
        if mode == Mode::Shim {
            cmd.arg("--preload").env("TFO_LIB", library());
        }
        cmd.env("TFO_EXAMPLES", root().join("target/examples"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--").args(command);
        cmd.output().expect("cannot run tests/in-netns")
    }

    /// The trace printed by `tfo_trace ADDRESS 7000 STEPS...`.
    pub fn trace(&self, mode: Mode, address: &str, steps: &[&str]) -> String {
        let trace = example("tfo_trace");
        let mut command = vec![trace.to_str().unwrap(), address, "7000"];
        command.extend_from_slice(steps);
        let out = self.run(mode, &command);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode:?} run failed ({}):\n{stdout}\n{stderr}", out.status);
        stdout
    }
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

/// Two traces in columns, mismatching lines marked with `!`.
pub fn side_by_side(native: &str, shim: &str) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (native.lines().collect(), shim.lines().collect());
    let mut out = format!("  {:<56} | {}\n", "kernel (native)", "libtfo (shim)");
    for i in 0..a.len().max(b.len()) {
        let (l, r) = (a.get(i).copied().unwrap_or(""), b.get(i).copied().unwrap_or(""));
        out += &format!("{} {l:<56} | {r}\n", if l == r { ' ' } else { '!' });
    }
    out
}

/// The value of a `counter NAME VALUE` line printed by `--counters`.
pub fn counter(output: &str, name: &str) -> Option<i64> {
    output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == "counter" && words.next()? == name).then(|| words.next()?.parse().ok())?
    })
}
