//! A delaying packet relay between two network namespaces, for emulating
//! round-trip time where the kernel has no netem, and optionally a middlebox
//! that mistreats TCP SYNs carrying data (Fast Open's first flight).
//!
//! Usage: tfo-delay [--syn-data drop|reset|strip|option [--syn-data-to ADDRESS] [--syn-data-count N]] [--loss PERCENT [--seed N]] MILLISECONDS NETNS_A NETNS_B
//! Opens a TUN device `tfoa` in NETNS_A (the client side) and `tfob` in
//! NETNS_B (the server side) (paths such as /proc/PID/ns/net), prints
//! "ready" once both exist, then forwards every packet from one to the other
//! MILLISECONDS later (each way). The caller gives the devices their
//! addresses. With --syn-data, SYNs with data from tfoa towards tfob are
//! dropped, answered with a RST, or stripped of their data (see syn_data.rs);
//! `--syn-data option` drops every SYN carrying the Fast Open option (a
//! cookie request too); each one gives a line on stderr. `--syn-data-to
//! ADDRESS` limits that to SYNs towards one destination, `--syn-data-count
//! N` to the first N (a single loss: N=1). With --loss, each direction drops that
//! percentage of its packets at random (seeded by --seed, default 1; see
//! loss.rs), SYNs with data included, so TCP's retransmissions are
//! exercised. It runs until SIGTERM or SIGINT, then prints its counts on
//! stderr:
//! `tfo-delay: counts forwarded_a_to_b=N forwarded_b_to_a=N syn_data_dropped=N syn_data_reset=N syn_data_stripped=N syn_option_dropped=N lost_a_to_b=N lost_b_to_a=N syn_data_lost=N`

mod loss;
mod syn_data;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};
use loss::Loss;
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
static SYN_OPTION_DROPPED: AtomicU64 = AtomicU64::new(0);
static LOST_A_TO_B: AtomicU64 = AtomicU64::new(0);
static LOST_B_TO_A: AtomicU64 = AtomicU64::new(0);
/// SYNs carrying data among the packets lost at random.
static SYN_DATA_LOST: AtomicU64 = AtomicU64::new(0);

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

/// What one direction of the relay does besides delaying.
struct Direction {
    syn_data: Option<Mode>,
    /// Only SYNs towards this address are mistreated (--syn-data-to).
    only_to: Option<std::net::IpAddr>,
    /// How many more may be (--syn-data-count); `None`: every one.
    budget: Option<u64>,
    loss: Option<Loss>,
    forwarded: &'static AtomicU64,
    lost: &'static AtomicU64,
}

