//! The differential fuzzer: random call sequences (`generate`) run natively
//! (the kernel's own TCP_FASTOPEN_CONNECT) and under libtfo in explicit
//! emulation mode, and in auto mode where auto mode owes the kernel's
//! answers too, each in a fresh namespace; a divergence is shrunk
//! (`shrink`) to a minimal scenario line for tests/scenarios.txt.
//!
//! A divergence is named after its first differing line (the call, and
//! what each side answered, numbers left out), so the same defect found
//! by different sequences gets the same name: `fuzz-CALL-HASH`.

pub mod generate;
pub mod shrink;

use crate::{root, side_by_side_titled, Mode, Scenario};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// The trace of `scenario` in `mode` (`Netns::run` sets libtfo's mode and
/// backend from it: `Mode::Shim` is explicit mode, `Mode::ShimAuto` auto
/// mode, both emulating): stdout, and the exit status when it is not 0 (a
/// crash is a divergence too).
pub fn trace(scenario: &Scenario, mode: Mode) -> String {
    let steps: Vec<&str> = scenario.steps.iter().map(String::as_str).collect();
    let out = scenario.netns.run_trace(mode, &scenario.address, &steps);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text += &format!("exit: {}\n", out.status);
    }
    text
}

/// Whether auto mode owes this sequence the kernel's exact answers too:
/// its one socket set TCP_FASTOPEN_CONNECT (any value, successfully)
/// before anything could connect it, so auto mode leaves it to the
/// explicit semantics. Otherwise auto mode rightly makes a socket a Fast
/// Open connection of its own, which answers differently (connect()
/// returns at once), even towards loopback (an address such as `::` is
/// not in the loopback ranges auto mode excludes).
pub fn auto_owes_kernel_answers(scenario: &Scenario, native: &str) -> bool {
    if scenario.steps.iter().filter(|s| *s == "socket").count() != 1 {
        return false;
    }
    for line in native.lines() {
        let (step, result) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let name = step.split('=').next().unwrap_or("");
        if matches!(name, "setopt" | "setopt_len") || step.starts_with("set=fo_connect:") {
            if result.trim_start().starts_with("0") {
                return true;
            }
        } else if !matches!(name, "watchdog" | "pace" | "socket" | "nonblock" | "get" | "set" | "getopt" | "bind" | "getfl" | "cong" | "linger" | "rcvtimeo" | "sndtimeo") {
            return false;
        }
    }
    false
}

/// What comparing one sequence gave (a divergence is rare; its size does
/// not matter).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// The kernel's answers throughout; `auto`: auto mode's too.
    Same { auto: bool },
    /// Two native runs differed, or two libtfo runs differed differently:
    /// the sequence depends on timing, and says nothing.
    Flaky,
    Differs(Divergence),
}

#[derive(Clone, Debug)]
pub struct Divergence {
    pub scenario: Scenario,
    pub signature: String,
    pub native: String,
    pub shim: String,
    /// The libtfo run that differed: explicit or auto mode.
    pub mode: Mode,
}

impl Divergence {
    /// The scenario line, named after the signature, then both traces.
    pub fn report(&self) -> String {
        format!("{}\n{}", self.scenario.line(), self.sides())
    }

    /// Both traces side by side.
    pub fn sides(&self) -> String {
        let title = if self.mode == Mode::ShimAuto { "libtfo (auto mode)" } else { "libtfo (explicit mode)" };
        side_by_side_titled(&self.native, &self.shim, title)
    }
}

/// What a batch compares (`tfo-fuzz --mode`), for the whole process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Explicit mode with the emulation (TFO_BACKEND=emulate), and auto
    /// mode where it owes the kernel's answers: both against the kernel.
    Explicit,
    /// Explicit mode as on a kernel before 4.11 (`Mode::OldKernel`): libtfo
    /// finds the option refused and emulates it; against the kernel.
    OldKernel,
    /// Auto mode on sockets that never set the option, against its own
    /// invariants (`auto_violation`).
    Auto,
}

static TARGET: AtomicU8 = AtomicU8::new(0);

pub fn set_target(target: Target) {
    TARGET.store(target as u8, Ordering::Relaxed);
}

pub fn target() -> Target {
    match TARGET.load(Ordering::Relaxed) {
        1 => Target::OldKernel,
        2 => Target::Auto,
        _ => Target::Explicit,
    }
}

