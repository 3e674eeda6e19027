//! exec and spawn. libtfo's state does not survive exec, so every deferred
//! socket the new image inherits sends its SYN first (without data, without
//! waiting): the new image gets an ordinary connecting socket and its first
//! write simply waits for the handshake. The round trip is lost, no byte is.
//! execl, execlp and execle are variadic and live in variadic.c, which calls
//! these.

use super::write::syn_without_data;
use super::unsent;
use crate::errno::Saved;
use crate::{fdtable, real};
use libc::{c_char, c_int, c_void, pid_t};

/// Sends the SYN of every deferred socket that survives exec (no FD_CLOEXEC).
fn complete_inherited() {
    let saved = Saved::take();
    for fd in 0..=fdtable::highest() {
        let Some(socket) = unsent(fd) else { continue };
        // SAFETY: F_GETFD takes no argument.
        let fd_flags = unsafe { real::fcntl(fd, libc::F_GETFD, 0) };
        if fd_flags < 0 || fd_flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        syn_without_data(fd, socket, libc::MSG_NOSIGNAL);
    }
    saved.restore(())
}

export! {
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        complete_inherited();
        real::execve(path, argv, envp)
    }

    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
        complete_inherited();
        real::execv(path, argv)
    }

    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
        complete_inherited();
        real::execvp(file, argv)
    }

    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        complete_inherited();
        real::execvpe(file, argv, envp)
    }

    fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
        complete_inherited();
        real::fexecve(fd, argv, envp)
    }

    fn posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const c_void, attr: *const c_void, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int {
        complete_inherited();
        real::posix_spawn(pid, path, actions, attr, argv, envp)
    }

    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const c_void, attr: *const c_void, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int {
        complete_inherited();
        real::posix_spawnp(pid, file, actions, attr, argv, envp)
    }

    fn system(command: *const c_char) -> c_int {
        complete_inherited();
        real::system(command)
    }
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
