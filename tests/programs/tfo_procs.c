/*
 * tfo_procs: deferred sockets across threads and processes, checked end to
 * end by tfo-sink (tests/src/bin/tfo-sink.rs): every frame written must
 * arrive whole, on the connection it was written to, once.
 *
 * Usage: tfo_procs [-x] [-b BASE] [-k ITERATIONS] ADDRESS PORT CASE...
 *   -x  set TCP_FASTOPEN_CONNECT before connect() (explicit mode)
 *   -b  first frame id (default 0)
 *   -k  iterations of each case (default 20)
 * The sink listens on PORT; close-reuse also needs one on PORT+1 that takes
 * only ids from BASE+1000000 on (tfo-sink --ids).
 * CASE:
 *   fork-both-write   fork; parent and child both write a frame at once
 *   fork-child-writes fork; only the child writes; the parent finishes
 *   fork-while-waiting a thread waits in a second connect(); the process
 *                     forks, then writes: the waiter returns
 *   vfork-exec        vfork; the child execs this program to write a frame
 *   vfork-exit        vfork; the child exits; the parent writes
 *   exec-several      three deferred sockets (one close-on-exec); a forked
 *                     child execs this program, which writes on the two it
 *                     inherits; then the parent writes on all three
 *   spawn-several     the same through posix_spawn
 *   dup2-over         dup2(b, a) with a and b deferred: a is b now
 *   dup2-pipe-over    dup2(pipe, a) with a deferred: a is the pipe now
 *   dup-close         b = dup(a), close(a), write on b
 *   close-reuse       4 threads: each connects a socket to PORT+1 (deferred),
 *                     another thread closes it while a third races a write
 *                     on its number, and a fourth opens a new socket (the
 *                     same number, often) to PORT and writes: the new
 *                     connection gets its own frame (and at most the racing
 *                     one), never a stale destination
 * Prints "case NAME ok ITERATIONS" or "case NAME FAIL reason"; exit 1 on a failure.
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
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "target.h"

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

extern char **environ;
static int explicit_option;
static atomic_uint next_id;
static const char *self;
static char failure[512];

static int write_frame(int fd, uint32_t id, uint64_t len)
{
	unsigned char buf[8100];
	size_t size = make_frame(buf, id, len), at = 0;
	while (at < size) {
		ssize_t r = write(fd, buf + at, size - at);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		at += r;
	}
	return 0;
}

static int base_port;

/* A connected (deferred, in Fast Open modes) socket to PORT + which. */
static int open_conn(int which)
{
	struct sockaddr_storage to = target;
	((struct sockaddr_in *)&to)->sin_port = htons(base_port + which); /* same place in sin6 */
	int fd = socket(to.ss_family, SOCK_STREAM, 0), one = 1;
	if (fd < 0)
		return -1;
	if (explicit_option && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&to, target_len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Ends the stream and checks the sink's verdict: exactly the frames `ids`
 * (in any order), `bytes` in all. `extra` (or 0) is an id that may also
 * be there. Returns 0 when it holds; fills `failure` otherwise.
 */
static int finish(int fd, const uint32_t *ids, int n, uint32_t extra, const char *what)
{
	/* A program that set the option waits for the handshake before a
	 * shutdown (one in SYN_SENT would drop the connection). */
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	if (explicit_option)
		poll(&p, 1, 10000);
	if (shutdown(fd, SHUT_WR) < 0) {
		snprintf(failure, sizeof(failure), "%s: shutdown: %s", what, strerror(errno));
		return -1;
	}
	char verdict[512];
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fd, verdict + got, sizeof(verdict) - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	verdict[got] = 0;
	close(fd);
	char *list = strstr(verdict, " ids=");
	if (strncmp(verdict, "ok ", 3) || !list) {
		snprintf(failure, sizeof(failure), "%s: sink says: %.300s", what, verdict);
		return -1;
	}
	int seen = 0, seen_extra = 0;
	for (char *at = list + 5; *at && *at != '\n';) {
		uint32_t id = (uint32_t)strtoul(at, &at, 10);
		int known = 0;
		for (int i = 0; i < n; i++)
			known |= ids[i] == id;
		if (known)
			seen++;
		else if (extra && id == extra)
			seen_extra++;
		else {
			snprintf(failure, sizeof(failure), "%s: frame %u arrived where it was not written: %.300s", what, id, verdict);
			return -1;
		}
		if (*at == ',')
			at++;
	}
	if (seen != n || seen_extra > 1) {
		snprintf(failure, sizeof(failure), "%s: expected %d frames, got %.300s", what, n, verdict);
		return -1;
	}
	return 0;
}

static uint32_t new_id(void)
{
	return atomic_fetch_add(&next_id, 1);
}

/* Up to 4000 bytes: a frame fits in one SYN, so one write call of it is
 * never split (a longer first write goes as the SYN's part, then the rest:
 * another process writing at that moment may slip in between, as with the
 * kernel's own option over any real path). */
static int frame_len(uint32_t id)
{
	return (int)(key_word(id, 99) % 4000);
}

static int fork_both_write(int child_only)
{
	int fd = open_conn(0);
	uint32_t ids[2] = { new_id(), new_id() };
	if (fd < 0) {
		snprintf(failure, sizeof(failure), "connect: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(write_frame(fd, ids[0], frame_len(ids[0])) ? (errno & 0x7f) | 0x80 : 0);
	int status;
	if (child_only)
		waitpid(pid, &status, 0);
	else if (write_frame(fd, ids[1], frame_len(ids[1]))) {
		snprintf(failure, sizeof(failure), "parent write: %s", strerror(errno));
		return -1;
	}
	if (!child_only)
		waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(failure, sizeof(failure), "child write failed: %s", WIFEXITED(status) ? strerrorname_np(WEXITSTATUS(status) & 0x7f) : "killed");
		return -1;
	}
	return finish(fd, ids, child_only ? 1 : 2, 0, "fork");
}

/* A second connect() of the deferred socket, which waits (explicit mode)
 * until a write sends the SYN. */
static void *connect_again(void *arg)
{
	int fd = *(int *)arg;
	struct sockaddr_storage to = target;
	((struct sockaddr_in *)&to)->sin_port = htons(base_port); /* same place in sin6 */
	connect(fd, (struct sockaddr *)&to, target_len);
	return NULL;
}

/* A thread waits on the deferred socket; meanwhile the process forks (its
 * state moves to memory shared with the child) and then writes: the waiter
 * must be woken. */
static int fork_while_waiting(void)
{
	int fd = open_conn(0);
	uint32_t ids[1] = { new_id() };
	if (fd < 0) {
		snprintf(failure, sizeof(failure), "connect: %s", strerror(errno));
		return -1;
	}
	pthread_t waiter;
	pthread_create(&waiter, NULL, connect_again, &fd);
	usleep(20000);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	if (write_frame(fd, ids[0], frame_len(ids[0]))) {
		snprintf(failure, sizeof(failure), "write: %s", strerror(errno));
		return -1;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 3;
	if (pthread_timedjoin_np(waiter, NULL, &until) != 0) {
		snprintf(failure, sizeof(failure), "a thread waiting since before the fork was not woken by the write");
		return -1;
	}
	return finish(fd, ids, 1, 0, "fork-while-waiting");
}

static int vfork_case(int exec_it)
{
	volatile int exec = exec_it; /* the child shares this frame */
	int fd = open_conn(0);
	uint32_t ids[2] = { new_id(), new_id() };
	char fdtext[48];
	snprintf(fdtext, sizeof(fdtext), "%d:%u:%d", fd, ids[0], frame_len(ids[0]));
	pid_t pid = vfork();
	if (pid == 0) {
		if (exec)
			execl(self, self, "--write-frames", fdtext, (char *)NULL);
		_exit(exec ? 127 : 0);
	}
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(failure, sizeof(failure), "vfork child failed (%d)", status);
		return -1;
	}
	if (write_frame(fd, ids[1], frame_len(ids[1]))) {
		snprintf(failure, sizeof(failure), "parent write: %s", strerror(errno));
		return -1;
	}
	return finish(fd, exec ? ids : ids + 1, exec ? 2 : 1, 0, exec ? "vfork-exec" : "vfork-exit");
}

static int exec_several(int spawn)
{
	int fds[3];
	uint32_t child_ids[2] = { new_id(), new_id() }, parent_ids[3] = { new_id(), new_id(), new_id() };
	for (int i = 0; i < 3; i++)
		fds[i] = open_conn(0);
	fcntl(fds[2], F_SETFD, FD_CLOEXEC);
	char a[48], b[48];
	snprintf(a, sizeof(a), "%d:%u:%d", fds[0], child_ids[0], frame_len(child_ids[0]));
	snprintf(b, sizeof(b), "%d:%u:%d", fds[1], child_ids[1], frame_len(child_ids[1]));
	pid_t pid;
	if (spawn) {
		char *args[] = { (char *)self, "--write-frames", a, b, NULL };
		if (posix_spawn(&pid, self, NULL, NULL, args, environ)) {
			snprintf(failure, sizeof(failure), "posix_spawn failed");
			return -1;
		}
	} else if ((pid = fork()) == 0) {
		execl(self, self, "--write-frames", a, b, (char *)NULL);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(failure, sizeof(failure), "the new image failed (%d)", status);
		return -1;
	}
	for (int i = 0; i < 3; i++)
		if (write_frame(fds[i], parent_ids[i], frame_len(parent_ids[i]))) {
			snprintf(failure, sizeof(failure), "parent write %d: %s", i, strerror(errno));
			return -1;
		}
	uint32_t first[2] = { child_ids[0], parent_ids[0] }, second[2] = { child_ids[1], parent_ids[1] };
	if (finish(fds[0], first, 2, 0, "inherited 1") || finish(fds[1], second, 2, 0, "inherited 2"))
		return -1;
	return finish(fds[2], parent_ids + 2, 1, 0, "close-on-exec");
}

static int dup2_over(void)
{
	int a = open_conn(0), b = open_conn(0);
	uint32_t ids[2] = { new_id(), new_id() };
	if (dup2(b, a) != a) {
		snprintf(failure, sizeof(failure), "dup2: %s", strerror(errno));
		return -1;
	}
	if (write_frame(a, ids[0], frame_len(ids[0])) || write_frame(b, ids[1], frame_len(ids[1]))) {
		snprintf(failure, sizeof(failure), "write: %s", strerror(errno));
		return -1;
	}
	close(a);
	return finish(b, ids, 2, 0, "dup2-over");
}

static int dup2_pipe_over(void)
{
	int a = open_conn(0), p[2];
	if (pipe(p) < 0 || dup2(p[1], a) != a) {
		snprintf(failure, sizeof(failure), "pipe/dup2: %s", strerror(errno));
		return -1;
	}
	char buf[16] = "";
	ssize_t w = write(a, "hello", 5), r = read(p[0], buf, sizeof(buf));
	close(a);
	close(p[0]);
	close(p[1]);
	if (w != 5 || r != 5 || memcmp(buf, "hello", 5)) {
		snprintf(failure, sizeof(failure), "write to the pipe %zd (%s), read back %zd", w, strerror(errno), r);
		return -1;
	}
	return 0;
}

static int dup_close(void)
{
	int a = open_conn(0), b = dup(a);
	uint32_t id = new_id();
	close(a);
	if (write_frame(b, id, frame_len(id))) {
		snprintf(failure, sizeof(failure), "write: %s", strerror(errno));
		return -1;
	}
	return finish(b, &id, 1, 0, "dup-close");
}

/* close-reuse: one round shared by four threads. */
static pthread_barrier_t barrier;
static int old_fd;
static uint32_t racing_id, new_conn_id;
static atomic_int round_failed;
static int round_base;
static char thread_failure[256];

static void *opener(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&barrier); /* the old socket is deferred */
	pthread_barrier_wait(&barrier); /* it is closed */
	int fd = open_conn(0);
	if (fd < 0 || write_frame(fd, new_conn_id, frame_len(new_conn_id))) {
		snprintf(thread_failure, sizeof(thread_failure), "new socket: %s", strerror(errno));
		atomic_store(&round_failed, 1);
		if (fd >= 0)
			close(fd);
	} else if (finish(fd, &new_conn_id, 1, racing_id, "new socket on a reused number")) {
		snprintf(thread_failure, sizeof(thread_failure), "%.250s", failure);
		atomic_store(&round_failed, 1);
	}
	pthread_barrier_wait(&barrier);
	return NULL;
}

static void *closer(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&barrier);
	close(old_fd);
	pthread_barrier_wait(&barrier);
	pthread_barrier_wait(&barrier);
	return NULL;
}

static void *racer(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&barrier);
	/* Races the close: the old socket, EBADF, or (the number reused) the
	 * new one; a whole frame in any case. */
	write_frame(old_fd, racing_id, 100);
	pthread_barrier_wait(&barrier);
	pthread_barrier_wait(&barrier);
	return NULL;
}

