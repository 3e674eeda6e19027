/*
 * tfo_signals: a blocking call interrupted by a signal, printed so that a
 * run with the kernel's own TCP_FASTOPEN_CONNECT and a run under libtfo can
 * be compared line by line, and so that a byte sent twice shows.
 *
 * Usage: tfo_signals [-x] [-r] [-a MS] [-t MS] ADDRESS PORT CASE
 *   -x     set TCP_FASTOPEN_CONNECT before connect() (explicit mode)
 *   -r     the SIGALRM handler has SA_RESTART
 *   -a MS  SIGALRM this long after the call starts (default 30)
 *   -t MS  SO_RCVTIMEO on the socket
 * CASE (the server at ADDRESS PORT echoes; each case ends by collecting the
 * echo, then prints "echo N": the bytes that came back):
 *   connect      the signal interrupts a blocking connect()
 *   write        connect(), then the signal interrupts the first write
 *   read         connect(), then the signal interrupts a blocking read
 *                (a forked child writes on the socket after 300 ms)
 *   poll         connect(), then the signal interrupts poll(POLLIN, 500)
 * Each line: "CALL RESULT [ERRNO] [+SIGALRM]"; ERRNO only for -1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "target.h"

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void arm(long ms)
{
	struct itimerval it = { { 0, 0 }, { ms / 1000, (ms % 1000) * 1000 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm(void)
{
	struct itimerval it = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

static void report(const char *call, long r, int err)
{
	printf("%s %ld", call, r);
	if (r < 0)
		printf(" %s", strerrorname_np(err));
	if (alarms) {
		printf(" +SIGALRM");
		alarms = 0;
	}
	printf("\n");
	fflush(stdout);
}

/* Every byte that comes back until 400 ms of quiet (4 round trips of the
 * tests' path). */
static void collect_echo(int fd)
{
	char buf[4096];
	long total = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 400) > 0) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			break;
		total += n;
	}
	printf("echo %ld\n", total);
}

int main(int argc, char **argv)
{
	int opt, explicit_option = 0, restart = 0;
	long alarm_ms = 30, rcvtimeo = 0;
	while ((opt = getopt(argc, argv, "xra:t:")) != -1) {
		switch (opt) {
		case 'x': explicit_option = 1; break;
		case 'r': restart = 1; break;
		case 'a': alarm_ms = atol(optarg); break;
		case 't': rcvtimeo = atol(optarg); break;
		default: goto usage;
		}
	}
	if (argc - optind != 3) {
usage:
		fprintf(stderr, "usage: tfo_signals [-x] [-r] [-a MS] [-t MS] ADDRESS PORT connect|write|read|poll\n");
		return 2;
	}
	const char *what = argv[optind + 2];
	if (set_target("tfo_signals", argv[optind], argv[optind + 1]) != 0)
		return 2;
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int fd = socket(target.ss_family, SOCK_STREAM, 0), one = 1;
	if (explicit_option)
		report("setsockopt", setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)), errno);
	if (rcvtimeo) {
		struct timeval tv = { rcvtimeo / 1000, (rcvtimeo % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	long r;
	if (!strcmp(what, "connect"))
		arm(alarm_ms);
	r = connect(fd, (struct sockaddr *)&target, target_len);
	report("connect", r, errno);
	disarm();
	if (!strcmp(what, "connect")) {
		/* Still connecting, or connected: wait until writable, then write. */
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		report("poll-out", poll(&p, 1, 2000), errno);
		report("write", write(fd, "hello", 5), errno);
	} else if (!strcmp(what, "write")) {
		arm(alarm_ms);
		r = write(fd, "hello", 5);
		report("write", r, errno);
		disarm();
	} else if (!strcmp(what, "read")) {
		pid_t child = fork();
		if (child == 0) {
			usleep(300000);
			_exit(write(fd, "hello", 5) == 5 ? 0 : 1);
		}
		char buf[64];
		arm(alarm_ms);
		r = read(fd, buf, sizeof(buf));
		report("read", r, errno);
		disarm();
		int status;
		waitpid(child, &status, 0);
		report("child", WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
		if (r > 0)
			printf("echo-read %ld\n", r);
	} else if (!strcmp(what, "poll")) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		arm(alarm_ms);
		r = poll(&p, 1, 500);
		report("poll-in", r, errno);
		disarm();
		report("write", write(fd, "hello", 5), errno);
	} else {
		goto usage;
	}
	collect_echo(fd);
	return 0;
}
