//! An intercepted call on an fd libtfo does not track costs a bounds check,
//! one load, a branch and a tail call into libc. callgrind counts
//! instructions exactly, so this guards the fast path against regressions.
//!
//! The test fails, rather than skips, when valgrind is missing (CI installs
//! it) and when libtfo's code did not run in the preloaded process: a
//! count taken without the library would measure nothing.

use std::path::PathBuf;
use std::process::Command;
use tfo_tests::{example, library, root};

/// What one callgrind run counted.
struct Count {
    instructions: u64,
    /// Shared objects callgrind saw code running in (its `ob=` lines).
    objects: String,
}

fn count(preload: bool) -> Count {
    let out_file: PathBuf = root().join(format!("target/fastpath-{}-{preload}.callgrind", std::process::id()));
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out_file.display())).arg(example("fastpath_count"));
    if preload {
        cmd.env("LD_PRELOAD", library());
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("valgrind is needed for this test (Debian: apt install valgrind): {e}"));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind failed ({}):\n{text}", out.status);
    let line = text.lines().find(|l| l.contains("Collected")).unwrap_or_else(|| panic!("no instruction count from callgrind:\n{text}"));
    let profile = std::fs::read_to_string(&out_file).unwrap_or_else(|e| panic!("{}: {e}", out_file.display()));
    let _ = std::fs::remove_file(&out_file);
    let objects = profile.lines().filter(|l| l.starts_with("ob=") || l.starts_with("cob=")).collect::<Vec<_>>().join("\n");
    Count { instructions: line.split_whitespace().last().unwrap().parse().unwrap(), objects }
}

#[test]
fn untracked_calls_cost_a_handful_of_instructions() {
    let native = count(false);
    let shim = count(true);
    // Proof that the preload took: libtfo's own code ran in the second run, and not in the first.
    assert!(shim.objects.contains("/libtfo.so"), "libtfo.so ran no code under LD_PRELOAD; objects seen:\n{}", shim.objects);
    assert!(!native.objects.contains("/libtfo.so"), "libtfo.so ran without LD_PRELOAD:\n{}", native.objects);
    // 400000 calls (send, recv, poll, close); the difference includes the
    // library's own load and initialisation.
    let per_call = (shim.instructions as f64 - native.instructions as f64) / 400_000.0;
    eprintln!("native {}, libtfo {}: {per_call:.1} instructions added per call", native.instructions, shim.instructions);
    assert!(per_call > 0.0, "libtfo added no instructions: the calls did not go through it");
    assert!(per_call < 25.0, "fast path grew to {per_call:.1} instructions per call");
}
