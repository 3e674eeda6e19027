//! Failure memory: what broke Fast Open, so it is not tried again for a
//! backoff period that doubles with each repeat (`TFO_BACKOFF` seconds at
//! first, at most a day). Shared by every process of the user: one small
//! file per subject in `TFO_STATE_DIR`, in the format of the
//! `failure-record` crate (which the `tfo` command reads too).
//!
//! Two kinds of subject:
//! * a **destination**: its SYN with data was dropped or reset, its cookie
//!   request was dropped (the option), or it gives no cookie at all (then
//!   only cookie requests stop, for longer: it is no fault);
//! * a **path**, the local side many destinations share (the source address
//!   the kernel picks): see [`path_failed`] for when the evidence points
//!   there rather than at one destination. A path in backoff gets no Fast
//!   Open at all, cookie requests included, for any destination.
//!
//! The kernel's own record (tcp_metrics `fo_syn_drops`) counts dropped SYNs
//! per destination but no longer acts on them, and knows nothing of resets
//! or lost cookie requests; this store is what decides, and it starts a
//! destination's count from the kernel's drop count when that is higher.
//! `tfo forget` (or removing the files) clears it.
//!
//! Safety rules: the directory must be the user's own (mode 0700, not a
//! symlink); files are opened with O_NOFOLLOW, must be regular, the user's
//! and small; a damaged or foreign file is ignored with one warning. Writes
//! go to a temporary name and are renamed into place, so concurrent writers
//! never leave a torn file. Paths are built in stack buffers and every call
//! is a raw system call: no allocation, no libtfo hook re-entered.

use crate::config;
pub use failure_record::Reason;
use failure_record::{Record, Subject};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const MAX_BACKOFF_SECS: u64 = 24 * 3600;

/// A server that gives no cookie is asked again after this long (doubling).
const NO_COOKIE_BACKOFF_SECS: u64 = 3600;

/// A path stopped on the evidence of one destination alone (see
/// [`path_failed`]) is tried again this soon: it may have been that
/// destination's fault.
const SINGLE_STRIKE_PATH_BACKOFF_SECS: u64 = 60;

/// How long a destination's failure on a path waits for a second one.
const STRIKE_WINDOW_SECS: u64 = 3600;

/// Fast Open that worked on a path longer ago than this says nothing of it now.
const WORKED_FRESH_SECS: u64 = 24 * 3600;

/// A path known to work is noted again at most this often.
const WORKED_NOTE_SECS: u64 = 3600;

/// A path in a stack buffer, NUL-terminated.
struct PathBuf {
    bytes: [u8; 512],
    len: usize,
}

impl Write for PathBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() >= self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

impl PathBuf {
    fn new() -> PathBuf {
        PathBuf { bytes: [0; 512], len: 0 }
    }

    fn ptr(&mut self) -> *const libc::c_char {
        self.bytes[self.len] = 0;
        self.bytes.as_ptr().cast()
    }
}

/// `DIR/NAME` of `subject`, with `suffix`.
fn file_path(dir: &str, subject: Subject, suffix: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    write!(path, "{dir}/").ok()?;
    failure_record::write_name(&mut path, subject).ok()?;
    path.write_str(suffix).ok()?;
    Some(path)
}

fn now_secs() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec.max(0) as u64
}

fn euid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(args: std::fmt::Arguments) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        crate::log::warning!("failure memory: {args}; ignored");
    }
}

/// The record of `subject`, if there is a sound one.
fn read(dir: &str, subject: Subject) -> Option<Record> {
    let mut path = file_path(dir, subject, "")?;
    // SAFETY: a NUL-terminated path; O_NOFOLLOW refuses a symlink.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK) } as libc::c_int;
    if fd < 0 {
        // A symlink in its place (O_NOFOLLOW: ELOOP) is hostile; no file or
        // no directory is the common case: no record.
        if crate::errno::get() == libc::ELOOP {
            warn_once(format_args!("{} is a symbolic link", Shown(subject)));
        }
        return None;
    }
    let mut buf = [0u8; 160];
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is ours, st and buf are valid for writing.
    let n = unsafe {
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != euid() || st.st_size > 150 {
            -1
        } else {
            libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) as isize
        }
    };
    // SAFETY: closing the fd opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
    let record = usize::try_from(n).ok().and_then(|n| std::str::from_utf8(&buf[..n]).ok()).and_then(|t| failure_record::parse(subject, t));
    if record.is_none() {
        warn_once(format_args!("{} is damaged or not the user's own", Shown(subject)));
    }
    record
}

