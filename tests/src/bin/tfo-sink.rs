//! A verifying sink for the reliability tests: a Fast Open server that
//! checks every byte it receives against what the client must have sent.
//!
//! Usage: tfo-sink ADDRESS:PORT [--ids LOW-HIGH]
//!
//! With --ids, a frame whose id lies outside LOW..=HIGH is a bad stream
//! (the test knows which ids may reach this server).
//!
//! A stream is a sequence of frames, each `"TFO1" | id (u32 LE) | length
//! (u64 LE) | body`, where the body is the keystream of `id` (see
//! [`frame::body_byte`]; tests/programs/tfo_stress.c makes the same). The
//! sink regenerates each body and compares it byte by byte, so a byte lost,
//! duplicated, reordered or corrupted anywhere is caught at its offset; an
//! id seen twice (a stream delivered twice) is caught too. When the client
//! shuts down its side, the sink answers one line and closes:
//! `ok frames=N bytes=B ids=I,J,...` or `bad REASON`.
//!
//! It prints "ready" once listening, then runs until SIGTERM or SIGINT and
//! prints its totals on stdout:
//! `tfo-sink: connections=C frames=F bytes=B bad=X duplicates=D empty=E`
//! (each bad stream also gets a line on stderr). E counts the connections
//! that closed without a byte: libtfo's own cookie requests (fetch.rs).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static FRAMES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static BAD: AtomicU64 = AtomicU64::new(0);
static DUPLICATES: AtomicU64 = AtomicU64::new(0);
static EMPTY: AtomicU64 = AtomicU64::new(0);
static SEEN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
/// The ids this sink accepts (--ids).
static IDS: std::sync::OnceLock<std::ops::RangeInclusive<u32>> = std::sync::OnceLock::new();

mod frame {
    pub const MAGIC: &[u8; 4] = b"TFO1";
    pub const HEADER: usize = 16;

    /// Word `k` of the keystream of frame `id` (SplitMix64's finalizer).
    pub fn word(id: u32, k: u64) -> u64 {
        let mut z = ((id as u64) << 40 ^ k ^ 0x5851_f42d_4c95_7f2d).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Byte `i` of the body of frame `id`.
    #[cfg(test)]
    pub fn body_byte(id: u32, i: u64) -> u8 {
        (word(id, i / 8) >> (8 * (i % 8))) as u8
    }

    /// Where a stream's check stands.
    pub enum Check {
        /// Collecting a header (bytes so far).
        Header(Vec<u8>),
        /// Inside the body of `id`: `at` bytes checked of `len`.
        Body { id: u32, len: u64, at: u64 },
    }

    /// A stream's checker: feed it bytes, then ask at the end.
    pub struct Stream {
        pub state: Check,
        pub frames: Vec<u32>,
        pub bytes: u64,
    }

    impl Stream {
        pub fn new() -> Stream {
            Stream { state: Check::Header(Vec::with_capacity(HEADER)), frames: Vec::new(), bytes: 0 }
        }

        /// Checks `data`, the next bytes of the stream; `Err` says what is wrong.
        pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
            while !data.is_empty() {
                match &mut self.state {
                    Check::Header(head) => {
                        let take = (HEADER - head.len()).min(data.len());
                        head.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        self.bytes += take as u64;
                        if head.len() == HEADER {
                            if &head[..4] != MAGIC {
                                return Err(format!("no frame header at byte {} (got {:02x?})", self.bytes - HEADER as u64, &head[..]));
                            }
                            let id = u32::from_le_bytes(head[4..8].try_into().unwrap());
                            let len = u64::from_le_bytes(head[8..16].try_into().unwrap());
                            self.state = Check::Body { id, len, at: 0 };
                            self.end_body_if_done();
                        }
                    }
                    Check::Body { id, len, at } => {
                        let take = ((*len - *at) as usize).min(data.len());
                        let (id, start) = (*id, *at);
                        let mut current = word(id, start / 8);
                        for (j, &got) in data[..take].iter().enumerate() {
                            let i = start + j as u64;
                            if i.is_multiple_of(8) {
                                current = word(id, i / 8);
                            }
                            let want = (current >> (8 * (i % 8))) as u8;
                            if got != want {
                                return Err(format!("frame {id}: byte {i} of {len} is {got:#04x}, expected {want:#04x}"));
                            }
                        }
                        *at += take as u64;
                        self.bytes += take as u64;
                        data = &data[take..];
                        self.end_body_if_done();
                    }
                }
            }
            Ok(())
        }

        fn end_body_if_done(&mut self) {
            if let Check::Body { id, len, at } = self.state {
                if at == len {
                    self.frames.push(id);
                    self.state = Check::Header(Vec::with_capacity(HEADER));
                }
            }
        }

        /// At the end of the stream: complete frames only.
        pub fn finish(&self) -> Result<(), String> {
            match &self.state {
                Check::Header(head) if head.is_empty() => Ok(()),
                Check::Header(head) => Err(format!("stream ends inside a frame header ({} bytes)", head.len())),
                Check::Body { id, len, at } => Err(format!("frame {id} ends after {at} of {len} bytes")),
            }
        }
    }
}

