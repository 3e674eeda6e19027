//! What loading libtfo costs a process that never opens a socket (every
//! process under /etc/ld.so.preload): no other library comes along (the
//! unwinder, libgcc_s, is opened only when a hook panics; shim/src/unwind.c)
//! and, with no TFO_* variable set, the constructor does not allocate.

use std::process::Command;
use tfo_tests::library;

/// The mappings of a `cat /proc/self/maps` run under the preload.
fn maps_under_preload(vars: &[(&str, &str)]) -> String {
    let out = Command::new("cat").arg("/proc/self/maps").env("LD_PRELOAD", library()).envs(vars.iter().copied()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn libtfo_loads_without_libgcc_s() {
    let maps = maps_under_preload(&[]);
    assert!(maps.contains("libtfo.so"), "the preload did not load:\n{maps}");
    assert!(!maps.contains("libgcc_s"), "libgcc_s was loaded with libtfo:\n{maps}");
}

#[test]
fn the_constructor_leaves_malloc_untouched_without_tfo_variables() {
    // cat itself allocates, so watch malloc's first act instead: glibc
    // extends the heap with brk only when the first allocation happens.
    let Ok(out) = Command::new("strace").args(["-f", "-e", "trace=brk,getrandom", "true"]).env("LD_PRELOAD", library()).output() else {
        eprintln!("strace not installed: skipped");
        return;
    };
    let trace = String::from_utf8_lossy(&out.stderr);
    // The loader's own brk(NULL) probe is not an allocation.
    let heap: Vec<&str> = trace.lines().filter(|l| (l.starts_with("brk(") && !l.starts_with("brk(NULL)")) || l.starts_with("getrandom(")).collect();
    assert!(heap.is_empty(), "libtfo's constructor allocated:\n{trace}");
    // The control: with a TFO_* variable the configuration is parsed and
    // allocates, and strace sees it.
    let out = Command::new("strace").args(["-f", "-e", "trace=brk,getrandom", "true"]).env("LD_PRELOAD", library()).env("TFO_PORTS", "80,443").output().unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.lines().any(|l| l.starts_with("brk(") && !l.starts_with("brk(NULL)")), "the control saw no allocation:\n{trace}");
}
