/*
 * A TCP Fast Open echo server: it accepts data carried in the SYN and sends
 * every byte back until the client closes.
 *
 * Usage: tfo_echo_server [-d] [-n] [-b BANNER] ADDRESS PORT
 *   -d  return once listening (the server runs on in the background) and
 *       print its pid, so scripts know it is ready (and can stop it to start
 *       another one on the same port: `pid=$(tfo_echo_server -d ...)`).
 *   -n  no TCP_FASTOPEN on the listener: an ordinary server, which gives no
 *       cookie and ignores data in a SYN (the kernel acknowledges only the SYN).
 *   -b  send BANNER (and CRLF) as soon as a connection is accepted, before
 *       reading: a server that speaks first (SMTP, SSH...).
 */
#include <fcntl.h>
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

static void echo(int fd, const char *banner)
{
	char buf[65536];
	ssize_t n;

	if (banner) {
		n = snprintf(buf, sizeof(buf), "%s\r\n", banner);
		if (write(fd, buf, n) != n)
			return;
	}
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
	int background = 0, fastopen = 1, bad = 0, one = 1, qlen = 256, fd, opt;
	const char *banner = NULL;

	while ((opt = getopt(argc, argv, "dnb:")) != -1) {
		switch (opt) {
		case 'd': background = 1; break;
		case 'n': fastopen = 0; break;
		case 'b': banner = optarg; break;
		default: bad = 1;
		}
	}
	if (bad || argc - optind != 2) {
		fprintf(stderr, "usage: tfo_echo_server [-d] [-n] [-b BANNER] ADDRESS PORT\n");
		return 2;
	}
	argv += optind - 1;
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
	if (fastopen && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) < 0)
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
		/* Let go of the caller's stdout, so `pid=$(tfo_echo_server -d ...)` returns. */
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			if (null > STDERR_FILENO)
				close(null);
		}
	}
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		if (fork() == 0) {
			close(fd);
			echo(c, banner);
			_exit(0);
		}
		close(c);
	}
}