static int close_reuse(void)
{
	racing_id = round_base + 1000000 + new_id();
	new_conn_id = new_id();
	old_fd = open_conn(1);
	if (old_fd < 0) {
		snprintf(failure, sizeof(failure), "connect to the second sink: %s", strerror(errno));
		return -1;
	}
	pthread_t t[3];
	atomic_store(&round_failed, 0);
	pthread_barrier_init(&barrier, NULL, 4);
	pthread_create(&t[0], NULL, opener, NULL);
	pthread_create(&t[1], NULL, closer, NULL);
	pthread_create(&t[2], NULL, racer, NULL);
	pthread_barrier_wait(&barrier);
	pthread_barrier_wait(&barrier);
	pthread_barrier_wait(&barrier);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&barrier);
	if (atomic_load(&round_failed)) {
		snprintf(failure, sizeof(failure), "%s", thread_failure);
		return -1;
	}
	return 0;
}

/* The exec'd side: FD:ID:LEN... */
static int write_frames(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		int fd;
		unsigned id, len;
		if (sscanf(argv[i], "%d:%u:%u", &fd, &id, &len) != 3 || write_frame(fd, id, len))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int opt, iterations = 20, failed = 0;
	self = argv[0];
	if (argc > 1 && !strcmp(argv[1], "--write-frames"))
		return write_frames(argc - 2, argv + 2);
	while ((opt = getopt(argc, argv, "xb:k:")) != -1) {
		switch (opt) {
		case 'x': explicit_option = 1; break;
		case 'b': round_base = atoi(optarg); atomic_store(&next_id, (unsigned)round_base); break;
		case 'k': iterations = atoi(optarg); break;
		default: return 2;
		}
	}
	if (argc - optind < 3) {
		fprintf(stderr, "usage: tfo_procs [-x] [-b BASE] [-k N] ADDRESS PORT CASE...\n");
		return 2;
	}
	if (set_target("tfo_procs", argv[optind], argv[optind + 1]) != 0)
		return 2;
	base_port = atoi(argv[optind + 1]);
	signal(SIGPIPE, SIG_IGN);
	for (int c = optind + 2; c < argc; c++) {
		const char *name = argv[c];
		int done = 0, bad = 0;
		for (int i = 0; i < iterations && !bad; i++) {
			failure[0] = 0;
			int r;
			if (!strcmp(name, "fork-both-write")) r = fork_both_write(0);
			else if (!strcmp(name, "fork-child-writes")) r = fork_both_write(1);
			else if (!strcmp(name, "fork-while-waiting")) r = fork_while_waiting();
			else if (!strcmp(name, "vfork-exec")) r = vfork_case(1);
			else if (!strcmp(name, "vfork-exit")) r = vfork_case(0);
			else if (!strcmp(name, "exec-several")) r = exec_several(0);
			else if (!strcmp(name, "spawn-several")) r = exec_several(1);
			else if (!strcmp(name, "dup2-over")) r = dup2_over();
			else if (!strcmp(name, "dup2-pipe-over")) r = dup2_pipe_over();
			else if (!strcmp(name, "dup-close")) r = dup_close();
			else if (!strcmp(name, "close-reuse")) r = close_reuse();
			else {
				fprintf(stderr, "tfo_procs: unknown case %s\n", name);
				return 2;
			}
			if (r) {
				printf("case %s FAIL (iteration %d) %s\n", name, i, failure);
				bad = failed = 1;
			} else {
				done++;
			}
		}
		if (!bad)
			printf("case %s ok %d\n", name, done);
		fflush(stdout);
	}
	return failed;
}
