/*
 * Runs a scripted sequence of socket calls and prints one line per call:
 * its return value, errno name and anything it reported (poll mask, TCP
 * state...). Run once with the kernel's own TCP_FASTOPEN_CONNECT and once
 * under LD_PRELOAD=libtfo.so, the two traces must be identical.
 *
 * Usage: tfo_trace ADDRESS PORT STEP...
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
 *   fork=STEPS        a child runs STEPS (comma-separated) on the same socket, then exits; the parent waits
 *   exec=STEPS        a child execs this program on the inherited socket to run STEPS; the parent waits
 *   spawn=STEPS       the same through posix_spawn
 *   fdup              fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 10)   dup3=T: dup3(fd, T, O_CLOEXEC), then use T
 *   read_chk recv_chk recvfrom_chk   the fortified variants (_FORTIFY_SOURCE)
 *   epoll_add=FLAGS   epoll_ctl(ADD) with in,out,et,oneshot,rdhup (comma-separated)
 *   epoll_mod=FLAGS   epoll_ctl(MOD)   epoll_del   epoll_wait=MS
 *   select=MS         select for reading, writing and errors
 */
#define _GNU_SOURCE
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
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/select.h>
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
extern char **environ;
/* The fortified entry points glibc's headers call under _FORTIFY_SOURCE. */
extern ssize_t __read_chk(int, void *, size_t, size_t);
extern ssize_t __recv_chk(int, void *, size_t, size_t, int);
extern ssize_t __recvfrom_chk(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
static const char *self_path, *address_arg, *port_arg;
static volatile sig_atomic_t sigpipes;
static char payload[200000];

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
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
		r = read(fd, buf, sizeof(buf));
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
		int how = !strcmp(arg, "rd") ? SHUT_RD : !strcmp(arg, "wr") ? SHUT_WR : SHUT_RDWR;
		r = shutdown(fd, how);
	} else if (!strcmp(name, "close")) {
		r = close(fd);
	} else if (!strcmp(name, "rcvtimeo") || !strcmp(name, "sndtimeo")) {
		struct timeval tv = { n / 1000, (n % 1000) * 1000 };
		r = setsockopt(fd, SOL_SOCKET, name[0] == 'r' ? SO_RCVTIMEO : SO_SNDTIMEO, &tv, sizeof(tv));
	} else if (!strcmp(name, "sleep")) {
		struct timespec ts = { n / 1000, (n % 1000) * 1000000 };
		nanosleep(&ts, NULL);
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
			printf("  child:\n");
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
	} else if (!strcmp(name, "epoll_add") || !strcmp(name, "epoll_mod")) {
		if (epfd < 0)
			epfd = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = epoll_flags(arg), .data.u64 = 42 };
		errno = EDOM;
		r = epoll_ctl(epfd, name[6] == 'a' ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
	} else if (!strcmp(name, "epoll_del")) {
		r = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
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
	} else if (!strcmp(name, "bind")) {
		struct sockaddr_storage local = target;
		((struct sockaddr_in *)&local)->sin_port = 0;
		r = bind(fd, (struct sockaddr *)&local, target_len);
	} else if (!strcmp(name, "listen")) {
		r = listen(fd, 1);
	} else {
		fprintf(stderr, "tfo_trace: unknown step %s\n", step);
		exit(2);
	}
	report(step, r, errno, extra);
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;

	self_path = argv[0];
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
