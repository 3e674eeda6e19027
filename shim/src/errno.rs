//! errno access. Hooks preserve errno exactly: a passthrough leaves what libc
//! set, and a hook that makes internal calls before succeeding restores the
//! caller's value.

use libc::c_int;

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

/// Sets errno and returns -1, the C convention for a failed call.
#[inline]
pub fn fail<T: From<i8>>(value: c_int) -> T {
    set(value);
    T::from(-1)
}

/// The caller's errno, put back when a hook succeeds after internal calls.
#[derive(Clone, Copy)]
pub struct Saved(c_int);

impl Saved {
    #[inline]
    pub fn take() -> Self {
        Saved(get())
    }

    #[inline]
    pub fn restore<T>(self, result: T) -> T {
        set(self.0);
        result
    }
}
