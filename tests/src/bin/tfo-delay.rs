//! A delaying packet relay between two network namespaces, for emulating
//! round-trip time where the kernel has no netem.
//!
//! Usage: tfo-delay MILLISECONDS NETNS_A NETNS_B
//! Opens a TUN device `tfoa` in NETNS_A and `tfob` in NETNS_B (paths such as
//! /proc/PID/ns/net), prints "ready" once both exist, then forwards every
//! packet from one to the other MILLISECONDS later (each way). The caller
//! gives the devices their addresses. It runs until killed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

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

/// Copies packets from `from` to `to`, each `delay` after it arrived.
fn forward(mut from: File, mut to: File, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, packet) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let _ = to.write(&packet);
        }
    });
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: tfo-delay MILLISECONDS NETNS_A NETNS_B");
        std::process::exit(2);
    }
    let delay = Duration::from_millis(args[1].parse().expect("milliseconds"));
    let open = |ns: String, name: &'static str| {
        std::thread::spawn(move || open_tun(&ns, name).unwrap_or_else(|e| panic!("{name} in {ns}: {e}")))
            .join()
            .expect("tun thread")
    };
    let a = open(args[2].clone(), "tfoa");
    let b = open(args[3].clone(), "tfob");
    // SAFETY: dup of open fds, each owned by exactly one File afterwards.
    let (a2, b2) = unsafe { (File::from_raw_fd(libc::dup(a.as_raw_fd())), File::from_raw_fd(libc::dup(b.as_raw_fd()))) };
    println!("ready");
    let _ = std::io::stdout().flush();
    let back = std::thread::spawn(move || forward(b, a2, delay));
    forward(a, b2, delay);
    let _ = back.join();
}
