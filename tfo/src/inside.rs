//! `tfo inside` (hidden): what `tfo doctor` runs with libtfo preloaded. It calls the
//! C library's socket functions (never raw system calls) so that libtfo's
//! hooks see exactly what an ordinary client does.

use crate::cli::Inside;
use crate::kernel::{TCPI_OPT_SYN_DATA, TCP_FASTOPEN_CONNECT};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

/// One connection of `tfo probe client`, printed as a JSON line.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Connection {
    pub echoed: bool,
    /// TCP_INFO: the server acknowledged data sent in the SYN.
    pub syn_data_acked: bool,
    /// TCP_INFO tcpi_fastopen_client_fail (0: no failure reported).
    pub fastopen_client_fail: u8,
    pub error: Option<String>,
}

pub fn inside(what: Inside) -> ExitCode {
    match what {
        Inside::Maps { library } => {
            let loaded = is_mapped(&library);
            println!("{}", if loaded { "loaded" } else { "not loaded" });
            if loaded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Inside::Client { address, port, count, set_option } => {
            for i in 0..count {
                let outcome = connect_once(SocketAddr::new(address, port), set_option, i)
                    .unwrap_or_else(|e| Connection { error: Some(e.to_string()), ..Connection::default() });
                println!("{}", serde_json::to_string(&outcome).expect("plain struct"));
            }
            ExitCode::SUCCESS
        }
    }
}

/// True when /proc/self/maps shows `library` (same file: device and inode).
fn is_mapped(library: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(wanted) = std::fs::metadata(library) else { return false };
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().filter_map(|line| line.find('/').map(|i| &line[i..])).any(|path| {
        std::fs::metadata(path).is_ok_and(|m| m.dev() == wanted.dev() && m.ino() == wanted.ino())
    })
}

/// An fd closed on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn check(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

fn connect_once(server: SocketAddr, set_option: bool, index: u32) -> io::Result<Connection> {
    let (storage, len) = sockaddr(server);
    let family = if server.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2) takes no pointers.
    let fd = Fd(check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) } as isize)? as i32);
    let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: the value pointer and length describe `timeout`.
        check(unsafe { libc::setsockopt(fd.0, libc::SOL_SOCKET, option, (&timeout as *const libc::timeval).cast(), size_of_val(&timeout) as u32) } as isize)?;
    }
    if set_option {
        let one: i32 = 1;
        // SAFETY: the value pointer and length describe `one`.
        check(unsafe { libc::setsockopt(fd.0, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, (&one as *const i32).cast(), 4) } as isize)?;
    }
    // SAFETY: storage holds a sockaddr of length len.
    check(unsafe { libc::connect(fd.0, (&storage as *const libc::sockaddr_storage).cast(), len) } as isize)?;
    let request = format!("libtfo doctor {index}");
    // SAFETY: the buffer is valid for its length.
    let sent = check(unsafe { libc::write(fd.0, request.as_ptr().cast(), request.len()) })?;
    let mut reply = vec![0u8; request.len()];
    let mut got = 0;
    while got < reply.len() {
        // SAFETY: the rest of `reply` is writable.
        match check(unsafe { libc::read(fd.0, reply[got..].as_mut_ptr().cast(), reply.len() - got) })? {
            0 => break,
            n => got += n,
        }
    }
    let mut info = [0u8; 104];
    let mut info_len = info.len() as libc::socklen_t;
    // SAFETY: the buffer and its length pointer are valid.
    check(unsafe { libc::getsockopt(fd.0, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut info_len) } as isize)?;
    Ok(Connection {
        echoed: sent == request.len() && reply == request.as_bytes(),
        // struct tcp_info: tcpi_options is byte 5; byte 7 holds
        // tcpi_delivery_rate_app_limited:1 then tcpi_fastopen_client_fail:2.
        syn_data_acked: info[5] & TCPI_OPT_SYN_DATA != 0,
        fastopen_client_fail: (info[7] >> 1) & 0x3,
        error: None,
    })
}

fn sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Runs `tfo probe client` (this same binary) with `env` and parses its lines.
pub fn run_client(
    exe: &Path,
    address: IpAddr,
    port: u16,
    set_option: bool,
    env: &[(&str, &std::ffi::OsStr)],
) -> io::Result<Vec<Connection>> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["inside", "client", &address.to_string(), &port.to_string()]);
    if set_option {
        cmd.arg("--set-option");
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TFO_") || key == "LD_PRELOAD" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let connections: Vec<Connection> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    if connections.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("client printed nothing ({}): {}", out.status, stderr.trim())));
    }
    Ok(connections)
}
