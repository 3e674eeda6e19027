//! A delaying packet relay between two network namespaces, for emulating
//! round-trip time where the kernel has no netem, and optionally a middlebox
//! that mistreats TCP SYNs carrying data (Fast Open's first flight).
//!
//! Usage: tfo-delay [--syn-data drop|reset|strip] MILLISECONDS NETNS_A NETNS_B
//! Opens a TUN device `tfoa` in NETNS_A (the client side) and `tfob` in
//! NETNS_B (the server side) (paths such as /proc/PID/ns/net), prints
//! "ready" once both exist, then forwards every packet from one to the other
//! MILLISECONDS later (each way). The caller gives the devices their
//! addresses. With --syn-data, SYNs with data from tfoa towards tfob are
//! dropped, answered with a RST, or stripped of their data (see syn_data.rs);
//! each one gives a line on stderr. It runs until SIGTERM or SIGINT, then
//! prints its counts on stderr:
//! `tfo-delay: counts forwarded_a_to_b=N forwarded_b_to_a=N syn_data_dropped=N syn_data_reset=N syn_data_stripped=N`

mod syn_data;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};
use syn_data::{Action, Mode};

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// What the relay did, printed when it stops.
static FORWARDED_A_TO_B: AtomicU64 = AtomicU64::new(0);
static FORWARDED_B_TO_A: AtomicU64 = AtomicU64::new(0);
static SYN_DATA_DROPPED: AtomicU64 = AtomicU64::new(0);
static SYN_DATA_RESET: AtomicU64 = AtomicU64::new(0);
static SYN_DATA_STRIPPED: AtomicU64 = AtomicU64::new(0);

/// Packets due for writing to one TUN device.
type Queue = Sender<(Instant, Vec<u8>)>;

/// Opens TUN device `name` inside the network namespace at `netns`.
fn open_tun(netns: &str, name: &str) -> std::io::Result<File> {
    let ns = File::open(netns)?;
    // SAFETY: setns on a valid namespace fd; this thread alone changes namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let tun = File::options().read(true).write(true).open("/dev/net/tun")?;
    let mut ifr = [0u8; 40]; // struct ifreq: name[16], flags
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifr` holds.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tun)
}

/// A thread writing each queued packet to `to` when it is due.
fn writer(mut to: File) -> Queue {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, packet) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let _ = to.write(&packet);
        }
    });
    tx
}

/// Reads packets from `from` and queues them on `onward`, `delay` later.
/// With `syn_data`, SYNs with data are treated as the mode says; replies to
/// the sender go on `back`.
fn relay(mut from: File, onward: Queue, back: Queue, delay: Duration, syn_data: Option<Mode>, count: &AtomicU64) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        let due = Instant::now() + delay;
        let mut packet = buf[..n].to_vec();
        if let Some(mode) = syn_data {
            let (action, seen) = syn_data::apply(mode, &mut packet);
            if let Some(seen) = seen {
                eprintln!("tfo-delay: SYN with data {}: {seen}", mode.past_tense());
                match mode {
                    Mode::Drop => &SYN_DATA_DROPPED,
                    Mode::Reset => &SYN_DATA_RESET,
                    Mode::Strip => &SYN_DATA_STRIPPED,
                }
                .fetch_add(1, Relaxed);
            }
            match action {
                Action::Forward | Action::Rewritten => {}
                Action::Discard => continue,
                Action::Reply(reply) => {
                    let _ = back.send((due, reply));
                    continue;
                }
            }
        }
        if onward.send((due, packet)).is_err() {
            break;
        }
        count.fetch_add(1, Relaxed);
    }
    // A TUN device that fails ends the relay, as being killed does.
    // SAFETY: kill on our own pid; SIGTERM is awaited by main's sigwait.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}

fn usage() -> ! {
    eprintln!("usage: tfo-delay [--syn-data drop|reset|strip] MILLISECONDS NETNS_A NETNS_B");
    std::process::exit(2);
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut syn_data = None;
    if let Some(at) = args.iter().position(|a| a == "--syn-data") {
        let Some(mode) = args.get(at + 1) else { usage() };
        syn_data = Some(mode.parse::<Mode>().unwrap_or_else(|e| {
            eprintln!("tfo-delay: {e}");
            usage()
        }));
        args.drain(at..at + 2);
    }
    let [ms, netns_a, netns_b] = <[String; 3]>::try_from(args).unwrap_or_else(|_| usage());
    let delay = Duration::from_millis(ms.parse().unwrap_or_else(|_| usage()));

    // SIGTERM and SIGINT are taken by sigwait below, in this thread alone:
    // block them before any thread starts (threads inherit the mask).
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset, and the mask
    // change affects only this thread and those it starts.
    let signals = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };

    let open = |ns: String, name: &'static str| {
        std::thread::spawn(move || open_tun(&ns, name).unwrap_or_else(|e| panic!("{name} in {ns}: {e}")))
            .join()
            .expect("tun thread")
    };
    let a = open(netns_a, "tfoa");
    let b = open(netns_b, "tfob");
    // SAFETY: dup of open fds, each owned by exactly one File afterwards.
    let (a2, b2) = unsafe { (File::from_raw_fd(libc::dup(a.as_raw_fd())), File::from_raw_fd(libc::dup(b.as_raw_fd()))) };
    let (to_a, to_b) = (writer(a2), writer(b2));
    println!("ready");
    let _ = std::io::stdout().flush();
    {
        let (to_a, to_b) = (to_a.clone(), to_b.clone());
        std::thread::spawn(move || relay(a, to_b, to_a, delay, syn_data, &FORWARDED_A_TO_B));
    }
    std::thread::spawn(move || relay(b, to_a.clone(), to_a, delay, None, &FORWARDED_B_TO_A));

    let mut signal = 0;
    // SAFETY: `signals` is an initialised set and `signal` a valid out pointer.
    unsafe { libc::sigwait(&signals, &mut signal) };
    eprintln!(
        "tfo-delay: counts forwarded_a_to_b={} forwarded_b_to_a={} syn_data_dropped={} syn_data_reset={} syn_data_stripped={}",
        FORWARDED_A_TO_B.load(Relaxed),
        FORWARDED_B_TO_A.load(Relaxed),
        SYN_DATA_DROPPED.load(Relaxed),
        SYN_DATA_RESET.load(Relaxed),
        SYN_DATA_STRIPPED.load(Relaxed),
    );
}
