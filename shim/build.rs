//! Compiles the C part of libtfo: the variadic exec functions (src/variadic.c).
fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    cc::Build::new().file("src/variadic.c").flag("-fvisibility=default").compile("tfo_variadic");
}
