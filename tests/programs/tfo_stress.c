/*
 * tfo_stress: many TCP connections whose every byte is checked at the other
 * end by tfo-sink (tests/src/bin/tfo-sink.rs). Deterministic from a seed:
 * each connection's plan (blocking or not, how many writes, their sizes from
 * 0 to 256 KiB, the write call of each: write, writev, send, sendto,
 * sendmsg, sendmmsg, sendfile, splice, and the iovec counts) and its bytes
 * (one frame: a header, then the keystream of its id) come from the seed
 * and its number.
 *
 * Usage: tfo_stress [options] ADDRESS PORT
 *   -n N      connections (default 100); connection i is made by thread i % T
 *   -t T      threads (default 1)
 *   -s SEED   seed of the plans (default 1)
 *   -b BASE   frame id of connection 0 (default 0): ids BASE..BASE+N-1
 *   -x        explicit: set TCP_FASTOPEN_CONNECT before connect()
 *   -m BYTES  largest write (default 262144)
 *   -i US     SIGALRM every US microseconds (setitimer); its handler writes,
 *             reads, polls, dups and closes other fds (a pipe, a socket pair)
 *   -r        that handler is installed with SA_RESTART
 *
 * Prints KEY VALUE lines: connections, ok, bad, bytes, nonblocking, one
 * `calls NAME N` per write call, empty_first (connections whose first
 * write is empty: their SYN carries no data), gaps (a sendmmsg message cut
 * short before another was sent), signals, handler_io, eintr; every failed
 * connection gets a line on stderr. Exit status 0 when every verdict was ok.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "frame.h"
#include "target.h"

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

enum call { C_WRITE, C_WRITEV, C_SEND, C_SENDTO, C_SENDMSG, C_SENDMMSG, C_SENDFILE, C_SPLICE, C_COUNT };
static const char *call_names[C_COUNT] = { "write", "writev", "send", "sendto", "sendmsg", "sendmmsg", "sendfile", "splice" };

#define MAX_WRITES 4
#define HEADER 16
#define MAX_IOVS 100
#define WAIT_MS 20000

static long connections = 100, threads = 1, max_write = 262144, timer_us;
static uint64_t seed = 1;
static uint32_t id_base;
static int explicit_option, restart_handler;

static atomic_long ok_count, bad_count, bytes_total, nonblocking_count, eintr_count, gaps, empty_first;
static atomic_long call_counts[C_COUNT];
static atomic_long reported;
/* Lock-free atomics: handlers may run in several threads at once. */
static atomic_long signals_caught, handler_io;
static int sig_pipe[2], sig_pair[2];

/* SplitMix64, for plans. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t *state, uint64_t n)
{
	return n ? next_random(state) % n : 0;
}

/* The whole stream of frame `id` with a body of `len` bytes. */
static void make_stream(unsigned char *out, uint32_t id, uint64_t len)
{
	make_frame(out, id, len);
}

/* What one thread owns: the stream buffer, a scratch file and a pipe. */
struct worker {
	long index;
	unsigned char *stream;
	int file, pipe_r, pipe_w;
};