/// Runs `scenario` natively and under libtfo in explicit mode, then in auto
/// mode where that owes the kernel's answers too (or as `target()` says).
/// A difference counts once a second pair of runs repeats it: the same
/// native trace (deterministic natively) and the same first difference
/// under libtfo (not a race).
pub fn compare(scenario: &Scenario) -> Outcome {
    if target() == Target::Auto {
        return compare_auto(scenario);
    }
    if target() == Target::OldKernel && scenario.steps.iter().any(|s| s.starts_with("nocookie=") || s.starts_with("set=fo_nocookie")) {
        // TCP_FASTOPEN_NO_COOKIE (4.15) is refused there as it must be:
        // the kernel compared against has it.
        let mut scenario = scenario.clone();
        scenario.steps.retain(|s| !s.starts_with("nocookie=") && !s.starts_with("set=fo_nocookie"));
        return compare(&scenario);
    }
    let native = trace(scenario, Mode::Native);
    let auto = target() == Target::Explicit && auto_owes_kernel_answers(scenario, &native);
    let first = if target() == Target::OldKernel { Mode::OldKernel } else { Mode::Shim };
    for mode in [first, Mode::ShimAuto].into_iter().filter(|&m| m == first || auto) {
        let shim = trace(scenario, mode);
        if native == shim {
            continue;
        }
        let first_difference = signature_in(mode, &native, &shim);
        if trace(scenario, Mode::Native) != native || signature_in(mode, &native, &trace(scenario, mode)) != first_difference {
            return Outcome::Flaky;
        }
        let signature = first_difference;
        let mut scenario = scenario.clone();
        scenario.name = name(&signature);
        return Outcome::Differs(Divergence { scenario, signature, native, shim, mode });
    }
    Outcome::Same { auto }
}

/// Auto mode on sockets of their own (every option step taken out) against
/// its invariants; a violation counts once a second pair of runs repeats it.
fn compare_auto(scenario: &Scenario) -> Outcome {
    let mut scenario = scenario.clone();
    scenario.steps.retain(|s| !s.starts_with("setopt") && !s.starts_with("set=fo_connect"));
    let native = trace(&scenario, Mode::Native);
    let auto = trace(&scenario, Mode::ShimAuto);
    let Some(signature) = auto_violation(&native, &auto) else { return Outcome::Same { auto: true } };
    if auto_violation(&trace(&scenario, Mode::Native), &trace(&scenario, Mode::ShimAuto)).as_ref() != Some(&signature) {
        return Outcome::Flaky;
    }
    scenario.name = name(&signature);
    Outcome::Differs(Divergence { scenario, signature, native, shim: auto, mode: Mode::ShimAuto })
}

/// Steps that write, their result a count of bytes.
const WRITES: &[&str] = &[
    "write", "send", "sendto", "sendmsg", "writev", "send_dontwait", "sendf", "sendtoa", "sendmsga", "sendmsg_noiov", "writev_none",
    "sendfo", "sendfile", "sendfile64", "splice", "pwritev2", "write0",
];

/// Steps after which bytes cannot be counted from the trace: results that
/// count messages, other processes writing, other sockets.
const UNCOUNTED: &[&str] = &["sendmmsg", "sendmmsg_n", "recvmmsg", "fork", "exec", "spawn", "socket", "dup2over", "swap"];

/// Steps that read the echo.
const READS: &[&str] = &["read", "recv", "readv", "recv_dontwait", "read_chk", "recv_chk", "recvfrom_chk", "preadv2"];

/// What auto mode promises whatever the program does: a write never says
/// EINPROGRESS or EALREADY (the program did not ask for Fast Open), no
/// byte is lost or repeated (never more read than written: the echo
/// server returns each byte once), it never waits where the kernel's own
/// socket does not (a connection that was never started), and it never
/// crashes the program. The first broken promise, as a signature.
pub fn auto_violation(native: &str, auto: &str) -> Option<String> {
    let native: Vec<&str> = native.lines().collect();
    let (mut written, mut read) = (0i64, 0i64);
    let mut sockets = 0;
    let mut counted = true;
    for (i, line) in auto.lines().enumerate() {
        if line.starts_with("exit:") && !native.iter().any(|l| l.starts_with("exit:")) {
            return Some(format!("exit@auto | invariant: the program ends {}", hide_numbers(line)));
        }
        let (step, rest) = line.trim().split_once(char::is_whitespace).unwrap_or((line.trim(), ""));
        let (name, _) = step.split_once('=').unwrap_or((step, ""));
        let (call, _) = split_call(line);
        let rest = rest.trim();
        let value = rest.split_whitespace().next().and_then(|v| v.parse::<i64>().ok()).unwrap_or(-1);
        sockets += (name == "socket") as u32;
        counted &= !UNCOUNTED.contains(&name) || (name == "socket" && sockets == 1);
        if WRITES.contains(&name) || name == "sendmmsg" || name == "sendmmsg_n" {
            // Unless the program asked for it itself (its own MSG_FASTOPEN
            // on a connecting socket: the kernel says so too).
            let said = ["EINPROGRESS", "EALREADY"].into_iter().find(|e| rest.contains(e));
            if let Some(errno) = said.filter(|e| !native.get(i).is_some_and(|l| l.contains(e))) {
                return Some(format!("{call}@auto | invariant: a write says {errno}"));
            }
            written += value.max(0);
        }
        if READS.contains(&name) || (name == "recvf" || name == "recvmsgf") && !step.contains("peek") {
            read += value.max(0);
            if counted && read > written {
                return Some(format!("{call}@auto | invariant: more read than written"));
            }
        }
        if rest.starts_with("HANG") && native.get(i).is_some_and(|l| !l.contains("HANG")) {
            return Some(format!("{call}@auto | invariant: waits where the kernel does not"));
        }
    }
    None
}

