/*
 * Runs a scripted sequence of socket calls and prints one line per call:
 * its return value, errno name and anything it reported (poll mask, TCP
 * state...). Run once with the kernel's own TCP_FASTOPEN_CONNECT and once
 * under LD_PRELOAD=libtfo.so, the two traces must be identical.
 *
 * Usage: tfo_trace ADDRESS PORT STEP...
 * With TFO_TRACE_SHOW_PRELOAD set, it first says on stderr whether
 * libtfo.so is mapped into it.
 *
 * Steps (N = bytes, MS = milliseconds):
 *   socket            a TCP socket of ADDRESS's family
 *   nonblock, block   set or clear O_NONBLOCK
 *   setopt=V          setsockopt(TCP_FASTOPEN_CONNECT, V)
 *   setopt_len=L      the same with value 1 and optlen L
 *   getopt            getsockopt(TCP_FASTOPEN_CONNECT)
 *   nocookie=V        setsockopt(TCP_FASTOPEN_NO_COOKIE, V)
 *   syncnt=V          setsockopt(TCP_SYNCNT, V)
 *   connect           connect to ADDRESS PORT
 *   connect_port=P    connect to ADDRESS P
 *   connect_unspec    connect(AF_UNSPEC)
 *   write=N send=N sendto=N sendmsg=N writev=N
 *   send_dontwait=N   send with MSG_DONTWAIT
 *   sendfo=N          sendto with MSG_FASTOPEN and the address
 *   read recv readv recv_dontwait recv_peek
 *   poll=MS           poll(POLLIN|POLLOUT|POLLRDHUP), prints revents
 *   pollout=MS        poll(POLLOUT)
 *   waitin=MS         poll(POLLIN) until data or MS
 *   getsockname getpeername soerror tcpinfo
 *   shutdown=rd|wr|rdwr   close
 *   rcvtimeo=MS sndtimeo=MS   sleep=MS   sysctl=V (net.ipv4.tcp_fastopen)
 *   bind   listen
 *   write0            write(fd, "", 0)
 *   fionbio=V         ioctl(FIONBIO, V)
 *   sendmmsg=N        three messages of N bytes
 *   sendfile=N        N bytes of a scratch file
 *   splice=N          N bytes through a pipe
 *   dup               fd2 = dup(fd); swap: fd <-> fd2; closedup: close(fd2)
 *   dup2=T            dup2(fd, T) and use T from now on (the old fd stays open as fd2)
 *   dup2over          dup2(fd, fd2): the second number (perhaps registered) names fd's file
 *   fork=STEPS        a child runs STEPS (comma-separated) on the same socket, then exits; the parent waits
 *   exec=STEPS        a child execs this program on the inherited socket to run STEPS; the parent waits
 *   spawn=STEPS       the same through posix_spawn
 *   fdup              fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 10)   dup3=T: dup3(fd, T, O_CLOEXEC), then use T
 *   read_chk recv_chk recvfrom_chk   the fortified variants (_FORTIFY_SOURCE)
 *   epoll_add=FLAGS   epoll_ctl(ADD) with in,out,et,oneshot,rdhup (comma-separated)
 *   epoll_mod=FLAGS   epoll_ctl(MOD)   epoll_del   epoll_wait=MS
 *   epoll_dup         later epoll_ctl calls go through fcntl(F_DUPFD_CLOEXEC)
 *                     of the instance, waits through the original (as mio does)
 *   select=MS         select for reading, writing and errors
 *
 * Steps the differential fuzzer (tests/src/bin/tfo-fuzz.rs) adds; NAME is
 * an option of the table below, KIND an address kind (see make_addr), FLAGS
 * '+'-separated message flags (oob dontwait peek waitall trunc errqueue
 * nosignal more eor fastopen zerocopy):
 *   watchdog=MS       from now on a step that takes longer than MS prints
 *                     "STEP HANG" and the program ends (a fork= step gets 4 MS)
 *   pace=MS           pause MS after every later step (lets loopback settle)
 *   alarm=MS alarm_restart=MS   the next step runs with a one-shot SIGALRM
 *                     after MS (handler without / with SA_RESTART); the timer
 *                     is cancelled when it returns; "+SIGALRM" marks delivery
 *   set=NAME:V[:L]    setsockopt of NAME with int value V and optlen L (default 4)
 *   get=NAME[:L]      getsockopt of NAME with optlen L (default the option's size)
 *   cong=NAME         setsockopt(TCP_CONGESTION, NAME)   bindtodev=NAME|none
 *   linger=ON:SECS    setsockopt(SO_LINGER)
 *   tcpinfo_len=L     TCP_INFO with optlen L   tcpinfo_full: more stable fields
 *   ioctl=inq|outq|outqnsd|atmark   prints the value
 *   getfl             fcntl(F_GETFL), prints the O_NONBLOCK bit
 *   read=N            read N bytes (plain `read` asks for 64 KiB)
 *   recvf=FLAGS:N     recv   recvmsgf=FLAGS:N recvmsg (prints msg_flags)
 *   recvmmsg=N        two messages of N bytes, MSG_DONTWAIT
 *   sendf=FLAGS:N     send   sendmsg_noiov: an empty iovec array
 *   writev_none       writev with no iovec   sendmmsg_n=VLEN:N
 *   pwritev2=N preadv2=N   with offset -1 (the socket's own position)
 *   sendfile64=N      sendfile64 from a scratch file (what -D_FILE_OFFSET_BITS=64 calls)
 *   close_range closefrom   close the socket through close_range(fd, fd) / closefrom(fd)
 *   open_file         fd = a new scratch file (the lowest free number); prints same_number=
 *   connecta=KIND  sendtoa=KIND:N[:FLAGS]  sendmsga=KIND:N[:FLAGS]  bind=KIND
 *   ppoll=MS poll_chk=MS ppoll_chk=MS pselect=MS epoll_pwait=MS
 *   accept accept4    (accept4 with SOCK_NONBLOCK; a new fd is closed at once)
 *   shutdown=bad      an invalid how (7)
 *   getsockname_len=L getpeername_len=L   with an address length L
 *   selectx=SETS:FDS:MS pselectx=SETS:FDS:MS   select over several descriptors:
 *                     SETS the sets given (letters of "rwe"; "-": all NULL), FDS
 *                     '+'-separated slots (fd fd2 closed pipe: a number closed just
 *                     before, a pipe's write end), each put in every set given;
 *                     prints read/write/except bits per slot
 *   pollx=FDS:MS      poll(POLLIN|POLLOUT|POLLRDHUP) over the slots; prints each revents
 *   epoll_addx=SLOT:FLAGS   epoll_ctl(ADD) of one slot (data: fd 42, fd2 43, pipe 44, other 45)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/sendfile.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif
#ifndef TCP_FASTOPEN_NO_COOKIE
#define TCP_FASTOPEN_NO_COOKIE 34
#endif

static struct sockaddr_storage target;
static socklen_t target_len;
static int fd = -1, fd2 = -1, epfd = -1;
/* where epoll_ctl goes: epfd, or a dup of it after epoll_dup */
static int epctl = -1;
extern char **environ;
/* The fortified entry points glibc's headers call under _FORTIFY_SOURCE. */
extern ssize_t __read_chk(int, void *, size_t, size_t);
extern ssize_t __recv_chk(int, void *, size_t, size_t, int);
extern ssize_t __recvfrom_chk(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
extern int __poll_chk(struct pollfd *, nfds_t, int, size_t);
extern int __ppoll_chk(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t);
static const char *self_path, *address_arg, *port_arg;
static volatile sig_atomic_t sigpipes, sigalrms;
static char payload[200000];

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static void on_sigalrm(int sig)
{
	(void)sig;
	sigalrms++;
}

/* Prints "STEP: RET [ERRNO]" followed by EXTRA, and a SIGPIPE marker. */
static void report(const char *step, long ret, int err, const char *extra)
{
	printf("%-16s %ld", step, ret);
	if (ret < 0)
		printf(" %s", strerrorname_np(err) ? strerrorname_np(err) : "?");
	else if (err != EDOM) /* a successful call must leave errno alone */
		printf(" errno-changed=%s", strerrorname_np(err) ? strerrorname_np(err) : "?");
	if (extra && *extra)
		printf(" %s", extra);
	if (sigpipes) {
		printf(" +SIGPIPE");
		sigpipes = 0;
	}
	if (sigalrms) {
		printf(" +SIGALRM");
		sigalrms = 0;
	}
	printf("\n");
	fflush(stdout);
}

static void mask_text(char *out, size_t len, short revents)
{
	static const struct { short bit; const char *name; } bits[] = {
		{ POLLIN, "IN" }, { POLLPRI, "PRI" }, { POLLOUT, "OUT" }, { POLLERR, "ERR" },
		{ POLLHUP, "HUP" }, { POLLNVAL, "NVAL" }, { POLLRDNORM, "RDNORM" },
		{ POLLWRNORM, "WRNORM" }, { POLLRDHUP, "RDHUP" },
	};
	size_t used = snprintf(out, len, "revents=");
	int any = 0;
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (revents & bits[i].bit)
			used += snprintf(out + used, len - used, "%s%s", any++ ? "|" : "", bits[i].name);
	if (!any)
		snprintf(out + used, len - used, "0");
}

static void addr_text(char *out, size_t len, const struct sockaddr_storage *ss)
{
	char host[NI_MAXHOST];
	unsigned port = 0;
	if (ss->ss_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)ss)->sin_port);
	else if (ss->ss_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)ss)->sin6_port);
	if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host, sizeof(host), NULL, 0, NI_NUMERICHOST))
		strcpy(host, "?");
	/* Ephemeral ports differ from run to run; only whether one is set matters. */
	snprintf(out, len, "%s port=%s", host, port == 0 ? "0" : port == ntohs(((struct sockaddr_in *)&target)->sin_port) ? "server" : "ephemeral");
}