static void fail(long conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(long conn, const char *fmt, ...)
{
	if (atomic_fetch_add(&reported, 1) < 20) {
		char text[512];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		fprintf(stderr, "tfo_stress: connection %ld (id %u): %s\n", conn, (unsigned)(id_base + conn), text);
	}
}

/* Waits for `events` on fd (or an error); false after WAIT_MS. */
static int wait_for(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	for (;;) {
		int r = poll(&p, 1, WAIT_MS);
		if (r > 0)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return 0;
		atomic_fetch_add(&eintr_count, 1);
	}
}

/* Cuts [buf, buf+len) into `count` iovecs of random sizes (some empty). */
static int cut(struct iovec *iov, int count, unsigned char *buf, size_t len, uint64_t *rng)
{
	size_t left = len;
	for (int i = 0; i < count; i++) {
		size_t n = i == count - 1 ? left : (below(rng, 4) == 0 ? 0 : below(rng, left + 1));
		iov[i].iov_base = buf + (len - left);
		iov[i].iov_len = n;
		left -= n;
	}
	return count;
}

static int iov_count(uint64_t *rng)
{
	/* Mostly a few; sometimes more than libtfo describes on its stack (64). */
	return below(rng, 10) == 0 ? 60 + (int)below(rng, MAX_IOVS - 59) : 1 + (int)below(rng, 4);
}

/*
 * One attempt of `call` with up to `len` bytes at `buf`: the bytes the
 * socket took (>= 0), or -1 with errno. sendmmsg sets *gap when a message
 * was cut short and a later one still went (the stream would have a hole).
 */
static ssize_t send_once(struct worker *w, int fd, enum call call, unsigned char *buf, size_t len, uint64_t *rng, int *gap)
{
	struct iovec iov[MAX_IOVS];
	struct msghdr msg = { .msg_iov = iov };
	switch (call) {
	case C_WRITE:
		return write(fd, buf, len);
	case C_SEND:
		return send(fd, buf, len, MSG_NOSIGNAL);
	case C_SENDTO:
		return sendto(fd, buf, len, MSG_NOSIGNAL, NULL, 0);
	case C_WRITEV:
		return writev(fd, iov, cut(iov, iov_count(rng), buf, len, rng));
	case C_SENDMSG:
		msg.msg_iovlen = cut(iov, iov_count(rng), buf, len, rng);
		return sendmsg(fd, &msg, MSG_NOSIGNAL);
	case C_SENDMMSG: {
		struct mmsghdr m[4];
		int count = 1 + (int)below(rng, 4), used = 0;
		memset(m, 0, sizeof(m));
		size_t left = len;
		for (int i = 0; i < count; i++) {
			size_t n = i == count - 1 ? left : below(rng, left + 1);
			int k = 1 + (int)below(rng, 3);
			if (used + k > MAX_IOVS)
				k = MAX_IOVS - used;
			m[i].msg_hdr.msg_iov = iov + used;
			m[i].msg_hdr.msg_iovlen = cut(iov + used, k, buf + (len - left), n, rng);
			used += k;
			left -= n;
		}
		int r = sendmmsg(fd, m, count, MSG_NOSIGNAL);
		if (r <= 0)
			return r;
		ssize_t total = 0;
		for (int i = 0; i < r; i++) {
			size_t want = 0;
			for (size_t j = 0; j < m[i].msg_hdr.msg_iovlen; j++)
				want += m[i].msg_hdr.msg_iov[j].iov_len;
			if (m[i].msg_len < want && i < r - 1)
				*gap = 1;
			total += m[i].msg_len;
		}
		return total;
	}
	case C_SENDFILE: {
		/* The bytes sit at a random offset of the scratch file. Its pages
		 * may still be queued on a socket (sendfile does not copy them):
		 * they are cut off first, never written over. */
		off_t at = (off_t)below(rng, 4096);
		if (ftruncate(w->file, 0) < 0 || pwrite(w->file, buf, len, at) != (ssize_t)len)
			return -1;
		if (below(rng, 2)) {
			return sendfile(fd, w->file, &at, len);
		}
		lseek(w->file, at, SEEK_SET);
		return sendfile(fd, w->file, NULL, len);
	}
	case C_SPLICE: {
		/* Through the pipe: what the socket does not take is drained back. */
		size_t room = len < 65536 ? len : 65536;
		ssize_t in = write(w->pipe_w, buf, room);
		if (in <= 0)
			return in;
		ssize_t r = splice(w->pipe_r, NULL, fd, NULL, in, below(rng, 2) ? SPLICE_F_MORE : 0);
		int err = errno;
		ssize_t taken = r > 0 ? r : 0;
		char drain[4096];
		for (ssize_t left = in - taken; left > 0;) {
			ssize_t d = read(w->pipe_r, drain, left < (ssize_t)sizeof(drain) ? left : (ssize_t)sizeof(drain));
			if (d <= 0)
				break;
			left -= d;
		}
		errno = err;
		return r;
	}
	default:
		errno = EINVAL;
		return -1;
	}
}

/* Reads the verdict line until EOF (blocking or polling). */
static ssize_t read_all(int fd, char *buf, size_t size, int nonblocking, uint64_t *rng)
{
	size_t got = 0;
	int how = (int)below(rng, 4);
	while (got < size - 1) {
		ssize_t r;
		struct iovec io = { buf + got, size - 1 - got };
		struct msghdr msg = { .msg_iov = &io, .msg_iovlen = 1 };
		switch (how) {
		case 0: r = read(fd, buf + got, size - 1 - got); break;
		case 1: r = recv(fd, buf + got, size - 1 - got, 0); break;
		case 2: r = readv(fd, &io, 1); break;
		default: r = recvmsg(fd, &msg, 0); break;
		}
		if (r == 0)
			break;
		if (r > 0) {
			got += r;
			continue;
		}
		if (errno == EINTR) {
			atomic_fetch_add(&eintr_count, 1);
			continue;
		}
		if ((errno == EAGAIN || errno == EWOULDBLOCK) && nonblocking && wait_for(fd, POLLIN))
			continue;
		return -1;
	}
	buf[got] = 0;
	return got;
}

/* One connection, start to verdict. */
static void one_connection(struct worker *w, long conn)
{
	uint64_t rng = seed * 0x9e3779b97f4a7c15ULL ^ (uint64_t)conn * 0xd1b54a32d192ed03ULL;
	uint32_t id = id_base + (uint32_t)conn;
	int nonblocking = (int)below(&rng, 2);
	int writes = 1 + (int)below(&rng, MAX_WRITES);
	size_t sizes[MAX_WRITES], total = 0;
	enum call calls[MAX_WRITES];
	for (int i = 0; i < writes; i++) {
		uint64_t class = below(&rng, 100);
		size_t top = class < 25 ? 64 : class < 55 ? 1460 : class < 80 ? 16384 : class < 95 ? 65536 : (size_t)max_write;
		if (top > (size_t)max_write)
			top = max_write;
		sizes[i] = below(&rng, top + 1);
		calls[i] = (enum call)below(&rng, C_COUNT);
		total += sizes[i];
	}
	if (total < HEADER) { /* the header must go: the last write carries it */
		sizes[writes - 1] += HEADER - total;
		total = HEADER;
	}
	make_stream(w->stream, id, total - HEADER);
	/* An empty first write reaches the socket (splice does not call it):
	 * its SYN leaves without data. */
	if (sizes[0] == 0 && calls[0] != C_SPLICE)
		atomic_fetch_add(&empty_first, 1);
	if (nonblocking)
		atomic_fetch_add(&nonblocking_count, 1);

	int fd = socket(target.ss_family, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		fail(conn, "socket: %s", strerror(errno));
		atomic_fetch_add(&bad_count, 1);
		return;
	}
	int one = 1;
	if (explicit_option && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)) < 0) {
		fail(conn, "setsockopt: %s", strerror(errno));
		goto bad;
	}
	if (connect(fd, (struct sockaddr *)&target, target_len) < 0) {
		if (errno == EINTR)
			atomic_fetch_add(&eintr_count, 1);
		if (errno != EINPROGRESS && errno != EINTR) {
			fail(conn, "connect: %s", strerror(errno));
			goto bad;
		}
		/* Connecting: an event loop waits until writable, then asks SO_ERROR. */
		if (!wait_for(fd, POLLOUT)) {
			fail(conn, "connect: never writable");
			goto bad;
		}
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			fail(conn, "connect: SO_ERROR %s", strerror(err));
			goto bad;
		}
	} else if (nonblocking && below(&rng, 2)) {
		/* Some event loops wait for "writable" before the first write. */
		if (!wait_for(fd, POLLOUT)) {
			fail(conn, "never writable after connect");
			goto bad;
		}
	}

	size_t at = 0;
	for (int i = 0; i < writes; i++) {
		size_t end = at + sizes[i];
		atomic_fetch_add(&call_counts[calls[i]], 1);
		do {
			int gap = 0;
			ssize_t r = send_once(w, fd, calls[i], w->stream + at, end - at, &rng, &gap);
			if (gap) {
				atomic_fetch_add(&gaps, 1);
				fail(conn, "%s: a message was cut short and a later one sent", call_names[calls[i]]);
			}
			if (r > 0) {
				at += r;
				continue;
			}
			if (r == 0 && end == at)
				break;
			if (r == 0) {
				/* Nothing taken, no error: try again when writable. */
				if (!wait_for(fd, POLLOUT))
					goto stuck;
				continue;
			}
			if (errno == EINTR) {
				atomic_fetch_add(&eintr_count, 1);
				continue;
			}
			/* A deferred or connecting socket (explicit mode) asks to come back. */
			if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS || errno == EALREADY) && wait_for(fd, POLLOUT))
				continue;
			fail(conn, "%s of %zu bytes at %zu: %s", call_names[calls[i]], end - at, at, strerror(errno));
			goto bad;
		} while (at < end);
	}
	/* A program that set TCP_FASTOPEN_CONNECT owns the kernel's semantics: a
	 * shutdown while the SYN is in flight would drop the connection, so it
	 * waits for the handshake (writable) first. Auto mode does this for
	 * programs that never asked. */
	if (explicit_option && nonblocking && !wait_for(fd, POLLOUT)) {
		fail(conn, "never connected");
		goto bad;
	}
	while (shutdown(fd, SHUT_WR) < 0) {
		if (errno != EINTR) {
			fail(conn, "shutdown: %s", strerror(errno));
			goto bad;
		}
	}
	char verdict[256], expected[128];
	if (read_all(fd, verdict, sizeof(verdict), nonblocking, &rng) < 0) {
		fail(conn, "reading the verdict: %s", strerror(errno));
		goto bad;
	}
	snprintf(expected, sizeof(expected), "ok frames=1 bytes=%zu ids=%u\n", total, (unsigned)id);
	if (strcmp(verdict, expected)) {
		fail(conn, "sink says: %s (expected %s)", verdict, expected);
		goto bad;
	}
	close(fd);
	atomic_fetch_add(&ok_count, 1);
	atomic_fetch_add(&bytes_total, (long)total);
	return;
