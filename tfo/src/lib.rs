//! The `tfo` command (see `cli` for its interface). A library so that the
//! man pages are generated from the same definitions (`examples/mangen.rs`).

pub mod cli;
mod cookies;
mod destination;
mod doctor;
mod executable;
mod failures;
mod format;
mod kernel;
mod library;
mod inside;
mod probe;
mod run;
mod selftest;
mod stats;

use cli::{Cli, Command};
use std::process::ExitCode;

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Cookies(args) => cookies::cookies(args),
        Command::Stats(args) => stats::stats(args),
        Command::Failures(args) => failures::failures(args),
        Command::Forget(args) => failures::forget(args),
        Command::Probe(args) => probe::run(args),
        Command::Inside(args) => inside::inside(args.what),
        Command::SelftestNetns(args) => selftest::selftest_netns(&args.lib, args.only_enter),
    }
}
