//! Compiles the C parts of libtfo: the variadic exec functions
//! (src/variadic.c) and the lazily bound unwinder (src/unwind.c).
fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    println!("cargo:rerun-if-changed=src/unwind.c");
    cc::Build::new().file("src/variadic.c").flag("-fvisibility=default").compile("tfo_variadic");
    // Hidden definitions of the _Unwind_* functions: they must come before
    // -lgcc_s on the link line (a build script's libraries do), so that
    // libgcc_s is not a DT_NEEDED of libtfo.
    cc::Build::new().file("src/unwind.c").flag("-fvisibility=hidden").compile("tfo_unwind");
}
