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

/// A pause after every step: the echo, FIN or RST a call provoked on
/// loopback arrives before the next call, whatever the machine's load.
pub const PACE: &str = "pace=5";

/// The sequence numbered `index` of the batch seeded `seed`.
pub fn sequence(seed: u64, index: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let mut g = Gen { rng };
    let (netns, address) = g.setting();
    let mut steps = vec![WATCHDOG.to_string(), PACE.to_string(), "socket".to_string()];
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

/// Makes one step.
type Step = fn(&mut Gen) -> String;

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
        let step = self.one_of(&[
            (76, |_| "connect".into()),
            (8, |_| "connect_port=7001".into()),
            (4, |g| format!("connecta={}", g.pick(ADDRESS_KINDS))),
            // The program's own SYN (the classic API) on an armed socket.
            (4, |g| format!("sendfo={}", g.pick_i64(&[0, 5, 100000]))),
            (8, |_| String::new()),
        ]);
        (!step.is_empty()).then_some(step)
    }

    /// Calls `f` of one of `choices`, picked with probability proportional to its weight.
    fn one_of(&mut self, choices: &[(u64, Step)]) -> String {
        let f = self.weighted(choices);
        f(self)
    }

    /// Something done to the socket before the option or the connect.
    fn prelude_step(&mut self) -> String {
        self.one_of(&[
            (10, |_| "nonblock".into()),
            (4, |_| "fionbio=1".into()),
            (6, |g| g.pick(&["rcvtimeo=150", "sndtimeo=150"]).into()),
            (10, Gen::set_step),
            (5, |g| g.pick(&["dup", "fdup"]).into()),
            (3, |_| "bind".into()),
            (4, |g| format!("bind={}", g.pick(ADDRESS_KINDS))),
            (4, |g| format!("epoll_add={}", g.epoll_flags())),
            (2, |g| g.pick(&["nocookie=1", "syncnt=1", "linger=1:0", "cong=reno", "bindtodev=lo"]).into()),
            (2, Gen::get_step),
            (2, |_| "listen".into()),
            (2, |g| g.pick(&["getsockname", "tcpinfo", "soerror", "getfl"]).into()),
        ])
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

    fn read_size(&mut self) -> i64 {
        self.weighted(&[(15, 0), (15, 1), (30, 10), (40, 65536)])
    }

    fn wait_ms(&mut self) -> i64 {
        self.weighted(&[(60, 0), (20, 50), (20, 300)])
    }

    fn flags_suffix(&mut self) -> String {
        if self.chance(50) {
            String::new()
        } else {
            format!(":{}", self.pick(SEND_FLAGS))
        }
    }

    /// One call (or a signal with the call it interrupts) on the connected socket.
    fn body_step(&mut self) -> Vec<String> {
        if self.chance(5) {
            let alarm = self.pick(&["alarm=100", "alarm_restart=100"]).to_string();
            let blocking = self.pick(&[
                "read", "recv", "readv", "read_chk", "recvf=waitall:100", "recvmsgf=none:100", "recvmmsg=none:10", "write=100000",
                "send=100000", "sendmsg=100000", "connect", "connect_port=7001", "poll=-1", "ppoll=5000", "poll_chk=-1",
                "epoll_wait=-1", "select=5000", "pselect=5000", "accept", "sendfile=100000", "recvf=none:0", "recvf=peek:0",
                "recvmsgf=none:0", "recvmsgf=peek:0", "selectx=r:fd+pipe:5000", "pselectx=re:pipe+fd:5000", "pollx=fd2+fd:-1",
            ]);
            return vec![alarm, blocking.to_string()];
        }
        // A maker may return a pair of steps, separated by a space.
        let steps = self.one_of(&[
            (22, Gen::write_step),
            (18, Gen::read_step),
            (14, Gen::readiness_step),
            (18, Gen::query_step),
            (12, Gen::connection_step),
            (7, Gen::fd_step),
            (6, |g| g.pick(&["sleep=50", "sleep=200", "rcvtimeo=150", "sndtimeo=150", "rcvtimeo=0", "nonblock", "block"]).into()),
        ]);
        steps.split_whitespace().map(String::from).collect()
    }

    fn write_step(&mut self) -> String {
        self.one_of(&[
            (12, |g| format!("write={}", g.size())),
            (4, |g| format!("send={}", g.size())),
            (3, |g| format!("sendto={}", g.size())),
            (3, |g| format!("sendmsg={}", g.size())),
            (3, |g| format!("writev={}", g.size())),
            (3, |g| format!("send_dontwait={}", g.size())),
            (4, |g| format!("sendfo={}", g.size())),
            (4, |_| "write0".into()),
            (5, |g| format!("sendf={}:{}", g.pick(SEND_FLAGS), g.size())),
            (5, |g| format!("sendtoa={}:{}{}", g.pick(ADDRESS_KINDS), g.size(), g.flags_suffix())),
            (5, |g| format!("sendmsga={}:{}{}", g.pick(ADDRESS_KINDS), g.size(), g.flags_suffix())),
            (2, |_| "sendmsg_noiov".into()),
            (2, |_| "writev_none".into()),
            (2, |g| format!("sendmmsg={}", g.size().min(5000))),
            (2, |g| format!("sendmmsg_n={}:{}", g.below(4), g.size().min(5000))),
            (2, |g| format!("sendfile={}", g.size())),
            (2, |g| format!("splice={}", g.size().min(60000))),
            (2, |g| format!("pwritev2={}", g.size().min(60000))),
            (2, |g| format!("sendfile64={}", g.size())),
        ])
    }

    fn read_step(&mut self) -> String {
        self.one_of(&[
            (10, |_| "read".into()),
            (6, |g| format!("read={}", g.read_size())),
            (4, |_| "recv".into()),
            (3, |_| "readv".into()),
            (8, |_| "recv_dontwait".into()),
            (5, |_| "recv_peek".into()),
            (12, |g| format!("recvf={}:{}", g.pick(RECV_FLAGS), g.read_size())),
            (6, |g| format!("recvmsgf={}:{}", g.pick(RECV_FLAGS), g.read_size())),
            (3, |g| format!("recvmmsg={}:{}", g.pick(RECV_FLAGS), g.read_size())),
            (2, |_| "read_chk".into()),
            (2, |_| "recv_chk".into()),
            (2, |_| "recvfrom_chk".into()),
            (2, |g| format!("preadv2={}", g.read_size())),
        ])
    }

    fn readiness_step(&mut self) -> String {
        self.one_of(&[
            (10, |g| format!("poll={}", g.wait_ms())),
            (4, |g| format!("pollout={}", g.wait_ms())),
            (5, |_| "waitin=300".into()),
            (3, |g| format!("ppoll={}", g.wait_ms())),
            (3, |g| format!("poll_chk={}", g.wait_ms())),
            (3, |g| format!("ppoll_chk={}", g.wait_ms())),
            (5, |g| format!("select={}", g.wait_ms())),
            (2, |g| format!("pselect={}", g.wait_ms())),
            (6, |g| format!("epoll_add={}", g.epoll_flags())),
            (3, |g| format!("epoll_mod={}", g.epoll_flags())),
            (2, |_| "epoll_del".into()),
            (8, |g| format!("epoll_wait={}", g.wait_ms())),
            (2, |g| format!("epoll_pwait={}", g.wait_ms())),
            (6, |g| format!("{}={}:{}:{}", g.pick(&["selectx", "pselectx"]), g.pick(&["-", "r", "w", "e", "rw", "re", "we", "rwe"]), g.slots(), g.wait_ms())),
            (4, |g| format!("pollx={}:{}", g.slots(), g.wait_ms())),
            (3, |g| format!("epoll_addx={}:{}", g.pick(&["fd", "fd2", "closed", "pipe"]), g.epoll_flags())),
        ])
    }

    /// Descriptors for selectx/pollx: the socket, the second number (a dup
    /// or another socket), a closed number, a pipe (a foreign descriptor).
    fn slots(&mut self) -> String {
        let mut slots = vec!["fd"];
        for _ in 0..self.below(3) {
            slots.push(self.weighted(&[(3, "fd2"), (3, "closed"), (3, "pipe"), (1, "fd")]));
        }
        let at = self.below(slots.len() as u64) as usize;
        slots.swap(0, at);
        slots.join("+")
    }

    fn query_step(&mut self) -> String {
        self.one_of(&[
            (14, Gen::get_step),
            (10, Gen::set_step),
            (4, |_| "tcpinfo".into()),
            (4, |_| "tcpinfo_full".into()),
            (5, |g| format!("tcpinfo_len={}", g.pick_i64(&[-1, 0, 1, 2, 7, 8, 32, 100, 104, 232, 300]))),
            (5, |_| "soerror".into()),
            (5, |_| "getsockname".into()),
            (3, |_| "getpeername".into()),
            (3, |g| format!("getsockname_len={}", g.pick_i64(&[0, 1, 2, 4, 16, 28]))),
            (3, |g| format!("getpeername_len={}", g.pick_i64(&[0, 1, 2, 4, 16, 28]))),
            (3, |_| "getopt".into()),
            (2, |g| format!("setopt={}", g.pick_i64(&[0, 1, 2]))),
            (6, |g| format!("ioctl={}", g.pick(&["inq", "outq", "outqnsd", "atmark"]))),
            (2, |_| "getfl".into()),
            (2, |g| format!("fionbio={}", g.pick_i64(&[0, 1]))),
            (2, |g| g.pick(&["cong=reno", "cong=cubic", "cong=bogus", "bindtodev=lo", "bindtodev=none", "linger=1:0", "linger=1:1", "linger=0:0"]).into()),
            (3, |g| format!("setopt_len={}", g.pick_i64(&[-1, 0, 3, 8]))),
        ])
    }

    fn connection_step(&mut self) -> String {
        self.one_of(&[
            (10, |_| "connect".into()),
            (8, |_| "connect_unspec".into()),
            (8, |g| format!("connecta={}", g.pick(ADDRESS_KINDS))),
            (10, |g| format!("shutdown={}", g.pick(&["rd", "wr", "rdwr", "bad"]))),
            (3, |_| "listen".into()),
            (3, |_| "bind".into()),
            (3, |g| format!("bind={}", g.pick(ADDRESS_KINDS))),
            (2, |g| g.pick(&["accept", "accept4"]).into()),
            (3, |_| "connect_port=7001".into()),
            // Disconnect and defer again (the first life's error held).
            (6, |_| "connect_unspec connect".into()),
        ])
    }

    fn fd_step(&mut self) -> String {
        self.one_of(&[
            (4, |_| "dup".into()),
            (3, |_| "swap".into()),
            (2, |_| "closedup".into()),
            (1, |_| "dup2=50".into()),
            (1, |_| "dup3=40".into()),
            (1, |_| "fdup".into()),
            (2, |_| "close".into()),
            (1, |g| format!("{} open_file", g.pick(&["close_range", "closefrom", "close"]))),
            (2, |_| "socket".into()),
            // Two sockets: the first stays as fd2.
            (3, |_| "dup socket".into()),
            // dup2 over the other (perhaps registered) number.
            (2, |_| "dup2over".into()),
            (4, |g| {
                let child: Vec<String> = (0..1 + g.below(3)).map(|_| g.child_step()).collect();
                format!("fork={}", child.join(","))
            }),
        ])
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
