/*
 * tfo_badinput: calls with bad arguments, each in a child process, printed
 * as "CALL on KIND: RESULT ERRNO [extra]" (or "CRASH SIGNAME" / "HANG"), so
 * that a native run and a run under libtfo can be compared line by line.
 *
 * Usage: tfo_badinput [-x] ADDRESS PORT [FILTER]
 *   -x      sockets get TCP_FASTOPEN_CONNECT before connect() (explicit mode)
 *   FILTER  only cases whose line starts with it
 * The server at ADDRESS PORT is a Fast Open echo server with a cookie cached,
 * so a TCP socket that sets the option and connects is deferred.
 *
 * Kinds of fd: deferred (connected TCP socket: deferred in explicit mode,
 * or by libtfo's auto mode), deferred-nb (the same, non-blocking), fresh (a
 * TCP socket never connected), closed (a deferred socket's number after
 * close), negative (-1), beyond (1100000: past fs.nr_open), top (a
 * deferred socket moved to fd 1048575, the highest number libtfo's table
 * and the kernel allow, after raising RLIMIT_NOFILE; without the right to
 * raise it, the highest the hard limit allows), pipe, file (/dev/null),
 * udp, unix, raw.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "target.h"

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

/* An address no program can read or write. */
#define BAD ((void *)16)

static int explicit_option;
static char extra[128];

enum kind { DEFERRED, DEFERRED_NB, FRESH, CLOSED, NEGATIVE, BEYOND, TOP, PIPE, FILE_, UDP, UNIX_, RAW, KINDS };
static const char *kind_names[KINDS] = { "deferred", "deferred-nb", "fresh", "closed", "negative", "beyond", "top",
					 "pipe", "file", "udp", "unix", "raw" };

static int tcp_socket(int nonblocking)
{
	int fd = socket(target.ss_family, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0), one = 1;
	if (explicit_option)
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
	return fd;
}

static int deferred(int nonblocking)
{
	int fd = tcp_socket(nonblocking);
	connect(fd, (struct sockaddr *)&target, target_len);
	return fd;
}

/* An fd of `kind`, made in the child that runs the case. */
static int make(enum kind kind)
{
	int p[2], fd;
	switch (kind) {
	case DEFERRED: return deferred(0);
	case DEFERRED_NB: return deferred(1);
	case FRESH: return tcp_socket(0);
	case CLOSED: fd = deferred(0); close(fd); return fd;
	case NEGATIVE: return -1;
	case BEYOND: return 1100000;
	case TOP: {
		/* 1048576 (fs.nr_open's default) needs CAP_SYS_RESOURCE to raise the
		 * hard limit; without it, the hard limit's top. */
		struct rlimit rl = { 1048576, 1048576 };
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		int top = (int)rl.rlim_cur - 1;
		fd = deferred(0);
		if (dup2(fd, top) != top)
			return -2;
		close(fd);
		return top;
	}
	case PIPE: if (pipe(p)) return -2; return p[1];
	case FILE_: return open("/dev/null", O_RDWR);
	case UDP:
		fd = socket(target.ss_family, SOCK_DGRAM, 0);
		connect(fd, (struct sockaddr *)&target, target_len);
		return fd;
	case UNIX_: if (socketpair(AF_UNIX, SOCK_STREAM, 0, p)) return -2; return p[0];
	case RAW: return socket(target.ss_family, SOCK_RAW, IPPROTO_TCP);
	default: return -2;
	}
}

/* ---- the calls; each returns the call's result (errno kept) ---- */

static char buf[4096] = "hello";
#define ARGS int fd
typedef long (*call_fn)(ARGS);

