//! The C edge: the macros that turn hook bodies into exported C functions.
//!
//! A hook body returns an [`Answer`]: `Real` (make the real call, as if
//! libtfo were not there) or `Done(result)`. Here, and only here, errno is
//! written: the error of a failed call, or the caller's own errno put back
//! after a hook that succeeded (or passes the call on) after internal calls.
//!
//! Every body runs inside `catch_unwind` ([`guarded`]): a panic never crosses
//! into C. It is reported once and the call fails with EIO; calling the real
//! function instead could repeat a side effect the hook had begun (a SYN).
//!
//! `export_fd!` is for calls that concern libtfo on some fds only: the
//! export tests its guard and, when it yields nothing, tail-calls the real
//! function — no frame, no unwinding scope, a few instructions. Only a
//! tracked fd enters the cold, guarded body.

use crate::errno::{self, CResult, Errno, SysResult};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a hook decided.
pub enum Answer<T> {
    /// The call is answered by libtfo (or by a real call libtfo made).
    Done(SysResult<T>),
    /// Make the real call with the caller's arguments.
    Real,
}

pub use Answer::{Done, Real};

impl<T> From<SysResult<T>> for Answer<T> {
    fn from(result: SysResult<T>) -> Self {
        Done(result)
    }
}

/// Runs a hook body: a panic becomes EIO, reported once.
#[inline(always)]
pub fn guarded<T>(name: &str, body: impl FnOnce() -> Answer<T>) -> Answer<T> {
    quiet_panics();
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        crate::log::panic_in_hook(name);
        Done(Err(Errno(libc::EIO)))
    })
}

/// Keeps std's panic reporter quiet (a panic is reported once, by the
/// hook that caught it). Set on the first guarded body, not at load: a
/// process that never reaches one never pays for it.
#[inline(always)]
fn quiet_panics() {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// Writes errno for a finished answer; `None` means "make the real call"
/// (errno is then the caller's again, for the real call to set or keep).
#[inline(always)]
pub fn finish<T: CResult>(caller_errno: libc::c_int, answer: Answer<T>) -> Option<T> {
    match answer {
        Done(result) => {
            errno::set(caller_errno);
            Some(errno::to_c(result))
        }
        Real => {
            errno::set(caller_errno);
            None
        }
    }
}

/// `fn name(args) -> ret { body }`: the whole body is guarded.
macro_rules! export {
    ($( $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block )*) => {$(
        $(#[$meta])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            let caller_errno = $crate::errno::get();
            let answer = $crate::export::guarded(stringify!($name), || -> $crate::export::Answer<$ret> { $body });
            match $crate::export::finish(caller_errno, answer) {
                Some(result) => result,
                // SAFETY: the caller's arguments, passed on unchanged.
                None => unsafe { $crate::real::$name($($arg),*) },
            }
        }
    )*};
}

/// `fn name(args) -> ret, if let Some(x: T) = guard => { body }`: without
/// a match the real function runs directly; with one, the guarded body
/// does. (`hooks::export_tracked!` is this for a tracked socket's entry.)
macro_rules! export_fd {
    ($( $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty,
        if let Some($found:ident : $fty:ty) = $guard:expr => $body:block )*) => {$(
        $(#[$meta])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            #[cold]
            #[inline(never)]
            #[allow(unused_variables, clippy::too_many_arguments, improper_ctypes_definitions)]
            // The entry comes last so the C arguments stay in their registers.
            // The C ABI (a Rust caller and callee, so any layout agrees)
            // says it cannot unwind (its body is guarded): the export then
            // needs no unwinding scope of its own, and with five arguments
            // or fewer both paths are tail calls, the fast path frameless.
            unsafe extern "C" fn tracked($($arg: $ty,)* $found: $fty) -> $ret {
                let caller_errno = $crate::errno::get();
                let answer = $crate::export::guarded(stringify!($name), || -> $crate::export::Answer<$ret> { $body });
                match $crate::export::finish(caller_errno, answer) {
                    Some(result) => result,
                    // SAFETY: the caller's arguments, passed on unchanged.
                    None => unsafe { $crate::real::$name($($arg),*) },
                }
            }
            match $guard {
                // SAFETY: the caller's arguments, passed on unchanged.
                None => unsafe { $crate::real::$name($($arg),*) },
                // SAFETY: as above; `tracked` is this function's own body.
                Some($found) => unsafe { tracked($($arg,)* $found) },
            }
        }
    )*};
}
