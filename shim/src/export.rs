//! `export!` turns a hook body into an exported C function.
//!
//! The body runs inside `catch_unwind`: a panic never crosses into C. It is
//! reported once and the call fails with EIO; calling the real function
//! instead could repeat a side effect (send a SYN twice) the hook had begun.

macro_rules! export {
    ($( $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block )*) => {$(
        $(#[$meta])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> $ret { $body })) {
                Ok(result) => result,
                Err(_) => {
                    $crate::log::panic_in_hook(stringify!($name));
                    $crate::errno::fail(libc::EIO)
                }
            }
        }
    )*};
}
