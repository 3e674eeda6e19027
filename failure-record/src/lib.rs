//! The failure memory's on-disk format, in one place for libtfo (which
//! writes and reads it inside other programs: no allocation here) and the
//! `tfo` command (which lists and forgets it).
//!
//! One small file per subject in the state directory:
//!
//! * a **destination**, named after its address (IPv6 colons written as
//!   dashes: `198.18.0.2`, `2001-db8--1`), holding
//!   `libtfo-failure v1 FAILURES UNTIL REASON`;
//! * a **path**, the local side shared by many destinations (the source
//!   address the kernel picks towards them), named `path-ADDRESS`, holding
//!   `libtfo-path v1 FAILURES UNTIL REASON PENDING PENDING_SINCE WORKED`.
//!
//! FAILURES counts the backoffs so far (each one doubles the next), UNTIL is
//! when the current one ends (Unix seconds, 0 for none), REASON what failed
//! last. A path also keeps the destination that failed on it without being
//! enough to stop the path yet (PENDING, `-` for none, and since when), and
//! when Fast Open last worked on it (WORKED, 0 for never).

#![no_std]

use core::fmt::{self, Write};
use core::net::IpAddr;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A SYN carrying data went unanswered; its plain retransmission got through.
    Dropped,
    /// A SYN carrying data was answered by a reset.
    Reset,
    /// A SYN carrying the Fast Open option (a cookie request) went unanswered
    /// while a plain one got through: something drops the option.
    Option,
    /// The server answered a cookie request without a cookie: it does not
    /// serve Fast Open (no path fault; only cookie requests stop).
    NoCookie,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Dropped => "dropped",
            Reason::Reset => "reset",
            Reason::Option => "option",
            Reason::NoCookie => "nocookie",
        }
    }

    pub fn from_name(name: &str) -> Option<Reason> {
        [Reason::Dropped, Reason::Reset, Reason::Option, Reason::NoCookie].into_iter().find(|r| r.name() == name)
    }

    /// What it means, in a few words (for `tfo failures`).
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Dropped => "SYNs carrying data are dropped",
            Reason::Reset => "SYNs carrying data are reset",
            Reason::Option => "SYNs carrying the Fast Open option are dropped",
            Reason::NoCookie => "the server gives no Fast Open cookie",
        }
    }
}

/// What a file is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Destination(IpAddr),
    /// The path through a local source address.
    Path(IpAddr),
}

const PATH_PREFIX: &str = "path-";
const DESTINATION_MAGIC: &str = "libtfo-failure v1 ";
const PATH_MAGIC: &str = "libtfo-path v1 ";

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Writes `s` with every ':' as '-'.
struct Dashes<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Dashes<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.0.write_char(if c == ':' { '-' } else { c })?;
        }
        Ok(())
    }
}

/// The file name of `subject`.
pub fn write_name(w: &mut impl Write, subject: Subject) -> fmt::Result {
    let ip = match subject {
        Subject::Destination(ip) => ip,
        Subject::Path(ip) => {
            w.write_str(PATH_PREFIX)?;
            ip
        }
    };
    write!(Dashes(w), "{}", canonical(ip))
}

/// The subject a file name stands for; `None` for any other name.
pub fn subject_of(name: &str) -> Option<Subject> {
    let (path, address) = match name.strip_prefix(PATH_PREFIX) {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let mut buf = [0u8; 64];
    let bytes = address.as_bytes();
    if bytes.len() > buf.len() {
        return None;
    }
    for (to, &b) in buf.iter_mut().zip(bytes) {
        *to = if b == b'-' { b':' } else { b };
    }
    let ip: IpAddr = core::str::from_utf8(&buf[..bytes.len()]).ok()?.parse().ok()?;
    Some(if path { Subject::Path(ip) } else { Subject::Destination(ip) })
}

/// One file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub failures: u32,
    pub until: u64,
    pub reason: Reason,
    /// Paths only: a destination that failed on the path, and when.
    pub pending: Option<(IpAddr, u64)>,
    /// Paths only: when Fast Open last worked on the path (0: never seen).
    pub worked: u64,
}

impl Record {
    pub fn new(reason: Reason) -> Record {
        Record { failures: 0, until: 0, reason, pending: None, worked: 0 }
    }
}

