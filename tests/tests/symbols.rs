//! The glibc entry-point audit: every function the libc in use exports
//! that can act on a socket fd (I/O, readiness, options, names, lifetime,
//! and the exec/spawn/fork family that hands sockets on) must be exported
//! by libtfo.so or be listed in tests/untouched-symbols.txt with a reason.
//! A new glibc (a new fortified variant, a new *64 or *v2 call) therefore
//! fails the suite until someone decides whether libtfo must hook it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use tfo_tests::{library, root};

/// Function names (after `base`) that act on an fd a program may hold a
/// socket in. A trailing `*` matches any name with that prefix.
const SOCKET_RELEVANT: &[&str] = &[
    // I/O
    "read", "write", "readv", "writev", "pread", "pwrite", "preadv", "pwritev", "recv", "recvfrom", "recvmsg", "recvmmsg",
    "send", "sendto", "sendmsg", "sendmmsg", "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "aio_*",
    "lio_listio",
    // readiness
    "poll", "ppoll", "select", "pselect", "fdelt", "epoll_*",
    // sockets: connection, options, names
    "socket", "socketpair", "accept", "accept4", "connect", "bind", "listen", "shutdown", "getsockopt", "setsockopt",
    "getpeername", "getsockname", "sockatmark", "isfdtype", "ioctl", "fcntl",
    // lifetime
    "close", "close_range", "closefrom", "dup", "dup2", "dup3", "pidfd_getfd",
    // the process: a socket inherited by a child or a new image
    "fork", "vfork", "_Fork", "clone", "daemon", "forkpty", "exec*", "fexecve", "posix_spawn", "posix_spawnp", "system",
    "popen", "syscall",
];

/// `__pread64_chk` -> `pread`, `preadv64v2` -> `preadv`, `__libc_fcntl64` -> `fcntl`:
/// the call a name is a variant of (internal prefix, fortified, 64-bit, v2, nocancel).
fn base(name: &str) -> &str {
    let mut n = name.strip_prefix("__libc_").or_else(|| name.strip_prefix("__")).unwrap_or(name);
    loop {
        let shorter = ["_chk", "_nocancel", "_2", "v2", "64"].iter().find_map(|s| n.strip_suffix(s).filter(|rest| !rest.is_empty()));
        match shorter {
            Some(rest) => n = rest,
            None => return n,
        }
    }
}

fn is_socket_relevant(name: &str) -> bool {
    let b = base(name);
    SOCKET_RELEVANT.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => b.starts_with(prefix),
        None => b == *p,
    })
}

/// The libc.so.6 this process (and so every test program) runs with.
fn libc_in_use() -> PathBuf {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let path = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libc.so.6")).expect("no libc.so.6 in /proc/self/maps");
    PathBuf::from(path)
}

/// Defined functions of a shared object: name -> symbol version ("" when none).
fn functions(object: &Path) -> BTreeMap<String, String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(object)
        .output()
        .unwrap_or_else(|e| panic!("nm (binutils) is needed for this test: {e}"));
    assert!(out.status.success(), "nm {} failed: {}", object.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (kind, symbol) = (words.nth(1)?, words.next()?);
            // T/t: code, W: weak code, i: ifunc (resolved at load to code).
            ["T", "W", "i"].contains(&kind).then_some(())?;
            let (name, version) = symbol.split_once('@').map_or((symbol, ""), |(n, v)| (n, v.trim_start_matches('@')));
            Some((name.to_string(), version.to_string()))
        })
        .collect()
}

/// tests/untouched-symbols.txt: `name: reason`, `#` comments.
fn untouched() -> BTreeMap<String, String> {
    let path = root().join("tests/untouched-symbols.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (name, reason) = line.split_once(':').unwrap_or_else(|| panic!("{}: `{line}` lacks `: reason`", path.display()));
            assert!(!reason.trim().is_empty(), "{}: `{name}` has no reason", path.display());
            (name.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

#[test]
fn base_names_of_variants() {
    assert_eq!(base("__pread64_chk"), "pread");
    assert_eq!(base("preadv64v2"), "preadv");
    assert_eq!(base("__libc_fcntl64"), "fcntl");
    assert_eq!(base("__open64_2"), "open");
    assert_eq!(base("epoll_pwait2"), "epoll_pwait2");
    assert_eq!(base("dup2"), "dup2");
    assert!(is_socket_relevant("__poll_chk"));
    assert!(is_socket_relevant("execveat"));
    assert!(!is_socket_relevant("readdir64"));
    assert!(!is_socket_relevant("__open_2"));
}

#[test]
fn every_socket_entry_point_is_hooked_or_explained() {
    let libc = libc_in_use();
    let exported = functions(&libc);
    let hooked: BTreeSet<String> = functions(&library()).into_keys().collect();
    let untouched = untouched();
    let candidates: BTreeMap<&String, &String> = exported.iter().filter(|(name, _)| is_socket_relevant(name)).collect();
    // The patterns must still find the calls everybody makes, or the audit checks nothing.
    for name in ["read", "write", "connect", "sendmsg", "recvmsg", "poll", "epoll_wait", "close", "execve", "__read_chk"] {
        assert!(candidates.contains_key(&name.to_string()), "the audit no longer finds {name} in {}", libc.display());
    }
    eprintln!("{}: {} socket-relevant functions, {} hooked by libtfo, {} listed as untouched", libc.display(), candidates.len(), candidates.keys().filter(|n| hooked.contains(**n)).count(), candidates.keys().filter(|n| untouched.contains_key(**n)).count());

    for (name, reason) in &untouched {
        if hooked.contains(name) {
            eprintln!("note: {name} is hooked now; drop it from tests/untouched-symbols.txt ({reason})");
        } else if !exported.contains_key(name) {
            eprintln!("note: {name} is not exported by {}; listed as untouched ({reason})", libc.display());
        }
    }
    let missing: Vec<String> = candidates
        .iter()
        .filter(|(name, _)| !hooked.contains(**name) && !untouched.contains_key(**name))
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    if !missing.is_empty() {
        eprintln!("NOT HOOKED and not explained ({}):", missing.len());
        for m in &missing {
            eprintln!("  {m}");
        }
    }
    assert!(
        missing.is_empty(),
        "{} socket-relevant function(s) of {} are neither hooked by libtfo nor listed with a reason in tests/untouched-symbols.txt: {}",
        missing.len(),
        libc.display(),
        missing.join(" ")
    );
}