/// Checks one connection and answers its verdict.
fn serve(mut conn: TcpStream) {
    CONNECTIONS.fetch_add(1, Relaxed);
    let mut stream = frame::Stream::new();
    let mut buf = vec![0u8; 65536];
    let mut verdict = Ok(());
    let mut received = 0;
    loop {
        match conn.read(&mut buf) {
            Ok(0) if received == 0 => {
                // Closed without a byte: libtfo's cookie request, no stream.
                EMPTY.fetch_add(1, Relaxed);
                return;
            }
            Ok(0) => break,
            Ok(n) => {
                received += n;
                if verdict.is_ok() {
                    verdict = stream.feed(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                verdict = verdict.and(Err(format!("read: {e}")));
                break;
            }
        }
    }
    let verdict = verdict.and_then(|()| stream.finish()).and_then(|()| {
        let mut seen = SEEN.lock().unwrap();
        let seen = seen.get_or_insert_with(HashSet::new);
        for &id in &stream.frames {
            if IDS.get().is_some_and(|ids| !ids.contains(&id)) {
                return Err(format!("frame {id} does not belong to this server"));
            }
            if !seen.insert(id) {
                DUPLICATES.fetch_add(1, Relaxed);
                return Err(format!("frame {id} was received before (a duplicated stream)"));
            }
        }
        Ok(())
    });
    let line = match &verdict {
        Ok(()) => {
            FRAMES.fetch_add(stream.frames.len() as u64, Relaxed);
            BYTES.fetch_add(stream.bytes, Relaxed);
            let ids: Vec<String> = stream.frames.iter().map(u32::to_string).collect();
            format!("ok frames={} bytes={} ids={}\n", stream.frames.len(), stream.bytes, ids.join(","))
        }
        Err(reason) => {
            BAD.fetch_add(1, Relaxed);
            eprintln!("tfo-sink: bad stream from {:?}: {reason}", conn.peer_addr().ok());
            format!("bad {reason}\n")
        }
    };
    let _ = conn.write_all(line.as_bytes());
}

fn main() {
    let usage = || -> ! {
        eprintln!("usage: tfo-sink ADDRESS:PORT [--ids LOW-HIGH]");
        std::process::exit(2);
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--ids") {
        let Some((low, high)) = args.get(at + 1).and_then(|r| r.split_once('-')) else { usage() };
        let (Ok(low), Ok(high)) = (low.parse(), high.parse()) else { usage() };
        IDS.set(low..=high).unwrap();
        args.drain(at..at + 2);
    }
    let [address] = <[String; 1]>::try_from(args).unwrap_or_else(|_| usage());
    // SIGTERM and SIGINT are taken by sigwait in this thread alone: block
    // them before any thread starts (threads inherit the mask).
    let signals = tfo_tests::block_termination_signals();
    let listener = TcpListener::bind(&address).unwrap_or_else(|e| panic!("tfo-sink: bind {address}: {e}"));
    let qlen: libc::c_int = 4096;
    // SAFETY: an int option on our own listening socket.
    let r = unsafe {
        libc::setsockopt(listener.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_FASTOPEN, (&qlen as *const libc::c_int).cast(), 4)
    };
    assert_eq!(r, 0, "tfo-sink: TCP_FASTOPEN: {}", std::io::Error::last_os_error());
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => {
                    std::thread::spawn(move || serve(conn));
                }
                Err(e) => eprintln!("tfo-sink: accept: {e}"),
            }
        }
    });
    let mut signal = 0;
    // SAFETY: `signals` is an initialised set and `signal` a valid out pointer.
    unsafe { libc::sigwait(&signals, &mut signal) };
    println!(
        "tfo-sink: connections={} frames={} bytes={} bad={} duplicates={} empty={}",
        CONNECTIONS.load(Relaxed),
        FRAMES.load(Relaxed),
        BYTES.load(Relaxed),
        BAD.load(Relaxed),
        DUPLICATES.load(Relaxed),
        EMPTY.load(Relaxed)
    );
}

#[cfg(test)]
mod tests {
    use super::frame::{self, Stream};

    fn frame_bytes(id: u32, len: u64) -> Vec<u8> {
        let mut v = frame::MAGIC.to_vec();
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend((0..len).map(|i| frame::body_byte(id, i)));
        v
    }

    #[test]
    fn whole_frames_in_any_pieces_pass() {
        let mut bytes = frame_bytes(7, 1000);
        bytes.extend(frame_bytes(8, 0));
        bytes.extend(frame_bytes(9, 13));
        for piece in [1, 3, 16, 17, 999, 4096] {
            let mut s = Stream::new();
            for chunk in bytes.chunks(piece) {
                s.feed(chunk).unwrap();
            }
            s.finish().unwrap();
            assert_eq!(s.frames, [7, 8, 9]);
            assert_eq!(s.bytes, bytes.len() as u64);
        }
    }

    #[test]
    fn a_lost_duplicated_or_swapped_byte_is_caught() {
        let good = frame_bytes(1, 300);
        let mut lost = good.clone();
        lost.remove(100);
        let mut duplicated = good.clone();
        duplicated.insert(100, good[100]);
        let mut swapped = good.clone();
        swapped.swap(100, 101);
        for bad in [duplicated, swapped] {
            assert!(Stream::new().feed(&bad).is_err());
        }
        let mut s = Stream::new();
        // One byte short: caught at the end of the stream, or at the shifted byte.
        assert!(s.feed(&lost).is_err() || s.finish().is_err());
        let mut truncated = Stream::new();
        truncated.feed(&good[..200]).unwrap();
        assert!(truncated.finish().unwrap_err().contains("ends after"));
        assert!(Stream::new().feed(b"HTTP/1.1 200 OK\r\n").unwrap_err().contains("no frame header"));
    }
}