/// A subject as its file is named.
struct Shown(Subject);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        failure_record::write_name(f, self.0)
    }
}

/// True while `ip` is in its backoff period: connect without Fast Open.
/// "Not in backoff" is remembered for a second (memo.rs): a failure this
/// process records is seen at once, another process's within a second.
pub fn in_backoff(ip: IpAddr) -> bool {
    let Some(dir) = config::get().state_dir() else { return false };
    !crate::memo::clear_of_backoff(ip, || read(dir, Subject::Destination(ip)).is_none_or(|r| r.until <= now_secs()))
}

/// True while the path through local address `source` is in backoff: no
/// Fast Open for any destination reached through it. Remembered as above.
pub fn path_in_backoff(source: IpAddr) -> bool {
    let Some(dir) = config::get().state_dir() else { return false };
    !crate::memo::path_clear(source, || read(dir, Subject::Path(source)).is_none_or(|r| r.until <= now_secs()))
}

/// The state directory exists, or is created, and is safe to use.
fn usable_dir(dir: &str) -> bool {
    let mut path = PathBuf::new();
    if path.write_str(dir).is_err() {
        return false;
    }
    // SAFETY: a NUL-terminated path. EEXIST is fine: checked below.
    unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.ptr(), 0o700) };
    // SAFETY: an all-zero stat is valid; lstat does not follow a symlink.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::lstat(path.ptr(), &mut st) } != 0 {
        return false;
    }
    let sound = st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_uid == euid() && st.st_mode & 0o077 == 0;
    if !sound {
        warn_once(format_args!("{dir} is not a directory only this user can use"));
    }
    sound
}

/// The backoff after `failures` backoffs, starting from `base` seconds.
fn backoff(base: u64, failures: u32) -> u64 {
    base.saturating_mul(1 << failures.saturating_sub(1).min(20)).min(MAX_BACKOFF_SECS)
}

/// `ip` failed Fast Open: start or extend its backoff. `kernel_drops` is
/// the kernel's own SYN-drop count for it, when known.
pub fn record(ip: IpAddr, reason: Reason, kernel_drops: u32) {
    crate::memo::forget(ip);
    let Some(dir) = config::get().state_dir().filter(|d| usable_dir(d)) else { return };
    let now = now_secs();
    let subject = Subject::Destination(ip);
    let failures = read(dir, subject).map_or(0, |r| r.failures).max(kernel_drops.saturating_sub(1)).saturating_add(1);
    let base = if reason == Reason::NoCookie { NO_COOKIE_BACKOFF_SECS } else { config::get().backoff_secs };
    let secs = backoff(base, failures);
    write_record(dir, subject, &Record { failures, until: now + secs, ..Record::new(reason) });
    match reason {
        Reason::NoCookie => crate::log::info!("{ip}: no Fast Open cookie offered; no cookie requests for {secs} s"),
        _ => crate::log::info!("{ip}: {} on the path; plain connects for {secs} s", reason.describe()),
    }
}

/// A Fast Open failure towards `dest` through the local address `source`.
/// The path is stopped (every destination through it) when the evidence
/// points at it rather than at `dest`:
/// * a second destination failed on it within an hour (the first one is
///   kept pending), with nothing working in between: a middlebox on the
///   local side, as most are. Backoff `TFO_BACKOFF`, doubling on repeats;
/// * or a SYN with data failed on a path where no SYN's data has been seen
///   acknowledged for a day: nothing says it is the destination's fault, and each
///   such failure costs a retransmission timeout. Backoff one minute only
///   (doubling on repeats): one unlucky destination stops a fresh path briefly.
///
/// A cookie request that went unanswered costs the program nothing (libtfo
/// asks on a connection of its own), so it needs the two destinations.
pub fn path_failed(source: IpAddr, dest: IpAddr, reason: Reason) {
    crate::memo::forget(source);
    let Some(dir) = config::get().state_dir().filter(|d| usable_dir(d)) else { return };
    let now = now_secs();
    let subject = Subject::Path(source);
    let mut record = read(dir, subject).unwrap_or(Record::new(reason));
    if record.until > now {
        return;
    }
    let dest = failure_record::canonical(dest);
    let second = record.pending.is_some_and(|(first, since)| first != dest && now.saturating_sub(since) < STRIKE_WINDOW_SECS);
    let fresh = record.worked == 0 || now.saturating_sub(record.worked) > WORKED_FRESH_SECS;
    let costly = matches!(reason, Reason::Dropped | Reason::Reset);
    record.reason = reason;
    if second || (costly && fresh) {
        record.failures = record.failures.saturating_add(1);
        let base = if second { config::get().backoff_secs } else { SINGLE_STRIKE_PATH_BACKOFF_SECS };
        let secs = backoff(base, record.failures);
        record.until = now + secs;
        record.pending = None;
        crate::log::info!("path from {source}: {} (last towards {dest}); no Fast Open through it for {secs} s", reason.describe());
    } else {
        record.pending = Some((dest, now));
    }
    write_record(dir, subject, &record);
}

