//! The macros that turn hook bodies into exported C functions.
//!
//! Every body runs inside `catch_unwind` ([`guarded`]): a panic never crosses
//! into C. It is reported once and the call fails with EIO; calling the real
//! function instead could repeat a side effect the hook had begun (a SYN).
//!
//! `export_fd!` is for calls that only concern libtfo on some fds: the
//! export tests its guard and, when it yields nothing, tail-calls the real
//! function — no frame, no unwinding scope, a few instructions. Only a
//! tracked fd enters the cold, guarded body.

use crate::errno;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[inline(always)]
pub fn guarded<R: From<i8>>(name: &str, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(_) => {
            crate::log::panic_in_hook(name);
            errno::fail(libc::EIO)
        }
    }
}

/// `fn name(args) -> ret { body }`: the whole body is guarded.
macro_rules! export {
    ($( $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block )*) => {$(
        $(#[$meta])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            $crate::export::guarded(stringify!($name), || -> $ret { $body })
        }
    )*};
}

/// `fn name(args) -> ret, if let Some(x) = guard => { body }`: without a
/// match the real function runs directly; with one, the guarded body does.
/// The guard yields a tracked socket, or any type written `Some(x: T)`.
macro_rules! export_fd {
    ($( $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty,
        if let Some($found:ident) = $guard:expr => $body:block )*) => {
        export_fd! {$(
            $(#[$meta])* fn $name($($arg: $ty),*) -> $ret,
            if let Some($found: &'static $crate::deferred::Socket) = $guard => $body
        )*}
    };
    ($( $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty,
        if let Some($found:ident : $fty:ty) = $guard:expr => $body:block )*) => {$(
        $(#[$meta])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            #[cold]
            #[inline(never)]
            #[allow(unused_variables)]
            // The socket comes last so the C arguments stay in their registers.
            unsafe fn tracked($($arg: $ty,)* $found: $fty) -> $ret {
                $crate::export::guarded(stringify!($name), || -> $ret { $body })
            }
            match $guard {
                None => $crate::real::$name($($arg),*),
                Some($found) => tracked($($arg,)* $found),
            }
        }
    )*};
}
