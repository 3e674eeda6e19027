//! Memory shared with fork children, for the state of sockets they share.
//!
//! After fork() both processes hold the same kernel socket, and the kernel's
//! deferred socket is one object: a connect(), a disconnect or an error one
//! process consumes is what the other sees next. So when a process forks,
//! each socket libtfo tracks moves its state (`state::SocketState`) into a
//! slot of an arena, a MAP_SHARED anonymous mapping that the child
//! inherits at the same address; both processes then read and write the
//! slot. A slot counts the processes that hold it and returns to the free
//! stack when the last one lets it go (its last fd closed, or its exit).
//!
//! Everything here is atomics in the shared mapping: no lock, no
//! allocation, safe in an atfork handler and a signal handler. The arena is
//! mapped at the first fork that has a socket to share, before the fork.
//! When it is full, sockets stay per process (the state before this module:
//! a fork child's connect or consumed error is then not seen by the parent).

use crate::freestack::FreeStack;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// How many sockets may be shared at once. A process that leaves with
/// _exit() (as fork children often do) never lets its slots go: they are
/// lost, and 4096 such sockets fill the arena.
const SLOTS: usize = 4096;

/// One shared value, and how many processes hold it.
pub struct Slot<T> {
    pub value: T,
    processes: AtomicU32,
    next_free: AtomicU32,
}

struct Block<T> {
    /// Free slots, by index + 1 (the stack's 0 is "none").
    free: FreeStack,
    /// Slots never handed out start here.
    unused: AtomicU32,
    slots: [Slot<T>; SLOTS],
}

/// Slots of `T` in one shared mapping, made on first use.
pub struct Arena<T: 'static> {
    block: AtomicPtr<Block<T>>,
}

impl<T> Slot<T> {
    /// One more process holds the slot (a fork is about to copy it).
    pub fn add_process(&self) {
        self.processes.fetch_add(1, Ordering::AcqRel);
    }
}

impl<T: Sync> Arena<T> {
    /// # Safety
    /// A `T` whose bytes are all zero must be a valid `T` (a fresh
    /// mapping's slots are zeroed).
    pub const unsafe fn new() -> Self {
        Arena { block: AtomicPtr::new(std::ptr::null_mut()) }
    }

    fn block(&self) -> Option<&'static Block<T>> {
        let current = self.block.load(Ordering::Acquire);
        if !current.is_null() {
            // SAFETY: a mapping published below, never unmapped.
            return Some(unsafe { &*current });
        }
        let size = std::mem::size_of::<Block<T>>();
        // SAFETY: a fresh anonymous mapping; zeroed memory is a valid Block
        // (atomics at 0, and `new`'s contract for T).
        let mapped = unsafe {
            libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        };
        if mapped == libc::MAP_FAILED {
            return None;
        }
        let mapped = mapped.cast::<Block<T>>();
        match self.block.compare_exchange(std::ptr::null_mut(), mapped, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just published; never unmapped.
            Ok(_) => Some(unsafe { &*mapped }),
            Err(other) => {
                // Another thread mapped it first.
                // SAFETY: our own mapping, never published.
                unsafe { libc::munmap(mapped.cast(), size) };
                // SAFETY: published by the other thread, never unmapped.
                Some(unsafe { &*other })
            }
        }
    }

    /// A free slot held by `processes` processes, or `None` when the arena
    /// is full or cannot be mapped. Its value is what the last holder left.
    pub fn allocate(&self, processes: u32) -> Option<&'static Slot<T>> {
        let block = self.block()?;
        let index = pop_free(block).or_else(|| {
            let index = block.unused.fetch_add(1, Ordering::Relaxed);
            (index < SLOTS as u32).then_some(index)
        })?;
        let slot = &block.slots[index as usize];
        slot.processes.store(processes, Ordering::Release);
        Some(slot)
    }

    /// This process lets `slot` go; the last one frees it.
    pub fn release(&self, slot: &'static Slot<T>) {
        if slot.processes.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Some(block) = self.block() else { return };
        // SAFETY: `slot` is one of the block's slots.
        let index = unsafe { (slot as *const Slot<T>).offset_from(block.slots.as_ptr()) } as u32;
        block.free.push(index + 1, &slot.next_free);
    }
}

fn pop_free<T>(block: &Block<T>) -> Option<u32> {
    block.free.pop(|top| &block.slots[top as usize - 1].next_free).map(|top| top - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_freed_by_its_last_process_and_handed_out_again() {
        // SAFETY: an all-zero AtomicU32 is 0.
        static ARENA: Arena<AtomicU32> = unsafe { Arena::new() };
        let slot = ARENA.allocate(1).expect("a slot");
        slot.add_process();
        ARENA.release(slot);
        let other = ARENA.allocate(1).expect("another slot");
        assert!(!std::ptr::eq(slot, other), "a slot still held was handed out");
        ARENA.release(slot);
        let again = ARENA.allocate(1).expect("the freed slot");
        assert!(std::ptr::eq(slot, again), "the freed slot was not reused");
    }

    #[test]
    fn a_fork_child_writes_what_the_parent_reads() {
        // SAFETY: an all-zero AtomicU32 is 0.
        static ARENA: Arena<AtomicU32> = unsafe { Arena::new() };
        let slot = ARENA.allocate(2).expect("a slot");
        // SAFETY: the child only stores to the shared slot and leaves.
        match unsafe { libc::fork() } {
            0 => {
                slot.value.store(7, Ordering::Release);
                // SAFETY: leaving the child at once.
                unsafe { libc::_exit(0) };
            }
            child => {
                assert!(child > 0, "fork failed");
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
                assert_eq!(slot.value.load(Ordering::Acquire), 7, "the child's store is not in the parent's slot");
            }
        }
    }
}