static long poll_for(short events, int ms, char *extra, size_t len)
{
	struct pollfd p = { .fd = fd, .events = events };
	long r = poll(&p, 1, ms);
	int err = errno;
	mask_text(extra, len, p.revents);
	errno = err;
	return r;
}

static void run(const char *step);

/* Runs comma-separated steps (for fork= and exec=), prefixed "child". */
static void run_list(const char *list)
{
	char copy[1024], *save = NULL;
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save))
		run(s);
}

static unsigned epoll_flags(const char *list)
{
	unsigned ev = 0;
	if (strstr(list, "in")) ev |= EPOLLIN;
	if (strstr(list, "out")) ev |= EPOLLOUT;
	if (strstr(list, "et")) ev |= EPOLLET;
	if (strstr(list, "oneshot")) ev |= EPOLLONESHOT;
	if (strstr(list, "rdhup")) ev |= EPOLLRDHUP;
	return ev;
}

static void epoll_text(char *out, size_t len, const struct epoll_event *evs, int n)
{
	size_t used = snprintf(out, len, "events=");
	for (int i = 0; i < n; i++) {
		unsigned e = evs[i].events;
		used += snprintf(out + used, len - used, "%s%s%s%s%s%s%s(data=%llu)", i ? "," : "",
				 e & EPOLLIN ? "IN|" : "", e & EPOLLOUT ? "OUT|" : "", e & EPOLLERR ? "ERR|" : "",
				 e & EPOLLHUP ? "HUP|" : "", e & EPOLLRDHUP ? "RDHUP|" : "", e == 0 ? "0" : "",
				 (unsigned long long)evs[i].data.u64);
	}
	if (n <= 0)
		snprintf(out + used, len - used, "none");
}


/* The watchdog: a thread that ends the program when one step blocks longer
 * than watchdog_ms, so a call that hangs shows as "STEP HANG" instead of
 * stalling the run. It blocks every signal, so SIGALRM reaches the caller. */
static long watchdog_ms;
static _Atomic long step_deadline_ns; /* 0: no step running */
static char running_step[64];

static long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *watchdog(void *unused)
{
	(void)unused;
	for (;;) {
		struct timespec tick = { 0, 10 * 1000000 };
		nanosleep(&tick, NULL);
		long deadline = atomic_load(&step_deadline_ns);
		if (deadline && now_ns() > deadline) {
			char line[128];
			int len = snprintf(line, sizeof(line), "%-16s HANG\n", running_step);
			if (write(STDOUT_FILENO, line, len) < 0)
				_exit(3);
			_exit(0);
		}
	}
	return NULL;
}

