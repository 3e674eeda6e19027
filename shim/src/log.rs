//! One-line diagnostics on stderr. Formatting happens in a stack buffer and
//! goes out with one real write(2): no allocation, no stdio lock, no re-entry
//! into our own hooks. Nothing is ever written to stdout.

use crate::config::{self, LogLevel};
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

struct LineBuffer {
    bytes: [u8; 256],
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

pub fn emit(level: LogLevel, args: fmt::Arguments) {
    if config::get().log < level {
        return;
    }
    let saved = crate::errno::Saved::take();
    let mut line = LineBuffer { bytes: [0; 256], len: 0 };
    let _ = write!(line, "libtfo: {args}");
    line.bytes[line.len] = b'\n';
    // SAFETY: the buffer is valid for len + 1 bytes.
    unsafe { crate::real::write(2, line.bytes.as_ptr().cast(), line.len + 1) };
    saved.restore(())
}

macro_rules! warning {
    ($($t:tt)*) => { $crate::log::emit($crate::config::LogLevel::Warn, format_args!($($t)*)) };
}
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::emit($crate::config::LogLevel::Debug, format_args!($($t)*)) };
}
pub(crate) use {debug, warning};

/// Reported once per process: a missing libc symbol means those calls fail
/// with ENOSYS.
pub fn warn_missing_symbol(name: &str) {
    warning!("libc has no {}; calls to it fail with ENOSYS", name.trim_end_matches('\0'));
}

static PANIC_REPORTED: AtomicBool = AtomicBool::new(false);

/// A bug in libtfo, caught at the C boundary. Said once, then the call fails
/// with EIO rather than guessing what the real call would have done twice.
pub fn panic_in_hook(name: &str) {
    if !PANIC_REPORTED.swap(true, Ordering::Relaxed) {
        warning!("internal error in {name}; the call failed with EIO (please report)");
    }
}
