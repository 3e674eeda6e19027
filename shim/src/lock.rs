//! A small lock for libtfo's rare shared structures (an epoll instance's
//! watched registrations),
//! made for life inside other programs:
//!
//! * it knows its owner thread, so a signal handler that interrupts the
//!   owner and needs the lock is told no instead of deadlocking;
//! * a fork child resets it: the thread that held it does not exist there.
//!   (parking_lot's and std's mutexes can be neither asked nor reset.)
//!
//! Contention is rare and short, so waiters just yield.

use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, Ordering};

pub struct OwnedLock<T> {
    /// Thread id of the owner; 0 when free.
    owner: AtomicI32,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a guard, and one guard exists at
// a time (the owner word).
unsafe impl<T: Send> Sync for OwnedLock<T> {}

thread_local! {
    /// This thread's id; 0 until first asked (and again after fork).
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// The calling thread's id (gettid), asked of the kernel once per thread.
pub fn current_tid() -> i32 {
    TID.with(|tid| {
        if tid.get() == 0 {
            // SAFETY: gettid has no preconditions.
            tid.set(unsafe { libc::gettid() });
        }
        tid.get()
    })
}

/// After fork the child's thread has a new id.
pub fn forget_tid_after_fork() {
    TID.with(|tid| tid.set(0));
}

pub struct Guard<'a, T> {
    lock: &'a OwnedLock<T>,
}

impl<T> OwnedLock<T> {
    pub const fn new(value: T) -> Self {
        OwnedLock { owner: AtomicI32::new(0), value: UnsafeCell::new(value) }
    }

    /// The lock, or `None` if this thread already holds it (a signal
    /// handler that interrupted the owner).
    pub fn lock(&self) -> Option<Guard<'_, T>> {
        let me = current_tid();
        loop {
            match self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(Guard { lock: self }),
                Err(owner) if owner == me => return None,
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// The lock if it is free now, without waiting: for caches, where a
    /// busy lock (or one a fork child inherited held) just means a miss.
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        let me = current_tid();
        self.owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).ok().map(|_| Guard { lock: self })
    }

    /// In a fork child: whoever held the lock is gone.
    pub fn reset_after_fork(&self) {
        self.owner.store(0, Ordering::Release);
    }

    /// Takes the lock for fork's prepare handler and leaves it held; false
    /// if this thread already held it (then the parent must not release it).
    pub fn hold_for_fork(&self) -> bool {
        self.lock().map(std::mem::forget).is_some()
    }

    /// Parent side after fork: releases what `hold_for_fork` took (and
    /// nothing another thread took since).
    pub fn release_after_fork(&self) {
        let _ = self.owner.compare_exchange(current_tid(), 0, Ordering::Release, Ordering::Relaxed);
    }
}

impl<T: Default> Default for OwnedLock<T> {
    fn default() -> Self {
        OwnedLock::new(T::default())
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard is the only access while it lives.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.owner.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_told_no_instead_of_deadlocking() {
        let lock = OwnedLock::new(5);
        let guard = lock.lock().unwrap();
        assert!(lock.lock().is_none());
        drop(guard);
        assert_eq!(*lock.lock().unwrap(), 5);
    }

    #[test]
    fn threads_take_turns() {
        static COUNT: OwnedLock<u64> = OwnedLock::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).for_each(|_| *COUNT.lock().unwrap() += 1)))
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*COUNT.lock().unwrap(), 40_000);
    }

    #[test]
    fn a_fork_child_can_reset_a_held_lock() {
        let lock = OwnedLock::new(());
        assert!(lock.hold_for_fork());
        assert!(!lock.hold_for_fork()); // already ours: the parent must not release twice
        lock.reset_after_fork();
        assert!(lock.lock().is_some());
        assert!(lock.hold_for_fork());
        lock.release_after_fork();
        assert!(lock.lock().is_some(), "the parent releases what it took");
    }
}