/// When this process last noted that SYN data works (monotonic ms + 1; 0 never).
static WORKED_NOTED_MS: AtomicU64 = AtomicU64::new(0);

/// Fast Open worked through `source`: a SYN's data was acknowledged
/// (`Worked::Data`), or a cookie request was answered (`Worked::Cookie`).
/// A failure pending on the path was the destination's own: a data success
/// clears any, a cookie only a lost cookie request. Written only when the
/// file says otherwise, and a data success at most once an hour per
/// process, so a busy client writes nothing.
pub fn path_worked(worked: Worked, source: impl FnOnce() -> Option<IpAddr>) {
    if worked == Worked::Data {
        let now_ms = crate::kernel::monotonic_ms();
        let noted = WORKED_NOTED_MS.load(Ordering::Relaxed);
        if noted != 0 && now_ms.saturating_sub(noted - 1) < WORKED_NOTE_SECS * 1000 {
            return;
        }
        WORKED_NOTED_MS.store(now_ms + 1, Ordering::Relaxed);
    }
    let Some(source) = source() else { return };
    let Some(dir) = config::get().state_dir().filter(|d| usable_dir(d)) else { return };
    let now = now_secs();
    let subject = Subject::Path(source);
    let found = read(dir, subject);
    let mut record = found.unwrap_or(Record::new(Reason::Dropped));
    let clears = record.pending.is_some() && (worked == Worked::Data || record.reason == Reason::Option);
    let stale = worked == Worked::Data && now.saturating_sub(record.worked) >= WORKED_NOTE_SECS;
    if !clears && !stale {
        return;
    }
    if clears {
        record.pending = None;
    }
    if worked == Worked::Data {
        record.worked = now;
    }
    write_record(dir, subject, &record);
}

/// What worked on a path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Worked {
    /// A SYN's data was acknowledged.
    Data,
    /// A cookie request was answered with a cookie.
    Cookie,
}

/// Replaces `subject`'s file with `record`, atomically.
fn write_record(dir: &str, subject: Subject, record: &Record) {
    let mut line = PathBuf::new();
    if failure_record::write(&mut line, subject, record).is_err() {
        return;
    }
    // SAFETY: getpid/gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let mut tmp_suffix = PathBuf::new();
    let _ = write!(tmp_suffix, ".tmp.{pid}.{tid}");
    let suffix = std::str::from_utf8(&tmp_suffix.bytes[..tmp_suffix.len]).unwrap_or(".tmp");
    let (Some(mut tmp), Some(mut target)) = (file_path(dir, subject, suffix), file_path(dir, subject, "")) else { return };
    // SAFETY: NUL-terminated paths; the fd is ours and closed below.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            tmp.ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        ) as libc::c_int;
        if fd < 0 {
            return;
        }
        let written = libc::syscall(libc::SYS_write, fd, line.bytes.as_ptr(), line.len);
        libc::syscall(libc::SYS_close, fd);
        if written == line.len as i64 {
            libc::syscall(libc::SYS_renameat, libc::AT_FDCWD, tmp.ptr(), libc::AT_FDCWD, target.ptr());
        } else {
            libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, tmp.ptr(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_the_shared_format() {
        let p = file_path("/d", Subject::Destination("2001:db8::1".parse().unwrap()), "").unwrap();
        assert_eq!(&p.bytes[..p.len], b"/d/2001-db8--1");
        let p = file_path("/d", Subject::Path("::ffff:198.18.0.1".parse().unwrap()), ".tmp").unwrap();
        assert_eq!(&p.bytes[..p.len], b"/d/path-198.18.0.1.tmp");
    }

    #[test]
    fn backoffs_double_up_to_a_day() {
        assert_eq!(backoff(600, 1), 600);
        assert_eq!(backoff(600, 2), 1200);
        assert_eq!(backoff(60, 3), 240);
        assert_eq!(backoff(600, 40), MAX_BACKOFF_SECS);
    }
}