static void start_watchdog(void)
{
	sigset_t all, old;
	pthread_t thread;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the new thread inherits the mask */
	if (pthread_create(&thread, NULL, watchdog, NULL) != 0)
		exit(3);
	pthread_detach(thread);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* pace=: a pause after every step, so that what loopback does on its own
 * (the echo, a FIN, an RST) has happened before the next call. */
static long pace_ms;

/* A one-shot SIGALRM armed for the next step only (alarm= and alarm_restart=). */
static int alarm_ms, alarm_restart;

static void arm_alarm(void)
{
	struct sigaction sa = { .sa_handler = on_sigalrm, .sa_flags = alarm_restart ? SA_RESTART : 0 };
	struct itimerval it = { .it_value = { alarm_ms / 1000, (alarm_ms % 1000) * 1000 } };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm_alarm(void)
{
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	alarm_ms = 0;
}

/* Splits "a:b:c" into at most MAX fields; returns how many. */
static int fields(const char *arg, char out[][64], int max)
{
	int n = 0;
	const char *p = arg;
	while (n < max) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		snprintf(out[n++], 64, "%.*s", (int)len, p);
		if (!end)
			break;
		p = end + 1;
	}
	return n;
}

static int msg_flags(const char *list)
{
	static const struct { const char *name; int flag; } names[] = {
		{ "oob", MSG_OOB }, { "dontwait", MSG_DONTWAIT }, { "peek", MSG_PEEK },
		{ "waitall", MSG_WAITALL }, { "trunc", MSG_TRUNC }, { "errqueue", MSG_ERRQUEUE },
		{ "nosignal", MSG_NOSIGNAL }, { "more", MSG_MORE }, { "eor", MSG_EOR },
		{ "fastopen", MSG_FASTOPEN }, { "zerocopy", MSG_ZEROCOPY },
		{ "waitforone", MSG_WAITFORONE }, { "none", 0 },
	};
	char copy[128], *save = NULL;
	int flags = 0;
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *t = strtok_r(copy, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
		size_t i = 0;
		while (i < sizeof(names) / sizeof(names[0]) && strcmp(names[i].name, t))
			i++;
		if (i == sizeof(names) / sizeof(names[0])) {
			fprintf(stderr, "tfo_trace: unknown flag %s\n", t);
			exit(2);
		}
		flags |= names[i].flag;
	}
	return flags;
}

/* Socket options set=/get= know, with how get= prints the value. */
enum { OPT_INT, OPT_NOVALUE, OPT_STR, OPT_BYTES };
static const struct sockopt_name {
	const char *name;
	int level, opt, size, print;
} sockopts[] = {
	{ "nodelay", IPPROTO_TCP, TCP_NODELAY, 4, OPT_INT },
	{ "maxseg", IPPROTO_TCP, TCP_MAXSEG, 4, OPT_INT },
	{ "cork", IPPROTO_TCP, TCP_CORK, 4, OPT_INT },
	{ "keepidle", IPPROTO_TCP, TCP_KEEPIDLE, 4, OPT_INT },
	{ "keepintvl", IPPROTO_TCP, TCP_KEEPINTVL, 4, OPT_INT },
	{ "keepcnt", IPPROTO_TCP, TCP_KEEPCNT, 4, OPT_INT },
	{ "syncnt", IPPROTO_TCP, TCP_SYNCNT, 4, OPT_INT },
	{ "linger2", IPPROTO_TCP, TCP_LINGER2, 4, OPT_INT },
	{ "defer_accept", IPPROTO_TCP, TCP_DEFER_ACCEPT, 4, OPT_INT },
	{ "window_clamp", IPPROTO_TCP, TCP_WINDOW_CLAMP, 4, OPT_INT },
	{ "quickack", IPPROTO_TCP, TCP_QUICKACK, 4, OPT_INT },
	{ "user_timeout", IPPROTO_TCP, TCP_USER_TIMEOUT, 4, OPT_INT },
	{ "notsent_lowat", IPPROTO_TCP, TCP_NOTSENT_LOWAT, 4, OPT_INT },
	{ "fastopen", IPPROTO_TCP, TCP_FASTOPEN, 4, OPT_INT },
	{ "fo_connect", IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 4, OPT_INT },
	{ "fo_nocookie", IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 4, OPT_INT },
	{ "inq", IPPROTO_TCP, TCP_INQ, 4, OPT_INT },
	{ "save_syn", IPPROTO_TCP, TCP_SAVE_SYN, 4, OPT_INT },
	{ "thin_lt", IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 4, OPT_INT },
	{ "tx_delay", IPPROTO_TCP, TCP_TX_DELAY, 4, OPT_INT },
	{ "repair", IPPROTO_TCP, TCP_REPAIR, 4, OPT_INT },
	{ "congestion", IPPROTO_TCP, TCP_CONGESTION, 16, OPT_STR },
	{ "error", SOL_SOCKET, SO_ERROR, 4, OPT_INT },
	{ "type", SOL_SOCKET, SO_TYPE, 4, OPT_INT },
	{ "acceptconn", SOL_SOCKET, SO_ACCEPTCONN, 4, OPT_INT },
	{ "domain", SOL_SOCKET, SO_DOMAIN, 4, OPT_INT },
	{ "protocol", SOL_SOCKET, SO_PROTOCOL, 4, OPT_INT },
	{ "rcvbuf", SOL_SOCKET, SO_RCVBUF, 4, OPT_INT },
	{ "sndbuf", SOL_SOCKET, SO_SNDBUF, 4, OPT_INT },
	{ "keepalive", SOL_SOCKET, SO_KEEPALIVE, 4, OPT_INT },
	{ "reuseaddr", SOL_SOCKET, SO_REUSEADDR, 4, OPT_INT },
	{ "reuseport", SOL_SOCKET, SO_REUSEPORT, 4, OPT_INT },
	{ "rcvlowat", SOL_SOCKET, SO_RCVLOWAT, 4, OPT_INT },
	{ "priority", SOL_SOCKET, SO_PRIORITY, 4, OPT_INT },
	{ "oobinline", SOL_SOCKET, SO_OOBINLINE, 4, OPT_INT },
	{ "dontroute", SOL_SOCKET, SO_DONTROUTE, 4, OPT_INT },
	{ "zerocopy", SOL_SOCKET, SO_ZEROCOPY, 4, OPT_INT },
	{ "peek_off", SOL_SOCKET, SO_PEEK_OFF, 4, OPT_INT },
	{ "linger", SOL_SOCKET, SO_LINGER, 8, OPT_BYTES },
	{ "peername", SOL_SOCKET, SO_PEERNAME, 128, OPT_NOVALUE },
	{ "cookie", SOL_SOCKET, SO_COOKIE, 8, OPT_NOVALUE }, /* unique per socket */
	{ "incoming_cpu", SOL_SOCKET, SO_INCOMING_CPU, 4, OPT_NOVALUE }, /* varies */
	{ "tos", IPPROTO_IP, IP_TOS, 4, OPT_INT },
	{ "ttl", IPPROTO_IP, IP_TTL, 4, OPT_INT },
	{ "mtu", IPPROTO_IP, IP_MTU, 4, OPT_INT },
	{ "mtu_discover", IPPROTO_IP, IP_MTU_DISCOVER, 4, OPT_INT },
	{ "recverr", IPPROTO_IP, IP_RECVERR, 4, OPT_INT },
	{ "freebind", IPPROTO_IP, IP_FREEBIND, 4, OPT_INT },
	{ "bind_no_port", IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 4, OPT_INT },
	{ "transparent", IPPROTO_IP, IP_TRANSPARENT, 4, OPT_INT },
	{ "tclass", IPPROTO_IPV6, IPV6_TCLASS, 4, OPT_INT },
	{ "hops", IPPROTO_IPV6, IPV6_UNICAST_HOPS, 4, OPT_INT },
	{ "v6only", IPPROTO_IPV6, IPV6_V6ONLY, 4, OPT_INT },
	{ "mtu6", IPPROTO_IPV6, IPV6_MTU, 4, OPT_INT },
	{ "mtu6_discover", IPPROTO_IPV6, IPV6_MTU_DISCOVER, 4, OPT_INT },
	{ "recverr6", IPPROTO_IPV6, IPV6_RECVERR, 4, OPT_INT },
};

static const struct sockopt_name *sockopt_named(const char *name)
{
	for (size_t i = 0; i < sizeof(sockopts) / sizeof(sockopts[0]); i++)
		if (!strcmp(sockopts[i].name, name))
			return &sockopts[i];
	fprintf(stderr, "tfo_trace: unknown option %s\n", name);
	exit(2);
}

/* What getsockopt returned in BUF (LEN bytes), as get= prints it. */
/*
 * A connection that exists (past SYN_SENT/SYN_RECV, not CLOSE or LISTEN):
 * its MSS (TCP_MAXSEG, tcpi_snd_mss) is bounded by half the largest window
 * the peer advertised, which follows how fast the peer read, so those two
 * are printed as "conn" there.
 */
static int connection_exists(int fd)
{
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	int saved = errno;
	int exists = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state != TCP_CLOSE &&
		     ti.tcpi_state != TCP_SYN_SENT && ti.tcpi_state != TCP_SYN_RECV && ti.tcpi_state != TCP_LISTEN;
	errno = saved;
	return exists;
}

static void option_text(char *out, size_t size, const struct sockopt_name *o, const unsigned char *buf, socklen_t len)
{
	size_t used = snprintf(out, size, "len=%u", len);
	if (o->print == OPT_NOVALUE)
		return;
	if (o->print == OPT_INT && len == sizeof(int)) {
		int v;
		memcpy(&v, buf, sizeof(v));
		snprintf(out + used, size - used, " value=%d", v);
	} else if (o->print == OPT_STR) {
		snprintf(out + used, size - used, " value=%.*s", (int)(len < 16 ? len : 16), (const char *)buf);
	} else {
		used += snprintf(out + used, size - used, " bytes=");
		for (socklen_t i = 0; i < len && i < 16; i++)
			used += snprintf(out + used, size - used, "%02x", buf[i]);
	}
}

/*
 * Addresses for connecta=, sendtoa=, sendmsga= and bind=: target (ADDRESS
 * PORT), refused (port 7001), p7002, port0, any (wildcard address, PORT),
 * any0, unspec (AF_UNSPEC, full length), unspec2 (AF_UNSPEC, 2 bytes),
 * short (one byte short), one (1 byte), zero (length 0), null (NULL, 0),
 * fault (NULL with a full length), other (the other family's loopback),
 * big (longer than sockaddr_storage), mapped (::ffff:127.0.0.1 PORT),
 * bcast (255.255.255.255 or ff02::1).
 */
static const struct sockaddr *make_addr(const char *kind, struct sockaddr_storage *ss, socklen_t *len)
{
	static struct sockaddr_storage big[2];
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	int v6 = target.ss_family == AF_INET6;
	unsigned short port = ((struct sockaddr_in *)&target)->sin_port; /* same offset in sin6 */

	*ss = target;
	*len = target_len;
	if (!strcmp(kind, "target"))
		return (struct sockaddr *)ss;
	if (!strcmp(kind, "refused") || !strcmp(kind, "p7002") || !strcmp(kind, "port0")) {
		in->sin_port = htons(kind[0] == 'r' ? 7001 : kind[1] == '7' ? 7002 : 0);
		return (struct sockaddr *)ss;
	}
	if (!strcmp(kind, "any") || !strcmp(kind, "any0")) {
		if (v6)
			in6->sin6_addr = in6addr_any;
		else
			in->sin_addr.s_addr = htonl(INADDR_ANY);
		if (kind[3] == '0')
			in->sin_port = 0;
		return (struct sockaddr *)ss;
	}
	if (!strcmp(kind, "unspec") || !strcmp(kind, "unspec2")) {
		memset(ss, 0, sizeof(*ss));
		ss->ss_family = AF_UNSPEC;
		if (kind[6] == '2')
			*len = sizeof(sa_family_t);
		return (struct sockaddr *)ss;
	}
	if (!strcmp(kind, "short") || !strcmp(kind, "one") || !strcmp(kind, "zero")) {
		*len = kind[0] == 's' ? target_len - 1 : kind[0] == 'o' ? 1 : 0;
		return (struct sockaddr *)ss;
	}
	if (!strcmp(kind, "null") || !strcmp(kind, "fault")) {
		*len = kind[0] == 'n' ? 0 : target_len;
		return NULL;
	}
	if (!strcmp(kind, "big")) {
		big[0] = target;
		*len = sizeof(struct sockaddr_storage) + 1;
		return (struct sockaddr *)big;
	}
	if (!strcmp(kind, "other") || !strcmp(kind, "mapped") || !strcmp(kind, "bcast")) {
		memset(ss, 0, sizeof(*ss));
		if ((!strcmp(kind, "other") && v6) || (!strcmp(kind, "bcast") && !v6)) {
			in->sin_family = AF_INET;
			in->sin_port = port;
			in->sin_addr.s_addr = kind[0] == 'o' ? htonl(INADDR_LOOPBACK) : htonl(INADDR_BROADCAST);
			*len = sizeof(*in);
		} else {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = port;
			inet_pton(AF_INET6, kind[0] == 'o' ? "::1" : kind[0] == 'm' ? "::ffff:127.0.0.1" : "ff02::1", &in6->sin6_addr);
			*len = sizeof(*in6);
		}
		return (struct sockaddr *)ss;
	}
	fprintf(stderr, "tfo_trace: unknown address kind %s\n", kind);
	exit(2);
}

/* The steps the fuzzer added; returns 0 when NAME is not one of them. */
/* The descriptor a slot name stands for (selectx, pollx, epoll_addx). */
static int slot_fd(const char *slot)
{
	static int pipe_fds[2] = { -1, -1 };
	/* First, so that a number closed for "closed" is not taken by it. */
	if (pipe_fds[1] < 0 && pipe(pipe_fds) < 0)
		return -1;
	if (!strcmp(slot, "fd"))
		return fd;
	if (!strcmp(slot, "fd2"))
		return fd2;
	if (!strcmp(slot, "closed")) {
		int c = dup(0);
		if (c >= 0)
			close(c);
		return c < 0 ? 1000 : c;
	}
	if (!strcmp(slot, "pipe"))
		return pipe_fds[1];
	return atoi(slot);
}

/* Splits "a+b+c" into at most MAX slot descriptors; returns how many. */
static int slot_fds(const char *list, int *out, const char **names, int max)
{
	static char copy[256];
	char *save = NULL;
	int n = 0;
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *s = strtok_r(copy, "+", &save); s && n < max; s = strtok_r(NULL, "+", &save)) {
		names[n] = s;
		out[n++] = slot_fd(s);
	}
	return n;
}

