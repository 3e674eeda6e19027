/*
 * A TCP Fast Open echo server: it accepts data carried in the SYN and sends
 * every byte back until the client closes.
 *
 * Usage: tfo_echo_server [-d] ADDRESS PORT
 *   -d  return once listening (the server runs on in the background) and
 *       print its pid, so scripts know it is ready.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void echo(int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, n - off);
			if (w <= 0)
				return;
			off += w;
		}
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *ai;
	int background = 0, one = 1, qlen = 256, fd;

	if (argc > 1 && strcmp(argv[1], "-d") == 0) {
		background = 1;
		argv++;
		argc--;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: tfo_echo_server [-d] ADDRESS PORT\n");
		return 2;
	}
	if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0)
		die("getaddrinfo");
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) < 0)
		die("setsockopt(TCP_FASTOPEN)");
	if (listen(fd, 128) < 0)
		die("listen");
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	signal(SIGPIPE, SIG_IGN);

	if (background) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid > 0) {
			printf("%d\n", (int)pid);
			return 0;
		}
		setsid();
	}
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		if (fork() == 0) {
			close(fd);
			echo(c);
			_exit(0);
		}
		close(c);
	}
}
