//! TFO_SERVER: a legacy server accepts data in SYNs too. `listen()` on a
//! TCP socket whose port the setting admits enables the kernel's own
//! TCP_FASTOPEN (queue length TFO_SERVER_QLEN) unless the program set it.
//! The namespace's net.ipv4.tcp_fastopen needs the server bit (0x2).

use crate::config::{self, Mode};
use crate::kernel;
use crate::log::debug;
use libc::c_int;

/// Linux's TCP_FASTOPEN socket option (server side).
const TCP_FASTOPEN: c_int = 23;

export! {
    fn listen(fd: c_int, backlog: c_int) -> c_int {
        // A deferred socket is in SYN_SENT to the kernel: not a listener.
        if super::unsent(fd).is_some_and(|entry| super::still_unsent(fd, entry)) {
            return crate::export::Done(Err(crate::errno::Errno(libc::EINVAL)));
        }
        // A socket the emulation deferred once is, to the kernel, one that
        // connected: a kernel that then refuses listen() would refuse it.
        // (Unless the socket underneath connected too: then the kernel does.)
        // (A socket back in CLOSE: one whose SYN left is the kernel's to answer.)
        let emulated_connect = crate::fdtable::lookup(fd).is_some_and(|entry| {
            entry.conn.engine() == crate::state::Engine::Emulated
                && entry.conn.has_flag(crate::state::FLAG_HAS_CONNECTED)
                && !entry.conn.has_flag(crate::state::FLAG_UNDERNEATH_CONNECTED)
                && kernel::tcp_state(fd) == Some(kernel::TCP_CLOSE)
        });
        if emulated_connect && kernel::listen_refused_after_connect() {
            // The kernel's refusal comes after inet_csk_listen_start() took
            // a port, which the socket keeps (a later bind() says EINVAL);
            // without a free port, that fails first (EADDRINUSE).
            let port = match (kernel::tcp_family(fd), kernel::local_address(fd)) {
                (Some(family), Ok(local)) => kernel::with_local_port(fd, family, local),
                _ => None,
            };
            let errno = if port.is_some() { libc::EINVAL } else { libc::EADDRINUSE };
            return crate::export::Done(Err(crate::errno::Errno(errno)));
        }
        let config = config::get();
        if let Some(server) = config.server.as_ref().filter(|_| config.mode != Mode::Off) {
            let port = kernel::local_address(fd).map_or(0, |a| a.port());
            if kernel::tcp_family(fd).is_some()
                && server.ports.contains(port)
                && kernel::int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN) == Ok(0)
                && kernel::set_int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN, server.queue_length).is_ok()
            {
                debug!("fd {fd}: listener on port {port} takes Fast Open (queue {})", server.queue_length);
            }
        }
        // A listener is not a connection: the kernel answers for it from
        // now on (its option value and a pending error stay readable).
        // SAFETY: the caller's arguments.
        let result = crate::errno::check(unsafe { crate::real::listen(fd, backlog) });
        if result.is_ok() {
            // A server socket: auto mode leaves its later connect() alone.
            crate::fdtable::clear_candidate(fd);
        }
        if result.is_ok() && crate::fdtable::lookup(fd).is_none() {
            crate::fdtable::note_listened(fd);
        }
        if let (Ok(_), Some(entry)) = (result, crate::fdtable::lookup(fd)) {
            entry.conn.listening();
            if entry.conn.phase() == crate::state::Phase::Armed {
                entry.conn.connected_without_deferral(false);
            }
        }
        crate::export::Done(result)
    }
}
