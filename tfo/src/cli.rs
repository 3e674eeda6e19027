//! The command line: every subcommand and option of `tfo`, in one place so
//! that `--help` and the man pages (`examples/mangen.rs`) come from the same
//! definitions.

use crate::destination::Destination;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

const ENVIRONMENT: &str = "\
libtfo reads these variables once, when a program starts (`tfo run` sets the first five from its options):
  TFO_MODE          auto (every TCP client socket; default), explicit (only sockets that set TCP_FASTOPEN_CONNECT), off
  TFO_BACKEND       auto (the kernel's own TCP_FASTOPEN_CONNECT when it has one; default), kernel, emulate
  TFO_SERVER        1: listen() enables the kernel's TCP_FASTOPEN (TFO_SERVER_QLEN, TFO_SERVER_PORTS)
  TFO_LOG           quiet, warn (default), info, debug; TFO_LOG_FILE appends the lines to a file instead of stderr
  TFO_STATS         directory (libtfo.<pid>.<program>.stats inside) or pattern with %p: counters written at exit and exec
  TFO_PORTS         destination ports that get Fast Open in auto mode, e.g. 80,443,8000-8999 (default all)
  TFO_INCLUDE       destination CIDRs that get Fast Open in auto mode (default all)
  TFO_EXCLUDE       destination CIDRs never given Fast Open (default 127.0.0.0/8,::1/128; none clears it)
  TFO_STATE_DIR     failure memory (default $XDG_RUNTIME_DIR/libtfo, else /tmp/libtfo-<uid>)
  TFO_BACKOFF       seconds a destination that failed Fast Open goes without it (default 600, doubling)
  TFO_LIB           the libtfo.so that `tfo run` and `tfo doctor` use (default: next to tfo, or ../lib/)
Setuid and other secure-mode programs ignore the TFO_* variables.";

#[derive(Parser)]
#[command(
    name = "tfo",
    version,
    about = "TCP Fast Open for unmodified programs (libtfo)",
    long_about = "TCP Fast Open for unmodified programs. `tfo run` starts a program with libtfo \
                  preloaded, so that its repeat connections carry their first request in the SYN; \
                  the other commands check the machine and show what happened.",
    after_long_help = ENVIRONMENT
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Run(RunArgs),
    Doctor(DoctorArgs),
    Cookies(CookiesArgs),
    Stats(StatsArgs),
    Failures(FailuresArgs),
    Forget(ForgetArgs),
    /// Tell whether Fast Open works to a server, and what breaks it on the path
    ///
    /// Exit status 0: it works; 1: it does not (with the reason and a fix);
    /// 2: a usage or name-resolution error.
    Probe(crate::probe::Args),
    /// Internal: what `tfo doctor` runs under the preload.
    #[command(hide = true)]
    Inside(InsideArgs),
    /// Internal: the live self-test, inside its private network namespace.
    #[command(hide = true, name = "selftest-netns")]
    SelftestNetns(SelftestArgs),
}

/// Run a program with libtfo preloaded (LD_PRELOAD), like torsocks.
///
/// libtfo is put first in LD_PRELOAD (what was there stays). tfo replaces
/// itself with the program (exec), so the program keeps tfo's process id and
/// its exit status is the program's own (a shell shows 128+N when a signal N
/// killed it). Statically linked, setuid and setgid programs are run anyway,
/// after one warning: the dynamic loader does not preload into them.
#[derive(Args)]
pub struct RunArgs {
    /// Which sockets get Fast Open (TFO_MODE).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// How TCP_FASTOPEN_CONNECT is served (TFO_BACKEND).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Also enable Fast Open on the program's listening sockets (TFO_SERVER=1).
    #[arg(long)]
    pub server: bool,
    /// libtfo's diagnostics on stderr (TFO_LOG).
    #[arg(long, value_enum)]
    pub log: Option<LogLevel>,
    /// Append libtfo's diagnostics to this file instead (TFO_LOG_FILE).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Write statistics at exit: a directory (created if missing), or a file
    /// pattern where %p is the process id (TFO_STATS). Read them with `tfo stats`.
    #[arg(long, value_name = "PATH")]
    pub stats: Option<PathBuf>,
    /// libtfo.so to preload; default: TFO_LIB, else next to tfo, else ../lib/.
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Check this machine (kernel, sysctls, library) and run a live self-test.
///
/// One line per check: ✓ passed, ✗ failed (followed by the fix), ! works
/// with a limitation, - skipped. The live self-test runs when tfo may create
/// and configure a network namespace (root, or unprivileged user namespaces;
/// in a container, --privileged): a Fast Open echo server and a preloaded
/// client that connects twice; elsewhere it is skipped. Exit status 0 when
/// no check failed, 1 otherwise.
#[derive(Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
    /// libtfo.so to check; default as for `tfo run`.
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,
}

