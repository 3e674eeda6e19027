//! `tfo failures` and `tfo forget`: libtfo's failure memory, one file per
//! destination in TFO_STATE_DIR holding
//! `libtfo-failure v1 <failures> <until_unix_seconds> <reason>`.
//!
//! The directory must be the user's own, mode 0700 and not a symlink, or it
//! is not used at all; files that are symlinks, belong to someone else or do
//! not parse are skipped with one warning each, as libtfo does.

use crate::cli::{FailuresArgs, ForgetArgs};
use crate::destination::Destination;
use crate::format::duration_ms;
use serde::Serialize;
use std::fs::{File, Metadata};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &str = "libtfo-failure";
const VERSION: &str = "v1";

/// libtfo's default, when neither --state-dir nor TFO_STATE_DIR is given.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("TFO_STATE_DIR")
        .or_else(|| var("XDG_RUNTIME_DIR").map(|d| d.join("libtfo")))
        // SAFETY: getuid takes no arguments and cannot fail.
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/libtfo-{}", unsafe { libc::getuid() })))
}

#[derive(Serialize, Debug)]
pub struct Failure {
    pub destination: IpAddr,
    pub failures: u32,
    pub until_unix: u64,
    /// Seconds of backoff left; 0 once it has ended.
    pub remaining_sec: u64,
    pub reason: String,
    #[serde(skip)]
    pub file: PathBuf,
}

/// The destination a file is named after: its text form with ':' written as '-'.
fn destination_of(name: &str) -> Option<IpAddr> {
    name.replace('-', ":").parse().ok()
}

fn parse(content: &str, now: u64) -> Option<(u32, u64, u64, String)> {
    let mut words = content.trim_end_matches('\n').split(' ');
    let (magic, version) = (words.next()?, words.next()?);
    let failures = words.next()?.parse().ok()?;
    let until: u64 = words.next()?.parse().ok()?;
    let reason = words.next()?;
    if magic != MAGIC || version != VERSION || words.next().is_some() || !matches!(reason, "dropped" | "reset") {
        return None;
    }
    Some((failures, until, until.saturating_sub(now), reason.to_owned()))
}

/// The directory, if it is safe to use; None when it does not exist.
fn checked_dir(dir: &Path) -> Result<Option<()>, String> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    // SAFETY: getuid takes no arguments and cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.file_type().is_symlink() {
        Err(format!("{} is a symlink; libtfo does not use it either", dir.display()))
    } else if !meta.is_dir() {
        Err(format!("{} is not a directory", dir.display()))
    } else if meta.uid() != uid {
        Err(format!("{} belongs to uid {}, not to you ({uid})", dir.display(), meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Err(format!("{} has mode {:o}, not 0700", dir.display(), meta.mode() & 0o777))
    } else {
        Ok(Some(()))
    }
}

/// A regular file of ours; read without following a symlink.
fn read_own(path: &Path, meta: &Metadata) -> Result<String, String> {
    // SAFETY: getuid takes no arguments and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.file_type().is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.uid() != uid {
        return Err(format!("belongs to uid {}", meta.uid()));
    }
    let mut text = String::new();
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    Ok(text)
}

/// What the directory holds.
#[derive(Default)]
struct Listing {
    valid: Vec<Failure>,
    /// Our own files whose content does not parse: ignored, but `forget` removes them.
    damaged: Vec<(IpAddr, PathBuf)>,
    warnings: Vec<String>,
}

/// Entries of the directory. Files named with a leading dot or `.tmp` are
/// libtfo's half-written ones.
fn entries(dir: &Path) -> Result<Listing, String> {
    let mut listing = Listing::default();
    if checked_dir(dir)?.is_none() {
        return Ok(listing);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let list = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in list.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.contains(".tmp") {
            continue;
        }
        let path = entry.path();
        let Some(destination) = destination_of(&name) else {
            listing.warnings.push(format!("ignoring {}: not named after an address", path.display()));
            continue;
        };
        let text = std::fs::symlink_metadata(&path).map_err(|e| e.to_string()).and_then(|meta| read_own(&path, &meta));
        match text.map(|t| parse(&t, now)) {
            Ok(Some((failures, until_unix, remaining_sec, reason))) => {
                listing.valid.push(Failure { destination, failures, until_unix, remaining_sec, reason, file: path })
            }
            Ok(None) => {
                listing.warnings.push(format!("ignoring {}: damaged (not a libtfo-failure v1 line)", path.display()));
                listing.damaged.push((destination, path));
            }
            Err(why) => listing.warnings.push(format!("ignoring {}: {why}", path.display())),
        }
    }
    listing.valid.sort_by_key(|f| f.destination);
    Ok(listing)
}

fn listing_or_exit(dir: &Path) -> Result<Listing, ExitCode> {
    let listing = entries(dir).map_err(|e| {
        eprintln!("tfo: {e}");
        ExitCode::FAILURE
    })?;
    for warning in &listing.warnings {
        eprintln!("tfo: warning: {warning}");
    }
    Ok(listing)
}

pub fn failures(args: FailuresArgs) -> ExitCode {
    let dir = state_dir(args.state_dir.as_deref());
    let found = match listing_or_exit(&dir) {
        Ok(listing) => listing.valid,
        Err(status) => return status,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found).expect("plain values"));
    } else if found.is_empty() {
        eprintln!("tfo: no destination in failure memory ({})", dir.display());
    } else {
        for f in &found {
            let backoff = if f.remaining_sec > 0 {
                format!("no Fast Open for {} more", duration_ms(f.remaining_sec * 1000))
            } else {
                "backoff over: Fast Open is tried again".to_owned()
            };
            println!("{} failures {} reason {} {backoff} (until {})", f.destination, f.failures, f.reason, f.until_unix);
        }
    }
    ExitCode::SUCCESS
}

pub fn forget(args: ForgetArgs) -> ExitCode {
    let dir = state_dir(args.state_dir.as_deref());
    let listing = match listing_or_exit(&dir) {
        Ok(listing) => listing,
        Err(status) => return status,
    };
    let chosen = |destination: IpAddr| args.destination.as_ref().is_none_or(|d: &Destination| d.matches(destination));
    let files = listing.valid.into_iter().map(|f| (f.destination, f.file)).chain(listing.damaged);
    let mut status = ExitCode::SUCCESS;
    let mut forgotten = 0;
    for (destination, file) in files.filter(|(d, _)| chosen(*d)) {
        match std::fs::remove_file(&file) {
            Ok(()) => {
                println!("forgot {destination}");
                forgotten += 1;
            }
            Err(e) => {
                eprintln!("tfo: cannot remove {}: {e}", file.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    if let (Some(d), 0) = (&args.destination, forgotten) {
        eprintln!("tfo: nothing remembered for {d} ({})", dir.display());
        status = ExitCode::FAILURE;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines_of_the_contract() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(destination_of("2001-db8--1"), Some(v6));
        assert_eq!(destination_of("198.18.0.2"), Some("198.18.0.2".parse().unwrap()));
        assert_eq!(parse("libtfo-failure v1 2 1000 dropped\n", 400), Some((2, 1000, 600, "dropped".to_owned())));
        assert_eq!(parse("libtfo-failure v1 1 1000 reset", 2000), Some((1, 1000, 0, "reset".to_owned())));
        assert_eq!(parse("libtfo-failure v2 1 1000 reset", 0), None);
        assert_eq!(parse("libtfo-failure v1 1 1000 lost", 0), None);
        assert_eq!(parse("libtfo-failure v1 x 1000 reset", 0), None);
    }
}
