//! The live self-test of `tfo doctor`: in a private network namespace (so
//! nothing on the machine is touched), a Fast Open echo server and a client
//! with libtfo preloaded that connects twice. The first connection fetches a
//! cookie; the second must carry its request in the SYN.
//!
//! `tfo doctor` starts `tfo selftest-netns`, which makes the namespace for
//! itself (as root, or in a user namespace), runs two rounds — an
//! unmodified client under TFO_MODE=auto and a client that sets
//! TCP_FASTOPEN_CONNECT under TFO_MODE=explicit — and prints the result as
//! JSON.

use crate::kernel;
use crate::inside::{self, Connection};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const TCP_FASTOPEN: i32 = 23;
/// Client and server Fast Open in the private namespace.
const NAMESPACE_FASTOPEN: &str = "3";
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize, Debug)]
pub struct SelfTest {
    pub rounds: Vec<Round>,
    pub error: Option<String>,
    /// The namespace was made but this process may not configure it (a
    /// container without privileges: a read-only /proc/sys, no
    /// CAP_NET_ADMIN): nothing was tested, nothing is wrong with Fast Open.
    #[serde(default)]
    pub not_permitted: bool,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Round {
    /// "auto": the client never sets the option; "explicit": it does.
    pub mode: String,
    pub address: IpAddr,
    pub connections: Vec<Connection>,
    /// TcpExtTCPFastOpenActive rise during the round: SYNs whose data was acknowledged.
    pub fastopen_active: Option<u64>,
    pub error: Option<String>,
}

impl Round {
    /// The repeat connection carried its request in the SYN, and every
    /// request came back.
    pub fn passed(&self) -> bool {
        self.connections.len() >= 2
            && self.connections.iter().all(|c| c.echoed)
            && self.connections[1].syn_data_acked
    }
}

/// Whether this process may make a network namespace: root, or user
/// namespaces allowed (tried in a throwaway child).
pub fn namespaces_available() -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    Command::new(exe)
        .args(["selftest-netns", "--only-enter", "--lib", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the self-test in a child (`tfo selftest-netns`) and waits at most
/// TIMEOUT for its verdict.
pub fn run(lib: &Path) -> io::Result<SelfTest> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("selftest-netns")
        .arg("--lib")
        .arg(lib)
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            child.kill().ok();
            child.wait().ok();
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {} s", TIMEOUT.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout)?;
    child.stderr.take().expect("piped").read_to_string(&mut stderr)?;
    serde_json::from_str(&stdout)
        .map_err(|_| io::Error::other(format!("self-test failed ({status}): {}", stderr.trim())))
}

/// `tfo selftest-netns`: runs inside the new namespace and prints JSON.
pub fn selftest_netns(lib: &Path, only_enter: bool) -> ExitCode {
    if let Err(e) = enter_private_network() {
        eprintln!("tfo: cannot create a network namespace: {e}");
        return ExitCode::FAILURE;
    }
    if only_enter {
        return ExitCode::SUCCESS;
    }
    let result = match prepare() {
        Ok(port) => SelfTest { rounds: rounds(lib, port), error: None, not_permitted: false },
        Err(e) => SelfTest {
            rounds: Vec::new(),
            not_permitted: matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES | libc::EROFS)),
            error: Some(e.to_string()),
        },
    };
    println!("{}", serde_json::to_string(&result).expect("plain struct"));
    ExitCode::SUCCESS
}

fn rounds(lib: &Path, port: u16) -> Vec<Round> {
    let exe = std::env::current_exe().unwrap_or_default();
    // Each round has its own destination, so its first connection finds no cookie.
    [("auto", Ipv4Addr::new(127, 0, 0, 1), false), ("explicit", Ipv4Addr::new(127, 0, 0, 2), true)]
        .into_iter()
        .map(|(mode, address, set_option)| {
            let env: [(&str, &OsStr); 4] = [
                ("LD_PRELOAD", lib.as_os_str()),
                ("TFO_MODE", OsStr::new(mode)),
                ("TFO_EXCLUDE", OsStr::new("none")), // the test server is on loopback
                ("TFO_LOG", OsStr::new("warn")),
            ];
            let before = kernel::tcp_ext_counter("TCPFastOpenActive");
            let outcome = inside::run_client(&exe, address.into(), port, set_option, &env);
            let after = kernel::tcp_ext_counter("TCPFastOpenActive");
            let fastopen_active = before.zip(after).map(|(b, a)| a.saturating_sub(b));
            let (connections, error) = match outcome {
                Ok(c) => (c, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            Round { mode: mode.to_owned(), address: address.into(), connections, fastopen_active, error }
        })
        .collect()
}

/// This process alone in a new network namespace; in a new user namespace
/// too unless root. Must run while the process has one thread.
fn enter_private_network() -> io::Result<()> {
    // SAFETY: geteuid/getegid take no arguments.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        // SAFETY: unshare takes flags only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
            return Ok(());
        }
    }
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Root inside maps to us outside, so the namespace's sysctls are ours.
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}

/// Loopback up, Fast Open on, an echo server on an ephemeral port of every
/// address; returns the port.
fn prepare() -> io::Result<u16> {
    loopback_up()?;
    std::fs::write("/proc/sys/net/ipv4/tcp_fastopen", NAMESPACE_FASTOPEN)?;
    let listener = fastopen_listener()?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            if let Ok(n) = stream.read(&mut buf) {
                stream.write_all(&buf[..n]).ok();
            }
        }
    });
    Ok(port)
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket that nothing else owns.
    let _socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: ifr is a valid ifreq naming "lo".
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: ifr is a valid ifreq naming "lo".
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A listener on 0.0.0.0 (any port) with the TCP_FASTOPEN option set.
fn fastopen_listener() -> io::Result<TcpListener> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket that nothing else owns; the listener closes it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let qlen: i32 = 16;
    // SAFETY: the value pointer and length describe `qlen`.
    let rc = unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, TCP_FASTOPEN, (&qlen as *const i32).cast(), 4) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_in is 0.0.0.0 port 0 once the family is set.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    // SAFETY: sin is a sockaddr_in of the length given.
    let rc = unsafe { libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), size_of_val(&sin) as u32) };
    // SAFETY: listen takes no pointers.
    if rc < 0 || unsafe { libc::listen(fd, 16) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}