/// List the Fast Open cookies the kernel holds in this network namespace.
///
/// The kernel's TCP metrics cache (as `ip tcp_metrics` shows it), read over
/// generic netlink without privilege: destination, source, cookie, the MSS
/// the server announced, the entry's age, and Fast Open SYNs that went
/// unanswered (count and how long ago). Entries without Fast Open data are
/// left out.
#[derive(Args)]
pub struct CookiesArgs {
    /// Print the entries as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this destination: an address, a network (198.18.0.0/15) or a host name.
    pub destination: Option<Destination>,
}

/// Sum the statistics files libtfo wrote (TFO_STATS, `tfo run --stats`).
///
/// Each PATH is a statistics file or a directory, whose *.stats files are
/// read. Damaged files are skipped with a warning. Exit status 1 when no
/// file could be read.
#[derive(Args)]
pub struct StatsArgs {
    /// Print the sums as JSON.
    #[arg(long)]
    pub json: bool,
    /// Statistics files or directories holding them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// List the destinations libtfo gives no Fast Open for now.
///
/// When a server or the path drops or resets SYNs with data, libtfo
/// remembers the destination (per user, in TFO_STATE_DIR) and connects to it
/// without Fast Open until the backoff ends. Clear entries with `tfo forget`.
#[derive(Args)]
pub struct FailuresArgs {
    /// Print the entries as JSON.
    #[arg(long)]
    pub json: bool,
    /// The failure-memory directory; default as libtfo's (TFO_STATE_DIR).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Clear libtfo's failure memory: every destination, or those given.
///
/// The next connection to a forgotten destination tries Fast Open again.
/// (The kernel's own cookie cache is separate: `ip tcp_metrics delete ADDRESS`.)
#[derive(Args)]
pub struct ForgetArgs {
    /// The failure-memory directory; default as libtfo's (TFO_STATE_DIR).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only this destination: an address, a network or a host name.
    pub destination: Option<Destination>,
}

#[derive(Args)]
pub struct InsideArgs {
    #[command(subcommand)]
    pub what: Inside,
}

#[derive(Subcommand)]
pub enum Inside {
    /// Print whether LIBRARY is mapped into this process.
    Maps { library: PathBuf },
    /// Connect COUNT times to an echo server; one JSON line per connection.
    Client {
        address: std::net::IpAddr,
        port: u16,
        #[arg(long, default_value_t = 2)]
        count: u32,
        /// Set TCP_FASTOPEN_CONNECT on each socket, as a Fast Open aware program does.
        #[arg(long)]
        set_option: bool,
    },
}

#[derive(Args)]
pub struct SelftestArgs {
    #[arg(long)]
    pub lib: PathBuf,
    /// Only check that the namespace can be made.
    #[arg(long)]
    pub only_enter: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Every TCP client socket gets Fast Open, as TFO_PORTS/INCLUDE/EXCLUDE allow (libtfo's default)
    Auto,
    /// Only sockets whose program sets TCP_FASTOPEN_CONNECT
    Explicit,
    /// Pure pass-through
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Backend {
    /// The kernel's own TCP_FASTOPEN_CONNECT when it has one, else emulation (libtfo's default)
    Auto,
    /// The option goes to the kernel untouched
    Kernel,
    /// libtfo implements the option itself
    Emulate,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogLevel {
    /// Nothing
    Quiet,
    /// Problems only (libtfo's default)
    Warn,
    /// Also each connection's Fast Open outcome
    Info,
    /// Every decision
    Debug,
}

/// The variable value of an option: what clap shows is what libtfo reads.
pub fn env_value(value: impl ValueEnum) -> String {
    value.to_possible_value().expect("no skipped variants").get_name().to_owned()
}
