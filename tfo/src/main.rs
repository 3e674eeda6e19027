//! `tfo`: run programs with libtfo preloaded, check the machine, and show
//! cookies, statistics and failure memory. `tfo --help` for the commands.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tfo_cli::main(tfo_cli::cli::Cli::parse())
}
