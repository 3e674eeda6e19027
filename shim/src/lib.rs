//! libtfo: TCP Fast Open for unmodified programs, as an LD_PRELOAD library.
//!
//! It implements Linux's `TCP_FASTOPEN_CONNECT` socket option in user space
//! (explicit mode, for programs that set it) and gives every TCP client
//! socket Fast Open on its own (auto mode, the default), through the
//! kernel's own option where the kernel has it. See ARCHITECTURE.md.
//!
//! Modules, each depending only on those above it (ARCHITECTURE.md's order):
//!
//! * [`errno`] (the one error type), [`addr`] (socket addresses),
//!   [`policy`] (ports and address ranges), [`lock`], [`freestack`].
//! * [`config`] (`TFO_*` variables), [`watch`] (an epoll instance's recorded
//!   registrations), [`retain`] (SYN data kept for a retry), [`shared`].
//! * [`log`] (one-line diagnostics).
//! * [`real`] (the libc functions behind the hooks), [`stats`], [`export`]
//!   (the C edge: errno written here, panics stopped here).
//! * [`kernel`]: questions asked of the kernel (socket options, TCP_INFO,
//!   the sysctl, futex waits).
//! * [`state`]: the deferred-connect state machine (every transition);
//!   [`memo`]: route, cookie and backoff answers, kept for a second.
//! * [`fdtable`]: which fds are ours, lock-free; [`failures`]: failure
//!   memory (destinations and paths).
//! * [`fetch`]: cookie requests on libtfo's own connections.
//! * `hooks::*`: one module per family of intercepted calls, over the
//!   shared `registrations`, `syn` and `readiness`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod export;
mod addr;
mod shared;
mod config;
mod errno;
mod failures;
mod fdtable;
mod fetch;
mod freestack;
mod hooks;
mod kernel;
mod lock;
#[macro_use]
mod log;
mod memo;
mod policy;
mod real;
mod retain;
mod state;
mod stats;
mod watch;

/// Runs when the library is loaded: read the configuration, then report
/// what was wrong with it (so TFO_LOG=quiet is obeyed). Every process under
/// /etc/ld.so.preload runs this, so it does nothing else: without TFO_*
/// variables it scans the environment (glibc passes every constructor the
/// program's arguments and environment) and stores one pointer (config.rs);
/// the fork handlers are installed before the first fd is tracked
/// (hooks::track), and std's panic reporter is silenced on first use
/// (export.rs).
///
/// This and `on_unload` sit in a section of their own, which the linker
/// places after the C parts, beside the PLT: in a process that never makes
/// a socket they are the only Rust code that runs, and every 64 KiB window
/// of code run costs a process a page fault (about 2 µs here).
#[link_section = ".tfo_lifetime"]
extern "C" fn on_load(_argc: libc::c_int, _argv: *const *const libc::c_char, envp: *const *const libc::c_char) {
    for warning in config::init(envp) {
        log::warning!("{warning}");
    }
}

/// Runs at normal exit: cookie fetches are judged or let go (`fetch.rs`);
/// the statistics file; the sockets shared with other processes are let
/// go (`shared.rs`). None of them does anything in a process that has
/// nothing for them, and the last two are not even called (see `on_load`).
#[link_section = ".tfo_lifetime"]
extern "C" fn on_unload() {
    fetch::reap(fetch::Moment::Exit);
    if config::get().stats.is_some() {
        stats::write_file();
    }
    if fdtable::highest() >= 0 {
        fdtable::unshare_all();
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char) = on_load;

#[used]
#[link_section = ".fini_array"]
static ON_UNLOAD: extern "C" fn() = on_unload;
