//! One-line diagnostics: `libtfo[PID]: LEVEL: message`, on stderr or
//! appended to `TFO_LOG_FILE`. Formatting happens in a stack buffer and goes
//! out with one raw write(2) system call: no allocation, no stdio lock, no
//! re-entry into libtfo's own hooks, so it is safe anywhere, signal handlers
//! and fork children included. Nothing is ever written to stdout.
//!
//! The log file is opened for each line and closed again: an fd kept open
//! by the library could be closed by the program and its number reused for
//! one of the program's sockets.

use crate::config::{self, LogLevel};
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

struct LineBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep room for the newline; a long message is cut, never dropped.
        let room = self.bytes.len() - 1 - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[inline]
pub fn enabled(level: LogLevel) -> bool {
    config::get().log >= level
}

pub fn emit(level: LogLevel, args: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let saved = crate::errno::get();
    let mut line = LineBuffer { bytes: [0; 512], len: 0 };
    let name = match level {
        LogLevel::Quiet | LogLevel::Warn => "warning",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = write!(line, "libtfo[{pid}]: {name}: {args}");
    line.bytes[line.len] = b'\n';
    write_line(&line.bytes[..=line.len]);
    crate::errno::set(saved);
}

fn write_line(bytes: &[u8]) {
    let fd = match &config::get().log_file {
        // SAFETY: a NUL-terminated path; the flags need no mode argument
        // beyond the one given.
        Some(path) => unsafe {
            libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC, 0o600)
                as libc::c_int
        },
        None => 2,
    };
    if fd < 0 {
        return;
    }
    // SAFETY: `bytes` is valid for its length; a raw system call, so none
    // of libtfo's hooks sees it.
    unsafe { libc::syscall(libc::SYS_write, fd, bytes.as_ptr(), bytes.len()) };
    if fd != 2 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
}

macro_rules! warning {
    ($($t:tt)*) => { $crate::log::emit($crate::config::LogLevel::Warn, format_args!($($t)*)) };
}
macro_rules! info {
    ($($t:tt)*) => { $crate::log::emit($crate::config::LogLevel::Info, format_args!($($t)*)) };
}
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::emit($crate::config::LogLevel::Debug, format_args!($($t)*)) };
}
pub(crate) use {debug, info, warning};

/// A missing libc symbol means calls to it fail with ENOSYS (said once per
/// symbol, by `real.rs`).
pub fn warn_missing_symbol(name: &str) {
    #[cfg(test)]
    MISSING_SYMBOL_WARNINGS.fetch_add(1, Ordering::Relaxed);
    warning!("libc has no {}; calls to it fail with ENOSYS", name.trim_end_matches('\0'));
}

#[cfg(test)]
pub static MISSING_SYMBOL_WARNINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

static PANIC_REPORTED: AtomicBool = AtomicBool::new(false);

/// A bug in libtfo, caught at the C boundary. Said once, then the call fails
/// with EIO rather than guessing what the real call would have done twice.
pub fn panic_in_hook(name: &str) {
    if !PANIC_REPORTED.swap(true, Ordering::Relaxed) {
        warning!("internal error in {name}; the call failed with EIO (please report)");
    }
}
