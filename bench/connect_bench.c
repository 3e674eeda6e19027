/*
 * Time of connect() on a TCP_FASTOPEN_CONNECT socket with a cookie cached,
 * and of a whole request (socket, setsockopt, connect, write, read, close).
 * Run inside tests/in-netns --prime; bench/run compares the kernel's own
 * option with libtfo.
 *
 * Usage: connect_bench ADDRESS PORT [ITERATIONS]
 */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;
	long n = argc > 3 ? atol(argv[3]) : 2000;
	double in_connect = 0, total;
	char buf[64];
	int one = 1, syn_data = 0;

	if (argc < 3 || getaddrinfo(argv[1], argv[2], &hints, &ai) != 0)
		return 2;
	total = now();
	for (long i = 0; i < n; i++) {
		int fd = socket(ai->ai_family, SOCK_STREAM, 0);
		setsockopt(fd, IPPROTO_TCP, 30 /* TCP_FASTOPEN_CONNECT */, &one, sizeof(one));
		double t = now();
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
			return 1;
		in_connect += now() - t;
		if (write(fd, "ping", 4) != 4 || read(fd, buf, sizeof(buf)) != 4)
			return 1;
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);
		getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
		syn_data += !!(ti.tcpi_options & TCPI_OPT_SYN_DATA);
		close(fd);
	}
	total = now() - total;
	printf("connect()           %7.2f us\n", in_connect / n / 1e3);
	printf("whole request       %7.2f us\n", total / n / 1e3);
	printf("data in SYN         %ld/%ld\n", (long)syn_data, n);
	return 0;
}