static long c_write(ARGS) { return write(fd, buf, 5); }
static long c_send(ARGS) { return send(fd, buf, 5, MSG_NOSIGNAL); }
static long c_sendto(ARGS) { return sendto(fd, buf, 5, MSG_NOSIGNAL, NULL, 0); }
static long c_sendmsg(ARGS)
{
	struct iovec io = { buf, 5 };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1 };
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}
static long c_writev(ARGS)
{
	struct iovec io[2] = { { buf, 2 }, { buf + 2, 3 } };
	return writev(fd, io, 2);
}
static long c_sendmmsg(ARGS)
{
	struct iovec io = { buf, 5 };
	struct mmsghdr m[2] = { { .msg_hdr = { .msg_iov = &io, .msg_iovlen = 1 } }, { .msg_hdr = { .msg_iov = &io, .msg_iovlen = 1 } } };
	long r = sendmmsg(fd, m, 2, MSG_NOSIGNAL);
	int e = errno;
	snprintf(extra, sizeof(extra), "lens=%u,%u", m[0].msg_len, m[1].msg_len);
	errno = e;
	return r;
}
static long c_sendfile(ARGS)
{
	int f = memfd_create("x", 0);
	if (write(f, buf, 5) != 5)
		return -2;
	off_t at = 0;
	errno = 0;
	return sendfile(fd, f, &at, 5);
}
static long c_splice(ARGS)
{
	int p[2];
	if (pipe(p) || write(p[1], buf, 5) != 5)
		return -2;
	errno = 0;
	return splice(p[0], NULL, fd, NULL, 5, 0);
}
static long c_recv_dontwait(ARGS) { return recv(fd, buf, sizeof(buf), MSG_DONTWAIT); }
static long c_read_nonblock(ARGS)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	errno = 0;
	return read(fd, buf, sizeof(buf));
}
static long c_poll(ARGS)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
	long r = poll(&p, 1, 0);
	snprintf(extra, sizeof(extra), "revents=%#x", p.revents);
	return r;
}
static long c_select(ARGS)
{
	fd_set r, w;
	struct timeval tv = { 0, 0 };
	if (fd < 0 || fd >= FD_SETSIZE)
		return -3; /* FD_SET would write out of bounds: the program's own bug */
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(fd, &r);
	FD_SET(fd, &w);
	long n = select(fd + 1, &r, &w, NULL, &tv);
	snprintf(extra, sizeof(extra), "r=%d w=%d", FD_ISSET(fd, &r), FD_ISSET(fd, &w));
	return n;
}
static long c_epoll(ARGS)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT }, out[2];
	long r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	if (r < 0)
		return r;
	r = epoll_wait(ep, out, 2, 0);
	snprintf(extra, sizeof(extra), "events=%#x", r > 0 ? out[0].events : 0);
	return r;
}
static long c_connect(ARGS) { return connect(fd, (struct sockaddr *)&target, target_len); }
static long c_connect_unspec(ARGS)
{
	struct sockaddr sa = { .sa_family = AF_UNSPEC };
	return connect(fd, &sa, sizeof(sa));
}
static long c_shutdown(ARGS) { return shutdown(fd, SHUT_WR); }
static long c_getsockname(ARGS)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	long r = getsockname(fd, (struct sockaddr *)&ss, &l);
	snprintf(extra, sizeof(extra), "len=%u", l);
	return r;
}
static long c_getpeername(ARGS)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	long r = getpeername(fd, (struct sockaddr *)&ss, &l);
	snprintf(extra, sizeof(extra), "len=%u", l);
	return r;
}
static long c_setopt(ARGS)
{
	int one = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
}
static long c_getopt(ARGS)
{
	int v = -1;
	socklen_t l = sizeof(v);
	long r = getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &v, &l);
	snprintf(extra, sizeof(extra), "value=%d len=%u", v, l);
	return r;
}
static long c_soerror(ARGS)
{
	int v = -1;
	socklen_t l = sizeof(v);
	long r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &l);
	snprintf(extra, sizeof(extra), "value=%d", v);
	return r;
}
static long c_listen(ARGS) { return listen(fd, 1); }
static long c_accept(ARGS) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK) >= 0 ? 0 : -1; }
static long c_dup(ARGS) { return dup(fd) >= 0 ? 0 : -1; }
static long c_dup2(ARGS) { return dup2(fd, 900); }
static long c_dupfd(ARGS) { return fcntl(fd, F_DUPFD, 800) >= 0 ? 0 : -1; }
static long c_close(ARGS) { return close(fd); }
static long c_close_twice(ARGS)
{
	close(fd);
	return close(fd);
}

