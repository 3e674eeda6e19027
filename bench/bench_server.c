/*
 * A Fast Open server that does not fork: THREADS threads, each with its own
 * SO_REUSEPORT listener (TCP_FASTOPEN set) and epoll loop. It echoes what
 * it reads until the client closes; with "http" it answers the first
 * request (up to the blank line) with a small HTTP/1.0 response and closes.
 *
 * Usage: bench_server [-t THREADS] ADDRESS PORT [http]
 * Prints "ready" once every listener is up, then runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef TCP_FASTOPEN
#define TCP_FASTOPEN 23
#endif

static struct addrinfo *address;
static int http;

static const char response[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";

/* HTTP mode: the last bytes seen per fd, to find "\r\n\r\n" across reads. */
#define MAX_FD 65536
static unsigned int tail[MAX_FD];

static int listener(void)
{
	int fd = socket(address->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1, qlen = 4096;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, address->ai_addr, address->ai_addrlen) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) < 0 || listen(fd, 4096) < 0) {
		perror("bench_server: listener");
		exit(1);
	}
	return fd;
}

/* Returns 0 when the connection is finished (closed by the caller). */
static int serve(int fd)
{
	char buf[16384];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (!http) {
			if (write(fd, buf, n) != n)
				return 0;
			continue;
		}
		for (ssize_t i = 0; i < n; i++) {
			unsigned int t = fd < MAX_FD ? tail[fd] : 0;
			t = (t << 8) | (unsigned char)buf[i];
			if (fd < MAX_FD)
				tail[fd] = t;
			if (t == 0x0d0a0d0a) {
				(void)!write(fd, response, sizeof(response) - 1);
				return 0;
			}
		}
	}
}

static void *worker(void *arg)
{
	int lfd = *(int *)arg, ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, events[256];
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			if (fd == lfd) {
				int c;
				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (c < MAX_FD)
						tail[c] = 0;
					/* With Fast Open the request may be here already. */
					if (!serve(c)) {
						close(c);
						continue;
					}
					struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
				}
			} else if (!serve(fd)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
			}
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	int threads = 2, opt;
	while ((opt = getopt(argc, argv, "t:")) != -1) {
		if (opt != 't')
			return 2;
		threads = atoi(optarg);
	}
	if (argc - optind < 2 || getaddrinfo(argv[optind], argv[optind + 1], &hints, &address) != 0) {
		fprintf(stderr, "usage: bench_server [-t THREADS] ADDRESS PORT [http]\n");
		return 2;
	}
	http = argc - optind > 2 && strcmp(argv[optind + 2], "http") == 0;
	int *listeners = calloc(threads, sizeof(int));
	pthread_t tid;
	for (int i = 0; i < threads; i++)
		listeners[i] = listener();
	for (int i = 0; i < threads; i++)
		pthread_create(&tid, NULL, worker, &listeners[i]);
	printf("ready\n");
	fflush(stdout);
	pause();
	return 0;
}
