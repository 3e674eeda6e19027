//! What loading libtfo costs a process that never opens a socket (every
//! process under /etc/ld.so.preload): no other library comes along (the
//! unwinder, libgcc_s, is opened only when a hook panics; shim/src/unwind.c)
//! and, with no TFO_* variable set, the constructor does not allocate; and
//! loading it costs hardly more than loading an empty library.

use std::path::Path;
use std::process::Command;
use tfo_tests::{callgrind, example, library, Callgrind};

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

/// What callgrind counted for one `/bin/true` run under `preload`.
fn start_cost(preload: &Path) -> Callgrind {
    let name = format!("load-{}", preload.file_name().unwrap().to_string_lossy());
    callgrind(&name, Path::new("/bin/true"), |cmd| {
        cmd.env("LD_PRELOAD", preload);
        // The same environment for both runs: no TFO_* variable (a set one
        // makes the constructor read the configuration).
        for (name, _) in std::env::vars_os().filter(|(n, _)| n.to_string_lossy().starts_with("TFO_")) {
            cmd.env_remove(name);
        }
    })
}

/// Every process under /etc/ld.so.preload pays this. The loader's work on
/// libtfo's imports was most of it (symbol lookups, version checks);
/// shim/src/lazy_imports.c defers them to first use. callgrind counts
/// exactly, so the bound holds on any machine.
#[test]
fn loading_libtfo_costs_at_most_15000_instructions_more_than_an_empty_preload() {
    let empty = example("libempty_preload.so");
    assert!(empty.exists(), "{} is missing: run `make build`", empty.display());
    let Callgrind { instructions: base, objects: base_objects } = start_cost(&empty);
    let Callgrind { instructions: tfo, objects: tfo_objects } = start_cost(&library());
    // Proof that each preload took: its own code (a constructor) ran.
    assert!(base_objects.contains("/libempty_preload.so"), "the empty preload ran no code; objects seen:\n{base_objects}");
    assert!(tfo_objects.contains("/libtfo.so"), "libtfo.so ran no code under LD_PRELOAD; objects seen:\n{tfo_objects}");
    let added = tfo as i64 - base as i64;
    eprintln!("/bin/true: {base} instructions under an empty preload, {tfo} under libtfo: {added:+}");
    assert!(added <= 15_000, "loading libtfo costs {added} instructions more than an empty preload (at most 15 000)");
}
