//! An intercepted call on an fd libtfo does not track costs a bounds check,
//! one load, a branch and a tail call into libc. callgrind counts
//! instructions exactly, so this guards the fast path against regressions.

use std::process::Command;
use tfo_tests::{example, library};

fn instructions(preload: bool) -> u64 {
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"]).arg(example("fastpath_count"));
    if preload {
        cmd.env("LD_PRELOAD", library());
    }
    let out = cmd.output().expect("valgrind");
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Collected")).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn untracked_calls_cost_a_handful_of_instructions() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not installed: skipped");
        return;
    }
    let native = instructions(false);
    let shim = instructions(true);
    // 400000 calls (send, recv, poll, close); the difference includes the
    // library's own load and initialisation.
    let per_call = (shim as f64 - native as f64) / 400_000.0;
    eprintln!("native {native}, libtfo {shim}: {per_call:.1} instructions added per call");
    assert!(per_call < 25.0, "fast path grew to {per_call:.1} instructions per call");
}
