//! TFO_SERVER: a legacy server accepts data in SYNs too. `listen()` on a
//! TCP socket whose port the setting admits enables the kernel's own
//! TCP_FASTOPEN (queue length TFO_SERVER_QLEN) unless the program set it.
//! The namespace's net.ipv4.tcp_fastopen needs the server bit (0x2).

use crate::config::{self, Mode};
use crate::export::Real;
use crate::kernel;
use crate::log::debug;
use libc::c_int;

/// Linux's TCP_FASTOPEN socket option (server side).
const TCP_FASTOPEN: c_int = 23;

export! {
    fn listen(fd: c_int, backlog: c_int) -> c_int {
        // A deferred socket is connecting to the kernel's eyes (inet_listen:
        // EINVAL); the emulation's unconnected socket would listen.
        if crate::fdtable::lookup(fd).is_some_and(|e| e.conn.is_unsent() && e.conn.engine() == crate::state::Engine::Emulated) {
            return crate::export::Done(Err(crate::errno::Errno(libc::EINVAL)));
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
        Real
    }
}
