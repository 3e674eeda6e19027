//! Random call sequences for `examples/tfo_trace.c`, each a `Scenario`
//! reproducible from (seed, index).
//!
//! A sequence opens a socket, may change it (flags, options, dup, bind,
//! epoll), sets TCP_FASTOPEN_CONNECT, connects and then makes random calls
//! on the (usually deferred) socket. Choices are weighted towards what a
//! deferred socket must answer like the kernel's SYN_SENT one.

use crate::{Netns, Scenario};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every step longer than this (a fork= step four times it) ends the trace
/// with "STEP HANG": blocking calls without a timeout cannot stall a run.
pub const WATCHDOG: &str = "watchdog=700";

/// The sequence numbered `index` of the batch seeded `seed`.
pub fn sequence(seed: u64, index: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let mut g = Gen { rng };
    let (netns, address) = g.setting();
    let mut steps = vec![WATCHDOG.to_string(), "socket".to_string()];
    for _ in 0..g.below(4) {
        steps.push(g.prelude_step());
    }
    steps.extend(g.option_step());
    for _ in 0..g.below(3) {
        steps.push(g.prelude_step());
    }
    steps.extend(g.connect_step());
    for _ in 0..2 + g.below(11) {
        steps.extend(g.body_step());
    }
    Scenario { name: format!("fuzz-{seed}-{index}"), netns, address: address.to_string(), steps }
}

struct Gen {
    rng: ChaCha8Rng,
}

/// Option names set= and get= know (tfo_trace.c's table), with values worth trying.
const SETTABLE: &[(&str, &[i64])] = &[
    ("nodelay", &[0, 1, 2, -1]),
    ("maxseg", &[0, 88, 536, 1000, 70000]),
    ("cork", &[0, 1]),
    ("keepidle", &[0, 1, 10]),
    ("keepintvl", &[0, 5]),
    ("keepcnt", &[0, 3]),
    ("syncnt", &[0, 1, 5, 300]),
    ("linger2", &[-1, 0, 10]),
    ("defer_accept", &[0, 5]),
    ("window_clamp", &[0, 10, 1000, 100000]),
    ("quickack", &[0, 1]),
    ("user_timeout", &[-1, 0, 1000]),
    ("notsent_lowat", &[0, 1, 100000]),
    ("fastopen", &[-1, 0, 5]),
    ("fo_connect", &[0, 1, 2]),
    ("fo_nocookie", &[0, 1, 2]),
    ("inq", &[0, 1]),
    ("save_syn", &[0, 1, 3]),
    ("thin_lt", &[0, 1]),
    ("tx_delay", &[0, 1000]),
    ("rcvbuf", &[0, 1000, 1000000]),
    ("sndbuf", &[0, 1000, 1000000]),
    ("keepalive", &[0, 1]),
    ("reuseaddr", &[0, 1]),
    ("reuseport", &[0, 1]),
    ("rcvlowat", &[0, 1, 100000]),
    ("priority", &[0, 6, 7]),
    ("oobinline", &[0, 1]),
    ("dontroute", &[0, 1]),
    ("zerocopy", &[0, 1, 2]),
    ("peek_off", &[-1, 0, 5]),
    ("tos", &[0, 16, 255]),
    ("ttl", &[-1, 0, 1, 64, 256]),
    ("mtu_discover", &[0, 1, 2, 5, 7]),
    ("recverr", &[0, 1]),
    ("freebind", &[0, 1]),
    ("bind_no_port", &[0, 1]),
    ("transparent", &[0, 1]),
    ("tclass", &[-1, 0, 16, 300]),
    ("hops", &[-1, 0, 1, 255, 256]),
    ("v6only", &[0, 1]),
    ("mtu6", &[0, 1280, 1500]),
    ("mtu6_discover", &[0, 1, 2, 3]),
    ("recverr6", &[0, 1]),
    ("error", &[0]),
    ("type", &[1]),
];

