//! The epoll registrations libtfo must know about, kept per epoll instance
//! (in the instance's fd-table entry, behind the instance's own lock):
//! those of sockets whose SYN has not left or whose outcome is unknown, and
//! of TCP sockets registered before they connected (they may defer later).
//! A registration names its fd and the generation of that fd number, so a
//! number closed behind libtfo's back and handed out again is recognised.

use crate::lock::OwnedLock;
use libc::{c_int, epoll_event};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Clone, Copy)]
pub struct Watch {
    pub fd: c_int,
    pub generation: u32,
    /// The program's events and data, as it registered them.
    pub event: epoll_event,
    /// Removed from the kernel's instance while an emulated socket's SYN
    /// has not left (its unconnected socket would report EPOLLHUP).
    pub held: bool,
    /// Edge-triggered or one-shot: EPOLLOUT already reported since held.
    pub reported: bool,
    /// The socket's epoch (`SocketState::epoch`) this record last followed,
    /// for a socket shared with another process.
    pub epoch: u32,
    /// Moved to a dup when the registered fd was closed: the kernel keeps
    /// reporting the registration, but no epoll_ctl() names it any more
    /// (its key was the closed number)...
    pub moved: bool,
    /// ...until that number, `key`, names the same file again (a dup2 onto
    /// it): then epoll_ctl() names it once more (ADD says EEXIST).
    pub key: c_int,
}

impl Watch {
    /// A one-shot registration that already reported its event.
    pub fn disarmed(&self) -> bool {
        self.reported && self.event.events & libc::EPOLLONESHOT as u32 != 0
    }

    /// Edge-triggered, and its edge already reported: the kernel would
    /// report it again only after a new wake-up of the socket.
    pub fn edge_collected(&self) -> bool {
        self.reported && self.event.events & libc::EPOLLET as u32 != 0
    }

    /// Edge-triggered or one-shot: report once.
    pub fn once(&self) -> bool {
        self.event.events & (libc::EPOLLET | libc::EPOLLONESHOT) as u32 != 0
    }

    /// The events it asks for, as poll's (epoll's share their values).
    pub fn wanted(&self) -> i16 {
        self.event.events as u16 as i16
    }
}

// SAFETY: plain data (epoll_event holds a u64 the kernel never dereferences).
unsafe impl Send for Watch {}

#[derive(Default)]
pub struct WatchList {
    list: OwnedLock<Vec<Watch>>,
    /// Length of `list`: epoll_wait's fast check, without the lock.
    count: AtomicU32,
}

impl WatchList {
    pub(crate) fn reset(&self) {
        if let Some(mut list) = self.list.lock() {
            list.clear();
        }
        self.count.store(0, Ordering::Relaxed);
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Runs `f` on the list, or returns `None` when this thread already
    /// holds it (a signal handler interrupted the owner).
    pub fn with<R>(&self, f: impl FnOnce(&mut Vec<Watch>) -> R) -> Option<R> {
        let mut list = self.list.lock()?;
        let r = f(&mut list);
        self.count.store(list.len() as u32, Ordering::Relaxed);
        Some(r)
    }

    /// fork(): the child must not inherit a lock held by a thread that does
    /// not exist there.
    pub fn hold_for_fork(&self) -> bool {
        self.list.hold_for_fork()
    }

    pub fn release_after_fork(&self) {
        self.list.release_after_fork()
    }

    pub fn reset_after_fork(&self) {
        self.list.reset_after_fork()
    }
}