/* ---- bad pointers and lengths (on the sockets libtfo tracks) ---- */
static long b_write_null(ARGS) { return write(fd, NULL, 10); }
static long b_write_bad(ARGS) { return write(fd, BAD, 10); }
static long b_send_null(ARGS) { return send(fd, NULL, 10, MSG_NOSIGNAL); }
static long b_sendto_bad_addr(ARGS) { return sendto(fd, buf, 5, MSG_NOSIGNAL, BAD, 16); }
static long b_writev_null(ARGS) { return writev(fd, NULL, 1); }
static long b_writev_bad(ARGS) { return writev(fd, BAD, 1); }
static long b_writev_negative(ARGS)
{
	struct iovec io = { buf, 5 };
	return writev(fd, &io, -1);
}
static long b_writev_too_many(ARGS)
{
	static struct iovec io[1100];
	for (int i = 0; i < 1100; i++)
		io[i] = (struct iovec){ buf, 1 };
	return writev(fd, io, 1100);
}
static long b_writev_null_base(ARGS)
{
	struct iovec io[2] = { { buf, 2 }, { NULL, 10 } };
	return writev(fd, io, 2);
}
static long b_writev_huge_len(ARGS)
{
	struct iovec io[2] = { { buf, 2 }, { buf, SIZE_MAX / 2 } };
	return writev(fd, io, 2);
}
static long b_sendmsg_null(ARGS) { return sendmsg(fd, NULL, MSG_NOSIGNAL); }
static long b_sendmsg_bad(ARGS) { return sendmsg(fd, BAD, MSG_NOSIGNAL); }
static long b_sendmsg_null_iov(ARGS)
{
	struct msghdr m = { .msg_iov = NULL, .msg_iovlen = 1 };
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}
static long b_sendmsg_bad_iov(ARGS)
{
	struct msghdr m = { .msg_iov = BAD, .msg_iovlen = 3 };
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}
static long b_sendmsg_too_many(ARGS)
{
	struct iovec io = { buf, 5 };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 5000 };
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}
static long b_sendmsg_bad_control(ARGS)
{
	struct iovec io = { buf, 5 };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = BAD, .msg_controllen = 64 };
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}
static long b_sendmmsg_null(ARGS) { return sendmmsg(fd, NULL, 2, MSG_NOSIGNAL); }
static long b_sendmmsg_bad(ARGS) { return sendmmsg(fd, BAD, 2, MSG_NOSIGNAL); }
static long b_sendmmsg_bad_iov(ARGS)
{
	struct mmsghdr m[1] = { { .msg_hdr = { .msg_iov = BAD, .msg_iovlen = 2 } } };
	return sendmmsg(fd, m, 1, MSG_NOSIGNAL);
}
static long b_sendfile_bad_offset(ARGS)
{
	int f = memfd_create("x", 0);
	if (write(f, buf, 5) != 5)
		return -2;
	errno = 0;
	return sendfile(fd, f, BAD, 5);
}
static long b_sendfile_bad_input(ARGS) { return sendfile(fd, -1, NULL, 5); }
static long b_sendfile_from_pipe_end(ARGS)
{
	int p[2];
	if (pipe(p))
		return -2;
	return sendfile(fd, p[1], NULL, 5);
}
static long b_splice_not_a_pipe(ARGS)
{
	int f = open("/dev/zero", O_RDONLY);
	return splice(f, NULL, fd, NULL, 5, 0);
}
static long b_splice_bad_offset(ARGS)
{
	int p[2];
	if (pipe(p) || write(p[1], buf, 5) != 5)
		return -2;
	errno = 0;
	return splice(p[0], NULL, fd, BAD, 5, 0);
}
static long b_read_null(ARGS) { return recv(fd, NULL, 10, MSG_DONTWAIT); }
static long b_readv_bad(ARGS) { return readv(fd, BAD, 1); }
static long b_recvmsg_null(ARGS) { return recvmsg(fd, NULL, MSG_DONTWAIT); }
static long b_recvmmsg_null(ARGS) { return recvmmsg(fd, NULL, 1, MSG_DONTWAIT, NULL); }
static long b_recvfrom_bad_len(ARGS)
{
	struct sockaddr_storage ss;
	return recvfrom(fd, buf, 10, MSG_DONTWAIT, (struct sockaddr *)&ss, BAD);
}
static long b_connect_null(ARGS) { return connect(fd, NULL, 16); }
static long b_connect_bad(ARGS) { return connect(fd, BAD, 16); }
static long b_connect_len0(ARGS) { return connect(fd, (struct sockaddr *)&target, 0); }
static long b_connect_len1(ARGS) { return connect(fd, (struct sockaddr *)&target, 1); }
static long b_connect_len_big(ARGS) { return connect(fd, (struct sockaddr *)&target, 200); }
static long b_connect_len_negative(ARGS) { return connect(fd, (struct sockaddr *)&target, (socklen_t)-1); }
static long b_connect_wrong_family(ARGS)
{
	struct sockaddr_in6 six = { .sin6_family = AF_INET6, .sin6_port = htons(7000), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in four = { .sin_family = AF_INET, .sin_port = htons(7000), .sin_addr = { htonl(INADDR_LOOPBACK) } };
	return target.ss_family == AF_INET ? connect(fd, (struct sockaddr *)&six, sizeof(six)) : connect(fd, (struct sockaddr *)&four, sizeof(four));
}
static long b_setopt_null(ARGS) { return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, NULL, 4); }
static long b_setopt_bad(ARGS) { return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, BAD, 4); }
static long b_setopt_len0(ARGS)
{
	int one = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, 0);
}
static long b_setopt_len_negative(ARGS)
{
	int one = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, (socklen_t)-1);
}
static long b_getopt_null_value(ARGS)
{
	socklen_t l = 4;
	return getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, NULL, &l);
}
static long b_getopt_bad_value(ARGS)
{
	socklen_t l = 4;
	return getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, BAD, &l);
}
static long b_getopt_null_len(ARGS)
{
	int v;
	return getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &v, NULL);
}
static long b_getopt_bad_len(ARGS)
{
	int v;
	return getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &v, BAD);
}
static long b_getopt_len_negative(ARGS)
{
	int v;
	socklen_t l = (socklen_t)-1;
	return getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &v, &l);
}
static long b_soerror_bad(ARGS)
{
	socklen_t l = 4;
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, BAD, &l);
}
static long b_tcpinfo_bad(ARGS)
{
	socklen_t l = 100;
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, BAD, &l);
}
static long b_getsockname_null(ARGS)
{
	socklen_t l = 16;
	return getsockname(fd, NULL, &l);
}
static long b_getsockname_bad_len(ARGS)
{
	struct sockaddr_storage ss;
	return getsockname(fd, (struct sockaddr *)&ss, BAD);
}
static long b_getsockname_null_len(ARGS)
{
	struct sockaddr_storage ss;
	return getsockname(fd, (struct sockaddr *)&ss, NULL);
}
static long b_getsockname_len_negative(ARGS)
{
	struct sockaddr_storage ss;
	socklen_t l = (socklen_t)-1;
	return getsockname(fd, (struct sockaddr *)&ss, &l);
}
static long b_getpeername_bad(ARGS)
{
	socklen_t l = 16;
	return getpeername(fd, BAD, &l);
}
static long b_getpeername_bad_len(ARGS)
{
	struct sockaddr_storage ss;
	return getpeername(fd, (struct sockaddr *)&ss, BAD);
}
static long b_poll_null(ARGS) { (void)fd; return poll(NULL, 1, 0); }
static long b_poll_bad(ARGS) { (void)fd; return poll(BAD, 1, 0); }
static long b_poll_too_many(ARGS)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1 << 30, 0);
}
static long b_ppoll_bad(ARGS)
{
	struct timespec now = { 0, 0 };
	(void)fd;
	return ppoll(BAD, 1, &now, NULL); /* (a bad timeout: glibc itself reads it) */
}
static long b_select_bad_set(ARGS) { struct timeval tv = { 0, 0 }; return select(fd + 1, BAD, NULL, NULL, &tv); }
static long b_epoll_ctl_null(ARGS) { return epoll_ctl(epoll_create1(0), EPOLL_CTL_ADD, fd, NULL); }
static long b_epoll_ctl_bad(ARGS) { return epoll_ctl(epoll_create1(0), EPOLL_CTL_ADD, fd, BAD); }
static long b_epoll_wait_bad(ARGS)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	errno = 0;
	return epoll_wait(ep, BAD, 2, 0);
}
static long b_epoll_wait_zero(ARGS)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT }, out;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	errno = 0;
	return epoll_wait(ep, &out, 0, 0);
}
static long b_shutdown_bad_how(ARGS) { return shutdown(fd, 7); }
static long b_shutdown_negative_how(ARGS) { return shutdown(fd, -1); }

