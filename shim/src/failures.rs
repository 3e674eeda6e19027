//! Failure memory: destinations whose path broke Fast Open (a SYN with data
//! dropped, or answered by a reset) are not given Fast Open again for a
//! backoff period that doubles with each repeated failure (`TFO_BACKOFF`
//! seconds at first, at most a day). It is shared by every process of the
//! user: one small file per destination in `TFO_STATE_DIR`.
//!
//! The kernel's own record (tcp_metrics `fo_syn_drops`) counts dropped SYNs
//! per destination but no longer acts on them, and knows nothing of resets;
//! this store is what decides, and it starts its count from the kernel's
//! drop count when that is higher. `tfo forget` (or removing the files)
//! clears it; `ip tcp_metrics delete` clears the kernel's.
//!
//! Safety rules: the directory must be the user's own (mode 0700, not a
//! symlink); files are opened with O_NOFOLLOW, must be regular, the user's
//! and small; a damaged or foreign file is ignored with one warning. Writes
//! go to a temporary name and are renamed into place, so concurrent writers
//! never leave a torn file. Paths are built in stack buffers and every call
//! is a raw system call: no allocation, no libtfo hook re-entered.

use crate::config;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Dropped,
    Reset,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Dropped => "dropped",
            Reason::Reset => "reset",
        }
    }
}

const MAX_BACKOFF_SECS: u64 = 24 * 3600;
const MAGIC: &str = "libtfo-failure v1 ";

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
    fn ptr(&mut self) -> *const libc::c_char {
        self.bytes[self.len] = 0;
        self.bytes.as_ptr().cast()
    }
}

/// `DIR/NAME` for `ip` (IPv6 colons become dashes), with `suffix`.
fn file_path(dir: &str, ip: IpAddr, suffix: &str) -> Option<PathBuf> {
    let mut path = PathBuf { bytes: [0; 512], len: 0 };
    write!(path, "{dir}/").ok()?;
    let mut name = PathBuf { bytes: [0; 512], len: 0 };
    write!(name, "{}", crate::policy::canonical(ip)).ok()?;
    for &b in &name.bytes[..name.len] {
        path.write_char(if b == b':' { '-' } else { b as char }).ok()?;
    }
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

/// One destination's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    failures: u32,
    until: u64,
}

fn parse(text: &str) -> Option<Record> {
    let rest = text.strip_prefix(MAGIC)?.trim_end();
    let mut words = rest.split(' ');
    let failures = words.next()?.parse().ok()?;
    let until = words.next()?.parse().ok()?;
    let reason = words.next()?;
    (matches!(reason, "dropped" | "reset") && words.next().is_none()).then_some(Record { failures, until })
}

/// The record for `ip`, if there is a sound one.
fn read(dir: &str, ip: IpAddr) -> Option<Record> {
    let mut path = file_path(dir, ip, "")?;
    // SAFETY: a NUL-terminated path; O_NOFOLLOW refuses a symlink.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK) } as libc::c_int;
    if fd < 0 {
        // A symlink in its place (O_NOFOLLOW: ELOOP) is hostile; no file or
        // no directory is the common case: no record.
        if crate::errno::get() == libc::ELOOP {
            warn_once(format_args!("{ip} is a symbolic link"));
        }
        return None;
    }
    let mut buf = [0u8; 128];
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is ours, st and buf are valid for writing.
    let n = unsafe {
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != euid() || st.st_size > 120 {
            -1
        } else {
            libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) as isize
        }
    };
    // SAFETY: closing the fd opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
    let record = usize::try_from(n).ok().and_then(|n| std::str::from_utf8(&buf[..n]).ok()).and_then(parse);
    if record.is_none() {
        warn_once(format_args!("{} is damaged or not the user's own", ip));
    }
    record
}

/// True while `ip` is in its backoff period: connect without Fast Open.
/// "Not in backoff" is remembered for a second (memo.rs): a failure this
/// process records is seen at once, another process's within a second.
pub fn in_backoff(ip: IpAddr) -> bool {
    let Some(dir) = config::get().state_dir() else { return false };
    !crate::memo::clear_of_backoff(ip, || read(dir, ip).is_none_or(|r| r.until <= now_secs()))
}

/// The state directory exists, or is created, and is safe to use.
fn usable_dir(dir: &str) -> bool {
    let mut path = PathBuf { bytes: [0; 512], len: 0 };
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

/// `ip` failed Fast Open: start or extend its backoff. `kernel_drops` is
/// the kernel's own SYN-drop count for it, when known.
pub fn record(ip: IpAddr, reason: Reason, kernel_drops: u32) {
    crate::memo::forget(ip);
    let Some(dir) = config::get().state_dir() else { return };
    if !usable_dir(dir) {
        return;
    }
    let now = now_secs();
    let failures = read(dir, ip).map_or(0, |r| r.failures).max(kernel_drops.saturating_sub(1)).saturating_add(1);
    let backoff = config::get().backoff_secs.saturating_mul(1 << (failures - 1).min(20)).min(MAX_BACKOFF_SECS);
    let mut line = PathBuf { bytes: [0; 512], len: 0 };
    if writeln!(line, "{MAGIC}{failures} {} {}", now + backoff, reason.name()).is_err() {
        return;
    }
    // SAFETY: getpid/gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let mut tmp_suffix = PathBuf { bytes: [0; 512], len: 0 };
    let _ = write!(tmp_suffix, ".tmp.{pid}.{tid}");
    let suffix = std::str::from_utf8(&tmp_suffix.bytes[..tmp_suffix.len]).unwrap_or(".tmp");
    let (Some(mut tmp), Some(mut target)) = (file_path(dir, ip, suffix), file_path(dir, ip, "")) else { return };
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
    crate::log::info!("{ip}: Fast Open SYN data {} on the path; plain connects for {backoff} s", reason.name());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_strictly() {
        assert_eq!(parse("libtfo-failure v1 2 1700000000 reset\n"), Some(Record { failures: 2, until: 1_700_000_000 }));
        for bad in ["", "libtfo-failure v1 x 1 reset", "libtfo-failure v2 1 1 reset", "libtfo-failure v1 1 1 other", "libtfo-failure v1 1 1 reset extra"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_names_are_addresses_with_dashes_for_colons() {
        let p = file_path("/d", "2001:db8::1".parse().unwrap(), "").unwrap();
        assert_eq!(&p.bytes[..p.len], b"/d/2001-db8--1");
        let p = file_path("/d", "::ffff:198.18.0.2".parse().unwrap(), "").unwrap();
        assert_eq!(&p.bytes[..p.len], b"/d/198.18.0.2");
    }
}
