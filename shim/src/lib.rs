//! libtfo: TCP Fast Open for unmodified programs, as an LD_PRELOAD library.
//!
//! The library implements Linux's `TCP_FASTOPEN_CONNECT` socket option in
//! user space. One module per concern:
//!
//! * [`real`]: the libc functions behind the hooks; [`export`]: the macro
//!   that makes a hook a C symbol that never lets a panic out.
//! * [`fdtable`]: which fds are ours, lock-free; [`deferred`]: the
//!   per-socket deferred-connect state machine.
//! * [`kernel`]: questions asked of the kernel; [`config`], [`log`].
//! * `hooks::*`: one module per family of intercepted calls.

#[macro_use]
mod export;
mod config;
mod deferred;
mod errno;
mod fdtable;
mod hooks;
mod kernel;
mod lock;
mod log;
mod real;

/// Runs when the library is loaded: read the configuration and keep std's
/// panic reporter quiet (a panic is reported once, by the hook that caught it).
extern "C" fn on_load() {
    config::init();
    hooks::install_fork_handlers();
    std::panic::set_hook(Box::new(|_| {}));
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
