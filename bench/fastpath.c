/*
 * The cost of the calls libtfo intercepts most: read, write, send, recv and
 * poll, on fds it does not track (a pipe, a regular file) and on an
 * established TCP socket it does track (one that set TCP_FASTOPEN_CONNECT,
 * run under TFO_MODE=explicit TFO_BACKEND=emulate). bench/bench.py runs it
 * with and without LD_PRELOAD, interleaved, and compares.
 *
 * Each call is cheap for the kernel (EAGAIN on an empty pipe, ENOTSOCK for
 * send/recv on a pipe or file, a read at end of file, one byte over
 * loopback), so the hook's own cost shows. Only the measured calls are
 * timed, in batches of 64: refilling and draining in between is not.
 *
 * Nanoseconds drown in a shared machine's noise when two processes are
 * compared, so the comparison is made inside one process, batch against
 * batch: each batch of calls through the dynamic linker (libtfo's hooks,
 * when preloaded) is paired with one made through libc's own functions
 * (found with dlopen("libc.so.6", RTLD_NOLOAD)), which libtfo never sees.
 * The median of the paired differences is what the hook adds (without the
 * preload it shows what the two ways of calling differ by themselves).
 *
 * Usage: fastpath [CALLS]   (run inside tests/in-netns: it uses loopback)
 * Prints one line per case: "FD CALL NS_PER_CALL NS_ADDED_PER_CALL".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

enum call { READ, WRITE, SEND, RECV, POLL };
static const char *names[] = { "read", "write", "send", "recv", "poll" };

/* libc's own functions, bypassing any preloaded library. */
static ssize_t (*libc_read)(int, void *, size_t);
static ssize_t (*libc_write)(int, const void *, size_t);
static ssize_t (*libc_send)(int, const void *, size_t, int);
static ssize_t (*libc_recv)(int, void *, size_t, int);
static int (*libc_poll)(struct pollfd *, nfds_t, int);

struct target {
	const char *name;
	int fd;
	int peer;	 /* the other end, to refill or drain (-1: none) */
	int is_file;
};

/* One batch of calls, through the dynamic linker or (direct) libc's own. */
static double batch(enum call call, int fd, int direct)
{
	char byte = 'x';
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
	double start = now_ns();
	for (int i = 0; i < BATCH; i++) {
		switch (call) {
		case READ: (void)!(direct ? libc_read : read)(fd, &byte, 1); break;
		case WRITE: (void)!(direct ? libc_write : write)(fd, &byte, 1); break;
		case SEND: (void)!(direct ? libc_send : send)(fd, &byte, 1, MSG_DONTWAIT); break;
		case RECV: (void)!(direct ? libc_recv : recv)(fd, &byte, 1, MSG_DONTWAIT); break;
		case POLL: (void)!(direct ? libc_poll : poll)(&p, 1, 0); break;
		}
	}
	return now_ns() - start;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Untimed, around each batch: before, a socket's peer sends what the
 * batch of reads takes; after, it drains what the batch of writes sent,
 * and a file goes back to where it was. */
static void around(enum call call, struct target *t, int after)
{
	char buf[BATCH * 4];
	if (t->is_file) {
		if (after && call == WRITE)
			(void)!ftruncate(t->fd, 0);
		lseek(t->fd, 0, SEEK_END);
		return;
	}
	if (t->peer < 0)
		return;
	if (!after && (call == READ || call == RECV)) {
		for (int i = 0; i < BATCH; i++)
			buf[i] = 'y';
		(void)!write(t->peer, buf, BATCH);
		/* Wait until the bytes are there, so every timed read gets one. */
		struct pollfd p = { .fd = t->fd, .events = POLLIN };
		int pending = 0;
		while (pending < BATCH && poll(&p, 1, 1000) > 0 && ioctl(t->fd, FIONREAD, &pending) == 0)
			;
	} else if (after && (call == WRITE || call == SEND)) {
		ssize_t left = BATCH, n;
		while (left > 0 && (n = read(t->peer, buf, sizeof(buf))) > 0)
			left -= n;
	}
}

int main(int argc, char **argv)
{
	long calls = argc > 1 ? atol(argv[1]) : 100000;
	void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	if (!libc)
		return 1;
	libc_read = dlsym(libc, "read");
	libc_write = dlsym(libc, "write");
	libc_send = dlsym(libc, "send");
	libc_recv = dlsym(libc, "recv");
	libc_poll = dlsym(libc, "poll");
	long pairs = calls / BATCH / 2 + 1;
	double *hooked = calloc(pairs, sizeof(double)), *added = calloc(pairs, sizeof(double));
	int pipefd[2];
	char file_name[] = "/tmp/libtfo-fastpath-XXXXXX";
	if (pipe2(pipefd, O_NONBLOCK) < 0)
		return 1;
	int file = mkstemp(file_name);
	if (file < 0)
		return 1;
	unlink(file_name);

	/* An established loopback connection; the client side set the option. */
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), client = socket(AF_INET, SOCK_STREAM, 0), one_ = 1;
	if (lfd < 0 || client < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0)
		return 1;
	setsockopt(client, IPPROTO_TCP, 30 /* TCP_FASTOPEN_CONNECT */, &one_, sizeof(one_));
	if (connect(client, (struct sockaddr *)&addr, sizeof(addr)) < 0 || write(client, "x", 1) != 1)
		return 1;
	int server = accept(lfd, NULL, NULL);
	char byte;
	if (server < 0 || read(server, &byte, 1) != 1)
		return 1;
	setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof(one_));
	setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof(one_));

	struct target targets[] = {
		{ "pipe", pipefd[0], -1, 0 },
		{ "file", file, -1, 1 },
		{ "tracked-socket", client, server, 0 },
	};
	for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		for (enum call call = READ; call <= POLL; call++) {
			/* A pipe's write end takes the writes (the read end EBADFs). */
			int fd = (t == 0 && call == WRITE) ? pipefd[1] : targets[t].fd;
			for (long k = 0; k < pairs; k++) {
				double spent[2];
				/* Alternate which goes first, so neither always follows the refill. */
				for (int j = 0; j < 2; j++) {
					int direct = (j + k) % 2;
					around(call, &targets[t], 0);
					spent[direct] = batch(call, fd, direct);
					around(call, &targets[t], 1);
					if (t == 0 && call == WRITE) {
						char sink[BATCH];
						(void)!read(pipefd[0], sink, sizeof(sink));
					}
				}
				hooked[k] = spent[0] / BATCH;
				added[k] = (spent[0] - spent[1]) / BATCH;
			}
			qsort(hooked, pairs, sizeof(double), by_value);
			qsort(added, pairs, sizeof(double), by_value);
			printf("%s %s %.1f %.2f\n", targets[t].name, names[call], hooked[pairs / 2], added[pairs / 2]);
		}
	}
	return 0;
}