/// Parses the content of `subject`'s file; `None` when it is damaged.
pub fn parse(subject: Subject, text: &str) -> Option<Record> {
    let text = text.trim_end_matches('\n');
    let magic = match subject {
        Subject::Destination(_) => DESTINATION_MAGIC,
        Subject::Path(_) => PATH_MAGIC,
    };
    let mut words = text.strip_prefix(magic)?.split(' ');
    let failures = words.next()?.parse().ok()?;
    let until = words.next()?.parse().ok()?;
    let reason = Reason::from_name(words.next()?)?;
    let mut record = Record { failures, until, reason, pending: None, worked: 0 };
    if let Subject::Path(_) = subject {
        let pending = words.next()?;
        let since: u64 = words.next()?.parse().ok()?;
        record.pending = match pending {
            "-" => None,
            ip => Some((ip.parse().ok()?, since)),
        };
        record.worked = words.next()?.parse().ok()?;
    }
    words.next().is_none().then_some(record)
}

/// Writes `record` as `subject`'s file content (one line).
pub fn write(w: &mut impl Write, subject: Subject, record: &Record) -> fmt::Result {
    match subject {
        Subject::Destination(_) => writeln!(w, "{DESTINATION_MAGIC}{} {} {}", record.failures, record.until, record.reason.name()),
        Subject::Path(_) => {
            write!(w, "{PATH_MAGIC}{} {} {} ", record.failures, record.until, record.reason.name())?;
            match record.pending {
                Some((ip, since)) => write!(w, "{} {since}", canonical(ip))?,
                None => w.write_str("- 0")?,
            }
            writeln!(w, " {}", record.worked)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn name(subject: Subject) -> String {
        let mut s = String::new();
        write_name(&mut s, subject).unwrap();
        s
    }

    #[test]
    fn names_round_trip() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v4: IpAddr = "198.18.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.18.0.2".parse().unwrap();
        assert_eq!(name(Subject::Destination(v6)), "2001-db8--1");
        assert_eq!(name(Subject::Destination(mapped)), "198.18.0.2");
        assert_eq!(name(Subject::Path(v4)), "path-198.18.0.2");
        for subject in [Subject::Destination(v6), Subject::Destination(v4), Subject::Path(v6), Subject::Path(v4)] {
            assert_eq!(subject_of(&name(subject)), Some(subject));
        }
        assert_eq!(subject_of("path-"), None);
        assert_eq!(subject_of("notes.txt"), None);
    }

    #[test]
    fn destination_lines_keep_the_v1_contract() {
        let d = Subject::Destination("198.18.0.2".parse().unwrap());
        let r = parse(d, "libtfo-failure v1 2 1700000000 reset\n").unwrap();
        assert_eq!((r.failures, r.until, r.reason), (2, 1_700_000_000, Reason::Reset));
        let mut s = String::new();
        write(&mut s, d, &r).unwrap();
        assert_eq!(s, "libtfo-failure v1 2 1700000000 reset\n");
        for bad in ["", "libtfo-failure v1 x 1 reset", "libtfo-failure v2 1 1 reset", "libtfo-failure v1 1 1 other", "libtfo-failure v1 1 1 reset extra"] {
            assert_eq!(parse(d, bad), None, "{bad}");
        }
        assert_eq!(parse(d, "libtfo-failure v1 1 5 option").map(|r| r.reason), Some(Reason::Option));
        assert_eq!(parse(d, "libtfo-failure v1 1 5 nocookie").map(|r| r.reason), Some(Reason::NoCookie));
    }

    #[test]
    fn path_lines_round_trip() {
        let p = Subject::Path("198.18.0.1".parse().unwrap());
        let mut r = Record::new(Reason::Dropped);
        r.pending = Some(("198.18.0.3".parse().unwrap(), 1_700_000_000));
        r.worked = 1_699_999_000;
        let mut s = String::new();
        write(&mut s, p, &r).unwrap();
        assert_eq!(s, "libtfo-path v1 0 0 dropped 198.18.0.3 1700000000 1699999000\n");
        assert_eq!(parse(p, &s), Some(r));
        let none = parse(p, "libtfo-path v1 1 9 option - 0 0").unwrap();
        assert_eq!((none.pending, none.worked, none.until), (None, 0, 9));
        // A destination's line is not a path's, nor the other way round.
        assert_eq!(parse(p, "libtfo-failure v1 1 1 reset"), None);
        assert_eq!(parse(Subject::Destination("198.18.0.3".parse().unwrap()), &s), None);
    }
}
