//! libtfo's own timer: a thread that runs timed actions, for what must
//! happen by a deadline whatever the program is doing (blocked in a system
//! call libtfo does not see, asleep on a futex, waiting on another file).
//!
//! A [`Job`] scans what it looks after, acts on what is due and says when
//! it wants to run next; [`run_at`] asks for a run. The thread is created
//! at the first request (its signals blocked, so none meant for the
//! program lands in it) and exits as soon as no job has anything pending,
//! so a single-threaded program is multithreaded only while something is
//! due (`unshare(CLONE_NEWUSER)` refuses a multithreaded process). A fork
//! child has no timer until it asks for one. Signals were weighed and left
//! out: a timer signal would take one of the program's own.

use crate::kernel;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};

/// A timed action: given the time (CLOCK_MONOTONIC, ms), does what is due
/// and returns when it wants to run again (`None`: nothing pending).
pub type Job = fn(now_ms: u64) -> Option<u64>;

const MAX_JOBS: usize = 4;

/// The jobs (fn pointers as usize; 0: free).
static JOBS: [AtomicUsize; MAX_JOBS] = [const { AtomicUsize::new(0) }; MAX_JOBS];

/// A timer thread exists (or is being created).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The earliest run asked for since the thread last looked (MAX: none).
static ASKED: AtomicU64 = AtomicU64::new(u64::MAX);

/// When the sleeping thread wakes up on its own (0: it is awake).
static SLEEPING_UNTIL: AtomicU64 = AtomicU64::new(0);

/// The futex word the thread sleeps on; bumped to wake it.
static BELL: AtomicU32 = AtomicU32::new(0);

/// Asks for `job` to run by `at_ms` (CLOCK_MONOTONIC; it may run earlier:
/// a job checks what is due itself), creating the timer thread if there is
/// none. Not for signal handlers
/// (creating the thread allocates).
pub fn run_at(job: Job, at_ms: u64) {
    register(job);
    ASKED.fetch_min(at_ms, SeqCst);
    if !RUNNING.swap(true, SeqCst) {
        spawn();
    } else if at_ms < SLEEPING_UNTIL.load(SeqCst) {
        BELL.fetch_add(1, SeqCst);
        kernel::futex_wake(&BELL);
    }
}

fn register(job: Job) {
    let id = job as usize;
    if JOBS.iter().any(|j| j.load(SeqCst) == id) {
        return;
    }
    for slot in &JOBS {
        if slot.compare_exchange(0, id, SeqCst, SeqCst).is_ok() || slot.load(SeqCst) == id {
            return;
        }
    }
}

/// The thread, created with every signal blocked (it inherits the mask).
fn spawn() {
    // SAFETY: an all-zero sigset_t is a valid (empty) set.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let spawned = std::thread::Builder::new().name("libtfo-timer".into()).stack_size(256 * 1024).spawn(run);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if spawned.is_err() {
        RUNNING.store(false, SeqCst);
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, SeqCst) {
            crate::log::warning!("cannot start libtfo's timer thread: a deferred connection starts only when the program blocks or touches it");
        }
    }
}

/// Runs the jobs until none has anything pending.
fn run() {
    loop {
        ASKED.store(u64::MAX, SeqCst);
        let now = kernel::monotonic_ms();
        let next = JOBS
            .iter()
            .filter_map(|j| match j.load(SeqCst) {
                0 => None,
                id => {
                    // SAFETY: only `Job` pointers are stored in JOBS.
                    let job = unsafe { std::mem::transmute::<usize, Job>(id) };
                    job(now)
                }
            })
            .min();
        let asked = ASKED.load(SeqCst);
        let next = match (next, asked) {
            (None, u64::MAX) => {
                // Nothing pending: exit, unless a request came in meanwhile.
                RUNNING.store(false, SeqCst);
                if ASKED.load(SeqCst) != u64::MAX && !RUNNING.swap(true, SeqCst) {
                    continue;
                }
                return;
            }
            (Some(n), a) => n.min(a),
            (None, a) => a,
        };
        let bell = BELL.load(SeqCst);
        SLEEPING_UNTIL.store(next.max(1), SeqCst);
        if ASKED.load(SeqCst) >= next && next > kernel::monotonic_ms() {
            let until = libc::timespec { tv_sec: (next / 1000) as libc::time_t, tv_nsec: ((next % 1000) * 1_000_000) as libc::c_long };
            let _ = kernel::futex_wait(&BELL, bell, Some(&until));
        }
        SLEEPING_UNTIL.store(0, SeqCst);
    }
}

/// In a fork child: the parent's timer thread is not there.
pub fn after_fork_in_child() {
    RUNNING.store(false, SeqCst);
    SLEEPING_UNTIL.store(0, SeqCst);
    ASKED.store(u64::MAX, SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    static RAN: AtomicU64 = AtomicU64::new(0);
    static UNTIL: AtomicU64 = AtomicU64::new(0);

    fn three_times(now: u64) -> Option<u64> {
        if RAN.fetch_add(1, SeqCst) + 1 >= 3 {
            UNTIL.store(now, SeqCst);
            return None;
        }
        Some(now + 5)
    }

    #[test]
    fn a_job_runs_until_it_has_nothing_pending_then_the_thread_exits() {
        let start = kernel::monotonic_ms();
        run_at(three_times, start + 10);
        for _ in 0..200 {
            if !RUNNING.load(SeqCst) && RAN.load(SeqCst) >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(RAN.load(SeqCst), 3);
        assert!(!RUNNING.load(SeqCst), "the thread exits when nothing is pending");
        // At once, then twice 5 ms apart.
        assert!(UNTIL.load(SeqCst) >= start + 10, "ran too early");
    }
}