static int run_fuzz_step(const char *name, const char *arg, long *ret, char *extra, size_t extra_len)
{
	char f[4][64];
	int nf = fields(arg, f, 4);
	long r = 0;
	static char buf[65536];
	struct sockaddr_storage ss;
	socklen_t sl;

	errno = EDOM;
	if (!strcmp(name, "set")) {
		const struct sockopt_name *o = sockopt_named(f[0]);
		unsigned char value[256] = { 0 };
		int v = nf > 1 ? atoi(f[1]) : 1;
		socklen_t len = nf > 2 ? (socklen_t)atol(f[2]) : sizeof(int);
		memcpy(value, &v, sizeof(v));
		errno = EDOM;
		r = setsockopt(fd, o->level, o->opt, value, len);
	} else if (!strcmp(name, "get")) {
		const struct sockopt_name *o = sockopt_named(f[0]);
		unsigned char value[256];
		socklen_t len = nf > 1 ? (socklen_t)atol(f[1]) : (socklen_t)o->size;
		memset(value, 0xaa, sizeof(value));
		errno = EDOM;
		r = getsockopt(fd, o->level, o->opt, value, &len);
		int err = errno;
		if (r == 0 && o->level == IPPROTO_TCP && o->opt == TCP_MAXSEG && connection_exists(fd))
			snprintf(extra, extra_len, "len=%u value=conn", len);
		else if (r == 0)
			option_text(extra, extra_len, o, value, len);
		errno = err;
	} else if (!strcmp(name, "cong") || !strcmp(name, "bindtodev")) {
		const char *value = strcmp(arg, "none") ? arg : "";
		r = setsockopt(fd, name[0] == 'c' ? IPPROTO_TCP : SOL_SOCKET, name[0] == 'c' ? TCP_CONGESTION : SO_BINDTODEVICE,
			       value, strlen(value));
	} else if (!strcmp(name, "linger")) {
		struct linger l = { nf > 0 ? atoi(f[0]) : 1, nf > 1 ? atoi(f[1]) : 0 };
		r = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	} else if (!strcmp(name, "tcpinfo_len")) {
		unsigned char info[512];
		socklen_t len = (socklen_t)atol(arg);
		memset(info, 0xaa, sizeof(info));
		r = getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, &len);
		int err = errno;
		if (r == 0 && len >= 1)
			snprintf(extra, extra_len, "len=%u state=%u", len, info[0]);
		else if (r == 0)
			snprintf(extra, extra_len, "len=%u", len);
		errno = err;
	} else if (!strcmp(name, "tcpinfo_full")) {
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);
		memset(&ti, 0, sizeof(ti));
		r = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
		int err = errno;
		/* On a connection that exists, the MSS and the congestion fields
		 * (cwnd, unacked, lost) follow how fast the peer read and acked:
		 * timing, not the call sequence, so they are printed as "conn". */
		char snd_mss[16], unacked[16], lost[16], cwnd[16];
		if (connection_exists(fd)) {
			snprintf(snd_mss, sizeof(snd_mss), "conn");
			snprintf(unacked, sizeof(unacked), "conn");
			snprintf(lost, sizeof(lost), "conn");
			snprintf(cwnd, sizeof(cwnd), "conn");
		} else {
			snprintf(snd_mss, sizeof(snd_mss), "%u", ti.tcpi_snd_mss);
			snprintf(unacked, sizeof(unacked), "%u", ti.tcpi_unacked);
			snprintf(lost, sizeof(lost), "%u", ti.tcpi_lost);
			snprintf(cwnd, sizeof(cwnd), "%u", ti.tcpi_snd_cwnd);
		}
		snprintf(extra, extra_len,
			 "state=%u ca=%u retrans=%u probes=%u backoff=%u opts=%u wscale=%u/%u fail=%u snd_mss=%s rcv_mss=%u "
			 "unacked=%s lost=%s pmtu=%u advmss=%u cwnd=%s reord=%u total_retrans=%u",
			 ti.tcpi_state, ti.tcpi_ca_state, ti.tcpi_retransmits, ti.tcpi_probes, ti.tcpi_backoff,
			 ti.tcpi_options, ti.tcpi_snd_wscale, ti.tcpi_rcv_wscale, (((unsigned char *)&ti)[7] >> 1) & 3 /* fastopen_client_fail, not in glibc's struct */,
			 snd_mss, ti.tcpi_rcv_mss, unacked, lost, ti.tcpi_pmtu, ti.tcpi_advmss,
			 cwnd, ti.tcpi_reordering, ti.tcpi_total_retrans);
		errno = err;
	} else if (!strcmp(name, "ioctl")) {
		int v = -1;
		unsigned long req = !strcmp(arg, "inq") ? SIOCINQ : !strcmp(arg, "outq") ? SIOCOUTQ
				  : !strcmp(arg, "outqnsd") ? SIOCOUTQNSD : SIOCATMARK;
		r = ioctl(fd, req, &v);
		int err = errno;
		/* A CLOSE socket that was once connecting answers SIOCOUTQ with
		 * write_seq - snd_una, which holds its random ISN: print only "big". */
		if (v > -1000000 && v < 1000000)
			snprintf(extra, extra_len, "value=%d", v);
		else
			snprintf(extra, extra_len, "value=big");
		errno = err;
	} else if (!strcmp(name, "getfl")) {
		r = fcntl(fd, F_GETFL);
		int err = errno;
		if (r >= 0)
			snprintf(extra, extra_len, "nonblock=%d", !!(r & O_NONBLOCK));
		r = r < 0 ? -1 : 0;
		errno = err;
	} else if (!strcmp(name, "recvf")) {
		int flags = msg_flags(f[0]);
		size_t n = nf > 1 ? (size_t)atol(f[1]) : sizeof(buf);
		errno = EDOM;
		r = recv(fd, buf, n < sizeof(buf) ? n : sizeof(buf), flags);
	} else if (!strcmp(name, "recvmsgf")) {
		int flags = msg_flags(f[0]);
		size_t n = nf > 1 ? (size_t)atol(f[1]) : sizeof(buf);
		char control[256];
		struct iovec in = { buf, n < sizeof(buf) ? n : sizeof(buf) };
		struct msghdr m = { .msg_iov = &in, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
		errno = EDOM;
		r = recvmsg(fd, &m, flags);
		int err = errno;
		snprintf(extra, extra_len, "msg_flags=0x%x controllen=%zu", m.msg_flags, (size_t)m.msg_controllen);
		errno = err;
	} else if (!strcmp(name, "recvmmsg")) {
		int flags = msg_flags(f[0]);
		size_t n = nf > 1 ? (size_t)atol(f[1]) : 100;
		struct mmsghdr m[2];
		struct iovec in[2];
		memset(m, 0, sizeof(m));
		n = n < sizeof(buf) / 2 ? n : sizeof(buf) / 2;
		for (int i = 0; i < 2; i++) {
			in[i].iov_base = buf + i * n;
			in[i].iov_len = n;
			m[i].msg_hdr.msg_iov = &in[i];
			m[i].msg_hdr.msg_iovlen = 1;
		}
		errno = EDOM;
		r = recvmmsg(fd, m, 2, flags, NULL);
		int err = errno;
		snprintf(extra, extra_len, "lens=%u,%u", m[0].msg_len, m[1].msg_len);
		errno = err;
	} else if (!strcmp(name, "sendf")) {
		int flags = msg_flags(f[0]);
		size_t n = nf > 1 ? (size_t)atol(f[1]) : 10;
		errno = EDOM;
		r = send(fd, payload, n, flags);
	} else if (!strcmp(name, "pwritev2") || !strcmp(name, "preadv2")) {
		/* Offset -1: the file position, which makes them work on sockets. */
		size_t n = (size_t)atol(arg);
		struct iovec io = { name[1] == 'w' ? payload : buf, n < sizeof(buf) ? n : sizeof(buf) };
		r = name[1] == 'w' ? pwritev2(fd, &io, 1, -1, 0) : preadv2(fd, &io, 1, -1, 0);
	} else if (!strcmp(name, "sendfile64")) {
		char path[] = "/tmp/tfo_trace.XXXXXX";
		size_t n = (size_t)atol(arg);
		int f = mkstemp(path);
		unlink(path);
		if (write(f, payload, n) != (ssize_t)n)
			exit(3);
		off64_t offset = 0;
		errno = EDOM;
		r = sendfile64(fd, f, &offset, n);
		int err = errno;
		close(f);
		errno = err;
	} else if (!strcmp(name, "close_range") || !strcmp(name, "closefrom")) {
		if (name[5] == '_')
			r = close_range((unsigned)fd, (unsigned)fd, 0);
		else
			closefrom(fd); /* returns nothing */
	} else if (!strcmp(name, "open_file")) {
		/* A regular file that takes the lowest free number, often the socket's old one. */
		char path[] = "/tmp/tfo_trace.XXXXXX";
		int f = mkstemp(path);
		int err = errno;
		unlink(path);
		snprintf(extra, extra_len, "same_number=%d", f == fd);
		fd = f;
		r = f < 0 ? -1 : 0;
		errno = f < 0 ? err : EDOM;
	} else if (!strcmp(name, "sendmsg_noiov")) {
		struct msghdr m = { 0 };
		r = sendmsg(fd, &m, 0);
	} else if (!strcmp(name, "writev_none")) {
		struct iovec none = { payload, 0 };
		r = writev(fd, &none, 0);
	} else if (!strcmp(name, "sendmmsg_n")) {
		unsigned vlen = (unsigned)atoi(f[0]);
		size_t n = nf > 1 ? (size_t)atol(f[1]) : 10;
		struct mmsghdr m[3];
		struct iovec io[3];
		memset(m, 0, sizeof(m));
		vlen = vlen > 3 ? 3 : vlen;
		for (int i = 0; i < 3; i++) {
			io[i].iov_base = payload;
			io[i].iov_len = n;
			m[i].msg_hdr.msg_iov = &io[i];
			m[i].msg_hdr.msg_iovlen = 1;
		}
		errno = EDOM;
		r = sendmmsg(fd, m, vlen, 0);
		int err = errno;
		snprintf(extra, extra_len, "lens=%u,%u,%u", m[0].msg_len, m[1].msg_len, m[2].msg_len);
		errno = err;
	} else if (!strcmp(name, "connecta")) {
		const struct sockaddr *a = make_addr(f[0], &ss, &sl);
		errno = EDOM;
		r = connect(fd, a, sl);
	} else if (!strcmp(name, "sendtoa") || !strcmp(name, "sendmsga")) {
		const struct sockaddr *a = make_addr(f[0], &ss, &sl);
		size_t n = nf > 1 ? (size_t)atol(f[1]) : 10;
		int flags = nf > 2 ? msg_flags(f[2]) : 0;
		struct iovec io = { payload, n };
		struct msghdr m = { .msg_name = (void *)a, .msg_namelen = sl, .msg_iov = &io, .msg_iovlen = 1 };
		errno = EDOM;
		r = name[4] == 't' ? sendto(fd, payload, n, flags, a, sl) : sendmsg(fd, &m, flags);
	} else if (!strcmp(name, "ppoll") || !strcmp(name, "poll_chk") || !strcmp(name, "ppoll_chk")) {
		struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
		long ms = atol(arg);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		r = !strcmp(name, "ppoll") ? ppoll(&p, 1, &ts, NULL)
		    : name[0] == 'p' && name[1] == 'o' ? __poll_chk(&p, 1, (int)ms, sizeof(p))
		    : __ppoll_chk(&p, 1, &ts, NULL, sizeof(p));
		int err = errno;
		mask_text(extra, extra_len, p.revents);
		errno = err;
	} else if (!strcmp(name, "pselect")) {
		fd_set rs, ws, es;
		long ms = atol(arg);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		FD_ZERO(&rs); FD_ZERO(&ws); FD_ZERO(&es);
		FD_SET(fd, &rs); FD_SET(fd, &ws); FD_SET(fd, &es);
		r = pselect(fd + 1, &rs, &ws, &es, &ts, NULL);
		int err = errno;
		snprintf(extra, extra_len, "read=%d write=%d except=%d", FD_ISSET(fd, &rs), FD_ISSET(fd, &ws), FD_ISSET(fd, &es));
		errno = err;
	} else if (!strcmp(name, "epoll_pwait")) {
		struct epoll_event evs[4];
		r = epoll_pwait(epfd, evs, 4, atoi(arg), NULL);
		int err = errno;
		epoll_text(extra, extra_len, evs, (int)r);
		errno = err;
	} else if (!strcmp(name, "accept") || !strcmp(name, "accept4")) {
		r = name[6] ? accept4(fd, NULL, NULL, SOCK_NONBLOCK) : accept(fd, NULL, NULL);
		if (r >= 0) {
			close((int)r);
			r = 0;
			errno = EDOM;
		}
	} else if (!strcmp(name, "selectx") || !strcmp(name, "pselectx")) {
		fd_set sets[3], *given[3];
		int fds[8], high = -1;
		const char *names[8];
		int count = slot_fds(nf > 1 ? f[1] : "fd", fds, names, 8);
		long ms = nf > 2 ? atol(f[2]) : 0;
		for (int s = 0; s < 3; s++) {
			FD_ZERO(&sets[s]);
			given[s] = strchr(f[0], "rwe"[s]) ? &sets[s] : NULL;
		}
		for (int i = 0; i < count; i++) {
			if (fds[i] < 0 || fds[i] >= FD_SETSIZE)
				continue;
			high = fds[i] > high ? fds[i] : high;
			for (int s = 0; s < 3; s++)
				if (given[s])
					FD_SET(fds[i], given[s]);
		}
		errno = EDOM;
		if (name[0] == 'p') {
			struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
			r = pselect(high + 1, given[0], given[1], given[2], &ts, NULL);
		} else {
			struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
			r = select(high + 1, given[0], given[1], given[2], &tv);
		}
		int err = errno;
		size_t used = 0;
		for (int i = 0; i < count && used < extra_len; i++) {
			char bits[4] = "---";
			for (int s = 0; s < 3; s++)
				if (given[s] && fds[i] >= 0 && fds[i] < FD_SETSIZE && FD_ISSET(fds[i], given[s]))
					bits[s] = "rwe"[s];
			used += snprintf(extra + used, extra_len - used, "%s%s=%s", i ? " " : "", names[i], bits);
		}
		errno = err;
	} else if (!strcmp(name, "pollx")) {
		struct pollfd p[8];
		int fds[8];
		const char *names[8];
		int count = slot_fds(f[0], fds, names, 8);
		for (int i = 0; i < count; i++)
			p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN | POLLOUT | POLLRDHUP };
		errno = EDOM;
		r = poll(p, count, nf > 1 ? atoi(f[1]) : 0);
		int err = errno;
		size_t used = 0;
		for (int i = 0; i < count && used < extra_len; i++) {
			char mask[96];
			mask_text(mask, sizeof(mask), p[i].revents);
			used += snprintf(extra + used, extra_len - used, "%s%s:%s", i ? " " : "", names[i], mask + 8);
		}
		errno = err;
	} else if (!strcmp(name, "epoll_addx")) {
		if (epfd < 0)
			epfd = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = epoll_flags(nf > 1 ? f[1] : "in,out") };
		int which = slot_fd(f[0]);
		ev.data.u64 = !strcmp(f[0], "fd") ? 42 : !strcmp(f[0], "fd2") ? 43 : !strcmp(f[0], "pipe") ? 44 : 45;
		errno = EDOM;
		r = epoll_ctl(epfd, EPOLL_CTL_ADD, which, &ev);
	} else if (!strcmp(name, "getsockname_len") || !strcmp(name, "getpeername_len")) {
		sl = (socklen_t)atol(arg);
		memset(&ss, 0, sizeof(ss));
		r = name[3] == 's' ? getsockname(fd, (struct sockaddr *)&ss, &sl) : getpeername(fd, (struct sockaddr *)&ss, &sl);
		int err = errno;
		if (r == 0)
			snprintf(extra, extra_len, "len=%u family=%d", sl, ss.ss_family);
		errno = err;
	} else {
		return 0;
	}
	*ret = r;
	return 1;
}

