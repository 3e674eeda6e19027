/*
 * Cost of an intercepted call on an fd libtfo does not track.
 *
 * Usage: fastpath [ITERATIONS]
 * Prints nanoseconds per call for calls whose kernel work is tiny (EBADF on a
 * closed fd, poll with timeout 0 on a pipe, a 1-byte write to /dev/null), so
 * the hook's own cost is visible. bench/run compares runs with and without
 * LD_PRELOAD=libtfo.so, and counts instructions with callgrind.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	int devnull = open("/dev/null", O_WRONLY);
	int pipefd[2];
	char byte = 'x';
	double t;

	if (pipe(pipefd) < 0 || devnull < 0)
		return 1;
	struct pollfd p = { .fd = pipefd[1], .events = POLLOUT };

	t = now();
	for (long i = 0; i < n; i++)
		write(devnull, &byte, 1);
	printf("write(/dev/null)    %7.1f ns\n", (now() - t) / n);

	t = now();
	for (long i = 0; i < n; i++)
		send(999, &byte, 1, 0); /* EBADF */
	printf("send(EBADF)         %7.1f ns\n", (now() - t) / n);

	t = now();
	for (long i = 0; i < n; i++)
		recv(999, &byte, 1, 0); /* EBADF */
	printf("recv(EBADF)         %7.1f ns\n", (now() - t) / n);

	t = now();
	for (long i = 0; i < n; i++)
		poll(&p, 1, 0);
	printf("poll(pipe, 0)       %7.1f ns\n", (now() - t) / n);
	return 0;
}
