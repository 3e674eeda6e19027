/*
 * Time to first byte of sequential request/reply connections, as an
 * ordinary client makes them: socket, connect, write the request, read the
 * echoed reply, close. With -o it first sets TCP_FASTOPEN_CONNECT (the
 * kernel's own option natively; libtfo's emulation under TFO_MODE=explicit
 * TFO_BACKEND=emulate); without, it is a client that knows nothing of Fast
 * Open (what libtfo's auto mode is for).
 *
 * Usage: ttfb [-o] [-n COUNT] [-m MESSAGE] ADDRESS PORT
 * One line per connection: "TTFB_US CONNECT_US SYN_DATA", where TTFB is
 * from socket() to the first byte of the reply, CONNECT the time spent in
 * connect(), and SYN_DATA 1 when the server acknowledged data in the SYN.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;
	const char *message = "GET / HTTP/1.0\r\n\r\n";
	int fastopen = 0, opt;
	long count = 1;

	while ((opt = getopt(argc, argv, "on:m:")) != -1) {
		switch (opt) {
		case 'o': fastopen = 1; break;
		case 'n': count = atol(optarg); break;
		case 'm': message = optarg; break;
		default: return 2;
		}
	}
	if (argc - optind != 2 || getaddrinfo(argv[optind], argv[optind + 1], &hints, &ai) != 0) {
		fprintf(stderr, "usage: ttfb [-o] [-n COUNT] [-m MESSAGE] ADDRESS PORT\n");
		return 2;
	}
	size_t len = strlen(message);
	char reply[4096];
	for (long i = 0; i < count; i++) {
		double start = now_us();
		int fd = socket(ai->ai_family, SOCK_STREAM, 0), one = 1;
		if (fd < 0 || (fastopen && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)) < 0)) {
			perror("socket");
			return 1;
		}
		double before_connect = now_us();
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			perror("connect");
			return 1;
		}
		double connect_us = now_us() - before_connect;
		if (write(fd, message, len) != (ssize_t)len) {
			perror("write");
			return 1;
		}
		ssize_t n = read(fd, reply, sizeof(reply));
		double ttfb = now_us() - start;
		if (n <= 0) {
			fprintf(stderr, "ttfb: no reply\n");
			return 1;
		}
		/* The rest of an echo, so the server's side is done too. */
		for (size_t got = n; got < len && (n = read(fd, reply, sizeof(reply))) > 0; got += n)
			;
		struct tcp_info info;
		socklen_t info_len = sizeof(info);
		memset(&info, 0, sizeof(info));
		getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len);
		close(fd);
		printf("%.1f %.2f %d\n", ttfb, connect_us, !!(info.tcpi_options & TCPI_OPT_SYN_DATA));
	}
	return 0;
}