struct call {
	const char *name;
	call_fn fn;
	int bad_input; /* only on the kinds libtfo tracks */
};

static const struct call calls[] = {
	{ "write", c_write, 0 }, { "send", c_send, 0 }, { "sendto", c_sendto, 0 }, { "sendmsg", c_sendmsg, 0 },
	{ "writev", c_writev, 0 }, { "sendmmsg", c_sendmmsg, 0 }, { "sendfile", c_sendfile, 0 }, { "splice", c_splice, 0 },
	{ "recv-dontwait", c_recv_dontwait, 0 }, { "read-nonblock", c_read_nonblock, 0 }, { "poll", c_poll, 0 },
	{ "select", c_select, 0 }, { "epoll", c_epoll, 0 }, { "connect", c_connect, 0 },
	{ "connect-unspec", c_connect_unspec, 0 }, { "shutdown", c_shutdown, 0 }, { "getsockname", c_getsockname, 0 },
	{ "getpeername", c_getpeername, 0 }, { "setsockopt", c_setopt, 0 }, { "getsockopt", c_getopt, 0 },
	{ "so-error", c_soerror, 0 }, { "listen", c_listen, 0 }, { "accept", c_accept, 0 }, { "dup", c_dup, 0 },
	{ "dup2", c_dup2, 0 }, { "f-dupfd", c_dupfd, 0 }, { "close", c_close, 0 }, { "close-twice", c_close_twice, 0 },

	{ "write-null", b_write_null, 1 }, { "write-bad", b_write_bad, 1 }, { "send-null", b_send_null, 1 },
	{ "sendto-bad-addr", b_sendto_bad_addr, 1 }, { "writev-null", b_writev_null, 1 }, { "writev-bad", b_writev_bad, 1 },
	{ "writev-negative", b_writev_negative, 1 }, { "writev-too-many", b_writev_too_many, 1 },
	{ "writev-null-base", b_writev_null_base, 1 }, { "writev-huge-len", b_writev_huge_len, 1 },
	{ "sendmsg-null", b_sendmsg_null, 1 }, { "sendmsg-bad", b_sendmsg_bad, 1 }, { "sendmsg-null-iov", b_sendmsg_null_iov, 1 },
	{ "sendmsg-bad-iov", b_sendmsg_bad_iov, 1 }, { "sendmsg-too-many", b_sendmsg_too_many, 1 },
	{ "sendmsg-bad-control", b_sendmsg_bad_control, 1 }, { "sendmmsg-null", b_sendmmsg_null, 1 },
	{ "sendmmsg-bad", b_sendmmsg_bad, 1 }, { "sendmmsg-bad-iov", b_sendmmsg_bad_iov, 1 },
	{ "sendfile-bad-offset", b_sendfile_bad_offset, 1 }, { "sendfile-bad-input", b_sendfile_bad_input, 1 },
	{ "sendfile-from-pipe-end", b_sendfile_from_pipe_end, 1 }, { "splice-not-a-pipe", b_splice_not_a_pipe, 1 },
	{ "splice-bad-offset", b_splice_bad_offset, 1 }, { "recv-null", b_read_null, 1 }, { "readv-bad", b_readv_bad, 1 },
	{ "recvmsg-null", b_recvmsg_null, 1 }, { "recvmmsg-null", b_recvmmsg_null, 1 },
	{ "recvfrom-bad-len", b_recvfrom_bad_len, 1 }, { "connect-null", b_connect_null, 1 },
	{ "connect-bad", b_connect_bad, 1 }, { "connect-len0", b_connect_len0, 1 }, { "connect-len1", b_connect_len1, 1 },
	{ "connect-len-big", b_connect_len_big, 1 }, { "connect-len-negative", b_connect_len_negative, 1 },
	{ "connect-wrong-family", b_connect_wrong_family, 1 }, { "setsockopt-null", b_setopt_null, 1 },
	{ "setsockopt-bad", b_setopt_bad, 1 }, { "setsockopt-len0", b_setopt_len0, 1 },
	{ "setsockopt-len-negative", b_setopt_len_negative, 1 }, { "getsockopt-null-value", b_getopt_null_value, 1 },
	{ "getsockopt-bad-value", b_getopt_bad_value, 1 }, { "getsockopt-null-len", b_getopt_null_len, 1 },
	{ "getsockopt-bad-len", b_getopt_bad_len, 1 }, { "getsockopt-len-negative", b_getopt_len_negative, 1 },
	{ "so-error-bad", b_soerror_bad, 1 }, { "tcp-info-bad", b_tcpinfo_bad, 1 },
	{ "getsockname-null", b_getsockname_null, 1 }, { "getsockname-bad-len", b_getsockname_bad_len, 1 },
	{ "getsockname-null-len", b_getsockname_null_len, 1 }, { "getsockname-len-negative", b_getsockname_len_negative, 1 },
	{ "getpeername-bad", b_getpeername_bad, 1 }, { "getpeername-bad-len", b_getpeername_bad_len, 1 },
	{ "poll-null", b_poll_null, 1 }, { "poll-bad", b_poll_bad, 1 }, { "poll-too-many", b_poll_too_many, 1 },
	{ "ppoll-bad", b_ppoll_bad, 1 }, { "select-bad-set", b_select_bad_set, 1 },
	{ "epoll-ctl-null", b_epoll_ctl_null, 1 }, { "epoll-ctl-bad", b_epoll_ctl_bad, 1 },
	{ "epoll-wait-bad", b_epoll_wait_bad, 1 }, { "epoll-wait-zero", b_epoll_wait_zero, 1 },
	{ "shutdown-bad-how", b_shutdown_bad_how, 1 }, { "shutdown-negative-how", b_shutdown_negative_how, 1 },
};

