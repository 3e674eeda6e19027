//! One way for errors to travel: inside the library a call returns
//! [`SysResult`]; errno is read right after the real call that set it
//! ([`check`]) and written once, at the exported C edge (`export.rs`), which
//! also puts the caller's errno back when a hook succeeds.

use libc::{c_int, ssize_t};

/// An errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub c_int);

pub type SysResult<T> = Result<T, Errno>;

impl Errno {
    /// This thread's errno now.
    #[inline]
    pub fn last() -> Errno {
        Errno(get())
    }
}

#[inline]
pub fn get() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub fn set(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}

/// The return types of the C calls libtfo hooks: -1 (or NULL) means "see errno".
pub trait CResult: Copy + PartialEq {
    const FAILED: Self;
}

impl CResult for c_int {
    const FAILED: Self = -1;
}

impl CResult for ssize_t {
    const FAILED: Self = -1;
}

/// popen's FILE pointer: NULL means "see errno".
impl CResult for *mut libc::c_void {
    const FAILED: Self = std::ptr::null_mut();
}

/// A real call's C result as a `SysResult`, errno read at once.
#[inline]
pub fn check<T: CResult>(result: T) -> SysResult<T> {
    if result == T::FAILED {
        Err(Errno::last())
    } else {
        Ok(result)
    }
}

/// A `SysResult` back to C: the value, or -1 with errno set.
#[inline]
pub fn to_c<T: CResult>(result: SysResult<T>) -> T {
    match result {
        Ok(value) => value,
        Err(Errno(e)) => {
            set(e);
            T::FAILED
        }
    }
}