const GETTABLE: &[&str] = &[
    "nodelay", "maxseg", "cork", "keepidle", "syncnt", "linger2", "defer_accept", "window_clamp", "quickack",
    "user_timeout", "notsent_lowat", "fastopen", "fo_connect", "fo_nocookie", "inq", "save_syn", "tx_delay", "repair",
    "congestion", "error", "type", "acceptconn", "domain", "protocol", "rcvbuf", "sndbuf", "keepalive", "reuseaddr",
    "rcvlowat", "priority", "zerocopy", "peek_off", "linger", "peername", "cookie", "incoming_cpu", "tos", "ttl", "mtu",
    "mtu_discover", "recverr", "freebind", "bind_no_port", "tclass", "hops", "v6only", "mtu6", "mtu6_discover",
];

/// Address kinds tfo_trace's make_addr knows.
const ADDRESS_KINDS: &[&str] = &[
    "target", "refused", "p7002", "port0", "any", "any0", "unspec", "unspec2", "short", "one", "zero", "null", "fault",
    "other", "big", "mapped", "bcast",
];

const SEND_FLAGS: &[&str] = &["none", "oob", "dontwait", "nosignal", "more", "eor", "fastopen", "zerocopy", "oob+dontwait", "fastopen+dontwait"];
const RECV_FLAGS: &[&str] = &[
    "none", "oob", "peek", "dontwait", "errqueue", "waitall", "trunc", "peek+dontwait", "oob+dontwait", "errqueue+dontwait",
    "waitall+dontwait", "trunc+dontwait", "waitforone",
];

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }

    fn pick_i64(&mut self, items: &[i64]) -> i64 {
        items[self.below(items.len() as u64) as usize]
    }

    /// Picks one of `choices` with probability proportional to its weight.
    fn weighted<T: Copy>(&mut self, choices: &[(u64, T)]) -> T {
        let total: u64 = choices.iter().map(|c| c.0).sum();
        let mut at = self.below(total);
        for &(weight, choice) in choices {
            if at < weight {
                return choice;
            }
            at -= weight;
        }
        unreachable!()
    }

    /// The namespace's options and the address every step aims at.
    fn setting(&mut self) -> (Netns, &'static str) {
        let loopback = |g: &mut Gen| g.weighted(&[(40, "127.0.0.1"), (35, "::1"), (25, "::ffff:127.0.0.1")]);
        let mut netns = Netns::default();
        let address = match self.weighted(&[(50, "cookie"), (12, "no-cookie"), (10, "no-cookie-mode"), (15, "blackhole-deferred"), (5, "blackhole"), (4, "client-off"), (4, "nothing")]) {
            "cookie" => {
                netns.prime = true;
                loopback(self)
            }
            "no-cookie" => loopback(self),
            "no-cookie-mode" => {
                netns.sysctl = Some(self.weighted(&[(4, 519), (1, 7)]));
                loopback(self)
            }
            "blackhole-deferred" => {
                netns.blackhole = true;
                netns.sysctl = Some(5);
                self.weighted(&[(70, "198.18.0.2"), (30, "::ffff:198.18.0.2")])
            }
            "blackhole" => {
                netns.blackhole = true;
                "198.18.0.2"
            }
            "client-off" => {
                // No priming: it needs the client bit.
                netns.sysctl = Some(self.weighted(&[(1, 0), (1, 2)]));
                loopback(self)
            }
            _ => {
                netns.prime = true;
                "::1"
            }
        };
        if !netns.blackhole && self.chance(6) {
            netns.capture = true;
        }
        (netns, address)
    }

    fn option_step(&mut self) -> Option<String> {
        if self.chance(88) {
            return Some("setopt=1".into());
        }
        let s = self.pick(&["setopt=0", "setopt=2", "setopt_len=2", "setopt_len=-1", "setopt_len=8", "setopt=-1", "set=fo_connect:1:100"]);
        (self.chance(80)).then(|| s.to_string())
    }

    fn connect_step(&mut self) -> Option<String> {
        match self.weighted(&[(76, 0), (8, 1), (4, 2), (4, 3), (8, 4)]) {
            0 => Some("connect".into()),
            1 => Some("connect_port=7001".into()),
            2 => Some(format!("connecta={}", self.pick(ADDRESS_KINDS))),
            // The program's own SYN (the classic API) on an armed socket.
            3 => Some(format!("sendfo={}", self.pick_i64(&[0, 5, 100000]))),
            _ => None,
        }
    }

    /// Something done to the socket before the option or the connect.
    fn prelude_step(&mut self) -> String {
        match self.weighted(&[(10, 0), (4, 1), (6, 2), (10, 3), (5, 4), (3, 5), (4, 6), (4, 7), (2, 8), (2, 9), (1, 10), (1, 11), (2, 12)]) {
            0 => "nonblock".into(),
            1 => "fionbio=1".into(),
            2 => self.pick(&["rcvtimeo=150", "sndtimeo=150"]).into(),
            3 => self.set_step(),
            4 => self.pick(&["dup", "fdup"]).into(),
            5 => "bind".into(),
            6 => format!("bind={}", self.pick(ADDRESS_KINDS)),
            7 => format!("epoll_add={}", self.epoll_flags()),
            8 => self.pick(&["nocookie=1", "syncnt=1", "linger=1:0", "cong=reno", "bindtodev=lo"]).into(),
            9 => self.get_step(),
            10 | 11 => "listen".into(),
            _ => self.pick(&["getsockname", "tcpinfo", "soerror", "getfl"]).into(),
        }
    }

    fn set_step(&mut self) -> String {
        let (name, values) = SETTABLE[self.below(SETTABLE.len() as u64) as usize];
        let value = self.pick_i64(values);
        if self.chance(85) {
            format!("set={name}:{value}")
        } else {
            format!("set={name}:{value}:{}", self.pick_i64(&[-1, 0, 1, 2, 3, 8, 100]))
        }
    }

    fn get_step(&mut self) -> String {
        let name = self.pick(GETTABLE);
        if self.chance(80) {
            format!("get={name}")
        } else {
            format!("get={name}:{}", self.pick_i64(&[-1, 0, 1, 2, 3, 8]))
        }
    }

    fn epoll_flags(&mut self) -> &'static str {
        self.pick(&["in,out", "in,out,et", "in", "out", "out,oneshot", "in,out,rdhup", "in,et", "in,out,et,rdhup"])
    }

    fn size(&mut self) -> i64 {
        self.weighted(&[(10, 0), (10, 1), (30, 5), (20, 100), (10, 1400), (6, 5000), (6, 40000), (8, 100000)])
    }

    fn wait_ms(&mut self) -> i64 {
        self.weighted(&[(60, 0), (20, 50), (20, 300)])
    }

    /// One call (or a signal with the call it interrupts) on the connected socket.
    fn body_step(&mut self) -> Vec<String> {
        let step = match self.weighted(&[(22, "write"), (18, "read"), (14, "ready"), (18, "query"), (12, "connection"), (7, "fd"), (6, "timing"), (5, "signal")]) {
            "write" => self.write_step(),
            "read" => self.read_step(),
            "ready" => self.readiness_step(),
            "query" => self.query_step(),
            "connection" => self.connection_step(),
            "fd" => self.fd_step(),
            "timing" => self.pick(&["sleep=50", "sleep=200", "rcvtimeo=150", "sndtimeo=150", "rcvtimeo=0", "nonblock", "block"]).into(),
            _ => {
                let alarm = self.pick(&["alarm=100", "alarm_restart=100"]).to_string();
                let blocking = self.pick(&[
                    "read", "recv", "readv", "read_chk", "recvf=waitall:100", "recvmsgf=none:100", "recvmmsg=none:10", "write=100000",
                    "send=100000", "sendmsg=100000", "connect", "connect_port=7001", "poll=-1", "ppoll=5000", "poll_chk=-1",
                    "epoll_wait=-1", "select=5000", "pselect=5000", "accept", "sendfile=100000",
                ]);
                return vec![alarm, blocking.to_string()];
            }
        };
        vec![step]
    }

    fn write_step(&mut self) -> String {
        let n = self.size();
        match self.weighted(&[(12, 0), (4, 1), (3, 2), (3, 3), (3, 4), (3, 5), (4, 6), (4, 7), (5, 8), (5, 9), (5, 10), (2, 11), (2, 12), (2, 13), (2, 14), (2, 15), (2, 16), (2, 17), (2, 18)]) {
            0 => format!("write={n}"),
            1 => format!("send={n}"),
            2 => format!("sendto={n}"),
            3 => format!("sendmsg={n}"),
            4 => format!("writev={n}"),
            5 => format!("send_dontwait={n}"),
            6 => format!("sendfo={n}"),
            7 => "write0".into(),
            8 => format!("sendf={}:{n}", self.pick(SEND_FLAGS)),
            9 => format!("sendtoa={}:{n}{}", self.pick(ADDRESS_KINDS), self.flags_suffix()),
            10 => format!("sendmsga={}:{n}{}", self.pick(ADDRESS_KINDS), self.flags_suffix()),
            11 => "sendmsg_noiov".into(),
            12 => "writev_none".into(),
            13 => format!("sendmmsg={}", n.min(5000)),
            14 => format!("sendmmsg_n={}:{}", self.below(4), n.min(5000)),
            15 => format!("sendfile={}", n.min(100000)),
            16 => format!("splice={}", n.min(60000)),
            17 => format!("pwritev2={}", n.min(60000)),
            _ => format!("sendfile64={}", n.min(100000)),
        }
    }

    fn flags_suffix(&mut self) -> String {
        if self.chance(50) {
            String::new()
        } else {
            format!(":{}", self.pick(SEND_FLAGS))
        }
    }

    fn read_step(&mut self) -> String {
        let n = self.weighted(&[(15, 0), (15, 1), (30, 10), (40, 65536)]);
        match self.weighted(&[(10, 0), (6, 1), (4, 2), (3, 3), (8, 4), (5, 5), (12, 6), (6, 7), (3, 8), (2, 9), (2, 10), (2, 11), (2, 12)]) {
            0 => "read".into(),
            1 => format!("read={n}"),
            2 => "recv".into(),
            3 => "readv".into(),
            4 => "recv_dontwait".into(),
            5 => "recv_peek".into(),
            6 => format!("recvf={}:{n}", self.pick(RECV_FLAGS)),
            7 => format!("recvmsgf={}:{n}", self.pick(RECV_FLAGS)),
            8 => format!("recvmmsg={}:{n}", self.pick(RECV_FLAGS)),
            9 => "read_chk".into(),
            10 => "recv_chk".into(),
            11 => format!("preadv2={n}"),
            _ => "recvfrom_chk".into(),
        }
    }

    fn readiness_step(&mut self) -> String {
        let ms = self.wait_ms();
        match self.weighted(&[(10, 0), (4, 1), (5, 2), (3, 3), (3, 4), (3, 5), (5, 6), (2, 7), (6, 8), (3, 9), (2, 10), (8, 11), (2, 12)]) {
            0 => format!("poll={ms}"),
            1 => format!("pollout={ms}"),
            2 => "waitin=300".into(),
            3 => format!("ppoll={ms}"),
            4 => format!("poll_chk={ms}"),
            5 => format!("ppoll_chk={ms}"),
            6 => format!("select={ms}"),
            7 => format!("pselect={ms}"),
            8 => format!("epoll_add={}", self.epoll_flags()),
            9 => format!("epoll_mod={}", self.epoll_flags()),
            10 => "epoll_del".into(),
            11 => format!("epoll_wait={ms}"),
            _ => format!("epoll_pwait={ms}"),
        }
    }

    fn query_step(&mut self) -> String {
        match self.weighted(&[(14, 0), (10, 1), (4, 2), (4, 3), (5, 4), (5, 5), (5, 6), (3, 7), (3, 8), (3, 9), (3, 10), (2, 11), (6, 12), (2, 13), (2, 14), (2, 15), (3, 16)]) {
            0 => self.get_step(),
            1 => self.set_step(),
            2 => "tcpinfo".into(),
            3 => "tcpinfo_full".into(),
            4 => format!("tcpinfo_len={}", self.pick_i64(&[-1, 0, 1, 2, 7, 8, 32, 100, 104, 232, 300])),
            5 => "soerror".into(),
            6 => "getsockname".into(),
            7 => "getpeername".into(),
            8 => format!("getsockname_len={}", self.pick_i64(&[0, 1, 2, 4, 16, 28])),
            9 => format!("getpeername_len={}", self.pick_i64(&[0, 1, 2, 4, 16, 28])),
            10 => "getopt".into(),
            11 => format!("setopt={}", self.pick_i64(&[0, 1, 2])),
            12 => format!("ioctl={}", self.pick(&["inq", "outq", "outqnsd", "atmark"])),
            13 => "getfl".into(),
            14 => format!("fionbio={}", self.pick_i64(&[0, 1])),
            15 => self.pick(&["cong=reno", "cong=cubic", "cong=bogus", "bindtodev=lo", "bindtodev=none", "linger=1:0", "linger=1:1", "linger=0:0"]).into(),
            _ => format!("setopt_len={}", self.pick_i64(&[-1, 0, 3, 8])),
        }
    }

    fn connection_step(&mut self) -> String {
        match self.weighted(&[(10, 0), (8, 1), (8, 2), (10, 3), (3, 4), (3, 5), (3, 6), (2, 7), (3, 8)]) {
            0 => "connect".into(),
            1 => "connect_unspec".into(),
            2 => format!("connecta={}", self.pick(ADDRESS_KINDS)),
            3 => format!("shutdown={}", self.pick(&["rd", "wr", "rdwr", "bad"])),
            4 => "listen".into(),
            5 => "bind".into(),
            6 => format!("bind={}", self.pick(ADDRESS_KINDS)),
            7 => self.pick(&["accept", "accept4"]).into(),
            _ => "connect_port=7001".into(),
        }
    }

    fn fd_step(&mut self) -> String {
        match self.weighted(&[(4, 0), (3, 1), (2, 2), (1, 3), (1, 4), (1, 5), (2, 6), (2, 7), (4, 8)]) {
            0 => "dup".into(),
            1 => "swap".into(),
            2 => "closedup".into(),
            3 => "dup2=50".into(),
            4 => "dup3=40".into(),
            5 => "fdup".into(),
            6 => "close".into(),
            7 => "socket".into(),
            _ => {
                let child: Vec<String> = (0..1 + self.below(3)).map(|_| self.child_step()).collect();
                format!("fork={}", child.join(","))
            }
        }
    }

    /// A step a forked child makes on the shared socket (no commas: they separate child steps).
    fn child_step(&mut self) -> String {
        let n = self.size().min(5000);
        match self.below(14) {
            0 => format!("write={n}"),
            1 => format!("send={n}"),
            2 => format!("sendfo={n}"),
            3 => "recv_dontwait".into(),
            4 => "read".into(),
            5 => "poll=0".into(),
            6 => "getsockname".into(),
            7 => "getpeername".into(),
            8 => "soerror".into(),
            9 => "tcpinfo".into(),
            10 => format!("shutdown={}", self.pick(&["rd", "wr", "rdwr"])),
            11 => "close".into(),
            12 => self.pick(&["connect", "connect_unspec"]).into(),
            _ => "ioctl=outq".into(),
        }
    }
}