stuck:
	fail(conn, "no progress for %d ms at byte %zu of %zu", WAIT_MS, at, total);
bad:
	close(fd);
	atomic_fetch_add(&bad_count, 1);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->stream = malloc(HEADER + (size_t)MAX_WRITES * max_write + HEADER);
	w->file = memfd_create("tfo_stress", MFD_CLOEXEC);
	int p[2];
	if (!w->stream || w->file < 0 || pipe2(p, O_CLOEXEC) < 0) {
		perror("tfo_stress: worker setup");
		exit(1);
	}
	w->pipe_r = p[0];
	w->pipe_w = p[1];
	for (long conn = w->index; conn < connections; conn += threads)
		one_connection(w, conn);
	return NULL;
}

/*
 * The signal handler: I/O on other fds, through libtfo's hooks (write,
 * read, poll, dup, close, send, recv), all async-signal-safe calls.
 */
static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	char c = 'x';
	atomic_fetch_add(&signals_caught, 1);
	if (write(sig_pipe[1], &c, 1) == 1)
		atomic_fetch_add(&handler_io, 1);
	/* Every handler writes before it reads: the pipe is never empty here. */
	struct pollfd p = { .fd = sig_pipe[0], .events = POLLIN };
	if (poll(&p, 1, 0) == 1 && read(sig_pipe[0], &c, 1) == 1)
		atomic_fetch_add(&handler_io, 1);
	int copy = dup(sig_pipe[1]);
	if (copy >= 0)
		close(copy);
	if (send(sig_pair[0], &c, 1, MSG_DONTWAIT) == 1 && recv(sig_pair[1], &c, 1, MSG_DONTWAIT) == 1)
		atomic_fetch_add(&handler_io, 1);
	errno = saved;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "n:t:s:b:xm:i:r")) != -1) {
		switch (opt) {
		case 'n': connections = atol(optarg); break;
		case 't': threads = atol(optarg); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'b': id_base = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'x': explicit_option = 1; break;
		case 'm': max_write = atol(optarg); break;
		case 'i': timer_us = atol(optarg); break;
		case 'r': restart_handler = 1; break;
		default: goto usage;
		}
	}
	if (argc - optind != 2 || connections < 0 || threads < 1 || max_write < 1) {
usage:
		fprintf(stderr, "usage: tfo_stress [-n N] [-t T] [-s SEED] [-b BASE] [-x] [-m BYTES] [-i US [-r]] ADDRESS PORT\n");
		return 2;
	}
	if (set_target("tfo_stress", argv[optind], argv[optind + 1]) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);

	if (timer_us > 0) {
		if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sig_pair) < 0) {
			perror("tfo_stress: handler fds");
			return 1;
		}
		struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = restart_handler ? SA_RESTART : 0 };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval it = { { timer_us / 1000000, timer_us % 1000000 }, { timer_us / 1000000, timer_us % 1000000 } };
		setitimer(ITIMER_REAL, &it, NULL);
	}

	pthread_t tids[256];
	struct worker workers[256];
	if (threads > 256)
		threads = 256;
	for (long t = 0; t < threads; t++) {
		workers[t] = (struct worker){ .index = t };
		if (pthread_create(&tids[t], NULL, worker_main, &workers[t])) {
			perror("tfo_stress: pthread_create");
			return 1;
		}
	}
	for (long t = 0; t < threads; t++)
		pthread_join(tids[t], NULL);
	if (timer_us > 0) {
		struct itimerval off = { { 0, 0 }, { 0, 0 } };
		setitimer(ITIMER_REAL, &off, NULL);
	}

	printf("connections %ld\nok %ld\nbad %ld\nbytes %ld\nnonblocking %ld\n", connections, atomic_load(&ok_count),
	       atomic_load(&bad_count), atomic_load(&bytes_total), atomic_load(&nonblocking_count));
	for (int c = 0; c < C_COUNT; c++)
		printf("calls %s %ld\n", call_names[c], atomic_load(&call_counts[c]));
	printf("empty_first %ld\n", atomic_load(&empty_first));
	printf("gaps %ld\nsignals %ld\nhandler_io %ld\neintr %ld\n", atomic_load(&gaps), atomic_load(&signals_caught), atomic_load(&handler_io),
	       atomic_load(&eintr_count));
	return atomic_load(&bad_count) == 0 && atomic_load(&ok_count) == connections ? 0 : 1;
}
