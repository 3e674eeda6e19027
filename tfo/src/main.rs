//! `tfo`: run a program with libtfo preloaded, or look at the kernel's
//! TCP Fast Open cookie cache.
//!
//!     tfo run [--backend emulate|kernel] [--log quiet|warn|debug] -- CMD [ARGS...]
//!     tfo cookies [DESTINATION]
//!     tfo probe HOST[:PORT] [--count N] [--json] [--timeout S] [--request STRING|--http|--tls]

mod probe;

use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(name = "tfo", version, about = "TCP Fast Open for unmodified programs (libtfo)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a program with libtfo preloaded (LD_PRELOAD).
    Run {
        /// How TCP_FASTOPEN_CONNECT is served (TFO_BACKEND).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// libtfo's diagnostics on stderr (TFO_LOG).
        #[arg(long, value_enum)]
        log: Option<LogArg>,
        /// libtfo.so to preload; default: TFO_LIB, else next to this program.
        #[arg(long)]
        lib: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// List the kernel's TCP metrics entries that hold a Fast Open cookie
    /// (this network namespace; no privilege needed).
    Cookies {
        /// Only this destination address.
        destination: Option<std::net::IpAddr>,
    },
    /// Tell whether Fast Open works to a server and what breaks it on the
    /// path (exit 0: it works; 1: it does not, with the reason and a fix; 2:
    /// usage or resolution error).
    Probe(probe::Args),
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Emulate,
    Kernel,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogArg {
    Quiet,
    Warn,
    Debug,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Run { backend, log, lib, command } => run(backend, log, lib, command),
        Cmd::Cookies { destination } => cookies(destination),
        Cmd::Probe(args) => probe::run(args),
    }
}

fn library(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit
        .or_else(|| std::env::var_os("TFO_LIB").map(PathBuf::from))
        .or_else(|| Some(std::env::current_exe().ok()?.with_file_name("libtfo.so")))
        .filter(|p| p.exists())
}

fn run(backend: Option<BackendArg>, log: Option<LogArg>, lib: Option<PathBuf>, command: Vec<OsString>) -> ExitCode {
    let Some(lib) = library(lib) else {
        eprintln!("tfo: libtfo.so not found (build it with `make build`, or give --lib or TFO_LIB)");
        return ExitCode::from(2);
    };
    let lib = lib.canonicalize().unwrap_or(lib);
    let program = &command[0];
    if let Some(path) = find_program(Path::new(program)) {
        if is_setid(&path) {
            eprintln!("tfo: warning: {} is setuid/setgid; the dynamic loader ignores LD_PRELOAD for it", path.display());
        }
    }
    // Prepend, keeping any preload the caller already had.
    let mut preload = lib.into_os_string();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    let mut cmd = Command::new(program);
    cmd.args(&command[1..]).env("LD_PRELOAD", preload);
    if let Some(b) = backend {
        cmd.env("TFO_BACKEND", match b {
            BackendArg::Emulate => "emulate",
            BackendArg::Kernel => "kernel",
        });
    }
    if let Some(l) = log {
        cmd.env("TFO_LOG", match l {
            LogArg::Quiet => "quiet",
            LogArg::Warn => "warn",
            LogArg::Debug => "debug",
        });
    }
    let err = cmd.exec(); // only returns on failure
    eprintln!("tfo: cannot run {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}

/// The file `program` names, searched in PATH as execvp does.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn is_setid(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0)
}

fn cookies(destination: Option<std::net::IpAddr>) -> ExitCode {
    let entries = match destination {
        Some(d) => cookie_store::lookup(d, None).map(|e| e.into_iter().collect()),
        None => cookie_store::dump(),
    };
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tfo: {e}");
            return ExitCode::from(1);
        }
    };
    for m in entries.iter().filter(|m| m.has_cookie()) {
        let hex: String = m.fastopen_cookie.iter().flatten().map(|b| format!("{b:02x}")).collect();
        let show = |ip: Option<std::net::IpAddr>| ip.map_or("?".to_string(), |ip| ip.to_string());
        println!(
            "{} source {} cookie {hex} mss {}",
            show(m.destination),
            show(m.source),
            m.fastopen_mss.map_or("?".to_string(), |v| v.to_string())
        );
    }
    ExitCode::SUCCESS
}
