//! Compiles the C parts of libtfo: the variadic exec functions
//! (src/variadic.c), the lazily bound unwinder (src/unwind.c) and the
//! lazily bound libc functions (src/lazy_imports.c), and links libtfo so
//! that loading it binds almost no symbol (lazy_imports.c says why).
fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    println!("cargo:rerun-if-changed=src/unwind.c");
    println!("cargo:rerun-if-changed=src/lazy_imports.c");
    cc::Build::new().file("src/variadic.c").flag("-fvisibility=default").compile("tfo_variadic");
    // Hidden definitions of the _Unwind_* functions: they must come before
    // -lgcc_s on the link line (a build script's libraries do), so that
    // libgcc_s is not a DT_NEEDED of libtfo.
    cc::Build::new().file("src/unwind.c").flag("-fvisibility=hidden").compile("tfo_unwind");

    cc::Build::new().file("src/lazy_imports.c").compile("tfo_lazy_imports");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        let list = std::fs::read_to_string("src/lazy_imports.c").expect("src/lazy_imports.c");
        let names = list.lines().filter_map(|l| l.trim().strip_prefix("X(")?.strip_suffix(") \\"));
        for name in names.chain(["dlsym"]) {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap={name}");
        }
        // After rustc's `-z now`: what the loader still binds (dlsym, the C
        // parts' calls) is bound on first use.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,lazy");
        // libtfo's own calls of the functions it exports (std closing a
        // file, the netlink socket of cookie-store, variadic.c's execv) go
        // straight to its hooks, where the loader would look them up first.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
        // Each segment starts a page (the file grows by the padding): the
        // writable data, 3.3 KiB, then lies in one page, not two, and each
        // page loading writes costs every process a fault.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,separate-loadable-segments");
    }
}
