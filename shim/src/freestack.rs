//! A lock-free stack of free indexes, for pools whose entries are never
//! unmapped (the fd table's entries, the fork-shared arena's slots, the
//! buffers of retained SYN data).
//!
//! Each entry keeps the link to the next free one itself, so pushing and
//! popping only compare-and-swap the top: no lock, no allocation, safe in
//! a signal handler and across fork. The top carries a tag that every
//! change bumps, so a pop that raced a pop and a push of the same index
//! (ABA) fails its swap and retries instead of linking a stale next.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The top: (tag << 32) | index, where index 0 means empty. An all-zero
/// `FreeStack` is a valid empty one (the shared arena's fresh mapping).
#[repr(transparent)]
pub struct FreeStack {
    top: AtomicU64,
}

impl FreeStack {
    pub const fn new() -> Self {
        FreeStack { top: AtomicU64::new(0) }
    }

    /// Puts `index` (not 0) on top; `link` is that entry's link.
    pub fn push(&self, index: u32, link: &AtomicU32) {
        let mut top = self.top.load(Ordering::Acquire);
        loop {
            link.store(top as u32, Ordering::Relaxed);
            let new = ((top >> 32).wrapping_add(1) << 32) | index as u64;
            match self.top.compare_exchange_weak(top, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(current) => top = current,
            }
        }
    }

    /// Takes the top index, if any; `link_of` gives an entry's link.
    pub fn pop<'a>(&self, link_of: impl Fn(u32) -> &'a AtomicU32) -> Option<u32> {
        let mut top = self.top.load(Ordering::Acquire);
        loop {
            let index = top as u32;
            if index == 0 {
                return None;
            }
            let next = link_of(index).load(Ordering::Relaxed);
            let new = ((top >> 32).wrapping_add(1) << 32) | next as u64;
            match self.top.compare_exchange_weak(top, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(index),
                Err(current) => top = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_come_back_last_in_first_out_then_none() {
        let links: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let stack = FreeStack::new();
        assert_eq!(stack.pop(|i| &links[i as usize]), None);
        stack.push(1, &links[1]);
        stack.push(3, &links[3]);
        assert_eq!(stack.pop(|i| &links[i as usize]), Some(3));
        assert_eq!(stack.pop(|i| &links[i as usize]), Some(1));
        assert_eq!(stack.pop(|i| &links[i as usize]), None);
    }
}
