//! `tfo failures` and `tfo forget`: libtfo's failure memory, one file per
//! destination or path in TFO_STATE_DIR, in the format of the
//! `failure-record` crate (which libtfo writes with).
//!
//! The directory must be the user's own, mode 0700 and not a symlink, or it
//! is not used at all; files that are symlinks, belong to someone else or do
//! not parse are skipped with one warning each, as libtfo does.

use crate::cli::{FailuresArgs, ForgetArgs};
use crate::destination::Destination;
use crate::format::duration_ms;
use failure_record::{Reason, Record, Subject};
use serde::Serialize;
use std::fs::{File, Metadata};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};


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
    /// `destination`, or `path` (every destination reached from a local
    /// source address).
    pub kind: &'static str,
    /// A destination entry's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<IpAddr>,
    /// A path entry's local source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// Either of them.
    #[serde(skip)]
    pub address: IpAddr,
    pub failures: u32,
    pub until_unix: u64,
    /// Seconds of backoff left; 0 once it has ended (or none began).
    pub remaining_sec: u64,
    pub reason: String,
    /// Paths: a destination that failed on the path, waiting for a second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<IpAddr>,
    /// Paths: when SYN data last worked through it (Unix seconds; 0 never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worked_unix: Option<u64>,
    #[serde(skip)]
    pub file: PathBuf,
}

impl Failure {
    fn from_record(subject: Subject, record: Record, now: u64, file: PathBuf) -> Failure {
        let (kind, address, path) = match subject {
            Subject::Destination(ip) => ("destination", ip, false),
            Subject::Path(ip) => ("path", ip, true),
        };
        Failure {
            kind,
            destination: (!path).then_some(address),
            source: path.then_some(address),
            address,
            failures: record.failures,
            until_unix: record.until,
            remaining_sec: record.until.saturating_sub(now),
            reason: record.reason.name().to_owned(),
            pending: record.pending.map(|(ip, _)| ip),
            worked_unix: path.then_some(record.worked),
            file,
        }
    }
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
    damaged: Vec<(Subject, PathBuf)>,
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
        let Some(subject) = failure_record::subject_of(&name) else {
            listing.warnings.push(format!("ignoring {}: not named after an address", path.display()));
            continue;
        };
        let text = std::fs::symlink_metadata(&path).map_err(|e| e.to_string()).and_then(|meta| read_own(&path, &meta));
        match text.map(|t| failure_record::parse(subject, &t)) {
            // A path's note that Fast Open worked on it is no failure.
            Ok(Some(record)) if record.failures == 0 && record.until == 0 && record.pending.is_none() => {}
            Ok(Some(record)) => listing.valid.push(Failure::from_record(subject, record, now, path)),
            Ok(None) => {
                listing.warnings.push(format!("ignoring {}: damaged (not a libtfo failure record)", path.display()));
                listing.damaged.push((subject, path));
            }
            Err(why) => listing.warnings.push(format!("ignoring {}: {why}", path.display())),
        }
    }
    // Paths first: they speak for every destination behind them.
    listing.valid.sort_by_key(|f| (f.kind != "path", f.address));
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
        eprintln!("tfo: no destination or path in failure memory ({})", dir.display());
    } else {
        for f in &found {
            println!("{}", describe(f));
        }
    }
    ExitCode::SUCCESS
}

/// One line of `tfo failures`.
fn describe(f: &Failure) -> String {
    let reason = Reason::from_name(&f.reason).map_or("", Reason::describe);
    let backoff = if f.remaining_sec > 0 {
        format!("no Fast Open for {} more", duration_ms(f.remaining_sec * 1000))
    } else if f.until_unix == 0 {
        "not stopped".to_owned()
    } else {
        "backoff over: Fast Open is tried again".to_owned()
    };
    match f.kind {
        "path" => {
            let pending = f.pending.map(|d| format!("; {d} failed on it, waiting for a second destination")).unwrap_or_default();
            format!("path from {} failures {} reason {} ({reason}) {backoff}{pending} (until {})", f.address, f.failures, f.reason, f.until_unix)
        }
        _ => format!("{} failures {} reason {} ({reason}) {backoff} (until {})", f.address, f.failures, f.reason, f.until_unix),
    }
}

/// The paths found to break Fast Open whose backoff runs now (`tfo doctor`).
pub fn stopped_paths(dir: &Path) -> Vec<Failure> {
    entries(dir).map(|l| l.valid).unwrap_or_default().into_iter().filter(|f| f.kind == "path" && f.remaining_sec > 0).collect()
}

pub fn forget(args: ForgetArgs) -> ExitCode {
    let dir = state_dir(args.state_dir.as_deref());
    let listing = match listing_or_exit(&dir) {
        Ok(listing) => listing,
        Err(status) => return status,
    };
    let address = |subject: &Subject| match *subject {
        Subject::Destination(ip) | Subject::Path(ip) => ip,
    };
    let chosen = |subject: &Subject| args.destination.as_ref().is_none_or(|d: &Destination| d.matches(address(subject)));
    let files = listing.valid.into_iter().map(|f| (if f.kind == "path" { Subject::Path(f.address) } else { Subject::Destination(f.address) }, f.file)).chain(listing.damaged);
    let mut status = ExitCode::SUCCESS;
    let mut forgotten = 0;
    for (subject, file) in files.filter(|(s, _)| chosen(s)) {
        match std::fs::remove_file(&file) {
            Ok(()) => {
                match subject {
                    Subject::Destination(ip) => println!("forgot {ip}"),
                    Subject::Path(ip) => println!("forgot path from {ip}"),
                }
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
    fn lines_name_paths_and_destinations() {
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        let mut record = Record::new(Reason::Option);
        record.failures = 1;
        record.until = 1600;
        let path = Failure::from_record(Subject::Path(v4), record, 1000, PathBuf::new());
        assert_eq!((path.kind, path.remaining_sec, path.worked_unix), ("path", 600, Some(0)));
        let line = describe(&path);
        assert!(line.starts_with("path from 198.18.0.1 failures 1 reason option (SYNs carrying the Fast Open option are dropped) no Fast Open for"), "{line}");
        record.pending = Some(("198.18.0.3".parse().unwrap(), 900));
        record.until = 0;
        let waiting = describe(&Failure::from_record(Subject::Path(v4), record, 1000, PathBuf::new()));
        assert!(waiting.contains("not stopped; 198.18.0.3 failed on it, waiting for a second destination"), "{waiting}");
        let dest = Failure::from_record(Subject::Destination(v4), Record { until: 500, ..Record::new(Reason::NoCookie) }, 1000, PathBuf::new());
        assert_eq!((dest.kind, dest.pending, dest.worked_unix), ("destination", None, None));
        assert!(describe(&dest).contains("backoff over"), "{}", describe(&dest));
    }
}
