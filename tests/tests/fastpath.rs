//! An intercepted call on an fd libtfo does not track costs a bounds check,
//! one load, a branch and a tail call into libc. callgrind counts
//! instructions exactly, so this guards the fast path against regressions.
//!
//! The test fails, rather than skips, when valgrind is missing (CI installs
//! it) and when libtfo's code did not run in the preloaded process: a
//! count taken without the library would measure nothing.

use tfo_tests::{callgrind, example, library, Callgrind};

fn count(preload: bool) -> Callgrind {
    callgrind(&format!("fastpath-{preload}"), &example("fastpath_count"), |cmd| {
        if preload {
            cmd.env("LD_PRELOAD", library());
        }
    })
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
