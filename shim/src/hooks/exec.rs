//! exec and spawn. libtfo's state does not survive exec, so every deferred
//! socket the new image inherits sends its SYN first (without data, without
//! waiting): the new image gets an ordinary connecting socket and its first
//! write simply waits for the handshake. The round trip is lost, no byte is.
//! The statistics file is written too. execl, execlp and execle are
//! variadic and live in variadic.c, which calls these.

use super::syn;
use super::unsent;
use crate::stats::{self, Counter};
use crate::{fdtable, real};
use libc::{c_char, c_int, c_void, pid_t};

/// Before exec: the inherited sockets' SYNs, and the statistics file (the
/// counts start again from zero, in case exec fails).
pub fn before_exec() {
    complete_inherited();
    stats::write_file();
}

/// Sends the SYN of every deferred socket that survives exec (no
/// FD_CLOEXEC): before exec, posix_spawn and system.
fn complete_inherited() {
    let saved = crate::errno::get();
    for fd in 0..=fdtable::highest() {
        let Some(entry) = unsent(fd) else { continue };
        // SAFETY: F_GETFD takes no argument.
        let fd_flags = unsafe { real::fcntl(fd, libc::F_GETFD, 0) };
        if fd_flags < 0 || fd_flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        if entry.conn.is_auto() {
            syn::kick(fd, entry, Counter::KicksExec);
        } else {
            let _ = syn::syn_without_data(fd, entry, libc::MSG_NOSIGNAL);
        }
    }
    crate::errno::set(saved);
}

export! {
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        before_exec();
        crate::export::Real
    }

    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
        before_exec();
        crate::export::Real
    }

    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
        before_exec();
        crate::export::Real
    }

    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        before_exec();
        crate::export::Real
    }

    fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        before_exec();
        crate::export::Real
    }

    fn execveat(dirfd: c_int, path: *const c_char, argv: *const *const c_char, envp: *const *const c_char, flags: c_int) -> c_int {
        before_exec();
        crate::export::Real
    }

    fn posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const c_void, attr: *const c_void, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int {
        complete_inherited();
        crate::export::Real
    }

    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const c_void, attr: *const c_void, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int {
        complete_inherited();
        crate::export::Real
    }

    fn system(command: *const c_char) -> c_int {
        complete_inherited();
        crate::export::Real
    }
}

/// popen runs a shell that inherits the program's fds (glibc spawns it
/// internally, out of reach of the posix_spawn hook). It returns a FILE
/// pointer, so it is exported by hand rather than through `export!`.
///
/// # Safety
/// popen's contract.
#[no_mangle]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut c_void {
    let saved = crate::errno::get();
    if std::panic::catch_unwind(complete_inherited).is_err() {
        crate::log::panic_in_hook("popen");
    }
    crate::errno::set(saved);
    // SAFETY: the caller's arguments, passed on.
    unsafe { real::popen(command, mode) }
}

/// execl, execlp and execle: exported jumps to their C implementations in
/// variadic.c (symbols of a linked C library are not exported from a Rust
/// cdylib, and stable Rust cannot define a variadic function). A jump keeps
/// every register and stack argument as the caller passed it.
macro_rules! variadic_trampolines {
    ($($name:ident => $target:ident),*) => {$(
        extern "C" {
            fn $target();
        }
        #[no_mangle]
        #[unsafe(naked)]
        pub extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            std::arch::naked_asm!("jmp {}", sym $target);
            #[cfg(target_arch = "aarch64")]
            std::arch::naked_asm!("b {}", sym $target);
        }
    )*};
}

variadic_trampolines!(execl => tfo_execl, execlp => tfo_execlp, execle => tfo_execle);