/// Reads packets from `from` and queues them on `onward`, `delay` later.
/// With `syn_data`, SYNs with data are treated as the mode says; replies to
/// the sender go on `back`. With `loss`, some packets are dropped.
fn relay(mut from: File, onward: Queue, back: Queue, delay: Duration, mut how: Direction) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if how.loss.as_mut().is_some_and(Loss::drop_next) {
            how.lost.fetch_add(1, Relaxed);
            if syn_data::is_syn_with_data(&buf[..n]) {
                SYN_DATA_LOST.fetch_add(1, Relaxed);
            }
            continue;
        }
        let due = Instant::now() + delay;
        let mut packet = buf[..n].to_vec();
        if let Some(mode) = how.syn_data {
            let original = packet.clone();
            let (mut action, mut seen) = syn_data::apply(mode, &mut packet);
            // Only towards --syn-data-to, and only the first --syn-data-count.
            if let Some(s) = &seen {
                if how.only_to.is_some_and(|to| to != s.to.0) || how.budget.as_mut().is_some_and(|left| !take_one(left)) {
                    (action, seen, packet) = (Action::Forward, None, original);
                }
            }
            if let Some(seen) = seen {
                match mode {
                    Mode::DropOption => eprintln!("tfo-delay: SYN with the Fast Open option dropped: {seen}"),
                    _ => eprintln!("tfo-delay: SYN with data {}: {seen}", mode.past_tense()),
                }
                match mode {
                    Mode::Drop => &SYN_DATA_DROPPED,
                    Mode::Reset => &SYN_DATA_RESET,
                    Mode::Strip => &SYN_DATA_STRIPPED,
                    Mode::DropOption => &SYN_OPTION_DROPPED,
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
        how.forwarded.fetch_add(1, Relaxed);
    }
    // A TUN device that fails ends the relay, as being killed does.
    // SAFETY: kill on our own pid; SIGTERM is awaited by main's sigwait.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}

/// Takes one from `left`; false when none was left.
fn take_one(left: &mut u64) -> bool {
    let had = *left > 0;
    *left = left.saturating_sub(1);
    had
}

fn usage() -> ! {
    eprintln!("usage: tfo-delay [--syn-data drop|reset|strip|option [--syn-data-to ADDRESS] [--syn-data-count N]] [--loss PERCENT [--seed N]] MILLISECONDS NETNS_A NETNS_B");
    std::process::exit(2);
}

/// Takes `--name VALUE` out of `args`, parsed.
fn option<T>(args: &mut Vec<String>, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
    let at = args.iter().position(|a| a == name)?;
    let Some(text) = args.get(at + 1) else { usage() };
    let value = parse(text).unwrap_or_else(|e| {
        eprintln!("tfo-delay: {e}");
        usage()
    });
    args.drain(at..at + 2);
    Some(value)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let syn_data = option(&mut args, "--syn-data", |m| m.parse::<Mode>());
    let only_to = option(&mut args, "--syn-data-to", |a| a.parse::<std::net::IpAddr>().map_err(|_| format!("--syn-data-to takes an address, not {a:?}")));
    let budget = option(&mut args, "--syn-data-count", |n| n.parse::<u64>().map_err(|_| format!("--syn-data-count takes a number, not {n:?}")));
    let loss = option(&mut args, "--loss", loss::parse_percent);
    let seed = option(&mut args, "--seed", |s| s.parse::<u64>().map_err(|_| format!("--seed takes a number, not {s:?}"))).unwrap_or(1);
    let [ms, netns_a, netns_b] = <[String; 3]>::try_from(args).unwrap_or_else(|_| usage());
    let delay = Duration::from_millis(ms.parse().unwrap_or_else(|_| usage()));

    // SIGTERM and SIGINT are taken by sigwait below, in this thread alone:
    // block them before any thread starts (threads inherit the mask).
    let signals = tfo_tests::block_termination_signals();

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
        let how = Direction { syn_data, only_to, budget, loss: loss.map(|p| Loss::new(p, seed, 0)), forwarded: &FORWARDED_A_TO_B, lost: &LOST_A_TO_B };
        std::thread::spawn(move || relay(a, to_b, to_a, delay, how));
    }
    let how = Direction { syn_data: None, only_to: None, budget: None, loss: loss.map(|p| Loss::new(p, seed, 1)), forwarded: &FORWARDED_B_TO_A, lost: &LOST_B_TO_A };
    std::thread::spawn(move || relay(b, to_a.clone(), to_a, delay, how));

    let mut signal = 0;
    // SAFETY: `signals` is an initialised set and `signal` a valid out pointer.
    unsafe { libc::sigwait(&signals, &mut signal) };
    eprintln!(
        "tfo-delay: counts forwarded_a_to_b={} forwarded_b_to_a={} syn_data_dropped={} syn_data_reset={} syn_data_stripped={} syn_option_dropped={} lost_a_to_b={} lost_b_to_a={} syn_data_lost={}",
        FORWARDED_A_TO_B.load(Relaxed),
        FORWARDED_B_TO_A.load(Relaxed),
        SYN_DATA_DROPPED.load(Relaxed),
        SYN_DATA_RESET.load(Relaxed),
        SYN_DATA_STRIPPED.load(Relaxed),
        SYN_OPTION_DROPPED.load(Relaxed),
        LOST_A_TO_B.load(Relaxed),
        LOST_B_TO_A.load(Relaxed),
        SYN_DATA_LOST.load(Relaxed),
    );
}