/* Runs one case in a child; prints its line. */
static void run_case(const struct call *call, enum kind kind, const char *filter)
{
	char line[512];
	snprintf(line, sizeof(line), "%s on %s:", call->name, kind_names[kind]);
	if (filter && strncmp(line, filter, strlen(filter)))
		return;
	int out[2];
	if (pipe(out))
		exit(1);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(out[0]);
		alarm(2); /* a hang natively too: the kernel's second blocking connect() on a deferred socket */
		int fd = make(kind);
		extra[0] = 0;
		errno = 0;
		long r = fd == -2 ? -2 : call->fn(fd);
		int err = errno;
		char text[256];
		int n = snprintf(text, sizeof(text), "%ld%s%s%s%s", r, r == -1 ? " " : "", r == -1 ? (strerrorname_np(err) ?: "?") : "",
				 extra[0] ? " " : "", extra);
		if (write(out[1], text, n) != n)
			_exit(1);
		_exit(0);
	}
	close(out[1]);
	char result[256] = "";
	ssize_t got = read(out[0], result, sizeof(result) - 1);
	close(out[0]);
	result[got > 0 ? got : 0] = 0;
	int status;
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status))
		snprintf(result, sizeof(result), "%s %s", WTERMSIG(status) == SIGALRM ? "HANG" : "CRASH", sigabbrev_np(WTERMSIG(status)));
	printf("%s %s\n", line, result);
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "x")) != -1) {
		if (opt == 'x')
			explicit_option = 1;
		else
			return 2;
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: tfo_badinput [-x] ADDRESS PORT [FILTER]\n");
		return 2;
	}
	if (set_target("tfo_badinput", argv[optind], argv[optind + 1]) != 0)
		return 2;
	const char *filter = argc - optind > 2 ? argv[optind + 2] : NULL;
	signal(SIGPIPE, SIG_IGN);
	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
		for (int k = 0; k < KINDS; k++) {
			/* Bad pointers and lengths on the kinds libtfo has state for. */
			if (calls[c].bad_input && k != DEFERRED && k != DEFERRED_NB && k != TOP)
				continue;
			run_case(&calls[c], (enum kind)k, filter);
		}
	return 0;
}