/// `signature`, its call marked "@auto" for an auto-mode divergence (a
/// kind of its own).
fn signature_in(mode: Mode, native: &str, shim: &str) -> String {
    let signature = signature(native, shim);
    match (mode, signature.split_once(' ')) {
        (Mode::ShimAuto, Some((call, rest))) => format!("{call}@auto {rest}"),
        _ => signature,
    }
}

/// The call and both answers of the first differing line, every number
/// replaced by '#': "set=window_clamp | -# EINVAL | #".
pub fn signature(native: &str, shim: &str) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (native.lines().collect(), shim.lines().collect());
    let i = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)).unwrap_or(0);
    let (l, r) = (a.get(i).copied().unwrap_or("<end>"), b.get(i).copied().unwrap_or("<end>"));
    let (call, left) = split_call(l);
    let (call_r, right) = split_call(r);
    let call = if l == "<end>" || l.starts_with("exit:") { call_r } else { call };
    format!("{call} | {} | {}", hide_numbers(left), hide_numbers(right))
}

/// "set=window_clamp:0 -1 EINVAL" -> ("set=window_clamp", "-1 EINVAL"):
/// the step name with the first field of its argument when that names
/// something (an option, an address kind, flags), else the bare name.
fn split_call(line: &str) -> (String, &str) {
    let line = line.trim();
    let (step, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let call = match step.split_once('=') {
        Some((name, arg)) => {
            let first = arg.split(':').next().unwrap_or("");
            if first.is_empty() || first.starts_with(|c: char| c.is_ascii_digit() || c == '-') || name == "fork" {
                name.to_string()
            } else {
                format!("{name}={first}")
            }
        }
        None => step.to_string(),
    };
    (call, rest.trim())
}

fn hide_numbers(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `fuzz-CALL-HASH`: stable across runs and machines (FNV-1a of the signature).
pub fn name(signature: &str) -> String {
    let hash = signature.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let call: String = signature.split(' ').next().unwrap_or("").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("fuzz-{call}-{:08x}", hash as u32)
}

/// Names listed in a file of divergences (tests/fuzz-known.txt): the first
/// word of each line that is not blank or a `#` comment.
pub fn known_names(path: &std::path::Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| !w.starts_with('#')).map(String::from).collect()
}

pub fn known_file() -> std::path::PathBuf {
    root().join("tests/fuzz-known.txt")
}

/// What a batch gave.
#[derive(Debug, Default)]
pub struct Batch {
    pub compared: usize,
    pub same: usize,
    /// Of those, also compared (and the same) in auto mode.
    pub same_in_auto_mode: usize,
    pub flaky: Vec<u64>,
    /// Sequence index and divergence, in index order.
    pub divergences: Vec<(u64, Divergence)>,
}

/// Compares sequences `first..first + count` of `seed` on `workers`
/// threads; `progress` is called after each one.
pub fn run_batch(seed: u64, first: u64, count: u64, workers: usize, progress: impl Fn(u64, &Outcome) + Send + Sync + 'static) -> Batch {
    let next = Arc::new(Mutex::new(first));
    let batch = Arc::new(Mutex::new(Batch::default()));
    let progress = Arc::new(progress);
    let threads: Vec<_> = (0..workers.clamp(1, 4))
        .map(|_| {
            let (next, batch, progress) = (next.clone(), batch.clone(), progress.clone());
            std::thread::spawn(move || loop {
                let index = {
                    let mut n = next.lock().unwrap();
                    if *n >= first + count {
                        return;
                    }
                    *n += 1;
                    *n - 1
                };
                let outcome = compare(&generate::sequence(seed, index));
                progress(index, &outcome);
                let mut b = batch.lock().unwrap();
                b.compared += 1;
                match outcome {
                    Outcome::Same { auto } => {
                        b.same += 1;
                        b.same_in_auto_mode += auto as usize;
                    }
                    Outcome::Flaky => b.flaky.push(index),
                    Outcome::Differs(d) => b.divergences.push((index, d)),
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a fuzz worker panicked");
    }
    let mut batch = std::mem::take(&mut *batch.lock().unwrap());
    batch.divergences.sort_by_key(|d| d.0);
    batch.flaky.sort();
    batch
}
