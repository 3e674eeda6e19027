//! Writes the man pages of `tfo` and its commands (tfo.1, tfo-run.1, ...)
//! into the directory given: `cargo run -p tfo --example mangen -- target/release/man`.

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).expect("usage: mangen DIRECTORY");
    std::fs::create_dir_all(&dir)?;
    clap_mangen::generate_to(tfo_cli::cli::Cli::command(), dir)
}
