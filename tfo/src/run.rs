//! `tfo run`: the program replaces tfo (exec) with libtfo first in
//! LD_PRELOAD and the TFO_* variables of the options set.
//!
//! exec rather than spawn-and-wait: the program keeps tfo's process id, so
//! supervisors, pid files and signals (SIGTERM from systemd, ^Z from a shell)
//! reach it directly, and its exit status is its own, including death by a
//! signal (which a shell shows as 128+N). Nothing has to be forwarded.

use crate::cli::{env_value, RunArgs};
use crate::{executable, library};
use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Exit statuses when the program did not run, as env(1) and shells use them:
/// tfo itself failed, the program could not be executed, or was not found.
const TFO_FAILED: u8 = 125;
const CANNOT_EXECUTE: u8 = 126;
const NOT_FOUND: u8 = 127;

pub fn run(args: RunArgs) -> ExitCode {
    let lib = match library::find(args.lib.as_deref()) {
        Ok(found) => found.path,
        Err(library::NotFound(why)) => {
            eprintln!("tfo: {why}; {}", library::ADVICE);
            return ExitCode::from(TFO_FAILED);
        }
    };
    let program = &args.command[0];
    for warning in executable::preload_warnings(program) {
        eprintln!("tfo: warning: {warning}");
    }
    let mut cmd = Command::new(program);
    cmd.args(&args.command[1..]).env("LD_PRELOAD", preload_list(&lib, std::env::var_os("LD_PRELOAD")));
    if let Some(mode) = args.mode {
        cmd.env("TFO_MODE", env_value(mode));
    }
    if let Some(backend) = args.backend {
        cmd.env("TFO_BACKEND", env_value(backend));
    }
    if args.server {
        cmd.env("TFO_SERVER", "1");
    }
    if let Some(level) = args.log {
        cmd.env("TFO_LOG", env_value(level));
    }
    if let Some(file) = &args.log_file {
        cmd.env("TFO_LOG_FILE", absolute(file));
    }
    if let Some(stats) = &args.stats {
        match stats_target(stats) {
            Ok(path) => cmd.env("TFO_STATS", path),
            Err(e) => {
                eprintln!("tfo: --stats {}: {e}", stats.display());
                return ExitCode::from(TFO_FAILED);
            }
        };
    }
    let err = cmd.exec(); // returns only when the program could not be started
    eprintln!("tfo: cannot run {}: {err}", program.to_string_lossy());
    ExitCode::from(if err.kind() == ErrorKind::NotFound { NOT_FOUND } else { CANNOT_EXECUTE })
}

/// libtfo first, then what LD_PRELOAD held, without a second copy of libtfo.
/// The loader accepts both spaces and colons as separators.
fn preload_list(lib: &Path, existing: Option<OsString>) -> OsString {
    let mut list = lib.as_os_str().to_owned();
    let existing = existing.unwrap_or_default();
    for entry in existing.as_bytes().split(|&b| b == b':' || b == b' ').filter(|e| !e.is_empty()) {
        if Path::new(OsStr::from_bytes(entry)) != lib {
            list.push(":");
            list.push(OsStr::from_bytes(entry));
        }
    }
    list
}

/// TFO_STATS as the program will see it: absolute (it may chdir), and a
/// directory that exists unless it is a %p pattern.
fn stats_target(path: &Path) -> std::io::Result<PathBuf> {
    let path = absolute(path);
    if !path.as_os_str().as_bytes().windows(2).any(|w| w == b"%p") {
        std::fs::create_dir_all(&path)?;
    }
    Ok(path)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtfo_comes_first_once() {
        let lib = Path::new("/usr/lib/libtfo.so");
        assert_eq!(preload_list(lib, None), "/usr/lib/libtfo.so");
        assert_eq!(
            preload_list(lib, Some("/a.so /usr/lib/libtfo.so:/b.so".into())),
            "/usr/lib/libtfo.so:/a.so:/b.so"
        );
    }
}
