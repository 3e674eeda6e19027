//! The data of a SYN kept until the handshake's outcome is known, so that a
//! connection whose SYN with data was answered by a reset can be retried
//! without data and the bytes sent again (auto mode, non-blocking writes).
//!
//! Buffers come from a lock-free pool of fixed-size blocks mapped with
//! mmap(2) (async-signal-safe, unlike malloc: a write hook may run in a
//! signal handler) and are reused, never unmapped: the pool grows to the
//! largest number of connections whose SYN was in flight at one time.

use crate::freestack::FreeStack;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The most SYN data kept per connection. A SYN carries at most MSS - 40
/// bytes (1420 on Ethernet paths), so this caps only jumbo and loopback
/// paths, where the first write is shortened to it.
pub const CAPACITY: usize = 16 * 1024;
const MAX_BUFFERS: usize = 8192;

static BUFFERS: [AtomicPtr<u8>; MAX_BUFFERS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_BUFFERS];
/// The free stack's link of buffer `index` is `LINKS[index]`; the stack
/// holds `index + 1` (0 is its "none").
static LINKS: [AtomicU32; MAX_BUFFERS] = [const { AtomicU32::new(0) }; MAX_BUFFERS];
static NEXT_FRESH: AtomicU32 = AtomicU32::new(0);
static FREE: FreeStack = FreeStack::new();

/// One connection's kept bytes: a buffer number (+1, 0 for none) and a length.
#[derive(Default)]
pub struct Retained {
    buffer: AtomicU32,
    len: AtomicU32,
}

impl Retained {
    /// Keeps `data` (at most CAPACITY bytes); false when no buffer could be
    /// had (the connection then cannot be retried, only remembered).
    pub fn keep(&self, data: &[&[u8]]) -> bool {
        let Some(index) = take() else { return false };
        let base = BUFFERS[index].load(Ordering::Acquire);
        let mut len = 0;
        for part in data {
            let n = part.len().min(CAPACITY - len);
            // SAFETY: the buffer holds CAPACITY bytes and is ours alone.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), base.add(len), n) };
            len += n;
        }
        self.len.store(len as u32, Ordering::Relaxed);
        self.buffer.store(index as u32 + 1, Ordering::Release);
        true
    }

    /// The kept bytes, if any. Valid until `release`.
    pub fn bytes(&self) -> Option<&[u8]> {
        let index = self.buffer.load(Ordering::Acquire).checked_sub(1)? as usize;
        let base = BUFFERS[index].load(Ordering::Acquire);
        // SAFETY: the buffer holds `len` bytes written by `keep`, and stays
        // ours until `release`.
        Some(unsafe { std::slice::from_raw_parts(base, self.len.load(Ordering::Relaxed) as usize) })
    }

    /// Returns the buffer to the pool.
    pub fn release(&self) {
        if let Some(index) = self.buffer.swap(0, Ordering::AcqRel).checked_sub(1) {
            give(index as usize);
        }
    }
}

fn take() -> Option<usize> {
    if let Some(number) = FREE.pop(|number| &LINKS[number as usize - 1]) {
        return Some(number as usize - 1);
    }
    let index = NEXT_FRESH.fetch_add(1, Ordering::Relaxed) as usize;
    if index >= MAX_BUFFERS {
        NEXT_FRESH.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    // SAFETY: an anonymous private mapping; no file, no fixed address.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), CAPACITY, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if p == libc::MAP_FAILED {
        // The number stays used with no buffer behind it; it is never handed out.
        return None;
    }
    BUFFERS[index].store(p.cast(), Ordering::Release);
    Some(index)
}

fn give(index: usize) {
    FREE.push(index as u32 + 1, &LINKS[index]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_until_released_and_reuses_buffers() {
        let r = Retained::default();
        assert!(r.bytes().is_none());
        assert!(r.keep(&[b"GET / ", b"HTTP/1.1\r\n"]));
        assert_eq!(r.bytes().unwrap(), b"GET / HTTP/1.1\r\n");
        let first = r.buffer.load(Ordering::Relaxed);
        r.release();
        assert!(r.bytes().is_none());
        let big = vec![7u8; CAPACITY + 10];
        assert!(r.keep(&[&big]));
        assert_eq!(r.bytes().unwrap().len(), CAPACITY, "capped");
        assert_eq!(r.buffer.load(Ordering::Relaxed), first, "the freed buffer is reused");
        r.release();
    }
}