static void run(const char *step)
{
	char name[32], extra[256] = "";
	const char *eq = strchr(step, '=');
	const char *arg = eq ? eq + 1 : "";
	long n = atol(arg), r = 0;
	int v;
	struct iovec iov = { payload, (size_t)n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char buf[65536];

	snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - step) : (int)strlen(step), step);
	if (!strcmp(name, "watchdog")) {
		if (!watchdog_ms)
			start_watchdog();
		watchdog_ms = n;
		return;
	}
	if (!strcmp(name, "pace")) {
		pace_ms = n;
		return;
	}
	if (!strcmp(name, "alarm") || !strcmp(name, "alarm_restart")) {
		alarm_ms = (int)n;
		alarm_restart = name[5] == '_';
		return;
	}
	if (watchdog_ms) {
		snprintf(running_step, sizeof(running_step), "%s", step);
		atomic_store(&step_deadline_ns, now_ns() + (strcmp(name, "fork") ? 1 : 4) * watchdog_ms * 1000000L);
	}
	if (alarm_ms)
		arm_alarm();
	errno = EDOM;
	if (!strcmp(name, "socket")) {
		fd = socket(target.ss_family, SOCK_STREAM, 0);
		r = fd < 0 ? -1 : 0;
	} else if (!strcmp(name, "nonblock") || !strcmp(name, "block")) {
		int fl = fcntl(fd, F_GETFL);
		r = fcntl(fd, F_SETFL, name[0] == 'n' ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
	} else if (!strcmp(name, "setopt")) {
		v = (int)n;
		r = setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &v, sizeof(v));
	} else if (!strcmp(name, "setopt_len")) {
		long long big = 1;
		r = setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &big, (socklen_t)n);
	} else if (!strcmp(name, "getopt")) {
		v = -1;
		socklen_t vl = sizeof(v);
		r = getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &v, &vl);
		snprintf(extra, sizeof(extra), "value=%d len=%u", v, vl);
	} else if (!strcmp(name, "nocookie")) {
		v = (int)n;
		r = setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, &v, sizeof(v));
	} else if (!strcmp(name, "syncnt")) {
		v = (int)n;
		r = setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &v, sizeof(v));
	} else if (!strcmp(name, "connect")) {
		r = connect(fd, (struct sockaddr *)&target, target_len);
	} else if (!strcmp(name, "connect_port")) {
		struct sockaddr_storage other = target;
		((struct sockaddr_in *)&other)->sin_port = htons((unsigned short)n); /* same offset in sin6 */
		r = connect(fd, (struct sockaddr *)&other, target_len);
	} else if (!strcmp(name, "connect_unspec")) {
		struct sockaddr unspec = { .sa_family = AF_UNSPEC };
		r = connect(fd, &unspec, sizeof(unspec));
	} else if (!strcmp(name, "write")) {
		r = write(fd, payload, n);
	} else if (!strcmp(name, "send")) {
		r = send(fd, payload, n, 0);
	} else if (!strcmp(name, "send_dontwait")) {
		r = send(fd, payload, n, MSG_DONTWAIT);
	} else if (!strcmp(name, "sendto")) {
		r = sendto(fd, payload, n, 0, NULL, 0);
	} else if (!strcmp(name, "sendmsg")) {
		r = sendmsg(fd, &msg, 0);
	} else if (!strcmp(name, "writev")) {
		r = writev(fd, &iov, 1);
	} else if (!strcmp(name, "sendfo")) {
		r = sendto(fd, payload, n, MSG_FASTOPEN, (struct sockaddr *)&target, target_len);
	} else if (!strcmp(name, "read")) {
		r = read(fd, buf, eq && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf));
	} else if (!strcmp(name, "recv")) {
		r = recv(fd, buf, sizeof(buf), 0);
	} else if (!strcmp(name, "recv_dontwait")) {
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	} else if (!strcmp(name, "recv_peek")) {
		r = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	} else if (!strcmp(name, "readv")) {
		struct iovec in = { buf, sizeof(buf) };
		r = readv(fd, &in, 1);
	} else if (!strcmp(name, "poll")) {
		r = poll_for(POLLIN | POLLOUT | POLLRDHUP, (int)n, extra, sizeof(extra));
	} else if (!strcmp(name, "pollout")) {
		r = poll_for(POLLOUT, (int)n, extra, sizeof(extra));
	} else if (!strcmp(name, "waitin")) {
		r = poll_for(POLLIN, (int)n, extra, sizeof(extra));
	} else if (!strcmp(name, "getsockname") || !strcmp(name, "getpeername")) {
		memset(&ss, 0, sizeof(ss));
		r = name[3] == 's' ? getsockname(fd, (struct sockaddr *)&ss, &sl) : getpeername(fd, (struct sockaddr *)&ss, &sl);
		int err = errno;
		if (r == 0)
			addr_text(extra, sizeof(extra), &ss);
		errno = err;
	} else if (!strcmp(name, "soerror")) {
		int e = 0;
		socklen_t el = sizeof(e);
		r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
		snprintf(extra, sizeof(extra), "so_error=%s", e ? strerrorname_np(e) : "0");
	} else if (!strcmp(name, "tcpinfo")) {
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);
		memset(&ti, 0, sizeof(ti));
		r = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
		snprintf(extra, sizeof(extra), "state=%u syn_data=%d", ti.tcpi_state, !!(ti.tcpi_options & TCPI_OPT_SYN_DATA));
	} else if (!strcmp(name, "shutdown")) {
		int how = !strcmp(arg, "rd") ? SHUT_RD : !strcmp(arg, "wr") ? SHUT_WR : !strcmp(arg, "bad") ? 7 : SHUT_RDWR;
		r = shutdown(fd, how);
	} else if (!strcmp(name, "close")) {
		r = close(fd);
	} else if (!strcmp(name, "rcvtimeo") || !strcmp(name, "sndtimeo")) {
		struct timeval tv = { n / 1000, (n % 1000) * 1000 };
		r = setsockopt(fd, SOL_SOCKET, name[0] == 'r' ? SO_RCVTIMEO : SO_SNDTIMEO, &tv, sizeof(tv));
	} else if (!strcmp(name, "sleep")) {
		struct timespec ts = { n / 1000, (n % 1000) * 1000000 };
		nanosleep(&ts, NULL);
		atomic_store(&step_deadline_ns, 0);
		return;
	} else if (!strcmp(name, "sysctl")) {
		FILE *f = fopen("/proc/sys/net/ipv4/tcp_fastopen", "w");
		r = f && fprintf(f, "%ld\n", n) > 0 && fclose(f) == 0 ? 0 : -1;
		if (r == 0)
			errno = EDOM;
	} else if (!strcmp(name, "write0")) {
		r = write(fd, "", 0);
	} else if (!strcmp(name, "fionbio")) {
		v = (int)n;
		r = ioctl(fd, FIONBIO, &v);
	} else if (!strcmp(name, "sendmmsg")) {
		struct mmsghdr m[3];
		struct iovec io[3];
		memset(m, 0, sizeof(m));
		for (int i = 0; i < 3; i++) {
			io[i].iov_base = payload;
			io[i].iov_len = n;
			m[i].msg_hdr.msg_iov = &io[i];
			m[i].msg_hdr.msg_iovlen = 1;
		}
		r = sendmmsg(fd, m, 3, 0);
		int err = errno;
		snprintf(extra, sizeof(extra), "lens=%u,%u,%u", m[0].msg_len, m[1].msg_len, m[2].msg_len);
		errno = err;
	} else if (!strcmp(name, "sendfile")) {
		char path[] = "/tmp/tfo_trace.XXXXXX";
		int f = mkstemp(path);
		unlink(path);
		if (write(f, payload, n) != n)
			exit(3);
		lseek(f, 0, SEEK_SET);
		errno = EDOM;
		r = sendfile(fd, f, NULL, n);
		int err = errno;
		snprintf(extra, sizeof(extra), "file_pos=%ld", (long)lseek(f, 0, SEEK_CUR));
		close(f);
		errno = err;
	} else if (!strcmp(name, "splice")) {
		int p[2];
		if (pipe(p) < 0 || write(p[1], payload, n) != n)
			exit(3);
		errno = EDOM;
		r = splice(p[0], NULL, fd, NULL, n, 0);
		int err = errno;
		snprintf(extra, sizeof(extra), "left_in_pipe=%ld", (long)(n - (r > 0 ? r : 0)));
		close(p[0]);
		close(p[1]);
		errno = err;
	} else if (!strcmp(name, "dup")) {
		fd2 = dup(fd);
		r = fd2 < 0 ? -1 : 0;
	} else if (!strcmp(name, "swap")) {
		int t = fd;
		fd = fd2;
		fd2 = t;
	} else if (!strcmp(name, "closedup")) {
		r = close(fd2);
	} else if (!strcmp(name, "dup2")) {
		r = dup2(fd, (int)n) < 0 ? -1 : 0;
		fd2 = fd;
		fd = (int)n;
	} else if (!strcmp(name, "fork")) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			if (watchdog_ms)
				start_watchdog(); /* threads do not survive fork */
			printf("  child:\n");
			fflush(stdout); /* before a step can hang: the watchdog exits with _exit */
			run_list(arg);
			fflush(stdout);
			_exit(0);
		}
		int status;
		r = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	} else if (!strcmp(name, "exec")) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			char fdtext[16];
			snprintf(fdtext, sizeof(fdtext), "%d", fd);
			printf("  exec:\n");
			fflush(stdout);
			execl(self_path, self_path, "--fd", fdtext, address_arg, port_arg, arg, (char *)NULL);
			_exit(127);
		}
		int status;
		r = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	} else if (!strcmp(name, "spawn")) {
		char fdtext[16];
		pid_t pid;
		snprintf(fdtext, sizeof(fdtext), "%d", fd);
		char *args[] = { (char *)self_path, "--fd", fdtext, (char *)address_arg, (char *)port_arg, (char *)arg, NULL };
		fflush(stdout);
		printf("  spawn:\n");
		fflush(stdout);
		int e = posix_spawn(&pid, self_path, NULL, NULL, args, environ);
		int status;
		r = e == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	} else if (!strcmp(name, "dup2over")) {
		r = dup2(fd, fd2) < 0 ? -1 : 0;
	} else if (!strcmp(name, "fdup")) {
		fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 10);
		r = fd2 < 0 ? -1 : 0;
	} else if (!strcmp(name, "dup3")) {
		r = dup3(fd, (int)n, O_CLOEXEC) < 0 ? -1 : 0;
		fd2 = fd;
		fd = (int)n;
	} else if (!strcmp(name, "read_chk")) {
		r = __read_chk(fd, buf, sizeof(buf), sizeof(buf));
	} else if (!strcmp(name, "recv_chk")) {
		r = __recv_chk(fd, buf, sizeof(buf), sizeof(buf), 0);
	} else if (!strcmp(name, "recvfrom_chk")) {
		r = __recvfrom_chk(fd, buf, sizeof(buf), sizeof(buf), 0, NULL, NULL);
	} else if (!strcmp(name, "epoll_dup")) {
		if (epfd < 0)
			epfd = epctl = epoll_create1(EPOLL_CLOEXEC);
		epctl = fcntl(epfd, F_DUPFD_CLOEXEC, 0);
		r = epctl < 0 ? -1 : 0;
	} else if (!strcmp(name, "epoll_add") || !strcmp(name, "epoll_mod")) {
		if (epfd < 0)
			epfd = epctl = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = epoll_flags(arg), .data.u64 = 42 };
		errno = EDOM;
		r = epoll_ctl(epctl, name[6] == 'a' ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
	} else if (!strcmp(name, "epoll_del")) {
		r = epoll_ctl(epctl, EPOLL_CTL_DEL, fd, NULL);
	} else if (!strcmp(name, "epoll_wait")) {
		struct epoll_event evs[4];
		r = epoll_wait(epfd, evs, 4, (int)n);
		int err = errno;
		epoll_text(extra, sizeof(extra), evs, (int)r);
		errno = err;
	} else if (!strcmp(name, "select")) {
		fd_set rs, ws, es;
		FD_ZERO(&rs); FD_ZERO(&ws); FD_ZERO(&es);
		FD_SET(fd, &rs); FD_SET(fd, &ws); FD_SET(fd, &es);
		struct timeval tv = { n / 1000, (n % 1000) * 1000 };
		r = select(fd + 1, &rs, &ws, &es, &tv);
		int err = errno;
		snprintf(extra, sizeof(extra), "read=%d write=%d except=%d", FD_ISSET(fd, &rs), FD_ISSET(fd, &ws), FD_ISSET(fd, &es));
		errno = err;
	} else if (!strcmp(name, "bind") && eq) {
		const struct sockaddr *a = make_addr(arg, &ss, &sl);
		errno = EDOM;
		r = bind(fd, a, sl);
	} else if (!strcmp(name, "bind")) {
		struct sockaddr_storage local = target;
		((struct sockaddr_in *)&local)->sin_port = 0;
		r = bind(fd, (struct sockaddr *)&local, target_len);
	} else if (!strcmp(name, "listen")) {
		r = listen(fd, 1);
	} else if (!run_fuzz_step(name, arg, &r, extra, sizeof(extra))) {
		fprintf(stderr, "tfo_trace: unknown step %s\n", step);
		exit(2);
	}
	int err = errno;
	if (alarm_ms)
		disarm_alarm();
	atomic_store(&step_deadline_ns, 0);
	report(step, r, err, extra);
	if (pace_ms) {
		struct timespec settle = { pace_ms / 1000, (pace_ms % 1000) * 1000000 };
		nanosleep(&settle, NULL);
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;

	self_path = argv[0];
	if (getenv("TFO_TRACE_SHOW_PRELOAD")) {
		/* On stderr, so traces stay comparable: lets a harness prove the preload took. */
		FILE *maps = fopen("/proc/self/maps", "r");
		char line[512];
		int mapped = 0;
		while (maps && fgets(line, sizeof(line), maps))
			mapped |= strstr(line, "/libtfo.so") != NULL;
		if (maps)
			fclose(maps);
		fprintf(stderr, "tfo_trace: libtfo %s\n", mapped ? "mapped" : "not mapped");
	}
	if (argc > 2 && !strcmp(argv[1], "--fd")) { /* continue on an inherited socket (exec=) */
		fd = atoi(argv[2]);
		argv += 2;
		argc -= 2;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: %s [--fd N] ADDRESS PORT STEP...\n", argv[0]);
		return 2;
	}
	address_arg = argv[1];
	port_arg = argv[2];
	if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0) {
		fprintf(stderr, "tfo_trace: bad address\n");
		return 2;
	}
	memcpy(&target, ai->ai_addr, ai->ai_addrlen);
	target_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	memset(payload, 'x', sizeof(payload));
	signal(SIGPIPE, on_sigpipe);
	for (int i = 3; i < argc; i++) {
		if (strchr(argv[i], ',') && strncmp(argv[i], "fork=", 5) && strncmp(argv[i], "exec=", 5) && strncmp(argv[i], "spawn=", 6) && strncmp(argv[i], "epoll_", 6))
			run_list(argv[i]);
		else
			run(argv[i]);
	}
	return 0;
}
